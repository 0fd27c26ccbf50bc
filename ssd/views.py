"""The views: the Engine API's answers (network inspect -v, /services, /tasks, /nodes) turned into
the model's NetworkView, SwarmTask, SwarmNode, published ports and service VIPs. Pure: JSON in,
views out; what is malformed is an error here, not deeper in the checks."""
from __future__ import annotations

import ipaddress
import re
import sys
from collections.abc import Iterable

from ssd.base import CheckError, printable
from ssd.model import (
    TERMINAL, LocalEndpoint, NetworkView, PublishedPort, ServiceView, SwarmNode, SwarmTask, TaskView,
    parse_timestamp,
)


def resolve_networks(listing: list[dict], wanted: list[str], absent: list[str] | None = None
                     ) -> list[dict]:
    """Pick networks by name, full ID or unique ID prefix; default: every swarm overlay.

    A name this node does not list is an error, unless absent is given (a worker, which lists
    only the swarm networks it has instantiated): then it is collected there instead.
    """
    swarm_nets = [n for n in listing if n.get("Scope") == "swarm" and n.get("Driver") == "overlay"]
    if not wanted:
        return swarm_nets
    chosen: list[dict] = []
    for term in wanted:
        exact = [n for n in listing if term in (n.get("Id"), n.get("Name"))]
        found = exact or [n for n in listing if n.get("Id", "").startswith(term)]
        if not found and absent is not None:
            absent.append(term)
            continue
        if not found:
            raise CheckError(f"network {term!r} not found on this node")
        if len(found) > 1:
            names = ", ".join(f"{n.get('Name')} ({n.get('Id', '')[:12]})" for n in found)
            raise CheckError(f"network {term!r} is ambiguous: {names}")
        net = found[0]
        if net.get("Scope") != "swarm" or net.get("Driver") != "overlay":
            raise CheckError(f"network {net.get('Name')!r} is not a swarm-scoped overlay network "
                             f"(scope {net.get('Scope')}, driver {net.get('Driver')}): ssd checks "
                             "swarm service load balancing")
        if net not in chosen:
            chosen.append(net)
    return chosen


def _split_cidr(value: str | None) -> tuple[str | None, int | None]:
    if not value or not isinstance(value, str):  # ipaddress takes an integer (or true) as an address
        return None, None
    try:
        iface = ipaddress.ip_interface(value)
    except ValueError:
        return None, None
    return str(iface.ip), iface.network.prefixlen


def _vip(value: str | None) -> str | None:
    # Engines <= 28 print "<nil>" for dnsrr services, 29+ print "".
    if not value or not isinstance(value, str) or value == "<nil>":
        return None
    return value.split("/")[0]


def parse_ports(entries: list[str] | None, protocols: dict[tuple[int, int], list[str]] | None
                ) -> list[PublishedPort]:
    """Ports from inspect's "Target: 80, Publish: 8080" strings, protocol from /services."""
    ports: list[PublishedPort] = []
    for entry in entries or []:
        m = re.match(r"Target:\s*(\d+),\s*Publish:\s*(\d+)", entry)
        if not m:
            continue
        target, published = int(m.group(1)), int(m.group(2))
        for proto in (protocols or {}).get((published, target)) or [None]:
            port = PublishedPort(published=published, target=target, protocol=proto)
            if port not in ports:
                ports.append(port)
    return ports


def service_protocols(services: list[dict] | None) -> dict[str, dict[tuple[int, int], list[str]]]:
    """service name -> (published, target) -> protocols of its ingress-mode ports."""
    out: dict[str, dict[tuple[int, int], list[str]]] = {}
    for svc in services or []:
        name = (svc.get("Spec") or {}).get("Name", "")
        for port in (svc.get("Endpoint") or {}).get("Ports") or []:
            if port.get("PublishMode", "ingress") != "ingress" or not port.get("PublishedPort"):
                continue
            key = (int(port["PublishedPort"]), int(port.get("TargetPort", 0)))
            out.setdefault(name, {}).setdefault(key, []).append(port.get("Protocol", "tcp"))
    return out


def _ports_text(ports: list[dict] | None) -> str:
    return ", ".join(sorted(f"{p.get('PublishedPort')}/{p.get('Protocol', 'tcp')}"
                            for p in ports or [] if p.get("PublishedPort"))) or "none"


def port_changes(services: list[dict] | None) -> dict[str, str]:
    """service name -> how its published ports changed in its last update (managers only).

    The engine keys a load balancer by (service ID, ports): such an update builds a new one
    beside the old, and findings about it read differently when one knows that.
    """
    out = {}
    for svc in services or []:
        before = ((svc.get("PreviousSpec") or {}).get("EndpointSpec") or {}).get("Ports")
        after = ((svc.get("Spec") or {}).get("EndpointSpec") or {}).get("Ports")
        if svc.get("PreviousSpec") and _ports_text(before) != _ports_text(after):
            out[(svc.get("Spec") or {}).get("Name", "")] = f"{_ports_text(before)} -> {_ports_text(after)}"
    return out


VXLAN_ID_OPTION = "com.docker.network.driver.overlay.vxlanid_list"  # one VNI per subnet
MTU_OPTION = "com.docker.network.driver.mtu"


def _interned(value: str | None) -> str | None:
    return sys.intern(value) if isinstance(value, str) else value


def build_network_view(raw: dict, protocols: dict[str, dict] | None,
                       changes: dict[str, str] | None = None) -> NetworkView:
    endpoints = {}
    for key, ep in (raw.get("Containers") or {}).items():
        ip, prefixlen = _split_cidr(ep.get("IPv4Address"))
        endpoints[key] = LocalEndpoint(key=key, name=printable(str(ep.get("Name", ""))),
                                       endpoint_id=ep.get("EndpointID", ""), ip=ip, prefixlen=prefixlen)
    services = {}
    others: list[TaskView] = []
    for raw_name, svc in (raw.get("Services") or {}).items():
        tasks = [TaskView(name=printable(str(t.get("Name", ""))), endpoint_id=t.get("EndpointID", ""),
                          ip=(t.get("EndpointIP") or "").split("/")[0],
                          host_ip=_interned((t.get("Info") or {}).get("Host IP")))  # one per node
                 for t in svc.get("Tasks") or []]
        if not raw_name:  # plain containers (and, on 20.10, ingress LB endpoints): not a service
            others = tasks
            continue
        name = printable(raw_name)  # names are printed, and pasted into commands: no control characters
        services[name] = ServiceView(
            name=name, vip=_vip(svc.get("VIP")), fwmark=int(svc.get("LocalLBIndex") or 0),
            ports=parse_ports(svc.get("Ports"), (protocols or {}).get(name) if protocols is not None
                              else None),
            tasks=tasks, ports_changed=(changes or {}).get(name))
    subnets = [c["Subnet"] for c in ((raw.get("IPAM") or {}).get("Config") or [])
               if c.get("Subnet") and ":" not in c["Subnet"]]
    options = raw.get("Options") or {}
    vnis = [int(v) for v in str(options.get(VXLAN_ID_OPTION) or "").split(",") if v.strip().isdigit()]
    mtu = str(options.get(MTU_OPTION) or "")
    return NetworkView(
        id=raw.get("Id", ""), name=printable(str(raw.get("Name", ""))), ingress=bool(raw.get("Ingress")),
        dsr="dsr" in options, subnets=subnets, services=services,
        endpoints=endpoints, instantiated=bool(raw.get("Containers")) or bool(raw.get("Services")),
        vnis=vnis, mtu=int(mtu) if mtu.isdigit() else None, encrypted="encrypted" in options,
        peers=[(printable(str(p.get("Name", ""))), p.get("IP", ""))
               for p in raw.get("Peers") or [] if p.get("IP")],
        others=others)


def build_swarm_tasks(raw: Iterable[dict] | None, listed: set[str] | None = None
                      ) -> dict[str, SwarmTask] | None:
    """Swarm's tasks by ID. listed: the task IDs NetworkDB lists on the networks judged; a task
    that has ended (swarm keeps 5 per slot by default: most of a big swarm's /tasks) and that
    NetworkDB does not list is not kept, as no check looks at it (the checks that go over every
    task judge the running and the starting ones; the others look a task up from NetworkDB)."""
    if raw is None:
        return None
    tasks = {}
    # Interned: one string per task (its ID, shared with NetworkDB's TaskView) and one per
    # value that tasks share (states, services, nodes, networks), not one per task from the
    # JSON: 7 MiB less at 20,000 tasks.
    intern = sys.intern
    for t in raw:
        if not t.get("ID"):
            continue
        status = t.get("Status") or {}
        if listed is not None and status.get("State") in TERMINAL and t["ID"] not in listed:
            continue
        task_id = intern(t["ID"])
        tasks[task_id] = SwarmTask(
            id=task_id, service=intern(t.get("ServiceID") or ""),
            desired_state=intern(t.get("DesiredState") or ""), state=intern(status.get("State") or ""),
            node_id=intern(t.get("NodeID") or ""), stamp=status.get("Timestamp"),
            container_id=(status.get("ContainerStatus") or {}).get("ContainerID") or "",
            addresses={intern((a.get("Network") or {}).get("ID") or ""): _ipv4_first(a.get("Addresses"))
                       for a in t.get("NetworksAttachments") or []})
    return tasks


def _ipv4_first(addresses: list | None) -> str:
    """A task's address on a network as NetworkDB lists it (IPv4): on a dual-stack overlay swarm
    may give its IPv6 address first."""
    if addresses and len(addresses) == 1 and isinstance(addresses[0], str) and ":" not in addresses[0]:
        return addresses[0].partition("/")[0]  # one IPv4 address: nearly every task's attachment
    plain = [str(a).split("/")[0] for a in addresses or [] if a]
    return next((a for a in plain if ":" not in a), plain[0] if plain else "")


def build_swarm_nodes(raw: list[dict] | None) -> dict[str, SwarmNode] | None:
    if raw is None:
        return None
    return {n["ID"]: SwarmNode(id=n["ID"],
                               hostname=printable(str((n.get("Description") or {}).get("Hostname", ""))),
                               state=(n.get("Status") or {}).get("State", ""),
                               addr=(n.get("Status") or {}).get("Addr", ""),
                               since=parse_timestamp(n.get("UpdatedAt")),
                               availability=(n.get("Spec") or {}).get("Availability") or "active")
            for n in raw if n.get("ID")}


def build_service_vips(raw: list[dict] | None) -> dict[str, dict[str, list[str]]] | None:
    """Service name -> network ID -> the VIPs swarm allocated it there (/services)."""
    if raw is None:
        return None
    out: dict[str, dict[str, list[str]]] = {}
    for svc in raw:
        name = (svc.get("Spec") or {}).get("Name", "")
        for vip in (svc.get("Endpoint") or {}).get("VirtualIPs") or []:
            addr = str(vip.get("Addr") or "").split("/")[0]
            if addr and ":" not in addr:
                out.setdefault(name, {}).setdefault(vip.get("NetworkID", ""), []).append(addr)
    return out


def build_service_aliases(raw: list[dict] | None) -> dict[str, dict[str, list[str]]] | None:
    """Service name -> network (ID, or name as a spec may say) -> its DNS aliases there (/services)."""
    if raw is None:
        return None
    out: dict[str, dict[str, list[str]]] = {}
    for svc in raw:
        spec = svc.get("Spec") or {}
        # TaskTemplate.Networks since API 1.25; Spec.Networks is the deprecated older place.
        for net in (spec.get("TaskTemplate") or {}).get("Networks") or spec.get("Networks") or []:
            aliases = [str(a) for a in net.get("Aliases") or [] if a]
            if aliases:
                out.setdefault(spec.get("Name", ""), {})[net.get("Target", "")] = aliases
    return out


# An update in progress (swarm's UpdateStatus.State); "completed", "paused" and
# "rollback_completed" are where it stays, and what the datapath must then match.
UPDATING_STATES = frozenset({"updating", "rollback_started"})


def build_updating(raw: list[dict] | None) -> dict[str, str]:
    """Service name -> the state of its update, for services swarm is updating now."""
    states = {(svc.get("Spec") or {}).get("Name", ""): str((svc.get("UpdateStatus") or {}).get("State") or "")
              for svc in raw or []}
    return {name: state for name, state in states.items() if state in UPDATING_STATES}


DEFAULT_STOP_GRACE = 10.0  # seconds: swarmkit's default stop grace period


def build_health_checked(raw: list[dict] | None) -> dict[str, float] | None:
    """Service name -> its stop grace period, for services whose spec declares a health check.

    A task failing its health check is disabled (IPVS weight 0, its tasks.<name> and dnsrr
    records removed), then its container stopped within the grace period, while swarm still
    reports it running (the executor's controller.go: Wait -> checkHealth -> Shutdown). A
    health check of the image itself is not in the spec: only the task's own node sees it.
    """
    if raw is None:
        return None
    out: dict[str, float] = {}
    for svc in raw:
        spec = (svc.get("Spec") or {}).get("TaskTemplate", {}).get("ContainerSpec") or {}
        test = (spec.get("Healthcheck") or {}).get("Test") or []
        if test and test[0] != "NONE":
            grace = spec.get("StopGracePeriod")
            out[(svc.get("Spec") or {}).get("Name", "")] = grace / 1e9 if grace else DEFAULT_STOP_GRACE
    return out


def separate_departed(view: NetworkView, swarm_tasks: dict[str, SwarmTask], service_ids: dict[str, str],
                      service_vips: dict[str, dict[str, list[str]]]) -> None:
    """Managers: set apart the tasks listed under a service's name that swarm knows as tasks of
    another service ID. network inspect groups NetworkDB's tasks by name, with the VIP and mark
    of whichever task it met first, while the engine keys load balancers by service ID: after
    `docker stack rm` and a new deploy (or a service removed and created again) the old
    service's tasks stay listed under the name while they stop, with their own load balancer.
    Each such ID becomes an earlier incarnation in view.departed; if inspect showed its VIP, the
    current service takes swarm's VIP and its mark is read from the kernel (adopt_marks)."""
    current = {name: sid for sid, name in service_ids.items()}
    for name, svc in list(view.services.items()):
        sid = current.get(name, "")
        svc.service_id = sid
        earlier: dict[str, list[TaskView]] = {}
        for task in svc.tasks:
            known = swarm_tasks.get(task.task_id)
            if known is not None and known.service and known.service != sid:
                earlier.setdefault(known.service, []).append(task)
        if not earlier:
            continue
        moved = {t.endpoint_id for tasks in earlier.values() for t in tasks}
        svc.tasks = [t for t in svc.tasks if t.endpoint_id not in moved]
        swarm_vips = (service_vips.get(name) or {}).get(view.id) or []
        shown_vip, shown_mark = svc.vip, svc.fwmark
        # Whose VIP inspect showed: an earlier one's when swarm gives the name another VIP (or
        # none, the service being gone); told apart only with a single earlier incarnation.
        shown = next(iter(earlier)) if len(earlier) == 1 and shown_vip and (
            not sid or (swarm_vips and shown_vip not in swarm_vips)) else None
        if shown and sid:
            svc.vip, svc.fwmark, svc.mark_unknown = swarm_vips[0], 0, True
        for old_id, tasks in sorted(earlier.items()):
            mine = old_id == shown
            view.departed.append(ServiceView(name=name, vip=shown_vip if mine else None,
                                             fwmark=shown_mark if mine else 0, ports=list(svc.ports),
                                             tasks=tasks, service_id=old_id))
        if not sid and not svc.tasks:
            del view.services[name]  # the name is no current service's: only earlier ones are left
