"""The model: what the control plane says (the views: networks, services, tasks, nodes, built
by ssd.views), what the datapath holds (IPVS services, rules, links, neighbours, as the kernel
readers return them), what differs (Finding, NotChecked) and what one run found (NodeState, the
checks' input; NetworkResult and RunResult, the reports' input). Data only: no I/O, no checks."""
from __future__ import annotations

import contextlib
import functools
import ipaddress
import re
import socket
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

from ssd.catalog import CHECKS

if TYPE_CHECKING:
    from ssd.catalog import EngineModel
    from ssd.converging import Motion


@dataclass(frozen=True, slots=True)
class PublishedPort:
    published: int
    target: int
    protocol: str | None  # None: the node cannot know (worker, inspect has no protocol)

    def label(self) -> str:
        return f"{self.published}/{self.protocol or 'any'}"


# Not frozen, like SwarmTask: built once per task (20,000 on a big swarm), and a frozen
# dataclass sets each field through object.__setattr__, twice the cost (0.25 s against 0.12 s
# per 20,000 under the lab's emulation). Nothing changes them once built.
@dataclass(slots=True)
class TaskView:
    name: str
    endpoint_id: str
    ip: str
    host_ip: str | None
    # Task container names are <service>.<slot or node id>.<task id>. Kept, not a property:
    # the checks ask for it nine times per task (180,000 times at 5000 x 4).
    task_id: str = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        # interned: the same string as swarm's SwarmTask.id, held once
        self.task_id = sys.intern(self.name.rsplit(".", 1)[-1])


@dataclass
class ServiceView:
    name: str
    vip: str | None  # None for dnsrr services (no VIP, no IPVS state)
    fwmark: int
    ports: list[PublishedPort]
    tasks: list[TaskView]
    ports_changed: str | None = None  # managers: "8080/tcp -> 8080/tcp, 8081/tcp" after an update
    # Managers: network inspect groups tasks by name, while the engine keys load balancers by
    # service ID. A service removed and deployed again under its name (docker stack rm, then
    # deploy) leaves the old one's tasks listed under that name while they stop: split apart by
    # their ID, they are an earlier incarnation (service_id: its ID; vip, fwmark: 0 if unknown).
    service_id: str = ""
    mark_unknown: bool = False  # inspect showed an earlier incarnation's VIP and mark, not this one's

    @property
    def ipv6(self) -> bool:
        """An IPv6 VIP (dual-stack overlays can get one): libnetwork's load balancer is IPv4-only."""
        return bool(self.vip and ":" in self.vip)


@dataclass(frozen=True, slots=True)
class LocalEndpoint:
    key: str  # container ID, or lb-<net> / ingress-sbox for load-balancer sandboxes
    name: str
    endpoint_id: str
    ip: str | None
    prefixlen: int | None


@dataclass
class NetworkView:
    id: str
    name: str
    ingress: bool
    dsr: bool
    subnets: list[str]
    services: dict[str, ServiceView]
    endpoints: dict[str, LocalEndpoint]
    instantiated: bool
    # What the overlay layer is built from (Options, Peers, and Services[""]: endpoints of no
    # service, i.e. plain containers on attachable networks and, up to 24.x, load balancers).
    vnis: list[int] = field(default_factory=list)  # one per IPv4 subnet, in IPAM order
    mtu: int | None = None  # com.docker.network.driver.mtu
    encrypted: bool = False
    peers: list[tuple[str, str]] = field(default_factory=list)  # NetworkDB's (node name, IP)
    others: list[TaskView] = field(default_factory=list)
    departed: list[ServiceView] = field(default_factory=list)  # managers: earlier incarnations

    @property
    def lb_key(self) -> str:
        # libnetwork's lbSandboxName: "<name>-sbox" for the ingress network (which a user may
        # recreate under another name), "lb-<name>" for every other overlay.
        return f"{self.name}-sbox" if self.ingress else f"lb-{self.name}"

    @property
    def lb_endpoint(self) -> LocalEndpoint | None:
        return self.endpoints.get(self.lb_key)

    def all_endpoints(self) -> Iterator[TaskView]:
        """Every endpoint NetworkDB lists on this network: service tasks and the rest."""
        for svc in [*self.services.values(), *self.departed]:
            yield from svc.tasks
        yield from self.others

    def vip_services(self) -> list[ServiceView]:
        return [s for s in self.services.values() if s.vip and s.tasks and not s.ipv6]


# Desired states with which swarm takes a task out of service. A job's running task has
# desired state "complete" (swarmkit's job reconciler): that one is still meant to serve.
STOPPING_STATES = frozenset({"shutdown", "remove", "orphaned", "failed", "rejected"})


@dataclass(slots=True)  # not frozen: see TaskView
class SwarmTask:
    id: str
    service: str
    desired_state: str
    state: str
    node_id: str = ""
    # Status.Timestamp as the API gives it: read (since) only for the tasks a check judges,
    # not parsed for each of a big swarm's 20,000 tasks.
    stamp: str | None = None
    addresses: dict[str, str] = field(default_factory=dict)  # network ID -> its IP there
    container_id: str = ""  # Status.ContainerStatus.ContainerID: its container on its node

    @property
    def stopping(self) -> bool:
        return self.desired_state in STOPPING_STATES

    @property
    def since(self) -> float | None:
        """When it reached its state (epoch seconds); None if the API did not say."""
        return parse_timestamp(self.stamp)


@dataclass(frozen=True, slots=True)
class SwarmNode:
    id: str
    hostname: str
    state: str  # ready, down, unknown, disconnected
    addr: str
    since: float | None = None  # UpdatedAt: the last change of the node object (its state, say)
    availability: str = "active"  # Spec.Availability: active, pause, drain


@dataclass(slots=True)
class IpvsDest:
    address: str
    port: int
    weight: int
    forwarding: str


@dataclass(slots=True)
class IpvsService:
    family: int
    fwmark: int
    protocol: int
    address: str | None
    port: int
    scheduler: str
    flags: int
    timeout: int
    dests: list[IpvsDest] = field(default_factory=list)

    def label(self) -> str:
        if self.fwmark:
            return f"FWM {self.fwmark}"
        proto = {6: "TCP", 17: "UDP", 132: "SCTP"}.get(self.protocol, str(self.protocol))
        return f"{proto} {self.address}:{self.port}"


@dataclass
class Rule:
    table: str
    chain: str
    text: str
    opts: dict[str, str | bool]
    negated: frozenset[str]
    matches: tuple[str, ...]

    def get(self, key: str) -> str | None:
        value = self.opts.get(key)
        return value if isinstance(value, str) and key not in self.negated else None

    @property
    def target(self) -> str | None:
        return self.get("-j")

    @property
    def proto(self) -> str | None:
        return self.get("-p")

    @functools.cached_property
    def dst(self) -> str | None:  # cached: the checks ask for it once per rule and service
        return _network(self.get("-d"))

    def port(self, key: str) -> int | None:
        value = self.get(key)
        return int(value) if value and value.isdigit() else None

    @property
    def mark(self) -> tuple[int, int] | None:
        """(value, mask) of a MARK target, in either spelling iptables prints."""
        raw = self.get("--set-xmark") or self.get("--set-mark")
        if raw is None:
            return None
        value, _, mask = raw.partition("/")
        return int(value, 0), int(mask, 0) if mask else 0xFFFFFFFF


Ruleset = dict[str, dict[str, list[Rule]]]  # table -> chain -> rules, in order


@dataclass
class Datapath:
    """What one network namespace holds. None in a field means it could not be read."""
    path: str
    name: str
    ipvs: list[IpvsService] | None
    ipvs_error: str | None
    rules: Ruleset | None
    backends_with_docker_chains: list[str]
    iptables_error: str | None
    addresses: dict[str, list[tuple[str, int]]] | None  # ifname -> [(ip, prefixlen)]
    sysctls: dict[str, int] | None
    error: str | None = None  # the namespace itself could not be entered
    ipvs_missing: bool = False  # the kernel has no IPVS at all
    conntrack: dict[str, int] | None = None  # {"count", "max"} of its conntrack table; None: unknown

    @property
    def partial(self) -> bool:
        return self.ipvs is None or self.rules is None

    @functools.cached_property
    def ipvs_by_mark(self) -> dict[int, IpvsService]:
        """The firewall-mark services by mark: looked up once per VIP service, 5,000 on a big swarm."""
        return {s.fwmark: s for s in self.ipvs or [] if s.fwmark}


@dataclass(frozen=True, slots=True)
class Link:
    index: int
    name: str
    kind: str | None
    mtu: int
    master: int | None
    up: bool
    vxlan: dict | None  # vni, port, learning, proxy, l2miss, l3miss


class Neighbour(NamedTuple):  # a tuple: built 20,000 times per overlay, 3x cheaper than a dataclass
    """A row of a VXLAN device: an ARP neighbour (ip -> mac) or an FDB entry (mac -> dst)."""
    device: str
    ip: str | None  # the neighbour's IP, or the FDB entry's destination VTEP
    mac: str | None
    permanent: bool
    self_: bool


@dataclass
class OverlayDatapath:
    """What one overlay network's namespace holds. None: not read (see error)."""
    path: str
    name: str
    links: list[Link] | None
    neighbours: list[Neighbour] | None
    fdb: list[Neighbour] | None
    error: str | None = None

    def vxlans(self) -> list[Link]:
        return [link for link in self.links or [] if link.kind == "vxlan"]

    def own_vxlans(self, vnis: list[int]) -> list[Link]:
        """The network's own VXLAN devices (its VNIs; all of them where the VNIs are unknown): a
        stray device in the namespace is overlay-vxlan-config's finding, and its MTU says nothing
        of the network's packets."""
        return [link for link in self.vxlans() if not vnis or (link.vxlan or {}).get("vni") in vnis]


@dataclass
class DnsProbe:
    """One network's embedded DNS, asked from inside one local container's namespace."""
    container: str  # the container's name
    path: str  # its network namespace
    other_networks: list[str]  # its other networks: a name there can answer first
    rules: Ruleset | None  # its nat table (the resolver's DNAT/SNAT); None: not readable
    # qname -> {"rcode": "NOERROR", "ips": [...]} or {"error": "timeout"}; None: not recorded
    answers: dict[str, dict] | None


@dataclass
class Finding:
    check: str
    message: str
    network: str | None = None
    namespace: str | None = None
    service: str | None = None
    subject: str | None = None  # the task, port, mark or address the finding is about
    expected: Any = None
    actual: Any = None
    hint: str | None = None
    known_issues: list[dict] = field(default_factory=list)
    # Why swarm itself has not converged for what this finding concerns (a manager knows: the
    # service is being updated, its tasks are starting or stopping, a node just went down).
    converging: str | None = None

    @property
    def key(self) -> tuple:
        return (self.check, self.network, self.namespace, self.service, self.subject)

    @property
    def layer(self) -> str:
        info = CHECKS.get(self.check)
        return info.layer if info else "kernel"

    @property
    def action(self) -> str | None:
        info = CHECKS.get(self.check)
        if info is None:
            return None
        return info.action.replace("<service>", self.service) if self.service else info.action

    def to_json(self) -> dict:
        return {"check": self.check, "layer": self.layer, "network": self.network,
                "namespace": self.namespace, "service": self.service, "subject": self.subject,
                "message": self.message, "expected": self.expected, "actual": self.actual, "hint": self.hint,
                "action": self.action, "known_issues": self.known_issues, "converging": self.converging}


@dataclass
class LoadBalancer:
    """Where one network's load balancer lives on this node and what it should carry."""
    network: NetworkView
    datapath: Datapath
    lb_ip: str | None
    expect_aliases: bool


@dataclass
class NodeState:
    """One sample of this node, collected: all that the checks read (they do no I/O)."""
    model: EngineModel
    netns_dir: str
    views: list[NetworkView]  # the networks asked about, instantiated here or not
    lbs: list[LoadBalancer] = field(default_factory=list)  # every load balancer read
    lb_not_found: list[str] = field(default_factory=list)  # IDs of networks whose LB was not found
    swarm_tasks: dict[str, SwarmTask] | None = None  # /tasks: managers only
    swarm_nodes: dict[str, SwarmNode] | None = None  # /nodes: managers only
    service_vips: dict[str, dict[str, list[str]]] | None = None  # /services' VIPs: managers only
    service_names: dict[str, str] | None = None  # /services: service ID -> name
    now: float | None = None  # when the sample was read: task ages are judged against it
    ingress: NetworkView | None = None  # set when ingress publishes ports: host and tasks were read
    host: Datapath | None = None
    gw_ip: str | None = None  # ingress_sbox's docker_gwbridge address
    task_datapaths: dict[str, Datapath] = field(default_factory=dict)  # ingress tasks' sandboxes
    # Overlay namespaces by network ID (None: not read in this run, e.g. a format-1 snapshot).
    overlays: dict[str, OverlayDatapath | None] | None = None
    data_path_port: int | None = None  # the VXLAN port: known on a manager; None on a worker
    xfrm: dict | None = None  # the node's IPsec state, read when a network is encrypted
    node_addr: str | None = None  # /info Swarm.NodeAddr
    memo: dict = field(default_factory=dict)  # what two checks or reports derive alike, once
    dns: dict[str, DnsProbe] | None = None  # by network ID: what its embedded DNS answered here
    service_aliases: dict[str, dict[str, list[str]]] | None = None  # managers: name -> net ID -> aliases
    # Managers: services whose spec declares a health check -> their stop grace period (seconds).
    health_checked: dict[str, float] | None = None
    # Tasks of this node at weight 0 while swarm runs them -> their container's health
    # ("unhealthy", "healthy", "starting"; "" with no health check; None: container gone).
    local_health: dict[str, str | None] = field(default_factory=dict)
    updating: dict[str, str] = field(default_factory=dict)  # managers: service name -> UpdateStatus.State
    host_prereqs: dict | None = None  # read_host_prereqs(): forwarding, conntrack, interfaces
    probe_results: dict[str, dict] | None = None  # --probe: Probe.key -> what came back
    parts: dict[str, Any] = field(default_factory=dict)  # a layer with no field above: what it read, by name

    def datapaths(self) -> list[Datapath]:
        return [lb.datapath for lb in self.lbs] + ([self.host] if self.host is not None else [])


@dataclass
class NotChecked:
    """Something that could not be checked, and why: one name for it everywhere (the text's
    "not checked", Prometheus' ssd_not_checked; the JSON's "errors", a name the contract keeps)."""
    scope: str
    message: str


@dataclass
class NodeInfo:
    id: str
    hostname: str
    manager: bool
    engine: EngineModel
    firewall: str = ""  # GET /info FirewallBackend.Driver (28.x+): iptables, nftables, +firewalld
    data_path_port: int | None = None  # the VXLAN UDP port, known on managers (/info Swarm.Cluster)
    addr: str | None = None  # /info Swarm.NodeAddr: the address the node advertises
    heartbeat: float = 5.0  # swarm's dispatcher heartbeat period, seconds (managers; 5 s default)

    def heartbeat_expiry(self) -> float:
        """How long swarm may still call a node ready whose dockerd stopped: its dispatcher marks
        a node down after 3 missed heartbeats, each period plus up to 0.5 s of jitter (swarmkit
        manager/dispatcher: defaultGracePeriodMultiplier, defaultHeartBeatEpsilon); 1 s spare."""
        return 3 * (self.heartbeat + 0.5) + 1.0


def _network(value: str | None) -> str | None:
    if not value or not isinstance(value, str):  # ipaddress takes an integer as an address
        return None
    if value.endswith("/32"):  # what iptables-save prints for a VIP: already canonical when it reads back
        with contextlib.suppress(OSError):
            if socket.inet_ntoa(socket.inet_aton(value[:-3])) == value[:-3]:
                return value
    try:
        return str(ipaddress.ip_network(value, strict=False))
    except ValueError:
        return value


_TIMESTAMP = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)")


def parse_timestamp(value: str | None) -> float | None:
    """An Engine API time (RFC 3339, nanoseconds) as epoch seconds; None if absent or unparsable."""
    if not value or value.startswith("0001-"):
        return None
    m = _TIMESTAMP.fullmatch(value)
    if not m:
        return None
    import datetime  # only managers' runs read task times
    stamp = datetime.datetime.fromisoformat(m.group(1) + (m.group(3) if m.group(3) != "Z" else "+00:00"))
    return stamp.timestamp() + float("0." + (m.group(2) or "0"))


# Swarm (/tasks, /services, /nodes) and NetworkDB converge asynchronously: a task or node is
# judged only once its state is older than this (its timestamp against the sample's clock).
MIN_STATE_AGE = 60.0  # seconds: a task or node whose state is younger is not judged yet


@dataclass
class NetworkResult:
    view: NetworkView
    namespace: str | None
    checked: bool
    note: str | None = None
    partial: bool = False  # some of its datapath (IPVS, iptables) could not be read
    overlay: OverlaySummary | None = None  # None: its overlay namespace was not looked at
    swarm: tuple[int, int] | None = None  # (tasks, VIPs) swarm has on it; None: not a manager
    dns: DnsProbe | None = None  # None: its embedded DNS was not asked here
    probe: ProbeSummary | None = None  # None: not probed (no --probe, or nothing to probe from)
    parts: dict[str, Any] = field(default_factory=dict)  # a layer with no field above: its summary, by name


@dataclass
class ProbeSummary:
    """What --probe saw on one network: echo paths to the other nodes, connections to backends
    and (ingress) to every node's published ports; "answered" counts refusals too."""
    namespace: str  # where the probes left from
    nodes: int = 0
    reached: int = 0  # other nodes whose endpoints answered small echo requests
    full: int = 0  # ... and full-size ones
    mtu: int = 0  # the full size
    backends: int = 0
    backends_answered: int = 0
    published: int = 0
    published_answered: int = 0
    # per other node (its address): {"small": answered, "full": answered}; and per node probed at
    # its published ports: {"answered": n, "asked": n}. What the fleet's node x node matrix shows.
    paths: dict[str, dict[str, bool]] = field(default_factory=dict)
    entries: dict[str, dict[str, int]] = field(default_factory=dict)


@dataclass
class OverlaySummary:
    namespace: str | None  # None: not found
    checked: bool
    remote_endpoints: int = 0
    remote_nodes: int = 0
    unverifiable: list[str] = field(default_factory=list)  # unlisted entries a worker cannot judge


@dataclass
class RunResult:
    node: NodeInfo
    networks: list[NetworkResult]
    findings: list[Finding]
    not_checked: list[NotChecked]
    notes: list[str]
    host_ports: list[tuple[str, str]]  # (label, services) of the host ingress ports checked
    host_checked: bool
    absent: list[str] = field(default_factory=list)  # names asked for that this worker does not have
    vteps: list[str] = field(default_factory=list)  # its VXLAN addresses besides node.addr (data path)
    leavers: list[str] = field(default_factory=list)  # gossip_leavers: nodes out of gossip, ready for swarm
    motion: Motion | None = None  # what the sample saw of each service: compared by settle()


@dataclass
class Reading:
    """What the phases of one sample (ssd.run.PHASES) pass on besides the state: the node, the
    networks' results, the parts not checked, notes, and the network names a worker was asked
    for and does not have."""
    node: NodeInfo | None = None
    not_checked: list[NotChecked] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    absent: list[str] = field(default_factory=list)
    results: list[NetworkResult] = field(default_factory=list)  # one per network, in the views' order
    ingress_dp: Datapath | None = None  # the ingress load balancer's namespace, once read
    host_ports: list[tuple[str, str]] = field(default_factory=list)  # the host ingress ports checked


TERMINAL = {"complete", "failed", "rejected", "shutdown", "orphaned", "remove"}
