"""Tier 3: --watch on a real node: a load balancer's backend removed for 30 s, then restored.

The fault is made with ipvsadm in node2's load balancer of ov2 while ssd --watch runs there as
users run it; the watch must show it appear and clear (one episode of about 30 s), count it in
the metrics, and record snapshots that give, with --from, the verdict of the run that took them.
"""
from __future__ import annotations

import json
import os
import re

import pytest
from test_lab import sh

from labkit import SWARMLAB

pytestmark = pytest.mark.lab

NODE = 2
# The record's timeline, kept on the host: examples/watch/timeline.jsonl is one (tests/test_html.py
# draws it in a real browser).
KEPT = os.path.join(os.environ.get("SWARMLAB_STATE", str(SWARMLAB.parent / "state")), "watch-timeline.jsonl")
WATCH = ("PYTHONPATH=/opt/ssd-pylib PYTHONPYCACHEPREFIX=/var/cache/ssd-pycache python3 /lab/repo/ssd.py "
         "--watch --interval 10 --for 110 --record /tmp/watch-rec --prometheus /tmp/watch.prom ov2")
FAULT = r"""
ns=$(ls /var/run/docker/netns | grep ^lb_ | head -1)
line=$(nsenter --net=/var/run/docker/netns/$ns ipvsadm-save -n | grep '^-a' | head -1)
del=$(echo "$line" | sed -E 's/^-a/-d/; s/ -m -w [0-9]+//')
( sleep 35; nsenter --net=/var/run/docker/netns/$ns ipvsadm $del; echo "fault: removed"
  sleep 30; nsenter --net=/var/run/docker/netns/$ns ipvsadm $line; echo "fault: restored" ) &
"""


def test_a_backend_removed_for_30_s_is_one_episode_recorded():
    out = sh(NODE, f"rm -rf /tmp/watch-rec; {FAULT} {WATCH}; echo exit=$?; wait")
    assert "fault: removed" in out and "fault: restored" in out, out
    assert "exit=1" in out, out
    appeared = re.search(r"^  \+ ipvs-backend-missing \[kernel\] network ov2, namespace (lb_\w+), service (\S+), ",
                         out, re.M)
    assert appeared, out
    assert re.search(r"^  - ipvs-backend-missing \[kernel\] network ov2, .*: cleared$", out, re.M), out
    summary = re.search(r"ipvs-backend-missing .*: 1 episode, .*total (\d+)s, longest", out)
    assert summary and 15 <= int(summary.group(1)) <= 45, out  # the fault held 30 s; runs every 10 s
    assert 'ssd_finding_episodes_total{check="ipvs-backend-missing"} 1.0' in sh(NODE, "cat /tmp/watch.prom")
    recorded = sh(NODE, "cat /tmp/watch-rec/timeline.jsonl")
    with open(KEPT, "w") as fh:
        fh.write(recorded)
    timeline = [json.loads(line) for line in recorded.splitlines()]
    by_run = {t["run"]: t["report"]["status"] for t in timeline}
    assert set(by_run.values()) == {"consistent", "inconsistent"}, by_run
    names = sh(NODE, "ls /tmp/watch-rec | grep ^snapshot-").split()
    assert len(names) == 4, names  # before and at the fault, before and at its end
    for name in names:
        run = int(name.rsplit("-", 1)[1].split(".")[0])
        again = sh(NODE, "PYTHONPATH=/opt/ssd-pylib python3 /lab/repo/ssd.py --json "
                         f"--from /tmp/watch-rec/{name} || true")
        assert json.loads(again)["status"] == by_run[run], (name, by_run[run])
