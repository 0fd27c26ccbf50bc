"""--watch: the timeline (pure), the record's bounds and refusals, and a real watch.

Tier 1: episodes from runs, the summary, the exit status, the parsers, the record directory.
Tier 2: ssd --watch as a process on the recorded node's real namespaces and the fake Engine: a
fault injected mid-watch and healed appears and clears, the record's snapshots give the same
verdict with --from as the run that wrote them.
"""
from __future__ import annotations

import argparse
import json
import os
import threading
import time

import pytest

from ssd.base import CheckError
from ssd.model import Finding
from ssd.watch import Recorder, Timeline, duration, size, span
from helpers import one_line, run_ssd
from schemas import validate


def finding(check: str = "vip-alias-missing", service: str = "s1") -> Finding:
    return Finding(check, f"{check} on {service}", network="ov2", namespace="lb_oc6rqvyvp", service=service)


# --- the timeline -----------------------------------------------------------------------

def test_a_fault_that_comes_and_goes_is_two_episodes():
    line = Timeline()
    runs = [[], [finding()], [finding()], [], [finding()], [finding()]]
    changes = [line.add(100.0 + 30 * i, "inconsistent" if f else "consistent", f) for i, f in enumerate(runs)]
    assert [bool(c.appeared) for c in changes] == [False, True, False, False, True, False]
    assert [bool(c.cleared) for c in changes] == [False, False, False, True, False, False]
    assert changes[3].status == "consistent" and changes[3].previous == "inconsistent"
    track = next(iter(line.tracks.values()))
    assert [(e.start, e.end) for e in track.episodes] == [(130.0, 190.0), (220.0, None)]
    summary = line.summary(now=400.0)
    assert "6 runs" in summary[0] and "2 consistent, 4 inconsistent" in summary[0]
    # first episode 60 s, the second open until now: 180 s
    assert "2 episodes" in summary[1] and "(still there)" in summary[1]
    assert "total 4m00s, longest 3m00s" in summary[1], summary
    assert line.exit_status() == "inconsistent" and line.episodes_by_check() == {"vip-alias-missing": 2}


def test_a_finding_that_cleared_still_makes_the_watch_inconsistent():
    line = Timeline()
    line.add(1.0, "inconsistent", [finding()])
    line.add(2.0, "consistent", [])
    assert line.status == "consistent" and line.exit_status() == "inconsistent"


def test_a_run_that_could_not_check_clears_nothing():
    line = Timeline()
    line.add(1.0, "inconsistent", [finding()])
    change = line.add(2.0, "incomplete", None)
    assert not change.cleared and change.any  # the verdict changed
    change = line.add(3.0, "inconsistent", [finding()])
    assert not change.appeared  # the same episode goes on
    assert len(next(iter(line.tracks.values())).episodes) == 1


def test_a_clean_watch_says_so_and_keeps_the_last_verdict():
    line = Timeline()
    for i in range(3):
        line.add(float(i), "consistent", [])
    assert line.summary(5.0)[1] == "watch: no finding appeared" and line.exit_status() == "consistent"


def test_names_in_the_summary_are_printable():
    line = Timeline()
    line.add(1.0, "inconsistent", [finding(service="s1\x1b[2J\nOK")])
    assert all("\x1b" not in text and "\n" not in text for text in line.summary(2.0))


@pytest.mark.parametrize("text, seconds", [("90", 90), ("90s", 90), ("15m", 900), ("2h", 7200), ("1.5m", 90)])
def test_durations(text, seconds):
    assert duration(text) == seconds


@pytest.mark.parametrize("text", ["", "0", "-5", "5d", "1e3", "nan", "32d", "999999999h"])
def test_durations_refused(text):
    with pytest.raises(argparse.ArgumentTypeError):
        duration(text)


def test_sizes():
    assert size("500M") == 500 << 20 and size("1G") == 1 << 30 and size("2MiB") == 2 << 20
    for bad in ("100K", "M", "1T", "-1M"):
        with pytest.raises(argparse.ArgumentTypeError):
            size(bad)


def test_spans():
    assert [span(s) for s in (0, 59.4, 61, 3599, 3600, 90061)] == ["0s", "59s", "1m01s", "59m59s", "1h00m", "25h01m"]


# --- the record -------------------------------------------------------------------------

def snapshot_of(run: int) -> dict:
    return {"run": run, "padding": "x" * 200_000}


def test_the_record_keeps_the_changed_runs_and_the_one_before(tmp_path):
    rec = Recorder(str(tmp_path / "rec"), keep=100, max_size=100 << 20)
    for number, changed in ((1, False), (2, False), (3, True), (4, False), (5, True)):
        rec.add(float(number), number, {"status": "x"}, snapshot_of(number), changed)
    names = sorted(os.listdir(tmp_path / "rec"))
    assert [n.rsplit("-", 1)[1] for n in names if n.startswith("snapshot-")] == \
           ["000002.json", "000003.json", "000004.json", "000005.json"]
    lines = (tmp_path / "rec" / "timeline.jsonl").read_text().splitlines()
    assert [json.loads(line)["run"] for line in lines] == [1, 2, 3, 4, 5]
    assert oct(os.stat(tmp_path / "rec").st_mode & 0o777) == "0o700"
    assert all(os.stat(tmp_path / "rec" / n).st_mode & 0o077 == 0 for n in names)


def test_the_record_never_holds_more_than_its_bounds(tmp_path):
    rec = Recorder(str(tmp_path / "rec"), keep=3, max_size=1 << 20)
    for number in range(1, 30):
        rec.add(float(number), number, {"status": "x", "pad": "y" * 5000}, snapshot_of(number), True)
        snaps, timeline = rec.files()
        assert len(snaps) <= 3 and timeline + sum(n for _, n in snaps) <= 1 << 20
    assert [n.rsplit("-", 1)[1] for n, _ in rec.files()[0]] == ["000027.json", "000028.json", "000029.json"]
    for number in range(30, 400):  # the timeline alone past the bound: its older half dropped
        rec.add(float(number), number, {"status": "x", "pad": "y" * 5000}, None, False)
        assert sum(n for _, n in rec.files()[0]) + rec.files()[1] <= 1 << 20
    runs = [json.loads(line)["run"] for line in (tmp_path / "rec" / "timeline.jsonl").read_text().splitlines()]
    assert runs[-1] == 399 and runs == list(range(runs[0], 400))


@pytest.mark.parametrize("make, says", [
    (lambda d: os.symlink("/tmp", d), "not a directory (or a link)"),
    (lambda d: (os.mkdir(d), os.chmod(d, 0o777)), "writable by no one else"),
    (lambda d: open(d, "w").close(), "not a directory"),
])
def test_a_record_directory_not_ssds_own_is_refused(tmp_path, make, says):
    target = str(tmp_path / "rec")
    make(target)
    line = one_line(run_ssd("--watch", "--record", target, "--for", "1", "-H", "unix:///nonexistent"))
    assert says in line, line


def test_a_timeline_planted_as_a_link_is_not_written_through(tmp_path):
    rec_dir = tmp_path / "rec"
    rec_dir.mkdir(mode=0o700)
    victim = tmp_path / "victim"
    victim.write_text("keep\n")
    (rec_dir / "timeline.jsonl").symlink_to(victim)
    rec = Recorder(str(rec_dir), keep=3, max_size=1 << 20)
    with pytest.raises(CheckError, match=r"timeline\.jsonl"):
        rec.add(1.0, 1, {"status": "x"}, None, False)
    assert victim.read_text() == "keep\n"


@pytest.mark.parametrize("args, says", [
    (["--watch", "--nagios"], "--watch with --nagios: a Monitoring Plugin is one run"),
    (["--watch", "--from", "x.json"], "--watch with --from: a snapshot does not change"),
    (["--watch", "--all-nodes"], "--all-nodes --watch needs --for DURATION"),
    (["--watch", "--prometheus", "-"], "give --prometheus a FILE"),
    (["--record", "/tmp/x"], "--record is for --watch"),
    (["--for", "10"], "--for is for --watch"),
])
def test_what_watch_cannot_do_is_one_line(args, says):
    line = one_line(run_ssd(*args), 3 if "--nagios" in args else 2)  # UNKNOWN, under --nagios
    assert says in line, line


# --- a real watch: tier 2 -----------------------------------------------------------------

def test_a_fault_injected_mid_watch_appears_then_clears_and_is_recorded(node, engine, tmp_path):
    from kernel_node import sh
    from test_node_kernel import LB

    def fault() -> None:
        time.sleep(4)
        sh("ip", "addr", "del", "10.0.1.2/32", "dev", "eth0", ns=node.ns(LB))
        time.sleep(5)
        sh("ip", "addr", "add", "10.0.1.2/32", "dev", "eth0", ns=node.ns(LB))
    injector = threading.Thread(target=fault)
    injector.start()
    record = tmp_path / "rec"
    metrics = tmp_path / "ssd.prom"
    proc = node.ssd(engine.url, "--settle", "0", "--watch", "--interval", "1", "--for", "14",
                    "--record", str(record), "--prometheus", str(metrics), "--html", str(tmp_path / "w.html"),
                    "ov2")
    injector.join()
    out = proc.stdout
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, (out, proc.stderr)
    assert "  + vip-alias-missing [kernel] network ov2, namespace lb_oc6rqvyvp, service s1, 10.0.1.2: " in out, out
    assert "  - vip-alias-missing [kernel] network ov2, namespace lb_oc6rqvyvp, service s1, 10.0.1.2: cleared" in out, out
    assert "vip-alias-missing [kernel] network ov2, namespace lb_oc6rqvyvp, service s1, 10.0.1.2: 1 episode," in out, out
    assert (tmp_path / "w.html").read_text().count('class="episode"') == 1  # drawn at the end too
    prom = metrics.read_text()  # rewritten after every run: the last one's verdict, the episodes
    assert 'ssd_finding_episodes_total{check="vip-alias-missing"} 1.0' in prom, prom
    assert 'ssd_finding_episodes_total{check="mark-missing"} 0.0' in prom
    assert 'ssd_status{ssd_status="inconsistent"} 0.0' in prom
    timeline = [json.loads(line) for line in (record / "timeline.jsonl").read_text().splitlines()]
    for line in timeline:
        validate(line, "timeline")
    statuses = [t["report"]["status"] for t in timeline]
    assert "inconsistent" in statuses and statuses[0] == statuses[-1] != "inconsistent", statuses
    snapshots = sorted(p for p in os.listdir(record) if p.startswith("snapshot-"))
    assert len(snapshots) == 4, snapshots  # before and at the fault, before and at the heal
    by_run = {t["run"]: t["report"] for t in timeline}
    for name in snapshots:
        run = int(name.rsplit("-", 1)[1].split(".")[0])
        again = run_ssd("--from", str(record / name), "--json")
        doc = json.loads(again.stdout)
        assert doc["status"] == by_run[run]["status"], (name, doc["status"], by_run[run]["status"])
        assert [f["check"] for f in doc["findings"]] == [f["check"] for f in by_run[run]["findings"]]


def test_a_long_watch_stays_flat_in_memory():
    """bench/watch.py's measurement, shorter: 300 runs of one watch on the real namespaces; RSS
    after the last within 10% of after run 10 (1,000 runs: +0.3%, docs/benchmark.md)."""
    import subprocess
    import sys
    from helpers import REPO
    proc = subprocess.run([sys.executable, str(REPO / "bench" / "watch.py"), "300"], capture_output=True,
                          text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    growth = float(proc.stdout.split("RSS growth from run 10 to run 300: ")[1].split("%")[0])
    assert growth < 10, proc.stdout
