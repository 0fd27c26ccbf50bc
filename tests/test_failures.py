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
