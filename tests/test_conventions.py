"""Conventions operators bring from Docker and from monitoring, and the defects that broke them.

Tier 1 (ssd as a process, no daemon) and tier 2 (the stand-in Engine API, behind TLS or a Docker
context). Each defect of issue 24 has a test here that failed on the main it was found on.
"""
from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

import ssd.cli
import ssd.engine
import ssd.report
import ssd.run
import ssd.snapshot
from helpers import REPO, SSD, one_line, run_ssd

EXAMPLE = str(REPO / "examples" / "healthy-node1.json")
STALE = str(REPO / "examples" / "stale-backend-node2.json")
CLEAN_ENV = {"PATH": "/usr/bin:/bin", "HOME": "/nonexistent", "NO_COLOR": "1"}


def run(*args: str, env: dict[str, str] | None = None, **how) -> subprocess.CompletedProcess:
    """ssd in a clean environment, with env added to it."""
    return run_ssd(*args, env={**CLEAN_ENV, **(env or {})}, **how)


# --- addresses: one line that names the address, where it came from, and what works ---------

BAD_ADDRESSES = ["tcp://127.0.0.1:99999", "tcp://[::1", "::::"]


@pytest.mark.parametrize("address", BAD_ADDRESSES)
def test_an_address_that_cannot_be_parsed_is_one_line(address):
    line = one_line(run("-H", address, "ov2"))
    assert f"not a Docker daemon address: {address!r} (from -H)" in line, line
    line = one_line(run("ov2", env={"DOCKER_HOST": address}))
    assert f"{address!r} (from DOCKER_HOST)" in line and "unix:///var/run/docker.sock" in line, line


@pytest.mark.parametrize("address", BAD_ADDRESSES)
def test_a_bad_address_under_nagios_and_prometheus_is_unknown_and_incomplete(address, tmp_path):
    proc = run("--nagios", "-H", address, "ov2")
    one_line(proc, status=3)
    assert proc.stdout.startswith("SSD UNKNOWN - not a Docker daemon address"), proc.stdout
    metrics = tmp_path / "ssd.prom"
    one_line(run("--prometheus", str(metrics), "-H", address, "ov2"))
    assert 'ssd_status{ssd_status="incomplete"} 1.0' in metrics.read_text()


def test_connection_refused_says_what_to_check():
    with socket.socket() as closed:  # bound, never listening: connecting is refused
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
        line = one_line(run("-H", f"tcp://127.0.0.1:{port}", "ov2"))
    assert line == (f"ssd: error: connection refused at tcp://127.0.0.1:{port}: is dockerd running "
                    "and listening there?"), line


def test_the_os_error_is_found_under_the_sdk_wrappers():
    """What the SDK raises: DockerException from requests' ConnectionError from urllib3's
    ProtocolError, which carries the OS error in its arguments."""
    inner = PermissionError(13, "Permission denied")
    wrapped = RuntimeError("Error while fetching server API version: ('Connection aborted.', ...)")
    wrapped.__cause__ = ValueError("Connection aborted.", inner)
    why = ssd.engine.why_unreachable("unix:///run/docker.sock", wrapped)
    assert why.startswith("permission denied on /run/docker.sock: run ssd as root"), why
    assert ssd.engine.why_unreachable("x", RuntimeError("boom")) == "cannot reach the Docker daemon at x: boom"


# --- stdout that cannot take the report ------------------------------------------------------

@pytest.mark.parametrize("args,status", [([], 2), (["--json"], 2), (["--nagios"], 3),
                                         (["--snapshot", "-"], 2)])
def test_a_full_stdout_is_one_line(args, status):
    extra = ["-H", "unix:///nonexistent.sock", "ov2"] if "--snapshot" in args else ["--from", EXAMPLE]
    with open("/dev/full", "w") as full:
        proc = run(*args, *extra, stdout=full)
    if "--snapshot" in args:  # (no daemon here: the error comes first, and is written to stderr)
        assert "no Docker socket" in one_line(proc, status)
        return
    assert one_line(proc, status) == ("ssd: error: cannot write the report to standard output: "
                                      "No space left on device")


def test_a_closed_stdout_is_not_called_a_damaged_snapshot():
    proc = subprocess.run([sys.executable, SSD, "--from", EXAMPLE], stdin=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True, timeout=60, check=False, cwd=REPO,
                          env=CLEAN_ENV, pass_fds=(), close_fds=True, preexec_fn=lambda: os.close(1))
    line = one_line(proc)
    assert line == "ssd: error: cannot write the report to standard output: standard output is closed"


# --- options that mean nothing where they are given -----------------------------------------

@pytest.mark.parametrize("flag,value", [("-H", "unix:///x.sock"), ("--context", "prod"),
                                        ("--exec-root", "/run/docker"), ("--settle", "5"),
                                        ("--image", "ssd:1")])
def test_live_options_with_from_are_refused(flag, value):
    line = one_line(run(flag, value, "--from", EXAMPLE))
    assert line.startswith(f"ssd: error: {flag} is for reading a live node; --from checks a snapshot"), line


def test_stdin_twice_is_refused():
    line = one_line(run("ov2", "gossip-consistency", "--from", "-", "--from", "-"))
    assert "standard input is read once" in line


def test_a_snapshot_on_stdin_is_read_once_in_a_comparison():
    with open(EXAMPLE.replace("node1", "node2")) as node2:
        proc = subprocess.run([sys.executable, SSD, "ov2", "gossip-consistency", "--from", EXAMPLE,
                               "--from", "-"], stdin=node2, capture_output=True, text=True,
                              timeout=60, check=False, cwd=REPO, env=CLEAN_ENV)
    assert proc.returncode == 0 and "2 nodes agree" in proc.stdout, (proc.stdout, proc.stderr)


def test_host_and_context_together_are_refused():
    assert "-H and --context" in one_line(run("-H", "unix:///x.sock", "--context", "prod", "ov2"))


# --- Prometheus ------------------------------------------------------------------------------

def test_prometheus_dash_is_stdout_not_a_file(tmp_path):
    proc = run("--prometheus", "-", "--from", STALE, cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    assert not (tmp_path / "-").exists()
    assert 'ssd_status{ssd_status="inconsistent"} 1.0' in proc.stdout
    assert "Verifying" not in proc.stdout  # the metrics instead of the report
    assert "--prometheus - and --snapshot -" in one_line(run("--prometheus", "-", "--snapshot", "-", "ov2"))


def test_last_success_survives_a_failed_run(tmp_path):
    metrics = tmp_path / "ssd.prom"
    assert run("--prometheus", str(metrics), "--from", EXAMPLE).returncode == 0
    first = re.search(r"^ssd_last_success_timestamp_seconds (\S+)$", metrics.read_text(), re.M)
    assert first, metrics.read_text()
    one_line(run("--prometheus", str(metrics), "--from", str(tmp_path / "missing.json")))
    text = metrics.read_text()
    assert 'ssd_status{ssd_status="incomplete"} 1.0' in text
    assert f"ssd_last_success_timestamp_seconds {first.group(1)}\n" in text


# --- -t: the whole check bounded, UNKNOWN on expiry ------------------------------------------

def hanging_socket(path: Path) -> socket.socket:
    """A daemon that accepts and never answers."""
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(path))
    listener.listen(8)
    return listener


@pytest.mark.parametrize("mode,status", [("text", 2), ("nagios", 3)])
def test_timeout_bounds_the_node_check(tmp_path, mode, status):
    with hanging_socket(tmp_path / "hang.sock"):
        args = ["--nagios"] if mode == "nagios" else []
        proc = run(*args, "-t", "1.5", "-H", f"unix://{tmp_path}/hang.sock", "ov2", timeout=30)
    line = one_line(proc, status)
    assert line.startswith("ssd: error: the check did not finish within 1.5 s (-t 1.5)"), line
    if mode == "nagios":
        assert proc.stdout.startswith("SSD UNKNOWN - the check did not finish within 1.5 s")


# --- words and help ---------------------------------------------------------------------------

def test_one_network_is_one_network():
    doc = ssd.snapshot.load_snapshot(EXAMPLE)
    _, result = ssd.run.settled_check(ssd.snapshot.SnapshotCollector(doc, EXAMPLE), ["ov2"], 0, live=False)
    result.networks = [n for n in result.networks if n.view.name == "ingress"]  # one, one service
    text = ssd.report.render_text(result, ssd.report.Painter(False), quiet=False, verbose=False)
    assert text.splitlines()[-1] == "1 network, 1 service, 0 inconsistencies", text
    assert "(s)" not in run("--from", EXAMPLE, "-v").stdout


@pytest.mark.parametrize("value,colour", [("", True), ("1", False)])
def test_an_empty_no_color_does_not_disable_colour(monkeypatch, value, colour):
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True
    monkeypatch.setenv("NO_COLOR", value)
    monkeypatch.setenv("TERM", "xterm")
    monkeypatch.setattr(sys, "stdout", Tty())
    assert ssd.cli.use_colour(argparse.Namespace(no_color=False)) is colour


def test_usage_errors_come_from_the_arguments_given(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["ssd", "--json"])  # what main() was NOT given
    with pytest.raises(SystemExit) as exit_:
        ssd.cli.main(["--nagios", "--settle", "nan", "ov2"])
    assert exit_.value.code == 3
    out = capsys.readouterr().out
    assert out.startswith("SSD UNKNOWN - usage: argument --settle"), out


def test_gossip_help_is_that_modes_help():
    proc = run("ov2", "gossip-consistency", "--help")
    assert proc.returncode == 0
    assert proc.stdout.startswith("usage: ssd NETWORK gossip-consistency"), proc.stdout
    assert "--all-nodes" not in proc.stdout


def test_help_says_the_live_check_needs_root():
    text = run("--help").stdout
    assert "runs as root" in " ".join(text.split())
    assert "3 swarm still converging" in text


def test_ctrl_c_while_the_installed_command_imports_ssd():
    """The `ssd` command a pip install makes imports the module (no script to compile): its
    early handler must hold there too. SIGINT arrives while ssd's own imports run."""
    code = ("import builtins, os, signal, sys\n"
            f"sys.path.insert(0, {str(REPO)!r})\n"
            "real = builtins.__import__\n"
            "def imp(name, *a, **k):\n"
            "    if name == 'ipaddress': os.kill(os.getpid(), signal.SIGINT)\n"
            "    return real(name, *a, **k)\n"
            "builtins.__import__ = imp\n"
            "sys.argv = ['/usr/local/bin/ssd', '--version']\n"
            "from ssd import cli\n"
            "cli()\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          check=False, env=CLEAN_ENV)
    assert one_line(proc) == "ssd: interrupted"


# --- Docker contexts and TLS (tier 2: the stand-in Engine API) --------------------------------

def not_in_swarm(engine) -> str:
    """Make the stand-in daemon answer as one outside swarm mode: reaching it is then a
    distinctive one-line error, whatever this machine's namespaces."""
    engine.routes["/info"]["Swarm"] = {"LocalNodeState": "inactive"}
    return "this daemon is not in swarm mode"


def write_context(config: Path, name: str, host: str, tls: Path | None = None,
                  current: bool = False) -> None:
    """A context as `docker context create NAME --docker host=...,ca=...` lays it out."""
    digest = hashlib.sha256(name.encode()).hexdigest()
    meta = config / "contexts" / "meta" / digest
    meta.mkdir(parents=True)
    (meta / "meta.json").write_text(json.dumps(
        {"Name": name, "Metadata": {}, "Endpoints": {"docker": {"Host": host, "SkipTLSVerify": False}}}))
    if tls:
        where = config / "contexts" / "tls" / digest / "docker"
        where.mkdir(parents=True)
        for pem in ("ca.pem", "cert.pem", "key.pem"):
            (where / pem).write_bytes((tls / pem).read_bytes())
    conf = config / "config.json"
    doc = json.loads(conf.read_text()) if conf.exists() else {}
    if current:
        doc["currentContext"] = name
    conf.write_text(json.dumps(doc))


@pytest.mark.parametrize("how", ["--context", "DOCKER_CONTEXT", "docker context use"])
def test_a_context_is_followed(engine, tmp_path, how):
    expected = not_in_swarm(engine)
    config = tmp_path / "docker-config"
    write_context(config, "lab", engine.url, current=how == "docker context use")
    env = {"DOCKER_CONFIG": str(config)}
    args = ["ov2"]
    if how == "--context":
        args = ["--context", "lab", "ov2"]
    elif how == "DOCKER_CONTEXT":
        env["DOCKER_CONTEXT"] = "lab"
    assert expected in one_line(run(*args, env=env))


def test_host_beats_the_context_as_for_docker(engine, tmp_path):
    """docker's order: -H, then DOCKER_HOST, before DOCKER_CONTEXT and the current context."""
    expected = not_in_swarm(engine)
    config = tmp_path / "docker-config"
    write_context(config, "elsewhere", "unix:///nonexistent.sock", current=True)
    env = {"DOCKER_CONFIG": str(config), "DOCKER_CONTEXT": "elsewhere"}
    assert expected in one_line(run("-H", engine.url, "ov2", env=env))
    assert expected in one_line(run("ov2", env={**env, "DOCKER_HOST": engine.url}))
    assert "no Docker socket at /nonexistent.sock" in one_line(run("ov2", env=env))


def test_a_missing_context_is_named(tmp_path):
    config = tmp_path / "docker-config"
    config.mkdir()
    (config / "config.json").write_text("{}")
    line = one_line(run("--context", "prod", "ov2", env={"DOCKER_CONFIG": str(config)}))
    assert "no Docker context 'prod' (from --context; docker context ls lists them)" in line


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    from tls_front import make_pki
    return make_pki(tmp_path_factory.mktemp("tls"))


def test_tls_from_the_environment(engine, pki):
    from tls_front import TlsFront
    expected = not_in_swarm(engine)
    server, client = pki
    with TlsFront(server, engine.socket_path) as front:
        env = {"DOCKER_HOST": front.url, "DOCKER_TLS_VERIFY": "1", "DOCKER_CERT_PATH": str(client)}
        assert expected in one_line(run("ov2", env=env))
        assert expected in one_line(run("-H", front.url, "ov2", env={**env, "DOCKER_HOST": ""}))
        # Without the client's certificate the daemon refuses the handshake: said, in one line.
        plain = one_line(run("-H", front.url, "ov2"))
        assert "not in swarm mode" not in plain, plain
        assert front.handshakes_failed or "Engine API" in plain


def test_tls_with_a_certificate_of_another_ca_fails_in_one_line(engine, pki, tmp_path):
    from tls_front import TlsFront, make_pki
    not_in_swarm(engine)
    server, _ = pki
    _, stranger = make_pki(tmp_path, "other")
    with TlsFront(server, engine.socket_path) as front:
        env = {"DOCKER_TLS_VERIFY": "1", "DOCKER_CERT_PATH": str(stranger)}
        line = one_line(run("-H", front.url, "ov2", env=env))
    assert f"TLS with {front.url} failed" in line and "certificates" in line, line


def test_tls_from_a_context(engine, pki, tmp_path):
    from tls_front import TlsFront
    expected = not_in_swarm(engine)
    server, client = pki
    config = tmp_path / "docker-config"
    with TlsFront(server, engine.socket_path) as front:
        write_context(config, "secure", front.url, tls=client)
        assert expected in one_line(run("--context", "secure", "ov2", env={"DOCKER_CONFIG": str(config)}))


def test_cert_path_without_certificates_is_one_line(tmp_path):
    line = one_line(run("-H", "tcp://127.0.0.1:2376", "ov2",
                        env={"DOCKER_TLS_VERIFY": "1", "DOCKER_CERT_PATH": str(tmp_path)}))
    assert f"{tmp_path} must hold ca.pem, cert.pem and key.pem" in line



def test_tls_without_verification_is_refused(tmp_path):
    """DOCKER_CERT_PATH without DOCKER_TLS_VERIFY: the SDK would speak TLS and check no
    certificate; a root tool that believes the daemon refuses, in one line."""
    for name in ("ca.pem", "cert.pem", "key.pem"):
        (tmp_path / name).write_text("")
    line = one_line(run("ov2", env={"DOCKER_HOST": "tcp://127.0.0.1:9", "DOCKER_CERT_PATH": str(tmp_path)}))
    assert "without DOCKER_TLS_VERIFY" in line and "DOCKER_TLS_VERIFY=1" in line, line
