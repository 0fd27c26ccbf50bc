"""The job: ssd on every node as one short-lived global service (the image, the capabilities,
the mounts), its answers collected from the task logs, and the service always removed, leftovers
of an interrupted run included."""
from __future__ import annotations

import contextlib
import json
import re
import signal
import socket
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ssd.base import CheckError, _short, printable, printable_strings
from ssd.catalog import EngineModel
from ssd.model import NotChecked, TERMINAL

if TYPE_CHECKING:
    from ssd.engine import Engine


# --- the job: ssd on every node, one short-lived service, always removed --------------

GOSSIP_LABEL = "org.ssd.gossip"  # on every service ssd starts; its value is the run's deadline
GOSSIP_PREFIX = "ssd-gossip-"
FLEET_PREFIX = "ssd-fleet-"
DATAPATH_CAPABILITIES = ("CAP_SYS_ADMIN", "CAP_NET_ADMIN", "CAP_NET_RAW")
# A node's report (or gossip view) is tens of KB, a few MB with thousands of findings. Past
# this, no more of that node's log is read; with its snapshot (--snapshot-dir: about 100 MB
# at 5,000 services) the snapshot's own bound is added.
MAX_ANSWER_BYTES = 32 << 20
POLL_FIRST, POLL_MOST = 0.5, 2.0  # seconds between polls of /tasks: while answers come, while none


# What stops a run as Ctrl-C does (the caller turns them into KeyboardInterrupt).
STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT}
TASK_ID_RE = re.compile(r"com\.docker\.swarm\.task\.id=([0-9a-z]+)")


def own_container(mountinfo: str = "/proc/self/mountinfo") -> str | None:
    """The ID of the container ssd runs in: the engine binds each container's own hostname file
    from its directory onto /etc/hostname. Any other /containers/<id>/ in the mount table (a
    host sees every container's shm mount) is someone else's. None: not in a container."""
    with contextlib.suppress(OSError), open(mountinfo) as fh:
        for line in fh:
            fields = line.split(" ")
            if len(fields) > 4 and fields[4] == "/etc/hostname":
                found = re.search(r"/containers/([0-9a-f]{64})/hostname$", fields[3])
                return found.group(1) if found else None
    return None


def own_image(engine: Engine, mountinfo: str = "/proc/self/mountinfo") -> tuple[str, str] | None:
    """The image every node is to run when none is named: the one of the container ssd runs in,
    pinned (its registry digest, else its image ID) so that every node runs the same bytes
    whatever its tag points to there; with the name it was started as. None: not in one."""
    cid = own_container(mountinfo)
    info = (engine.container(cid) if cid else None) or {}
    image_id = info.get("Image")
    if not isinstance(image_id, str) or not re.fullmatch(r"sha256:[0-9a-f]{64}", image_id):
        return None
    tag = str((info.get("Config") or {}).get("Image") or image_id)
    digests = (engine.image(image_id) or {}).get("RepoDigests") or []
    pinned = next((d for d in digests
                   if isinstance(d, str) and re.fullmatch(r"[^@\s]+@sha256:[0-9a-f]{64}", d)), image_id)
    return pinned, tag


class MarkedLines:
    """A task's lines that begin with mark (then compact JSON, which holds no newline),
    reassembled from the log driver's pieces (it splits lines past 16 KB); every other piece
    passes through. A marked line that does not end as JSON within most bytes is dropped."""

    def __init__(self, mark: str, most: int) -> None:
        self.mark, self.most = mark, most
        self.held: list[str] | None = None
        self.size = 0

    def feed(self, piece: str) -> tuple[Any, str | None]:
        """(a marked line's JSON, decoded, or None; the piece if it is not of a marked line)."""
        piece = piece.rstrip("\n")  # (the driver's, at the end of every piece it sends)
        if piece.startswith(self.mark):
            self.held, self.size, piece = [], 0, piece[len(self.mark):]
        elif self.held is None:
            return None, piece
        self.held.append(piece)
        self.size += len(piece)
        if self.size > self.most:
            self.held = None
            return None, None
        if not piece.endswith("}"):
            return None, None
        try:
            doc = json.loads("".join(self.held), parse_constant=_no_constant)
        except (ValueError, RecursionError):
            return None, None  # a piece of a longer line (or not JSON: waits for the next mark)
        self.held = None
        return doc, None


@dataclass
class JobAnswer:
    """What one node's task of a NodeJob returned: its JSON answer, or why there is none."""
    node: str
    hostname: str
    doc: dict | None
    reason: str | None = None
    seconds: float | None = None  # from the job's creation to its answer being read


class NodeJob:
    """One short-lived global service running ssd ARGS on every eligible node, each task
    printing one JSON answer that comes back through the service's log.

    It is always removed: on success, error, timeout, Ctrl-C and SIGTERM (the caller turns
    SIGTERM into KeyboardInterrupt). Its label carries its deadline so that a later run can
    tell a leftover of a killed run from a run still in progress.

    gossip-hash needs only the Engine API. The node check (fleet mode) reads the node's
    datapath like `docker run --privileged --net=host`, which services cannot ask for: the
    task joins the host's network, mounts the namespaces' directory, and gets the three
    capabilities the reads need (setns: SYS_ADMIN; IPVS and iptables: NET_ADMIN, NET_RAW).
    """

    def __init__(self, engine: Engine, args: list[str], image: str, timeout: float,
                 prefix: str = GOSSIP_PREFIX, datapath_dir: str | None = None,
                 max_answer: int = MAX_ANSWER_BYTES, keep: Any = None, live: Any = None,
                 live_mark: str | None = None) -> None:
        self.engine, self.api = engine, engine.api
        self.args, self.image, self.timeout = args, image, timeout
        self.datapath_dir = datapath_dir  # the netns directory, when the task reads the datapath
        self.max_answer = max_answer  # bytes of one node's log read at most
        # What is kept of each answer, made as soon as it is read (the decoded answer is then
        # dropped): the manager's memory is what the caller keeps, not the sum of the answers.
        self.keep = keep or (lambda answer: answer)
        # live(node, hostname, piece): each piece of the tasks' standard error as it is written
        # (the service's log followed in a thread while the job runs); lines that begin with
        # live_mark are the live lines, not part of a task's error when it fails
        self.live, self.live_mark = live, live_mark
        self.task_nodes: dict[str, str] = {}  # task ID -> node ID, as swarm says (from /tasks)
        self.following: Any = None  # the followed log's socket, shut down when the job ends
        self.unfollowed = False
        import secrets  # the coordinator's only: a node check does not pay for it
        self.name = prefix + secrets.token_hex(4)
        self.service_id: str | None = None
        self.requested = False  # create was sent: the service may exist before we know its ID
        self.not_removed: list[str] = []  # "name: why", when removing the service failed
        self.created = 0.0

    def container_spec(self) -> Any:
        from docker import types
        mounts = [types.Mount("/var/run/docker.sock", "/var/run/docker.sock", type="bind")]
        extra: dict[str, Any] = {}
        if self.datapath_dir:
            mounts.append(types.Mount(self.datapath_dir, self.datapath_dir, type="bind",
                                      read_only=True, propagation="rslave"))
            extra["cap_add"] = list(DATAPATH_CAPABILITIES)
        return types.ContainerSpec(self.image, args=self.args, mounts=mounts, **extra)

    def start(self) -> None:
        from docker import types
        job = EngineModel.runs_jobs(str(self.api.api_version))
        spec = types.TaskTemplate(
            container_spec=self.container_spec(),
            # A job runs once; a plain global service (API < 1.41) must not restart its task.
            restart_policy=types.RestartPolicy(condition="none"),
            # Service logs are how answers come back: force a driver that can be read.
            log_driver=types.DriverConfig("json-file"),
            placement=types.Placement(constraints=["node.platform.os==linux"]),
            networks=["host"] if self.datapath_dir else None)
        deadline = int(time.time() + self.timeout)
        self.requested = True
        created = self.engine.call(
            "POST /services/create", self.api.create_service, spec, name=self.name,
            labels={GOSSIP_LABEL: str(deadline)},
            mode=types.ServiceMode("global-job" if job else "global"))
        self.service_id = created["ID"]
        self.created = time.monotonic()

    def run(self, eligible: dict[str, str]) -> dict[str, Any]:
        """Start, collect every node's answer, remove. A removal that failed is in not_removed
        (the caller says so); Ctrl-C or SIGTERM is re-raised as JobInterrupted, carrying it."""
        try:
            self.start()
            if self.live is not None:
                threading.Thread(target=self.follow, args=(eligible,), daemon=True,
                                 name="ssd-follow").start()
            return self.collect(eligible)
        except KeyboardInterrupt as exc:
            self.remove()
            raise JobInterrupted(self.not_removed) from exc
        finally:
            self.unfollow()
            self.remove()

    def follow(self, eligible: dict[str, str]) -> None:
        """(In a thread, while the job runs.) The service's standard error, followed: each piece
        to live() with the node swarm ran its task on (a task not yet known: /tasks asked again,
        at most every 2 s, its pieces kept meanwhile); a node's pieces past max_answer bytes are
        not passed.
        It ends with the job (unfollow) or the log; what it missed, the answers still hold."""
        api = self.api
        params = {"details": 1, "follow": 1, "stdout": 0, "stderr": 1, "tail": "all"}
        waiting: dict[str, list[str]] = {}
        sizes: dict[str, int] = {}
        asked = 0.0
        res = None
        try:  # no read timeout: a quiet watch writes nothing for minutes
            res = api._get(api._url("/services/{0}/logs", self.service_id), params=params, stream=True,
                           timeout=None)
            api._raise_for_status(res)
            raw = api._get_raw_response_socket(res)
            self.following = getattr(raw, "_sock", raw)  # (a unix socket's is a SocketIO around it)
            if self.unfollowed:  # the job ended while the log was being asked for
                return
            for frame in api._multiplexed_response_stream_helper(res):
                if self.following is None:
                    return
                for line in frame.decode(errors="replace").splitlines(keepends=True):
                    details, _, message = line.partition(" ")
                    found = TASK_ID_RE.search(details)
                    pieces = waiting.setdefault(found.group(1), []) if found else []
                    if found and len(pieces) < 64:
                        pieces.append(message)
                if any(t not in self.task_nodes for t in waiting) and time.monotonic() > asked + 2:
                    asked = time.monotonic()  # a task swarm had not listed when /tasks was polled
                    with contextlib.suppress(Exception):
                        self.latest_tasks()
                for known in [t for t in waiting if t in self.task_nodes]:
                    node = self.task_nodes[known]
                    for piece in waiting.pop(known):
                        sizes[node] = sizes.get(node, 0) + len(piece)
                        if node in eligible and sizes[node] <= self.max_answer:
                            self.live(node, eligible[node], piece)
        except Exception:  # noqa: BLE001 - live lines are a courtesy: the answers make the verdict
            return
        finally:
            if res is not None:  # (here, in the thread that reads it: see unfollow)
                with contextlib.suppress(Exception):
                    res.close()

    def unfollow(self) -> None:
        """End the follower's read by shutting its socket down, never by closing the response
        from this thread: its buffered reader's lock is held by the read blocked in the
        follower, and a close waits on it for as long as the log is quiet (forever, after the
        tasks ended: a hang seen in the lab)."""
        self.unfollowed = True
        sock, self.following = self.following, None
        if sock is not None:
            with contextlib.suppress(Exception):
                sock.shutdown(socket.SHUT_RDWR)

    def remove(self) -> None:
        """Remove the service; a second Ctrl-C, SIGTERM or SIGHUP while it is removed waits until
        it is gone (blocked here, delivered after)."""
        if not self.requested:
            return
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
        try:  # by name if interrupted before the ID came back
            self.api.remove_service(self.service_id or self.name)
        except Exception as exc:  # noqa: BLE001 - any failure: say it, never claim it was removed
            self.not_removed.append(f"{self.name}: {_short(exc)}")
        finally:
            self.service_id, self.requested = None, False
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)


    def latest_tasks(self) -> dict[str, dict]:
        tasks = self.engine.call("GET /tasks", self.api.tasks, filters={"service": self.service_id})
        latest: dict[str, dict] = {}
        for task in tasks:
            node = task.get("NodeID")
            if node and (node not in latest or task.get("CreatedAt", "") > latest[node].get("CreatedAt", "")):
                latest[node] = task
            if node and isinstance(task.get("ID"), str):
                self.task_nodes[task["ID"]] = node
        return latest

    def output(self, task_id: str, stream: str, drop: str | None = None) -> str | None:
        """What one task wrote on stream, reassembled (the log driver splits long lines), without
        the lines marked drop (MarkedLines); None:
        more than max_answer bytes, of which no more is read. One task's log, read when that
        task has finished: each answer crosses the wire once, however many nodes finish after
        it (the service's log, read whole each time a node finished, was N(N+1)/2 answers)."""
        api = self.api
        params = {"details": 1, "follow": 0, "stdout": int(stream == "stdout"),
                  "stderr": int(stream == "stderr"), "tail": "all"}

        def read() -> list[bytes] | None:
            # The SDK has no call for GET /tasks/{id}/logs (API >= 1.29, json-file or journald
            # logs, the driver start() asks for): its own request and stream helpers, as its
            # service_logs uses them, so that -H, TLS and contexts behave the same.
            res = api._get(api._url("/tasks/{0}/logs", task_id), params=params, stream=True)
            try:
                api._raise_for_status(res)
                frames, size = [], 0
                for piece in api._multiplexed_response_stream_helper(res):
                    size += len(piece)
                    if size > self.max_answer:
                        return None
                    frames.append(piece)
                return frames
            finally:
                res.close()

        frames = self.engine.call(f"GET /tasks/{task_id}/logs", read)
        if frames is None:
            return None
        out: list[str] = []
        marked = MarkedLines(drop, self.max_answer) if drop else None
        for line in b"".join(frames).decode(errors="replace").splitlines():
            details, _, message = line.partition(" ")
            found = TASK_ID_RE.search(details)
            if found and found.group(1) == task_id:  # only this task's lines, as labelled by swarm
                kept = marked.feed(message)[1] if marked else message
                if kept is not None:
                    out.append(kept)
        return "".join(out)

    def collect(self, eligible: dict[str, str], clock=time.monotonic, sleep=time.sleep
                ) -> dict[str, Any]:
        """Wait until every eligible node's task finished and its answer was read, or timeout;
        each answer as keep() made it.
        /tasks is polled every 0.5 s while answers come, less often (up to 2 s) while none does."""
        deadline = clock() + self.timeout
        answers: dict[str, Any] = {}
        latest: dict[str, dict] = {}
        pause = POLL_FIRST
        while len(answers) < len(eligible) and clock() < deadline:
            latest = self.latest_tasks()
            finished = [n for n in eligible if n not in answers and
                        ((latest.get(n) or {}).get("Status") or {}).get("State") in TERMINAL]
            read = 0
            for node in finished:
                answer = self._answer(node, eligible[node], latest[node])
                if answer is not None:
                    answer.seconds = round(clock() - self.created, 1)
                    answers[node] = self.keep(answer)
                    read += 1
            if len(answers) < len(eligible):
                pause = POLL_FIRST if read else min(pause * 1.5, POLL_MOST)
                sleep(min(pause, max(0.0, deadline - clock())))
        for node, host in eligible.items():
            if node not in answers:
                state = ((latest.get(node) or {}).get("Status") or {}).get("State") or "no task yet"
                answers[node] = self.keep(JobAnswer(node, host, None,
                                                    f"no answer within {self.timeout:g} s (task {state})"))
        return answers

    def _answer(self, node: str, host: str, task: dict) -> JobAnswer | None:
        """A node's answer is a witness's, not a judge's: its size is bounded, JSON that Python's
        decoder chokes on is unreadable, and every string of what is shown (its report, its
        gossip view) is made printable before any of it is."""
        status = task.get("Status") or {}
        task_id = str(task.get("ID") or "")
        try:
            text = self.output(task_id, "stdout") if task_id else ""
        except (CheckError, self.engine.errors.NotFound) as exc:  # this node's, not the run's
            return JobAnswer(node, host, None, f"its task's log could not be read: {_short(exc)}")
        if text is None:
            return JobAnswer(node, host, None, f"answer larger than {self.max_answer >> 20} MiB: not read")
        if text:
            try:
                doc = json.loads(text, parse_constant=_no_constant)
            except (ValueError, RecursionError):  # JSONDecodeError is a ValueError
                doc = None
            if isinstance(doc, dict):  # (a snapshot is kept as read: rules are multi-line text,
                # and a replay makes its names printable where its views are built)
                return JobAnswer(node, host, {key: value if key == "snapshot" else printable_strings(value)
                                              for key, value in doc.items()})
            return JobAnswer(node, host, None, f"unreadable answer: {printable(text[:80])!r}")
        if status.get("State") == "complete":
            return None  # finished, but its log has not reached the manager yet: read again
        why = status.get("Err") or status.get("Message") or status.get("State")
        stderr = ""
        with contextlib.suppress(CheckError, self.engine.errors.NotFound):
            stderr = (self.output(task_id, "stderr", self.live_mark) or "").strip() if task_id else ""
        return JobAnswer(node, host, None, f"task {status.get('State')}: {printable(stderr[-400:]) or why}")




def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not a JSON number")


class JobInterrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM while a service ran: what could not be removed ("name: why")."""

    def __init__(self, not_removed: list[str]) -> None:
        super().__init__()
        self.not_removed = list(not_removed)


def not_removed_problems(failures: list[str]) -> list[NotChecked]:
    return [NotChecked("ssd service", f"could not remove {failure}; remove it with docker service rm "
                    + failure.split(":")[0]) for failure in failures]


@dataclass
class SkippedNode:
    """A node a global job does not run on, and why; deliberate: drained or paused by an operator."""
    id: str
    hostname: str
    reason: str
    deliberate: bool

    @property
    def note(self) -> str:
        return f"{self.hostname} {self.reason}: not asked"


def eligible_nodes(engine: Engine) -> tuple[dict[str, str], list[SkippedNode]]:
    """Nodes a global job runs on (id -> hostname), and the ones it skips."""
    nodes = engine.call("GET /nodes", engine.api.nodes)
    eligible, skipped = {}, []
    for node in nodes:
        host = (node.get("Description") or {}).get("Hostname") or node.get("ID", "")[:12]
        state = (node.get("Status") or {}).get("State")
        availability = (node.get("Spec") or {}).get("Availability")
        osname = ((node.get("Description") or {}).get("Platform") or {}).get("OS", "linux")
        ident = node.get("ID", "")
        if state != "ready":
            skipped.append(SkippedNode(ident, host, f"is {state}", False))
        elif availability != "active":
            skipped.append(SkippedNode(ident, host, f"is {availability}: swarm runs no task there", True))
        elif osname != "linux":
            skipped.append(SkippedNode(ident, host, f"runs {osname}", True))
        else:
            eligible[ident] = host
    return eligible, skipped


def leftover_jobs(engine: Engine, notes: list[str]) -> None:
    """Report (and remove, once their deadline is long past) services of killed runs: ssd's own
    only, by its label and its names (a label alone is anyone's to set on their service)."""
    services = engine.call("GET /services", engine.api.services, filters={"label": GOSSIP_LABEL})
    for svc in services if isinstance(services, list) else []:
        spec = (svc.get("Spec") if isinstance(svc, dict) else None) or {}
        name = str(spec.get("Name") or "")
        if not name.startswith((GOSSIP_PREFIX, FLEET_PREFIX)):
            continue
        deadline = str((spec.get("Labels") or {}).get(GOSSIP_LABEL, ""))
        if deadline.isdigit() and time.time() > int(deadline) + 60:
            with contextlib.suppress(Exception):
                engine.api.remove_service(svc["ID"])
            notes.append(f"removed {name}, left behind by an earlier {mode_of_service(name)} run that did "
                         "not finish")
        else:
            notes.append(f"{name} belongs to another {mode_of_service(name)} run still in progress")


def mode_of_service(service_name: str) -> str:
    """Which mode started a service of ssd's, from its name: the notes about leftovers say it."""
    return "--all-nodes" if service_name.startswith(FLEET_PREFIX) else "gossip-consistency"
