"""The Engine API client: the daemon found as `docker` finds it (-H, DOCKER_HOST, TLS, contexts),
one Engine object over the Docker SDK for every call, /tasks streamed one task at a time, and
this node's identity (read_node). The optional Python packages are imported here, with one line
when one is missing. Returns the API's JSON; ssd.views makes the views from it."""
from __future__ import annotations

import argparse
import codecs
import importlib
import json
import os
import re
import socket
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ssd.base import CheckError, DEFAULT_HOST, DEFAULT_VXLAN_PORT, _short, printable
from ssd.catalog import engine_model
from ssd.model import NodeInfo

if TYPE_CHECKING:
    from ssd.collect import Collector


REQUIREMENTS = {"docker": "docker>=7.1,<8", "prometheus_client": "prometheus_client>=0.20,<1",
                "dns": "dnspython>=2.6,<3"}


def require(package: str) -> Any:
    """Import a dependency, or say in one line which one is missing and how to get it."""
    try:
        return importlib.import_module(package)
    except ImportError as exc:
        raise CheckError(f"the Python package {REQUIREMENTS[package.split('.')[0]]!r} is missing or broken "
                         f"({_short(exc)}): pip install -r requirements.txt, or use the "
                         "container") from exc


@dataclass(frozen=True)
class Endpoint:
    """Where the Engine API is, as Docker's own CLI resolves it: -H, else --context, else
    DOCKER_HOST (with DOCKER_TLS_VERIFY and DOCKER_CERT_PATH), else DOCKER_CONTEXT, else the
    current context of the CLI's config (docker context use), else the local socket."""
    url: str
    tls: Any = None  # a docker.tls.TLSConfig, or None for none
    source: str = "default"  # what chose it, for messages: -H, --context x, DOCKER_HOST ...


def resolve_endpoint(host: str | None, context: str | None,
                     environ: dict[str, str] | os._Environ = os.environ) -> Endpoint:
    if host and context:
        raise CheckError("-H and --context both say where the daemon is: give one of them")
    docker = require("docker")
    try:  # (the SDK reads os.environ when handed an empty mapping: never hand it one)
        tls_env = docker.utils.kwargs_from_env(environment={"": "", **environ}).get("tls")
    except docker.errors.TLSParameterError as exc:  # DOCKER_CERT_PATH without its files
        where = environ.get("DOCKER_CERT_PATH") or "~/.docker"
        raise CheckError(f"DOCKER_TLS_VERIFY/DOCKER_CERT_PATH ask for TLS: {where} must hold ca.pem, "
                         "cert.pem and key.pem") from exc
    if tls_env is not None and not tls_env.verify:
        # The SDK, as docker does, then speaks TLS without checking whose certificate it gets: ssd
        # runs as root and believes what the daemon says, so it does not, silently or at all.
        raise CheckError("DOCKER_CERT_PATH is set without DOCKER_TLS_VERIFY: TLS that would not check the "
                         "daemon's certificate; set DOCKER_TLS_VERIFY=1 (its ca.pem is then checked)")
    if host:
        return Endpoint(host, tls_env, "-H")
    name = context or (None if environ.get("DOCKER_HOST") else environ.get("DOCKER_CONTEXT"))
    source = "--context" if context else "DOCKER_CONTEXT"
    if name is None and not environ.get("DOCKER_HOST"):
        name, source = docker.context.config.get_current_context_name(), "docker context use"
    if name and name != "default":
        try:
            found = docker.context.ContextAPI.get_context(name)
        except docker.errors.DockerException as exc:  # a damaged meta.json
            raise CheckError(f"cannot read Docker context {name!r}: {_short(exc)}") from exc
        if found is None or not found.Host:
            raise CheckError(f"no Docker context {name!r} (from {source}; docker context ls lists them)")
        return Endpoint(found.Host, found.TLSConfig or None, f"context {name}")
    if environ.get("DOCKER_HOST"):
        return Endpoint(environ["DOCKER_HOST"], tls_env, "DOCKER_HOST")
    return Endpoint(DEFAULT_HOST, tls_env)


def why_unreachable(url: str, exc: BaseException) -> str:
    """What to do about a daemon ssd cannot talk to, from the OS error under the SDK's layers."""
    cause = _root_cause(exc)
    where = url.removeprefix("unix://") if url.startswith("unix://") else url
    if isinstance(cause, FileNotFoundError):
        return (f"no Docker socket at {where}: is dockerd running on this node (systemctl status "
                "docker)? Elsewhere: give -H, DOCKER_HOST or --context")
    if isinstance(cause, PermissionError):
        return (f"permission denied on {where}: run ssd as root (the live check also enters "
                "network namespaces), or in the docker group to reach the API only")
    if isinstance(cause, ConnectionRefusedError):
        return f"connection refused at {where}: is dockerd running and listening there?"
    if isinstance(cause, (TimeoutError, socket.timeout)):
        return f"no answer from {where} in time: is the daemon overloaded or the address wrong?"
    import ssl  # (only here: a TLS failure is rare and ssl is slow to import)
    if isinstance(cause, ssl.SSLError):
        return (f"TLS with {where} failed ({cause.reason or _short(cause)}): check DOCKER_CERT_PATH "
                "or the context's certificates (ca.pem, cert.pem, key.pem)")
    if isinstance(cause, socket.gaierror):
        return f"cannot resolve the host of {where}: {cause.strerror}"
    return f"cannot reach the Docker daemon at {where}: {_short(exc)}"


def engine_of(args: argparse.Namespace) -> Engine:
    return Engine(resolve_endpoint(args.host, args.context))


def _root_cause(exc: BaseException) -> BaseException:
    """The OS or TLS error under requests', urllib3's and the SDK's wrappers, else exc."""
    seen: set[int] = set()
    todo: list[Any] = [exc]
    while todo:
        err = todo.pop(0)
        if not isinstance(err, BaseException) or id(err) in seen:
            continue
        seen.add(id(err))
        if isinstance(err, OSError) and (err.errno is not None or type(err).__module__ == "ssl"):
            return err
        todo += [err.__cause__, err.__context__, getattr(err, "reason", None), *err.args]
    return exc


class Engine:
    """The Engine API through docker-py's low-level client."""

    def __init__(self, endpoint: Endpoint | str, timeout: float = 30) -> None:
        docker = require("docker")  # imported here so --help and the pure checks need no SDK
        self.errors = docker.errors
        self.endpoint = endpoint if isinstance(endpoint, Endpoint) else Endpoint(endpoint)
        url = self.endpoint.url
        try:
            self.api = docker.APIClient(base_url=url, tls=self.endpoint.tls or False,
                                        version="auto", timeout=timeout)
        except docker.errors.TLSParameterError as exc:
            raise CheckError(f"TLS for {url} ({self.endpoint.source}): {_short(exc)}") from exc
        except docker.errors.DockerException as exc:
            if "paramiko" in str(exc):
                raise CheckError(f"{url}: ssh:// needs the Python package paramiko "
                                 "(pip install paramiko), or reach the daemon by TLS") from exc
            raise CheckError(why_unreachable(url, exc)) from exc
        except (ValueError, TypeError) as exc:  # urllib's parsers: a port out of range, a bad IPv6
            raise CheckError(f"not a Docker daemon address: {url!r} (from {self.endpoint.source}): "
                             f"{_short(exc)}; e.g. unix:///var/run/docker.sock or "
                             "tcp://HOST:2376") from exc

    def call(self, what: str, fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except self.errors.NotFound:
            raise
        except self.errors.APIError as exc:
            raise CheckError(f"Engine API {what}: {_short(exc)}") from exc
        except Exception as exc:  # requests' connection errors and timeouts
            raise CheckError(f"Engine API {what}: {why_unreachable(self.endpoint.url, exc)}") from exc

    def version(self) -> dict:
        return self.call("GET /version", self.api.version)

    def info(self) -> dict:
        return self.call("GET /info", self.api.info)

    def networks(self) -> list[dict]:
        return self.call("GET /networks", self.api.networks)

    def network(self, net_id: str) -> dict | None:
        try:
            return self.call(f"GET /networks/{net_id}", self.api.inspect_network, net_id, verbose=True)
        except self.errors.NotFound:
            return None

    def services(self) -> list[dict]:
        return self.call("GET /services", self.api.services)

    def tasks(self) -> Iterator[dict]:
        """/tasks, one task at a time, decoded from the body as it arrives and is consumed.
        Swarm keeps every task of a big swarm (and their history) in it: decoded whole, 20,000
        tasks are 150 MiB of dicts at once, and the body's bytes and text 22 MB more each,
        which the run then reduces to SwarmTasks (lab, 5000 x 4: 190 MiB at its peak whole)."""
        def start() -> Any:
            response = self.api._get(self.api._url("/tasks"), stream=True)  # the SDK's own request
            self.api._raise_for_status(response)
            return response
        return json_array_items(self._text(self.call("GET /tasks", start), "GET /tasks"), "GET /tasks")

    def _text(self, response: Any, what: str) -> Iterator[str]:
        """A streamed response's body as text, a MiB at a time; closed when read or dropped."""
        utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")
        try:
            with response:
                for raw in response.iter_content(1 << 20):
                    yield utf8.decode(raw)
                yield utf8.decode(b"", final=True)
        except Exception as exc:  # the connection lost or timed out half-way
            raise CheckError(f"Engine API {what}: {why_unreachable(self.endpoint.url, exc)}") from exc

    def nodes(self) -> list[dict] | None:
        try:
            return self.call("GET /nodes", self.api.nodes)
        except self.errors.NotFound:  # only a manager serves it; judged without node states then
            return None

    def container(self, cid: str) -> dict | None:
        try:
            return self.call(f"GET /containers/{cid[:12]}/json", self.api.inspect_container, cid)
        except self.errors.NotFound:
            return None

    def image(self, ref: str) -> dict | None:
        try:
            return self.call(f"GET /images/{ref}/json", self.api.inspect_image, ref)
        except self.errors.NotFound:
            return None


_JSON_SPACE = re.compile(r"[ \t\n\r]*")
_AFTER_NUMBER = re.compile(r"[ \t\n\r,\]]")


def json_array_items(pieces: Iterable[str], what: str) -> Iterator[Any]:
    """The items of a JSON array whose text arrives in pieces (a response's body, a MiB at a
    time), decoded one by one as they are asked for: what is held is a piece and an item,
    never the whole array nor its whole text."""
    decode, space, source = json.JSONDecoder().raw_decode, _JSON_SPACE.match, iter(pieces)
    buf, at = "", 0

    def more() -> bool:  # the next piece after what is left unread; False: no more
        nonlocal buf, at
        piece = next(source, None)
        if piece is None:
            return False
        buf, at = buf[at:] + piece, 0
        return True

    def next_char() -> str:  # the next character that is not white space ("" at the end)
        nonlocal at
        while True:
            at = space(buf, at).end()
            if at < len(buf) or not more():
                return buf[at:at + 1]

    def item() -> Any:
        nonlocal at
        while True:
            try:
                value, end = decode(buf, at)
            except ValueError:
                if more():  # cut by a piece's end: decoded again with the next piece
                    continue
                raise
            # A number cut by a piece's end reads as a shorter one ("-0." of "-0.5e3"): it is
            # whole only once a delimiter follows it.
            if isinstance(value, (int, float)) and not _AFTER_NUMBER.search(buf, end) and more():
                continue
            at = end
            return value

    try:
        if next_char() != "[":
            raise ValueError("not an array")
        at += 1
        if next_char() != "]":
            while True:
                yield item()
                found = next_char()
                if found == "]":
                    break
                if found != ",":
                    raise ValueError(f"',' or ']' expected, not {found or 'the end'!r}")
                at += 1
                if next_char() == "]":
                    raise ValueError("an item expected after ','")
        at += 1
        if next_char():
            raise ValueError("more after the array's end")
    except ValueError as exc:
        raise CheckError(f"Engine API {what}: the answer is not a JSON array ({_short(exc)})") from exc


def read_node(engine: Engine | Collector) -> NodeInfo:
    info = engine.info()
    swarm = info.get("Swarm") or {}
    state = swarm.get("LocalNodeState", "")
    if state != "active":
        raise CheckError(f"this daemon is not in swarm mode (swarm state {state or 'inactive'!r}); "
                         "ssd checks swarm service load balancing")
    version = engine.version().get("Version") or info.get("ServerVersion") or ""
    manager = bool(swarm.get("ControlAvailable"))
    cluster = swarm.get("Cluster") or {}
    return NodeInfo(id=swarm.get("NodeID", ""), hostname=printable(str(info.get("Name", ""))),
                    manager=manager, engine=engine_model(version),
                    firewall=str((info.get("FirewallBackend") or {}).get("Driver") or ""),
                    # 0 or absent (API < 1.40): swarm's default port.
                    data_path_port=(int(cluster.get("DataPathPort") or DEFAULT_VXLAN_PORT)
                                    if manager and "Cluster" in swarm else None),
                    addr=swarm.get("NodeAddr") or None,
                    heartbeat=_heartbeat_period(cluster))


def _heartbeat_period(cluster: dict) -> float:
    """Spec.Dispatcher.HeartbeatPeriod (nanoseconds; `docker swarm update --dispatcher-heartbeat`)."""
    period = ((cluster.get("Spec") or {}).get("Dispatcher") or {}).get("HeartbeatPeriod")
    return period / 1e9 if isinstance(period, (int, float)) and period > 0 else 5.0
