"""Tier 1: swarm's tasks and VIPs against NetworkDB, on a real 28.5.2 manager's snapshot.

The fixture is tests/fixtures/snapshot-28.5-node1.json (`ssd ov2 --snapshot -` on the lab's
manager, seeded, with a standalone container on node3): /tasks with their attachments and
times, /nodes, /services and the sample's clock. Each fault edits one side (swarm's, or the
node's NetworkDB view) the way the failure it stands for leaves it. Duplicate IPs and foreign
VIPs cannot be made on demand on a real engine: they are proven here only.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

import ssd.base
import ssd.model
import ssd.report
import ssd.run
import ssd.snapshot
import ssd.views
from recorded import replay as run, check_ids as checks, fixture, OV2_ID

FIXTURE = Path(__file__).parent / "fixtures" / "snapshot-28.5-node1.json"



def api(doc: dict) -> dict:
    return doc["samples"][0]["api"]


def ov2_services(doc: dict) -> dict:
    return api(doc)[f"GET /networks/{OV2_ID}"]["Services"]


def swarm_task(doc: dict, task_id: str) -> dict:
    return next(t for t in api(doc)["GET /tasks"] if t["ID"] == task_id)


def listed(doc: dict, service: str = "s1", on: str = "10.99.0.1") -> dict:
    """A task of service NetworkDB lists on ov2, hosted on node `on` (default: node1, this node)."""
    return next(t for t in ov2_services(doc)[service]["Tasks"] if t["Info"]["Host IP"] == on)


def task_id(entry: dict) -> str:
    return entry["Name"].rsplit(".", 1)[-1]


def node_id(doc: dict, hostname: str) -> str:
    return next(n["ID"] for n in api(doc)["GET /nodes"] if n["Description"]["Hostname"] == hostname)


def clock(doc: dict) -> float:
    return doc["samples"][0]["lookups"]["clock"]


def stamp(epoch: float) -> str:
    import datetime
    return datetime.datetime.fromtimestamp(epoch, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def test_recorded_manager_is_silent_and_has_what_the_checks_read():
    doc = fixture("28.5-node1")
    result = run(doc)
    assert result.findings == [] and result.not_checked == []
    state = ssd.views.build_swarm_tasks(api(doc)["GET /tasks"])
    running = [t for t in state.values() if t.state == "running" and OV2_ID in t.addresses]
    assert len(running) == 12 and all(t.since and clock(doc) - t.since > ssd.model.MIN_STATE_AGE for t in running)


def test_task_swarm_runs_but_networkdb_lacks_is_found():
    doc = fixture("28.5-node1")
    entry = listed(doc, on="10.99.0.2")
    ov2_services(doc)["s1"]["Tasks"].remove(entry)
    result = run(doc)
    missing = [f for f in result.findings if f.check == "swarm-task-missing"]
    assert len(missing) == 1 and missing[0].subject == entry["EndpointIP"]
    assert task_id(entry)[:12] in missing[0].message and "node2 (ready)" in missing[0].message
    assert missing[0].service == "s1" and missing[0].layer == "networkdb"


def test_task_within_the_convergence_window_is_not_judged():
    doc = fixture("28.5-node1")
    entry = listed(doc, on="10.99.0.2")
    ov2_services(doc)["s1"]["Tasks"].remove(entry)
    swarm_task(doc, task_id(entry))["Status"]["Timestamp"] = stamp(clock(doc) - 5)
    assert "swarm-task-missing" not in checks(run(doc))


def test_task_ip_differs_between_swarm_and_networkdb():
    doc = fixture("28.5-node1")
    entry = listed(doc)
    attachment = swarm_task(doc, task_id(entry))["NetworksAttachments"][0]
    attachment["Addresses"] = ["10.0.1.240/24"]
    (finding,) = run(doc).findings
    assert finding.check == "task-ip-mismatch" and finding.expected == "10.0.1.240"
    assert finding.actual == entry["EndpointIP"].split("/")[0]


@pytest.mark.parametrize("how", ["stopped", "node-down"])
def test_zombie_that_swarm_stopped_or_whose_node_is_down(how):
    doc = fixture("28.5-node1")
    entry = listed(doc, on="10.99.0.3")
    task = swarm_task(doc, task_id(entry))
    if how == "stopped":
        task["DesiredState"], task["Status"]["State"] = "shutdown", "shutdown"
        task["Status"]["Timestamp"] = stamp(clock(doc) - 600)
        words = "swarm says it is shutdown"
    else:
        node = next(n for n in api(doc)["GET /nodes"] if n["ID"] == task["NodeID"])
        node["Status"]["State"], node["UpdatedAt"] = "down", stamp(clock(doc) - 600)
        words = "its node node3 is down"
    result = run(doc)
    zombies = [f for f in result.findings if f.check == "networkdb-task-zombie"]
    assert entry["Name"] in " ".join(f.message for f in zombies) and words in zombies[0].message
    assert "swarm-task-missing" not in checks(result)  # a down node's tasks are not expected


def test_task_just_stopped_or_just_moved_is_within_the_window():
    """Only a settled task is judged, whichever way it differs: its age is read last, for the
    few tasks that differ, and must still hold them back."""
    doc = fixture("28.5-node1")
    stopped = swarm_task(doc, task_id(listed(doc, on="10.99.0.3")))
    stopped["DesiredState"], stopped["Status"]["State"] = "shutdown", "shutdown"
    stopped["Status"]["Timestamp"] = stamp(clock(doc) - 5)
    moved = swarm_task(doc, task_id(listed(doc, on="10.99.0.2")))
    moved["NetworksAttachments"][0]["Addresses"] = ["10.0.1.240/24"]
    moved["Status"]["Timestamp"] = stamp(clock(doc) - 5)
    assert run(doc).findings == []
    stopped["Status"]["Timestamp"] = moved["Status"]["Timestamp"] = stamp(clock(doc) - 600)
    assert {"networkdb-task-zombie", "task-ip-mismatch"} <= set(checks(run(doc)))


def test_node_just_down_is_within_the_window():
    doc = fixture("28.5-node1")
    node = next(n for n in api(doc)["GET /nodes"] if n["Description"]["Hostname"] == "node3")
    node["Status"]["State"], node["UpdatedAt"] = "down", stamp(clock(doc) - 10)
    assert run(doc).findings == []


def test_tasks_swarm_does_not_know_are_a_note():
    """A removed service's tasks leave NetworkDB within seconds; 20.10 leaves a removed job's
    running tasks behind. With no time to judge them by, they are a note, not a finding."""
    doc = fixture("28.5-node1")
    gone = {t["ID"] for t in api(doc)["GET /tasks"] if t["ServiceID"] == next(
        s["ID"] for s in api(doc)["GET /services"] if s["Spec"]["Name"] == "s3")}
    api(doc)["GET /tasks"] = [t for t in api(doc)["GET /tasks"] if t["ID"] not in gone]
    result = run(doc)
    assert result.findings == []
    assert any("NetworkDB lists 3 tasks swarm does not know" in n for n in result.notes)


def test_duplicate_ip_between_two_tasks():
    doc = fixture("28.5-node1")
    a, b = listed(doc, "s1", on="10.99.0.3"), listed(doc, "s2", on="10.99.0.3")
    b["EndpointIP"] = a["EndpointIP"]
    result = run(doc)
    assert "duplicate-ip" in {f.check for f in result.findings}
    dup = [f for f in result.findings if f.check == "duplicate-ip"]
    assert len(dup) == 1 and dup[0].subject == a["EndpointIP"]
    assert a["Name"] in dup[0].message and b["Name"] in dup[0].message


def test_duplicate_ip_between_a_task_and_this_nodes_load_balancer():
    doc = fixture("28.5-node1")
    lb_ip = api(doc)[f"GET /networks/{OV2_ID}"]["Containers"]["lb-ov2"]["IPv4Address"].split("/")[0]
    entry = listed(doc, "s2", on="10.99.0.3")
    entry["EndpointIP"] = lb_ip
    dup = [f for f in run(doc).findings if f.check == "duplicate-ip"]
    assert len(dup) == 1 and "this node's load balancer lb-ov2" in dup[0].message


@pytest.mark.parametrize("vips", [["10.0.1.99/24"], ["10.0.1.2/24", "10.0.1.98/24"]])
def test_vip_differs_between_swarm_and_networkdb(vips):
    doc = fixture("28.5-node1")
    s1 = next(s for s in api(doc)["GET /services"] if s["Spec"]["Name"] == "s1")
    s1["Endpoint"]["VirtualIPs"] = [{"Addr": v, "NetworkID": OV2_ID} for v in vips]
    (finding,) = run(doc).findings
    assert finding.check == "vip-mismatch" and finding.service == "s1" and finding.subject == "10.0.1.2"
    assert finding.expected == [v.split("/")[0] for v in vips]


def test_a_worker_says_it_cannot_compare_swarm():
    doc = json.loads((FIXTURE.parent / "snapshot-28.5-node2.json").read_text())
    result = run(doc)
    assert result.findings == [] and any("run ssd on a manager" in n for n in result.notes)


def test_snapshot_without_a_clock_judges_no_task_age():
    doc = fixture("28.5-node1")
    del doc["samples"][0]["lookups"]["clock"]
    ov2_services(doc)["s1"]["Tasks"].remove(listed(doc, on="10.99.0.2"))
    assert "swarm-task-missing" not in checks(run(doc))


def test_timestamps_parse_as_the_engine_writes_them():
    assert ssd.model.parse_timestamp("2026-11-29T22:52:39.338203138Z") == pytest.approx(1795992759.338203, abs=1e-5)
    assert ssd.model.parse_timestamp("2026-11-29T23:52:39+01:00") == ssd.model.parse_timestamp("2026-11-29T22:52:39Z")
    assert ssd.model.parse_timestamp("0001-01-01T00:00:00Z") is None and ssd.model.parse_timestamp("soon") is None


def test_text_report_names_the_layers_that_disagree():
    doc = fixture("28.5-node1")
    ov2_services(doc)["s1"]["Tasks"].remove(listed(doc, on="10.99.0.2"))
    text = ssd.report.render_text(run(doc), ssd.report.Painter(False), quiet=False, verbose=False)
    assert "swarm-task-missing: network ov2: swarm runs task" in text
    assert "    layer: NetworkDB on this node, against swarm (or itself)\n" in text


def test_json_and_service_status_keep_the_layers_apart():
    doc = fixture("28.5-node1")
    entry = listed(doc)
    swarm_task(doc, task_id(entry))["NetworksAttachments"][0]["Addresses"] = ["10.0.1.240/24"]
    report = ssd.report.to_json(run(doc))
    assert [f["check"] for f in report["findings"]] == ["task-ip-mismatch"]
    ov2 = next(n for n in report["networks"] if n["name"] == "ov2")
    assert ov2["swarm"] == {"status": "fail", "tasks": 12, "vips": 4}
    assert next(s for s in ov2["services"] if s["name"] == "s1")["status"] == "ok"  # its load balancer
    worker = json.loads((FIXTURE.parent / "snapshot-28.5-node2.json").read_text())
    assert all(n["swarm"] is None for n in ssd.report.to_json(run(worker))["networks"])


# A node whose dockerd stops leaves NetworkDB's gossip at once (its tasks and its peer entry go),
# while swarm calls it ready until 3 heartbeats are missed (~16 s): for that moment a manager
# sees swarm run tasks that NetworkDB has dropped. The lab's dockerd-stop fleet test met it.

def node3_out_of_gossip(doc: dict, sample: int = 0) -> None:
    """node3 as NetworkDB on node1 sees it once node3's dockerd has stopped: no task, no peer."""
    for key, net in doc["samples"][sample]["api"].items():
        if key.startswith("GET /networks/") and isinstance(net, dict) and net.get("Peers"):
            net["Peers"] = [p for p in net["Peers"] if p["IP"] != "10.99.0.3"]
            for svc in (net.get("Services") or {}).values():
                svc["Tasks"] = [t for t in svc["Tasks"] if t["Info"].get("Host IP") != "10.99.0.3"]


def with_second_sample(doc: dict, node3_state: str) -> dict:
    import copy
    doc["samples"].append(copy.deepcopy(doc["samples"][0]))
    node = next(n for n in doc["samples"][1]["api"]["GET /nodes"] if n["Description"]["Hostname"] == "node3")
    node["Status"]["State"], node["UpdatedAt"] = node3_state, stamp(clock(doc) - 2)
    return doc


def waited(doc: dict, monkeypatch) -> tuple[ssd.model.RunResult, list[float]]:
    """The node check, live as far as its wait goes (recorded samples, the sleep only noted)."""
    sleeps: list[float] = []
    monkeypatch.setattr(ssd.run.time, "sleep", sleeps.append)
    _, result = ssd.run.settled_check(ssd.snapshot.SnapshotCollector(doc, "fixture"), [], ssd.base.DEFAULT_SETTLE, live=True)
    return result, sleeps


def test_tasks_of_a_ready_node_out_of_the_gossip_say_so():
    doc = fixture("28.5-node1")
    node3_out_of_gossip(doc)
    result = run(doc)
    missing = [f for f in result.findings if f.check == "swarm-task-missing"]
    assert missing and all("node3 (ready)" in f.message for f in missing)
    assert all("nor does it list node3 (10.99.0.3) among the network's peers" in f.message for f in missing)
    assert all("docker node ls" in f.hint for f in missing) and result.leavers == ["node3"]


def test_a_task_missing_from_a_node_still_in_the_gossip_is_plain():
    doc = fixture("28.5-node1")
    entry = listed(doc, on="10.99.0.3")
    ov2_services(doc)["s1"]["Tasks"].remove(entry)
    result = run(doc)
    (missing,) = [f for f in result.findings if f.check == "swarm-task-missing"]
    assert "peers" not in missing.message and result.leavers == []


def test_second_sample_waits_past_the_heartbeat_and_drops_a_stopped_node(monkeypatch):
    doc = with_second_sample(fixture("28.5-node1"), "down")
    node3_out_of_gossip(doc, 0)
    node3_out_of_gossip(doc, 1)
    result, sleeps = waited(doc, monkeypatch)
    # (the recorded kernel still balances to node3's tasks: only swarm against NetworkDB is read)
    assert sleeps == [3 * (5 + 0.5) + 1] and "swarm-task-missing" not in checks(result)
    assert any(n.startswith("node3: out of this node's gossip") for n in result.notes), result.notes


def test_a_cut_gossip_outlasts_the_wait_and_is_reported(monkeypatch):
    doc = with_second_sample(fixture("28.5-node1"), "ready")
    node3_out_of_gossip(doc, 0)
    node3_out_of_gossip(doc, 1)
    api(doc)["GET /info"]["Swarm"]["Cluster"]["Spec"] = {"Dispatcher": {"HeartbeatPeriod": 10_000_000_000}}
    result, sleeps = waited(doc, monkeypatch)
    assert sleeps == [3 * (10 + 0.5) + 1]
    missing = [f for f in result.findings if f.check == "swarm-task-missing"]
    assert missing and all("gossip with this one is cut" in f.message for f in missing)
    assert not any("out of this node's gossip" in n for n in result.notes)


def test_findings_of_nodes_in_the_gossip_wait_only_the_settle_time(monkeypatch):
    doc = with_second_sample(fixture("28.5-node1"), "ready")
    for sample in doc["samples"]:
        sample["api"][f"GET /networks/{OV2_ID}"]["Services"]["s1"]["Tasks"].pop()
    result, sleeps = waited(doc, monkeypatch)
    assert sleeps == [ssd.base.DEFAULT_SETTLE] and "swarm-task-missing" in checks(result)
