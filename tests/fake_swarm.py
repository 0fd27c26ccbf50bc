"""A fake swarm for the coordinators (gossip-consistency, --all-nodes): plays the job service.

It runs on a FakeEngine: creates tasks for every service ssd starts, moves them to a final
state, and serves each node's answer through the service-logs stream as dockerd does (split
in pieces, the pieces of different tasks interleaved).
"""
from __future__ import annotations

import json
import struct

from fake_engine import FakeEngine

NODES = {"n1aaaaaaaaaaaaaaaaaaaaaaa": "node1", "n2bbbbbbbbbbbbbbbbbbbbbbb": "node2",
         "n3ccccccccccccccccccccccc": "node3"}


def frame(stream: int, data: bytes) -> bytes:
    return struct.pack(">BxxxL", stream, len(data)) + data


class FakeSwarm:
    """Plays swarm for one coordinator: tasks per job, their states, their logs.

    answer(node_id, sample) -> (state, stdout, stderr) decides what each node's task does
    in the n-th job; state None: the task never finishes.
    """

    def __init__(self, engine: FakeEngine, answer) -> None:
        self.engine, self.answer = engine, answer
        self.services: dict[str, dict] = {}
        self.next_id = 0
        self.created: list[dict] = []
        self.removed: list[str] = []
        self.polls: dict[str, int] = {}
        routes = engine.routes
        routes["/nodes"] = [{"ID": n, "Description": {"Hostname": h, "Platform": {"OS": "linux"}},
                             "Status": {"State": "ready"}, "Spec": {"Availability": "active"}}
                            for n, h in NODES.items()]
        routes["/services"] = self.list_services
        routes["/services/create"] = self.create
        routes["/tasks"] = self.tasks

    def list_services(self, method, query, body):
        filters = json.loads(query.get("filters", ["{}"])[0])
        wanted = (filters.get("label") or [None])[0]
        return [s for s in self.services.values()
                if wanted is None or wanted.split("=")[0] in (s["Spec"].get("Labels") or {})]

    def create(self, method, query, spec):
        sid = f"svc{self.next_id}"  # never reused: a test may clear created, removal pops services
        self.next_id += 1
        self.services[sid] = {"ID": sid, "Spec": spec}
        self.polls[sid] = 0
        # By ID and by name, as the real API: an interrupt between the create request and its
        # reply leaves ssd only the name to remove it by (the SIGTERM test met that, under load).
        for key in (sid, spec.get("Name") or sid):
            self.engine.routes[f"/services/{key}"] = lambda m, q, b, sid=sid: self.service(sid, m)
        self.engine.routes[f"/services/{sid}/logs"] = lambda m, q, b, sid=sid: self.logs(sid, q)
        self.created.append(spec)  # last: a test that waits for it may act at once
        return {"ID": sid}

    def service(self, sid, method):
        if method == "DELETE":
            self.removed.append(sid)
            self.services.pop(sid, None)
            return {}
        return self.services.get(sid, 404)

    def sample(self, sid: str) -> int:
        return int(sid.removeprefix("svc"))

    def tasks(self, method, query, body):
        if "filters" not in query:  # a node check on the manager reads every task: none of ours matter
            return []
        sid = json.loads(query["filters"][0])["service"][0]
        self.polls[sid] += 1
        out = []
        for node in NODES:
            state, _, _ = self.answer(node, self.sample(sid))
            done = self.polls[sid] >= 2 and state is not None
            out.append({"ID": f"{sid}t{node[:2]}", "NodeID": node, "CreatedAt": "2026-11-29T00:00:00Z",
                        "Status": {"State": state if done else "running"}})
        return out

    def logs(self, sid, query):
        want = 1 if query.get("stdout", ["0"])[0].lower() in ("1", "true") else 2
        per_node: dict[str, list[bytes]] = {}
        for node in NODES:
            _, out, err = self.answer(node, self.sample(sid))
            text = out if want == 1 else err
            details = (f"com.docker.swarm.node.id={node},com.docker.swarm.service.id={sid},"
                       f"com.docker.swarm.task.id={sid}t{node[:2]}")
            # The log driver splits long lines: every answer comes in three pieces...
            size = len(text) // 3 + 1
            per_node[node] = [f"{details} {text[i:i + size].rstrip(chr(10))}\n".encode()
                              for i in range(0, len(text), size)]
        ordered = []  # ...and the pieces of different tasks interleave.
        while any(per_node.values()):
            for pieces in per_node.values():
                if pieces:
                    ordered.append(pieces.pop(0))
        return b"".join(frame(want, line) for line in ordered)
