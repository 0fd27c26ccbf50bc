"""Tier 1: real deployments (issue 22) on the real 28.5.2 recordings of a manager and a worker.

Each test edits the recording the way a real deployment pattern leaves a node: a compose
`hostname:` or a stack's alias answering beside a VIP, two services sharing an alias, a task
failing its health check (disabled while swarm still says running). Each says what must stay
silent, and the edit beside it that must still be found.
"""
from __future__ import annotations

import copy
import datetime
import json
import subprocess
import sys
from pathlib import Path

import pytest

import ssd.collect
import ssd.converging
import ssd.kernel.iptables
import ssd.layers.overlay
import ssd.model
import ssd.report
import ssd.run
import ssd.snapshot
import ssd.views
from recorded import check_ids, replay, fixture

FIXTURES = Path(__file__).parent / "fixtures"



def api(doc: dict, key: str):
    return doc["samples"][0]["api"][key]


def ov2(doc: dict) -> dict:
    return next(v for k, v in doc["samples"][0]["api"].items()
                if k.startswith("GET /networks/") and v.get("Name") == "ov2")


def task_ips(doc: dict, service: str) -> list[str]:
    return sorted(t["EndpointIP"] for t in ov2(doc)["Services"][service]["Tasks"])


def vip(doc: dict, service: str) -> str:
    return ov2(doc)["Services"][service]["VIP"].split("/")[0]


def set_answer(doc: dict, name: str, ips: list[str]) -> None:
    for sample in doc["samples"]:
        for key, probe in sample["lookups"].items():
            if key.startswith("dns "):
                probe["answers"][name] = {"rcode": "NOERROR", "ips": sorted(ips)}


def service_spec(doc: dict, name: str) -> dict:
    return next(s for s in api(doc, "GET /services") if s["Spec"]["Name"] == name)["Spec"]


def add_alias(doc: dict, service: str, alias: str) -> None:
    for net in service_spec(doc, service)["TaskTemplate"]["Networks"]:
        if net["Target"] == ov2(doc)["Id"]:
            net.setdefault("Aliases", []).append(alias)


# --- a name answers the union of what is registered under it ---------------------------------

@pytest.mark.parametrize("node", ["node1", "node2"])
def test_a_service_name_that_is_also_a_task_hostname_answers_vip_and_task_ips(node):
    """compose `hostname: s1` on service s1: s1 answers its VIP and every task's address."""
    doc = fixture(f"28.5-dns-{node}")
    set_answer(doc, "s1", [vip(doc, "s1"), *task_ips(doc, "s1")])
    assert replay(doc).findings == []


def test_a_hostname_answers_another_services_task_too():
    """A task's hostname may equal another service's name: its address is held on the network."""
    doc = fixture("28.5-dns-node1")
    set_answer(doc, "s2", [vip(doc, "s2"), task_ips(doc, "s3")[0]])
    assert replay(doc).findings == []


def test_an_address_nothing_on_the_network_holds_is_still_stale():
    doc = fixture("28.5-dns-node1")
    set_answer(doc, "s2", [vip(doc, "s2"), "10.0.1.250"])
    result = replay(doc)
    assert check_ids(result) == ["dns-answer-stale"]
    assert result.findings[0].subject == "s2 10.0.1.250"
    assert "nothing NetworkDB on this node lists on the network holds" in result.findings[0].message


def test_an_alias_shared_by_two_services_answers_both_vips():
    """Two services with one alias: the resolver answers both VIPs; both are expected."""
    doc = fixture("28.5-dns-node1")
    add_alias(doc, "s1", "shared")
    add_alias(doc, "s2", "shared")
    set_answer(doc, "shared", [vip(doc, "s1"), vip(doc, "s2")])
    set_answer(doc, "tasks.shared", [*task_ips(doc, "s1"), *task_ips(doc, "s2")])
    assert replay(doc).findings == []
    set_answer(doc, "shared", [vip(doc, "s1")])  # one of them lost: incomplete, naming both services
    result = replay(doc)
    assert check_ids(result) == ["dns-answer-incomplete"]
    finding = result.findings[0]
    assert finding.subject == f"shared {vip(doc, 's2')}" and finding.service is None
    assert "services s1, s2" in finding.message


def test_a_stack_short_name_alias_is_expected_on_the_manager():
    """docker stack deploy adds each service's short name as an alias on its networks."""
    doc = fixture("28.5-dns-node1")
    add_alias(doc, "s3", "short")
    set_answer(doc, "short", [vip(doc, "s3")])
    set_answer(doc, "tasks.short", task_ips(doc, "s3"))
    assert replay(doc).findings == []


# --- a task failing its health check -----------------------------------------------------

NODE1 = "flk6d7zmjwfttz6k1pr9h66wq"  # the manager's node ID in the recording


def running_task(doc: dict, service: str, on_node: str | None = None) -> tuple[dict, str]:
    """A running task of service (on the node given) and its address on ov2."""
    sid = next(s["ID"] for s in api(doc, "GET /services") if s["Spec"]["Name"] == service)
    listed = {t["Name"].rsplit(".", 1)[-1]: t["EndpointIP"] for t in ov2(doc)["Services"][service]["Tasks"]}
    task = next(t for t in api(doc, "GET /tasks") if t["ServiceID"] == sid and t["ID"] in listed
                and t["Status"]["State"] == "running" and (on_node is None or t["NodeID"] == on_node))
    return task, listed[task["ID"]]


def disable(doc: dict, ip: str) -> None:
    """The executor disabled the task's binding: weight 0 in every load balancer of ov2."""
    for sample in doc["samples"]:
        for key, raw in sample["namespaces"].items():
            if "/lb_" in key:
                for svc in raw["ipvs"]:
                    for dest in svc["dests"]:
                        if dest["address"] == ip:
                            dest["weight"] = 0


def declare_health_check(doc: dict, service: str, grace_ns: int | None = None) -> None:
    spec = service_spec(doc, service)["TaskTemplate"].setdefault("ContainerSpec", {})
    spec["Healthcheck"] = {"Test": ["CMD-SHELL", "test -e /tmp/ok"], "Interval": 2_000_000_000}
    if grace_ns is not None:
        spec["StopGracePeriod"] = grace_ns


def test_a_disabled_task_of_a_service_without_health_check_is_still_found():
    doc = fixture("28.5-dns-node1")
    _, ip = running_task(doc, "s1", on_node="o0wngrps05lifxc8ilpjj6psz")
    disable(doc, ip)
    result = replay(doc)
    assert check_ids(result) == ["ipvs-backend-weight"]
    assert "weight 0 though swarm wants it running" in result.findings[0].message


def test_a_remote_task_failing_its_health_check_is_a_note_not_a_finding():
    doc = fixture("28.5-dns-node1")
    _, ip = running_task(doc, "s1", on_node="o0wngrps05lifxc8ilpjj6psz")
    disable(doc, ip)
    declare_health_check(doc, "s1", grace_ns=30_000_000_000)
    result = replay(doc)
    assert result.findings == []
    [note] = [n for n in result.notes if "weight 0" in n]
    assert ip in note and "health check" in note and "30 s" in note and "docker service ps s1" in note


def local_container(doc: dict, task: dict, health: str | None) -> None:
    cid = "c0ffee" + task["ID"]
    task["Status"]["ContainerStatus"] = {"ContainerID": cid}
    state = {"Health": {"Status": health}} if health else {}
    doc["samples"][0]["api"][f"GET /containers/{cid}"] = {"Id": cid, "Name": "/x", "State": state}


@pytest.mark.parametrize("health, found", [("unhealthy", False), ("healthy", True), (None, True)])
def test_a_local_task_at_weight_zero_is_judged_by_its_containers_health(health, found):
    """On the task's own node the container's health decides, health check declared or not."""
    doc = fixture("28.5-dns-node1")
    task, ip = running_task(doc, "s1", on_node=NODE1)
    disable(doc, ip)
    declare_health_check(doc, "s1")
    local_container(doc, task, health)
    result = replay(doc)
    assert check_ids(result) == (["ipvs-backend-weight"] if found else [])
    if found:
        assert f"its container on this node is {health or 'without a health check'}" in \
            result.findings[0].message
    else:
        assert any("its container on this node is unhealthy" in n for n in result.notes)


def test_a_dnsrr_task_failing_its_health_check_may_lack_its_record_on_a_manager():
    """A dnsrr service has no load balancer to show the task disabled; its records go first."""
    doc = fixture("28.5-dns-node1")
    ips = task_ips(doc, "rr")
    set_answer(doc, "rr", ips[1:])
    set_answer(doc, "tasks.rr", ips[1:])
    assert check_ids(replay(doc)) == ["dns-answer-incomplete", "dns-answer-incomplete"]
    declare_health_check(doc, "rr")
    assert replay(doc).findings == []


def test_health_checks_are_read_from_the_service_spec():
    services = [
        {"Spec": {"Name": "a", "TaskTemplate": {"ContainerSpec": {"Healthcheck": {"Test": ["CMD", "true"]},
                                                                  "StopGracePeriod": 5_000_000_000}}}},
        {"Spec": {"Name": "b", "TaskTemplate": {"ContainerSpec": {"Healthcheck": {"Test": ["NONE"]}}}}},
        {"Spec": {"Name": "c", "TaskTemplate": {"ContainerSpec": {}}}},
        {"Spec": {"Name": "d", "TaskTemplate": {"ContainerSpec": {"Healthcheck": {"Test": ["CMD-SHELL", "x"]}}}}},
    ]
    assert ssd.views.build_health_checked(services) == {"a": 5.0, "d": ssd.views.DEFAULT_STOP_GRACE}
    assert ssd.views.build_health_checked(None) is None


def test_the_snapshot_keeps_what_the_health_rule_reads():
    shapes = ssd.collect.API_SHAPES
    spec = shapes["services"][0]["Spec"]["TaskTemplate"]["ContainerSpec"]
    assert set(spec) == {"Healthcheck", "StopGracePeriod"} and spec["StopGracePeriod"] is True
    assert ssd.collect.project({"Healthcheck": {"Test": ["CMD", "probe", "--token", "t0k"], "Retries": 3}},
                               {"Healthcheck": spec["Healthcheck"]}) == {"Healthcheck": {"Test": ["CMD"]}}
    assert shapes["tasks"][0]["Status"]["ContainerStatus"] == {"ContainerID": True}
    assert shapes["container"]["State"] == {"Health": {"Status": True}}
    kept = ssd.collect.project({"State": {"Health": {"Status": "unhealthy", "Log": ["secret output"]}, "Pid": 1}},
                       {"State": shapes["container"]["State"]})
    assert kept == {"State": {"Health": {"Status": "unhealthy"}}}
    assert copy.deepcopy(kept) == kept


# --- an endpoint with no overlay peer record (moby#35671) -----------------------------------

def drop_peer_record(doc: dict, service: str, on_node_addr: str) -> str:
    """NetworkDB lists the task, but its node's peer record never came: no Host IP, and so no
    neighbour or FDB row for it in any other node's overlay namespace."""
    task = next(t for t in ov2(doc)["Services"][service]["Tasks"] if t["Info"]["Host IP"] == on_node_addr)
    task["Info"] = {}
    ip = task["EndpointIP"]
    mac = ssd.layers.overlay.mac_from_ip(ip)
    for sample in doc["samples"]:
        for key, raw in sample["namespaces"].items():
            if "-h425s5xecr" in key and raw.get("neighbours") is not None:
                raw["neighbours"] = [n for n in raw["neighbours"] if n["dst"] != ip]
                raw["fdb"] = [f for f in raw["fdb"] if f["mac"] != mac]
    return ip


@pytest.mark.parametrize("node", ["node1", "node2"])
def test_an_endpoint_without_peer_record_is_found(node):
    doc = fixture(f"28.5-dns-{node}")
    assert replay(doc).findings == []
    ip = drop_peer_record(doc, "s2", "10.99.0.3")
    result = replay(doc)
    assert check_ids(result) == ["networkdb-peer-missing"]
    finding = result.findings[0]
    assert (finding.subject, finding.service, finding.layer, finding.network) == (ip, "s2", "networkdb", "ov2")
    assert "no Host IP" in finding.message and "moby#35671" in finding.message


# --- an encrypted overlay's firewall rules ---------------------------------------------------

# What iptables-save printed on this machine after the engine's own commands (encryption.go)
# for VNI 4097: 23.0+ inserts one DROP with --pol none; 20.10 appends ACCEPT --pol ipsec + DROP.
U32 = '-m u32 --u32 "0x0>>0x16&0x3c@0xc&0xffffff00=0x100100"'
MARK = f"-A OUTPUT -p udp -m udp --dport 4789 {U32} -j MARK --set-xmark 0xd0c4e3/0xffffffff"
DROP_NEW = f"-A INPUT -p udp -m policy --dir in --pol none -m udp --dport 4789 {U32} -j DROP"
ACCEPT_OLD = f"-A INPUT -p udp -m policy --dir in --pol ipsec -m udp --dport 4789 {U32} -j ACCEPT"
DROP_OLD = f"-A INPUT -p udp -m udp --dport 4789 {U32} -j DROP"


def ruleset(mangle: list[str], filter_: list[str]) -> ssd.model.Ruleset:
    text = "\n".join(["*mangle", ":OUTPUT ACCEPT [0:0]", *mangle, "COMMIT", "*filter",
                      ":INPUT ACCEPT [0:0]", *filter_, "COMMIT"]) + "\n"
    return ssd.kernel.iptables.parse_iptables_save(text)


@pytest.mark.parametrize("inputs", [[DROP_NEW], [ACCEPT_OLD, DROP_OLD]], ids=["23.0+", "20.10"])
def test_encryption_rules_are_read_in_both_engine_forms(inputs):
    assert ssd.layers.overlay.encryption_rules(ruleset([MARK], inputs), 4097) == {
        "mangle OUTPUT MARK 0xd0c4e3": True, "filter INPUT DROP of cleartext VXLAN": True}
    assert not any(ssd.layers.overlay.encryption_rules(ruleset([MARK], inputs), 4098).values())  # another VNI


def test_an_accept_of_ipsec_traffic_is_no_drop_and_another_mark_no_mark():
    rules = ruleset([MARK.replace("0xd0c4e3", "0xd0c4e4")], [ACCEPT_OLD])
    assert ssd.layers.overlay.encryption_rules(rules, 4097) == {
        "mangle OUTPUT MARK 0xd0c4e3": False, "filter INPUT DROP of cleartext VXLAN": False}


# --- a deployment in progress pages no one -------------------------------------------------

def lose_backend(doc: dict, ip: str) -> None:
    for sample in doc["samples"]:
        for key, raw in sample["namespaces"].items():
            if "/lb_" in key:
                for svc in raw["ipvs"]:
                    svc["dests"] = [d for d in svc["dests"] if d["address"] != ip]


def service(doc: dict, name: str) -> dict:
    return next(s for s in api(doc, "GET /services") if s["Spec"]["Name"] == name)


def ssd_from(doc: dict, tmp_path, *args: str) -> tuple[int, str]:
    path = tmp_path / "doc.json"
    path.write_text(json.dumps(doc))
    proc = subprocess.run([sys.executable, str(Path(__file__).resolve().parents[1] / "ssd.py"), "--from", str(path), *args],
                          capture_output=True, text=True, check=False)
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc.returncode, proc.stdout


def test_a_finding_about_a_service_being_updated_is_converging(tmp_path):
    doc = fixture("28.5-dns-node1")
    _, ip = running_task(doc, "s1", on_node="o0wngrps05lifxc8ilpjj6psz")
    lose_backend(doc, ip)
    assert ssd.report.overall_status(replay(doc)) == "inconsistent"  # swarm is done: a fault
    service(doc, "s1")["UpdateStatus"] = {"State": "updating"}
    result = replay(doc)
    assert check_ids(result) == ["ipvs-backend-missing"]
    assert result.findings[0].converging == "swarm is updating service s1 (update updating)"
    assert ssd.report.overall_status(result) == "converging"
    code, out = ssd_from(doc, tmp_path)
    assert code == 3 and "converging: swarm is updating service s1" in out and "while swarm converges" in out
    code, out = ssd_from(doc, tmp_path, "--nagios")
    assert code == 1 and out.startswith("SSD WARNING - 1 inconsistency on node node1 while swarm converges")
    code, out = ssd_from(doc, tmp_path, "--json")
    assert code == 3 and json.loads(out)["status"] == "converging"
    assert json.loads(out)["findings"][0]["converging"].startswith("swarm is updating")


def test_a_completed_or_paused_update_is_not_converging():
    doc = fixture("28.5-dns-node1")
    _, ip = running_task(doc, "s1", on_node="o0wngrps05lifxc8ilpjj6psz")
    lose_backend(doc, ip)
    for state in ("completed", "paused", "rollback_completed"):
        service(doc, "s1")["UpdateStatus"] = {"State": state}
        assert ssd.report.overall_status(replay(doc)) == "inconsistent", state


def test_tasks_swarm_is_starting_make_the_service_converging():
    doc = fixture("28.5-dns-node1")
    _, ip = running_task(doc, "s1", on_node="o0wngrps05lifxc8ilpjj6psz")
    lose_backend(doc, ip)
    starting = copy.deepcopy(next(t for t in api(doc, "GET /tasks") if t["ServiceID"] == service(doc, "s1")["ID"]))
    starting.update(ID="newtask000000000000000000", DesiredState="running")
    starting["Status"] = {"State": "starting", "Timestamp": starting["Status"]["Timestamp"]}
    api(doc, "GET /tasks").append(starting)
    result = replay(doc)
    assert result.findings[0].converging == "swarm is still starting 1 task of service s1"
    assert ssd.report.overall_status(result) == "converging"


def test_one_settled_finding_beside_a_converging_one_is_inconsistent():
    doc = fixture("28.5-dns-node1")
    _, ip1 = running_task(doc, "s1", on_node="o0wngrps05lifxc8ilpjj6psz")
    _, ip2 = running_task(doc, "s2", on_node="o0wngrps05lifxc8ilpjj6psz")
    lose_backend(doc, ip1)
    lose_backend(doc, ip2)
    service(doc, "s1")["UpdateStatus"] = {"State": "updating"}
    result = replay(doc)
    assert [bool(f.converging) for f in sorted(result.findings, key=lambda f: f.service)] == [True, False]
    assert ssd.report.overall_status(result) == "inconsistent"


@pytest.mark.parametrize("age, converging", [(10, True), (600, False)])
def test_a_node_that_just_went_down_makes_its_tasks_converging(age, converging):
    doc = fixture("28.5-dns-node1")
    _, ip = running_task(doc, "s1", on_node="o0wngrps05lifxc8ilpjj6psz")
    lose_backend(doc, ip)
    clock = doc["samples"][0]["lookups"]["clock"]
    node = next(n for n in api(doc, "GET /nodes") if n["ID"] == "o0wngrps05lifxc8ilpjj6psz")
    node["Status"]["State"] = "down"
    node["UpdatedAt"] = datetime.datetime.fromtimestamp(clock - age, datetime.UTC).strftime(
        "%Y-%m-%dT%H:%M:%S.%fZ")
    result = replay(doc)
    assert bool(result.findings[0].converging) is converging
    if converging:
        assert "is down" in result.findings[0].converging


def test_a_worker_cannot_tell_and_says_inconsistent():
    doc = fixture("28.5-dns-node2")
    ip = task_ips(doc, "s1")[0]
    lose_backend(doc, ip)
    result = replay(doc)
    assert check_ids(result) == ["ipvs-backend-missing"] and result.findings[0].converging is None


def two_samples(doc: dict) -> dict:
    """The snapshot with a second sample, as a live run takes one when the first found something."""
    doc["samples"].append(copy.deepcopy(doc["samples"][0]))
    doc["settle"] = 2.0
    return doc


def lose_in(sample: dict, ip: str) -> None:
    for key, raw in sample["namespaces"].items():
        if "/lb_" in key:
            for svc in raw["ipvs"]:
                svc["dests"] = [d for d in svc["dests"] if d["address"] != ip]


def settled(doc: dict) -> ssd.model.RunResult:
    _, result = ssd.run.settled_check(ssd.snapshot.SnapshotCollector(doc, "fixture"), [], doc["settle"], live=False)
    return result


def test_a_worker_whose_load_balancer_catches_up_between_samples_says_converging(tmp_path):
    """The soak's most frequent page: during an update a worker's IPVS lags NetworkDB. Between
    its two samples the engine added one of two missing backends: still at work, not a fault."""
    doc = two_samples(fixture("28.5-dns-node2"))
    first, second = task_ips(doc, "s1")[:2]
    lose_in(doc["samples"][0], first)
    lose_in(doc["samples"][0], second)
    lose_in(doc["samples"][1], first)
    result = settled(doc)
    assert check_ids(result) == ["ipvs-backend-missing"] and result.findings[0].subject == first
    assert "load balancers for service s1 changed between its two samples" in result.findings[0].converging
    assert ssd.report.overall_status(result) == "converging"
    code, out = ssd_from(doc, tmp_path, "--nagios")
    assert code == 1 and out.startswith("SSD WARNING"), out


def test_a_worker_whose_networkdb_moves_between_samples_says_converging():
    doc = two_samples(fixture("28.5-dns-node2"))
    missing = task_ips(doc, "s1")[0]
    for sample in doc["samples"]:
        lose_in(sample, missing)
    tasks = ov2({"samples": doc["samples"][1:]})["Services"]["s1"]["Tasks"]
    tasks.append({**tasks[-1], "Name": "s1.9.newtask0000000000000000", "EndpointID": "f" * 64,
                  "EndpointIP": "10.0.1.250"})
    result = settled(doc)  # the new task is missing in the second sample only: not reported
    assert check_ids(result) == ["ipvs-backend-missing"] and result.findings[0].subject == missing
    assert "NetworkDB entries or load balancers for service s1" in result.findings[0].converging


def test_the_second_sample_reads_again_the_load_balancer_that_excuses_a_dns_finding():
    """Soak, 2026-12-02 (28.5.2, node3): a task being stopped lost its tasks.<name> record; the
    first sample had read the load balancer before the engine set its weight to 0, and the
    second, reading again only the container the DNS finding named, judged the fresh answer
    against that old weight: a page, twice. Its network's load balancer is read again too."""
    doc = fixture("28.5-dns-node2")
    drop = task_ips(doc, "s2")[0]
    set_answer(doc, "tasks.s2", [ip for ip in task_ips(doc, "s2") if ip != drop])
    result = replay(doc)
    [finding] = result.findings
    assert finding.check == "dns-answer-incomplete"
    lb = next(k for k in doc["samples"][0]["namespaces"] if "/lb_" in k).rsplit("/", 1)[-1]
    assert ssd.run.reread_for(result) == {finding.namespace, lb}


def test_an_address_that_changes_hands_between_samples_is_motion():
    finding = ssd.model.Finding("overlay-neighbor-stale", "", network="ov2", subject="10.0.1.9")
    still = ssd.converging.Motion()
    joined = ssd.converging.Motion(owners={("ov2", "10.0.1.9"): "s1"})
    assert ssd.converging.moved(finding, still, still) is None
    assert ssd.converging.moved(finding, still, joined).startswith("task address 10.0.1.9 joined service s1")
    assert "left service s1" in ssd.converging.moved(finding, joined, still)


def test_a_consistent_sample_keeps_no_motion():
    """Kept only for what findings concern: a consistent run of a big swarm holds nothing more."""
    doc = fixture("28.5-dns-node2")
    assert replay(doc).motion == ssd.converging.Motion()
    lose_backend(doc, task_ips(doc, "s1")[0])
    assert {key[1] for key in replay(doc).motion.services} == {"s1"}


def test_a_backend_missing_in_both_samples_of_a_still_node_is_inconsistent(tmp_path):
    doc = two_samples(fixture("28.5-dns-node2"))
    missing = task_ips(doc, "s1")[0]
    for sample in doc["samples"]:
        lose_in(sample, missing)
    lose_in(doc["samples"][1], task_ips(doc, "s2")[0])  # another service moving says nothing of s1
    result = settled(doc)
    assert check_ids(result) == ["ipvs-backend-missing"] and result.findings[0].converging is None
    assert ssd.report.overall_status(result) == "inconsistent"
    code, out = ssd_from(doc, tmp_path, "--nagios")
    assert code == 2 and out.startswith("SSD CRITICAL"), out


# --- the report never claims what it did not compare ----------------------------------------

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def run_cli(*args: str) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, str(Path(__file__).resolve().parents[1] / "ssd.py"), *args], capture_output=True, text=True,
                          check=False)
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def test_a_network_name_a_worker_does_not_have_is_not_consistent():
    proc = run_cli("--from", str(EXAMPLES / "healthy-node2.json"), "ov22")
    assert proc.returncode == 2, proc.stdout
    [line] = proc.stderr.strip().splitlines()
    assert "network ov22" in line and "not on this node" in line and "check the name" in line
    nagios = run_cli("--from", str(EXAMPLES / "healthy-node2.json"), "ov22", "--nagios")
    assert not nagios.stdout.startswith("SSD OK") and nagios.returncode != 0, nagios.stdout
    # a name the worker has, beside it: that one is compared, the other said in a note
    mixed = run_cli("--from", str(EXAMPLES / "healthy-node2.json"), "ov2", "ov22")
    assert mixed.returncode == 0 and "'ov22' is not instantiated on this node" in mixed.stdout


def test_tasks_recorded_without_attachments_are_not_claimed_compared():
    proc = run_cli("--from", str(EXAMPLES / "healthy-node1.json"), "--no-color")
    assert proc.returncode == 0
    assert "running tasks" not in proc.stdout, proc.stdout
    assert "tasks carry no network attachments: swarm's tasks were not compared" in " ".join(proc.stdout.split())


def test_one_node_twice_is_not_a_comparison():
    one = str(EXAMPLES / "healthy-node1.json")
    proc = run_cli("ov2", "gossip-consistency", "--from", one, "--from", one)
    assert proc.returncode == 2
    [line] = proc.stderr.strip().splitlines()
    assert "same node" in line and "node1" in line


def test_snapshots_of_two_swarms_are_not_a_divergence():
    proc = run_cli("ov2", "gossip-consistency", "--from", str(EXAMPLES / "healthy-node1.json"),
                   "--from", str(FIXTURES / "snapshot-28.5-node2.json"))
    assert proc.returncode == 2, proc.stdout
    [line] = proc.stderr.strip().splitlines()
    assert "different swarms" in line


def test_prometheus_says_converging(tmp_path):
    from prometheus_client.parser import text_string_to_metric_families
    doc = fixture("28.5-dns-node1")
    _, ip = running_task(doc, "s1", on_node="o0wngrps05lifxc8ilpjj6psz")
    lose_backend(doc, ip)
    service(doc, "s1")["UpdateStatus"] = {"State": "rollback_started"}
    prom = tmp_path / "ssd.prom"
    code, _ = ssd_from(doc, tmp_path, "--prometheus", str(prom))
    assert code == 3
    status = {s.labels["ssd_status"]: s.value for f in text_string_to_metric_families(prom.read_text())
              if f.name == "ssd_status" for s in f.samples}
    assert status == {"consistent": 0, "inconsistent": 0, "incomplete": 0, "converging": 1}


# --- a stack removed and deployed again: two services under one name ------------------------

OLD_SID = "0ldserv1ce0000000000000000"
OLD_VIP, OLD_MARK = "10.0.1.30", 0x10A
OLD_TASKS = [("0ldtaska000000000000000001", "10.0.1.60", "10.99.0.2"),
             ("0ldtaskb000000000000000002", "10.0.1.61", "10.99.0.3")]


def lb_namespaces(doc: dict) -> list[dict]:
    return [raw for sample in doc["samples"] for key, raw in sample["namespaces"].items() if "/lb_" in key]


def redeployed(service: str = "s3", weight: int = 0, shown_old: bool = False) -> dict:
    """node1 (manager) while an earlier service named `service` stops after `docker stack rm`
    and a new deploy: its two tasks (on node2 and node3) still listed under the name in NetworkDB
    and stopping in swarm (desired state remove), with their own IPVS service (at `weight`), MARK
    rule and VIP alias in ov2's load balancer, and their peers on the VXLAN device; DNS answers
    only the new service. shown_old: inspect happened to show the earlier VIP and mark."""
    doc = fixture("28.5-dns-node1")
    net = ov2(doc)
    group = net["Services"][service]
    nodes = {n["Status"]["Addr"]: n["ID"] for n in api(doc, "GET /nodes")}
    for i, (task_id, ip, host) in enumerate(OLD_TASKS):
        group["Tasks"].append({"EndpointID": f"{i}e" * 32, "EndpointIP": ip, "Info": {"Host IP": host},
                               "Name": f"{service}.{i + 1}.{task_id}"})
        api(doc, "GET /tasks").append({
            "ID": task_id, "ServiceID": OLD_SID, "DesiredState": "remove", "NodeID": nodes[host],
            "Status": {"State": "running", "Timestamp": "2026-11-30T02:07:30Z"},
            "NetworksAttachments": [{"Addresses": [f"{ip}/24"], "Network": {"ID": net["Id"]}}]})
    if shown_old:
        group["VIP"], group["LocalLBIndex"] = OLD_VIP, OLD_MARK
    for raw in lb_namespaces(doc):
        raw["ipvs"].append({"address": None, "family": 2, "flags": 2, "fwmark": OLD_MARK, "port": 0,
                            "protocol": 0, "scheduler": "rr", "timeout": 0,
                            "dests": [{"address": ip, "forwarding": "Masq", "port": 0, "weight": weight}
                                      for _, ip, _ in OLD_TASKS]})
        raw["iptables"]["nf_tables"] = raw["iptables"]["nf_tables"].replace(
            "COMMIT", f"-A INPUT -d {OLD_VIP}/32 -j MARK --set-xmark {OLD_MARK:#x}/0xffffffff\nCOMMIT", 1)
        raw["addresses"]["eth0"].append([OLD_VIP, 32])
    for sample in doc["samples"]:
        overlay = next(v for k, v in sample["namespaces"].items() if k.endswith("/1-h425s5xecr"))
        for _, ip, host in OLD_TASKS:
            mac = ssd.layers.overlay.mac_from_ip(ip)
            overlay["neighbours"].append({"dst": ip, "ifindex": 12, "mac": mac, "permanent": True,
                                          "self": False})
            overlay["fdb"].append({"dst": host, "ifindex": 12, "mac": mac, "permanent": True, "self": True})
    return doc


@pytest.mark.parametrize("shown_old", [False, True], ids=["new-vip-shown", "old-vip-shown"])
def test_a_stack_deployed_again_while_the_old_tasks_stop_is_consistent(shown_old):
    """The earlier service's load balancer, mark and alias are its own, not stale ones of the
    new service; whichever VIP inspect shows for the name."""
    result = replay(redeployed(shown_old=shown_old))
    assert result.findings == []
    [note] = [n for n in result.notes if "earlier service" in n]
    assert "10.0.1.60, 10.0.1.61" in note and OLD_SID[:12] in note and "under s3" in note


def test_the_current_service_is_still_judged_beside_an_earlier_one():
    doc = redeployed(shown_old=True)
    lose_backend(doc, task_ips(doc, "s3")[0])  # a task of the current service, not an earlier one
    result = replay(doc)
    assert check_ids(result) == ["ipvs-backend-missing"]
    assert result.findings[0].subject == task_ips(doc, "s3")[0]
    assert "FWM 258" in result.findings[0].message  # the current mark, read from its MARK rule


def test_an_earlier_services_backend_still_at_weight_one_is_found():
    result = replay(redeployed(weight=1))
    assert check_ids(result) == ["ipvs-backend-weight", "ipvs-backend-weight"]
    assert {f.subject for f in result.findings} == {ip for _, ip, _ in OLD_TASKS}
    assert all("swarm is stopping it" in f.message and f"FWM {OLD_MARK}" in f.message
               for f in result.findings)


def test_a_worker_cannot_tell_two_services_under_one_name_apart():
    """No /tasks on a worker: the same kernel state reads as the name's load balancer gone
    wrong (documented: run ssd on a manager while a stack is redeployed)."""
    doc = redeployed()
    for sample in doc["samples"]:
        for key in ("GET /tasks", "GET /services", "GET /nodes"):
            sample["api"].pop(key, None)
    doc["samples"][0]["api"]["GET /info"]["Swarm"]["ControlAvailable"] = False
    assert "ipvs-service-stale" in check_ids(replay(doc))


def test_a_service_removed_while_its_tasks_stop_is_consistent():
    """docker service rm (no new deploy): the name is no current service's; its tasks, stopping,
    keep their load balancer at weight 0 until they are gone."""
    doc = fixture("28.5-dns-node1")
    sid = service(doc, "s3")["ID"]
    api(doc, "GET /services").remove(service(doc, "s3"))
    for task in api(doc, "GET /tasks"):
        if task["ServiceID"] == sid:
            task["DesiredState"] = "remove"
    for ip in task_ips(doc, "s3"):
        disable(doc, ip)
    set_answer(doc, "s3", [])
    result = replay(doc)
    assert result.findings == []
    assert any("under s3" in n and "earlier service" in n for n in result.notes)


def test_a_drained_manager_says_what_it_cannot_read():
    doc = fixture("28.5-dns-node1")
    me = doc["samples"][0]["api"]["GET /info"]["Swarm"]["NodeID"]
    for node in api(doc, "GET /nodes"):
        if node["ID"] == me:
            node.setdefault("Spec", {})["Availability"] = "drain"
    [note] = [n for n in replay(doc).notes if "this manager is drained" in n]
    assert "ssd --all-nodes" in note
    assert not [n for n in replay(fixture("28.5-dns-node1")).notes if "this manager is" in n]


# --- the real stack: lab/stacks/shop.yml deployed on 28.5.2 (tests/lab/test_lab_stack.py) ------

def example(name: str) -> dict:
    return json.loads((EXAMPLES / f"{name}.json").read_text())


def replay_example(doc: dict) -> ssd.model.RunResult:
    """As `ssd --from` replays it: the networks the snapshot was taken for."""
    _, result = ssd.run.settled_check(ssd.snapshot.SnapshotCollector(doc, "example"), doc["networks"], 0, live=False)
    return result


def test_the_real_stack_with_api_drained_names_both_tasks_as_notes():
    """node1 while shop_api's tasks on node1 and node2 failed their health check: at weight 0 in
    its load balancers while swarm still ran them (httpd ignores SIGTERM: 180 s of grace)."""
    result = replay_example(example("stack-health-drain-node1"))
    assert result.findings == []
    drained = [n for n in result.notes if "is at weight 0" in n and "shop_api" in n]
    assert any("its container on this node is unhealthy" in n for n in drained), drained
    assert any("has a health check" in n and "180 s" in n for n in drained), drained


def test_the_real_stack_drained_without_any_health_check_is_found():
    """The same recording, the health check taken from the spec and the container: nothing
    explains the weight 0 any more."""
    doc = example("stack-health-drain-node1")
    for svc in api(doc, "GET /services"):
        svc["Spec"]["TaskTemplate"]["ContainerSpec"].pop("Healthcheck", None)
    for key, value in doc["samples"][0]["api"].items():
        if key.startswith("GET /containers/"):
            value["State"].pop("Health", None)
    assert set(check_ids(replay_example(doc))) == {"ipvs-backend-weight"}


def test_the_real_stack_deployed_again_names_the_earlier_service():
    result = replay_example(example("stack-redeployed-node1"))
    assert result.findings == []
    [note] = [n for n in result.notes if "earlier service" in n]
    assert "again_web" in note and "docker stack rm and deploy" in note


def test_an_earlier_incarnations_task_still_at_weight_1_is_converging():
    """Recorded by the lab's CI (2026-12-06, 28.5.2), first sample only: 25 s after docker stack
    rm and deploy, one of the earlier service's three tasks (desired state remove, still in
    their grace) was at weight 1 in its load balancer on both samples. Swarm is still stopping
    them: converging, not a page. The same task with swarm done stopping it is a finding."""
    doc = json.loads((FIXTURES / "stack-redeployed-lagging-node1.json").read_text())
    result = replay_example(doc)
    [finding] = result.findings
    assert finding.check == "ipvs-backend-weight" and "desired state remove" in finding.message
    assert finding.converging == "swarm is still stopping 3 tasks of service again_web"
    for task in api(doc, "GET /tasks"):  # the others gone, this one still running
        if task["DesiredState"] == "remove" and not task["ID"].startswith("rg6otg3a"):
            task["Status"]["State"] = "shutdown"
    [finding] = replay_example(doc).findings
    assert finding.converging == "swarm is still stopping 1 task of service again_web"
    for task in api(doc, "GET /tasks"):
        if task["DesiredState"] == "remove":
            task["Status"]["State"] = "shutdown"
    assert [f.converging for f in replay_example(doc).findings] in ([], [None])


def test_the_real_stack_deployed_again_without_the_old_tasks_known_is_found():
    """Swarm no longer knowing the earlier service's tasks: their load balancer is nobody's."""
    doc = example("stack-redeployed-node1")
    services = {svc["ID"] for svc in api(doc, "GET /services")}
    tasks = api(doc, "GET /tasks")
    tasks[:] = [t for t in tasks if t["ServiceID"] in services]
    # the cascade the service-ID rule prevents: the earlier service's load balancer read as stale
    assert {"ipvs-service-stale", "mark-stale", "vip-alias-stale"} <= set(check_ids(replay_example(doc)))
