"""The swarm-wide reports: gossip-consistency and the fleet's node x network matrix (and with
--probe, who reaches whom) in text, JSON and Nagios."""
from __future__ import annotations

import dataclasses
import textwrap
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ssd import __version__
from ssd.plan import Step, make_plan, plan_lines
from ssd.base import SCHEMA_VERSION, _ip_order, count
from ssd.model import Finding
from ssd.report import _counted, _render_findings, nagios_line, nagios_state, threshold_perf

if TYPE_CHECKING:
    from ssd.report import Painter
    from ssd.swarmwide.answers import FleetNode, FleetResult, GossipResult


# --- their reports --------------------------------------------------------------------

def render_gossip_nagios(result: GossipResult) -> str:
    answered = sum(n.status == "answered" for n in result.nodes)
    state = nagios_state(gossip_status(result), answered >= 2)
    if result.differences:
        summary = f"network {result.network}: {count(len(result.differences), 'difference')} between nodes"
    else:
        summary = f"network {result.network}: {answered} of {count(len(result.nodes), 'node')} agree"
    if result.not_checked:
        summary += f"; not checked: {result.not_checked[0].scope}: {result.not_checked[0].message}"
    return nagios_line(state, summary, {"differences": f"{len(result.differences)};;0;0",
                                        "nodes_answered": answered, "nodes": len(result.nodes),
                                        "time": f"{result.seconds:.2f}s"})


def gossip_status(result: GossipResult) -> str:
    if result.differences:
        return "inconsistent"
    return "incomplete" if result.not_checked else "consistent"


def gossip_to_json(result: GossipResult) -> dict:
    return {"schema_version": SCHEMA_VERSION, "mode": "gossip-consistency", "ssd_version": __version__,
            "status": gossip_status(result),
            "network": result.network,
            "nodes": [{"id": n.id, "hostname": n.hostname, "status": n.status, "digest": n.digest,
                       "reason": n.reason, "seconds": n.seconds} for n in result.nodes],
            "differences": result.differences, "samples": result.samples,
            "seconds": round(result.seconds, 1),
            "errors": [{"scope": p.scope, "message": p.message} for p in result.not_checked],
            "notes": result.notes}


def render_gossip(result: GossipResult, paint: Painter, verbose: bool = False) -> str:
    lines = []
    for n in result.nodes:
        head = f"Node id: {n.id} ({n.hostname})"
        if verbose and n.seconds is not None:
            head += f" [answered after {n.seconds:g} s]"
        if n.status == "answered":
            lines.append(f"{head} gossip hash {n.digest}")
        elif n.status == "not-instantiated":
            lines.append(f"{head} network {result.network} not instantiated here (no task or load "
                         "balancer): not compared")
        else:
            lines.append(f"{head} {paint('no answer', 'error')}: {n.reason}")
    lines += gossip_verdict_lines(result, paint)
    for note in result.notes:
        lines += textwrap.wrap(f"note: {note}", width=80, subsequent_indent="      ")
    return "\n".join(lines) + "\n"


def gossip_verdict_lines(result: GossipResult, paint: Painter) -> list[str]:
    lines: list[str] = []
    answered = [n for n in result.nodes if n.status == "answered"]
    if result.differences:
        views = len({n.digest for n in answered})
        lines.append(f"network {result.network}: {paint('DIVERGED', 'fail')}: {count(len(answered), 'node')} "
                     f"hold {views} different views")
        for diff in result.differences:
            lines += textwrap.wrap(diff["message"], width=80, initial_indent="  ",
                                   subsequent_indent="      ", break_long_words=False)
        lines.append(f"    next: docker network inspect -v {result.network} on the nodes named; "
                     "check 7946/tcp+udp between them")
    elif len(answered) < 2:
        lines.append(f"network {result.network}: {paint('NOT COMPARED', 'error')}: "
                     f"{len(answered)} of {count(len(result.nodes), 'node')} hold it")
    else:
        state = answered[0].state or {}
        tasks = sum(len(s["tasks"]) for s in state.get("services", {}).values())
        lines.append(f"network {result.network}: {paint('OK', 'ok')}: {count(len(answered), 'node')} agree "
                     f"({count(len(state.get('services', {})), 'service')}, {count(tasks, 'task')}, "
                     f"{count(len(state.get('peers', [])), 'peer')})")
    return lines


# --- fleet mode's reports -------------------------------------------------------------

MATRIX_ALL = 20  # nodes: past this, the matrix lists the nodes that are not consistent (-v: all)
NAMED = 10  # nodes named in one line before "and N more"


def some(names: list[str]) -> str:
    """Names for one line, however many nodes: the first NAMED, then how many more."""
    if len(names) <= NAMED:
        return ", ".join(names)
    return f"{', '.join(names[:NAMED])} and {len(names) - NAMED} more"


def fleet_status(result: FleetResult) -> str:
    statuses = {n.status for n in result.nodes}
    if "inconsistent" in statuses or any(g.differences for g in result.gossip):
        return "inconsistent"
    if "converging" in statuses:
        return "converging"
    if result.not_checked or "incomplete" in statuses or any(g.not_checked for g in result.gossip):
        return "incomplete"
    return "consistent"


def _report_findings(report: dict) -> list[Finding]:
    names = {f.name for f in dataclasses.fields(Finding)}
    return [Finding(**{k: v for k, v in f.items() if k in names})
            for f in report.get("findings") or [] if isinstance(f, dict)]


def fleet_cell(node: FleetNode, net_id: str | None) -> str:
    """One cell of the matrix: a network (by ID) on a node, or its host ingress (None)."""
    report = node.report
    if report is None:
        return "not asked" if not node.asked else "no answer"
    findings = [f for f in report.get("findings") or [] if isinstance(f, dict)]
    if net_id is None:
        host = report.get("host_ingress") or {}
        mine = [f for f in findings if _host_rule(f)]
        return f"FAIL {len(mine)}" if mine else ("OK" if host.get("checked") else "-")
    net = next((n for n in report.get("networks") or [] if n.get("id") == net_id), None)
    if net is None:
        return "-"
    mine = [f for f in findings if f.get("network") == net.get("name") and not _host_rule(f)]
    if mine:
        return f"FAIL {len(mine)}"
    if not net.get("checked"):
        return "-" if "not instantiated" in str(net.get("note") or "") else "NOT CHECKED"
    return "PARTIAL" if net.get("partial") else "OK"


def _host_rule(finding: dict) -> bool:
    """A finding of the host's ingress rules (the matrix's "host ports" column): the kernel layer
    in the host's namespace. (An overlay finding read there, as missing ESP state, is its
    network's.)"""
    return finding.get("layer", "kernel") == "kernel" and finding.get("namespace") == "host"


def fleet_to_json(result: FleetResult) -> dict:
    return {"schema_version": SCHEMA_VERSION, "mode": "all-nodes", "ssd_version": __version__,
            "status": fleet_status(result),
            "networks": [{"name": name, "id": ident} for name, ident in result.networks],
            "nodes": [{"id": n.id, "hostname": n.hostname, "status": n.status, "reason": n.reason,
                       "seconds": n.seconds, "report": n.report} for n in result.nodes],
            "gossip": [gossip_to_json(g) for g in result.gossip],
            "probes": [dataclasses.asdict(pair) for pair in probe_pairs(result)],
            "seconds": round(result.seconds, 1),
            "errors": [{"scope": p.scope, "message": p.message} for p in result.not_checked],
            "notes": result.notes, "plan": [step.to_json() for step in fleet_plan(result)]}


def node_blocks(result: FleetResult, verbose: bool) -> list[str]:
    """Each node's findings (and, with -v, what it could not check) under its name; nodes whose
    blocks read the same are one block (the same fault on 300 nodes is read once)."""
    groups: dict[tuple[str, ...], list[str]] = {}
    for n in result.nodes:
        findings = _report_findings(n.report or {})
        errors = (n.report or {}).get("errors") or []
        if not findings and not (verbose and errors) and n.report is not None:
            continue
        node = (n.report or {}).get("node") or {}
        role = "manager" if node.get("manager") else "worker"
        head = f"engine {node.get('engine_version')}, {role}" if n.report else str(n.reason)
        block = (head, *_render_findings(findings, verbose),
                 *(f"  not checked: {e.get('scope')}: {e.get('message')}" for e in errors if verbose))
        groups.setdefault(block, []).append(n.label)
    lines: list[str] = []
    for block, labels in groups.items():
        many = f" ({count(len(labels), 'node')})" if len(labels) > 1 else ""
        lines.append(f"{some(labels)}{many}: {block[0]}")
        lines += block[1:]
    return lines


def fleet_plan(result: FleetResult) -> list[Step]:
    """The fixes of every node's findings, a service's update once for all nodes."""
    return make_plan({n.label: _report_findings(n.report or {}) for n in result.nodes})


def render_fleet(result: FleetResult, paint: Painter, quiet: bool, verbose: bool) -> str:
    columns = [(name, ident) for name, ident in result.networks] + [("host ports", None)]
    width = max([len(n.label) for n in result.nodes] + [4]) + 2
    cells = {n.id: [fleet_cell(n, ident) for _, ident in columns] for n in result.nodes}
    sizes = [max([len(name), *(len(cells[n.id][i]) for n in result.nodes)]) + 2
             for i, (name, _) in enumerate(columns)]
    colour = {"OK": "ok", "-": "ok", "PARTIAL": "error", "NOT CHECKED": "error",
              "no answer": "error", "not asked": "skip"}
    asked = [n for n in result.nodes if n.asked]
    answered = sum(n.report is not None for n in asked)
    lines = [f"Swarm check: {answered} of {count(len(asked), 'node')} answered "
             f"in {result.seconds:.1f} s"]
    heads = (name.ljust(size) for (name, _), size in zip(columns, sizes, strict=True))
    lines.append(("NODE".ljust(width) + "".join(heads)).rstrip())
    # A swarm of hundreds: the rows that need a look; every row with -v (JSON keeps every node).
    short = len(result.nodes) > MATRIX_ALL and not verbose
    for n in result.nodes:
        if (quiet or short) and n.status == "consistent":
            continue
        row = n.label.ljust(width)
        for cell, size in zip(cells[n.id], sizes, strict=True):
            row += paint(cell, colour.get(cell, "fail")) + " " * (size - len(cell))
        lines.append(row.rstrip())
    hidden = sum(n.status == "consistent" for n in result.nodes) if short and not quiet else 0
    if hidden:
        lines.append(f"... and {count(hidden, 'more node')}, consistent (-v lists every node)")
    lines += node_blocks(result, verbose)
    for g in result.gossip:
        lines += gossip_verdict_lines(g, paint)
    lines += probe_matrix_lines(result, paint, quiet)
    for line in layer_lines(result):
        lines += textwrap.wrap(line, width=80, subsequent_indent="      ")
    if not quiet:
        for note in result.notes:
            lines += textwrap.wrap(f"note: {note}", width=80, subsequent_indent="      ")
    lines += plan_lines(fleet_plan(result))
    total = sum(len(_report_findings(n.report or {})) for n in result.nodes)
    where = sorted({n.label for n in result.nodes if _report_findings(n.report or {})})
    summary = (f"{count(len(result.nodes), 'node')}, {count(len(result.networks), 'network')}, {total} "
               f"inconsistenc{'y' if total == 1 else 'ies'}" + (f" on {some(where)}" if where else ""))
    diverged = [g.network for g in result.gossip if g.differences]
    if diverged:
        summary += f", views diverge on {', '.join(diverged)}"
    if result.not_checked:
        summary += f", {len(result.not_checked)} not checked"
    lines.append(summary)
    return "\n".join(lines) + "\n"


@dataclass(frozen=True, slots=True)
class ProbePair:
    """--all-nodes --probe: what one node's probes saw of another, on one network. "paths": its
    endpoints answered small / full-size echo requests; "ports": that node's published ports
    answered (None: not asked, as on an overlay, which publishes nothing of its own)."""
    network: str
    source: str  # node labels
    target: str
    small: bool | None
    full: bool | None
    ports_asked: int = 0
    ports_answered: int = 0

    @property
    def cell(self) -> str:
        path = ("." if self.source == self.target else "-" if self.small is None
                else "ok" if self.small and self.full
                else "MTU" if self.small else "LOST")
        if not self.ports_asked:
            return path
        ports = ("ok" if self.ports_answered == self.ports_asked
                 else f"{self.ports_answered}/{self.ports_asked}")
        return f"{path} {ports}"

    @property
    def broken(self) -> bool:
        return self.small is False or self.full is False or self.ports_answered < self.ports_asked


def probe_pairs(result: FleetResult) -> list[ProbePair]:
    """Every (network, from, to) that a node's --probe judged, from the members' reports; an
    address is named by the node that reports it as its own (else it stays an address)."""
    label_of = {}
    for n in result.nodes:
        node = (n.report or {}).get("node") or {}
        for addr in [node.get("addr"), *(node.get("vteps") or [])]:  # a --data-path-addr too
            if isinstance(addr, str) and addr:
                label_of[addr] = n.label
    pairs = []
    for n in result.nodes:
        for net in (n.report or {}).get("networks") or []:
            probe = net.get("probe") if isinstance(net, dict) else None
            if not isinstance(probe, dict):
                continue
            paths, entries = probe.get("paths") or {}, probe.get("entries") or {}
            for ip in sorted(set(paths) | set(entries), key=_ip_order):
                seen, ports = paths.get(ip) or {}, entries.get(ip) or {}
                pairs.append(ProbePair(net.get("name", ""), n.label, label_of.get(ip, ip),
                                       seen.get("small"), seen.get("full") if seen else None,
                                       ports.get("asked", 0), ports.get("answered", 0)))
    return pairs


def probe_matrix_lines(result: FleetResult, paint: Painter, quiet: bool) -> list[str]:
    """Per network probed, who reaches whom: rows are where the probes left from, columns the
    node they asked. ok, MTU (small packets only), LOST (nothing); on ingress, then the node's
    published ports answered (ok, or answered/asked)."""
    pairs = probe_pairs(result)
    lines: list[str] = []
    for network in dict.fromkeys(p.network for p in pairs):
        mine = [p for p in pairs if p.network == network]
        if quiet and not any(p.broken for p in mine):
            continue
        nodes = sorted({p.source for p in mine} | {p.target for p in mine})
        cells = {(p.source, p.target): p for p in mine}
        width = max(len(n) for n in [*nodes, "FROM/TO"]) + 2
        size = max([len(p.cell) for p in mine] + [len(n) for n in nodes]) + 2
        legend = (f"Probes on network {network} (row: from, column: to; ok, MTU: small packets "
                  "only, LOST: no answer" + ("; then published ports" if any(
                      p.ports_asked for p in mine) else "") + ")")
        lines += textwrap.wrap(legend, width=80, subsequent_indent="  ")
        lines.append(("FROM/TO".ljust(width) + "".join(n.ljust(size) for n in nodes)).rstrip())
        for source in sorted({p.source for p in mine}):
            row = source.ljust(width)
            for target in nodes:
                pair = cells.get((source, target))
                cell = "." if pair is None else pair.cell
                row += paint(cell, "fail" if pair and pair.broken else "ok") + " " * (size - len(cell))
            lines.append(row.rstrip())
        for verdict in probe_verdicts(mine):
            lines += textwrap.wrap(verdict, width=80, initial_indent="  ", subsequent_indent="      ")
    return lines


def probe_verdicts(pairs: list[ProbePair]) -> list[str]:
    """One line per node that every other node lost (in both directions where both probed), else
    one per broken pair: "node3: no other node reaches it over ov2, full-size only"."""
    out = []
    sources = {p.source for p in pairs}
    explained: set[tuple[str, str]] = set()
    for node in sorted({p.target for p in pairs}):
        towards = [p for p in pairs if p.target == node and p.small is not None]
        back = [p for p in pairs if p.source == node and p.small is not None]
        others = sources - {node}
        if not towards or {p.source for p in towards} != others or not all(p.full is False for p in towards):
            continue
        if back and not all(p.full is False for p in back):
            continue
        mtu = all(p.small for p in towards + back)
        both = " in both directions" if back else ""
        net = pairs[0].network
        out.append(f"{node}: full-size packets pass{both} between it and no other node over {net} "
                   "(small ones do: an MTU black hole)" if mtu
                   else f"{node}: no other node reaches it{both} over {net}")
        explained |= {(p.source, p.target) for p in towards + back}
    for p in pairs:  # the rest, pair by pair (published ports travel on the underlay: always said)
        what = []
        if (p.source, p.target) not in explained:
            if p.small is False:
                what.append("no echo answered")
            elif p.full is False:
                what.append("full-size echo lost")
        if p.ports_answered < p.ports_asked:
            what.append(f"{p.ports_asked - p.ports_answered} of {p.ports_asked} published ports silent")
        if what:
            out.append(f"{p.source} -> {p.target} over {p.network}: {', '.join(what)}")
    return out


def layer_lines(result: FleetResult) -> list[str]:
    """With --gossip: which layer disagrees, per network whose overlay check fired somewhere.

    Both speak of the same peers (NetworkDB's Peers of the network, and the Host IP it gives
    each endpoint): gossip compares them between nodes, the overlay check compares one node's
    NetworkDB with its kernel. The kernel follows its own node's NetworkDB, so a gossip
    difference is the one to fix first."""
    out = []
    for g in result.gossip:
        nodes = sorted({n.label for n in result.nodes for f in _report_findings(n.report or {})
                        if f.layer == "overlay" and f.network == g.network})
        if not nodes:
            continue
        if g.differences:
            out.append(f"layers: on {g.network}, NetworkDB differs between nodes (gossip) and the overlay "
                       f"differs from NetworkDB on {some(nodes)}: the kernel follows its node's "
                       "NetworkDB, so fix the gossip difference first")
        else:
            out.append(f"layers: on {g.network}, every node's NetworkDB agrees (gossip); the kernel's "
                       f"overlay differs from it on {some(nodes)} only")
    return out


def render_fleet_nagios(result: FleetResult) -> str:
    answered = [n for n in result.nodes if n.report is not None]
    findings = [(n.label, f) for n in answered for f in _report_findings(n.report or {})]
    state = nagios_state(fleet_status(result), bool(answered))
    diverged = [g.network for g in result.gossip if g.differences]
    if findings:
        where = sorted({label for label, _ in findings})
        many = "inconsistencies" if len(findings) > 1 else "inconsistency"
        summary = f"{len(findings)} {many} on {some(where)}: {_counted(f.check for _, f in findings)}"
        clean = sum(n.status == "consistent" for n in answered)
        if clean:
            summary += f"; {count(clean, 'node')} consistent"
    else:
        summary = f"{count(len(answered), 'node')} consistent"
    if diverged:
        summary += f"; views diverge on network {', '.join(diverged)}"
    if result.not_checked:
        summary += f"; not checked: {result.not_checked[0].scope}: {result.not_checked[0].message}"
        if len(result.not_checked) > 1:
            summary += f" (and {len(result.not_checked) - 1} more)"
    return nagios_line(state, summary, {
        **threshold_perf((f for _, f in findings), len(result.not_checked)), "nodes": len(result.nodes),
        "nodes_answered": len(answered), "nodes_failed": len({label for label, _ in findings}),
        "time": f"{result.seconds:.2f}s"})
