"""Traffic for --probe: echo requests and TCP connections, each socket made inside the namespace
it leaves from, then one loop waits on all of them; bounded in count and time."""
from __future__ import annotations

import contextlib
import errno
import os
import selectors
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ssd.base import _short
from ssd.kernel.namespaces import entered_netns


# --- traffic (--probe): echo requests and TCP connections, bounded --------------------
# Sent only with --probe. Each probe leaves from a namespace that ssd enters only to make its
# socket (a socket stays in the namespace it was made in); then one loop waits on all of them,
# so a node with hundreds of backends is probed in about one timeout.

PROBE_TRIES = 3  # echo requests per target and size, PROBE_INTERVAL apart
PROBE_INTERVAL = 0.2  # seconds
PROBE_TIMEOUT = 1.5  # seconds for an answer after the last request; a TCP connection's SYN and its retry
PROBE_LIMIT = 4.5  # seconds for all the probes of one sample (a settled run takes two: under 10 s)
PROBE_SOCKETS = 256  # TCP connections open at once (file descriptors)
ECHO_SMALL = 84  # bytes: the IP packet of a default ping
IP_MTU_DISCOVER, IP_PMTUDISC_DO = 10, 2  # <linux/in.h>: set DF, never fragment locally
ICMP_ECHO_REPLY, ICMP_UNREACH, ICMP_ECHO = 0, 3, 8
ICMP_FRAG_NEEDED = 4


@dataclass(frozen=True, slots=True)
class Probe:
    """One thing --probe sends: an ICMP echo of `size` bytes (the whole IP packet, DF set) or a
    TCP connection, from the namespace at `source` ("": the node's own) to target."""
    kind: str  # "echo" or "tcp"
    source: str
    target: str
    port: int = 0
    size: int = 0

    @property
    def key(self) -> str:
        return (f"echo {self.source or 'host'} {self.target} {self.size}" if self.kind == "echo"
                else f"tcp {self.source or 'host'} {self.target}:{self.port}")


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def echo_request(ident: int, seq: int, size: int) -> bytes:
    """An ICMP echo request that makes an IP packet of size bytes (20 of IP header)."""
    payload = bytes(i & 0xFF for i in range(max(0, size - 28)))
    header = struct.pack("!BBHHH", ICMP_ECHO, 0, 0, ident, seq)
    return struct.pack("!BBHHH", ICMP_ECHO, 0, _checksum(header + payload), ident, seq) + payload


def parse_icmp(packet: bytes, ident: int) -> tuple[int, str] | None:
    """(seq, result) of a raw socket's packet that answers one of ours: an echo reply ("ok"), a
    "fragmentation needed" ("too-big") or another "destination unreachable" ("unreachable")."""
    if len(packet) < 20:
        return None
    ihl = (packet[0] & 0xF) * 4
    if len(packet) < ihl + 8:
        return None
    kind, code = packet[ihl], packet[ihl + 1]
    if kind == ICMP_ECHO_REPLY:
        rid, seq = struct.unpack_from("!HH", packet, ihl + 4)
        return (seq, "ok") if rid == ident else None
    if kind == ICMP_UNREACH and len(packet) >= ihl + 8 + 28:  # it quotes our request's headers
        inner = ihl + 8
        inner_ihl = (packet[inner] & 0xF) * 4
        if packet[inner + 9] != socket.IPPROTO_ICMP or len(packet) < inner + inner_ihl + 8:
            return None
        rtype, _, _, rid, seq = struct.unpack_from("!BBHHH", packet, inner + inner_ihl)
        if rtype == ICMP_ECHO and rid == ident:
            return seq, "too-big" if code == ICMP_FRAG_NEEDED else "unreachable"
    return None


def _in_namespace(source: str, make: Callable[[], socket.socket]) -> socket.socket:
    with entered_netns(source) if source else contextlib.nullcontext():
        return make()


TCP_RESULTS = {0: "ok", errno.ECONNREFUSED: "refused", errno.EHOSTUNREACH: "unreachable",
               errno.ENETUNREACH: "unreachable", errno.ETIMEDOUT: "timeout"}


class Prober:
    """Runs a list of probes at once and says what came back of each: {key: {"result": ok |
    refused | timeout | unreachable | too-big | error | not-probed, "ms": round trip or None,
    "detail": why, for an error}}."""

    def __init__(self, probes: list[Probe], limit: float = PROBE_LIMIT) -> None:
        self.results: dict[str, dict] = {}
        self.ident = (os.getpid() ^ int(time.monotonic() * 1000)) & 0xFFFF
        self.start = time.monotonic()
        self.end = self.start + limit
        self.echoes = list(dict.fromkeys(p for p in probes if p.kind == "echo"))
        self.waiting = list(reversed(dict.fromkeys(p for p in probes if p.kind == "tcp")))
        self.selector = selectors.DefaultSelector()
        self.raw: dict[str, socket.socket] = {}
        self.sends: list[tuple[float, int]] = []  # (when, index in echoes): each request to send
        self.sent: dict[int, float] = {}  # index -> when its first request left
        self.connecting: dict[socket.socket, tuple[Probe, float]] = {}

    def _done(self, probe: Probe, result: str, detail: str | None = None, since: float | None = None) -> None:
        if probe.key not in self.results:
            ms = round((time.monotonic() - since) * 1000, 1) if since is not None and result in (
                "ok", "refused") else None
            self.results[probe.key] = {"result": result, "ms": ms, "detail": detail}

    def run(self) -> dict[str, dict]:
        try:
            self._open_echo_sockets()
            self.sends = sorted((self.start + t * PROBE_INTERVAL, i) for i in range(len(self.echoes))
                                for t in range(PROBE_TRIES))
            while time.monotonic() < self.end and (self._echoes_open() or self.waiting or self.connecting):
                self._send_due()
                self._connect_more()
                for key, _ in self.selector.select(self._wait()):
                    if key.data is None:
                        self._read_icmp(key.fileobj)
                    else:
                        self._connected(key.fileobj)
                self._expire()
        finally:
            for sock in [*self.raw.values(), *self.connecting]:
                sock.close()
            self.selector.close()
        for probe in [*self.echoes, *self.waiting, *(p for p, _ in self.connecting.values())]:
            self._done(probe, "not-probed", f"the probes' limit of {PROBE_LIMIT:g} s was reached")
        return self.results

    def _open_echo_sockets(self) -> None:
        for source in dict.fromkeys(p.source for p in self.echoes):
            try:
                sock = _in_namespace(source, lambda: socket.socket(
                    socket.AF_INET, socket.SOCK_RAW | socket.SOCK_NONBLOCK, socket.IPPROTO_ICMP))
                sock.setsockopt(socket.IPPROTO_IP, IP_MTU_DISCOVER, IP_PMTUDISC_DO)
            except OSError as exc:
                for probe in self.echoes:
                    if probe.source == source:
                        self._done(probe, "error", f"cannot send ICMP from {source or 'this node'}: "
                                   f"{exc.strerror or _short(exc)}")
                continue
            self.raw[source] = sock
            self.selector.register(sock, selectors.EVENT_READ, None)

    def _echoes_open(self) -> bool:
        return any(p.key not in self.results for p in self.echoes)

    def _send_due(self) -> None:
        now = time.monotonic()
        while self.sends and self.sends[0][0] <= now:
            _, index = self.sends.pop(0)
            probe = self.echoes[index]
            sock = self.raw.get(probe.source)
            if sock is None or probe.key in self.results:
                continue
            self.sent.setdefault(index, now)
            try:
                sock.sendto(echo_request(self.ident, index & 0xFFFF, probe.size), (probe.target, 0))
            except OSError as exc:  # EMSGSIZE: the way out is narrower than the size, with DF
                if exc.errno == errno.EMSGSIZE:
                    self._done(probe, "too-big", "larger than the MTU of the way out of its namespace")
                elif exc.errno not in (errno.EAGAIN, errno.ENOBUFS):
                    self._done(probe, "unreachable", exc.strerror or _short(exc))

    def _connect_more(self) -> None:
        while self.waiting and len(self.connecting) < PROBE_SOCKETS:
            probe = self.waiting.pop()
            try:
                sock = _in_namespace(probe.source, lambda: socket.socket(
                    socket.AF_INET, socket.SOCK_STREAM | socket.SOCK_NONBLOCK))
            except OSError as exc:
                self._done(probe, "error", f"cannot connect from {probe.source or 'this node'}: "
                           f"{exc.strerror or _short(exc)}")
                continue
            code = sock.connect_ex((probe.target, probe.port))
            if code not in (0, errno.EINPROGRESS):
                self._done(probe, TCP_RESULTS.get(code, "error"), os.strerror(code))
                sock.close()
                continue
            self.connecting[sock] = (probe, time.monotonic())
            self.selector.register(sock, selectors.EVENT_WRITE, probe)

    def _wait(self) -> float:
        now = time.monotonic()
        times = [self.end]
        if self.sends:
            times.append(self.sends[0][0])
        times += [t + PROBE_TIMEOUT for _, t in self.connecting.values()]
        times += [self._echo_deadline(i) for i, p in enumerate(self.echoes)
                  if p.key not in self.results and i in self.sent]
        return max(0.0, min(times) - now)

    def _echo_deadline(self, index: int) -> float:
        return self.sent[index] + (PROBE_TRIES - 1) * PROBE_INTERVAL + PROBE_TIMEOUT

    def _read_icmp(self, sock: Any) -> None:
        while True:
            try:
                packet = sock.recv(65535)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                continue
            answer = parse_icmp(packet, self.ident)
            if answer is None:
                continue
            seq, result = answer
            for index in range(seq, len(self.echoes), 0x10000):  # seq is the index, modulo 16 bits
                if self.raw.get(self.echoes[index].source) is sock:
                    self._done(self.echoes[index], result, since=self.sent.get(index))
                    break

    def _connected(self, sock: Any) -> None:
        probe, since = self.connecting.pop(sock)
        self.selector.unregister(sock)
        code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        self._done(probe, TCP_RESULTS.get(code, "error"), None if code in (0, errno.ECONNREFUSED)
                   else os.strerror(code), since=since)
        sock.close()

    def _expire(self) -> None:
        now = time.monotonic()
        for sock, (probe, since) in list(self.connecting.items()):
            if now >= since + PROBE_TIMEOUT:
                del self.connecting[sock]
                self.selector.unregister(sock)
                sock.close()
                self._done(probe, "timeout")
        for index, probe in enumerate(self.echoes):
            if index in self.sent and probe.key not in self.results and now >= self._echo_deadline(index):
                self._done(probe, "timeout")


def run_probes(probes: list[Probe]) -> dict[str, dict]:
    return Prober(probes).run()
