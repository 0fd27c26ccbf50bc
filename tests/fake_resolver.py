"""dockerd's embedded DNS as a container's namespace sees it, for tier 2.

libnetwork's resolver listens on 127.0.0.11 at two random ports inside each container's
namespace, and the namespace's nat rules (DOCKER_OUTPUT / DOCKER_POSTROUTING) carry port 53
there and back. Here the rules are the recorded ones, restored for real; this resolver listens
on the ports they name and answers what libnetwork registers for a network (service_common.go
addEndpointNameResolution): <service> -> its VIP, tasks.<service> -> its task IPs. A fault is
an edit of its records, or stopping it. Sockets live in the namespace; nothing leaves it.
"""
from __future__ import annotations

import os
import select
import socket
import threading

import dns.message
import dns.query
import dns.rcode
import dns.rrset

import ssd.kernel.namespaces
import ssd.kernel.resolver


def libnetwork_records(network: dict) -> dict[str, list[str]]:
    """The names libnetwork registers for one network's inspect -v, as a resolver holds them."""
    records: dict[str, list[str]] = {}
    for name, svc in (network.get("Services") or {}).items():
        ips = sorted(str(t["EndpointIP"]).split("/")[0] for t in svc.get("Tasks") or [])
        if not name or not ips:
            continue
        records[name] = [svc["VIP"].split("/")[0]] if svc.get("VIP") else ips
        records[f"tasks.{name}"] = ips
    return records


class FakeResolver:
    def __init__(self, ns_path: str, udp_port: int, tcp_port: int, records: dict[str, list[str]]) -> None:
        self.records = records  # edited by the tests: the faults
        self.forwarded: set[str] = set()  # names it holds no record of and asks upstream, in vain
        with ssd.kernel.namespaces.entered_netns(ns_path):  # the sockets belong to the namespace they are made in
            self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self.udp.bind((ssd.kernel.resolver.DNS_RESOLVER, udp_port))
            self.tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self.tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.tcp.bind((ssd.kernel.resolver.DNS_RESOLVER, tcp_port))
            self.tcp.listen(8)
        self.wake_r, self.wake_w = os.pipe()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def answer(self, wire: bytes) -> bytes | None:
        query = dns.message.from_wire(wire)
        response = dns.message.make_response(query)
        question = query.question[0]
        if question.name.to_text(omit_final_dot=True).lower() in self.forwarded:
            return None  # the upstream server never answers (an air-gapped host)
        ips = self.records.get(question.name.to_text(omit_final_dot=True).lower())
        if ips:
            response.answer.append(dns.rrset.from_text_list(question.name, 600, "IN", "A", ips))
        else:
            response.set_rcode(dns.rcode.NXDOMAIN)
        return response.to_wire()

    def _serve(self) -> None:
        while True:
            ready, _, _ = select.select([self.udp, self.tcp, self.wake_r], [], [])
            if self.wake_r in ready:
                return
            if self.udp in ready:
                wire, peer = self.udp.recvfrom(65535)
                reply = self.answer(wire)
                if reply is not None:
                    self.udp.sendto(reply, peer)
            if self.tcp in ready:
                conn, _ = self.tcp.accept()
                with conn:
                    conn.settimeout(2)
                    query, _ = dns.query.receive_tcp(conn)
                    reply = self.answer(query.to_wire())
                    if reply is not None:
                        dns.query.send_tcp(conn, reply)

    def stop(self) -> None:
        """The resolver goes silent: its sockets close, the namespace's rules stay."""
        if self.udp.fileno() < 0:
            return
        if self.thread.is_alive():
            os.write(self.wake_w, b"x")
            self.thread.join(5)
        for closable in (self.udp, self.tcp):
            closable.close()
        for fd in (self.wake_r, self.wake_w):
            os.close(fd)
