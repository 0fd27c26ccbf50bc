"""Tier 3: ssd on a real swarm (QEMU, Debian kernel with IPVS, Debian's dockerd), run as users run it.

The lab is brought up once for the module (engine $SWARMLAB_ENGINE, default the newest; 3 nodes)
and seeded with the original ssd README's topology. Faults are injected with the kernel's own
tools (ipvsadm, iptables, ip, sysctl) into one node's namespaces and undone after each test.
"""
from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
from schemas import validate
from labkit import ENGINE, SWARMLAB, lab

from ssd.catalog import engine_model

pytestmark = pytest.mark.lab

NODES = (1, 2, 3)
FAULT_NODE = 2  # a worker: the weaker view must still find every fault...
MANAGER_FAULTS = {"ipvs-backend-weight"}  # ...but this one, which needs the task API of a manager


def sh(node: int, script: str) -> str:
    proc = lab("exec", f"node{node}", "--", "bash", "-c", script)
    assert proc.returncode == 0, f"node{node}: {script}: {proc.stderr}"
    return proc.stdout


def ssd(node: int, *args: str) -> tuple[int, dict, str]:
    proc = lab("ssd", f"node{node}", "--json", *args)
    assert "Traceback" not in proc.stderr, proc.stderr
    try:
        doc = json.loads(proc.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"node{node}: ssd printed no JSON (exit {proc.returncode}): {proc.stderr}")
    validate(doc)  # the lab's documents against schemas/, as the examples'
    assert {"consistent": 0, "inconsistent": 1, "incomplete": 2, "converging": 3}[doc["status"]] == \
        proc.returncode
    return proc.returncode, doc, proc.stderr


def ssd_everywhere(*args: str) -> dict[int, tuple[int, dict, str]]:
    with ThreadPoolExecutor(len(NODES)) as pool:
        return dict(zip(NODES, pool.map(lambda n: ssd(n, *args), NODES), strict=True))


@dataclass
class NodeFacts:
    """What ssd compares, as this node's engine reports it: the values faults are built from."""
    lb_ns: str
    vip: str
    fwmark: int
    task_ip: str
    subnet: str
    lb_ip: str
    ingress_fwmark: int
    gw_ip: str
    web_task_ns: str | None
    web_task_ip: str | None


@functools.cache
def facts(node: int) -> NodeFacts:
    ov2 = json.loads(sh(node, "docker network inspect -v ov2"))[0]
    ingress = json.loads(sh(node, "docker network inspect -v ingress"))[0]
    gw = json.loads(sh(node, "docker network inspect docker_gwbridge"))[0]
    s1 = ov2["Services"]["s1"]
    web_ingress = ingress["Services"]["web"]
    local_web = [(cid, ep) for cid, ep in ingress["Containers"].items()
                 if ep["Name"].startswith("web.")]
    task_ns = task_ip = None
    if local_web:
        cid, ep = local_web[0]
        task_ns = sh(node, f"docker inspect -f '{{{{.NetworkSettings.SandboxKey}}}}' {cid}").strip()
        task_ip = ep["IPv4Address"].split("/")[0]
    return NodeFacts(
        lb_ns=f"/var/run/docker/netns/lb_{ov2['Id'][:9]}", vip=s1["VIP"], fwmark=s1["LocalLBIndex"],
        task_ip=s1["Tasks"][0]["EndpointIP"], subnet=ov2["IPAM"]["Config"][0]["Subnet"],
        lb_ip=ov2["Containers"]["lb-ov2"]["IPv4Address"].split("/")[0],
        ingress_fwmark=web_ingress["LocalLBIndex"],
        gw_ip=gw["Containers"]["ingress-sbox"]["IPv4Address"].split("/")[0],
        web_task_ns=task_ns, web_task_ip=task_ip)


def filter_jump_chain() -> str:
    return engine_model(f"{ENGINE}.0").filter_jump_chain  # the engine model decides, not the test


SBOX = "/var/run/docker/netns/ingress_sbox"


def faults(f: NodeFacts) -> dict[str, tuple[str, str, str]]:
    """check id -> (namespace, inject, undo). Namespace '' is the node's root namespace."""
    vip_mark = f"-d {f.vip}/32 -j MARK --set-mark {f.fwmark}"
    dnat = f"-p tcp --dport 8080 -j DNAT --to-destination {f.gw_ip}:8080"
    snat = f"-d {f.subnet} -m ipvs --ipvs -j SNAT --to-source {f.lb_ip}"
    out = {
        "ipvs-backend-missing": (f.lb_ns, f"ipvsadm -d -f {f.fwmark} -r {f.task_ip}:0",
                                 f"ipvsadm -a -f {f.fwmark} -r {f.task_ip}:0 -m -w 1"),
        "ipvs-backend-stale": (f.lb_ns, f"ipvsadm -a -f {f.fwmark} -r 10.0.1.250:0 -m -w 1",
                               f"ipvsadm -d -f {f.fwmark} -r 10.0.1.250:0"),
        "ipvs-backend-weight": (f.lb_ns, f"ipvsadm -e -f {f.fwmark} -r {f.task_ip}:0 -m -w 0",
                                f"ipvsadm -e -f {f.fwmark} -r {f.task_ip}:0 -m -w 1"),
        "ipvs-service-missing": (f.lb_ns, f"ipvsadm-save -n > /run/ipvs.saved; ipvsadm -D -f {f.fwmark}",
                                 "ipvsadm -C; ipvsadm-restore < /run/ipvs.saved"),
        "ipvs-service-stale": (f.lb_ns, "ipvsadm -A -f 4000 -s rr", "ipvsadm -D -f 4000"),
        "mark-missing": (f.lb_ns, f"iptables -t mangle -D INPUT {vip_mark}",
                         f"iptables -t mangle -A INPUT {vip_mark}"),
        "mark-conflict": (f.lb_ns, f"iptables -t mangle -A INPUT -d {f.vip}/32 -j MARK --set-mark 4000",
                          f"iptables -t mangle -D INPUT -d {f.vip}/32 -j MARK --set-mark 4000"),
        "vip-alias-missing": (f.lb_ns, f"ip addr del {f.vip}/32 dev eth0", f"ip addr add {f.vip}/32 dev eth0"),
        "snat-missing": (f.lb_ns, f"iptables -t nat -D POSTROUTING {snat}", f"iptables -t nat -A POSTROUTING {snat}"),
        "sysctl": (f.lb_ns, "sysctl -qw net.ipv4.vs.expire_nodest_conn=0",
                   "sysctl -qw net.ipv4.vs.expire_nodest_conn=1"),
        "ingress-dnat-missing": ("", f"iptables -t nat -D DOCKER-INGRESS {dnat}",
                                 f"iptables -t nat -I DOCKER-INGRESS {dnat}"),
        "ingress-dnat-target": ("", "iptables -t nat -R DOCKER-INGRESS 1 -p tcp --dport 8080 -j DNAT "
                                    "--to-destination 172.31.0.9:8080",
                                f"iptables -t nat -R DOCKER-INGRESS 1 {dnat}"),
        "ingress-filter-missing": ("", "iptables -D DOCKER-INGRESS -p tcp --dport 8080 -j ACCEPT",
                                   "iptables -I DOCKER-INGRESS -p tcp --dport 8080 -j ACCEPT"),
        "ingress-jump-missing": ("", f"iptables -D {filter_jump_chain()} -j DOCKER-INGRESS",
                                 f"iptables -I {filter_jump_chain()} -j DOCKER-INGRESS"),
    }
    port_mark = f"-p tcp --dport 8080 -j MARK --set-mark {f.ingress_fwmark}"
    out["mark-missing/ingress-port"] = (SBOX, f"iptables -t mangle -D PREROUTING {port_mark}",
                                        f"iptables -t mangle -I PREROUTING {port_mark}")
    if f.web_task_ns:
        redirect = f"-d {f.web_task_ip}/32 -p tcp --dport 8080 -j REDIRECT --to-ports 80"
        out["task-redirect-missing"] = (f.web_task_ns, f"iptables -t nat -D PREROUTING {redirect}",
                                        f"iptables -t nat -A PREROUTING {redirect}")
    return out


def in_ns(ns: str, script: str) -> str:
    return f"nsenter --net={ns} sh -c '{script}'" if ns else script


def with_fault(node: int, ns: str, inject: str, undo: str, *args: str) -> dict[int, tuple[int, dict, str]]:
    """ssd on every node while the fault is in place on one; undone whatever happens."""
    sh(node, in_ns(ns, inject))
    try:
        return ssd_everywhere(*args)
    finally:
        sh(node, in_ns(ns, undo))


def found_only_on(node: int, verdicts: dict[int, tuple[int, dict, str]]) -> dict:
    """Every other node is consistent and node found something: its JSON document."""
    for other, (code, doc, stderr) in verdicts.items():
        if other != node:
            assert code == 0, (other, doc["findings"], stderr)
    code, doc, stderr = verdicts[node]
    assert code == 1, (doc["findings"], doc["errors"], stderr)
    return doc


# --- healthy ----------------------------------------------------------------------------

def test_healthy_swarm_is_consistent_on_every_node(swarm):
    for node, (code, doc, stderr) in ssd_everywhere("ov2").items():
        assert code == 0, (node, doc["findings"], doc["errors"], stderr)
        nets = {n["name"]: n for n in doc["networks"]}
        assert set(nets) == {"ov2", "ingress"}
        assert {s["name"] for s in nets["ov2"]["services"]} == {"s1", "s2", "s3", "web"}
        assert all(s["status"] == "ok" for n in nets.values() for s in n["services"]), nets
        assert doc["node"]["manager"] is (node == 1)


def test_text_output_on_the_manager(swarm):
    proc = lab("ssd", "node1", "ov2")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "service s1... OK" in proc.stdout and "port 8080/tcp (web)... OK" in proc.stdout
    assert "0 inconsistencies" in proc.stdout


# ipvs, rules and addresses of every namespace (the soak's view; test_lab_readonly.py compares
# the whole of a node's state)
STATE = ("for ns in '' /var/run/docker/netns/*; do echo \"== $ns\"; "
         "if [ -n \"$ns\" ]; then e=\"nsenter --net=$ns\"; else e=; fi; "
         "$e ipvsadm-save -n; $e iptables-save | grep -v '^#' | sed 's/\\[[0-9]*:[0-9]*\\]//'; "
         "$e ip -o addr; done")  # packet counters change with traffic: compare rules, not counters


# --- real faults ------------------------------------------------------------------------

FAULT_IDS = ["ipvs-backend-missing", "ipvs-backend-stale", "ipvs-backend-weight", "ipvs-service-missing",
             "ipvs-service-stale", "mark-missing", "mark-missing/ingress-port", "mark-conflict",
             "vip-alias-missing", "snat-missing", "sysctl", "ingress-dnat-missing", "ingress-dnat-target",
             "ingress-filter-missing", "ingress-jump-missing", "task-redirect-missing"]


@pytest.mark.parametrize("fault", FAULT_IDS)
def test_real_fault_found_on_its_node_only(swarm, fault):
    node = 1 if fault in MANAGER_FAULTS else FAULT_NODE
    table = faults(facts(node))
    if fault not in table:
        pytest.skip(f"node{node} runs no web task")  # the scheduler may leave a node without one
    ns, inject, undo = table[fault]
    results = with_fault(node, ns, inject, undo, "--settle", "1", "ov2")
    code, doc, _ = results[node]
    check = fault.split("/")[0]
    assert code == 1 and check in {f["check"] for f in doc["findings"]}, doc["findings"]
    for other in NODES:  # also proves the previous fault's undo: it ran on one of these
        if other != node:
            assert results[other][0] == 0, (other, results[other][1]["findings"])


# --- snapshots: the same findings live and from the file ---------------------------------

SHARE = Path(os.environ.get("SWARMLAB_STATE", SWARMLAB.parent / "state")) / "run" / "share"


@pytest.mark.parametrize("node,fault", [(1, None), (2, "mark-missing"), (2, "ingress-dnat-target")])
def test_snapshot_round_trip(swarm, node, fault):
    name = f"roundtrip-{fault or 'healthy'}.json"
    ns, inject, undo = faults(facts(node))[fault] if fault else ("", "true", "true")
    sh(node, in_ns(ns, inject))
    try:
        code, live, _ = ssd(node, "--settle", "1", "--snapshot", f"/lab/share/node{node}/{name}", "ov2")
    finally:
        sh(node, in_ns(ns, undo))
    path = SHARE / f"node{node}" / name
    replay = subprocess.run([sys.executable, str(SWARMLAB.parents[1] / "ssd.py"), "--from", str(path),
                             "--json"], capture_output=True, text=True, timeout=60, check=False)
    path.unlink()
    assert replay.returncode == code == (1 if fault else 0), replay.stderr
    assert json.loads(replay.stdout) == live


# --- churn ------------------------------------------------------------------------------

@pytest.mark.parametrize("change", ["docker service scale -d s1=6",
                                    "docker service update -d --force s2",
                                    "docker node update --availability drain node3"])
def test_churn_converges_without_false_alarm(swarm, change):
    sh(1, change)
    try:
        for node in NODES:
            ssd(node, "ov2")  # at once, while swarm converges: any verdict, never a traceback
        sh(1, CONVERGED)
        for node, (code, doc, stderr) in ssd_everywhere("--settle", "5").items():
            assert code == 0, (node, change, doc["findings"], doc["errors"], stderr)
    finally:
        restore_seed(change)


CONVERGED = ("for _ in $(seq 300); do [ -z \"$(docker service ls --format '{{.Replicas}}' "
             "| awk -F/ '$1 != $2')\" ] && break; sleep 1; done")


def restore_seed(change: str) -> None:
    """Leave the seed topology for the tests after this one (they expect ov2 on every node)."""
    if "scale" in change:
        sh(1, "docker service scale -d s1=3 >/dev/null")
    if "drain" in change:
        sh(1, "docker node update --availability active node3")
        # Swarm does not move tasks back to a node by itself: spread them again.
        sh(1, "for s in s1 s2 s3; do docker service update -d --force $s >/dev/null; done")
        sh(1, "for _ in $(seq 300); do docker node ps node3 --filter desired-state=running "
              "--format '{{.Name}} {{.CurrentState}}' | grep -q '^s[123][.].* Running' && break; "
              "sleep 1; done")
    sh(1, CONVERGED)
