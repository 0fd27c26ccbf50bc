"""--all-nodes (fleet mode): the node check on every node, by one job; each worker's answer judged
against swarm's tasks by the manager, and the nodes' gossip views compared when asked."""
from __future__ import annotations

import argparse
import dataclasses
import itertools
import os
import re
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

from ssd.base import CheckError, FLEET_MEMBER, count
from ssd.catalog import engine_model, run_checks
from ssd.collect import Collector
from ssd.converging import converging_reason, mark_converging
from ssd.engine import read_node
from ssd.layers.networkdb import swarm_counts, swarm_knowledge, tasks_by_network
from ssd.model import Finding, NetworkView, NodeState, NotChecked, ServiceView, TaskView
from ssd.run import separate_all_departed, settled_check
from ssd.snapshot import MAX_SNAPSHOT_BYTES, snapshot_document, write_snapshot
from ssd.swarmwide.answers import (
    FleetNode, FleetResult, GossipNode, answer_to_node, fleet_answer, fleet_node, gossip_digest)
from ssd.swarmwide.gossip import gossip_sampled, on_a_manager, plan_job
from ssd.swarmwide.job import FLEET_PREFIX, MAX_ANSWER_BYTES, NodeJob, not_removed_problems
from ssd.swarmwide.report import some
from ssd.views import resolve_networks

if TYPE_CHECKING:
    from ssd.catalog import EngineModel
    from ssd.engine import Engine
    from ssd.swarmwide.answers import GossipResult
    from ssd.swarmwide.job import JobAnswer, SkippedNode


def view_from_gossip(state: dict) -> NetworkView:
    """A network as a node's NetworkDB listed it, rebuilt from the state it sent back
    (gossip_state): services with their VIP and tasks, and the peers; what only that node sees
    (its local endpoints, its marks) is not in it."""
    services = {}
    for name, svc in (state.get("services") or {}).items():
        if not isinstance(svc, dict):
            continue
        tasks = [TaskView(str(t.get("name") or ""), str(t.get("endpoint_id") or ""), str(t.get("ip") or ""),
                          t.get("host_ip")) for t in svc.get("tasks") or [] if isinstance(t, dict)]
        services[name] = ServiceView(name, svc.get("vip"), 0, [], tasks)
    net = state.get("network") if isinstance(state.get("network"), dict) else {}
    return NetworkView(id=str(net.get("id") or ""), name=str(net.get("name") or ""), ingress=False, dsr=False,
                       subnets=[], services=services, endpoints={}, instantiated=True,
                       peers=[(str(p.get("name") or ""), str(p["ip"])) for p in state.get("peers") or []
                              if isinstance(p, dict) and p.get("ip")])


def judge_workers(collector: Collector, nodes: list[FleetNode], age: float = 0.0) -> list[str]:
    """A worker has no /tasks or /services: the layer that compares NetworkDB with swarm cannot
    run there. Here, on the manager, it runs for each worker that answered, on the NetworkDB
    view the worker sent back (the inspect its check judged) against swarm's tasks, services and
    nodes read now; what it finds joins that worker's report. Only what the worker could not
    judge itself is added: the same views without swarm's knowledge give the rest. Tasks are
    judged as of `age` seconds ago (when the run started): every worker read its NetworkDB after
    that, so a task's convergence window is never cut short by the job's own duration.

    Linear in the workers: each network's checks look at that network's tasks only (indexed
    once for all workers), and workers that sent the same views from the same engine version
    (NetworkDB is gossiped: most of a swarm's) are judged once."""
    workers = [n for n in nodes if n.report is not None and n.gossip
               and not (n.report.get("node") or {}).get("manager")]
    if not workers:
        return []
    knowledge = swarm_knowledge(collector.services(), collector.tasks(), collector.nodes())
    index = tasks_by_network(knowledge["swarm_tasks"] or {})
    now, judged = collector.clock() - age, []
    verdicts: dict[tuple, tuple[list[Finding], NodeState]] = {}
    for n in workers:
        answers = [a["state"] for a in n.gossip.values() if isinstance(a, dict) and a.get("instantiated")
                   and isinstance(a.get("state"), dict)]
        if not answers:
            continue
        version = str((n.report.get("node") or {}).get("engine_version") or "")
        key = (version, *sorted(gossip_digest(a) for a in answers))
        if key not in verdicts:
            try:
                verdicts[key] = judge_views(engine_model(version), answers, knowledge, index, now)
            except CheckError:
                continue
        found, state = verdicts[key]
        add_to_report(n.report, found, state)
        judged.append(n.label)
    if not judged:
        return []
    return [f"swarm's tasks, services and nodes were compared here with the NetworkDB of "
            f"{count(len(judged), 'worker')} ({some(judged)}), from the view each sent back: "
            "a worker cannot read them itself"]


def judge_views(model: EngineModel, answers: list[dict], knowledge: dict, index: dict, now: float
                ) -> tuple[list[Finding], NodeState]:
    """What swarm's knowledge adds to the findings of a worker's NetworkDB views."""
    alone = NodeState(model, "", [view_from_gossip(a) for a in answers])
    own = {f.key for f in run_checks(alone)}
    state = NodeState(model, "", [view_from_gossip(a) for a in answers], **knowledge, now=now)
    state.memo["tasks_by_network"] = index
    separate_all_departed(state)
    return [f for f in mark_converging(run_checks(state), state)
            if f.layer == "networkdb" and f.key not in own], state


def add_to_report(report: dict, found: list[Finding], state: NodeState) -> None:
    """A worker's report, with what the manager judged for it: its findings, each network's
    swarm block, which of the worker's own findings swarm has not converged for (a worker cannot
    tell), and the report's status (findings decide it, as overall_status does)."""
    names = {f.name for f in dataclasses.fields(Finding)}
    for own in report.get("findings") or []:  # the worker's own, which it could not tell converging
        if isinstance(own, dict) and not own.get("converging"):
            own["converging"] = converging_reason(
                Finding(**{k: v for k, v in own.items() if k in names}), state)
    report["findings"] = [*(report.get("findings") or []), *(f.to_json() for f in found)]
    every = [f for f in report["findings"] if isinstance(f, dict)]
    if every:
        report["status"] = "converging" if all(f.get("converging") for f in every) else "inconsistent"
    for net in report.get("networks") or []:
        view = next((v for v in state.views if v.id == net.get("id")), None)
        if view is not None and isinstance(net, dict) and net.get("swarm") is None:
            tasks, vips = swarm_counts(state, view)
            net["swarm"] = {"status": "fail" if any(f.network == view.name for f in found) else "ok",
                            "tasks": tasks, "vips": vips}


def snapshot_names(label: str, node_id: str) -> Iterator[str]:
    """File names for a node's snapshot, best first: its label, then with its ID, then numbered."""
    safe = re.sub(r"[^\w.-]", "_", label).lstrip(".") or "node"
    yield f"{safe[:100]}.json"
    yield f"{safe[:100]}-{re.sub(r'[^0-9a-z]', '_', node_id[:12])}.json"
    yield from (f"{safe[:100]}-{n}.json" for n in itertools.count(2))


class FleetKeeper:
    """What the manager keeps of each answer, made as it is read (NodeJob's keep): the node's
    report, its gossip views shared with every node that sent the same (NetworkDB is gossiped:
    at a thousand nodes, one copy, not a thousand), and its snapshot written to --snapshot-dir
    at once, then dropped: the manager holds reports, not the sum of the answers. Two nodes
    never write the same file (names that clash once made safe for a file name get the node's
    ID, then a number)."""

    def __init__(self, snapshot_dir: str | None) -> None:
        self.snapshot_dir = snapshot_dir
        self.saved: set[str] = set()
        self.states: dict[str, dict] = {}  # digest -> the one copy of that gossip state

    def __call__(self, answer: JobAnswer) -> FleetNode:
        return self.keep(fleet_node(answer))

    def keep(self, node: FleetNode) -> FleetNode:
        for net_id, gossip in list(node.gossip.items()):
            if isinstance(gossip, dict) and isinstance(gossip.get("state"), dict) and gossip.get("digest"):
                # shared by the digest computed here: a node cannot claim another's state
                mine = gossip_digest(gossip["state"])
                node.gossip[net_id] = {**gossip, "state": self.states.setdefault(mine, gossip["state"])} \
                    if mine == gossip["digest"] else gossip
        if node.snapshot is not None and self.snapshot_dir:
            for name in snapshot_names(node.label, node.id):
                if name not in self.saved:
                    break
            self.saved.add(name)
            write_snapshot(node.snapshot, os.path.join(self.snapshot_dir, name))
            node.snapshot = None
        return node

    def notes(self) -> list[str]:
        if not self.snapshot_dir:
            return []
        return [f"snapshots of {count(len(self.saved), 'node')} saved in {self.snapshot_dir}"]


def fleet_live(args: argparse.Namespace) -> FleetResult:
    started = time.monotonic()
    engine, collector = on_a_manager(args, "--all-nodes")
    listing = collector.networks()
    nets = resolve_networks(listing, args.networks)
    if not args.networks:  # the matrix's columns: overlays by name, ingress last
        nets.sort(key=lambda n: (bool(n.get("Ingress")), n.get("Name") or ""))
    if not any(n.get("Ingress") for n in nets):  # the node check always looks at ingress too
        nets += [n for n in listing if n.get("Ingress") and n.get("Scope") == "swarm"]
    plan = plan_job(args, engine, "--all-nodes", reads_datapath=True)
    image, eligible, skipped, notes = plan.image, plan.eligible, plan.skipped, plan.notes
    not_checked: list[NotChecked] = []
    member = [n["Id"] for n in nets] if args.networks else []
    member += [FLEET_MEMBER, "--json", "--settle", f"{args.settle:g}", "--exec-root", args.exec_root]
    if args.probe:
        member.append("--probe")
    if args.snapshot_dir:
        member += ["--snapshot", "-"]
    job = NodeJob(engine, member, image, args.wait, FLEET_PREFIX,
                  datapath_dir=os.path.join(args.exec_root, "netns"),
                  max_answer=MAX_ANSWER_BYTES + (MAX_SNAPSHOT_BYTES if args.snapshot_dir else 0),
                  keep=(keeper := FleetKeeper(args.snapshot_dir)))
    nodes = list(job.run(eligible).values())
    not_checked += not_removed_problems(job.not_removed)
    here = local_drained(args, engine, collector, skipped)
    if here is not None:
        nodes.append(keeper.keep(here))
        skipped = [gone for gone in skipped if gone.id != here.id]
    notes += judge_workers(collector, nodes, time.monotonic() - started)
    for gone in skipped:
        nodes.append(FleetNode(gone.id, gone.hostname, None, f"{gone.reason}: not asked", asked=False))
        if not gone.deliberate:  # a node that is down or unknown could not be checked
            not_checked.append(NotChecked(f"node {gone.hostname}",
                                          f"{gone.reason}: swarm cannot run ssd there"))
    nodes.sort(key=lambda n: (n.label, n.id))
    for n in nodes:
        if n.asked and n.report is None:
            not_checked.append(NotChecked(f"node {n.label}", n.reason or "no answer"))
    gossip = [fleet_gossip(engine, net, image, eligible, args.wait, nodes)
              for net in nets] if args.gossip else []
    not_checked += [p for g in gossip for p in g.not_checked if p.scope == "ssd service"]
    notes += keeper.notes()
    return FleetResult([(n.get("Name") or n["Id"], n["Id"]) for n in nets], nodes, gossip,
                       time.monotonic() - started, notes, not_checked)


def local_drained(args: argparse.Namespace, engine: Engine, collector: Collector,
                  skipped: list[SkippedNode]) -> FleetNode | None:
    """This manager, when an operator drained (or paused) it: swarm runs no task there, so the
    job cannot check it, yet its routing mesh still takes published ports. Checked here, in
    this process, as its job would (only through the local socket: over -H or a context this
    process is not on that node)."""
    node = read_node(collector)
    if not any(g.id == node.id and g.deliberate for g in skipped):
        return None
    if not engine.endpoint.url.startswith(("unix://", "/")):
        return None
    started = time.monotonic()
    here = Collector(engine, args.exec_root, record_api=bool(args.snapshot_dir))
    here.probing = args.probe
    node, result = settled_check(here, list(args.networks), args.settle, live=True)
    snapshot = snapshot_document(here, node, list(args.networks), args.settle) if args.snapshot_dir else None
    answer = fleet_answer(here, node, result, snapshot)
    return FleetNode(node.id, node.hostname, answer["report"], None, time.monotonic() - started,
                     snapshot, answer["gossip"])


def fleet_gossip(engine: Engine, net: dict, image: str, eligible: dict[str, str], timeout: float,
                 nodes: list[FleetNode]) -> GossipResult:
    """gossip-consistency of net from the answers fleet mode already has; a difference is
    re-sampled by gossip services of its own, as gossip-consistency does."""
    first = []
    for n in nodes:
        if n.id not in eligible:
            continue
        if n.report is None:
            first.append(GossipNode(n.id, n.hostname, "no-answer", reason=n.reason))
        else:
            view = answer_to_node(n.gossip.get(net["Id"]) or {"instantiated": False})
            view.id, view.hostname = n.id, n.hostname  # as swarm knows the node that answered
            first.append(view)
    return gossip_sampled(engine, net, image, eligible, timeout, time.monotonic(), [], first)
