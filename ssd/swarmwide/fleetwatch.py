"""--all-nodes --watch: one timeline for the whole swarm. The job runs the node's watch on every
node for --for; each node answers once, at the end, with what changed at each of its runs (the
findings that appeared and cleared, its verdicts); the manager merges them into one timeline
(node, time, what changed) and says, for each finding, which nodes had it and when.

While the nodes watch, each also writes every change on its standard error as it happens (a
line marked LIVE_MARK); the manager follows the job's log and prints them as they come, so
an engineer on a call sees node2 lose its backends when it does, not ten minutes later. What
the live lines showed is not shown twice; what they missed (a log that could not be
followed) is printed from the answers at the end, which alone make the verdict.

A node's answer is a witness's: its size is the job's bound, its shape is checked before any of
it is believed, its identity is swarm's (the node of the task), and the changes it may send are
counted (MAX_CHANGES)."""
from __future__ import annotations

import argparse
import json
import os
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ssd import __version__
from ssd.base import FLEET_MEMBER, SCHEMA_VERSION, count, printable
from ssd.model import Finding, NotChecked
from ssd.report import EXIT_CODES
from ssd.swarmwide.gossip import on_a_manager, plan_job
from ssd.swarmwide.job import FLEET_PREFIX, MarkedLines, NodeJob, not_removed_problems
from ssd.swarmwide.report import some
from ssd.views import resolve_networks
from ssd.watch import Change, Timeline, span, stamp

if TYPE_CHECKING:
    from typing import TextIO

    from ssd.swarmwide.job import JobAnswer

WATCH_ANSWER = "ssd-watch-answer"
MAX_CHANGES = 2000  # runs that changed something, per node: past it, the rest is counted, not sent
KEY_FIELDS = ("check", "message", "network", "namespace", "service", "subject")
KEY_ORDER = ("check", "network", "namespace", "service", "subject")  # Finding.key's
LIVE_MARK = "ssd-watch-change "  # a live line on the member's stderr: the mark, then the change
MAX_LIVE_LINE = 1 << 20  # bytes of one live line, reassembled from the log driver's pieces


# --- on each node: the watch, answered once -------------------------------------------

class MemberWatch:
    """What a node's watch sends back: each run that changed its verdict or findings (the
    first run too), as the findings that appeared and cleared."""

    def __init__(self, live: TextIO | None = None) -> None:
        self.live = live  # where each change is also written as it happens (the member's stderr)
        self.node: dict[str, str] = {}
        self.changes: list[dict] = []
        self.dropped = 0
        self.runs = 0
        self.first: float | None = None
        self.last: float | None = None
        self.status = "incomplete"

    def __call__(self, when: float, number: int, run: Any, status: str, change: Change) -> None:
        if run.result is not None:
            self.node = {"id": run.result.node.id, "hostname": run.result.node.hostname}
        self.runs, self.last, self.status = number, when, status
        self.first = when if self.first is None else self.first
        if not (change.any or number == 1):
            return
        if len(self.changes) >= MAX_CHANGES:
            self.dropped += 1
            return
        self.changes.append({
            "unix_time": round(when, 3), "run": number, "status": status,
            "error": None if run.result is not None else (run.error or "the check failed"),
            "appeared": [{**dict(zip(KEY_ORDER, t.key, strict=True)), "layer": t.layer, "message": t.message}
                         for t in change.appeared],
            "cleared": [dict(zip(KEY_ORDER, t.key, strict=True)) for t in change.cleared]})
        if self.live is not None:
            self.live.write(LIVE_MARK + json.dumps(self.changes[-1], separators=(",", ":"), allow_nan=False)
                            + "\n")
            self.live.flush()

    def answer(self) -> dict:
        return {"format": WATCH_ANSWER, "schema_version": SCHEMA_VERSION, "mode": FLEET_MEMBER,
                "ssd_version": __version__, "node": self.node, "runs": self.runs, "first": self.first,
                "last": self.last, "status": self.status, "changes": self.changes, "dropped": self.dropped}


# --- on the manager: the answers, merged ----------------------------------------------

@dataclass
class WatchedNode:
    id: str
    hostname: str
    timeline: Timeline | None  # None: no usable answer (reason says why)
    reason: str | None = None
    runs: int = 0
    dropped: int = 0
    status: str = "incomplete"  # its watch's verdict: inconsistent if any finding appeared
    asked: bool = True

    @property
    def label(self) -> str:
        return self.hostname or self.id[:12]


@dataclass
class Event:
    when: float
    node: str
    kind: str  # appeared | cleared | verdict | error
    check: str = ""
    layer: str = ""
    place: str = ""
    message: str = ""


@dataclass
class FleetWatchResult:
    networks: list[tuple[str, str]]
    nodes: list[WatchedNode]
    events: list[Event]
    interval: float
    duration: float
    seconds: float
    notes: list[str] = field(default_factory=list)
    not_checked: list[NotChecked] = field(default_factory=list)
    shown: set[tuple] = field(default_factory=set)  # events printed as they happened (event_key)


def _number(value: object) -> bool:
    return type(value) in (int, float) and abs(value) < 1e11  # (bool is not a number here)


def _finding(raw: object) -> Finding | None:
    if not isinstance(raw, dict) or not isinstance(raw.get("check"), str):
        return None
    return Finding(**{k: None if raw.get(k) is None else printable(str(raw[k])[:2000]) for k in KEY_FIELDS})


class Replay:
    """One node's changes, as its answer or its live lines send them, made into its Timeline
    and the events they are (the same events either way: what was shown live is known)."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.timeline = Timeline()
        self.open: dict[tuple, Finding] = {}

    def apply(self, raw: object) -> list[Event] | None:
        """The events of one change; None: not a change's shape (nothing of it believed)."""
        if not (isinstance(raw, dict) and _number(raw.get("unix_time")) and raw.get("status") in EXIT_CODES
                and isinstance(raw.get("appeared"), list) and isinstance(raw.get("cleared"), list)):
            return None
        when, timeline, label = float(raw["unix_time"]), self.timeline, self.label
        if raw.get("error") is not None and not raw["appeared"] and not raw["cleared"]:
            timeline.add(when, raw["status"], None)
            return [Event(when, label, "error", message=printable(str(raw["error"])[:400]))]
        for f in filter(None, map(_finding, raw["cleared"])):
            self.open.pop(f.key, None)
        for f in filter(None, map(_finding, raw["appeared"])):
            self.open[f.key] = f
        previous = timeline.status
        change = timeline.add(when, raw["status"], list(self.open.values()))
        made = []
        if previous is not None and change.status != previous:
            made.append(Event(when, label, "verdict", message=f"{previous} -> {change.status}"))
        made += [Event(when, label, "appeared", t.check, t.layer, t.place, t.message)
                 for t in change.appeared]
        made += [Event(when, label, "cleared", t.check, t.layer, t.place) for t in change.cleared]
        return made


def watched_node(answer: JobAnswer, events: list[Event]) -> WatchedNode:
    """A node's answer made into its Timeline (and its events added to the swarm's), or why not.
    Who it is comes from swarm (the node of the task that wrote it), not from what it says."""
    doc = answer.doc
    node = WatchedNode(answer.node, answer.hostname, None, answer.reason)
    if doc is None:
        return node
    if doc.get("format") != WATCH_ANSWER or not isinstance(doc.get("changes"), list):
        errors = doc.get("errors") if isinstance(doc.get("errors"), list) else []
        why = next((e.get("message") for e in errors if isinstance(e, dict) and e.get("message")), None)
        node.reason = why or f"not an answer of this ssd (from ssd {doc.get('ssd_version') or 'unknown'})"
        return node
    claimed = doc.get("node") if isinstance(doc.get("node"), dict) else {}
    if claimed.get("id") not in (None, "", answer.node):
        node.reason = f"its answer claims to come from node {str(claimed.get('id'))[:25]}: not believed"
        return node
    replay, mine = Replay(node.label), []
    for raw in doc["changes"][:MAX_CHANGES]:
        made = replay.apply(raw)
        if made is None:
            node.reason = "its answer is not a watch's timeline: not believed"
            return node
        mine += made
    timeline = replay.timeline
    runs = doc.get("runs")
    timeline.runs = runs if type(runs) is int and runs >= timeline.runs else timeline.runs
    if _number(doc.get("last")) and timeline.last is not None:
        timeline.last = max(timeline.last, float(doc["last"]))
    dropped = doc.get("dropped")
    node.timeline, node.reason, node.runs = timeline, None, timeline.runs
    node.dropped = dropped if type(dropped) is int and dropped > 0 else 0
    node.status = timeline.exit_status() if timeline.runs else "incomplete"
    events += mine
    return node


def event_key(e: Event) -> tuple:
    return (e.node, round(e.when, 3), e.kind, e.check, e.place)


def event_line(e: Event) -> str:
    at = time.strftime("%H:%M:%S", time.gmtime(e.when))
    if e.kind == "appeared":
        return f"{at} {e.node} + {e.check} [{e.layer}] {e.place}: {e.message}"
    if e.kind == "cleared":
        return f"{at} {e.node} - {e.check} [{e.layer}] {e.place}: cleared"
    if e.kind == "verdict":
        return f"{at} {e.node} verdict {e.message}"
    return f"{at} {e.node} could not check: {e.message}"


class LiveFeed:
    """The nodes' live lines (pieces of their stderr, as the job's log follower passes them),
    printed as they come: each line reassembled from the log driver's pieces, its shape
    checked and made into events as the answer's changes are (Replay), under the node swarm
    ran the task on. Called from the follower's thread; closed before the report is printed."""

    def __init__(self, write) -> None:
        self.write = write  # one printed line at a time (flushed: stdout may be a pipe)
        self.lock = threading.Lock()
        self.closed = False
        self.lines: dict[str, MarkedLines] = {}  # per node
        self.replays: dict[str, Replay] = {}
        self.shown: set[tuple] = set()

    def __call__(self, node: str, hostname: str, piece: str) -> None:
        with self.lock:
            if self.closed:
                return
            lines = self.lines.setdefault(node, MarkedLines(LIVE_MARK, MAX_LIVE_LINE))
            raw = lines.feed(piece)[0]  # (what is not a live line is not shown: the answer says)
            if raw is None:
                return
            replay = self.replays.setdefault(node, Replay(hostname or node[:12]))
            if replay.timeline.runs >= MAX_CHANGES:
                return
            for event in replay.apply(raw) or []:
                self.shown.add(event_key(event))
                self.write(printable(event_line(event)) + "\n")

    def close(self) -> set[tuple]:
        with self.lock:
            self.closed = True
            return set(self.shown)


def fleet_watch(args: argparse.Namespace, live: LiveFeed | None = None) -> FleetWatchResult:
    started = time.monotonic()
    engine, collector = on_a_manager(args, "--all-nodes --watch")
    nets = resolve_networks(collector.networks(), args.networks)
    plan = plan_job(args, engine, "--all-nodes --watch", reads_datapath=True)
    member = [n["Id"] for n in nets] if args.networks else []
    member += [FLEET_MEMBER, "--watch", "--for", f"{args.for_:g}", "--interval", f"{args.interval:g}",
               "--settle", f"{args.settle:g}", "--exec-root", args.exec_root]
    if args.probe:
        member.append("--probe")
    events: list[Event] = []
    # every node watches for --for; then each has --timeout to answer
    job = NodeJob(engine, member, plan.image, args.for_ + args.wait, FLEET_PREFIX,
                  datapath_dir=os.path.join(args.exec_root, "netns"),
                  keep=lambda answer: watched_node(answer, events), live=live, live_mark=LIVE_MARK)
    if live is not None:
        live.write(f"ssd --all-nodes --watch: {count(len(plan.eligible), 'node')} watching for "
                   f"{span(args.for_)}, a run every {args.interval:g} s; changes as they happen:\n")
    try:
        nodes = list(job.run(plan.eligible).values())
    finally:
        shown = live.close() if live is not None else set()
    not_checked = not_removed_problems(job.not_removed)
    for gone in plan.skipped:
        nodes.append(WatchedNode(gone.id, gone.hostname, None, f"{gone.reason}: not asked", asked=False))
        if not gone.deliberate:
            not_checked.append(NotChecked(f"node {gone.hostname}",
                                          f"{gone.reason}: swarm cannot run ssd there"))
    nodes.sort(key=lambda n: (n.label, n.id))
    for n in nodes:
        if n.asked and n.timeline is None:
            not_checked.append(NotChecked(f"node {n.label}", n.reason or "no answer"))
        if n.dropped:
            not_checked.append(NotChecked(f"node {n.label}", f"more than {MAX_CHANGES} runs changed "
                                          f"something: the last {n.dropped} were not sent"))
    events.sort(key=lambda e: (e.when, e.node, e.kind != "verdict", e.check, e.place))
    return FleetWatchResult([(n.get("Name") or n["Id"], n["Id"]) for n in nets], nodes, events,
                            args.interval, args.for_, time.monotonic() - started, plan.notes, not_checked,
                            shown)


# --- the merged timeline: its verdict, text, JSON and picture -------------------------

def fleet_watch_status(result: FleetWatchResult) -> str:
    """Any finding on any node during the watch: inconsistent (what a watch is run to catch);
    else a node not watched: incomplete; else consistent."""
    if any(n.timeline is not None and n.timeline.tracks for n in result.nodes):
        return "inconsistent"
    if result.not_checked or any(n.status == "incomplete" for n in result.nodes if n.asked):
        return "incomplete"
    return "consistent"


def across_nodes(result: FleetWatchResult) -> list[tuple[str, str, str, str, dict[str, list]]]:
    """Each finding seen (check, layer, place, message) and its episodes on each node that had it."""
    merged: dict[tuple[str, str], tuple[str, str, dict[str, list]]] = {}
    for n in result.nodes:
        for track in (n.timeline.tracks.values() if n.timeline is not None else []):
            entry = merged.setdefault((track.check, track.place), (track.layer, track.message, {}))
            entry[2][n.label] = track.episodes
    return [(check, layer, place, message, by_node)
            for (check, place), (layer, message, by_node) in sorted(
                merged.items(), key=lambda item: (min(e.start for eps in item[1][2].values() for e in eps),
                                                  item[0]))]


def render_fleet_watch(result: FleetWatchResult, quiet: bool = False) -> str:
    watched = [n for n in result.nodes if n.timeline is not None]
    first = min((n.timeline.started for n in watched if n.timeline.started), default=None)
    last = max((n.timeline.last for n in watched if n.timeline.last), default=None)
    runs = ", ".join(f"{n.label} {n.runs}" for n in watched)
    lines = [f"ssd --all-nodes --watch: {count(len(watched), 'node')} watched from {stamp(first)} to "
             f"{stamp(last)}, every {result.interval:g} s (runs: {runs or 'none'})"]
    if not quiet:  # (what was printed as it happened is not printed again)
        lines += [event_line(e) for e in result.events if event_key(e) not in result.shown]
    everyone = [n.label for n in watched]
    seen = across_nodes(result)
    lines.append("findings across the swarm:" if seen else "no finding appeared on any node")
    now = time.time()
    for check, layer, place, _, by_node in seen:
        parts = []
        for node, episodes in sorted(by_node.items()):
            spans = [(e.end if e.end is not None else (last or now)) - e.start for e in episodes]
            still = ", still there" if episodes[-1].end is None else ""
            parts.append(f"{node} {count(len(episodes), 'episode')} from "
                         f"{time.strftime('%H:%M:%S', time.gmtime(episodes[0].start))} "
                         f"(total {span(sum(spans))}{still})")
        never = [n for n in everyone if n not in by_node]
        lines.append(f"  {check} [{layer}] {place}: {'; '.join(parts)}"
                     + (f"; never on {some(never)}" if never else ""))
    for n in result.nodes:
        if n.timeline is None:
            lines.append(f"  {n.label}: {n.reason or 'no answer'}")
    lines += [f"note: {note}" for note in result.notes]
    return "\n".join(printable(line) for line in lines) + "\n"


def fleet_watch_to_json(result: FleetWatchResult) -> dict:
    return {
        "schema_version": SCHEMA_VERSION, "mode": "all-nodes-watch", "ssd_version": __version__,
        "status": fleet_watch_status(result), "interval": result.interval, "for": result.duration,
        "networks": [{"name": name, "id": ident} for name, ident in result.networks],
        "nodes": [{"id": n.id, "hostname": n.hostname, "status": n.status if n.asked else "not-asked",
                   "reason": n.reason, "runs": n.runs,
                   "first": n.timeline.started if n.timeline is not None else None,
                   "last": n.timeline.last if n.timeline is not None else None} for n in result.nodes],
        "events": [{"time": stamp(e.when), "unix_time": round(e.when, 3), "node": e.node, "kind": e.kind,
                    "check": e.check or None, "layer": e.layer or None, "place": e.place or None,
                    "message": e.message or None} for e in result.events],
        "findings": [{"check": check, "layer": layer, "place": place, "message": message,
                      "nodes": {node: [{"start": round(e.start, 3),
                                        "end": None if e.end is None else round(e.end, 3)} for e in episodes]
                                for node, episodes in sorted(by_node.items())}}
                     for check, layer, place, message, by_node in across_nodes(result)],
        "seconds": round(result.seconds, 2),
        "errors": [{"scope": p.scope, "message": p.message} for p in result.not_checked],
        "notes": list(result.notes)}


def merged_timeline(result: FleetWatchResult) -> Timeline:
    """One Timeline whose lanes are each node's findings ("node2: network ov2, ..."), for the
    picture (ssd.html.timeline_html)."""
    merged = Timeline()
    for n in result.nodes:
        if n.timeline is None:
            continue
        merged.runs += n.timeline.runs
        for status, runs in n.timeline.statuses.items():
            merged.statuses[status] = merged.statuses.get(status, 0) + runs
        for started in (n.timeline.started, n.timeline.last):
            if started is not None:
                merged.started = started if merged.started is None else min(merged.started, started)
                merged.last = started if merged.last is None else max(merged.last, started)
        for key, track in n.timeline.tracks.items():
            lane = type(track)(track.check, track.layer, f"{n.label}: {track.place}", track.message,
                               list(track.episodes), (n.label, *key))
            merged.tracks[(n.label, *key)] = lane
    return merged
