"""Snapshots: SnapshotCollector replays what a Collector read (--from), so that a recorded node
is checked exactly as it was live; loading one (shape and version checked where it enters),
writing one (--snapshot) and telling which mode recorded it."""
from __future__ import annotations

import contextlib
import errno
import json
import os
import stat
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from ssd import __version__
from ssd.base import FLEET_MEMBER, MODES, SnapshotError, _short, count
from ssd.collect import Collector
from ssd.output import emit, write_file

if TYPE_CHECKING:
    from ssd.kernel.prober import Probe
    from ssd.model import NodeInfo


# --- what a run reads, live or from a snapshot ----------------------------------------

SNAPSHOT_FORMAT = "ssd-snapshot"
SNAPSHOT_VERSION = 2  # 2 (0.2): overlay namespaces. Format 1 is still read (no overlay checks).


class SnapshotCollector(Collector):
    """Replays the reads of a snapshot: the same run, on the data of another moment or node."""

    def __init__(self, snapshot: dict, source: str) -> None:  # replays: no live reader to set up
        self.engine = None
        self.exec_root = snapshot["exec_root"]
        self.netns_dir = os.path.join(self.exec_root, "netns")
        self.backends = {}
        self.recorded = snapshot["samples"]
        self.source = self.replayed_from = source
        self.has_overlays = snapshot.get("version", 1) >= 2
        self.has_dns = any(k.startswith("dns ") for k in (self.recorded[0].get("lookups") or {}))
        self.samples = []
        self.new_sample()

    def new_sample(self, reread: set[str | None] | None = None) -> None:
        if len(self.samples) >= len(self.recorded):
            raise SnapshotError(f"{self.source} holds {count(len(self.recorded), 'sample')}, no more")
        self.samples.append(self.recorded[len(self.samples)])

    def _missing(self, what: str) -> SnapshotError:
        return SnapshotError(f"{self.source} has no record of {what}: the snapshot was taken for "
                             "other networks or is incomplete")

    def _api(self, key: str, method: str, *args: str) -> Any:
        if key not in self.sample["api"]:
            raise self._missing(key)
        return self.sample["api"][key]

    def lookup(self, key: str, fetch: Callable[[], Any], optional: bool = False) -> Any:
        if key not in self.sample["lookups"]:
            if key == "netns-dir":  # snapshots before 0.2 did not record it: they saw it
                return ["(not recorded)"]
            if optional:
                return None  # a snapshot before the check that reads it (probes: without --probe)
            raise self._missing(key)
        return self.sample["lookups"][key]

    def tasks(self) -> Iterable[dict]:
        return self.entered("GET /tasks", self._api("GET /tasks", "tasks"), list)

    def nodes(self) -> list[dict] | None:  # (not recorded before the networkdb checks)
        return self.entered("GET /nodes", self.sample["api"].get("GET /nodes"), list, none=True)

    def will_probe(self) -> bool:
        return self.probing or "probes" in self.sample["lookups"]

    def probe(self, probes: list[Probe]) -> dict[str, dict] | None:
        return self.lookup("probes", dict, optional=True)  # replayed when the snapshot was taken with --probe

    def _namespace(self, path: str, want_ipvs: bool) -> dict:
        raw = self.sample["namespaces"].get(path or "host")
        if not isinstance(raw, dict):
            raise self._missing(f"namespace {path or 'host'}")
        return raw

    def _overlay(self, path: str) -> dict | None:
        return self._namespace(path, False)

    def xfrm(self) -> dict | None:
        return self.sample["namespaces"].get("xfrm")


def snapshot_document(collector: Collector, node: NodeInfo, wanted: list[str],
                      settle_seconds: float) -> dict:
    return {"format": SNAPSHOT_FORMAT, "version": SNAPSHOT_VERSION, "ssd_version": __version__,
            "taken_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "node": {"id": node.id, "hostname": node.hostname, "manager": node.manager,
                     "engine_version": node.engine.version, "era": node.engine.era},
            "networks": wanted, "exec_root": collector.exec_root, "settle": settle_seconds,
            "samples": collector.samples}


def _expect(cond: bool, source: str, what: str) -> None:
    if not cond:
        raise SnapshotError(f"{source} is not a usable ssd snapshot: {what}")


def load_snapshot(path: str) -> dict:
    """Read and validate a snapshot file enough that replaying it cannot crash. A snapshot is
    untrusted (it may come from anyone's support case): a device or FIFO is not read, the size is
    bounded, and JSON that Python's decoder would choke on (nesting, huge numbers, NaN) is
    refused here in one line."""
    try:
        text = _read_bounded(path)
    except (OSError, UnicodeDecodeError) as exc:
        raise SnapshotError(f"cannot read snapshot {path}: {getattr(exc, 'strerror', None) or _short(exc)}"
                            ) from exc
    try:
        doc = json.loads(text, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise SnapshotError(f"{path} is not a usable ssd snapshot: invalid JSON at line {exc.lineno} "
                            f"column {exc.colno} ({exc.msg}; truncated?)") from exc
    except (ValueError, RecursionError) as exc:  # an integer of 4,300+ digits, nesting, NaN
        raise SnapshotError(f"{path} is not a usable ssd snapshot: {_short(exc)}") from exc
    _expect(isinstance(doc, dict) and doc.get("format") == SNAPSHOT_FORMAT, path,
            f'no "format": "{SNAPSHOT_FORMAT}" field')
    version = doc.get("version")
    _expect(isinstance(version, int) and not isinstance(version, bool), path, "no format version")
    if version > SNAPSHOT_VERSION:
        raise SnapshotError(f"{path} is snapshot format {version} (written by ssd "
                            f"{doc.get('ssd_version', '?')}); this ssd {__version__} reads format "
                            f"{SNAPSHOT_VERSION}: use a newer ssd")
    _expect(version in (1, SNAPSHOT_VERSION), path, f"unknown format version {version}")
    _expect(isinstance(doc.get("exec_root"), str), path, '"exec_root" missing or not a string')
    networks = doc.get("networks")
    _expect(isinstance(networks, list) and all(isinstance(n, str) for n in networks), path,
            '"networks" missing or not a list of names')
    samples = doc.get("samples")
    _expect(isinstance(samples, list) and samples, path, '"samples" missing or empty')
    for i, sample in enumerate(samples):
        _expect(isinstance(sample, dict) and all(isinstance(sample.get(k), dict)
                                                 for k in ("api", "namespaces", "lookups")),
                path, f"sample {i + 1} lacks its api/namespaces/lookups sections")
    return doc


MAX_SNAPSHOT_BYTES = 1 << 30  # a 5,000-service node's snapshot is about 100 MB


def _read_bounded(path: str) -> str:
    if path == "-":
        if sys.stdin is None:
            raise OSError(errno.EBADF, "standard input is closed")
        text = sys.stdin.read(MAX_SNAPSHOT_BYTES + 1)
    else:
        with open(path, "rb") as fh:
            if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
                raise OSError(errno.EINVAL, "not a regular file")
            text = fh.read(MAX_SNAPSHOT_BYTES + 1).decode("utf-8")
    if len(text) > MAX_SNAPSHOT_BYTES:
        raise OSError(errno.EFBIG, f"larger than {MAX_SNAPSHOT_BYTES >> 20} MiB")
    return text


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not a JSON number")


SNAPSHOT_DAMAGE = (KeyError, TypeError, AttributeError, ValueError, IndexError)


@contextlib.contextmanager
def replaying(source: str) -> Iterator[None]:
    """Checking (or reporting) a snapshot: what a damaged file holds where a well-formed one holds
    something else is one line about the file, never a traceback. The one place that says so."""
    try:
        yield
    except SNAPSHOT_DAMAGE as exc:
        raise SnapshotError(f"{source} is not a usable ssd snapshot: damaged data "
                            f"({type(exc).__name__}: {_short(exc)})") from exc


def write_snapshot(doc: dict, target: str) -> None:
    """A snapshot holds the node's whole rules and topology: readable by its owner only (0600)."""
    text = json.dumps(doc, indent=1, sort_keys=True) + "\n"
    if target == "-":
        emit(text)
        return
    write_file(target, text.encode(), 0o600, "snapshot")


def mode_of(argv: list[str]) -> str:
    """Which mode a command line asks for: every JSON document, an error's too, says it."""
    if "--all-nodes" in argv:
        return "all-nodes-watch" if "--watch" in argv else "all-nodes"
    return next((m for m in (*MODES, FLEET_MEMBER) if m in argv), "node")
