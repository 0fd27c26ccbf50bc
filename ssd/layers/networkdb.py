"""Layer "networkdb": swarm against NetworkDB on this node. On a manager, the tasks and VIPs swarm
runs (/tasks, /services) against what this node's NetworkDB holds (network inspect -v); on every
node, NetworkDB against itself (duplicate IPs, peers, zombies). Its checks and its block."""
from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from ssd.base import count, shq
from ssd.catalog import CheckInfo, Layer, declare_layer, register_check
from ssd.model import MIN_STATE_AGE, Finding, TERMINAL
from ssd.views import (
    build_health_checked, build_service_aliases, build_service_vips, build_swarm_nodes, build_swarm_tasks,
    build_updating,
)

if TYPE_CHECKING:
    from ssd.collect import Collector
    from ssd.model import NetworkResult, NetworkView, NodeState, Reading, SwarmNode, SwarmTask


def _settled(task: SwarmTask, state: NodeState) -> bool:
    since = task.since
    return since is not None and state.now is not None and state.now - since >= MIN_STATE_AGE


def swarm_node_label(state: NodeState, node_id: str) -> str:
    node = (state.swarm_nodes or {}).get(node_id)
    return f"{node.hostname} ({node.state})" if node else node_id[:12] or "no node"


def _networkdb_finding(check: str, message: str, view: NetworkView, service: str | None,
                          subject: str, expected: Any, actual: Any) -> Finding:
    who = shq(service) if service else "<service>"
    return Finding(check, message, network=view.name, service=service, subject=subject, expected=expected,
                   actual=actual, hint=f"docker service ps {who} --no-trunc; "
                                       f"docker network inspect -v {shq(view.name)}")


def left_gossip(view: NetworkView, state: NodeState) -> dict[str, SwarmNode]:
    """Nodes swarm calls ready, running a settled task on the network that NetworkDB on this
    node does not list, and that it no longer lists among the network's peers either (compared by
    address: peers are named by NetworkDB's own node IDs). A stopped dockerd leaves the gossip at
    once, while swarm calls its node ready until its heartbeats are missed; a cut gossip port
    (7946) leaves it ready for good. Judged only where this node finds itself among the peers,
    so that the addresses compare."""
    key = ("left_gossip", view.id)
    if key not in state.memo:
        peers = {ip for _, ip in view.peers}
        listed = {t.task_id for svc in view.services.values() for t in svc.tasks}
        left: dict[str, SwarmNode] = {}
        # the ready nodes missing from the peers: none, mostly, and then no task is looked at
        outside = {node_id: node for node_id, node in (state.swarm_nodes or {}).items()
                   if node.state == "ready" and node.addr and node.addr not in peers}
        if state.swarm_tasks is not None and state.node_addr in peers and outside:
            for task in swarm_tasks_on(state, view.id):
                node = outside.get(task.node_id)
                if node is not None and view.id in task.addresses and task.state == "running" \
                        and not task.stopping and task.id not in listed and _settled(task, state):
                    left[node.id] = node
        state.memo[key] = left
    return state.memo[key]


def gossip_leavers(state: NodeState) -> list[str]:
    """The hostnames of the nodes that have left this node's gossip on some network while swarm
    still calls them ready (left_gossip), for the node check to look again past swarm's heartbeat."""
    return sorted({node.hostname or node.id[:12] for view in state.views
                   for node in left_gossip(view, state).values()})


@register_check(
    CheckInfo(
        "swarm-task-missing",
        "A task swarm runs on the network (past the convergence window) is not in this node's "
        "NetworkDB.",
        "This node neither load-balances nor resolves that task (moby#41885, #53141); `docker service "
        "update --force <service>`; if the node's gossip is cut, run gossip-consistency.",
        layer="networkdb"),
    CheckInfo(
        "task-ip-mismatch",
        "A task's IP in NetworkDB differs from the address swarm allocated it on the network.",
        "Its entry is stale (a reused endpoint); `docker service update --force <service>`.",
        layer="networkdb"),
    scope="network")
def check_swarm_tasks(view: NetworkView, state: NodeState) -> list[Finding]:
    """Every task swarm runs on the network, settled, on a node that is up: NetworkDB lists it,
    at the address swarm allocated it."""
    if state.swarm_tasks is None:
        return []
    listed = {t.task_id: (svc.name, t) for svc in view.services.values() for t in svc.tasks}
    judged: list[tuple[str, Finding]] = []  # by task ID: in that order, whatever swarm's order
    for task in swarm_tasks_on(state, view.id):
        ip = task.addresses.get(view.id)
        if not ip:
            continue
        entry = listed.get(task.id)
        if entry is not None and entry[1].ip == ip:
            continue  # listed where swarm put it: nothing to judge, whatever its age
        node = (state.swarm_nodes or {}).get(task.node_id)
        if task.state != "running" or task.stopping or not _settled(task, state) or (
                node is not None and node.state != "ready"):
            continue
        service = (state.service_names or {}).get(task.service)
        if entry is None:
            finding = _networkdb_finding(
                "swarm-task-missing", f"network {view.name}: swarm runs task {task.id[:12]} "
                f"{'of ' + service + ' ' if service else ''}on {swarm_node_label(state, task.node_id)} "
                f"at {ip}, but NetworkDB on this node does not list it",
                view, service, ip, "listed", "absent")
            gone = left_gossip(view, state).get(task.node_id)
            if gone is not None:
                finding.message += (f"; nor does it list {gone.hostname} ({gone.addr}) among the network's "
                                    "peers: that node's gossip with this one is cut (TCP and UDP 7946 "
                                    "between them), or its dockerd stopped and swarm has not marked it "
                                    "down yet")
                finding.hint = (f"docker node ls (a stopped node turns Down within 3 heartbeats); "
                                f"ssd {view.name} gossip-consistency")
            judged.append((task.id, finding))
        else:  # listed at another address
            judged.append((task.id, _networkdb_finding(
                "task-ip-mismatch", f"network {view.name}: task {entry[1].name} is at {ip} for swarm but "
                f"at {entry[1].ip} in NetworkDB", view, entry[0], entry[1].ip, ip, entry[1].ip)))
    return [finding for _, finding in sorted(judged, key=lambda pair: pair[0])]


@register_check(
    CheckInfo(
        "networkdb-task-zombie",
        "NetworkDB on this node lists a task swarm says has stopped, or runs on a node that is down, "
        "past the convergence window.",
        "Requests still go to a dead task (moby#35548, #41885); it should leave with its node's "
        "entries; else `docker service update --force <service>` or restart dockerd on this node.",
        layer="networkdb"),
    scope="network")
def check_zombies(view: NetworkView, state: NodeState) -> list[Finding]:
    """A task NetworkDB still lists, that swarm says stopped (or whose node is down), settled."""
    if state.swarm_tasks is None:
        return []
    findings = []
    for svc in sorted([*view.services.values(), *view.departed], key=lambda s: s.name):
        for entry in svc.tasks:
            task = state.swarm_tasks.get(entry.task_id)
            if task is None:
                continue  # unknown to swarm: see zombie_notes (no time to judge it by)
            node = (state.swarm_nodes or {}).get(task.node_id)
            if task.state in TERMINAL:
                why = f"swarm says it is {task.state} (desired {task.desired_state})"
            elif node is not None and node.state == "down" and node.since is not None and \
                    state.now - node.since >= MIN_STATE_AGE:
                why = f"its node {node.hostname} is down"
            else:
                continue
            if not _settled(task, state):
                continue
            findings.append(_networkdb_finding(
                "networkdb-task-zombie", f"network {view.name}: NetworkDB on this node lists task "
                f"{entry.name} ({entry.ip}), but {why}", view, svc.name, entry.ip, "not listed",
                f"{entry.name} {entry.ip}"))
    return findings


def zombie_notes(views: list[NetworkView], state: NodeState) -> list[str]:
    """Tasks NetworkDB lists that swarm does not know at all: a service just removed (they
    leave within seconds), or tasks left behind (20.10 keeps a removed job's running tasks)."""
    if state.swarm_tasks is None:
        return []
    notes = []
    for view in views:
        unknown = sorted(t.name for svc in view.services.values() for t in svc.tasks
                         if t.task_id not in state.swarm_tasks)
        if unknown:
            notes.append(f"network {view.name}: NetworkDB lists {count(len(unknown), 'task')} swarm "
                         "does not know "
                         f"({', '.join(unknown[:3])}{', ...' if len(unknown) > 3 else ''}): their service "
                         "was removed; if they stay, they are orphans (docker ps on their node)")
    return notes


@register_check(
    CheckInfo(
        "duplicate-ip",
        "Two endpoints of one network hold the same IP in this node's NetworkDB (tasks, VIPs or the "
        "load balancer).",
        "Half the traffic for that IP goes to the wrong endpoint (moby#33795, #41576, #36797); "
        "`docker service update --force` the newer service, or remove the stale endpoint.",
        layer="networkdb"),
    scope="network")
def check_duplicate_ips(view: NetworkView, state: NodeState) -> list[Finding]:
    def holders() -> Iterator[tuple[str | None, str, str, str]]:  # IP, key, label's two halves
        for svc in view.services.values():
            yield svc.vip, f"vip:{svc.name}", "VIP of ", svc.name
            for t in svc.tasks:
                yield t.ip, t.endpoint_id or t.name, "task ", t.name
        for t in view.others:
            yield t.ip, t.endpoint_id or t.name, "endpoint ", t.name or t.endpoint_id[:12]
        lb = view.lb_endpoint
        if lb:
            yield lb.ip, lb.endpoint_id or view.lb_key, "this node's load balancer ", view.lb_key
    # Labels are made only for the addresses held twice: one label per endpoint, 25,000 at 5000 x 4,
    # was most of this check's time.
    first: dict[str, tuple[str, str, str]] = {}  # IP -> its first holder's key and label halves
    clashes: dict[str, dict[str, str]] = {}  # IP held by two keys or more -> key -> label
    for ip, key, what, name in holders():
        if not ip:
            continue
        held = first.setdefault(ip, (key, what, name))
        if held[0] != key:
            clashes.setdefault(ip, {held[0]: held[1] + held[2]}).setdefault(key, what + name)
    findings = []
    for ip, who in sorted(clashes.items()):
        if len(who) > 1:
            labels = sorted(who.values())
            findings.append(Finding(
                "duplicate-ip", f"network {view.name}: {ip} is held by {' and '.join(labels)}",
                network=view.name, subject=ip, expected="one endpoint", actual=labels,
                hint=f"docker network inspect -v {shq(view.name)}"))
    return findings


@register_check(
    CheckInfo(
        "networkdb-peer-missing",
        "NetworkDB on this node lists an endpoint with no Host IP: the overlay has no peer record for it "
        "(moby#35671), so no neighbour or FDB entry leads to it while load balancers still send it traffic.",
        "Connections to that task fail part of the time; `docker service update --force <service>` gives it "
        "a new endpoint; if it comes back, restart dockerd on the node that runs it.", layer="networkdb"),
    scope="network")
def check_peer_records(view: NetworkView, state: NodeState) -> list[Finding]:
    """Every endpoint NetworkDB lists carries the Host IP of its node's peer record. A peer record
    is published before the endpoint's entry and withdrawn after it: one without it is no
    transient (a finding must still show in both samples of a run to count)."""
    lacking = [t for t in view.all_endpoints() if not t.host_ip]  # (then sorted: none, usually)
    if not lacking:
        return []
    owner = {t.endpoint_id: svc.name for svc in view.services.values() for t in svc.tasks}
    findings = []
    for task in sorted(lacking, key=lambda t: (t.name, t.ip)):
        service = owner.get(task.endpoint_id)
        findings.append(Finding(
            "networkdb-peer-missing", f"network {view.name}: NetworkDB on this node lists "
            f"{'task' if service else 'endpoint'} {task.name or task.endpoint_id[:12]} ({task.ip}) with no "
            "Host IP: no overlay peer record leads to it, so no node programs a neighbour or FDB entry "
            "towards it while load balancers send it traffic (moby#35671)", network=view.name,
            service=service, subject=task.ip, expected="a Host IP (its node's peer record)", actual=None,
            hint=f"docker network inspect -v {shq(view.name)}; "
                 f"docker service ps {shq(service) if service else '<service>'}"))
    return findings


@register_check(
    CheckInfo(
        "vip-mismatch",
        "A service's VIP in NetworkDB differs from the one swarm allocated on the network, or swarm "
        "holds two VIPs for it there.",
        "Clients of the VIP reach nothing or the wrong service (moby#26733); "
        "`docker service update --force <service>`, else recreate the service.",
        layer="networkdb"),
    scope="network")
def check_vips(view: NetworkView, state: NodeState) -> list[Finding]:
    if state.service_vips is None:
        return []
    findings = []
    for svc in sorted(view.services.values(), key=lambda s: s.name):
        swarm = state.service_vips.get(svc.name, {}).get(view.id)
        if not swarm or not svc.vip or svc.ipv6:
            continue
        if len(swarm) > 1 or svc.vip not in swarm:
            findings.append(_networkdb_finding(
                "vip-mismatch", f"network {view.name}: service {svc.name} has VIP {svc.vip} in NetworkDB, "
                f"swarm allocated it {', '.join(swarm)}", view, svc.name, svc.vip, swarm, svc.vip))
    return findings


def swarm_knowledge(raw_services: list[dict] | None, raw_tasks: Iterable[dict] | None,
                    raw_nodes: list[dict] | None, listed: set[str] | None = None) -> dict[str, Any]:
    """What a manager knows of swarm (/services, /tasks, /nodes), as NodeState's fields: its
    own check reads it, and --all-nodes judges the workers' NetworkDB against it. listed: the
    tasks NetworkDB lists, when known (build_swarm_tasks keeps only those of the ended tasks)."""
    return {"swarm_tasks": build_swarm_tasks(raw_tasks, listed), "swarm_nodes": build_swarm_nodes(raw_nodes),
            "service_vips": build_service_vips(raw_services),
            "service_aliases": build_service_aliases(raw_services),
            "health_checked": build_health_checked(raw_services), "updating": build_updating(raw_services),
            "service_names": None if raw_services is None else {
                s.get("ID", ""): (s.get("Spec") or {}).get("Name", "") for s in raw_services}}


def tasks_by_network(swarm_tasks: dict[str, SwarmTask]) -> dict[str, list[SwarmTask]]:
    """Swarm's tasks by the network they are attached to, in swarm's order: a network's checks
    look at its own tasks, not the whole swarm's (in fleet mode, once for every worker)."""
    index: dict[str, list[SwarmTask]] = {}
    for task in swarm_tasks.values():
        for net_id in task.addresses:
            index.setdefault(net_id, []).append(task)
    return index


def swarm_tasks_on(state: NodeState, net_id: str) -> list[SwarmTask]:
    """The tasks swarm attached to a network (tasks_by_network, made once per state)."""
    if "tasks_by_network" not in state.memo:
        state.memo["tasks_by_network"] = tasks_by_network(state.swarm_tasks or {})
    return state.memo["tasks_by_network"].get(net_id, [])


def swarm_counts(state: NodeState, view: NetworkView) -> tuple[int, int]:
    """What swarm runs on a network, as the swarm block counts it: running tasks, VIPs."""
    return (sum(1 for t in swarm_tasks_on(state, view.id) if t.state == "running" and not t.stopping),
            sum(1 for vips in (state.service_vips or {}).values() if view.id in vips))


# A layer's block for one network: _describe_<layer> gives (header, summary, shown when clean),
# or None when the layer was not read there (its findings, if any, follow the networks).

def describe_networkdb(net: NetworkResult) -> tuple[str, str, bool]:
    if net.swarm is None:  # a worker: NetworkDB's view is still checked against itself
        return (f"Checking NetworkDB's view of network {net.view.name}",
                count(sum(1 for _ in net.view.all_endpoints()), "endpoint"), False)
    return (f"Comparing swarm with NetworkDB for network {net.view.name}",
            f"{net.swarm[0]} running tasks, {net.swarm[1]} VIPs", True)


def note_zombies(collector: Collector, state: NodeState, reading: Reading) -> None:
    """A read phase: the tasks NetworkDB lists that swarm does not know, as notes."""
    reading.notes += zombie_notes([v for v in state.views if v.instantiated], state)


def attachments_known(state: NodeState) -> bool:
    """Whether swarm's tasks say where they are attached (older snapshots kept no attachments:
    then swarm's tasks were not compared with NetworkDB, and the report must not claim so)."""
    tasks = state.swarm_tasks
    return tasks is not None and (not tasks or any(t.addresses for t in tasks.values()))


def summarise_networkdb(result: NetworkResult, state: NodeState, reading: Reading) -> None:
    if attachments_known(state) and result.view.instantiated:
        result.swarm = swarm_counts(state, result.view)


def networkdb_json(net: NetworkResult, status: str) -> dict | None:
    return None if net.swarm is None else {"status": status, "tasks": net.swarm[0], "vips": net.swarm[1]}


LAYER = declare_layer(Layer("networkdb", 20, "NetworkDB on this node, against swarm (or itself)",
                            summarise=summarise_networkdb, describe=describe_networkdb, json=networkdb_json,
                            json_key="swarm"))
