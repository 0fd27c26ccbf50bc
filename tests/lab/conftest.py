"""The lab, shared by every tier-3 module: brought up and seeded once per session."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from labkit import ENGINE, lab


def pytest_collection_modifyitems(items):
    """Tests that leave the lab changed (a node killed) run after all others."""
    items.sort(key=lambda item: item.get_closest_marker("disruptive") is not None)


@pytest.fixture(scope="session")
def swarm():
    if os.environ.get("SWARMLAB_REUSE"):  # developing the tests: a lab left up and seeded by hand
        yield
        return
    up = lab("up", "--engine", ENGINE, "--nodes", "3")
    assert up.returncode == 0, up.stderr
    try:
        seed = lab("scenario", "seed")
        assert seed.returncode == 0, seed.stderr
        yield
    finally:
        lab("down")


@pytest.fixture(scope="session")
def ssd_image(swarm):
    """The root Dockerfile built in the lab (offline), as ssd:lab on every node."""
    built = lab("image", timeout=3600)
    assert built.returncode == 0, built.stderr
    return "ssd:lab"
