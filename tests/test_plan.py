"""The remediation plan: each fix once, least disruptive first, names quoted; a dry run.

Tier 1: the plan from findings (pure), and as the node report prints it from a recorded snapshot.
"""
from __future__ import annotations

import json
import shlex

import ssd.report  # noqa: F401 (every layer's checks declared)
from ssd.model import Finding
from ssd.plan import EVERYWHERE, MANUAL, RESTART, SERVICE, SETTING, make_plan, plan_lines
from helpers import REPO, run_ssd
from schemas import validate


def f(check: str, service: str | None = None, network: str | None = "ov2") -> Finding:
    return Finding(check, "m", network=network, service=service)


def test_a_service_update_is_one_step_for_every_node_and_comes_first():
    steps = make_plan({
        "node2": [f("ipvs-backend-missing", "web"), f("mark-missing", "web", "ingress"), f("snat-missing")],
        "node3": [f("ipvs-backend-missing", "web"), f("ip-forward-off", network=None)],
    })
    assert [(s.rank, s.where, s.command) for s in steps] == [
        (SERVICE, EVERYWHERE, "docker service update --force web"),
        (SETTING, "node3", "sysctl -w net.ipv4.ip_forward=1"),
        (RESTART, "node2", "systemctl restart docker"),
    ]
    web = steps[0]
    assert web.findings == 3 and web.nodes == ["node2", "node3"] and web.networks == ["ov2", "ingress"]
    assert web.checks == ["ipvs-backend-missing", "mark-missing"]
    assert plan_lines(steps)[1:4] == [
        "  1. on any manager: docker service update --force web",
        "     fixes 3 findings on ov2, ingress of node2, node3 (ipvs-backend-missing,",
        "     mark-missing)"]
    assert all(len(line) <= 80 for line in plan_lines(steps))


def test_what_needs_a_person_comes_last_with_its_action():
    steps = make_plan({"node1": [f("overlay-esp-missing"), f("vip-alias-stale"), f("iptables-split-brain")]})
    assert [s.rank for s in steps] == [RESTART, MANUAL, MANUAL]
    assert "allow ESP (IP protocol 50)" in steps[1].command + steps[2].command
    lines = plan_lines(steps)  # an action to read is not offered as a command to paste
    assert any(line.startswith(("  2. on node1: overlay-esp-missing: Traffic",
                                "  3. on node1: overlay-esp-missing: Traffic")) for line in lines), lines


def test_a_name_in_the_plan_is_quoted_for_the_shell():
    evil = "web; rm -rf / #"
    step = make_plan({"node2": [f("vip-alias-missing", evil)]})[0]
    assert shlex.split(step.command) == ["docker", "service", "update", "--force", evil]


def test_no_finding_no_plan():
    assert make_plan({"node1": []}) == [] and plan_lines([]) == []


def test_the_node_report_ends_with_its_plan():
    snapshot = str(REPO / "examples" / "missing-dnat-node2.json")
    text = run_ssd("--from", snapshot).stdout
    assert ("Plan (a dry run: ssd changed nothing; least disruptive first, each fix once):\n"
            "  1. on any manager: docker service update --force web\n"
            "     fixes 1 finding on ingress of node2 (ingress-dnat-missing)\n") in text, text
    doc = json.loads(run_ssd("--from", snapshot, "--json").stdout)
    validate(doc)
    assert doc["plan"] == [{"order": 1, "where": "any manager", "command": "docker service update --force web",
                            "action": None, "checks": ["ingress-dnat-missing"], "findings": 1,
                            "networks": ["ingress"], "nodes": ["node2"]}]
    healthy = json.loads(run_ssd("--from", str(REPO / "examples" / "healthy-node2.json"), "--json").stdout)
    assert healthy["plan"] == []
