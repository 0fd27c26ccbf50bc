"""Tier 1: every bad input and environment is one line on stderr and exit 2, never a traceback.

ssd runs as a process, as users run it; none of these needs a daemon or a namespace.
"""
from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import REPO, SSD, one_line, run_ssd

EXAMPLE = str(REPO / "examples" / "healthy-node1.json")
PYENV = Path("/root/.pyenv/versions")


run = run_ssd


@pytest.mark.parametrize("value", ["inf", "-inf", "nan", "1e400", "-1", "abc", "3601"])
def test_bad_settle_is_refused_at_parse_time(value):
    line = one_line(run("--settle", value, "--from", EXAMPLE))
    assert line.startswith("ssd: error: argument --settle")


@pytest.mark.parametrize("value", ["0", "-5", "nan", "inf"])
def test_bad_timeout_is_refused(value):
    assert "--timeout" in one_line(run("ov2", "gossip-consistency", "--timeout", value))


def test_usage_error_under_json_still_gives_a_verdict():
    proc = run("--json", "--settle", "nan", "ov2")
    one_line(proc)
    assert json.loads(proc.stdout)["status"] == "incomplete"


def test_good_settle_values_are_accepted():
    for value in ("0", "2.5"):  # past the parser: the next thing is reaching the daemon
        line = one_line(run("--settle", value, "-H", "unix:///nonexistent.sock", "ov2"))
        assert "no Docker socket" in line, line


OLD = sorted(p / "bin" / "python" for p in PYENV.glob("3.[789].*")) + \
    sorted(p / "bin" / "python" for p in PYENV.glob("3.10.*"))


@pytest.mark.parametrize("python", [str(p) for p in OLD] or ["patched"])
def test_old_python_is_told_in_one_line(python):
    if python == "patched":  # no old interpreter on this machine: pretend to be one
        code = ("import runpy, sys; sys.version_info = (3, 9, 18, 'final', 0); "
                f"sys.argv = ['ssd'] + sys.argv[1:]; runpy.run_path({SSD!r}, run_name='__main__')")
        proc = run("--json", "ov2", code=code)
    else:
        proc = run("--json", "ov2", python=python)
    assert "needs Python 3.11" in one_line(proc)
    assert json.loads(proc.stdout)["status"] == "incomplete"


@pytest.mark.parametrize("package,args", [("docker", ["-H", "unix:///nonexistent.sock", "ov2"]),
                                          ("prometheus_client", ["--from", EXAMPLE, "--prometheus", "/tmp/x.prom"])])
def test_missing_package_is_named(package, args):
    code = (f"import runpy, sys; sys.modules[{package!r}] = None; sys.argv = ['ssd'] + sys.argv[1:]; "
            f"runpy.run_path({SSD!r}, run_name='__main__')")
    proc = run(*args, code=code)
    line = one_line(proc)
    assert f"'{package}" in line and "pip install -r requirements.txt" in line


def test_the_kernel_is_read_without_pyroute2():
    """pyroute2 is only the tests' reference: ssd's own netlink readers must not need it."""
    code = (f"import sys; sys.modules['pyroute2'] = None; sys.path.insert(0, {str(REPO)!r}); import ssd.kernel.netlink; "
            "assert 'lo' in ssd.kernel.netlink.read_addresses(); "
            "assert ssd.kernel.netlink.GenlSocket().family_id('nlctrl') == ssd.kernel.netlink.GENL_ID_CTRL; print('read')")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          check=False)
    assert proc.returncode == 0 and proc.stdout == "read\n", proc.stderr


def test_unwritable_snapshot_is_refused_before_the_check(tmp_path):
    target = tmp_path / "no" / "such" / "dir.json"
    started = time.monotonic()
    # No daemon at that address: if ssd got as far as the check it would say so instead.
    line = one_line(run("-H", "unix:///nonexistent.sock", "--snapshot", str(target), "ov2"))
    assert "cannot write snapshot" in line and time.monotonic() - started < 30
    assert not target.exists()


def test_snapshot_check_leaves_no_file_behind(tmp_path):
    target = tmp_path / "snap.json"
    line = one_line(run("-H", "unix:///nonexistent.sock", "--snapshot", str(target), "ov2"))
    assert "no Docker socket at /nonexistent.sock" in line, line
    assert not target.exists()


def test_from_and_snapshot_together_are_refused(tmp_path):
    assert "use one of them" in one_line(run("--from", EXAMPLE, "--snapshot", str(tmp_path / "x")))


@pytest.mark.parametrize("args", [["--from", EXAMPLE], ["--from", EXAMPLE, "--json"],
                                  ["ov2", "gossip-consistency", "--from", EXAMPLE, "--from",
                                   EXAMPLE.replace("node1", "node2")]])
def test_reader_that_goes_away_is_no_error(args):
    """ssd ... | head -1: the reader closed the pipe before ssd wrote."""
    proc = subprocess.Popen([sys.executable, SSD, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd=REPO)
    proc.stdout.close()
    stderr = proc.stderr.read()
    proc.wait(timeout=60)
    assert "Traceback" not in stderr and "BrokenPipe" not in stderr, stderr
    assert proc.returncode in (0, 1), stderr  # the verdict of the check, as if it had been read


def test_ctrl_c_while_ssd_imports_is_one_line():
    """The moment of the old bare KeyboardInterrupt: SIGINT while ssd's own imports run."""
    code = ("import builtins, os, runpy, signal, sys\n"
            "real = builtins.__import__\n"
            "def imp(name, *a, **k):\n"
            "    if name == 'ipaddress': os.kill(os.getpid(), signal.SIGINT)\n"
            "    return real(name, *a, **k)\n"
            "builtins.__import__ = imp\n"
            f"sys.argv = ['ssd', '--from', {EXAMPLE!r}]\n"
            f"runpy.run_path({SSD!r}, run_name='__main__')\n")
    proc = run(code=code)
    assert one_line(proc) == "ssd: interrupted"


def python_startup() -> float:
    """Python's own start-up and its compiling of the script, before ssd's first line: out of
    ssd's hands (a Ctrl-C there is Python's bare 'KeyboardInterrupt', exit 1). Measured, since a
    loaded machine stretches it. (The container runs ssd precompiled, with `python -m ssd`.)"""
    times = []
    for _ in range(3):
        started = time.monotonic()
        subprocess.run([sys.executable, "-c", f"compile(open({SSD!r}).read(), {SSD!r}, 'exec')"], check=True)
        times.append(time.monotonic() - started)
    return max(times)


@pytest.mark.parametrize("delay", [0.02, 0.05, 0.1, 0.2, 0.4])
def test_ctrl_c_at_any_moment_is_one_line(delay):
    """From ssd's first line to its exit, including after the verdict is out."""
    startup = python_startup()
    proc = subprocess.Popen([sys.executable, SSD, "--from", EXAMPLE], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, cwd=REPO)
    time.sleep(startup * 2 + delay)
    proc.send_signal(signal.SIGINT)
    stderr = proc.stderr.read()
    proc.wait(timeout=60)
    assert "Traceback" not in stderr, (delay, stderr)
    # Interrupted: "ssd: interrupted", exit 2 (or killed before Python could say anything);
    # finished first: its verdict.
    assert proc.returncode in (2, -signal.SIGINT, 0), (delay, proc.returncode, stderr)
    if proc.returncode == 2:
        assert stderr.strip() == "ssd: interrupted"


# --- --nagios: one Monitoring Plugins line, their exit codes ---------------------------------

NAGIOS_LINE = r"^SSD (OK|WARNING|CRITICAL|UNKNOWN) - [^|\n]+( \| (\S+=\S+ ?)+)?\n$"


def nagios(*args: str) -> tuple[int, str, str]:
    proc = run("--nagios", *args)
    assert re.match(NAGIOS_LINE, proc.stdout), proc.stdout
    assert "Traceback" not in proc.stderr
    return proc.returncode, proc.stdout, proc.stderr


EXPECTED = json.loads((REPO / "examples" / "expected.json").read_text())["check"]
NAGIOS_STATES = {"consistent": (0, "OK"), "inconsistent": (2, "CRITICAL")}


@pytest.mark.parametrize("example", sorted(EXPECTED))
def test_nagios_verdict_of_each_example(example):
    """Every recorded node: the state its verdict maps to, and each finding's check named."""
    code, state = NAGIOS_STATES[EXPECTED[example]["status"]]
    rc, out, _ = nagios("--from", str(REPO / "examples" / example))
    assert rc == code and out.startswith(f"SSD {state} - "), out
    assert all(check in out for check in EXPECTED[example]["checks"])
    findings = json.loads(run("--json", "--from", str(REPO / "examples" / example)).stdout)["findings"]
    # Thresholds that say what the state says: the range "0" alerts above 0 (CRITICAL at one).
    persisting = sum(not f.get("converging") for f in findings)
    assert f" | findings={persisting};;0;0 converging={len(findings) - persisting};0;;0 " in out


@pytest.mark.parametrize("args", [["--settle", "nan"], ["--json"], ["-H", "unix:///nonexistent.sock", "ov2"],
                                  ["ov2", "gossip-consistency", "--from", EXAMPLE]])
def test_nagios_could_not_check_is_unknown(args):
    rc, out, stderr = nagios(*args)
    assert rc == 3 and out.startswith("SSD UNKNOWN - "), (out, stderr)
    assert len(stderr.splitlines()) <= 2


def test_nagios_gossip_agreement_and_divergence():
    healthy = [a for n in (1, 2, 3) for a in ("--from", str(REPO / "examples" / f"healthy-node{n}.json"))]
    rc, out, _ = nagios("ov2", "gossip-consistency", *healthy)
    assert rc == 0 and "3 of 3 nodes agree" in out and "nodes_answered=3" in out
    diverged = [a for n in (1, 3) for a in ("--from", str(REPO / "examples" / f"diverged-node{n}.json"))]
    rc, out, _ = nagios("ov2", "gossip-consistency", *diverged)
    assert rc == 2 and out.startswith("SSD CRITICAL - network ov2: ")


# --- --prometheus: node_exporter textfile, written atomically ---------------------------------

def metrics(path) -> dict[tuple[str, tuple], float]:
    """(sample name, sorted labels) -> value, read back with the client library's own parser."""
    from prometheus_client.parser import text_string_to_metric_families
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(path.read_text()) for s in family.samples}


def test_prometheus_metrics_of_an_inconsistent_node(tmp_path):
    target = tmp_path / "ssd.prom"
    target.write_text("stale content of the last run\n")
    example = str(REPO / "examples" / "stale-backend-node2.json")
    proc = run("-q", "--from", example, "--prometheus", str(target))
    assert proc.returncode == 1, proc.stderr
    got = metrics(target)
    assert got[("ssd_status", (("ssd_status", "inconsistent"),))] == 1
    assert got[("ssd_status", (("ssd_status", "consistent"),))] == 0
    nonzero = {labels for (name, labels), value in got.items() if name == "ssd_findings" and value}
    assert nonzero == {(("check", "ipvs-backend-stale"), ("network", "ov2"))}
    zeros = [labels for (name, labels), value in got.items() if name == "ssd_findings" and not value]
    assert len(zeros) >= 2 * 20  # every check id has a series per network: alerts need no absent()
    doc = json.loads(run("--json", "--from", example).stdout)
    for net in doc["networks"]:
        for status in ("ok", "fail"):
            want = sum(s["status"] == status for s in net["services"])
            assert got[("ssd_services", (("network", net["name"]), ("status", status)))] == want
    assert time.time() - got[("ssd_last_run_timestamp_seconds", ())] < 60
    assert got[("ssd_not_checked", ())] == 0
    assert [p.name for p in tmp_path.iterdir()] == ["ssd.prom"]  # no temporary file left


def test_prometheus_says_could_not_check(tmp_path):
    target = tmp_path / "ssd.prom"
    proc = run("-H", "unix:///nonexistent.sock", "ov2", "--prometheus", str(target))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    got = metrics(target)
    assert got[("ssd_status", (("ssd_status", "incomplete"),))] == 1 and got[("ssd_not_checked", ())] == 1


@pytest.mark.parametrize("args", [["--from", EXAMPLE, "--prometheus", "/nonexistent/dir/ssd.prom"],
                                  ["ov2", "gossip-consistency", "--from", EXAMPLE, "--prometheus", "x.prom"]])
def test_prometheus_refused_in_one_line(args):
    assert "prometheus" in one_line(run(*args)) or "metrics" in one_line(run(*args))
    assert not (REPO / "x.prom").exists()


def test_a_finding_names_the_engine_bugs_it_may_be():
    example = str(REPO / "examples" / "missing-dnat-node2.json")  # engine 28.5.2
    [finding] = json.loads(run("--json", "--from", example).stdout)["findings"]
    assert {k["ref"]: k["affects_this_engine"] for k in finding["known_issues"]} == {
        "moby#51656": True, "firewalld/firewalld#503": True, "moby/swarmkit#2937": True,
        "moby#45089": True}
    text = run("--from", example).stdout
    assert "known engine bug firewalld/firewalld#503, fixed in 29.0.0" in text


def test_a_profiler_loaded_still_writes_what_it_measured(tmp_path):
    """ssd leaves without the interpreter's teardown (os._exit once the verdict is flushed),
    except when a profiler is loaded: cProfile writes its results after the program returns."""
    out = tmp_path / "ssd.prof"
    proc = subprocess.run([sys.executable, "-m", "cProfile", "-o", str(out), SSD, "-q", "--from", EXAMPLE],
                          capture_output=True, text=True, timeout=60, check=False, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    assert out.exists() and out.stat().st_size > 0
