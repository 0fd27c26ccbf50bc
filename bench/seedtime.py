#!/usr/bin/env python3
# Copyright 2026 The ssd authors. Licensed under the Apache License, Version 2.0.
"""seedtime - time ssd on a real lab node, inside the VM.

    seedtime.py quiet [SECONDS]          wait (at most SECONDS, default 180) for this node's CPU to
                                         be at least 85% idle over 3 s; print the seconds waited
    seedtime.py time NETWORK REPS        one warm-up run, then REPS timed runs of ssd's check of
                                         NETWORK as the container runs it (compiled, python -m ssd)

`time` prints one JSON line: the warm-up's wall time, each run's wall time (s), and their exit
statuses. The clock is read here, in the VM: what the lab's exec channel adds (about 0.4 s a
call) is the harness's, not ssd's. The warm-up is reported apart: the first run after a boot
reads the SDK and the standard library from a cold disk of the VM (8-14 s), which is the
emulator's, not ssd's. `quiet` is waited for on every node first: three TCG guests share the
host's two cores, so a node still starting the seed's containers slows another's ssd.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SSD = HERE.parent / "ssd.py"  # the launcher; the package ssd/ beside it is what runs
APP = Path("/run/ssd-seed")
PYLIB = "/opt/ssd-pylib"


def cpu_times() -> tuple[int, int]:
    """(idle, total) jiffies of every CPU since boot, from /proc/stat."""
    with open("/proc/stat") as stat:
        fields = [int(v) for v in stat.readline().split()[1:]]
    return fields[3] + fields[4], sum(fields)  # idle + iowait


def quiet(limit: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < limit:
        idle0, total0 = cpu_times()
        time.sleep(3)
        idle1, total1 = cpu_times()
        if total1 > total0 and (idle1 - idle0) / (total1 - total0) >= 0.85:
            break
    return round(time.monotonic() - started, 1)


def timed(cmd: list[str], env: dict) -> tuple[float, int]:
    started = time.monotonic()
    proc = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    return round(time.monotonic() - started, 2), proc.returncode


def time_runs(network: str, reps: int) -> dict:
    APP.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(APP / "ssd", ignore_errors=True)
    shutil.copytree(SSD.parent / "ssd", APP / "ssd", ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(APP)], check=True)
    env = dict(os.environ, PYTHONPATH=f"{APP}:{PYLIB}")
    cmd = [sys.executable, "-m", "ssd", "--settle", "0", "-q", network]
    warm_up, warm_exit = timed(cmd, env)
    runs = [timed(cmd, env) for _ in range(reps)]
    return {"warm_up_s": warm_up, "runs_s": [t for t, _ in runs],
            "exits": [warm_exit] + [code for _, code in runs]}


def main(argv: list[str]) -> int:
    if argv[:1] == ["quiet"]:
        print(quiet(float(argv[1]) if len(argv) > 1 else 180))
        return 0
    if argv[:1] == ["time"] and len(argv) == 3:
        print(json.dumps(time_runs(argv[1], int(argv[2]))))
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
