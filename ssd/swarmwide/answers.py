"""What every node of a swarm-wide run answers, and what the manager makes of it: the gossip
answer (a digest of the network's gossiped state) and the fleet answer (the node report), both
read back into GossipNode and FleetNode."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ssd import __version__
from ssd.base import FLEET_MEMBER, SCHEMA_VERSION
from ssd.engine import read_node
from ssd.report import to_json
from ssd.views import _vip, parse_ports

if TYPE_CHECKING:
    from ssd.collect import Collector
    from ssd.model import NodeInfo, NotChecked, RunResult
    from ssd.swarmwide.job import JobAnswer


# --- their results --------------------------------------------------------------------

@dataclass
class GossipNode:
    """One node's answer in gossip-consistency."""
    id: str
    hostname: str
    status: str  # answered | not-instantiated | no-answer
    digest: str | None = None
    state: dict | None = None  # gossip_state() of its view of the network
    reason: str | None = None  # why it did not answer
    seconds: float | None = None  # from the job's creation to its answer being read

    @property
    def label(self) -> str:
        return self.hostname or self.id[:12]


@dataclass
class GossipResult:
    network: str
    nodes: list[GossipNode]
    differences: list[dict]
    samples: int
    seconds: float
    notes: list[str]
    not_checked: list[NotChecked]


@dataclass
class FleetNode:
    """One node's part of fleet mode (--all-nodes): its node check's JSON document, or why not."""
    id: str
    hostname: str
    report: dict | None  # to_json() of the node check it ran
    reason: str | None = None  # why there is no report
    seconds: float | None = None
    snapshot: dict | None = None
    gossip: dict[str, dict] = field(default_factory=dict)  # network ID -> its gossip-hash answer
    asked: bool = True  # False: swarm runs no task there (down, drained, not Linux)

    @property
    def label(self) -> str:
        return self.hostname or self.id[:12]

    @property
    def status(self) -> str:
        if self.report is None:
            return "not-asked" if not self.asked else "no-answer"
        return str(self.report.get("status") or "incomplete")


@dataclass
class FleetResult:
    networks: list[tuple[str, str]]  # (name, ID) of the networks asked about, ingress included
    nodes: list[FleetNode]
    gossip: list[GossipResult]
    seconds: float
    notes: list[str]
    not_checked: list[NotChecked]


def gossip_hash(collector: Collector, network: str) -> dict:
    """This node's answer: its digest of the network's gossiped state (gossip-hash)."""
    return gossip_answer(read_node(collector), collector.network(network), network)


def gossip_answer(node: NodeInfo, raw: dict | None, network: str) -> dict:
    answer = {"schema_version": SCHEMA_VERSION, "mode": "gossip-hash", "ssd_version": __version__,
              "node": {"id": node.id, "hostname": node.hostname},
              "network": network, "instantiated": False, "digest": None, "state": None}
    if raw is not None and (raw.get("Containers") or raw.get("Services")):
        state = gossip_state(raw)
        answer.update(network=raw.get("Name") or network, instantiated=True,
                      digest=gossip_digest(state), state=state)
    return answer


def answer_to_node(answer: dict, fallback_id: str = "", fallback_host: str = "") -> GossipNode:
    """One node's gossip answer (a snapshot's, or a node's through gossip_node). Its digest is
    recomputed from the state it sent: a digest that does not match is not believed."""
    node = answer.get("node") if isinstance(answer.get("node"), dict) else {}
    ident, host = node.get("id") or fallback_id, node.get("hostname") or fallback_host
    if answer.get("instantiated") and answer.get("digest") and isinstance(answer.get("state"), dict):
        digest = gossip_digest(answer["state"])
        if digest != answer["digest"]:
            return GossipNode(ident, host, "no-answer", reason="its digest does not match the state it "
                              "sent: not believed")
        return GossipNode(ident, host, "answered", digest, answer["state"])
    if answer.get("instantiated") is False:
        return GossipNode(ident, host, "not-instantiated")
    errors = answer.get("errors") if isinstance(answer.get("errors"), list) else []
    why = next((e.get("message") for e in errors if isinstance(e, dict) and e.get("message")), None)
    return GossipNode(ident, host, "no-answer", reason=why or "unreadable answer")


def gossip_node(answer: JobAnswer) -> GossipNode:
    """A node's answer, as a witness's: who it is comes from swarm (the node of the task that
    wrote it), not from what it says of itself; an answer that claims another node's identity is
    not believed, and says so."""
    if answer.doc is None:
        return GossipNode(answer.node, answer.hostname, "no-answer", reason=answer.reason,
                          seconds=answer.seconds)
    claimed = answer.doc.get("node") if isinstance(answer.doc.get("node"), dict) else {}
    if claimed.get("id") not in (None, "", answer.node):
        return GossipNode(answer.node, answer.hostname, "no-answer", seconds=answer.seconds,
                          reason=f"its answer claims to come from node {str(claimed.get('id'))[:25]} "
                                 f"({str(claimed.get('hostname'))[:64]}): not believed")
    node = answer_to_node(answer.doc, answer.node, answer.hostname)
    node.id, node.hostname, node.seconds = answer.node, answer.hostname, answer.seconds
    return node


# --- gossip: what every node must agree on --------------------------------------------

def gossip_state(raw: dict) -> dict:
    """The part of one node's GET /networks/{id}?verbose=true that NetworkDB spreads.

    Each service's VIP, ports and tasks (name, endpoint, IP, host), and the network's peers.
    Left out, because they differ between nodes by design: LocalLBIndex (each node numbers
    its own fwmarks), Containers (the local endpoints), and the "" service of engines <= 24
    (the load-balancer endpoints).
    """
    services = {}
    for name, svc in (raw.get("Services") or {}).items():
        if not name:
            continue
        tasks = [{"name": t.get("Name", ""), "endpoint_id": t.get("EndpointID", ""),
                  "ip": (t.get("EndpointIP") or "").split("/")[0],
                  "host_ip": (t.get("Info") or {}).get("Host IP")}
                 for t in svc.get("Tasks") or []]
        services[name] = {
            "vip": _vip(svc.get("VIP")),
            "ports": sorted(f"{p.published}:{p.target}" for p in parse_ports(svc.get("Ports"), None)),
            "tasks": sorted(tasks, key=lambda t: (t["name"], t["endpoint_id"], t["ip"]))}
    peers = sorted(({"name": p.get("Name", ""), "ip": p.get("IP", "")} for p in raw.get("Peers") or []),
                   key=lambda p: (p["name"], p["ip"]))
    return {"network": {"id": raw.get("Id", ""), "name": raw.get("Name", "")},
            "services": services, "peers": peers}


def gossip_digest(state: dict) -> str:
    """sha256 of the canonical JSON of a gossip_state(): equal states, equal digests."""
    canonical = json.dumps(state, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    import hashlib  # gossip only
    return hashlib.sha256(canonical.encode()).hexdigest()


FLEET_ANSWER = "ssd-fleet-answer"


def fleet_answer(collector: Collector, node: NodeInfo, result: RunResult, snapshot: dict | None
                 ) -> dict:
    """What one node sends back: its report, its gossip hash of every network it checked (so
    that --gossip costs no second service), and its snapshot if one was asked for."""
    last = collector.sample["api"]  # the inspects the check judged, not a later read
    gossip = {net.view.id: gossip_answer(node, last.get(f"GET /networks/{net.view.id}"), net.view.id)
              for net in result.networks}
    return {"format": FLEET_ANSWER, "schema_version": SCHEMA_VERSION, "mode": FLEET_MEMBER,
            "ssd_version": __version__,
            "node": {"id": node.id, "hostname": node.hostname},
            "report": to_json(result), "gossip": gossip, "snapshot": snapshot}


def fleet_node(answer: JobAnswer) -> FleetNode:
    doc = answer.doc
    if doc is None or doc.get("format") != FLEET_ANSWER or not isinstance(doc.get("report"), dict):
        errors = (doc or {}).get("errors") if isinstance((doc or {}).get("errors"), list) else []
        why = next((e.get("message") for e in errors if isinstance(e, dict) and e.get("message")),
                   None)
        if doc is not None and why is None:
            why = f"not an answer of this ssd (from ssd {doc.get('ssd_version') or 'of unknown version'})"
        return FleetNode(answer.node, answer.hostname, None, why or answer.reason, answer.seconds)
    gossip = doc.get("gossip") if isinstance(doc.get("gossip"), dict) else {}
    snapshot = doc.get("snapshot") if isinstance(doc.get("snapshot"), dict) else None
    return FleetNode(answer.node, answer.hostname, doc["report"], None, answer.seconds, snapshot, gossip)
