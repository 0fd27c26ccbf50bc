"""The job: ssd on every node as one short-lived global service (the image, the capabilities,
the mounts), its answers collected from the task logs, and the service always removed, leftovers
of an interrupted run included."""
from __future__ import annotations

import contextlib
import json
import re
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ssd.base import _short
from ssd.catalog import EngineModel
from ssd.model import NotChecked, TERMINAL

if TYPE_CHECKING:
    from ssd.engine import Engine


# --- the job: ssd on every node, one short-lived service, always removed --------------

GOSSIP_LABEL = "org.ssd.gossip"  # on every service ssd starts; its value is the run's deadline


GOSSIP_PREFIX = "ssd-gossip-"


FLEET_PREFIX = "ssd-fleet-"


DATAPATH_CAPABILITIES = ("CAP_SYS_ADMIN", "CAP_NET_ADMIN", "CAP_NET_RAW")


TASK_ID_RE = re.compile(r"com\.docker\.swarm\.task\.id=([0-9a-z]+)")


def own_image(engine: Engine) -> str | None:
    """The image of the container ssd runs in, if it runs in one of this engine's containers."""
    with contextlib.suppress(OSError):
        with open("/proc/self/mountinfo") as fh:
            found = re.search(r"/containers/([0-9a-f]{64})/", fh.read())
        if found:
            info = engine.container(found.group(1)) or {}
            return (info.get("Config") or {}).get("Image") or info.get("Image")
    return None


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
                 prefix: str = GOSSIP_PREFIX, datapath_dir: str | None = None) -> None:
        self.engine, self.api = engine, engine.api
        self.args, self.image, self.timeout = args, image, timeout
        self.datapath_dir = datapath_dir  # the netns directory, when the task reads the datapath
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

    def run(self, eligible: dict[str, str]) -> dict[str, JobAnswer]:
        """Start, collect every node's answer, remove. A removal that failed is in not_removed
        (the caller says so); Ctrl-C or SIGTERM is re-raised as JobInterrupted, carrying it."""
        try:
            self.start()
            return self.collect(eligible)
        except KeyboardInterrupt as exc:
            self.remove()
            raise JobInterrupted(self.not_removed) from exc
        finally:
            self.remove()

    def remove(self) -> None:
        if not self.requested:
            return
        try:  # by name if interrupted before the ID came back
            self.api.remove_service(self.service_id or self.name)
        except Exception as exc:  # noqa: BLE001 - any failure: say it, never claim it was removed
            self.not_removed.append(f"{self.name}: {_short(exc)}")
        self.service_id, self.requested = None, False


    def latest_tasks(self) -> dict[str, dict]:
        tasks = self.engine.call("GET /tasks", self.api.tasks, filters={"service": self.service_id})
        latest: dict[str, dict] = {}
        for task in tasks:
            node = task.get("NodeID")
            if node and (node not in latest or task.get("CreatedAt", "") > latest[node].get("CreatedAt", "")):
                latest[node] = task
        return latest

    def output(self, stream: str) -> dict[str, str]:
        """task ID -> what the task wrote on stream, reassembled (the log driver may split lines)."""
        frames = self.engine.call(f"GET /services/{self.name}/logs", self.api.service_logs,
                                  self.service_id, details=True, is_tty=False,
                                  **{"stdout": stream == "stdout", "stderr": stream == "stderr"})
        out: dict[str, list[str]] = {}
        for line in b"".join(frames).decode(errors="replace").splitlines():
            details, _, message = line.partition(" ")
            found = TASK_ID_RE.search(details)
            if found:
                out.setdefault(found.group(1), []).append(message)
        return {task: "".join(parts) for task, parts in out.items()}

    def collect(self, eligible: dict[str, str], clock=time.monotonic, sleep=time.sleep
                ) -> dict[str, JobAnswer]:
        """Wait until every eligible node's task finished and its answer was read, or timeout."""
        deadline = clock() + self.timeout
        answers: dict[str, JobAnswer] = {}
        latest: dict[str, dict] = {}
        while len(answers) < len(eligible) and clock() < deadline:
            latest = self.latest_tasks()
            finished = [n for n in eligible if n not in answers and
                        ((latest.get(n) or {}).get("Status") or {}).get("State") in TERMINAL]
            if finished:
                stdout = self.output("stdout")
                for node in finished:
                    task = latest[node]
                    answer = self._answer(node, eligible[node], task, stdout.get(task["ID"], ""))
                    if answer is not None:
                        answer.seconds = round(clock() - self.created, 1)
                        answers[node] = answer
            if len(answers) < len(eligible):
                sleep(0.5)
        for node, host in eligible.items():
            if node not in answers:
                state = ((latest.get(node) or {}).get("Status") or {}).get("State") or "no task yet"
                answers[node] = JobAnswer(node, host, None,
                                          f"no answer within {self.timeout:g} s (task {state})")
        return answers

    def _answer(self, node: str, host: str, task: dict, text: str) -> JobAnswer | None:
        status = task.get("Status") or {}
        if text:
            try:
                doc = json.loads(text)
            except json.JSONDecodeError:
                doc = None
            if isinstance(doc, dict):
                return JobAnswer(node, host, doc)
            return JobAnswer(node, host, None, f"unreadable answer: {text[:80]!r}")
        if status.get("State") == "complete":
            return None  # finished, but its log has not reached the manager yet: read again
        why = status.get("Err") or status.get("Message") or status.get("State")
        stderr = self.output("stderr").get(task["ID"], "").strip()
        return JobAnswer(node, host, None, f"task {status.get('State')}: {stderr or why}")


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
    """Report (and remove, once their deadline is long past) services of killed runs."""
    services = engine.call("GET /services", engine.api.services, filters={"label": GOSSIP_LABEL})
    for svc in services:
        spec = svc.get("Spec") or {}
        name = spec.get("Name", svc.get("ID", ""))
        deadline = (spec.get("Labels") or {}).get(GOSSIP_LABEL, "")
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
