"""Tier 2: ssd run as a process, as root, on real namespaces of this kernel and a fake Engine API.

Each fault is injected with the kernel's own tools (iptables, ip) into the namespace where
dockerd would have programmed it. This kernel has no IPVS, so a clean node is "incomplete"
(exit 2) with exactly one line saying so; every fault must still be found (exit 1).
"""
from __future__ import annotations

import json
import os
import subprocess
import threading
import time

import pytest

import ssd.base
import ssd.collect
import ssd.kernel.iptables
import ssd.kernel.namespaces
import ssd.kernel.netlink
import ssd.kernel.overlay
import ssd.kernel.resolver
from fake_engine import FakeEngine
from kernel_node import TASK_NAMESPACES, KernelNode, sh
from schemas import validate
from helpers import one_line

LB = "lb_oc6rqvyvp"
OV2_OVERLAY = "1-oc6rqvyvpk"  # the overlay driver's namespace of ov2
WEB1_NS = "8a5be7db5257"
S1_NS = "096d4a69176a"  # s1.1's sandbox: the first container of ov2 by name, where ssd asks the DNS


def run_json(node: KernelNode, engine: FakeEngine, *args: str) -> tuple[int, dict, str]:
    proc = node.ssd(engine.url, "--settle", "0", "--json", *args)
    assert "Traceback" not in proc.stderr, proc.stderr
    doc = json.loads(proc.stdout)
    validate(doc)  # every live run's document, findings and errors included
    return proc.returncode, doc, proc.stderr


# --- the clean node --------------------------------------------------------------------

def test_clean_node_text(node, engine):
    proc = node.ssd(engine.url, "--settle", "0", "ov2")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stderr.count("\n") == 1 and "no IPVS" in proc.stderr
    out = proc.stdout
    assert "Verifying LB programming for network ov2 (netns lb_oc6rqvyvp)" in out
    assert "Verifying LB programming for network ingress (netns ingress_sbox)" in out
    assert "port 8080/tcp (web)... OK" in out
    assert "FAIL" not in out and "0 inconsistencies" in out
    assert max(len(line) for line in out.splitlines()) <= 80


def test_clean_node_json_contract(node, engine):
    code, doc, _ = run_json(node, engine, "ov2")
    assert code == 2 and doc["status"] == "incomplete" and doc["findings"] == []
    assert set(doc) >= {"ssd_version", "status", "node", "networks", "findings", "errors"}
    assert doc["node"] == {"id": "w50ekqc911kfxxwedx60eeq5h", "hostname": "node1",
                           "engine_version": "20.10.24+dfsg1", "era": "lb-sandbox", "manager": True,
                           "addr": None,  # the recorded /info has no Swarm.NodeAddr...
                           "vteps": ["10.99.0.1"]}  # ...its own endpoints' Host IP says where VXLAN runs
    nets = {n["name"]: n for n in doc["networks"]}
    assert nets["ov2"]["namespace"] == "lb_oc6rqvyvp" and nets["ingress"]["namespace"] == "ingress_sbox"
    s1 = next(s for s in nets["ov2"]["services"] if s["name"] == "s1")
    assert s1 == {"name": "s1", "vip": "10.0.1.2", "fwmark": 258, "status": "error"}
    assert [e["scope"] for e in doc["errors"]] == ["kernel"]


def test_ssd_is_read_only(node, engine):
    """Every namespace's rules (both backends), addresses and links, and the netns folder, are
    byte-identical after ssd ran: healthy, and with a fault it reports."""
    before = node.state()
    for args in (["-v"], ["--json", "--settle", "1"], ["-q", "ov2"]):
        proc = node.ssd(engine.url, "--settle", "0", *args)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert node.state() == before
    FAULTS["vip-alias-missing"](node)
    faulty = node.state()
    assert faulty != before
    assert node.ssd(engine.url, "--settle", "1", "--json").returncode == 1
    assert node.state() == faulty


# --- real faults, each found with its check id ------------------------------------------

def ipt(node, ns, *args):
    sh("iptables-nft", *args, ns=node.host if ns == "host" else node.ns(ns))


FAULTS = {
    "mark-missing": lambda n: ipt(n, LB, "-t", "mangle", "-D", "INPUT", "-d", "10.0.1.2/32", "-j", "MARK",
                                  "--set-mark", "258"),
    "mark-stale": lambda n: ipt(n, LB, "-t", "mangle", "-A", "INPUT", "-d", "10.0.1.99/32", "-j", "MARK",
                                "--set-mark", "300"),
    "mark-conflict": lambda n: ipt(n, "ingress_sbox", "-t", "mangle", "-A", "PREROUTING", "-p", "tcp",
                                   "--dport", "8080", "-j", "MARK", "--set-mark", "300"),
    "vip-alias-missing": lambda n: sh("ip", "addr", "del", "10.0.1.2/32", "dev", "eth0", ns=n.ns(LB)),
    "vip-alias-stale": lambda n: sh("ip", "addr", "add", "10.0.1.99/32", "dev", "eth0", ns=n.ns(LB)),
    "ingress-dnat-missing": lambda n: ipt(n, "host", "-t", "nat", "-D", "DOCKER-INGRESS", "-p", "tcp",
                                          "--dport", "8080", "-j", "DNAT", "--to-destination",
                                          "172.18.0.2:8080"),
    "ingress-dnat-target": lambda n: ipt(n, "host", "-t", "nat", "-R", "DOCKER-INGRESS", "1", "-p", "tcp",
                                         "--dport", "8080", "-j", "DNAT", "--to-destination",
                                         "172.18.0.3:8080"),
    "ingress-dnat-stale": lambda n: ipt(n, "host", "-t", "nat", "-I", "DOCKER-INGRESS", "-p", "udp",
                                        "--dport", "9999", "-j", "DNAT", "--to-destination",
                                        "172.18.0.2:9999"),
    "ingress-filter-missing": lambda n: ipt(n, "host", "-D", "DOCKER-INGRESS", "-p", "tcp", "--dport",
                                            "8080", "-j", "ACCEPT"),
    "ingress-jump-missing": lambda n: ipt(n, "host", "-D", "FORWARD", "-j", "DOCKER-INGRESS"),
    "task-redirect-missing": lambda n: ipt(n, WEB1_NS, "-t", "nat", "-D", "PREROUTING", "-d", "10.0.0.5/32",
                                           "-p", "tcp", "--dport", "8080", "-j", "REDIRECT", "--to-ports",
                                           "80"),
    "iptables-split-brain": lambda n: sh("iptables-legacy", "-t", "filter", "-N", "DOCKER-USER",
                                         ns=n.host),
    "overlay-neighbor-stale": lambda n: sh("ip", "neigh", "add", "10.0.1.200", "lladdr", "02:42:0a:00:01:c8",
                                           "dev", "vxlan0", "nud", "permanent", ns=n.ns(OV2_OVERLAY)),
    "overlay-fdb-stale": lambda n: sh("bridge", "fdb", "add", "02:42:0a:00:01:c9", "dev", "vxlan0", "dst",
                                      "192.168.77.7", "self", "permanent", ns=n.ns(OV2_OVERLAY)),
    "overlay-vxlan-config": lambda n: sh("ip", "link", "set", "vxlan0", "mtu", "1400", ns=n.ns(OV2_OVERLAY)),
    # This node's prerequisites, in the namespace that plays the node's own.
    "ip-forward-off": lambda n: sh("sysctl", "-qw", "net.ipv4.ip_forward=0", ns=n.host),
    "underlay-mtu": lambda n: sh("ip", "link", "set", "ens4", "mtu", "1460", ns=n.host),
    # The embedded DNS: the recorded resolver rules restored for real, a resolver behind them.
    "dns-resolver-rules": lambda n: ipt(n, S1_NS, "-t", "nat", "-D", "DOCKER_OUTPUT", "-d", "127.0.0.11/32",
                                        "-p", "tcp", "-m", "tcp", "--dport", "53", "-j", "DNAT",
                                        "--to-destination", "127.0.0.11:45069"),
    "dns-resolver-silent": lambda n: n.resolvers[S1_NS].stop(),
    "dns-name-missing": lambda n: n.resolvers[S1_NS].records.pop("tasks.web"),
    "dns-answer-stale": lambda n: n.resolvers[S1_NS].records["s1"].append("10.0.1.200"),
    "dns-answer-incomplete": lambda n: n.resolvers[S1_NS].records["tasks.s1"].remove("10.0.1.4"),
}


@pytest.mark.parametrize("check", sorted(FAULTS))
def test_real_fault_is_found(node, engine, check):
    FAULTS[check](node)
    code, doc, stderr = run_json(node, engine, "ov2")
    assert code == 1, (doc, stderr)
    assert doc["status"] == "inconsistent"
    assert sorted({f["check"] for f in doc["findings"]}) == [check], doc["findings"]
    for finding in doc["findings"]:
        assert finding["message"] and finding["hint"] and finding["namespace"]
        assert finding["network"] or check in ("iptables-split-brain", "ip-forward-off")  # node-wide


def test_a_name_forwarded_upstream_is_missing_and_the_rest_still_asked(node, engine):
    """20.10's resolver forwards a name it holds no record of, and the forward may never come
    back: that name is missing, the resolver is not silent, and every other name is judged."""
    node.resolvers[S1_NS].forwarded.add("tasks.web")
    node.resolvers[S1_NS].records["s1"].append("10.0.1.200")  # a stale answer asked after it
    started = time.monotonic()
    code, doc, stderr = run_json(node, engine, "ov2")
    assert code == 1, (doc, stderr)
    assert sorted((f["check"], f["subject"]) for f in doc["findings"]) == [
        ("dns-answer-stale", "s1 10.0.1.200"), ("dns-name-missing", "tasks.web")], doc["findings"]
    missing = next(f for f in doc["findings"] if f["check"] == "dns-name-missing")
    assert "no answer" in missing["message"] and "other names" in missing["message"]
    # Asked together: the unanswered name costs one wait of DNS_TRIES x DNS_TIMEOUT, not one each.
    assert time.monotonic() - started < 2 * ssd.kernel.resolver.DNS_TRIES * ssd.kernel.resolver.DNS_TIMEOUT + 8


def test_a_name_dns_cannot_carry_is_not_asked_and_the_rest_are(node):
    """An alias longer than 63 characters (swarm does not validate aliases): one line, no crash."""
    long_alias = "a" * 70
    with_tasks = ssd.kernel.resolver.ask_resolver(node.ns(S1_NS), [long_alias, "tasks.s1", "s1"])
    assert with_tasks["error"] is None
    assert with_tasks["answers"][long_alias]["error"].startswith("not asked: not a name DNS can carry")
    assert with_tasks["answers"]["s1"] == {"rcode": "NOERROR", "ips": ["10.0.1.2"]}
    assert with_tasks["answers"]["tasks.s1"]["ips"]


def test_failing_service_is_shown_with_its_evidence(node, engine):
    FAULTS["mark-missing"](node)
    proc = node.ssd(engine.url, "--settle", "0", "ov2")
    assert proc.returncode == 1
    assert "service s1... FAIL" in proc.stdout
    assert "  mark-missing: no MARK rule for VIP 10.0.1.2 (mangle INPUT) of service s1" in proc.stdout
    assert "next: nsenter --net=" in proc.stdout
    quiet = node.ssd(engine.url, "--settle", "0", "-q", "ov2")
    assert "service web" not in quiet.stdout and "service s1... FAIL" in quiet.stdout


def test_transient_fault_is_not_reported_after_settling(node, engine):
    FAULTS["mark-missing"](node)

    def heal() -> None:
        time.sleep(1.0)
        ipt(node, LB, "-t", "mangle", "-A", "INPUT", "-d", "10.0.1.2/32", "-j", "MARK", "--set-mark", "258")
    healer = threading.Thread(target=heal)
    healer.start()
    proc = node.ssd(engine.url, "--settle", "4", "--json", "ov2")
    healer.join()
    doc = json.loads(proc.stdout)
    assert proc.returncode == 2 and doc["findings"] == [], doc
    assert any("convergence" in n for n in doc["notes"])


def test_persistent_fault_survives_settling(node, engine):
    FAULTS["vip-alias-missing"](node)
    proc = node.ssd(engine.url, "--settle", "1", "--json", "ov2")
    assert proc.returncode == 1
    assert [f["check"] for f in json.loads(proc.stdout)["findings"]] == ["vip-alias-missing"]


def test_settling_rereads_only_the_namespaces_with_findings(node, engine, tmp_path):
    """The second sample looks again where the first one found something, nowhere else."""
    FAULTS["vip-alias-missing"](node)
    marker = ("-A", "INPUT", "-s", "127.0.0.2/32", "-j", "ACCEPT")

    def change_both() -> None:  # between the samples: in the faulty namespace and in one without
        time.sleep(1.5)
        ipt(node, LB, *marker)
        ipt(node, "host", *marker)
    changer = threading.Thread(target=change_both)
    changer.start()
    snapshot = tmp_path / "settled.json"
    proc = node.ssd(engine.url, "--settle", "3", "--snapshot", str(snapshot), "ov2")
    changer.join()
    assert proc.returncode == 1, proc.stderr
    first, second = (sample["namespaces"] for sample in json.loads(snapshot.read_text())["samples"])
    assert set(first) == set(second)
    lb = node.ns(LB)
    reread = {key for key in first if first[key] != second[key]}
    assert reread == {lb}, reread  # the LB namespace changed and was read again; the host was not
    assert "127.0.0.2/32" in "".join(second[lb]["iptables"].values())
    assert "127.0.0.2/32" not in "".join(second["host"]["iptables"].values())


def test_worker_view_is_weaker_and_says_so(node, engine):
    engine.routes["/info"]["Swarm"]["ControlAvailable"] = False
    for path in ("/services", "/tasks"):
        engine.routes[path] = 503
    code, doc, _ = run_json(node, engine, "ov2")
    assert code == 2 and doc["findings"] == [] and doc["node"]["manager"] is False
    assert any("worker node" in n for n in doc["notes"])
    assert "/services" not in engine.requests


def test_worker_without_the_named_network_says_so(node, engine):
    """A worker lists only the swarm networks it has: a named one it lacks is a note, not an error."""
    engine.routes["/info"]["Swarm"]["ControlAvailable"] = False
    for path in ("/services", "/tasks"):
        engine.routes[path] = 503
    code, doc, stderr = run_json(node, engine, "elsewhere")
    assert "network 'elsewhere' not found" not in stderr and doc["findings"] == []
    assert any("'elsewhere' is not instantiated on this node" in n for n in doc["notes"])
    assert [n["name"] for n in doc["networks"]] == ["ingress"]  # what it has is still checked
    assert code == 2 and "no IPVS" in stderr  # this kernel's own limit, as in every tier-2 run


# --- every expected failure: one line on stderr, exit 2 ---------------------------------

def test_no_docker_socket(node, tmp_path):
    line = one_line(node.ssd(f"unix://{tmp_path}/nothing.sock", "ov2"))
    assert f"no Docker socket at {tmp_path}/nothing.sock: is dockerd running" in line, line


def test_socket_permission_denied(node, engine):
    """A user without rights on the socket: root without CAP_DAC_OVERRIDE, socket mode 000."""
    os.chmod(engine.socket_path, 0)
    wrap = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search"]
    line = one_line(node.ssd(engine.url, "ov2", wrap=wrap))
    assert f"permission denied on {engine.socket_path}: run ssd as root" in line, line


def test_not_in_swarm_mode(node, engine):
    engine.routes["/info"]["Swarm"] = {"LocalNodeState": "inactive"}
    assert "not in swarm mode" in one_line(node.ssd(engine.url, "ov2"))


@pytest.mark.parametrize("name,words", [("nope", "not found"), ("bridge", "not a swarm-scoped")])
def test_bad_network(node, engine, name, words):
    assert words in one_line(node.ssd(engine.url, name))
    code, doc, _ = run_json(node, engine, name)  # --json still prints a verdict that agrees
    assert code == 2 and doc["status"] == "incomplete" and words in doc["errors"][0]["message"]


def test_engine_too_old(node, engine):
    engine.routes["/version"]["Version"] = "1.13.1"
    assert "too old" in one_line(node.ssd(engine.url, "ov2"))


def test_engine_newer_than_known_is_checked_and_flagged(node, engine):
    engine.routes["/version"]["Version"] = "31.0.0"
    # Such an engine jumps into DOCKER-INGRESS from DOCKER-FORWARD (28.0.1+), as ssd's newest model says.
    ipt(node, "host", "-N", "DOCKER-FORWARD")
    ipt(node, "host", "-A", "DOCKER-FORWARD", "-j", "DOCKER-INGRESS")
    code, doc, stderr = run_json(node, engine, "ov2")
    assert code == 2 and "newer than the versions ssd knows" in stderr
    FAULTS["mark-missing"](node)
    code, doc, _ = run_json(node, engine, "ov2")
    assert code == 1 and [f["check"] for f in doc["findings"]] == ["mark-missing"]


def test_namespace_vanished_mid_run(node, engine):
    """dockerd unmounts a namespace before removing its file: ssd finds a plain file."""
    subprocess.run(["umount", node.ns(LB)], check=True)
    node.bound.remove(node.ns(LB))
    code, doc, stderr = run_json(node, engine, "ov2")
    assert code == 2 and "not a network namespace" in stderr
    assert next(n for n in doc["networks"] if n["name"] == "ingress")["services"][0]["status"] == "error"


def test_lb_namespace_missing(node, engine):
    node.remove(LB)
    code, doc, _ = run_json(node, engine, "ov2")
    assert code == 1 and [f["check"] for f in doc["findings"]] == ["lb-namespace-missing"]
    ov2 = next(n for n in doc["networks"] if n["name"] == "ov2")
    assert {s["name"]: s["status"] for s in ov2["services"]} == {"s1": "fail", "web": "fail"}
    proc = node.ssd(engine.url, "--settle", "0", "ov2")
    assert "service s1... FAIL" in proc.stdout and "service s1... OK" not in proc.stdout


def test_overlay_namespace_missing(node, engine):
    node.remove(OV2_OVERLAY)
    code, doc, _ = run_json(node, engine, "ov2")
    assert code == 1 and [f["check"] for f in doc["findings"]] == ["overlay-namespace-missing"]
    ov2 = next(n for n in doc["networks"] if n["name"] == "ov2")
    assert ov2["overlay"]["status"] == "fail" and ov2["overlay"]["namespace"] is None


def test_overlay_with_another_vni_is_found(node, engine):
    """The VXLAN device recreated with a VNI the network does not own (a second network's)."""
    for ifname in ("vxlan0", "br0"):
        sh("ip", "link", "del", ifname, ns=node.ns(OV2_OVERLAY))
    node.create_overlay(OV2_OVERLAY, vni="4200")
    code, doc, _ = run_json(node, engine, "ov2")
    assert code == 1 and {f["check"] for f in doc["findings"]} == {"overlay-vxlan-config"}
    assert [f["actual"] for f in doc["findings"]] == [[4200], 4200]  # 4097 absent; 4200 foreign


def test_overlay_read_as_iproute2_reads_it(node):
    """ssd's rtnetlink reader of VXLAN devices, neighbours and FDB against iproute2's JSON."""
    import ssd
    ns = node.ns(OV2_OVERLAY)
    for i in range(3):
        ip, mac = f"10.0.1.{50 + i}", f"02:42:0a:00:01:{50 + i:02x}"
        sh("ip", "neigh", "add", ip, "lladdr", mac, "dev", "vxlan0", "nud", "permanent", ns=ns)
        sh("bridge", "fdb", "add", mac, "dev", "vxlan0", "dst", f"192.168.9.{i + 1}", "self", "permanent", ns=ns)
    raw = ssd.kernel.overlay.read_overlay_namespace(ns)
    assert raw["error"] is None
    links = {x["ifname"]: x for x in json.loads(sh("ip", "-j", "-d", "link", "show", ns=ns))}
    for link in raw["links"]:
        ref = links[link["name"]]
        assert (link["index"], link["mtu"], link["up"]) == (ref["ifindex"], ref["mtu"], "UP" in ref["flags"])
        assert link["kind"] == ref.get("linkinfo", {}).get("info_kind")
        if link["kind"] == "vxlan":
            data = ref["linkinfo"]["info_data"]
            assert link["vxlan"] == {"vni": data["id"], "port": data["port"], "learning": data["learning"],
                                     "proxy": data["proxy"], "l2miss": data["l2miss"], "l3miss": data["l3miss"]}
            assert links[ref["master"]]["ifindex"] == link["master"]
    neigh = {(x["dst"], x["lladdr"], "PERMANENT" in x["state"])
             for x in json.loads(sh("ip", "-j", "neigh", "show", "dev", "vxlan0", ns=ns))}
    assert {(r["dst"], r["mac"], r["permanent"]) for r in raw["neighbours"]} == neigh and len(neigh) == 3
    fdb = {(x["mac"], x.get("dst"), "permanent" in x.get("state", ""), "self" in x.get("flags", []))
           for x in json.loads(sh("bridge", "-j", "fdb", "show", "dev", "vxlan0", ns=ns))}
    assert {(r["mac"], r["dst"], r["permanent"], r["self"]) for r in raw["fdb"]} == fdb
    assert sum(1 for r in raw["fdb"] if r["self"] and r["dst"]) == 3


@pytest.mark.parametrize("state", ["missing", "empty"])
def test_namespaces_not_visible_is_not_checked_not_a_fault(node, engine, tmp_path, state):
    """The container form run without -v /var/run/docker/netns, or a wrong --exec-root."""
    root = tmp_path / "elsewhere"
    if state == "empty":
        (root / "netns").mkdir(parents=True)
    for args in ((), ("--json",)):
        proc = node.ssd(engine.url, "--exec-root", str(root), "--settle", "0", *args, "ov2")
        line = one_line(proc)
        assert "/var/run/docker/netns:ro,rslave" in line and "--exec-root" in line
        assert f"netns {'does not exist' if state == 'missing' else 'is empty'}" in line
    doc = json.loads(proc.stdout)
    assert doc["status"] == "incomplete" and doc["findings"] == []


def test_nftables_firewall_backend_is_not_checked_not_a_cascade(node, engine):
    engine.routes["/info"]["FirewallBackend"] = {"Driver": "nftables"}
    FAULTS["mark-missing"](node)  # what it cannot vouch for, it does not report either
    proc = node.ssd(engine.url, "--settle", "0", "--json", "ov2")
    assert "nftables firewall backend" in one_line(proc)
    assert json.loads(proc.stdout)["findings"] == []


def test_no_iptables_binary(node, engine):
    wrap = ["unshare", "--mount", "--propagation", "private", "sh", "-c",
            'mount -t tmpfs none /usr/sbin && exec "$@"', "sh"]
    proc = node.ssd(engine.url, "--settle", "0", "ov2", wrap=wrap)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "no iptables-save binary found" in proc.stderr


def test_default_checks_instantiated_networks_only(node, engine):
    """A manager also lists swarm networks with no task here: named, they get a note; by default, nothing."""
    engine.routes["/networks"].append({"Id": "zzz111", "Name": "idle", "Driver": "overlay", "Scope": "swarm"})
    engine.routes["/networks/zzz111"] = {"Name": "idle", "Id": "zzz111", "Scope": "swarm", "Driver": "overlay",
                                         "Containers": None, "Ingress": False, "IPAM": {"Config": []}}
    code, doc, _ = run_json(node, engine)
    assert [n["name"] for n in doc["networks"]] == ["ingress", "ov2"] and code == 2
    proc = node.ssd(engine.url, "--settle", "0", "idle")
    assert "not instantiated on this node" in proc.stdout and proc.returncode == 2


def test_addresses_read_as_pyroute2_reads_them(node):
    """ssd's rtnetlink reader against pyroute2's, in every namespace of the recorded node."""
    from pyroute2 import IPRoute

    import ssd
    from kernel_node import LB_NAMESPACES, TASK_NAMESPACES
    sh("ip", "addr", "add", "10.0.1.200/32", "dev", "lo", ns=node.ns(LB))  # a second alias, elsewhere
    for name in LB_NAMESPACES + TASK_NAMESPACES:
        with ssd.kernel.namespaces.entered_netns(node.ns(name)):
            lean = ssd.kernel.netlink.read_addresses()
            with IPRoute() as ipr:
                names = {link["index"]: link.get_attr("IFLA_IFNAME") for link in ipr.get_links()}
                reference: dict[str, list] = {}
                for addr in ipr.get_addr(family=ssd.base.AF_INET):
                    ip = addr.get_attr("IFA_LOCAL") or addr.get_attr("IFA_ADDRESS")
                    reference.setdefault(names[addr["index"]], []).append((ip, addr["prefixlen"]))
        assert lean == reference and len(lean) >= 2, (name, lean, reference)
        if name == LB:
            assert ("10.0.1.200", 32) in lean["lo"]


def test_nagios_partly_checked_is_warning_and_a_fault_critical(node, engine):
    """No IPVS in this kernel: the rest was checked and fine (WARNING, 1); a fault is CRITICAL (2)."""
    proc = node.ssd(engine.url, "--nagios", "ov2")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert proc.stdout.startswith("SSD WARNING - node ") and "not checked: " in proc.stdout
    assert proc.stdout.count("\n") == 1 and "not_checked=" in proc.stdout
    FAULTS["vip-alias-missing"](node)
    proc = node.ssd(engine.url, "--nagios", "--settle", "0", "ov2")
    assert proc.returncode == 2 and proc.stdout.startswith("SSD CRITICAL - 1 inconsistency on node ")
    assert "vip-alias-missing" in proc.stdout


def test_ipsec_policies_read_as_the_kernel_holds_them(node):
    """The xfrm reader on real policies (this kernel has no ESP, so SAs are proven in the lab)."""
    import ssd
    for i, peer in enumerate(("10.99.0.2", "10.99.0.3")):
        sh("ip", "xfrm", "policy", "add", "src", "10.99.0.1/32", "dst", f"{peer}/32", "proto", "udp", "dport",
           "4789", "dir", "out", "mark", "0xd0c4e3", "mask", "0xffffffff", "tmpl", "src", "10.99.0.1", "dst",
           peer, "proto", "esp", "spi", hex(0x100 + i), "reqid", "13681891", "mode", "transport", ns=node.host)
    sh("ip", "xfrm", "policy", "add", "src", "10.99.0.1/32", "dst", "10.99.0.4/32", "dir", "in", ns=node.host)
    with ssd.kernel.namespaces.entered_netns(node.host):
        raw = ssd.kernel.overlay.read_xfrm()
    assert raw["error"] is None and raw["states"] == []
    assert sorted(raw["policies"], key=lambda p: p["dst"]) == [
        {"src": "10.99.0.1", "dst": "10.99.0.2", "dport": 4789, "proto": 17, "dir": 1, "mark": 0xD0C4E3},
        {"src": "10.99.0.1", "dst": "10.99.0.3", "dport": 4789, "proto": 17, "dir": 1, "mark": 0xD0C4E3},
        {"src": "10.99.0.1", "dst": "10.99.0.4", "dport": 0, "proto": 0, "dir": 0, "mark": None}]


# --- the read-ahead: the namespaces read by a child while the API is read -----------------

def test_read_ahead_delivers_what_a_direct_read_finds(node):
    """The child runs the same readers: its results, through the pipe, equal a read made here."""
    jobs = [("ns", node.ns(LB), True), ("ns", node.ns("ingress_sbox"), True),
            ("overlay", node.ns(OV2_OVERLAY), False), ("ns", node.ns(WEB1_NS), False)]
    backends = ssd.kernel.iptables.iptables_backends()
    ahead = ssd.collect.ReadAhead(jobs, backends)  # two children, two jobs each
    try:
        for kind, path, want_ipvs in reversed(jobs):  # taken in another order than read
            got = ahead.take(kind, path, want_ipvs)
            direct = (ssd.kernel.overlay.read_overlay_namespace(path) if kind == "overlay"
                      else ssd.kernel.namespaces.read_namespace(path, backends, want_ipvs))
            assert got == direct and got["error"] is None, path
        assert ahead.take("ns", node.ns(S1_NS), False) is None  # not one of its jobs: read here
    finally:
        ahead.close()


def test_read_ahead_lost_child_falls_back_and_leaves_no_process(node):
    """A child that dies before it delivers leaves the caller to read; close() stops a child
    still at work on jobs the run no longer needs, and reaps it."""
    jobs = [("ns", node.ns(LB), True)] + [("ns", node.ns(ns), False) for ns in TASK_NAMESPACES]
    ahead = ssd.collect.ReadAhead(jobs, ssd.kernel.iptables.iptables_backends(), workers=1)
    os.kill(ahead.pids[0], 9)
    assert ahead.take("ns", node.ns(LB), True) in (None, ssd.kernel.namespaces.read_namespace(node.ns(LB), ssd.kernel.iptables.iptables_backends()))
    assert ahead.take("ns", node.ns(TASK_NAMESPACES[-1]), False) is None  # nothing more comes
    ahead.close()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and os.path.exists(f"/proc/{ahead.pids[0]}"):
        time.sleep(0.05)
    assert not os.path.exists(f"/proc/{ahead.pids[0]}")  # killed and reaped: no zombie left
    busy = ssd.collect.ReadAhead(jobs * 20, ssd.kernel.iptables.iptables_backends())
    assert len(busy.pids) == 2
    busy.close()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(os.path.exists(f"/proc/{pid}") for pid in busy.pids):
        time.sleep(0.05)
    assert not any(os.path.exists(f"/proc/{pid}") for pid in busy.pids)


def test_read_ahead_plans_the_namespaces_the_run_reads(node, engine, monkeypatch):
    """From the API's network list: each network's load balancer and newest overlay namespace,
    and the host; nothing for a network with no namespace here."""
    monkeypatch.setattr(ssd.collect.threading, "active_count", lambda: 1)  # the fake engine's thread
    collector = ssd.collect.Collector(object(), str(node.exec_root))  # an engine it never calls
    networks = [{"Id": n["Id"], "Ingress": n.get("Ingress", False)} for n in engine.routes["/networks"]]
    collector.read_ahead([*networks, {"Id": "zzzzzzzzzzzz", "Ingress": False}], lb_named=True)
    try:
        assert collector.ahead is not None
        assert collector.ahead.pending == {("ns", node.ns(LB), True), ("ns", node.ns("ingress_sbox"), True),
                                           ("overlay", node.ns(OV2_OVERLAY), False),
                                           ("overlay", node.ns("1-vilwkwmrxy"), False), ("ns", "", False)}
    finally:
        collector.end_read_ahead()
    (node.netns_dir / "0-oc6rqvyvpk").write_text("")  # an older epoch's leftover: not the one read
    everything = ssd.collect.start_read_ahead(str(node.netns_dir), None)  # a run that names no network
    try:
        assert everything is not None
        assert everything.pending == {("ns", node.ns(LB), True), ("ns", node.ns("ingress_sbox"), True),
                                      ("overlay", node.ns(OV2_OVERLAY), False),
                                      ("overlay", node.ns("1-vilwkwmrxy"), False), ("ns", "", False)}
    finally:
        everything.close()
        (node.netns_dir / "0-oc6rqvyvpk").unlink()
    assert len(everything.pids) == 1  # one reader beside the run (two slowed the run itself)


def test_no_read_ahead_on_one_core(node, monkeypatch):
    """A child on the only core takes turns with the run: no gain measured, so none started."""
    monkeypatch.setattr(ssd.collect.threading, "active_count", lambda: 1)  # the fake engine's thread
    monkeypatch.setattr(ssd.collect.os, "sched_getaffinity", lambda pid: {0})
    assert ssd.collect.start_read_ahead(str(node.netns_dir), None) is None
    monkeypatch.setattr(ssd.collect.os, "sched_getaffinity", lambda pid: {0, 1})
    two = ssd.collect.start_read_ahead(str(node.netns_dir), None)
    assert two is not None
    two.close()


def test_read_ahead_forks_every_child_before_any_thread(node, monkeypatch):
    """A fork copies only the calling thread (Python 3.12+ warns on every such fork): each
    child is forked while this process has no thread of the read-ahead's yet."""
    threads_at_fork = []
    real_fork = os.fork

    def fork() -> int:
        threads_at_fork.append(threading.active_count())
        return real_fork()
    monkeypatch.setattr(ssd.collect.os, "fork", fork)
    before = threading.active_count()
    jobs = [("ns", node.ns(LB), True), ("ns", node.ns("ingress_sbox"), True), ("ns", "", False)]
    ahead = ssd.collect.ReadAhead(jobs, ssd.kernel.iptables.iptables_backends(), workers=3)
    try:
        assert threads_at_fork == [before] * 3
        assert ahead.take("ns", node.ns(LB), True)["error"] is None
    finally:
        ahead.close()


@pytest.mark.parametrize("networks", [["ov2"], []], ids=["named", "all"])
def test_a_run_with_and_without_read_ahead_says_the_same(node, engine, networks):
    FAULTS["vip-alias-missing"](node)
    with_it = run_json(node, engine, *networks)
    proc = node.ssd(engine.url, "--settle", "0", "--json", *networks, env={"SSD_NO_READ_AHEAD": "1"})
    without = (proc.returncode, json.loads(proc.stdout), proc.stderr)
    assert with_it[0] == without[0] == 1
    assert with_it[1]["findings"] == without[1]["findings"] and with_it[1]["networks"] == without[1]["networks"]
    assert with_it[1]["findings"] and with_it[1]["networks"]
