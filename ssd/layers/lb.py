"""Layer "kernel": the load balancers. Each network's lb_<id> namespace (ingress_sbox for
ingress): IPVS services and backends, the MARK, SNAT and REDIRECT rules, the VIP aliases, the
IPVS sysctls; what it reads (read_load_balancers, the containers' health) and its checks."""
from __future__ import annotations

import dataclasses
import ipaddress
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING

from ssd.base import AF_INET, FIRST_FWMARK, IP_VS_SVC_F_PERSISTENT, shq
from ssd.catalog import CheckInfo, Layer, declare_layer, register_check
from ssd.model import Finding, LoadBalancer, NetworkResult, NotChecked, _network

if TYPE_CHECKING:
    from ssd.catalog import EngineModel
    from ssd.collect import Collector
    from ssd.model import (
        Datapath, IpvsDest, IpvsService, NetworkView, NodeInfo, NodeState, Reading, Rule, Ruleset,
        ServiceView, SwarmTask, TaskView,
    )


# --- the load balancers: IPVS, marks, SNAT, aliases, sysctls, the ingress -------------

def _hint_ipvs(ns_path: str, service: str | None) -> str:
    cmd = f"nsenter --net={shq(ns_path)} ipvsadm -Ln"
    return f"{cmd}; docker service update --force {shq(service)}" if service else cmd


def _hint_rules(ns_path: str | None, table: str) -> str:
    prefix = f"nsenter --net={shq(ns_path)} " if ns_path else ""
    return f"{prefix}iptables-save -t {table}"


@register_check(
    CheckInfo(
        "fwmark-duplicate",
        "Two services of this node share a LocalLBIndex (firewall mark).",
        "Traffic for one VIP reaches the other's tasks; `docker service update --force` one of them.",
        layer="networkdb"),
    scope="node")
def check_fwmark_duplicates(_: NodeState, state: NodeState) -> list[Finding]:
    """Every (network, service) pair of this node must have its own LocalLBIndex."""
    owners: dict[int, list[tuple[str, str]]] = {}
    for net in state.views:
        for svc in net.services.values():
            if svc.fwmark and svc.vip and svc.tasks:
                owners.setdefault(svc.fwmark, []).append((net.name, svc.name))
    findings = []
    for mark, users in sorted(owners.items()):
        if len(users) > 1:
            who = ", ".join(f"{s} on {n}" for n, s in users)
            findings.append(Finding(
                "fwmark-duplicate", f"LocalLBIndex {mark} is used by {who}",
                network=users[0][0], service=users[0][1], subject=str(mark),
                expected="one service per fwmark", actual=[f"{s}@{n}" for n, s in users],
                hint="docker network inspect -v <network> on this node; "
                     f"docker service update --force {shq(users[-1][1])}"))
    return findings


def lb_namespace_name(view: NetworkView) -> str:
    return "ingress_sbox" if view.ingress else f"lb_{view.id[:9]}"


@register_check(
    CheckInfo(
        "lb-namespace-missing",
        "A network with VIP services has no load-balancer namespace on this node.",
        "Look for the network's lb-<name>/ingress-sbox entry in `docker network inspect -v`; "
        "leaving and re-joining the network (or restarting dockerd) recreates it."),
    scope="network")
def check_lb_namespace_present(view: NetworkView, state: NodeState) -> list[Finding]:
    """Since 18.06 a network with VIP services has one LB namespace on every node that has it."""
    if view.id not in state.lb_not_found or state.model.per_container or not view.vip_services():
        return []
    netns_dir = state.netns_dir
    name = lb_namespace_name(view)
    path = os.path.join(netns_dir, name)
    return [Finding("lb-namespace-missing", f"network {view.name} has VIP services but no "
                    f"load-balancer namespace {path} on this node", network=view.name,
                    namespace=name, subject=name, expected=path, actual=None,
                    hint=f"ls {shq(netns_dir)}; docker network inspect -v {shq(view.name)}")]


def departed_lb(lb: LoadBalancer, state: NodeState) -> tuple[dict[int, ServiceView], set[str]]:
    """What in this load balancer belongs to earlier incarnations of a name (separate_departed):
    mark -> incarnation for the IPVS services whose destinations are all its tasks (or the mark
    inspect showed for it), and the VIPs the mangle table marks with those marks."""
    net, dp = lb.network, lb.datapath
    if not net.departed:
        return {}, set()
    key = ("departed", dp.path)
    if key not in state.memo:
        owner = {t.ip: old for old in net.departed for t in old.tasks}
        marks = {old.fwmark: old for old in net.departed if old.fwmark}
        for ipvs in dp.ipvs or []:
            ips = {d.address for d in ipvs.dests}
            if ipvs.fwmark and ips and ips <= owner.keys():
                marks.setdefault(ipvs.fwmark, owner[min(ips)])
        current = net.vip_services()
        for svc in current:
            marks.pop(svc.fwmark, None)
        vips = {old.vip for old in net.departed if old.vip} | {
            rule.dst.split("/")[0] for rule in _marks_in(dp.rules or {}, "mangle", state.model.mark_chain)
            if rule.dst and rule.mark and rule.mark[0] in marks}
        state.memo[key] = (marks, vips - {s.vip for s in current})
    return state.memo[key]


def adopt_marks(state: NodeState) -> None:
    """A service whose mark inspect could not show (it showed an earlier incarnation's): the
    mark its VIP's MARK rule sets in the network's load balancer, if exactly one rule does."""
    for lb in state.lbs:
        for svc in lb.network.services.values():
            if svc.mark_unknown and svc.vip and not svc.fwmark:
                rules = [r for r in _marks_in(lb.datapath.rules or {}, "mangle", state.model.mark_chain)
                         if r.dst == f"{svc.vip}/32" and r.mark]
                if len({r.mark for r in rules}) == 1:
                    svc.fwmark = rules[0].mark[0]


def _departed_weights(old: ServiceView, ipvs: IpvsService, state: NodeState, dp: Datapath,
                      where: dict) -> list[Finding]:
    """An earlier incarnation's backends: swarm is stopping them, so weight 0 (or already gone)."""
    svc = dataclasses.replace(old, fwmark=ipvs.fwmark)
    by_ip = {t.ip: t for t in old.tasks}
    return [f for dest in ipvs.dests if dest.address in by_ip
            for f in _check_weight(svc, by_ip[dest.address], dest, state, dp, where)]


@register_check(
    CheckInfo(
        "ipvs-service-missing",
        "A VIP service's LocalLBIndex has no IPVS firewall-mark service.",
        "`docker service update --force <service>` reprograms it; inspect with `ipvsadm -Ln`."),
    CheckInfo(
        "ipvs-service-stale",
        "An IPVS service belongs to no current VIP service of the network.",
        "Leftover of a removed service; restarting dockerd (or a reboot) clears it."),
    CheckInfo(
        "ipvs-service-config",
        "The IPVS service's address family, scheduler or persistence differ from what the engine sets.",
        "Someone changed it by hand; `docker service update --force <service>` restores it."),
    CheckInfo(
        "ipvs-backend-missing",
        "A task of the service is not a destination of its IPVS service.",
        "Requests never reach that task; `docker service update --force <service>`."),
    CheckInfo(
        "ipvs-backend-stale",
        "An IPVS destination is no task of the service (maybe of another service).",
        "Requests go to a dead or foreign task; `docker service update --force <service>`."),
    CheckInfo(
        "ipvs-backend-weight",
        "A destination has weight 0 though its task should receive traffic (not a task failing its "
        "health check, which its executor disables before swarm stops it), or weight 1 though swarm is "
        "stopping it (moby#41896).",
        "Check the task with `docker service ps`; `docker service update --force <service>`."),
    CheckInfo(
        "ipvs-backend-forwarding",
        "A destination's forwarding method is not Masq (Route on networks created with -o dsr).",
        "`docker service update --force <service>`."),
    scope="lb", needs=("ipvs",))
def check_ipvs(lb: LoadBalancer, state: NodeState) -> list[Finding]:
    """Each VIP service's IPVS firewall-mark service and its destinations, and no others."""
    net, dp, services = lb.network, lb.datapath, lb.network.vip_services()
    findings: list[Finding] = []
    where = {"network": net.name, "namespace": dp.name}
    by_mark = dp.ipvs_by_mark
    owner_of_ip = {t.ip: svc.name for svc in net.services.values() for t in svc.tasks}
    want_fwd = "Route" if net.dsr else "Masq"
    for svc in services:
        if svc.fwmark < FIRST_FWMARK:
            why = (f"network inspect showed an earlier service's VIP and mark under its name, and no "
                   f"MARK rule in {dp.name} marks its VIP {svc.vip}" if svc.mark_unknown else
                   f"LocalLBIndex {svc.fwmark}")
            findings.append(Finding(
                "ipvs-service-missing", f"service {svc.name} has no local load-balancer binding "
                f"({why})", service=svc.name, subject=str(svc.fwmark),
                expected=f">= {FIRST_FWMARK}", actual=svc.fwmark,
                hint=f"docker service update --force {shq(svc.name)}", **where))
            continue
        ipvs = by_mark.get(svc.fwmark)
        if ipvs is None:
            findings.append(Finding(
                "ipvs-service-missing", f"service {svc.name} (VIP {svc.vip}): no IPVS service "
                f"FWM {svc.fwmark} in {dp.name}", service=svc.name, subject=str(svc.fwmark),
                expected=f"FWM {svc.fwmark}", actual=None,
                hint=_hint_ipvs(dp.path, svc.name), **where))
            continue
        wrong = []
        if ipvs.family != AF_INET:
            wrong.append(f"address family {ipvs.family} (expected {AF_INET}, IPv4)")
        if ipvs.scheduler != "rr":
            wrong.append(f"scheduler {ipvs.scheduler!r} (expected 'rr')")
        if ipvs.flags & IP_VS_SVC_F_PERSISTENT or ipvs.timeout:
            wrong.append(f"persistent, timeout {ipvs.timeout}s (expected none)")
        if wrong:
            findings.append(Finding(
                "ipvs-service-config", f"service {svc.name}: FWM {svc.fwmark} has "
                + "; ".join(wrong), service=svc.name, subject=str(svc.fwmark),
                expected={"family": AF_INET, "scheduler": "rr", "persistent": False},
                actual={"family": ipvs.family, "scheduler": ipvs.scheduler,
                        "persistent": bool(ipvs.flags & IP_VS_SVC_F_PERSISTENT),
                        "timeout": ipvs.timeout},
                hint=_hint_ipvs(dp.path, svc.name), **where))
        findings += _check_backends(svc, ipvs, owner_of_ip, want_fwd, state, dp, where)
    wanted = {s.fwmark for s in services}
    departed, _ = departed_lb(lb, state)
    for ipvs in dp.ipvs or []:
        if ipvs.fwmark and ipvs.fwmark in wanted:
            continue
        if ipvs.fwmark in departed:
            findings += _departed_weights(departed[ipvs.fwmark], ipvs, state, dp, where)
            continue
        findings.append(Finding(
            "ipvs-service-stale", f"IPVS service {ipvs.label()} in {dp.name} belongs to no "
            f"current VIP service of network {net.name}", subject=ipvs.label(),
            expected=None, actual={"service": ipvs.label(),
                                   "destinations": [d.address for d in ipvs.dests]},
            hint=_hint_ipvs(dp.path, None), **where))
    return findings


@register_check(
    CheckInfo(
        "mark-missing",
        "The iptables rule that marks the VIP (or an ingress published port) with the fwmark is absent.",
        "Traffic to that VIP or port is not load-balanced; `docker service update --force <service>`."),
    CheckInfo(
        "mark-stale",
        "A MARK rule marks a VIP or port that no current service owns.",
        "Leftover of a removed service or port; restarting dockerd clears it."),
    CheckInfo(
        "mark-conflict",
        "A VIP or port has more than one MARK rule, or one that sets a mark other than its LocalLBIndex "
        "(libnetwork#2263).",
        "Only the last rule wins; `docker service update --force <service>`, else restart dockerd."),
    scope="lb", needs=("rules",))
def check_marks(lb: LoadBalancer, state: NodeState) -> list[Finding]:
    """The MARK rules of each VIP, and in ingress of each published port."""
    net, dp, services = lb.network, lb.datapath, lb.network.vip_services()
    departed = set(departed_lb(lb, state)[0])  # an earlier incarnation's rules, until it is gone
    findings = _check_vip_marks(net, dp, services, state.model.mark_chain, departed)
    if net.ingress:
        findings += _check_port_marks(net, dp, services, departed)
    return findings


@register_check(
    CheckInfo(
        "snat-missing",
        "The NAT-mode network lacks `-m ipvs --ipvs -j SNAT --to-source <LB IP>` in nat POSTROUTING.",
        "Replies from remote tasks do not come back; restart dockerd."),
    scope="lb", needs=("rules", "ipvs"))
def check_snat(lb: LoadBalancer, state: NodeState) -> list[Finding]:
    """NAT mode's SNAT rule (it needs the kernel's ipvs match: without IPVS it cannot exist)."""
    if lb.network.dsr or not lb.network.vip_services():
        return []
    net, dp, lb_ip = lb.network, lb.datapath, lb.lb_ip
    rules = [r for r in (dp.rules or {}).get("nat", {}).get("POSTROUTING", [])
             if r.target == "SNAT" and "ipvs" in r.matches and r.opts.get("--ipvs") is True]
    subnets = {_network(s) for s in net.subnets}
    good = [r for r in rules if r.dst in subnets
            and (lb_ip is None or (r.get("--to-source") or "").split(":")[0] == lb_ip)]
    if good:
        return []
    expected = (f"-A POSTROUTING -d {net.subnets[0] if net.subnets else '<subnet>'} -m ipvs "
                f"--ipvs -j SNAT --to-source {lb_ip or '<LB IP>'}")
    return [Finding("snat-missing", f"network {net.name} (NAT mode): no IPVS SNAT rule to the "
                    f"load-balancer address {lb_ip or '?'} in nat POSTROUTING of {dp.name}",
                    network=net.name, namespace=dp.name, subject="POSTROUTING",
                    expected=expected, actual=[r.text for r in rules] or None,
                    hint=_hint_rules(dp.path, "nat"))]


@register_check(
    CheckInfo(
        "vip-alias-missing",
        "A service VIP is not a /32 alias on the load-balancer interface.",
        "Nobody answers ARP for the VIP on this node; `docker service update --force <service>`."),
    CheckInfo(
        "vip-alias-stale",
        "A /32 alias on the load-balancer interface is no current service VIP.",
        "Leftover of a removed service; restarting dockerd clears it."),
    scope="lb", needs=("addresses",))
def check_aliases(lb: LoadBalancer, state: NodeState) -> list[Finding]:
    """Each VIP as a /32 alias on the load-balancer interface (not in per-container era)."""
    if not lb.expect_aliases:
        return []
    net, dp, services, lb_ip = lb.network, lb.datapath, lb.network.vip_services(), lb.lb_ip
    where = {"network": net.name, "namespace": dp.name}
    addresses = dp.addresses or {}
    iface = next((name for name, addrs in addresses.items()
                  if lb_ip and any(ip == lb_ip for ip, _ in addrs)), None)
    if iface is None:
        iface = "eth0" if "eth0" in addresses else None
    have = {ip for ip, plen in addresses.get(iface, []) if plen == 32} if iface else set()
    findings = []
    hint = f"nsenter --net={shq(dp.path)} ip -4 addr show"
    for svc in services:
        if svc.vip not in have:
            findings.append(Finding(
                "vip-alias-missing", f"VIP {svc.vip} of service {svc.name} is not a /32 on "
                f"{iface or 'the load-balancer interface'} of {dp.name}", service=svc.name,
                subject=svc.vip, expected=f"{svc.vip}/32", actual=sorted(have), hint=hint, **where))
    vips = {s.vip for s in services}
    for ip in sorted(have - vips - {lb_ip} - departed_lb(lb, state)[1]):
        findings.append(Finding(
            "vip-alias-stale", f"{ip}/32 on {iface} of {dp.name} is no current VIP of network "
            f"{net.name}", subject=ip, expected=sorted(vips), actual=f"{ip}/32", hint=hint, **where))
    return findings


@register_check(
    CheckInfo(
        "sysctl",
        "An IPVS sysctl in the load-balancer namespace differs from what this engine version sets.",
        "Something rewrote it; see moby#35082 for the effect; restart dockerd to reapply."),
    scope="lb", needs=("ipvs", "sysctls"))
def check_sysctls(lb: LoadBalancer, state: NodeState) -> list[Finding]:
    """The IPVS sysctls this engine version sets in its load-balancer namespaces."""
    net, dp, model = lb.network, lb.datapath, state.model
    if not net.vip_services():
        return []
    findings = []
    for name, want in model.lb_sysctls(nat_mode=not net.dsr).items():
        have = (dp.sysctls or {}).get(name)
        if have != want:
            findings.append(Finding(
                "sysctl", f"net.ipv4.vs.{name} is {have} in {dp.name}, engine "
                f"{model.version} sets {want}", network=net.name, namespace=dp.name, subject=name,
                expected=want, actual=have, hint=f"nsenter --net={shq(dp.path)} sysctl net.ipv4.vs"))
    return findings


def _check_backends(svc: ServiceView, ipvs: IpvsService, owner_of_ip: dict[str, str],
                    want_fwd: str, state: NodeState, dp: Datapath, where: dict) -> list[Finding]:
    findings = []
    swarm_tasks = state.swarm_tasks
    dests = {d.address: d for d in ipvs.dests}
    for task in svc.tasks:
        dest = dests.get(task.ip)
        swarm_task = (swarm_tasks or {}).get(task.task_id)
        if dest is None and swarm_task is not None and swarm_task.stopping:
            # Being stopped: its backend is weight 0, or (25.0.13+, 29.0+: a node that learns of
            # the task already disabled programs none) absent. Either way no traffic is lost.
            continue
        if dest is None:
            after = (f" (its published ports changed in its last update, {svc.ports_changed}: "
                     "the engine builds a new load balancer for the new ports and can lose "
                     "backends on the way, cf. moby#38833)" if svc.ports_changed else "")
            findings.append(Finding(
                "ipvs-backend-missing", f"task {task.name} ({task.ip}) is not a destination "
                f"of FWM {svc.fwmark}{after}", service=svc.name, subject=task.ip,
                expected=task.ip, actual=sorted(dests), hint=_hint_ipvs(dp.path, svc.name), **where))
            continue
        findings += _check_weight(svc, task, dest, state, dp, where)
        if dest.forwarding != want_fwd:
            findings.append(Finding(
                "ipvs-backend-forwarding", f"task {task.name} ({task.ip}) in FWM {svc.fwmark} "
                f"uses {dest.forwarding} forwarding, expected {want_fwd}", service=svc.name,
                subject=task.ip, expected=want_fwd, actual=dest.forwarding,
                hint=_hint_ipvs(dp.path, svc.name), **where))
    task_ips = {t.ip for t in svc.tasks}
    for address in sorted(set(dests) - task_ips):
        other = owner_of_ip.get(address)
        whose = f"it is a task of service {other}" if other else "it is no task of this network"
        findings.append(Finding(
            "ipvs-backend-stale", f"destination {address} of FWM {svc.fwmark} is no task of "
            f"service {svc.name}: {whose}", service=svc.name, subject=address,
            expected=sorted(task_ips), actual=address, hint=_hint_ipvs(dp.path, svc.name), **where))
    return findings


def _check_weight(svc: ServiceView, task: TaskView, dest: IpvsDest, state: NodeState, dp: Datapath,
                  where: dict) -> list[Finding]:
    """Weight 1 carries traffic; weight 0 is a task swarm is stopping (18.03.1+), or one failing
    its health check that the executor has disabled and is stopping (swarm says running)."""
    swarm_task = (state.swarm_tasks or {}).get(task.task_id)
    stopping = swarm_task is not None and swarm_task.stopping
    if dest.weight not in (0, 1):
        wrong = f"weight {dest.weight}, the engine only sets 0 or 1"
    elif dest.weight == 0 and swarm_task is not None and not stopping and swarm_task.state == "running":
        if health_drain(task, svc.name, state):
            return []  # said in a note (health_notes)
        wrong = "weight 0 though swarm wants it running"
        if task.task_id in state.local_health:
            health = state.local_health[task.task_id] or "without a health check"
            wrong += f" (its container on this node is {health})"
    elif dest.weight == 1 and stopping and swarm_task.state == "running":
        wrong = f"weight 1 though swarm is stopping it (desired state {swarm_task.desired_state})"
    else:
        return []
    expected = 0 if stopping else 1
    return [Finding("ipvs-backend-weight", f"task {task.name} ({task.ip}) in FWM {svc.fwmark}: "
                    f"{wrong}", service=svc.name, subject=task.ip, expected=expected,
                    actual=dest.weight, hint=f"docker service ps {shq(svc.name)}; "
                    + _hint_ipvs(dp.path, svc.name), **where)]


def health_drain(task: TaskView, service: str, node: NodeState) -> str | None:
    """Why a task swarm runs may be disabled (weight 0, its records removed) for failing its
    health check, or None. Its own node's container health decides; elsewhere the service's
    declared health check makes it possible, for as long as the stop grace period."""
    if task.task_id in node.local_health:
        return "its container on this node is unhealthy" if node.local_health[task.task_id] == "unhealthy" \
            else None
    grace = (node.health_checked or {}).get(service)
    if grace is None:
        return None
    return (f"service {service} has a health check: a task failing it is taken out of service before "
            f"swarm stops it, within its stop grace period ({grace:g} s)")


def disabled_while_running(state: NodeState
                           ) -> Iterator[tuple[LoadBalancer, ServiceView, TaskView, SwarmTask]]:
    """Backends at weight 0 in a load balancer here whose task swarm runs and does not stop."""
    for lb in state.lbs:
        for svc in lb.network.vip_services():
            ipvs = lb.datapath.ipvs_by_mark.get(svc.fwmark) if svc.fwmark else None
            zero = {d.address for d in (ipvs.dests if ipvs else []) if d.weight == 0}
            if not zero:
                continue
            for task in svc.tasks:
                known = (state.swarm_tasks or {}).get(task.task_id) if task.ip in zero else None
                if known is not None and not known.stopping and known.state == "running":
                    yield lb, svc, task, known


def health_notes(state: NodeState) -> list[str]:
    """The backends at weight 0 that swarm still runs, excused as failing their health check."""
    notes = []
    for lb, svc, task, _ in disabled_while_running(state):
        why = health_drain(task, svc.name, state)
        if why:
            notes.append(f"network {lb.network.name}: task {task.name} ({task.ip}) is at weight 0 in "
                         f"{lb.datapath.name} while swarm says it runs: {why}. If it stays so "
                         f"longer, see docker service ps {svc.name} and its container's "
                         "State.Health (docker inspect, on its node)")
    return notes


def _marks_in(rules: Ruleset, table: str, chain: str) -> list[Rule]:
    return [r for r in rules.get(table, {}).get(chain, []) if r.target == "MARK"]


def _mark_findings(rules_for: list[Rule], fwmark: int, what: str, svc: ServiceView,
                   subject: str, dp: Datapath, where: dict) -> list[Finding]:
    hint = _hint_rules(dp.path, "mangle")
    if not rules_for:
        return [Finding("mark-missing", f"no MARK rule for {what} of service {svc.name} "
                        f"(expected mark {fwmark:#x})", service=svc.name, subject=subject,
                        expected=hex(fwmark), actual=None, hint=hint, **where)]
    marks = [r.mark for r in rules_for]
    if len(rules_for) > 1 or marks[0] != (fwmark, 0xFFFFFFFF):
        shown = ", ".join(f"{m[0]:#x}/{m[1]:#x}" if m else "?" for m in marks)
        return [Finding("mark-conflict", f"{what} of service {svc.name}: {len(rules_for)} MARK "
                        f"rule(s) setting {shown}, expected one setting {fwmark:#x}",
                        service=svc.name, subject=subject, expected=hex(fwmark),
                        actual=[r.text for r in rules_for], hint=hint, **where)]
    return []


def _check_vip_marks(net: NetworkView, dp: Datapath, services: list[ServiceView],
                     chain: str, departed: set[int]) -> list[Finding]:
    findings: list[Finding] = []
    where = {"network": net.name, "namespace": dp.name}
    marks = [r for r in _marks_in(dp.rules or {}, "mangle", chain)
             if r.dst and not (r.mark and r.mark[0] in departed)]
    by_dst: dict[str, list[Rule]] = {}
    for rule in marks:  # indexed: thousands of services must not mean services x rules
        by_dst.setdefault(rule.dst, []).append(rule)
    for svc in services:
        if svc.fwmark < FIRST_FWMARK:
            continue
        mine = by_dst.get(f"{svc.vip}/32", [])
        findings += _mark_findings(mine, svc.fwmark, f"VIP {svc.vip} (mangle {chain})", svc,
                                   f"{svc.vip}/32", dp, where)
    vips = {f"{s.vip}/32" for s in services}
    for rule in marks:
        if rule.dst not in vips:
            findings.append(Finding(
                "mark-stale", f"mangle {chain} marks {rule.dst}, which is no current VIP of "
                f"network {net.name}", subject=rule.dst, expected=None, actual=rule.text,
                hint=_hint_rules(dp.path, "mangle"), **where))
    return findings


def _check_port_marks(net: NetworkView, dp: Datapath, services: list[ServiceView],
                      departed: set[int]) -> list[Finding]:
    """ingress_sbox: mangle PREROUTING -p proto --dport P -j MARK, one per published port."""
    findings: list[Finding] = []
    where = {"network": net.name, "namespace": dp.name}
    marks = [r for r in _marks_in(dp.rules or {}, "mangle", "PREROUTING")
             if r.port("--dport") and not (r.mark and r.mark[0] in departed)]
    owned = set()
    for svc in services:
        if svc.fwmark < FIRST_FWMARK:
            continue
        for port in svc.ports:
            mine = [r for r in marks if r.port("--dport") == port.published
                    and (port.protocol is None or r.proto == port.protocol)]
            owned.update(id(r) for r in mine)
            if port.protocol is not None or not mine:
                findings += _mark_findings(mine, svc.fwmark, f"published port {port.label()}", svc,
                                           port.label(), dp, where)
                continue
            # A worker cannot tell 53/tcp from 53/udp (inspect shows no protocol) and the engine
            # writes one MARK rule per protocol: judge each protocol's rules on their own.
            by_proto: dict[str | None, list[Rule]] = {}
            for rule in mine:
                by_proto.setdefault(rule.proto, []).append(rule)
            for proto, rules_for in sorted(by_proto.items(), key=lambda kv: kv[0] or ""):
                label = f"{port.published}/{proto or 'any'}"
                findings += _mark_findings(rules_for, svc.fwmark, f"published port {label}", svc,
                                           label, dp, where)
    for rule in marks:
        if id(rule) not in owned:
            label = f"{rule.port('--dport')}/{rule.proto}"
            findings.append(Finding(
                "mark-stale", f"mangle PREROUTING marks port {label}, which no current service "
                "publishes", subject=label, expected=None, actual=rule.text,
                hint=_hint_rules(dp.path, "mangle"), **where))
    return findings


def read_load_balancers(collector: Collector, state: NodeState, reading: Reading) -> None:
    """The first read phase: each instantiated network's load-balancer namespace(s), where this
    engine puts them, and each network's result; the ingress one is kept too (its sandbox is
    where the ingress checks start). Then the marks inspect could not show are adopted."""
    results = reading.results
    for view in state.views:
        if not view.instantiated:
            results.append(NetworkResult(view, None, False, "not instantiated on this node "
                                         "(no task or load balancer here): nothing to check"))
            continue
        planned = plan_load_balancers(collector, view, state.model, reading.not_checked)
        if not planned:
            state.lb_not_found.append(view.id)
            results.append(NetworkResult(view, None, True))
            continue
        result = NetworkResult(view, ", ".join(os.path.basename(p) for p, _ in planned), True)
        for path, lb_ip in planned:
            dp = collector.datapath(path)
            if dp.error:
                reading.not_checked.append(NotChecked(f"network {view.name}", dp.error))
                result.partial = True
                continue
            _datapath_not_checked(dp, f"network {view.name}", reading.not_checked)
            result.partial |= dp.partial
            state.lbs.append(LoadBalancer(view, dp, lb_ip, expect_aliases=not state.model.per_container))
            if view.ingress:
                reading.ingress_dp = dp
        results.append(result)
    adopt_marks(state)


def read_health(collector: Collector, state: NodeState, reading: Reading) -> None:
    """A read phase: what a manager can tell of tasks at weight 0 (health checks): notes, and the
    local containers' health."""
    read_local_health(collector, state, reading.node)
    reading.notes += health_notes(state)


def read_local_health(collector: Collector, state: NodeState, node: NodeInfo) -> None:
    """Managers: the health of this node's containers whose backend is at weight 0 while swarm
    runs their task. An unhealthy one is being stopped by its executor; a healthy one is a fault."""
    for _, _, task, known in disabled_while_running(state):
        if known.node_id != node.id or not known.container_id or task.task_id in state.local_health:
            continue
        info = collector.container(known.container_id)
        state.local_health[task.task_id] = None if info is None else \
            str(((info.get("State") or {}).get("Health") or {}).get("Status") or "")


def _datapath_not_checked(dp: Datapath, scope: str, not_checked: list[NotChecked],
                          parts: tuple[str, ...] = ("ipvs", "rules", "addresses")) -> None:
    """Say what of a namespace could not be read, and so which checks were skipped: with the
    reason read, or (a part simply absent, say from a damaged snapshot) that none was."""
    where = f"{scope} ({dp.name})" if dp.name != scope else scope
    reasons = {"ipvs": dp.ipvs_error, "rules": dp.iptables_error, "addresses": None}
    for part in parts:
        if getattr(dp, part) is None and reasons[part] is None:
            not_checked.append(NotChecked(where, f"its {part} were not read, and no reason was recorded; "
                                                 "the checks that need them skipped"))
    if dp.ipvs_error and dp.ipvs_missing:
        # A fact about the kernel, not the namespace: say it once for the whole run.
        kernel = next((p for p in not_checked if p.scope == "kernel"), None)
        if kernel is None:
            not_checked.append(NotChecked("kernel", f"{dp.ipvs_error}; IPVS, SNAT and sysctl checks "
                                    f"skipped in {dp.name}"))
        else:
            kernel.message += f", {dp.name}"
    elif dp.ipvs_error:
        not_checked.append(NotChecked(where, dp.ipvs_error + "; IPVS, SNAT and sysctl checks skipped"))
    if dp.iptables_error:
        not_checked.append(NotChecked(where, f"iptables not readable: {dp.iptables_error}"))


def plan_load_balancers(collector: Collector, view: NetworkView, model: EngineModel,
                        not_checked: list[NotChecked]) -> list[tuple[str, str | None]]:
    """(namespace path, LB IP) pairs to read for this network on this engine."""
    lb_ep = view.lb_endpoint
    lb_ip = lb_ep.ip if lb_ep else None
    if view.ingress or model.lb_location == "named":
        path = collector.ns_path(lb_namespace_name(view))
        return [(path, lb_ip)] if collector.ns_exists(path) else []
    if model.lb_location == "by-address":
        path = collector.find_lb_by_address(lb_ip) if lb_ip else None
        return [(path, lb_ip)] if path else []
    # Era A: every local container of the network is its own load balancer.
    planned = []
    for key, ep in view.endpoints.items():
        info = collector.container(key)
        sandbox = ((info or {}).get("NetworkSettings") or {}).get("SandboxKey")
        if not sandbox:
            not_checked.append(NotChecked(f"network {view.name}", f"container {key[:12]} has no sandbox "
                                    "(it may have stopped mid-run)"))
            continue
        planned.append((collector.ns_path(os.path.basename(sandbox)), ep.ip))
    return planned


def gateway_ip(collector: Collector, ingress_dp: Datapath | None, ingress: NetworkView) -> str | None:
    """ingress_sbox's docker_gwbridge address: the DNAT target of every published port."""
    gw = collector.network("docker_gwbridge")
    ep = ((gw or {}).get("Containers") or {}).get(ingress.lb_key)
    if ep and ep.get("IPv4Address"):
        return ep["IPv4Address"].split("/")[0]
    subnets = [ipaddress.ip_network(s) for s in ingress.subnets]
    for addrs in ((ingress_dp.addresses if ingress_dp else None) or {}).values():
        for ip, _ in addrs:
            addr = ipaddress.ip_address(ip)
            if not addr.is_loopback and not any(addr in s for s in subnets):
                return ip
    return None


def read_task_datapaths(collector: Collector, ingress: NetworkView, not_checked: list[NotChecked]
                        ) -> dict[str, Datapath]:
    out = {}
    for key, ep in ingress.endpoints.items():
        if key in (ingress.lb_key, "ingress-sbox") or key.startswith("lb-"):
            continue
        info = collector.container(key)
        sandbox = ((info or {}).get("NetworkSettings") or {}).get("SandboxKey")
        if not sandbox:
            continue  # the task stopped between inspect and now: nothing to check
        dp = collector.datapath(collector.ns_path(os.path.basename(sandbox)), want_ipvs=False)
        if dp.error:
            if "does not exist" not in dp.error:
                not_checked.append(NotChecked(f"task {ep.name}", dp.error))
            continue
        out[key] = dp
    return out


LAYER = declare_layer(Layer("kernel", 10, "kernel, against NetworkDB on this node"))
