"""The host's ingress rules (checks of the "kernel" layer): DOCKER-INGRESS's DNAT for every
published port, the jumps into it, and the tasks' REDIRECT rules; what it reads and its checks."""
from __future__ import annotations

from typing import TYPE_CHECKING

from ssd.base import SnapshotError, shq
from ssd.catalog import CheckInfo, register_check
from ssd.layers.lb import _datapath_not_checked, _hint_rules, gateway_ip, read_task_datapaths
from ssd.model import Finding, NotChecked, PublishedPort, ServiceView

if TYPE_CHECKING:
    from ssd.catalog import EngineModel
    from ssd.collect import Collector
    from ssd.model import Datapath, NetworkView, NodeState, Reading, Rule, Ruleset


PortUsers = dict[tuple[str | None, int], list[tuple[ServiceView, PublishedPort]]]


def published_ports(ingress: NetworkView) -> PortUsers:
    """(protocol, published port) -> the services publishing it on the ingress network."""
    out: PortUsers = {}
    for svc in ingress.vip_services():
        for port in svc.ports:
            out.setdefault((port.protocol, port.published), []).append((svc, port))
    return out


@register_check(
    CheckInfo(
        "ingress-dnat-missing",
        "The host has no DOCKER-INGRESS DNAT rule for an ingress-published port.",
        "The routing mesh does not answer on this node for that port; `docker service update --force`."),
    CheckInfo(
        "ingress-dnat-stale",
        "The host has a DOCKER-INGRESS DNAT rule for a port no service publishes.",
        "Leftover of a removed service or port (moby#33790); restarting dockerd clears it."),
    CheckInfo(
        "ingress-dnat-target",
        "A DOCKER-INGRESS DNAT rule points elsewhere than ingress_sbox's docker_gwbridge address.",
        "Published traffic goes to the wrong place; restart dockerd."),
    CheckInfo(
        "ingress-filter-missing",
        "The host's filter DOCKER-INGRESS chain lacks an ACCEPT rule for a published port.",
        "A firewall tool may have flushed it (moby#33893); restart dockerd."),
    CheckInfo(
        "ingress-jump-missing",
        "A jump into DOCKER-INGRESS (nat PREROUTING/OUTPUT, filter FORWARD or DOCKER-FORWARD) is absent.",
        "Published ports are dead on this node; a firewall reload may have removed it; restart dockerd."),
    scope="host-rules", needs=("rules",))
def check_host_ingress(host: Datapath, state: NodeState) -> list[Finding]:
    """The host's DOCKER-INGRESS DNAT/filter rules and the jumps into them."""
    ingress, gw_ip, model = state.ingress, state.gw_ip, state.model
    assert ingress is not None  # the host scope runs only with ingress publishing ports
    rules = host.rules or {}
    where = {"network": ingress.name, "namespace": "host"}
    ports = published_ports(ingress)
    findings: list[Finding] = []
    dnat = [r for r in rules.get("nat", {}).get("DOCKER-INGRESS", []) if r.target == "DNAT"]
    accept = [r for r in rules.get("filter", {}).get("DOCKER-INGRESS", []) if r.target == "ACCEPT"]
    for (proto, number), users in sorted(ports.items(), key=lambda kv: (kv[0][1], kv[0][0] or "")):
        svc, port = users[0]
        label, name = port.label(), svc.name

        def same(rule: Rule, key: str, number: int = number, proto: str | None = proto) -> bool:
            return rule.port(key) == number and (proto is None or rule.proto == proto)
        mine = [r for r in dnat if same(r, "--dport")]
        if not mine:
            findings.append(Finding(
                "ingress-dnat-missing", f"no DNAT rule in nat DOCKER-INGRESS for published port "
                f"{label} of service {name}", service=name, subject=label,
                expected=f"--dport {number} -j DNAT --to-destination {gw_ip or '<gw IP>'}:{number}",
                actual=None, hint="iptables-save -t nat | grep DOCKER-INGRESS", **where))
        elif gw_ip:
            targets = [r.get("--to-destination") for r in mine]
            if any(t != f"{gw_ip}:{number}" for t in targets):
                findings.append(Finding(
                    "ingress-dnat-target", f"DNAT for port {label} of service {name} goes to "
                    f"{', '.join(str(t) for t in targets)}, not to ingress_sbox at {gw_ip}:{number}",
                    service=name, subject=label, expected=f"{gw_ip}:{number}", actual=targets,
                    hint="iptables-save -t nat | grep DOCKER-INGRESS; "
                         "docker network inspect docker_gwbridge", **where))
        inbound = [r for r in accept if same(r, "--dport")]
        replies = [r for r in accept if same(r, "--sport")
                   and ("ESTABLISHED" in (r.get("--ctstate") or r.get("--state") or ""))]
        missing = [what for what, have in (("--dport", inbound), ("--sport ESTABLISHED", replies))
                   if not have]
        if missing:
            findings.append(Finding(
                "ingress-filter-missing", f"filter DOCKER-INGRESS lacks the ACCEPT rule(s) "
                f"{' and '.join(missing)} for published port {label} of service {name}",
                service=name, subject=label, expected=[f"ACCEPT {m} {number}" for m in missing],
                actual=[r.text for r in inbound + replies],
                hint="iptables-save -t filter | grep DOCKER-INGRESS", **where))
    for rule in dnat:
        number = rule.port("--dport")
        if number is None:
            continue
        if not any(n == number and (p is None or p == rule.proto) for p, n in ports):
            label = f"{number}/{rule.proto}"
            findings.append(Finding(
                "ingress-dnat-stale", f"nat DOCKER-INGRESS has a DNAT rule for port {label}, "
                "which no service publishes", subject=label, expected=None, actual=rule.text,
                hint="iptables-save -t nat | grep DOCKER-INGRESS; docker service ls", **where))
    if ports:
        findings += _check_ingress_jumps(rules, model, where)
    return findings


def _check_ingress_jumps(rules: Ruleset, model: EngineModel, where: dict) -> list[Finding]:
    wanted = [("nat", "PREROUTING"), ("nat", "OUTPUT"), ("filter", model.filter_jump_chain)]
    findings = []
    for table, chain in wanted:
        jumps = [r for r in rules.get(table, {}).get(chain, []) if r.target == "DOCKER-INGRESS"]
        if table == "nat":
            jumps = [r for r in jumps if r.get("--dst-type") == "LOCAL"]
        if not jumps:
            findings.append(Finding(
                "ingress-jump-missing", f"{table} {chain} has no jump to DOCKER-INGRESS (engine "
                f"{model.version})", subject=f"{table}/{chain}",
                expected=f"-A {chain} {'-m addrtype --dst-type LOCAL ' if table == 'nat' else ''}"
                         "-j DOCKER-INGRESS", actual=None,
                hint=f"iptables-save -t {table} | grep -- {shq('-A ' + chain)}", **where))
    return findings


@register_check(
    CheckInfo(
        "task-redirect-missing",
        "A local task on the ingress network lacks its REDIRECT rule from published to target port.",
        "That task drops routing-mesh traffic; `docker service update --force <service>`."),
    scope="ingress-tasks")
def check_task_redirects(ingress: NetworkView, state: NodeState) -> list[Finding]:
    """Each local task on ingress: nat PREROUTING -d <ip> --dport P -j REDIRECT --to-ports T."""
    task_datapaths = state.task_datapaths
    findings = []
    by_endpoint = {t.endpoint_id: (svc, t) for svc in ingress.vip_services() for t in svc.tasks}
    for key, dp in task_datapaths.items():
        ep = ingress.endpoints.get(key)
        if ep is None or dp.rules is None or ep.endpoint_id not in by_endpoint:
            continue
        svc, task = by_endpoint[ep.endpoint_id]
        redirects = [r for r in dp.rules.get("nat", {}).get("PREROUTING", [])
                     if r.target == "REDIRECT" and r.dst == f"{task.ip}/32"]
        for port in svc.ports:
            ok = any(r.port("--dport") == port.published and r.port("--to-ports") == port.target
                     and (port.protocol is None or r.proto == port.protocol) for r in redirects)
            if not ok:
                findings.append(Finding(
                    "task-redirect-missing", f"task {task.name} ({task.ip}) has no REDIRECT from "
                    f"port {port.label()} to {port.target} in its namespace {dp.name}",
                    network=ingress.name, namespace=dp.name, service=svc.name,
                    subject=f"{task.name}:{port.label()}",
                    expected=f"-A PREROUTING -d {task.ip}/32 -p {port.protocol or '<proto>'} "
                             f"--dport {port.published} -j REDIRECT --to-ports {port.target}",
                    actual=[r.text for r in redirects], hint=_hint_rules(dp.path, "nat")))
    return findings


def read_ingress(collector: Collector, state: NodeState, reading: Reading) -> None:
    """The last read phase: the host's rules (the routing mesh's, the encrypted overlays'), and
    the sandboxes of the local ingress tasks; the published ports the host block lists."""
    ingress = next((v for v in state.views if v.ingress and v.instantiated), None)
    publishing = ingress is not None and bool(published_ports(ingress))
    encrypted = [v for v in state.views if v.encrypted and (state.overlays or {}).get(v.id) is not None]
    if publishing or encrypted:
        state.host = read_host_rules(collector, reading.not_checked, reading.notes, publishing)
    if ingress is not None and publishing and state.host is not None:
        state.ingress = ingress
        if state.host.rules is not None:
            state.gw_ip = gateway_ip(collector, reading.ingress_dp, ingress)
            reading.host_ports = [(users[0][1].label(), ", ".join(s.name for s, _ in users))
                          for _, users in sorted(published_ports(ingress).items(),
                                                 key=lambda kv: (kv[0][1], kv[0][0] or ""))]
        state.task_datapaths = read_task_datapaths(collector, ingress, reading.not_checked)


def read_host_rules(collector: Collector, not_checked: list[NotChecked], notes: list[str],
                    publishing: bool) -> Datapath | None:
    """The node's own rules: the routing mesh's and the encrypted overlays'. Missing or broken
    where ports are published, they are "not checked", never passed over."""
    try:
        host = collector.datapath("", want_ipvs=False)
    except SnapshotError:
        if publishing:
            not_checked.append(NotChecked("host", "this snapshot holds no host rules: the published "
                                          "ports' ingress rules were not checked"))
        else:  # a node that published no port: its snapshot did not keep them
            notes.append("this snapshot holds no host rules: the encrypted overlays' firewall rules "
                         "were not checked")
        return None
    if host.error:
        not_checked.append(NotChecked("host", f"{host.error}; its ingress and encryption rules not checked"))
        return None
    _datapath_not_checked(host, "host", not_checked, parts=("rules",))
    return host
