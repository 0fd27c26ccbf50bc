"""The live reader of one node: Collector asks the Engine API and the kernel readers, keeps what
each answer the checks use (API_SHAPES, project: all a snapshot keeps), and ReadAhead reads the
namespaces in a child process while the API answers. Judges nothing."""
from __future__ import annotations

import contextlib
import functools
import marshal
import os
import re
import signal
import struct
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from ssd.base import CheckError, SnapshotError
from ssd.kernel.iptables import iptables_backends
from ssd.kernel.namespaces import datapath_from_raw, entered_netns, overlay_from_raw, read_namespace
from ssd.kernel.netlink import read_addresses
from ssd.kernel.overlay import read_overlay_namespace, read_xfrm
from ssd.kernel.prober import run_probes
from ssd.kernel.procfs import read_host_prereqs
from ssd.kernel.resolver import ask_resolver

if TYPE_CHECKING:
    from ssd.engine import Engine
    from ssd.kernel.prober import Probe
    from ssd.model import Datapath, NetworkView, OverlayDatapath


# The parts of each Engine API response the checks use, and all a snapshot keeps: no
# container environments, labels, mounts or secrets. True keeps a value whole; a dict
# keeps those keys; [shape] applies to every element (or map value, with "*").
_TASK_ENTRY = {"Name": True, "EndpointID": True, "EndpointIP": True, "Info": True}
def _kind_only(test: Any) -> Any:
    """A health check's kind ("CMD", "CMD-SHELL", "NONE"), not its command: all the checks use, and
    a command may carry credentials that a snapshot, sent with a support case, must not."""
    return test[:1] if isinstance(test, list) else None


API_SHAPES: dict[str, Any] = {
    "info": {"Name": True, "ServerVersion": True, "FirewallBackend": {"Driver": True},
             "Swarm": {"LocalNodeState": True, "NodeID": True, "ControlAvailable": True,
                       "NodeAddr": True, "Cluster": {"ID": True, "DataPathPort": True,
                                                     "Spec": {"Dispatcher": {"HeartbeatPeriod": True}}}}},
    "version": {"Version": True, "ApiVersion": True},
    "networks": [{"Id": True, "Name": True, "Scope": True, "Driver": True, "Ingress": True}],
    "network": {"Id": True, "Name": True, "Scope": True, "Driver": True, "Ingress": True,
                "Options": True, "IPAM": {"Config": True}, "Peers": True,
                "Containers": {"*": {"Name": True, "EndpointID": True, "IPv4Address": True}},
                "Services": {"*": {"VIP": True, "LocalLBIndex": True, "Ports": True,
                                   "Tasks": [_TASK_ENTRY]}}},
    "services": [{"ID": True, "Spec": {"Name": True, "EndpointSpec": {"Ports": True},
                                       "TaskTemplate": {"Networks": [{"Target": True, "Aliases": True}],
                                                        "ContainerSpec": {"Healthcheck": {"Test": _kind_only},
                                                                          "StopGracePeriod": True}},
                                       "Networks": [{"Target": True, "Aliases": True}]},
                  "PreviousSpec": {"EndpointSpec": {"Ports": True}}, "UpdateStatus": {"State": True},
                  "Endpoint": {"Ports": True, "VirtualIPs": True}}],
    "tasks": [{"ID": True, "ServiceID": True, "NodeID": True, "DesiredState": True,
               "Status": {"State": True, "Timestamp": True, "ContainerStatus": {"ContainerID": True}},
               "NetworksAttachments": [{"Network": {"ID": True}, "Addresses": True}]}],
    "nodes": [{"ID": True, "UpdatedAt": True, "Description": {"Hostname": True},
               "Status": {"State": True, "Addr": True}}],
    "container": {"Id": True, "Name": True, "State": {"Health": {"Status": True}},
                  "NetworkSettings": {"SandboxKey": True, "Networks": {"*": {"NetworkID": True}}}},
}


def project(value: Any, shape: Any) -> Any:
    """Keep only the parts of an API response that shape names (a function: what it keeps)."""
    if shape is True or value is None:
        return value
    if callable(shape):
        return shape(value)
    if isinstance(shape, list):
        return [project(v, shape[0]) for v in value] if isinstance(value, list) else value
    if not isinstance(value, dict):
        return value
    if "*" in shape:
        return {k: project(v, shape["*"]) for k, v in value.items()}
    return {k: project(value[k], sub) for k, sub in shape.items() if k in value}


# The Engine API's answers are checked where they enter (live, or replayed from a snapshot): an
# answer of the wrong shape (an object for a list, a list of nulls...) is "not checked" in one
# line, never a crash deeper in, never a list read as empty and so "consistent".
def entered(what: str, value: Any, shape: type, none: bool = False, snapshot: str | None = None) -> Any:
    """value, if it has the shape the checks read; else one line: about the Engine API, or about
    the snapshot that recorded it."""
    if value is None and none:
        return None
    if not isinstance(value, shape) or (shape is list and not all(isinstance(v, dict) for v in value)):
        _refuse(what, f"{_shape_of(value)} where {'an object' if shape is dict else 'a list of objects'} "
                "was expected", snapshot)
    return value


def _each_entered(what: str, items: Iterable[Any]) -> Iterator[dict]:
    for item in items:
        if not isinstance(item, dict):
            _refuse(what, f"{_shape_of(item)} among its objects", None)
        yield item


def _refuse(what: str, shape: str, snapshot: str | None) -> None:
    if snapshot is not None:
        raise SnapshotError(f"{snapshot} is not a usable ssd snapshot: its {what} is {shape}")
    raise CheckError(f"Engine API {what} answered {shape}: not checked")


def _shape_of(value: Any) -> str:
    if isinstance(value, list):
        odd = [v for v in value if not isinstance(v, dict)]
        return f"a list holding {_shape_of(odd[0])}" if odd else "a list"
    return {dict: "an object", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number" if isinstance(value, int | float) else type(value).__name__)


class ReadAhead:
    """The namespaces a run will read, read by forked children while this process talks to the
    Engine API, parses its JSON and builds the views: every core at work instead of one (the
    netlink dumps and iptables-save run beside the API reads, not after them).

    Each child runs the same readers (read_namespace, read_overlay_namespace) on its share of
    the jobs, in the order the run takes them, and sends each result, as marshal data, down its
    own pipe; a thread here drains each pipe. A job no child delivered (it died, it was killed)
    is read here as if there had been no read-ahead. The children only read; none outlives the
    run (close(), and the pipe: a child whose reader is gone ends at its next write)."""

    def __init__(self, jobs: list[tuple[str, str, bool]], backends: dict[str, str],
                 workers: int = 2) -> None:
        self.pending = set(jobs)  # (kind "ns" | "overlay", path, want_ipvs)
        self.results: dict[tuple[str, str, bool], dict] = {}
        self.done = threading.Condition()
        self.running = 0
        self.pids: list[int] = []
        self.pipes: list[int] = []
        # Every child is forked before any thread starts here: a fork copies only the calling
        # thread, and Python warns (3.12+) when a process with threads forks.
        started = [self._start(share, backends)
                   for share in (jobs[i::workers] for i in range(max(1, min(workers, len(jobs)))))]
        for readable, pid in started:
            threading.Thread(target=self._drain, args=(readable, pid), daemon=True).start()

    def _start(self, jobs: list[tuple[str, str, bool]], backends: dict[str, str]) -> tuple[int, int]:
        readable, writable = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: read, write, and leave without running anything of the parent's
            code = 1
            try:
                for fd in (readable, *self.pipes):  # a reader's pipe is held by the parent alone
                    os.close(fd)
                with os.fdopen(writable, "wb") as out:
                    for job in jobs:
                        blob = marshal.dumps((job, self._read(job, backends)))
                        out.write(struct.pack("=I", len(blob)) + blob)
                        out.flush()
                code = 0
            finally:
                os._exit(code)
        os.close(writable)
        self.pids.append(pid)
        self.pipes.append(readable)
        self.running += 1
        return readable, pid

    @staticmethod
    def _read(job: tuple[str, str, bool], backends: dict[str, str]) -> dict:
        kind, path, want_ipvs = job
        if kind == "overlay":
            return read_overlay_namespace(path)
        return read_namespace(path, backends, want_ipvs)

    def _drain(self, fd: int, pid: int) -> None:
        with os.fdopen(fd, "rb") as pipe:
            while True:
                head = pipe.read(4)
                if len(head) < 4:
                    break
                size = struct.unpack("=I", head)[0]
                blob = pipe.read(size)
                if len(blob) < size:
                    break
                job, raw = marshal.loads(blob)
                with self.done:
                    self.results[tuple(job)] = raw
                    self.done.notify_all()
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)
        with self.done:
            self.running -= 1
            self.done.notify_all()

    def take(self, kind: str, path: str, want_ipvs: bool) -> dict | None:
        """What a child read for this job, once it has; None: not one of the jobs, or lost."""
        job = (kind, path, want_ipvs)
        if job not in self.pending:
            return None
        self.pending.discard(job)
        with self.done:
            while job not in self.results and self.running:
                self.done.wait()
            return self.results.pop(job, None)

    def close(self) -> None:
        """Stop the children still reading (jobs the run did not need), and forget."""
        self.pending.clear()
        with self.done:
            if self.running:
                for pid in self.pids:
                    with contextlib.suppress(OSError):
                        os.kill(pid, signal.SIGKILL)
            self.results.clear()


def usable_cores() -> int:
    """The cores this process may run on (a container's cpuset, taskset), not the machine's."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def start_read_ahead(netns_dir: str, networks: list[dict] | None, lb_named: bool = True
                     ) -> ReadAhead | None:
    """A ReadAhead of the namespaces a run reads for these networks (None: every network this
    node has a namespace of, which is what a run that names no network checks), or None where
    there is nothing to gain or it cannot be: no namespaces directory, another thread in this
    process (a fork copies only the calling one), SSD_NO_READ_AHEAD set, one core only (a child
    there takes turns with this process: the lab's 1-vCPU nodes measured no gain), or no fork."""
    if threading.active_count() > 1 or os.environ.get("SSD_NO_READ_AHEAD") or usable_cores() < 2:
        return None
    try:
        present = set(os.listdir(netns_dir))
    except OSError:
        return None
    overlay_names = [m for m in map(re.compile(r"(\d+)-(\w{10})").fullmatch, present) if m]
    newest: dict[str, tuple[int, str]] = {}
    for m in overlay_names:  # the overlay driver's namespace: <epoch>-<network id[:10]>, the newest
        newest[m.group(2)] = max(newest.get(m.group(2), (-1, "")), (int(m.group(1)), m.group(0)))
    if networks is None:
        lb_names = sorted(n for n in present if n == "ingress_sbox" or (lb_named and n.startswith("lb_")))
        overlay_ids = sorted(newest)
    else:
        lb_names, overlay_ids = [], []
        for net in networks:
            net_id = str(net.get("Id") or "")
            name = "ingress_sbox" if net.get("Ingress") else f"lb_{net_id[:9]}" if lb_named else ""
            lb_names += [name] if name in present else []
            overlay_ids += [net_id[:10]] if net_id[:10] in newest else []
    path = functools.partial(os.path.join, netns_dir)
    # In the order the run takes them: load balancers, overlays, then the host's rules (the
    # routing mesh's and the encrypted overlays').
    jobs = [*(("ns", path(name), True) for name in lb_names),
            *(("overlay", path(newest[net_id][1]), False) for net_id in overlay_ids), ("ns", "", False)]
    # One reader beside this process. Two finished the reads sooner but slowed this process's
    # own imports and API reads (the critical path) more: 5000 x 4 in the lab's 2-core VM, 7.0 s
    # with one child against 9.0 s with two (9.2 s with none).
    try:
        return ReadAhead(jobs, iptables_backends(), workers=1)
    except OSError:  # no fork (a limit on processes): read as usual
        return None


class Collector:
    """Reads this node's control plane and datapath for one run, and keeps what it read.

    Every read is recorded in self.samples (one per sample of the run) in the form a
    snapshot stores, and the checks only ever see what was recorded: a live run and a
    run on its snapshot see the same data.
    """

    ahead: ReadAhead | None = None  # the namespaces a child reads ahead (a live run's first sample)

    def __init__(self, engine: Engine | None, exec_root: str, record_api: bool = True) -> None:
        self.engine = engine
        self.exec_root = exec_root
        # The API responses are kept only for a snapshot (or an answer that carries them): at
        # 20,000 tasks they are the largest thing a run holds, and the views keep what checks use.
        self.record_api = record_api
        self.netns_dir = os.path.join(exec_root, "netns")
        self.backends = iptables_backends() if engine is not None else {}
        self.samples: list[dict] = []
        self.reusable: dict[str, dict] = {}
        self.ahead: ReadAhead | None = None
        self.new_sample()

    def read_ahead(self, networks: list[dict], lb_named: bool) -> None:
        """Start reading, in child processes, the namespaces this run will read for these
        networks (from the API's network list): their load balancers (where this engine names
        them), their overlay namespaces and the host's rules. Only a live run's first sample
        (a run that named no network started it already, before the Engine API: read_ahead_all)."""
        if self.engine is None or self.ahead is not None or len(self.samples) > 1:
            return
        self.ahead = start_read_ahead(self.netns_dir, networks, lb_named)

    def end_read_ahead(self) -> None:
        if self.ahead is not None:
            self.ahead.close()
            self.ahead = None

    def _ahead(self, kind: str, path: str, want_ipvs: bool) -> dict | None:
        return self.ahead.take(kind, path, want_ipvs) if self.ahead is not None else None

    def new_sample(self, reread: set[str | None] | None = None) -> None:
        """Start another sample. With reread (the namespaces the last sample's findings name,
        and their networks' load balancers: reread_for), every other namespace is taken over as
        last read: a finding must show in both samples to count, and those namespaces had none
        and judge none of them, so a second look could change nothing."""
        last = self.samples[-1]["namespaces"] if self.samples else {}
        self.reusable = {} if reread is None or None in reread else {
            key: raw for key, raw in last.items()
            if ("host" if key in ("host", "xfrm") else os.path.basename(key)) not in reread}
        self.samples.append({"api": {}, "namespaces": {}, "lookups": {}})

    @property
    def sample(self) -> dict:
        return self.samples[-1]

    def ns_path(self, name: str) -> str:
        return os.path.join(self.netns_dir, name)

    # Each read goes through _api/_lookup/_namespace: live here, replayed by SnapshotCollector.
    def _api(self, key: str, method: str, *args: str) -> Any:
        value = getattr(self.engine, method)(*args)
        if self.record_api:  # what a snapshot keeps (and replays): the parts API_SHAPES names
            value = self.sample["api"][key] = project(value, API_SHAPES[method])
        return value  # else as received: projecting 20,000 tasks costs more than reading them

    def lookup(self, key: str, fetch: Callable[[], Any], optional: bool = False) -> Any:
        """What fetch() reads, recorded under key in the sample (a snapshot keeps it and replays
        it). optional: a snapshot taken before ssd read this gives None, not an error."""
        value = fetch()
        self.sample["lookups"][key] = value
        return value

    def _namespace(self, path: str, want_ipvs: bool) -> dict:
        raw = (self.reusable.get(path or "host") or self._ahead("ns", path, want_ipvs)
               or read_namespace(path, self.backends, want_ipvs))
        self.sample["namespaces"][path or "host"] = raw
        return raw

    def entered(self, what: str, value: Any, shape: type, none: bool = False) -> Any:
        return entered(what, value, shape, none, self.replayed_from)

    def info(self) -> dict:
        return self.entered("GET /info", self._api("GET /info", "info"), dict)

    def version(self) -> dict:
        return self.entered("GET /version", self._api("GET /version", "version"), dict)

    def networks(self) -> list[dict]:
        return self.entered("GET /networks", self._api("GET /networks", "networks"), list)

    def network(self, net_id: str) -> dict | None:
        key = f"GET /networks/{net_id}"
        return self.entered(key, self._api(key, "network", net_id), dict, none=True)

    def services(self) -> list[dict]:
        return self.entered("GET /services", self._api("GET /services", "services"), list)

    def tasks(self) -> Iterable[dict]:
        """Swarm's tasks, to be consumed once (build_swarm_tasks): as the Engine streams them,
        or, for a snapshot, as a list that it keeps."""
        if not self.record_api:
            return _each_entered("GET /tasks", self.engine.tasks())
        tasks = self.sample["api"]["GET /tasks"] = project(
            list(_each_entered("GET /tasks", self.engine.tasks())), API_SHAPES["tasks"])
        return tasks

    def nodes(self) -> list[dict] | None:
        return self.entered("GET /nodes", self._api("GET /nodes", "nodes"), list, none=True)

    def clock(self) -> float | None:
        """When this sample was read (recorded: a replay judges task ages as of then)."""
        return self.lookup("clock", time.time, optional=True)

    def container(self, cid: str) -> dict | None:
        return self._api(f"GET /containers/{cid}", "container", cid)

    def ns_exists(self, path: str) -> bool:
        return self.lookup(f"exists {path}", lambda: os.path.exists(path))

    def netns_names(self) -> list[str] | None:
        """What this process sees of dockerd's namespaces directory (None: not there at all)."""
        def listing() -> list[str] | None:
            try:
                return sorted(os.listdir(self.netns_dir))
            except OSError:
                return None
        return self.lookup("netns-dir", listing)

    def find_lb_by_address(self, ip: str) -> str | None:
        """18.06 names LB namespaces by random sandbox ID: find the one holding the LB IP."""
        def scan() -> str | None:
            with contextlib.suppress(OSError):
                for name in sorted(os.listdir(self.netns_dir)):
                    path = self.ns_path(name)
                    with contextlib.suppress(Exception), entered_netns(path):
                        if any(ip == a for addrs in read_addresses().values() for a, _ in addrs):
                            return path
            return None
        return self.lookup(f"lb-address {ip}", scan)

    def datapath(self, path: str, want_ipvs: bool = True) -> Datapath:
        return datapath_from_raw(path, self._namespace(path, want_ipvs))

    has_overlays = True  # False: a format-1 snapshot, taken before ssd read overlay namespaces
    has_dns = True  # False: a snapshot taken before ssd asked the embedded DNS

    def _overlay(self, path: str) -> dict | None:
        raw = self.reusable.get(path) or self._ahead("overlay", path, False) or read_overlay_namespace(path)
        self.sample["namespaces"][path] = raw
        return raw

    def overlay_path(self, view: NetworkView) -> str | None:
        """The overlay driver's namespace of a network: <epoch>-<network id[:10]>."""
        pattern = re.compile(r"(\d+)-" + re.escape(view.id[:10]))
        matches = [pattern.fullmatch(name) for name in self.netns_names() or []]
        found = [(int(m.group(1)), m.group(0)) for m in matches if m]
        return self.ns_path(max(found)[1]) if found else None  # the newest epoch

    def xfrm(self) -> dict | None:
        """The node's IPsec state (encrypted overlays). None: this source did not record it."""
        raw = self.reusable.get("xfrm") or read_xfrm()
        self.sample["namespaces"]["xfrm"] = raw
        return raw

    def overlay(self, path: str) -> OverlayDatapath | None:
        """None: this source has no overlay state (a format-1 snapshot)."""
        raw = self._overlay(path)
        return None if raw is None else overlay_from_raw(path, raw)

    def dns(self, path: str, names: list[str]) -> dict | None:
        """What the embedded resolver answers inside the namespace at path. None: not recorded."""
        return self.lookup(f"dns {path}", lambda: ask_resolver(path, names), optional=True)

    def host_prereqs(self) -> dict | None:
        """Forwarding, conntrack and the interfaces of the node's own namespace. None: not recorded."""
        return self.lookup("host-prereqs", read_host_prereqs, optional=True)

    replayed_from: str | None = None  # the snapshot a replay reads (SnapshotCollector); None: live
    probing = False  # --probe: send the probes a run plans (a snapshot replays what it recorded)

    def will_probe(self) -> bool:
        """Whether probe() would send (or replay) anything: the plan is made only then."""
        return self.probing

    def probe(self, probes: list[Probe]) -> dict[str, dict] | None:
        """What came back of each probe, by key. None: not probing (or nothing recorded)."""
        if not self.probing:
            return None
        return self.lookup("probes", lambda: run_probes(probes), optional=True)
