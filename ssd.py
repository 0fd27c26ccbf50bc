#!/usr/bin/env python3
# Copyright 2026 The ssd authors. Licensed under the Apache License, Version 2.0.
"""ssd - Swarm Service Driller: is this node's load-balancer datapath what Docker says?

ssd compares, on one Docker Swarm node, the control plane (what the engine says each
service's VIP, fwmark and tasks are: GET /networks/{id}?verbose=true, and on managers
/services and /tasks) with the kernel datapath that libnetwork programmed from it:

  * the IPVS firewall-mark services and their destinations (generic netlink),
  * the iptables MARK, SNAT, DNAT, REDIRECT and filter rules (parsed iptables-save text,
    nf_tables and legacy backends),
  * the VIP /32 aliases on the load-balancer interface and the IPVS sysctls,

in the place the engine version really programs them: one load-balancer namespace per
network (lb_<network id[:9]>) and ingress_sbox since Docker 18.06, every container
sandbox before. One layer down it checks each overlay network's namespace (the VXLAN
device, a neighbour and an FDB entry per remote endpoint, ESP state when encrypted); one
layer up, on a manager, that NetworkDB holds the tasks and VIPs swarm runs. It never
changes anything: it only reads.

On a manager it also looks at the whole swarm through one short-lived global service that
runs ssd on every node and is always removed: `NETWORK gossip-consistency` compares every
node's view of a network's gossiped state; `--all-nodes` runs the node check everywhere.

Exit status follows diff(1): 0 consistent, 1 inconsistencies found, 2 could not check.

The file reads top to bottom, one banner per section, one per part:

  Model             the check ids and their layers, the engine model, known engine bugs, and
                    the views, datapath snapshots and findings everything else passes around
  Collectors        namespaces; netlink (IPVS, addresses); netlink (an overlay namespace); the
                    embedded DNS; the host's prerequisites; traffic (--probe); what a run
                    reads, live or from a snapshot
  Checks            the load balancers; swarm against NetworkDB; converging; the overlay; the
                    embedded DNS; this node's prerequisites; traffic (pure functions: state
                    in, findings out, no I/O)
  One run           its phases, each a function, then the checks
  Reports           text, JSON, Nagios, Prometheus
  Swarm-wide modes  their results; the job; gossip; gossip-consistency; --all-nodes; their
                    reports
  CLI               the options, the node check, the entry points of every mode
"""
from __future__ import annotations

# Before anything slow: a Ctrl-C while Python is still importing is one line and exit 2, and an
# interpreter older than 3.11 (say, `sudo ./ssd.py` with an old system Python) is told so. This
# part must stay valid Python 3.7, so that an old interpreter gets this far.
import os
import signal
import sys

__version__ = "0.1.0"
MIN_PYTHON = (3, 11)


def _interrupted_early(signum, frame):  # replaced by Python's own handler once main() runs
    os.write(2, b"ssd: interrupted\n")
    os._exit(2)


def _refuse_old_python():
    message = "ssd needs Python {}.{} or later; this is Python {}".format(
        MIN_PYTHON[0], MIN_PYTHON[1], ".".join(str(v) for v in sys.version_info[:3]))
    if not _run_as_command():
        raise ImportError(message)
    sys.stderr.write("ssd: error: " + message + " (run it with python3.11+, or use the container)\n")
    if "--json" in sys.argv[1:]:
        import json
        sys.stdout.write(json.dumps({"schema_version": 1, "mode": "node", "ssd_version": __version__,
                                     "status": "incomplete", "node": None,
                                     "networks": [], "findings": [], "notes": [],
                                     "errors": [{"scope": "ssd", "message": message}]}) + "\n")
    sys.exit(2)


def _run_as_command():
    """Run as ./ssd.py, python -m ssd, or the `ssd` command an install makes (whose wrapper
    imports this module): the cases where a Ctrl-C is ours to report. An import by a test or
    another program leaves its SIGINT alone."""
    return __name__ == "__main__" or os.path.basename(sys.argv[0] if sys.argv else "") == "ssd"


if _run_as_command():
    signal.signal(signal.SIGINT, _interrupted_early)
if sys.version_info < MIN_PYTHON:
    _refuse_old_python()

import argparse
import codecs
import contextlib
import dataclasses
import errno
import functools
import gc
import importlib
import ipaddress
import json
import marshal
import math
import re
import select
import selectors
import shlex
import shutil
import socket
import struct
import subprocess
import textwrap
import threading
import time
from dataclasses import dataclass, field
from collections.abc import Callable, Iterable, Iterator
from typing import Any, ClassVar, NamedTuple

DEFAULT_HOST = "unix:///var/run/docker.sock"
DEFAULT_EXEC_ROOT = "/var/run/docker"
DEFAULT_SETTLE = 2.0  # seconds between a node check's two samples
DEFAULT_FLEET_TIMEOUT = 120.0  # seconds the swarm-wide modes wait for every node
DEFAULT_VXLAN_PORT = 4789
AF_INET = 2
FIRST_FWMARK = 256  # libnetwork's fwMarkCtr starts here and only grows

# IPVS forwarding methods (IP_VS_CONN_F_FWD_MASK bits of the destination's conn flags).
FWD_METHODS = {0: "Masq", 1: "Local", 2: "Tunnel", 3: "Route", 4: "Bypass"}
IP_VS_SVC_F_PERSISTENT = 0x1
IPVS_SYSCTL_DIR = "/proc/sys/net/ipv4/vs"


# --------------------------------------------------------------------------------------
# Model: what the control plane says, what the datapath holds, what differs.
# --------------------------------------------------------------------------------------

class CheckError(Exception):
    """An expected failure: one line on stderr, exit status 2."""


@dataclass(frozen=True)
class CheckInfo:
    meaning: str
    action: str
    layer: str = "kernel"  # a key of LAYERS: which layer disagrees with the one above it


@dataclass(frozen=True)
class Layer:
    """One layer ssd compares. Everything about a layer follows from its entry in LAYERS and each
    check id's layer: which findings are the layer's, its per-network status (JSON, fleet), its
    block in the text report (drawn from _describe_<name>(network) when the reports define one,
    as http.server finds do_<COMMAND>), and the line under each of its findings. Adding a layer:
    an entry here, its check ids, its checks, and _describe_<name> for a block of its own. The
    load balancer's block (per service, and the host's ingress rules) is the kernel's."""
    against: str  # under each finding: which layer disagrees, against which
    # whether the layer was read for one network (NetworkResult); else its status is "error"
    read: Callable[[Any], bool] = lambda net: True


LAYERS: dict[str, Layer] = {
    "kernel": Layer("kernel, against NetworkDB on this node"),
    "networkdb": Layer("NetworkDB on this node, against swarm (or itself)"),
    "dns": Layer("embedded DNS, against NetworkDB on this node",
                 read=lambda net: net.dns is not None and net.dns.answers is not None),
    "overlay": Layer("overlay (VXLAN), against NetworkDB on this node",
                     read=lambda net: bool(net.overlay and net.overlay.checked)),
    "host": Layer("host settings, against what overlays and load balancers need"),
    "probe": Layer("traffic (--probe), against the paths every layer above says exist",
                   read=lambda net: net.probe is not None),
}


# The check ids are part of the product: README lists them, --json carries them and
# monitoring keys on them. Add new ids; never rename one.
CHECKS: dict[str, CheckInfo] = {
    "lb-namespace-missing": CheckInfo(
        "A network with VIP services has no load-balancer namespace on this node.",
        "Look for the network's lb-<name>/ingress-sbox entry in `docker network inspect -v`; "
        "leaving and re-joining the network (or restarting dockerd) recreates it."),
    "fwmark-duplicate": CheckInfo(
        "Two services of this node share a LocalLBIndex (firewall mark).",
        "Traffic for one VIP reaches the other's tasks; `docker service update --force` one of them.",
        layer="networkdb"),
    "ipvs-service-missing": CheckInfo(
        "A VIP service's LocalLBIndex has no IPVS firewall-mark service.",
        "`docker service update --force <service>` reprograms it; inspect with `ipvsadm -Ln`."),
    "ipvs-service-stale": CheckInfo(
        "An IPVS service belongs to no current VIP service of the network.",
        "Leftover of a removed service; restarting dockerd (or a reboot) clears it."),
    "ipvs-service-config": CheckInfo(
        "The IPVS service's address family, scheduler or persistence differ from what the engine sets.",
        "Someone changed it by hand; `docker service update --force <service>` restores it."),
    "ipvs-backend-missing": CheckInfo(
        "A task of the service is not a destination of its IPVS service.",
        "Requests never reach that task; `docker service update --force <service>`."),
    "ipvs-backend-stale": CheckInfo(
        "An IPVS destination is no task of the service (maybe of another service).",
        "Requests go to a dead or foreign task; `docker service update --force <service>`."),
    "ipvs-backend-weight": CheckInfo(
        "A destination has weight 0 though its task should receive traffic (not a task failing its "
        "health check, which its executor disables before swarm stops it), or weight 1 though swarm is "
        "stopping it (moby#41896).",
        "Check the task with `docker service ps`; `docker service update --force <service>`."),
    "ipvs-backend-forwarding": CheckInfo(
        "A destination's forwarding method is not Masq (Route on networks created with -o dsr).",
        "`docker service update --force <service>`."),
    "mark-missing": CheckInfo(
        "The iptables rule that marks the VIP (or an ingress published port) with the fwmark is absent.",
        "Traffic to that VIP or port is not load-balanced; `docker service update --force <service>`."),
    "mark-stale": CheckInfo(
        "A MARK rule marks a VIP or port that no current service owns.",
        "Leftover of a removed service or port; restarting dockerd clears it."),
    "mark-conflict": CheckInfo(
        "A VIP or port has more than one MARK rule, or one that sets a mark other than its LocalLBIndex "
        "(libnetwork#2263).",
        "Only the last rule wins; `docker service update --force <service>`, else restart dockerd."),
    "vip-alias-missing": CheckInfo(
        "A service VIP is not a /32 alias on the load-balancer interface.",
        "Nobody answers ARP for the VIP on this node; `docker service update --force <service>`."),
    "vip-alias-stale": CheckInfo(
        "A /32 alias on the load-balancer interface is no current service VIP.",
        "Leftover of a removed service; restarting dockerd clears it."),
    "snat-missing": CheckInfo(
        "The NAT-mode network lacks `-m ipvs --ipvs -j SNAT --to-source <LB IP>` in nat POSTROUTING.",
        "Replies from remote tasks do not come back; restart dockerd."),
    "sysctl": CheckInfo(
        "An IPVS sysctl in the load-balancer namespace differs from what this engine version sets.",
        "Something rewrote it; see moby#35082 for the effect; restart dockerd to reapply."),
    "ingress-dnat-missing": CheckInfo(
        "The host has no DOCKER-INGRESS DNAT rule for an ingress-published port.",
        "The routing mesh does not answer on this node for that port; `docker service update --force`."),
    "ingress-dnat-stale": CheckInfo(
        "The host has a DOCKER-INGRESS DNAT rule for a port no service publishes.",
        "Leftover of a removed service or port (moby#33790); restarting dockerd clears it."),
    "ingress-dnat-target": CheckInfo(
        "A DOCKER-INGRESS DNAT rule points elsewhere than ingress_sbox's docker_gwbridge address.",
        "Published traffic goes to the wrong place; restart dockerd."),
    "ingress-filter-missing": CheckInfo(
        "The host's filter DOCKER-INGRESS chain lacks an ACCEPT rule for a published port.",
        "A firewall tool may have flushed it (moby#33893); restart dockerd."),
    "ingress-jump-missing": CheckInfo(
        "A jump into DOCKER-INGRESS (nat PREROUTING/OUTPUT, filter FORWARD or DOCKER-FORWARD) is absent.",
        "Published ports are dead on this node; a firewall reload may have removed it; restart dockerd."),
    "task-redirect-missing": CheckInfo(
        "A local task on the ingress network lacks its REDIRECT rule from published to target port.",
        "That task drops routing-mesh traffic; `docker service update --force <service>`."),
    "overlay-namespace-missing": CheckInfo(
        "A network with endpoints on this node has no overlay namespace (<epoch>-<network id[:10]>).",
        "Its local tasks cannot reach other nodes; remove the network's local tasks (or restart "
        "dockerd) so that the namespace is created again.", layer="overlay"),
    "overlay-vxlan-config": CheckInfo(
        "The network's VXLAN device is missing, down, or its VNI, UDP port, bridge, MTU or flags "
        "differ from what the engine sets. A network with several subnets has one device per subnet, "
        "made when the first endpoint in that subnet joins or is learnt: a subnet no endpoint uses yet "
        "needs none.",
        "Cross-node traffic on that network is lost or fragmented; restart dockerd (it recreates the "
        "namespace when the network's last local endpoint leaves).", layer="overlay"),
    "overlay-neighbor-missing": CheckInfo(
        "A remote endpoint that NetworkDB lists has no permanent neighbour entry on the VXLAN device.",
        "This node cannot reach that task (moby#52661); `docker service update --force <service>` "
        "announces it again; else restart dockerd.", layer="overlay"),
    "overlay-neighbor-stale": CheckInfo(
        "A permanent neighbour entry on the VXLAN device is no current remote endpoint (or is a local "
        "one).",
        "Traffic to that IP goes to a dead or wrong endpoint (moby#35401); restart dockerd, or "
        "`ip neigh del` it in the overlay namespace.", layer="overlay"),
    "overlay-fdb-missing": CheckInfo(
        "A remote endpoint's MAC has no permanent FDB entry towards its node on the VXLAN device.",
        "Frames to that task are flooded or lost (moby#52661); `docker service update --force "
        "<service>`; else restart dockerd.", layer="overlay"),
    "overlay-fdb-stale": CheckInfo(
        "A permanent FDB entry on the VXLAN device belongs to no current endpoint, or points to a node "
        "that is no peer of the network.",
        "A reused IP may be sent to the wrong machine (moby#35807); restart dockerd, or `bridge fdb "
        "del` it in the overlay namespace.", layer="overlay"),
    "overlay-fdb-wrong-node": CheckInfo(
        "The FDB entry of a remote endpoint points to another node than the one NetworkDB says "
        "hosts it.",
        "Packets for that task go to the wrong node (moby#49908); `docker service update --force "
        "<service>`; else restart dockerd on this node.", layer="overlay"),
    "overlay-esp-missing": CheckInfo(
        "An encrypted overlay has remote endpoints on a node this node has no ESP state (SA out, SA in) "
        "or IPsec policy for.",
        "Traffic to that node on encrypted networks is dropped (moby#30727, #30766); allow ESP (IP "
        "protocol 50) between the nodes, then restart dockerd.", layer="overlay"),
    "overlay-encryption-rules": CheckInfo(
        "The host lacks an encrypted overlay's iptables rules for one of its VNIs: the mangle OUTPUT "
        "mark 0xD0C4E3 its IPsec policy matches, or the filter INPUT rule that drops its VXLAN received "
        "in cleartext.",
        "Without the mark the network's traffic to other nodes is dropped; without the drop, cleartext "
        "VXLAN is accepted. A firewall reload removes them (dockerd restores only the ingress rules): "
        "restart dockerd on this node.", layer="overlay"),
    "swarm-task-missing": CheckInfo(
        "A task swarm runs on the network (past the convergence window) is not in this node's "
        "NetworkDB.",
        "This node neither load-balances nor resolves that task (moby#41885, #53141); `docker service "
        "update --force <service>`; if the node's gossip is cut, run gossip-consistency.",
        layer="networkdb"),
    "networkdb-task-zombie": CheckInfo(
        "NetworkDB on this node lists a task swarm says has stopped, or runs on a node that is down, "
        "past the convergence window.",
        "Requests still go to a dead task (moby#35548, #41885); it should leave with its node's "
        "entries; else `docker service update --force <service>` or restart dockerd on this node.",
        layer="networkdb"),
    "duplicate-ip": CheckInfo(
        "Two endpoints of one network hold the same IP in this node's NetworkDB (tasks, VIPs or the "
        "load balancer).",
        "Half the traffic for that IP goes to the wrong endpoint (moby#33795, #41576, #36797); "
        "`docker service update --force` the newer service, or remove the stale endpoint.",
        layer="networkdb"),
    "task-ip-mismatch": CheckInfo(
        "A task's IP in NetworkDB differs from the address swarm allocated it on the network.",
        "Its entry is stale (a reused endpoint); `docker service update --force <service>`.",
        layer="networkdb"),
    "vip-mismatch": CheckInfo(
        "A service's VIP in NetworkDB differs from the one swarm allocated on the network, or swarm "
        "holds two VIPs for it there.",
        "Clients of the VIP reach nothing or the wrong service (moby#26733); "
        "`docker service update --force <service>`, else recreate the service.",
        layer="networkdb"),
    "networkdb-peer-missing": CheckInfo(
        "NetworkDB on this node lists an endpoint with no Host IP: the overlay has no peer record for it "
        "(moby#35671), so no neighbour or FDB entry leads to it while load balancers still send it traffic.",
        "Connections to that task fail part of the time; `docker service update --force <service>` gives it "
        "a new endpoint; if it comes back, restart dockerd on the node that runs it.", layer="networkdb"),
    "iptables-split-brain": CheckInfo(
        "Docker's chains appear in both the legacy and the nf_tables iptables backend (moby#46636).",
        "Make dockerd and every firewall tool use one backend (update-alternatives), then restart dockerd."),
    "dns-resolver-rules": CheckInfo(
        "A container's namespace lacks the nat rules that send 127.0.0.11:53 (UDP or TCP) to dockerd's "
        "embedded resolver and back.",
        "Name lookups in that container fail or hang; restarting the container recreates its sandbox "
        "and the rules (`docker service update --force <service>` for a task).", layer="dns"),
    "dns-resolver-silent": CheckInfo(
        "The embedded resolver (127.0.0.11) answered none of the names asked from inside a container of the "
        "network.",
        "Every lookup in that container times out; check the container's resolver rules "
        "(dns-resolver-rules), then restart the container (a task: `docker service update --force "
        "<service>`); if all containers are silent, restart dockerd.", layer="dns"),
    "dns-name-missing": CheckInfo(
        "The embedded DNS has no A record for a service name, alias or `tasks.<name>` while NetworkDB "
        "on this node lists running tasks of the service (NXDOMAIN with live tasks, moby#53141; or no "
        "answer at all while it answers the network's other names: it forwards names it does not hold).",
        "Clients cannot find the service by name although its IPs work; `docker service update "
        "--force <service>` re-registers its names; if many names are gone, restart dockerd.",
        layer="dns"),
    "dns-answer-stale": CheckInfo(
        "The embedded DNS answers, for a service name, alias or `tasks.<name>`, an address that nothing "
        "NetworkDB on this node lists on the network holds (a removed task, an old VIP: moby#36797). A "
        "name answers every address registered under it: a task's hostname or a container name that "
        "equals a service name adds that endpoint's address.",
        "Clients reach a dead or foreign address part of the time; `docker service update --force "
        "<service>`; if it stays, restart dockerd on this node.", layer="dns"),
    "dns-answer-incomplete": CheckInfo(
        "The embedded DNS leaves out, for a service name or `tasks.<name>`, an address NetworkDB on "
        "this node gives it (a running task, the VIP); draining tasks are allowed to be missing.",
        "Clients never reach that task by DNS; `docker service update --force <service>`.",
        layer="dns"),
    "ip-forward-off": CheckInfo(
        "IPv4 forwarding (net.ipv4.ip_forward) is off on this node.",
        "Published ports and traffic from containers to other networks die here; `sysctl -w "
        "net.ipv4.ip_forward=1` (and find what turned it off: a sysctl.d file, a firewall tool, "
        "dockerd --ip-forward=false).", layer="host"),
    "conntrack-full": CheckInfo(
        "A connection-tracking table (this node's, or a load-balancer namespace's) is 90% full or more.",
        "New connections are dropped once it is full (`nf_conntrack: table full` in dmesg); raise "
        "net.netfilter.nf_conntrack_max, or find what opens so many connections (`conntrack -S`).",
        layer="host"),
    "underlay-mtu": CheckInfo(
        "The interface that carries this node's data path has a smaller MTU than an overlay's packets "
        "need (its VXLAN device's MTU plus 50 bytes of VXLAN, plus ESP when encrypted).",
        "Full-size packets between nodes are fragmented or lost (large responses hang while small "
        "ones pass); create the network with `-o com.docker.network.driver.mtu=<underlay MTU - 50>`, "
        "or raise the underlay's MTU.", layer="host"),
    "probe-node-unreachable": CheckInfo(
        "--probe: no endpoint of another node answered an echo request on an overlay network.",
        "Traffic on that network between this node and that one is lost: allow UDP 4789 (or the "
        "swarm's data-path port) and, on encrypted networks, ESP between the two nodes; then run "
        "ssd there.", layer="probe"),
    "probe-mtu-blackhole": CheckInfo(
        "--probe: small echo requests to another node's endpoints are answered, full-size ones (the "
        "network's MTU, DF set) are not.",
        "The underlay between the nodes cannot carry a full VXLAN packet (a VPN, a smaller cloud MTU, "
        "fragments dropped): lower the network's MTU (com.docker.network.driver.mtu) or fix the path.",
        layer="probe"),
    "probe-backend-timeout": CheckInfo(
        "--probe: a TCP connection from the load balancer to a backend task's address and port got "
        "no answer at all (a refusal would mean the path works).",
        "The load balancer sends requests to a task it cannot reach: look at the task's node (its "
        "overlay, its firewall); `docker service update --force <service>`.", layer="probe"),
    "probe-published-timeout": CheckInfo(
        "--probe: a TCP connection to a node's address at a published port (the routing mesh's entry) "
        "got no answer at all.",
        "Clients of that port on that node time out: look at that node's firewall (DOCKER-USER, a "
        "cloud security group) and its DOCKER-INGRESS rules (run ssd there).", layer="probe"),
}


@dataclass(frozen=True)
class KnownIssue:
    """An engine bug that produces a finding, from the moby source and issue tracker.

    Only entries checked against the moby source of each release or its issue tracker, each with
    its link. affected: [first, fixed) release ranges where the source has the bug, or, for a
    report without a known fix, the releases it was reported on (an open report runs to 999)."""
    ref: str
    url: str
    checks: frozenset[str]
    affected: tuple[tuple[tuple[int, int, int], tuple[int, int, int]], ...]
    fixed_in: str | None
    what: str


KNOWN_ISSUES = (
    KnownIssue(
        "moby#51656", "https://github.com/moby/moby/issues/51656",
        frozenset({"ipvs-service-missing", "mark-missing", "ingress-dnat-missing", "ingress-filter-missing"}),
        (((18, 6, 0), (29, 7, 0)),), "29.7.0 (moby#51657)",
        "if a published port was changed with --update-order start-first, the VIP alias already "
        "existed and the engine skipped the whole load balancer; `docker service update --force`"),
    KnownIssue(
        "firewalld/firewalld#503", "https://github.com/firewalld/firewalld/issues/503",
        frozenset({"ingress-dnat-missing", "ingress-filter-missing", "ingress-jump-missing"}),
        (((0, 0, 0), (25, 0, 13)), ((26, 0, 0), (29, 0, 0))), "29.0.0 (moby#50443) and 25.0.13 (moby#50445)",
        "if firewalld was reloaded, it removed DOCKER-INGRESS and this engine does not restore "
        "it; restart dockerd"),
    KnownIssue(
        "moby#41896", "https://github.com/moby/moby/issues/41896",
        frozenset({"ipvs-backend-weight"}), (((19, 3, 0), (25, 0, 13)), ((26, 0, 0), (29, 0, 0))), None,
        "during a rolling update, tasks being replaced can keep weight 1 (a bulk sync that "
        "carries ServiceDisabled is handled as an add); 29.0 rewrote that handler, not "
        "confirmed as the fix"),
    KnownIssue(
        "moby#33790", "https://github.com/moby/moby/issues/33790",
        frozenset({"ipvs-backend-stale"}), (((17, 3, 0), (18, 4, 0)),), None,
        "an exited task's IP can stay a destination (reported on 17.03-18.03, still open)"),
    KnownIssue(
        "moby/swarmkit#2937", "https://github.com/moby/swarmkit/issues/2937",
        frozenset({"ingress-filter-missing", "ingress-dnat-missing", "mark-missing", "ipvs-service-missing"}),
        (((18, 6, 0), (29, 7, 0)),), "29.7.0 (moby#51657)",
        "after --update-order start-first, --publish-add dropped the service's published ports "
        "until dockerd restarted (the report of what moby#51656 explains)"),
    KnownIssue(
        "moby#35082", "https://github.com/moby/moby/issues/35082",
        frozenset({"sysctl"}), (((17, 9, 0), (20, 10, 0)),), "20.10.0 (libnetwork#2491)",
        "stalls under many parallel connections: the load balancer lacked conn_reuse_mode=0, "
        "expire_nodest_conn=1, expire_quiescent_template=1"),
    KnownIssue(
        "moby#35675", "https://github.com/moby/moby/issues/35675",
        frozenset({"ipvs-backend-stale"}), (((17, 9, 0), (17, 10, 0)),), None,
        "traffic for one service's VIP went to another service's task (reported on 17.09)"),
    KnownIssue(
        "moby#25985", "https://github.com/moby/moby/issues/25985",
        frozenset({"ipvs-backend-stale"}), (((1, 12, 0), (1, 13, 0)),), None,
        "after service updates, old task IPs stayed in the VIP's destinations and requests went "
        "to the wrong containers (reported on 1.12)"),
    KnownIssue(
        "moby#28564", "https://github.com/moby/moby/issues/28564",
        frozenset({"ipvs-service-missing"}), (((1, 12, 0), (1, 13, 0)),), None,
        "some VIPs timed out: dockerd logged 'Failed to create real server ... fwmark: no such "
        "process' (reported on 1.12)"),
    KnownIssue(
        "moby#45089", "https://github.com/moby/moby/issues/45089",
        frozenset({"ingress-dnat-missing", "ingress-filter-missing"}),
        (((23, 0, 0), (999, 0, 0)),), None,
        "some published ports do not open on some nodes, different ports on different nodes "
        "(reported on 23.0.1, open)"),
    KnownIssue(
        "moby#46636", "https://github.com/moby/moby/issues/46636",
        frozenset({"iptables-split-brain"}), (((24, 0, 0), (999, 0, 0)),), None,
        "with iptables-legacy as the host's default, swarm's published ports do not work: "
        "rules land in both backends (reported on 24.0, open)"),
)


def known_issues(check: str, engine_version: str) -> list[dict]:
    """The known engine bugs behind a finding of this check on this engine, and the ones this
    engine is fixed for (so that the operator does not chase them)."""
    release = parse_release(engine_version)
    out = []
    for issue in KNOWN_ISSUES:
        if check not in issue.checks or release is None:
            continue
        affected = any(first <= release < fixed for first, fixed in issue.affected)
        # past the bug's first release and outside every affected range: this engine has the fix
        fixed = issue.fixed_in is not None and release >= min(first for first, _ in issue.affected)
        if affected or fixed:
            out.append({"ref": issue.ref, "url": issue.url, "affects_this_engine": affected,
                        "fixed_in": issue.fixed_in, "what": issue.what})
    return out


@dataclass(frozen=True, slots=True)
class PublishedPort:
    published: int
    target: int
    protocol: str | None  # None: the node cannot know (worker, inspect has no protocol)

    def label(self) -> str:
        return f"{self.published}/{self.protocol or 'any'}"


# Not frozen, like SwarmTask: built once per task (20,000 on a big swarm), and a frozen
# dataclass sets each field through object.__setattr__, twice the cost (0.25 s against 0.12 s
# per 20,000 under the lab's emulation). Nothing changes them once built.
@dataclass(slots=True)
class TaskView:
    name: str
    endpoint_id: str
    ip: str
    host_ip: str | None
    # Task container names are <service>.<slot or node id>.<task id>. Kept, not a property:
    # the checks ask for it nine times per task (180,000 times at 5000 x 4).
    task_id: str = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        # interned: the same string as swarm's SwarmTask.id, held once
        self.task_id = sys.intern(self.name.rsplit(".", 1)[-1])


@dataclass
class ServiceView:
    name: str
    vip: str | None  # None for dnsrr services (no VIP, no IPVS state)
    fwmark: int
    ports: list[PublishedPort]
    tasks: list[TaskView]
    ports_changed: str | None = None  # managers: "8080/tcp -> 8080/tcp, 8081/tcp" after an update
    # Managers: network inspect groups tasks by name, while the engine keys load balancers by
    # service ID. A service removed and deployed again under its name (docker stack rm, then
    # deploy) leaves the old one's tasks listed under that name while they stop: split apart by
    # their ID, they are an earlier incarnation (service_id: its ID; vip, fwmark: 0 if unknown).
    service_id: str = ""
    mark_unknown: bool = False  # inspect showed an earlier incarnation's VIP and mark, not this one's

    @property
    def ipv6(self) -> bool:
        """An IPv6 VIP (dual-stack overlays can get one): libnetwork's load balancer is IPv4-only."""
        return bool(self.vip and ":" in self.vip)


@dataclass(frozen=True, slots=True)
class LocalEndpoint:
    key: str  # container ID, or lb-<net> / ingress-sbox for load-balancer sandboxes
    name: str
    endpoint_id: str
    ip: str | None
    prefixlen: int | None


@dataclass
class NetworkView:
    id: str
    name: str
    ingress: bool
    dsr: bool
    subnets: list[str]
    services: dict[str, ServiceView]
    endpoints: dict[str, LocalEndpoint]
    instantiated: bool
    # What the overlay layer is built from (Options, Peers, and Services[""]: endpoints of no
    # service, i.e. plain containers on attachable networks and, up to 24.x, load balancers).
    vnis: list[int] = field(default_factory=list)  # one per IPv4 subnet, in IPAM order
    mtu: int | None = None  # com.docker.network.driver.mtu
    encrypted: bool = False
    peers: list[tuple[str, str]] = field(default_factory=list)  # NetworkDB's (node name, IP)
    others: list[TaskView] = field(default_factory=list)
    departed: list[ServiceView] = field(default_factory=list)  # managers: earlier incarnations

    @property
    def lb_key(self) -> str:
        # libnetwork's lbSandboxName: "<name>-sbox" for the ingress network (which a user may
        # recreate under another name), "lb-<name>" for every other overlay.
        return f"{self.name}-sbox" if self.ingress else f"lb-{self.name}"

    @property
    def lb_endpoint(self) -> LocalEndpoint | None:
        return self.endpoints.get(self.lb_key)

    def all_endpoints(self) -> Iterator[TaskView]:
        """Every endpoint NetworkDB lists on this network: service tasks and the rest."""
        for svc in [*self.services.values(), *self.departed]:
            yield from svc.tasks
        yield from self.others

    def vip_services(self) -> list[ServiceView]:
        return [s for s in self.services.values() if s.vip and s.tasks and not s.ipv6]


# Desired states with which swarm takes a task out of service. A job's running task has
# desired state "complete" (swarmkit's job reconciler): that one is still meant to serve.
STOPPING_STATES = frozenset({"shutdown", "remove", "orphaned", "failed", "rejected"})


@dataclass(slots=True)  # not frozen: see TaskView
class SwarmTask:
    id: str
    service: str
    desired_state: str
    state: str
    node_id: str = ""
    # Status.Timestamp as the API gives it: read (since) only for the tasks a check judges,
    # not parsed for each of a big swarm's 20,000 tasks.
    stamp: str | None = None
    addresses: dict[str, str] = field(default_factory=dict)  # network ID -> its IP there
    container_id: str = ""  # Status.ContainerStatus.ContainerID: its container on its node

    @property
    def stopping(self) -> bool:
        return self.desired_state in STOPPING_STATES

    @property
    def since(self) -> float | None:
        """When it reached its state (epoch seconds); None if the API did not say."""
        return parse_timestamp(self.stamp)


@dataclass(frozen=True, slots=True)
class SwarmNode:
    id: str
    hostname: str
    state: str  # ready, down, unknown, disconnected
    addr: str
    since: float | None = None  # UpdatedAt: the last change of the node object (its state, say)
    availability: str = "active"  # Spec.Availability: active, pause, drain


@dataclass
class EngineModel:
    """What this engine version programs: where the load balancer lives, which chain marks VIPs,
    which sysctls it sets (from libnetwork's source of each release; docs/checks.md's table)."""
    version: str
    release: tuple[int, int, int]
    era: str  # per-container | lb-sandbox-18.06 | lb-sandbox
    known: bool

    @property
    def per_container(self) -> bool:
        return self.era == "per-container"

    @property
    def lb_location(self) -> str:
        """Where a network's load balancer lives: 'named' (lb_<id> / ingress_sbox, 18.09+),
        'by-address' (18.06: a random sandbox name; found by its LB IP) or 'per-container'."""
        return {"lb-sandbox": "named", "lb-sandbox-18.06": "by-address"}.get(self.era, "per-container")

    @property
    def mark_chain(self) -> str:
        return "OUTPUT" if self.per_container else "INPUT"

    @property
    def filter_jump_chain(self) -> str:
        return "DOCKER-FORWARD" if self.release >= (28, 0, 1) else "FORWARD"

    @staticmethod
    def runs_jobs(api_version: str) -> bool:
        """Whether the API (as negotiated) has global-job services: 1.41, engine 20.10. Before,
        the swarm-wide modes run a plain global service that does not restart its task."""
        return tuple(int(x) for x in api_version.split(".")[:2]) >= (1, 41)

    def lb_sysctls(self, nat_mode: bool) -> dict[str, int]:
        if self.per_container:
            return {}
        want = {"expire_nodest_conn": 1}
        if self.release >= (20, 10, 0):
            want.update(conn_reuse_mode=0, expire_quiescent_template=1)
        if nat_mode:
            want["conntrack"] = 1
        return want


@dataclass(slots=True)
class IpvsDest:
    address: str
    port: int
    weight: int
    forwarding: str


@dataclass(slots=True)
class IpvsService:
    family: int
    fwmark: int
    protocol: int
    address: str | None
    port: int
    scheduler: str
    flags: int
    timeout: int
    dests: list[IpvsDest] = field(default_factory=list)

    def label(self) -> str:
        if self.fwmark:
            return f"FWM {self.fwmark}"
        proto = {6: "TCP", 17: "UDP", 132: "SCTP"}.get(self.protocol, str(self.protocol))
        return f"{proto} {self.address}:{self.port}"


@dataclass
class Rule:
    table: str
    chain: str
    text: str
    opts: dict[str, str | bool]
    negated: frozenset[str]
    matches: tuple[str, ...]

    def get(self, key: str) -> str | None:
        value = self.opts.get(key)
        return value if isinstance(value, str) and key not in self.negated else None

    @property
    def target(self) -> str | None:
        return self.get("-j")

    @property
    def proto(self) -> str | None:
        return self.get("-p")

    @functools.cached_property
    def dst(self) -> str | None:  # cached: the checks ask for it once per rule and service
        return _network(self.get("-d"))

    def port(self, key: str) -> int | None:
        value = self.get(key)
        return int(value) if value and value.isdigit() else None

    @property
    def mark(self) -> tuple[int, int] | None:
        """(value, mask) of a MARK target, in either spelling iptables prints."""
        raw = self.get("--set-xmark") or self.get("--set-mark")
        if raw is None:
            return None
        value, _, mask = raw.partition("/")
        return int(value, 0), int(mask, 0) if mask else 0xFFFFFFFF


Ruleset = dict[str, dict[str, list[Rule]]]  # table -> chain -> rules, in order


@dataclass
class Datapath:
    """What one network namespace holds. None in a field means it could not be read."""
    path: str
    name: str
    ipvs: list[IpvsService] | None
    ipvs_error: str | None
    rules: Ruleset | None
    backends_with_docker_chains: list[str]
    iptables_error: str | None
    addresses: dict[str, list[tuple[str, int]]] | None  # ifname -> [(ip, prefixlen)]
    sysctls: dict[str, int] | None
    error: str | None = None  # the namespace itself could not be entered
    ipvs_missing: bool = False  # the kernel has no IPVS at all
    conntrack: dict[str, int] | None = None  # {"count", "max"} of its conntrack table; None: unknown

    @property
    def partial(self) -> bool:
        return self.ipvs is None or self.rules is None

    @functools.cached_property
    def ipvs_by_mark(self) -> dict[int, IpvsService]:
        """The firewall-mark services by mark: looked up once per VIP service, 5,000 on a big swarm."""
        return {s.fwmark: s for s in self.ipvs or [] if s.fwmark}


@dataclass(frozen=True, slots=True)
class Link:
    index: int
    name: str
    kind: str | None
    mtu: int
    master: int | None
    up: bool
    vxlan: dict | None  # vni, port, learning, proxy, l2miss, l3miss


class Neighbour(NamedTuple):  # a tuple: built 20,000 times per overlay, 3x cheaper than a dataclass
    """A row of a VXLAN device: an ARP neighbour (ip -> mac) or an FDB entry (mac -> dst)."""
    device: str
    ip: str | None  # the neighbour's IP, or the FDB entry's destination VTEP
    mac: str | None
    permanent: bool
    self_: bool


@dataclass
class OverlayDatapath:
    """What one overlay network's namespace holds. None: not read (see error)."""
    path: str
    name: str
    links: list[Link] | None
    neighbours: list[Neighbour] | None
    fdb: list[Neighbour] | None
    error: str | None = None

    def vxlans(self) -> list[Link]:
        return [link for link in self.links or [] if link.kind == "vxlan"]

    def own_vxlans(self, vnis: list[int]) -> list[Link]:
        """The network's own VXLAN devices (its VNIs; all of them where the VNIs are unknown): a
        stray device in the namespace is overlay-vxlan-config's finding, and its MTU says nothing
        of the network's packets."""
        return [link for link in self.vxlans() if not vnis or (link.vxlan or {}).get("vni") in vnis]


@dataclass
class DnsProbe:
    """One network's embedded DNS, asked from inside one local container's namespace."""
    container: str  # the container's name
    path: str  # its network namespace
    other_networks: list[str]  # its other networks: a name there can answer first
    rules: Ruleset | None  # its nat table (the resolver's DNAT/SNAT); None: not readable
    # qname -> {"rcode": "NOERROR", "ips": [...]} or {"error": "timeout"}; None: not recorded
    answers: dict[str, dict] | None


@dataclass
class Finding:
    check: str
    message: str
    network: str | None = None
    namespace: str | None = None
    service: str | None = None
    subject: str | None = None  # the task, port, mark or address the finding is about
    expected: Any = None
    actual: Any = None
    hint: str | None = None
    known_issues: list[dict] = field(default_factory=list)
    # Why swarm itself has not converged for what this finding concerns (a manager knows: the
    # service is being updated, its tasks are starting or stopping, a node just went down).
    converging: str | None = None

    @property
    def key(self) -> tuple:
        return (self.check, self.network, self.namespace, self.service, self.subject)

    @property
    def layer(self) -> str:
        info = CHECKS.get(self.check)
        return info.layer if info else "kernel"

    @property
    def action(self) -> str | None:
        info = CHECKS.get(self.check)
        if info is None:
            return None
        return info.action.replace("<service>", self.service) if self.service else info.action

    def to_json(self) -> dict:
        return {"check": self.check, "layer": self.layer, "network": self.network,
                "namespace": self.namespace, "service": self.service, "subject": self.subject,
                "message": self.message, "expected": self.expected, "actual": self.actual, "hint": self.hint,
                "action": self.action, "known_issues": self.known_issues, "converging": self.converging}


@dataclass
class LoadBalancer:
    """Where one network's load balancer lives on this node and what it should carry."""
    network: NetworkView
    datapath: Datapath
    lb_ip: str | None
    expect_aliases: bool


@dataclass
class NodeState:
    """One sample of this node, collected: all that the checks read (they do no I/O)."""
    model: EngineModel
    netns_dir: str
    views: list[NetworkView]  # the networks asked about, instantiated here or not
    lbs: list[LoadBalancer] = field(default_factory=list)  # every load balancer read
    lb_not_found: list[str] = field(default_factory=list)  # IDs of networks whose LB was not found
    swarm_tasks: dict[str, SwarmTask] | None = None  # /tasks: managers only
    swarm_nodes: dict[str, SwarmNode] | None = None  # /nodes: managers only
    service_vips: dict[str, dict[str, list[str]]] | None = None  # /services' VIPs: managers only
    service_names: dict[str, str] | None = None  # /services: service ID -> name
    now: float | None = None  # when the sample was read: task ages are judged against it
    ingress: NetworkView | None = None  # set when ingress publishes ports: host and tasks were read
    host: Datapath | None = None
    gw_ip: str | None = None  # ingress_sbox's docker_gwbridge address
    task_datapaths: dict[str, Datapath] = field(default_factory=dict)  # ingress tasks' sandboxes
    # Overlay namespaces by network ID (None: not read in this run, e.g. a format-1 snapshot).
    overlays: dict[str, OverlayDatapath | None] | None = None
    data_path_port: int | None = None  # the VXLAN port: known on a manager; None on a worker
    xfrm: dict | None = None  # the node's IPsec state, read when a network is encrypted
    node_addr: str | None = None  # /info Swarm.NodeAddr
    memo: dict = field(default_factory=dict)  # what two checks or reports derive alike, once
    dns: dict[str, DnsProbe] | None = None  # by network ID: what its embedded DNS answered here
    service_aliases: dict[str, dict[str, list[str]]] | None = None  # managers: name -> net ID -> aliases
    # Managers: services whose spec declares a health check -> their stop grace period (seconds).
    health_checked: dict[str, float] | None = None
    # Tasks of this node at weight 0 while swarm runs them -> their container's health
    # ("unhealthy", "healthy", "starting"; "" with no health check; None: container gone).
    local_health: dict[str, str | None] = field(default_factory=dict)
    updating: dict[str, str] = field(default_factory=dict)  # managers: service name -> UpdateStatus.State
    host_prereqs: dict | None = None  # read_host_prereqs(): forwarding, conntrack, interfaces
    probe_results: dict[str, dict] | None = None  # --probe: Probe.key -> what came back

    def datapaths(self) -> list[Datapath]:
        return [lb.datapath for lb in self.lbs] + ([self.host] if self.host is not None else [])


@dataclass
class NotChecked:
    """Something that could not be checked, and why: one name for it everywhere (the text's
    "not checked", Prometheus' ssd_not_checked; the JSON's "errors", a name the contract keeps)."""
    scope: str
    message: str


# --------------------------------------------------------------------------------------
# Collectors: the Engine API and the namespaces. Everything with I/O lives here.
# --------------------------------------------------------------------------------------

def parse_release(version: str) -> tuple[int, int, int] | None:
    m = re.match(r"^v?(\d+)\.(\d+)(?:\.(\d+))?", version or "")
    if not m:
        return None
    return int(m.group(1)), int(m.group(2)), int(m.group(3) or 0)


def engine_model(version: str) -> EngineModel:
    """Map an engine version to the datapath it programs (datapath.md section 1)."""
    release = parse_release(version)
    if release is None:
        raise CheckError(f"engine version {version!r} is not one ssd can read")
    if release < (17, 4, 0):
        raise CheckError(f"engine {version} is too old: ssd needs 17.04 or later "
                         "(verbose network inspect, API 1.28)")
    if release < (18, 6, 0):
        era = "per-container"
    elif release < (18, 9, 0):
        era = "lb-sandbox-18.06"
    else:
        era = "lb-sandbox"
    return EngineModel(version=version, release=release, era=era, known=release < (30, 0, 0))


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


def count(n: int, noun: str) -> str:
    """'1 network', '3 networks': a report reads as English, never 'node(s)'."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:300]


@dataclass
class NodeInfo:
    id: str
    hostname: str
    manager: bool
    engine: EngineModel
    firewall: str = ""  # GET /info FirewallBackend.Driver (28.x+): iptables, nftables, +firewalld
    data_path_port: int | None = None  # the VXLAN UDP port, known on managers (/info Swarm.Cluster)
    addr: str | None = None  # /info Swarm.NodeAddr: the address the node advertises
    heartbeat: float = 5.0  # swarm's dispatcher heartbeat period, seconds (managers; 5 s default)

    def heartbeat_expiry(self) -> float:
        """How long swarm may still call a node ready whose dockerd stopped: its dispatcher marks
        a node down after 3 missed heartbeats, each period plus up to 0.5 s of jitter (swarmkit
        manager/dispatcher: defaultGracePeriodMultiplier, defaultHeartBeatEpsilon); 1 s spare."""
        return 3 * (self.heartbeat + 0.5) + 1.0


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
    return NodeInfo(id=swarm.get("NodeID", ""), hostname=info.get("Name", ""),
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


def resolve_networks(listing: list[dict], wanted: list[str], absent: list[str] | None = None
                     ) -> list[dict]:
    """Pick networks by name, full ID or unique ID prefix; default: every swarm overlay.

    A name this node does not list is an error, unless absent is given (a worker, which lists
    only the swarm networks it has instantiated): then it is collected there instead.
    """
    swarm_nets = [n for n in listing if n.get("Scope") == "swarm" and n.get("Driver") == "overlay"]
    if not wanted:
        return swarm_nets
    chosen: list[dict] = []
    for term in wanted:
        exact = [n for n in listing if term in (n.get("Id"), n.get("Name"))]
        found = exact or [n for n in listing if n.get("Id", "").startswith(term)]
        if not found and absent is not None:
            absent.append(term)
            continue
        if not found:
            raise CheckError(f"network {term!r} not found on this node")
        if len(found) > 1:
            names = ", ".join(f"{n.get('Name')} ({n.get('Id', '')[:12]})" for n in found)
            raise CheckError(f"network {term!r} is ambiguous: {names}")
        net = found[0]
        if net.get("Scope") != "swarm" or net.get("Driver") != "overlay":
            raise CheckError(f"network {net.get('Name')!r} is not a swarm-scoped overlay network "
                             f"(scope {net.get('Scope')}, driver {net.get('Driver')}): ssd checks "
                             "swarm service load balancing")
        if net not in chosen:
            chosen.append(net)
    return chosen


def _network(value: str | None) -> str | None:
    if not value:
        return None
    if value.endswith("/32"):  # what iptables-save prints for a VIP: already canonical when it reads back
        with contextlib.suppress(OSError):
            if socket.inet_ntoa(socket.inet_aton(value[:-3])) == value[:-3]:
                return value
    try:
        return str(ipaddress.ip_network(value, strict=False))
    except ValueError:
        return value


def _split_cidr(value: str | None) -> tuple[str | None, int | None]:
    if not value:
        return None, None
    try:
        iface = ipaddress.ip_interface(value)
    except ValueError:
        return None, None
    return str(iface.ip), iface.network.prefixlen


def _vip(value: str | None) -> str | None:
    # Engines <= 28 print "<nil>" for dnsrr services, 29+ print "".
    if not value or value == "<nil>":
        return None
    return value.split("/")[0]


def parse_ports(entries: list[str] | None, protocols: dict[tuple[int, int], list[str]] | None
                ) -> list[PublishedPort]:
    """Ports from inspect's "Target: 80, Publish: 8080" strings, protocol from /services."""
    ports: list[PublishedPort] = []
    for entry in entries or []:
        m = re.match(r"Target:\s*(\d+),\s*Publish:\s*(\d+)", entry)
        if not m:
            continue
        target, published = int(m.group(1)), int(m.group(2))
        for proto in (protocols or {}).get((published, target)) or [None]:
            port = PublishedPort(published=published, target=target, protocol=proto)
            if port not in ports:
                ports.append(port)
    return ports


def service_protocols(services: list[dict] | None) -> dict[str, dict[tuple[int, int], list[str]]]:
    """service name -> (published, target) -> protocols of its ingress-mode ports."""
    out: dict[str, dict[tuple[int, int], list[str]]] = {}
    for svc in services or []:
        name = (svc.get("Spec") or {}).get("Name", "")
        for port in (svc.get("Endpoint") or {}).get("Ports") or []:
            if port.get("PublishMode", "ingress") != "ingress" or not port.get("PublishedPort"):
                continue
            key = (int(port["PublishedPort"]), int(port.get("TargetPort", 0)))
            out.setdefault(name, {}).setdefault(key, []).append(port.get("Protocol", "tcp"))
    return out


def _ports_text(ports: list[dict] | None) -> str:
    return ", ".join(sorted(f"{p.get('PublishedPort')}/{p.get('Protocol', 'tcp')}"
                            for p in ports or [] if p.get("PublishedPort"))) or "none"


def port_changes(services: list[dict] | None) -> dict[str, str]:
    """service name -> how its published ports changed in its last update (managers only).

    The engine keys a load balancer by (service ID, ports): such an update builds a new one
    beside the old, and findings about it read differently when one knows that.
    """
    out = {}
    for svc in services or []:
        before = ((svc.get("PreviousSpec") or {}).get("EndpointSpec") or {}).get("Ports")
        after = ((svc.get("Spec") or {}).get("EndpointSpec") or {}).get("Ports")
        if svc.get("PreviousSpec") and _ports_text(before) != _ports_text(after):
            out[(svc.get("Spec") or {}).get("Name", "")] = f"{_ports_text(before)} -> {_ports_text(after)}"
    return out


VXLAN_ID_OPTION = "com.docker.network.driver.overlay.vxlanid_list"  # one VNI per subnet
MTU_OPTION = "com.docker.network.driver.mtu"


def _interned(value: str | None) -> str | None:
    return sys.intern(value) if isinstance(value, str) else value


def build_network_view(raw: dict, protocols: dict[str, dict] | None,
                       changes: dict[str, str] | None = None) -> NetworkView:
    endpoints = {}
    for key, ep in (raw.get("Containers") or {}).items():
        ip, prefixlen = _split_cidr(ep.get("IPv4Address"))
        endpoints[key] = LocalEndpoint(key=key, name=ep.get("Name", ""),
                                       endpoint_id=ep.get("EndpointID", ""), ip=ip, prefixlen=prefixlen)
    services = {}
    others: list[TaskView] = []
    for name, svc in (raw.get("Services") or {}).items():
        tasks = [TaskView(name=t.get("Name", ""), endpoint_id=t.get("EndpointID", ""),
                          ip=(t.get("EndpointIP") or "").split("/")[0],
                          host_ip=_interned((t.get("Info") or {}).get("Host IP")))  # one per node
                 for t in svc.get("Tasks") or []]
        if not name:  # plain containers (and, on 20.10, ingress LB endpoints): not a service
            others = tasks
            continue
        services[name] = ServiceView(
            name=name, vip=_vip(svc.get("VIP")), fwmark=int(svc.get("LocalLBIndex") or 0),
            ports=parse_ports(svc.get("Ports"), (protocols or {}).get(name) if protocols is not None
                              else None),
            tasks=tasks, ports_changed=(changes or {}).get(name))
    subnets = [c["Subnet"] for c in ((raw.get("IPAM") or {}).get("Config") or [])
               if c.get("Subnet") and ":" not in c["Subnet"]]
    options = raw.get("Options") or {}
    vnis = [int(v) for v in str(options.get(VXLAN_ID_OPTION) or "").split(",") if v.strip().isdigit()]
    mtu = str(options.get(MTU_OPTION) or "")
    return NetworkView(
        id=raw.get("Id", ""), name=raw.get("Name", ""), ingress=bool(raw.get("Ingress")),
        dsr="dsr" in options, subnets=subnets, services=services,
        endpoints=endpoints, instantiated=bool(raw.get("Containers")) or bool(raw.get("Services")),
        vnis=vnis, mtu=int(mtu) if mtu.isdigit() else None, encrypted="encrypted" in options,
        peers=[(p.get("Name", ""), p.get("IP", "")) for p in raw.get("Peers") or [] if p.get("IP")],
        others=others)


def build_swarm_tasks(raw: Iterable[dict] | None) -> dict[str, SwarmTask] | None:
    if raw is None:
        return None
    tasks = {}
    # Interned: one string per task (its ID, shared with NetworkDB's TaskView) and one per
    # value that tasks share (states, services, nodes, networks), not one per task from the
    # JSON: 7 MiB less at 20,000 tasks.
    intern = sys.intern
    for t in raw:
        if not t.get("ID"):
            continue
        status = t.get("Status") or {}
        task_id = intern(t["ID"])
        tasks[task_id] = SwarmTask(
            id=task_id, service=intern(t.get("ServiceID") or ""),
            desired_state=intern(t.get("DesiredState") or ""), state=intern(status.get("State") or ""),
            node_id=intern(t.get("NodeID") or ""), stamp=status.get("Timestamp"),
            container_id=(status.get("ContainerStatus") or {}).get("ContainerID") or "",
            addresses={intern((a.get("Network") or {}).get("ID") or ""): _ipv4_first(a.get("Addresses"))
                       for a in t.get("NetworksAttachments") or []})
    return tasks


def _ipv4_first(addresses: list | None) -> str:
    """A task's address on a network as NetworkDB lists it (IPv4): on a dual-stack overlay swarm
    may give its IPv6 address first."""
    if addresses and len(addresses) == 1 and isinstance(addresses[0], str) and ":" not in addresses[0]:
        return addresses[0].partition("/")[0]  # one IPv4 address: nearly every task's attachment
    plain = [str(a).split("/")[0] for a in addresses or [] if a]
    return next((a for a in plain if ":" not in a), plain[0] if plain else "")


_TIMESTAMP = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)")


def parse_timestamp(value: str | None) -> float | None:
    """An Engine API time (RFC 3339, nanoseconds) as epoch seconds; None if absent or unparsable."""
    if not value or value.startswith("0001-"):
        return None
    m = _TIMESTAMP.fullmatch(value)
    if not m:
        return None
    import datetime  # only managers' runs read task times
    stamp = datetime.datetime.fromisoformat(m.group(1) + (m.group(3) if m.group(3) != "Z" else "+00:00"))
    return stamp.timestamp() + float("0." + (m.group(2) or "0"))


def build_swarm_nodes(raw: list[dict] | None) -> dict[str, SwarmNode] | None:
    if raw is None:
        return None
    return {n["ID"]: SwarmNode(id=n["ID"], hostname=(n.get("Description") or {}).get("Hostname", ""),
                               state=(n.get("Status") or {}).get("State", ""),
                               addr=(n.get("Status") or {}).get("Addr", ""),
                               since=parse_timestamp(n.get("UpdatedAt")),
                               availability=(n.get("Spec") or {}).get("Availability") or "active")
            for n in raw if n.get("ID")}


def build_service_vips(raw: list[dict] | None) -> dict[str, dict[str, list[str]]] | None:
    """Service name -> network ID -> the VIPs swarm allocated it there (/services)."""
    if raw is None:
        return None
    out: dict[str, dict[str, list[str]]] = {}
    for svc in raw:
        name = (svc.get("Spec") or {}).get("Name", "")
        for vip in (svc.get("Endpoint") or {}).get("VirtualIPs") or []:
            addr = str(vip.get("Addr") or "").split("/")[0]
            if addr and ":" not in addr:
                out.setdefault(name, {}).setdefault(vip.get("NetworkID", ""), []).append(addr)
    return out


def build_service_aliases(raw: list[dict] | None) -> dict[str, dict[str, list[str]]] | None:
    """Service name -> network (ID, or name as a spec may say) -> its DNS aliases there (/services)."""
    if raw is None:
        return None
    out: dict[str, dict[str, list[str]]] = {}
    for svc in raw:
        spec = svc.get("Spec") or {}
        # TaskTemplate.Networks since API 1.25; Spec.Networks is the deprecated older place.
        for net in (spec.get("TaskTemplate") or {}).get("Networks") or spec.get("Networks") or []:
            aliases = [str(a) for a in net.get("Aliases") or [] if a]
            if aliases:
                out.setdefault(spec.get("Name", ""), {})[net.get("Target", "")] = aliases
    return out


# An update in progress (swarm's UpdateStatus.State); "completed", "paused" and
# "rollback_completed" are where it stays, and what the datapath must then match.
UPDATING_STATES = frozenset({"updating", "rollback_started"})


def build_updating(raw: list[dict] | None) -> dict[str, str]:
    """Service name -> the state of its update, for services swarm is updating now."""
    states = {(svc.get("Spec") or {}).get("Name", ""): str((svc.get("UpdateStatus") or {}).get("State") or "")
              for svc in raw or []}
    return {name: state for name, state in states.items() if state in UPDATING_STATES}


DEFAULT_STOP_GRACE = 10.0  # seconds: swarmkit's default stop grace period


def build_health_checked(raw: list[dict] | None) -> dict[str, float] | None:
    """Service name -> its stop grace period, for services whose spec declares a health check.

    A task failing its health check is disabled (IPVS weight 0, its tasks.<name> and dnsrr
    records removed), then its container stopped within the grace period, while swarm still
    reports it running (the executor's controller.go: Wait -> checkHealth -> Shutdown). A
    health check of the image itself is not in the spec: only the task's own node sees it.
    """
    if raw is None:
        return None
    out: dict[str, float] = {}
    for svc in raw:
        spec = (svc.get("Spec") or {}).get("TaskTemplate", {}).get("ContainerSpec") or {}
        test = (spec.get("Healthcheck") or {}).get("Test") or []
        if test and test[0] != "NONE":
            grace = spec.get("StopGracePeriod")
            out[(svc.get("Spec") or {}).get("Name", "")] = grace / 1e9 if grace else DEFAULT_STOP_GRACE
    return out


def separate_departed(view: NetworkView, swarm_tasks: dict[str, SwarmTask], service_ids: dict[str, str],
                      service_vips: dict[str, dict[str, list[str]]]) -> None:
    """Managers: set apart the tasks listed under a service's name that swarm knows as tasks of
    another service ID. network inspect groups NetworkDB's tasks by name, with the VIP and mark
    of whichever task it met first, while the engine keys load balancers by service ID: after
    `docker stack rm` and a new deploy (or a service removed and created again) the old
    service's tasks stay listed under the name while they stop, with their own load balancer.
    Each such ID becomes an earlier incarnation in view.departed; if inspect showed its VIP, the
    current service takes swarm's VIP and its mark is read from the kernel (adopt_marks)."""
    current = {name: sid for sid, name in service_ids.items()}
    for name, svc in list(view.services.items()):
        sid = current.get(name, "")
        svc.service_id = sid
        earlier: dict[str, list[TaskView]] = {}
        for task in svc.tasks:
            known = swarm_tasks.get(task.task_id)
            if known is not None and known.service and known.service != sid:
                earlier.setdefault(known.service, []).append(task)
        if not earlier:
            continue
        moved = {t.endpoint_id for tasks in earlier.values() for t in tasks}
        svc.tasks = [t for t in svc.tasks if t.endpoint_id not in moved]
        swarm_vips = (service_vips.get(name) or {}).get(view.id) or []
        shown_vip, shown_mark = svc.vip, svc.fwmark
        # Whose VIP inspect showed: an earlier one's when swarm gives the name another VIP (or
        # none, the service being gone); told apart only with a single earlier incarnation.
        shown = next(iter(earlier)) if len(earlier) == 1 and shown_vip and (
            not sid or (swarm_vips and shown_vip not in swarm_vips)) else None
        if shown and sid:
            svc.vip, svc.fwmark, svc.mark_unknown = swarm_vips[0], 0, True
        for old_id, tasks in sorted(earlier.items()):
            mine = old_id == shown
            view.departed.append(ServiceView(name=name, vip=shown_vip if mine else None,
                                             fwmark=shown_mark if mine else 0, ports=list(svc.ports),
                                             tasks=tasks, service_id=old_id))
        if not sid and not svc.tasks:
            del view.services[name]  # the name is no current service's: only earlier ones are left


# --- namespaces -----------------------------------------------------------------------

CLONE_NEWNET = 0x40000000


def _setns(fd: int) -> None:
    if hasattr(os, "setns"):  # Python >= 3.12
        os.setns(fd, CLONE_NEWNET)
        return
    import ctypes  # Python 3.11 only: not worth importing on every run
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))


@contextlib.contextmanager
def entered_netns(path: str) -> Iterator[None]:
    """Run the block (and the processes it starts) inside the network namespace at path.

    Opens the namespace file itself and never creates one (pyroute2's netns helpers do
    when the path is missing). setns() moves only the calling thread; it moves back after.
    """
    target = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        try:
            _setns(target)
        except OSError as exc:
            if exc.errno == errno.EINVAL:
                raise OSError(errno.EINVAL, "not a network namespace (stale file?)") from exc
            raise
        try:
            yield
        finally:
            _setns(home)
    finally:
        os.close(target)
        os.close(home)


# --- netlink: IPVS over generic netlink, and addresses --------------------------------
# Read with a plain netlink socket and decoded with struct: only the message types and
# attributes the checks use. pyroute2's general decoder cost 84 % of a run at 1,000 services
# (bench/), and importing it 6 s of a 15 s run in the lab's VMs.

NETLINK_ROUTE, NETLINK_GENERIC = 0, 16
RTM_GETLINK, RTM_GETADDR = 18, 22
IFLA_IFNAME, IFA_ADDRESS, IFA_LOCAL = 3, 1, 2
_IFINFOMSG, _IFADDRMSG = struct.Struct("=BxHiII"), struct.Struct("=BBBBI")
NLMSG_ERROR, NLMSG_DONE = 2, 3
NLM_F_REQUEST, NLM_F_ACK, NLM_F_DUMP = 0x1, 0x4, 0x300
# Set by the kernel on a dump's messages when the table changed while it was dumped (a swarm
# churning): what was read may miss or repeat rows, so it is read again, DUMP_TRIES times at most.
NLM_F_DUMP_INTR, DUMP_TRIES = 0x10, 3
GENL_ID_CTRL, CTRL_CMD_GETFAMILY, CTRL_ATTR_FAMILY_ID, CTRL_ATTR_FAMILY_NAME = 0x10, 3, 1, 2
NLA_TYPE_MASK = 0x3FFF  # without NLA_F_NESTED / NLA_F_NET_BYTEORDER
# linux/ip_vs.h
IPVS_GENL_VERSION = 1
IPVS_CMD_GET_SERVICE, IPVS_CMD_GET_DEST = 4, 8
IPVS_CMD_ATTR_SERVICE, IPVS_CMD_ATTR_DEST = 1, 2
SVC_AF, SVC_PROTOCOL, SVC_ADDR, SVC_PORT, SVC_FWMARK, SVC_SCHED_NAME, SVC_FLAGS, SVC_TIMEOUT = range(1, 9)
DEST_ADDR, DEST_PORT, DEST_FWD_METHOD, DEST_WEIGHT, DEST_ADDR_FAMILY = 1, 2, 3, 4, 11
IP_VS_CONN_F_FWD_MASK = 0x7
_NLMSGHDR = struct.Struct("=IHHII")
_MSG_TRUNC = int(socket.MSG_TRUNC)  # a plain int: the enum's & runs Python code, once per datagram
_GENLHDR_LEN = 4


_NLA_HEADER = struct.Struct("=HH").unpack_from  # (length, type): bound once, called per attribute


def nla_parse(data: bytes, start: int = 0, end: int | None = None) -> dict[int, bytes]:
    """Netlink attributes type -> payload (the last one wins, as in the kernel's nla_parse)."""
    end = len(data) if end is None else end
    attrs = {}
    header = _NLA_HEADER
    while start + 4 <= end:
        length, kind = header(data, start)
        if length < 4 or start + length > end:
            break  # truncated: keep what was whole
        attrs[kind & NLA_TYPE_MASK] = data[start + 4:start + length]
        start += (length + 3) & ~3
    return attrs


def nla(kind: int, payload: bytes) -> bytes:
    return struct.pack("=HH", 4 + len(payload), kind) + payload + bytes(-len(payload) % 4)


def _u(attrs: dict[int, bytes], kind: int, fmt: str = "=I") -> int:
    value = attrs.get(kind)
    return struct.unpack_from(fmt, value)[0] if value and len(value) >= struct.calcsize(fmt) else 0


def _ip(raw: bytes | None, family: int) -> str | None:
    if raw is None:
        return None
    if family == socket.AF_INET6 and len(raw) >= 16:
        return socket.inet_ntop(socket.AF_INET6, raw[:16])
    return socket.inet_ntop(socket.AF_INET, raw[:4]) if len(raw) >= 4 else None


def decode_ipvs_service(genl: bytes) -> IpvsService:
    """An IPVS service from the attributes of an IPVS_CMD_GET_SERVICE reply (after its genl header)."""
    svc = nla_parse(nla_parse(genl).get(IPVS_CMD_ATTR_SERVICE, b""))
    family = _u(svc, SVC_AF, "=H")
    return IpvsService(family=family, fwmark=_u(svc, SVC_FWMARK), protocol=_u(svc, SVC_PROTOCOL, "=H"),
                       address=_ip(svc.get(SVC_ADDR), family), port=_u(svc, SVC_PORT, ">H"),
                       scheduler=svc.get(SVC_SCHED_NAME, b"").split(b"\0", 1)[0].decode(errors="replace"),
                       flags=_u(svc, SVC_FLAGS), timeout=_u(svc, SVC_TIMEOUT))


# The kernel (ip_vs_genl_fill_dest) writes a destination's attributes ADDR (16 bytes), PORT,
# FWD_METHOD, WEIGHT first. The fast path reads those four at their fixed offsets when the
# headers say they are there, and walks the rest only for ADDR_FAMILY, building nothing; any
# other layout takes the general path.
_DEST_HEAD = struct.Struct("=HH16sHH2s2xHHIHHI")  # ADDR, PORT (+pad), FWD_METHOD, WEIGHT
_DEST_HEAD_TYPES = (20, DEST_ADDR, 6, DEST_PORT, 8, DEST_FWD_METHOD, 8, DEST_WEIGHT)


_U16 = struct.Struct("=H").unpack_from


def decode_ipvs_dest(genl: bytes, service_family: int = AF_INET) -> IpvsDest:
    """A destination from an IPVS_CMD_GET_DEST reply; its family is the service's unless it says."""
    if len(genl) >= 4 + _DEST_HEAD.size:  # the message is the one nested attribute DEST: read in place
        outer, okind = _NLA_HEADER(genl, 0)
        if okind & NLA_TYPE_MASK == IPVS_CMD_ATTR_DEST and 4 + _DEST_HEAD.size <= outer <= len(genl):
            (alen, akind, addr, plen, pkind, port, flen, fkind, fwd, wlen, wkind, weight
             ) = _DEST_HEAD.unpack_from(genl, 4)
            if (alen, akind & NLA_TYPE_MASK, plen, pkind & NLA_TYPE_MASK, flen, fkind & NLA_TYPE_MASK,
                    wlen, wkind & NLA_TYPE_MASK) == _DEST_HEAD_TYPES:
                family = _dest_family(genl, 4 + _DEST_HEAD.size, outer) or service_family
                method = fwd & IP_VS_CONN_F_FWD_MASK
                return IpvsDest(address=str(_ip(addr, family)), port=int.from_bytes(port, "big"),
                                weight=weight, forwarding=FWD_METHODS.get(method, str(method)))
    data = nla_parse(genl).get(IPVS_CMD_ATTR_DEST, b"")
    dest = nla_parse(data)
    family = _u(dest, DEST_ADDR_FAMILY, "=H") or service_family
    method = _u(dest, DEST_FWD_METHOD) & IP_VS_CONN_F_FWD_MASK
    return IpvsDest(address=str(_ip(dest.get(DEST_ADDR), family)), port=_u(dest, DEST_PORT, ">H"),
                    weight=_u(dest, DEST_WEIGHT), forwarding=FWD_METHODS.get(method, str(method)))


def _dest_family(data: bytes, start: int, end: int) -> int:
    """IPVS_DEST_ATTR_ADDR_FAMILY between start and end, or 0."""
    header = _NLA_HEADER
    while start + 4 <= end:
        length, kind = header(data, start)
        if length < 4 or start + length > end:
            return 0
        kind &= NLA_TYPE_MASK
        if kind == DEST_ADDR_FAMILY:
            return _U16(data, start + 4)[0] if length >= 6 else 0
        start += (length + 3) & ~3
    return 0


def ipvs_service_key(svc: IpvsService) -> bytes:
    """The nested IPVS_CMD_ATTR_SERVICE that names one service in a destination dump."""
    inner = nla(SVC_AF, struct.pack("=H", svc.family))
    if svc.fwmark:
        inner += nla(SVC_FWMARK, struct.pack("=I", svc.fwmark))
    else:
        family = socket.AF_INET6 if svc.family == socket.AF_INET6 else socket.AF_INET
        addr = socket.inet_pton(family, svc.address or ("::" if family == socket.AF_INET6 else "0.0.0.0"))
        inner += (nla(SVC_PROTOCOL, struct.pack("=H", svc.protocol)) + nla(SVC_ADDR, addr.ljust(16, b"\0"))
                  + nla(SVC_PORT, struct.pack(">H", svc.port)))
    return nla(IPVS_CMD_ATTR_SERVICE, inner)


class NetlinkSocket:
    """One netlink socket, in the namespace of the thread that opens it; one request at a
    time, read to its end (NLMSG_DONE for a dump, the ACK otherwise)."""

    def __init__(self, protocol: int) -> None:
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, protocol)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        self.sock.bind((0, 0))
        self.seq = 0
        # One receive buffer for the socket's life: a dump of 1,250 IPVS services is 2,500
        # datagrams, and a fresh 64 KiB buffer for each cost more than reading it.
        self.buffer = bytearray(1 << 16)
        self.view = memoryview(self.buffer)

    def __enter__(self) -> NetlinkSocket:
        return self

    def __exit__(self, *exc) -> None:
        self.sock.close()

    def request(self, kind: int, body: bytes, dump: bool, skip: int = 0) -> list[bytes]:
        """The payload (after the netlink header) of every reply message. A dump the kernel says
        was interrupted is read again; one interrupted every time is an error (OSError EAGAIN),
        never a partial table that would read as missing or stale entries."""
        for _ in range(DUMP_TRIES if dump else 1):
            replies, interrupted = self._exchange(kind, body, dump, skip)
            if not interrupted:
                return replies
        raise OSError(errno.EAGAIN, f"the table kept changing while it was read (netlink dump "
                                    f"interrupted {DUMP_TRIES} times in a row)")

    def _exchange(self, kind: int, body: bytes, dump: bool, skip: int = 0) -> tuple[list[bytes], bool]:
        """One request's replies, each without its netlink header and `skip` more bytes (the
        generic netlink header): one copy per message, straight from the receive buffer."""
        self.seq += 1
        flags = NLM_F_REQUEST | (NLM_F_DUMP if dump else NLM_F_ACK)
        self.sock.send(_NLMSGHDR.pack(_NLMSGHDR.size + len(body), kind, flags, self.seq, 0) + body)
        replies = []
        interrupted = False
        data, view, header, seq_now = self.buffer, self.view, _NLMSGHDR.unpack_from, self.seq
        while True:
            # one datagram; a dump fills <= 32 KiB
            size, _, flags, _ = self.sock.recvmsg_into([data])
            if flags & _MSG_TRUNC:
                raise OSError(errno.EMSGSIZE, "netlink reply larger than 64 KiB")
            offset = 0
            while offset + 16 <= size:  # 16: the netlink header
                length, kind, msg_flags, seq, _ = header(data, offset)
                if length < 16:
                    raise OSError(errno.EBADMSG, "malformed netlink reply")
                start, offset = offset + 16, offset + ((length + 3) & ~3)
                if seq != seq_now:
                    continue  # a late reply to an earlier request
                interrupted |= bool(msg_flags & NLM_F_DUMP_INTR)
                if kind == NLMSG_DONE:
                    return replies, interrupted
                if kind == NLMSG_ERROR:
                    code = -struct.unpack_from("=i", data, start)[0]
                    if code:
                        raise OSError(code, os.strerror(code))
                    return replies, interrupted  # the ACK
                replies.append(bytes(view[start + skip:start + length - 16]))


class GenlSocket(NetlinkSocket):
    def __init__(self) -> None:
        super().__init__(NETLINK_GENERIC)

    def request(self, family: int, cmd: int, version: int, attrs: bytes = b"",  # type: ignore[override]
                dump: bool = False) -> list[bytes]:
        """The attributes (after the genl header) of every reply message."""
        body = struct.pack("=BBH", cmd, version, 0) + attrs
        return super().request(family, body, dump, skip=_GENLHDR_LEN)

    def family_id(self, name: str) -> int:
        [reply] = self.request(GENL_ID_CTRL, CTRL_CMD_GETFAMILY, 1,
                               nla(CTRL_ATTR_FAMILY_NAME, name.encode() + b"\0"))
        return _u(nla_parse(reply), CTRL_ATTR_FAMILY_ID, "=H")


class IpvsUnavailable(Exception):
    pass


def read_ipvs() -> list[IpvsService]:
    """Dump the IPVS table of the current thread's namespace: services, then each one's dests."""
    with GenlSocket() as sock:
        try:
            family = sock.family_id("IPVS")
        except OSError as exc:
            if exc.errno == errno.ENOENT:
                raise IpvsUnavailable("this kernel has no IPVS (generic netlink family IPVS not found; "
                                      "is the ip_vs module available?)") from exc
            raise
        services = [decode_ipvs_service(m) for m in
                    sock.request(family, IPVS_CMD_GET_SERVICE, IPVS_GENL_VERSION, dump=True)]
        for svc in services:
            svc.dests = [decode_ipvs_dest(m, svc.family) for m in
                         sock.request(family, IPVS_CMD_GET_DEST, IPVS_GENL_VERSION, ipvs_service_key(svc),
                                      dump=True)]
        return services


_SYSBIN = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])


def iptables_backends() -> dict[str, str]:
    """backend name -> iptables-save binary. Both are read: the kernel applies both."""
    found = {}
    for backend, binary in (("nf_tables", "iptables-nft-save"), ("legacy", "iptables-legacy-save")):
        path = shutil.which(binary, path=_SYSBIN)
        if path:
            found[backend] = path
    if not found:
        path = shutil.which("iptables-save", path=_SYSBIN)
        if path:
            found["default"] = path
    return found


def parse_iptables_save(text: str) -> Ruleset:
    """Parse iptables-save output (either backend) into table -> chain -> rules."""
    rules: Ruleset = {}
    table = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("*"):
            table = line[1:]
            rules.setdefault(table, {})
        elif line.startswith(":") and table is not None:
            rules[table].setdefault(line[1:].split()[0], [])
        elif line.startswith("-A ") and table is not None:
            rule = parse_rule(table, line)
            rules[table].setdefault(rule.chain, []).append(rule)
    return rules


def parse_rule(table: str, line: str) -> Rule:
    # iptables-save quotes only values with spaces (comments): shlex only where needed.
    tokens = shlex.split(line) if '"' in line or "'" in line else line.split()
    chain = tokens[1]
    opts: dict[str, str | bool] = {}
    negated: set[str] = set()
    matches: list[str] = []
    negate = False
    i = 2
    while i < len(tokens):
        tok = tokens[i]
        if tok == "!":
            negate = True
            i += 1
            continue
        if tok in ("-m", "--match") and i + 1 < len(tokens):
            matches.append(tokens[i + 1])
            i += 2
            continue
        if tok.startswith("-"):
            nxt = tokens[i + 1] if i + 1 < len(tokens) else None
            value: str | bool = True
            if nxt is not None and nxt != "!" and not nxt.startswith("-"):
                value = nxt
                i += 1
            key = {"--protocol": "-p", "--destination": "-d", "--source": "-s",
                   "--jump": "-j", "--destination-port": "--dport",
                   "--source-port": "--sport"}.get(tok, tok)
            opts.setdefault(key, value)
            if negate:
                negated.add(key)
        negate = False
        i += 1
    return Rule(table=table, chain=chain, text=line, opts=opts, negated=frozenset(negated),
                matches=tuple(matches))


# iptables-nft is not forward compatible: an older iptables-save prints this comment instead of
# the rules a newer iptables wrote. Such a table is unreadable, not empty.
INCOMPATIBLE_TABLE = re.compile(r"^# Table [`'\"]?(\w+)[`'\"]? is incompatible", re.M)


def unreadable_tables(texts: dict[str, str]) -> list[str]:
    return sorted({t for text in texts.values() for t in INCOMPATIBLE_TABLE.findall(text)})


def merge_rulesets(parts: Iterable[Ruleset]) -> Ruleset:
    merged: Ruleset = {}
    for part in parts:
        for table, chains in part.items():
            for chain, rules in chains.items():
                merged.setdefault(table, {}).setdefault(chain, []).extend(rules)
    return merged


def docker_chains(rules: Ruleset) -> bool:
    return any(chain.startswith("DOCKER") for chains in rules.values() for chain in chains)


def read_iptables(backends: dict[str, str]) -> tuple[dict[str, str], str | None]:
    """iptables-save text of the current namespace per backend, and what failed."""
    if not backends:
        return {}, "no iptables-save binary found (install iptables)"
    texts, failures = {}, []
    for backend, binary in backends.items():
        try:
            proc = subprocess.run([binary], check=False, capture_output=True, text=True,
                                  timeout=60)
        except (OSError, subprocess.TimeoutExpired) as exc:
            failures.append(f"{os.path.basename(binary)}: {_short(exc)}")
            continue
        if proc.returncode != 0:
            reason = _short(Exception(proc.stderr or f"exit status {proc.returncode}"))
            failures.append(f"{os.path.basename(binary)}: {reason}")
            continue
        texts[backend] = proc.stdout
    return texts, None if texts else "; ".join(failures)


def read_addresses() -> dict[str, list[tuple[str, int]]]:
    """IPv4 addresses by interface name in the current thread's namespace (rtnetlink dumps)."""
    with NetlinkSocket(NETLINK_ROUTE) as sock:
        names = {}
        for msg in sock.request(RTM_GETLINK, _IFINFOMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0), dump=True):
            index = _IFINFOMSG.unpack_from(msg)[2]
            name = nla_parse(msg, _IFINFOMSG.size).get(IFLA_IFNAME, b"")
            names[index] = name.split(b"\0", 1)[0].decode(errors="replace")
        out: dict[str, list[tuple[str, int]]] = {}
        for msg in sock.request(RTM_GETADDR, _IFADDRMSG.pack(AF_INET, 0, 0, 0, 0), dump=True):
            family, prefixlen, _, _, index = _IFADDRMSG.unpack_from(msg)
            if family != AF_INET:
                continue
            attrs = nla_parse(msg, _IFADDRMSG.size)
            ip = _ip(attrs.get(IFA_LOCAL) or attrs.get(IFA_ADDRESS), AF_INET)
            out.setdefault(names.get(index, str(index)), []).append((ip, prefixlen))
        return out


def read_sysctls() -> dict[str, int] | None:
    if not os.path.isdir(IPVS_SYSCTL_DIR):
        return None
    values = {}
    for name in ("conn_reuse_mode", "expire_nodest_conn", "expire_quiescent_template", "conntrack"):
        with contextlib.suppress(OSError, ValueError), \
                open(os.path.join(IPVS_SYSCTL_DIR, name)) as fh:
            values[name] = int(fh.read().strip())
    return values


# --- netlink: an overlay namespace (VXLAN device, neighbours, FDB) --------------------
# libnetwork's overlay driver keeps, per network and node, one namespace with a bridge (the
# subnet's gateway) and a VXLAN device enslaved to it, and programs every remote endpoint
# twice (drivers/overlay/peerdb.go peerAddOp): a permanent neighbour (endpoint IP -> MAC) and a
# permanent `self` FDB entry (MAC -> the VTEP address of the endpoint's node) on the VXLAN device.

RTM_GETNEIGH = 30
IFLA_ADDRESS, IFLA_MTU, IFLA_MASTER, IFLA_LINKINFO = 1, 4, 10, 18
IFLA_INFO_KIND, IFLA_INFO_DATA = 1, 2
VXLAN_FLAG_ATTRS = {"learning": 7, "proxy": 11, "l2miss": 13, "l3miss": 14}  # IFLA_VXLAN_*, u8
IFLA_VXLAN_ID, IFLA_VXLAN_PORT = 1, 15
NDA_DST, NDA_LLADDR = 1, 2
AF_BRIDGE = 7
NUD_PERMANENT, NTF_SELF = 0x80, 0x02
IFF_UP = 0x1
_NDMSG = struct.Struct("=B3xiHBB")  # family, ifindex, state, flags, type


def _mac(raw: bytes | None) -> str | None:
    return raw.hex(":") if raw else None  # 30x the join of formatted bytes: one per row of 20,000


def decode_link(msg: bytes) -> dict:
    """One RTM_NEWLINK message: what the overlay check reads of an interface."""
    _, _, index, flags, _ = _IFINFOMSG.unpack_from(msg)
    attrs = nla_parse(msg, _IFINFOMSG.size)
    info = nla_parse(attrs.get(IFLA_LINKINFO, b""))
    kind = info.get(IFLA_INFO_KIND, b"").split(b"\0", 1)[0].decode(errors="replace") or None
    link = {"index": index, "name": attrs.get(IFLA_IFNAME, b"").split(b"\0", 1)[0].decode(errors="replace"),
            "kind": kind, "mtu": _u(attrs, IFLA_MTU), "master": _u(attrs, IFLA_MASTER) or None,
            "up": bool(flags & IFF_UP), "mac": _mac(attrs.get(IFLA_ADDRESS)), "vxlan": None}
    if kind == "vxlan":
        data = nla_parse(info.get(IFLA_INFO_DATA, b""))
        link["vxlan"] = {"vni": _u(data, IFLA_VXLAN_ID), "port": _u(data, IFLA_VXLAN_PORT, ">H"),
                         **{name: bool(_u(data, kind_, "=B")) for name, kind_ in VXLAN_FLAG_ATTRS.items()}}
    return link


# The kernel writes a VXLAN device's rows in one order (neigh_fill_info: NDA_DST then NDA_LLADDR;
# vxlan_fdb_info: NDA_LLADDR then NDA_DST): read at fixed offsets when the headers say so, else
# attribute by attribute. Half the cost of a row, at 20,000 rows per overlay on a large swarm.
_NEIGH_FIXED = struct.Struct("=B3xiHBBHH4sHH6s")  # ndmsg, NDA_DST (8: IPv4), NDA_LLADDR (10)
_FDB_FIXED = struct.Struct("=B3xiHBBHH6s2xHH4s")  # ndmsg, NDA_LLADDR (10, padded), NDA_DST (8)


def decode_neighbour(msg: bytes) -> dict:
    """One RTM_NEWNEIGH message: an ARP neighbour (AF_INET) or an FDB entry (AF_BRIDGE)."""
    if len(msg) >= 32:
        if msg[0] == AF_INET:
            _, index, state, flags, _, len1, kind1, ip, len2, kind2, mac = _NEIGH_FIXED.unpack_from(msg)
            fixed = (len1, kind1, len2, kind2) == (8, NDA_DST, 10, NDA_LLADDR)
        else:
            _, index, state, flags, _, len1, kind1, mac, len2, kind2, ip = _FDB_FIXED.unpack_from(msg)
            fixed = (len1, kind1, len2, kind2) == (10, NDA_LLADDR, 8, NDA_DST)
        if fixed:
            return {"ifindex": index, "dst": socket.inet_ntoa(ip), "mac": mac.hex(":"),
                    "permanent": bool(state & NUD_PERMANENT), "self": bool(flags & NTF_SELF)}
    _, index, state, flags, _ = _NDMSG.unpack_from(msg)
    attrs = nla_parse(msg, _NDMSG.size)
    dst = attrs.get(NDA_DST)
    return {"ifindex": index, "dst": _ip(dst, socket.AF_INET6 if dst and len(dst) == 16 else AF_INET),
            "mac": _mac(attrs.get(NDA_LLADDR)), "permanent": bool(state & NUD_PERMANENT),
            "self": bool(flags & NTF_SELF)}


def read_overlay() -> dict:
    """Links, IPv4 neighbours and bridge FDB of the current thread's namespace, as plain data."""
    with NetlinkSocket(NETLINK_ROUTE) as sock:
        links = [decode_link(m) for m in
                 sock.request(RTM_GETLINK, _IFINFOMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0), dump=True)]
        vxlans = {link["index"] for link in links if link["kind"] == "vxlan"}
        # Only rows on VXLAN devices: the bridge's learned rows for local veths are not programmed.
        def on_vxlan(family: int) -> list[dict]:
            rows = (decode_neighbour(m) for m in
                    sock.request(RTM_GETNEIGH, _NDMSG.pack(family, 0, 0, 0, 0), dump=True))
            return [r for r in rows if r["ifindex"] in vxlans]
        return {"error": None, "links": links, "neighbours": on_vxlan(AF_INET), "fdb": on_vxlan(AF_BRIDGE)}


# Encrypted overlays (drivers/overlay/encryption.go): in the node's own namespace, per remote
# node, ESP security associations (out: primary key; in: one per key) and one outbound policy
# for UDP to the VXLAN port, marked 0xD0C4E3 by the network's mangle rule.
NETLINK_XFRM = 6
XFRM_MSG_GETSA, XFRM_MSG_GETPOLICY = 0x12, 0x15
XFRMA_MARK = 21
IPPROTO_ESP, XFRM_POLICY_OUT = 50, 1
OVERLAY_ESP_MARK = 0xD0C4E3
# xfrm_usersa_info: id.daddr, id.spi, id.proto, saddr, family; xfrm_userpolicy_info: sel.daddr,
# sel.saddr, sel.dport, sel.family, sel.proto, dir.
_XFRM_SA = struct.Struct("=56x16s4sB3x16s116xH")
_XFRM_POLICY = struct.Struct("=16s16s2s6xH2xB115xB")


def decode_xfrm_state(msg: bytes) -> dict:
    dst, spi, proto, src, family = _XFRM_SA.unpack_from(msg)
    return {"src": _ip(src, family), "dst": _ip(dst, family), "spi": int.from_bytes(spi, "big"),
            "proto": proto}


def decode_xfrm_policy(msg: bytes) -> dict:
    dst, src, dport, family, proto, direction = _XFRM_POLICY.unpack_from(msg)
    mark = nla_parse(msg, 168).get(XFRMA_MARK)  # after the 168-byte xfrm_userpolicy_info
    return {"src": _ip(src, family), "dst": _ip(dst, family), "dport": int.from_bytes(dport, "big"),
            "proto": proto, "dir": direction,
            "mark": struct.unpack_from("=I", mark)[0] if mark and len(mark) >= 4 else None}


def read_xfrm() -> dict:
    """The IPsec state of this namespace (the node's own), as plain data; never raises."""
    try:
        with NetlinkSocket(NETLINK_XFRM) as sock:
            states = [decode_xfrm_state(m) for m in sock.request(XFRM_MSG_GETSA, b"", dump=True)
                      if len(m) >= _XFRM_SA.size]
            policies = [decode_xfrm_policy(m) for m in sock.request(XFRM_MSG_GETPOLICY, b"", dump=True)
                        if len(m) >= _XFRM_POLICY.size]
        return {"error": None, "states": states, "policies": policies}
    except OSError as exc:
        return {"error": f"cannot read the IPsec (xfrm) state: {exc.strerror or _short(exc)}"}


def read_overlay_namespace(path: str) -> dict:
    try:
        with entered_netns(path):
            return read_overlay()
    except FileNotFoundError:
        return {"error": f"namespace {path} does not exist (it may have vanished mid-run)"}
    except OSError as exc:
        return {"error": f"cannot read namespace {path}: {exc.strerror or _short(exc)}"}


def read_namespace(path: str, backends: dict[str, str], want_ipvs: bool = True) -> dict:
    """Everything ssd compares, read inside one namespace ("": this one), as plain JSON data.

    Kept raw (iptables-save text per backend, the decoded IPVS table) so that a snapshot
    holds what the kernel said, and checking it later runs the same parser as a live run.
    """
    raw: dict[str, Any] = {"error": None, "ipvs": None, "ipvs_error": None, "ipvs_missing": False,
                           "iptables": {}, "iptables_error": None, "addresses": None, "sysctls": None}
    try:
        with entered_netns(path) if path else contextlib.nullcontext():
            if want_ipvs:
                try:
                    raw["ipvs"] = [ipvs_raw(s) for s in read_ipvs()]
                except IpvsUnavailable as exc:
                    raw["ipvs_error"], raw["ipvs_missing"] = str(exc), True
                except Exception as exc:  # noqa: BLE001 - any netlink failure: report, check the rest
                    raw["ipvs_error"] = f"IPVS dump failed: {_short(exc)}"
                raw["sysctls"] = read_sysctls()
                raw["conntrack"] = read_conntrack()
            raw["iptables"], raw["iptables_error"] = read_iptables(backends)
            raw["addresses"] = read_addresses()
    except FileNotFoundError:
        raw["error"] = f"namespace {path} does not exist (it may have vanished mid-run)"
    except OSError as exc:
        raw["error"] = f"cannot read namespace {path}: {exc.strerror or _short(exc)}"
    return raw


def ipvs_raw(svc: IpvsService) -> dict:
    """An IPVS service as plain data (dataclasses.asdict deep-copies: 10x slower at 20,000 dests)."""
    return {"family": svc.family, "fwmark": svc.fwmark, "protocol": svc.protocol,
            "address": svc.address, "port": svc.port, "scheduler": svc.scheduler, "flags": svc.flags,
            "timeout": svc.timeout,
            "dests": [{"address": d.address, "port": d.port, "weight": d.weight, "forwarding": d.forwarding}
                      for d in svc.dests]}


def datapath_from_raw(path: str, raw: dict) -> Datapath:
    """The Datapath the checks compare, from read_namespace()'s data (live or snapshot)."""
    ipvs = None
    if raw.get("ipvs") is not None:
        ipvs = [IpvsService(**{**s, "dests": [IpvsDest(**d) for d in s.get("dests") or []]})
                for s in raw["ipvs"]]
    texts: dict[str, str] = raw.get("iptables") or {}
    parsed = {backend: parse_iptables_save(text) for backend, text in texts.items()}
    addresses = raw.get("addresses")
    iptables_error = raw.get("iptables_error")
    unreadable = unreadable_tables(texts)
    if unreadable:
        iptables_error = (f"this iptables cannot read table(s) {', '.join(unreadable)}, written by a "
                          "newer iptables ('is incompatible'): run ssd with an iptables at least as "
                          "new as the host's (the ssd image, or the host's own binaries)")
    return Datapath(
        path=path, name=os.path.basename(path) if path else "host", ipvs=ipvs,
        ipvs_error=raw.get("ipvs_error"),
        rules=merge_rulesets(parsed.values()) if parsed and not unreadable else None,
        backends_with_docker_chains=[b for b, rules in parsed.items() if docker_chains(rules)],
        iptables_error=iptables_error,
        addresses=None if addresses is None else
        {name: [(ip, int(plen)) for ip, plen in addrs] for name, addrs in addresses.items()},
        sysctls=raw.get("sysctls"), error=raw.get("error"),
        ipvs_missing=bool(raw.get("ipvs_missing")), conntrack=raw.get("conntrack"))


def overlay_from_raw(path: str, raw: dict) -> OverlayDatapath:
    links = None if raw.get("links") is None else [
        Link(index=int(x["index"]), name=str(x["name"]), kind=x.get("kind"), mtu=int(x.get("mtu") or 0),
             master=x.get("master"), up=bool(x.get("up")), vxlan=x.get("vxlan")) for x in raw["links"]]
    names = {link.index: link.name for link in links or []}

    def rows(key: str) -> list[Neighbour] | None:
        if raw.get(key) is None:
            return None
        return [Neighbour(names.get(r["ifindex"]) or str(r["ifindex"]), r.get("dst"), r.get("mac"),
                          bool(r.get("permanent")), bool(r.get("self"))) for r in raw[key]]
    return OverlayDatapath(path=path, name=os.path.basename(path), links=links,
                           neighbours=rows("neighbours"), fdb=rows("fdb"), error=raw.get("error"))


# --- the embedded DNS: asked inside a container's namespace ---------------------------

DNS_RESOLVER = "127.0.0.11"  # libnetwork's resolver, DNAT-ed to dockerd in every container namespace
DNS_TIMEOUT = 1.0  # seconds per try: the resolver answers its own names at once
DNS_TRIES = 2
DNS_WINDOW = 64  # questions in flight at once: a burst of thousands would overflow a socket buffer


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
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:  # made here: it lives in the namespace
        sock.setblocking(False)
        while queue or inflight:
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
    while True:
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


# --- the host's prerequisites: forwarding, conntrack, the data-path interface ---------

CONNTRACK_DIR = "/proc/sys/net/netfilter"


def read_conntrack() -> dict[str, int] | None:
    """This thread's namespace's conntrack table: entries in use and the maximum (None: no
    conntrack module loaded, so nothing to fill)."""
    values = {}
    for key in ("count", "max"):
        try:
            with open(os.path.join(CONNTRACK_DIR, f"nf_conntrack_{key}")) as fh:
                values[key] = int(fh.read().strip())
        except (OSError, ValueError):
            return None
    return values


def _read_int(path: str) -> int | None:
    try:
        with open(path) as fh:
            return int(fh.read().strip())
    except (OSError, ValueError):
        return None


def read_host_prereqs() -> dict:
    """What the node's own namespace must provide for overlays and the routing mesh, as plain
    data: IPv4 forwarding, its conntrack table, and each interface's MTU, addresses and driver."""
    out: dict[str, Any] = {"error": None, "ip_forward": _read_int("/proc/sys/net/ipv4/ip_forward"),
                           "conntrack": read_conntrack(), "links": []}
    try:
        addresses = read_addresses()
        with NetlinkSocket(NETLINK_ROUTE) as sock:
            links = [decode_link(m) for m in
                     sock.request(RTM_GETLINK, _IFINFOMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0), dump=True)]
    except OSError as exc:
        out["error"] = f"cannot read this node's interfaces: {exc.strerror or _short(exc)}"
        return out
    for link in links:
        if not addresses.get(link["name"]):
            continue  # only an interface with an address can carry the data path
        try:  # sysfs, as the node sees it: the driver behind the interface (none for virtual ones)
            driver = os.path.basename(os.readlink(f"/sys/class/net/{link['name']}/device/driver"))
        except OSError:
            driver = None
        out["links"].append({"name": link["name"], "mtu": link["mtu"], "driver": driver,
                             "addresses": [ip for ip, _ in addresses[link["name"]]]})
    return out


# --- traffic (--probe): echo requests and TCP connections, bounded --------------------
# Sent only with --probe. Each probe leaves from a namespace that ssd enters only to make its
# socket (a socket stays in the namespace it was made in); then one loop waits on all of them,
# so a node with hundreds of backends is probed in about one timeout.

PROBE_TRIES = 3  # echo requests per target and size, PROBE_INTERVAL apart
PROBE_INTERVAL = 0.2  # seconds
PROBE_TIMEOUT = 1.5  # seconds for an answer after the last request; a TCP connection's SYN and its retry
PROBE_LIMIT = 8.0  # seconds for all the probes of one sample; what is left is "not probed"
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


# --- what a run reads, live or from a snapshot ----------------------------------------

SNAPSHOT_FORMAT = "ssd-snapshot"
SNAPSHOT_VERSION = 2  # 2 (0.2): overlay namespaces. Format 1 is still read (no overlay checks).

# The parts of each Engine API response the checks use, and all a snapshot keeps: no
# container environments, labels, mounts or secrets. True keeps a value whole; a dict
# keeps those keys; [shape] applies to every element (or map value, with "*").
_TASK_ENTRY = {"Name": True, "EndpointID": True, "EndpointIP": True, "Info": True}
API_SHAPES: dict[str, Any] = {
    "info": {"Name": True, "ServerVersion": True, "FirewallBackend": {"Driver": True},
             "Swarm": {"LocalNodeState": True, "NodeID": True, "ControlAvailable": True,
                       "NodeAddr": True, "Cluster": {"ID": True, "DataPathPort": True,
                                                     "Spec": {"Dispatcher": {"HeartbeatPeriod": True}}}}},
    "version": {"Version": True, "ApiVersion": True},
    "networks": [{"Id": True, "Name": True, "Scope": True, "Driver": True, "Ingress": True}],
    "network": {"Id": True, "Name": True, "Scope": True, "Driver": True, "Ingress": True,
                "Options": True, "IPAM": {"Config": True}, "Peers": True,
                "Containers": {"*": {"Name": True, "EndpointID": True, "IPv4Address": True}},
                "Services": {"*": {"VIP": True, "LocalLBIndex": True, "Ports": True,
                                   "Tasks": [_TASK_ENTRY]}}},
    "services": [{"ID": True, "Spec": {"Name": True, "EndpointSpec": {"Ports": True},
                                       "TaskTemplate": {"Networks": [{"Target": True, "Aliases": True}],
                                                        "ContainerSpec": {"Healthcheck": True,
                                                                          "StopGracePeriod": True}},
                                       "Networks": [{"Target": True, "Aliases": True}]},
                  "PreviousSpec": {"EndpointSpec": {"Ports": True}}, "UpdateStatus": {"State": True},
                  "Endpoint": {"Ports": True, "VirtualIPs": True}}],
    "tasks": [{"ID": True, "ServiceID": True, "NodeID": True, "DesiredState": True,
               "Status": {"State": True, "Timestamp": True, "ContainerStatus": {"ContainerID": True}},
               "NetworksAttachments": [{"Network": {"ID": True}, "Addresses": True}]}],
    "nodes": [{"ID": True, "UpdatedAt": True, "Description": {"Hostname": True},
               "Status": {"State": True, "Addr": True}}],
    "container": {"Id": True, "Name": True, "State": {"Health": {"Status": True}},
                  "NetworkSettings": {"SandboxKey": True, "Networks": {"*": {"NetworkID": True}}}},
}


def project(value: Any, shape: Any) -> Any:
    """Keep only the parts of an API response that shape names."""
    if shape is True or value is None:
        return value
    if isinstance(shape, list):
        return [project(v, shape[0]) for v in value] if isinstance(value, list) else value
    if not isinstance(value, dict):
        return value
    if "*" in shape:
        return {k: project(v, shape["*"]) for k, v in value.items()}
    return {k: project(value[k], sub) for k, sub in shape.items() if k in value}


class SnapshotError(CheckError):
    pass


class ReadAhead:
    """The namespaces a run will read, read by forked children while this process talks to the
    Engine API, parses its JSON and builds the views: every core at work instead of one (the
    netlink dumps and iptables-save run beside the API reads, not after them).

    Each child runs the same readers (read_namespace, read_overlay_namespace) on its share of
    the jobs, in the order the run takes them, and sends each result, as marshal data, down its
    own pipe; a thread here drains each pipe. A job no child delivered (it died, it was killed)
    is read here as if there had been no read-ahead. The children only read; none outlives the
    run (close(), and the pipe: a child whose reader is gone ends at its next write)."""

    def __init__(self, jobs: list[tuple[str, str, bool]], backends: dict[str, str],
                 workers: int = 2) -> None:
        self.pending = set(jobs)  # (kind "ns" | "overlay", path, want_ipvs)
        self.results: dict[tuple[str, str, bool], dict] = {}
        self.done = threading.Condition()
        self.running = 0
        self.pids: list[int] = []
        self.pipes: list[int] = []
        # Every child is forked before any thread starts here: a fork copies only the calling
        # thread, and Python warns (3.12+) when a process with threads forks.
        started = [self._start(share, backends)
                   for share in (jobs[i::workers] for i in range(max(1, min(workers, len(jobs)))))]
        for readable, pid in started:
            threading.Thread(target=self._drain, args=(readable, pid), daemon=True).start()

    def _start(self, jobs: list[tuple[str, str, bool]], backends: dict[str, str]) -> tuple[int, int]:
        readable, writable = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: read, write, and leave without running anything of the parent's
            code = 1
            try:
                for fd in (readable, *self.pipes):  # a reader's pipe is held by the parent alone
                    os.close(fd)
                with os.fdopen(writable, "wb") as out:
                    for job in jobs:
                        blob = marshal.dumps((job, self._read(job, backends)))
                        out.write(struct.pack("=I", len(blob)) + blob)
                        out.flush()
                code = 0
            finally:
                os._exit(code)
        os.close(writable)
        self.pids.append(pid)
        self.pipes.append(readable)
        self.running += 1
        return readable, pid

    @staticmethod
    def _read(job: tuple[str, str, bool], backends: dict[str, str]) -> dict:
        kind, path, want_ipvs = job
        if kind == "overlay":
            return read_overlay_namespace(path)
        return read_namespace(path, backends, want_ipvs)

    def _drain(self, fd: int, pid: int) -> None:
        with os.fdopen(fd, "rb") as pipe:
            while True:
                head = pipe.read(4)
                if len(head) < 4:
                    break
                size = struct.unpack("=I", head)[0]
                blob = pipe.read(size)
                if len(blob) < size:
                    break
                job, raw = marshal.loads(blob)
                with self.done:
                    self.results[tuple(job)] = raw
                    self.done.notify_all()
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)
        with self.done:
            self.running -= 1
            self.done.notify_all()

    def take(self, kind: str, path: str, want_ipvs: bool) -> dict | None:
        """What a child read for this job, once it has; None: not one of the jobs, or lost."""
        job = (kind, path, want_ipvs)
        if job not in self.pending:
            return None
        self.pending.discard(job)
        with self.done:
            while job not in self.results and self.running:
                self.done.wait()
            return self.results.pop(job, None)

    def close(self) -> None:
        """Stop the children still reading (jobs the run did not need), and forget."""
        self.pending.clear()
        with self.done:
            if self.running:
                for pid in self.pids:
                    with contextlib.suppress(OSError):
                        os.kill(pid, signal.SIGKILL)
            self.results.clear()


def usable_cores() -> int:
    """The cores this process may run on (a container's cpuset, taskset), not the machine's."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def start_read_ahead(netns_dir: str, networks: list[dict] | None, lb_named: bool = True
                     ) -> ReadAhead | None:
    """A ReadAhead of the namespaces a run reads for these networks (None: every network this
    node has a namespace of, which is what a run that names no network checks), or None where
    there is nothing to gain or it cannot be: no namespaces directory, another thread in this
    process (a fork copies only the calling one), SSD_NO_READ_AHEAD set, one core only (a child
    there takes turns with this process: the lab's 1-vCPU nodes measured no gain), or no fork."""
    if threading.active_count() > 1 or os.environ.get("SSD_NO_READ_AHEAD") or usable_cores() < 2:
        return None
    try:
        present = set(os.listdir(netns_dir))
    except OSError:
        return None
    overlay_names = [m for m in map(re.compile(r"(\d+)-(\w{10})").fullmatch, present) if m]
    newest: dict[str, tuple[int, str]] = {}
    for m in overlay_names:  # the overlay driver's namespace: <epoch>-<network id[:10]>, the newest
        newest[m.group(2)] = max(newest.get(m.group(2), (-1, "")), (int(m.group(1)), m.group(0)))
    if networks is None:
        lb_names = sorted(n for n in present if n == "ingress_sbox" or (lb_named and n.startswith("lb_")))
        overlay_ids = sorted(newest)
    else:
        lb_names, overlay_ids = [], []
        for net in networks:
            net_id = str(net.get("Id") or "")
            name = "ingress_sbox" if net.get("Ingress") else f"lb_{net_id[:9]}" if lb_named else ""
            lb_names += [name] if name in present else []
            overlay_ids += [net_id[:10]] if net_id[:10] in newest else []
    path = functools.partial(os.path.join, netns_dir)
    # In the order the run takes them: load balancers, overlays, then the host's rules (the
    # routing mesh's and the encrypted overlays').
    jobs = [*(("ns", path(name), True) for name in lb_names),
            *(("overlay", path(newest[net_id][1]), False) for net_id in overlay_ids), ("ns", "", False)]
    # One reader beside this process. Two finished the reads sooner but slowed this process's
    # own imports and API reads (the critical path) more: 5000 x 4 in the lab's 2-core VM, 7.0 s
    # with one child against 9.0 s with two (9.2 s with none).
    try:
        return ReadAhead(jobs, iptables_backends(), workers=1)
    except OSError:  # no fork (a limit on processes): read as usual
        return None


class Collector:
    """Reads this node's control plane and datapath for one run, and keeps what it read.

    Every read is recorded in self.samples (one per sample of the run) in the form a
    snapshot stores, and the checks only ever see what was recorded: a live run and a
    run on its snapshot see the same data.
    """

    ahead: ReadAhead | None = None  # the namespaces a child reads ahead (a live run's first sample)

    def __init__(self, engine: Engine | None, exec_root: str, record_api: bool = True) -> None:
        self.engine = engine
        self.exec_root = exec_root
        # The API responses are kept only for a snapshot (or an answer that carries them): at
        # 20,000 tasks they are the largest thing a run holds, and the views keep what checks use.
        self.record_api = record_api
        self.netns_dir = os.path.join(exec_root, "netns")
        self.backends = iptables_backends() if engine is not None else {}
        self.samples: list[dict] = []
        self.reusable: dict[str, dict] = {}
        self.ahead: ReadAhead | None = None
        self.new_sample()

    def read_ahead(self, networks: list[dict], lb_named: bool) -> None:
        """Start reading, in child processes, the namespaces this run will read for these
        networks (from the API's network list): their load balancers (where this engine names
        them), their overlay namespaces and the host's rules. Only a live run's first sample
        (a run that named no network started it already, before the Engine API: read_ahead_all)."""
        if self.engine is None or self.ahead is not None or len(self.samples) > 1:
            return
        self.ahead = start_read_ahead(self.netns_dir, networks, lb_named)

    def end_read_ahead(self) -> None:
        if self.ahead is not None:
            self.ahead.close()
            self.ahead = None

    def _ahead(self, kind: str, path: str, want_ipvs: bool) -> dict | None:
        return self.ahead.take(kind, path, want_ipvs) if self.ahead is not None else None

    def new_sample(self, reread: set[str | None] | None = None) -> None:
        """Start another sample. With reread (the namespaces the last sample's findings name,
        and their networks' load balancers: reread_for), every other namespace is taken over as
        last read: a finding must show in both samples to count, and those namespaces had none
        and judge none of them, so a second look could change nothing."""
        last = self.samples[-1]["namespaces"] if self.samples else {}
        self.reusable = {} if reread is None or None in reread else {
            key: raw for key, raw in last.items()
            if ("host" if key in ("host", "xfrm") else os.path.basename(key)) not in reread}
        self.samples.append({"api": {}, "namespaces": {}, "lookups": {}})

    @property
    def sample(self) -> dict:
        return self.samples[-1]

    def ns_path(self, name: str) -> str:
        return os.path.join(self.netns_dir, name)

    # Each read goes through _api/_lookup/_namespace: live here, replayed by SnapshotCollector.
    def _api(self, key: str, method: str, *args: str) -> Any:
        value = getattr(self.engine, method)(*args)
        if self.record_api:  # what a snapshot keeps (and replays): the parts API_SHAPES names
            value = self.sample["api"][key] = project(value, API_SHAPES[method])
        return value  # else as received: projecting 20,000 tasks costs more than reading them

    def _lookup(self, key: str, fetch) -> Any:
        value = fetch()
        self.sample["lookups"][key] = value
        return value

    def _namespace(self, path: str, want_ipvs: bool) -> dict:
        raw = (self.reusable.get(path or "host") or self._ahead("ns", path, want_ipvs)
               or read_namespace(path, self.backends, want_ipvs))
        self.sample["namespaces"][path or "host"] = raw
        return raw

    def info(self) -> dict:
        return self._api("GET /info", "info")

    def version(self) -> dict:
        return self._api("GET /version", "version")

    def networks(self) -> list[dict]:
        return self._api("GET /networks", "networks")

    def network(self, net_id: str) -> dict | None:
        return self._api(f"GET /networks/{net_id}", "network", net_id)

    def services(self) -> list[dict]:
        return self._api("GET /services", "services")

    def tasks(self) -> Iterable[dict]:
        """Swarm's tasks, to be consumed once (build_swarm_tasks): as the Engine streams them,
        or, for a snapshot, as a list that it keeps."""
        if not self.record_api:
            return self.engine.tasks()
        tasks = self.sample["api"]["GET /tasks"] = project(list(self.engine.tasks()), API_SHAPES["tasks"])
        return tasks

    def nodes(self) -> list[dict] | None:
        return self._api("GET /nodes", "nodes")

    def clock(self) -> float | None:
        """When this sample was read (recorded: a replay judges task ages as of then)."""
        return self._lookup("clock", time.time)

    def container(self, cid: str) -> dict | None:
        return self._api(f"GET /containers/{cid}", "container", cid)

    def ns_exists(self, path: str) -> bool:
        return self._lookup(f"exists {path}", lambda: os.path.exists(path))

    def netns_names(self) -> list[str] | None:
        """What this process sees of dockerd's namespaces directory (None: not there at all)."""
        def listing() -> list[str] | None:
            try:
                return sorted(os.listdir(self.netns_dir))
            except OSError:
                return None
        return self._lookup("netns-dir", listing)

    def find_lb_by_address(self, ip: str) -> str | None:
        """18.06 names LB namespaces by random sandbox ID: find the one holding the LB IP."""
        def scan() -> str | None:
            with contextlib.suppress(OSError):
                for name in sorted(os.listdir(self.netns_dir)):
                    path = self.ns_path(name)
                    with contextlib.suppress(Exception), entered_netns(path):
                        if any(ip == a for addrs in read_addresses().values() for a, _ in addrs):
                            return path
            return None
        return self._lookup(f"lb-address {ip}", scan)

    def datapath(self, path: str, want_ipvs: bool = True) -> Datapath:
        return datapath_from_raw(path, self._namespace(path, want_ipvs))

    has_overlays = True  # False: a format-1 snapshot, taken before ssd read overlay namespaces
    has_dns = True  # False: a snapshot taken before ssd asked the embedded DNS

    def _overlay(self, path: str) -> dict | None:
        raw = self.reusable.get(path) or self._ahead("overlay", path, False) or read_overlay_namespace(path)
        self.sample["namespaces"][path] = raw
        return raw

    def overlay_path(self, view: NetworkView) -> str | None:
        """The overlay driver's namespace of a network: <epoch>-<network id[:10]>."""
        pattern = re.compile(r"(\d+)-" + re.escape(view.id[:10]))
        matches = [pattern.fullmatch(name) for name in self.netns_names() or []]
        found = [(int(m.group(1)), m.group(0)) for m in matches if m]
        return self.ns_path(max(found)[1]) if found else None  # the newest epoch

    def xfrm(self) -> dict | None:
        """The node's IPsec state (encrypted overlays). None: this source did not record it."""
        raw = self.reusable.get("xfrm") or read_xfrm()
        self.sample["namespaces"]["xfrm"] = raw
        return raw

    def overlay(self, path: str) -> OverlayDatapath | None:
        """None: this source has no overlay state (a format-1 snapshot)."""
        raw = self._overlay(path)
        return None if raw is None else overlay_from_raw(path, raw)

    def dns(self, path: str, names: list[str]) -> dict | None:
        """What the embedded resolver answers inside the namespace at path. None: not recorded."""
        return self._lookup(f"dns {path}", lambda: ask_resolver(path, names))

    def host_prereqs(self) -> dict | None:
        """Forwarding, conntrack and the interfaces of the node's own namespace. None: not recorded."""
        return self._lookup("host-prereqs", read_host_prereqs)

    probing = False  # --probe: send the probes a run plans (a snapshot replays what it recorded)

    def will_probe(self) -> bool:
        """Whether probe() would send (or replay) anything: the plan is made only then."""
        return self.probing

    def probe(self, probes: list[Probe]) -> dict[str, dict] | None:
        """What came back of each probe, by key. None: not probing (or nothing recorded)."""
        if not self.probing:
            return None
        return self._lookup("probes", lambda: run_probes(probes))


class SnapshotCollector(Collector):
    """Replays the reads of a snapshot: the same run, on the data of another moment or node."""

    def __init__(self, snapshot: dict, source: str) -> None:  # replays: no live reader to set up
        self.engine = None
        self.exec_root = snapshot["exec_root"]
        self.netns_dir = os.path.join(self.exec_root, "netns")
        self.backends = {}
        self.recorded = snapshot["samples"]
        self.source = source
        self.has_overlays = snapshot.get("version", 1) >= 2
        self.has_dns = any(k.startswith("dns ") for k in (self.recorded[0].get("lookups") or {}))
        self.samples = []
        self.new_sample()

    def new_sample(self, reread: set[str | None] | None = None) -> None:
        if len(self.samples) >= len(self.recorded):
            raise SnapshotError(f"{self.source} holds {count(len(self.recorded), 'sample')}, no more")
        self.samples.append(self.recorded[len(self.samples)])

    def _missing(self, what: str) -> SnapshotError:
        return SnapshotError(f"{self.source} has no record of {what}: the snapshot was taken for "
                             "other networks or is incomplete")

    def _api(self, key: str, method: str, *args: str) -> Any:
        if key not in self.sample["api"]:
            raise self._missing(key)
        return self.sample["api"][key]

    def _lookup(self, key: str, fetch) -> Any:
        if key not in self.sample["lookups"]:
            if key == "netns-dir":  # snapshots before 0.2 did not record it: they saw it
                return ["(not recorded)"]
            if key in ("clock", "host-prereqs", "probes") or key.startswith("dns "):
                return None  # nor these before the checks that read them (probes: without --probe)
            raise self._missing(key)
        return self.sample["lookups"][key]

    def tasks(self) -> Iterable[dict]:
        return self._api("GET /tasks", "tasks")

    def nodes(self) -> list[dict] | None:
        return self.sample["api"].get("GET /nodes")  # not recorded before the orchestrator checks

    def will_probe(self) -> bool:
        return self.probing or "probes" in self.sample["lookups"]

    def probe(self, probes: list[Probe]) -> dict[str, dict] | None:
        return self._lookup("probes", dict)  # replayed when the snapshot was taken with --probe

    def _namespace(self, path: str, want_ipvs: bool) -> dict:
        raw = self.sample["namespaces"].get(path or "host")
        if not isinstance(raw, dict):
            raise self._missing(f"namespace {path or 'host'}")
        return raw

    def _overlay(self, path: str) -> dict | None:
        return self._namespace(path, False)

    def xfrm(self) -> dict | None:
        return self.sample["namespaces"].get("xfrm")


def snapshot_document(collector: Collector, node: NodeInfo, wanted: list[str],
                      settle_seconds: float) -> dict:
    return {"format": SNAPSHOT_FORMAT, "version": SNAPSHOT_VERSION, "ssd_version": __version__,
            "taken_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "node": {"id": node.id, "hostname": node.hostname, "manager": node.manager,
                     "engine_version": node.engine.version, "era": node.engine.era},
            "networks": wanted, "exec_root": collector.exec_root, "settle": settle_seconds,
            "samples": collector.samples}


def _expect(cond: bool, source: str, what: str) -> None:
    if not cond:
        raise SnapshotError(f"{source} is not a usable ssd snapshot: {what}")


def load_snapshot(path: str) -> dict:
    """Read and validate a snapshot file enough that replaying it cannot crash."""
    try:
        with open(path, encoding="utf-8") if path != "-" else contextlib.nullcontext(sys.stdin) as fh:
            text = fh.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise SnapshotError(f"cannot read snapshot {path}: {getattr(exc, 'strerror', None) or _short(exc)}"
                            ) from exc
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SnapshotError(f"{path} is not a usable ssd snapshot: invalid JSON at line {exc.lineno} "
                            f"column {exc.colno} ({exc.msg}; truncated?)") from exc
    _expect(isinstance(doc, dict) and doc.get("format") == SNAPSHOT_FORMAT, path,
            f'no "format": "{SNAPSHOT_FORMAT}" field')
    version = doc.get("version")
    _expect(isinstance(version, int) and not isinstance(version, bool), path, "no format version")
    if version > SNAPSHOT_VERSION:
        raise SnapshotError(f"{path} is snapshot format {version} (written by ssd "
                            f"{doc.get('ssd_version', '?')}); this ssd {__version__} reads format "
                            f"{SNAPSHOT_VERSION}: use a newer ssd")
    _expect(version in (1, SNAPSHOT_VERSION), path, f"unknown format version {version}")
    _expect(isinstance(doc.get("exec_root"), str), path, '"exec_root" missing or not a string')
    networks = doc.get("networks")
    _expect(isinstance(networks, list) and all(isinstance(n, str) for n in networks), path,
            '"networks" missing or not a list of names')
    samples = doc.get("samples")
    _expect(isinstance(samples, list) and samples, path, '"samples" missing or empty')
    for i, sample in enumerate(samples):
        _expect(isinstance(sample, dict) and all(isinstance(sample.get(k), dict)
                                                 for k in ("api", "namespaces", "lookups")),
                path, f"sample {i + 1} lacks its api/namespaces/lookups sections")
    return doc


SNAPSHOT_DAMAGE = (KeyError, TypeError, AttributeError, ValueError, IndexError)


@contextlib.contextmanager
def replaying(source: str) -> Iterator[None]:
    """Checking (or reporting) a snapshot: what a damaged file holds where a well-formed one holds
    something else is one line about the file, never a traceback. The one place that says so."""
    try:
        yield
    except SNAPSHOT_DAMAGE as exc:
        raise SnapshotError(f"{source} is not a usable ssd snapshot: damaged data "
                            f"({type(exc).__name__}: {_short(exc)})") from exc


def write_snapshot(doc: dict, target: str) -> None:
    text = json.dumps(doc, indent=1, sort_keys=True) + "\n"
    if target == "-":
        emit(text)
        return
    try:
        with open(target, "w", encoding="utf-8") as fh:
            fh.write(text)
    except OSError as exc:
        raise CheckError(f"cannot write snapshot {target}: {exc.strerror or _short(exc)}") from exc


def mode_of(argv: list[str]) -> str:
    """Which mode a command line asks for: every JSON document, an error's too, says it."""
    if "--all-nodes" in argv:
        return "all-nodes"
    return next((m for m in (*MODES, FLEET_MEMBER) if m in argv), "node")


# --------------------------------------------------------------------------------------
# Checks: pure functions, views in, findings out. No I/O below this line until reports.
# --------------------------------------------------------------------------------------

# Every check is one function, registered with the ids it reports, the scope it runs on and the
# parts of a namespace's datapath it reads; run_checks() runs them all on one NodeState. A part
# that could not be read (None: no IPVS in this kernel, no iptables binary...) skips the checks
# that need it, and the reason is already a NotChecked. To add a check: write fn(subject, state),
# decorate it with @register_check, add its ids to CHECKS (and docs/checks.md's table).

SCOPES: dict[str, Callable[[NodeState], list[tuple[Any, Datapath | None]]]] = {
    "node": lambda st: [(st, None)],  # once per run
    "network": lambda st: [(v, None) for v in st.views if v.instantiated],
    "lb": lambda st: [(lb, lb.datapath) for lb in st.lbs],  # each load-balancer namespace
    "datapath": lambda st: [(dp, dp) for dp in st.datapaths()],  # every LB namespace read, host too
    "host": lambda st: [(st.host, st.host)] if st.host is not None and st.ingress is not None else [],
    "ingress-tasks": lambda st: [(st.ingress, None)] if st.ingress is not None else [],
    # each network whose embedded DNS was asked, with what it answered
    "dns": lambda st: [((v, p), p) for v in st.views for p in [(st.dns or {}).get(v.id)] if p is not None],
    # each overlay namespace read, with its network's view
    "overlay": lambda st: [((v, ov), ov) for v in st.views for ov in [(st.overlays or {}).get(v.id)]
                           if ov is not None and ov.error is None],
    "probe": lambda st: [(st, None)] if st.probe_results is not None else [],  # --probe ran
}


@dataclass(frozen=True)
class Check:
    ids: tuple[str, ...]
    scope: str
    needs: tuple[str, ...]  # fields of the scope's datapath it reads (ipvs, rules...; links, fdb...)
    run: Callable[[Any, NodeState], list[Finding]]


REGISTRY: list[Check] = []


def register_check(*ids: str, scope: str, needs: tuple[str, ...] = ()):
    unknown = [i for i in ids if i not in CHECKS] + ([scope] if scope not in SCOPES else [])
    if unknown:
        raise ValueError(f"register_check: unknown check id or scope {unknown}")

    def register(fn: Callable[[Any, NodeState], list[Finding]]):
        REGISTRY.append(Check(ids, scope, needs, fn))
        return fn
    return register


def run_checks(state: NodeState) -> list[Finding]:
    findings: list[Finding] = []
    for check in REGISTRY:
        for subject, dp in SCOPES[check.scope](state):
            if dp is None or all(getattr(dp, part) is not None for part in check.needs):
                found = check.run(subject, state)
                stray = {f.check for f in found} - set(check.ids)
                if stray:  # a programming error, caught by the tests: ids are declared where they fire
                    raise ValueError(f"{check.run.__name__} emitted {sorted(stray)}, not registered for it")
                findings += found
    return findings


# --- the load balancers: IPVS, marks, SNAT, aliases, sysctls, the ingress -------------

def _hint_ipvs(ns_path: str, service: str | None) -> str:
    cmd = f"nsenter --net={ns_path} ipvsadm -Ln"
    return f"{cmd}; docker service update --force {service}" if service else cmd


def _hint_rules(ns_path: str | None, table: str) -> str:
    prefix = f"nsenter --net={ns_path} " if ns_path else ""
    return f"{prefix}iptables-save -t {table}"


@register_check("fwmark-duplicate", scope="node")
def check_fwmark_duplicates(_: NodeState, state: NodeState) -> list[Finding]:
    """Every (network, service) pair of this node must have its own LocalLBIndex."""
    owners: dict[int, list[tuple[str, str]]] = {}
    for net in state.views:
        for svc in net.services.values():
            if svc.fwmark and svc.vip and svc.tasks:
                owners.setdefault(svc.fwmark, []).append((net.name, svc.name))
    findings = []
    for mark, users in sorted(owners.items()):
        if len(users) > 1:
            who = ", ".join(f"{s} on {n}" for n, s in users)
            findings.append(Finding(
                "fwmark-duplicate", f"LocalLBIndex {mark} is used by {who}",
                network=users[0][0], service=users[0][1], subject=str(mark),
                expected="one service per fwmark", actual=[f"{s}@{n}" for n, s in users],
                hint="docker network inspect -v <network> on this node; "
                     f"docker service update --force {users[-1][1]}"))
    return findings


def lb_namespace_name(view: NetworkView) -> str:
    return "ingress_sbox" if view.ingress else f"lb_{view.id[:9]}"


@register_check("lb-namespace-missing", scope="network")
def check_lb_namespace_present(view: NetworkView, state: NodeState) -> list[Finding]:
    """Since 18.06 a network with VIP services has one LB namespace on every node that has it."""
    if view.id not in state.lb_not_found or state.model.per_container or not view.vip_services():
        return []
    netns_dir = state.netns_dir
    name = lb_namespace_name(view)
    path = os.path.join(netns_dir, name)
    return [Finding("lb-namespace-missing", f"network {view.name} has VIP services but no "
                    f"load-balancer namespace {path} on this node", network=view.name,
                    namespace=name, subject=name, expected=path, actual=None,
                    hint=f"ls {netns_dir}; docker network inspect -v {view.name}")]


def departed_lb(lb: LoadBalancer, state: NodeState) -> tuple[dict[int, ServiceView], set[str]]:
    """What in this load balancer belongs to earlier incarnations of a name (separate_departed):
    mark -> incarnation for the IPVS services whose destinations are all its tasks (or the mark
    inspect showed for it), and the VIPs the mangle table marks with those marks."""
    net, dp = lb.network, lb.datapath
    if not net.departed:
        return {}, set()
    key = ("departed", dp.path)
    if key not in state.memo:
        owner = {t.ip: old for old in net.departed for t in old.tasks}
        marks = {old.fwmark: old for old in net.departed if old.fwmark}
        for ipvs in dp.ipvs or []:
            ips = {d.address for d in ipvs.dests}
            if ipvs.fwmark and ips and ips <= owner.keys():
                marks.setdefault(ipvs.fwmark, owner[min(ips)])
        current = net.vip_services()
        for svc in current:
            marks.pop(svc.fwmark, None)
        vips = {old.vip for old in net.departed if old.vip} | {
            rule.dst.split("/")[0] for rule in _marks_in(dp.rules or {}, "mangle", state.model.mark_chain)
            if rule.dst and rule.mark and rule.mark[0] in marks}
        state.memo[key] = (marks, vips - {s.vip for s in current})
    return state.memo[key]


def adopt_marks(state: NodeState) -> None:
    """A service whose mark inspect could not show (it showed an earlier incarnation's): the
    mark its VIP's MARK rule sets in the network's load balancer, if exactly one rule does."""
    for lb in state.lbs:
        for svc in lb.network.services.values():
            if svc.mark_unknown and svc.vip and not svc.fwmark:
                rules = [r for r in _marks_in(lb.datapath.rules or {}, "mangle", state.model.mark_chain)
                         if r.dst == f"{svc.vip}/32" and r.mark]
                if len({r.mark for r in rules}) == 1:
                    svc.fwmark = rules[0].mark[0]


def _departed_weights(old: ServiceView, ipvs: IpvsService, state: NodeState, dp: Datapath,
                      where: dict) -> list[Finding]:
    """An earlier incarnation's backends: swarm is stopping them, so weight 0 (or already gone)."""
    svc = dataclasses.replace(old, fwmark=ipvs.fwmark)
    by_ip = {t.ip: t for t in old.tasks}
    return [f for dest in ipvs.dests if dest.address in by_ip
            for f in _check_weight(svc, by_ip[dest.address], dest, state, dp, where)]


IPVS_IDS = ("ipvs-service-missing", "ipvs-service-stale", "ipvs-service-config", "ipvs-backend-missing",
            "ipvs-backend-stale", "ipvs-backend-weight", "ipvs-backend-forwarding")


@register_check(*IPVS_IDS, scope="lb", needs=("ipvs",))
def check_ipvs(lb: LoadBalancer, state: NodeState) -> list[Finding]:
    """Each VIP service's IPVS firewall-mark service and its destinations, and no others."""
    net, dp, services = lb.network, lb.datapath, lb.network.vip_services()
    findings: list[Finding] = []
    where = {"network": net.name, "namespace": dp.name}
    by_mark = dp.ipvs_by_mark
    owner_of_ip = {t.ip: svc.name for svc in net.services.values() for t in svc.tasks}
    want_fwd = "Route" if net.dsr else "Masq"
    for svc in services:
        if svc.fwmark < FIRST_FWMARK:
            why = (f"network inspect showed an earlier service's VIP and mark under its name, and no "
                   f"MARK rule in {dp.name} marks its VIP {svc.vip}" if svc.mark_unknown else
                   f"LocalLBIndex {svc.fwmark}")
            findings.append(Finding(
                "ipvs-service-missing", f"service {svc.name} has no local load-balancer binding "
                f"({why})", service=svc.name, subject=str(svc.fwmark),
                expected=f">= {FIRST_FWMARK}", actual=svc.fwmark,
                hint=f"docker service update --force {svc.name}", **where))
            continue
        ipvs = by_mark.get(svc.fwmark)
        if ipvs is None:
            findings.append(Finding(
                "ipvs-service-missing", f"service {svc.name} (VIP {svc.vip}): no IPVS service "
                f"FWM {svc.fwmark} in {dp.name}", service=svc.name, subject=str(svc.fwmark),
                expected=f"FWM {svc.fwmark}", actual=None,
                hint=_hint_ipvs(dp.path, svc.name), **where))
            continue
        wrong = []
        if ipvs.family != AF_INET:
            wrong.append(f"address family {ipvs.family} (expected {AF_INET}, IPv4)")
        if ipvs.scheduler != "rr":
            wrong.append(f"scheduler {ipvs.scheduler!r} (expected 'rr')")
        if ipvs.flags & IP_VS_SVC_F_PERSISTENT or ipvs.timeout:
            wrong.append(f"persistent, timeout {ipvs.timeout}s (expected none)")
        if wrong:
            findings.append(Finding(
                "ipvs-service-config", f"service {svc.name}: FWM {svc.fwmark} has "
                + "; ".join(wrong), service=svc.name, subject=str(svc.fwmark),
                expected={"family": AF_INET, "scheduler": "rr", "persistent": False},
                actual={"family": ipvs.family, "scheduler": ipvs.scheduler,
                        "persistent": bool(ipvs.flags & IP_VS_SVC_F_PERSISTENT),
                        "timeout": ipvs.timeout},
                hint=_hint_ipvs(dp.path, svc.name), **where))
        findings += _check_backends(svc, ipvs, owner_of_ip, want_fwd, state, dp, where)
    wanted = {s.fwmark for s in services}
    departed, _ = departed_lb(lb, state)
    for ipvs in dp.ipvs or []:
        if ipvs.fwmark and ipvs.fwmark in wanted:
            continue
        if ipvs.fwmark in departed:
            findings += _departed_weights(departed[ipvs.fwmark], ipvs, state, dp, where)
            continue
        findings.append(Finding(
            "ipvs-service-stale", f"IPVS service {ipvs.label()} in {dp.name} belongs to no "
            f"current VIP service of network {net.name}", subject=ipvs.label(),
            expected=None, actual={"service": ipvs.label(),
                                   "destinations": [d.address for d in ipvs.dests]},
            hint=_hint_ipvs(dp.path, None), **where))
    return findings


@register_check("mark-missing", "mark-stale", "mark-conflict", scope="lb", needs=("rules",))
def check_marks(lb: LoadBalancer, state: NodeState) -> list[Finding]:
    """The MARK rules of each VIP, and in ingress of each published port."""
    net, dp, services = lb.network, lb.datapath, lb.network.vip_services()
    departed = set(departed_lb(lb, state)[0])  # an earlier incarnation's rules, until it is gone
    findings = _check_vip_marks(net, dp, services, state.model.mark_chain, departed)
    if net.ingress:
        findings += _check_port_marks(net, dp, services, departed)
    return findings


@register_check("snat-missing", scope="lb", needs=("rules", "ipvs"))
def check_snat(lb: LoadBalancer, state: NodeState) -> list[Finding]:
    """NAT mode's SNAT rule (it needs the kernel's ipvs match: without IPVS it cannot exist)."""
    if lb.network.dsr or not lb.network.vip_services():
        return []
    net, dp, lb_ip = lb.network, lb.datapath, lb.lb_ip
    rules = [r for r in (dp.rules or {}).get("nat", {}).get("POSTROUTING", [])
             if r.target == "SNAT" and "ipvs" in r.matches and r.opts.get("--ipvs") is True]
    subnets = {_network(s) for s in net.subnets}
    good = [r for r in rules if r.dst in subnets
            and (lb_ip is None or (r.get("--to-source") or "").split(":")[0] == lb_ip)]
    if good:
        return []
    expected = (f"-A POSTROUTING -d {net.subnets[0] if net.subnets else '<subnet>'} -m ipvs "
                f"--ipvs -j SNAT --to-source {lb_ip or '<LB IP>'}")
    return [Finding("snat-missing", f"network {net.name} (NAT mode): no IPVS SNAT rule to the "
                    f"load-balancer address {lb_ip or '?'} in nat POSTROUTING of {dp.name}",
                    network=net.name, namespace=dp.name, subject="POSTROUTING",
                    expected=expected, actual=[r.text for r in rules] or None,
                    hint=_hint_rules(dp.path, "nat"))]


@register_check("vip-alias-missing", "vip-alias-stale", scope="lb", needs=("addresses",))
def check_aliases(lb: LoadBalancer, state: NodeState) -> list[Finding]:
    """Each VIP as a /32 alias on the load-balancer interface (not in per-container era)."""
    if not lb.expect_aliases:
        return []
    net, dp, services, lb_ip = lb.network, lb.datapath, lb.network.vip_services(), lb.lb_ip
    where = {"network": net.name, "namespace": dp.name}
    addresses = dp.addresses or {}
    iface = next((name for name, addrs in addresses.items()
                  if lb_ip and any(ip == lb_ip for ip, _ in addrs)), None)
    if iface is None:
        iface = "eth0" if "eth0" in addresses else None
    have = {ip for ip, plen in addresses.get(iface, []) if plen == 32} if iface else set()
    findings = []
    hint = f"nsenter --net={dp.path} ip -4 addr show"
    for svc in services:
        if svc.vip not in have:
            findings.append(Finding(
                "vip-alias-missing", f"VIP {svc.vip} of service {svc.name} is not a /32 on "
                f"{iface or 'the load-balancer interface'} of {dp.name}", service=svc.name,
                subject=svc.vip, expected=f"{svc.vip}/32", actual=sorted(have), hint=hint, **where))
    vips = {s.vip for s in services}
    for ip in sorted(have - vips - {lb_ip} - departed_lb(lb, state)[1]):
        findings.append(Finding(
            "vip-alias-stale", f"{ip}/32 on {iface} of {dp.name} is no current VIP of network "
            f"{net.name}", subject=ip, expected=sorted(vips), actual=f"{ip}/32", hint=hint, **where))
    return findings


@register_check("sysctl", scope="lb", needs=("ipvs", "sysctls"))
def check_sysctls(lb: LoadBalancer, state: NodeState) -> list[Finding]:
    """The IPVS sysctls this engine version sets in its load-balancer namespaces."""
    net, dp, model = lb.network, lb.datapath, state.model
    if not net.vip_services():
        return []
    findings = []
    for name, want in model.lb_sysctls(nat_mode=not net.dsr).items():
        have = (dp.sysctls or {}).get(name)
        if have != want:
            findings.append(Finding(
                "sysctl", f"net.ipv4.vs.{name} is {have} in {dp.name}, engine "
                f"{model.version} sets {want}", network=net.name, namespace=dp.name, subject=name,
                expected=want, actual=have, hint=f"nsenter --net={dp.path} sysctl net.ipv4.vs"))
    return findings


def _check_backends(svc: ServiceView, ipvs: IpvsService, owner_of_ip: dict[str, str],
                    want_fwd: str, state: NodeState, dp: Datapath, where: dict) -> list[Finding]:
    findings = []
    swarm_tasks = state.swarm_tasks
    dests = {d.address: d for d in ipvs.dests}
    for task in svc.tasks:
        dest = dests.get(task.ip)
        swarm_task = (swarm_tasks or {}).get(task.task_id)
        if dest is None and swarm_task is not None and swarm_task.stopping:
            # Being stopped: its backend is weight 0, or (25.0.13+, 29.0+: a node that learns of
            # the task already disabled programs none) absent. Either way no traffic is lost.
            continue
        if dest is None:
            after = (f" (its published ports changed in its last update, {svc.ports_changed}: "
                     "the engine builds a new load balancer for the new ports and can lose "
                     "backends on the way, cf. moby#38833)" if svc.ports_changed else "")
            findings.append(Finding(
                "ipvs-backend-missing", f"task {task.name} ({task.ip}) is not a destination "
                f"of FWM {svc.fwmark}{after}", service=svc.name, subject=task.ip,
                expected=task.ip, actual=sorted(dests), hint=_hint_ipvs(dp.path, svc.name), **where))
            continue
        findings += _check_weight(svc, task, dest, state, dp, where)
        if dest.forwarding != want_fwd:
            findings.append(Finding(
                "ipvs-backend-forwarding", f"task {task.name} ({task.ip}) in FWM {svc.fwmark} "
                f"uses {dest.forwarding} forwarding, expected {want_fwd}", service=svc.name,
                subject=task.ip, expected=want_fwd, actual=dest.forwarding,
                hint=_hint_ipvs(dp.path, svc.name), **where))
    task_ips = {t.ip for t in svc.tasks}
    for address in sorted(set(dests) - task_ips):
        other = owner_of_ip.get(address)
        whose = f"it is a task of service {other}" if other else "it is no task of this network"
        findings.append(Finding(
            "ipvs-backend-stale", f"destination {address} of FWM {svc.fwmark} is no task of "
            f"service {svc.name}: {whose}", service=svc.name, subject=address,
            expected=sorted(task_ips), actual=address, hint=_hint_ipvs(dp.path, svc.name), **where))
    return findings


def _check_weight(svc: ServiceView, task: TaskView, dest: IpvsDest, state: NodeState, dp: Datapath,
                  where: dict) -> list[Finding]:
    """Weight 1 carries traffic; weight 0 is a task swarm is stopping (18.03.1+), or one failing
    its health check that the executor has disabled and is stopping (swarm says running)."""
    swarm_task = (state.swarm_tasks or {}).get(task.task_id)
    stopping = swarm_task is not None and swarm_task.stopping
    if dest.weight not in (0, 1):
        wrong = f"weight {dest.weight}, the engine only sets 0 or 1"
    elif dest.weight == 0 and swarm_task is not None and not stopping and swarm_task.state == "running":
        if health_drain(task, svc.name, state):
            return []  # said in a note (health_notes)
        wrong = "weight 0 though swarm wants it running"
        if task.task_id in state.local_health:
            health = state.local_health[task.task_id] or "without a health check"
            wrong += f" (its container on this node is {health})"
    elif dest.weight == 1 and stopping and swarm_task.state == "running":
        wrong = f"weight 1 though swarm is stopping it (desired state {swarm_task.desired_state})"
    else:
        return []
    expected = 0 if stopping else 1
    return [Finding("ipvs-backend-weight", f"task {task.name} ({task.ip}) in FWM {svc.fwmark}: "
                    f"{wrong}", service=svc.name, subject=task.ip, expected=expected,
                    actual=dest.weight, hint=f"docker service ps {svc.name}; "
                    + _hint_ipvs(dp.path, svc.name), **where)]


def health_drain(task: TaskView, service: str, node: NodeState) -> str | None:
    """Why a task swarm runs may be disabled (weight 0, its records removed) for failing its
    health check, or None. Its own node's container health decides; elsewhere the service's
    declared health check makes it possible, for as long as the stop grace period."""
    if task.task_id in node.local_health:
        return "its container on this node is unhealthy" if node.local_health[task.task_id] == "unhealthy" \
            else None
    grace = (node.health_checked or {}).get(service)
    if grace is None:
        return None
    return (f"service {service} has a health check: a task failing it is taken out of service before "
            f"swarm stops it, within its stop grace period ({grace:g} s)")


def disabled_while_running(state: NodeState
                           ) -> Iterator[tuple[LoadBalancer, ServiceView, TaskView, SwarmTask]]:
    """Backends at weight 0 in a load balancer here whose task swarm runs and does not stop."""
    for lb in state.lbs:
        for svc in lb.network.vip_services():
            ipvs = lb.datapath.ipvs_by_mark.get(svc.fwmark) if svc.fwmark else None
            zero = {d.address for d in (ipvs.dests if ipvs else []) if d.weight == 0}
            if not zero:
                continue
            for task in svc.tasks:
                known = (state.swarm_tasks or {}).get(task.task_id) if task.ip in zero else None
                if known is not None and not known.stopping and known.state == "running":
                    yield lb, svc, task, known


def health_notes(state: NodeState) -> list[str]:
    """The backends at weight 0 that swarm still runs, excused as failing their health check."""
    notes = []
    for lb, svc, task, _ in disabled_while_running(state):
        why = health_drain(task, svc.name, state)
        if why:
            notes.append(f"network {lb.network.name}: task {task.name} ({task.ip}) is at weight 0 in "
                         f"{lb.datapath.name} while swarm says it runs: {why}. If it stays so "
                         f"longer, see docker service ps {svc.name} and its container's "
                         "State.Health (docker inspect, on its node)")
    return notes


def _marks_in(rules: Ruleset, table: str, chain: str) -> list[Rule]:
    return [r for r in rules.get(table, {}).get(chain, []) if r.target == "MARK"]


def _mark_findings(rules_for: list[Rule], fwmark: int, what: str, svc: ServiceView,
                   subject: str, dp: Datapath, where: dict) -> list[Finding]:
    hint = _hint_rules(dp.path, "mangle")
    if not rules_for:
        return [Finding("mark-missing", f"no MARK rule for {what} of service {svc.name} "
                        f"(expected mark {fwmark:#x})", service=svc.name, subject=subject,
                        expected=hex(fwmark), actual=None, hint=hint, **where)]
    marks = [r.mark for r in rules_for]
    if len(rules_for) > 1 or marks[0] != (fwmark, 0xFFFFFFFF):
        shown = ", ".join(f"{m[0]:#x}/{m[1]:#x}" if m else "?" for m in marks)
        return [Finding("mark-conflict", f"{what} of service {svc.name}: {len(rules_for)} MARK "
                        f"rule(s) setting {shown}, expected one setting {fwmark:#x}",
                        service=svc.name, subject=subject, expected=hex(fwmark),
                        actual=[r.text for r in rules_for], hint=hint, **where)]
    return []


def _check_vip_marks(net: NetworkView, dp: Datapath, services: list[ServiceView],
                     chain: str, departed: set[int]) -> list[Finding]:
    findings: list[Finding] = []
    where = {"network": net.name, "namespace": dp.name}
    marks = [r for r in _marks_in(dp.rules or {}, "mangle", chain)
             if r.dst and not (r.mark and r.mark[0] in departed)]
    by_dst: dict[str, list[Rule]] = {}
    for rule in marks:  # indexed: thousands of services must not mean services x rules
        by_dst.setdefault(rule.dst, []).append(rule)
    for svc in services:
        if svc.fwmark < FIRST_FWMARK:
            continue
        mine = by_dst.get(f"{svc.vip}/32", [])
        findings += _mark_findings(mine, svc.fwmark, f"VIP {svc.vip} (mangle {chain})", svc,
                                   f"{svc.vip}/32", dp, where)
    vips = {f"{s.vip}/32" for s in services}
    for rule in marks:
        if rule.dst not in vips:
            findings.append(Finding(
                "mark-stale", f"mangle {chain} marks {rule.dst}, which is no current VIP of "
                f"network {net.name}", subject=rule.dst, expected=None, actual=rule.text,
                hint=_hint_rules(dp.path, "mangle"), **where))
    return findings


def _check_port_marks(net: NetworkView, dp: Datapath, services: list[ServiceView],
                      departed: set[int]) -> list[Finding]:
    """ingress_sbox: mangle PREROUTING -p proto --dport P -j MARK, one per published port."""
    findings: list[Finding] = []
    where = {"network": net.name, "namespace": dp.name}
    marks = [r for r in _marks_in(dp.rules or {}, "mangle", "PREROUTING")
             if r.port("--dport") and not (r.mark and r.mark[0] in departed)]
    owned = set()
    for svc in services:
        if svc.fwmark < FIRST_FWMARK:
            continue
        for port in svc.ports:
            mine = [r for r in marks if r.port("--dport") == port.published
                    and (port.protocol is None or r.proto == port.protocol)]
            owned.update(id(r) for r in mine)
            if port.protocol is not None or not mine:
                findings += _mark_findings(mine, svc.fwmark, f"published port {port.label()}", svc,
                                           port.label(), dp, where)
                continue
            # A worker cannot tell 53/tcp from 53/udp (inspect shows no protocol) and the engine
            # writes one MARK rule per protocol: judge each protocol's rules on their own.
            by_proto: dict[str | None, list[Rule]] = {}
            for rule in mine:
                by_proto.setdefault(rule.proto, []).append(rule)
            for proto, rules_for in sorted(by_proto.items(), key=lambda kv: kv[0] or ""):
                label = f"{port.published}/{proto or 'any'}"
                findings += _mark_findings(rules_for, svc.fwmark, f"published port {label}", svc,
                                           label, dp, where)
    for rule in marks:
        if id(rule) not in owned:
            label = f"{rule.port('--dport')}/{rule.proto}"
            findings.append(Finding(
                "mark-stale", f"mangle PREROUTING marks port {label}, which no current service "
                "publishes", subject=label, expected=None, actual=rule.text,
                hint=_hint_rules(dp.path, "mangle"), **where))
    return findings


# --- swarm against NetworkDB: its tasks and VIPs in this node's view ------------------
# On a manager, /tasks and /services say what swarm runs; network inspect -v what NetworkDB on
# this node holds. Swarm and NetworkDB converge asynchronously: a task is judged only once its
# state is older than the window (its Status.Timestamp against the sample's clock).

CONVERGENCE_WINDOW = 60.0  # seconds


def _settled(task: SwarmTask, state: NodeState) -> bool:
    since = task.since
    return since is not None and state.now is not None and state.now - since >= CONVERGENCE_WINDOW


def _node_label(state: NodeState, node_id: str) -> str:
    node = (state.swarm_nodes or {}).get(node_id)
    return f"{node.hostname} ({node.state})" if node else node_id[:12] or "no node"


def _orchestrator_finding(check: str, message: str, view: NetworkView, service: str | None,
                          subject: str, expected: Any, actual: Any) -> Finding:
    return Finding(check, message, network=view.name, service=service, subject=subject, expected=expected,
                   actual=actual, hint=f"docker service ps {service or '<service>'} --no-trunc; "
                                       f"docker network inspect -v {view.name}")


def left_gossip(view: NetworkView, state: NodeState) -> dict[str, SwarmNode]:
    """Nodes swarm calls ready, running a settled task on the network that NetworkDB on this
    node does not list, and that it no longer lists among the network's peers either (compared by
    address: peers are named by NetworkDB's own node IDs). A stopped dockerd leaves the gossip at
    once, while swarm calls its node ready until its heartbeats are missed; a cut gossip port
    (7946) leaves it ready for good. Judged only where this node finds itself among the peers,
    so that the addresses compare."""
    key = ("left_gossip", view.id)
    if key not in state.memo:
        peers = {ip for _, ip in view.peers}
        listed = {t.task_id for svc in view.services.values() for t in svc.tasks}
        left: dict[str, SwarmNode] = {}
        # the ready nodes missing from the peers: none, mostly, and then no task is looked at
        outside = {node_id: node for node_id, node in (state.swarm_nodes or {}).items()
                   if node.state == "ready" and node.addr and node.addr not in peers}
        if state.swarm_tasks is not None and state.node_addr in peers and outside:
            for task in state.swarm_tasks.values():
                node = outside.get(task.node_id)
                if node is not None and view.id in task.addresses and task.state == "running" \
                        and not task.stopping and task.id not in listed and _settled(task, state):
                    left[node.id] = node
        state.memo[key] = left
    return state.memo[key]


def gossip_leavers(state: NodeState) -> list[str]:
    """The hostnames of the nodes that have left this node's gossip on some network while swarm
    still calls them ready (left_gossip), for the node check to look again past swarm's heartbeat."""
    return sorted({node.hostname or node.id[:12] for view in state.views
                   for node in left_gossip(view, state).values()})


@register_check("swarm-task-missing", "task-ip-mismatch", scope="network")
def check_swarm_tasks(view: NetworkView, state: NodeState) -> list[Finding]:
    """Every task swarm runs on the network, settled, on a node that is up: NetworkDB lists it,
    at the address swarm allocated it."""
    if state.swarm_tasks is None:
        return []
    listed = {t.task_id: (svc.name, t) for svc in view.services.values() for t in svc.tasks}
    judged: list[tuple[str, Finding]] = []  # by task ID: in that order, whatever swarm's order
    for task in state.swarm_tasks.values():
        ip = task.addresses.get(view.id)
        if not ip:
            continue
        entry = listed.get(task.id)
        if entry is not None and entry[1].ip == ip:
            continue  # listed where swarm put it: nothing to judge, whatever its age
        node = (state.swarm_nodes or {}).get(task.node_id)
        if task.state != "running" or task.stopping or not _settled(task, state) or (
                node is not None and node.state != "ready"):
            continue
        service = (state.service_names or {}).get(task.service)
        if entry is None:
            finding = _orchestrator_finding(
                "swarm-task-missing", f"network {view.name}: swarm runs task {task.id[:12]} "
                f"{'of ' + service + ' ' if service else ''}on {_node_label(state, task.node_id)} at {ip}, "
                "but NetworkDB on this node does not list it", view, service, ip, "listed", "absent")
            gone = left_gossip(view, state).get(task.node_id)
            if gone is not None:
                finding.message += (f"; nor does it list {gone.hostname} ({gone.addr}) among the network's "
                                    "peers: that node's gossip with this one is cut (TCP and UDP 7946 "
                                    "between them), or its dockerd stopped and swarm has not marked it "
                                    "down yet")
                finding.hint = (f"docker node ls (a stopped node turns Down within 3 heartbeats); "
                                f"ssd {view.name} gossip-consistency")
            judged.append((task.id, finding))
        else:  # listed at another address
            judged.append((task.id, _orchestrator_finding(
                "task-ip-mismatch", f"network {view.name}: task {entry[1].name} is at {ip} for swarm but "
                f"at {entry[1].ip} in NetworkDB", view, entry[0], entry[1].ip, ip, entry[1].ip)))
    return [finding for _, finding in sorted(judged, key=lambda pair: pair[0])]


@register_check("networkdb-task-zombie", scope="network")
def check_zombies(view: NetworkView, state: NodeState) -> list[Finding]:
    """A task NetworkDB still lists, that swarm says stopped (or whose node is down), settled."""
    if state.swarm_tasks is None:
        return []
    findings = []
    for svc in sorted([*view.services.values(), *view.departed], key=lambda s: s.name):
        for entry in svc.tasks:
            task = state.swarm_tasks.get(entry.task_id)
            if task is None:
                continue  # unknown to swarm: see zombie_notes (no time to judge it by)
            node = (state.swarm_nodes or {}).get(task.node_id)
            if task.state in TERMINAL:
                why = f"swarm says it is {task.state} (desired {task.desired_state})"
            elif node is not None and node.state == "down" and node.since is not None and \
                    state.now - node.since >= CONVERGENCE_WINDOW:
                why = f"its node {node.hostname} is down"
            else:
                continue
            if not _settled(task, state):
                continue
            findings.append(_orchestrator_finding(
                "networkdb-task-zombie", f"network {view.name}: NetworkDB on this node lists task "
                f"{entry.name} ({entry.ip}), but {why}", view, svc.name, entry.ip, "not listed",
                f"{entry.name} {entry.ip}"))
    return findings


def zombie_notes(views: list[NetworkView], state: NodeState) -> list[str]:
    """Tasks NetworkDB lists that swarm does not know at all: a service just removed (they
    leave within seconds), or tasks left behind (20.10 keeps a removed job's running tasks)."""
    if state.swarm_tasks is None:
        return []
    notes = []
    for view in views:
        unknown = sorted(t.name for svc in view.services.values() for t in svc.tasks
                         if t.task_id not in state.swarm_tasks)
        if unknown:
            notes.append(f"network {view.name}: NetworkDB lists {count(len(unknown), 'task')} swarm "
                         "does not know "
                         f"({', '.join(unknown[:3])}{', ...' if len(unknown) > 3 else ''}): their service "
                         "was removed; if they stay, they are orphans (docker ps on their node)")
    return notes


@register_check("duplicate-ip", scope="network")
def check_duplicate_ips(view: NetworkView, state: NodeState) -> list[Finding]:
    def holders() -> Iterator[tuple[str | None, str, str, str]]:  # IP, key, label's two halves
        for svc in view.services.values():
            yield svc.vip, f"vip:{svc.name}", "VIP of ", svc.name
            for t in svc.tasks:
                yield t.ip, t.endpoint_id or t.name, "task ", t.name
        for t in view.others:
            yield t.ip, t.endpoint_id or t.name, "endpoint ", t.name or t.endpoint_id[:12]
        lb = view.lb_endpoint
        if lb:
            yield lb.ip, lb.endpoint_id or view.lb_key, "this node's load balancer ", view.lb_key
    # Labels are made only for the addresses held twice: one label per endpoint, 25,000 at 5000 x 4,
    # was most of this check's time.
    first: dict[str, tuple[str, str, str]] = {}  # IP -> its first holder's key and label halves
    clashes: dict[str, dict[str, str]] = {}  # IP held by two keys or more -> key -> label
    for ip, key, what, name in holders():
        if not ip:
            continue
        held = first.setdefault(ip, (key, what, name))
        if held[0] != key:
            clashes.setdefault(ip, {held[0]: held[1] + held[2]}).setdefault(key, what + name)
    findings = []
    for ip, who in sorted(clashes.items()):
        if len(who) > 1:
            labels = sorted(who.values())
            findings.append(Finding(
                "duplicate-ip", f"network {view.name}: {ip} is held by {' and '.join(labels)}",
                network=view.name, subject=ip, expected="one endpoint", actual=labels,
                hint=f"docker network inspect -v {view.name}"))
    return findings


@register_check("networkdb-peer-missing", scope="network")
def check_peer_records(view: NetworkView, state: NodeState) -> list[Finding]:
    """Every endpoint NetworkDB lists carries the Host IP of its node's peer record. A peer record
    is published before the endpoint's entry and withdrawn after it: one without it is no
    transient (a finding must still show in both samples of a run to count)."""
    lacking = [t for t in view.all_endpoints() if not t.host_ip]  # (then sorted: none, usually)
    if not lacking:
        return []
    owner = {t.endpoint_id: svc.name for svc in view.services.values() for t in svc.tasks}
    findings = []
    for task in sorted(lacking, key=lambda t: (t.name, t.ip)):
        service = owner.get(task.endpoint_id)
        findings.append(Finding(
            "networkdb-peer-missing", f"network {view.name}: NetworkDB on this node lists "
            f"{'task' if service else 'endpoint'} {task.name or task.endpoint_id[:12]} ({task.ip}) with no "
            "Host IP: no overlay peer record leads to it, so no node programs a neighbour or FDB entry "
            "towards it while load balancers send it traffic (moby#35671)", network=view.name,
            service=service, subject=task.ip, expected="a Host IP (its node's peer record)", actual=None,
            hint=f"docker network inspect -v {view.name}; docker service ps {service or '<service>'}"))
    return findings


@register_check("vip-mismatch", scope="network")
def check_vips(view: NetworkView, state: NodeState) -> list[Finding]:
    if state.service_vips is None:
        return []
    findings = []
    for svc in sorted(view.services.values(), key=lambda s: s.name):
        swarm = state.service_vips.get(svc.name, {}).get(view.id)
        if not swarm or not svc.vip or svc.ipv6:
            continue
        if len(swarm) > 1 or svc.vip not in swarm:
            findings.append(_orchestrator_finding(
                "vip-mismatch", f"network {view.name}: service {svc.name} has VIP {svc.vip} in NetworkDB, "
                f"swarm allocated it {', '.join(swarm)}", view, svc.name, svc.vip, swarm, svc.vip))
    return findings


# --- converging: what swarm itself has not finished, on a manager ---------------------
# A deployment in progress moves the datapath while ssd looks. A finding about a service swarm is
# updating, whose tasks it is starting or stopping, or about a node that just went down or came
# back, is kept but marked converging: its own verdict, not a page. What persists once swarm
# says it has converged is inconsistent.

STARTING_STATES = frozenset({"new", "pending", "assigned", "accepted", "preparing", "ready", "starting"})


def converging_reason(finding: Finding, state: NodeState) -> str | None:
    """Why swarm has not converged for what the finding concerns, or None (or not a manager)."""
    if state.swarm_tasks is None:
        return None
    by_ip = state.memo.get("task-by-ip")
    if by_ip is None:
        by_ip = state.memo["task-by-ip"] = {t.ip: (svc.name, t) for v in state.views
                                            for svc in v.services.values() for t in svc.tasks}
    subject = (finding.subject or "").split()[-1] if finding.subject else ""
    services = {finding.service} if finding.service else set()
    if subject in by_ip:
        services.add(by_ip[subject][0])
    for name in sorted(services):
        if name in state.updating:
            return f"swarm is updating service {name} (update {state.updating[name]})"
        moving = _moving_tasks(name, state)
        if moving:
            return f"swarm is still {moving} of service {name}"
    return _node_moving(subject, by_ip, state)


def _moving_tasks(service: str, state: NodeState) -> str | None:
    # The service of that name, and its earlier incarnations (docker stack rm, then deploy):
    # swarm is still stopping their tasks, each node in its own time (lab, 2026-12-06: one of
    # three at weight 1 in the earlier load balancer on both samples, 25 s after the rm).
    ids = {sid for sid, name in (state.service_names or {}).items() if name == service}
    ids |= {svc.service_id for view in state.views for svc in view.departed
            if svc.name == service and svc.service_id}
    tasks = [t for t in (state.swarm_tasks or {}).values() if t.service in ids]
    starting = sum(1 for t in tasks if not t.stopping and t.state in STARTING_STATES)
    stopping = sum(1 for t in tasks if t.stopping and t.state in STARTING_STATES | {"running"})
    words = [f"{what} {count(n, 'task')}"
             for what, n in (("starting", starting), ("stopping", stopping)) if n]
    return " and ".join(words) or None


def _node_moving(subject: str, by_ip: dict, state: NodeState) -> str | None:
    """A node that is not ready, or changed its state within the convergence window: the
    finding's task runs there, or the finding names the node's address."""
    node = None
    if subject in by_ip:
        task = (state.swarm_tasks or {}).get(by_ip[subject][1].task_id)
        node = (state.swarm_nodes or {}).get(task.node_id) if task else None
    if node is None and subject:
        node = next((n for n in (state.swarm_nodes or {}).values() if n.addr == subject), None)
    if node is None:
        return None
    recent = node.since is not None and state.now is not None and state.now - node.since < CONVERGENCE_WINDOW
    if node.state != "ready" and (recent or node.since is None):
        return f"node {node.hostname} is {node.state}"
    if recent:
        return f"node {node.hostname} changed state {state.now - node.since:.0f} s ago (now {node.state})"
    return None


def mark_converging(findings: list[Finding], state: NodeState) -> list[Finding]:
    for finding in findings:
        finding.converging = converging_reason(finding, state)
    return findings


# A worker cannot ask swarm what it has not finished, but it sees its own NetworkDB and load
# balancers move. In the soak (2026-12-02, 28.5.2) most pages during a deployment came from
# workers: a task NetworkDB listed that IPVS did not carry yet, both samples, while the engine
# was still working through the update. A finding about a service whose NetworkDB entries or
# load-balancer destinations changed between the node's two samples is about work still under
# way here: kept, and marked converging (a manager's as well, when swarm's word did not say so).

@dataclass
class Motion:
    """What one sample saw of each service, to compare with the other sample."""
    services: dict[tuple[str, str], tuple] = field(default_factory=dict)  # (network, service) -> state
    owners: dict[tuple[str, str], str] = field(default_factory=dict)  # (network, task IP) -> service


def motion_of(state: NodeState, findings: list[Finding]) -> Motion:
    """What this sample saw of the services the findings concern (none: nothing to keep, which
    spares the memory of a big swarm's every service on a consistent run)."""
    motion = Motion()
    if not findings:
        return motion
    subjects = {(f.network or "", f.subject.split()[-1]) for f in findings if f.subject}
    wanted = {(f.network or "", f.service) for f in findings if f.service}
    for view in state.views:
        for svc in [*view.services.values(), *view.departed]:
            for task in svc.tasks:
                if (view.name, task.ip) in subjects:
                    motion.owners[(view.name, task.ip)] = svc.name
                    wanted.add((view.name, svc.name))
    for view in state.views:
        for svc in [*view.services.values(), *view.departed]:
            key = (view.name, svc.name)
            if key in wanted:
                tasks = tuple(sorted((t.ip, t.host_ip or "", t.endpoint_id) for t in svc.tasks))
                motion.services[key] = (*motion.services.get(key, ()), svc.vip, svc.fwmark, tasks)
    for lb in state.lbs:
        if lb.datapath.ipvs is None:
            continue
        for svc in lb.network.services.values():
            key = (lb.network.name, svc.name)
            if key not in wanted:
                continue
            ipvs = lb.datapath.ipvs_by_mark.get(svc.fwmark) if svc.fwmark else None
            dests = tuple(sorted((d.address, d.weight) for d in ipvs.dests)) if ipvs else None
            motion.services[key] = (*motion.services.get(key, ()), lb.datapath.name, dests)
    return motion


def moved(finding: Finding, before: Motion, after: Motion) -> str | None:
    """How this node's state for what the finding concerns changed between two samples, or None."""
    net = finding.network or ""
    subject = (finding.subject or "").split()[-1] if finding.subject else ""
    was, now = before.owners.get((net, subject)), after.owners.get((net, subject))
    if subject and was != now:
        went = f"left service {was}" if now is None else (
            f"joined service {now}" if was is None else f"moved from service {was} to {now}")
        return f"task address {subject} {went} in this node's NetworkDB between its two samples"
    for service in sorted({s for s in (finding.service, was, now) if s}):
        key = (net, service)
        if before.services.get(key) != after.services.get(key):
            return (f"this node's NetworkDB entries or load balancers for service {service} "
                    "changed between its two samples: the node is still applying an update")
    return None


# --- the overlay: VXLAN device, neighbours and FDB against NetworkDB ------------------

def vxlan_mtu(view: NetworkView) -> int:
    """drivers/overlay maxMTU(): the network's MTU (1500) less VXLAN, and ESP when encrypted."""
    mtu = (view.mtu or 1500) - 50
    if view.encrypted:
        mtu -= 26
        mtu -= mtu % 4
    return mtu


def local_vteps(view: NetworkView, state: NodeState) -> frozenset[str]:
    """This node's VTEP addresses: its advertise address, and the Host IP NetworkDB gives its
    own endpoints (the data-path address, when --data-path-addr sets one). Once per network and
    sample: a dozen checks and reports ask, each a pass over 20,000 endpoints on a big swarm."""
    key = ("local_vteps", view.id)
    if key not in state.memo:
        mine = {ep.endpoint_id for ep in view.endpoints.values()}
        state.memo[key] = frozenset({t.host_ip for t in view.all_endpoints() if t.endpoint_id in mine
                                     and t.host_ip} | ({state.node_addr} if state.node_addr else set()))
    return state.memo[key]


def remote_endpoints(view: NetworkView, state: NodeState) -> dict[str, TaskView]:
    """IP -> endpoint for every endpoint NetworkDB places on another node: what the overlay
    driver must have programmed here (its peer table, drivers/overlay/joinleave.go). Computed
    once per network and sample; callers only read it."""
    key = ("remote_endpoints", view.id)
    if key not in state.memo:
        mine = {ep.endpoint_id for ep in view.endpoints.values()}
        local_ips = {ep.ip for ep in view.endpoints.values()}
        vteps = local_vteps(view, state)
        state.memo[key] = {t.ip: t for t in view.all_endpoints()
                           if t.endpoint_id not in mine and t.ip not in local_ips and t.host_ip
                           and t.host_ip not in vteps}
    return state.memo[key]


def _overlay_finding(check: str, message: str, view: NetworkView, ov: OverlayDatapath,
                     subject: str | None, expected: Any, actual: Any, service: str | None = None,
                     what: str = "ip neigh show; bridge fdb show") -> Finding:
    hint = "; ".join(f"nsenter --net={ov.path} {cmd.strip()}" for cmd in what.split(";"))
    return Finding(check, message, network=view.name, namespace=ov.name, service=service,
                   subject=subject, expected=expected, actual=actual, hint=hint)


@register_check("overlay-namespace-missing", scope="network")
def check_overlay_namespace(view: NetworkView, state: NodeState) -> list[Finding]:
    if state.overlays is None or view.id not in state.overlays or state.overlays[view.id] is not None:
        return []
    return [Finding("overlay-namespace-missing",
                    f"network {view.name} has {count(len(view.endpoints), 'endpoint')} on this node but no "
                    f"overlay namespace *-{view.id[:10]} in {state.netns_dir}",
                    network=view.name, namespace=f"*-{view.id[:10]}", subject=view.id[:12],
                    expected="the overlay driver's namespace", actual="absent",
                    hint=f"ls {state.netns_dir}; docker network inspect -v {view.name}")]


@register_check("overlay-vxlan-config", scope="overlay", needs=("links",))
def check_vxlan_config(subject: tuple[NetworkView, OverlayDatapath], state: NodeState) -> list[Finding]:
    view, ov = subject
    devices = {link.vxlan["vni"]: link for link in ov.vxlans() if link.vxlan}
    masters = {link.index: link for link in ov.links or []}
    findings = []

    def bad(what: str, device: str, expected: Any, actual: Any) -> None:
        findings.append(_overlay_finding(
            "overlay-vxlan-config", f"network {view.name}: VXLAN device {device} {what}: expected "
            f"{expected}, found {actual}", view, ov, f"{device} {what.split()[0]}", expected, actual,
            what="ip -d link show"))
    used = subnets_in_use(view)
    for i, vni in enumerate(view.vnis):
        subnet = view.subnets[i] if i < len(view.subnets) else None  # VNIs are in IPAM's order
        link = devices.get(vni)
        if link is None and (subnet is None or subnet in used):
            bad("VNI", "(none)", vni, sorted(devices) or "no VXLAN device")
        if link is None:
            continue
        if state.data_path_port is not None and link.vxlan["port"] != state.data_path_port:
            bad("UDP port", link.name, state.data_path_port, link.vxlan["port"])
        master = masters.get(link.master or -1)
        if master is None or master.kind != "bridge":
            bad("bridge", link.name, "enslaved to the subnet's bridge",
                master.name if master else "no master")
        if link.mtu != vxlan_mtu(view):
            bad("MTU", link.name, vxlan_mtu(view), link.mtu)
        off = sorted(k for k in VXLAN_FLAG_ATTRS if not link.vxlan.get(k))
        if off:
            bad("flags", link.name, "learning proxy l2miss l3miss", "without " + " ".join(off))
        if not link.up:
            bad("state", link.name, "up", "down")
    for vni, link in sorted(devices.items()):
        if view.vnis and vni not in view.vnis:
            bad("VNI", link.name, " or ".join(map(str, view.vnis)), vni)
    return findings


def subnets_in_use(view: NetworkView) -> set[str]:
    """The network's IPv4 subnets holding an endpoint, here or listed: the overlay driver makes a
    subnet's bridge and VXLAN device when the first endpoint in it joins or is learnt from a
    peer (joinSubnetSandbox), so a subnet no endpoint uses yet has none."""
    # As integers (inet_aton): ipaddress objects cost 15 us each, at 20,000 endpoints a network.
    listed = {t.ip for t in view.all_endpoints() if t.ip} | {e.ip for e in view.endpoints.values() if e.ip}
    ips = {int.from_bytes(key[1], "big") for key in map(_ip_order, listed) if key[0] == 0}
    used = set()
    for subnet in view.subnets:
        net = ipaddress.ip_network(subnet, strict=False)
        if net.version != 4:
            continue
        base, mask = int(net.network_address), int(net.netmask)
        if any(ip & mask == base for ip in ips):
            used.add(subnet)
    return used


OVERLAY_PEER_IDS = ("overlay-neighbor-missing", "overlay-neighbor-stale", "overlay-fdb-missing",
                    "overlay-fdb-stale", "overlay-fdb-wrong-node")


@register_check("overlay-esp-missing", scope="network")
def check_overlay_esp(view: NetworkView, state: NodeState) -> list[Finding]:
    """An encrypted network: every node it has remote endpoints on needs, in this node's own
    namespace, an ESP SA towards it, one from it, and the outbound policy marked 0xD0C4E3."""
    if not view.encrypted or not state.xfrm or state.xfrm.get("error"):
        return []
    states = [x for x in state.xfrm.get("states") or [] if x.get("proto") == IPPROTO_ESP]
    policies = [p for p in state.xfrm.get("policies") or []
                if p.get("dir") == XFRM_POLICY_OUT and p.get("mark") == OVERLAY_ESP_MARK]
    findings = []
    for vtep in sorted({t.host_ip for t in remote_endpoints(view, state).values() if t.host_ip}):
        lacking = [what for what, present in (
            ("ESP SA out", any(x.get("dst") == vtep for x in states)),
            ("ESP SA in", any(x.get("src") == vtep for x in states)),
            ("IPsec policy out", any(p.get("dst") == vtep for p in policies))) if not present]
        if lacking:
            findings.append(Finding(
                "overlay-esp-missing", f"network {view.name} is encrypted, but this node has no "
                f"{', no '.join(lacking)} for node {vtep}", network=view.name, namespace="host",
                subject=vtep, expected=["ESP SA out", "ESP SA in", "IPsec policy out"], actual=lacking,
                hint="ip xfrm state; ip xfrm policy; iptables-save -t mangle | grep 0xd0c4e3"))
    return findings


BPF_JEQ_K, BPF_RSH_K = 0x15, 0x74  # jump if A == k; A >>= k (classic BPF opcodes)


def _u32_vni(rule: Rule) -> int | None:
    """The VNI a rule matches on the VXLAN header, in either form libnetwork writes the match
    (drivers/overlay): xt_u32, '0>>22&0x3C@12&0xFFFFFF00=<VNI << 8>' (iptables-save prints it in
    hex), or xt_bpf (--bytecode "n,op jt jf k,..."), whose program loads the VNI word and jumps on
    equality with a constant: the VNI itself after a right shift by 8 (Debian's 28.5.2, read in
    the lab), or the VNI shifted left by 8 after a mask (moby's bpf.go on master)."""
    test = rule.get("--u32")
    if test and "=" in test:
        try:
            return int(test.rsplit("=", 1)[1].split(":")[0], 0) >> 8
        except ValueError:
            return None
    shifted = False
    for instruction in (rule.get("--bytecode") or "").split(",")[1:]:
        fields = instruction.split()
        if len(fields) != 4 or not all(f.isdigit() for f in fields):
            return None
        op, k = int(fields[0]), int(fields[3])
        if op == BPF_RSH_K and k == 8:
            shifted = True
        elif op == BPF_JEQ_K:
            return k if shifted else k >> 8
    return None


def encryption_rules(rules: Ruleset, vni: int) -> dict[str, bool]:
    """Whether the host has an encrypted overlay's two rules for one VNI (drivers/overlay
    encryption.go): mangle OUTPUT marks its VXLAN 0xD0C4E3, which the IPsec policy matches; filter
    INPUT drops its VXLAN received in cleartext (20.10: after an ACCEPT of --pol ipsec; 23.0+: one
    rule with --pol none, inserted first)."""
    mark = any(r.target == "MARK" and r.mark is not None and r.mark[0] == OVERLAY_ESP_MARK
               and _u32_vni(r) == vni for r in rules.get("mangle", {}).get("OUTPUT", []))
    drop = any(r.target == "DROP" and _u32_vni(r) == vni and r.get("--pol") != "ipsec"
               for r in rules.get("filter", {}).get("INPUT", []))
    return {"mangle OUTPUT MARK 0xd0c4e3": mark, "filter INPUT DROP of cleartext VXLAN": drop}


@register_check("overlay-encryption-rules", scope="overlay", needs=("links",))
def check_encryption_rules(subject: tuple[NetworkView, OverlayDatapath], state: NodeState) -> list[Finding]:
    view, ov = subject
    if not view.encrypted or state.host is None or state.host.rules is None:
        return []
    findings = []
    for vni in sorted(link.vxlan["vni"] for link in ov.vxlans() if link.vxlan):
        lacking = [what for what, present in encryption_rules(state.host.rules, vni).items() if not present]
        if not lacking:
            continue
        effect = ("its VXLAN leaves unmarked, so no IPsec policy matches it: other nodes drop it as "
                  "cleartext" if lacking[0].startswith("mangle") else
                  "VXLAN received in cleartext is accepted on an encrypted network")
        findings.append(Finding(
            "overlay-encryption-rules", f"network {view.name} is encrypted, but the host lacks the "
            f"{' and the '.join(lacking)} rule{'s' if len(lacking) > 1 else ''} for its VNI {vni}: {effect}",
            network=view.name, namespace="host", subject=f"VNI {vni}",
            expected=list(encryption_rules(state.host.rules, vni)), actual=list(lacking),
            hint="iptables-save -t mangle | grep -i 0xd0c4e3; iptables-save -t filter | grep u32"))
    return findings


@register_check(*OVERLAY_PEER_IDS, scope="overlay", needs=("neighbours", "fdb"))
def check_overlay_peers(subject: tuple[NetworkView, OverlayDatapath], state: NodeState) -> list[Finding]:
    """Every remote endpoint: a permanent neighbour (IP -> MAC) and a permanent self FDB entry
    (MAC -> its node's VTEP) on the VXLAN device; nothing else but one unlisted endpoint per
    peer node (its load balancer or ingress-sbox endpoint, which network inspect does not list,
    but for ingress on 20.10)."""
    return peer_verdicts(*subject, state)[0]


def _ip_order(ip: str) -> tuple[int, bytes | str]:
    """Sort key of an address: numeric for IPv4 (inet_aton is 20x cheaper than ipaddress)."""
    try:
        return (0, socket.inet_aton(ip))
    except OSError:
        return (1, ip)


def peer_verdicts(view: NetworkView, ov: OverlayDatapath, state: NodeState
                  ) -> tuple[list[Finding], list[str]]:
    """The peer check's findings, and the unlisted entries a worker cannot judge (computed once
    per sample: the check and the network's summary both ask)."""
    key = ("peer_verdicts", view.id)
    if key not in state.memo:
        state.memo[key] = _peer_verdicts(view, ov, state)
    return state.memo[key]


def _peer_verdicts(view: NetworkView, ov: OverlayDatapath, state: NodeState
                   ) -> tuple[list[Finding], list[str]]:
    remote = remote_endpoints(view, state)
    owner = {t.ip: svc.name for svc in view.services.values() for t in svc.tasks}
    neighbours = {n.ip: n for n in ov.neighbours or [] if n.permanent and n.ip}
    fdb = {f.mac: f for f in ov.fdb or [] if f.permanent and f.self_ and f.mac and f.ip}
    findings = []
    explained: set[str] = set()
    for ip, task in remote.items():  # the findings are put in address order below, not the 20,000
        neigh = neighbours.get(ip)
        entry = fdb.get(neigh.mac or "") if neigh is not None else None
        if entry is not None and entry.ip == task.host_ip:
            explained.add(neigh.mac or "")
            continue  # programmed as it should be: the common case, 20,000 times on a big swarm
        where = f"network {view.name}: {_endpoint_label(task, owner)} ({ip}) on node {task.host_ip}"
        if neigh is None:
            # Its FDB row, if left, is not stale: overlay MACs are 02:42 + the IP (ov_endpoint.go).
            explained.add(mac_from_ip(ip))
            findings.append(_overlay_finding(
                "overlay-neighbor-missing", f"{where} has no permanent neighbour entry on the VXLAN "
                "device", view, ov, ip, f"{ip} lladdr <its MAC> PERMANENT", "absent", owner.get(ip)))
            continue
        explained.add(neigh.mac or "")
        entry = fdb.get(neigh.mac or "")
        if entry is None:
            findings.append(_overlay_finding(
                "overlay-fdb-missing", f"{where} (MAC {neigh.mac}) has no permanent FDB entry towards "
                f"{task.host_ip}", view, ov, ip, f"{neigh.mac} dst {task.host_ip} self permanent",
                "absent", owner.get(ip)))
        elif entry.ip != task.host_ip:
            findings.append(_overlay_finding(
                "overlay-fdb-wrong-node", f"{where}: its FDB entry (MAC {neigh.mac}) points to "
                f"{entry.ip}, not to {task.host_ip}", view, ov, ip, task.host_ip, entry.ip, owner.get(ip)))
    findings.sort(key=lambda f: _ip_order(f.subject or ""))
    unverifiable: list[str] = []
    findings += _stale_peers(view, ov, state, remote, neighbours, fdb, explained, unverifiable)
    return findings, unverifiable


def mac_from_ip(ip: str) -> str:
    """The MAC libnetwork gives an endpoint with none set (netutils.GenerateMACFromIP)."""
    return "02:42:" + ":".join(f"{b:02x}" for b in ipaddress.ip_address(ip).packed[-4:])


def _endpoint_label(task: TaskView, owner: dict[str, str]) -> str:
    return f"task {task.name}" if task.ip in owner else f"endpoint {task.name or task.endpoint_id[:12]}"


def _stale_peers(view: NetworkView, ov: OverlayDatapath, state: NodeState, remote: dict[str, TaskView],
                 neighbours: dict[str, Neighbour], fdb: dict[str, Neighbour], explained: set[str],
                 unverifiable: list[str]) -> list[Finding]:
    """Entries no listed endpoint explains. NetworkDB lists a task only once it is started (or,
    with a health check, healthy: executor controller.go activateServiceBinding), while the
    overlay programs it from its join: a manager explains such an entry by swarm's task at that
    address; a worker cannot, and reports it as unverifiable rather than stale."""
    local_ips = {ep.ip for ep in view.endpoints.values()}
    being_born = {ip for t in (state.swarm_tasks or {}).values() if t.state not in TERMINAL
                  for ip in [t.addresses.get(view.id)] if ip}
    vteps = local_vteps(view, state)
    peers = {ip for _, ip in view.peers} | {t.host_ip for t in view.all_endpoints() if t.host_ip}
    # One unlisted endpoint per remote peer node: its load balancer, unless NetworkDB lists that
    # (20.10 lists ingress's among the endpoints of no service, as ingress-endpoint).
    listed_lb = {t.host_ip for t in view.others if t.name.endswith("-endpoint")}
    allowance = peers - vteps - listed_lb
    findings = []
    unlisted = ((ip, neigh) for ip, neigh in neighbours.items() if ip not in remote)
    for ip, neigh in sorted(unlisted, key=lambda kv: _ip_order(kv[0])):
        entry = fdb.get(neigh.mac or "")
        dst = entry.ip if entry else None
        if ip not in local_ips and dst in peers - vteps and ip in being_born:
            explained.add(neigh.mac or "")
            continue
        if ip not in local_ips and dst in allowance:
            allowance.discard(dst)
            explained.add(neigh.mac or "")
            continue
        if ip not in local_ips and dst in peers - vteps and state.swarm_tasks is None:
            unverifiable.append(ip)
            explained.add(neigh.mac or "")
            continue
        why = ("is a local endpoint, programmed as remote" if ip in local_ips else
               "is no endpoint NetworkDB lists" + (f" (FDB: node {dst})" if dst else ""))
        findings.append(_overlay_finding(
            "overlay-neighbor-stale", f"network {view.name}: permanent neighbour {ip} (MAC {neigh.mac}) "
            f"on {neigh.device} {why}", view, ov, ip, "no entry", f"{ip} lladdr {neigh.mac}"))
        explained.add(neigh.mac or "")  # one finding for the pair
    for mac, entry in sorted((mac, entry) for mac, entry in fdb.items() if mac not in explained):
        if entry.ip in vteps or entry.ip not in peers:
            why = (f"points to this node ({entry.ip})" if entry.ip in vteps else
                   f"points to {entry.ip}, which is no peer of the network in NetworkDB")
        else:
            why = f"(towards {entry.ip}) belongs to no endpoint NetworkDB lists"
        findings.append(_overlay_finding(
            "overlay-fdb-stale", f"network {view.name}: permanent FDB entry {mac} on {entry.device} {why}",
            view, ov, mac, "no entry", f"{mac} dst {entry.ip}"))
    return findings


# --- the embedded DNS: its answers against NetworkDB ----------------------------------
# libnetwork (service_common.go addEndpointNameResolution) registers, per network, <service> and
# each alias -> the VIP (dnsrr: every task IP), tasks.<service> and tasks.<alias> -> every task IP,
# from the same endpoint table `docker network inspect -v` lists; a task being stopped is first
# disabled (its records removed, NetworkDB keeps it at IPVS weight 0 until it is gone).

RESOLVER_CHAINS = (("OUTPUT", "DOCKER_OUTPUT", "-d"), ("POSTROUTING", "DOCKER_POSTROUTING", "-d"))


def dns_names(view: NetworkView, state: NodeState) -> list[str]:
    """The names to ask the resolver for on this network (the same list live and in replay)."""
    return list(dns_expectations(view, state))


def service_aliases(svc: ServiceView, view: NetworkView, state: NodeState) -> list[str]:
    by_net = (state.service_aliases or {}).get(svc.name) or {}
    return by_net.get(view.id) or by_net.get(view.name) or []


def draining_ips(view: NetworkView, state: NodeState) -> set[str]:
    """Task IPs being taken out of service: weight 0 in this node's load balancer of the network,
    or (managers) a task swarm no longer runs. Their records may already be gone."""
    ips = {d.address for lb in state.lbs if lb.network.id == view.id for svc in lb.datapath.ipvs or []
           for d in svc.dests if d.weight == 0}
    for svc in view.services.values():
        for task in svc.tasks:
            known = (state.swarm_tasks or {}).get(task.task_id)
            if known is not None and (known.stopping or known.state != "running"):
                ips.add(task.ip)
            elif not svc.vip and health_drain(task, svc.name, state):
                ips.add(task.ip)  # no load balancer shows it disabled: its health check may have
    return ips | {t.ip for old in view.departed for t in old.tasks}


@dataclass
class NameRecord:
    """What the resolver must answer for one name on one network: the union of what every service
    registers under it (two services may share an alias; a stack's short name is an alias)."""
    services: list[ServiceView]
    expected: set[str]  # the addresses registered under the name
    excused: set[str]  # those it may leave out: tasks being drained

    @property
    def label(self) -> str:
        return ", ".join(s.name for s in self.services)

    @property
    def service(self) -> str | None:
        """The service a finding names; None when the name belongs to several."""
        return self.services[0].name if len(self.services) == 1 else None


def dns_expectations(view: NetworkView, state: NodeState) -> dict[str, NameRecord]:
    """qname -> what the resolver must answer for it, from the services NetworkDB lists here."""
    memo = state.memo.setdefault("dns", {})
    if view.id in memo:
        return memo[view.id]
    draining = draining_ips(view, state)
    out: dict[str, NameRecord] = {}
    for svc in sorted(view.services.values(), key=lambda s: s.name):
        task_ips = {t.ip for t in svc.tasks if t.ip}
        if not task_ips or svc.ipv6:
            continue
        # A dnsrr service has no load balancer to show a task being stopped: only swarm (a
        # manager) can tell one from a lost record; a worker judges only stale answers for it.
        excused = task_ips if not svc.vip and state.swarm_tasks is None else task_ips & draining
        # The VIP's name goes with the last task taken out of service.
        by_name = ({svc.vip}, {svc.vip} if excused == task_ips else set()) if svc.vip else (task_ips, excused)
        for name in [svc.name, *service_aliases(svc, view, state)]:
            for qname, (expected, may_lack) in ((name.lower(), by_name),
                                                (f"tasks.{name}".lower(), (task_ips, excused))):
                record = out.setdefault(qname, NameRecord([], set(), set()))
                if svc not in record.services:
                    record.services.append(svc)
                record.expected |= expected
                record.excused |= may_lack
    memo[view.id] = out
    return out


def held_addresses(view: NetworkView, state: NodeState) -> set[str]:
    """Every address something on the network holds: task and other endpoints NetworkDB lists,
    VIPs (NetworkDB's and, on a manager, swarm's), this node's endpoints. A task's hostname, a
    container's name and a --network-alias answer such an address too, and NetworkDB does not say
    under which names: an answer holding one of them is not stale, an address nothing holds is."""
    held = {t.ip for t in view.all_endpoints() if t.ip}
    held |= {s.vip for s in [*view.services.values(), *view.departed] if s.vip}
    held |= {ip for lb in state.lbs if lb.network is view for ip in departed_lb(lb, state)[1]}
    held |= {e.ip for e in view.endpoints.values() if e.ip}
    held |= {ip for by_net in (state.service_vips or {}).values() for ip in by_net.get(view.id, [])}
    return held


def _dns_finding(check: str, message: str, view: NetworkView, probe: DnsProbe, service: str | None,
                 name: str, expected: Any, actual: Any, address: str | None = None) -> Finding:
    # One finding per wrong address: the two samples of a run must show the same one to count,
    # and tasks arriving or leaving between reading NetworkDB and asking the DNS differ each time.
    return Finding(check, message, network=view.name, namespace=os.path.basename(probe.path),
                   service=service, subject=f"{name} {address}" if address else name,
                   expected=expected, actual=actual,
                   hint=f"nsenter --net={probe.path} dig +short @{DNS_RESOLVER} {name}; "
                        f"docker network inspect -v {view.name}")


@register_check("dns-resolver-rules", scope="dns", needs=("rules",))
def check_resolver_rules(subject: tuple[NetworkView, DnsProbe], state: NodeState) -> list[Finding]:
    """nat OUTPUT -d 127.0.0.11 -> DOCKER_OUTPUT: DNAT :53 -> the resolver's port, per protocol;
    POSTROUTING -> DOCKER_POSTROUTING: SNAT the answers back to :53 (libnetwork resolver_unix.go)."""
    view, probe = subject
    nat = (probe.rules or {}).get("nat", {})
    resolver = f"{DNS_RESOLVER}/32"
    missing = [f"-A {chain} -d {resolver} -j {target}" for chain, target, _ in RESOLVER_CHAINS
               if not any(r.target == target and r.dst == resolver for r in nat.get(chain, []))]
    for proto in ("udp", "tcp"):
        dnat = [r for r in nat.get("DOCKER_OUTPUT", []) if r.target == "DNAT" and r.proto == proto
                and r.dst == resolver and r.port("--dport") == 53]
        if not dnat:
            missing.append(f"-A DOCKER_OUTPUT -d {resolver} -p {proto} --dport 53 -j DNAT "
                           f"--to-destination {DNS_RESOLVER}:<port>")
            continue
        port = (dnat[0].get("--to-destination") or "").rpartition(":")[2]
        if not any(r.target == "SNAT" and r.proto == proto and _network(r.get("-s")) == resolver
                   and r.get("--sport") == port for r in nat.get("DOCKER_POSTROUTING", [])):
            missing.append(f"-A DOCKER_POSTROUTING -s {resolver} -p {proto} --sport {port} -j SNAT "
                           "--to-source :53")
    if not missing:
        return []
    udp_broken = any(" -j DOCKER_" in m or " -p udp " in m for m in missing)
    rules = [r.text for chain in ("OUTPUT", "POSTROUTING", "DOCKER_OUTPUT", "DOCKER_POSTROUTING")
             for r in nat.get(chain, [])]
    return [Finding("dns-resolver-rules",
                    f"container {probe.container} (namespace {os.path.basename(probe.path)}) on network "
                    f"{view.name} lacks {len(missing)} of the resolver's nat rules: "
                    + ("name lookups there fail" if udp_broken else "lookups over TCP (long answers) fail"),
                    network=view.name, namespace=os.path.basename(probe.path), subject=probe.container,
                    expected=missing, actual=rules, hint=_hint_rules(probe.path, "nat"))]


@register_check("dns-resolver-silent", "dns-name-missing", "dns-answer-stale", "dns-answer-incomplete",
                scope="dns", needs=("answers",))
def check_dns_answers(subject: tuple[NetworkView, DnsProbe], state: NodeState) -> list[Finding]:
    view, probe = subject
    answers = probe.answers or {}
    findings = []
    silent = [name for name, a in answers.items() if a.get("silent")]
    if silent:
        findings.append(_dns_finding(
            "dns-resolver-silent", f"the embedded DNS ({DNS_RESOLVER}) answered none of the {len(answers)} "
            f"name(s) asked in container {probe.container} on network {view.name} ({silent[0]} first) "
            f"within {DNS_TRIES} tries of {DNS_TIMEOUT:g} s: no name of the network resolves there", view,
            probe, None, silent[0], "an answer", answers[silent[0]].get("error")))
    subnets = [ipaddress.ip_network(net) for net in view.subnets]
    held = held_addresses(view, state)
    for name, record in dns_expectations(view, state).items():
        answer = answers.get(name)
        required = record.expected - record.excused
        if answer is not None and answer.get("unanswered") and required:
            findings.append(_dns_finding(
                "dns-name-missing", f"the embedded DNS gave no answer for {name} in container "
                f"{probe.container} on network {view.name} while it answered the network's other names: "
                f"it holds no record of it and asks upstream servers, but NetworkDB on this node lists "
                f"{_tasks_of(record)}", view, probe, record.service, name, sorted(required),
                answer.get("error")))
            continue
        if answer is None or answer.get("error"):
            continue  # not asked (a silent resolver, a name DNS cannot carry), or not recorded
        findings += _judge_answer(name, record, answer, view, probe, subnets, held)
    return findings


def _tasks_of(record: NameRecord) -> str:
    tasks = sum(len(s.tasks) for s in record.services)
    return f"{count(tasks, 'task')} of service {record.label}" if len(record.services) == 1 else \
        f"{count(tasks, 'task')} of services {record.label}"


def _judge_answer(name: str, record: NameRecord, answer: dict, view: NetworkView, probe: DnsProbe,
                  subnets: list, held: set[str]) -> list[Finding]:
    got = set(answer.get("ips") or [])
    if probe.other_networks and got and not any(
            ipaddress.ip_address(ip) in net for ip in got for net in subnets):
        return []  # the container's other network answered this name first: not this one's
    where = f"in container {probe.container} on network {view.name}"
    required = record.expected - record.excused
    if not got:
        if not required:
            return []
        return [_dns_finding(
            "dns-name-missing", f"the embedded DNS answers {answer.get('rcode')} with no address for {name} "
            f"{where}, but NetworkDB on this node lists {_tasks_of(record)}", view, probe, record.service,
            name, sorted(required), answer.get("rcode"))]
    vip_name = any(s.vip for s in record.services) and not name.startswith("tasks.")
    what = "VIP" if vip_name else "running tasks' addresses"
    whose = f"service {record.label}" if len(record.services) == 1 else f"services {record.label}"
    findings = []
    # An address another endpoint of the network holds may be that endpoint's own name (a
    # task's hostname, a container name, an alias): the resolver answers the union. Stale is
    # an address nothing on the network holds.
    for ip in sorted(got - record.expected - held):
        findings.append(_dns_finding(
            "dns-answer-stale", f"the embedded DNS answers {ip} for {name} {where}; nothing NetworkDB on "
            f"this node lists on the network holds that address ({whose}, {what}: "
            f"{', '.join(sorted(record.expected))})", view, probe, record.service, name,
            sorted(record.expected), sorted(got), ip))
    for ip in sorted(required - got):
        findings.append(_dns_finding(
            "dns-answer-incomplete", f"the embedded DNS leaves out {ip} for {name} {where}: NetworkDB on "
            f"this node lists it for {whose} ({what})", view, probe, record.service, name,
            sorted(record.expected), sorted(got), ip))
    return findings


@register_check("iptables-split-brain", scope="datapath")
def check_split_brain(dp: Datapath, state: NodeState) -> list[Finding]:
    if len(dp.backends_with_docker_chains) < 2:
        return []
    return [Finding("iptables-split-brain", f"Docker chains exist in both iptables backends "
                    f"({', '.join(dp.backends_with_docker_chains)}) in {dp.name}",
                    namespace=dp.name, subject="iptables", expected="one backend",
                    actual=dp.backends_with_docker_chains,
                    hint="iptables-legacy-save; iptables-nft-save; update-alternatives --display iptables")]


PortUsers = dict[tuple[str | None, int], list[tuple[ServiceView, PublishedPort]]]


def published_ports(ingress: NetworkView) -> PortUsers:
    """(protocol, published port) -> the services publishing it on the ingress network."""
    out: PortUsers = {}
    for svc in ingress.vip_services():
        for port in svc.ports:
            out.setdefault((port.protocol, port.published), []).append((svc, port))
    return out


@register_check("ingress-dnat-missing", "ingress-dnat-stale", "ingress-dnat-target",
                "ingress-filter-missing", "ingress-jump-missing", scope="host", needs=("rules",))
def check_host_ingress(host: Datapath, state: NodeState) -> list[Finding]:
    """The host's DOCKER-INGRESS DNAT/filter rules and the jumps into them."""
    ingress, gw_ip, model = state.ingress, state.gw_ip, state.model
    assert ingress is not None  # the host scope runs only with ingress publishing ports
    rules = host.rules or {}
    where = {"network": ingress.name, "namespace": "host"}
    ports = published_ports(ingress)
    findings: list[Finding] = []
    dnat = [r for r in rules.get("nat", {}).get("DOCKER-INGRESS", []) if r.target == "DNAT"]
    accept = [r for r in rules.get("filter", {}).get("DOCKER-INGRESS", []) if r.target == "ACCEPT"]
    for (proto, number), users in sorted(ports.items(), key=lambda kv: (kv[0][1], kv[0][0] or "")):
        svc, port = users[0]
        label, name = port.label(), svc.name

        def same(rule: Rule, key: str, number: int = number, proto: str | None = proto) -> bool:
            return rule.port(key) == number and (proto is None or rule.proto == proto)
        mine = [r for r in dnat if same(r, "--dport")]
        if not mine:
            findings.append(Finding(
                "ingress-dnat-missing", f"no DNAT rule in nat DOCKER-INGRESS for published port "
                f"{label} of service {name}", service=name, subject=label,
                expected=f"--dport {number} -j DNAT --to-destination {gw_ip or '<gw IP>'}:{number}",
                actual=None, hint="iptables-save -t nat | grep DOCKER-INGRESS", **where))
        elif gw_ip:
            targets = [r.get("--to-destination") for r in mine]
            if any(t != f"{gw_ip}:{number}" for t in targets):
                findings.append(Finding(
                    "ingress-dnat-target", f"DNAT for port {label} of service {name} goes to "
                    f"{', '.join(str(t) for t in targets)}, not to ingress_sbox at {gw_ip}:{number}",
                    service=name, subject=label, expected=f"{gw_ip}:{number}", actual=targets,
                    hint="iptables-save -t nat | grep DOCKER-INGRESS; "
                         "docker network inspect docker_gwbridge", **where))
        inbound = [r for r in accept if same(r, "--dport")]
        replies = [r for r in accept if same(r, "--sport")
                   and ("ESTABLISHED" in (r.get("--ctstate") or r.get("--state") or ""))]
        missing = [what for what, have in (("--dport", inbound), ("--sport ESTABLISHED", replies))
                   if not have]
        if missing:
            findings.append(Finding(
                "ingress-filter-missing", f"filter DOCKER-INGRESS lacks the ACCEPT rule(s) "
                f"{' and '.join(missing)} for published port {label} of service {name}",
                service=name, subject=label, expected=[f"ACCEPT {m} {number}" for m in missing],
                actual=[r.text for r in inbound + replies],
                hint="iptables-save -t filter | grep DOCKER-INGRESS", **where))
    for rule in dnat:
        number = rule.port("--dport")
        if number is None:
            continue
        if not any(n == number and (p is None or p == rule.proto) for p, n in ports):
            label = f"{number}/{rule.proto}"
            findings.append(Finding(
                "ingress-dnat-stale", f"nat DOCKER-INGRESS has a DNAT rule for port {label}, "
                "which no service publishes", subject=label, expected=None, actual=rule.text,
                hint="iptables-save -t nat | grep DOCKER-INGRESS; docker service ls", **where))
    if ports:
        findings += _check_ingress_jumps(rules, model, where)
    return findings


def _check_ingress_jumps(rules: Ruleset, model: EngineModel, where: dict) -> list[Finding]:
    wanted = [("nat", "PREROUTING"), ("nat", "OUTPUT"), ("filter", model.filter_jump_chain)]
    findings = []
    for table, chain in wanted:
        jumps = [r for r in rules.get(table, {}).get(chain, []) if r.target == "DOCKER-INGRESS"]
        if table == "nat":
            jumps = [r for r in jumps if r.get("--dst-type") == "LOCAL"]
        if not jumps:
            findings.append(Finding(
                "ingress-jump-missing", f"{table} {chain} has no jump to DOCKER-INGRESS (engine "
                f"{model.version})", subject=f"{table}/{chain}",
                expected=f"-A {chain} {'-m addrtype --dst-type LOCAL ' if table == 'nat' else ''}"
                         "-j DOCKER-INGRESS", actual=None,
                hint=f"iptables-save -t {table} | grep -- '-A {chain}'", **where))
    return findings


@register_check("task-redirect-missing", scope="ingress-tasks")
def check_task_redirects(ingress: NetworkView, state: NodeState) -> list[Finding]:
    """Each local task on ingress: nat PREROUTING -d <ip> --dport P -j REDIRECT --to-ports T."""
    task_datapaths = state.task_datapaths
    findings = []
    by_endpoint = {t.endpoint_id: (svc, t) for svc in ingress.vip_services() for t in svc.tasks}
    for key, dp in task_datapaths.items():
        ep = ingress.endpoints.get(key)
        if ep is None or dp.rules is None or ep.endpoint_id not in by_endpoint:
            continue
        svc, task = by_endpoint[ep.endpoint_id]
        redirects = [r for r in dp.rules.get("nat", {}).get("PREROUTING", [])
                     if r.target == "REDIRECT" and r.dst == f"{task.ip}/32"]
        for port in svc.ports:
            ok = any(r.port("--dport") == port.published and r.port("--to-ports") == port.target
                     and (port.protocol is None or r.proto == port.protocol) for r in redirects)
            if not ok:
                findings.append(Finding(
                    "task-redirect-missing", f"task {task.name} ({task.ip}) has no REDIRECT from "
                    f"port {port.label()} to {port.target} in its namespace {dp.name}",
                    network=ingress.name, namespace=dp.name, service=svc.name,
                    subject=f"{task.name}:{port.label()}",
                    expected=f"-A PREROUTING -d {task.ip}/32 -p {port.protocol or '<proto>'} "
                             f"--dport {port.published} -j REDIRECT --to-ports {port.target}",
                    actual=[r.text for r in redirects], hint=_hint_rules(dp.path, "nat")))
    return findings


# --- this node's prerequisites: forwarding, conntrack, the underlay's MTU -------------

CONNTRACK_FULL = 0.9  # of nf_conntrack_max: past it a burst of connections finds no room
VXLAN_OVERHEAD = 50  # outer Ethernet is not counted: IP 20, UDP 8, VXLAN 8, inner Ethernet 14
ESP_OVERHEAD = 26  # what drivers/overlay budgets for ESP on an encrypted network


def data_path_interface(state: NodeState) -> dict | None:
    """The interface holding this node's VTEP address (the data-path address, else the
    advertise address), from the host's interfaces. None: not known, or not on an interface
    (an address behind NAT)."""
    prereqs = state.host_prereqs or {}
    vteps = {ip for v in state.views if v.instantiated for ip in local_vteps(v, state)}
    if not vteps and state.node_addr:
        vteps = {state.node_addr}
    for link in prereqs.get("links") or []:
        if vteps & set(link.get("addresses") or []):
            return link
    return None


@register_check("ip-forward-off", scope="node")
def check_ip_forward(_: NodeState, state: NodeState) -> list[Finding]:
    if (state.host_prereqs or {}).get("ip_forward") != 0:
        return []
    return [Finding("ip-forward-off", "IPv4 forwarding is off on this node (net.ipv4.ip_forward=0): "
                    "the routing mesh cannot forward published ports to ingress_sbox, nor containers "
                    "reach other networks", namespace="host", subject="net.ipv4.ip_forward",
                    expected=1, actual=0, hint="sysctl net.ipv4.ip_forward; grep -r ip_forward /etc/sysctl*")]


@register_check("conntrack-full", scope="node")
def check_conntrack(_: NodeState, state: NodeState) -> list[Finding]:
    tables = [(None, "host", "", (state.host_prereqs or {}).get("conntrack"))]
    tables += [(lb.network.name, lb.datapath.name, lb.datapath.path, lb.datapath.conntrack)
               for lb in state.lbs]
    findings = []
    for network, name, path, table in tables:
        if not table or not table.get("max") or table["count"] < CONNTRACK_FULL * table["max"]:
            continue
        where = "this node's own namespace" if path == "" else f"load-balancer namespace {name}"
        prefix = f"nsenter --net={path} " if path else ""
        findings.append(Finding(
            "conntrack-full", f"the conntrack table of {where} holds {table['count']} of at most "
            f"{table['max']} connections ({100 * table['count'] // table['max']}%): new connections are "
            "dropped when it is full", network=network, namespace=name, subject="nf_conntrack",
            expected=f"< {int(CONNTRACK_FULL * 100)}% of {table['max']}", actual=table["count"],
            hint=f"{prefix}conntrack -S; {prefix}conntrack -C; dmesg | grep 'table full'"))
    return findings


@register_check("underlay-mtu", scope="node")
def check_underlay_mtu(_: NodeState, state: NodeState) -> list[Finding]:
    link = data_path_interface(state)
    if link is None or not link.get("mtu"):
        return []
    findings = []
    for view in state.views:
        ov = (state.overlays or {}).get(view.id)
        own = ov.own_vxlans(view.vnis) if ov is not None and ov.error is None else []
        if not own:
            continue
        vxlan = own[0]
        need = vxlan.mtu + VXLAN_OVERHEAD + (ESP_OVERHEAD if view.encrypted else 0)
        if link["mtu"] >= need:
            continue
        findings.append(Finding(
            "underlay-mtu", f"network {view.name}'s VXLAN device has MTU {vxlan.mtu}, so its packets "
            f"between nodes are {need} bytes, but {link['name']}, which carries this node's data path, "
            f"has MTU {link['mtu']}: full-size packets are fragmented or lost",
            network=view.name, namespace="host", subject=link["name"], expected=f">= {need}",
            actual=link["mtu"], hint=f"ip link show {link['name']}; docker network inspect {view.name} "
            "--format '{{json .Options}}'"))
    return findings


def host_notes(state: NodeState) -> list[str]:
    """Known driver problems of the data-path interface: a note, with the command that avoids it."""
    link = data_path_interface(state)
    if link is None or link.get("driver") != "vmxnet3":
        return []
    return [f"{link['name']}, which carries this node's data path, uses the vmxnet3 driver, whose VXLAN "
            "checksum offload corrupts overlay packets on some ESXi and kernel versions (cross-node "
            "traffic fails while every layer looks right); if --probe finds other nodes unreachable, "
            f"try `ethtool -K {link['name']} tx-checksum-ip-generic off`"]


# --- traffic: what --probe sent, and what came back -----------------------------------
# The plan is a pure function of the state (a snapshot replays it and finds its results by key):
# per network, from its load balancer, echo requests to endpoints of every other node (two
# sizes) and a connection to each backend whose port is known; from this node, a connection to
# every node's published TCP ports.

ECHO_TARGETS_PER_NODE = 2  # endpoints asked per other node: one that does not answer is not the node


@dataclass(frozen=True, slots=True)
class PlannedProbe:
    probe: Probe
    network: str
    what: str  # "path" (echo to another node), "backend" or "published"
    node_ip: str  # the node concerned: the remote VTEP, the backend's node, the node probed
    size: str = ""  # path: "small" or "full"
    service: str | None = None
    task: str | None = None
    namespace: str = ""  # the source namespace's name (lb_..., ingress_sbox, host)


def probe_mtu(view: NetworkView, state: NodeState) -> int:
    """The size of a full packet on the network: its VXLAN device's MTU as read, else the engine's."""
    ov = (state.overlays or {}).get(view.id)
    own = ov.own_vxlans(view.vnis) if ov is not None and ov.error is None else []
    return own[0].mtu if own else vxlan_mtu(view)


def plan_probes(state: NodeState) -> list[PlannedProbe]:
    if "probes" in state.memo:
        return state.memo["probes"]
    plan: list[PlannedProbe] = []
    for lb in state.lbs:
        if state.model.per_container or not lb.lb_ip or lb.datapath.error:
            continue  # before 18.06 every container is a load balancer: no one source per network
        plan += _plan_paths(lb, state) + _plan_backends(lb)
    plan += _plan_published(state)
    state.memo["probes"] = plan
    return plan


def _plan_paths(lb: LoadBalancer, state: NodeState) -> list[PlannedProbe]:
    view, src = lb.network, lb.datapath.path
    # endpoints being drained (weight 0 here) last: their containers may be stopping
    draining = {d.address for s in lb.datapath.ipvs or [] for d in s.dests if d.weight == 0}
    by_node: dict[str, list[TaskView]] = {}
    for ep in sorted(remote_endpoints(view, state).values(),
                     key=lambda t: (t.ip in draining, _ip_order(t.ip))):
        by_node.setdefault(ep.host_ip or "", []).append(ep)
    full = probe_mtu(view, state)
    return [PlannedProbe(Probe("echo", src, ep.ip, size=size), view.name, "path", node_ip, name,
                         namespace=lb.datapath.name)
            for node_ip, eps in sorted(by_node.items()) for ep in eps[:ECHO_TARGETS_PER_NODE]
            for name, size in (("small", ECHO_SMALL), ("full", full))]


def _plan_backends(lb: LoadBalancer) -> list[PlannedProbe]:
    """Each backend of a service whose port the node knows (a published one): from ingress_sbox
    at the published port (the task redirects it to the target), from a network's own load
    balancer at the target port (what clients of the VIP ask for)."""
    view, plan = lb.network, []
    for svc in sorted(view.vip_services(), key=lambda s: s.name):
        ports = sorted({p.published if view.ingress else p.target for p in svc.ports
                        if p.protocol in (None, "tcp")})
        # a destination at weight 0 is being drained (stopping, failing its health check): the
        # load balancer sends it nothing new, and its container may already be gone
        ipvs = lb.datapath.ipvs_by_mark.get(svc.fwmark) if svc.fwmark else None
        draining = {d.address for d in (ipvs.dests if ipvs else []) if d.weight == 0}
        for task in sorted(svc.tasks, key=lambda t: _ip_order(t.ip)):
            if task.ip in draining:
                continue
            plan += [PlannedProbe(Probe("tcp", lb.datapath.path, task.ip, port), view.name, "backend",
                                  task.host_ip or "", service=svc.name, task=task.name,
                                  namespace=lb.datapath.name) for port in ports]
    return plan


def _plan_published(state: NodeState) -> list[PlannedProbe]:
    """Every node's routing-mesh entry: its address (ingress's peers are every node of the swarm)
    at each published TCP port. From this node, a connection to another node crosses that node's
    firewall (DOCKER-USER, FORWARD) as a client's does; to its own address it does not."""
    ingress = next((v for v in state.views if v.ingress and v.instantiated), None)
    if ingress is None:
        return []
    ports = sorted({(p.published, svc.name) for svc in ingress.services.values() for p in svc.ports
                    if p.protocol in (None, "tcp")})
    seen: dict[int, str] = {}
    for port, name in ports:
        seen.setdefault(port, name)
    return [PlannedProbe(Probe("tcp", "", ip, port), ingress.name, "published", ip, service=service,
                         namespace="host")
            for ip in sorted({ip for _, ip in ingress.peers}, key=_ip_order)
            for port, service in seen.items()]


def node_label(ip: str, state: NodeState) -> str:
    """A node by its address: its hostname where this node knows it (a manager), else the address.
    A data-path address (--data-path-addr) is not the node's address in /nodes: it is known
    through the tasks swarm placed on the node whose endpoints NetworkDB lists at that address."""
    nodes = state.swarm_nodes or {}
    for node in nodes.values():
        if node.addr == ip:
            return f"{node.hostname} ({ip})"
    node = nodes.get(vtep_owners(state).get(ip, ""))
    return f"{node.hostname} ({ip})" if node else f"node {ip}"


def vtep_owners(state: NodeState) -> dict[str, str]:
    """VTEP address -> node ID, from swarm's tasks (a manager) and NetworkDB's endpoints."""
    if "vtep_owners" not in state.memo:
        tasks = state.swarm_tasks or {}
        state.memo["vtep_owners"] = {ep.host_ip: tasks[ep.task_id].node_id for view in state.views
                                     for ep in view.all_endpoints()
                                     if ep.host_ip and ep.task_id in tasks and tasks[ep.task_id].node_id}
    return state.memo["vtep_owners"]


def probe_result(planned: PlannedProbe, state: NodeState) -> str | None:
    found = (state.probe_results or {}).get(planned.probe.key)
    return found.get("result") if isinstance(found, dict) else None


BROKEN = frozenset({"timeout", "unreachable", "too-big"})  # what says the path does not carry it


@register_check("probe-node-unreachable", "probe-mtu-blackhole", scope="probe")
def check_probe_paths(_: NodeState, state: NodeState) -> list[Finding]:
    """Per network and other node: no small echo answered (unreachable), or small ones answered
    and no full-size one (an MTU black hole). Only probes that ran count."""
    groups: dict[tuple[str, str], list[PlannedProbe]] = {}
    for planned in plan_probes(state):
        if planned.what == "path":
            groups.setdefault((planned.network, planned.node_ip), []).append(planned)
    findings = []
    for (network, node_ip), probes in groups.items():
        small = [p for p in probes if p.size == "small"]
        full = [p for p in probes if p.size == "full"]
        got = {p.probe.key: probe_result(p, state) for p in probes}
        label = node_label(node_ip, state)
        where, src = probes[0].namespace, probes[0].probe.source
        asked = sorted({p.probe.target for p in small}, key=_ip_order)
        actual = {f"{p.probe.target} {p.probe.size} bytes": got[p.probe.key] for p in probes}
        if all(got[p.probe.key] in BROKEN for p in small):
            findings.append(Finding(
                "probe-node-unreachable", f"on network {network}, no echo request from {where} was "
                f"answered by {label}: {count(len(asked), 'endpoint')} asked ({', '.join(asked)}), "
                f"{PROBE_TRIES} requests each; traffic on this network to and from that node is lost",
                network=network, namespace=where, subject=label, expected="an echo reply",
                actual=actual, hint=f"nsenter --net={src} ping -c 3 {asked[0]}; "
                "tcpdump -ni any udp port 4789 (on both nodes)"))
        elif any(got[p.probe.key] == "ok" for p in small) and all(got[p.probe.key] in BROKEN for p in full):
            size = full[0].probe.size
            findings.append(Finding(
                "probe-mtu-blackhole", f"on network {network}, {label} answers {ECHO_SMALL}-byte echo "
                f"requests from {where} but none of {size} bytes (the network's MTU, DF set): the path "
                "between the nodes does not carry full-size packets", network=network, namespace=where,
                subject=label, expected=f"echo replies at {ECHO_SMALL} and {size} bytes", actual=actual,
                hint=f"nsenter --net={src} ping -c 3 -M do -s {size - 28} {asked[0]}; "
                "ip link (the MTU of each hop's interface)"))
    return findings


@register_check("probe-backend-timeout", "probe-published-timeout", scope="probe")
def check_probe_connections(_: NodeState, state: NodeState) -> list[Finding]:
    """A connection that got no answer at all (a refusal means the path works: a note)."""
    findings = []
    for planned in plan_probes(state):
        result = probe_result(planned, state)
        if planned.what not in ("backend", "published") or result not in BROKEN:
            continue
        probe, label = planned.probe, node_label(planned.node_ip, state)
        if planned.what == "backend":
            findings.append(Finding(
                "probe-backend-timeout", f"on network {planned.network}, a TCP connection from "
                f"{planned.namespace} to task {planned.task} of service {planned.service} "
                f"({probe.target}:{probe.port}, on {label}) got no answer ({result}): the load "
                "balancer sends it requests it cannot deliver", network=planned.network,
                namespace=planned.namespace, service=planned.service, subject=planned.task,
                expected="a connection or a refusal", actual=result,
                hint=f"nsenter --net={probe.source} nc -zv -w 2 {probe.target} {probe.port}"))
        else:
            findings.append(Finding(
                "probe-published-timeout", f"a TCP connection from this node to {label} at published "
                f"port {probe.port} (service {planned.service}) got no answer ({result}): clients of "
                "that port on that node time out", network=planned.network, namespace="host",
                service=planned.service, subject=f"{probe.port}/tcp on {label}",
                expected="a connection or a refusal", actual=result,
                hint=f"nc -zv -w 2 {probe.target} {probe.port}; iptables -S DOCKER-USER (on that node)"))
    return findings


def probe_notes(state: NodeState) -> list[str]:
    """Refusals (the path works, nothing listens) and what could not be probed."""
    refused: dict[str, list[str]] = {}
    not_probed = 0
    for planned in plan_probes(state):
        result = probe_result(planned, state)
        if result in ("not-probed", "error"):
            not_probed += 1
        elif result == "refused":
            probe = planned.probe
            what = (f"task {planned.task} ({probe.target}:{probe.port})" if planned.what == "backend"
                    else f"{node_label(planned.node_ip, state)} port {probe.port}")
            refused.setdefault(planned.service or "", []).append(what)
    notes = [f"--probe: service {service}: {', '.join(whats)} refused the connection: the path works and "
             "nothing listens there (the application, or a task still starting)"
             for service, whats in sorted(refused.items())]
    if not_probed:
        notes.append(f"--probe: {count(not_probed, 'probe')} could not be sent or did not finish "
                     f"within {PROBE_LIMIT:g} s: not judged")
    return notes


# --------------------------------------------------------------------------------------
# One run: collect, then check.
# --------------------------------------------------------------------------------------

@dataclass
class NetworkResult:
    view: NetworkView
    namespace: str | None
    checked: bool
    note: str | None = None
    partial: bool = False  # some of its datapath (IPVS, iptables) could not be read
    overlay: OverlaySummary | None = None  # None: its overlay namespace was not looked at
    swarm: tuple[int, int] | None = None  # (tasks, VIPs) swarm has on it; None: not a manager
    dns: DnsProbe | None = None  # None: its embedded DNS was not asked here
    probe: ProbeSummary | None = None  # None: not probed (no --probe, or nothing to probe from)


@dataclass
class ProbeSummary:
    """What --probe saw on one network: echo paths to the other nodes, connections to backends
    and (ingress) to every node's published ports; "answered" counts refusals too."""
    namespace: str  # where the probes left from
    nodes: int = 0
    reached: int = 0  # other nodes whose endpoints answered small echo requests
    full: int = 0  # ... and full-size ones
    mtu: int = 0  # the full size
    backends: int = 0
    backends_answered: int = 0
    published: int = 0
    published_answered: int = 0
    # per other node (its address): {"small": answered, "full": answered}; and per node probed at
    # its published ports: {"answered": n, "asked": n}. What the fleet's node x node matrix shows.
    paths: dict[str, dict[str, bool]] = field(default_factory=dict)
    entries: dict[str, dict[str, int]] = field(default_factory=dict)


@dataclass
class OverlaySummary:
    namespace: str | None  # None: not found
    checked: bool
    remote_endpoints: int = 0
    remote_nodes: int = 0
    unverifiable: list[str] = field(default_factory=list)  # unlisted entries a worker cannot judge


@dataclass
class RunResult:
    node: NodeInfo
    networks: list[NetworkResult]
    findings: list[Finding]
    not_checked: list[NotChecked]
    notes: list[str]
    host_ports: list[tuple[str, str]]  # (label, services) of the host ingress ports checked
    host_checked: bool
    absent: list[str] = field(default_factory=list)  # names asked for that this worker does not have
    vteps: list[str] = field(default_factory=list)  # its VXLAN addresses besides node.addr (data path)
    leavers: list[str] = field(default_factory=list)  # gossip_leavers: nodes out of gossip, ready for swarm
    motion: Motion | None = None  # what the sample saw of each service: compared by settle()


@dataclass
class Reading:
    """What the phases of one sample report besides the state: parts not checked, notes, and
    the network names a worker was asked for and does not have."""
    not_checked: list[NotChecked] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    absent: list[str] = field(default_factory=list)


def run_once(collector: Collector, node: NodeInfo, wanted: list[str]) -> RunResult:
    """One sample of this node, read phase by phase into one NodeState, then checked. The order
    is the phases' own: the load balancers before the DNS (asked from a container of a network
    whose load balancer was read) and before the ingress (its sandbox is the ingress load
    balancer); the overlay before the host, whose rules are read when an overlay is encrypted."""
    reading = Reading()
    state = read_views(collector, node, wanted, reading)
    blind = why_blind(collector, node, state.views)
    if blind:  # nothing of the datapath can be read: the views are still checked against swarm
        reading.not_checked.append(NotChecked(blind[0], blind[1]))
        results = [NetworkResult(view, None, False, "not checked: " + blind[0]) for view in state.views]
        return RunResult(node, results, run_checks(state), reading.not_checked, reading.notes, [], False,
                         reading.absent, leavers=gossip_leavers(state))
    results, ingress_dp = read_load_balancers(collector, state, reading)
    adopt_marks(state)
    read_health(collector, node, state, reading)
    read_overlay_layer(collector, state, reading)
    state.dns = read_dns(collector, state.views, state, reading.not_checked, reading.notes)
    read_host_layer(collector, state, reading)
    read_probes(collector, state, results, reading)
    summarise_networks(results, state, reading)
    host_ports = read_ingress(collector, state, ingress_dp, reading)
    host_checked = state.ingress is not None and state.host is not None and state.host.rules is not None
    vteps = {ip for view in state.views if view.instantiated for ip in local_vteps(view, state)}
    findings = mark_converging(run_checks(state), state)
    return RunResult(node, results, findings, reading.not_checked, reading.notes, host_ports, host_checked,
                     reading.absent, sorted(vteps - {node.addr}, key=_ip_order), gossip_leavers(state),
                     motion_of(state, findings))


def read_views(collector: Collector, node: NodeInfo, wanted: list[str], reading: Reading) -> NodeState:
    """The control plane: the networks asked for (ingress always), NetworkDB's view of each, and
    on a manager swarm's services, tasks and nodes."""
    model = node.engine
    if not model.known:
        reading.not_checked.append(NotChecked("engine", f"engine {model.version} is newer than the versions "
                                        "ssd knows (up to 29.x); checked with the 29.x datapath model"))
    listing = collector.networks()
    chosen = resolve_networks(listing, wanted, None if node.manager else reading.absent)
    for term in reading.absent:
        reading.notes.append(f"network {term!r} is not instantiated on this node: nothing to check here "
                             "(a worker lists only the swarm networks its tasks use; a manager would "
                             "tell an unknown name from one with no task here)")
    if not any(n.get("Ingress") for n in chosen):
        chosen += [n for n in listing if n.get("Ingress") and n.get("Scope") == "swarm"]
    # The namespaces are read in a child process while the API answers what follows.
    collector.read_ahead(chosen, model.lb_location == "named")
    raw_services = None
    knowledge = swarm_knowledge(None, None, None)
    if node.manager:
        # swarm's tasks kept as SwarmTasks at once: the raw list (20,000 tasks on a big swarm, the
        # largest thing a run reads) is not held while the networks are inspected
        raw_services = collector.services()
        knowledge = swarm_knowledge(raw_services, collector.tasks(), collector.nodes())
    else:
        reading.notes.append("worker node: no /services or /tasks here, so a weight-0 backend cannot be "
                             "told from a draining task (tolerated), published-port protocols are "
                             "unknown (any protocol accepted), swarm's tasks and VIPs are not compared "
                             "with NetworkDB, services' DNS aliases are not asked for and a dnsrr "
                             "service's name may lack a task (run ssd on a manager for those)")
    protocols = service_protocols(raw_services) if node.manager else None
    changes = port_changes(raw_services)
    views: list[NetworkView] = []
    for raw in chosen:
        inspected = collector.network(raw["Id"])
        if inspected is None:
            reading.not_checked.append(NotChecked(f"network {raw.get('Name')}", "vanished while ssd ran"))
            continue
        view = build_network_view(inspected, protocols, changes)
        if view.instantiated or (wanted and not view.ingress):
            views.append(view)  # by default, only the networks this node has
    for view in views:
        ipv6 = sorted(s.name for s in view.services.values() if s.ipv6)
        if ipv6:
            reading.notes.append(f"network {view.name}: service(s) {', '.join(ipv6)} have an IPv6 VIP; "
                                 "libnetwork's load balancer is IPv4-only, so ssd does not check them")
    state = NodeState(model, collector.netns_dir, views, **knowledge,
                      now=collector.clock() if node.manager else None,
                      data_path_port=node.data_path_port, node_addr=node.addr)
    reading.notes += separate_all_departed(state)
    reading.notes += drained_notes(state, node)
    return state


def drained_notes(state: NodeState, node: NodeInfo) -> list[str]:
    """A manager drained of work (common practice) has no task, so no overlay but ingress is
    instantiated on it: say which layers have nothing to read here, and where to look."""
    me = (state.swarm_nodes or {}).get(node.id)
    if me is None or me.availability == "active":
        return []
    how = {"drain": "drained", "pause": "paused"}.get(me.availability, me.availability)
    return [f"this manager is {how} (availability {me.availability}): swarm runs no new task here, so "
            "overlays other than ingress are not instantiated on it and their load balancers, overlay "
            "and NetworkDB view cannot be read here; its ingress (the routing mesh still takes "
            "published ports) is checked. ssd --all-nodes compares every other node's NetworkDB "
            "with swarm from here"]


def swarm_knowledge(raw_services: list[dict] | None, raw_tasks: Iterable[dict] | None,
                    raw_nodes: list[dict] | None) -> dict[str, Any]:
    """What a manager knows of swarm (/services, /tasks, /nodes), as NodeState's fields: its
    own check reads it, and --all-nodes judges the workers' NetworkDB against it."""
    return {"swarm_tasks": build_swarm_tasks(raw_tasks), "swarm_nodes": build_swarm_nodes(raw_nodes),
            "service_vips": build_service_vips(raw_services),
            "service_aliases": build_service_aliases(raw_services),
            "health_checked": build_health_checked(raw_services), "updating": build_updating(raw_services),
            "service_names": None if raw_services is None else {
                s.get("ID", ""): (s.get("Spec") or {}).get("Name", "") for s in raw_services}}


def separate_all_departed(state: NodeState) -> list[str]:
    """Earlier incarnations of a name set apart on every network (managers); their notes."""
    if state.swarm_tasks is None or state.service_names is None:
        return []
    notes = []
    for view in state.views:
        separate_departed(view, state.swarm_tasks, state.service_names, state.service_vips or {})
        notes += departed_notes(view)
    return notes


def departed_notes(view: NetworkView) -> list[str]:
    """What a manager set apart as earlier incarnations of a name (separate_departed)."""
    return [f"network {view.name}: {count(len(old.tasks), 'task')} listed under {old.name} "
            f"({', '.join(sorted((t.ip for t in old.tasks), key=_ip_order))}) belong to an earlier "
            f"service of that name (ID {old.service_id[:12]}, removed or replaced: docker stack rm "
            "and deploy), which swarm is stopping: judged as that service, with its own load "
            "balancer, not as the current one's; they leave within its stop grace period"
            for old in view.departed]


def read_load_balancers(collector: Collector, state: NodeState, reading: Reading
                        ) -> tuple[list[NetworkResult], Datapath | None]:
    """Each instantiated network's load-balancer namespace(s), where this engine puts them; the
    ingress one is returned too (its sandbox is where the ingress checks start)."""
    results: list[NetworkResult] = []
    ingress_dp: Datapath | None = None
    for view in state.views:
        if not view.instantiated:
            results.append(NetworkResult(view, None, False, "not instantiated on this node "
                                         "(no task or load balancer here): nothing to check"))
            continue
        planned = plan_load_balancers(collector, view, state.model, reading.not_checked)
        if not planned:
            state.lb_not_found.append(view.id)
            results.append(NetworkResult(view, None, True))
            continue
        result = NetworkResult(view, ", ".join(os.path.basename(p) for p, _ in planned), True)
        for path, lb_ip in planned:
            dp = collector.datapath(path)
            if dp.error:
                reading.not_checked.append(NotChecked(f"network {view.name}", dp.error))
                result.partial = True
                continue
            _datapath_not_checked(dp, f"network {view.name}", reading.not_checked)
            result.partial |= dp.partial
            state.lbs.append(LoadBalancer(view, dp, lb_ip, expect_aliases=not state.model.per_container))
            if view.ingress:
                ingress_dp = dp
        results.append(result)
    return results, ingress_dp


def read_health(collector: Collector, node: NodeInfo, state: NodeState, reading: Reading) -> None:
    """What a manager can tell of tasks at weight 0 (health checks) and of NetworkDB's tasks
    swarm no longer knows: notes, and the local containers' health."""
    reading.notes += zombie_notes([v for v in state.views if v.instantiated], state)
    read_local_health(collector, state, node)
    reading.notes += health_notes(state)


def read_overlay_layer(collector: Collector, state: NodeState, reading: Reading) -> None:
    """Each network's overlay namespace, and the node's IPsec state when one is encrypted."""
    state.overlays = read_overlays(collector, state.views, reading.not_checked, reading.notes)
    if state.overlays is None or not any(v.encrypted and v.id in state.overlays for v in state.views):
        return
    state.xfrm = collector.xfrm()
    if state.xfrm is None:
        reading.notes.append("this snapshot holds no IPsec state: the encrypted overlays' ESP was not "
                             "checked")
    elif state.xfrm.get("error"):
        reading.not_checked.append(NotChecked("host", f"{state.xfrm['error']}; ESP checks skipped"))


def read_host_layer(collector: Collector, state: NodeState, reading: Reading) -> None:
    """The node's own prerequisites: forwarding, conntrack, the data-path interface."""
    state.host_prereqs = collector.host_prereqs()
    if state.host_prereqs and state.host_prereqs.get("error"):
        reading.not_checked.append(NotChecked("host", f"{state.host_prereqs['error']}; MTU not checked"))
    reading.notes += host_notes(state)


def read_probes(collector: Collector, state: NodeState, results: list[NetworkResult],
                reading: Reading) -> None:
    """--probe: send what plan_probes() plans (the layers are read: it knows where from and to
    whom), and count per network what came back."""
    if not collector.will_probe():  # planning alone is 7% of a run at 5000 x 4
        return
    plan = plan_probes(state)
    state.probe_results = collector.probe([p.probe for p in plan])
    if state.probe_results is None:
        return
    reading.notes += probe_notes(state)
    by_network = {r.view.name: r for r in results}
    for lb in state.lbs:
        if lb.network.name in by_network and not state.model.per_container:
            by_network[lb.network.name].probe = ProbeSummary(lb.datapath.name,
                                                             mtu=probe_mtu(lb.network, state))
    answered = ("ok", "refused")
    for planned in plan:
        summary = by_network[planned.network].probe if planned.network in by_network else None
        result = probe_result(planned, state)
        if summary is None or result in ("not-probed", "error", None):
            continue  # not judged (probe_notes says how many)
        if planned.what == "path":
            seen = summary.paths.setdefault(planned.node_ip, {"small": False, "full": False})
            seen[planned.size] |= result == "ok"
        elif planned.what == "backend":
            summary.backends += 1
            summary.backends_answered += result in answered
        else:
            entry = summary.entries.setdefault(planned.node_ip, {"asked": 0, "answered": 0})
            entry["asked"] += 1
            entry["answered"] += result in answered
            summary.published += 1
            summary.published_answered += result in answered
    for result in results:
        if result.probe is not None:
            seen = result.probe.paths.values()
            result.probe.nodes = len(seen)
            result.probe.reached = sum(s["small"] for s in seen)
            result.probe.full = sum(s["small"] and s["full"] for s in seen)


def summarise_networks(results: list[NetworkResult], state: NodeState, reading: Reading) -> None:
    """What each network's report block counts: its DNS probe, its overlay, swarm's tasks and
    VIPs on it (a manager's, when its tasks say where they are attached)."""
    if state.swarm_tasks is not None and not attachments_known(state):
        reading.notes.append("this snapshot's tasks carry no network attachments: swarm's tasks were not "
                             "compared with NetworkDB")
    for result in results:
        result.dns = (state.dns or {}).get(result.view.id)
        result.overlay = overlay_summary(result.view, state)
        if result.overlay and result.overlay.unverifiable:
            ips = result.overlay.unverifiable
            reading.notes.append(
                f"network {result.view.name}: {count(len(ips), 'endpoint')} on other nodes "
                f"{'is' if len(ips) == 1 else 'are'} programmed in the overlay but not listed by NetworkDB "
                f"({', '.join(ips[:3])}{', ...' if len(ips) > 3 else ''}): tasks starting or waiting for "
                "their health check, or stale entries; only a manager (/tasks) can tell which")
        if attachments_known(state) and result.view.instantiated:
            result.swarm = swarm_counts(state, result.view)


def swarm_counts(state: NodeState, view: NetworkView) -> tuple[int, int]:
    """What swarm runs on a network, as the swarm block counts it: running tasks, VIPs."""
    if "running_per_network" not in state.memo:  # one pass over swarm's tasks for every network
        running: dict[str, int] = {}
        for t in (state.swarm_tasks or {}).values():
            if t.state == "running" and not t.stopping:
                for net_id in t.addresses:
                    running[net_id] = running.get(net_id, 0) + 1
        state.memo["running_per_network"] = running
    return (state.memo["running_per_network"].get(view.id, 0),
            sum(1 for vips in (state.service_vips or {}).values() if view.id in vips))


def read_ingress(collector: Collector, state: NodeState, ingress_dp: Datapath | None,
                 reading: Reading) -> list[tuple[str, str]]:
    """The host's rules (the routing mesh's, the encrypted overlays'), and the sandboxes of the
    local ingress tasks; returns the published ports the host block lists."""
    host_ports: list[tuple[str, str]] = []
    ingress = next((v for v in state.views if v.ingress and v.instantiated), None)
    publishing = ingress is not None and bool(published_ports(ingress))
    encrypted = [v for v in state.views if v.encrypted and (state.overlays or {}).get(v.id) is not None]
    if publishing or encrypted:
        state.host = read_host(collector, reading.not_checked, reading.notes)
    if ingress is not None and publishing and state.host is not None:
        state.ingress = ingress
        if state.host.rules is not None:
            state.gw_ip = gateway_ip(collector, ingress_dp, ingress)
            host_ports = [(users[0][1].label(), ", ".join(s.name for s, _ in users))
                          for _, users in sorted(published_ports(ingress).items(),
                                                 key=lambda kv: (kv[0][1], kv[0][0] or ""))]
        state.task_datapaths = read_task_datapaths(collector, ingress, reading.not_checked)
    return host_ports


def attachments_known(state: NodeState) -> bool:
    """Whether swarm's tasks say where they are attached (older snapshots kept no attachments:
    then swarm's tasks were not compared with NetworkDB, and the report must not claim so)."""
    tasks = state.swarm_tasks
    return tasks is not None and (not tasks or any(t.addresses for t in tasks.values()))


def read_host(collector: Collector, not_checked: list[NotChecked], notes: list[str]) -> Datapath | None:
    """The node's own rules: the routing mesh's and the encrypted overlays'."""
    try:
        host = collector.datapath("", want_ipvs=False)
    except SnapshotError:  # a snapshot of a node that published no port: it did not keep them
        notes.append("this snapshot holds no host rules: the encrypted overlays' firewall rules were not "
                     "checked")
        return None
    _datapath_not_checked(host, "host", not_checked)
    return host


def read_local_health(collector: Collector, state: NodeState, node: NodeInfo) -> None:
    """Managers: the health of this node's containers whose backend is at weight 0 while swarm
    runs their task. An unhealthy one is being stopped by its executor; a healthy one is a fault."""
    for _, _, task, known in disabled_while_running(state):
        if known.node_id != node.id or not known.container_id or task.task_id in state.local_health:
            continue
        info = collector.container(known.container_id)
        state.local_health[task.task_id] = None if info is None else \
            str(((info.get("State") or {}).get("Health") or {}).get("Status") or "")


def read_overlays(collector: Collector, views: list[NetworkView], not_checked: list[NotChecked],
                  notes: list[str]) -> dict[str, OverlayDatapath | None] | None:
    """Each network's overlay namespace, by network ID (None: no such namespace here)."""
    if not collector.has_overlays:
        notes.append("this snapshot (format 1) holds no overlay namespaces: overlay checks skipped")
        return None
    out: dict[str, OverlayDatapath | None] = {}
    for view in views:
        if not view.instantiated or not view.endpoints:
            continue
        path = collector.overlay_path(view)
        ov = collector.overlay(path) if path else None
        if ov is not None and ov.error:
            not_checked.append(NotChecked(f"network {view.name}", f"{ov.error}; overlay checks skipped"))
        out[view.id] = ov
    return out


DNS_CANDIDATES = 5  # local containers looked at to find one on no other network


def read_dns(collector: Collector, views: list[NetworkView], state: NodeState, not_checked: list[NotChecked],
             notes: list[str]) -> dict[str, DnsProbe] | None:
    """Each network's embedded DNS, asked from one local container (by network ID)."""
    if not collector.has_dns:
        notes.append("this snapshot holds no answers of the embedded DNS: DNS checks skipped")
        return None
    ingress_names = {v.name for v in views if v.ingress}
    out: dict[str, DnsProbe] = {}
    unasked = []
    for view in views:
        if not view.instantiated or view.ingress or not any(
                not svc.ipv6 and any(t.ip for t in svc.tasks) for svc in view.services.values()):
            continue  # no name to ask for (ingress has no service discovery: addSvcRecords)
        if not dns_candidates(view):  # (before the names: 5,000 services' records take a while)
            unasked.append(view.name)
            continue
        probe = dns_probe(collector, view, ingress_names, dns_names(view, state), not_checked)
        if probe is None:
            unasked.append(view.name)
        else:
            out[view.id] = probe
    if unasked:
        notes.append(f"network(s) {', '.join(unasked)}: no container of the network runs here, and "
                     "the embedded DNS answers only inside containers: DNS not asked on this node")
    return out


def dns_candidates(view: NetworkView) -> list[str]:
    """This node's containers on the network (endpoint keys, by name): where to ask from."""
    return sorted((k for k in view.endpoints if k != view.lb_key and not k.startswith("lb-")
                   and k != "ingress-sbox"), key=lambda k: view.endpoints[k].name)


def dns_probe(collector: Collector, view: NetworkView, ingress_names: set[str], names: list[str],
              not_checked: list[NotChecked]) -> DnsProbe | None:
    """Ask from a container on this network only where one runs here: the resolver answers a name
    from the first of the container's networks that has it."""
    best: tuple[dict, list[str]] | None = None
    for key in dns_candidates(view)[:DNS_CANDIDATES]:
        info = collector.container(key) or {}
        settings = info.get("NetworkSettings") or {}
        if not settings.get("SandboxKey"):
            continue  # stopped since the network was inspected
        others = sorted(n for n in settings.get("Networks") or {}
                        if n != view.name and n not in ingress_names)
        if best is None or len(others) < len(best[1]):
            best = (info, others)
        if not others:
            break
    if best is None:
        return None
    info, others = best
    path = collector.ns_path(os.path.basename(info["NetworkSettings"]["SandboxKey"]))
    name = str(info.get("Name") or path).lstrip("/")
    dp = collector.datapath(path, want_ipvs=False)
    raw = collector.dns(path, names) if not dp.error else {"error": dp.error}
    if raw is not None and raw.get("error"):
        if "does not exist" not in raw["error"]:  # a container that stopped mid-run: nothing to ask
            not_checked.append(NotChecked(f"network {view.name}", f"{raw['error']}; its DNS not asked"))
        return None
    return DnsProbe(container=name, path=path, other_networks=others, rules=dp.rules,
                    answers=None if raw is None else raw.get("answers") or {})


def overlay_summary(view: NetworkView, state: NodeState) -> OverlaySummary | None:
    if state.overlays is None or view.id not in state.overlays:
        return None
    ov = state.overlays[view.id]
    remote = remote_endpoints(view, state)
    unverifiable = peer_verdicts(view, ov, state)[1] if ov and not ov.error and ov.neighbours is not None \
        and ov.fdb is not None else []
    return OverlaySummary(namespace=ov.name if ov else None, checked=ov is not None and not ov.error,
                          remote_endpoints=len(remote),
                          remote_nodes=len({t.host_ip for t in remote.values()}), unverifiable=unverifiable)


def why_blind(collector: Collector, node: NodeInfo, views: list[NetworkView]
              ) -> tuple[str, str] | None:
    """(scope, reason) when this run cannot look at the datapath at all: could-not-check,
    never a cascade of findings about what it did not see."""
    if not any(v.instantiated for v in views):
        return None
    if node.firewall.startswith("nftables"):
        return ("firewall backend", f"dockerd runs with the {node.firewall} firewall backend: swarm "
                "cannot program its routing mesh and load balancers there (no DOCKER-FORWARD chain), "
                "and ssd checks what the iptables backend programs")
    names = collector.netns_names()
    if not names:
        state = "does not exist" if names is None else "is empty"
        return ("namespaces", f"{collector.netns_dir} {state} here, though this node has swarm "
                "networks: in a container, mount it with -v /var/run/docker/netns:/var/run/docker/"
                "netns:ro,rslave; if dockerd has another --exec-root, pass the same --exec-root")
    return None


def _datapath_not_checked(dp: Datapath, scope: str, not_checked: list[NotChecked]) -> None:
    where = f"{scope} ({dp.name})" if dp.name != scope else scope
    if dp.ipvs_error and dp.ipvs_missing:
        # A fact about the kernel, not the namespace: say it once for the whole run.
        kernel = next((p for p in not_checked if p.scope == "kernel"), None)
        if kernel is None:
            not_checked.append(NotChecked("kernel", f"{dp.ipvs_error}; IPVS, SNAT and sysctl checks "
                                    f"skipped in {dp.name}"))
        else:
            kernel.message += f", {dp.name}"
    elif dp.ipvs_error:
        not_checked.append(NotChecked(where, dp.ipvs_error + "; IPVS, SNAT and sysctl checks skipped"))
    if dp.iptables_error:
        not_checked.append(NotChecked(where, f"iptables not readable: {dp.iptables_error}"))


def plan_load_balancers(collector: Collector, view: NetworkView, model: EngineModel,
                        not_checked: list[NotChecked]) -> list[tuple[str, str | None]]:
    """(namespace path, LB IP) pairs to read for this network on this engine."""
    lb_ep = view.lb_endpoint
    lb_ip = lb_ep.ip if lb_ep else None
    if view.ingress or model.lb_location == "named":
        path = collector.ns_path(lb_namespace_name(view))
        return [(path, lb_ip)] if collector.ns_exists(path) else []
    if model.lb_location == "by-address":
        path = collector.find_lb_by_address(lb_ip) if lb_ip else None
        return [(path, lb_ip)] if path else []
    # Era A: every local container of the network is its own load balancer.
    planned = []
    for key, ep in view.endpoints.items():
        info = collector.container(key)
        sandbox = ((info or {}).get("NetworkSettings") or {}).get("SandboxKey")
        if not sandbox:
            not_checked.append(NotChecked(f"network {view.name}", f"container {key[:12]} has no sandbox "
                                    "(it may have stopped mid-run)"))
            continue
        planned.append((collector.ns_path(os.path.basename(sandbox)), ep.ip))
    return planned


def gateway_ip(collector: Collector, ingress_dp: Datapath | None, ingress: NetworkView) -> str | None:
    """ingress_sbox's docker_gwbridge address: the DNAT target of every published port."""
    gw = collector.network("docker_gwbridge")
    ep = ((gw or {}).get("Containers") or {}).get(ingress.lb_key)
    if ep and ep.get("IPv4Address"):
        return ep["IPv4Address"].split("/")[0]
    subnets = [ipaddress.ip_network(s) for s in ingress.subnets]
    for addrs in ((ingress_dp.addresses if ingress_dp else None) or {}).values():
        for ip, _ in addrs:
            addr = ipaddress.ip_address(ip)
            if not addr.is_loopback and not any(addr in s for s in subnets):
                return ip
    return None


def read_task_datapaths(collector: Collector, ingress: NetworkView, not_checked: list[NotChecked]
                        ) -> dict[str, Datapath]:
    out = {}
    for key, ep in ingress.endpoints.items():
        if key in (ingress.lb_key, "ingress-sbox") or key.startswith("lb-"):
            continue
        info = collector.container(key)
        sandbox = ((info or {}).get("NetworkSettings") or {}).get("SandboxKey")
        if not sandbox:
            continue  # the task stopped between inspect and now: nothing to check
        dp = collector.datapath(collector.ns_path(os.path.basename(sandbox)), want_ipvs=False)
        if dp.error:
            if "does not exist" not in dp.error:
                not_checked.append(NotChecked(f"task {ep.name}", dp.error))
            continue
        out[key] = dp
    return out


def settle(first: RunResult, second: RunResult) -> RunResult:
    """Keep only the inconsistencies both samples show: swarm converges asynchronously; of
    those, what this node saw move between the samples is converging."""
    seen = {f.key for f in first.findings}
    transient = [f for f in second.findings if f.key not in seen]
    second.findings = [f for f in second.findings if f.key in seen]
    if first.motion is not None and second.motion is not None:
        for finding in second.findings:
            finding.converging = finding.converging or moved(finding, first.motion, second.motion)
    if transient or len(first.findings) > len(second.findings):
        second.notes.append(f"{len(first.findings) - len(second.findings) + len(transient)} "
                            "difference(s) seen in only one of two samples were ignored as "
                            "convergence")
    return second


# --------------------------------------------------------------------------------------
# Reports: text and JSON.
# --------------------------------------------------------------------------------------

# Findings about a whole network's load balancer: every VIP service of it is broken by them.
NETWORK_WIDE = frozenset({"lb-namespace-missing", "snat-missing"})


def findings_of(result: RunResult, layer: str, net: NetworkResult) -> list[Finding]:
    """A layer's findings about one network; the kernel's exclude the host's ingress rules,
    which have a block of their own."""
    return [f for f in result.findings if f.layer == layer and f.network == net.view.name
            and not (layer == "kernel" and f.namespace == "host")]


def layer_status(result: RunResult, net: NetworkResult, layer: str) -> str:
    if findings_of(result, layer, net):
        return "fail"
    return "ok" if LAYERS[layer].read(net) else "error"


def service_status(result: RunResult, net: NetworkResult, svc: ServiceView) -> str:
    if not svc.vip or svc.ipv6:
        return "skipped"
    mine = findings_of(result, "kernel", net)
    if any(f.service == svc.name or (f.service is None and f.check in NETWORK_WIDE
                                     and svc in net.view.vip_services()) for f in mine):
        return "fail"
    if not net.checked or net.partial:
        return "error"
    return "ok"


def overall_status(result: RunResult) -> str:
    if result.findings:
        return "converging" if all(f.converging for f in result.findings) else "inconsistent"
    return "incomplete" if result.not_checked else "consistent"


# diff's: 0 consistent, 1 inconsistent, 2 could not check; 3: only findings swarm has not
# finished converging for (a deployment in progress), to re-check once it has.
EXIT_CODES = {"consistent": 0, "inconsistent": 1, "incomplete": 2, "converging": 3}


# Every JSON document ssd prints carries schema_version (bumped when a field changes meaning or
# goes; new fields do not bump it) and mode; schemas/ holds a JSON Schema for each kind.
SCHEMA_VERSION = 1


def to_json(result: RunResult) -> dict:
    node = result.node
    return {
        "schema_version": SCHEMA_VERSION, "mode": "node", "ssd_version": __version__,
        "status": overall_status(result),
        "node": {"id": node.id, "hostname": node.hostname, "engine_version": node.engine.version,
                 "era": node.engine.era, "manager": node.manager, "addr": node.addr,
                 "vteps": result.vteps},
        "networks": [{
            "name": n.view.name, "id": n.view.id, "namespace": n.namespace,
            "checked": n.checked, "partial": n.partial, "note": n.note,
            "services": [{"name": s.name, "vip": s.vip, "fwmark": s.fwmark,
                          "status": service_status(result, n, s)}
                         for s in sorted(n.view.services.values(), key=lambda s: s.name)],
            "swarm": None if n.swarm is None else {
                "status": layer_status(result, n, "networkdb"), "tasks": n.swarm[0], "vips": n.swarm[1]},
            "dns": None if n.dns is None or n.dns.answers is None else {
                "container": n.dns.container, "namespace": os.path.basename(n.dns.path),
                "names": len(n.dns.answers), "status": layer_status(result, n, "dns")},
            "overlay": None if n.overlay is None else {
                "namespace": n.overlay.namespace, "checked": n.overlay.checked,
                "status": layer_status(result, n, "overlay"), "remote_endpoints": n.overlay.remote_endpoints,
                "remote_nodes": n.overlay.remote_nodes},
            "probe": None if n.probe is None else {
                **dataclasses.asdict(n.probe), "status": layer_status(result, n, "probe")},
        } for n in result.networks],
        "host_ingress": {"checked": result.host_checked, "ports": [label for label, _ in result.host_ports]},
        "findings": [f.to_json() for f in result.findings],
        "errors": [{"scope": p.scope, "message": p.message} for p in result.not_checked],
        "notes": result.notes,
    }


# Monitoring Plugins (Nagios, Icinga, Sensu...): one line "SSD STATE - summary | perfdata" and
# their exit codes. An inconsistency is CRITICAL; a check that looked at some things but could
# not look at others is WARNING (what it saw is fine, the rest is unknown); a check that could not
# look at all is UNKNOWN. Differences seen in one sample only (convergence) are OK.
NAGIOS_CODES = {"OK": 0, "WARNING": 1, "CRITICAL": 2, "UNKNOWN": 3}


def nagios_state(status: str, looked: bool) -> str:
    if status == "inconsistent":
        return "CRITICAL"
    if status == "consistent":
        return "OK"
    if status == "converging":
        return "WARNING"  # a deployment in progress pages no one
    return "WARNING" if looked else "UNKNOWN"


def nagios_line(state: str, summary: str, perfdata: dict[str, int | float | str]) -> str:
    perf = " ".join(f"{label}={value}" for label, value in perfdata.items())
    summary = summary.replace("|", "/")  # '|' starts the perfdata
    return f"SSD {state} - {summary}" + (f" | {perf}" if perf else "") + "\n"


def threshold_perf(findings: Iterable[Finding], not_checked: int) -> dict[str, str]:
    """Perfdata whose thresholds say what the state says (label=value;warn;crit;min): the range
    "0" alerts above 0. A persisting finding is CRITICAL, one of a converging swarm and a part
    not checked are WARNING."""
    found = list(findings)
    moving = sum(1 for f in found if f.converging)
    return {"findings": f"{len(found) - moving};;0;0", "converging": f"{moving};0;;0",
            "not_checked": f"{not_checked};0;;0"}


def _counted(checks: Iterable[str]) -> str:
    counts: dict[str, int] = {}
    for check in checks:
        counts[check] = counts.get(check, 0) + 1
    return ", ".join(f"{check} x{n}" if n > 1 else check for check, n in sorted(counts.items()))


def _verdicts(result: RunResult) -> list[str]:
    return [service_status(result, n, s) for n in result.networks for s in n.view.services.values()]


def run_nagios_state(result: RunResult) -> str:
    looked = result.host_checked or any(v in ("ok", "fail") for v in _verdicts(result))
    return nagios_state(overall_status(result), looked)


def render_nagios(result: RunResult, seconds: float) -> str:
    verdicts = _verdicts(result)
    checked = sum(v in ("ok", "fail") for v in verdicts)
    state = run_nagios_state(result)
    where = f"node {result.node.hostname or result.node.id[:12]}"
    if result.findings:
        many = "inconsistencies" if len(result.findings) > 1 else "inconsistency"
        moving = " while swarm converges" if overall_status(result) == "converging" else ""
        summary = (f"{len(result.findings)} {many} on {where}{moving}: "
                   f"{_counted(f.check for f in result.findings)}")
    else:
        summary = f"{where}: {count(len(result.networks), 'network')}, {count(checked, 'service')} consistent"
    if result.not_checked:
        summary += f"; not checked: {result.not_checked[0].scope}: {result.not_checked[0].message}"
        if len(result.not_checked) > 1:
            summary += f" (and {len(result.not_checked) - 1} more)"
    return nagios_line(state, summary, {
        **threshold_perf(result.findings, len(result.not_checked)), "services": checked,
        "failed_services": sum(v == "fail" for v in verdicts), "time": f"{seconds:.2f}s"})


# node_exporter's textfile collector: the standard way to export a periodic root-only check.
# Every check id gets a series per network (0 when clean), so alerts need no absent() tricks.

def write_prometheus(target: str, result: RunResult | None, seconds: float) -> None:
    """Write the run's metrics to target atomically (a temporary file beside it, then rename)."""
    prom = require("prometheus_client")
    registry = prom.CollectorRegistry()
    status = prom.Enum("ssd_status", "Verdict of the last ssd run on this node", registry=registry,
                       states=list(EXIT_CODES))
    status.state(overall_status(result) if result else "incomplete")
    prom.Gauge("ssd_last_run_timestamp_seconds", "When the last ssd run ended (Unix time)",
               registry=registry).set(time.time())
    # An alert on staleness needs when ssd last reached a verdict, which a failing run must not
    # erase: carried over from the file this run replaces.
    succeeded = result is not None and overall_status(result) != "incomplete"
    last_success = time.time() if succeeded else previous_success(target)
    if last_success is not None:
        prom.Gauge("ssd_last_success_timestamp_seconds", "When an ssd run last reached a verdict "
                   "(consistent, inconsistent or converging; Unix time)", registry=registry).set(last_success)
    prom.Gauge("ssd_run_duration_seconds", "How long the last ssd run took", registry=registry).set(seconds)
    parts = prom.Gauge("ssd_not_checked", "Parts of the node the last run could not check "
                       "(see ssd's stderr or --json errors)", registry=registry)
    info = prom.Info("ssd", "ssd and the node it checked", registry=registry)
    if result is None:
        parts.set(1)
        info.info({"version": __version__})  # the reason is on stderr: no free text in labels
        _write_metrics(prom, target, registry)
        return
    parts.set(len(result.not_checked))
    node = result.node
    info.info({"version": __version__, "node": node.hostname or node.id, "node_id": node.id,
               "engine_version": node.engine.version, "manager": str(node.manager).lower()})
    findings = prom.Gauge("ssd_findings", "Inconsistencies the last run found, by check id and network",
                          ["check", "network"], registry=registry)
    networks = {n.view.name for n in result.networks} | {f.network or "" for f in result.findings}
    for check in CHECKS:
        for network in sorted(networks):
            findings.labels(check, network).set(0)
    for finding in result.findings:
        findings.labels(finding.check, finding.network or "").inc()
    services = prom.Gauge("ssd_services", "Services the last run looked at, by network and verdict "
                          "(ok, fail, error: not fully readable, skipped: dnsrr or IPv6)",
                          ["network", "status"], registry=registry)
    for net in result.networks:
        for verdict in ("ok", "fail", "error", "skipped"):
            services.labels(net.view.name, verdict).set(0)
        for svc in net.view.services.values():
            services.labels(net.view.name, service_status(result, net, svc)).inc()
    _probe_metrics(prom, registry, result)
    _write_metrics(prom, target, registry)


def _probe_metrics(prom: Any, registry: Any, result: RunResult) -> None:
    """--probe: per network, which other node answered (by size), and connections answered."""
    probed = [net for net in result.networks if net.probe is not None]
    if not probed:
        return
    paths = prom.Gauge("ssd_probe_path_answered", "--probe: whether another node's endpoints on a "
                       "network answered echo requests (1) or not (0), small and full-size",
                       ["network", "node", "size"], registry=registry)
    conns = prom.Gauge("ssd_probe_connections", "--probe: TCP connections the last run made, by network, "
                       "kind (backend, published) and whether they were answered (accepted or refused)",
                       ["network", "kind", "answered"], registry=registry)
    for net in probed:
        pr = net.probe
        for ip, seen in pr.paths.items():
            for size in ("small", "full"):
                paths.labels(net.view.name, ip, size).set(int(seen[size]))
        for kind, asked, answered in (("backend", pr.backends, pr.backends_answered),
                                      ("published", pr.published, pr.published_answered)):
            conns.labels(net.view.name, kind, "true").set(answered)
            conns.labels(net.view.name, kind, "false").set(asked - answered)


def _write_metrics(prom: Any, target: str, registry: Any) -> None:
    if target == "-":
        emit(prom.generate_latest(registry).decode())
    else:
        prom.write_to_textfile(target, registry)


def previous_success(target: str) -> float | None:
    if target == "-":
        return None
    try:
        with open(target, encoding="utf-8") as fh:
            found = re.search(r"^ssd_last_success_timestamp_seconds (\S+)$", fh.read(), re.MULTILINE)
        return float(found.group(1)) if found else None
    except (OSError, UnicodeDecodeError, ValueError):
        return None


class Painter:
    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled

    def __call__(self, text: str, colour: str) -> str:
        codes = {"ok": "32", "fail": "31;1", "skip": "33", "error": "35"}
        return f"\033[{codes[colour]}m{text}\033[0m" if self.enabled else text


def render_text(result: RunResult, paint: Painter, quiet: bool, verbose: bool) -> str:
    lines: list[str] = []
    node = result.node
    if not quiet:
        role = "manager" if node.manager else "worker"
        lines.append(f"Node {node.hostname} ({node.id[:12]}), engine {node.engine.version}, "
                     f"{node.engine.era}, {role}")
    used: set[int] = set()
    for net in result.networks:
        lines += _render_network(result, net, paint, quiet, verbose, used)
    if result.host_checked:
        host = [f for f in result.findings if f.namespace == "host" and id(f) not in used]
        block = []
        for label, services in result.host_ports:
            mine = [f for f in host if f.subject == label]
            used.update(id(f) for f in mine)
            if mine or not quiet:
                status = paint("FAIL", "fail") if mine else paint("OK", "ok")
                block.append(f"port {label} ({services})... {status}")
                block += _render_findings(mine, verbose)
        rest = [f for f in host if id(f) not in used]
        used.update(id(f) for f in rest)
        block += _render_findings(rest, verbose)
        if block:
            lines.append("Verifying host ingress rules")
            lines += block
    leftovers = [f for f in result.findings if id(f) not in used]
    lines += _render_findings(leftovers, verbose)
    if not quiet:
        for note in result.notes:
            lines += textwrap.wrap(f"note: {note}", width=80, subsequent_indent="      ")
    n_services = sum(len(n.view.services) for n in result.networks)
    found = len(result.findings)
    summary = (f"{count(len(result.networks), 'network')}, {count(n_services, 'service')}, "
               f"{found} inconsistenc{'y' if found == 1 else 'ies'}")
    converging = sum(1 for f in result.findings if f.converging)
    if converging:
        summary += f" ({converging} while swarm converges)"
    if result.not_checked:
        summary += f", {len(result.not_checked)} not checked"
    if not quiet or result.findings or result.not_checked:
        lines.append(summary)
    return "\n".join(lines) + ("\n" if lines else "")


def _render_network(result: RunResult, net: NetworkResult, paint: Painter, quiet: bool,
                    verbose: bool, used: set[int]) -> list[str]:
    name = net.view.name
    mine = findings_of(result, "kernel", net)
    header = f"Verifying LB programming for network {name}"
    header += f" (netns {net.namespace})" if net.namespace else ""
    block: list[str] = []
    if net.note:
        block.append(f"  {net.note}")
    for svc in sorted(net.view.services.values(), key=lambda s: s.name):
        status = service_status(result, net, svc)
        own = [f for f in mine if f.service == svc.name]
        used.update(id(f) for f in own)
        if quiet and status != "fail":  # what could not be checked is on stderr already
            continue
        skipped = ("SKIPPED (IPv6 VIP: the engine's load balancer is IPv4-only)" if svc.ipv6
                   else "SKIPPED (no VIP: endpoint mode dnsrr)")
        label = {"ok": paint("OK", "ok"), "fail": paint("FAIL", "fail"),
                 "skipped": paint(skipped, "skip"),
                 "error": paint("INCOMPLETE (see stderr)", "error")}[status]
        block.append(f"service {svc.name}... {label}")
        if verbose and svc.vip:
            block.append(f"    VIP {svc.vip}, fwmark {svc.fwmark} ({svc.fwmark:#x}), tasks "
                         + ", ".join(f"{t.ip}" for t in svc.tasks))
        block += _render_findings(own, verbose)
        if status == "fail" and not own:
            wide = sorted({f.check for f in mine if f.service is None and f.check in NETWORK_WIDE})
            block.append(f"  its network's load balancer fails ({', '.join(wide)}): see below" if wide
                         else "  its published ports fail: see the host ingress rules below")
    rest = [f for f in mine if id(f) not in used]
    used.update(id(f) for f in rest)
    block += _render_findings(rest, verbose)
    lines = [header, *block] if block or not quiet else []
    for layer in LAYERS:
        if layer != "kernel":
            lines += _render_layer(result, net, layer, paint, quiet, verbose, used)
    return lines


# A layer's block for one network: _describe_<layer> gives (header, summary, shown when clean),
# or None when the layer was not read there (its findings, if any, follow the networks).

def _describe_networkdb(net: NetworkResult) -> tuple[str, str, bool]:
    if net.swarm is None:  # a worker: NetworkDB's view is still checked against itself
        return (f"Checking NetworkDB's view of network {net.view.name}",
                count(sum(1 for _ in net.view.all_endpoints()), "endpoint"), False)
    return (f"Comparing swarm with NetworkDB for network {net.view.name}",
            f"{net.swarm[0]} running tasks, {net.swarm[1]} VIPs", True)


def _describe_dns(net: NetworkResult) -> tuple[str, str, bool] | None:
    if net.dns is None or net.dns.answers is None:
        return None
    return (f"Asking the embedded DNS for network {net.view.name}",
            f"{count(len(net.dns.answers), 'name')}, in container {_shorten(net.dns.container, 40)}", True)


def _describe_overlay(net: NetworkResult) -> tuple[str, str, bool] | None:
    ov = net.overlay
    if ov is None:
        return None
    header = f"Verifying overlay for network {net.view.name}"
    return (header + (f" (netns {ov.namespace})" if ov.namespace else ""),
            f"{ov.remote_endpoints} remote endpoints on {count(ov.remote_nodes, 'other node')}", True)


def _describe_probe(net: NetworkResult) -> tuple[str, str, bool] | None:
    pr = net.probe
    if pr is None:
        return None
    parts = [f"other nodes {pr.reached}/{pr.nodes} ({pr.full}/{pr.nodes} at {pr.mtu} bytes)"]
    if pr.backends:
        parts.append(f"backends {pr.backends_answered}/{pr.backends}")
    if pr.published:
        parts.append(f"published ports {pr.published_answered}/{pr.published}")
    return (f"Probing network {net.view.name} from {pr.namespace} (answered/asked)", ", ".join(parts),
            True)


def _render_layer(result: RunResult, net: NetworkResult, name: str, paint: Painter, quiet: bool,
                  verbose: bool, used: set[int]) -> list[str]:
    describe = globals().get(f"_describe_{name}")
    described = describe(net) if describe else None
    if described is None:
        return []
    mine = findings_of(result, name, net)
    used.update(id(f) for f in mine)
    header, summary, shown_when_clean = described
    status = layer_status(result, net, name)
    if status != "fail" and (quiet or not shown_when_clean):
        return []
    label = {"ok": paint("OK", "ok"), "fail": paint("FAIL", "fail"),
             "error": paint("INCOMPLETE (see stderr)", "error")}[status]
    return [header, f"{summary}... {label}", *_render_findings(mine, verbose)]


def _shorten(text: str, width: int) -> str:
    return text if len(text) <= width else text[:width - 3] + "..."


def _render_findings(findings: list[Finding], verbose: bool) -> list[str]:
    lines = []
    for f in findings:
        lines += textwrap.wrap(f"{f.check}: {f.message}", width=80, initial_indent="  ",
                               subsequent_indent="      ", break_long_words=False,
                               break_on_hyphens=False)
        lines.append(f"    layer: {LAYERS[f.layer].against}")
        if f.converging:
            lines += textwrap.wrap(f"converging: {f.converging}; run ssd again once it is done", width=80,
                                   initial_indent="    ", subsequent_indent="      ")
        if verbose:
            lines.append(f"    expected: {json.dumps(f.expected)}")
            lines.append(f"    found:    {json.dumps(f.actual)}")
        if f.hint:  # one command per line, never broken: they are copied from here
            first, *more = f.hint.split("; ")
            lines += [f"    next: {first}", *(f"      {command}" for command in more)]
        if f.action:
            lines += textwrap.wrap(f"fix: {f.action}", width=80, initial_indent="    ",
                                   subsequent_indent="      ", break_long_words=False,
                                   break_on_hyphens=False)
        for known in f.known_issues:
            lines += textwrap.wrap(known_issue_line(known), width=80, initial_indent="    ",
                                   subsequent_indent="      ", break_long_words=False,
                                   break_on_hyphens=False)
    return lines


def known_issue_line(known: dict) -> str:
    if not known["affects_this_engine"]:
        return f"not {known['ref']}: this engine has its fix ({known['fixed_in']})"
    fixed = f", fixed in {known['fixed_in']}" if known["fixed_in"] else ""
    return f"known engine bug {known['ref']}{fixed}: {known['what']}"


# --------------------------------------------------------------------------------------
# Swarm-wide modes: one short-lived job runs ssd on every node; gossip-consistency compares
# their views of a network, --all-nodes gathers their node checks. Results, the job, the
# comparison, the runs and their reports, in that order.
# --------------------------------------------------------------------------------------

# --- their results --------------------------------------------------------------------

@dataclass
class GossipNode:
    """One node's answer in gossip-consistency."""
    id: str
    hostname: str
    status: str  # answered | not-instantiated | no-answer
    digest: str | None = None
    state: dict | None = None  # gossip_state() of its view of the network
    reason: str | None = None  # why it did not answer
    seconds: float | None = None  # from the job's creation to its answer being read

    @property
    def label(self) -> str:
        return self.hostname or self.id[:12]


@dataclass
class GossipResult:
    network: str
    nodes: list[GossipNode]
    differences: list[dict]
    samples: int
    seconds: float
    notes: list[str]
    not_checked: list[NotChecked]


@dataclass
class FleetNode:
    """One node's part of fleet mode (--all-nodes): its node check's JSON document, or why not."""
    id: str
    hostname: str
    report: dict | None  # to_json() of the node check it ran
    reason: str | None = None  # why there is no report
    seconds: float | None = None
    snapshot: dict | None = None
    gossip: dict[str, dict] = field(default_factory=dict)  # network ID -> its gossip-hash answer
    asked: bool = True  # False: swarm runs no task there (down, drained, not Linux)

    @property
    def label(self) -> str:
        return self.hostname or self.id[:12]

    @property
    def status(self) -> str:
        if self.report is None:
            return "not-asked" if not self.asked else "no-answer"
        return str(self.report.get("status") or "incomplete")


@dataclass
class FleetResult:
    networks: list[tuple[str, str]]  # (name, ID) of the networks asked about, ingress included
    nodes: list[FleetNode]
    gossip: list[GossipResult]
    seconds: float
    notes: list[str]
    not_checked: list[NotChecked]


# --- the job: ssd on every node, one short-lived service, always removed --------------

GOSSIP_LABEL = "org.ssd.gossip"  # on every service ssd starts; its value is the run's deadline
GOSSIP_PREFIX = "ssd-gossip-"
FLEET_PREFIX = "ssd-fleet-"
DATAPATH_CAPABILITIES = ("CAP_SYS_ADMIN", "CAP_NET_ADMIN", "CAP_NET_RAW")
TERMINAL = {"complete", "failed", "rejected", "shutdown", "orphaned", "remove"}
TASK_ID_RE = re.compile(r"com\.docker\.swarm\.task\.id=([0-9a-z]+)")


def gossip_hash(collector: Collector, network: str) -> dict:
    """This node's answer: its digest of the network's gossiped state (gossip-hash)."""
    return gossip_answer(read_node(collector), collector.network(network), network)


def gossip_answer(node: NodeInfo, raw: dict | None, network: str) -> dict:
    answer = {"schema_version": SCHEMA_VERSION, "mode": "gossip-hash", "ssd_version": __version__,
              "node": {"id": node.id, "hostname": node.hostname},
              "network": network, "instantiated": False, "digest": None, "state": None}
    if raw is not None and (raw.get("Containers") or raw.get("Services")):
        state = gossip_state(raw)
        answer.update(network=raw.get("Name") or network, instantiated=True,
                      digest=gossip_digest(state), state=state)
    return answer


def answer_to_node(answer: dict, fallback_id: str = "", fallback_host: str = "") -> GossipNode:
    node = answer.get("node") if isinstance(answer.get("node"), dict) else {}
    ident, host = node.get("id") or fallback_id, node.get("hostname") or fallback_host
    if answer.get("instantiated") and answer.get("digest") and isinstance(answer.get("state"), dict):
        return GossipNode(ident, host, "answered", answer["digest"], answer["state"])
    if answer.get("instantiated") is False:
        return GossipNode(ident, host, "not-instantiated")
    errors = answer.get("errors") if isinstance(answer.get("errors"), list) else []
    why = next((e.get("message") for e in errors if isinstance(e, dict) and e.get("message")), None)
    return GossipNode(ident, host, "no-answer", reason=why or "unreadable answer")


def gossip_node(answer: JobAnswer) -> GossipNode:
    if answer.doc is None:
        return GossipNode(answer.node, answer.hostname, "no-answer", reason=answer.reason,
                          seconds=answer.seconds)
    node = answer_to_node(answer.doc, answer.node, answer.hostname)
    node.seconds = answer.seconds
    return node


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


# --- gossip: what every node must agree on --------------------------------------------

def gossip_state(raw: dict) -> dict:
    """The part of one node's GET /networks/{id}?verbose=true that NetworkDB spreads.

    Each service's VIP, ports and tasks (name, endpoint, IP, host), and the network's peers.
    Left out, because they differ between nodes by design: LocalLBIndex (each node numbers
    its own fwmarks), Containers (the local endpoints), and the "" service of engines <= 24
    (the load-balancer endpoints).
    """
    services = {}
    for name, svc in (raw.get("Services") or {}).items():
        if not name:
            continue
        tasks = [{"name": t.get("Name", ""), "endpoint_id": t.get("EndpointID", ""),
                  "ip": (t.get("EndpointIP") or "").split("/")[0],
                  "host_ip": (t.get("Info") or {}).get("Host IP")}
                 for t in svc.get("Tasks") or []]
        services[name] = {
            "vip": _vip(svc.get("VIP")),
            "ports": sorted(f"{p.published}:{p.target}" for p in parse_ports(svc.get("Ports"), None)),
            "tasks": sorted(tasks, key=lambda t: (t["name"], t["endpoint_id"], t["ip"]))}
    peers = sorted(({"name": p.get("Name", ""), "ip": p.get("IP", "")} for p in raw.get("Peers") or []),
                   key=lambda p: (p["name"], p["ip"]))
    return {"network": {"id": raw.get("Id", ""), "name": raw.get("Name", "")},
            "services": services, "peers": peers}


def gossip_digest(state: dict) -> str:
    """sha256 of the canonical JSON of a gossip_state(): equal states, equal digests."""
    canonical = json.dumps(state, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    import hashlib  # gossip only
    return hashlib.sha256(canonical.encode()).hexdigest()


def _who(labels: Iterable[str]) -> str:
    return ", ".join(sorted(labels))


def _groups(values: dict[str, Any]) -> dict[str, list[str]]:
    """canonical value -> the nodes holding it."""
    out: dict[str, list[str]] = {}
    for node, value in values.items():
        out.setdefault(json.dumps(value, sort_keys=True), []).append(node)
    return out


def _task_label(task: dict) -> str:
    return f"{task['name'] or task['endpoint_id'][:12]} ({task['ip']} on host {task['host_ip']})"


def _difference(kind: str, service: str | None, subject: str | None, message: str,
                by_node: dict[str, Any]) -> dict:
    return {"kind": kind, "service": service, "subject": subject, "message": message,
            "by_node": by_node}


def diff_gossip(states: dict[str, dict]) -> list[dict]:
    """What differs between the nodes' views (node label -> gossip_state), entry by entry."""
    nodes = sorted(states)
    out: list[dict] = []
    for name in sorted({s for state in states.values() for s in state["services"]}):
        have = [n for n in nodes if name in states[n]["services"]]
        if len(have) < len(nodes):
            missing = [n for n in nodes if n not in have]
            out.append(_difference("service", name, None, f"service {name} is known to {_who(have)} "
                                   f"but missing on {_who(missing)}",
                                   {n: n in have for n in nodes}))
        for key in ("vip", "ports"):
            values = {n: states[n]["services"][name][key] for n in have}
            groups = _groups(values)
            if len(groups) > 1:
                shown = "; ".join(f"{json.loads(v)} on {_who(ns)}" for v, ns in sorted(groups.items()))
                out.append(_difference(key, name, None, f"service {name}: {key} differs: {shown}", values))
        out += _diff_tasks(name, {n: states[n]["services"][name]["tasks"] for n in have})
    peers = {n: [f"{p['name']} ({p['ip']})" for p in states[n]["peers"]] for n in nodes}
    groups = _groups(peers)
    if len(groups) > 1:
        shown = "; ".join(f"{_who(ns)} see{'s' if len(ns) == 1 else ''} {', '.join(json.loads(v)) or 'none'}"
                          for v, ns in sorted(groups.items(), key=lambda kv: kv[1]))
        out.append(_difference("peers", None, None, f"peers differ: {shown}", peers))
    return out


def _diff_tasks(service: str, tasks_by_node: dict[str, list[dict]]) -> list[dict]:
    out = []
    nodes = sorted(tasks_by_node)
    keyed = {n: {(t["name"], t["endpoint_id"]): t for t in tasks} for n, tasks in tasks_by_node.items()}
    for key in sorted({k for tasks in keyed.values() for k in tasks}):
        holders = [n for n in nodes if key in keyed[n]]
        task = keyed[holders[0]][key]
        if len(holders) < len(nodes):
            missing = [n for n in nodes if n not in holders]
            out.append(_difference("task", service, task["name"],
                                   f"service {service}: task {_task_label(task)} is known to "
                                   f"{_who(holders)} but missing on {_who(missing)}",
                                   {n: n in holders for n in nodes}))
            continue
        values = {n: keyed[n][key] for n in nodes}
        groups = _groups(values)
        if len(groups) > 1:
            shown = "; ".join(f"{_task_label(json.loads(v))} on {_who(ns)}"
                              for v, ns in sorted(groups.items()))
            out.append(_difference("task", service, task["name"],
                                   f"service {service}: task {task['name']} differs: {shown}", values))
    return out


# --- gossip-consistency: collect every node's view, compare, re-sample ----------------

GOSSIP_TRIES = 3  # swarm converges asynchronously: a difference must last this many samples
GOSSIP_PAUSE = 3.0  # seconds between samples


def compare_views(nodes: list[GossipNode]) -> list[dict]:
    answered = [n for n in nodes if n.status == "answered"]
    if len({n.digest for n in answered}) < 2:
        return []
    labels = [n.label for n in answered]
    states = {(n.label if labels.count(n.label) == 1 else f"{n.label}/{n.id[:8]}"): n.state
              for n in answered}
    return diff_gossip(states)


def gossip_result(network: str, nodes: list[GossipNode], samples: int, started: float,
                  notes: list[str]) -> GossipResult:
    nodes = sorted(nodes, key=lambda n: (n.label, n.id))
    not_checked = [NotChecked(f"node {n.label}", n.reason or "no answer")
                   for n in nodes if n.status == "no-answer"]
    answered = [n.label for n in nodes if n.status == "answered"]
    if len(answered) < 2 and not not_checked:  # agreement needs two views: one, or none, proves nothing
        held = f"only {answered[0]} holds it" if answered else "no node holds it (no task or load balancer)"
        not_checked.append(NotChecked(f"network {network}", f"nothing to compare: {held}, of "
                                f"{count(len(nodes), 'node')} asked; gossip consistency needs two "
                                "nodes with the network"))
    return GossipResult(network, nodes, compare_views(nodes), samples, time.monotonic() - started,
                        notes, not_checked)


def on_a_manager(args: argparse.Namespace, mode: str) -> tuple[Engine, Collector]:
    """The swarm-wide modes' first step: the Engine API, on a manager (only one runs services)."""
    engine = engine_of(args)
    collector = Collector(engine, args.exec_root)
    if not read_node(collector).manager:
        raise CheckError(f"{mode} starts a service on every node: run it on a manager")
    return engine, collector


@dataclass
class JobPlan:
    """What both swarm-wide modes settle before they start their job."""
    image: str
    eligible: dict[str, str]  # node ID -> hostname: the nodes that run the job
    skipped: list[SkippedNode]
    notes: list[str]


def plan_job(args: argparse.Namespace, engine: Engine, mode: str, reads_datapath: bool) -> JobPlan:
    """The image every node runs, the API it needs, the leftovers of killed runs cleared, and
    the nodes that can run the job (the others, and why, in the notes)."""
    image = args.image or own_image(engine)
    if not image:
        raise CheckError(f"{mode} runs ssd on every node as a swarm service: pass --image IMAGE, "
                         "an ssd image every node has or can pull")
    api = str(engine.api.api_version)
    if reads_datapath and not EngineModel.runs_jobs(api):
        raise CheckError(f"{mode} needs Engine API 1.41 (Docker 20.10) or newer, to give its "
                         f"service the capabilities a datapath read needs; this one speaks {api}: "
                         "run ssd on each node instead")
    notes: list[str] = []
    leftover_jobs(engine, notes)
    eligible, skipped = eligible_nodes(engine)
    return JobPlan(image, eligible, skipped, notes)


def gossip_live(args: argparse.Namespace, network: str) -> GossipResult:
    started = time.monotonic()
    engine, collector = on_a_manager(args, "gossip-consistency")
    net = resolve_networks(collector.networks(), [network])[0]
    plan = plan_job(args, engine, "gossip-consistency", reads_datapath=False)
    notes = plan.notes + [node.note for node in plan.skipped]
    result = gossip_sampled(engine, net, plan.image, plan.eligible, args.wait, started, notes)
    if args.verbose:
        notes.append(f"{count(result.samples, 'sample')} in {time.monotonic() - started:.1f} s")
    return result


def gossip_sampled(engine: Engine, net: dict, image: str, eligible: dict[str, str], timeout: float,
                   started: float, notes: list[str], first: list[GossipNode] | None = None
                   ) -> GossipResult:
    """Every node's view of net compared, re-sampled while they differ: swarm converges
    asynchronously, so only a difference that outlasts GOSSIP_TRIES samples is divergence.
    first: the first sample's answers when they were already collected (fleet mode)."""
    differed = 0
    not_removed: list[str] = []
    for sample in range(1, GOSSIP_TRIES + 1):
        if sample == 1 and first is not None:
            nodes = first
        else:
            job = NodeJob(engine, [net["Id"], "gossip-hash", "--json"], image, timeout)
            answers = job.run(eligible)
            not_removed += job.not_removed
            nodes = [gossip_node(answer) for answer in answers.values()]
        result = gossip_result(net.get("Name") or net["Id"], nodes, sample, started, notes)
        result.not_checked += not_removed_problems(not_removed)
        if not result.differences:
            break
        differed += 1
        if sample < GOSSIP_TRIES:
            time.sleep(GOSSIP_PAUSE)
    if differed and not result.differences:
        notes.append(f"the views differed in {differed} of {count(result.samples, 'sample')} "
                     "and then agreed: "
                     "convergence, not divergence")
    elif differed:
        notes.append(f"the views differed in all {count(differed, 'sample')} over {result.seconds:.0f} s")
    return result


def gossip_from_snapshots(paths: list[str], network: str) -> GossipResult:
    """The same comparison on snapshots of several nodes: no service is started."""
    started = time.monotonic()
    docs = [load_snapshot(path) for path in paths]  # once each: "-" is standard input
    nodes = []
    for doc, path in zip(docs, paths, strict=True):
        with replaying(path):
            nodes.append(_snapshot_view(doc, path, network))
    same_swarm(docs, paths, network)
    return gossip_result(network, nodes, 1, started,
                         [f"compared {len(paths)} snapshots taken at "
                          + ", ".join(sorted({str(d.get('taken_at', '?')) for d in docs}))])


def same_swarm(docs: list[dict], paths: list[str], network: str) -> None:
    """Snapshots to compare are of different nodes of one swarm: one node twice agrees with
    itself, and two swarms differ in everything, neither says anything about gossip."""
    seen: dict[str, str] = {}
    for doc, path in zip(docs, paths, strict=True):
        node = str((doc.get("node") or {}).get("id") or "")
        if node and node in seen:
            raise CheckError(f"{seen[node]} and {path} are snapshots of the same node "
                             f"({(doc.get('node') or {}).get('hostname') or node[:12]}): gossip-consistency "
                             "compares different nodes of one swarm")
        seen.setdefault(node, path)
    marks: dict[tuple[str, str], str] = {}  # (what, its value) -> the first snapshot that has it
    for doc, path in zip(docs, paths, strict=True):
        api = doc["samples"][-1]["api"]
        swarm = (api.get("GET /info") or {}).get("Swarm") or {}
        cluster = str((swarm.get("Cluster") or {}).get("ID") or "")
        listed = [n for n in api.get("GET /networks") or [] if isinstance(n, dict)
                  and n.get("Name") == network and n.get("Scope") == "swarm"]
        for what, value in (("swarm", cluster), ("network", str(listed[0].get("Id", "")) if listed else "")):
            other = next((p for (w, v), p in marks.items() if w == what and v != value), None)
            if value and other is not None:
                why = "another swarm ID" if what == "swarm" else f"another ID for network {network}"
                raise CheckError(f"{path} and {other} are snapshots of different swarms ({why}): "
                                 "gossip-consistency compares the nodes of one swarm")
            if value:
                marks.setdefault((what, value), path)


def _snapshot_view(doc: dict, path: str, network: str) -> GossipNode:
    node = doc.get("node") or {}
    ident, host = str(node.get("id", "")), str(node.get("hostname") or path)
    api = doc["samples"][-1]["api"]
    try:
        net = resolve_networks(api["GET /networks"], [network])[0]
    except CheckError:
        return GossipNode(ident, host, "not-instantiated")
    raw = api.get(f"GET /networks/{net['Id']}")
    if raw is None:
        return GossipNode(ident, host, "no-answer", reason=f"{path} holds no inspect of network {network}")
    state = gossip_state(raw)
    if not (raw.get("Containers") or raw.get("Services")):
        return GossipNode(ident, host, "not-instantiated")
    return GossipNode(ident, host, "answered", gossip_digest(state), state)


# --- --all-nodes (fleet mode): the node check on every node, by one job ---------------

FLEET_MEMBER = "fleet-member"  # the per-node command of fleet mode's service (not for people)
FLEET_ANSWER = "ssd-fleet-answer"


def fleet_answer(collector: Collector, node: NodeInfo, result: RunResult, snapshot: dict | None
                 ) -> dict:
    """What one node sends back: its report, its gossip hash of every network it checked (so
    that --gossip costs no second service), and its snapshot if one was asked for."""
    last = collector.sample["api"]  # the inspects the check judged, not a later read
    gossip = {net.view.id: gossip_answer(node, last.get(f"GET /networks/{net.view.id}"), net.view.id)
              for net in result.networks}
    return {"format": FLEET_ANSWER, "schema_version": SCHEMA_VERSION, "mode": FLEET_MEMBER,
            "ssd_version": __version__,
            "node": {"id": node.id, "hostname": node.hostname},
            "report": to_json(result), "gossip": gossip, "snapshot": snapshot}


def fleet_node(answer: JobAnswer) -> FleetNode:
    doc = answer.doc
    if doc is None or doc.get("format") != FLEET_ANSWER or not isinstance(doc.get("report"), dict):
        errors = (doc or {}).get("errors") if isinstance((doc or {}).get("errors"), list) else []
        why = next((e.get("message") for e in errors if isinstance(e, dict) and e.get("message")),
                   None)
        if doc is not None and why is None:
            why = f"not an answer of this ssd (from ssd {doc.get('ssd_version') or 'of unknown version'})"
        return FleetNode(answer.node, answer.hostname, None, why or answer.reason, answer.seconds)
    gossip = doc.get("gossip") if isinstance(doc.get("gossip"), dict) else {}
    snapshot = doc.get("snapshot") if isinstance(doc.get("snapshot"), dict) else None
    return FleetNode(answer.node, answer.hostname, doc["report"], None, answer.seconds, snapshot, gossip)


def view_from_gossip(state: dict) -> NetworkView:
    """A network as a node's NetworkDB listed it, rebuilt from the state it sent back
    (gossip_state): services with their VIP and tasks, and the peers; what only that node sees
    (its local endpoints, its marks) is not in it."""
    services = {}
    for name, svc in (state.get("services") or {}).items():
        if not isinstance(svc, dict):
            continue
        tasks = [TaskView(str(t.get("name") or ""), str(t.get("endpoint_id") or ""), str(t.get("ip") or ""),
                          t.get("host_ip")) for t in svc.get("tasks") or [] if isinstance(t, dict)]
        services[name] = ServiceView(name, svc.get("vip"), 0, [], tasks)
    net = state.get("network") if isinstance(state.get("network"), dict) else {}
    return NetworkView(id=str(net.get("id") or ""), name=str(net.get("name") or ""), ingress=False, dsr=False,
                       subnets=[], services=services, endpoints={}, instantiated=True,
                       peers=[(str(p.get("name") or ""), str(p["ip"])) for p in state.get("peers") or []
                              if isinstance(p, dict) and p.get("ip")])


def judge_workers(collector: Collector, nodes: list[FleetNode], age: float = 0.0) -> list[str]:
    """A worker has no /tasks or /services: the layer that compares NetworkDB with swarm cannot
    run there. Here, on the manager, it runs for each worker that answered, on the NetworkDB
    view the worker sent back (the inspect its check judged) against swarm's tasks, services and
    nodes read now; what it finds joins that worker's report. Only what the worker could not
    judge itself is added: the same views without swarm's knowledge give the rest. Tasks are
    judged as of `age` seconds ago (when the run started): every worker read its NetworkDB after
    that, so a task's convergence window is never cut short by the job's own duration."""
    workers = [n for n in nodes if n.report is not None and n.gossip
               and not (n.report.get("node") or {}).get("manager")]
    if not workers:
        return []
    knowledge = swarm_knowledge(collector.services(), collector.tasks(), collector.nodes())
    now, judged = collector.clock() - age, []
    for n in workers:
        answers = [a["state"] for a in n.gossip.values() if isinstance(a, dict) and a.get("instantiated")
                   and isinstance(a.get("state"), dict)]
        if not answers:
            continue
        try:
            model = engine_model(str((n.report.get("node") or {}).get("engine_version") or ""))
        except CheckError:
            continue
        alone = NodeState(model, "", [view_from_gossip(a) for a in answers])
        own = {f.key for f in run_checks(alone)}
        state = NodeState(model, "", [view_from_gossip(a) for a in answers], **knowledge, now=now)
        separate_all_departed(state)
        found = [f for f in mark_converging(run_checks(state), state)
                 if f.layer == "networkdb" and f.key not in own]
        add_to_report(n.report, found, state)
        judged.append(n.label)
    if not judged:
        return []
    return [f"swarm's tasks, services and nodes were compared here with the NetworkDB of "
            f"{count(len(judged), 'worker')} ({', '.join(judged)}), from the view each sent back: "
            "a worker cannot read them itself"]


def add_to_report(report: dict, found: list[Finding], state: NodeState) -> None:
    """A worker's report, with what the manager judged for it: its findings, each network's
    swarm block, which of the worker's own findings swarm has not converged for (a worker cannot
    tell), and the report's status (findings decide it, as overall_status does)."""
    names = {f.name for f in dataclasses.fields(Finding)}
    for own in report.get("findings") or []:  # the worker's own, which it could not tell converging
        if isinstance(own, dict) and not own.get("converging"):
            own["converging"] = converging_reason(
                Finding(**{k: v for k, v in own.items() if k in names}), state)
    report["findings"] = [*(report.get("findings") or []), *(f.to_json() for f in found)]
    every = [f for f in report["findings"] if isinstance(f, dict)]
    if every:
        report["status"] = "converging" if all(f.get("converging") for f in every) else "inconsistent"
    for net in report.get("networks") or []:
        view = next((v for v in state.views if v.id == net.get("id")), None)
        if view is not None and isinstance(net, dict) and net.get("swarm") is None:
            tasks, vips = swarm_counts(state, view)
            net["swarm"] = {"status": "fail" if any(f.network == view.name for f in found) else "ok",
                            "tasks": tasks, "vips": vips}


def fleet_live(args: argparse.Namespace) -> FleetResult:
    started = time.monotonic()
    engine, collector = on_a_manager(args, "--all-nodes")
    listing = collector.networks()
    nets = resolve_networks(listing, args.networks)
    if not args.networks:  # the matrix's columns: overlays by name, ingress last
        nets.sort(key=lambda n: (bool(n.get("Ingress")), n.get("Name") or ""))
    if not any(n.get("Ingress") for n in nets):  # the node check always looks at ingress too
        nets += [n for n in listing if n.get("Ingress") and n.get("Scope") == "swarm"]
    plan = plan_job(args, engine, "--all-nodes", reads_datapath=True)
    image, eligible, skipped, notes = plan.image, plan.eligible, plan.skipped, plan.notes
    not_checked: list[NotChecked] = []
    member = [n["Id"] for n in nets] if args.networks else []
    member += [FLEET_MEMBER, "--json", "--settle", f"{args.settle:g}", "--exec-root", args.exec_root]
    if args.probe:
        member.append("--probe")
    if args.snapshot_dir:
        member += ["--snapshot", "-"]
    job = NodeJob(engine, member, image, args.wait, FLEET_PREFIX,
                  datapath_dir=os.path.join(args.exec_root, "netns"))
    answers = job.run(eligible)
    not_checked += not_removed_problems(job.not_removed)
    nodes = [fleet_node(answer) for answer in answers.values()]
    here = local_drained(args, engine, collector, skipped)
    if here is not None:
        nodes.append(here)
        skipped = [gone for gone in skipped if gone.id != here.id]
    notes += judge_workers(collector, nodes, time.monotonic() - started)
    for gone in skipped:
        nodes.append(FleetNode(gone.id, gone.hostname, None, f"{gone.reason}: not asked", asked=False))
        if not gone.deliberate:  # a node that is down or unknown could not be checked
            not_checked.append(NotChecked(f"node {gone.hostname}",
                                          f"{gone.reason}: swarm cannot run ssd there"))
    nodes.sort(key=lambda n: (n.label, n.id))
    for n in nodes:
        if n.asked and n.report is None:
            not_checked.append(NotChecked(f"node {n.label}", n.reason or "no answer"))
    gossip = [fleet_gossip(engine, net, image, eligible, args.wait, nodes)
              for net in nets] if args.gossip else []
    not_checked += [p for g in gossip for p in g.not_checked if p.scope == "ssd service"]
    return FleetResult([(n.get("Name") or n["Id"], n["Id"]) for n in nets], nodes, gossip,
                       time.monotonic() - started, notes, not_checked)


def local_drained(args: argparse.Namespace, engine: Engine, collector: Collector,
                  skipped: list[SkippedNode]) -> FleetNode | None:
    """This manager, when an operator drained (or paused) it: swarm runs no task there, so the
    job cannot check it, yet its routing mesh still takes published ports. Checked here, in
    this process, as its job would (only through the local socket: over -H or a context this
    process is not on that node)."""
    node = read_node(collector)
    if not any(g.id == node.id and g.deliberate for g in skipped):
        return None
    if not engine.endpoint.url.startswith(("unix://", "/")):
        return None
    started = time.monotonic()
    here = Collector(engine, args.exec_root, record_api=bool(args.snapshot_dir))
    here.probing = args.probe
    node, result = settled_check(here, list(args.networks), args.settle, live=True)
    snapshot = snapshot_document(here, node, list(args.networks), args.settle) if args.snapshot_dir else None
    answer = fleet_answer(here, node, result, snapshot)
    return FleetNode(node.id, node.hostname, answer["report"], None, time.monotonic() - started,
                     snapshot, answer["gossip"])


def fleet_gossip(engine: Engine, net: dict, image: str, eligible: dict[str, str], timeout: float,
                 nodes: list[FleetNode]) -> GossipResult:
    """gossip-consistency of net from the answers fleet mode already has; a difference is
    re-sampled by gossip services of its own, as gossip-consistency does."""
    first = []
    for n in nodes:
        if n.id not in eligible:
            continue
        if n.report is None:
            first.append(GossipNode(n.id, n.hostname, "no-answer", reason=n.reason))
        else:
            view = answer_to_node(n.gossip.get(net["Id"]) or {"instantiated": False})
            view.id, view.hostname = n.id, n.hostname  # as swarm knows the node that answered
            first.append(view)
    return gossip_sampled(engine, net, image, eligible, timeout, time.monotonic(), [], first)


# --- their reports --------------------------------------------------------------------

def render_gossip_nagios(result: GossipResult) -> str:
    answered = sum(n.status == "answered" for n in result.nodes)
    state = nagios_state(gossip_status(result), answered >= 2)
    if result.differences:
        summary = f"network {result.network}: {count(len(result.differences), 'difference')} between nodes"
    else:
        summary = f"network {result.network}: {answered} of {count(len(result.nodes), 'node')} agree"
    if result.not_checked:
        summary += f"; not checked: {result.not_checked[0].scope}: {result.not_checked[0].message}"
    return nagios_line(state, summary, {"differences": f"{len(result.differences)};;0;0",
                                        "nodes_answered": answered, "nodes": len(result.nodes),
                                        "time": f"{result.seconds:.2f}s"})


def gossip_status(result: GossipResult) -> str:
    if result.differences:
        return "inconsistent"
    return "incomplete" if result.not_checked else "consistent"


def gossip_to_json(result: GossipResult) -> dict:
    return {"schema_version": SCHEMA_VERSION, "mode": "gossip-consistency", "ssd_version": __version__,
            "status": gossip_status(result),
            "network": result.network,
            "nodes": [{"id": n.id, "hostname": n.hostname, "status": n.status, "digest": n.digest,
                       "reason": n.reason, "seconds": n.seconds} for n in result.nodes],
            "differences": result.differences, "samples": result.samples,
            "seconds": round(result.seconds, 1),
            "errors": [{"scope": p.scope, "message": p.message} for p in result.not_checked],
            "notes": result.notes}


def render_gossip(result: GossipResult, paint: Painter, verbose: bool = False) -> str:
    lines = []
    for n in result.nodes:
        head = f"Node id: {n.id} ({n.hostname})"
        if verbose and n.seconds is not None:
            head += f" [answered after {n.seconds:g} s]"
        if n.status == "answered":
            lines.append(f"{head} gossip hash {n.digest}")
        elif n.status == "not-instantiated":
            lines.append(f"{head} network {result.network} not instantiated here (no task or load "
                         "balancer): not compared")
        else:
            lines.append(f"{head} {paint('no answer', 'error')}: {n.reason}")
    lines += gossip_verdict_lines(result, paint)
    for note in result.notes:
        lines += textwrap.wrap(f"note: {note}", width=80, subsequent_indent="      ")
    return "\n".join(lines) + "\n"


def gossip_verdict_lines(result: GossipResult, paint: Painter) -> list[str]:
    lines: list[str] = []
    answered = [n for n in result.nodes if n.status == "answered"]
    if result.differences:
        views = len({n.digest for n in answered})
        lines.append(f"network {result.network}: {paint('DIVERGED', 'fail')}: {count(len(answered), 'node')} "
                     f"hold {views} different views")
        for diff in result.differences:
            lines += textwrap.wrap(diff["message"], width=80, initial_indent="  ",
                                   subsequent_indent="      ", break_long_words=False)
        lines.append(f"    next: docker network inspect -v {result.network} on the nodes named; "
                     "check 7946/tcp+udp between them")
    elif len(answered) < 2:
        lines.append(f"network {result.network}: {paint('NOT COMPARED', 'error')}: "
                     f"{len(answered)} of {count(len(result.nodes), 'node')} hold it")
    else:
        state = answered[0].state or {}
        tasks = sum(len(s["tasks"]) for s in state.get("services", {}).values())
        lines.append(f"network {result.network}: {paint('OK', 'ok')}: {count(len(answered), 'node')} agree "
                     f"({count(len(state.get('services', {})), 'service')}, {count(tasks, 'task')}, "
                     f"{count(len(state.get('peers', [])), 'peer')})")
    return lines


# --- fleet mode's reports -------------------------------------------------------------

def fleet_status(result: FleetResult) -> str:
    statuses = {n.status for n in result.nodes}
    if "inconsistent" in statuses or any(g.differences for g in result.gossip):
        return "inconsistent"
    if "converging" in statuses:
        return "converging"
    if result.not_checked or "incomplete" in statuses or any(g.not_checked for g in result.gossip):
        return "incomplete"
    return "consistent"


def _report_findings(report: dict) -> list[Finding]:
    names = {f.name for f in dataclasses.fields(Finding)}
    return [Finding(**{k: v for k, v in f.items() if k in names})
            for f in report.get("findings") or [] if isinstance(f, dict)]


def fleet_cell(node: FleetNode, net_id: str | None) -> str:
    """One cell of the matrix: a network (by ID) on a node, or its host ingress (None)."""
    report = node.report
    if report is None:
        return "not asked" if not node.asked else "no answer"
    findings = [f for f in report.get("findings") or [] if isinstance(f, dict)]
    if net_id is None:
        host = report.get("host_ingress") or {}
        mine = [f for f in findings if _host_rule(f)]
        return f"FAIL {len(mine)}" if mine else ("OK" if host.get("checked") else "-")
    net = next((n for n in report.get("networks") or [] if n.get("id") == net_id), None)
    if net is None:
        return "-"
    mine = [f for f in findings if f.get("network") == net.get("name") and not _host_rule(f)]
    if mine:
        return f"FAIL {len(mine)}"
    if not net.get("checked"):
        return "-" if "not instantiated" in str(net.get("note") or "") else "NOT CHECKED"
    return "PARTIAL" if net.get("partial") else "OK"


def _host_rule(finding: dict) -> bool:
    """A finding of the host's ingress rules (the matrix's "host ports" column): the kernel layer
    in the host's namespace. (An overlay finding read there, as missing ESP state, is its
    network's.)"""
    return finding.get("layer", "kernel") == "kernel" and finding.get("namespace") == "host"


def fleet_to_json(result: FleetResult) -> dict:
    return {"schema_version": SCHEMA_VERSION, "mode": "all-nodes", "ssd_version": __version__,
            "status": fleet_status(result),
            "networks": [{"name": name, "id": ident} for name, ident in result.networks],
            "nodes": [{"id": n.id, "hostname": n.hostname, "status": n.status, "reason": n.reason,
                       "seconds": n.seconds, "report": n.report} for n in result.nodes],
            "gossip": [gossip_to_json(g) for g in result.gossip],
            "probes": [dataclasses.asdict(pair) for pair in probe_pairs(result)],
            "seconds": round(result.seconds, 1),
            "errors": [{"scope": p.scope, "message": p.message} for p in result.not_checked],
            "notes": result.notes}


def render_fleet(result: FleetResult, paint: Painter, quiet: bool, verbose: bool) -> str:
    columns = [(name, ident) for name, ident in result.networks] + [("host ports", None)]
    width = max([len(n.label) for n in result.nodes] + [4]) + 2
    cells = {n.id: [fleet_cell(n, ident) for _, ident in columns] for n in result.nodes}
    sizes = [max([len(name), *(len(cells[n.id][i]) for n in result.nodes)]) + 2
             for i, (name, _) in enumerate(columns)]
    colour = {"OK": "ok", "-": "ok", "PARTIAL": "error", "NOT CHECKED": "error",
              "no answer": "error", "not asked": "skip"}
    asked = [n for n in result.nodes if n.asked]
    answered = sum(n.report is not None for n in asked)
    lines = [f"Swarm check: {answered} of {count(len(asked), 'node')} answered "
             f"in {result.seconds:.1f} s"]
    heads = (name.ljust(size) for (name, _), size in zip(columns, sizes, strict=True))
    lines.append(("NODE".ljust(width) + "".join(heads)).rstrip())
    for n in result.nodes:
        if quiet and n.status == "consistent":
            continue
        row = n.label.ljust(width)
        for cell, size in zip(cells[n.id], sizes, strict=True):
            row += paint(cell, colour.get(cell, "fail")) + " " * (size - len(cell))
        lines.append(row.rstrip())
    for n in result.nodes:
        findings = _report_findings(n.report or {})
        errors = (n.report or {}).get("errors") or []
        if not findings and not (verbose and errors) and n.report is not None:
            continue
        node = (n.report or {}).get("node") or {}
        role = "manager" if node.get("manager") else "worker"
        head = (f"{n.label}: engine {node.get('engine_version')}, {role}" if n.report
                else f"{n.label}: {n.reason}")
        lines.append(head)
        lines += _render_findings(findings, verbose)
        lines += [f"  not checked: {e.get('scope')}: {e.get('message')}" for e in errors if verbose]
    for g in result.gossip:
        lines += gossip_verdict_lines(g, paint)
    lines += probe_matrix_lines(result, paint, quiet)
    for line in layer_lines(result):
        lines += textwrap.wrap(line, width=80, subsequent_indent="      ")
    if not quiet:
        for note in result.notes:
            lines += textwrap.wrap(f"note: {note}", width=80, subsequent_indent="      ")
    total = sum(len(_report_findings(n.report or {})) for n in result.nodes)
    where = sorted({n.label for n in result.nodes if _report_findings(n.report or {})})
    summary = (f"{count(len(result.nodes), 'node')}, {count(len(result.networks), 'network')}, {total} "
               f"inconsistenc{'y' if total == 1 else 'ies'}" + (f" on {', '.join(where)}" if where else ""))
    diverged = [g.network for g in result.gossip if g.differences]
    if diverged:
        summary += f", views diverge on {', '.join(diverged)}"
    if result.not_checked:
        summary += f", {len(result.not_checked)} not checked"
    lines.append(summary)
    return "\n".join(lines) + "\n"


@dataclass(frozen=True, slots=True)
class ProbePair:
    """--all-nodes --probe: what one node's probes saw of another, on one network. "paths": its
    endpoints answered small / full-size echo requests; "ports": that node's published ports
    answered (None: not asked, as on an overlay, which publishes nothing of its own)."""
    network: str
    source: str  # node labels
    target: str
    small: bool | None
    full: bool | None
    ports_asked: int = 0
    ports_answered: int = 0

    @property
    def cell(self) -> str:
        path = ("." if self.source == self.target else "-" if self.small is None
                else "ok" if self.small and self.full
                else "MTU" if self.small else "LOST")
        if not self.ports_asked:
            return path
        ports = ("ok" if self.ports_answered == self.ports_asked
                 else f"{self.ports_answered}/{self.ports_asked}")
        return f"{path} {ports}"

    @property
    def broken(self) -> bool:
        return self.small is False or self.full is False or self.ports_answered < self.ports_asked


def probe_pairs(result: FleetResult) -> list[ProbePair]:
    """Every (network, from, to) that a node's --probe judged, from the members' reports; an
    address is named by the node that reports it as its own (else it stays an address)."""
    label_of = {}
    for n in result.nodes:
        node = (n.report or {}).get("node") or {}
        for addr in [node.get("addr"), *(node.get("vteps") or [])]:  # a --data-path-addr too
            if isinstance(addr, str) and addr:
                label_of[addr] = n.label
    pairs = []
    for n in result.nodes:
        for net in (n.report or {}).get("networks") or []:
            probe = net.get("probe") if isinstance(net, dict) else None
            if not isinstance(probe, dict):
                continue
            paths, entries = probe.get("paths") or {}, probe.get("entries") or {}
            for ip in sorted(set(paths) | set(entries), key=_ip_order):
                seen, ports = paths.get(ip) or {}, entries.get(ip) or {}
                pairs.append(ProbePair(net.get("name", ""), n.label, label_of.get(ip, ip),
                                       seen.get("small"), seen.get("full") if seen else None,
                                       ports.get("asked", 0), ports.get("answered", 0)))
    return pairs


def probe_matrix_lines(result: FleetResult, paint: Painter, quiet: bool) -> list[str]:
    """Per network probed, who reaches whom: rows are where the probes left from, columns the
    node they asked. ok, MTU (small packets only), LOST (nothing); on ingress, then the node's
    published ports answered (ok, or answered/asked)."""
    pairs = probe_pairs(result)
    lines: list[str] = []
    for network in dict.fromkeys(p.network for p in pairs):
        mine = [p for p in pairs if p.network == network]
        if quiet and not any(p.broken for p in mine):
            continue
        nodes = sorted({p.source for p in mine} | {p.target for p in mine})
        cells = {(p.source, p.target): p for p in mine}
        width = max(len(n) for n in [*nodes, "FROM/TO"]) + 2
        size = max([len(p.cell) for p in mine] + [len(n) for n in nodes]) + 2
        legend = (f"Probes on network {network} (row: from, column: to; ok, MTU: small packets "
                  "only, LOST: no answer" + ("; then published ports" if any(
                      p.ports_asked for p in mine) else "") + ")")
        lines += textwrap.wrap(legend, width=80, subsequent_indent="  ")
        lines.append(("FROM/TO".ljust(width) + "".join(n.ljust(size) for n in nodes)).rstrip())
        for source in sorted({p.source for p in mine}):
            row = source.ljust(width)
            for target in nodes:
                pair = cells.get((source, target))
                cell = "." if pair is None else pair.cell
                row += paint(cell, "fail" if pair and pair.broken else "ok") + " " * (size - len(cell))
            lines.append(row.rstrip())
        for verdict in probe_verdicts(mine):
            lines += textwrap.wrap(verdict, width=80, initial_indent="  ", subsequent_indent="      ")
    return lines


def probe_verdicts(pairs: list[ProbePair]) -> list[str]:
    """One line per node that every other node lost (in both directions where both probed), else
    one per broken pair: "node3: no other node reaches it over ov2, full-size only"."""
    out = []
    sources = {p.source for p in pairs}
    explained: set[tuple[str, str]] = set()
    for node in sorted({p.target for p in pairs}):
        towards = [p for p in pairs if p.target == node and p.small is not None]
        back = [p for p in pairs if p.source == node and p.small is not None]
        others = sources - {node}
        if not towards or {p.source for p in towards} != others or not all(p.full is False for p in towards):
            continue
        if back and not all(p.full is False for p in back):
            continue
        mtu = all(p.small for p in towards + back)
        both = " in both directions" if back else ""
        net = pairs[0].network
        out.append(f"{node}: full-size packets pass{both} between it and no other node over {net} "
                   "(small ones do: an MTU black hole)" if mtu
                   else f"{node}: no other node reaches it{both} over {net}")
        explained |= {(p.source, p.target) for p in towards + back}
    for p in pairs:  # the rest, pair by pair (published ports travel on the underlay: always said)
        what = []
        if (p.source, p.target) not in explained:
            if p.small is False:
                what.append("no echo answered")
            elif p.full is False:
                what.append("full-size echo lost")
        if p.ports_answered < p.ports_asked:
            what.append(f"{p.ports_asked - p.ports_answered} of {p.ports_asked} published ports silent")
        if what:
            out.append(f"{p.source} -> {p.target} over {p.network}: {', '.join(what)}")
    return out


def layer_lines(result: FleetResult) -> list[str]:
    """With --gossip: which layer disagrees, per network whose overlay check fired somewhere.

    Both speak of the same peers (NetworkDB's Peers of the network, and the Host IP it gives
    each endpoint): gossip compares them between nodes, the overlay check compares one node's
    NetworkDB with its kernel. The kernel follows its own node's NetworkDB, so a gossip
    difference is the one to fix first."""
    out = []
    for g in result.gossip:
        nodes = sorted({n.label for n in result.nodes for f in _report_findings(n.report or {})
                        if f.layer == "overlay" and f.network == g.network})
        if not nodes:
            continue
        if g.differences:
            out.append(f"layers: on {g.network}, NetworkDB differs between nodes (gossip) and the overlay "
                       f"differs from NetworkDB on {', '.join(nodes)}: the kernel follows its node's "
                       "NetworkDB, so fix the gossip difference first")
        else:
            out.append(f"layers: on {g.network}, every node's NetworkDB agrees (gossip); the kernel's "
                       f"overlay differs from it on {', '.join(nodes)} only")
    return out


def render_fleet_nagios(result: FleetResult) -> str:
    answered = [n for n in result.nodes if n.report is not None]
    findings = [(n.label, f) for n in answered for f in _report_findings(n.report or {})]
    state = nagios_state(fleet_status(result), bool(answered))
    diverged = [g.network for g in result.gossip if g.differences]
    if findings:
        where = sorted({label for label, _ in findings})
        many = "inconsistencies" if len(findings) > 1 else "inconsistency"
        summary = f"{len(findings)} {many} on {', '.join(where)}: {_counted(f.check for _, f in findings)}"
    else:
        summary = f"{count(len(answered), 'node')} consistent"
    if diverged:
        summary += f"; views diverge on network {', '.join(diverged)}"
    if result.not_checked:
        summary += f"; not checked: {result.not_checked[0].scope}: {result.not_checked[0].message}"
        if len(result.not_checked) > 1:
            summary += f" (and {len(result.not_checked) - 1} more)"
    return nagios_line(state, summary, {
        **threshold_perf((f for _, f in findings), len(result.not_checked)), "nodes": len(result.nodes),
        "nodes_answered": len(answered), "nodes_failed": len({label for label, _ in findings}),
        "time": f"{result.seconds:.2f}s"})


# --------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------

EXAMPLES = """examples:
  ssd ov2                     check overlay network ov2 and ingress on this node
  ssd                         check every swarm overlay network on this node, and ingress
  ssd --json ov2 | jq .status machine-readable verdict (consistent/inconsistent/incomplete)
  ssd -q --settle 5           cron/monitoring: print only problems, re-sample after 5 s
  ssd -H tcp://127.0.0.1:2375 ov2
  ssd ov2 gossip-consistency --image ssd:latest
                              on a manager: do all nodes hold the same view of ov2?
  ssd --snapshot node2.json ov2
                              check, and save what was read, to check it anywhere:
  ssd --from node2.json       the same check on the saved snapshot
  ssd ov2 gossip-consistency --from node1.json --from node2.json
  ssd --all-nodes --gossip --image ssd:latest
                              on a manager: every node checked, one matrix of
                              nodes x networks, and every node's view compared
  ssd --all-nodes --snapshot-dir case-1234/ ov2
                              the whole swarm's snapshots for a support case
  ssd --nagios -t 50 ov2      a Monitoring Plugins check, bounded to 50 s
  ssd --context prod ov2      through a Docker context (TLS included), as docker does
  docker run --rm --cap-add SYS_ADMIN --cap-add NET_ADMIN --cap-add NET_RAW \\
      --net=host -v /var/run/docker.sock:/var/run/docker.sock \\
      -v /var/run/docker/netns:/var/run/docker/netns:ro,rslave ssd ov2

exit status: 0 consistent, 1 inconsistencies found, 2 could not check,
             3 swarm still converging (a finding about work swarm has not finished).
"""


def seconds(limit: float, allow_zero: bool):
    """An argparse type: a finite number of seconds in (0 or more than 0) .. limit."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
        low_ok = value >= 0 if allow_zero else value > 0
        if not math.isfinite(value) or not low_ok or value > limit:
            low = "0" if allow_zero else "more than 0"
            raise argparse.ArgumentTypeError(f"{text!r}: give {low} to {limit:g} seconds")
        return value
    return parse


class Parser(argparse.ArgumentParser):
    """argparse, with a usage error as one line (and a JSON verdict under --json, an UNKNOWN
    line under --nagios), exit 2. argv: the arguments parsed, main()'s, not always sys.argv."""
    argv: ClassVar[list[str]] = []

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"ssd: error: {message} (see ssd --help)\n")
        with contextlib.suppress(OutputError):
            if "--nagios" in self.argv:
                emit(nagios_line("UNKNOWN", f"usage: {message}", {}))
                sys.exit(NAGIOS_CODES["UNKNOWN"])
            if "--json" in self.argv:
                emit(json.dumps(error_document(message, mode_of(self.argv)), indent=2) + "\n")
        sys.exit(NAGIOS_CODES["UNKNOWN"] if "--nagios" in self.argv else 2)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="ssd", description=textwrap.fill(
            "Check that this swarm node's load-balancer datapath (IPVS, iptables, VIP aliases, the "
            "overlay, the embedded DNS) matches what Docker's control plane says. The live check "
            "runs as root (it enters network namespaces and reads IPVS and iptables); checking a "
            "snapshot (--from) needs no privilege.", width=80),
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("networks", nargs="*", metavar="NETWORK",
                        help="network name, ID or unique ID prefix (default: all swarm overlays); "
                             "'NETWORK gossip-consistency' compares every node's view of NETWORK")
    parser.add_argument("-H", "--host", metavar="ADDRESS",
                        help=f"Engine API address, e.g. tcp://HOST:2376 (default: DOCKER_HOST, else "
                             f"the Docker context in use, else {DEFAULT_HOST}); TLS from "
                             "DOCKER_TLS_VERIFY and DOCKER_CERT_PATH, as for docker")
    parser.add_argument("-c", "--context", metavar="NAME",
                        help="reach the daemon through this Docker context (default: DOCKER_CONTEXT, "
                             "else the one docker context use chose)")
    parser.add_argument("--exec-root",
                        help="dockerd's --exec-root; namespaces are under EXEC_ROOT/netns "
                             f"(default: {DEFAULT_EXEC_ROOT})")
    output = parser.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="print one JSON document")
    output.add_argument("--nagios", action="store_true",
                        help="print one Monitoring Plugins line and exit 0 OK, 1 WARNING (partly "
                             "checked), 2 CRITICAL (inconsistent), 3 UNKNOWN (could not check)")
    parser.add_argument("-q", "--quiet", action="store_true", help="print only problems")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="show what was compared: VIPs, tasks, expected and found values")
    parser.add_argument("--no-color", action="store_true", help="no colour (also: NO_COLOR)")
    parser.add_argument("--settle", type=seconds(3600, allow_zero=True),
                        metavar="SECONDS",
                        help="report only what a second sample SECONDS later still shows "
                             f"(default: {DEFAULT_SETTLE:g}; 0 disables)")
    parser.add_argument("-t", "--timeout", type=seconds(86400, allow_zero=False), metavar="SECONDS",
                        help="give up after SECONDS: exit 2 (UNKNOWN under --nagios), saying so "
                             "(default: no limit; --all-nodes and gossip-consistency: how long to "
                             f"wait for every node's answer, default {DEFAULT_FLEET_TIMEOUT:g})")
    parser.add_argument("--probe", action="store_true",
                        help="also send bounded test traffic (changes nothing): echo requests "
                             "(small and full-size) from each network's load balancer to every other "
                             "node's endpoints, TCP connections to backends and to every node's "
                             f"published ports; at most {PROBE_LIMIT:g} s, {PROBE_TRIES} echo requests "
                             "per endpoint and size, one connection per backend and port")
    parser.add_argument("--prometheus", metavar="FILE",
                        help="also write the verdict as Prometheus metrics to FILE (node_exporter's "
                             "textfile collector: FILE ends in .prom), atomically; '-': write them "
                             "to stdout instead of the report")
    parser.add_argument("--snapshot", metavar="FILE",
                        help="also write everything the check read to FILE (JSON), to check "
                             "it elsewhere with --from; '-': write it to stdout instead of the report")
    parser.add_argument("--from", dest="from_", action="append", metavar="FILE",
                        help="check a snapshot instead of this node (repeat with "
                             "gossip-consistency to compare nodes)")
    fleet = parser.add_argument_group("the whole swarm (on a manager; ssd runs as a short-lived "
                                      "service on every node)")
    fleet.add_argument("--all-nodes", action="store_true",
                       help="run the node check on every node and print one nodes x networks matrix")
    fleet.add_argument("--gossip", action="store_true",
                       help="with --all-nodes: also compare every node's view of each network "
                            "(gossip-consistency) in the same run")
    fleet.add_argument("--snapshot-dir", metavar="DIR",
                       help="with --all-nodes: save every node's snapshot in DIR, one file per node")
    fleet.add_argument("--image", help="--all-nodes and gossip-consistency: the ssd image to run on "
                                       "every node (default: the image ssd runs in, if in a container)")
    parser.add_argument("--version", action="version", version=f"ssd {__version__}")
    return parser


GOSSIP_HELP = f"""usage: ssd NETWORK gossip-consistency [--from FILE --from FILE ...] [-H ADDRESS]
                                      [-c NAME] [--image IMAGE] [-t SECONDS]
                                      [--json | --nagios] [-v] [--no-color]

On a manager: do all nodes hold the same view of NETWORK's gossiped state (NetworkDB's
services, VIPs and tasks)? ssd runs itself on every node as a short-lived global service
(always removed), collects each node's view, re-samples a few times, and reports what
stays different and on which nodes. With --from, compares saved snapshots instead (no
service, no privilege).

options:
  --from FILE       a node's snapshot (ssd --snapshot FILE NETWORK on that node); repeat
  -H, --host ADDRESS / -c, --context NAME
                    where the manager's Engine API is, as for the node check
  --image IMAGE     the ssd image to run on every node (default: the image ssd runs in)
  -t, --timeout SECONDS
                    how long to wait for every node's answer (default: {DEFAULT_FLEET_TIMEOUT:g})
  --json, --nagios  one JSON document, or one Monitoring Plugins line
  -v, --verbose     what every node holds, not only the differences

exit status: 0 every node agrees, 1 views differ, 2 could not compare.
"""


def mode_help(argv: list[str]) -> str | None:
    """The help of `ssd NETWORK gossip-consistency --help`, rather than the node check's."""
    if "gossip-consistency" in argv and ("-h" in argv or "--help" in argv):
        return GOSSIP_HELP
    return None


def use_colour(args: argparse.Namespace) -> bool:
    # no-color.org: NO_COLOR disables colour when it is set and not empty.
    return (not args.no_color and not os.environ.get("NO_COLOR")
            and os.environ.get("TERM") != "dumb" and sys.stdout is not None and sys.stdout.isatty())


def settled_check(collector: Collector, wanted: list[str], settle_seconds: float,
                  live: bool) -> tuple[NodeInfo, RunResult]:
    """One node check, settled: a sample (run_once, which runs every check: run_checks), and a
    second one if the first found something; only what both show is reported."""
    node = read_node(collector)
    try:
        result = run_once(collector, node, wanted)
    finally:
        collector.end_read_ahead()  # what the first sample did not take is not needed
    if result.findings and settle_seconds > 0 and (live or len(collector.recorded) >= 2):
        # A node out of the gossip that swarm still calls ready may be one whose dockerd just
        # stopped: the second sample waits until swarm would have missed its heartbeats.
        wait = max(settle_seconds, node.heartbeat_expiry()) if result.leavers else settle_seconds
        if live:  # (a snapshot taken without a second sample is judged on its one)
            time.sleep(wait)
        collector.new_sample(reread=reread_for(result))
        first, result = result, settle(result, run_once(collector, node, wanted))
        result.notes += leaver_notes(first.leavers, result.leavers, wait)
    for finding in result.findings:
        finding.known_issues = known_issues(finding.check, node.engine.version)
    return node, result


def reread_for(result: RunResult) -> set[str | None]:
    """The namespaces a second sample reads again: those the findings name, and the load
    balancers of their networks, whose state judges findings elsewhere (a task at weight 0 there
    may lack its DNS records) and shows what moved between the samples. Soak, 2026-12-02: a
    DNS finding judged, in the second sample, against the first one's weights paged 7 times."""
    networks = {f.network for f in result.findings}
    lbs = {name for net in result.networks if net.view.name in networks and net.namespace
           for name in net.namespace.split(", ")}
    return {f.namespace for f in result.findings} | lbs


def leaver_notes(before: list[str], after: list[str], wait: float) -> list[str]:
    """What became of the nodes the first sample found out of the gossip but ready for swarm."""
    back = [name for name in before if name not in after]
    if not back:
        return []
    return [f"{', '.join(back)}: out of this node's gossip while swarm still called "
            f"{'them' if len(back) > 1 else 'it'} ready (a dockerd stopping, say); a second sample "
            f"{wait:g} s later, past swarm's heartbeat expiry, no longer found it so (swarm marked "
            "it down, or the gossip came back: `docker node ls`)"]


def node_check(args: argparse.Namespace) -> tuple[RunResult, dict | None]:
    """The CLI's node check: this node (live, its snapshot document if asked for) or a snapshot."""
    if args.from_:
        if len(args.from_) > 1:
            raise CheckError("a node check reads one snapshot: give one --from FILE "
                             "(several only with gossip-consistency)")
        source = args.from_[0]
        snapshot = load_snapshot(source)
        collector: Collector = SnapshotCollector(snapshot, source)
        wanted = args.networks or snapshot["networks"]
        with replaying(source):
            _, result = settled_check(collector, wanted, float(snapshot.get("settle") or 0), live=False)
        return nothing_named_compared(result, args.networks), None
    # A run that names no network reads every namespace of this node: read them ahead, while
    # Python imports the Docker SDK (seconds under emulation) and the API answers.
    early = None if args.networks else start_read_ahead(os.path.join(args.exec_root, "netns"), None)
    try:
        collector = Collector(engine_of(args), args.exec_root, record_api=bool(args.snapshot))
        collector.ahead, collector.probing = early, args.probe
        node, result = settled_check(collector, args.networks, args.settle, live=True)
    finally:
        if early is not None:
            early.close()
    doc = snapshot_document(collector, node, args.networks, args.settle) if args.snapshot else None
    return nothing_named_compared(result, args.networks), doc


def nothing_named_compared(result: RunResult, named: list[str]) -> RunResult:
    """A worker cannot tell a mistyped network name from a network with no task here; when none
    of the names given is here, the run compared nothing that was asked for: not consistent."""
    if named and set(named) <= set(result.absent):
        result.not_checked.append(NotChecked(
            f"network {', '.join(named)}", "not on this node: a worker lists only the swarm networks "
            "its tasks use; check the name (docker network ls on a manager) or run ssd where it has tasks"))
    return result


def error_document(message: str, mode: str = "node") -> dict:
    return {"schema_version": SCHEMA_VERSION, "mode": mode, "ssd_version": __version__,
            "status": "incomplete", "node": None, "networks": [],
            "findings": [], "errors": [{"scope": "ssd", "message": message}], "notes": []}


def fail(args: argparse.Namespace, message: str) -> int:
    print(f"ssd: error: {message}", file=sys.stderr)
    if getattr(args, "prometheus", None):
        try:  # a monitor must see "could not check", not last run's stale verdict
            write_prometheus(args.prometheus, None, 0.0)
        except (CheckError, OSError) as exc:
            print(f"ssd: error: cannot write {args.prometheus}: {exc}", file=sys.stderr)
    with contextlib.suppress(OutputError):  # stdout may be what failed: stderr has the line
        if getattr(args, "nagios", False):
            emit(nagios_line("UNKNOWN", message, {}))
            return NAGIOS_CODES["UNKNOWN"]
        if args.json:  # monitoring parses stdout: give it a verdict that agrees with the exit code
            emit(json.dumps(error_document(message, getattr(args, "mode", "node")), indent=2) + "\n")
    return NAGIOS_CODES["UNKNOWN"] if getattr(args, "nagios", False) else 2


def interrupted(args: argparse.Namespace, line: str) -> int:
    print(line, file=sys.stderr)
    if args.nagios:
        emit(nagios_line("UNKNOWN", "interrupted", {}))
        return NAGIOS_CODES["UNKNOWN"]
    return 2


def job_interrupted(args: argparse.Namespace, what: str, not_removed: list[str]) -> int:
    """Ctrl-C or SIGTERM in a run that started a service: say whether it is gone."""
    if not_removed:
        failure = not_removed[0]
        return interrupted(args, f"ssd: interrupted; could not remove {failure}: docker service rm "
                           + failure.split(":")[0])
    return interrupted(args, f"ssd: interrupted (its {what} was removed)")


def print_not_checked(not_checked: list[NotChecked]) -> None:
    for problem in not_checked:
        print(f"ssd: not checked: {problem.scope}: {problem.message}", file=sys.stderr)


class OutputError(CheckError):
    """stdout cannot take the report: a full disk, a closed descriptor."""


def emit(text: str) -> None:
    """Write to stdout; a reader that went away (ssd ... | head -1) is not an error of ssd's,
    a stdout that cannot be written (>/dev/full, >&-) is: OutputError, one line, exit 2."""
    if not text:
        return
    try:
        if sys.stdout is None:  # started with descriptor 1 closed
            raise OSError(errno.EBADF, "standard output is closed")
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:
        _stdout_to_devnull()
    except (OSError, ValueError) as exc:  # ValueError: a file object closed under us
        _stdout_to_devnull()
        raise OutputError(f"cannot write the report to standard output: "
                          f"{getattr(exc, 'strerror', None) or _short(exc)}") from exc


def _stdout_to_devnull() -> None:
    """Point descriptor 1 at /dev/null, so that what is still buffered (and the interpreter's
    last flush) goes nowhere instead of failing again at exit."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    if devnull != 1:  # (1 itself when descriptor 1 was closed)
        os.dup2(devnull, 1)
        os.close(devnull)
    if sys.stdout is None:
        sys.stdout = open(1, "w", closefd=False)  # noqa: SIM115 (lives as long as the process)


def check_writable(target: str, what: str = "snapshot") -> None:
    """Fail before the check, not after it, when its output file cannot be written."""
    if target == "-":
        return
    existed = os.path.exists(target)
    try:
        with open(target, "a", encoding="utf-8"):
            pass
    except OSError as exc:
        raise CheckError(f"cannot write {what} {target}: {exc.strerror or _short(exc)}") from exc
    if not existed:
        os.unlink(target)


MODES = ("gossip-consistency", "gossip-hash")


class TimedOut(BaseException):
    """-t expired. A BaseException, like KeyboardInterrupt: no `except Exception` on the way
    (the Engine API's error handling) may turn it into an ordinary error."""


@contextlib.contextmanager
def time_limit(seconds: float | None) -> Iterator[None]:
    """Raise TimedOut in the main thread once SECONDS have passed (a Monitoring Plugins runner's
    -t: the plugin says UNKNOWN itself rather than being killed without a word)."""
    if not seconds:
        yield
        return

    def expire(signum: int, frame: Any) -> None:
        raise TimedOut

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt  # SIGTERM cleans up like Ctrl-C: the gossip service is removed


def main_gossip(args: argparse.Namespace, mode: str) -> int:
    if args.prometheus:
        args.prometheus = None  # not this mode's: leave the node check's file alone
        return fail(args, f"--prometheus writes the node check's metrics, not {mode}'s")
    if len(args.networks) != 1:
        return fail(args, f"{mode} compares one network: ssd NETWORK {mode}")
    network = args.networks[0]
    if mode == "gossip-hash":  # the per-node command the gossip service runs
        try:
            answer = gossip_hash(Collector(engine_of(args), args.exec_root), network)
        except CheckError as exc:
            return fail(args, str(exc))
        node = answer["node"]
        if args.json:  # one line: the coordinator reads it back from the service's log
            emit(json.dumps(answer, sort_keys=True, separators=(",", ":")) + "\n")
        elif answer["instantiated"]:
            emit(f"Node id: {node['id']} ({node['hostname']}) gossip hash {answer['digest']}\n")
        else:
            emit(f"Node id: {node['id']} ({node['hostname']}) network {network} not instantiated here\n")
        return 0
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        result = gossip_from_snapshots(args.from_, network) if args.from_ else gossip_live(args, network)
    except CheckError as exc:
        return fail(args, str(exc))
    except KeyboardInterrupt as exc:
        return job_interrupted(args, "gossip service", getattr(exc, "not_removed", []))
    print_not_checked(result.not_checked)
    if args.nagios:
        emit(render_gossip_nagios(result))
        answered = sum(n.status == "answered" for n in result.nodes)
        return NAGIOS_CODES[nagios_state(gossip_status(result), answered >= 2)]
    if args.json:
        emit(json.dumps(gossip_to_json(result), indent=2) + "\n")
    else:
        emit(render_gossip(result, Painter(use_colour(args)), args.verbose))
    return EXIT_CODES[gossip_status(result)]


def main_member(args: argparse.Namespace) -> int:
    """The per-node command of fleet mode's service: the node check as one JSON line, its
    snapshot inside it with --snapshot -. The verdict is in the answer: exit 0."""
    try:
        collector = Collector(engine_of(args), args.exec_root)
        collector.probing = args.probe  # --all-nodes --probe: each node probes from where it is
        node, result = settled_check(collector, args.networks, args.settle, live=True)
        doc = snapshot_document(collector, node, args.networks, args.settle) if args.snapshot else None
        answer = fleet_answer(collector, node, result, doc)
    except CheckError as exc:
        return fail(args, str(exc))
    emit(json.dumps(answer, sort_keys=True, separators=(",", ":")) + "\n")
    return 0


def fleet_misuse(args: argparse.Namespace) -> str | None:
    """Why these options do not go together with fleet mode (or need it), if they do not."""
    if not args.all_nodes:
        for flag, value in (("--gossip", args.gossip), ("--snapshot-dir", args.snapshot_dir)):
            if value:
                return f"{flag} goes with --all-nodes"
        return None
    for flag, value, instead in (
            ("--from", args.from_, "check snapshots one by one with --from"),
            ("--snapshot", args.snapshot, "use --snapshot-dir DIR"),
            ("--prometheus", args.prometheus, "run ssd --prometheus on each node, or use --json")):
        if value:
            return f"{flag} is not for --all-nodes: {instead}"
    return None


def save_fleet_snapshots(result: FleetResult, target: str) -> None:
    used: set[str] = set()
    for node in result.nodes:
        if node.snapshot is None:
            continue
        name = node.label if node.label not in used else f"{node.label}-{node.id[:12]}"
        used.add(name)
        write_snapshot(node.snapshot, os.path.join(target, re.sub(r"[^\w.-]", "_", name) + ".json"))
    result.notes.append(f"snapshots of {count(len(used), 'node')} saved in {target}")


def main_fleet(args: argparse.Namespace) -> int:
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        if args.snapshot_dir:
            os.makedirs(args.snapshot_dir, exist_ok=True)
            check_writable(os.path.join(args.snapshot_dir, ".ssd-write-test"))
        result = fleet_live(args)
        if args.snapshot_dir:
            save_fleet_snapshots(result, args.snapshot_dir)
    except OSError as exc:
        return fail(args, f"cannot use {args.snapshot_dir}: {exc.strerror or _short(exc)}")
    except CheckError as exc:
        return fail(args, str(exc))
    except KeyboardInterrupt as exc:
        return job_interrupted(args, "service", getattr(exc, "not_removed", []))
    print_not_checked(result.not_checked)
    if args.nagios:
        emit(render_fleet_nagios(result))
        return NAGIOS_CODES[nagios_state(fleet_status(result), any(n.report for n in result.nodes))]
    if args.json:
        emit(json.dumps(fleet_to_json(result), indent=2) + "\n")
    else:
        emit(render_fleet(result, Painter(use_colour(args)), args.quiet, args.verbose))
    return EXIT_CODES[fleet_status(result)]


def main(argv: list[str] | None = None) -> int:
    signal.signal(signal.SIGINT, signal.default_int_handler)  # from here on, KeyboardInterrupt
    parser = build_parser()
    parser.argv = sys.argv[1:] if argv is None else list(argv)
    if mode_help(parser.argv):
        emit(mode_help(parser.argv) or "")
        return 0
    args = parser.parse_args(parser.argv)
    args.mode = mode_of(args.networks[-1:] + (["--all-nodes"] if args.all_nodes else []))
    try:
        return dispatch(args)
    except OutputError as exc:  # the report could not be written: the verdict is lost, say so
        return fail(args, str(exc))


def from_misuse(args: argparse.Namespace) -> str | None:
    """Options that say how to read a live node mean nothing with --from: refuse them rather than
    ignore them silently."""
    if not args.from_:
        return None
    for flag, value in (("-H", args.host), ("--context", args.context), ("--exec-root", args.exec_root),
                        ("--settle", args.settle), ("--image", args.image),
                        ("--probe", args.probe or None)):
        if value is not None:
            return (f"{flag} is for reading a live node; --from checks a snapshot as it was "
                    "taken (its settle sample included)")
    if args.from_.count("-") > 1:
        return "standard input is read once: give --from - for one snapshot only"
    return None


def output_misuse(args: argparse.Namespace) -> str | None:
    if args.prometheus == "-" and args.snapshot == "-":
        return "--prometheus - and --snapshot - both want stdout: give one of them a FILE"
    if args.prometheus == "-" and (args.json or args.nagios):
        return "--prometheus - writes the metrics instead of the report: drop --json/--nagios"
    return None


def resolve_defaults(args: argparse.Namespace) -> None:
    """Fill what was not given; left None until now so that from_misuse can tell."""
    args.exec_root = args.exec_root or DEFAULT_EXEC_ROOT
    args.settle = DEFAULT_SETTLE if args.settle is None else args.settle
    args.wait = args.timeout or DEFAULT_FLEET_TIMEOUT  # the swarm-wide modes' wait for nodes


def node_report(args: argparse.Namespace, result: RunResult, seconds: float) -> str:
    """The node check's report in the form asked for; none when stdout carries the snapshot or
    the metrics (--snapshot -, --prometheus -): the verdict is then the exit status."""
    if "-" in (args.snapshot, args.prometheus):
        return ""
    if args.nagios:
        return render_nagios(result, seconds)
    if args.json:
        return json.dumps(to_json(result), indent=2) + "\n"
    return render_text(result, Painter(use_colour(args)), args.quiet, args.verbose)


def dispatch(args: argparse.Namespace) -> int:
    misuse = fleet_misuse(args) or from_misuse(args) or output_misuse(args)
    if misuse:
        args.prometheus = None  # a usage error: leave the metrics file alone
        return fail(args, misuse)
    resolve_defaults(args)
    if args.networks and args.networks[-1] == FLEET_MEMBER:
        args.networks.pop()
        return main_member(args)
    if args.networks and args.networks[-1] in MODES:
        if args.all_nodes:
            return fail(args, f"--all-nodes is a mode of its own: use --all-nodes --gossip, not "
                              f"{args.networks[-1]}")
        return main_gossip(args, args.networks.pop())
    if args.all_nodes:
        return main_fleet(args)
    if args.from_ and args.snapshot:
        return fail(args, "--from checks a snapshot, --snapshot takes one: use one of them")
    started = time.monotonic()
    try:
        if args.snapshot:
            check_writable(args.snapshot)
        if args.prometheus:  # before the check, not after it
            try:
                require("prometheus_client")
                check_writable(args.prometheus, "metrics")
            except CheckError:
                args.prometheus = None  # no point trying again in fail()
                raise
        with time_limit(args.timeout):
            result, doc = node_check(args)
        if args.prometheus:
            write_prometheus(args.prometheus, result, time.monotonic() - started)
        if doc is not None:
            write_snapshot(doc, args.snapshot)  # "-": emit()s the snapshot itself
        with replaying(args.from_[0]) if args.from_ else contextlib.nullcontext():
            report = node_report(args, result, time.monotonic() - started)
    except CheckError as exc:
        return fail(args, str(exc))
    except KeyboardInterrupt:
        return interrupted(args, "ssd: interrupted")
    except TimedOut:
        return fail(args, f"the check did not finish within {args.timeout:g} s (-t {args.timeout:g}); "
                          "nothing was reported: a daemon or a namespace may be hanging")
    print_not_checked(result.not_checked)
    emit(report)
    if args.nagios:
        return NAGIOS_CODES[run_nagios_state(result)]
    return EXIT_CODES[overall_status(result)]


def cli() -> None:
    """The `ssd` command an install makes (its entry point), and ./ssd.py or python -m ssd."""
    # No cyclic garbage collection: one run, then os._exit. What a run builds is trees that
    # reference counting frees; the collector only walked them, again and again, while the API's
    # JSON was decoded into a million objects: at 20,000 tasks under the lab's emulation, 1.1 s
    # of 9.1, and the same peak memory without it.
    gc.disable()
    try:
        status = main()
    except KeyboardInterrupt:  # before main's own handlers are in place (e.g. while importing)
        print("ssd: interrupted", file=sys.stderr)
        status = 2
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the verdict is out: a late Ctrl-C changes nothing
    if PROFILERS & sys.modules.keys():  # they write what they measured once the program returns
        sys.exit(status)
    # Everything is written (emit flushes; snapshots and metrics are renamed into place): leave
    # without the interpreter's teardown, which frees every object of the run one by one (0.3 s
    # at 1,000 services under the lab's emulation, more than some of ssd's checks take).
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            if stream is not None:
                stream.flush()
    os._exit(status)


PROFILERS = {"cProfile", "profile", "coverage", "trace", "pyinstrument"}


if __name__ == "__main__":
    cli()
