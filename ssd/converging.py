"""Converging: a finding about work swarm has not finished (a service update, tasks starting or
stopping, a node just down or back), or about a service this node saw move between its two
samples, is kept but marked converging: its own verdict (exit 3), not a page. Pure."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ssd.base import count
from ssd.model import MIN_STATE_AGE

if TYPE_CHECKING:
    from ssd.model import Finding, NodeState


# --- converging: what swarm itself has not finished, on a manager ---------------------
# A deployment in progress moves the datapath while ssd looks. A finding about a service swarm is
# updating, whose tasks it is starting or stopping, or about a node that just went down or came
# back, is kept but marked converging: its own verdict, not a page. What persists once swarm
# says it has converged is inconsistent.

STARTING_STATES = frozenset({"new", "pending", "assigned", "accepted", "preparing", "ready", "starting"})


def converging_reason(finding: Finding, state: NodeState) -> str | None:
    """Why swarm has not converged for what the finding concerns, or None (or not a manager)."""
    if state.swarm_tasks is None:
        return None
    by_ip = state.memo.get("task-by-ip")
    if by_ip is None:
        by_ip = state.memo["task-by-ip"] = {t.ip: (svc.name, t) for v in state.views
                                            for svc in v.services.values() for t in svc.tasks}
    subject = (finding.subject or "").split()[-1] if finding.subject else ""
    services = {finding.service} if finding.service else set()
    if subject in by_ip:
        services.add(by_ip[subject][0])
    for name in sorted(services):
        if name in state.updating:
            return f"swarm is updating service {name} (update {state.updating[name]})"
        moving = _moving_tasks(name, state)
        if moving:
            return f"swarm is still {moving} of service {name}"
    return _node_moving(subject, by_ip, state)


def _moving_tasks(service: str, state: NodeState) -> str | None:
    # The service of that name, and its earlier incarnations (docker stack rm, then deploy):
    # swarm is still stopping their tasks, each node in its own time (lab, 2026-12-06: one of
    # three at weight 1 in the earlier load balancer on both samples, 25 s after the rm).
    if "tasks-by-service" not in state.memo:  # once per state, not per finding: a node with 500
        by_service: dict[str, list] = {}     # findings and 20,000 tasks went over 10 million
        for t in (state.swarm_tasks or {}).values():
            by_service.setdefault(t.service, []).append(t)
        ids_by_name: dict[str, set[str]] = {}
        for sid, name in (state.service_names or {}).items():
            ids_by_name.setdefault(name, set()).add(sid)
        state.memo["tasks-by-service"], state.memo["ids-by-name"] = by_service, ids_by_name
    ids = set(state.memo["ids-by-name"].get(service, ()))
    ids |= {svc.service_id for view in state.views for svc in view.departed
            if svc.name == service and svc.service_id}
    tasks = [t for sid in sorted(ids) for t in state.memo["tasks-by-service"].get(sid, [])]
    starting = sum(1 for t in tasks if not t.stopping and t.state in STARTING_STATES)
    stopping = sum(1 for t in tasks if t.stopping and t.state in STARTING_STATES | {"running"})
    words = [f"{what} {count(n, 'task')}"
             for what, n in (("starting", starting), ("stopping", stopping)) if n]
    return " and ".join(words) or None


def _node_moving(subject: str, by_ip: dict, state: NodeState) -> str | None:
    """A node that is not ready, or changed its state within the convergence window: the
    finding's task runs there, or the finding names the node's address."""
    node = None
    if subject in by_ip:
        task = (state.swarm_tasks or {}).get(by_ip[subject][1].task_id)
        node = (state.swarm_nodes or {}).get(task.node_id) if task else None
    if node is None and subject:
        node = next((n for n in (state.swarm_nodes or {}).values() if n.addr == subject), None)
    if node is None:
        return None
    recent = node.since is not None and state.now is not None and state.now - node.since < MIN_STATE_AGE
    if node.state != "ready" and (recent or node.since is None):
        return f"node {node.hostname} is {node.state}"
    if recent:
        return f"node {node.hostname} changed state {state.now - node.since:.0f} s ago (now {node.state})"
    return None


def mark_converging(findings: list[Finding], state: NodeState) -> list[Finding]:
    for finding in findings:
        finding.converging = converging_reason(finding, state)
    return findings


# A worker cannot ask swarm what it has not finished, but it sees its own NetworkDB and load
# balancers move. In the soak (2026-12-02, 28.5.2) most pages during a deployment came from
# workers: a task NetworkDB listed that IPVS did not carry yet, both samples, while the engine
# was still working through the update. A finding about a service whose NetworkDB entries or
# load-balancer destinations changed between the node's two samples is about work still under
# way here: kept, and marked converging (a manager's as well, when swarm's word did not say so).

@dataclass
class Motion:
    """What one sample saw of each service, to compare with the other sample."""
    services: dict[tuple[str, str], tuple] = field(default_factory=dict)  # (network, service) -> state
    owners: dict[tuple[str, str], str] = field(default_factory=dict)  # (network, task IP) -> service


def motion_of(state: NodeState, findings: list[Finding]) -> Motion:
    """What this sample saw of the services the findings concern (none: nothing to keep, which
    spares the memory of a big swarm's every service on a consistent run)."""
    motion = Motion()
    if not findings:
        return motion
    subjects = {(f.network or "", f.subject.split()[-1]) for f in findings if f.subject}
    wanted = {(f.network or "", f.service) for f in findings if f.service}
    for view in state.views:
        for svc in [*view.services.values(), *view.departed]:
            for task in svc.tasks:
                if (view.name, task.ip) in subjects:
                    motion.owners[(view.name, task.ip)] = svc.name
                    wanted.add((view.name, svc.name))
    for view in state.views:
        for svc in [*view.services.values(), *view.departed]:
            key = (view.name, svc.name)
            if key in wanted:
                tasks = tuple(sorted((t.ip, t.host_ip or "", t.endpoint_id) for t in svc.tasks))
                motion.services[key] = (*motion.services.get(key, ()), svc.vip, svc.fwmark, tasks)
    for lb in state.lbs:
        if lb.datapath.ipvs is None:
            continue
        for svc in lb.network.services.values():
            key = (lb.network.name, svc.name)
            if key not in wanted:
                continue
            ipvs = lb.datapath.ipvs_by_mark.get(svc.fwmark) if svc.fwmark else None
            dests = tuple(sorted((d.address, d.weight) for d in ipvs.dests)) if ipvs else None
            motion.services[key] = (*motion.services.get(key, ()), lb.datapath.name, dests)
    return motion


def moved(finding: Finding, before: Motion, after: Motion) -> str | None:
    """How this node's state for what the finding concerns changed between two samples, or None."""
    net = finding.network or ""
    subject = (finding.subject or "").split()[-1] if finding.subject else ""
    was, now = before.owners.get((net, subject)), after.owners.get((net, subject))
    if subject and was != now:
        went = f"left service {was}" if now is None else (
            f"joined service {now}" if was is None else f"moved from service {was} to {now}")
        return f"task address {subject} {went} in this node's NetworkDB between its two samples"
    for service in sorted({s for s in (finding.service, was, now) if s}):
        key = (net, service)
        if before.services.get(key) != after.services.get(key):
            return (f"this node's NetworkDB entries or load balancers for service {service} "
                    "changed between its two samples: the node is still applying an update")
    return None
