"""Tier 3: --all-nodes --watch on the real 3-node swarm, with faults made on a schedule (issue 44).

From the ssd container on node1, every node watches for 150 s (a run every 10 s) while, on node2,
the FDB entry of a remote task of s1 is deleted from ov2's VXLAN device for 20 s, twice, 60 s
apart (the engine's own race does this: moby#52661), and on node3 one of a load balancer's IPVS
backends is removed for 30 s. The merged timeline must hold node2's two episodes and node3's one,
their lengths within a run's interval of the schedule, and nothing on node1.
"""
from __future__ import annotations

import json

import pytest
from labkit import scaled
from schemas import validate
from test_lab import sh
from test_lab_gossip import LEFTOVERS, container
from test_lab_overlay import facts

pytestmark = [pytest.mark.lab, pytest.mark.image]

INTERVAL, FOR = 10, 150


def fdb_flaps(node: int) -> str:
    """In the background: the FDB entry of a remote task of s1 gone at 30 s and at 90 s, for 20 s."""
    f = facts(node)
    ns = f"nsenter --net={f.ns}"
    entry = f"{f.task_mac} dev vxlan0 dst {f.task_node} self permanent"
    once = f"{ns} bridge fdb del {f.task_mac} dev vxlan0 self; echo fdb-gone; sleep 20; {ns} bridge fdb add {entry}"
    return f"( sleep 30; {once}; sleep 40; {once}; echo fdb-done ) >/tmp/fdb-flaps.log 2>&1 &"


BACKEND = r"""
ns=$(ls /var/run/docker/netns | grep ^lb_ | head -1)
line=$(nsenter --net=/var/run/docker/netns/$ns ipvsadm-save -n | grep '^-a' | head -1)
del=$(echo "$line" | sed -E 's/^-a/-d/; s/ -m -w [0-9]+//')
( sleep 40; nsenter --net=/var/run/docker/netns/$ns ipvsadm $del; echo backend-gone
  sleep 30; nsenter --net=/var/run/docker/netns/$ns ipvsadm $line; echo backend-back ) >/tmp/backend.log 2>&1 &
"""


def test_faults_on_a_schedule_are_one_timeline_of_the_swarm(ssd_image, tmp_path):
    facts(2)  # (read before the watch starts: it asks the engine and the kernel)
    sh(2, fdb_flaps(2))
    sh(3, BACKEND)
    code, out, err = container(1, f"--all-nodes --watch --for {FOR} --interval {INTERVAL} --json "
                                  f"--timeout {scaled(120)}")
    assert "fdb-done" in sh(2, "sleep 5; cat /tmp/fdb-flaps.log"), "the schedule did not run on node2"
    assert "backend-back" in sh(3, "cat /tmp/backend.log")
    doc = json.loads(out)
    validate(doc)
    assert code == 1 and doc["status"] == "inconsistent", (code, err, doc["errors"])
    assert sh(1, LEFTOVERS).strip() == "", "the job's service was left behind"
    assert {n["hostname"]: n["status"] for n in doc["nodes"]} == {
        "node1": "consistent", "node2": "inconsistent", "node3": "inconsistent"}, doc["nodes"]
    by_check = {f["check"]: f["nodes"] for f in doc["findings"]}
    assert set(by_check) == {"overlay-fdb-missing", "ipvs-backend-missing"}, doc["findings"]
    assert list(by_check["overlay-fdb-missing"]) == ["node2"] and list(by_check["ipvs-backend-missing"]) == ["node3"]
    flaps = by_check["overlay-fdb-missing"]["node2"]
    assert len(flaps) == 2, flaps
    lengths = [e["end"] - e["start"] for e in flaps if e["end"] is not None]
    assert len(lengths) == 2 and all(abs(length - 20) <= INTERVAL + 2 for length in lengths), lengths
    assert 60 - INTERVAL - 2 <= flaps[1]["start"] - flaps[0]["start"] <= 60 + INTERVAL + 2, flaps
    [gone] = by_check["ipvs-backend-missing"]["node3"]
    assert gone["end"] is not None and abs(gone["end"] - gone["start"] - 30) <= INTERVAL + 2, gone
    text = container(1, f"--all-nodes --watch --for 20 --interval {INTERVAL} --timeout {scaled(120)}")
    assert text[0] == 0 and "no finding appeared on any node" in text[1], text  # quiet again
    print(json.dumps({"episodes": doc["findings"], "runs": {n["hostname"]: n["runs"] for n in doc["nodes"]}}))
