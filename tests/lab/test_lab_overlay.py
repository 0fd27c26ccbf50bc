"""Tier 3: the overlay layer (issue 13) on real engines, on a worker and on the manager.

Every node of the seed, plus a standalone container on node3 on the attachable ov2 (made here):
node1 and node2 must count it as a remote endpoint though it belongs to no service. Each fault
is made with the kernel's own tools (`ip`, `bridge`) in the overlay driver's namespace of ov2 on
one node, found there with its check id, and nowhere else; then undone.
"""
from __future__ import annotations

import functools
import json
from dataclasses import dataclass

import pytest
from test_lab import NODES, sh, ssd_everywhere, with_fault

pytestmark = pytest.mark.lab

STANDALONE = "ssd-standalone"
LISTED = ("docker network inspect -v ov2 --format '{{{{json .Services}}}}' | grep -q '\"Name\":\"{}\"'")


def wait(node: int, condition: str, seconds: int = 300) -> None:
    sh(node, f"for _ in $(seq {seconds}); do if {condition}; then exit 0; fi; sleep 1; done; "
             f"echo 'timed out: {condition}' >&2; exit 1")


@pytest.fixture(scope="module")
def standalone(swarm):
    sh(3, f"docker rm -f {STANDALONE} >/dev/null 2>&1; docker run -d --name {STANDALONE} --network ov2 "
          "bb:latest sleep 1000000 >/dev/null")
    for node in NODES:  # NetworkDB gossips it to the other nodes, whose overlay then programs it
        wait(node, LISTED.format(STANDALONE))
    yield
    sh(3, f"docker rm -f {STANDALONE} >/dev/null")


@dataclass
class OverlayFacts:
    ns: str  # the overlay driver's namespace of ov2
    addr: str  # this node's address
    task: str  # a task of s1 on another node: its name, IP, MAC and node
    task_ip: str
    task_mac: str
    task_node: str
    other_node: str  # a third node's address: where a wrong FDB entry points
    spare_ip: str  # an unused address of ov2's subnet


@functools.cache
def facts(node: int) -> OverlayFacts:
    ov2 = json.loads(sh(node, "docker network inspect -v ov2"))[0]
    addr = json.loads(sh(node, "docker info --format '{{json .Swarm}}'"))["NodeAddr"]
    task = next(t for t in ov2["Services"]["s1"]["Tasks"] if t["Info"]["Host IP"] != addr)
    ns = f"/var/run/docker/netns/1-{ov2['Id'][:10]}"
    neigh = sh(node, f"nsenter --net={ns} ip neigh show {task['EndpointIP']} dev vxlan0").split()
    others = {p["IP"] for p in ov2["Peers"]} - {addr, task["Info"]["Host IP"]}
    prefix = ov2["IPAM"]["Config"][0]["Subnet"].rsplit(".", 1)[0]
    return OverlayFacts(ns=ns, addr=addr, task=task["Name"], task_ip=task["EndpointIP"],
                        task_mac=neigh[neigh.index("lladdr") + 1], task_node=task["Info"]["Host IP"],
                        other_node=sorted(others)[0], spare_ip=f"{prefix}.250")


def faults(f: OverlayFacts) -> dict[str, tuple[str, str]]:
    """check id -> (inject, undo), both run in the overlay namespace of ov2."""
    fdb = f"bridge fdb {{}} {f.task_mac} dev vxlan0 dst {{}} self permanent"
    neigh = f"ip neigh {{}} {f.task_ip} lladdr {f.task_mac} dev vxlan0 nud permanent"
    stray_mac = "02:42:0a:00:01:fb"
    return {
        "overlay-fdb-missing": (f"bridge fdb del {f.task_mac} dev vxlan0 self", fdb.format("add", f.task_node)),
        "overlay-fdb-wrong-node": (fdb.format("replace", f.other_node), fdb.format("replace", f.task_node)),
        "overlay-neighbor-missing": (f"ip neigh del {f.task_ip} dev vxlan0", neigh.format("add")),
        "overlay-neighbor-stale": (f"ip neigh add {f.spare_ip} lladdr 02:42:0a:00:01:fa dev vxlan0 nud permanent",
                                   f"ip neigh del {f.spare_ip} dev vxlan0"),
        "overlay-fdb-stale": (f"bridge fdb add {stray_mac} dev vxlan0 dst 10.99.0.77 self permanent",
                              f"bridge fdb del {stray_mac} dev vxlan0 self"),
        "overlay-vxlan-config/mtu": ("ip link set vxlan0 mtu 1400", "ip link set vxlan0 mtu 1450"),
        # A second VXLAN device in the namespace, with a VNI the network does not own.
        "overlay-vxlan-config/vni": ("ip link add vxlan9 type vxlan id 4999 dstport 4789",
                                     "ip link del vxlan9"),
    }


def test_healthy_overlay_is_silent_on_every_node(standalone):
    for node, (code, doc, stderr) in ssd_everywhere("--settle", "2", "ov2").items():
        assert code == 0, (node, doc["findings"], doc["errors"], stderr)
        ov2 = next(n for n in doc["networks"] if n["name"] == "ov2")
        overlay = ov2["overlay"]
        assert overlay["checked"] and overlay["status"] == "ok", (node, overlay)
        # The seed's 12 tasks and the standalone container, less the containers on ov2 here.
        local = int(sh(node, "docker ps -q --filter network=ov2 | wc -l"))
        assert overlay["remote_endpoints"] == 13 - local and overlay["remote_nodes"] == 2, (node, overlay)


@pytest.mark.parametrize("node", [2, 1], ids=["worker", "manager"])
@pytest.mark.parametrize("fault", sorted(faults(OverlayFacts(*[""] * 8))))
def test_overlay_fault_found_on_its_node_only(standalone, node, fault):
    inject, undo = faults(facts(node))[fault]
    ns = facts(node).ns
    results = with_fault(node, ns, inject, undo, "--settle", "1", "ov2")
    code, doc, _ = results[node]
    check = fault.split("/")[0]
    assert code == 1 and {f["check"] for f in doc["findings"]} == {check}, doc["findings"]
    finding = doc["findings"][0]
    assert finding["namespace"] == ns.rsplit("/", 1)[1] and finding["network"] == "ov2"
    if check in ("overlay-fdb-missing", "overlay-fdb-wrong-node", "overlay-neighbor-missing"):
        assert facts(node).task in finding["message"] and finding["service"] == "s1"
    for other in NODES:
        if other != node:
            assert results[other][0] == 0, (other, results[other][1]["findings"])


def test_text_report_shows_the_overlay_on_the_manager(standalone):
    text = sh(1, "PYTHONPATH=/opt/ssd-pylib PYTHONPYCACHEPREFIX=/var/cache/ssd-pycache python3 /lab/repo/ssd.py --settle 0 ov2")
    assert f"Verifying overlay for network ov2 (netns {facts(1).ns.rsplit('/', 1)[1]})" in text
    assert "remote endpoints on 2 other nodes... OK" in text


ENCRYPTED = "ovenc"


def test_encrypted_overlay_esp_state(standalone):
    """An encrypted network with a task on every node: silent everywhere (the ESP SAs and policies
    decoded as the kernel holds them); node2's outbound policy towards node3 deleted: found on
    node2 only. Removing the network afterwards takes the rest of its IPsec state away."""
    sh(1, f"docker network create -d overlay --opt encrypted {ENCRYPTED} >/dev/null && docker service create -d "
          f"--name enc --mode global --network {ENCRYPTED} --no-resolve-image bb:latest sleep 1000000 >/dev/null")
    try:
        for node in NODES:
            wait(node, f"[ $(docker network inspect -v {ENCRYPTED} --format '{{{{json .Services}}}}' "
                       "| grep -o EndpointIP | wc -l) = 3 ]")
            wait(node, "ip xfrm policy | grep -q 0xd0c4e3")
        for node, (code, doc, stderr) in ssd_everywhere("--settle", "2", ENCRYPTED).items():
            assert code == 0, (node, doc["findings"], doc["errors"], stderr)
            overlay = next(n for n in doc["networks"] if n["name"] == ENCRYPTED)["overlay"]
            assert overlay["status"] == "ok" and overlay["remote_nodes"] == 2, (node, overlay)
        node3 = json.loads(sh(3, "docker info --format '{{json .Swarm}}'"))["NodeAddr"]
        sh(2, f"ip xfrm policy delete src {facts(2).addr}/32 dst {node3}/32 proto udp dport 4789 dir out "
              "mark 0xd0c4e3 mask 0xffffffff")
        results = ssd_everywhere("--settle", "1", ENCRYPTED)
        code, doc, _ = results[2]
        assert code == 1 and [(f["check"], f["subject"]) for f in doc["findings"]] == [
            ("overlay-esp-missing", node3)], doc["findings"]
        assert doc["findings"][0]["actual"] == ["IPsec policy out"]
        assert results[1][0] == 0 and results[3][0] == 0, (results[1][1]["findings"], results[3][1]["findings"])
    finally:
        sh(1, f"docker service rm enc >/dev/null; for _ in $(seq 60); do docker network rm {ENCRYPTED} "
              ">/dev/null 2>&1 && exit 0; sleep 1; done; exit 1")
