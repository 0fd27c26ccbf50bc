"""Tier 3: --probe and the host's prerequisites on the real 3-node swarm (real VXLAN between VMs).

Each fault is made with the kernel's own tools on one node's underlay or firewall, ssd --probe
runs on the nodes it concerns, and the fault must be found there, named, and gone once undone:
node3 dropping VXLAN (UDP to the data-path port), an MTU black hole (VXLAN packets over 1400
bytes dropped in node3's raw PREROUTING, where fragments are already reassembled), a
DOCKER-USER rule on node2 dropping published port 8080, a backend's process stopped while its
container runs, and node2's conntrack maximum lowered to its use. The healthy swarm is
consistent with --probe on every node. Timings go to lab/state/probe.json.
"""
from __future__ import annotations

import json
import os
import time

import pytest
from test_lab import SHARE, sh, ssd, ssd_everywhere

pytestmark = pytest.mark.lab

REPORT = SHARE.parent.parent / "probe.json"
FIGURES: dict[str, object] = {}
NODE_IP = {1: "10.99.0.1", 2: "10.99.0.2", 3: "10.99.0.3"}  # what published ports are reached at
# The addresses overlay echoes cross between (the VTEPs): the data-path addresses under
# make lab-data-path (SWARMLAB_DATA_PATH=1), else the nodes' own.
VTEP = ({n: f"10.98.0.{n}" for n in NODE_IP} if os.environ.get("SWARMLAB_DATA_PATH") else NODE_IP)


def probe(node: int) -> tuple[int, dict]:
    started = time.monotonic()
    code, doc, stderr = ssd(node, "--probe", "ov2")
    FIGURES.setdefault("seconds", []).append(round(time.monotonic() - started, 1))
    assert not doc["errors"], (node, doc["errors"], stderr)
    return code, doc


def checks(doc: dict) -> set[str]:
    return {f["check"] for f in doc["findings"]}


def data_path_port() -> int:
    return int(sh(1, "docker info --format '{{.Swarm.Cluster.DataPathPort}}'").strip() or 4789)


@pytest.fixture(scope="module", autouse=True)
def report(swarm):
    yield
    REPORT.write_text(json.dumps(FIGURES, indent=1) + "\n")


def test_healthy_swarm_with_probe_is_consistent_on_every_node():
    for node, (code, doc, stderr) in ssd_everywhere("--probe", "ov2").items():
        assert code == 0, (node, doc["findings"], doc["errors"], stderr)
        nets = {n["name"]: n for n in doc["networks"]}
        assert nets["ov2"]["probe"]["reached"] == nets["ov2"]["probe"]["nodes"] == 2, nets["ov2"]["probe"]
        assert nets["ingress"]["probe"]["published_answered"] == 3, nets["ingress"]["probe"]
    # what --probe costs on a healthy node: the same check without and with it, one after the other
    timed = {}
    for flag in ((), ("--probe",)):
        started = time.monotonic()
        code, doc, _ = ssd(1, *flag, "ov2")
        timed["probe" if flag else "plain"] = round(time.monotonic() - started, 1)
        assert code == 0
    FIGURES["healthy node1"] = {**timed, "probes": {n["name"]: n["probe"] for n in doc["networks"]}}


def lost(doc: dict, network: str) -> set[str]:
    """The nodes (their VTEP addresses) a node's probes found unreachable on a network."""
    return {ip for f in doc["findings"] if f["check"] == "probe-node-unreachable" and f["network"] == network
            for ip in VTEP.values() if ip in f["subject"]}


def test_node3_dropping_vxlan_is_unreachable_from_the_others_and_back():
    rule = f"INPUT -p udp --dport {data_path_port()} -j DROP"
    sh(3, f"iptables -I {rule}")
    try:
        code1, from1 = probe(1)
        code3, from3 = probe(3)
    finally:
        sh(3, f"iptables -D {rule}")
    assert code1 == code3 == 1
    for network in ("ov2", "ingress"):
        assert lost(from1, network) == {VTEP[3]}, from1["findings"]
        assert lost(from3, network) == {VTEP[1], VTEP[2]}, from3["findings"]
    # a manager names the node, --data-path-addr or not
    assert all(f["subject"] == f"node3 ({VTEP[3]})" for f in from1["findings"]
               if f["check"] == "probe-node-unreachable"), from1["findings"]
    code, doc = probe(1)
    assert code == 0, doc["findings"]  # undone: consistent again


def test_an_mtu_black_hole_is_found_with_both_sizes():
    rule = f"PREROUTING -p udp --dport {data_path_port()} -m length --length 1401:65535 -j DROP"
    sh(3, f"iptables -t raw -I {rule}")
    try:
        code, doc = probe(1)
    finally:
        sh(3, f"iptables -t raw -D {rule}")
    assert code == 1 and checks(doc) == {"probe-mtu-blackhole"}, doc["findings"]
    assert all(f"node3 ({VTEP[3]})" == f["subject"] for f in doc["findings"]), doc["findings"]


def test_a_docker_user_drop_on_node2_fails_its_port_from_the_others_only():
    rule = "DOCKER-USER -p tcp --dport 8080 -j DROP"
    sh(2, f"iptables -I {rule}")
    try:
        verdicts = {node: probe(node) for node in (1, 2)}
    finally:
        sh(2, f"iptables -D {rule}")
    code, doc = verdicts[1]
    assert code == 1 and checks(doc) == {"probe-published-timeout"}, doc["findings"]
    assert all(NODE_IP[2] in f["subject"] for f in doc["findings"])
    assert verdicts[2][0] == 0, verdicts[2][1]["findings"]  # its own address: OUTPUT, not FORWARD


APP = ("docker service create -d --name app --network ov2 --replicas 3 --publish 8081:80 "
       "--no-resolve-image bb:latest sh -c 'httpd -p 80 -h /www; exec sleep 1000000' >/dev/null")


def test_a_backend_whose_process_stopped_is_a_note_not_a_finding():
    """The container runs on (sleep is its first process) while nothing listens on its port."""
    sh(1, APP)
    try:
        sh(1, "for i in $(seq 120); do [ \"$(docker service ls -f name=app --format '{{.Replicas}}')\" = 3/3 ] "
              "&& exit 0; sleep 5; done; exit 1")
        time.sleep(10)  # every node's load balancer programmed
        container = sh(2, "docker ps -q -f name=app. | head -1").strip()
        sh(2, f"docker exec {container} killall httpd")
        code, doc = probe(1)
        assert code == 0, doc["findings"]
        assert any("refused the connection" in note and "app" in note for note in doc["notes"]), doc["notes"]
    finally:
        sh(1, "docker service rm app >/dev/null")


def test_a_conntrack_table_at_its_maximum_is_found_there():
    old = sh(2, "cat /proc/sys/net/netfilter/nf_conntrack_max").strip()
    # half of what the node holds now: full, and it stays full for ssd's two samples (entries
    # expire, and no new flow can take their place); one entry of room was not enough: the count
    # fell under 90% of it between the samples (2026-12-01)
    count = int(sh(2, "cat /proc/sys/net/netfilter/nf_conntrack_count").strip())
    assert count >= 18, count
    sh(2, f"sysctl -qw net.netfilter.nf_conntrack_max={count // 2}")
    try:
        code, doc, _ = ssd(2, "ov2")
    finally:
        sh(2, f"sysctl -qw net.netfilter.nf_conntrack_max={old}")
    FIGURES["conntrack"] = {"count": count, "max": count // 2, "findings": [f["message"] for f in doc["findings"]]}
    assert code == 1 and checks(doc) == {"conntrack-full"}, doc["findings"]
    assert any(f["namespace"] == "host" for f in doc["findings"])
