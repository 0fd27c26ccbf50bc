"""One node check: run_once reads the views, then each layer's datapath phase by phase into one
NodeState and runs the checks; settle takes a second sample and keeps what both show;
node_check is the whole node mode, live or from a snapshot."""
from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from ssd.base import CheckError, _ip_order, count
from ssd.catalog import LAYERS, known_issues, run_checks
from ssd.collect import Collector, start_read_ahead
from ssd.converging import mark_converging, motion_of, moved
from ssd.engine import engine_of, read_node
from ssd.layers.dns import read_dns_layer
from ssd.layers.host import read_host_layer
from ssd.layers.ingress import read_ingress
from ssd.layers.lb import read_health, read_load_balancers
from ssd.layers.networkdb import attachments_known, gossip_leavers, note_zombies, swarm_knowledge
from ssd.layers.overlay import local_vteps, read_overlay_layer
from ssd.layers.probe import read_probes
from ssd.model import NetworkResult, NodeState, NotChecked, Reading, RunResult
from ssd.snapshot import SnapshotCollector, load_snapshot, replaying, snapshot_document
from ssd.views import build_network_view, port_changes, resolve_networks, separate_departed, service_protocols

if TYPE_CHECKING:
    from ssd.engine import Engine
    from ssd.model import NetworkView, NodeInfo


def run_once(collector: Collector, node: NodeInfo, wanted: list[str]) -> RunResult:
    """One sample of this node, read phase by phase into one NodeState, then checked. The order
    is the phases' own: the load balancers before the DNS (asked from a container of a network
    whose load balancer was read) and before the ingress (its sandbox is the ingress load
    balancer); the overlay before the host, whose rules are read when an overlay is encrypted."""
    reading = Reading(node)
    state = read_views(collector, node, wanted, reading)
    blind = why_blind(collector, node, state.views)
    if blind:  # nothing of the datapath can be read: the views are still checked against swarm
        reading.not_checked.append(NotChecked(blind[0], blind[1]))
        results = [NetworkResult(view, None, False, "not checked: " + blind[0]) for view in state.views]
        return RunResult(node, results, run_checks(state), reading.not_checked, reading.notes, [], False,
                         reading.absent, leavers=gossip_leavers(state))
    for phase in PHASES:
        phase(collector, state, reading)
    results, host_ports = reading.results, reading.host_ports
    host_checked = state.ingress is not None and state.host is not None and state.host.rules is not None
    vteps = {ip for view in state.views if view.instantiated for ip in local_vteps(view, state)}
    findings = mark_converging(run_checks(state), state)
    return RunResult(node, results, findings, reading.not_checked, reading.notes, host_ports, host_checked,
                     reading.absent, sorted(vteps - {node.addr}, key=_ip_order), gossip_leavers(state),
                     motion_of(state, findings))


def read_views(collector: Collector, node: NodeInfo, wanted: list[str], reading: Reading) -> NodeState:
    """The control plane: the networks asked for (ingress always), NetworkDB's view of each, and
    on a manager swarm's services, tasks and nodes."""
    model = node.engine
    if not model.known:
        reading.not_checked.append(NotChecked("engine", f"engine {model.version} is newer than the versions "
                                        "ssd knows (up to 29.x); checked with the 29.x datapath model"))
    listing = collector.networks()
    chosen = resolve_networks(listing, wanted, None if node.manager else reading.absent)
    for term in reading.absent:
        reading.notes.append(f"network {term!r} is not instantiated on this node: nothing to check here "
                             "(a worker lists only the swarm networks its tasks use; a manager would "
                             "tell an unknown name from one with no task here)")
    if not any(n.get("Ingress") for n in chosen):
        chosen += [n for n in listing if n.get("Ingress") and n.get("Scope") == "swarm"]
    # The namespaces are read in a child process while the API answers what follows.
    collector.read_ahead(chosen, model.lb_location == "named")
    raw_services = collector.services() if node.manager else None
    if not node.manager:
        reading.notes.append("worker node: no /services or /tasks here, so a weight-0 backend cannot be "
                             "told from a draining task (tolerated), published-port protocols are "
                             "unknown (any protocol accepted), swarm's tasks and VIPs are not compared "
                             "with NetworkDB, services' DNS aliases are not asked for and a dnsrr "
                             "service's name may lack a task (run ssd on a manager for those)")
    protocols = service_protocols(raw_services) if node.manager else None
    changes = port_changes(raw_services)
    views: list[NetworkView] = []
    for raw in chosen:
        inspected = collector.network(raw["Id"])
        if inspected is None:
            reading.not_checked.append(NotChecked(f"network {raw.get('Name')}", "vanished while ssd ran"))
            continue
        view = build_network_view(inspected, protocols, changes)
        if view.instantiated or (wanted and not view.ingress):
            views.append(view)  # by default, only the networks this node has
    knowledge = swarm_knowledge(None, None, None)
    if node.manager:
        # After NetworkDB's views: of the tasks that have ended (a real swarm keeps 5 per slot),
        # only those NetworkDB still lists become SwarmTasks; /tasks is streamed, never held whole.
        listed = {t.task_id for view in views for t in view.all_endpoints() if t.task_id}
        knowledge = swarm_knowledge(raw_services, collector.tasks(), collector.nodes(), listed)
    for view in views:
        ipv6 = sorted(s.name for s in view.services.values() if s.ipv6)
        if ipv6:
            reading.notes.append(f"network {view.name}: service(s) {', '.join(ipv6)} have an IPv6 VIP; "
                                 "libnetwork's load balancer is IPv4-only, so ssd does not check them")
    state = NodeState(model, collector.netns_dir, views, **knowledge,
                      now=collector.clock() if node.manager else None,
                      data_path_port=node.data_path_port, node_addr=node.addr)
    reading.notes += separate_all_departed(state)
    reading.notes += drained_notes(state, node)
    return state


def drained_notes(state: NodeState, node: NodeInfo) -> list[str]:
    """A manager drained of work (common practice) has no task, so no overlay but ingress is
    instantiated on it: say which layers have nothing to read here, and where to look."""
    me = (state.swarm_nodes or {}).get(node.id)
    if me is None or me.availability == "active":
        return []
    how = {"drain": "drained", "pause": "paused"}.get(me.availability, me.availability)
    return [f"this manager is {how} (availability {me.availability}): swarm runs no new task here, so "
            "overlays other than ingress are not instantiated on it and their load balancers, overlay "
            "and NetworkDB view cannot be read here; its ingress (the routing mesh still takes "
            "published ports) is checked. ssd --all-nodes compares every other node's NetworkDB "
            "with swarm from here"]


def separate_all_departed(state: NodeState) -> list[str]:
    """Earlier incarnations of a name set apart on every network (managers); their notes."""
    if state.swarm_tasks is None or state.service_names is None:
        return []
    notes = []
    for view in state.views:
        separate_departed(view, state.swarm_tasks, state.service_names, state.service_vips or {})
        notes += departed_notes(view)
    return notes


def departed_notes(view: NetworkView) -> list[str]:
    """What a manager set apart as earlier incarnations of a name (separate_departed)."""
    return [f"network {view.name}: {count(len(old.tasks), 'task')} listed under {old.name} "
            f"({', '.join(sorted((t.ip for t in old.tasks), key=_ip_order))}) belong to an earlier "
            f"service of that name (ID {old.service_id[:12]}, removed or replaced: docker stack rm "
            "and deploy), which swarm is stopping: judged as that service, with its own load "
            "balancer, not as the current one's; they leave within its stop grace period"
            for old in view.departed]


def summarise_networks(collector: Collector, state: NodeState, reading: Reading) -> None:
    """A read phase, once the datapath is read: what each network's report block counts, as each
    layer summarises it (its DNS probe, its overlay, swarm's tasks and VIPs on it...)."""
    if state.swarm_tasks is not None and not attachments_known(state):
        reading.notes.append("this snapshot's tasks carry no network attachments: swarm's tasks were not "
                             "compared with NetworkDB")
    summaries = [layer.summarise for layer in LAYERS.values() if layer.summarise]
    for result in reading.results:
        for summarise in summaries:
            summarise(result, state, reading)


# The read phases of one sample, in the order their data depend on: the load balancers first
# (they make each network's result), before the DNS (asked from a container of a network whose
# load balancer was read) and before the ingress (its sandbox is the ingress load balancer); the
# overlay before the host, whose rules are read when an overlay is encrypted; the probes once
# every layer says where to send them. A layer that reads something adds its phase here.
PHASES: tuple[Callable[[Collector, NodeState, Reading], None], ...] = (
    read_load_balancers, note_zombies, read_health, read_overlay_layer, read_dns_layer, read_host_layer,
    read_probes, summarise_networks, read_ingress)


def why_blind(collector: Collector, node: NodeInfo, views: list[NetworkView]
              ) -> tuple[str, str] | None:
    """(scope, reason) when this run cannot look at the datapath at all: could-not-check,
    never a cascade of findings about what it did not see."""
    if not any(v.instantiated for v in views):
        return None
    if node.firewall.startswith("nftables"):
        return ("firewall backend", f"dockerd runs with the {node.firewall} firewall backend: swarm "
                "cannot program its routing mesh and load balancers there (no DOCKER-FORWARD chain), "
                "and ssd checks what the iptables backend programs")
    names = collector.netns_names()
    if not names:
        state = "does not exist" if names is None else "is empty"
        return ("namespaces", f"{collector.netns_dir} {state} here, though this node has swarm "
                "networks: in a container, mount it with -v /var/run/docker/netns:/var/run/docker/"
                "netns:ro,rslave; if dockerd has another --exec-root, pass the same --exec-root")
    return None


def settle(first: RunResult, second: RunResult) -> RunResult:
    """Keep only the inconsistencies both samples show: swarm converges asynchronously; of
    those, what this node saw move between the samples is converging."""
    seen = {f.key for f in first.findings}
    transient = [f for f in second.findings if f.key not in seen]
    second.findings = [f for f in second.findings if f.key in seen]
    if first.motion is not None and second.motion is not None:
        for finding in second.findings:
            finding.converging = finding.converging or moved(finding, first.motion, second.motion)
    if transient or len(first.findings) > len(second.findings):
        second.notes.append(f"{len(first.findings) - len(second.findings) + len(transient)} "
                            "difference(s) seen in only one of two samples were ignored as "
                            "convergence")
    return second


def settled_check(collector: Collector, wanted: list[str], settle_seconds: float,
                  live: bool) -> tuple[NodeInfo, RunResult]:
    """One node check, settled: a sample (run_once, which runs every check: run_checks), and a
    second one if the first found something; only what both show is reported."""
    node = read_node(collector)
    try:
        result = run_once(collector, node, wanted)
    finally:
        collector.end_read_ahead()  # what the first sample did not take is not needed
    if result.findings and settle_seconds > 0 and (live or len(collector.recorded) >= 2):
        # A node out of the gossip that swarm still calls ready may be one whose dockerd just
        # stopped: the second sample waits until swarm would have missed its heartbeats.
        wait = max(settle_seconds, node.heartbeat_expiry()) if result.leavers else settle_seconds
        if live:  # (a snapshot taken without a second sample is judged on its one)
            time.sleep(wait)
        collector.new_sample(reread=reread_for(result))
        first, result = result, settle(result, run_once(collector, node, wanted))
        result.notes += leaver_notes(first.leavers, result.leavers, wait)
    for finding in result.findings:
        finding.known_issues = known_issues(finding.check, node.engine.version)
    return node, result


def reread_for(result: RunResult) -> set[str | None]:
    """The namespaces a second sample reads again: those the findings name, and the load
    balancers of their networks, whose state judges findings elsewhere (a task at weight 0 there
    may lack its DNS records) and shows what moved between the samples. Soak, 2026-12-02: a
    DNS finding judged, in the second sample, against the first one's weights paged 7 times."""
    networks = {f.network for f in result.findings}
    lbs = {name for net in result.networks if net.view.name in networks and net.namespace
           for name in net.namespace.split(", ")}
    return {f.namespace for f in result.findings} | lbs


def leaver_notes(before: list[str], after: list[str], wait: float) -> list[str]:
    """What became of the nodes the first sample found out of the gossip but ready for swarm."""
    back = [name for name in before if name not in after]
    if not back:
        return []
    return [f"{', '.join(back)}: out of this node's gossip while swarm still called "
            f"{'them' if len(back) > 1 else 'it'} ready (a dockerd stopping, say); a second sample "
            f"{wait:g} s later, past swarm's heartbeat expiry, no longer found it so (swarm marked "
            "it down, or the gossip came back: `docker node ls`)"]


def node_check(args: argparse.Namespace, engine: Engine | None = None,
               want_snapshot: bool | None = None) -> tuple[RunResult, dict | None]:
    """The CLI's node check: this node (live, its snapshot document if asked for) or a snapshot.
    engine: one already connected (--watch keeps its connection from run to run)."""
    want_snapshot = bool(args.snapshot) if want_snapshot is None else want_snapshot
    if args.from_:
        if len(args.from_) > 1:
            raise CheckError("a node check reads one snapshot: give one --from FILE "
                             "(several only with gossip-consistency)")
        source = args.from_[0]
        snapshot = load_snapshot(source)
        collector: Collector = SnapshotCollector(snapshot, source)
        wanted = args.networks or snapshot["networks"]
        with replaying(source):
            _, result = settled_check(collector, wanted, float(snapshot.get("settle") or 0), live=False)
        return nothing_named_compared(result, args.networks), None
    # A run that names no network reads every namespace of this node: read them ahead, while
    # Python imports the Docker SDK (seconds under emulation) and the API answers.
    early = None if args.networks else start_read_ahead(os.path.join(args.exec_root, "netns"), None)
    try:
        collector = Collector(engine or engine_of(args), args.exec_root, record_api=want_snapshot)
        collector.ahead, collector.probing = early, args.probe
        node, result = settled_check(collector, args.networks, args.settle, live=True)
    finally:
        if early is not None:
            early.close()
    doc = snapshot_document(collector, node, args.networks, args.settle) if want_snapshot else None
    return nothing_named_compared(result, args.networks), doc


def nothing_named_compared(result: RunResult, named: list[str]) -> RunResult:
    """A worker cannot tell a mistyped network name from a network with no task here; when none
    of the names given is here, the run compared nothing that was asked for: not consistent."""
    if named and set(named) <= set(result.absent):
        result.not_checked.append(NotChecked(
            f"network {', '.join(named)}", "not on this node: a worker lists only the swarm networks "
            "its tasks use; check the name (docker network ls on a manager) or run ssd where it has tasks"))
    return result
