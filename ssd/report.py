"""The node reports: the verdict (per service, per layer, overall, exit status), text, JSON,
Monitoring Plugins (Nagios) and Prometheus' textfile. Reads a RunResult; the layers' own blocks
come from their declarations (ssd.catalog.LAYERS)."""
from __future__ import annotations

import json
import re
import textwrap
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from ssd import __version__
from ssd.base import SCHEMA_VERSION, count, printable
from ssd import layers  # noqa: F401 (imported, every layer declares itself in LAYERS)
from ssd.catalog import CHECKS, LAYERS
from ssd.engine import require
from ssd.output import emit, write_file
from ssd.plan import Step, make_plan, plan_lines

if TYPE_CHECKING:
    from ssd.model import Finding, NetworkResult, RunResult, ServiceView


# Findings about a whole network's load balancer: every VIP service of it is broken by them.
NETWORK_WIDE = frozenset({"lb-namespace-missing", "snat-missing"})


def findings_of(result: RunResult, layer: str, net: NetworkResult) -> list[Finding]:
    """A layer's findings about one network; the kernel's exclude the host's ingress rules,
    which have a block of their own."""
    return [f for f in result.findings if f.layer == layer and f.network == net.view.name
            and not (layer == "kernel" and f.namespace == "host")]


def layer_status(result: RunResult, net: NetworkResult, layer: str) -> str:
    if findings_of(result, layer, net):
        return "fail"
    return "ok" if LAYERS[layer].was_read(net) else "error"


def service_status(result: RunResult, net: NetworkResult, svc: ServiceView) -> str:
    if not svc.vip or svc.ipv6:
        return "skipped"
    mine = findings_of(result, "kernel", net)
    if any(f.service == svc.name or (f.service is None and f.check in NETWORK_WIDE
                                     and svc in net.view.vip_services()) for f in mine):
        return "fail"
    if not net.checked or net.partial:
        return "error"
    return "ok"


def error_document(message: str, mode: str = "node") -> dict:
    """The document of a run that could not check: what every mode's --json prints then."""
    return {"schema_version": SCHEMA_VERSION, "mode": mode, "ssd_version": __version__,
            "status": "incomplete", "node": None, "networks": [],
            "findings": [], "errors": [{"scope": "ssd", "message": message}], "notes": []}


def overall_status(result: RunResult) -> str:
    if result.findings:
        return "converging" if all(f.converging for f in result.findings) else "inconsistent"
    return "incomplete" if result.not_checked else "consistent"


# diff's: 0 consistent, 1 inconsistent, 2 could not check; 3: only findings swarm has not
# finished converging for (a deployment in progress), to re-check once it has.
EXIT_CODES = {"consistent": 0, "inconsistent": 1, "incomplete": 2, "converging": 3}


def to_json(result: RunResult) -> dict:
    node = result.node
    return {
        "schema_version": SCHEMA_VERSION, "mode": "node", "ssd_version": __version__,
        "status": overall_status(result),
        "node": {"id": node.id, "hostname": node.hostname, "engine_version": node.engine.version,
                 "era": node.engine.era, "manager": node.manager, "addr": node.addr,
                 "vteps": result.vteps},
        "networks": [{
            "name": n.view.name, "id": n.view.id, "namespace": n.namespace,
            "checked": n.checked, "partial": n.partial, "note": n.note,
            "services": [{"name": s.name, "vip": s.vip, "fwmark": s.fwmark,
                          "status": service_status(result, n, s)}
                         for s in sorted(n.view.services.values(), key=lambda s: s.name)],
            **{layer.json_key or layer.name: layer.json(n, layer_status(result, n, layer.name))
               for layer in LAYERS.values() if layer.json},
        } for n in result.networks],
        "host_ingress": {"checked": result.host_checked, "ports": [label for label, _ in result.host_ports]},
        "findings": [f.to_json() for f in result.findings],
        "errors": [{"scope": p.scope, "message": p.message} for p in result.not_checked],
        "notes": result.notes,
        "plan": [step.to_json() for step in node_plan(result)],
    }


# Monitoring Plugins (Nagios, Icinga, Sensu...): one line "SSD STATE - summary | perfdata" and
# their exit codes. An inconsistency is CRITICAL; a check that looked at some things but could
# not look at others is WARNING (what it saw is fine, the rest is unknown); a check that could not
# look at all is UNKNOWN. Differences seen in one sample only (noise, not kept) are OK.
NAGIOS_CODES = {"OK": 0, "WARNING": 1, "CRITICAL": 2, "UNKNOWN": 3}


def nagios_state(status: str, looked: bool) -> str:
    if status == "inconsistent":
        return "CRITICAL"
    if status == "consistent":
        return "OK"
    if status == "converging":
        return "WARNING"  # a deployment in progress pages no one
    return "WARNING" if looked else "UNKNOWN"


def nagios_line(state: str, summary: str, perfdata: dict[str, int | float | str]) -> str:
    perf = " ".join(f"{label}={value}" for label, value in perfdata.items())
    summary = printable(summary).replace("|", "/")  # one line; '|' starts the perfdata
    return f"SSD {state} - {summary}" + (f" | {perf}" if perf else "") + "\n"


def threshold_perf(findings: Iterable[Finding], not_checked: int) -> dict[str, str]:
    """Perfdata whose thresholds say what the state says (label=value;warn;crit;min): the range
    "0" alerts above 0. A persisting finding is CRITICAL, one of a converging swarm and a part
    not checked are WARNING."""
    found = list(findings)
    moving = sum(1 for f in found if f.converging)
    return {"findings": f"{len(found) - moving};;0;0", "converging": f"{moving};0;;0",
            "not_checked": f"{not_checked};0;;0"}


def _counted(checks: Iterable[str]) -> str:
    counts: dict[str, int] = {}
    for check in checks:
        counts[check] = counts.get(check, 0) + 1
    return ", ".join(f"{check} x{n}" if n > 1 else check for check, n in sorted(counts.items()))


def _verdicts(result: RunResult) -> list[str]:
    return [service_status(result, n, s) for n in result.networks for s in n.view.services.values()]


def run_nagios_state(result: RunResult) -> str:
    looked = result.host_checked or any(v in ("ok", "fail") for v in _verdicts(result))
    return nagios_state(overall_status(result), looked)


def render_nagios(result: RunResult, seconds: float) -> str:
    verdicts = _verdicts(result)
    checked = sum(v in ("ok", "fail") for v in verdicts)
    state = run_nagios_state(result)
    where = f"node {result.node.hostname or result.node.id[:12]}"
    if result.findings:
        many = "inconsistencies" if len(result.findings) > 1 else "inconsistency"
        moving = " while swarm converges" if overall_status(result) == "converging" else ""
        summary = (f"{len(result.findings)} {many} on {where}{moving}: "
                   f"{_counted(f.check for f in result.findings)}")
    else:
        summary = f"{where}: {count(len(result.networks), 'network')}, {count(checked, 'service')} consistent"
    if result.not_checked:
        summary += f"; not checked: {result.not_checked[0].scope}: {result.not_checked[0].message}"
        if len(result.not_checked) > 1:
            summary += f" (and {len(result.not_checked) - 1} more)"
    return nagios_line(state, summary, {
        **threshold_perf(result.findings, len(result.not_checked)), "services": checked,
        "failed_services": sum(v == "fail" for v in verdicts), "time": f"{seconds:.2f}s"})


# node_exporter's textfile collector: the standard way to export a periodic root-only check.
# Every check id gets a series per network (0 when clean), so alerts need no absent() tricks.

def write_prometheus(target: str, result: RunResult | None, seconds: float,
                     episodes: dict[str, int] | None = None) -> None:
    """Write the run's metrics to target atomically (a temporary file beside it, then rename).
    episodes (--watch): per check id, how many times a finding of it appeared so far."""
    prom = require("prometheus_client")
    registry = prom.CollectorRegistry()
    status = prom.Enum("ssd_status", "Verdict of the last ssd run on this node", registry=registry,
                       states=list(EXIT_CODES))
    status.state(overall_status(result) if result else "incomplete")
    prom.Gauge("ssd_last_run_timestamp_seconds", "When the last ssd run ended (Unix time)",
               registry=registry).set(time.time())
    # An alert on staleness needs when ssd last reached a verdict, which a failing run must not
    # erase: carried over from the file this run replaces.
    succeeded = result is not None and overall_status(result) != "incomplete"
    last_success = time.time() if succeeded else previous_success(target)
    if last_success is not None:
        prom.Gauge("ssd_last_success_timestamp_seconds", "When an ssd run last reached a verdict "
                   "(consistent, inconsistent or converging; Unix time)", registry=registry).set(last_success)
    prom.Gauge("ssd_run_duration_seconds", "How long the last ssd run took", registry=registry).set(seconds)
    parts = prom.Gauge("ssd_not_checked", "Parts of the node the last run could not check "
                       "(see ssd's stderr or --json errors)", registry=registry)
    info = prom.Info("ssd", "ssd and the node it checked", registry=registry)
    if result is None:
        parts.set(1)
        info.info({"version": __version__})  # the reason is on stderr: no free text in labels
        _episode_metrics(prom, registry, episodes)  # a counter must not vanish for one run
        _write_metrics(prom, target, registry)
        return
    parts.set(len(result.not_checked))
    node = result.node
    info.info({"version": __version__, "node": node.hostname or node.id, "node_id": node.id,
               "engine_version": node.engine.version, "manager": str(node.manager).lower()})
    findings = prom.Gauge("ssd_findings", "Inconsistencies the last run found, by check id and network",
                          ["check", "network"], registry=registry)
    networks = {n.view.name for n in result.networks} | {f.network or "" for f in result.findings}
    for check in CHECKS:
        for network in sorted(networks):
            findings.labels(check, network).set(0)
    for finding in result.findings:
        findings.labels(finding.check, finding.network or "").inc()
    services = prom.Gauge("ssd_services", "Services the last run looked at, by network and verdict "
                          "(ok, fail, error: not fully readable, skipped: dnsrr or IPv6)",
                          ["network", "status"], registry=registry)
    for net in result.networks:
        for verdict in ("ok", "fail", "error", "skipped"):
            services.labels(net.view.name, verdict).set(0)
        for svc in net.view.services.values():
            services.labels(net.view.name, service_status(result, net, svc)).inc()
    _probe_metrics(prom, registry, result)
    _episode_metrics(prom, registry, episodes)
    _write_metrics(prom, target, registry)


def _episode_metrics(prom: Any, registry: Any, episodes: dict[str, int] | None) -> None:
    """--watch: a counter per check id of the findings that appeared (each episode once)."""
    if episodes is None:
        return
    counter = prom.Counter("ssd_finding_episodes", "--watch: findings that appeared since the watch "
                           "started, by check id (one per episode: it appeared, maybe cleared)",
                           ["check"], registry=registry)
    for check in CHECKS:
        counter.labels(check).inc(episodes.get(check, 0))


def _probe_metrics(prom: Any, registry: Any, result: RunResult) -> None:
    """--probe: per network, which other node answered (by size), and connections answered."""
    probed = [net for net in result.networks if net.probe is not None]
    if not probed:
        return
    paths = prom.Gauge("ssd_probe_path_answered", "--probe: whether another node's endpoints on a "
                       "network answered echo requests (1) or not (0), small and full-size",
                       ["network", "node", "size"], registry=registry)
    conns = prom.Gauge("ssd_probe_connections", "--probe: TCP connections the last run made, by network, "
                       "kind (backend, published) and whether they were answered (accepted or refused)",
                       ["network", "kind", "answered"], registry=registry)
    for net in probed:
        pr = net.probe
        for ip, seen in pr.paths.items():
            for size in ("small", "full"):
                paths.labels(net.view.name, ip, size).set(int(seen[size]))
        for kind, asked, answered in (("backend", pr.backends, pr.backends_answered),
                                      ("published", pr.published, pr.published_answered)):
            conns.labels(net.view.name, kind, "true").set(answered)
            conns.labels(net.view.name, kind, "false").set(asked - answered)


def _write_metrics(prom: Any, target: str, registry: Any) -> None:
    if target == "-":
        emit(prom.generate_latest(registry).decode())
    else:  # node_exporter runs as its own user: 0644
        write_file(target, prom.generate_latest(registry), 0o644, "metrics")


def previous_success(target: str) -> float | None:
    if target == "-":
        return None
    try:
        with open(target, encoding="utf-8") as fh:
            found = re.search(r"^ssd_last_success_timestamp_seconds (\S+)$", fh.read(), re.MULTILINE)
        return float(found.group(1)) if found else None
    except (OSError, UnicodeDecodeError, ValueError):
        return None


class Painter:
    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled

    def __call__(self, text: str, colour: str) -> str:
        codes = {"ok": "32", "fail": "31;1", "skip": "33", "error": "35"}
        return f"\033[{codes[colour]}m{text}\033[0m" if self.enabled else text


def node_plan(result: RunResult) -> list[Step]:
    return make_plan({result.node.hostname or result.node.id[:12]: result.findings})


def render_text(result: RunResult, paint: Painter, quiet: bool, verbose: bool) -> str:
    lines: list[str] = []
    node = result.node
    if not quiet:
        role = "manager" if node.manager else "worker"
        lines.append(f"Node {node.hostname} ({node.id[:12]}), engine {node.engine.version}, "
                     f"{node.engine.era}, {role}")
    used: set[int] = set()
    for net in result.networks:
        lines += _render_network(result, net, paint, quiet, verbose, used)
    if result.host_checked:
        host = [f for f in result.findings if f.namespace == "host" and id(f) not in used]
        block = []
        for label, services in result.host_ports:
            mine = [f for f in host if f.subject == label]
            used.update(id(f) for f in mine)
            if mine or not quiet:
                status = paint("FAIL", "fail") if mine else paint("OK", "ok")
                block.append(f"port {label} ({services})... {status}")
                block += _render_findings(mine, verbose)
        rest = [f for f in host if id(f) not in used]
        used.update(id(f) for f in rest)
        block += _render_findings(rest, verbose)
        if block:
            lines.append("Verifying host ingress rules")
            lines += block
    leftovers = [f for f in result.findings if id(f) not in used]
    lines += _render_findings(leftovers, verbose)
    lines += plan_lines(node_plan(result))
    if not quiet:
        for note in result.notes:
            lines += textwrap.wrap(f"note: {note}", width=80, subsequent_indent="      ")
    n_services = sum(len(n.view.services) for n in result.networks)
    found = len(result.findings)
    summary = (f"{count(len(result.networks), 'network')}, {count(n_services, 'service')}, "
               f"{found} inconsistenc{'y' if found == 1 else 'ies'}")
    converging = sum(1 for f in result.findings if f.converging)
    if converging:
        summary += f" ({converging} while swarm converges)"
    if result.not_checked:
        summary += f", {len(result.not_checked)} not checked"
    if not quiet or result.findings or result.not_checked:
        lines.append(summary)
    return "\n".join(lines) + ("\n" if lines else "")


def _render_network(result: RunResult, net: NetworkResult, paint: Painter, quiet: bool,
                    verbose: bool, used: set[int]) -> list[str]:
    name = net.view.name
    mine = findings_of(result, "kernel", net)
    header = f"Verifying LB programming for network {name}"
    header += f" (netns {net.namespace})" if net.namespace else ""
    block: list[str] = []
    if net.note:
        block.append(f"  {net.note}")
    for svc in sorted(net.view.services.values(), key=lambda s: s.name):
        status = service_status(result, net, svc)
        own = [f for f in mine if f.service == svc.name]
        used.update(id(f) for f in own)
        if quiet and status != "fail":  # what could not be checked is on stderr already
            continue
        skipped = ("SKIPPED (IPv6 VIP: the engine's load balancer is IPv4-only)" if svc.ipv6
                   else "SKIPPED (no VIP: endpoint mode dnsrr)")
        label = {"ok": paint("OK", "ok"), "fail": paint("FAIL", "fail"),
                 "skipped": paint(skipped, "skip"),
                 "error": paint("INCOMPLETE (see stderr)", "error")}[status]
        block.append(f"service {svc.name}... {label}")
        if verbose and svc.vip:
            block.append(f"    VIP {svc.vip}, fwmark {svc.fwmark} ({svc.fwmark:#x}), tasks "
                         + ", ".join(f"{t.ip}" for t in svc.tasks))
        block += _render_findings(own, verbose)
        if status == "fail" and not own:
            wide = sorted({f.check for f in mine if f.service is None and f.check in NETWORK_WIDE})
            block.append(f"  its network's load balancer fails ({', '.join(wide)}): see below" if wide
                         else "  its published ports fail: see the host ingress rules below")
    rest = [f for f in mine if id(f) not in used]
    used.update(id(f) for f in rest)
    block += _render_findings(rest, verbose)
    lines = [header, *block] if block or not quiet else []
    for layer in LAYERS:
        if layer != "kernel":
            lines += _render_layer(result, net, layer, paint, quiet, verbose, used)
    return lines


def _render_layer(result: RunResult, net: NetworkResult, name: str, paint: Painter, quiet: bool,
                  verbose: bool, used: set[int]) -> list[str]:
    describe = LAYERS[name].describe
    described = describe(net) if describe else None
    if described is None:
        return []
    mine = findings_of(result, name, net)
    used.update(id(f) for f in mine)
    header, summary, shown_when_clean = described
    status = layer_status(result, net, name)
    if status != "fail" and (quiet or not shown_when_clean):
        return []
    label = {"ok": paint("OK", "ok"), "fail": paint("FAIL", "fail"),
             "error": paint("INCOMPLETE (see stderr)", "error")}[status]
    return [header, f"{summary}... {label}", *_render_findings(mine, verbose)]


def _render_findings(findings: list[Finding], verbose: bool) -> list[str]:
    lines = []
    for f in findings:
        lines += textwrap.wrap(f"{f.check}: {f.message}", width=80, initial_indent="  ",
                               subsequent_indent="      ", break_long_words=False,
                               break_on_hyphens=False)
        lines.append(f"    layer: {LAYERS[f.layer].against}")
        if f.converging:
            lines += textwrap.wrap(f"converging: {f.converging}; run ssd again once it is done", width=80,
                                   initial_indent="    ", subsequent_indent="      ")
        if verbose:
            lines.append(f"    expected: {json.dumps(f.expected)}")
            lines.append(f"    found:    {json.dumps(f.actual)}")
        if f.hint:  # one command per line, never broken: they are copied from here
            first, *more = f.hint.split("; ")
            lines += [f"    next: {first}", *(f"      {command}" for command in more)]
        if f.action:
            lines += textwrap.wrap(f"fix: {f.action}", width=80, initial_indent="    ",
                                   subsequent_indent="      ", break_long_words=False,
                                   break_on_hyphens=False)
        for known in f.known_issues:
            lines += textwrap.wrap(known_issue_line(known), width=80, initial_indent="    ",
                                   subsequent_indent="      ", break_long_words=False,
                                   break_on_hyphens=False)
    return lines


def known_issue_line(known: dict) -> str:
    if not known["affects_this_engine"]:
        return f"not {known['ref']}: this engine has its fix ({known['fixed_in']})"
    fixed = f", fixed in {known['fixed_in']}" if known["fixed_in"] else ""
    return f"known engine bug {known['ref']}{fixed}: {known['what']}"
