"""Tier 3: production's manager shapes on the real 3-node swarm: three managers, a leader change
during a swarm-wide run, a swarm that has lost its quorum (issue 44).

The lab's swarm has one manager; this module promotes node2 and node3 (what `swarmlab up
--managers 3` forms at boot), and gives the swarm back as it found it: every dockerd running,
node2 and node3 demoted, the seed's tasks spread again. Disruptive: dockerd is stopped and
started again on managers (28.5.2 then keeps logging stale endpoints; later deploys may lag).
"""
from __future__ import annotations

import json
import threading
import time

import pytest
from labkit import scaled
from schemas import validate
from test_lab import sh, ssd
from test_lab_gossip import LEFTOVERS, container
from test_lab_ordinary import UPDATED, wait
from test_lab_soak import SEED, START_DOCKERD, STOP_DOCKERD, wait_converged

pytestmark = [pytest.mark.lab, pytest.mark.image, pytest.mark.disruptive]

REACHABLE = ('[ "$(docker node ls --format "{{{{.ManagerStatus}}}}" | grep -cE "Leader|Reachable")" '
             '= {} ]')
LEADER = "docker node ls --format '{{.Hostname}} {{.ManagerStatus}}' | awk '$2 == \"Leader\" {print $1}'"


def leader(asking: int) -> int:
    return int(sh(asking, LEADER).strip().removeprefix("node"))


def start_dockerd(node: int) -> None:
    sh(node, f"pgrep -x dockerd >/dev/null || {{ {START_DOCKERD}; }}")


def spread_seed(manager: int) -> None:
    """swarm moved the tasks of a node that was down: spread them back, and wait."""
    for name in SEED:
        sh(manager, f"docker service update -d --force {name} >/dev/null")
        wait(manager, UPDATED.replace("web", name))
    wait_converged(SEED)


@pytest.fixture(scope="module")
def three_managers(swarm):
    sh(1, "docker node promote node2 node3 >/dev/null")
    wait(1, REACHABLE.format(3))
    try:
        yield
    finally:
        for node in (1, 2, 3):
            start_dockerd(node)
        wait(1, REACHABLE.format(3), scaled(300))
        # Raft may still refuse for a while after `docker node ls` shows every manager reachable
        # ("can't remove member from the raft: this would result in a loss of quorum", 2026-12-06)
        for node in ("node3", "node2"):
            wait(1, f"docker node demote {node} >/dev/null 2>&1", scaled(300))
        wait(1, REACHABLE.format(1))
        spread_seed(1)


def fleet_json(node: int, args: str = "") -> tuple[int, dict, str]:
    code, out, err = container(node, f"--all-nodes --json --timeout {scaled(120)} {args}")
    try:
        doc = json.loads(out)
    except json.JSONDecodeError:
        pytest.fail(f"node{node}: --all-nodes printed no JSON (exit {code}): {err}")
    validate(doc)
    return code, doc, err


def statuses(doc: dict) -> dict[str, str]:
    return {n["hostname"]: n["status"] for n in doc["nodes"]}


def test_three_managers_each_consistent_and_fleet_from_one_that_does_not_lead(ssd_image, three_managers):
    assert leader(1) == 1
    for node in (1, 2, 3):
        code, doc, _ = ssd(node, "ov2")
        assert code == 0 and doc["node"]["manager"], (node, doc["findings"], doc["errors"])
    code, doc, err = fleet_json(2)
    assert code == 0, (statuses(doc), doc["errors"], err)
    assert statuses(doc) == {"node1": "consistent", "node2": "consistent", "node3": "consistent"}
    assert sh(2, LEFTOVERS).strip() == "", "an ssd service was left behind"


def test_a_leader_change_during_a_fleet_run_ends_in_a_verdict_and_cleans_up(ssd_image, three_managers):
    """The leader's dockerd stopped while --all-nodes runs from another manager: swarm elects
    another leader; the run ends (no hang, no traceback) with a verdict naming the node that
    could not answer, and its service is removed."""
    old = leader(2)
    asking = 2 if old != 2 else 3
    done: dict = {}
    run = threading.Thread(target=lambda: done.update(result=fleet_json(asking)), daemon=True)
    started = time.monotonic()
    run.start()
    try:
        wait(asking, f'[ -n "$({LEFTOVERS})" ]', scaled(120))  # the job's service exists
        sh(old, STOP_DOCKERD)
        run.join(scaled(120) + scaled(180))
        assert not run.is_alive(), "--all-nodes did not end after the leader's dockerd stopped"
        code, doc, err = done["result"]
        elapsed = time.monotonic() - started
        new = leader(asking)
        wait(asking, f'[ -z "$({LEFTOVERS})" ]', 60)
    finally:
        start_dockerd(old)
        wait(asking, REACHABLE.format(3), scaled(300))
    assert new != old
    assert code == 2, (statuses(doc), doc["errors"], err)
    assert statuses(doc)[f"node{old}"] in ("no-answer", "not-asked"), statuses(doc)
    assert any(e["scope"] == f"node node{old}" for e in doc["errors"]), doc["errors"]
    print(f"leader change: node{old} -> node{new}; --all-nodes from node{asking} ended in {elapsed:.0f} s, "
          f"exit {code}: {statuses(doc)}")


def test_a_leader_change_during_a_swarm_wide_watch_ends_in_a_verdict(ssd_image, three_managers):
    """The same during --all-nodes --watch: the leader's node stops answering, the others'
    timelines are still merged, the job's service is removed."""
    old = leader(1)
    asking = 3 if old != 3 else 1
    done: dict = {}

    def watch() -> None:
        code, out, err = container(asking, f"--all-nodes --watch --for 60 --interval 10 --json "
                                           f"--timeout {scaled(120)}")
        done["result"] = (code, json.loads(out) if out.strip() else None, err)
    run = threading.Thread(target=watch, daemon=True)
    run.start()
    try:
        wait(asking, f'[ -n "$({LEFTOVERS})" ]', scaled(120))
        time.sleep(20)  # every node's watch has run
        sh(old, STOP_DOCKERD)
        run.join(60 + scaled(120) + scaled(180))
        assert not run.is_alive(), "--all-nodes --watch did not end after the leader's dockerd stopped"
        code, doc, err = done["result"]
        wait(asking, f'[ -z "$({LEFTOVERS})" ]', 60)
    finally:
        start_dockerd(old)
        wait(asking, REACHABLE.format(3), scaled(300))
    assert doc is not None, err
    validate(doc)
    nodes = {n["hostname"]: n for n in doc["nodes"]}
    # 2, or 1 if another node saw a finding while node{old}'s entries left the gossip (a verdict
    # like fleet mode's: a finding outranks a node that could not answer)
    assert code in (1, 2) and nodes[f"node{old}"]["status"] == "incomplete", (nodes, doc["errors"], err)
    assert any(e["scope"] == f"node node{old}" for e in doc["errors"]), doc["errors"]
    assert all(n["runs"] >= 2 for name, n in nodes.items() if name != f"node{old}"), nodes
    print(f"leader change during a watch: node{old} stopped; exit {code}; "
          f"{ {name: (n['status'], n['runs'], n['reason']) for name, n in nodes.items()} }")


def test_a_swarm_without_quorum_is_exit_2_naming_the_missing_leader(ssd_image, three_managers):
    """Two of three managers down: swarm has no leader and refuses its API, while every datapath
    still forwards. The node check and the swarm-wide mode say so in one line, exit 2."""
    survivor = 3
    try:
        for node in (1, 2):
            sh(node, STOP_DOCKERD)
        wait(survivor, "! docker node ls >/dev/null 2>&1", scaled(120))
        code, doc, err = ssd(survivor, "ov2")
        fleet_code, _, fleet_err = container(survivor, f"--all-nodes --timeout {scaled(60)}")
    finally:
        for node in (1, 2):
            start_dockerd(node)
        wait(1, REACHABLE.format(3), scaled(300))
    messages = [e["message"] for e in doc["errors"]]
    assert code == 2 and any("leader" in m for m in messages), (messages, err)
    assert fleet_code == 2 and "leader" in fleet_err and len(fleet_err.strip().splitlines()) == 1, fleet_err
    assert sh(survivor, LEFTOVERS).strip() == ""
    print(f"no quorum: node check: {messages}; --all-nodes: {fleet_err.strip()}")
