"""gossip-consistency: every node's view of a network's gossiped state, collected by the job,
compared and re-sampled until the differences persist; also from a set of snapshots."""
from __future__ import annotations

import argparse
import json
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ssd.base import CheckError, count
from ssd.catalog import EngineModel
from ssd.collect import Collector
from ssd.engine import engine_of, read_node
from ssd.model import NotChecked
from ssd.snapshot import load_snapshot, replaying
from ssd.swarmwide.answers import GossipNode, GossipResult, gossip_digest, gossip_node, gossip_state
from ssd.swarmwide.job import (
    JobAnswer, NodeJob, eligible_nodes, leftover_jobs, not_removed_problems, own_image,
)
from ssd.views import resolve_networks

if TYPE_CHECKING:
    from ssd.engine import Engine
    from ssd.swarmwide.job import SkippedNode


def _who(labels: Iterable[str]) -> str:
    return ", ".join(sorted(labels))


def _groups(values: dict[str, Any]) -> dict[str, list[str]]:
    """canonical value -> the nodes holding it."""
    out: dict[str, list[str]] = {}
    for node, value in values.items():
        out.setdefault(json.dumps(value, sort_keys=True), []).append(node)
    return out


def _task_label(task: dict) -> str:
    return f"{task['name'] or task['endpoint_id'][:12]} ({task['ip']} on host {task['host_ip']})"


def _difference(kind: str, service: str | None, subject: str | None, message: str,
                by_node: dict[str, Any]) -> dict:
    return {"kind": kind, "service": service, "subject": subject, "message": message,
            "by_node": by_node}


def diff_gossip(states: dict[str, dict]) -> list[dict]:
    """What differs between the nodes' views (node label -> gossip_state), entry by entry."""
    nodes = sorted(states)
    out: list[dict] = []
    for name in sorted({s for state in states.values() for s in state["services"]}):
        have = [n for n in nodes if name in states[n]["services"]]
        if len(have) < len(nodes):
            missing = [n for n in nodes if n not in have]
            out.append(_difference("service", name, None, f"service {name} is known to {_who(have)} "
                                   f"but missing on {_who(missing)}",
                                   {n: n in have for n in nodes}))
        for key in ("vip", "ports"):
            values = {n: states[n]["services"][name][key] for n in have}
            groups = _groups(values)
            if len(groups) > 1:
                shown = "; ".join(f"{json.loads(v)} on {_who(ns)}" for v, ns in sorted(groups.items()))
                out.append(_difference(key, name, None, f"service {name}: {key} differs: {shown}", values))
        out += _diff_tasks(name, {n: states[n]["services"][name]["tasks"] for n in have})
    peers = {n: [f"{p['name']} ({p['ip']})" for p in states[n]["peers"]] for n in nodes}
    groups = _groups(peers)
    if len(groups) > 1:
        shown = "; ".join(f"{_who(ns)} see{'s' if len(ns) == 1 else ''} {', '.join(json.loads(v)) or 'none'}"
                          for v, ns in sorted(groups.items(), key=lambda kv: kv[1]))
        out.append(_difference("peers", None, None, f"peers differ: {shown}", peers))
    return out


def _diff_tasks(service: str, tasks_by_node: dict[str, list[dict]]) -> list[dict]:
    out = []
    nodes = sorted(tasks_by_node)
    keyed = {n: {(t["name"], t["endpoint_id"]): t for t in tasks} for n, tasks in tasks_by_node.items()}
    for key in sorted({k for tasks in keyed.values() for k in tasks}):
        holders = [n for n in nodes if key in keyed[n]]
        task = keyed[holders[0]][key]
        if len(holders) < len(nodes):
            missing = [n for n in nodes if n not in holders]
            out.append(_difference("task", service, task["name"],
                                   f"service {service}: task {_task_label(task)} is known to "
                                   f"{_who(holders)} but missing on {_who(missing)}",
                                   {n: n in holders for n in nodes}))
            continue
        values = {n: keyed[n][key] for n in nodes}
        groups = _groups(values)
        if len(groups) > 1:
            shown = "; ".join(f"{_task_label(json.loads(v))} on {_who(ns)}"
                              for v, ns in sorted(groups.items()))
            out.append(_difference("task", service, task["name"],
                                   f"service {service}: task {task['name']} differs: {shown}", values))
    return out


# --- gossip-consistency: collect every node's view, compare, re-sample ----------------

GOSSIP_TRIES = 3  # swarm converges asynchronously: a difference must last this many samples
GOSSIP_PAUSE = 3.0  # seconds between samples


def compare_views(nodes: list[GossipNode]) -> list[dict]:
    answered = [n for n in nodes if n.status == "answered"]
    if len({n.digest for n in answered}) < 2:
        return []
    labels = [n.label for n in answered]
    states = {(n.label if labels.count(n.label) == 1 else f"{n.label}/{n.id[:8]}"): n.state
              for n in answered}
    return diff_gossip(states)


def gossip_result(network: str, nodes: list[GossipNode], samples: int, started: float,
                  notes: list[str]) -> GossipResult:
    nodes = sorted(nodes, key=lambda n: (n.label, n.id))
    not_checked = [NotChecked(f"node {n.label}", n.reason or "no answer")
                   for n in nodes if n.status == "no-answer"]
    answered = [n.label for n in nodes if n.status == "answered"]
    if len(answered) < 2 and not not_checked:  # agreement needs two views: one, or none, proves nothing
        held = f"only {answered[0]} holds it" if answered else "no node holds it (no task or load balancer)"
        not_checked.append(NotChecked(f"network {network}", f"nothing to compare: {held}, of "
                                f"{count(len(nodes), 'node')} asked; gossip consistency needs two "
                                "nodes with the network"))
    return GossipResult(network, nodes, compare_views(nodes), samples, time.monotonic() - started,
                        notes, not_checked)


def on_a_manager(args: argparse.Namespace, mode: str) -> tuple[Engine, Collector]:
    """The swarm-wide modes' first step: the Engine API, on a manager (only one runs services)."""
    engine = engine_of(args)
    # Nothing of the coordinator's reads is a snapshot: /tasks streamed, never held whole (at
    # 5,000 nodes recording it held 20,000 task records at once, 140 MiB).
    collector = Collector(engine, args.exec_root, record_api=False)
    if not read_node(collector).manager:
        raise CheckError(f"{mode} starts a service on every node: run it on a manager")
    return engine, collector


@dataclass
class JobPlan:
    """What both swarm-wide modes settle before they start their job."""
    image: str
    eligible: dict[str, str]  # node ID -> hostname: the nodes that run the job
    skipped: list[SkippedNode]
    notes: list[str]


def plan_job(args: argparse.Namespace, engine: Engine, mode: str, reads_datapath: bool) -> JobPlan:
    """The image every node runs, the API it needs, the leftovers of killed runs cleared, and
    the nodes that can run the job (the others, and why, in the notes)."""
    notes: list[str] = []
    image = args.image
    if not image:
        own = own_image(engine)
        if own is None:
            raise CheckError(f"{mode} runs ssd on every node as a swarm service: pass --image IMAGE, "
                             "an ssd image every node has or can pull (inferred only when ssd runs "
                             "in a container itself)")
        image = own[0]
        notes.append(f"every node ran image {image} (this container's, started as {own[1]})")
    api = str(engine.api.api_version)
    if reads_datapath and not EngineModel.runs_jobs(api):
        raise CheckError(f"{mode} needs Engine API 1.41 (Docker 20.10) or newer, to give its "
                         f"service the capabilities a datapath read needs; this one speaks {api}: "
                         "run ssd on each node instead")
    leftover_jobs(engine, notes)
    eligible, skipped = eligible_nodes(engine)
    return JobPlan(image, eligible, skipped, notes)


def gossip_live(args: argparse.Namespace, network: str) -> GossipResult:
    started = time.monotonic()
    engine, collector = on_a_manager(args, "gossip-consistency")
    net = resolve_networks(collector.networks(), [network])[0]
    plan = plan_job(args, engine, "gossip-consistency", reads_datapath=False)
    notes = plan.notes + [node.note for node in plan.skipped]
    result = gossip_sampled(engine, net, plan.image, plan.eligible, args.wait, started, notes)
    if args.verbose:
        notes.append(f"{count(result.samples, 'sample')} in {time.monotonic() - started:.1f} s")
    return result


def gossip_sampled(engine: Engine, net: dict, image: str, eligible: dict[str, str], timeout: float,
                   started: float, notes: list[str], first: list[GossipNode] | None = None
                   ) -> GossipResult:
    """Every node's view of net compared, re-sampled while they differ: swarm converges
    asynchronously, so only a difference that outlasts GOSSIP_TRIES samples is divergence.
    first: the first sample's answers when they were already collected (fleet mode)."""
    differed = 0
    not_removed: list[str] = []
    for sample in range(1, GOSSIP_TRIES + 1):
        if sample == 1 and first is not None:
            nodes = first
        else:
            job = NodeJob(engine, [net["Id"], "gossip-hash", "--json"], image, timeout,
                          keep=sharing_states())
            answers = job.run(eligible)
            not_removed += job.not_removed
            nodes = list(answers.values())
        result = gossip_result(net.get("Name") or net["Id"], nodes, sample, started, notes)
        result.not_checked += not_removed_problems(not_removed)
        if not result.differences:
            break
        differed += 1
        if sample < GOSSIP_TRIES:
            time.sleep(GOSSIP_PAUSE)
    if differed and not result.differences:
        notes.append(f"the views differed in {differed} of {count(result.samples, 'sample')} "
                     "and then agreed: "
                     "convergence, not divergence")
    elif differed:
        notes.append(f"the views differed in all {count(differed, 'sample')} over {result.seconds:.0f} s")
    return result


def sharing_states():
    """gossip_node for each answer as it is read, nodes that agree sharing one state: the manager
    keeps one state per distinct view (one when the swarm agrees), not one per node."""
    seen: dict[str, dict] = {}

    def keep(answer: JobAnswer) -> GossipNode:
        node = gossip_node(answer)
        if node.digest and node.state is not None:
            node.state = seen.setdefault(node.digest, node.state)
        return node
    return keep


def gossip_from_snapshots(paths: list[str], network: str) -> GossipResult:
    """The same comparison on snapshots of several nodes: no service is started."""
    started = time.monotonic()
    docs = [load_snapshot(path) for path in paths]  # once each: "-" is standard input
    nodes = []
    for doc, path in zip(docs, paths, strict=True):
        with replaying(path):
            nodes.append(_snapshot_view(doc, path, network))
    same_swarm(docs, paths, network)
    return gossip_result(network, nodes, 1, started,
                         [f"compared {len(paths)} snapshots taken at "
                          + ", ".join(sorted({str(d.get('taken_at', '?')) for d in docs}))])


def same_swarm(docs: list[dict], paths: list[str], network: str) -> None:
    """Snapshots to compare are of different nodes of one swarm: one node twice agrees with
    itself, and two swarms differ in everything, neither says anything about gossip."""
    seen: dict[str, str] = {}
    for doc, path in zip(docs, paths, strict=True):
        node = str((doc.get("node") or {}).get("id") or "")
        if node and node in seen:
            raise CheckError(f"{seen[node]} and {path} are snapshots of the same node "
                             f"({(doc.get('node') or {}).get('hostname') or node[:12]}): gossip-consistency "
                             "compares different nodes of one swarm")
        seen.setdefault(node, path)
    marks: dict[tuple[str, str], str] = {}  # (what, its value) -> the first snapshot that has it
    for doc, path in zip(docs, paths, strict=True):
        api = doc["samples"][-1]["api"]
        swarm = (api.get("GET /info") or {}).get("Swarm") or {}
        cluster = str((swarm.get("Cluster") or {}).get("ID") or "")
        listed = [n for n in api.get("GET /networks") or [] if isinstance(n, dict)
                  and n.get("Name") == network and n.get("Scope") == "swarm"]
        for what, value in (("swarm", cluster), ("network", str(listed[0].get("Id", "")) if listed else "")):
            other = next((p for (w, v), p in marks.items() if w == what and v != value), None)
            if value and other is not None:
                why = "another swarm ID" if what == "swarm" else f"another ID for network {network}"
                raise CheckError(f"{path} and {other} are snapshots of different swarms ({why}): "
                                 "gossip-consistency compares the nodes of one swarm")
            if value:
                marks.setdefault((what, value), path)


def _snapshot_view(doc: dict, path: str, network: str) -> GossipNode:
    node = doc.get("node") or {}
    ident, host = str(node.get("id", "")), str(node.get("hostname") or path)
    api = doc["samples"][-1]["api"]
    try:
        net = resolve_networks(api["GET /networks"], [network])[0]
    except CheckError:
        return GossipNode(ident, host, "not-instantiated")
    raw = api.get(f"GET /networks/{net['Id']}")
    if raw is None:
        return GossipNode(ident, host, "no-answer", reason=f"{path} holds no inspect of network {network}")
    state = gossip_state(raw)
    if not (raw.get("Containers") or raw.get("Services")):
        return GossipNode(ident, host, "not-instantiated")
    return GossipNode(ident, host, "answered", gossip_digest(state), state)
