#!/usr/bin/env python3
"""The overlay reader's cost per row, on this machine: 20,000 neighbour and 20,000 FDB rows of a
VXLAN device, as the kernel writes them, decoded by overlay.decode_neighbour (best of 5). No kernel,
no lab: a measure of the decoder alone, to compare two versions of it (issue 26's largest step
under emulation was this decode). Usage: bench/decode.py [ROWS]"""
from __future__ import annotations

import socket
import struct
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from ssd.kernel import netlink, overlay


def row(i: int, family: int) -> bytes:
    """One RTM_NEWNEIGH payload in the kernel's order for a VXLAN device's row."""
    mac = netlink.nla(netlink.NDA_LLADDR, bytes([2, 66, 10, i >> 16 & 255, i >> 8 & 255, i & 255]))
    tail = netlink.nla(3, struct.pack("=IIII", 0, 0, 0, 0)) + netlink.nla(4, struct.pack("=I", 0))
    head = netlink._NDMSG.pack(family, 5, netlink.NUD_PERMANENT, netlink.NTF_SELF, 0)
    if family == socket.AF_INET:
        ip = socket.inet_aton(f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}")
        return head + netlink.nla(netlink.NDA_DST, ip) + mac + tail
    return head + mac + netlink.nla(netlink.NDA_DST, socket.inet_aton(f"10.99.0.{i % 250 + 2}")) + tail


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 20000
    rows = [row(i, socket.AF_INET) for i in range(count)] + [row(i, netlink.AF_BRIDGE) for i in range(count)]
    best = min(_timed(rows) for _ in range(5))
    print(f"{len(rows)} rows in {best * 1000:.0f} ms: {best / len(rows) * 1e6:.2f} us per row")


def _timed(rows: list[bytes]) -> float:
    started = time.perf_counter()
    for payload in rows:
        overlay.decode_neighbour(payload)
    return time.perf_counter() - started


if __name__ == "__main__":
    main()
