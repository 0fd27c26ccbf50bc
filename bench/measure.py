#!/usr/bin/env python3
# Copyright 2026 The ssd authors. Licensed under the Apache License, Version 2.0.
"""measure - time ssd and the floor on one laid-out size, inside a lab VM.

    measure.py EXEC_ROOT REPS [profile | probe]

Serves EXEC_ROOT/routes.json as the Engine API on EXEC_ROOT/api.sock (a stand-in: the real
engine cannot host 10,000 tasks in a VM), then runs, REPS times each and alternately: ssd's
full check as the container runs it (compiled, python -m ssd; it must find the laid-out state
consistent), the floor (floor.py), and the bare `import docker` of ssd's start-up. Prints one
JSON line: wall times (s) and peak resident memory (KiB, from wait4) per run. With 'profile',
one more ssd run under cProfile: its top steps by cumulative time go into the JSON as "profile"
(text). With 'probe' (a layout whose services say their ports), only ssd --probe, REPS times:
wall times, peak memory, exit statuses, and from the last run's report how many probes were
planned, tried and answered.
"""
from __future__ import annotations

import io
import json
import os
import pstats
import shutil
import signal
import socket
import socketserver
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler
from pathlib import Path

HERE = Path(__file__).resolve().parent
SSD = HERE.parent / "ssd.py"  # the launcher; the package ssd/ beside it is what runs


def serve(routes: dict, path: str) -> socketserver.BaseServer:
    blobs = {k: (v if isinstance(v, str) else json.dumps(v)).encode() for k, v in routes.items()}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            route = self.path.split("?", 1)[0]
            if route.startswith("/v1."):
                route = "/" + route.split("/", 2)[2]
            body = blobs.get(route)
            self.send_response(200 if body is not None else 404)
            body = body if body is not None else b'{"message": "not found"}'
            self.send_header("Content-Type", "application/json")
            self.send_header("Api-Version", "1.51")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
        daemon_threads = True

        def get_request(self):
            conn, _ = super().get_request()
            return conn, ("local", 0)

    if os.path.exists(path):
        os.unlink(path)
    server = Server(path, Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def serve_apart(routes_file: Path, path: str) -> int:
    """The stand-in in a process of its own; its pid. wait4's peak RSS of a child counts what
    its parent held when it forked (Linux keeps the high-water mark across exec): the routes
    of 5000 x 4 held here (about 190 MiB decoded) would hide ssd's own peak under them."""
    if os.path.exists(path):
        os.unlink(path)
    pid = os.fork()
    if pid == 0:
        try:
            serve(json.loads(routes_file.read_text()), path)
            while True:
                time.sleep(3600)
        finally:
            os._exit(0)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        with socket.socket(socket.AF_UNIX) as probe:
            try:
                probe.connect(path)
                return pid
            except OSError:
                time.sleep(0.2)
    os.kill(pid, signal.SIGKILL)
    sys.exit(f"measure: the stand-in did not listen on {path}")


def timed(cmd: list[str], env: dict) -> tuple[float, int, int]:
    """(wall seconds, peak RSS KiB, exit status) of one child process."""
    started = time.monotonic()
    pid = os.posix_spawn(cmd[0], cmd, env)
    _, status, usage = os.wait4(pid, 0)
    return time.monotonic() - started, usage.ru_maxrss, os.waitstatus_to_exitcode(status)


def profiled(cmd: list[str], env: dict, root: Path) -> str:
    """The top 25 steps by cumulative time of one ssd run under cProfile."""
    stats_file = root / "ssd.prof"
    timed([cmd[0], "-m", "cProfile", "-o", str(stats_file), *cmd[1:]], env)
    text = io.StringIO()
    pstats.Stats(str(stats_file), stream=text).sort_stats("cumulative").print_stats(25)
    return text.getvalue()


def probe_counts(report: dict) -> dict:
    """What the report says --probe did: per-network blocks summed, and its notes."""
    blocks = [n["probe"] for n in report.get("networks") or [] if n.get("probe")]
    keys = ("nodes", "reached", "backends", "backends_answered", "published", "published_answered")
    return {**{k: sum(b.get(k) or 0 for b in blocks) for k in keys},
            "notes": [n for n in report.get("notes") or [] if n.startswith("--probe")],
            "findings": len(report.get("findings") or [])}


def main_probe(root: Path, reps: int, commands: dict, env: dict) -> dict:
    out: dict = {"probe_s": [], "probe_rss_kib": [], "probe_exit": []}
    cmd = [*commands["ssd"][:-1], "--probe", "--json"]  # (not -q: the report is the measure)
    report = root / "probe-report.json"
    for _ in range(reps):
        fd = os.open(report, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.dup2(fd, 1)
        os.close(fd)
        wall, rss, code = timed(cmd, env)
        out["probe_s"].append(round(wall, 3))
        out["probe_rss_kib"].append(rss)
        out["probe_exit"].append(code)
    out["probe"] = probe_counts(json.loads(report.read_text()))
    return out


def main(root: Path, reps: int, profile: bool = False, probe: bool = False) -> int:
    sock = str(root / "api.sock")
    server = serve_apart(root / "routes.json", sock)
    # ssd as the container runs it (Dockerfile: compiled at build, `python -m ssd`): run as a
    # script, Python would compile its 7,000 lines first on every run (2.8 s under emulation).
    app = root / "app"
    app.mkdir(exist_ok=True)
    shutil.rmtree(app / "ssd", ignore_errors=True)
    shutil.copytree(SSD.parent / "ssd", app / "ssd", ignore=shutil.ignore_patterns("__pycache__"))
    py = sys.executable
    subprocess.run([py, "-m", "compileall", "-q", str(app)], check=True)
    env = {**os.environ, "PYTHONPATH": f"{app}:/opt/ssd-pylib", "NO_COLOR": "1"}
    devnull = os.open(os.devnull, os.O_WRONLY)
    saved = os.dup(1)
    commands = {
        "ssd": [py, "-m", "ssd", "-H", f"unix://{sock}", "--exec-root", str(root), "--settle", "0", "-q"],
        "floor": [py, str(HERE / "floor.py"), sock, str(root)],
        "imports": [py, "-c", "import docker"],
    }
    out: dict[str, list] = {f"{name}_{what}": [] for name in commands for what in ("s", "rss_kib", "exit")}
    os.dup2(devnull, 1)  # the children's stdout; this process prints only at the end
    try:
        if probe:
            out = main_probe(root, reps, commands, env)
        for _ in range(0 if probe else reps):
            for name, cmd in commands.items():
                wall, rss, code = timed(cmd, env)
                out[f"{name}_s"].append(round(wall, 3))
                out[f"{name}_rss_kib"].append(rss)
                out[f"{name}_exit"].append(code)
        if profile:
            # serial (no read-ahead): cProfile sees one process, and every step in it
            out["profile"] = profiled(commands["ssd"], {**env, "SSD_NO_READ_AHEAD": "1"}, root)
    finally:
        os.dup2(saved, 1)
        os.kill(server, signal.SIGKILL)
        os.waitpid(server, 0)
    out["api_bytes"] = (root / "routes.json").stat().st_size
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]), int(sys.argv[2]), profile=sys.argv[3:] == ["profile"],
                  probe=sys.argv[3:] == ["probe"]))
