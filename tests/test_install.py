"""The install an operator does: `pip install .` into a fresh venv (what pipx does) gives an `ssd`
command that checks a snapshot as ./ssd.py does, from the files the distribution is built of."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import REPO

SOURCES = ["pyproject.toml", "requirements.txt", "README.md", "LICENSE"]


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """bin/ of a fresh venv with ssd installed from a copy of the sources (no checkout around
    it: what is not in the distribution is not there)."""
    root = tmp_path_factory.mktemp("install")
    source = root / "src"
    source.mkdir()
    for name in SOURCES:
        shutil.copy(REPO / name, source / name)
    shutil.copytree(REPO / "ssd", source / "ssd", ignore=shutil.ignore_patterns("__pycache__"))
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    proc = subprocess.run([str(venv / "bin" / "pip"), "install", "-q", str(source)], capture_output=True,
                          text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return venv / "bin"


def test_the_command_and_its_version(installed):
    proc = subprocess.run([str(installed / "ssd"), "--version"], capture_output=True, text=True,
                          timeout=60, check=False)
    version = subprocess.run([sys.executable, "-c", "import ssd; print(ssd.__version__)"], cwd=REPO,
                             capture_output=True, text=True, check=True).stdout.strip()
    assert proc.returncode == 0 and proc.stdout == f"ssd {version}\n", proc


def test_the_command_checks_a_snapshot_as_the_script_does(installed, tmp_path):
    example = REPO / "examples" / "stale-backend-node2.json"
    command = subprocess.run([str(installed / "ssd"), "--json", "--from", str(example)], cwd=tmp_path,
                             capture_output=True, text=True, timeout=60, check=False)
    script = subprocess.run([sys.executable, str(REPO / "ssd.py"), "--json", "--from", str(example)],
                            cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False)
    assert command.returncode == script.returncode == 1, command.stderr
    assert [f["check"] for f in json.loads(command.stdout)["findings"]] == ["ipvs-backend-stale"]
    assert json.loads(command.stdout) == json.loads(script.stdout)


def test_the_installed_metadata(installed):
    code = ("import importlib.metadata as m; d = m.distribution('swarm-service-driller'); "
            "print(d.metadata['Requires-Python']); print(*sorted(d.requires or []), sep='\\n')")
    out = subprocess.run([str(installed / "python"), "-c", code], capture_output=True, text=True,
                         timeout=60, check=True).stdout.splitlines()
    assert out[0] == ">=3.11"
    wanted = [line.split("#")[0].strip() for line in (REPO / "requirements.txt").read_text().splitlines()]
    assert sorted(map(requirement, out[1:])) == sorted(requirement(w) for w in wanted if w)


def requirement(text: str) -> tuple[str, list[str]]:
    """('docker', ['<8', '>=7.1']): the same requirement whatever order its specifiers take."""
    name, specifiers = re.match(r"\s*([A-Za-z0-9_.-]+)\s*(.*)", text).groups()
    return name.lower(), sorted(s.strip() for s in specifiers.split(",") if s.strip())
