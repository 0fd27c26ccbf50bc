"""What many tests share: the checkout's paths, ssd run as a user runs it from a checkout, and the
shape of an expected failure (one line on stderr, no traceback)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SSD = str(REPO / "ssd.py")  # the launcher, as `./ssd.py` from a checkout
EXAMPLES = REPO / "examples"
FIXTURES = REPO / "tests" / "fixtures"


def run_ssd(*args: str, env: dict[str, str] | None = None, python: str = sys.executable,
            code: str | None = None, stdout=subprocess.PIPE, cwd: Path = REPO,
            timeout: float = 60) -> subprocess.CompletedProcess:
    """ssd with these arguments (or `python -c code` with them), stderr captured, any status.
    env: the whole environment (None: this one)."""
    cmd = [python, "-c", code, *args] if code else [python, SSD, *args]
    return subprocess.run(cmd, stdout=stdout, stderr=subprocess.PIPE, text=True, timeout=timeout,
                          check=False, cwd=cwd, env=env)


def one_line(proc: subprocess.CompletedProcess, status: int = 2) -> str:
    """The one line an expected failure prints, once its status and shape are asserted."""
    assert proc.returncode == status, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]
