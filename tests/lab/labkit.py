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
