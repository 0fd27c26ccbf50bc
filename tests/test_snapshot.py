"""Snapshots: --snapshot writes what a check read, --from checks it anywhere.

Tier 2 (real namespaces + fake Engine API): a live run and a run on its snapshot agree,
healthy and faulty, and the replay touches neither the node nor the daemon. Tier 1: a
damaged, truncated or too-new snapshot is one line on stderr and exit 2, never a traceback.
"""
from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest

from test_node_kernel import FAULTS
from schemas import validate
from helpers import REPO, one_line

SECRET = "hunter2-do-not-leak"


def ssd_from(*args: str) -> subprocess.CompletedProcess:
    """ssd on a snapshot: a plain process, no root, no namespace, no daemon."""
    return subprocess.run([sys.executable, str(REPO / "ssd.py"), *args], capture_output=True,
                          text=True, timeout=60, check=False,
                          env={"PATH": "/usr/bin:/bin", "NO_COLOR": "1",
                               "DOCKER_HOST": "unix:///nonexistent.sock"})  # no daemon to ask


def live_with_snapshot(node, engine, path: Path, *args: str) -> tuple[int, dict]:
    proc = node.ssd(engine.url, "--json", "--snapshot", str(path), *args)
    assert "Traceback" not in proc.stderr, proc.stderr
    doc = json.loads(proc.stdout)
    validate(doc)
    validate(json.loads(path.read_text()))  # the snapshot written beside it
    return proc.returncode, doc


@pytest.mark.parametrize("fault", [None, "mark-missing", "ingress-dnat-target", "vip-alias-missing"])
def test_live_and_snapshot_give_the_same_verdict(node, engine, tmp_path, fault):
    if fault:
        FAULTS[fault](node)
    snap = tmp_path / "node1.json"
    code, live = live_with_snapshot(node, engine, snap, "--settle", "1", "ov2")
    assert code == (1 if fault else 2)
    # Change the node and stop the daemon: the replay must see only the snapshot.
    FAULTS["mark-stale"](node)
    engine.routes.clear()
    replay = ssd_from("--from", str(snap), "--json")
    assert replay.returncode == code, replay.stderr
    doc = json.loads(replay.stdout)
    assert doc == live
    assert [f["check"] for f in doc["findings"]] == ([fault] if fault else [])
    text = ssd_from("--from", str(snap))
    assert text.returncode == code and "Verifying LB programming for network ov2" in text.stdout


def test_snapshot_holds_what_was_read_and_no_secrets(node, engine, tmp_path):
    engine.routes["/services"][0]["Spec"]["TaskTemplate"] = {
        "ContainerSpec": {"Env": [f"PASSWORD={SECRET}"], "Secrets": [{"SecretName": SECRET}]}}
    for key, body in engine.routes.items():
        if key.startswith("/containers/"):
            body["Config"] = {"Env": [f"TOKEN={SECRET}"], "Labels": {"x": SECRET}}
    snap = tmp_path / "s.json"
    live_with_snapshot(node, engine, snap, "--settle", "0", "ov2")
    raw = snap.read_text()
    assert SECRET not in raw
    doc = json.loads(raw)
    assert doc["format"] == "ssd-snapshot" and doc["version"] == 2
    assert doc["node"]["engine_version"] == "20.10.24+dfsg1" and doc["node"]["era"] == "lb-sandbox"
    sample = doc["samples"][0]
    assert {"GET /info", "GET /version", "GET /networks", "GET /services", "GET /tasks"} <= set(sample["api"])
    lb = sample["namespaces"][str(node.netns_dir / "lb_oc6rqvyvp")]
    assert "-A INPUT -d 10.0.1.2/32 -j MARK --set-xmark 0x102/0xffffffff" in lb["iptables"]["nf_tables"]
    assert ["10.0.1.2", 32] in lb["addresses"]["eth0"]
    assert "*nat" in sample["namespaces"]["host"]["iptables"]["nf_tables"]
    overlay = sample["namespaces"][str(node.netns_dir / "1-oc6rqvyvpk")]
    vxlan = next(link for link in overlay["links"] if link["name"] == "vxlan0")
    assert vxlan["vxlan"]["vni"] == 4097 and vxlan["master"] is not None


def test_snapshot_to_stdout_replaces_the_report(node, engine):
    FAULTS["mark-missing"](node)
    proc = node.ssd(engine.url, "--snapshot", "-", "--settle", "0", "ov2")
    assert proc.returncode == 1, proc.stderr
    doc = json.loads(proc.stdout)  # only the snapshot: no report text around it
    validate(doc)
    assert doc["format"] == "ssd-snapshot" and len(doc["samples"]) == 1


def test_settled_run_keeps_both_samples(node, engine, tmp_path):
    FAULTS["vip-alias-missing"](node)
    snap = tmp_path / "s.json"
    code, _ = live_with_snapshot(node, engine, snap, "--settle", "1", "ov2")
    assert code == 1 and len(json.loads(snap.read_text())["samples"]) == 2


# --- tier 1: damaged files --------------------------------------------------------------

@pytest.fixture(scope="module")
def good_snapshot() -> dict:
    return json.loads((REPO / "examples" / "healthy-node2.json").read_text())


def _first_ns(doc: dict) -> dict:
    return next(ns for path, ns in doc["samples"][0]["namespaces"].items() if "lb_" in path)


DAMAGE = {
    "not an object": lambda d: [],
    "other format": lambda d: {**d, "format": "something-else"},
    "no version": lambda d: {k: v for k, v in d.items() if k != "version"},
    "version as text": lambda d: {**d, "version": "1"},
    "no samples": lambda d: {k: v for k, v in d.items() if k != "samples"},
    "empty samples": lambda d: {**d, "samples": []},
    "sample without api": lambda d: {**d, "samples": [{"namespaces": {}, "lookups": {}}]},
    "networks not a list": lambda d: {**d, "networks": "ov2"},
    "listing is text": lambda d: d["samples"][0]["api"].update({"GET /networks": "ov2"}) or d,
    "info swarm is a number": lambda d: d["samples"][0]["api"]["GET /info"].update(Swarm=5) or d,
    "no network inspect": lambda d: [d["samples"][0]["api"].pop(k) for k in list(d["samples"][0]["api"])
                                     if k.startswith("GET /networks/")] and d,
    "ipvs is text": lambda d: _first_ns(d).update(ipvs="FWM 258") or d,
    "ipvs entry unknown field": lambda d: _first_ns(d).update(ipvs=[{"bogus": 1}]) or d,
    "address without prefix": lambda d: _first_ns(d).update(addresses={"eth0": [["10.0.1.2"]]}) or d,
    "iptables not text": lambda d: _first_ns(d).update(iptables={"nf_tables": 5}) or d,
    "namespace missing": lambda d: d["samples"][0].update(namespaces={}) or d,
    "node id a number": lambda d: d["samples"][0]["api"]["GET /info"]["Swarm"].update(NodeID=7) or d,
}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_a_damaged_snapshot_is_one_line(good_snapshot, tmp_path, damage):
    bad = DAMAGE[damage](copy.deepcopy(good_snapshot))
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(bad))
    line = one_line(ssd_from("--from", str(path)))
    assert line.startswith("ssd: error: ") and str(path) in line


def test_truncated_snapshot(good_snapshot, tmp_path):
    text = json.dumps(good_snapshot)
    path = tmp_path / "cut.json"
    path.write_text(text[: len(text) // 2])
    assert "invalid JSON" in one_line(ssd_from("--from", str(path)))


def test_snapshot_from_a_newer_ssd(good_snapshot, tmp_path):
    path = tmp_path / "new.json"
    path.write_text(json.dumps({**good_snapshot, "version": 3, "ssd_version": "9.0"}))
    line = one_line(ssd_from("--from", str(path), "--json"))
    assert "format 3" in line and "newer ssd" in line


def test_missing_snapshot_file(tmp_path):
    assert "cannot read snapshot" in one_line(ssd_from("--from", str(tmp_path / "none.json")))


# --- examples/: real snapshots from the lab, each with the verdict of its injected fault --

EXPECTED = json.loads((REPO / "examples" / "expected.json").read_text())


@pytest.mark.parametrize("name", sorted(EXPECTED["check"]))
def test_example_gives_its_verdict(name):
    proc = ssd_from("--from", str(REPO / "examples" / name), "--json")
    assert "Traceback" not in proc.stderr
    doc = json.loads(proc.stdout)
    want = EXPECTED["check"][name]
    assert doc["status"] == want["status"], proc.stderr
    assert proc.returncode == {"consistent": 0, "inconsistent": 1}[want["status"]]
    assert sorted({f["check"] for f in doc["findings"]}) == want["checks"]
    assert doc["node"]["engine_version"].startswith("28.5")


@pytest.mark.parametrize("case", EXPECTED["gossip-consistency"], ids=lambda c: c["files"][0].split("-")[0])
def test_example_nodes_compared(case):
    froms = [arg for name in case["files"] for arg in ("--from", str(REPO / "examples" / name))]
    proc = ssd_from(case["network"], "gossip-consistency", *froms, "--json")
    assert "Traceback" not in proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["status"] == case["status"]
    assert proc.returncode == {"consistent": 0, "inconsistent": 1}[case["status"]]
    assert len(doc["nodes"]) == len(case["files"])
    if case["status"] == "inconsistent":
        [missing] = [d for d in doc["differences"] if d["kind"] == "service" and d["service"] == case["service"]]
        assert missing["by_node"][case["missing_on"]] is False
        assert sum(missing["by_node"].values()) == len(case["files"]) - 1


def test_every_example_is_checked():
    files = {p.name for p in (REPO / "examples").glob("*.json")} - {"expected.json"}
    assert files == set(EXPECTED["check"])
    assert {f for case in EXPECTED["gossip-consistency"] for f in case["files"]} <= files


@pytest.mark.parametrize("damage", ["listing is text", "no network inspect", "truncated"])
def test_damaged_snapshot_in_a_gossip_comparison(good_snapshot, tmp_path, damage):
    path = tmp_path / "bad.json"
    if damage == "truncated":
        path.write_text(json.dumps(good_snapshot)[:500])
    else:
        path.write_text(json.dumps(DAMAGE[damage](copy.deepcopy(good_snapshot))))
    proc = ssd_from("ov2", "gossip-consistency", "--from", str(REPO / "examples" / "healthy-node1.json"),
                    "--from", str(path))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert str(path) in proc.stderr


def test_port_change_example_says_what_happened():
    """examples/port-change-*: the lab on 28.5.2 after `docker service update --publish-add
    published=8081,target=80 web`: ipvsadm showed 1 of web's 3 tasks in ingress_sbox, for minutes.
    The manager knows the ports changed and says so; the worker cannot, and still finds it."""
    for node, says in ((1, True), (2, False)):
        doc = json.loads(ssd_from("--from", str(REPO / "examples" / f"port-change-node{node}.json"),
                                  "--json").stdout)
        missing = [f for f in doc["findings"] if f["check"] == "ipvs-backend-missing"]
        assert {f["namespace"] for f in missing} == {"ingress_sbox"} and len(missing) == 2
        assert all(("8080/tcp -> 8080/tcp, 8081/tcp" in f["message"]) is says for f in missing)
        services = {s["name"] for n in doc["networks"] for s in n["services"]}
        assert {"dns", "job1", "gjob"} <= services  # ports on two protocols and jobs: consistent


def test_a_snapshot_keeps_a_health_checks_kind_not_its_command():
    """Only whether a service has a health check is used; its command may carry credentials
    (curl -u), and a snapshot goes with a support case."""
    import ssd.collect
    import ssd.views
    service = {"ID": "s", "Spec": {"Name": "web", "TaskTemplate": {"ContainerSpec": {
        "Healthcheck": {"Test": ["CMD-SHELL", "curl -fu admin:hunter2 localhost"], "Interval": 1},
        "StopGracePeriod": 2000000000, "Env": ["PASSWORD=x"]}}}}
    kept = ssd.collect.project([service], ssd.collect.API_SHAPES["services"])
    assert "hunter2" not in json.dumps(kept) and "PASSWORD" not in json.dumps(kept)
    assert kept[0]["Spec"]["TaskTemplate"]["ContainerSpec"]["Healthcheck"] == {"Test": ["CMD-SHELL"]}
    assert ssd.views.build_health_checked(kept) == ssd.views.build_health_checked([service]) == {"web": 2.0}


# --- task history (issue 45): swarm keeps 5 tasks per slot ----------------------------------

def with_history(doc: dict, per_task: int = 4) -> dict:
    """Every task of the recording with per_task ended ones before it, as swarm keeps them
    (--task-history-limit 5): same service, slot's network, an older address, ended."""
    doc = copy.deepcopy(doc)
    for sample in doc["samples"]:
        tasks = sample["api"]["GET /tasks"]
        for task in list(tasks):
            for n in range(per_task):
                old = copy.deepcopy(task)
                old["ID"] = f"old{n}{task['ID'][4:]}"
                old["DesiredState"] = "shutdown"
                old["Status"] = {**old.get("Status", {}), "State": ("shutdown", "failed", "complete")[n % 3]}
                tasks.append(old)
    return doc


def manager_run(doc: dict, captured: list) -> dict:
    import ssd.run
    import ssd.snapshot
    real = ssd.run.swarm_knowledge

    def knowledge(*args, **kwargs):
        found = real(*args, **kwargs)
        if found["swarm_tasks"] is not None:
            captured.append(found["swarm_tasks"])
        return found
    ssd.run.swarm_knowledge = knowledge
    try:
        collector = ssd.snapshot.SnapshotCollector(doc, "recorded")
        _, result = ssd.run.settled_check(collector, [], 0, live=False)
    finally:
        ssd.run.swarm_knowledge = real
    return ssd.report.to_json(result)


def test_a_manager_with_task_history_gives_the_same_report_keeping_only_what_it_judges():
    """Four ended tasks for every task in /tasks: the same report, and none of them kept, as
    no check looks at an ended task NetworkDB does not list; one NetworkDB still lists (a
    zombie) is kept and found."""
    import ssd.report  # noqa: F401 - manager_run's
    recorded = json.loads((REPO / "tests" / "fixtures" / "snapshot-28.5-node1.json").read_text())
    plain, history = [], []
    assert manager_run(with_history(recorded), history) == manager_run(recorded, plain)
    kept = {t for tasks in history for t in tasks}
    assert not any(t.startswith("old") for t in kept) and len(history[-1]) == len(plain[-1])
    # a task NetworkDB lists that swarm says has ended: a zombie, history or not
    zombie = copy.deepcopy(recorded)
    listed = next(t for t in zombie["samples"][-1]["api"]["GET /tasks"] if t["Status"]["State"] == "running")
    for sample in zombie["samples"]:
        for task in sample["api"]["GET /tasks"]:
            if task["ID"] == listed["ID"]:
                task["DesiredState"], task["Status"]["State"] = "shutdown", "shutdown"
    found = manager_run(with_history(zombie), [])["findings"]
    assert "networkdb-task-zombie" in {f["check"] for f in found}, found
    assert found == manager_run(zombie, [])["findings"]
