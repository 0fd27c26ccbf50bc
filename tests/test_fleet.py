"""Fleet mode (--all-nodes): the node check on every node through one short-lived service.

Tier 1: the coordinator runs as a process against a fake swarm (tests/fake_swarm.py). Each
node's answer is what the real per-node command produces: the node check (settled_check) run on a
snapshot recorded from a real 26.1 node, a fault made by taking an IPVS destination out of
that recording, and fleet_answer() around it. Tier 2: the per-node command on real namespaces.
"""
from __future__ import annotations

import copy
import json
import re
import os
import signal
import subprocess
import sys
import time

import pytest

import ssd.cli
import ssd.model
import ssd.run
import ssd.snapshot
import ssd.swarmwide.answers
import ssd.swarmwide.fleet
import ssd.swarmwide.gossip
from fake_engine import FakeEngine
from fake_swarm import NODES, FakeSwarm
from schemas import validate
from helpers import REPO

SNAPSHOT = REPO / "tests" / "fixtures" / "snapshot-26.1-node1.json"
RECORDED = json.loads(SNAPSHOT.read_text())
API = RECORDED["samples"][-1]["api"]
NETS = {n["Name"]: n["Id"] for n in API["GET /networks"] if n.get("Scope") == "swarm"}


def drop_backend(doc: dict) -> None:
    """The fault: the first destination of the first IPVS service of ov2's load balancer is gone."""
    lb = next(raw for path, raw in doc["samples"][-1]["namespaces"].items() if "/lb_" in path)
    lb["ipvs"][0]["dests"].pop(0)


def member_answer(fault=None, snapshot: bool = False) -> str:
    doc = copy.deepcopy(RECORDED)
    if fault:
        fault(doc)
    collector = ssd.snapshot.SnapshotCollector(doc, str(SNAPSHOT))
    node, result = ssd.run.settled_check(collector, [], 0, live=False)
    answer = ssd.swarmwide.answers.fleet_answer(collector, node, result, doc if snapshot else None)
    return json.dumps(answer, separators=(",", ":")) + "\n"


HEALTHY = member_answer()
FAULTY = member_answer(drop_backend)


@pytest.fixture
def fake(tmp_path):
    with FakeEngine(str(tmp_path / "docker.sock")) as engine:
        engine.routes["/networks"] = API["GET /networks"]
        for name, ident in NETS.items():
            engine.routes[f"/networks/{ident}"] = API[f"GET /networks/{ident}"]
            engine.routes[f"/networks/{name}"] = API[f"GET /networks/{ident}"]
        yield engine


def fleet(engine: FakeEngine, *args: str, popen: bool = False):
    cmd = [sys.executable, str(REPO / "ssd.py"), "-H", engine.url, "--all-nodes", "--image",
           "ssd:test", *args]
    env = {**os.environ, "NO_COLOR": "1"}
    env.pop("DOCKER_HOST", None)
    if popen:
        return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False, env=env)


def row(text: str, host: str) -> list[str]:
    """The matrix row of host, split on runs of two or more spaces."""
    line = next(line for line in text.splitlines() if line.startswith(host + " "))
    return [cell for cell in line.split("  ") if cell.strip()]


def every_node_healthy(node, sample):
    return "complete", HEALTHY, ""


def fault_on_node3(node, sample):
    return "complete", (FAULTY if node.startswith("n3") else HEALTHY), ""


def test_healthy_swarm_is_one_matrix_and_the_service_is_removed(fake):
    swarm = FakeSwarm(fake, every_node_healthy)
    proc = fleet(fake)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Swarm check: 3 of 3 nodes answered" in proc.stdout
    header = next(line for line in proc.stdout.splitlines() if line.startswith("NODE"))
    assert header.split() == ["NODE", "ov2", "ingress", "host", "ports"]
    for host in NODES.values():
        assert [c.strip() for c in row(proc.stdout, host)] == [host, "OK", "OK", "OK"]
    assert "3 nodes, 2 networks, 0 inconsistencies" in proc.stdout
    assert swarm.removed == ["svc0"] and not swarm.services
    spec = swarm.created[0]
    assert spec["Name"].startswith("ssd-fleet-")
    assert [m.lower() for m in spec["Mode"]] == ["globaljob"]
    task = spec["TaskTemplate"]
    container = task["ContainerSpec"]
    assert container["Args"] == ["fleet-member", "--json", "--settle", "2", "--exec-root",
                                 "/var/run/docker"]
    assert sorted(container["CapabilityAdd"]) == ["CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_SYS_ADMIN"]
    netns = next(m for m in container["Mounts"] if m["Target"] == "/var/run/docker/netns")
    assert netns["Source"] == "/var/run/docker/netns" and netns["ReadOnly"]
    assert netns["BindOptions"]["Propagation"] == "rslave"
    assert task["Networks"] == [{"Target": "host"}]


def test_named_networks_go_to_every_node_by_id(fake):
    swarm = FakeSwarm(fake, every_node_healthy)
    proc = fleet(fake, "ov2", "--settle", "0")
    assert proc.returncode == 0, proc.stderr
    assert swarm.created[0]["TaskTemplate"]["ContainerSpec"]["Args"][:4] == [
        NETS["ov2"], NETS["ingress"], "fleet-member", "--json"]


def test_fault_on_one_node_names_that_node_only(fake):
    FakeSwarm(fake, fault_on_node3)
    proc = fleet(fake)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert [c.strip() for c in row(proc.stdout, "node3")] == ["node3", "FAIL 1", "OK", "OK"]
    for host in ("node1", "node2"):
        assert [c.strip() for c in row(proc.stdout, host)] == [host, "OK", "OK", "OK"]
    findings = proc.stdout.split("node3: engine 26.1", 1)[1]
    assert "ipvs-backend-missing" in findings
    assert "node1: engine" not in proc.stdout and "node2: engine" not in proc.stdout
    assert "1 inconsistency on node3" in proc.stdout

    doc = json.loads(fleet(fake, "--json").stdout)
    validate(doc)  # and the node reports inside it
    assert doc["mode"] == "all-nodes" and doc["status"] == "inconsistent"
    status = {n["hostname"]: n["status"] for n in doc["nodes"]}
    assert status == {"node1": "consistent", "node2": "consistent", "node3": "inconsistent"}
    node3 = next(n for n in doc["nodes"] if n["hostname"] == "node3")
    assert [f["check"] for f in node3["report"]["findings"]] == ["ipvs-backend-missing"]


def test_silent_node_and_down_node_are_named(fake):
    def answer(node, sample):
        return (None, "", "") if node.startswith("n2") else ("complete", HEALTHY, "")
    FakeSwarm(fake, answer)
    fake.routes["/nodes"].append({"ID": "n4dddd", "Description": {"Hostname": "node4"},
                                  "Status": {"State": "down"}, "Spec": {"Availability": "active"}})
    proc = fleet(fake, "--timeout", "3")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert [c.strip() for c in row(proc.stdout, "node2")] == ["node2", "no answer", "no answer",
                                                              "no answer"]
    assert row(proc.stdout, "node4")[1].strip() == "not asked"
    assert "ssd: not checked: node node2: no answer within 3 s (task running)" in proc.stderr
    assert "ssd: not checked: node node4: is down: swarm cannot run ssd there" in proc.stderr
    assert "Swarm check: 2 of 3 nodes answered" in proc.stdout
    assert "Traceback" not in proc.stderr


def test_drained_node_is_a_note_not_a_failure(fake):
    FakeSwarm(fake, every_node_healthy)
    fake.routes["/nodes"].append({"ID": "n4dddd", "Description": {"Hostname": "node4"},
                                  "Status": {"State": "ready"}, "Spec": {"Availability": "drain"}})
    proc = fleet(fake)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert row(proc.stdout, "node4")[1].strip() == "not asked"


def test_member_error_is_the_reason(fake):
    def answer(node, sample):
        if node.startswith("n2"):
            return "failed", json.dumps(ssd.cli.error_document("cannot enter /var/run/docker/netns/x")), ""
        return "complete", HEALTHY, ""
    FakeSwarm(fake, answer)
    proc = fleet(fake)
    assert proc.returncode == 2
    assert "ssd: not checked: node node2: cannot enter /var/run/docker/netns/x" in proc.stderr


def test_gossip_rides_along_without_a_second_service(fake):
    swarm = FakeSwarm(fake, every_node_healthy)
    proc = fleet(fake, "--gossip")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "network ov2: OK: 3 nodes agree" in proc.stdout
    assert "network ingress: OK: 3 nodes agree" in proc.stdout
    assert len(swarm.created) == 1


def test_gossip_divergence_is_resampled_by_gossip_services(fake):
    view = json.loads(HEALTHY)["gossip"][NETS["ov2"]]
    other = copy.deepcopy(view["state"])
    other["peers"] = other["peers"][:-1]  # node3 has lost a peer, in every sample
    diverged = {**view, "state": other, "digest": ssd.swarmwide.answers.gossip_digest(other)}

    def answer(node, sample):
        if sample == 0:
            doc = json.loads(HEALTHY)
            if node.startswith("n3"):
                doc["gossip"][NETS["ov2"]] = diverged
            return "complete", json.dumps(doc), ""
        hashed = diverged if node.startswith("n3") else view
        return "complete", json.dumps({**hashed, "node": {"id": node, "hostname": NODES[node]}}), ""
    swarm = FakeSwarm(fake, answer)
    proc = fleet(fake, "--gossip")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "network ov2: DIVERGED" in proc.stdout and "views diverge on ov2" in proc.stdout
    assert len(swarm.created) == 1 + (ssd.swarmwide.gossip.GOSSIP_TRIES - 1)
    assert swarm.created[1]["TaskTemplate"]["ContainerSpec"]["Args"] == [NETS["ov2"], "gossip-hash",
                                                                         "--json"]
    assert not swarm.services


def with_overlay_finding(answer: str) -> str:
    """node3's report with one overlay finding on ov2 (as the overlay check words it)."""
    doc = json.loads(answer)
    finding = ssd.model.Finding("overlay-fdb-missing", "network ov2: task s1.1 (10.0.1.5) on node 10.99.0.1 "
                          "(MAC 02:42:0a:00:01:05) has no permanent FDB entry towards 10.99.0.1",
                          network="ov2", namespace="1-" + NETS["ov2"][:10], service="s1", subject="10.0.1.5")
    doc["report"]["findings"].append(finding.to_json())
    doc["report"]["status"] = "inconsistent"
    return json.dumps(doc)


@pytest.mark.parametrize("gossip_differs", [False, True])
def test_gossip_and_overlay_say_which_layer_disagrees(fake, gossip_differs):
    view = json.loads(HEALTHY)["gossip"][NETS["ov2"]]
    other = copy.deepcopy(view["state"])
    other["peers"] = other["peers"][:-1]
    diverged = {**view, "state": other, "digest": ssd.swarmwide.answers.gossip_digest(other)}

    def answer(node, sample):
        if sample == 0:
            doc = json.loads(with_overlay_finding(HEALTHY) if node.startswith("n3") else HEALTHY)
            if node.startswith("n3") and gossip_differs:
                doc["gossip"][NETS["ov2"]] = diverged
            return "complete", json.dumps(doc), ""
        hashed = diverged if node.startswith("n3") and gossip_differs else view
        return "complete", json.dumps({**hashed, "node": {"id": node, "hostname": NODES[node]}}), ""
    FakeSwarm(fake, answer)
    proc = fleet(fake, "--gossip")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    text = " ".join(proc.stdout.split())
    node3 = next(h for n, h in NODES.items() if n.startswith("n3"))
    if gossip_differs:
        assert (f"layers: on ov2, NetworkDB differs between nodes (gossip) and the overlay differs from "
                f"NetworkDB on {node3}: the kernel follows its node's NetworkDB, so fix the gossip "
                "difference first") in text
    else:
        assert (f"layers: on ov2, every node's NetworkDB agrees (gossip); the kernel's overlay differs "
                f"from it on {node3} only") in text
    assert "layers: on ingress" not in text


def test_snapshot_dir_holds_every_node_and_replays(fake, tmp_path):
    def answer(node, sample):
        text = member_answer(drop_backend if node.startswith("n3") else None, snapshot=True)
        return "complete", text, ""
    swarm = FakeSwarm(fake, answer)
    target = tmp_path / "case"
    proc = fleet(fake, "--snapshot-dir", str(target))
    assert proc.returncode == 1, proc.stderr
    assert "--snapshot" in swarm.created[0]["TaskTemplate"]["ContainerSpec"]["Args"]
    assert sorted(p.name for p in target.iterdir()) == ["node1.json", "node2.json", "node3.json"]
    for host, code in (("node1", 0), ("node3", 1)):
        replay = subprocess.run([sys.executable, str(REPO / "ssd.py"), "--from", str(target / f"{host}.json")],
                                capture_output=True, text=True, timeout=60, check=False)
        assert replay.returncode == code, replay.stdout + replay.stderr


@pytest.mark.parametrize("answer, state, code", [(every_node_healthy, "OK", 0), (fault_on_node3, "CRITICAL", 2)])
def test_nagios(fake, answer, state, code):
    FakeSwarm(fake, answer)
    proc = fleet(fake, "--nagios")
    assert proc.returncode == code, proc.stdout + proc.stderr
    line = proc.stdout.strip()
    assert line.startswith(f"SSD {state} - ") and "\n" not in line
    assert "nodes=3" in line and "nodes_answered=3" in line
    if code:
        assert "on node3: ipvs-backend-missing" in line


def test_interrupted_fleet_removes_its_service(fake):
    swarm = FakeSwarm(fake, lambda node, sample: (None, "", ""))
    proc = fleet(fake, "--timeout", "60", popen=True)
    deadline = time.monotonic() + 30
    while not swarm.created and time.monotonic() < deadline:
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 2, err
    assert "interrupted (its service was removed)" in err
    assert not swarm.services


@pytest.mark.parametrize("args, message", [
    (["--gossip"], "--gossip goes with --all-nodes"),
    (["--snapshot-dir", "x"], "--snapshot-dir goes with --all-nodes"),
    (["--all-nodes", "--snapshot", "x.json"], "--snapshot is not for --all-nodes"),
    (["--all-nodes", "--from", "x.json"], "--from is not for --all-nodes"),
    (["--all-nodes", "--prometheus", "{tmp}/ssd.prom"], "--prometheus is not for --all-nodes"),
    (["--all-nodes", "ov2", "gossip-consistency"], "--all-nodes is a mode of its own"),
])
def test_misuse_is_one_line(tmp_path, args, message):
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    proc = subprocess.run([sys.executable, str(REPO / "ssd.py"), "-H", "unix:///nonexistent.sock", *args],
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 2
    assert proc.stderr.startswith("ssd: error: " + message) and proc.stderr.count("\n") == 1
    assert not (tmp_path / "ssd.prom").exists()


def test_engine_older_than_api_1_41_is_refused(fake):
    fake.routes["/version"]["ApiVersion"] = "1.40"
    swarm = FakeSwarm(fake, every_node_healthy)
    proc = fleet(fake)
    assert proc.returncode == 2 and "needs Engine API 1.41" in proc.stderr
    assert proc.stderr.count("\n") == 1 and not swarm.created


def test_worker_is_refused(fake):
    FakeSwarm(fake, every_node_healthy)
    fake.routes["/info"]["Swarm"]["ControlAvailable"] = False
    proc = fleet(fake)
    assert proc.returncode == 2
    assert proc.stderr == "ssd: error: --all-nodes starts a service on every node: run it on a manager\n"


# --- tier 2: the per-node command on real namespaces ---------------------------------------

def test_member_prints_one_line_with_the_node_report(node, engine):
    member = node.ssd(engine.url, "--settle", "0", "ov2", "fleet-member", "--json", "--snapshot", "-")
    assert member.returncode == 0, member.stderr
    assert member.stdout.count("\n") == 1
    answer = json.loads(member.stdout)
    plain = node.ssd(engine.url, "--settle", "0", "--json", "ov2")
    report = json.loads(plain.stdout)
    assert answer["format"] == ssd.swarmwide.answers.FLEET_ANSWER
    assert answer["report"]["status"] == report["status"]
    assert [n["name"] for n in answer["report"]["networks"]] == [n["name"] for n in report["networks"]]
    assert answer["snapshot"]["format"] == ssd.snapshot.SNAPSHOT_FORMAT and answer["snapshot"]["samples"]
    ov2 = next(n["id"] for n in report["networks"] if n["name"] == "ov2")
    assert answer["gossip"][ov2]["instantiated"] is True


def test_member_probes_when_fleet_mode_asks(node, engine):
    """--all-nodes --probe hands --probe to every node's member: its answer carries what each
    network's probes saw, as the node check's own --probe does (the lab found the member
    ignoring it: a probe matrix with no pair, and an exit 0)."""
    member = node.ssd(engine.url, "--settle", "0", "--probe", "ov2", "fleet-member", "--json")
    assert member.returncode == 0, member.stderr
    answer = json.loads(member.stdout)
    plain = json.loads(node.ssd(engine.url, "--settle", "0", "--probe", "--json", "ov2").stdout)
    probes = {n["name"]: n["probe"] for n in answer["report"]["networks"]}
    assert probes["ov2"] is not None, probes
    assert probes == {n["name"]: n["probe"] for n in plain["networks"]}
    quiet = json.loads(node.ssd(engine.url, "--settle", "0", "ov2", "fleet-member", "--json").stdout)
    assert all(n["probe"] is None for n in quiet["report"]["networks"])


# --- a worker's NetworkDB judged against swarm on the manager (issue 22) -----------------------

def recorded_fleet_node(name: str, edit=None) -> ssd.swarmwide.answers.FleetNode:
    """A fleet node as fleet_node() makes it from the answer of a node whose check ran on a
    28.5.2 recording (edit: applied to the NetworkDB view the node sends back)."""
    doc = json.loads((REPO / "tests" / "fixtures" / f"snapshot-28.5-{name}.json").read_text())
    collector = ssd.snapshot.SnapshotCollector(doc, name)
    node, result = ssd.run.settled_check(collector, [], 0, live=False)
    answer = json.loads(json.dumps(ssd.swarmwide.answers.fleet_answer(collector, node, result, None)))
    if edit:
        edit(answer["gossip"])
    return ssd.swarmwide.answers.FleetNode(node.id, node.hostname, answer["report"], gossip=answer["gossip"])


def manager_collector() -> ssd.snapshot.SnapshotCollector:
    path = REPO / "tests" / "fixtures" / "snapshot-28.5-node1.json"
    return ssd.snapshot.SnapshotCollector(json.loads(path.read_text()), str(path))


def ov2_state(gossip: dict) -> dict:
    return next(a["state"] for a in gossip.values() if a["state"] and a["state"]["network"]["name"] == "ov2")


def test_a_workers_networkdb_is_judged_against_swarm_on_the_manager():
    worker, manager = recorded_fleet_node("node2"), recorded_fleet_node("node1")
    before = json.dumps(manager.report)
    notes = ssd.swarmwide.fleet.judge_workers(manager_collector(), [manager, worker])
    assert worker.report["status"] == "consistent" and not worker.report["findings"]
    swarm = {n["name"]: n["swarm"] for n in worker.report["networks"]}
    assert swarm["ov2"]["status"] == "ok" and swarm["ov2"]["tasks"] == 12, swarm
    assert json.dumps(manager.report) == before  # a manager judged itself
    assert len(notes) == 1 and "1 worker (node2)" in notes[0]


def test_a_task_a_workers_networkdb_lost_is_found_from_the_manager():
    """The worker's own check cannot see it (no /tasks there): NetworkDB on node2 lost a task
    and with it every trace of it (moby#41885); swarm still runs it."""
    lost = {}

    def lose_a_task(gossip: dict) -> None:
        tasks = ov2_state(gossip)["services"]["s1"]["tasks"]
        lost.update(tasks.pop(0))
    worker = recorded_fleet_node("node2", lose_a_task)
    ssd.swarmwide.fleet.judge_workers(manager_collector(), [worker])
    found = worker.report["findings"]
    assert [f["check"] for f in found] == ["swarm-task-missing"]
    assert found[0]["subject"] == lost["ip"] and found[0]["network"] == "ov2"
    assert worker.report["status"] == "inconsistent"
    assert {n["name"]: n["swarm"]["status"] for n in worker.report["networks"]}["ov2"] == "fail"
    validate(worker.report)


def test_a_drained_manager_running_the_fleet_checks_itself(fake, tmp_path):
    """swarm runs no task on a drained node, so the job skips it; the manager ssd runs on is
    checked in-process instead (here its namespaces directory is empty: it says so)."""
    FakeSwarm(fake, every_node_healthy)
    me = fake.routes["/info"]["Swarm"]["NodeID"]
    fake.routes["/nodes"].append({"ID": me, "Description": {"Hostname": "manager0"},
                                  "Status": {"State": "ready"}, "Spec": {"Availability": "drain"}})
    (tmp_path / "netns").mkdir()
    proc = fleet(fake, "--json", "--exec-root", str(tmp_path))
    doc = json.loads(proc.stdout)
    validate(doc)
    mine = next(n for n in doc["nodes"] if n["id"] == me)
    assert mine["report"] is not None and mine["report"]["node"]["id"] == me, mine
    assert any("is empty here" in e["message"] for e in mine["report"]["errors"]), mine["report"]["errors"]
    assert proc.returncode == 2  # this node could not be read: incomplete, not "not asked"


def test_a_workers_own_finding_about_a_service_swarm_updates_is_converging_in_fleet_mode():
    """A worker cannot know that swarm is updating a service; the manager can, for it."""
    doc = json.loads((REPO / "tests" / "fixtures" / "snapshot-28.5-node2.json").read_text())
    lb = next(raw for path, raw in doc["samples"][-1]["namespaces"].items() if "/lb_" in path)
    lb["ipvs"][0]["dests"].pop(0)  # a backend lost from the worker's load balancer
    collector = ssd.snapshot.SnapshotCollector(doc, "node2")
    node, result = ssd.run.settled_check(collector, [], 0, live=False)
    answer = json.loads(json.dumps(ssd.swarmwide.answers.fleet_answer(collector, node, result, None)))
    worker = ssd.swarmwide.answers.FleetNode(node.id, node.hostname, answer["report"], gossip=answer["gossip"])
    [finding] = worker.report["findings"]
    assert worker.report["status"] == "inconsistent" and not finding["converging"]
    path = REPO / "tests" / "fixtures" / "snapshot-28.5-node1.json"
    recorded = json.loads(path.read_text())
    for sample in recorded["samples"]:
        svc = next(s for s in sample["api"]["GET /services"] if s["Spec"]["Name"] == finding["service"])
        svc["UpdateStatus"] = {"State": "updating"}
    ssd.swarmwide.fleet.judge_workers(ssd.snapshot.SnapshotCollector(recorded, str(path)), [worker])
    assert "swarm is updating service" in worker.report["findings"][0]["converging"]
    assert worker.report["status"] == "converging"


# --- reports that read at a thousand nodes ------------------------------------------------

def test_a_thousand_nodes_read_as_the_few_that_need_a_look():
    """Text lists the nodes that are not consistent (-v: every node); Nagios names ten and
    counts the rest; JSON keeps every node."""
    from ssd.report import Painter
    from ssd.swarmwide.answers import FleetNode, FleetResult
    from ssd.swarmwide.report import fleet_to_json, render_fleet, render_fleet_nagios
    from helpers import run_ssd
    good = json.loads(run_ssd("--from", str(REPO / "examples" / "healthy-node1.json"), "--json").stdout)
    bad = json.loads(run_ssd("--from", str(REPO / "examples" / "missing-dnat-node2.json"), "--json").stdout)
    nodes = [FleetNode(f"id{i:04d}", f"node{i:04d}", bad if i % 100 == 7 else good) for i in range(1000)]
    result = FleetResult([(n["name"], n["id"]) for n in good["networks"]], nodes, [], 30.0, [], [])
    text = render_fleet(result, Painter(False), quiet=False, verbose=False)
    rows = [line for line in text.splitlines() if re.match(r"node\d{4} ", line)]  # the matrix's
    assert len(rows) == 10 and all("FAIL 1" in row for row in rows), rows
    assert "... and 990 more nodes, consistent (-v lists every node)" in text
    assert len(text.splitlines()) < 120, len(text.splitlines())
    every = render_fleet(result, Painter(False), quiet=False, verbose=True)
    assert len([line for line in every.splitlines() if re.match(r"node\d{4} ", line)]) == 1000
    nagios = render_fleet_nagios(result)
    assert len(nagios.splitlines()) == 1 and "node0007, node0107" in nagios and "and 0 more" not in nagios
    assert "990 nodes consistent" in nagios and len(nagios) < 600, nagios
    assert len(fleet_to_json(result)["nodes"]) == 1000


# --- fleet mode at scale (issue 45) ---------------------------------------------------------

def test_workers_that_sent_the_same_views_are_judged_once_and_each_gets_its_verdict(monkeypatch):
    """At a thousand workers the manager judged each against swarm's whole task list; workers
    whose NetworkDB views are the same (most, NetworkDB being gossiped) share one judgement, and
    a worker whose view differs still gets its own findings, the others none."""
    lost = {}

    def lose_a_task(gossip: dict) -> None:
        lost.update(ov2_state(gossip)["services"]["s1"]["tasks"].pop(0))
    healthy = [recorded_fleet_node("node2") for _ in range(40)]
    odd = recorded_fleet_node("node2", lose_a_task)
    for i, n in enumerate([*healthy, odd]):
        n.hostname = f"w{i}"
    calls = []
    real = ssd.swarmwide.fleet.run_checks
    monkeypatch.setattr(ssd.swarmwide.fleet, "run_checks", lambda state: calls.append(1) or real(state))
    notes = ssd.swarmwide.fleet.judge_workers(manager_collector(), [*healthy[:20], odd, *healthy[20:]])
    assert len(calls) == 4, len(calls)  # two views, each judged alone and against swarm
    assert "41 workers" in notes[0]
    assert all(n.report["status"] == "consistent" and not n.report["findings"] for n in healthy)
    assert [f["check"] for f in odd.report["findings"]] == ["swarm-task-missing"]
    assert odd.report["findings"][0]["subject"] == lost["ip"]
    assert {n["name"]: n["swarm"]["tasks"] for n in healthy[7].report["networks"]}["ov2"] == 12


def test_the_fleet_keeper_shares_gossip_states_it_verified_and_writes_snapshots_at_once(tmp_path):
    """What the manager keeps of an answer as it is read: one copy of a gossip state for every
    node that sent it (not a copy each), never shared on a digest the state does not have; a
    node's snapshot written to --snapshot-dir then dropped."""
    keeper = ssd.swarmwide.fleet.FleetKeeper(str(tmp_path))
    a, b = recorded_fleet_node("node2"), recorded_fleet_node("node2")
    liar = recorded_fleet_node("node2", lambda g: ov2_state(g)["services"].clear())  # digest kept
    a.snapshot, b.snapshot = {"format": "ssd-snapshot", "n": 1}, {"format": "ssd-snapshot", "n": 2}
    a.hostname = b.hostname = "web/1"
    kept = [keeper.keep(n) for n in (a, b, liar)]
    assert ov2_state(kept[0].gossip) is ov2_state(kept[1].gossip)
    assert ov2_state(kept[2].gossip) is not ov2_state(kept[0].gossip) and not ov2_state(kept[2].gossip)["services"]
    assert all(n.snapshot is None for n in kept)
    files = sorted(p.name for p in tmp_path.iterdir())
    assert len(files) == 2 and files[0].startswith("web_1") and files[1].startswith("web_1"), files
    assert {json.loads((tmp_path / f).read_text())["n"] for f in files} == {1, 2}
    assert oct((tmp_path / files[0]).stat().st_mode & 0o777) == "0o600"
    assert keeper.notes() == [f"snapshots of 2 nodes saved in {tmp_path}"]


def test_a_thousand_node_fleet_run_is_judged_in_bounded_memory():
    """bench/scale.py's fleet point at 1,000 nodes (4 of swarm's tasks per node, every worker
    judged against them): the coordinator, a process, keeps the reports and one copy of the
    gossiped views, streams /tasks and its JSON out. It peaked at 96 MiB when it recorded /tasks
    whole, kept every node's views and joined its output's two million pieces (66 MiB here)."""
    sys.path.insert(0, str(REPO / "bench"))
    import scale
    row = scale.measure("fleet", 1000, 1)
    assert row["status"] == "consistent" and row["answers"] == 1000, row
    assert row["peak_mib"] < 85, row


def test_json_is_written_in_pieces_as_json_dumps_writes_it(capsys):
    import ssd.output
    doc = {"nodes": [{"id": f"n{i}", "report": {"status": "consistent", "x": [1.5, None, "é\u2028"]}}
                     for i in range(3000)], "status": "consistent"}
    ssd.output.emit_json(doc, piece=4096)
    assert capsys.readouterr().out == json.dumps(doc, indent=2, allow_nan=False) + "\n"
