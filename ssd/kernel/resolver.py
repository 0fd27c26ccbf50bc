"""The embedded DNS (127.0.0.11), asked from inside a container's namespace with dnspython: every
name at once over UDP with a TCP fallback, within a time window."""
from __future__ import annotations

import contextlib
import select
import socket
import time
from typing import Any

from ssd.base import CheckError, _short
from ssd.engine import require
from ssd.kernel.namespaces import entered_netns


# --- the embedded DNS: asked inside a container's namespace ---------------------------

DNS_RESOLVER = "127.0.0.11"  # libnetwork's resolver, DNAT-ed to dockerd in every container namespace
DNS_TIMEOUT = 1.0  # seconds per try: the resolver answers its own names at once
DNS_TRIES = 2
DNS_WINDOW = 64  # questions in flight at once: a burst of thousands would overflow a socket buffer
# The whole DNS read of one namespace, however many names and whatever arrives on the socket (a
# container flooding it with datagrams kept the receive loop busy for ever): past it, the names
# not answered yet are "not asked".
DNS_LIMIT = 30.0
DNS_READS = 256  # datagrams read before the deadline is looked at again


def ask_resolver(path: str, names: list[str]) -> dict:
    """A records of names, asked of 127.0.0.11 inside the namespace at path (queries only).

    The names are asked together on one UDP socket (DNS_WINDOW in flight), each DNS_TRIES times
    at most, DNS_TIMEOUT apart: the resolver answers the names it holds at once, and forwards
    the others upstream (20.10's forward can outlast any sensible wait). A name left unanswered
    while others were answered is marked "unanswered"; only a resolver that answered nothing
    is "silent". A truncated answer (a large tasks.<name>) is asked again over TCP.
    """
    try:
        dns_modules = {m: require(f"dns.{m}") for m in ("message", "query", "rcode", "exception", "rdatatype",
                                                         "flags")}
    except CheckError as exc:  # the other layers are still checked: this one is reported unasked
        return {"error": str(exc), "answers": {}}
    out: dict[str, Any] = {"error": None, "answers": {}}
    try:
        with entered_netns(path):
            out["answers"] = _ask_all(names, dns_modules)
    except FileNotFoundError:
        out["error"] = f"namespace {path} does not exist (it may have vanished mid-run)"
    except OSError as exc:
        out["error"] = f"cannot enter namespace {path}: {exc.strerror or _short(exc)}"
    return {"error": out["error"], "answers": {n: out["answers"][n] for n in names if n in out["answers"]}}


def _ask_all(names: list[str], dns: dict[str, Any]) -> dict[str, dict]:
    answers: dict[str, dict] = {}
    queue: list[tuple[str, Any, int]] = []  # (name, question, tries so far), asked in order
    for name in reversed(names):
        try:
            queue.append((name, dns["message"].make_query(name + ".", dns["rdatatype"].A), 0))  # absolute
        except dns["exception"].DNSException as exc:  # a label over 63 characters, say
            answers[name] = {"error": f"not asked: not a name DNS can carry ({_short(exc)})"}
    inflight: dict[int, tuple[str, Any, int, float]] = {}  # query id -> (name, question, tries, deadline)
    limit = time.monotonic() + DNS_LIMIT
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:  # made here: it lives in the namespace
        sock.setblocking(False)
        while queue or inflight:
            if time.monotonic() > limit:
                late = f"not asked: the DNS check's limit of {DNS_LIMIT:g} s was reached"
                for name, *_ in [*queue, *inflight.values()]:
                    answers[name] = {"error": late}
                break
            while queue and len(inflight) < DNS_WINDOW:
                name, question, tries = queue.pop()
                while question.id in inflight:  # ids are random: keep them apart
                    question.id = (question.id + 1) & 0xFFFF
                with contextlib.suppress(OSError):  # no route, say: that try is lost, as on the wire
                    sock.sendto(question.to_wire(), (DNS_RESOLVER, 53))
                inflight[question.id] = (name, question, tries + 1, time.monotonic() + DNS_TIMEOUT)
            wait = max(0.0, min(d for *_, d in inflight.values()) - time.monotonic())
            if select.select([sock], [], [], wait)[0]:
                _read_answers(sock, inflight, answers, dns)
            now = time.monotonic()
            for qid, (name, question, tries, deadline) in list(inflight.items()):
                if deadline <= now:
                    del inflight[qid]
                    if tries < DNS_TRIES:
                        queue.append((name, question, tries))
                    else:
                        answers[name] = {"error": f"no answer in {DNS_TRIES} tries of {DNS_TIMEOUT:g} s"}
            if not any("rcode" in a for a in answers.values()) and any(
                    a["error"].startswith("no answer") for a in answers.values()):
                for name, *_ in [*queue, *inflight.values()]:  # a silent resolver: bounded at one name's wait
                    answers[name] = {"error": "not asked: the resolver answered nothing"}
                break
    unanswered = [n for n, a in answers.items() if a.get("error", "").startswith("no answer")]
    mark = "silent" if not any("rcode" in a for a in answers.values()) else "unanswered"
    for name in unanswered:
        answers[name][mark] = True
    return answers


def _read_answers(sock: socket.socket, inflight: dict, answers: dict[str, dict], dns: dict[str, Any]) -> None:
    for _ in range(DNS_READS):
        try:
            wire, peer = sock.recvfrom(65535)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:  # an ICMP error for one of the questions: its try times out
            continue
        try:
            response = dns["message"].from_wire(wire)
        except dns["exception"].DNSException:
            continue  # not an answer to read: its question times out and is asked again
        entry = inflight.get(response.id)
        if peer[0] != DNS_RESOLVER or entry is None or not entry[1].is_response(response):
            continue
        del inflight[response.id]
        name, question = entry[0], entry[1]
        if response.flags & dns["flags"].TC:  # the whole answer only fits a TCP one
            try:
                response = dns["query"].tcp(question, DNS_RESOLVER, timeout=DNS_TIMEOUT)
            except (dns["exception"].DNSException, OSError) as exc:
                answers[name] = {"error": f"truncated over UDP, and over TCP: {_short(exc)}"}
                continue
        ips = sorted({rd.address for rrset in response.answer if rrset.rdtype == dns["rdatatype"].A
                      for rd in rrset})
        answers[name] = {"rcode": dns["rcode"].to_text(response.rcode()), "ips": ips}
