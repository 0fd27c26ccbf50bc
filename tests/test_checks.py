"""Tier 1: every check on the real 20.10.24 recording, healthy and with one fault each."""
from __future__ import annotations

import ast
import copy
from pathlib import Path

import pytest

import ssd.base
import ssd.catalog
import ssd.kernel.iptables
import ssd.kernel.namespaces
import ssd.layers.lb
import ssd.model
import ssd.report
import ssd.views
from recorded import (MODEL, SANDBOX_OF, datapath, host_datapath, network_json, network_view,
                      services_json, tasks_json)

OV2_NS = "lb_oc6rqvyvp"
INGRESS_NS = "ingress_sbox"
WEB_TASK_CONTAINERS = ("54be001bf869e7c611f9fd2f5a5989952187e76ed83c58765d383728635d7bf3",
                       "e4fc19bcd615b45d1f48e572674bbd2544ca25cadc12be1e0ae92bdcfdc2e40c")


class Node:
    """One node's views and datapaths, as recorded, for checks to run on."""

    def __init__(self, manager: bool = True) -> None:
        self.ov2 = network_view("ov2", manager)
        self.ingress = network_view("ingress", manager)
        self.lb = datapath(OV2_NS)
        self.sbox = datapath(INGRESS_NS)
        self.host = host_datapath()
        self.tasks = {cid: datapath(SANDBOX_OF[cid[:12]]) for cid in WEB_TASK_CONTAINERS}
        self.swarm_tasks = ssd.views.build_swarm_tasks(tasks_json()) if manager else None
        self.model = MODEL

    def state(self) -> ssd.model.NodeState:
        """What run_once would collect from this node, for the same runner it uses."""
        lbs = [ssd.model.LoadBalancer(view, dp, view.lb_endpoint.ip, expect_aliases=not self.model.per_container)
               for view, dp in ((self.ov2, self.lb), (self.ingress, self.sbox))]
        return ssd.model.NodeState(self.model, "/var/run/docker/netns", [self.ov2, self.ingress], lbs,
                             swarm_tasks=self.swarm_tasks, ingress=self.ingress, host=self.host,
                             gw_ip="172.18.0.2", task_datapaths=self.tasks)

    def findings(self) -> list[ssd.model.Finding]:
        return ssd.catalog.run_checks(self.state())


def checks(findings: list[ssd.model.Finding]) -> list[str]:
    return sorted(f.check for f in findings)


def rules(dp: ssd.model.Datapath, table: str, chain: str) -> list[ssd.model.Rule]:
    return dp.rules.setdefault(table, {}).setdefault(chain, [])


def add_rule(dp: ssd.model.Datapath, table: str, line: str) -> None:
    rule = ssd.kernel.iptables.parse_rule(table, line)
    rules(dp, table, rule.chain).append(rule)


def drop_rules(dp: ssd.model.Datapath, table: str, chain: str, contains: str) -> None:
    kept = [r for r in rules(dp, table, chain) if contains not in r.text]
    assert len(kept) < len(rules(dp, table, chain)), f"no rule with {contains!r} to drop"
    dp.rules[table][chain] = kept


def ipvs_service(dp: ssd.model.Datapath, mark: int) -> ssd.model.IpvsService:
    return next(s for s in dp.ipvs if s.fwmark == mark)


def dest(dp: ssd.model.Datapath, mark: int, ip: str) -> ssd.model.IpvsDest:
    return next(d for d in ipvs_service(dp, mark).dests if d.address == ip)


# --- the healthy recording: every check stays silent -------------------------------------

def test_recorded_healthy_node_has_no_findings():
    assert Node().findings() == []


def test_recorded_healthy_worker_has_no_findings():
    assert Node(manager=False).findings() == []


def test_recording_is_what_the_checks_expect():
    """Guard the baseline itself: the recording holds what the fault tests take away."""
    node = Node()
    assert node.ov2.services["s1"].fwmark == 258 and node.ov2.services["web"].fwmark == 257
    assert node.ingress.services["web"].ports == [ssd.model.PublishedPort(8080, 80, "tcp")]
    assert len(ipvs_service(node.lb, 258).dests) == 3
    assert node.lb.addresses["eth0"] == [("10.0.1.6", 24), ("10.0.1.7", 32), ("10.0.1.2", 32)]


# --- one fault each: (check id, how to break the recorded node) -----------------------------

def _wrong_mark(node: Node) -> None:
    drop_rules(node.lb, "mangle", "INPUT", "10.0.1.2/32")
    add_rule(node.lb, "mangle", "-A INPUT -d 10.0.1.2/32 -j MARK --set-xmark 0x103/0xffffffff")


def _shared_fwmark(node: Node) -> None:
    """The engine gave web on ingress the mark of s1 on ov2 and programmed ingress_sbox so."""
    node.ingress.services["web"].fwmark = 258
    ipvs_service(node.sbox, 256).fwmark = 258
    for rule in rules(node.sbox, "mangle", "PREROUTING") + rules(node.sbox, "mangle", "INPUT"):
        rule.opts["--set-xmark"] = "0x102/0xffffffff"


def _foreign_service_dest(node: Node) -> None:
    ipvs_service(node.lb, 258).dests.append(ssd.model.IpvsDest("10.0.1.8", 0, 1, "Masq"))


FAULTS = {
    "fwmark-duplicate": _shared_fwmark,
    "ipvs-service-missing": lambda n: n.lb.ipvs.remove(ipvs_service(n.lb, 258)),
    "ipvs-service-stale": lambda n: n.lb.ipvs.append(
        ssd.model.IpvsService(2, 999, 0, None, 0, "rr", 2, 0, [ssd.model.IpvsDest("10.0.1.50", 0, 1, "Masq")])),
    "ipvs-service-config": lambda n: setattr(ipvs_service(n.lb, 258), "scheduler", "wlc"),
    "ipvs-backend-missing": lambda n: ipvs_service(n.lb, 258).dests.pop(0),
    "ipvs-backend-stale": _foreign_service_dest,
    "ipvs-backend-weight": lambda n: setattr(dest(n.lb, 258, "10.0.1.4"), "weight", 0),
    "ipvs-backend-forwarding": lambda n: setattr(dest(n.sbox, 256, "10.0.0.4"), "forwarding", "Route"),
    "mark-missing": lambda n: drop_rules(n.lb, "mangle", "INPUT", "10.0.1.2/32"),
    "mark-stale": lambda n: add_rule(n.lb, "mangle",
                                     "-A INPUT -d 10.0.1.99/32 -j MARK --set-xmark 0x120/0xffffffff"),
    "mark-conflict": _wrong_mark,
    "vip-alias-missing": lambda n: n.lb.addresses["eth0"].remove(("10.0.1.2", 32)),
    "vip-alias-stale": lambda n: n.lb.addresses["eth0"].append(("10.0.1.99", 32)),
    "snat-missing": lambda n: drop_rules(n.lb, "nat", "POSTROUTING", "--ipvs"),
    "sysctl": lambda n: n.sbox.sysctls.update(conn_reuse_mode=1),
    "ingress-dnat-missing": lambda n: drop_rules(n.host, "nat", "DOCKER-INGRESS", "DNAT"),
    "ingress-dnat-stale": lambda n: add_rule(
        n.host, "nat", "-A DOCKER-INGRESS -p udp -m udp --dport 5353 -j DNAT --to-destination 172.18.0.2:5353"),
    "ingress-dnat-target": lambda n: (drop_rules(n.host, "nat", "DOCKER-INGRESS", "DNAT"), add_rule(
        n.host, "nat", "-A DOCKER-INGRESS -p tcp -m tcp --dport 8080 -j DNAT --to-destination 172.18.0.9:8080")),
    "ingress-filter-missing": lambda n: drop_rules(n.host, "filter", "DOCKER-INGRESS", "--sport 8080"),
    "ingress-jump-missing": lambda n: drop_rules(n.host, "filter", "FORWARD", "DOCKER-INGRESS"),
    "task-redirect-missing": lambda n: drop_rules(n.tasks[WEB_TASK_CONTAINERS[0]], "nat", "PREROUTING",
                                                  "REDIRECT"),
    "iptables-split-brain": lambda n: setattr(n.host, "backends_with_docker_chains", ["nf_tables", "legacy"]),
}


@pytest.mark.parametrize("check", sorted(FAULTS))
def test_fault_fires_its_check_and_only_it(check):
    node = Node()
    FAULTS[check](node)
    found = node.findings()
    assert checks(found) == [check], [f.message for f in found]
    finding = found[0]
    assert finding.message and finding.hint
    assert check in ssd.catalog.CHECKS


def test_every_finding_says_which_layer_disagrees():
    node = Node()
    FAULTS["mark-missing"](node)
    _shared_fwmark(node)
    layers = {f.check: f.to_json()["layer"] for f in node.findings()}
    assert layers["mark-missing"] == "kernel" and layers["fwmark-duplicate"] == "networkdb"
    assert {i.layer for i in ssd.catalog.CHECKS.values()} == {"kernel", "networkdb", "overlay", "dns", "host", "probe"}


def asserted_ids(source: str) -> set[str]:
    """The strings a module's tests assert are there: constants inside an assert statement, not
    on the far side of `not in` or `!=` (a mention in a comment, a docstring, a fixture or a
    negative assertion is no fault test); and the keys of its FAULTS table when a test of its
    runs every entry (parametrized over FAULTS) and asserts what fired."""
    found = set()
    tree = ast.parse(source)
    if "sorted(FAULTS)" in source and "assert checks(" in source:
        for node in tree.body:
            if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "FAULTS" for t in node.targets) \
                    and isinstance(node.value, ast.Dict):
                found |= {k.value for k in node.value.keys if isinstance(k, ast.Constant)}
    for node in ast.walk(tree):
        if not isinstance(node, ast.Assert):
            continue
        negated = set()
        for cmp in ast.walk(node.test):
            if isinstance(cmp, ast.Compare) and any(isinstance(op, (ast.NotIn, ast.NotEq)) for op in cmp.ops):
                negated |= {id(n) for part in [cmp.left, *cmp.comparators] for n in ast.walk(part)}
        found |= {n.value for n in ast.walk(node.test)
                  if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in negated}
    return found


def test_every_check_id_has_a_fault_test():
    """The ids FAULTS does not break here are broken by name in another module, which asserts
    them: the overlay in test_overlay.py, swarm against NetworkDB in test_orchestrator.py, the
    embedded DNS in test_dns.py, real deployments in test_deployments.py, the probes in
    test_probe.py, lb-namespace-missing and the ingress rules in tier 2."""
    here = Path(__file__).resolve()
    asserted = set().union(*(asserted_ids(p.read_text()) for p in here.parent.glob("test_*.py") if p != here))
    untested = [c for c in ssd.catalog.CHECKS if c not in FAULTS and c not in asserted]
    assert untested == []


def test_a_mention_is_no_fault_test():
    source = '''
"""mark-stale is tested elsewhere"""
FAULTS = {"vip-alias-stale": None}
def test_one():
    assert "sysctl" not in found and checks(x) != ["snat-missing"]
    assert checks(y) == ["mark-missing"]
'''
    assert asserted_ids(source) == {"mark-missing"}
    table = source.replace("def test_one", "@pytest.mark.parametrize('c', sorted(FAULTS))\ndef test_two(c):\n"
                                           "    assert checks(run(c)) == [c]\ndef test_one")
    assert asserted_ids(table) == {"mark-missing", "vip-alias-stale"}


# --- what each finding says, and the near misses that must stay silent -------------------

def test_stale_backend_names_the_service_it_belongs_to():
    node = Node()
    _foreign_service_dest(node)
    (finding,) = node.findings()
    assert finding.service == "s1" and finding.subject == "10.0.1.8"
    assert "task of service web" in finding.message


def test_unknown_stale_backend_says_it_is_no_task():
    node = Node()
    ipvs_service(node.lb, 258).dests.append(ssd.model.IpvsDest("10.0.1.77", 0, 1, "Masq"))
    (finding,) = node.findings()
    assert "no task of this network" in finding.message


def test_missing_backend_names_task_and_fwmark():
    node = Node()
    ipvs_service(node.lb, 258).dests = [d for d in ipvs_service(node.lb, 258).dests
                                        if d.address != "10.0.1.5"]
    (finding,) = node.findings()
    assert finding.check == "ipvs-backend-missing"
    assert "s1.3.yjkyy3stitq3q71mnmjr5c9lh (10.0.1.5)" in finding.message
    assert "FWM 258" in finding.message and finding.namespace == OV2_NS and finding.network == "ov2"


def set_every_dest(dps: list[ssd.model.Datapath], **values) -> None:
    for svc in (s for dp in dps for s in dp.ipvs):
        for d in svc.dests:
            for name, value in values.items():
                setattr(d, name, value)


def stopping_node() -> Node:
    """Swarm is stopping every task; the engine has set every destination to weight 0."""
    node = Node()
    node.swarm_tasks = ssd.views.build_swarm_tasks(tasks_json(desired="shutdown", state="running"))
    set_every_dest([node.lb, node.sbox], weight=0)
    return node


def test_weight_zero_for_a_task_swarm_is_stopping_is_silent():
    assert stopping_node().findings() == []


def test_weight_one_for_a_task_swarm_is_stopping_fires():
    node = stopping_node()
    dest(node.lb, 258, "10.0.1.3").weight = 1
    (finding,) = node.findings()
    assert finding.check == "ipvs-backend-weight" and finding.expected == 0 and finding.actual == 1


def test_weight_zero_on_a_worker_is_tolerated():
    node = Node(manager=False)
    dest(node.lb, 258, "10.0.1.4").weight = 0
    assert node.findings() == []


def test_odd_weight_fires_even_on_a_worker():
    node = Node(manager=False)
    dest(node.lb, 258, "10.0.1.4").weight = 5
    assert checks(node.findings()) == ["ipvs-backend-weight"]


def test_route_forwarding_is_right_on_a_dsr_network():
    node = Node()
    node.ov2.dsr = True
    drop_rules(node.lb, "nat", "POSTROUTING", "--ipvs")  # DSR networks have no SNAT rule
    node.lb.sysctls.pop("conntrack")                      # nor the conntrack sysctl
    set_every_dest([node.lb], forwarding="Route")
    assert node.findings() == []
    dest(node.lb, 258, "10.0.1.4").forwarding = "Masq"
    assert checks(node.findings()) == ["ipvs-backend-forwarding"]


def test_duplicated_mark_rule_is_a_conflict():
    node = Node()
    add_rule(node.lb, "mangle", "-A INPUT -d 10.0.1.2/32 -j MARK --set-xmark 0x102/0xffffffff")
    (finding,) = node.findings()
    assert finding.check == "mark-conflict" and len(finding.actual) == 2


def test_second_mark_rule_for_an_ingress_port_is_a_conflict():
    node = Node()
    add_rule(node.sbox, "mangle", "-A PREROUTING -p tcp -m tcp --dport 8080 -j MARK --set-xmark 0x150/0xffffffff")
    (finding,) = node.findings()
    assert finding.check == "mark-conflict" and finding.subject == "8080/tcp"


def test_mark_without_mask_is_accepted():
    """Newer iptables may print --set-xmark 0x102 (no all-ones mask) or --set-mark."""
    node = Node()
    drop_rules(node.lb, "mangle", "INPUT", "10.0.1.2/32")
    add_rule(node.lb, "mangle", "-A INPUT -d 10.0.1.2/32 -j MARK --set-xmark 0x102")
    drop_rules(node.lb, "mangle", "INPUT", "10.0.1.7/32")
    add_rule(node.lb, "mangle", "-A INPUT -d 10.0.1.7/32 -j MARK --set-mark 257")
    assert node.findings() == []


def test_ingress_mark_for_another_protocol_is_stale_on_a_manager():
    node = Node()
    add_rule(node.sbox, "mangle", "-A PREROUTING -p udp -m udp --dport 8080 -j MARK --set-xmark 0x100/0xffffffff")
    assert checks(node.findings()) == ["mark-stale"]


def test_worker_accepts_any_protocol_for_published_ports():
    node = Node(manager=False)
    assert node.ingress.services["web"].ports == [ssd.model.PublishedPort(8080, 80, None)]
    drop_rules(node.host, "nat", "DOCKER-INGRESS", "DNAT")
    add_rule(node.host, "nat", "-A DOCKER-INGRESS -p udp -m udp --dport 8080 -j DNAT --to-destination 172.18.0.2:8080")
    assert node.findings() == []


def test_dnsrr_service_is_skipped():
    node = Node()
    node.ov2.services["s1"].vip = None
    node.lb.ipvs.remove(ipvs_service(node.lb, 258))
    drop_rules(node.lb, "mangle", "INPUT", "10.0.1.2/32")
    node.lb.addresses["eth0"].remove(("10.0.1.2", 32))
    assert node.findings() == []


def test_fwmark_zero_is_reported_as_missing_binding():
    node = Node()
    node.ov2.services["s1"].fwmark = 0
    node.lb.ipvs.remove(ipvs_service(node.lb, 258))
    drop_rules(node.lb, "mangle", "INPUT", "10.0.1.2/32")
    found = node.findings()
    assert checks(found) == ["ipvs-service-missing"] and "LocalLBIndex 0" in found[0].message


def test_no_ipvs_in_kernel_skips_ipvs_snat_and_sysctl_but_not_marks():
    node = Node()
    node.lb.ipvs = None
    node.lb.sysctls = None
    drop_rules(node.lb, "nat", "POSTROUTING", "--ipvs")   # cannot exist without the ipvs match
    assert node.findings() == []
    drop_rules(node.lb, "mangle", "INPUT", "10.0.1.2/32")
    assert checks(node.findings()) == ["mark-missing"]


def test_snat_to_the_wrong_address_is_missing():
    node = Node()
    drop_rules(node.lb, "nat", "POSTROUTING", "--ipvs")
    add_rule(node.lb, "nat", "-A POSTROUTING -d 10.0.1.0/24 -m ipvs --ipvs -j SNAT --to-source 10.0.1.99")
    (finding,) = node.findings()
    assert finding.check == "snat-missing" and "10.0.1.6" in finding.message


def test_jump_chain_follows_the_engine_version():
    node = Node()
    node.model = ssd.catalog.engine_model("28.5.2")
    assert checks(node.findings()) == ["ingress-jump-missing"]  # 28.0.1+ jumps from DOCKER-FORWARD
    add_rule(node.host, "filter", "-A DOCKER-FORWARD -j DOCKER-INGRESS")
    assert node.findings() == []


def test_filter_reply_rule_in_either_spelling():
    """<= 24.x: -m state --state; 25.0+: -m conntrack --ctstate."""
    node = Node()
    drop_rules(node.host, "filter", "DOCKER-INGRESS", "--sport 8080")
    add_rule(node.host, "filter",
             "-A DOCKER-INGRESS -p tcp -m tcp --sport 8080 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT")
    assert node.findings() == []


def test_lb_namespace_missing():
    node = Node()
    state = node.state()
    state.lbs = [lb for lb in state.lbs if lb.network is not node.ov2]
    state.lb_not_found = [node.ov2.id]
    (finding,) = ssd.catalog.run_checks(state)
    assert finding.check == "lb-namespace-missing"
    assert finding.expected == "/var/run/docker/netns/lb_oc6rqvyvp"
    state.model = ssd.catalog.engine_model("17.06.2-ce")  # every container is its own load balancer
    assert "lb-namespace-missing" not in checks(ssd.catalog.run_checks(state))


def test_per_container_era_checks_output_chain_and_no_aliases():
    node = Node()
    node.model = ssd.catalog.engine_model("18.03.1-ce")
    for dp in (node.lb,):
        for r in rules(dp, "mangle", "INPUT"):
            r.chain = "OUTPUT"
        dp.rules["mangle"]["OUTPUT"] = dp.rules["mangle"].pop("INPUT")
        dp.addresses["eth0"] = [("10.0.1.6", 24)]
    state = node.state()
    state.lbs, state.host, state.ingress = state.lbs[:1], None, None  # ov2 only
    state.lbs[0].lb_ip = "10.0.1.6"
    assert ssd.catalog.run_checks(state) == []
    node.lb.rules["mangle"]["INPUT"] = node.lb.rules["mangle"].pop("OUTPUT")
    # Marks in INPUT are not where an 18.03 engine puts them: the VIP mark is missing.
    assert checks(ssd.catalog.run_checks(state)) == ["mark-missing"] * 2  # s1, web


# --- engine versions --------------------------------------------------------------------

@pytest.mark.parametrize("version,era,known", [
    ("17.06.2-ce", "per-container", True), ("18.05.0-ce", "per-container", True),
    ("18.06.1-ce", "lb-sandbox-18.06", True), ("18.09.0", "lb-sandbox", True),
    ("20.10.24+dfsg1", "lb-sandbox", True), ("26.1.5+dfsg1", "lb-sandbox", True),
    ("28.5.2", "lb-sandbox", True), ("29.7.2", "lb-sandbox", True), ("31.0.0", "lb-sandbox", False),
])
def test_engine_eras(version, era, known):
    model = ssd.catalog.engine_model(version)
    assert (model.era, model.known) == (era, known)


@pytest.mark.parametrize("version", ["", "garbage", "1.13.1", "17.03.2-ce"])
def test_unusable_engine_versions_are_errors(version):
    with pytest.raises(ssd.base.CheckError):
        ssd.catalog.engine_model(version)


def test_sysctls_by_version():
    assert ssd.catalog.engine_model("19.03.15").lb_sysctls(nat_mode=True) == {"expire_nodest_conn": 1, "conntrack": 1}
    assert ssd.catalog.engine_model("20.10.0").lb_sysctls(nat_mode=False) == {
        "expire_nodest_conn": 1, "conn_reuse_mode": 0, "expire_quiescent_template": 1}
    assert ssd.catalog.engine_model("18.03.1-ce").lb_sysctls(nat_mode=True) == {}


# --- control-plane parsing ---------------------------------------------------------------

def test_ports_and_protocols():
    protocols = {(53, 53): ["tcp", "udp"]}
    ports = ssd.views.parse_ports(["Target: 53, Publish: 53"], protocols)
    assert ports == [ssd.model.PublishedPort(53, 53, "tcp"), ssd.model.PublishedPort(53, 53, "udp")]
    assert ssd.views.parse_ports(["Target: 80, Publish: 8080"], None) == [ssd.model.PublishedPort(8080, 80, None)]


def test_host_mode_ports_are_not_ingress_ports():
    svc = {"Spec": {"Name": "h"}, "Endpoint": {"Ports": [
        {"Protocol": "tcp", "TargetPort": 80, "PublishedPort": 81, "PublishMode": "host"},
        {"Protocol": "udp", "TargetPort": 53, "PublishedPort": 53, "PublishMode": "ingress"}]}}
    assert ssd.views.service_protocols([svc]) == {"h": {(53, 53): ["udp"]}}


@pytest.mark.parametrize("vip", ["<nil>", "", None])
def test_dnsrr_vip_spellings(vip):
    data = network_json("ov2")
    data["Services"]["s1"]["VIP"] = vip
    assert ssd.views.build_network_view(data, None).services["s1"].vip is None


def test_empty_service_name_group_is_not_a_service():
    assert "" not in network_view("ingress").services


def test_resolve_networks():
    listing = [{"Id": "oc6rqvyvpk9gjpy59fjkshnni", "Name": "ov2", "Scope": "swarm", "Driver": "overlay"},
               {"Id": "oc6zzz", "Name": "ov3", "Scope": "swarm", "Driver": "overlay"},
               {"Id": "87fefd15bdc7", "Name": "bridge", "Scope": "local", "Driver": "bridge"}]
    assert [n["Name"] for n in ssd.views.resolve_networks(listing, [])] == ["ov2", "ov3"]
    assert [n["Name"] for n in ssd.views.resolve_networks(listing, ["oc6r"])] == ["ov2"]
    assert [n["Name"] for n in ssd.views.resolve_networks(listing, ["ov3"])] == ["ov3"]
    for bad, words in (("oc6", "ambiguous"), ("nope", "not found"), ("bridge", "not a swarm-scoped")):
        with pytest.raises(ssd.base.CheckError, match=words):
            ssd.views.resolve_networks(listing, [bad])


def test_the_checks_page_documents_every_check_id():
    page = (Path(__file__).resolve().parents[1] / "docs" / "checks.md").read_text()
    for check, info in ssd.catalog.CHECKS.items():
        assert f"| `{check}` | {info.meaning} |" in page, check


# --- the ordinary life of a swarm: no false alarm -------------------------------------------

def test_running_job_task_with_weight_one_is_silent():
    """A job's running task has desired state "complete": it is not being stopped."""
    node = Node()
    node.swarm_tasks = ssd.views.build_swarm_tasks(tasks_json(desired="complete", state="running"))
    assert node.findings() == []
    dest(node.lb, 258, "10.0.1.4").weight = 0  # ...and it must still receive traffic
    assert checks(node.findings()) == ["ipvs-backend-weight"]


def test_missing_backend_of_a_task_swarm_is_stopping_is_silent():
    """25.0.13+/29.0+: a node that learns of a task already disabled programs no backend for it."""
    node = Node()
    node.swarm_tasks = ssd.views.build_swarm_tasks(tasks_json(desired="shutdown", state="running"))
    set_every_dest([node.lb, node.sbox], weight=0)
    ipvs_service(node.lb, 258).dests.pop(0)
    assert node.findings() == []


def test_missing_backend_of_a_running_task_still_fires_on_a_manager():
    node = Node()
    node.swarm_tasks = ssd.views.build_swarm_tasks(tasks_json(desired="complete", state="running"))
    ipvs_service(node.lb, 258).dests.pop(0)
    assert checks(node.findings()) == ["ipvs-backend-missing"]


UDP_MARK = "-A PREROUTING -p udp -m udp --dport 8080 -j MARK --set-xmark 0x100/0xffffffff"
UDP_DNAT = "-A DOCKER-INGRESS -p udp -m udp --dport 8080 -j DNAT --to-destination 172.18.0.2:8080"


def test_worker_port_published_over_tcp_and_udp_is_consistent():
    """8080/tcp + 8080/udp: one MARK rule per protocol, same mark; a worker sees one port."""
    node = Node(manager=False)
    add_rule(node.sbox, "mangle", UDP_MARK)
    add_rule(node.host, "nat", UDP_DNAT)
    assert node.findings() == []


def test_worker_port_over_two_protocols_still_finds_a_conflict():
    node = Node(manager=False)
    add_rule(node.sbox, "mangle", UDP_MARK)
    add_rule(node.sbox, "mangle", UDP_MARK.replace("0x100", "0x150"))
    (finding,) = node.findings()
    assert finding.check == "mark-conflict" and finding.subject == "8080/udp"


def test_manager_port_published_over_tcp_and_udp_is_consistent():
    services = services_json()
    web = next(s for s in services if s["Spec"]["Name"] == "web")
    web["Endpoint"]["Ports"].append({**web["Endpoint"]["Ports"][0], "Protocol": "udp"})
    node = Node()
    node.ingress = ssd.views.build_network_view(network_json("ingress"), ssd.views.service_protocols(services))
    add_rule(node.sbox, "mangle", UDP_MARK)
    add_rule(node.host, "nat", UDP_DNAT)
    add_rule(node.host, "filter", "-A DOCKER-INGRESS -p udp -m udp --dport 8080 -j ACCEPT")
    add_rule(node.host, "filter", "-A DOCKER-INGRESS -p udp -m udp --sport 8080 "
                                  "-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT")
    for cid in WEB_TASK_CONTAINERS:
        task_ip = node.ingress.endpoints[cid].ip
        add_rule(node.tasks[cid], "nat", f"-A PREROUTING -d {task_ip}/32 -p udp -m udp --dport 8080 "
                                         "-j REDIRECT --to-ports 80")
    assert node.findings() == []
    drop_rules(node.sbox, "mangle", "PREROUTING", "-p udp")
    (finding,) = node.findings()
    assert (finding.check, finding.subject) == ("mark-missing", "8080/udp")


# --- could not check is never a fault ---------------------------------------------------------

def test_table_an_older_iptables_cannot_read_is_unreadable_not_empty():
    raw = {"iptables": {"nf_tables": "# Table `mangle' is incompatible, use 'nft' tool.\n*nat\n"
                                     ":PREROUTING ACCEPT [0:0]\nCOMMIT\n"},
           "iptables_error": None, "ipvs": [], "addresses": {}, "sysctls": {}}
    dp = ssd.kernel.namespaces.datapath_from_raw("/var/run/docker/netns/lb_x", raw)
    assert dp.rules is None and "mangle" in dp.iptables_error and "newer iptables" in dp.iptables_error
    raw["iptables"]["nf_tables"] = "*mangle\n:INPUT ACCEPT [0:0]\nCOMMIT\n"
    assert ssd.kernel.namespaces.datapath_from_raw("/x", raw).rules == {"mangle": {"INPUT": []}}


def test_ipv6_vip_is_not_checked_as_a_missing_load_balancer():
    node = Node()
    node.ov2.services["s1"].vip = "fd00:1::2"
    node.lb.ipvs.remove(ipvs_service(node.lb, 258))
    drop_rules(node.lb, "mangle", "INPUT", "10.0.1.2/32")
    node.lb.addresses["eth0"].remove(("10.0.1.2", 32))
    assert node.findings() == []
    assert node.ov2.services["s1"] not in node.ov2.vip_services()


def test_every_finding_carries_its_action():
    node = Node()
    FAULTS["mark-missing"](node)
    (finding,) = node.findings()
    assert finding.to_json()["action"] == ssd.catalog.CHECKS["mark-missing"].action.replace("<service>", "s1")
    text = " ".join(" ".join(ssd.report._render_findings([finding], verbose=False)).split())
    assert "fix: " in text and "docker service update --force s1" in text


# --- known engine bugs: which finding, which engine ------------------------------------------

def refs(check: str, version: str) -> dict[str, bool]:
    return {k["ref"]: k["affects_this_engine"] for k in ssd.catalog.known_issues(check, version)}


@pytest.mark.parametrize("check,version,expected", [
    ("ingress-dnat-missing", "28.5.2+dfsg4", {"moby#51656": True, "firewalld/firewalld#503": True,
                                              "moby/swarmkit#2937": True, "moby#45089": True}),
    ("ingress-dnat-missing", "29.0.1", {"moby#51656": True, "firewalld/firewalld#503": False,
                                        "moby/swarmkit#2937": True, "moby#45089": True}),
    ("ingress-dnat-missing", "29.7.0", {"moby#51656": False, "firewalld/firewalld#503": False,
                                        "moby/swarmkit#2937": False, "moby#45089": True}),
    ("ingress-dnat-missing", "20.10.24", {"moby#51656": True, "firewalld/firewalld#503": True,
                                          "moby/swarmkit#2937": True}),
    ("ingress-jump-missing", "25.0.12", {"firewalld/firewalld#503": True}),
    ("ingress-jump-missing", "25.0.13", {"firewalld/firewalld#503": False}),  # the backport
    ("mark-missing", "18.03.1-ce", {}),  # before the load-balancer sandbox: not that bug
    ("ipvs-backend-weight", "20.10.24+dfsg1", {"moby#41896": True}),
    ("ipvs-backend-weight", "29.1.0", {}),  # no confirmed fix: nothing claimed either way
    ("ipvs-backend-stale", "17.09.0-ce", {"moby#33790": True, "moby#35675": True}),
    ("ipvs-backend-stale", "1.12.6", {"moby#25985": True}),
    ("ipvs-backend-stale", "28.5.2", {}),
    ("ipvs-service-missing", "1.12.6", {"moby#28564": True}),
    ("sysctl", "19.03.15", {"moby#35082": True}),
    ("sysctl", "20.10.24", {"moby#35082": False}),  # the engine sets them: something rewrote it
    ("iptables-split-brain", "24.0.7", {"moby#46636": True}),
    ("iptables-split-brain", "20.10.24", {}),
    ("ingress-dnat-missing", "not a version", {}),
])
def test_known_issues_by_check_and_engine(check, version, expected):
    assert refs(check, version) == expected


def test_every_known_issue_names_real_checks_and_links():
    assert len({issue.ref for issue in ssd.catalog.KNOWN_ISSUES}) == len(ssd.catalog.KNOWN_ISSUES) >= 10
    for issue in ssd.catalog.KNOWN_ISSUES:
        assert issue.checks <= set(ssd.catalog.CHECKS), issue.ref
        assert issue.url.startswith("https://github.com/") and issue.ref.split("#")[1] in issue.url
        assert all(first < fixed for first, fixed in issue.affected)


def test_known_issue_lines():
    [affected] = ssd.catalog.known_issues("ipvs-backend-weight", "28.5.2")
    assert ssd.report.known_issue_line(affected).startswith("known engine bug moby#41896: during a rolling")
    fixed = {k["ref"]: k for k in ssd.catalog.known_issues("ingress-dnat-missing", "29.7.0")}
    assert ssd.report.known_issue_line(fixed["moby#51656"]) == \
        "not moby#51656: this engine has its fix (29.7.0 (moby#51657))"


# --- the registry: every check declared once, run by one runner ----------------------------

def test_every_check_id_is_registered_exactly_once():
    registered = [i for check in ssd.catalog.REGISTRY for i in check.ids]
    assert sorted(registered) == sorted(ssd.catalog.CHECKS)


def test_a_part_that_could_not_be_read_skips_only_the_checks_that_need_it():
    node = Node()
    for dp in (node.lb, node.sbox):
        dp.ipvs = None  # no IPVS in this kernel: the run says so once, as a Problem
    drop_rules(node.lb, "mangle", "INPUT", "--set-xmark 0x101")
    assert checks(node.findings()) == ["mark-missing"]  # marks still checked, no IPVS-based finding


def test_a_new_check_is_one_function_and_its_registration(catalog_restored):
    seen = []

    @ssd.catalog.register_check(ssd.catalog.CheckInfo("toy-check", "a toy", "nothing"), scope="lb",
                                needs=("addresses",))
    def toy(lb, state):
        seen.append(lb.datapath.name)
        return [ssd.model.Finding("toy-check", "found", namespace=lb.datapath.name)]
    node = Node()
    node.sbox.addresses = None
    assert checks(node.findings()) == ["toy-check"] and seen == [OV2_NS]
    assert ssd.catalog.CHECKS["toy-check"].meaning == "a toy"
    with pytest.raises(ValueError, match="declared twice"):  # an id belongs to one check
        ssd.catalog.register_check(ssd.catalog.CheckInfo("mark-missing", "again", "nothing"), scope="lb")
    with pytest.raises(ValueError, match="scope"):
        ssd.catalog.register_check(ssd.catalog.CheckInfo("toy-two", "a toy", "nothing"), scope="no-such-scope")


def test_ingress_recreated_under_another_name_is_checked_as_ingress():
    """libnetwork names the ingress sandbox ingress_sbox whatever the network's name (controller.go
    sets sb.id = "ingress_sbox"), but its endpoint in network inspect is "<name>-sbox"."""
    raw = copy.deepcopy(network_json("ingress"))
    raw["Name"] = "edge"
    raw["Containers"]["edge-sbox"] = raw["Containers"].pop("ingress-sbox")
    node = Node()
    node.ingress = ssd.views.build_network_view(raw, ssd.views.service_protocols(services_json()))
    assert node.ingress.lb_endpoint.ip == network_view("ingress").lb_endpoint.ip
    assert ssd.layers.lb.lb_namespace_name(node.ingress) == "ingress_sbox"
    assert node.findings() == []
    drop_rules(node.sbox, "mangle", "PREROUTING", "--dport 8080")
    assert checks(node.findings()) == ["mark-missing"]
