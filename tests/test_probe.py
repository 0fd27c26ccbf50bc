"""--probe and the host's prerequisites.

Tier 1: what a node plans to probe and how it judges what came back, on the real 28.5.2
snapshots of the lab's 3-node swarm (node1, a manager), with the answers each fault would give;
the host prerequisites (forwarding, conntrack, the underlay's MTU) on the same snapshots.
Tier 2: the prober itself against real namespaces of this kernel joined by a veth: echo requests
answered, lost above a size, refused locally with DF; TCP connections accepted, refused and
dropped; its bounds (packets sent, time taken) counted by the kernel.
"""
from __future__ import annotations

import json
import re
import socket
import subprocess
import time
from pathlib import Path

import pytest

import ssd.catalog
import ssd.cli
import ssd.collect
import ssd.kernel.namespaces
import ssd.kernel.prober
import ssd.layers.probe
import ssd.model
import ssd.report
import ssd.run
import ssd.snapshot
import ssd.swarmwide.answers
import ssd.swarmwide.report
from recorded import fixture
from schemas import validate

NODE1, NODE2, NODE3 = "10.99.0.1", "10.99.0.2", "10.99.0.3"
# Endpoint IPs of the 28.5.2 recording by the node that runs them (node1's view).
ON_NODE = {"10.0.1.38": NODE2, "10.0.1.50": NODE2, "10.0.1.32": NODE3, "10.0.1.34": NODE3,
           "10.0.0.21": NODE2, "10.0.0.22": NODE3, "10.0.0.20": NODE1}


class Probing(ssd.snapshot.SnapshotCollector):
    """node1's snapshot, checked with --probe: answer(probe) plays the network."""
    probing = True

    def __init__(self, doc: dict, answer) -> None:
        super().__init__(doc, "fixture")
        self.answer, self.sent = answer, []

    def probe(self, probes: list[ssd.kernel.prober.Probe]) -> dict[str, dict]:
        self.sent += probes
        return {p.key: {"result": self.answer(p), "ms": None, "detail": None} for p in probes}


def probed(answer, doc: dict | None = None) -> tuple[ssd.model.RunResult, Probing]:
    collector = Probing(doc or fixture("28.5-node1"), answer)
    _, result = ssd.run.settled_check(collector, [], 0, live=False)
    return result, collector


def every_probe_answered(probe: ssd.kernel.prober.Probe) -> str:
    return "ok"


def checks(result: ssd.model.RunResult) -> list[str]:
    return sorted(f.check for f in result.findings)


# --- the plan ------------------------------------------------------------------------------

def test_the_plan_asks_every_other_node_from_each_load_balancer_at_two_sizes():
    result, collector = probed(every_probe_answered)
    echoes = [p for p in collector.sent if p.kind == "echo"]
    by_source: dict[str, set[str]] = {}
    for p in echoes:
        by_source.setdefault(Path(p.source).name, set()).add(ON_NODE[p.target])
    # node1 asks node2 and node3, never itself, from each network's own load balancer
    assert by_source == {"lb_pgt602lci": {NODE2, NODE3}, "ingress_sbox": {NODE2, NODE3}}
    assert {p.size for p in echoes} == {ssd.kernel.prober.ECHO_SMALL, 1450}  # 1450: the VXLAN devices' MTU
    per_node = {}
    for p in echoes:
        per_node.setdefault((p.source, ON_NODE[p.target], p.size), []).append(p.target)
    assert max(len(v) for v in per_node.values()) == ssd.layers.probe.ECHO_TARGETS_PER_NODE
    assert checks(result) == []


def test_the_plan_connects_to_backends_and_to_every_nodes_published_ports():
    _, collector = probed(every_probe_answered)
    tcp = sorted((Path(p.source).name if p.source else "host", p.target, p.port)
                 for p in collector.sent if p.kind == "tcp")
    # web publishes 8080 -> 80: from ingress_sbox to each task at the published port (the task
    # redirects it), and from this node to every node's address at 8080
    assert tcp == [("host", NODE1, 8080), ("host", NODE2, 8080), ("host", NODE3, 8080),
                   ("ingress_sbox", "10.0.0.20", 8080), ("ingress_sbox", "10.0.0.21", 8080),
                   ("ingress_sbox", "10.0.0.22", 8080)]


def test_a_backend_being_drained_is_not_probed():
    doc = fixture("28.5-node1")
    sbox = doc["samples"][0]["namespaces"]["/var/run/docker/netns/ingress_sbox"]
    dest = next(d for s in sbox["ipvs"] for d in s["dests"] if d["address"] == "10.0.0.21")
    dest["weight"] = 0  # stopping: swarm's executor took it out of the load balancer
    _, collector = probed(every_probe_answered, doc)
    backends = {p.target for p in collector.sent if p.kind == "tcp" and p.source}
    assert backends == {"10.0.0.20", "10.0.0.22"}


def test_echo_targets_prefer_endpoints_not_being_drained():
    doc = fixture("28.5-node1")
    lb = doc["samples"][0]["namespaces"]["/var/run/docker/netns/lb_pgt602lci"]
    for svc in lb["ipvs"]:
        for dest in svc["dests"]:
            if dest["address"] == "10.0.1.32":  # node3's first endpoint by address
                dest["weight"] = 0
    _, collector = probed(every_probe_answered, doc)
    asked = {p.target for p in collector.sent if p.kind == "echo" and "lb_" in p.source}
    assert "10.0.1.32" not in asked and {"10.0.1.34", "10.0.1.54"} <= asked


def test_a_healthy_swarm_is_consistent_and_the_report_says_what_was_probed():
    result, _ = probed(every_probe_answered)
    assert result.findings == [] and ssd.report.overall_status(result) == "consistent"
    text = ssd.report.render_text(result, ssd.report.Painter(False), False, False)
    assert "Probing network ov2 from lb_pgt602lci" in text
    assert max(len(line) for line in text.splitlines()) <= 80
    doc = ssd.report.to_json(result)
    validate(doc, "node-report")
    ov2 = next(n for n in doc["networks"] if n["name"] == "ov2")
    assert ov2["probe"]["status"] == "ok" and ov2["probe"]["reached"] == 2
    assert ov2["probe"]["paths"] == {NODE2: {"small": True, "full": True},
                                     NODE3: {"small": True, "full": True}}


def test_prometheus_carries_what_the_probes_saw(tmp_path):
    result, _ = probed(lambda p: "timeout" if p.kind == "echo" and p.size > 1000 and ON_NODE[p.target] == NODE3
                       else "refused" if p.kind == "tcp" and p.source else "ok")
    target = tmp_path / "ssd.prom"
    ssd.report.write_prometheus(str(target), result, 1.0)
    text = target.read_text()
    assert f'ssd_probe_path_answered{{network="ov2",node="{NODE3}",size="full"}} 0.0' in text
    assert f'ssd_probe_path_answered{{network="ov2",node="{NODE3}",size="small"}} 1.0' in text
    assert 'ssd_probe_connections{answered="true",kind="backend",network="ingress"} 3.0' in text
    assert 'ssd_findings{check="probe-mtu-blackhole",network="ov2"} 1.0' in text


def test_without_probe_nothing_is_sent_nor_planned_and_no_probe_block_is_shown(monkeypatch):
    collector = ssd.snapshot.SnapshotCollector(fixture("28.5-node1"), "fixture")
    sent = []
    collector.probe = sent.append  # would be called only with --probe
    assert collector.probing is False

    def plan(state):  # 7% of a run at 5000 x 4: not made when nothing will be sent
        raise AssertionError("planned without --probe")
    monkeypatch.setattr(ssd.layers.probe, "plan_probes", plan)
    _, result = ssd.run.settled_check(collector, [], 0, live=False)
    assert sent == []
    doc = ssd.report.to_json(result)
    assert all(n["probe"] is None for n in doc["networks"])
    assert "Probing" not in ssd.report.render_text(result, ssd.report.Painter(False), False, False)


# --- faults, as the network would answer them -------------------------------------------------

def test_a_node_that_drops_vxlan_is_unreachable_on_every_network():
    def node3_cut(p: ssd.kernel.prober.Probe) -> str:
        return "timeout" if ON_NODE.get(p.target, p.target) == NODE3 and p.source else "ok"
    result, _ = probed(node3_cut)
    unreachable = [f for f in result.findings if f.check == "probe-node-unreachable"]
    assert sorted(f.network for f in unreachable) == ["ingress", "ov2"]
    assert all(NODE3 in f.subject and NODE2 not in f.message for f in unreachable)
    assert all(f.hint.startswith("nsenter --net=/var/run/docker/netns/") for f in unreachable)
    # its backend on ingress cannot be reached either; node3's published port is not cut here
    assert checks(result) == ["probe-backend-timeout", "probe-node-unreachable", "probe-node-unreachable"]
    assert ssd.report.overall_status(result) == "inconsistent"


def test_a_node_with_a_data_path_address_is_named_by_its_hostname():
    # --data-path-addr: NetworkDB's Host IP (the VTEP) is not the address /nodes gives; the
    # manager still names the node, through the tasks swarm placed on it.
    doc = json.loads(json.dumps(fixture("28.5-node1")).replace('"Host IP": "10.99.0.3"', '"Host IP": "10.98.0.3"'))
    def node3_cut(p: ssd.kernel.prober.Probe) -> str:
        return "timeout" if ON_NODE.get(p.target) == NODE3 and p.source else "ok"
    result, _ = probed(node3_cut, doc)
    unreachable = [f for f in result.findings if f.check == "probe-node-unreachable"]
    assert [f.subject for f in unreachable] == ["node3 (10.98.0.3)"] * 2


def test_an_mtu_black_hole_names_the_node_and_both_sizes():
    def big_lost(p: ssd.kernel.prober.Probe) -> str:
        return "timeout" if p.kind == "echo" and p.size > 1000 and ON_NODE[p.target] == NODE3 else "ok"
    result, _ = probed(big_lost)
    assert checks(result) == ["probe-mtu-blackhole", "probe-mtu-blackhole"]
    finding = result.findings[0]
    assert NODE3 in finding.subject and "84-byte" in finding.message and "1450 bytes" in finding.message
    assert "-M do -s 1422" in finding.hint


def test_a_docker_user_drop_on_node2_fails_node2s_port_only():
    def node2_port_dropped(p: ssd.kernel.prober.Probe) -> str:
        return "timeout" if p.kind == "tcp" and not p.source and p.target == NODE2 else "ok"
    result, _ = probed(node2_port_dropped)
    (finding,) = result.findings
    assert finding.check == "probe-published-timeout" and finding.service == "web"
    assert finding.subject == f"8080/tcp on node2 ({NODE2})"  # a manager knows its hostname


def test_a_refusal_is_a_note_about_the_application_never_a_finding():
    def nothing_listens(p: ssd.kernel.prober.Probe) -> str:
        return "refused" if p.kind == "tcp" else "ok"
    result, _ = probed(nothing_listens)
    assert result.findings == []
    assert any("refused the connection: the path works" in n and "web" in n for n in result.notes)


def test_probes_that_did_not_run_are_not_judged():
    result, _ = probed(lambda p: "not-probed")
    assert result.findings == []
    assert any("could not be sent or did not finish" in n for n in result.notes)


def test_a_node_answering_only_one_of_its_endpoints_is_reachable():
    def one_silent(p: ssd.kernel.prober.Probe) -> str:  # a container that drops ICMP: not the node's fault
        return "timeout" if p.target == "10.0.1.32" else "ok"
    result, collector = probed(one_silent)
    assert "10.0.1.34" in {p.target for p in collector.sent}  # node3's other endpoint on ov2
    assert result.findings == []


def test_recorded_probes_replay_from_a_snapshot():
    doc = fixture("28.5-node1")
    _, collector = probed(every_probe_answered)
    doc["samples"][0]["lookups"]["probes"] = {
        p.key: {"result": "timeout" if p.target == NODE2 and p.kind == "tcp" else "ok", "ms": None,
                "detail": None} for p in collector.sent}
    result = ssd.run.settled_check(ssd.snapshot.SnapshotCollector(doc, "fixture"), [], 0, live=False)[1]
    assert checks(result) == ["probe-published-timeout"]


def test_probe_with_from_is_refused(capsys, tmp_path):
    path = tmp_path / "s.json"
    path.write_text(json.dumps(fixture("28.5-node1")))
    assert ssd.cli.main(["--from", str(path), "--probe"]) == 2
    assert "--probe is for reading a live node" in capsys.readouterr().err


# --- the host's prerequisites ---------------------------------------------------------------

def with_host(**prereqs) -> dict:
    doc = fixture("28.5-node1")
    base = {"error": None, "ip_forward": 1, "conntrack": {"count": 10, "max": 262144},
            "links": [{"name": "eth0", "mtu": 1500, "driver": "virtio_net", "addresses": [NODE1]},
                      {"name": "docker_gwbridge", "mtu": 1500, "driver": None, "addresses": ["172.18.0.1"]}]}
    base.update(prereqs)
    doc["samples"][0]["lookups"]["host-prereqs"] = base
    return doc


def replay(doc: dict) -> ssd.model.RunResult:
    return ssd.run.settled_check(ssd.snapshot.SnapshotCollector(doc, "fixture"), [], 0, live=False)[1]


def test_healthy_prerequisites_are_silent():
    result = replay(with_host())
    assert result.findings == [] and not any("vmxnet3" in n for n in result.notes)


def test_forwarding_off_is_a_finding():
    result = replay(with_host(ip_forward=0))
    assert checks(result) == ["ip-forward-off"]
    assert "net.ipv4.ip_forward=0" in result.findings[0].message


def test_a_conntrack_table_near_full_is_found_where_it_is():
    doc = with_host(conntrack={"count": 250000, "max": 262144})
    lb = doc["samples"][0]["namespaces"]["/var/run/docker/netns/lb_pgt602lci"]
    lb["conntrack"] = {"count": 65000, "max": 65536}
    result = replay(doc)
    assert checks(result) == ["conntrack-full", "conntrack-full"]
    assert sorted(f.namespace for f in result.findings) == ["host", "lb_pgt602lci"]
    assert {f.network for f in result.findings} == {None, "ov2"}


def test_a_conntrack_table_below_the_mark_is_silent():
    doc = with_host(conntrack={"count": int(262144 * 0.89), "max": 262144})
    assert replay(doc).findings == []


def test_an_underlay_smaller_than_vxlan_needs_is_found_on_each_overlay():
    result = replay(with_host(links=[{"name": "ens4", "mtu": 1460, "driver": "virtio_net",
                                      "addresses": [NODE1]}]))
    assert checks(result) == ["underlay-mtu", "underlay-mtu"]
    finding = result.findings[0]
    assert finding.subject == "ens4" and "1500 bytes" in finding.message and finding.actual == 1460


def test_a_stray_vxlan_device_is_not_measured_against_the_underlay():
    """Seen in the lab: a second VXLAN device (MTU 1500, another VNI) in ov2's namespace, listed
    before the network's own, made underlay-mtu judge the stray's 1550 bytes too."""
    doc = with_host()
    links = doc["samples"][0]["namespaces"]["/var/run/docker/netns/1-pgt602lcio"]["links"]
    links.insert(0, {"index": 99, "kind": "vxlan", "mac": "02:00:00:00:00:99", "master": None, "mtu": 1500,
                     "name": "vxlan9", "up": True, "vxlan": {"l2miss": False, "l3miss": False,
                     "learning": False, "port": 4789, "proxy": False, "vni": 4999}})
    result = replay(doc)
    assert checks(result) == ["overlay-vxlan-config"]
    assert "4999" in result.findings[0].message
    # and --probe's full size on ov2 is still the network's (1450), not the stray's
    _, collector = probed(every_probe_answered, doc)
    sizes = {p.size for p in collector.sent if p.kind == "echo" and "lb_pgt602lci" in p.source}
    assert sizes == {ssd.kernel.prober.ECHO_SMALL, 1450}


def test_an_underlay_of_exactly_mtu_plus_vxlan_is_enough():
    assert replay(with_host(links=[{"name": "ens4", "mtu": 1500, "driver": None,
                                    "addresses": [NODE1]}])).findings == []


def test_vmxnet3_gets_a_note_with_the_command_that_avoids_its_bug():
    result = replay(with_host(links=[{"name": "ens192", "mtu": 1500, "driver": "vmxnet3",
                                      "addresses": [NODE1]}]))
    assert result.findings == []
    assert any("ethtool -K ens192 tx-checksum-ip-generic off" in n for n in result.notes)


def test_a_snapshot_without_the_prerequisites_skips_them():
    doc = fixture("28.5-node1")
    assert "host-prereqs" not in doc["samples"][0]["lookups"]
    assert replay(doc).findings == []


# --- tier 2: the prober on real namespaces ----------------------------------------------------

def sh(*args: str, ns: str | None = None, check: bool = True) -> str:
    cmd = (["nsenter", f"--net={ns}"] if ns else []) + list(args)
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if check and proc.returncode:
        raise RuntimeError(f"{' '.join(cmd)}: {proc.stderr.strip()}")
    return proc.stdout


@pytest.fixture
def pair(tmp_path):
    """Two namespaces joined by a veth: a (10.201.0.1) sends, b (10.201.0.2) answers. b listens
    on TCP 8080, drops TCP 8082 and echo requests over 1000 bytes, and counts what it got."""
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    bound = []
    listener = None
    try:
        for path in (a, b):
            Path(path).touch()
            sh("unshare", f"--net={path}", "true")
            bound.append(path)
        sh("ip", "link", "add", "a0", "type", "veth", "peer", "name", "b0", "netns", b, ns=a)
        for ns, dev, ip in ((a, "a0", "10.201.0.1/24"), (b, "b0", "10.201.0.2/24")):
            sh("ip", "addr", "add", ip, "dev", dev, ns=ns)
            sh("ip", "link", "set", dev, "up", ns=ns)
            sh("ip", "link", "set", "lo", "up", ns=ns)
        for rule in ("-p icmp --icmp-type echo-request",  # a counter of what reached b
                     "-p icmp --icmp-type echo-request -m length --length 1000:65535 -j DROP",
                     "-p tcp --dport 8082 -j DROP",
                     "-p tcp --syn"):  # another counter
            sh("iptables", "-A", "INPUT", *rule.split(), ns=b)
        with ssd.kernel.namespaces.entered_netns(b):
            listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.bind(("10.201.0.2", 8080))
        listener.listen(512)
        yield a, b
    finally:
        if listener is not None:
            listener.close()
        for path in bound:
            subprocess.run(["umount", path], capture_output=True, check=False)


def counters(ns: str) -> dict[str, int]:
    """Packets b's counting rules saw: echo requests (every size) and SYNs (not to 8082)."""
    out = sh("iptables", "-L", "INPUT", "-v", "-x", "-n", ns=ns)
    rows = [line.split() for line in out.splitlines()[2:]]
    return {"echo": int(rows[0][0]), "syn": int(rows[3][0])}


def test_the_prober_tells_answered_lost_and_too_big_apart(pair):
    a, b = pair
    probes = [ssd.kernel.prober.Probe("echo", a, "10.201.0.2", size=ssd.kernel.prober.ECHO_SMALL),
              ssd.kernel.prober.Probe("echo", a, "10.201.0.2", size=1500),  # dropped by b above 1000 bytes
              ssd.kernel.prober.Probe("echo", a, "10.201.0.2", size=1600),  # over the veth's MTU, with DF
              ssd.kernel.prober.Probe("echo", a, "10.201.0.9", size=ssd.kernel.prober.ECHO_SMALL)]  # nobody there
    started = time.monotonic()
    got = ssd.kernel.prober.Prober(probes).run()
    took = time.monotonic() - started
    assert [got[p.key]["result"] for p in probes] == ["ok", "timeout", "too-big", "timeout"]
    assert got[probes[0].key]["ms"] is not None
    # bounds: the lost size PROBE_TRIES times, the answered one until answered (once, unless the
    # machine is slow), the one too big for the way out never; all within the time limit
    assert ssd.kernel.prober.PROBE_TRIES + 1 <= counters(b)["echo"] <= 2 * ssd.kernel.prober.PROBE_TRIES
    assert took < (ssd.kernel.prober.PROBE_TRIES - 1) * ssd.kernel.prober.PROBE_INTERVAL + ssd.kernel.prober.PROBE_TIMEOUT + 1


def test_the_prober_tells_accepted_refused_and_dropped_connections_apart(pair):
    a, b = pair
    probes = [ssd.kernel.prober.Probe("tcp", a, "10.201.0.2", 8080), ssd.kernel.prober.Probe("tcp", a, "10.201.0.2", 8081),
              ssd.kernel.prober.Probe("tcp", a, "10.201.0.2", 8082)]
    got = ssd.kernel.prober.Prober(probes).run()
    assert [got[p.key]["result"] for p in probes] == ["ok", "refused", "timeout"]
    assert counters(b)["syn"] == 2  # one SYN per answered connection: nothing sent twice


def test_hundreds_of_connections_run_at_once_within_the_bounds(pair):
    a, _ = pair
    probes = [ssd.kernel.prober.Probe("tcp", a, "10.201.0.2", 20000 + i) for i in range(ssd.kernel.prober.PROBE_SOCKETS + 100)]
    probes += [ssd.kernel.prober.Probe("tcp", a, "10.201.0.2", 8082)]
    started = time.monotonic()
    got = ssd.kernel.prober.Prober(probes).run()
    assert time.monotonic() - started < ssd.kernel.prober.PROBE_TIMEOUT + 1.5
    results = [got[p.key]["result"] for p in probes]
    assert results.count("refused") == ssd.kernel.prober.PROBE_SOCKETS + 100 and results[-1] == "timeout"


def test_a_namespace_that_is_gone_is_an_error_for_its_probes_only(pair, tmp_path):
    a, _ = pair
    gone = str(tmp_path / "gone")
    probes = [ssd.kernel.prober.Probe("echo", gone, "10.201.0.2", size=84), ssd.kernel.prober.Probe("tcp", gone, "10.201.0.2", 8080),
              ssd.kernel.prober.Probe("echo", a, "10.201.0.2", size=84)]
    got = ssd.kernel.prober.Prober(probes).run()
    assert [got[p.key]["result"] for p in probes] == ["error", "error", "ok"]
    assert "gone" in got[probes[0].key]["detail"]


def test_the_prober_leaves_nothing_behind(pair):
    a, _ = pair
    before = sh("ss", "-tan", ns=a)
    ssd.kernel.prober.Prober([ssd.kernel.prober.Probe("tcp", a, "10.201.0.2", 8082)]).run()
    assert "SYN-SENT" not in before and "SYN-SENT" not in sh("ss", "-tan", ns=a)


# --- the whole swarm: --all-nodes --probe, one node x node matrix per network -----------------

def member_report(hostname: str, addr: str, answer) -> dict:
    """What a member sends back with --probe: node1's recorded report, as the node at addr, whose
    probes to each other node (and to each node's published port) answer(source, target) plays."""
    result, _ = probed(every_probe_answered)
    doc = ssd.report.to_json(result)
    doc["node"].update(hostname=hostname, addr=addr)
    for net in doc["networks"]:
        if net["probe"]:
            net["probe"]["paths"] = {
                other: {"small": answer(addr, other, "small") == "ok", "full": answer(addr, other, "full") == "ok"}
                for other in (NODE1, NODE2, NODE3) if other != addr}
            if net["name"] == "ingress":
                net["probe"]["entries"] = {ip: {"asked": 1, "answered": int(answer(addr, ip, "port") == "ok")}
                                           for ip in (NODE1, NODE2, NODE3)}
    return doc


def fleet_of(answer) -> ssd.swarmwide.answers.FleetResult:
    nodes = [ssd.swarmwide.answers.FleetNode(f"id{i}", f"node{i}", member_report(f"node{i}", addr, answer))
             for i, addr in ((1, NODE1), (2, NODE2), (3, NODE3))]
    return ssd.swarmwide.answers.FleetResult([("ov2", "x"), ("ingress", "y")], nodes, [], 1.0, [], [])


def test_the_fleet_matrix_of_a_healthy_swarm_is_all_ok():
    result = fleet_of(lambda source, target, what: "ok")
    text = ssd.swarmwide.report.render_fleet(result, ssd.report.Painter(False), False, False)
    rows = [line for line in text.splitlines() if re.match(r"node\d {2,}(ok|\.)", line)]
    assert "Probes on network ov2" in text and len(rows) == 6  # 3 rows on each network
    assert not any("LOST" in row or "MTU" in row or "/" in row for row in rows)
    assert max(len(line) for line in text.splitlines()) <= 80
    doc = ssd.swarmwide.report.fleet_to_json(result)
    validate(doc, "fleet-report")
    assert len([p for p in doc["probes"] if p["network"] == "ov2"]) == 6  # 3 nodes x 2 others


def test_a_node_cut_off_is_one_line_in_the_fleet_matrix():
    def node3_drops(source: str, target: str, what: str) -> str:
        return "timeout" if NODE3 in (source, target) and what != "port" else "ok"
    result = fleet_of(node3_drops)
    pairs = ssd.swarmwide.report.probe_pairs(result)
    lost = sorted((p.source, p.target) for p in pairs if p.network == "ov2" and p.small is False)
    assert lost == [("node1", "node3"), ("node2", "node3"), ("node3", "node1"), ("node3", "node2")]
    lines = ssd.swarmwide.report.probe_verdicts([p for p in pairs if p.network == "ov2"])
    assert lines == ["node3: no other node reaches it in both directions over ov2"]


def test_a_one_way_loss_shows_as_one_pair():
    def one_way(source: str, target: str, what: str) -> str:
        return "timeout" if (source, target) == (NODE1, NODE2) and what != "port" else "ok"
    pairs = [p for p in ssd.swarmwide.report.probe_pairs(fleet_of(one_way)) if p.network == "ov2"]
    assert ssd.swarmwide.report.probe_verdicts(pairs) == ["node1 -> node2 over ov2: no echo answered"]


def test_an_mtu_black_hole_and_a_dropped_port_in_the_fleet_matrix():
    def faults(source: str, target: str, what: str) -> str:
        if what == "full" and NODE3 in (source, target) and source != target:
            return "timeout"  # node3's underlay: full-size lost both ways
        if what == "port" and target == NODE2 and source != NODE2:
            return "timeout"  # DOCKER-USER on node2: only traffic from outside crosses it
        return "ok"
    result = fleet_of(faults)
    ingress = [p for p in ssd.swarmwide.report.probe_pairs(result) if p.network == "ingress"]
    assert ssd.swarmwide.report.probe_verdicts(ingress) == [
        "node3: full-size packets pass in both directions between it and no other node over "
        "ingress (small ones do: an MTU black hole)",
        "node1 -> node2 over ingress: 1 of 1 published ports silent",
        "node3 -> node2 over ingress: 1 of 1 published ports silent"]
    text = ssd.swarmwide.report.render_fleet(result, ssd.report.Painter(False), False, False)
    assert "MTU" in text and max(len(line) for line in text.splitlines()) <= 80


# --- tier 2: two nodes joined by real VXLAN, and the faults of the issue on their underlay ------
# Laid out as libnetwork lays a network out on each node: the node's namespace (u1, u2) holds the
# underlay and the VXLAN device's UDP socket; the overlay namespace (o1, o2) holds a bridge and
# the VXLAN device, with a permanent neighbour and FDB entry for the other node's endpoint; the
# load balancer's namespace (l1, l2) hangs off the bridge. ssd plans from node 1's state (its
# view: one service whose task is node 2's endpoint) and probes for real.

VNI = 4097


class TwoNodes:
    def __init__(self, tmp: Path) -> None:
        self.tmp, self.bound = tmp, []

    def ns(self, name: str) -> str:
        return str(self.tmp / name)

    def create(self) -> TwoNodes:
        for name in ("u1", "u2", "o1", "o2", "l1", "l2"):
            Path(self.ns(name)).touch()
            sh("unshare", f"--net={self.ns(name)}", "true")
            self.bound.append(self.ns(name))
        sh("ip", "link", "add", "e0", "type", "veth", "peer", "name", "e0", "netns", self.ns("u2"),
           ns=self.ns("u1"))
        for n in (1, 2):
            u, o, lb = self.ns(f"u{n}"), self.ns(f"o{n}"), self.ns(f"l{n}")
            sh("ip", "addr", "add", f"10.202.0.{n}/24", "dev", "e0", ns=u)
            sh("ip", "link", "set", "e0", "up", ns=u)
            # proxy: ARP is answered from the neighbour entries, as libnetwork sets the device up
            sh("ip", "link", "add", "vxlan0", "type", "vxlan", "id", str(VNI), "local", f"10.202.0.{n}",
               "dstport", "4789", "nolearning", "proxy", ns=u)
            sh("ip", "link", "set", "vxlan0", "netns", o, ns=u)  # its socket stays in u
            sh("ip", "link", "add", "br0", "type", "bridge", ns=o)
            sh("ip", "addr", "add", "10.0.9.1/24", "dev", "br0", ns=o)
            sh("ip", "link", "set", "vxlan0", "mtu", "1450", "master", "br0", ns=o)
            sh("ip", "link", "add", "veth0", "mtu", "1450", "type", "veth", "peer", "name", "eth0", "netns", lb,
               ns=o)
            sh("ip", "link", "set", "veth0", "master", "br0", ns=o)
            for dev in ("br0", "vxlan0", "veth0"):
                sh("ip", "link", "set", dev, "up", ns=o)
            sh("ip", "link", "set", "eth0", "address", f"02:42:0a:00:09:0{n + 1}", ns=lb)
            sh("ip", "addr", "add", f"10.0.9.{n + 1}/24", "dev", "eth0", ns=lb)
            sh("ip", "link", "set", "eth0", "up", ns=lb)
            peer = 3 - n
            sh("ip", "neigh", "add", f"10.0.9.{peer + 1}", "lladdr", f"02:42:0a:00:09:0{peer + 1}",
               "dev", "vxlan0", "nud", "permanent", ns=o)
            sh("bridge", "fdb", "add", f"02:42:0a:00:09:0{peer + 1}", "dev", "vxlan0", "dst",
               f"10.202.0.{peer}", "self", "permanent", ns=o)
        return self

    def destroy(self) -> None:
        for path in self.bound:
            subprocess.run(["umount", path], capture_output=True, check=False)

    def state(self) -> ssd.model.NodeState:
        """Node 1's view: network ovt, its load balancer (l1), service web with one task on node 2
        at 10.0.9.3 publishing 8080 -> 80."""
        task = ssd.model.TaskView("web.1.x8k2mtpq0c1v", "ep-task", "10.0.9.3", "10.202.0.2")
        view = ssd.model.NetworkView(
            "ovt0123456789abcdefghijk", "ovt", False, False, ["10.0.9.0/24"],
            {"web": ssd.model.ServiceView("web", "10.0.9.100", 256, [ssd.model.PublishedPort(8080, 80, "tcp")], [task])},
            {"lb-ovt": ssd.model.LocalEndpoint("lb-ovt", "ovt-endpoint", "ep-lb", "10.0.9.2", 24)}, True,
            peers=[("n1", "10.202.0.1"), ("n2", "10.202.0.2")])
        dp = ssd.model.Datapath(self.ns("l1"), "l1", [], None, {}, [], None, {}, {})
        # ingress as every node sees it: its peers are every node; web publishes 8080 there (its
        # load balancer is not laid out here: only the published ports are probed on it)
        ingress = ssd.model.NetworkView(
            "ingress0123456789abcdefg", "ingress", True, False, ["10.0.0.0/24"],
            {"web": ssd.model.ServiceView("web", "10.0.0.100", 257, [ssd.model.PublishedPort(8080, 80, "tcp")], [])},
            {}, True, peers=[("n1", "10.202.0.1"), ("n2", "10.202.0.2")])
        return ssd.model.NodeState(ssd.catalog.engine_model("28.5.2"), str(self.tmp), [view, ingress],
                             [ssd.model.LoadBalancer(view, dp, "10.0.9.2", True)], node_addr="10.202.0.1")

    def probe(self, node: str = "u1") -> tuple[ssd.model.NodeState, ssd.model.Reading, list[ssd.model.Finding]]:
        """What ssd --probe does after reading the layers, run in node's own namespace (where its
        published-port probes leave from): the live collector sends the plan."""
        state, reading = self.state(), ssd.model.Reading()
        collector = ssd.collect.Collector(None, str(self.tmp))
        collector.probing = True
        reading.results = [ssd.model.NetworkResult(view, None, True) for view in state.views]
        with ssd.kernel.namespaces.entered_netns(self.ns(node)):
            ssd.layers.probe.read_probes(collector, state, reading)
        # only the probe layer: this layout has no IPVS or rules for the kernel layer to compare
        return state, reading, [f for f in ssd.catalog.run_checks(state) if f.layer == "probe"]


def routing_mesh(nodes: TwoNodes, n: int) -> socket.socket:
    """Node n's routing mesh for 8080, as dockerd programs it: nat DNAT to a namespace that plays
    ingress_sbox (s<n>, on a bridge-like veth), reached from other nodes through FORWARD (where
    DOCKER-USER comes first) and from the node itself through OUTPUT; s<n> accepts 8080."""
    u, sbox = nodes.ns(f"u{n}"), nodes.ns(f"s{n}")
    Path(sbox).touch()
    sh("unshare", f"--net={sbox}", "true")
    nodes.bound.append(sbox)
    sh("sysctl", "-qw", "net.ipv4.ip_forward=1", ns=u)
    sh("ip", "link", "add", "g0", "type", "veth", "peer", "name", "eth1", "netns", sbox, ns=u)
    sh("ip", "addr", "add", "10.203.0.1/24", "dev", "g0", ns=u)
    sh("ip", "link", "set", "g0", "up", ns=u)
    sh("ip", "addr", "add", "10.203.0.2/24", "dev", "eth1", ns=sbox)
    sh("ip", "link", "set", "eth1", "up", ns=sbox)
    sh("ip", "route", "add", "default", "via", "10.203.0.1", ns=sbox)
    for chain in ("PREROUTING", "OUTPUT"):
        sh("iptables", "-t", "nat", "-A", chain, "-p", "tcp", "-d", f"10.202.0.{n}", "--dport", "8080",
           "-j", "DNAT", "--to-destination", "10.203.0.2:8080", ns=u)
    sh("iptables", "-N", "DOCKER-USER", ns=u)
    sh("iptables", "-A", "FORWARD", "-j", "DOCKER-USER", ns=u)
    with ssd.kernel.namespaces.entered_netns(sbox):
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("0.0.0.0", 8080))
    listener.listen(16)
    return listener


@pytest.fixture
def two_nodes(tmp_path):
    nodes = TwoNodes(tmp_path)
    listeners = []
    try:  # a layout that fails half-way is taken down too
        nodes.create()
        with ssd.kernel.namespaces.entered_netns(nodes.ns("l2")):  # node 2's task listens on its target port
            listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listeners.append(listener)
        listener.bind(("10.0.9.3", 80))
        listener.listen(16)
        nodes.listener = listener
        listeners += [routing_mesh(nodes, 1), routing_mesh(nodes, 2)]
        yield nodes
    finally:
        for listener in listeners:
            listener.close()
        nodes.destroy()


def test_over_real_vxlan_a_healthy_path_is_consistent(two_nodes):
    state, _, findings = two_nodes.probe()
    assert findings == [], [f.message for f in findings]
    assert {r["result"] for r in state.probe_results.values()} == {"ok"}
    assert {p.probe.size for p in ssd.layers.probe.plan_probes(state) if p.what == "path"} == {ssd.kernel.prober.ECHO_SMALL, 1450}


def test_over_real_vxlan_node2_dropping_udp_4789_is_unreachable(two_nodes):
    sh("iptables", "-A", "INPUT", "-p", "udp", "--dport", "4789", "-j", "DROP", ns=two_nodes.ns("u2"))
    _, _, findings = two_nodes.probe()
    assert sorted(f.check for f in findings) == ["probe-backend-timeout", "probe-node-unreachable"]
    assert all("10.202.0.2" in f.message for f in findings)


def test_over_real_vxlan_an_underlay_that_drops_full_size_packets_is_a_black_hole(two_nodes):
    # node 2's underlay takes no VXLAN packet over 1400 bytes: 84-byte echoes pass, 1450-byte ones
    # (1500 on the wire) do not; a TCP handshake's small segments still pass
    sh("iptables", "-t", "raw", "-A", "PREROUTING", "-p", "udp", "--dport", "4789", "-m", "length",
       "--length", "1401:65535", "-j", "DROP", ns=two_nodes.ns("u2"))
    _, _, findings = two_nodes.probe()
    (finding,) = findings
    assert finding.check == "probe-mtu-blackhole" and "1450 bytes" in finding.message


def test_over_real_vxlan_a_stopped_backend_is_a_note_not_a_finding(two_nodes):
    two_nodes.listener.close()  # the task's process is gone, its container (namespace) is not
    _, reading, findings = two_nodes.probe()
    assert findings == []
    assert any("web.1.x8k2mtpq0c1v (10.0.9.3:80) refused" in n for n in reading.notes)


def test_a_docker_user_drop_on_node2_is_seen_from_node1_not_from_node2_itself(two_nodes):
    _, _, before = two_nodes.probe("u1")
    assert before == []
    sh("iptables", "-A", "DOCKER-USER", "-p", "tcp", "--dport", "8080", "-j", "DROP", ns=two_nodes.ns("u2"))
    state, _, from_node1 = two_nodes.probe("u1")
    (finding,) = from_node1
    assert finding.check == "probe-published-timeout" and finding.subject == "8080/tcp on node 10.202.0.2"
    assert state.probe_results["tcp host 10.202.0.1:8080"]["result"] == "ok"  # node 1's own entry
    _, _, from_node2 = two_nodes.probe("u2")  # its own address: OUTPUT, not FORWARD
    assert [f for f in from_node2 if f.check == "probe-published-timeout"
            and "10.202.0.2" in f.subject] == []


def test_the_fleet_matrix_names_nodes_by_their_data_path_address_too():
    """--data-path-addr: echo paths are keyed by the VTEP (10.98.0.N), published ports by the
    advertise address; both are the node's, and the matrix has one column per node."""
    result = fleet_of(lambda source, target, what: "ok")
    for n in result.nodes:
        n.report["node"]["vteps"] = ["10.98.0." + n.report["node"]["addr"].rsplit(".", 1)[1]]
        for net in n.report["networks"]:
            if net["probe"]:
                net["probe"]["paths"] = {"10.98.0." + ip.rsplit(".", 1)[1]: seen
                                         for ip, seen in net["probe"]["paths"].items()}
    validate(ssd.swarmwide.report.fleet_to_json(result), "fleet-report")
    assert {p.target for p in ssd.swarmwide.report.probe_pairs(result)} == {"node1", "node2", "node3"}


# --- where --probe may send: the networks' subnets and the swarm's nodes -------------------

def test_a_target_outside_the_network_or_the_swarm_is_not_probed():
    """NetworkDB is fed by other nodes: a lying one lists a task at an address outside the
    network's subnets, and a peer that is no node of the swarm. Neither is sent a packet, and the
    report says so."""
    doc = fixture("28.5-node1")
    for sample in doc["samples"]:
        api = sample["api"]
        ov2 = next(v for k, v in api.items() if k.startswith("GET /networks/") and isinstance(v, dict)
                   and v.get("Name") == "ov2")
        task = next(t for s in ov2["Services"].values() for t in s.get("Tasks") or []
                    if (t.get("Info") or {}).get("Host IP") == NODE2)
        task["EndpointIP"] = "192.0.2.7"  # TEST-NET-1: no overlay's
        ingress = next(v for k, v in api.items() if k.startswith("GET /networks/") and isinstance(v, dict)
                       and v.get("Ingress"))
        ingress["Peers"] = [*ingress["Peers"], {"Name": "stranger", "IP": "198.51.100.9"}]
    result, collector = probed(every_probe_answered, doc)
    targets = {p.target for p in collector.sent}
    assert "192.0.2.7" not in targets and "198.51.100.9" not in targets and NODE2 in targets
    assert any("outside the networks' subnets or the swarm's nodes" in n for n in result.notes), result.notes


def test_the_number_of_probes_is_capped_and_shared_fairly(monkeypatch):
    """Over the cap, every network path, service and node's ports gets a probe before any gets
    a second: not the first networks' whole share and nothing of the rest."""
    full = len(probed(every_probe_answered)[1].sent)
    monkeypatch.setattr(ssd.layers.probe, "MAX_PROBES", 5)
    chosen: list = []
    real = ssd.layers.probe.fair_share
    monkeypatch.setattr(ssd.layers.probe, "fair_share", lambda plan, most: chosen.append(real(plan, most))
                        or chosen[-1])
    result, collector = probed(every_probe_answered)
    assert len(collector.sent) == 5 and [p.probe for p in chosen[-1]] == collector.sent
    assert any(f"5 of {full} probes tried" in n and f"{full - 5} probes not sent" in n
               for n in result.notes), result.notes
    groups = {(p.network, p.what, p.service or p.node_ip) for p in chosen[-1]}
    assert len(groups) == 5, chosen[-1]  # five probes, five different things tested


def planned(network: str, what: str, who: str, n: int) -> list:
    from ssd.kernel.prober import Probe
    return [ssd.layers.probe.PlannedProbe(Probe("tcp", "", f"10.0.0.{i}", 80), network, what, "10.99.0.2",
                                          service=who) for i in range(n)]


def test_fair_share_gives_every_service_its_first_probe_before_anyone_a_second():
    plan = planned("ov1", "backend", "big", 5000) + planned("ov1", "backend", "small", 2) \
        + planned("ov2", "backend", "other", 3)
    chosen = ssd.layers.probe.fair_share(plan, 9)
    assert [p.service for p in chosen[:3]] == ["big", "small", "other"]
    assert sorted(p.service for p in chosen).count("big") == 4 and len(chosen) == 9
    assert ssd.layers.probe.fair_share(plan, 9) == chosen  # the same again: a replay plans the same
    assert len(ssd.layers.probe.fair_share(plan, 10_000)) == len(plan)
