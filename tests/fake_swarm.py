"""A fake swarm for the coordinators (gossip-consistency, --all-nodes): plays the job service.

It runs on a FakeEngine: creates tasks for every service ssd starts, moves them to a final
state, and serves each node's answer through the task's log (and the service's, where the
pieces of different tasks interleave) as dockerd does: split in pieces. It plays any number of
nodes (task IDs unique at any number) and counts the log bytes it served.
"""
from __future__ import annotations

import json
import struct

from fake_engine import FakeEngine, Held

NODES = {"n1aaaaaaaaaaaaaaaaaaaaaaa": "node1", "n2bbbbbbbbbbbbbbbbbbbbbbb": "node2",
         "n3ccccccccccccccccccccccc": "node3"}


def frame(stream: int, data: bytes) -> bytes:
    return struct.pack(">BxxxL", stream, len(data)) + data


def many_nodes(count: int) -> dict[str, str]:
    """count node IDs (25 characters, as swarm's) -> hostnames node1..nodeN."""
    return {f"n{i:024d}": f"node{i}" for i in range(1, count + 1)}


def together(index: int, poll: int) -> bool:
    """Every task finishes at the second poll of /tasks (the default)."""
    return poll >= 2


class FakeSwarm:
    """Plays swarm for one coordinator: tasks per job, their states, their logs.

    answer(node_id, sample) -> (state, stdout, stderr) decides what each node's task does
    in the n-th job; state None: the task never finishes. finishes(index, poll) says whether the
    index-th node's task is done at the poll-th /tasks of its service.
    """

    def __init__(self, engine: FakeEngine, answer, nodes: dict[str, str] | None = None,
                 finishes=together) -> None:
        self.engine, self.answer, self.finishes = engine, answer, finishes
        self.nodes = NODES if nodes is None else nodes
        self.log_bytes = 0  # every log byte served: the service's and the tasks' logs
        self.services: dict[str, dict] = {}
        self.next_id = 0
        self.created: list[dict] = []
        self.removed: list[str] = []
        self.ids: list[str] = []  # every service created, in order
        self.polls: dict[str, int] = {}
        self.swarm_tasks: list[dict] = []  # what an unfiltered /tasks lists: the swarm's own tasks
        self.swarm_services: list[dict] = []  # and /services besides ssd's job
        routes = engine.routes
        routes["/nodes"] = [{"ID": n, "Description": {"Hostname": h, "Platform": {"OS": "linux"}},
                             "Status": {"State": "ready"}, "Spec": {"Availability": "active"}}
                            for n, h in self.nodes.items()]
        routes["/services"] = self.list_services
        routes["/services/create"] = self.create
        routes["/tasks"] = self.tasks

    def list_services(self, method, query, body):
        filters = json.loads(query.get("filters", ["{}"])[0])
        wanted = (filters.get("label") or [None])[0]
        if wanted is None:
            return [*self.swarm_services, *self.services.values()]
        return [s for s in self.services.values()
                if wanted is None or wanted.split("=")[0] in (s["Spec"].get("Labels") or {})]

    def create(self, method, query, spec):
        sid = f"svc{self.next_id}"  # never reused: a test may clear created, removal pops services
        self.next_id += 1
        self.services[sid] = {"ID": sid, "Spec": spec}
        self.ids.append(sid)
        self.polls[sid] = 0
        # By ID and by name, as the real API: an interrupt between the create request and its
        # reply leaves ssd only the name to remove it by (the SIGTERM test met that, under load).
        for key in (sid, spec.get("Name") or sid):
            self.engine.routes[f"/services/{key}"] = lambda m, q, b, sid=sid: self.service(sid, m)
        self.engine.routes[f"/services/{sid}/logs"] = lambda m, q, b, sid=sid: self.logs(sid, q)
        for index, node in enumerate(self.nodes):
            self.engine.routes[f"/tasks/{self.task_id(sid, index)}/logs"] = \
                lambda m, q, b, sid=sid, node=node, index=index: self.logs(sid, q, only=(index, node))
        self.created.append(spec)  # last: a test that waits for it may act at once
        return {"ID": sid}

    def service(self, sid, method):
        if method == "DELETE":
            self.removed.append(sid)
            self.services.pop(sid, None)
            return {}
        return self.services.get(sid, 404)

    @staticmethod
    def task_id(sid: str, index: int) -> str:
        return f"{sid}t{index}"

    def sample(self, sid: str) -> int:
        return int(sid.removeprefix("svc"))

    def tasks(self, method, query, body):
        if "filters" not in query:  # the swarm's tasks (a manager's check, fleet's judging): not ours
            return self.swarm_tasks
        sid = json.loads(query["filters"][0])["service"][0]
        self.polls[sid] += 1
        out = []
        for index, node in enumerate(self.nodes):
            state, _, _ = self.answer(node, self.sample(sid))
            done = self.finishes(index, self.polls[sid]) and state is not None
            out.append({"ID": self.task_id(sid, index), "NodeID": node, "CreatedAt": "2026-11-29T00:00:00Z",
                        "Status": {"State": state if done else "running"}})
        return out

    def logs(self, sid, query, only: tuple[int, str] | None = None):
        """The service's log (every task's), or only one task's."""
        want = 1 if query.get("stdout", ["0"])[0].lower() in ("1", "true") else 2
        per_node: dict[str, list[bytes]] = {}
        for index, node in enumerate(self.nodes):
            if only is not None and only != (index, node):
                continue
            _, out, err = self.answer(node, self.sample(sid))
            text = out if want == 1 else err
            details = (f"com.docker.swarm.node.id={node},com.docker.swarm.service.id={sid},"
                       f"com.docker.swarm.task.id={self.task_id(sid, index)}")
            # A message per line, and the log driver splits long lines: every line in three
            # pieces...
            per_node[node] = []
            for one in text.splitlines():
                size = len(one) // 3 + 1
                per_node[node] += [f"{details} {one[i:i + size]}\n".encode() for i in range(0, len(one), size)]
        ordered = []  # ...and the pieces of different tasks interleave.
        while any(per_node.values()):
            for pieces in per_node.values():
                if pieces:
                    ordered.append(pieces.pop(0))
        body = b"".join(frame(want, line) for line in ordered)
        self.log_bytes += len(body)
        return Held(body) if query.get("follow", ["0"])[0] in ("1", "true", "True") else body
