#!/usr/bin/env python3
"""--watch kept flat: RSS and run time over many runs of one watch.

The recorded node laid out in real namespaces of this kernel (tests/kernel_node.py) and the fake
Engine API (tests/fake_engine.py); ssd --watch --interval 0.01 runs as a process; its RSS is read
from /proc after each run's line. Prints RSS after run 10, 100 and the last, and the first (cold)
run's time against the median of the rest (warm). Root, on the host (namespaces).

    bench/watch.py [RUNS]      (default 1000)
"""
from __future__ import annotations

import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "tests"), str(REPO)]

from fake_engine import FakeEngine  # noqa: E402
from kernel_node import KernelNode  # noqa: E402


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as fh:
        return int(re.search(r"^VmRSS:\s+(\d+)", fh.read(), re.M).group(1))


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    with tempfile.TemporaryDirectory() as tmp:
        node = KernelNode(Path(tmp)).create()
        try:
            with FakeEngine(os.path.join(tmp, "docker.sock")) as engine:
                cmd = ["nsenter", f"--net={node.host}", sys.executable, str(REPO / "ssd.py"),
                       "-H", engine.url, "--exec-root", str(node.exec_root), "--settle", "0", "--watch",
                       "--interval", "0.01", "ov2"]
                env = {**os.environ, "NO_COLOR": "1", "PYTHONPATH": str(REPO)}
                proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env)
                rss, seconds = {}, []
                for line in proc.stdout:
                    found = re.search(r"\((\d+\.\d+) s\)$", line)
                    if not found or line.startswith(" "):
                        continue
                    seconds.append(float(found.group(1)))
                    n = len(seconds)
                    if n in (10, 100) or n == runs:
                        rss[n] = rss_kib(proc.pid)
                    if n == runs:
                        proc.terminate()  # as Ctrl-C: the summary, then exit
                proc.wait(timeout=60)
        finally:
            node.destroy()
    print(f"runs: {len(seconds)}")
    for n, kib in sorted(rss.items()):
        print(f"RSS after run {n}: {kib / 1024:.1f} MiB")
    print(f"cold run: {seconds[0]:.2f} s; warm runs: median {statistics.median(seconds[1:]):.3f} s, "
          f"max {max(seconds[1:]):.3f} s")
    if 10 in rss and runs in rss:
        print(f"RSS growth from run 10 to run {runs}: {100 * (rss[runs] / rss[10] - 1):+.1f}%")


if __name__ == "__main__":
    main()
