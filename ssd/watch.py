"""--watch: the node check again and again in one process, a line per run, what appeared and
what cleared, every run recorded (--record DIR: timeline.jsonl and the snapshots around each
change), the metrics file rewritten, and on stop each finding's episodes.

A fault that comes and goes (a VXLAN FDB entry the engine removes and puts back, backends gone
for a minute after a port change) is an episode here: when it appeared, when it cleared."""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import stat
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ssd.base import CheckError, count, printable
from ssd.output import emit, write_file
from ssd.report import EXIT_CODES, error_document, overall_status, to_json

if TYPE_CHECKING:
    from ssd.model import Finding, RunResult


# --- the timeline: runs in, changes and episodes out (pure) ---------------------------

@dataclass
class Episode:
    start: float
    end: float | None = None  # None: still there at the last run


@dataclass
class Track:
    """One finding (its key: check, network, namespace, service, subject) over the watch."""
    check: str
    layer: str
    place: str
    message: str
    episodes: list[Episode] = field(default_factory=list)
    key: tuple = ()  # Finding.key: (check, network, namespace, service, subject)


@dataclass
class Change:
    """What one run changed against the run before it."""
    status: str
    previous: str | None
    appeared: list[Track]
    cleared: list[Track]

    @property
    def any(self) -> bool:
        return self.status != self.previous or bool(self.appeared or self.cleared)


def place_of(finding: Finding) -> str:
    parts = [("network", finding.network), ("namespace", finding.namespace),
             ("service", finding.service), ("", finding.subject)]
    return ", ".join(f"{label} {value}".strip() for label, value in parts if value)


class Timeline:
    """Every finding seen during the watch, with its episodes; the status of each run."""

    def __init__(self) -> None:
        self.tracks: dict[tuple, Track] = {}
        self.open: set[tuple] = set()  # keys present at the last run
        self.status: str | None = None
        self.runs = 0
        self.statuses: dict[str, int] = {}
        self.started: float | None = None
        self.last: float | None = None

    def add(self, when: float, status: str, findings: list[Finding] | None) -> Change:
        """findings None: the run could not check; what was open stays open (not cleared)."""
        self.runs += 1
        self.started = when if self.started is None else self.started
        self.last = when
        self.statuses[status] = self.statuses.get(status, 0) + 1
        if findings is None:
            change = Change(status, self.status, [], [])
            self.status = status
            return change
        now = {f.key: f for f in findings}
        appeared, cleared = [], []
        for key in sorted(now.keys() - self.open, key=_sortable):
            finding = now[key]
            track = self.tracks.setdefault(key, Track(finding.check, finding.layer, place_of(finding),
                                                      finding.message, key=key))
            track.message = finding.message
            track.episodes.append(Episode(when))
            appeared.append(track)
        for key in sorted(self.open - now.keys(), key=_sortable):
            track = self.tracks[key]
            track.episodes[-1].end = when
            cleared.append(track)
        self.open = set(now)
        change = Change(status, self.status, appeared, cleared)
        self.status = status
        return change

    def episodes_by_check(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for track in self.tracks.values():
            out[track.check] = out.get(track.check, 0) + len(track.episodes)
        return out

    def summary(self, now: float) -> list[str]:
        """Each finding seen: first and last time, episodes, their total and longest duration
        (an episode still open counts until now)."""
        if not self.runs:
            return ["watch: no run finished"]
        counts = ", ".join(f"{n} {status}" for status, n in sorted(self.statuses.items()))
        runs = count(self.runs, "run")
        lines = [f"watch: {runs} from {stamp(self.started)} to {stamp(self.last)} ({counts})"]
        if not self.tracks:
            lines.append("watch: no finding appeared")
        for track in sorted(self.tracks.values(), key=lambda t: (t.episodes[0].start, t.check, t.place)):
            spans = [(e.end if e.end is not None else now) - e.start for e in track.episodes]
            last = track.episodes[-1]
            still = " (still there)" if last.end is None else ""
            episodes = count(len(track.episodes), "episode")
            lines.append(f"  {track.check} [{track.layer}] {track.place}: {episodes}, "
                         f"first {stamp(track.episodes[0].start)}, last {stamp(last.start)}{still}; "
                         f"total {span(sum(spans))}, longest {span(max(spans))}")
        return [printable(line) for line in lines]

    def exit_status(self) -> str:
        """A watch that saw a finding at any run is inconsistent, even if it cleared: that is
        what it was run to catch. Else the last run's verdict."""
        if self.tracks:
            return "inconsistent"
        return self.status or "incomplete"

    def exit_status_code(self) -> int:
        return EXIT_CODES[self.exit_status()]


def _sortable(key: tuple) -> tuple:
    return tuple("" if part is None else str(part) for part in key)


def stamp(when: float | None) -> str:
    return "-" if when is None else time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(when))


def span(seconds: float) -> str:
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, secs = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def run_line(when: float, status: str, result: RunResult | None, seconds: float, error: str | None) -> str:
    if result is None:
        return printable(f"{stamp(when)} incomplete: {error} ({seconds:.2f} s)")
    services = sum(len(net.view.services) for net in result.networks)
    return (f"{stamp(when)} {status}: {count(len(result.findings), 'finding')}, "
            f"{len(result.not_checked)} not checked, {count(len(result.networks), 'network')}, "
            f"{count(services, 'service')} ({seconds:.2f} s)")


def change_lines(change: Change) -> list[str]:
    lines = []
    if change.previous is not None and change.status != change.previous:
        lines.append(f"  verdict {change.previous} -> {change.status}")
    lines += [f"  + {t.check} [{t.layer}] {t.place}: {t.message}" for t in change.appeared]
    lines += [f"  - {t.check} [{t.layer}] {t.place}: cleared" for t in change.cleared]
    return [printable(line) for line in lines]


# --- the duration and the record's bounds (argparse types) ----------------------------

def duration(text: str) -> float:
    """--for: seconds, or a number with s, m or h (at most 31 days)."""
    found = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*", text)
    if not found:
        raise argparse.ArgumentTypeError(f"{text!r}: give seconds, or a number with s, m or h (90, 15m, 2h)")
    value = float(found.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[found.group(2)]
    if not 0 < value <= 31 * 86400:
        raise argparse.ArgumentTypeError(f"{text!r}: give more than 0, at most 31 days")
    return value


def size(text: str) -> int:
    """--max-size: bytes, or a number with K, M or G (at least 1M)."""
    found = re.fullmatch(r"\s*(\d+)\s*([KMG]?)i?B?\s*", text, re.IGNORECASE)
    if not found:
        raise argparse.ArgumentTypeError(f"{text!r}: give bytes, or a number with K, M or G (500M)")
    value = int(found.group(1)) << {"": 0, "K": 10, "M": 20, "G": 30}[found.group(2).upper()]
    if value < 1 << 20:
        raise argparse.ArgumentTypeError(f"{text!r}: give at least 1M")
    return value


# --- the record: timeline.jsonl and the snapshots around each change ------------------

TIMELINE = "timeline.jsonl"
SNAPSHOT_RE = re.compile(r"^snapshot-\d{8}T\d{6}Z-\d{6}\.json$")


class Recorder:
    """DIR, ssd's own: created 0700 if absent; refused if it is a link, not a directory, or
    writable by others (a file planted there could be a link ssd then writes through).
    timeline.jsonl is appended to (no-follow, a regular file of one link); a snapshot is a new
    file then renamed (0600). Bounded: at most keep snapshots and max_size bytes of ssd's files
    in DIR, the oldest snapshots dropped first, then the older half of the timeline."""

    def __init__(self, directory: str, keep: int, max_size: int) -> None:
        self.directory, self.keep, self.max_size = directory, keep, max_size
        self.previous: tuple[float, int, dict] | None = None  # the run before: recorded on a change
        self.written: set[int] = set()  # runs whose snapshot is in DIR
        self._own_directory()

    def _own_directory(self) -> None:
        with contextlib.suppress(FileExistsError):
            os.mkdir(self.directory, 0o700)
        try:
            info = os.lstat(self.directory)
        except OSError as exc:
            raise CheckError(f"cannot record in {self.directory}: {exc.strerror}") from exc
        if not stat.S_ISDIR(info.st_mode):
            raise CheckError(f"refusing to record in {self.directory}: not a directory (or a link)")
        if info.st_uid != os.geteuid() or info.st_mode & 0o022:
            raise CheckError(f"refusing to record in {self.directory}: it must be ssd's own "
                             "(owned by this user, writable by no one else)")

    def add(self, when: float, number: int, report: dict, snapshot: dict | None, changed: bool) -> None:
        line = json.dumps({"time": stamp(when), "unix_time": round(when, 3), "run": number,
                           "report": report}, separators=(",", ":"), allow_nan=False) + "\n"
        self._append(line.encode())
        if snapshot is not None:
            if changed:
                if self.previous is not None and self.previous[1] not in self.written:
                    self._snapshot(*self.previous)
                self._snapshot(when, number, snapshot)
            self.previous = (when, number, snapshot)
        self._bound()

    def _append(self, data: bytes) -> None:
        path = os.path.join(self.directory, TIMELINE)
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            fd = os.open(path, flags, 0o600)
        except OSError as exc:
            raise CheckError(f"cannot write {path}: {exc.strerror}") from exc
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1:
                raise CheckError(f"refusing to write {path}: not a regular file of one link")
            os.write(fd, data)
        finally:
            os.close(fd)

    def _snapshot(self, when: float, number: int, doc: dict) -> None:
        name = f"snapshot-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime(when))}-{number:06d}.json"
        write_file(os.path.join(self.directory, name),
                   (json.dumps(doc, indent=1, sort_keys=True) + "\n").encode(), 0o600, "snapshot")
        self.written.add(number)

    def files(self) -> tuple[list[tuple[str, int]], int]:
        """ssd's snapshots in DIR, oldest first, with their sizes; the timeline's size."""
        snaps, timeline = [], 0
        for entry in os.scandir(self.directory):
            if entry.name == TIMELINE:
                timeline = entry.stat(follow_symlinks=False).st_size
            elif SNAPSHOT_RE.match(entry.name):
                snaps.append((entry.name, entry.stat(follow_symlinks=False).st_size))
        return sorted(snaps), timeline

    def _bound(self) -> None:
        snaps, timeline = self.files()
        total = timeline + sum(n for _, n in snaps)
        while snaps and (len(snaps) > self.keep or total > self.max_size):
            name, n = snaps.pop(0)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(self.directory, name))
            total -= n
        if total > self.max_size:  # the timeline alone: keep its newer half
            self._halve_timeline()

    def _halve_timeline(self) -> None:
        path = os.path.join(self.directory, TIMELINE)
        with open(path, "rb") as fh:
            lines = fh.readlines()
        write_file(path, b"".join(lines[len(lines) // 2 + 1:]), 0o600, "timeline")


# --- events: run again at once when swarm changes something ---------------------------

# What the Engine says when a service, a network, a task (its container) or a node changed.
EVENT_FILTERS = {"type": ["service", "network", "node", "container"],
                 "event": ["create", "update", "remove", "destroy", "start", "die", "connect", "disconnect"]}
DEBOUNCE = 2.0  # seconds: a deployment is a burst of events; one run after it settles


class Events:
    """A thread following the Engine's event stream; woken() says whether something changed
    since the last call. Best effort: if the stream fails, the interval alone paces the runs."""

    def __init__(self, api: Any) -> None:
        self.changed = threading.Event()
        self.stream: Any = None
        self.failed: str | None = None
        self.thread = threading.Thread(target=self._follow, args=(api,), daemon=True, name="ssd-events")
        self.thread.start()

    def _follow(self, api: Any) -> None:
        try:
            self.stream = api.events(decode=True, filters=EVENT_FILTERS)
            for _ in self.stream:
                self.changed.set()
        except Exception as exc:  # noqa: BLE001 - a lost stream is not a lost watch
            self.failed = str(exc)[:200]

    def wait(self, seconds: float) -> bool:
        """Sleep up to seconds; True if woken by a change (after the debounce)."""
        if not self.changed.wait(max(0.0, seconds)):
            return False
        time.sleep(DEBOUNCE)
        self.changed.clear()
        return True

    def close(self) -> None:
        with contextlib.suppress(Exception):
            if self.stream is not None:
                self.stream.close()


def say(line: str) -> None:
    emit(line + "\n")


# --- the loop -------------------------------------------------------------------------

@dataclass
class Run:
    """One check of the watch: its result (None: could not check, error says why), its
    snapshot document when recording, how long it took."""
    result: RunResult | None
    snapshot: dict | None
    seconds: float
    error: str | None = None


def watch(args: argparse.Namespace, check: Any, api: Any, metrics: Any, recorder: Recorder | None,
          page: Any = None, on_run: Any = None) -> int:
    """Run check() every args.interval seconds, and at once (debounced) when the Engine reports
    a change, until args.for_ has passed or Ctrl-C; one line per run, the changes, the record,
    the metrics; on stop the summary. The exit status: EXIT_CODES of Timeline.exit_status.
    on_run(when, number, run, status, change): instead of the lines and the summary (a node's
    part of --all-nodes --watch, which writes each change as it happens and answers at the end)."""
    timeline = Timeline()
    events = Events(api)
    stop = time.monotonic() + args.for_ if args.for_ else None
    number = 0
    last_run: Run | None = None
    unreadable: list[str] = []  # what the run before could not check: said again only when it changes
    try:
        while True:
            number += 1
            when = time.time()
            run = check()
            status = overall_status(run.result) if run.result is not None else "incomplete"
            change = timeline.add(when, status, run.result.findings if run.result is not None else None)
            if on_run is not None:
                on_run(when, number, run, status, change)
            else:
                report(args, when, number, run, status, change)
            now_unreadable = problems_of(run)
            if now_unreadable != unreadable and not args.json and on_run is None:
                for line in now_unreadable:
                    say(printable(f"  not checked: {line}"))
            unreadable = now_unreadable
            if recorder is not None:
                doc = report_of(run)
                recorder.add(when, number, doc, run.snapshot, change.any and number > 1)
            if metrics is not None:
                metrics(run, timeline.episodes_by_check())
            if page is not None and (change.any or number == 1):
                page(timeline, run)
            last_run = run
            left = None if stop is None else stop - time.monotonic()
            if left is not None and left <= 0:
                break
            pause = args.interval if left is None else min(args.interval, left)
            if events.wait(pause) and args.verbose:
                say(f"{stamp(time.time())} the Engine reported a change: checking now")
            if stop is not None and time.monotonic() >= stop:
                break
    except KeyboardInterrupt:
        pass
    finally:
        events.close()
    if page is not None and last_run is not None:
        page(timeline, last_run)  # the open episodes drawn up to the end
    if on_run is None:
        for line in timeline.summary(time.time()):
            if args.json:  # stdout is one JSON line per run: the summary is for the person
                print(line, file=sys.stderr)
            else:
                say(line)
    return timeline.exit_status_code()


def report_of(run: Run) -> dict:
    """The run's report as --json writes it (an error document when it could not check)."""
    return to_json(run.result) if run.result is not None else error_document(run.error or "the check failed")


def problems_of(run: Run) -> list[str]:
    if run.result is None:
        return [run.error or "the check failed"]
    return [f"{p.scope}: {p.message}" for p in run.result.not_checked]


def report(args: argparse.Namespace, when: float, number: int, run: Run, status: str, change: Change) -> None:
    if args.json:
        doc = report_of(run)
        say(json.dumps({"time": stamp(when), "unix_time": round(when, 3), "run": number, "report": doc},
                       separators=(",", ":"), allow_nan=False))
        return
    if not (args.quiet and not change.any):
        say(run_line(when, status, run.result, run.seconds, run.error))
    for line in change_lines(change):
        say(line)


# --- a record read again (ssd --from DIR/timeline.jsonl --html FILE) ------------------

MAX_TIMELINE_LINE = 64 << 20  # a run's report with thousands of findings; past it, not a timeline


def read_timeline(path: str) -> tuple[Timeline, str]:
    """The Timeline of a recorded watch, rebuilt from its lines; the node it watched. A line that
    is not a run's (shape, JSON Python's decoder chokes on, size) is one line about the file."""
    from ssd.model import Finding
    timeline, node = Timeline(), "this node"
    try:
        with open(path, "rb") as fh:
            if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
                raise CheckError(f"{path} is not a regular file")
            for number, raw in enumerate(iter(lambda: fh.readline(MAX_TIMELINE_LINE + 1), b""), 1):
                if len(raw) > MAX_TIMELINE_LINE:
                    raise CheckError(f"{path}: line {number} is larger than {MAX_TIMELINE_LINE >> 20} MiB")
                line = _line(raw, path, number)
                report = line["report"]
                found = report.get("findings")
                findings = None if report.get("node") is None or not isinstance(found, list) else [
                    Finding(**{k: _text(f.get(k)) for k in KEY_FIELDS}) for f in found
                    if isinstance(f, dict) and isinstance(f.get("check"), str)]
                node = str((report.get("node") or {}).get("hostname") or node)
                timeline.add(float(line["unix_time"]), str(report.get("status") or "incomplete"), findings)
    except OSError as exc:
        raise CheckError(f"cannot read {path}: {exc.strerror}") from exc
    if not timeline.runs:
        raise CheckError(f"{path} holds no run of a watch")
    return timeline, printable(node)


KEY_FIELDS = ("check", "message", "network", "namespace", "service", "subject")


def _text(value: object) -> str | None:
    """A recorded finding's field as the timeline keys it: text or nothing (never a list, which
    a key cannot hold)."""
    return None if value is None else printable(str(value))


def _line(raw: bytes, path: str, number: int) -> dict:
    from ssd.snapshot import _no_constant
    try:
        line = json.loads(raw, parse_constant=_no_constant)
    except (ValueError, RecursionError):
        line = None
    if not (isinstance(line, dict) and isinstance(line.get("report"), dict)
            and type(line.get("unix_time")) in (int, float) and abs(line["unix_time"]) < 1e11):
        raise CheckError(f"{path}: line {number} is not a run of ssd --watch --record")
    return line
