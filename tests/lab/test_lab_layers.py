"""Tier 3: the layers above the kernel (issue 14) on real engines: swarm, NetworkDB, embedded DNS.

Two services join the seed here: dnsa (aliases dbalias and other) and rr (endpoint mode dnsrr),
3 replicas each, so that every node runs containers of ov2 whose resolver ssd asks. Healthy, every
node is silent; the resolver's DNAT rule deleted in the namespace ssd asks from on a worker is
found there, on that node only, in the dns layer; a task container killed behind swarm's back and a node
killed hard (its QEMU killed: no leave, no goodbye, as a power cut) are followed run by run:
what each layer shows, and when it clears, is kept in lab/state/layers.json. The killed node does
not come back: that test runs last in the session (tests/lab/conftest.py). (Freezing the VM
with SIGSTOP and thawing it was tried: a 5-minute freeze came back, a 9-minute one left the
emulated guest's timers dead.)
"""
from __future__ import annotations

import json
import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from labkit import SWARMLAB
from test_lab import CONVERGED, NODES, found_only_on, sh, ssd, ssd_everywhere, with_fault

pytestmark = pytest.mark.lab

STATE = Path(os.environ.get("SWARMLAB_STATE", SWARMLAB.parent / "state"))
EXTRA = {"dnsa": "--network name=ov2,alias=dbalias,alias=other",
         "rr": "--endpoint-mode dnsrr --network ov2"}
LB_DESTS = 'nsenter --net=$(ls -d /var/run/docker/netns/lb_* | head -1) ipvsadm-save -n | grep -c "^-a"'
SEED_DESTS = 12  # s1, s2, s3, web: 3 tasks each (rr has no VIP, no IPVS service)


def record(key: str, value: object) -> None:
    path = STATE / "layers.json"
    facts = json.loads(path.read_text()) if path.exists() else {}
    facts[key] = value
    path.write_text(json.dumps(facts, indent=2) + "\n")


def wait(node: int, condition: str, seconds: int = 300) -> None:
    sh(node, f"for _ in $(seq {seconds}); do if {condition}; then exit 0; fi; sleep 1; done; "
             f"echo 'timed out: {condition}' >&2; exit 1")


def listed_tasks(node: int, service: str) -> int:
    ov2 = json.loads(sh(node, "docker network inspect -v ov2"))[0]
    return len(((ov2.get("Services") or {}).get(service) or {}).get("Tasks") or [])


def wait_listed(node: int, service: str, count: int, seconds: float = 300) -> None:
    """NetworkDB on node lists count tasks of service on ov2."""
    deadline = time.monotonic() + seconds
    while listed_tasks(node, service) != count:
        assert time.monotonic() < deadline, f"node{node}: NetworkDB never listed {count} tasks of {service}"
        time.sleep(2)


@pytest.fixture(scope="module")
def discovery(swarm):
    for name, opts in EXTRA.items():
        sh(1, f"docker service rm {name} >/dev/null 2>&1; docker service create -d --name {name} {opts} "
              "--replicas 3 --no-resolve-image bb:latest sleep 1000000 >/dev/null")
    sh(1, CONVERGED)
    for node in NODES:  # every node's NetworkDB and load balancer hold the new tasks
        wait(node, f'[ "$({LB_DESTS})" = {SEED_DESTS + 3} ]')
        wait_listed(node, "rr", 3)
    yield
    sh(1, f"docker service rm {' '.join(EXTRA)} >/dev/null")
    for node in NODES:
        if Path(f"/proc/{qemu_group(node)}").exists():  # not a node killed by the last test
            wait(node, f'[ "$({LB_DESTS})" = {SEED_DESTS} ]')


def ov2(doc: dict) -> dict:
    return next(n for n in doc["networks"] if n["name"] == "ov2")


def test_healthy_with_aliases_and_dnsrr_is_silent_on_every_node(discovery):
    for node, (code, doc, stderr) in ssd_everywhere("ov2").items():
        assert code == 0, (node, doc["findings"], doc["errors"], stderr)
        dns = ov2(doc)["dns"]
        # 6 services, each <name> and tasks.<name>; the manager also asks the 2 aliases of dnsa.
        assert dns["status"] == "ok" and dns["names"] == (16 if node == 1 else 12), (node, dns)
        assert (ov2(doc)["swarm"] or {}).get("status", "ok") == "ok"


def resolver_rule(node: int, ns: str, proto: str) -> str:
    rules = sh(node, f"nsenter --net={ns} iptables-save -t nat").splitlines()
    return next(r for r in rules if r.startswith("-A DOCKER_OUTPUT") and f"-p {proto}" in r and "DNAT" in r)


def test_resolver_dnat_removed_is_found_in_that_namespace(discovery):
    node = 2  # a worker (the manager asks the same way, and its healthy run is above)
    _, doc, _ = ssd(node, "ov2")
    ns = f"/var/run/docker/netns/{ov2(doc)['dns']['namespace']}"
    rule = resolver_rule(node, ns, "udp")
    verdicts = with_fault(node, ns, f"iptables -t nat {rule.replace('-A ', '-D ', 1)}",
                          f"iptables -t nat {rule.replace('-A ', '-I ', 1)}", "ov2")
    found = found_only_on(node, verdicts)
    assert {f["check"] for f in found["findings"]} == {"dns-resolver-rules", "dns-resolver-silent"}
    assert {(f["layer"], f["namespace"]) for f in found["findings"]} == {("dns", os.path.basename(ns))}
    assert ov2(found)["dns"]["status"] == "fail"
    assert all(s["status"] != "fail" for s in ov2(found)["services"])  # the LB is fine
    assert ssd(node, "ov2")[0] == 0  # the rule is back: silent again


def timeline(nodes: tuple[int, ...], seconds: float, until=None) -> list[dict]:
    """ssd (one sample: what a run sees at that moment) on nodes, again and again."""
    started, runs = time.monotonic(), []
    while time.monotonic() - started < seconds:
        for node in nodes:
            code, doc, _ = ssd(node, "ov2", "--settle", "0")
            runs.append({"t": round(time.monotonic() - started, 1), "node": f"node{node}", "exit": code,
                         "findings": sorted(f"{f['layer']}:{f['check']}" for f in doc["findings"]),
                         "remote_nodes": (ov2(doc)["overlay"] or {}).get("remote_nodes")})
        if until is not None and until():
            break
    return runs


LAYER_PROBE = """
t0=$(date +%s%N); end=$(( $(date +%s) + {seconds} ))
while [ $(date +%s) -lt $end ]; do
  ndb=$(docker network inspect -v ov2 --format '{{{{json .Services}}}}' | grep -c '{task_name}')
  sw=$(docker inspect --format '{{{{.Status.State}}}}' {task_id})
  dns=$(docker exec {vantage} nslookup tasks.{service} 127.0.0.11 2>/dev/null | grep -c '{task_ip}$')
  echo "$(( ($(date +%s%N) - t0) / 1000000 )) $ndb $sw $dns"
done
"""


def first_change(lines: list[str]) -> dict[str, float | None]:
    """When each layer, seen from node1, first stopped holding the killed task (seconds)."""
    seen: dict[str, float | None] = {"networkdb": None, "swarm": None, "dns": None}
    for line in lines:
        ms, ndb, swarm, dns = line.split()
        for layer, gone in (("networkdb", ndb == "0"), ("swarm", swarm != "running"), ("dns", dns == "0")):
            if gone and seen[layer] is None:
                seen[layer] = int(ms) / 1000
    return seen


@pytest.mark.events
def test_task_killed_behind_swarms_back(discovery):
    """docker kill on a worker: the container dies, the engine takes its endpoint out of NetworkDB
    and the DNS, swarm sees the task fail and starts another. node1 watches each layer every
    moment (NetworkDB, swarm's task state, the answer of tasks.<service> in a container), and ssd
    runs again and again on node1 and node2 meanwhile."""
    name = sh(2, "docker ps --filter name=dnsa. --format '{{.Names}}' | sort | head -1").strip()
    service, task_id = name.split(".")[0], name.rsplit(".", 1)[1]
    ov2_seen = json.loads(sh(1, "docker network inspect -v ov2"))[0]
    task_ip = next(t["EndpointIP"] for t in ov2_seen["Services"][service]["Tasks"] if t["Name"] == name)
    vantage = sh(1, "docker ps --filter name=s1. --format '{{.Names}}' | head -1").strip()
    with ThreadPoolExecutor(1) as pool:
        probe = pool.submit(sh, 1, LAYER_PROBE.format(seconds=40, task_name=name, task_id=task_id,
                                                       vantage=vantage, service=service, task_ip=task_ip))
        time.sleep(8)  # the probe is watching
        sh(2, f"docker kill {name} >/dev/null")
        killed = time.monotonic()
        runs = timeline((1, 2), 20)
        lines = probe.result().split("\n")
    lines = [x for x in lines if x.strip()]
    assert lines and lines[0].split()[1:] == ["1", "running", "1"], lines[:3]  # held before the kill
    sh(1, CONVERGED)
    wait_listed(1, service, 3)
    settled = ssd_everywhere("ov2")
    record("task_killed", {"engine": settled[1][1]["node"]["engine_version"], "probe_started_s_before_kill": 8,
                           "gone_from_node1_s_after_probe_start": first_change(lines), "runs": runs,
                           "converged_after_s": round(time.monotonic() - killed, 1)})
    assert all(v is not None for v in first_change(lines).values()), lines  # every layer let it go
    for node, (code, doc, stderr) in settled.items():
        assert code == 0, (node, doc["findings"], doc["errors"], stderr)
    # Single samples may see the layers mid-change; none may blame the kernel or the overlay for it.
    assert all(not f.startswith(("kernel:", "overlay:")) for run in runs for f in run["findings"]), runs


# While node3 is down swarm counts its last tasks too (4/3): every service must have at least its
# replicas running elsewhere, and nothing may be meant to run on node3.
MOVED_AWAY = ("for _ in $(seq 300); do [ -z \"$(docker service ls --format '{{.Replicas}}' | awk -F/ '$1 < $2')\" ] "
              "&& [ -z \"$(docker node ps node3 -q --filter desired-state=running)\" ] && break; sleep 1; done")


def qemu_group(node: int) -> int:
    return int((STATE / "run" / f"node{node}.pid").read_text())


def node3_listed() -> bool:
    ov2_seen = json.loads(sh(1, "docker network inspect -v ov2"))[0]
    return any(t["Info"]["Host IP"] == "10.99.0.3" for s in ov2_seen["Services"].values() for t in s["Tasks"])


@pytest.mark.events
@pytest.mark.disruptive
def test_node_killed_hard(swarm):
    """node3's QEMU killed (SIGKILL): its kernel and dockerd vanish mid-flight, as in a power cut,
    with no leave and no goodbye. node1 (manager) and node2 (worker) are checked while swarm and
    NetworkDB notice, and after. node3 does not come back: this runs last in the session."""
    os.killpg(qemu_group(3), signal.SIGKILL)
    killed, marks = time.monotonic(), {}

    def progress() -> bool:
        now = round(time.monotonic() - killed, 1)
        if "networkdb_dropped_node3_s" not in marks and not node3_listed():
            marks["networkdb_dropped_node3_s"] = now
        if "swarm_down_s" not in marks and "Down" in sh(1, "docker node ls --format '{{.Hostname}} "
                                                           "{{.Status}}' | grep node3"):
            marks["swarm_down_s"] = now
        return len(marks) == 2 and now > marks["swarm_down_s"] + 15
    runs = timeline((1, 2), 240, until=progress)
    sh(1, MOVED_AWAY)
    marks["tasks_moved_away_s"] = round(time.monotonic() - killed, 1)
    after = {n: ssd(n, "ov2") for n in (1, 2)}
    record("node_killed", {"engine": after[1][1]["node"]["engine_version"], **marks, "runs": runs,
                           "after": {f"node{n}": v[1]["findings"] for n, v in after.items()}})
    assert marks.keys() >= {"networkdb_dropped_node3_s", "swarm_down_s"}, (marks, runs)
    for node, (code, doc, stderr) in after.items():
        assert code == 0, (node, doc["findings"], doc["errors"], stderr)
        assert ov2(doc)["overlay"]["remote_nodes"] == 1  # node3's endpoints left every layer here
    # While node3 was gone, no layer may blame the kernel or the overlay for what it still held.
    assert all(not f.startswith(("kernel:", "overlay:")) for run in runs for f in run["findings"]), runs
