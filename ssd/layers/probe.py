"""Layer "probe" (--probe): traffic. The plan (a pure function of the state, so a snapshot
replays it), what was sent, and the checks of what came back: echo paths to every other node,
connections to backends and to every node's published ports. Its reader, checks and block."""
from __future__ import annotations

import dataclasses
import ipaddress
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ssd.base import _ip_order, count, shq
from ssd.catalog import CheckInfo, Layer, declare_layer, register_check
from ssd.kernel.prober import ECHO_SMALL, PROBE_LIMIT, PROBE_TRIES, Probe
from ssd.layers.overlay import remote_endpoints, vxlan_mtu
from ssd.model import Finding, ProbeSummary

if TYPE_CHECKING:
    from ssd.collect import Collector
    from ssd.model import LoadBalancer, NetworkResult, NetworkView, NodeState, Reading, TaskView


# --- traffic: what --probe sent, and what came back -----------------------------------
# The plan is a pure function of the state (a snapshot replays it and finds its results by key):
# per network, from its load balancer, echo requests to endpoints of every other node (two
# sizes) and a connection to each backend whose port is known; from this node, a connection to
# every node's published TCP ports.

ECHO_TARGETS_PER_NODE = 2  # endpoints asked per other node: one that does not answer is not the node


@dataclass(frozen=True, slots=True)
class PlannedProbe:
    probe: Probe
    network: str
    what: str  # "path" (echo to another node), "backend" or "published"
    node_ip: str  # the node concerned: the remote VTEP, the backend's node, the node probed
    size: str = ""  # path: "small" or "full"
    service: str | None = None
    task: str | None = None
    namespace: str = ""  # the source namespace's name (lb_..., ingress_sbox, host)


def probe_mtu(view: NetworkView, state: NodeState) -> int:
    """The size of a full packet on the network: its VXLAN device's MTU as read, else the engine's."""
    ov = (state.overlays or {}).get(view.id)
    own = ov.own_vxlans(view.vnis) if ov is not None and ov.error is None else []
    return own[0].mtu if own else vxlan_mtu(view)


MAX_PROBES = 4096  # per sample: more are not sent (the report says how many)


def plan_probes(state: NodeState) -> list[PlannedProbe]:
    """What --probe sends. Its targets come from NetworkDB, which other nodes feed: an endpoint
    outside its network's subnets, or a published-port target that is no node of the swarm, is
    not probed (a lying node cannot aim ssd's traffic elsewhere), and at most MAX_PROBES are."""
    if "probes" in state.memo:
        return state.memo["probes"]
    plan: list[PlannedProbe] = []
    for lb in state.lbs:
        if state.model.per_container or not lb.lb_ip or lb.datapath.error:
            continue  # before 18.06 every container is a load balancer: no one source per network
        plan += _plan_paths(lb, state) + _plan_backends(lb)
    plan += _plan_published(state)
    allowed = [p for p in plan if _may_probe(p, state)]
    state.memo["probes-refused"] = (len(plan) - len(allowed), max(0, len(allowed) - MAX_PROBES))
    state.memo["probes"] = fair_share(allowed, MAX_PROBES)
    return state.memo["probes"]


def fair_share(plan: list[PlannedProbe], most: int) -> list[PlannedProbe]:
    """At most `most` probes, spread over what they test: every node path, service and node's
    published ports gets its first probe before any gets a second (round robin, in the plan's
    order: a snapshot's replay plans the same). Also the order they are sent in, so that a
    sample cut short by its time limit has tried a bit of everything, not all of a few."""
    groups: dict[tuple, list[PlannedProbe]] = {}
    for p in plan:
        groups.setdefault((p.network, p.what, p.service or p.node_ip), []).append(p)
    chosen: list[PlannedProbe] = []
    for round_ in range(max((len(g) for g in groups.values()), default=0)):
        chosen += [g[round_] for g in groups.values() if round_ < len(g)]
        if len(chosen) >= most:
            break
    return chosen[:most]


def _may_probe(planned: PlannedProbe, state: NodeState) -> bool:
    target = planned.probe.target
    try:
        address = ipaddress.IPv4Address(target)
    except ValueError:
        return False
    if address.is_loopback or address.is_multicast or address.is_unspecified or address.is_link_local:
        return False
    if planned.what == "published":  # a node's address: one swarm knows, where a manager can tell
        nodes = state.swarm_nodes
        return nodes is None or target in {n.addr for n in nodes.values()} | _node_vteps(state)
    subnets = _subnets(state).get(planned.network)
    if subnets is None or subnets == []:  # (IPAM's subnets come from swarm, not from gossip)
        return subnets is not None
    return any(address in subnet for subnet in subnets if subnet is not None)


def _subnets(state: NodeState) -> dict[str, list]:
    """Each network's subnets, parsed once for all of its probes (20,000 at 5000 x 4); None for
    one that is none: nothing can be said to lie in it."""
    if "probe-subnets" not in state.memo:
        def parsed(text: str) -> ipaddress.IPv4Network | None:
            try:
                return ipaddress.IPv4Network(text, strict=False)
            except ValueError:
                return None
        state.memo["probe-subnets"] = {}
        for view in state.views:
            state.memo["probe-subnets"].setdefault(view.name, [parsed(s) for s in view.subnets])
    return state.memo["probe-subnets"]


def _node_vteps(state: NodeState) -> set[str]:
    """The VXLAN addresses NetworkDB gives the endpoints of swarm's tasks: nodes' --data-path-addr."""
    return {t.host_ip for v in state.views for t in v.all_endpoints() if t.host_ip}


def _plan_paths(lb: LoadBalancer, state: NodeState) -> list[PlannedProbe]:
    view, src = lb.network, lb.datapath.path
    # endpoints being drained (weight 0 here) last: their containers may be stopping
    draining = {d.address for s in lb.datapath.ipvs or [] for d in s.dests if d.weight == 0}
    by_node: dict[str, list[TaskView]] = {}
    for ep in sorted(remote_endpoints(view, state).values(),
                     key=lambda t: (t.ip in draining, _ip_order(t.ip))):
        by_node.setdefault(ep.host_ip or "", []).append(ep)
    full = probe_mtu(view, state)
    return [PlannedProbe(Probe("echo", src, ep.ip, size=size), view.name, "path", node_ip, name,
                         namespace=lb.datapath.name)
            for node_ip, eps in sorted(by_node.items()) for ep in eps[:ECHO_TARGETS_PER_NODE]
            for name, size in (("small", ECHO_SMALL), ("full", full))]


def _plan_backends(lb: LoadBalancer) -> list[PlannedProbe]:
    """Each backend of a service whose port the node knows (a published one): from ingress_sbox
    at the published port (the task redirects it to the target), from a network's own load
    balancer at the target port (what clients of the VIP ask for)."""
    view, plan = lb.network, []
    for svc in sorted(view.vip_services(), key=lambda s: s.name):
        ports = sorted({p.published if view.ingress else p.target for p in svc.ports
                        if p.protocol in (None, "tcp")})
        # a destination at weight 0 is being drained (stopping, failing its health check): the
        # load balancer sends it nothing new, and its container may already be gone
        ipvs = lb.datapath.ipvs_by_mark.get(svc.fwmark) if svc.fwmark else None
        draining = {d.address for d in (ipvs.dests if ipvs else []) if d.weight == 0}
        for task in sorted(svc.tasks, key=lambda t: _ip_order(t.ip)):
            if task.ip in draining:
                continue
            plan += [PlannedProbe(Probe("tcp", lb.datapath.path, task.ip, port), view.name, "backend",
                                  task.host_ip or "", service=svc.name, task=task.name,
                                  namespace=lb.datapath.name) for port in ports]
    return plan


def _plan_published(state: NodeState) -> list[PlannedProbe]:
    """Every node's routing-mesh entry: its address (ingress's peers are every node of the swarm)
    at each published TCP port. From this node, a connection to another node crosses that node's
    firewall (DOCKER-USER, FORWARD) as a client's does; to its own address it does not."""
    ingress = next((v for v in state.views if v.ingress and v.instantiated), None)
    if ingress is None:
        return []
    ports = sorted({(p.published, svc.name) for svc in ingress.services.values() for p in svc.ports
                    if p.protocol in (None, "tcp")})
    seen: dict[int, str] = {}
    for port, name in ports:
        seen.setdefault(port, name)
    return [PlannedProbe(Probe("tcp", "", ip, port), ingress.name, "published", ip, service=service,
                         namespace="host")
            for ip in sorted({ip for _, ip in ingress.peers}, key=_ip_order)
            for port, service in seen.items()]


def label_by_address(ip: str, state: NodeState) -> str:
    """A node by its address: its hostname where this node knows it (a manager), else the address.
    A data-path address (--data-path-addr) is not the node's address in /nodes: it is known
    through the tasks swarm placed on the node whose endpoints NetworkDB lists at that address."""
    nodes = state.swarm_nodes or {}
    for node in nodes.values():
        if node.addr == ip:
            return f"{node.hostname} ({ip})"
    node = nodes.get(vtep_owners(state).get(ip, ""))
    return f"{node.hostname} ({ip})" if node else f"node {ip}"


def vtep_owners(state: NodeState) -> dict[str, str]:
    """VTEP address -> node ID, from swarm's tasks (a manager) and NetworkDB's endpoints."""
    if "vtep_owners" not in state.memo:
        tasks = state.swarm_tasks or {}
        state.memo["vtep_owners"] = {ep.host_ip: tasks[ep.task_id].node_id for view in state.views
                                     for ep in view.all_endpoints()
                                     if ep.host_ip and ep.task_id in tasks and tasks[ep.task_id].node_id}
    return state.memo["vtep_owners"]


def probe_result(planned: PlannedProbe, state: NodeState) -> str | None:
    found = (state.probe_results or {}).get(planned.probe.key)
    return found.get("result") if isinstance(found, dict) else None


BROKEN = frozenset({"timeout", "unreachable", "too-big"})  # what says the path does not carry it


@register_check(
    CheckInfo(
        "probe-node-unreachable",
        "--probe: no endpoint of another node answered an echo request on an overlay network.",
        "Traffic on that network between this node and that one is lost: allow UDP 4789 (or the "
        "swarm's data-path port) and, on encrypted networks, ESP between the two nodes; then run "
        "ssd there.", layer="probe"),
    CheckInfo(
        "probe-mtu-blackhole",
        "--probe: small echo requests to another node's endpoints are answered, full-size ones (the "
        "network's MTU, DF set) are not.",
        "The underlay between the nodes cannot carry a full VXLAN packet (a VPN, a smaller cloud MTU, "
        "fragments dropped): lower the network's MTU (com.docker.network.driver.mtu) or fix the path.",
        layer="probe"),
    scope="probe")
def check_probe_paths(_: NodeState, state: NodeState) -> list[Finding]:
    """Per network and other node: no small echo answered (unreachable), or small ones answered
    and no full-size one (an MTU black hole). Only probes that ran count."""
    groups: dict[tuple[str, str], list[PlannedProbe]] = {}
    for planned in plan_probes(state):
        if planned.what == "path":
            groups.setdefault((planned.network, planned.node_ip), []).append(planned)
    findings = []
    for (network, node_ip), probes in groups.items():
        small = [p for p in probes if p.size == "small"]
        full = [p for p in probes if p.size == "full"]
        got = {p.probe.key: probe_result(p, state) for p in probes}
        label = label_by_address(node_ip, state)
        where, src = probes[0].namespace, probes[0].probe.source
        asked = sorted({p.probe.target for p in small}, key=_ip_order)
        actual = {f"{p.probe.target} {p.probe.size} bytes": got[p.probe.key] for p in probes}
        # (a sample capped at MAX_PROBES may have sent a node one size and not the other)
        if small and all(got[p.probe.key] in BROKEN for p in small):
            findings.append(Finding(
                "probe-node-unreachable", f"on network {network}, no echo request from {where} was "
                f"answered by {label}: {count(len(asked), 'endpoint')} asked ({', '.join(asked)}), "
                f"{PROBE_TRIES} requests each; traffic on this network to and from that node is lost",
                network=network, namespace=where, subject=label, expected="an echo reply",
                actual=actual, hint=f"nsenter --net={shq(src)} ping -c 3 {shq(asked[0])}; "
                "tcpdump -ni any udp port 4789 (on both nodes)"))
        elif full and any(got[p.probe.key] == "ok" for p in small) and \
                all(got[p.probe.key] in BROKEN for p in full):
            size = full[0].probe.size
            findings.append(Finding(
                "probe-mtu-blackhole", f"on network {network}, {label} answers {ECHO_SMALL}-byte echo "
                f"requests from {where} but none of {size} bytes (the network's MTU, DF set): the path "
                "between the nodes does not carry full-size packets", network=network, namespace=where,
                subject=label, expected=f"echo replies at {ECHO_SMALL} and {size} bytes", actual=actual,
                hint=f"nsenter --net={shq(src)} ping -c 3 -M do -s {size - 28} {shq(asked[0])}; "
                "ip link (the MTU of each hop's interface)"))
    return findings


@register_check(
    CheckInfo(
        "probe-backend-timeout",
        "--probe: a TCP connection from the load balancer to a backend task's address and port got "
        "no answer at all (a refusal would mean the path works).",
        "The load balancer sends requests to a task it cannot reach: look at the task's node (its "
        "overlay, its firewall); `docker service update --force <service>`.", layer="probe"),
    CheckInfo(
        "probe-published-timeout",
        "--probe: a TCP connection to a node's address at a published port (the routing mesh's entry) "
        "got no answer at all.",
        "Clients of that port on that node time out: look at that node's firewall (DOCKER-USER, a "
        "cloud security group) and its DOCKER-INGRESS rules (run ssd there).", layer="probe"),
    scope="probe")
def check_probe_connections(_: NodeState, state: NodeState) -> list[Finding]:
    """A connection that got no answer at all (a refusal means the path works: a note)."""
    findings = []
    for planned in plan_probes(state):
        result = probe_result(planned, state)
        if planned.what not in ("backend", "published") or result not in BROKEN:
            continue
        probe, label = planned.probe, label_by_address(planned.node_ip, state)
        if planned.what == "backend":
            findings.append(Finding(
                "probe-backend-timeout", f"on network {planned.network}, a TCP connection from "
                f"{planned.namespace} to task {planned.task} of service {planned.service} "
                f"({probe.target}:{probe.port}, on {label}) got no answer ({result}): the load "
                "balancer sends it requests it cannot deliver", network=planned.network,
                namespace=planned.namespace, service=planned.service, subject=planned.task,
                expected="a connection or a refusal", actual=result,
                hint=f"nsenter --net={shq(probe.source)} nc -zv -w 2 {shq(probe.target)} {probe.port}"))
        else:
            findings.append(Finding(
                "probe-published-timeout", f"a TCP connection from this node to {label} at published "
                f"port {probe.port} (service {planned.service}) got no answer ({result}): clients of "
                "that port on that node time out", network=planned.network, namespace="host",
                service=planned.service, subject=f"{probe.port}/tcp on {label}",
                expected="a connection or a refusal", actual=result,
                hint=f"nc -zv -w 2 {shq(probe.target)} {probe.port}; iptables -S DOCKER-USER (on that node)"))
    return findings


def probe_notes(state: NodeState) -> list[str]:
    """Refusals (the path works, nothing listens) and what could not be probed."""
    refused: dict[str, list[str]] = {}
    not_probed = 0
    for planned in plan_probes(state):
        result = probe_result(planned, state)
        if result in ("not-probed", "error"):
            not_probed += 1
        elif result == "refused":
            probe = planned.probe
            what = (f"task {planned.task} ({probe.target}:{probe.port})" if planned.what == "backend"
                    else f"{label_by_address(planned.node_ip, state)} port {probe.port}")
            refused.setdefault(planned.service or "", []).append(what)
    notes = [f"--probe: service {service}: {', '.join(whats)} refused the connection: the path works and "
             "nothing listens there (the application, or a task still starting)"
             for service, whats in sorted(refused.items())]
    if not_probed:
        notes.append(f"--probe: {count(not_probed, 'probe')} could not be sent or did not finish "
                     f"within {PROBE_LIMIT:g} s: not judged")
    outside, over = state.memo.get("probes-refused", (0, 0))
    if outside:
        notes.append(f"--probe: {count(outside, 'target')} outside the networks' subnets or the swarm's "
                     "nodes (from NetworkDB's entries): not probed")
    if over:
        notes.append(f"--probe: {MAX_PROBES} of {MAX_PROBES + over} probes tried (at most {MAX_PROBES} a "
                     "sample), spread over every network path, service and node's ports: "
                     f"{count(over, 'probe')} not sent")
    return notes


def read_probes(collector: Collector, state: NodeState, reading: Reading) -> None:
    """--probe: send what plan_probes() plans (the layers are read: it knows where from and to
    whom), and count per network what came back."""
    if not collector.will_probe():  # planning alone is 7% of a run at 5000 x 4
        return
    plan = plan_probes(state)
    state.probe_results = collector.probe([p.probe for p in plan])
    if state.probe_results is None:
        return
    reading.notes += probe_notes(state)
    results = reading.results
    by_network = {r.view.name: r for r in results}
    for lb in state.lbs:
        if lb.network.name in by_network and not state.model.per_container:
            by_network[lb.network.name].probe = ProbeSummary(lb.datapath.name,
                                                             mtu=probe_mtu(lb.network, state))
    answered = ("ok", "refused")
    for planned in plan:
        summary = by_network[planned.network].probe if planned.network in by_network else None
        result = probe_result(planned, state)
        if summary is None or result in ("not-probed", "error", None):
            continue  # not judged (probe_notes says how many)
        if planned.what == "path":
            seen = summary.paths.setdefault(planned.node_ip, {"small": False, "full": False})
            seen[planned.size] |= result == "ok"
        elif planned.what == "backend":
            summary.backends += 1
            summary.backends_answered += result in answered
        else:
            entry = summary.entries.setdefault(planned.node_ip, {"asked": 0, "answered": 0})
            entry["asked"] += 1
            entry["answered"] += result in answered
            summary.published += 1
            summary.published_answered += result in answered
    for result in results:
        if result.probe is not None:
            seen = result.probe.paths.values()
            result.probe.nodes = len(seen)
            result.probe.reached = sum(s["small"] for s in seen)
            result.probe.full = sum(s["small"] and s["full"] for s in seen)


def probe_json(net: NetworkResult, status: str) -> dict | None:
    return None if net.probe is None else {**dataclasses.asdict(net.probe), "status": status}


def describe_probe(net: NetworkResult) -> tuple[str, str, bool] | None:
    pr = net.probe
    if pr is None:
        return None
    parts = [f"other nodes {pr.reached}/{pr.nodes} ({pr.full}/{pr.nodes} at {pr.mtu} bytes)"]
    if pr.backends:
        parts.append(f"backends {pr.backends_answered}/{pr.backends}")
    if pr.published:
        parts.append(f"published ports {pr.published_answered}/{pr.published}")
    return (f"Probing network {net.view.name} from {pr.namespace} (answered/asked)", ", ".join(parts),
            True)


LAYER = declare_layer(Layer("probe", 60, "traffic (--probe), against the paths every layer above says exist",
                            was_read=lambda net: net.probe is not None, describe=describe_probe,
                            json=probe_json))
