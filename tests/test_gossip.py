"""gossip-consistency: the digest, the diff, and the coordinator against a fake swarm.

Tier 1. The digest and diff are pure. The coordinator runs as a process (ssd ... gossip-
consistency) against a fake Engine API that plays a 3-node swarm: it creates tasks for the
job service, moves them to complete, and serves each node's answer (made from the real
recorded network inspect) through the service-logs stream, as dockerd does.
"""
from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import sys
import time

import pytest

import ssd.swarmwide.answers
import ssd.swarmwide.gossip
import ssd.swarmwide.job
from fake_engine import FakeEngine
from fake_swarm import NODES, FakeSwarm, many_nodes
from recorded import network_json
from schemas import validate
from helpers import REPO

OV2 = network_json("ov2")


def view(**changes) -> dict:
    return {**copy.deepcopy(OV2), **changes}


# --- the digest -------------------------------------------------------------------------

def shuffled(raw: dict) -> dict:
    """The same view with every map and list in another order."""
    out = json.loads(json.dumps(raw), object_pairs_hook=lambda kv: dict(reversed(kv)))
    for svc in out["Services"].values():
        svc["Tasks"] = list(reversed(svc["Tasks"]))
    out["Peers"] = list(reversed(out.get("Peers") or []))
    return out


def test_digest_ignores_order():
    assert ssd.swarmwide.answers.gossip_digest(ssd.swarmwide.answers.gossip_state(shuffled(OV2))) == ssd.swarmwide.answers.gossip_digest(ssd.swarmwide.answers.gossip_state(OV2))


def test_digest_ignores_what_is_node_local():
    local = view(Containers={"abc": {"Name": "other", "EndpointID": "e", "IPv4Address": "10.0.1.50/24"}})
    for svc in local["Services"].values():
        svc["LocalLBIndex"] = svc.get("LocalLBIndex", 0) + 7  # every node numbers its own fwmarks
    assert ssd.swarmwide.answers.gossip_digest(ssd.swarmwide.answers.gossip_state(local)) == ssd.swarmwide.answers.gossip_digest(ssd.swarmwide.answers.gossip_state(OV2))


@pytest.mark.parametrize("change", ["vip", "task ip", "task host", "task gone", "peer gone", "port"])
def test_digest_sees_what_must_agree(change):
    raw = view()
    s1 = raw["Services"]["s1"]
    if change == "vip":
        s1["VIP"] = "10.0.1.99"
    elif change == "task ip":
        s1["Tasks"][0]["EndpointIP"] = "10.0.1.99"
    elif change == "task host":
        s1["Tasks"][0]["Info"] = {"Host IP": "192.0.2.9"}
    elif change == "task gone":
        s1["Tasks"].pop()
    elif change == "peer gone":
        raw["Peers"] = []
    else:
        raw["Services"]["web"]["Ports"] = ["Target: 80, Publish: 9090"]
    assert ssd.swarmwide.answers.gossip_digest(ssd.swarmwide.answers.gossip_state(raw)) != ssd.swarmwide.answers.gossip_digest(ssd.swarmwide.answers.gossip_state(OV2))


def test_diff_names_the_entry_and_the_nodes():
    base = view()
    s3 = copy.deepcopy(base["Services"]["s1"])
    s3["VIP"] = "10.0.1.30"
    for i, task in enumerate(s3["Tasks"]):
        task.update(Name=f"s3.{i}.x", EndpointID=f"ep{i}")
    base["Services"]["s3"] = s3
    behind = copy.deepcopy(base)
    lost = behind["Services"]["s1"]["Tasks"].pop()
    behind["Services"]["web"]["VIP"] = "10.0.1.99"
    del behind["Services"]["s3"]
    behind["Peers"] = []
    good = ssd.swarmwide.answers.gossip_state(base)
    diffs = ssd.swarmwide.gossip.diff_gossip({"node1": good, "node2": good, "node3": ssd.swarmwide.answers.gossip_state(behind)})
    by_kind = {(d["kind"], d["service"]): d for d in diffs}
    assert set(by_kind) == {("task", "s1"), ("vip", "web"), ("service", "s3"), ("peers", None)}
    task = by_kind[("task", "s1")]
    assert task["subject"] == lost["Name"]
    assert f"task {lost['Name']} ({lost['EndpointIP'].split('/')[0]}" in task["message"]
    assert task["message"].endswith("is known to node1, node2 but missing on node3")
    assert "10.0.1.99 on node3" in by_kind[("vip", "web")]["message"]
    assert "missing on node3" in by_kind[("service", "s3")]["message"]
    assert "node3 sees none" in by_kind[("peers", None)]["message"]


def test_no_diff_when_states_agree():
    state = ssd.swarmwide.answers.gossip_state(OV2)
    assert ssd.swarmwide.gossip.diff_gossip({"a": state, "b": ssd.swarmwide.answers.gossip_state(shuffled(OV2))}) == []


# --- the coordinator against a fake swarm -----------------------------------------------

def answer_from(raw: dict | None, node: str, hostname: str | None = None) -> str:
    state = ssd.swarmwide.answers.gossip_state(raw) if raw else None
    return json.dumps({"ssd_version": "t", "node": {"id": node, "hostname": hostname or NODES[node]},
                       "network": "ov2", "instantiated": raw is not None,
                       "digest": ssd.swarmwide.answers.gossip_digest(state) if state else None, "state": state},
                      separators=(",", ":")) + "\n"


def every_node_agrees(node, sample):
    return "complete", answer_from(OV2, node), ""


@pytest.fixture
def fake(tmp_path):
    with FakeEngine(str(tmp_path / "docker.sock")) as engine:
        yield engine


def coordinator(engine: FakeEngine, *args: str, popen: bool = False):
    cmd = [sys.executable, str(REPO / "ssd.py"), "-H", engine.url, "ov2", "gossip-consistency",
           "--image", "ssd:test", *args]
    env = {**os.environ, "NO_COLOR": "1"}
    env.pop("DOCKER_HOST", None)
    if popen:
        return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False, env=env)


def test_agreement(fake):
    swarm = FakeSwarm(fake, every_node_agrees)
    proc = coordinator(fake)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    digest = ssd.swarmwide.answers.gossip_digest(ssd.swarmwide.answers.gossip_state(OV2))
    for node, host in NODES.items():
        assert f"Node id: {node} ({host}) gossip hash {digest}" in lines
    assert "network ov2: OK: 3 nodes agree" in proc.stdout
    spec = swarm.created[0]
    assert spec["Name"].startswith("ssd-gossip-") and len(swarm.created) == 1
    assert [m.lower() for m in spec["Mode"]] == ["globaljob"]
    container = spec["TaskTemplate"]["ContainerSpec"]
    assert container["Image"] == "ssd:test"
    assert container["Args"] == [OV2["Id"], "gossip-hash", "--json"]
    assert container["Mounts"][0]["Source"] == "/var/run/docker.sock"
    assert spec["TaskTemplate"]["LogDriver"]["Name"] == "json-file"
    assert swarm.removed == ["svc0"] and not swarm.services


def test_divergence_is_resampled_then_explained(fake):
    behind = view()
    lost = behind["Services"]["s1"]["Tasks"].pop(0)

    def answer(node, sample):
        return "complete", answer_from(behind if node.startswith("n3") else OV2, node), ""
    swarm = FakeSwarm(fake, answer)
    proc = coordinator(fake, "--json")
    assert proc.returncode == 1, proc.stderr
    doc = json.loads(proc.stdout)
    validate(doc)
    assert doc["status"] == "inconsistent" and doc["samples"] == 3
    assert len(swarm.created) == 3 and swarm.removed == ["svc0", "svc1", "svc2"]
    [diff] = doc["differences"]
    assert diff["service"] == "s1" and diff["subject"] == lost["Name"]
    assert diff["by_node"] == {"node1": True, "node2": True, "node3": False}
    assert any("differed in all 3 samples" in n for n in doc["notes"])


def test_convergence_is_not_divergence(fake):
    behind = view()
    behind["Services"]["s1"]["Tasks"].pop(0)

    def answer(node, sample):
        return "complete", answer_from(behind if node.startswith("n3") and sample == 0 else OV2, node), ""
    swarm = FakeSwarm(fake, answer)
    proc = coordinator(fake)
    assert proc.returncode == 0, proc.stdout
    assert "then agreed: convergence" in proc.stdout and len(swarm.created) == 2


def test_node_without_the_network_is_not_a_divergence(fake):
    def answer(node, sample):
        return "complete", answer_from(None if node.startswith("n3") else OV2, node), ""
    FakeSwarm(fake, answer)
    proc = coordinator(fake)
    assert proc.returncode == 0, proc.stdout
    assert "(node3) network ov2 not instantiated here" in proc.stdout
    assert "2 nodes agree" in proc.stdout


@pytest.mark.parametrize("holders", [("n1",), ()])
def test_fewer_than_two_views_are_not_called_consistent(fake, holders):
    """One node's view agrees with itself, and no view agrees with nothing: neither is a check."""
    def answer(node, sample):
        return "complete", answer_from(OV2 if node.startswith(holders or "-") else None, node), ""
    FakeSwarm(fake, answer)
    proc = coordinator(fake, "--json")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    doc = json.loads(proc.stdout)
    validate(doc)
    assert doc["status"] == "incomplete" and not doc["differences"]
    [error] = doc["errors"]
    assert error["scope"] == "network ov2" and "nothing to compare" in error["message"]
    assert ("only node1 holds it" if holders else "no node holds it") in error["message"]
    assert "of 3 nodes asked" in error["message"]
    text = coordinator(fake)
    assert text.returncode == 2 and "agree" not in text.stdout
    assert f"network ov2: NOT COMPARED: {len(holders)} of 3 nodes hold it" in text.stdout
    assert "ssd: not checked: network ov2: nothing to compare" in text.stderr


def test_silent_node_is_named_after_the_timeout(fake):
    def answer(node, sample):
        return (None, "", "") if node.startswith("n3") else ("complete", answer_from(OV2, node), "")
    swarm = FakeSwarm(fake, answer)
    started = time.monotonic()
    proc = coordinator(fake, "--timeout", "3")
    assert proc.returncode == 2, proc.stdout
    assert time.monotonic() - started < 20
    assert "ssd: not checked: node node3: no answer within 3 s (task running)" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert swarm.removed == ["svc0"]


def test_failed_task_says_why(fake):
    def answer(node, sample):
        if node.startswith("n2"):
            return "failed", "", "ssd: error: this daemon is not in swarm mode\n"
        return "complete", answer_from(OV2, node), ""
    FakeSwarm(fake, answer)
    proc = coordinator(fake)
    assert proc.returncode == 2
    assert "node node2: task failed: ssd: error: this daemon is not in swarm mode" in proc.stderr


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupted_run_removes_its_service(fake, sig):
    swarm = FakeSwarm(fake, lambda node, sample: (None, "", ""))
    proc = coordinator(fake, "--timeout", "60", popen=True)
    deadline = time.monotonic() + 30
    while not swarm.created and time.monotonic() < deadline:
        time.sleep(0.1)
    assert swarm.created, "the coordinator never created its service"
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 2 and "interrupted" in err and "Traceback" not in err
    assert swarm.removed == ["svc0"] and not swarm.services


def test_leftover_of_a_killed_run_is_reported_and_removed(fake):
    swarm = FakeSwarm(fake, every_node_agrees)
    old = {"Name": "ssd-gossip-dead0001", "Labels": {ssd.swarmwide.job.GOSSIP_LABEL: str(int(time.time()) - 3600)}}
    live = {"Name": "ssd-gossip-busy0002", "Labels": {ssd.swarmwide.job.GOSSIP_LABEL: str(int(time.time()) + 3600)}}
    swarm.create("POST", {}, old)
    swarm.create("POST", {}, live)
    swarm.created.clear()
    proc = coordinator(fake)
    assert proc.returncode == 0
    assert "removed ssd-gossip-dead0001" in proc.stdout.replace("\n      ", " ")
    assert "ssd-gossip-busy0002 belongs to another" in proc.stdout.replace("\n      ", " ")
    assert "svc0" in swarm.removed and "svc1" not in swarm.removed


def test_a_service_with_the_label_but_not_ssds_name_is_left_alone(fake):
    """The label is anyone's to set: someone's service labelled org.ssd.gossip, its deadline long
    past, is neither removed nor reported."""
    swarm = FakeSwarm(fake, every_node_agrees)
    theirs = {"Name": "payments", "Labels": {ssd.swarmwide.job.GOSSIP_LABEL: str(int(time.time()) - 3600)}}
    swarm.create("POST", {}, theirs)
    swarm.created.clear()
    proc = coordinator(fake)
    assert proc.returncode == 0 and "payments" not in proc.stdout
    assert swarm.removed == ["svc1"] and swarm.services["svc0"]["Spec"]["Name"] == "payments"


def test_a_leftover_is_named_by_the_mode_that_left_it(fake):
    """A killed --all-nodes run leaves ssd-fleet-*: not 'an earlier gossip-consistency run'."""
    swarm = FakeSwarm(fake, every_node_agrees)
    old = {"Name": "ssd-fleet-dead0003", "Labels": {ssd.swarmwide.job.GOSSIP_LABEL: str(int(time.time()) - 3600)}}
    swarm.create("POST", {}, old)
    swarm.created.clear()
    out = coordinator(fake).stdout.replace("\n      ", " ")
    assert "removed ssd-fleet-dead0003, left behind by an earlier --all-nodes run" in out, out


def test_removal_failures_belong_to_the_job_not_the_class():
    """One run's failure to remove its service is that run's: a later job starts clean."""
    class Api:
        api_version = "1.41"

        def remove_service(self, ident):
            raise RuntimeError("daemon gone")

    class Engine:
        api = Api()

    first = ssd.swarmwide.job.NodeJob(Engine(), ["ov2"], "ssd:test", 60)
    first.requested = True
    first.remove()
    assert first.not_removed == [f"{first.name}: daemon gone"]
    assert ssd.swarmwide.job.NodeJob(Engine(), ["ov2"], "ssd:test", 60).not_removed == []
    assert not hasattr(ssd.swarmwide.job.NodeJob, "not_removed")


def test_old_engine_gets_a_global_service_that_does_not_restart(fake):
    fake.routes["/version"]["ApiVersion"] = "1.40"
    swarm = FakeSwarm(fake, every_node_agrees)
    assert coordinator(fake).returncode == 0
    spec = swarm.created[0]
    assert [m.lower() for m in spec["Mode"]] == ["global"]  # Go decodes JSON keys case-insensitively
    assert spec["TaskTemplate"]["RestartPolicy"]["Condition"] == "none"


def test_needs_an_image_outside_a_container(fake):
    FakeSwarm(fake, every_node_agrees)
    cmd = [sys.executable, str(REPO / "ssd.py"), "-H", fake.url, "ov2", "gossip-consistency"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "--image" in proc.stderr


def test_needs_a_manager(fake):
    FakeSwarm(fake, every_node_agrees)
    fake.routes["/info"]["Swarm"]["ControlAvailable"] = False
    proc = coordinator(fake)
    assert proc.returncode == 2 and "run it on a manager" in proc.stderr


def test_gossip_hash_is_one_json_line(fake):
    cmd = [sys.executable, str(REPO / "ssd.py"), "-H", fake.url, OV2["Id"], "gossip-hash", "--json"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0 and proc.stdout.count("\n") == 1
    answer = json.loads(proc.stdout)
    assert answer["instantiated"] and answer["digest"] == ssd.swarmwide.answers.gossip_digest(ssd.swarmwide.answers.gossip_state(OV2))
    assert answer["node"]["hostname"] == "node1"


def test_service_interrupted_while_being_created_is_removed_by_name():
    """Ctrl-C after the create request went out but before its reply: the ID is unknown."""
    class Api:
        api_version = "1.47"

        def __init__(self) -> None:
            self.removed: list[str] = []

        def create_service(self, *args, **kwargs):
            raise KeyboardInterrupt

        def remove_service(self, service):
            self.removed.append(service)

    class Engine:
        api = Api()

        def call(self, what, fn, *args, **kwargs):
            return fn(*args, **kwargs)

    job = ssd.swarmwide.job.NodeJob(Engine(), ["net0", "gossip-hash", "--json"], "ssd:test", 60)
    with pytest.raises(KeyboardInterrupt):
        job.start()
    job.remove()
    assert Engine.api.removed == [job.name]
    job.remove()  # once only
    assert Engine.api.removed == [job.name]


def test_a_removal_that_fails_is_reported_not_claimed(fake):
    swarm = FakeSwarm(fake, every_node_agrees)
    original = swarm.service

    def refuse(sid, method):
        return 500 if method == "DELETE" else original(sid, method)
    swarm.service = refuse
    proc = coordinator(fake)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "could not remove ssd-gossip-" in proc.stderr and "docker service rm ssd-gossip-" in proc.stderr


# --- other nodes are witnesses, not judges -------------------------------------------------

def test_a_node_claiming_another_identity_is_not_believed(fake):
    """node3 answers as node1 would, with a view that differs: the report does not say the nodes
    agree; node3 is named, by the identity swarm gives its task, as not believed."""
    behind = view()
    behind["Services"]["s1"]["Tasks"].pop(0)

    def answer(node, sample):
        if node.startswith("n3"):
            return "complete", answer_from(behind, next(iter(NODES))), ""  # as node1
        return "complete", answer_from(OV2, node), ""
    FakeSwarm(fake, answer)
    proc = coordinator(fake, "--json")
    doc = json.loads(proc.stdout)
    validate(doc)
    assert proc.returncode == 2 and doc["status"] != "consistent", proc.stdout
    liar = next(n for n in doc["nodes"] if n["hostname"] == "node3")
    assert liar["status"] == "no-answer" and "claims to come from node" in liar["reason"], liar


def test_a_digest_that_does_not_match_the_state_is_not_believed(fake):
    def answer(node, sample):
        text = answer_from(OV2, node)
        if node.startswith("n2"):
            forged = json.loads(text)
            forged["digest"] = "0" * 64
            text = json.dumps(forged) + "\n"
        return "complete", text, ""
    FakeSwarm(fake, answer)
    doc = json.loads(coordinator(fake, "--json").stdout)
    forger = next(n for n in doc["nodes"] if n["hostname"] == "node2")
    assert forger["status"] == "no-answer" and "digest does not match" in forger["reason"]
    assert doc["status"] != "consistent"


def test_a_node_flooding_its_log_is_not_read_past_the_bound(fake):
    """node3 writes 100 MB (one JSON string): the manager reads no more than the bound of
    that node's log, says so in one line, and still judges the two others."""
    flood = '{"node": "' + "A" * (100 << 20) + '"}\n'

    def answer(node, sample):
        return "complete", flood if node.startswith("n3") else answer_from(OV2, node), ""
    FakeSwarm(fake, answer)
    measure = ("import resource, subprocess, sys; p = subprocess.run(sys.argv[1:]); "
               "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr); "
               "sys.exit(p.returncode)")
    cmd = [sys.executable, "-c", measure, sys.executable, str(REPO / "ssd.py"), "-H", fake.url, "ov2",
           "gossip-consistency", "--image", "ssd:test", "--json"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    peak_kib = proc.stderr.splitlines()[-1]
    doc = json.loads(proc.stdout)
    flooder = next(n for n in doc["nodes"] if n["hostname"] == "node3")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert flooder["status"] == "no-answer" and flooder["reason"] == "answer larger than 32 MiB: not read"
    assert [n["status"] for n in doc["nodes"] if n["hostname"] != "node3"] == ["answered", "answered"], doc["nodes"]
    assert int(peak_kib) < 200 << 10, f"the manager peaked at {int(peak_kib) >> 10} MiB"


def test_each_answer_is_read_once_at_200_nodes(fake):
    """200 nodes finishing in ten waves, as real nodes do (not all at once): the log bytes the
    manager reads are each node's answer once. (Reading the service's log again at every wave
    read ten times that here, where the fake serves every answer from the start; on a real
    swarm, N(N+1)/2 answers when nodes finish one by one.)"""
    nodes = many_nodes(200)
    texts: dict[str, str] = {}

    def answer(node, sample):
        if node not in texts:
            texts[node] = answer_from(OV2, node, nodes[node])
        return "complete", texts[node], ""
    swarm = FakeSwarm(fake, answer, nodes=nodes, finishes=lambda index, poll: poll >= 2 + index // 20)
    proc = coordinator(fake, "--json")
    doc = json.loads(proc.stdout)
    assert proc.returncode == 0 and len(doc["nodes"]) == 200, proc.stderr[-500:]
    served, sid = swarm.log_bytes, swarm.ids[0]
    once = sum(len(swarm.logs(sid, {"stdout": ["1"]}, only=(index, node))) for index, node in enumerate(nodes))
    assert len(swarm.created) == 1 and served <= 1.05 * once, (served, once)


@pytest.mark.parametrize("path, body, says", [
    ("/networks", {}, "GET /networks answered an object where a list of objects was expected"),
    ("/networks", [None], "GET /networks answered a list holding null where a list of objects was expected"),
    ("/info", [], "GET /info answered a list where an object was expected"),
])
def test_a_live_answer_of_the_wrong_shape_is_one_line(fake, path, body, says):
    """The Engine API's answers are checked where they enter, live as from a snapshot."""
    FakeSwarm(fake, every_node_agrees)
    fake.routes[path] = body
    proc = coordinator(fake)
    assert proc.returncode == 2 and proc.stderr == f"ssd: error: Engine API {says}: not checked\n", proc.stderr
