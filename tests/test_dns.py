"""Tier 1: the embedded DNS against NetworkDB, on real 28.5.2 snapshots of a manager and a worker.

The fixtures are tests/fixtures/snapshot-28.5-dns-node{1,2}.json: `ssd ov2 --snapshot` on the
lab's manager and a worker, seeded, plus service dnsa (aliases dbalias and other) and rr
(endpoint mode dnsrr), each with 2 replicas. They hold what the real resolver answered from
inside a local container, and that container's nat rules. Each fault edits the answers (or the
rules) the way the failure it stands for leaves them; tier 2 (a resolver behind the recorded
rules in real namespaces) and the lab (the real resolver) prove the rest.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

import ssd.base
import ssd.catalog
import ssd.collect
import ssd.engine
import ssd.kernel.namespaces
import ssd.kernel.resolver
import ssd.layers.dns
import ssd.model
import ssd.report
from recorded import replay as run, check_ids as checks, fixture

FIXTURES = Path(__file__).parent / "fixtures"



def answers(doc: dict) -> dict:
    """The one probe's answers, in every sample (the edits must hold in each)."""
    found = [v["answers"] for s in doc["samples"] for k, v in s["lookups"].items() if k.startswith("dns ")]
    assert found, "the fixture holds no DNS answers"
    return found


def edit_answers(doc: dict, name: str, value: dict | None) -> None:
    for probe in answers(doc):
        if value is None:
            del probe[name]
        else:
            probe[name] = value


def probe_path(doc: dict) -> str:
    return next(k for k in doc["samples"][0]["lookups"] if k.startswith("dns ")).split(" ", 1)[1]


def ov2(doc: dict) -> dict:
    api = doc["samples"][0]["api"]
    return next(v for k, v in api.items() if k.startswith("GET /networks/") and v.get("Name") == "ov2")


def task_ips(doc: dict, service: str) -> list[str]:
    return sorted(t["EndpointIP"] for t in ov2(doc)["Services"][service]["Tasks"])


def ov2_json(doc_json: dict) -> dict:
    return next(n for n in doc_json["networks"] if n["name"] == "ov2")


def vip(doc: dict, service: str) -> str:
    return ov2(doc)["Services"][service]["VIP"].split("/")[0]


# --- the recording is healthy, and what it asked -------------------------------------------

@pytest.mark.parametrize("node", ["node1", "node2"])
def test_healthy_recording_is_silent_and_asked_every_name(node):
    doc = fixture(f"28.5-dns-{node}")
    result = run(doc)
    assert result.findings == [], [f.message for f in result.findings]
    net = next(n for n in result.networks if n.view.name == "ov2")
    asked = set(net.dns.answers)
    services = {"s1", "s2", "s3", "web", "dnsa", "rr"}
    assert asked >= services | {f"tasks.{s}" for s in services}
    # Aliases come from /services: a manager asks them, a worker cannot know them.
    assert ({"dbalias", "tasks.dbalias", "other", "tasks.other"} <= asked) == (node == "node1")
    assert ov2_json(ssd.report.to_json(result))["dns"]["status"] == "ok"
    ingress = next(n for n in result.networks if n.view.ingress)
    assert ingress.dns is None  # no service discovery on ingress


def test_the_real_answers_are_what_libnetwork_registers():
    """The recording itself: VIP names answer the VIP, dnsrr and tasks.* the task IPs."""
    doc = fixture("28.5-dns-node1")
    got = answers(doc)[0]
    assert got["s1"]["ips"] == [vip(doc, "s1")] and got["dbalias"]["ips"] == [vip(doc, "dnsa")]
    assert got["tasks.dbalias"]["ips"] == task_ips(doc, "dnsa") == got["tasks.dnsa"]["ips"]
    assert got["rr"]["ips"] == task_ips(doc, "rr") == got["tasks.rr"]["ips"]
    assert ov2(doc)["Services"]["rr"]["VIP"] in ("", None, "<nil>")  # 28.x prints Go's nil


# --- each id fires on one edit ---------------------------------------------------------------

def test_nxdomain_with_running_tasks_is_a_missing_name():
    doc = fixture("28.5-dns-node2")
    edit_answers(doc, "tasks.s1", {"rcode": "NXDOMAIN", "ips": []})
    result = run(doc)
    assert checks(result) == ["dns-name-missing"]
    f = result.findings[0]
    assert (f.subject, f.service, f.layer, f.actual) == ("tasks.s1", "s1", "dns", "NXDOMAIN")
    assert f.expected == task_ips(doc, "s1") and f.network == "ov2"
    assert f.namespace == probe_path(doc).rsplit("/", 1)[1] and "dig" in f.hint


def test_a_missing_alias_is_found_on_the_manager():
    doc = fixture("28.5-dns-node1")
    edit_answers(doc, "dbalias", {"rcode": "NXDOMAIN", "ips": []})
    result = run(doc)
    assert checks(result) == ["dns-name-missing"]
    assert (result.findings[0].subject, result.findings[0].service) == ("dbalias", "dnsa")


def test_an_address_of_no_task_is_stale():
    doc = fixture("28.5-dns-node1")
    edit_answers(doc, "tasks.s2", {"rcode": "NOERROR", "ips": [*task_ips(doc, "s2"), "10.0.1.250"]})
    result = run(doc)
    assert checks(result) == ["dns-answer-stale"]
    assert result.findings[0].actual[-1] == "10.0.1.250" or "10.0.1.250" in result.findings[0].actual
    assert "10.0.1.250" in result.findings[0].message


def test_a_task_left_out_is_incomplete():
    doc = fixture("28.5-dns-node1")
    ips = task_ips(doc, "s3")
    edit_answers(doc, "tasks.s3", {"rcode": "NOERROR", "ips": ips[1:]})
    result = run(doc)
    assert checks(result) == ["dns-answer-incomplete"]
    assert ips[0] in result.findings[0].message and result.findings[0].service == "s3"


def test_a_wrong_vip_is_stale_and_incomplete():
    doc = fixture("28.5-dns-node1")
    edit_answers(doc, "web", {"rcode": "NOERROR", "ips": ["10.0.1.251"]})
    assert checks(run(doc)) == ["dns-answer-incomplete", "dns-answer-stale"]


def test_a_dnsrr_name_answering_one_ip_is_incomplete_once_per_address():
    """One finding per address left out: a run's two samples must agree on the address."""
    doc = fixture("28.5-dns-node1")
    ips = task_ips(doc, "rr")
    edit_answers(doc, "rr", {"rcode": "NOERROR", "ips": ips[:1]})
    result = run(doc)
    assert checks(result) == ["dns-answer-incomplete"] * 2
    assert sorted(f.subject for f in result.findings) == [f"rr {ip}" for ip in sorted(ips[1:])]
    assert all(f.hint.endswith("@127.0.0.11 rr; docker network inspect -v ov2") for f in result.findings)


def test_a_silent_resolver_is_one_finding_not_one_per_name():
    doc = fixture("28.5-dns-node1")
    for probe in answers(doc):
        first = next(iter(probe))
        for name in probe:
            probe[name] = {"error": "not asked: the resolver gave no answer for " + first}
        probe[first] = {"error": "no answer (timeout)", "silent": True}
    result = run(doc)
    assert checks(result) == ["dns-resolver-silent"]
    assert result.findings[0].layer == "dns" and result.findings[0].service is None


def resolver_rules(doc: dict, drop: str) -> None:
    path = probe_path(doc)
    for sample in doc["samples"]:
        raw = sample["namespaces"][path]
        for backend, text in raw["iptables"].items():
            raw["iptables"][backend] = "\n".join(x for x in text.splitlines() if not re.search(drop, x))


def test_the_resolver_rules_are_checked_in_the_container_namespace():
    doc = fixture("28.5-dns-node1")
    resolver_rules(doc, r"DOCKER_OUTPUT .* -p tcp .*DNAT")
    result = run(doc)
    assert checks(result) == ["dns-resolver-rules"]
    assert "TCP" in result.findings[0].message
    doc = fixture("28.5-dns-node1")
    resolver_rules(doc, r"-A POSTROUTING .*DOCKER_POSTROUTING")
    result = run(doc)
    assert checks(result) == ["dns-resolver-rules"] and "lookups there fail" in result.findings[0].message


def test_the_recorded_resolver_rules_are_what_libnetwork_writes():
    text = "\n".join(fixture("28.5-dns-node1")["samples"][0]["namespaces"][probe_path(fixture("28.5-dns-node1"))]["iptables"].values())
    for rule in (r"-A OUTPUT -d 127\.0\.0\.11/32 -j DOCKER_OUTPUT",
                 r"-A DOCKER_OUTPUT -d 127\.0\.0\.11/32 -p udp -m udp --dport 53 -j DNAT --to-destination "
                 r"127\.0\.0\.11:\d+", r"-A DOCKER_POSTROUTING -s 127\.0\.0\.11/32 -p tcp -m tcp --sport \d+ "
                 r"-j SNAT --to-source :53"):
        assert re.search(rule, text), rule


# --- near misses that must stay silent --------------------------------------------------------

def lb_raw(doc: dict) -> list[dict]:
    return [raw for s in doc["samples"] for path, raw in s["namespaces"].items() if "/lb_" in path]


def test_a_draining_task_may_be_missing_from_its_names():
    """Weight 0 in the load balancer: libnetwork removed its records first (ServiceDisabled)."""
    doc = fixture("28.5-dns-node2")
    ips = task_ips(doc, "s1")
    edit_answers(doc, "tasks.s1", {"rcode": "NOERROR", "ips": ips[1:]})
    assert checks(run(doc)) == ["dns-answer-incomplete"]
    for raw in lb_raw(doc):
        for svc in raw["ipvs"]:
            for dest in svc["dests"]:
                if dest["address"] == ips[0]:
                    dest["weight"] = 0
    assert "dns-answer-incomplete" not in checks(run(doc))


def test_a_task_swarm_is_stopping_may_be_missing_on_a_manager():
    doc = fixture("28.5-dns-node1")
    ips = task_ips(doc, "rr")
    edit_answers(doc, "tasks.rr", {"rcode": "NOERROR", "ips": ips[1:]})
    edit_answers(doc, "rr", {"rcode": "NOERROR", "ips": ips[1:]})
    assert checks(run(doc)) == ["dns-answer-incomplete"] * 2
    entry = next(t for t in ov2(doc)["Services"]["rr"]["Tasks"] if t["EndpointIP"] == ips[0])
    for sample in doc["samples"]:
        for task in sample["api"]["GET /tasks"]:
            if task["ID"] == entry["Name"].rsplit(".", 1)[-1]:
                task["DesiredState"] = "shutdown"
    assert checks(run(doc)) == []


def test_an_answer_from_the_containers_other_network_is_not_judged():
    view = ssd.model.NetworkView(id="n1", name="ov2", ingress=False, dsr=False, subnets=["10.0.1.0/24"],
                           services={"s1": ssd.model.ServiceView("s1", "10.0.1.2", 256, [], [
                               ssd.model.TaskView("s1.1.a", "e1", "10.0.1.3", "10.99.0.1")])},
                           endpoints={}, instantiated=True)
    state = ssd.model.NodeState(ssd.catalog.engine_model("28.5.2"), "/run/netns", [view])
    for others, expected in (([], ["dns-answer-incomplete", "dns-answer-stale"]), (["ov3"], [])):
        probe = ssd.model.DnsProbe("c1", "/run/netns/x", others, None,
                             {"s1": {"rcode": "NOERROR", "ips": ["10.0.5.2"]},
                              "tasks.s1": {"rcode": "NOERROR", "ips": ["10.0.1.3"]}})
        state.dns = {"n1": probe}
        assert sorted(f.check for f in ssd.catalog.run_checks(state)) == expected


def test_no_local_container_no_names_listed(monkeypatch):
    """A network with no container here cannot be asked: its names (every service's records,
    5,000 services on a big swarm) are not even listed; the note says why DNS was not asked."""
    view = ssd.model.NetworkView(id="n1", name="ov2", ingress=False, dsr=False, subnets=["10.0.1.0/24"],
                           services={"s1": ssd.model.ServiceView("s1", "10.0.1.2", 256, [], [
                               ssd.model.TaskView("s1.1.a", "e1", "10.0.1.3", "10.99.0.1")])},
                           endpoints={}, instantiated=True)
    state = ssd.model.NodeState(ssd.catalog.engine_model("28.5.2"), "/run/netns", [view])

    def names(view, state):
        raise AssertionError("names listed with no container to ask from")
    monkeypatch.setattr(ssd.layers.dns, "dns_names", names)
    notes: list[str] = []
    assert ssd.layers.dns.read_dns(ssd.collect.Collector(None, "/run"), [view], state, [], notes) == {}
    assert len(notes) == 1 and "ov2: no container of the network runs here" in notes[0]


def test_snapshot_without_dns_answers_says_so():
    doc = json.loads((FIXTURES / "snapshot-28.5-node1.json").read_text())
    result = run(doc)
    assert not any(f.dns for f in result.findings)
    assert any("no answers of the embedded DNS" in n for n in result.notes)


# --- reports ------------------------------------------------------------------------------------

def test_text_and_json_attribute_the_finding_to_the_dns_layer():
    doc = fixture("28.5-dns-node1")
    edit_answers(doc, "tasks.s1", {"rcode": "NXDOMAIN", "ips": []})
    result = run(doc)
    text = ssd.report.render_text(result, ssd.report.Painter(False), quiet=False, verbose=False)
    block = text.split("Asking the embedded DNS for network ov2\n", 1)[1]
    assert re.match(r"\d+ names, in container \S+\.\.\. FAIL\n  dns-name-missing: ", block)
    assert "    layer: embedded DNS, against NetworkDB on this node" in block
    # 80 columns, but for the commands to run next: copied whole, never broken.
    commands = {c for f in result.findings for c in f.hint.split("; ")}
    assert max(len(line) for line in text.splitlines()
               if line.strip().removeprefix("next: ") not in commands) <= 80
    assert "    next: nsenter --net=" in block and "\n      docker network inspect -v ov2\n" in block
    doc_json = ssd.report.to_json(result)
    assert doc_json["findings"][0]["layer"] == "dns"
    net = ov2_json(doc_json)
    assert net["dns"]["status"] == "fail" and all(s["status"] != "fail" for s in net["services"])
    assert ssd.report.EXIT_CODES[doc_json["status"]] == 1


def test_a_worker_judges_only_stale_answers_for_a_dnsrr_service():
    """No load balancer shows a dnsrr task being stopped, and a worker has no /tasks: seen on 28.5.2
    when a frozen node came back and re-announced a task swarm had already shut down."""
    doc = fixture("28.5-dns-node2")
    ips = task_ips(doc, "rr")
    edit_answers(doc, "tasks.rr", {"rcode": "NOERROR", "ips": ips[1:]})
    result = run(doc)
    assert checks(result) == []
    assert any("dnsrr" in note for note in result.notes)
    edit_answers(doc, "rr", {"rcode": "NOERROR", "ips": [*ips, "10.0.1.252"]})
    assert checks(run(doc)) == ["dns-answer-stale"]


def test_without_dnspython_the_dns_is_not_asked_and_the_rest_is_checked(monkeypatch):
    def missing(package):
        if package.startswith("dns"):
            raise ssd.base.CheckError(f"the Python package {ssd.engine.REQUIREMENTS['dns']!r} is missing or broken")
        return __import__(package)
    monkeypatch.setattr(ssd.kernel.resolver, "require", missing)
    raw = ssd.kernel.resolver.ask_resolver("/nonexistent-netns", ["s1"])
    assert raw["answers"] == {} and "dnspython" in raw["error"]
    collector = ssd.collect.Collector(None, "/var/run/docker")
    problems: list[ssd.model.NotChecked] = []
    view = ssd.model.NetworkView(id="n1", name="ov2", ingress=False, dsr=False, subnets=[], services={},
                           endpoints={"c1": ssd.model.LocalEndpoint("c1", "s1.1.a", "e1", "10.0.1.3", 24)},
                           instantiated=True)
    collector.container = lambda key: {"Name": "/s1.1.a", "NetworkSettings": {
        "SandboxKey": "/var/run/docker/netns/abc", "Networks": {"ov2": {}}}}
    collector.datapath = lambda path, want_ipvs=True: ssd.kernel.namespaces.datapath_from_raw(path, {"iptables": {}})
    assert ssd.layers.dns.dns_probe(collector, view, set(), ["s1"], problems) is None
    assert len(problems) == 1 and "dnspython" in problems[0].message


def test_a_flood_on_the_socket_does_not_hold_the_check(monkeypatch):
    """A container can send anything to ssd's DNS socket in its namespace: an endless stream of
    datagrams that are no answers ends the DNS read within its bounds, not never."""
    import threading

    class Flooded:
        def __init__(self, *args):
            pass

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def setblocking(self, flag):
            pass

        def sendto(self, data, where):
            return len(data)

        def recvfrom(self, size):
            return b"\x00" * 40, ("127.0.0.11", 53)  # never an answer, never EAGAIN

        def fileno(self):
            return 0

    monkeypatch.setattr(ssd.kernel.resolver.socket, "socket", Flooded)
    monkeypatch.setattr(ssd.kernel.resolver.select, "select", lambda r, w, x, t: (r, [], []))
    monkeypatch.setattr(ssd.kernel.resolver, "DNS_TIMEOUT", 0.2)
    dns = {m: __import__(f"dns.{m}", fromlist=["x"]) for m in
           ("message", "query", "rcode", "exception", "rdatatype", "flags")}
    done: list[dict] = []
    worker = threading.Thread(target=lambda: done.append(ssd.kernel.resolver._ask_all(["s1", "tasks.s1"], dns)),
                              daemon=True)
    worker.start()
    worker.join(20)
    assert done, "the DNS read never ended under a flood"
    assert all("error" in answer for answer in done[0].values())
