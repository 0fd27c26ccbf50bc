"""Tier 2: the lab heals itself. A debootstrap that dies half-way leaves its target's /proc
mounted; lab/swarmlab must unmount it on its way out, and a later build must clear what a killed
one left (before: rmtree skipped the mount silently and every later build or up died with a
FileExistsError traceback until someone unmounted it by hand).

A fake debootstrap on PATH plays the failure: nothing is downloaded, no VM is started."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import REPO

SWARMLAB = REPO / "lab" / "swarmlab"

# Mounts /proc in its target as debootstrap's second stage does, then dies as if killed.
DYING = """#!/bin/sh
target="$4"
mkdir -p "$target/proc"
mount -t proc proc "$target/proc" || exit 3
kill -9 $$
"""
FAILING = "#!/bin/sh\nexit 1\n"


def mounts_under(path: Path) -> list[str]:
    root = os.path.realpath(path)
    with open("/proc/self/mounts", encoding="utf-8") as fh:
        return [line.split()[1] for line in fh if line.split()[1].startswith(root + "/")]


@pytest.fixture
def lab_env(tmp_path):
    state = tmp_path / "state"
    tools = tmp_path / "bin"
    tools.mkdir()
    env = {**os.environ, "SWARMLAB_STATE": str(state), "SWARMLAB_MIRROR": "file:///nonexistent/debian",
           "PATH": f"{tools}:{os.environ['PATH']}"}
    yield state, tools, env
    for point in sorted(mounts_under(tmp_path), reverse=True):  # never leave one behind, pass or fail
        subprocess.run(["umount", "-l", point], check=False)


def build(env: dict, tools: Path, script: str) -> subprocess.CompletedProcess:
    fake = tools / "debootstrap"
    fake.write_text(script)
    fake.chmod(0o755)
    return subprocess.run([sys.executable, str(SWARMLAB), "build", "--engine", "28.5"], env=env,
                          capture_output=True, text=True, timeout=120, check=False)


def test_a_debootstrap_that_dies_leaves_no_mount(lab_env):
    state, tools, env = lab_env
    proc = build(env, tools, DYING)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert "swarmlab: error:" in proc.stderr
    assert mounts_under(state) == []


def test_what_a_killed_build_left_is_cleared_by_the_next(lab_env):
    """swarmlab itself killed mid-debootstrap: no finally ran, /proc stays mounted in the cache."""
    state, tools, env = lab_env
    rootfs = state / "cache" / "engine-28.5" / "rootfs"
    (rootfs / "proc").mkdir(parents=True)
    subprocess.run(["mount", "-t", "proc", "proc", str(rootfs / "proc")], check=True)
    (rootfs / "half-written").write_text("x")
    proc = build(env, tools, FAILING)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert "FileExistsError" not in proc.stderr
    assert mounts_under(state) == []
    assert not (rootfs / "half-written").exists()
