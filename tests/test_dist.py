"""dist/ssd, the one file to copy: built by `make dist`, it checks every example as ./ssd.py does
with nothing but the interpreter (-I -S: no site-packages, no environment, no current
directory), and it carries only pure-Python code."""
from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from helpers import REPO

EXAMPLES = sorted((REPO / "examples").glob("*.json"))


@pytest.fixture(scope="module")
def dist(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("dist")
    venv = Path(sys.executable).parent.parent
    proc = subprocess.run(["make", "-s", "dist", f"VENV={venv}", f"DIST_OUT={root / 'ssd'}",
                           f"DIST_BUILD={root / 'build'}"], cwd=REPO, capture_output=True, text=True,
                          timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return root / "ssd"


def bare(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-I", "-S", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120, check=False)


def test_it_is_one_executable_file_of_pure_python(dist):
    assert dist.stat().st_mode & 0o111 and dist.read_bytes().startswith(b"#!/usr/bin/env python3\n")
    names = zipfile.ZipFile(dist).namelist()
    assert "__main__.py" in names and "ssd/cli.py" in names and "ssd/cli.pyc" in names
    for package in ("docker/", "requests/", "dns/", "prometheus_client/"):
        assert any(n.startswith(package) for n in names), package
    assert not [n for n in names if n.endswith((".so", ".pyd"))]


def test_it_checks_every_example_as_the_script_does(dist, tmp_path):
    assert len(EXAMPLES) >= 10
    for example in EXAMPLES:
        one = bare(str(dist), "--json", "--from", str(example), cwd=tmp_path)
        script = subprocess.run([sys.executable, str(REPO / "ssd.py"), "--json", "--from", str(example)],
                                capture_output=True, text=True, timeout=120, check=False)
        assert one.returncode == script.returncode in (0, 1, 2, 3), (example.name, one.stderr)
        assert json.loads(one.stdout) == json.loads(script.stdout), example.name


def test_its_dependencies_are_inside(dist, tmp_path):
    """The Engine API's client and the optional packages import from the file itself."""
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import docker, dns.message, prometheus_client; "
            "import ssd.engine; print(docker.__file__.startswith(sys.argv[1]))")
    proc = bare("-c", code, str(dist), cwd=tmp_path)
    assert proc.returncode == 0 and proc.stdout == "True\n", proc.stderr
    proc = bare(str(dist), "-H", "unix:///nonexistent.sock", cwd=tmp_path)  # the SDK itself runs
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "nonexistent.sock" in proc.stderr, proc.stderr
