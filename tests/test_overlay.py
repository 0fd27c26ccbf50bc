"""Tier 1: the overlay checks on real 28.5.2 snapshots, healthy and with one fault each.

The fixtures are `ssd ov2 --snapshot -` of node1 (manager) and node2 (worker) of the lab's
3-node swarm, seeded, with a standalone container (`docker run --network ov2`) on node3. Each
fault edits the recorded overlay namespace into what the kernel would hold after it: the rows
are the kernel's own (RTM_NEWNEIGH of the VXLAN device), so the edit removes, re-points or adds
one, as `ip neigh` / `bridge fdb` would.
"""
from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

import ssd.catalog
import ssd.layers.overlay
import ssd.model
import ssd.report
import ssd.views
from recorded import replay as run, check_ids as checks, fixture, OV2_ID

FIXTURES = Path(__file__).parent / "fixtures"
NODE_ADDR = {1: "10.99.0.1", 2: "10.99.0.2"}



def sample(doc: dict) -> dict:
    return doc["samples"][0]


def overlay_ns(doc: dict, net_id: str = OV2_ID) -> dict:
    return sample(doc)["namespaces"][f"/var/run/docker/netns/1-{net_id[:10]}"]


def vxlan(ns: dict) -> dict:
    return next(link for link in ns["links"] if link["kind"] == "vxlan")


def ov2_tasks(doc: dict) -> list[dict]:
    services = sample(doc)["api"][f"GET /networks/{OV2_ID}"]["Services"]
    return [dict(t, service=name) for name, svc in services.items() for t in svc["Tasks"]]


def remote_task(doc: dict, node: int, service: str = "s1") -> dict:
    return next(t for t in ov2_tasks(doc) if t["service"] == service
                and t["Info"]["Host IP"] != NODE_ADDR[node])


def neighbour(ns: dict, ip: str) -> dict:
    return next(r for r in ns["neighbours"] if r["dst"] == ip)


def fdb_row(ns: dict, mac: str) -> dict:
    return next(r for r in ns["fdb"] if r["mac"] == mac and r["self"])


# --- faults, each as the kernel would show it -----------------------------------------------

def _neighbour_deleted(doc: dict, node: int) -> str:
    ns, task = overlay_ns(doc), remote_task(doc, node)
    ns["neighbours"].remove(neighbour(ns, task["EndpointIP"]))
    return task["EndpointIP"]


def _fdb_deleted(doc: dict, node: int) -> str:
    ns, task = overlay_ns(doc), remote_task(doc, node)
    ns["fdb"].remove(fdb_row(ns, neighbour(ns, task["EndpointIP"])["mac"]))
    return task["EndpointIP"]


def _fdb_repointed(doc: dict, node: int) -> str:
    ns, task = overlay_ns(doc), remote_task(doc, node)
    row = fdb_row(ns, neighbour(ns, task["EndpointIP"])["mac"])
    row["dst"] = next(ip for ip in ("10.99.0.1", "10.99.0.2", "10.99.0.3")
                      if ip not in (NODE_ADDR[node], task["Info"]["Host IP"]))
    return task["EndpointIP"]


def _stale_neighbour(doc: dict, node: int) -> str:
    ns = overlay_ns(doc)
    ns["neighbours"].append({"ifindex": vxlan(ns)["index"], "dst": "10.0.1.200",
                             "mac": "02:42:0a:00:01:c8", "permanent": True, "self": False})
    return "10.0.1.200"


def _fdb_to_a_stranger(doc: dict, node: int) -> str:
    ns = overlay_ns(doc)
    ns["fdb"].append({"ifindex": vxlan(ns)["index"], "dst": "10.99.0.77", "mac": "02:42:0a:00:01:c9",
                      "permanent": True, "self": True})
    return "02:42:0a:00:01:c9"


def _wrong_mtu(doc: dict, node: int) -> str:
    vxlan(overlay_ns(doc))["mtu"] = 1500
    return "vxlan0 MTU"


def _namespace_gone(doc: dict, node: int) -> str:
    listing = sample(doc)["lookups"]["netns-dir"]
    listing.remove(f"1-{OV2_ID[:10]}")
    return OV2_ID[:12]


FAULTS = {
    "overlay-neighbor-missing": _neighbour_deleted,
    "overlay-fdb-missing": _fdb_deleted,
    "overlay-fdb-wrong-node": _fdb_repointed,
    "overlay-neighbor-stale": _stale_neighbour,
    "overlay-fdb-stale": _fdb_to_a_stranger,
    "overlay-vxlan-config": _wrong_mtu,
    "overlay-namespace-missing": _namespace_gone,
}


def test_every_overlay_check_has_a_fault_here():
    # overlay-esp-missing, overlay-encryption-rules: the encrypted tests at the end.
    assert set(FAULTS) | {"overlay-esp-missing", "overlay-encryption-rules"} == {
        c for c in ssd.catalog.CHECKS if c.startswith("overlay-")}


@pytest.mark.parametrize("node", [1, 2])
def test_healthy_nodes_are_silent_and_count_what_they_checked(node):
    result = run(fixture(f"28.5-node{node}"))
    assert result.findings == [] and result.not_checked == []
    ov2 = next(n for n in result.networks if n.view.name == "ov2")
    # 12 service tasks, 4 of them local, plus the standalone container on node3.
    assert (ov2.overlay.remote_endpoints, ov2.overlay.remote_nodes) == (9, 2)
    assert ov2.overlay.namespace == f"1-{OV2_ID[:10]}" and ov2.overlay.checked


@pytest.mark.parametrize("node", [1, 2])
@pytest.mark.parametrize("check", sorted(FAULTS))
def test_fault_fires_its_check_and_only_it(check, node):
    doc = fixture(f"28.5-node{node}")
    subject = FAULTS[check](doc, node)
    result = run(doc)
    assert checks(result) == [check], [f.message for f in result.findings]
    (finding,) = result.findings
    assert finding.network == "ov2" and finding.subject == subject
    assert finding.hint and finding.action and finding.layer == "overlay"


def test_finding_names_task_node_and_what_is_there():
    doc = fixture("28.5-node2")
    ip = _fdb_repointed(doc, 2)
    (finding,) = run(doc).findings
    task = remote_task(fixture("28.5-node2"), 2)
    assert task["Name"] in finding.message and task["Info"]["Host IP"] in finding.message
    assert finding.expected == task["Info"]["Host IP"] and finding.actual != finding.expected
    assert finding.service == "s1" and ip in finding.message
    assert finding.namespace == f"1-{OV2_ID[:10]}" and "bridge fdb show" in finding.hint


def test_missing_neighbour_of_a_standalone_container_is_found():
    """Plain containers on attachable networks are in NetworkDB too (Services[""])."""
    doc = fixture("28.5-node1")
    standalone = next(t for t in ov2_tasks(doc) if t["service"] == "")
    ns = overlay_ns(doc)
    ns["neighbours"].remove(neighbour(ns, standalone["EndpointIP"]))
    (finding,) = run(doc).findings
    assert finding.check == "overlay-neighbor-missing" and "standalone" in finding.message


def unlisted_endpoint_on_node3(doc: dict) -> None:
    ns = overlay_ns(doc)
    ns["neighbours"].append({"ifindex": vxlan(ns)["index"], "dst": "10.0.1.201", "mac": "02:42:0a:00:01:c9",
                             "permanent": True, "self": False})
    ns["fdb"].append({"ifindex": vxlan(ns)["index"], "dst": "10.99.0.3", "mac": "02:42:0a:00:01:c9",
                      "permanent": True, "self": True})


def test_a_second_unlisted_endpoint_towards_one_node_is_stale_on_a_manager():
    """One unlisted endpoint per peer is its load balancer; a second one is not explained."""
    doc = fixture("28.5-node1")
    unlisted_endpoint_on_node3(doc)
    assert checks(run(doc)) == ["overlay-neighbor-stale"]


def test_a_task_still_starting_is_programmed_before_it_is_listed():
    """NetworkDB lists a task once it started (or is healthy); the overlay programs it at join.
    A manager finds swarm's task at that address: no finding (seen on 20.10 during updates)."""
    doc = fixture("28.5-node1")
    unlisted_endpoint_on_node3(doc)
    starting = copy.deepcopy(sample(doc)["api"]["GET /tasks"][0])
    starting.update(ID="startingtask0000000000000", DesiredState="running")
    starting["Status"]["State"] = "starting"
    starting["NetworksAttachments"] = [{"Network": {"ID": OV2_ID}, "Addresses": ["10.0.1.201/24"]}]
    sample(doc)["api"]["GET /tasks"].append(starting)
    assert run(doc).findings == []


def test_a_worker_cannot_judge_unlisted_endpoints_of_live_peers():
    doc = fixture("28.5-node2")
    unlisted_endpoint_on_node3(doc)
    result = run(doc)
    assert result.findings == []
    assert any("1 endpoint on other nodes is programmed" in n and "10.0.1.201" in n for n in result.notes)


def test_a_local_endpoint_programmed_as_remote_is_stale():
    doc = fixture("28.5-node2")
    ns = overlay_ns(doc)
    local = next(t for t in ov2_tasks(doc) if t["Info"]["Host IP"] == NODE_ADDR[2])
    ns["neighbours"].append({"ifindex": vxlan(ns)["index"], "dst": local["EndpointIP"],
                             "mac": ssd.layers.overlay.mac_from_ip(local["EndpointIP"]), "permanent": True, "self": False})
    (finding,) = run(doc).findings
    assert finding.check == "overlay-neighbor-stale" and "local endpoint" in finding.message


def test_learned_and_bridge_rows_are_not_programmed_state():
    """The VXLAN device learns (Learning: true) and the bridge keeps its own rows: not stale."""
    doc = fixture("28.5-node2")
    ns = overlay_ns(doc)
    index = vxlan(ns)["index"]
    ns["fdb"] += [{"ifindex": index, "dst": "10.99.0.9", "mac": "02:42:0a:00:01:ca", "permanent": False,
                   "self": True},
                  {"ifindex": index, "dst": None, "mac": "aa:bb:cc:00:00:01", "permanent": True, "self": False}]
    ns["neighbours"].append({"ifindex": index, "dst": "10.0.1.202", "mac": "02:42:0a:00:01:ca",
                             "permanent": False, "self": False})
    assert run(doc).findings == []


def test_vxlan_port_is_checked_on_a_manager_only():
    for node, expected in ((1, ["overlay-vxlan-config"]), (2, [])):
        doc = fixture(f"28.5-node{node}")
        vxlan(overlay_ns(doc))["vxlan"]["port"] = 4790
        assert checks(run(doc)) == expected, node


@pytest.mark.parametrize("change", [
    lambda link: link["vxlan"].update(vni=4200),
    lambda link: link["vxlan"].update(proxy=False),
    lambda link: link.update(up=False),
    lambda link: link.update(master=None),
])
def test_vxlan_device_config(change):
    doc = fixture("28.5-node1")
    change(vxlan(overlay_ns(doc)))
    assert set(checks(run(doc))) == {"overlay-vxlan-config"}


def test_vxlan_mtu_follows_the_network_options():
    view = ssd.model.NetworkView("x", "x", False, False, [], {}, {}, True)
    assert ssd.layers.overlay.vxlan_mtu(view) == 1450
    view.mtu = 9000
    assert ssd.layers.overlay.vxlan_mtu(view) == 8950
    view.mtu, view.encrypted = None, True
    assert ssd.layers.overlay.vxlan_mtu(view) == 1424  # 1450 - 26 ESP bytes, rounded down to a multiple of 4


def test_mac_from_ip_is_libnetworks():
    assert ssd.layers.overlay.mac_from_ip("10.0.1.5") == "02:42:0a:00:01:05"


def test_json_reports_each_networks_overlay():
    doc = fixture("28.5-node2")
    _fdb_deleted(doc, 2)
    report = ssd.report.to_json(run(doc))
    ov2 = next(n for n in report["networks"] if n["name"] == "ov2")
    assert ov2["overlay"] == {"namespace": f"1-{OV2_ID[:10]}", "checked": True, "status": "fail",
                              "remote_endpoints": 9, "remote_nodes": 2}
    assert all(s["status"] == "ok" for s in ov2["services"])  # the load balancers are right
    assert [(f["check"], f["layer"]) for f in report["findings"]] == [("overlay-fdb-missing", "overlay")]
    ingress = next(n for n in report["networks"] if n["name"] == "ingress")
    assert ingress["overlay"]["status"] == "ok"


def test_text_report_has_an_overlay_block():
    doc = fixture("28.5-node2")
    _stale_neighbour(doc, 2)
    text = ssd.report.render_text(run(doc), ssd.report.Painter(False), quiet=False, verbose=False)
    assert f"Verifying overlay for network ov2 (netns 1-{OV2_ID[:10]})" in text
    assert "9 remote endpoints on 2 other nodes... FAIL" in text
    assert "overlay-neighbor-stale: network ov2: permanent neighbour 10.0.1.200" in text
    assert "    layer: overlay (VXLAN), against NetworkDB on this node\n" in text
    assert max(len(line) for line in text.splitlines() if not line.startswith("    next:")) <= 80


def test_snapshot_of_format_1_is_checked_without_the_overlay():
    doc = json.loads((FIXTURES / "snapshot-26.1-node1.json").read_text())
    assert doc["version"] == 1
    result = run(doc)
    assert result.findings == [] and any("format 1" in n for n in result.notes)
    assert all(n.overlay is None for n in result.networks)
    assert all(n["overlay"] is None for n in ssd.report.to_json(result)["networks"])


def test_overlay_namespace_that_vanished_is_not_checked_not_a_fault():
    doc = fixture("28.5-node2")
    path = f"/var/run/docker/netns/1-{OV2_ID[:10]}"
    sample(doc)["namespaces"][path] = {"error": f"namespace {path} does not exist (it may have vanished)"}
    result = run(doc)
    assert result.findings == [] and any("vanished" in p.message for p in result.not_checked)
    assert ssd.report.overall_status(result) == "incomplete"


def test_fixture_is_what_the_tests_assume():
    doc = fixture("28.5-node2")
    assert copy.deepcopy(doc) == doc and sample(doc)["api"]["GET /info"]["Swarm"]["NodeAddr"] == "10.99.0.2"
    assert len([t for t in ov2_tasks(doc) if t["service"] == ""]) == 1
    assert vxlan(overlay_ns(doc))["vxlan"] == {"vni": 4097, "port": 4789, "learning": True, "proxy": True,
                                                "l2miss": True, "l3miss": True}


# --- encrypted overlays: ESP state and policy per remote node ---------------------------------

# libnetwork's forms of the VNI match, the same test on the VXLAN header as iptables-save prints
# it: xt_u32 (drivers/overlay/encryption_u32.go), xt_bpf as Debian's 28.5.2 writes it (read in the
# lab, 2026-12-01: the VNI word shifted right by 8, compared with the VNI), and xt_bpf as moby's
# bpf.go on master writes it (masked, compared with the VNI shifted left by 8).
VNI_MATCH = {
    "u32": lambda vni: f'-m u32 --u32 "0x0>>0x16&0x3c@0xc&0xffffff00={vni << 8:#x}"',
    "bpf-28.5": lambda vni: ('-m bpf --bytecode "7,32 0 0 4294963252,7 0 0 0,64 0 0 4,116 0 0 8,'
                             f'21 1 0 {vni},6 0 0 0,6 0 0 4294967295"'),
    "bpf-master": lambda vni: ('-m bpf --bytecode "6,177 0 0 0,64 0 0 12,84 0 0 4294967040,'
                               f'21 0 1 {vni << 8},6 0 0 0,6 0 0 4294967295"'),
}


def encrypted(node: int, missing: tuple[str, str] | None = None, form: str = "u32") -> dict:
    """The snapshot with ov2 made encrypted: the option, the VXLAN MTU the driver then sets, and
    the IPsec state it programs towards each node with remote endpoints (encryption.go)."""
    doc = fixture(f"28.5-node{node}")
    sample(doc)["api"][f"GET /networks/{OV2_ID}"]["Options"]["encrypted"] = ""
    vxlan(overlay_ns(doc))["mtu"] = 1424
    me = NODE_ADDR[node]
    states, policies = [], []
    for peer in sorted({"10.99.0.1", "10.99.0.2", "10.99.0.3"} - {me}):
        states += [{"src": me, "dst": peer, "spi": 1, "proto": 50}, {"src": peer, "dst": me, "spi": 2, "proto": 50}]
        policies.append({"src": me, "dst": peer, "dport": 4789, "proto": 17, "dir": 1, "mark": 0xD0C4E3})
    if missing == ("state", "out"):
        states = [s for s in states if s["dst"] != "10.99.0.3"]
    elif missing == ("policy", "out"):
        policies = [p for p in policies if p["dst"] != "10.99.0.3"]
    sample(doc)["namespaces"]["xfrm"] = {"error": None, "states": states, "policies": policies}
    vni = int(sample(doc)["api"][f"GET /networks/{OV2_ID}"]["Options"]["com.docker.network.driver.overlay.vxlanid_list"])
    u32 = VNI_MATCH[form](vni)
    rules = {"mangle": f"-A OUTPUT -p udp -m udp --dport 4789 {u32} -j MARK --set-xmark 0xd0c4e3/0xffffffff",
             "filter": f"-A INPUT -p udp -m policy --dir in --pol none -m udp --dport 4789 {u32} -j DROP"}
    for table, rule in rules.items():
        if missing != ("rule", table):
            add_host_rule(doc, table, rule)
    return doc


def add_host_rule(doc: dict, table: str, rule: str) -> None:
    """A rule in the host's recorded iptables-save text, as the engine adds it (encryption.go)."""
    host = sample(doc)["namespaces"]["host"]["iptables"]
    backend = next(b for b, text in host.items() if f"*{table}" in text)
    head, _, tail = host[backend].partition(f"*{table}\n")
    body, _, rest = tail.partition("COMMIT\n")
    host[backend] = f"{head}*{table}\n{body}{rule}\nCOMMIT\n{rest}"


@pytest.mark.parametrize("form", sorted(VNI_MATCH))
@pytest.mark.parametrize("node", [1, 2])
def test_encrypted_overlay_with_its_esp_state_is_silent(node, form):
    assert run(encrypted(node, form=form)).findings == []


@pytest.mark.parametrize("missing,lacking", [(("state", "out"), ["ESP SA out"]),
                                             (("policy", "out"), ["IPsec policy out"])])
def test_encrypted_overlay_without_esp_towards_a_node(missing, lacking):
    (finding,) = run(encrypted(2, missing)).findings
    assert finding.check == "overlay-esp-missing" and finding.subject == "10.99.0.3"
    assert finding.actual == lacking and "10.99.0.3" in finding.message and finding.namespace == "host"


def test_encrypted_overlay_mtu_is_the_drivers():
    doc = encrypted(1)
    vxlan(overlay_ns(doc))["mtu"] = 1450  # what an unencrypted network would have
    assert checks(run(doc)) == ["overlay-vxlan-config"]


def test_esp_not_recorded_or_not_readable_is_not_a_fault():
    doc = encrypted(2)
    del sample(doc)["namespaces"]["xfrm"]
    result = run(doc)
    assert result.findings == [] and any("IPsec" in n for n in result.notes)
    doc = encrypted(2)
    sample(doc)["namespaces"]["xfrm"] = {"error": "cannot read the IPsec (xfrm) state: Protocol not supported"}
    result = run(doc)
    assert result.findings == [] and any("ESP checks skipped" in p.message for p in result.not_checked)


@pytest.mark.parametrize("form", sorted(VNI_MATCH))
@pytest.mark.parametrize("node", [1, 2])
@pytest.mark.parametrize("table, lacking", [("mangle", "mangle OUTPUT MARK 0xd0c4e3"),
                                            ("filter", "filter INPUT DROP of cleartext VXLAN")])
def test_encrypted_overlay_without_its_firewall_rule(node, table, lacking, form):
    """A firewall reload removed one of the two rules the driver writes per VNI."""
    (finding,) = run(encrypted(node, ("rule", table), form)).findings
    assert (finding.check, finding.layer, finding.namespace, finding.network) == (
        "overlay-encryption-rules", "overlay", "host", "ov2")
    assert finding.actual == [lacking] and lacking in finding.message


def test_a_snapshot_without_host_rules_says_the_encryption_rules_were_not_checked():
    doc = encrypted(2)
    for s in doc["samples"]:
        del s["namespaces"]["host"]
    for net in sample(doc)["api"].values():  # nothing published: the host was not read for ingress
        if isinstance(net, dict) and net.get("Ingress"):
            for svc in (net.get("Services") or {}).values():
                svc["Ports"] = []
    result = run(doc)
    assert not [f for f in result.findings if f.check == "overlay-encryption-rules"]
    assert any("holds no host rules" in n for n in result.notes), result.notes


# --- overlays with several subnets, dual-stack overlays (issue 22) -----------------------------

def second_subnet(doc: dict, vni: int = 4200, subnet: str = "10.0.9.0/24") -> None:
    """ov2 created with two --subnet: a second VNI, in IPAM's order."""
    net = sample(doc)["api"][f"GET /networks/{OV2_ID}"]
    net["IPAM"]["Config"].append({"Subnet": subnet, "Gateway": subnet.replace("0/24", "1")})
    net["Options"][ssd.views.VXLAN_ID_OPTION] += f",{vni}"


def test_a_subnet_no_endpoint_uses_yet_needs_no_vxlan_device():
    doc = fixture("28.5-node1")
    second_subnet(doc)
    assert checks(run(doc)) == []


def test_a_subnet_in_use_without_its_vxlan_device_is_found():
    doc = fixture("28.5-node1")
    second_subnet(doc)
    task = remote_task(doc, 1)  # NetworkDB lists an endpoint in the second subnet, on node2
    services = sample(doc)["api"][f"GET /networks/{OV2_ID}"]["Services"]
    services[task["service"]]["Tasks"].append(dict(
        {k: v for k, v in task.items() if k != "service"}, EndpointIP="10.0.9.5", EndpointID="9" * 64,
        Name=task["Name"].rsplit(".", 1)[0] + ".0secondsubnettask00000000"))
    found = run(doc)
    assert "overlay-vxlan-config" in checks(found)
    assert any("VNI" in f.message and f.expected == 4200 for f in found.findings)


def test_a_dual_stack_tasks_ipv6_address_first_is_not_its_networkdb_address():
    """swarm may list a dual-stack task's IPv6 address first; NetworkDB lists its IPv4 one."""
    doc = fixture("28.5-node1")
    for task in sample(doc)["api"]["GET /tasks"]:
        for attachment in task.get("NetworksAttachments") or []:
            attachment["Addresses"].insert(0, "fd00:1::5/64")
    assert checks(run(doc)) == []
    assert ssd.views._ipv4_first(["fd00::1/64"]) == "fd00::1"  # an IPv6-only attachment keeps its address
