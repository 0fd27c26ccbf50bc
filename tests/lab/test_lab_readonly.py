"""Tier 3: ssd changes nothing, and leaves nothing behind, on the real 3-node swarm.

Before and after ssd runs (plain, verbose, --probe; on the manager, swarm-wide runs interrupted
by SIGTERM and by SIGKILL of the client) every node's whole state is compared: the nft ruleset,
legacy and nft iptables-save, IPVS, addresses, links, routes and the net sysctls of every
namespace, loaded modules, mounts, the namespace files, swarm's services and the containers.
Only what --probe is documented to create may differ (conntrack and neighbour entries: not
compared). Packet and byte counters change with traffic: rules are compared, not counters.

The periodic run of docs/security.md is run confined as its unit confines it: three
capabilities in the bounding set, no new privileges, a read-only root with one writable
directory (setpriv and a mount namespace: the lab's nodes have no systemd).
"""
from __future__ import annotations

import difflib
import json
import re
import shlex
import subprocess
import time

import pytest
from test_lab import NODES, sh, ssd_everywhere

from labkit import lab, scaled

pytestmark = pytest.mark.lab

# Counters, and kernel values that move by themselves (the count of conntrack entries, the
# route cache's garbage collection, the entropy pool) are not state ssd could have changed.
VOLATILE_SYSCTLS = re.compile(r"^net\.netfilter\.nf_conntrack_count|^net\.ipv[46]\.route\.gc_|"
                              r"^net\.core\.netdev_rss_key|^net\.ipv4\.tcp_fastopen_key")
STATE = r"""
set -u
canon() { sed -E 's/\[[0-9]+:[0-9]+\]//; s/counter packets [0-9]+ bytes [0-9]+/counter/'; }
echo "== nft ruleset"; nft list ruleset 2>&1 | canon
for ns in '' /var/run/docker/netns/*; do
  if [ -n "$ns" ]; then e="nsenter --net=$ns"; else e=; fi
  echo "== namespace ${ns:-host}"
  [ -z "$ns" ] || [ -e "$ns" ] || { echo "(gone)"; continue; }  # a task's, ended since the glob
  echo "-- ipvs"; $e ipvsadm-save -n 2>&1
  for v in legacy nft; do echo "-- iptables-$v"; $e iptables-$v-save 2>&1 | grep -v '^#' | canon; done
  echo "-- addresses"; $e ip -o addr 2>&1
  echo "-- links"; $e ip -o link 2>&1
  echo "-- routes"; $e ip route show table all 2>&1; $e ip -6 route show table all 2>&1
  echo "-- sysctls"; $e sysctl -a 2>/dev/null | grep '^net\.' | sort
done
echo "== modules"; cut -d' ' -f1 /proc/modules | sort
echo "== mounts"; awk '{print $5, $(NF-2)}' /proc/1/mountinfo | sort
echo "== netns files"; ls -la /var/run/docker/netns /run/netns 2>&1 | grep -v '^total'
echo "== containers"; docker ps -a --format '{{.Names}} {{.Image}} {{.State}}' | sort
"""
SERVICES = "docker service ls --format '{{.Name}} {{.Mode}}' | sort"


def state(node: int) -> str:
    out = sh(node, STATE)
    lines = [line for line in out.splitlines() if not VOLATILE_SYSCTLS.match(line)]
    if node == 1:
        lines += ["== services", *sh(1, SERVICES).splitlines()]
    return "\n".join(lines)


def every_state() -> dict[int, str]:
    return {node: state(node) for node in NODES}


def unchanged(before: dict[int, str], after: dict[int, str]) -> None:
    """The same state, or the lines that differ, by node."""
    changed = {node: "\n".join(difflib.unified_diff(before[node].splitlines(), after[node].splitlines(),
                                                    lineterm="", n=1))
               for node in NODES if before[node] != after[node]}
    assert not changed, "\n".join(f"node{node}:\n{diff[:3000]}" for node, diff in changed.items())


def steady() -> dict[int, str]:
    """The state once two captures 20 s apart agree (at most 4 tries): the lab may still be
    settling from the test before (a task's namespace going away)."""
    before = every_state()
    for _ in range(3):
        time.sleep(20)
        after = every_state()
        if after == before:
            return after
        before = after
    unchanged(before, every_state())  # fails, showing what keeps moving
    return before


def test_the_state_compared_is_whole_and_steady(swarm):
    """What the comparison sees, and that it sees no change where nothing ran: else a later
    test's difference could be the lab's own motion, or a missing tool (an empty section)."""
    first = steady()
    for node, text in first.items():
        assert "table ip nat" in text.split("== nft ruleset")[1], f"node{node}: no nft ruleset read"
        sections = text.split("== namespace ")
        assert len(sections) >= 3, f"node{node}: too few namespaces: {len(sections) - 1}"
        for section in sections[1:]:
            assert "-- sysctls\nnet." in section or "(gone)" in section, \
                f"node{node}: no sysctls in {section[:60]}"
        assert re.search(r"^-A -f \d+ -s \w+", text, re.M), f"node{node}: no IPVS service read"
        assert "\n== modules\n" in text and "ip_vs" in text and "overlay" in text.split("== mounts")[1]
        assert "Operation not permitted" not in text and "command not found" not in text, text[:2000]
    unchanged(first, every_state())


def test_ssd_changes_nothing_on_any_node(swarm):
    before = steady()
    ssd_everywhere("ov2")
    ssd_everywhere("-v")
    ssd_everywhere("--probe")  # conntrack and neighbour entries: documented, not compared
    unchanged(before, every_state())


def ssd_command(*args: str) -> str:
    """ssd run in a node from the lab's read-only share, as `lab/swarmlab ssd` runs it."""
    return shlex.join(["env", "PYTHONPATH=/opt/ssd-pylib", "PYTHONPYCACHEPREFIX=/var/cache/ssd-pycache",
                       "python3", "/lab/repo/ssd.py", *args])


# --- the periodic run, confined as docs/security.md's unit confines it --------------------

CONFINED = ("unshare --mount --propagation private sh -c '"
            "mount --bind -o ro / / && mount -o remount,bind,ro / && "
            "mount -t tmpfs tmpfs /mnt && "
            "exec setpriv --no-new-privs --bounding-set -all,+sys_admin,+net_admin,+net_raw "
            "--inh-caps -all -- sh -c \"$0\"' ")


def confined(script: str) -> str:
    """script run as the unit runs it, /mnt its one writable directory; what it printed (both
    streams), its exit status, and what it wrote."""
    return sh(1, CONFINED + shlex.quote(f"{{ {script}; }} 2>&1; echo exit=$?; cat /mnt/* 2>/dev/null; true"))


def test_the_confined_periodic_run_checks_and_writes_only_its_directory(swarm):
    out = confined(ssd_command("-q", "-t", "50", "--prometheus", "/mnt/ssd.prom"))
    assert "exit=0" in out, out
    assert 'ssd_status{ssd_status="consistent"} 1.0' in out and "\nssd_not_checked 0.0\n" in out, out
    # Anywhere else is read-only: a snapshot elsewhere is refused in one line, exit 2.
    denied = confined(ssd_command("-q", "-t", "50", "--snapshot", "/etc/ssd.json"))
    assert "exit=2" in denied and "Read-only file system" in denied and "Traceback" not in denied, denied
    # And the bounding set holds: no capability but the three.
    caps = sh(1, CONFINED + shlex.quote("grep CapBnd /proc/self/status"))
    assert caps.split()[-1] == "0000000000203000", caps  # NET_ADMIN 12, NET_RAW 13, SYS_ADMIN 21


# --- swarm-wide runs interrupted: nothing left once the cleanup window has passed ----------

FLEET_SERVICES = "docker service ls -q --filter label=org.ssd.gossip"


def interrupted_fleet(signal: str, wait: int) -> str:
    """--all-nodes from the host on the manager, the client killed with signal once its service
    exists (its tasks still starting); what the shell saw."""
    command = ssd_command("--all-nodes", "--image", "ssd:lab", "-t", str(wait), "--json")
    script = (f"{command} > /tmp/fleet.out 2> /tmp/fleet.err & pid=$!; "
              f"for _ in $(seq 600); do [ -n \"$({FLEET_SERVICES})\" ] && break; "
              "kill -0 $pid 2>/dev/null || break; sleep 0.5; done; "
              f"kill -{signal} $pid; wait $pid; echo exit=$?; cat /tmp/fleet.err")
    return sh(1, script)


@pytest.mark.image
def test_swarm_wide_runs_interrupted_leave_nothing_behind(ssd_image):
    before = every_state()
    out = interrupted_fleet("TERM", scaled(120))
    assert "exit=2" in out and "interrupted" in out and "Traceback" not in out, out
    time.sleep(2)
    assert sh(1, FLEET_SERVICES).strip() == "", "SIGTERM left the service behind"

    # SIGKILL: nothing of the client runs to remove its service. Its tasks end by themselves
    # (the job runs once); the next swarm-wide run past the deadline (wait + 60 s) removes it.
    wait = 30
    out = interrupted_fleet("KILL", wait)
    assert "exit=137" in out, out
    leftover = sh(1, FLEET_SERVICES).split()
    assert len(leftover) == 1, leftover
    running = f"docker service ps -q --filter desired-state=running {leftover[0]}"
    deadline = time.monotonic() + wait + 60 + scaled(120)
    while time.monotonic() < deadline and sh(1, running).strip():
        time.sleep(5)
    # Its label holds its deadline (the run's start + wait); a later run removes it 60 s after.
    label = sh(1, f"docker service inspect -f '{{{{index .Spec.Labels \"org.ssd.gossip\"}}}}' {leftover[0]}")
    now = int(sh(1, "date +%s"))
    time.sleep(max(0, int(label) + 62 - now))
    proc = lab("ssd", "node1", "--all-nodes", "--image", "ssd:lab", "-t", str(scaled(120)), "--json")
    assert "Traceback" not in proc.stderr, proc.stderr
    doc = json.loads(proc.stdout)
    assert any("left behind by an earlier --all-nodes run" in note for note in doc.get("notes", [])), doc.get("notes")
    assert sh(1, FLEET_SERVICES).strip() == ""
    settle = time.monotonic() + scaled(60)
    while time.monotonic() < settle and any(("ssd-fleet-" in sh(n, "docker ps -a --format '{{.Names}}'"))
                                            for n in NODES):
        time.sleep(5)
    unchanged(before, every_state())


def test_state_script_is_valid_shell():
    """The state script is given to bash in every node: a syntax error would compare two empty
    outputs and pass."""
    assert subprocess.run(["bash", "-n", "-c", STATE], check=False).returncode == 0
