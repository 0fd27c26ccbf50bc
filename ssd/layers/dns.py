"""Layer "dns": the embedded DNS's answers for every service, alias and tasks.<name>, asked inside
a local container, against NetworkDB; the resolver's iptables rules. Its reader, checks, block."""
from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ssd.base import _shorten, count, shq
from ssd.catalog import CheckInfo, Layer, declare_layer, register_check
from ssd.kernel.resolver import DNS_RESOLVER, DNS_TIMEOUT, DNS_TRIES
from ssd.layers.lb import _hint_rules, departed_lb, health_drain
from ssd.model import DnsProbe, Finding, NotChecked, _network

if TYPE_CHECKING:
    from ssd.collect import Collector
    from ssd.model import Datapath, NetworkResult, NetworkView, NodeState, Reading, ServiceView


# --- the embedded DNS: its answers against NetworkDB ----------------------------------
# libnetwork (service_common.go addEndpointNameResolution) registers, per network, <service> and
# each alias -> the VIP (dnsrr: every task IP), tasks.<service> and tasks.<alias> -> every task IP,
# from the same endpoint table `docker network inspect -v` lists; a task being stopped is first
# disabled (its records removed, NetworkDB keeps it at IPVS weight 0 until it is gone).

RESOLVER_CHAINS = (("OUTPUT", "DOCKER_OUTPUT", "-d"), ("POSTROUTING", "DOCKER_POSTROUTING", "-d"))


def dns_names(view: NetworkView, state: NodeState) -> list[str]:
    """The names to ask the resolver for on this network (the same list live and in replay)."""
    return list(dns_expectations(view, state))


def service_aliases(svc: ServiceView, view: NetworkView, state: NodeState) -> list[str]:
    by_net = (state.service_aliases or {}).get(svc.name) or {}
    return by_net.get(view.id) or by_net.get(view.name) or []


def draining_ips(view: NetworkView, state: NodeState) -> set[str]:
    """Task IPs being taken out of service: weight 0 in this node's load balancer of the network,
    or (managers) a task swarm no longer runs. Their records may already be gone."""
    ips = {d.address for lb in state.lbs if lb.network.id == view.id for svc in lb.datapath.ipvs or []
           for d in svc.dests if d.weight == 0}
    for svc in view.services.values():
        for task in svc.tasks:
            known = (state.swarm_tasks or {}).get(task.task_id)
            if known is not None and (known.stopping or known.state != "running"):
                ips.add(task.ip)
            elif not svc.vip and health_drain(task, svc.name, state):
                ips.add(task.ip)  # no load balancer shows it disabled: its health check may have
    return ips | {t.ip for old in view.departed for t in old.tasks}


@dataclass
class NameRecord:
    """What the resolver must answer for one name on one network: the union of what every service
    registers under it (two services may share an alias; a stack's short name is an alias)."""
    services: list[ServiceView]
    expected: set[str]  # the addresses registered under the name
    excused: set[str]  # those it may leave out: tasks being drained

    @property
    def label(self) -> str:
        return ", ".join(s.name for s in self.services)

    @property
    def service(self) -> str | None:
        """The service a finding names; None when the name belongs to several."""
        return self.services[0].name if len(self.services) == 1 else None


def dns_expectations(view: NetworkView, state: NodeState) -> dict[str, NameRecord]:
    """qname -> what the resolver must answer for it, from the services NetworkDB lists here."""
    memo = state.memo.setdefault("dns", {})
    if view.id in memo:
        return memo[view.id]
    draining = draining_ips(view, state)
    out: dict[str, NameRecord] = {}
    for svc in sorted(view.services.values(), key=lambda s: s.name):
        task_ips = {t.ip for t in svc.tasks if t.ip}
        if not task_ips or svc.ipv6:
            continue
        # A dnsrr service has no load balancer to show a task being stopped: only swarm (a
        # manager) can tell one from a lost record; a worker judges only stale answers for it.
        excused = task_ips if not svc.vip and state.swarm_tasks is None else task_ips & draining
        # The VIP's name goes with the last task taken out of service.
        by_name = ({svc.vip}, {svc.vip} if excused == task_ips else set()) if svc.vip else (task_ips, excused)
        for name in [svc.name, *service_aliases(svc, view, state)]:
            for qname, (expected, may_lack) in ((name.lower(), by_name),
                                                (f"tasks.{name}".lower(), (task_ips, excused))):
                record = out.setdefault(qname, NameRecord([], set(), set()))
                if svc not in record.services:
                    record.services.append(svc)
                record.expected |= expected
                record.excused |= may_lack
    memo[view.id] = out
    return out


def held_addresses(view: NetworkView, state: NodeState) -> set[str]:
    """Every address something on the network holds: task and other endpoints NetworkDB lists,
    VIPs (NetworkDB's and, on a manager, swarm's), this node's endpoints. A task's hostname, a
    container's name and a --network-alias answer such an address too, and NetworkDB does not say
    under which names: an answer holding one of them is not stale, an address nothing holds is."""
    held = {t.ip for t in view.all_endpoints() if t.ip}
    held |= {s.vip for s in [*view.services.values(), *view.departed] if s.vip}
    held |= {ip for lb in state.lbs if lb.network is view for ip in departed_lb(lb, state)[1]}
    held |= {e.ip for e in view.endpoints.values() if e.ip}
    held |= {ip for by_net in (state.service_vips or {}).values() for ip in by_net.get(view.id, [])}
    return held


def _dns_finding(check: str, message: str, view: NetworkView, probe: DnsProbe, service: str | None,
                 name: str, expected: Any, actual: Any, address: str | None = None) -> Finding:
    # One finding per wrong address: the two samples of a run must show the same one to count,
    # and tasks arriving or leaving between reading NetworkDB and asking the DNS differ each time.
    return Finding(check, message, network=view.name, namespace=os.path.basename(probe.path),
                   service=service, subject=f"{name} {address}" if address else name,
                   expected=expected, actual=actual,
                   hint=f"nsenter --net={shq(probe.path)} dig +short @{DNS_RESOLVER} {shq(name)}; "
                        f"docker network inspect -v {shq(view.name)}")


@register_check(
    CheckInfo(
        "dns-resolver-rules",
        "A container's namespace lacks the nat rules that send 127.0.0.11:53 (UDP or TCP) to dockerd's "
        "embedded resolver and back.",
        "Name lookups in that container fail or hang; restarting the container recreates its sandbox "
        "and the rules (`docker service update --force <service>` for a task).", layer="dns"),
    scope="dns", needs=("rules",))
def check_resolver_rules(subject: tuple[NetworkView, DnsProbe], state: NodeState) -> list[Finding]:
    """nat OUTPUT -d 127.0.0.11 -> DOCKER_OUTPUT: DNAT :53 -> the resolver's port, per protocol;
    POSTROUTING -> DOCKER_POSTROUTING: SNAT the answers back to :53 (libnetwork resolver_unix.go)."""
    view, probe = subject
    nat = (probe.rules or {}).get("nat", {})
    resolver = f"{DNS_RESOLVER}/32"
    missing = [f"-A {chain} -d {resolver} -j {target}" for chain, target, _ in RESOLVER_CHAINS
               if not any(r.target == target and r.dst == resolver for r in nat.get(chain, []))]
    for proto in ("udp", "tcp"):
        dnat = [r for r in nat.get("DOCKER_OUTPUT", []) if r.target == "DNAT" and r.proto == proto
                and r.dst == resolver and r.port("--dport") == 53]
        if not dnat:
            missing.append(f"-A DOCKER_OUTPUT -d {resolver} -p {proto} --dport 53 -j DNAT "
                           f"--to-destination {DNS_RESOLVER}:<port>")
            continue
        port = (dnat[0].get("--to-destination") or "").rpartition(":")[2]
        if not any(r.target == "SNAT" and r.proto == proto and _network(r.get("-s")) == resolver
                   and r.get("--sport") == port for r in nat.get("DOCKER_POSTROUTING", [])):
            missing.append(f"-A DOCKER_POSTROUTING -s {resolver} -p {proto} --sport {port} -j SNAT "
                           "--to-source :53")
    if not missing:
        return []
    udp_broken = any(" -j DOCKER_" in m or " -p udp " in m for m in missing)
    rules = [r.text for chain in ("OUTPUT", "POSTROUTING", "DOCKER_OUTPUT", "DOCKER_POSTROUTING")
             for r in nat.get(chain, [])]
    return [Finding("dns-resolver-rules",
                    f"container {probe.container} (namespace {os.path.basename(probe.path)}) on network "
                    f"{view.name} lacks {len(missing)} of the resolver's nat rules: "
                    + ("name lookups there fail" if udp_broken else "lookups over TCP (long answers) fail"),
                    network=view.name, namespace=os.path.basename(probe.path), subject=probe.container,
                    expected=missing, actual=rules, hint=_hint_rules(probe.path, "nat"))]


@register_check(
    CheckInfo(
        "dns-resolver-silent",
        "The embedded resolver (127.0.0.11) answered none of the names asked from inside a container of the "
        "network.",
        "Every lookup in that container times out; check the container's resolver rules "
        "(dns-resolver-rules), then restart the container (a task: `docker service update --force "
        "<service>`); if all containers are silent, restart dockerd.", layer="dns"),
    CheckInfo(
        "dns-name-missing",
        "The embedded DNS has no A record for a service name, alias or `tasks.<name>` while NetworkDB "
        "on this node lists running tasks of the service (NXDOMAIN with live tasks, moby#53141; or no "
        "answer at all while it answers the network's other names: it forwards names it does not hold).",
        "Clients cannot find the service by name although its IPs work; `docker service update "
        "--force <service>` re-registers its names; if many names are gone, restart dockerd.",
        layer="dns"),
    CheckInfo(
        "dns-answer-stale",
        "The embedded DNS answers, for a service name, alias or `tasks.<name>`, an address that nothing "
        "NetworkDB on this node lists on the network holds (a removed task, an old VIP: moby#36797). A "
        "name answers every address registered under it: a task's hostname or a container name that "
        "equals a service name adds that endpoint's address.",
        "Clients reach a dead or foreign address part of the time; `docker service update --force "
        "<service>`; if it stays, restart dockerd on this node.", layer="dns"),
    CheckInfo(
        "dns-answer-incomplete",
        "The embedded DNS leaves out, for a service name or `tasks.<name>`, an address NetworkDB on "
        "this node gives it (a running task, the VIP); draining tasks are allowed to be missing.",
        "Clients never reach that task by DNS; `docker service update --force <service>`.",
        layer="dns"),
    scope="dns", needs=("answers",))
def check_dns_answers(subject: tuple[NetworkView, DnsProbe], state: NodeState) -> list[Finding]:
    view, probe = subject
    answers = probe.answers or {}
    findings = []
    silent = [name for name, a in answers.items() if a.get("silent")]
    if silent:
        findings.append(_dns_finding(
            "dns-resolver-silent", f"the embedded DNS ({DNS_RESOLVER}) answered none of the {len(answers)} "
            f"name(s) asked in container {probe.container} on network {view.name} ({silent[0]} first) "
            f"within {DNS_TRIES} tries of {DNS_TIMEOUT:g} s: no name of the network resolves there", view,
            probe, None, silent[0], "an answer", answers[silent[0]].get("error")))
    subnets = [ipaddress.ip_network(net) for net in view.subnets]
    held = held_addresses(view, state)
    for name, record in dns_expectations(view, state).items():
        answer = answers.get(name)
        required = record.expected - record.excused
        if answer is not None and answer.get("unanswered") and required:
            findings.append(_dns_finding(
                "dns-name-missing", f"the embedded DNS gave no answer for {name} in container "
                f"{probe.container} on network {view.name} while it answered the network's other names: "
                f"it holds no record of it and asks upstream servers, but NetworkDB on this node lists "
                f"{_tasks_of(record)}", view, probe, record.service, name, sorted(required),
                answer.get("error")))
            continue
        if answer is None or answer.get("error"):
            continue  # not asked (a silent resolver, a name DNS cannot carry), or not recorded
        findings += _judge_answer(name, record, answer, view, probe, subnets, held)
    return findings


def _tasks_of(record: NameRecord) -> str:
    tasks = sum(len(s.tasks) for s in record.services)
    return f"{count(tasks, 'task')} of service {record.label}" if len(record.services) == 1 else \
        f"{count(tasks, 'task')} of services {record.label}"


def _judge_answer(name: str, record: NameRecord, answer: dict, view: NetworkView, probe: DnsProbe,
                  subnets: list, held: set[str]) -> list[Finding]:
    got = set(answer.get("ips") or [])
    if probe.other_networks and got and not any(
            ipaddress.ip_address(ip) in net for ip in got for net in subnets):
        return []  # the container's other network answered this name first: not this one's
    where = f"in container {probe.container} on network {view.name}"
    required = record.expected - record.excused
    if not got:
        if not required:
            return []
        return [_dns_finding(
            "dns-name-missing", f"the embedded DNS answers {answer.get('rcode')} with no address for {name} "
            f"{where}, but NetworkDB on this node lists {_tasks_of(record)}", view, probe, record.service,
            name, sorted(required), answer.get("rcode"))]
    vip_name = any(s.vip for s in record.services) and not name.startswith("tasks.")
    what = "VIP" if vip_name else "running tasks' addresses"
    whose = f"service {record.label}" if len(record.services) == 1 else f"services {record.label}"
    findings = []
    # An address another endpoint of the network holds may be that endpoint's own name (a
    # task's hostname, a container name, an alias): the resolver answers the union. Stale is
    # an address nothing on the network holds.
    for ip in sorted(got - record.expected - held):
        findings.append(_dns_finding(
            "dns-answer-stale", f"the embedded DNS answers {ip} for {name} {where}; nothing NetworkDB on "
            f"this node lists on the network holds that address ({whose}, {what}: "
            f"{', '.join(sorted(record.expected))})", view, probe, record.service, name,
            sorted(record.expected), sorted(got), ip))
    for ip in sorted(required - got):
        findings.append(_dns_finding(
            "dns-answer-incomplete", f"the embedded DNS leaves out {ip} for {name} {where}: NetworkDB on "
            f"this node lists it for {whose} ({what})", view, probe, record.service, name,
            sorted(record.expected), sorted(got), ip))
    return findings


@register_check(
    CheckInfo(
        "iptables-split-brain",
        "Docker's chains appear in both the legacy and the nf_tables iptables backend (moby#46636).",
        "Make dockerd and every firewall tool use one backend (update-alternatives), then restart dockerd."),
    scope="datapath")
def check_split_brain(dp: Datapath, state: NodeState) -> list[Finding]:
    if len(dp.backends_with_docker_chains) < 2:
        return []
    return [Finding("iptables-split-brain", f"Docker chains exist in both iptables backends "
                    f"({', '.join(dp.backends_with_docker_chains)}) in {dp.name}",
                    namespace=dp.name, subject="iptables", expected="one backend",
                    actual=dp.backends_with_docker_chains,
                    hint="iptables-legacy-save; iptables-nft-save; update-alternatives --display iptables")]


DNS_CANDIDATES = 5  # local containers looked at to find one on no other network


def read_dns_layer(collector: Collector, state: NodeState, reading: Reading) -> None:
    """A read phase: each network's embedded DNS (after the load balancers: it is asked from a
    container of a network whose load balancer was read)."""
    state.dns = read_dns(collector, state.views, state, reading.not_checked, reading.notes)


def summarise_dns(result: NetworkResult, state: NodeState, reading: Reading) -> None:
    result.dns = (state.dns or {}).get(result.view.id)


def dns_json(net: NetworkResult, status: str) -> dict | None:
    if net.dns is None or net.dns.answers is None:
        return None
    return {"container": net.dns.container, "namespace": os.path.basename(net.dns.path),
            "names": len(net.dns.answers), "status": status}


def read_dns(collector: Collector, views: list[NetworkView], state: NodeState, not_checked: list[NotChecked],
             notes: list[str]) -> dict[str, DnsProbe] | None:
    """Each network's embedded DNS, asked from one local container (by network ID)."""
    if not collector.has_dns:
        notes.append("this snapshot holds no answers of the embedded DNS: DNS checks skipped")
        return None
    ingress_names = {v.name for v in views if v.ingress}
    out: dict[str, DnsProbe] = {}
    unasked = []
    for view in views:
        if not view.instantiated or view.ingress or not any(
                not svc.ipv6 and any(t.ip for t in svc.tasks) for svc in view.services.values()):
            continue  # no name to ask for (ingress has no service discovery: addSvcRecords)
        if not dns_candidates(view):  # (before the names: 5,000 services' records take a while)
            unasked.append(view.name)
            continue
        probe = dns_probe(collector, view, ingress_names, dns_names(view, state), not_checked)
        if probe is None:
            unasked.append(view.name)
        else:
            out[view.id] = probe
    if unasked:
        notes.append(f"network(s) {', '.join(unasked)}: no container of the network runs here, and "
                     "the embedded DNS answers only inside containers: DNS not asked on this node")
    return out


def dns_candidates(view: NetworkView) -> list[str]:
    """This node's containers on the network (endpoint keys, by name): where to ask from."""
    return sorted((k for k in view.endpoints if k != view.lb_key and not k.startswith("lb-")
                   and k != "ingress-sbox"), key=lambda k: view.endpoints[k].name)


def dns_probe(collector: Collector, view: NetworkView, ingress_names: set[str], names: list[str],
              not_checked: list[NotChecked]) -> DnsProbe | None:
    """Ask from a container on this network only where one runs here: the resolver answers a name
    from the first of the container's networks that has it."""
    best: tuple[dict, list[str]] | None = None
    for key in dns_candidates(view)[:DNS_CANDIDATES]:
        info = collector.container(key) or {}
        settings = info.get("NetworkSettings") or {}
        if not settings.get("SandboxKey"):
            continue  # stopped since the network was inspected
        others = sorted(n for n in settings.get("Networks") or {}
                        if n != view.name and n not in ingress_names)
        if best is None or len(others) < len(best[1]):
            best = (info, others)
        if not others:
            break
    if best is None:
        return None
    info, others = best
    path = collector.ns_path(os.path.basename(info["NetworkSettings"]["SandboxKey"]))
    name = str(info.get("Name") or path).lstrip("/")
    dp = collector.datapath(path, want_ipvs=False)
    raw = collector.dns(path, names) if not dp.error else {"error": dp.error}
    if raw is not None and raw.get("error"):
        if "does not exist" not in raw["error"]:  # a container that stopped mid-run: nothing to ask
            not_checked.append(NotChecked(f"network {view.name}", f"{raw['error']}; its DNS not asked"))
        return None
    return DnsProbe(container=name, path=path, other_networks=others, rules=dp.rules,
                    answers=None if raw is None else raw.get("answers") or {})


def describe_dns(net: NetworkResult) -> tuple[str, str, bool] | None:
    if net.dns is None or net.dns.answers is None:
        return None
    return (f"Asking the embedded DNS for network {net.view.name}",
            f"{count(len(net.dns.answers), 'name')}, in container {_shorten(net.dns.container, 40)}", True)


LAYER = declare_layer(Layer("dns", 30, "embedded DNS, against NetworkDB on this node",
                            was_read=lambda net: net.dns is not None and net.dns.answers is not None,
                            summarise=summarise_dns, describe=describe_dns, json=dns_json))
