"""Fail closed, always one line: an exception nobody foresaw is a bug of ssd's, reported as one
line and exit 2 (Nagios UNKNOWN, `incomplete` in the metrics file), never exit 1, which means
findings; SIGTERM, SIGHUP and SIGQUIT stop a run as Ctrl-C does; a snapshot Python's decoder
would choke on is refused where it enters."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from helpers import EXAMPLES, REPO, one_line, run_ssd

EXAMPLE = str(EXAMPLES / "healthy-node1.json")
# ssd as ./ssd.py runs it, with the node check replaced by one that fails or waits
BROKEN = ("import sys, time, ssd.cli, ssd.run\n"
          "how = sys.argv[1]\n"
          "def check(args):\n"
          "    if how == 'wait':\n"
          "        print('waiting', flush=True); time.sleep(30)\n"
          "    raise RuntimeError('boom')\n"
          "ssd.cli.node_check = check\n"
          "sys.argv = ['ssd'] + sys.argv[2:]\n"
          "ssd.cli.cli()\n")


def broken(*args: str) -> subprocess.CompletedProcess:
    return run_ssd("fail", "--from", EXAMPLE, *args, code=BROKEN)


def test_a_bug_is_one_line_and_exit_2_never_1(tmp_path):
    line = one_line(broken("--prometheus", str(tmp_path / "ssd.prom")))
    assert line.startswith("ssd: internal error: RuntimeError: boom at <string>:") and "--debug" in line
    assert 'ssd_status{ssd_status="incomplete"} 1.0' in (tmp_path / "ssd.prom").read_text()


def test_a_bug_under_nagios_is_unknown_and_under_json_a_verdict():
    proc = broken("--nagios")
    assert proc.returncode == 3 and proc.stdout.startswith("SSD UNKNOWN - RuntimeError: boom"), proc
    proc = broken("--json")
    assert proc.returncode == 2 and json.loads(proc.stdout)["status"] == "incomplete"


def test_debug_shows_the_traceback():
    proc = broken("--debug")
    assert proc.returncode == 2 and "Traceback (most recent call last)" in proc.stderr
    assert proc.stderr.rstrip().splitlines()[-1].startswith("ssd: internal error: RuntimeError: boom")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT])
def test_a_stop_signal_is_handled_like_ctrl_c(tmp_path, signum):
    prom = tmp_path / "ssd.prom"
    proc = subprocess.Popen([sys.executable, "-c", BROKEN, "wait", "--from", EXAMPLE, "--prometheus", str(prom)],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline() == "waiting\n"
    time.sleep(0.2)
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 2 and err == "ssd: interrupted\n", (proc.returncode, err)
    assert 'ssd_status{ssd_status="incomplete"} 1.0' in prom.read_text()


@pytest.mark.parametrize("content, says", [
    ("[" * 100000 + "]" * 100000, "recursion"),
    ('{"format": "ssd-snapshot", "version": ' + "9" * 5000 + "}", "4300 digits"),
    ('{"format": "ssd-snapshot", "version": Infinity}', "Infinity is not a JSON number"),
    ('{"format": "ssd-snapshot", "version": NaN}', "NaN is not a JSON number"),
])
def test_json_the_decoder_chokes_on_is_refused_where_it_enters(tmp_path, content, says):
    path = tmp_path / "bad.json"
    path.write_text(content)
    line = one_line(run_ssd("--from", str(path)))
    assert "is not a usable ssd snapshot" in line and says in line, line


def close_stdin() -> None:
    os.close(0)


def test_a_device_or_closed_stdin_is_not_read_as_a_snapshot():
    assert "not a regular file" in one_line(run_ssd("--from", "/dev/zero", timeout=20))
    proc = subprocess.run([sys.executable, str(REPO / "ssd.py"), "--from", "-"], stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=20, check=False)
    assert "not a usable ssd snapshot" in one_line(proc)
    proc = subprocess.run([sys.executable, str(REPO / "ssd.py"), "--from", "-"], stdin=None, close_fds=True,
                          capture_output=True, text=True, timeout=20, check=False,
                          preexec_fn=close_stdin)
    assert "standard input is closed" in one_line(proc)


def test_a_relative_path_entry_does_not_find_iptables_in_the_current_directory(tmp_path):
    """PATH=:/usr/bin (an empty entry, the current directory) with an iptables-nft-save here: the
    system's is run, never this one."""
    planted = tmp_path / "iptables-nft-save"
    planted.write_text("#!/bin/sh\ntouch planted-ran\n")
    planted.chmod(0o755)
    code = ("import ssd.kernel.iptables as i; print(i.iptables_backends().get('nf_tables', 'none'))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                          timeout=30, check=False,
                          env={"PATH": f":bin:{tmp_path.name}:/usr/bin:/bin", "PYTHONPATH": str(REPO)})
    assert proc.returncode == 0 and not proc.stdout.startswith(str(tmp_path)), proc
    assert proc.stdout.strip() in ("none", "/usr/sbin/iptables-nft-save", "/sbin/iptables-nft-save",
                                   "/usr/bin/iptables-nft-save", "/bin/iptables-nft-save")


def mutated(tmp_path, key: str, value) -> str:
    """healthy-node1 (a manager) with one Engine API answer replaced in every sample."""
    doc = json.loads((EXAMPLES / "healthy-node1.json").read_text())
    if key == "GET /networks/<ov2>":
        key = next(k for k in doc["samples"][0]["api"] if k.startswith("GET /networks/")
                   and doc["samples"][0]["api"][k].get("Name") == "ov2")
    for sample in doc["samples"]:
        if key in sample["api"] or key == "GET /nodes":  # (not recorded by this snapshot's ssd)
            sample["api"][key] = value
    path = tmp_path / "mutated.json"
    path.write_text(json.dumps(doc))
    return str(path)


@pytest.mark.parametrize("key, value, says", [
    ("GET /info", [], "is a list where an object was expected"),
    ("GET /networks", [None], "is a list holding null where a list of objects"),
    ("GET /networks", {}, "is an object where a list of objects"),
    ("GET /services", [None], "is a list holding null"),
    ("GET /services", {}, "is an object where a list of objects"),
    ("GET /nodes", "node1", "is a string"),
    ("GET /networks/<ov2>", [], "is a list where an object was expected"),
])
def test_an_engine_answer_of_the_wrong_shape_is_not_checked_never_consistent(tmp_path, key, value, says):
    """What the Engine API answers is checked where it enters: /services answering {} gave 19
    false inconsistencies, /networks {} "0 networks" and exit 0; a list of nulls a traceback."""
    for output in ((), ("--json",), ("--nagios",)):
        proc = run_ssd("--from", mutated(tmp_path, key, value), *output)
        if output == ("--nagios",):
            assert proc.returncode == 3 and proc.stdout.startswith("SSD UNKNOWN"), proc
            continue
        line = one_line(proc)
        assert "mutated.json is not a usable ssd snapshot: its GET /" in line and says in line, line
        if output:
            assert json.loads(proc.stdout)["status"] == "incomplete"


def edited(tmp_path, edit) -> str:
    doc = json.loads((EXAMPLES / "healthy-node1.json").read_text())
    for sample in doc["samples"]:
        edit(sample["namespaces"])
    path = tmp_path / "edited.json"
    path.write_text(json.dumps(doc))
    return str(path)


LB = "/var/run/docker/netns/lb_zintqg6wr"


@pytest.mark.parametrize("edit, says", [
    (lambda ns: ns.pop("host"), "host: this snapshot holds no host rules: the published ports' ingress"),
    (lambda ns: ns.update(host={"error": "gone"}), "host: gone; its ingress and encryption rules not checked"),
    (lambda ns: ns[LB].update(ipvs=None), "network ov2 (lb_zintqg6wr): its ipvs were not read"),
    (lambda ns: ns[LB].update(iptables={}), "network ov2 (lb_zintqg6wr): its rules were not read"),
    (lambda ns: ns[LB].update(addresses=None), "network ov2 (lb_zintqg6wr): its addresses were not read"),
], ids=["host-absent", "host-error", "ipvs-null", "rules-empty", "addresses-null"])
def test_a_missing_part_is_not_checked_never_passed_over(tmp_path, edit, says):
    """A part of the datapath that is absent, or carries an error, or is null with no reason,
    is named on stderr and the run exits 2 (Nagios WARNING: partly checked), where it said
    "consistent" (or INCOMPLETE with nothing on stderr), exit 0, Nagios OK."""
    path = edited(tmp_path, edit)
    proc = run_ssd("--from", path, "-q")
    assert proc.returncode == 2 and f"ssd: not checked: {says}" in proc.stderr, proc
    nagios = run_ssd("--from", path, "--nagios")
    assert nagios.stdout.startswith("SSD WARNING") and nagios.returncode == 1, nagios


def test_json_never_holds_nan(monkeypatch, capsys):
    """A NaN that reached a report (JSON has none) is a bug: exit 2 in one line, no invalid JSON."""
    import ssd.cli
    real = ssd.cli.to_json
    monkeypatch.setattr(ssd.cli, "to_json", lambda result: {**real(result), "ratio": float("nan")})
    status = ssd.cli.main(["--from", EXAMPLE, "--json"])
    out, err = capsys.readouterr()
    assert status == 2 and "NaN" not in out and json.loads(out)["status"] == "incomplete", (out, err)
    assert err.count("\n") == 1 and "ValueError" in err and "not JSON compliant" in err, err
