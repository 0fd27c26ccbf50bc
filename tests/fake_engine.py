"""A stand-in Engine API on a unix socket, serving what a real dockerd answered.

It serves the recorded JSON of tests/fixtures (network inspect, service inspect, container
inspect, taken from dockerd 20.10.24 in swarm mode) to the real Docker SDK inside ssd.
/version and /info are rebuilt from the recorded `docker version` / `docker info` values,
/tasks from the recorded `docker service ps` (the recording has no raw JSON for these).
Tests change `routes` to make the daemon answer differently.
"""
from __future__ import annotations

import contextlib
import copy
import json
import os
import re
import socketserver
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler

from recorded import ONE_NODE, network_json, recorded_json, services_json, tasks_json, text


def recorded_routes() -> dict[str, object]:
    """path (without /vX.Y) -> JSON body (or an int: that HTTP status with a message)."""
    version = re.search(r"Server:.*?Version:\s+(\S+)", text("docker-version.txt"), re.S).group(1)
    info_text = text("docker-info.txt")
    node_id = re.search(r"NodeID: (\S+)", info_text).group(1)
    routes: dict[str, object] = {
        "/_ping": "OK",
        "/version": {"Version": version, "ApiVersion": "1.41", "MinAPIVersion": "1.12",
                     "Os": "linux", "Arch": "amd64"},
        "/info": {"Name": re.search(r"Name: (\S+)", info_text).group(1), "ServerVersion": version,
                  "Swarm": {"NodeID": node_id, "LocalNodeState": "active", "ControlAvailable": True}},
        "/services": services_json(),
        "/tasks": tasks_json(),
        "/networks/docker_gwbridge": 404,
    }
    listing = []
    for line in text("network-ls.txt").splitlines()[1:]:
        net_id, name, driver, scope = line.split()
        listing.append({"Id": net_id, "Name": name, "Driver": driver, "Scope": scope,
                        "Ingress": name == "ingress"})
    for name in ("ov2", "ingress"):
        net = network_json(name)
        routes[f"/networks/{net['Id']}"] = net
        routes[f"/networks/{name}"] = net
    routes["/networks"] = listing
    for container in recorded_json("container-inspect.txt"):
        routes[f"/containers/{container['Id']}/json"] = container
        routes[f"/containers/{container['Id'][:12]}/json"] = container
    return routes


class Truncated(bytes):
    """A body sent with a Content-Length 500 bytes beyond it: a daemon that hangs up half-way."""


class Held(bytes):
    """A log followed (follow=1): sent, then the connection held open, as dockerd does while the
    service runs, until the client hangs up (or shuts its socket down)."""


class FakeEngine:
    """Serve routes on a unix socket in a thread of the test process."""

    def __init__(self, socket_path: str) -> None:
        self.socket_path = socket_path
        self.routes = copy.deepcopy(_ROUTES)
        self.requests: list[str] = []
        engine = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # http.server's naming
                path, _, query = self.path.partition("?")
                path = re.sub(r"^/v\d+\.\d+", "", path)
                engine.requests.append(path if self.command == "GET" else f"{self.command} {path}")
                body = engine.routes.get(path, 404)
                if callable(body):  # a test's handler: (method, query, request JSON) -> body
                    length = int(self.headers.get("Content-Length") or 0)
                    sent = json.loads(self.rfile.read(length) or b"null")
                    body = body(self.command, urllib.parse.parse_qs(query), sent)
                if isinstance(body, Held):
                    self._hold(body)
                elif isinstance(body, Truncated):
                    self._send(200, body, declared=len(body) + 500)
                elif isinstance(body, bytes):  # a raw stream (logs)
                    self._send(200, body, "application/vnd.docker.raw-stream")
                elif isinstance(body, int):
                    self._send(body, {"message": f"fake engine: no such object: {path}"})
                elif isinstance(body, str):
                    self._send(200, body, "text/plain")
                else:
                    self._send(200, body)

            do_POST = do_DELETE = do_GET

            def _send(self, status: int, body: object, ctype: str = "application/json",
                      declared: int | None = None) -> None:
                if isinstance(body, bytes):
                    data = body
                else:
                    data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Api-Version", "1.41")
                self.send_header("Content-Length", str(len(data) if declared is None else declared))
                self.end_headers()
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self.wfile.write(data)  # a client may hang up early

            def _hold(self, data: bytes) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "application/vnd.docker.raw-stream")
                self.send_header("Connection", "close")  # (no length: the body ends when it closes)
                self.end_headers()
                with contextlib.suppress(OSError):
                    self.wfile.write(data)
                    self.wfile.flush()
                    while self.connection.recv(1024):  # until the client hangs up
                        pass

            def log_message(self, *args) -> None:
                pass

        class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
            daemon_threads = True

            def get_request(self):
                conn, _ = super().get_request()
                return conn, ("local", 0)  # http.server wants a (host, port) client address

        if os.path.exists(socket_path):
            os.unlink(socket_path)
        self.server = Server(socket_path, Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"unix://{self.socket_path}"

    def __enter__(self) -> FakeEngine:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
        os.unlink(self.socket_path)


_ROUTES = recorded_routes()
assert ONE_NODE.exists()
