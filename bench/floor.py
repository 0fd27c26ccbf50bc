#!/usr/bin/env python3
# Copyright 2026 The ssd authors. Licensed under the Apache License, Version 2.0.
"""floor - the least work that reads what ssd reads: the benchmark's baseline.

    floor.py SOCKET EXEC_ROOT

Dumps, for every namespace layout.py made, `ipvsadm -Ln` and `iptables-save` (and in the
overlay namespaces `ip -d link`, `ip neigh`, `bridge fdb`), run with nsenter as a person would,
and fetches the Engine API responses ssd uses (version, info, networks, each network's verbose
inspect, services, tasks) over the unix socket. Output is discarded; only the cost counts.
Standard library only, so its start-up is as cheap as it gets.
"""
from __future__ import annotations

import http.client
import json
import socket
import subprocess
import sys
from pathlib import Path


class UnixHTTP(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("localhost")
        self.path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(self.path)


def get(sock: str, path: str):
    conn = UnixHTTP(sock)
    conn.request("GET", path)
    body = conn.getresponse().read()
    conn.close()
    return json.loads(body)


def main(sock: str, root: Path) -> int:
    for path in ("/version", "/info", "/services", "/tasks"):
        get(sock, path)
    for net in get(sock, "/networks"):
        get(sock, f"/networks/{net['Id']}?verbose=1")
    for ns in (root / "namespaces").read_text().split():
        enter = ["nsenter", f"--net={root / 'netns' / ns}"]
        for cmd in (["ipvsadm", "-Ln"], ["iptables-save"]):
            subprocess.run(enter + cmd, check=True, stdout=subprocess.DEVNULL)
    overlays = root / "overlays"
    for ns in overlays.read_text().split() if overlays.exists() else []:
        enter = ["nsenter", f"--net={root / 'netns' / ns}"]
        for cmd in (["ip", "-d", "link", "show"], ["ip", "neigh", "show"], ["bridge", "fdb", "show"]):
            subprocess.run(enter + cmd, check=True, stdout=subprocess.DEVNULL)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], Path(sys.argv[2])))
