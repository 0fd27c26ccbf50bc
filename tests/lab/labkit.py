"""Helpers of the tier-3 tests: drive the lab through lab/swarmlab, as a developer would."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

SWARMLAB = Path(__file__).resolve().parents[2] / "lab" / "swarmlab"
ENGINE = os.environ.get("SWARMLAB_ENGINE", "28.5")


def lab(*args: str, timeout: float = 1800) -> subprocess.CompletedProcess:
    return subprocess.run([str(SWARMLAB), *args], capture_output=True, text=True, timeout=timeout,
                          check=False)


# How much slower than the machines the lab's waits were set on (one emulated `import docker` took
# 1.8 s there): conftest measures it when the lab boots. Waits that budget an emulated run (fleet
# mode's wait for every node's answer) scale with it, so that a slow machine (SWARMLAB_SLOW_OK=1)
# tests ssd instead of the wait.
REFERENCE_IMPORT = 1.8  # seconds
SPEED = {"slowness": 1.0}


def set_speed(import_seconds: float) -> None:
    SPEED["slowness"] = max(1.0, import_seconds / REFERENCE_IMPORT)


def scaled(seconds: float, cap: float = 900) -> int:
    """seconds on the reference machine, as many on this one (at most cap)."""
    return int(min(cap, seconds * SPEED["slowness"]))
