"""Tier 3: --all-nodes --watch on the real 3-node swarm, with faults made on a schedule (issue 44).

From the ssd container on node1, every node watches for 150 s (a run every 10 s) while, on node2,
the FDB entry of a remote task of s1 is deleted from ov2's VXLAN device for 20 s, twice, 60 s
apart (the engine's own race does this: moby#52661), and on node3 one of a load balancer's IPVS
backends is removed for 30 s. The merged timeline must hold node2's two episodes and node3's one,
their lengths within a run's interval of the schedule, and nothing on node1.

The changes reach the manager's screen as they happen (each line of ssd's output stamped on
node1 as it arrives), and a quiet swarm watched for ten minutes, by --all-nodes --watch and by
a node's own --watch --record, changes nothing and records no snapshot (make lab: ten minutes
are past CI's budget).
"""
from __future__ import annotations

import json
import re
import time

import pytest
from labkit import lab, scaled
from schemas import validate
from test_lab import sh
from test_lab_gossip import LEFTOVERS, RUN, container
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


STAMPED = "while IFS= read -r line; do printf '%s %s\\n' \"$(date +%s.%N)\" \"$line\"; done"


def stamped(node: int, args: str) -> tuple[int, list[tuple[float, str]]]:
    """ssd's container run on node, each line of its output with the time node saw it."""
    proc = lab("exec", f"node{node}", "--", "bash", "-c", f"set -o pipefail; {RUN} {args} | {STAMPED}")
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [line.split(" ", 1) for line in proc.stdout.splitlines()]
    return proc.returncode, [(float(at), text) for at, text in lines]


def test_changes_reach_the_manager_as_they_happen(ssd_image):
    """node2's FDB entry gone 25 s into a 70 s watch, for 20 s: node1 prints it within a run and a
    few seconds of node2 seeing it, long before the watch ends, and only once."""
    f = facts(2)
    ns = f"nsenter --net={f.ns}"
    sh(2, f"( sleep 25; {ns} bridge fdb del {f.task_mac} dev vxlan0 self; sleep 20; {ns} bridge fdb add "
          f"{f.task_mac} dev vxlan0 dst {f.task_node} self permanent ) >/dev/null 2>&1 &")
    code, lines = stamped(1, f"--all-nodes --watch --for 70 --interval {INTERVAL} --timeout {scaled(120)}")
    text = "\n".join(line for _, line in lines)
    assert code == 1, text
    assert sh(1, LEFTOVERS).strip() == "", "the job's service was left behind"
    appeared = [(at, line) for at, line in lines if " node2 + overlay-fdb-missing " in line]
    cleared = [(at, line) for at, line in lines if " node2 - overlay-fdb-missing " in line]
    assert len(appeared) == 1 and len(cleared) == 1, text  # each once: live, not again at the end
    end = next(at for at, line in lines if " nodes watched from " in line)
    lates = []
    for at, line in appeared + cleared:  # (a line's time is node2's run's, UTC: within the day)
        h, m, s = map(int, line.split()[0].split(":"))
        lates.append(round((at - (h * 3600 + m * 60 + s)) % 86400, 1))
    assert max(lates) <= INTERVAL + 15, (lates, text)  # on node1's screen soon after node2's run
    assert end - appeared[0][0] >= 20, (end - appeared[0][0], text)  # not held until the end
    assert re.search(r"overlay-fdb-missing .*: node2 1 episode from .*; never on node1, node3", text), text
    print(json.dumps({"seconds_after_the_run": lates, "before_the_end": round(end - appeared[0][0], 1)}))


QUIET_FOR, QUIET_EVERY = 600, 30
NODE_WATCH = ("PYTHONPATH=/opt/ssd-pylib PYTHONPYCACHEPREFIX=/var/cache/ssd-pycache python3 /lab/repo/ssd.py "
              f"--watch --interval {QUIET_EVERY} --for {QUIET_FOR} --record /tmp/quiet-rec ov2")


def test_a_quiet_swarm_watched_for_ten_minutes_records_no_transition(ssd_image):
    started = time.monotonic()
    sh(2, f"rm -rf /tmp/quiet-rec; ( {NODE_WATCH}; echo exit=$? ) >/tmp/quiet-watch.log 2>&1 &")
    code, out, err = container(1, f"--all-nodes --watch --for {QUIET_FOR} --json --timeout {scaled(120)}")
    doc = json.loads(out)
    validate(doc)
    assert code == 0 and doc["status"] == "consistent", (code, err, doc["errors"], doc["events"][:5])
    assert doc["events"] == [] and doc["findings"] == [], doc["events"][:5]
    assert sh(1, LEFTOVERS).strip() == "", "the job's service was left behind"
    runs = {n["hostname"]: n["runs"] for n in doc["nodes"]}
    assert sorted(runs) == ["node1", "node2", "node3"] and min(runs.values()) >= QUIET_FOR // QUIET_EVERY - 1, runs
    log = sh(2, f"for i in $(seq {scaled(120)}); do grep -q exit= /tmp/quiet-watch.log && break; sleep 1; done; "
                "cat /tmp/quiet-watch.log")
    assert "exit=0" in log, log
    recorded = [json.loads(line) for line in sh(2, "cat /tmp/quiet-rec/timeline.jsonl").splitlines()]
    assert len(recorded) >= QUIET_FOR // QUIET_EVERY - 1, len(recorded)
    assert {r["report"]["status"] for r in recorded} == {"consistent"}, [r["report"]["status"] for r in recorded]
    assert sh(2, "ls /tmp/quiet-rec | grep -c ^snapshot- || true").strip() == "0"  # nothing changed
    print(json.dumps({"all_nodes_runs": runs, "node2_recorded_runs": len(recorded),
                      "seconds": round(time.monotonic() - started)}))
