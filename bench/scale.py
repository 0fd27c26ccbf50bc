#!/usr/bin/env python3
"""The swarm-wide coordinator at scale: gossip-consistency against a simulated swarm of N nodes.

The tests' fake swarm (tests/fake_swarm.py) grown to N nodes with unique task IDs, each node
answering a realistic gossip view (the recorded ov2 grown to SERVICES services: tens of KB), the
nodes finishing together or spread over WAVES polls. The coordinator is the unmodified ssd, a
process; its CPU seconds (user + system: it sleeps while it waits) and peak RSS come from
getrusage of that child, the bytes it read from what the fake engine served.

    bench/scale.py [N ...]          (default 10 100 1000)
"""
from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "tests"), str(REPO)]

import ssd.swarmwide.answers as answers  # noqa: E402
from fake_engine import FakeEngine  # noqa: E402
from fake_swarm import FakeSwarm, many_nodes  # noqa: E402
from recorded import network_json  # noqa: E402

SERVICES = 40  # services of the view each node sends: about 25 KB of answer
WAVES = 20


def grown_view() -> dict:
    view = copy.deepcopy(network_json("ov2"))
    first = next(iter(view["Services"].values()))
    for i in range(SERVICES - len(view["Services"])):
        svc = copy.deepcopy(first)
        svc["VIP"] = f"10.0.{2 + i // 200}.{i % 200 + 10}"
        for n, task in enumerate(svc["Tasks"]):
            task["Name"] = f"x{i}.{n}.task"
            task["EndpointIP"] = f"10.0.{50 + i // 60}.{(i * 4 + n) % 250 + 2}"
        view["Services"][f"x{i}"] = svc
    return view


def answer_text(state: dict, digest: str, node: str, host: str) -> str:
    return json.dumps({"ssd_version": "bench", "node": {"id": node, "hostname": host}, "network": "ov2",
                       "instantiated": True, "digest": digest, "state": state},
                      separators=(",", ":")) + "\n"


def measure(nodes: int, waves: int) -> dict:
    view = grown_view()
    state = answers.gossip_state(view)
    digest = answers.gossip_digest(state)
    names = many_nodes(nodes)
    with tempfile.TemporaryDirectory() as tmp, FakeEngine(os.path.join(tmp, "docker.sock")) as engine:
        def answer(node: str, sample: int) -> tuple[str, str, str]:
            return "complete", answer_text(state, digest, node, names[node]), ""
        swarm = FakeSwarm(engine, answer, nodes=names,
                          finishes=lambda index, poll: poll >= 2 + index * waves // nodes)
        engine.routes[f"/networks/{view['Id']}"] = view
        cmd = [sys.executable, "-c", "import resource, subprocess, sys; p = subprocess.run(sys.argv[1:]); "
               "r = resource.getrusage(resource.RUSAGE_CHILDREN); "
               "print(r.ru_utime + r.ru_stime, r.ru_maxrss, file=sys.stderr); sys.exit(p.returncode)",
               sys.executable, str(REPO / "ssd.py"), "-H", engine.url, "ov2", "gossip-consistency",
               "--image", "ssd:bench", "-t", "3600", "--json"]
        started = time.monotonic()
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=7200, check=False)
        wall = time.monotonic() - started
        cpu, peak = proc.stderr.splitlines()[-1].split()
        doc = json.loads(proc.stdout)
        one = len(answer_text(state, digest, next(iter(names)), "node1"))
        return {"nodes": nodes, "waves": waves, "status": doc["status"], "answers": len(doc["nodes"]),
                "answer_kb": round(one / 1024, 1), "cpu_s": round(float(cpu), 2),
                "cpu_ms_per_node": round(1000 * float(cpu) / nodes, 2),
                "peak_mib": round(int(peak) / 1024, 1),
                "read_mb": round(swarm.log_bytes / 1e6, 1), "wall_s": round(wall, 1)}


def main() -> None:
    sizes = [int(a) for a in sys.argv[1:]] or [10, 100, 1000]
    print("| nodes | finishing | answer | manager CPU | per node | peak RSS | log bytes read | wall |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|")
    for nodes in sizes:
        for waves in (1, WAVES):
            row = measure(nodes, waves)
            assert row["status"] == "consistent" and row["answers"] == nodes, row
            how = "together" if waves == 1 else f"in {waves} waves"
            print(f"| {nodes} | {how} | {row['answer_kb']} KB | {row['cpu_s']} s | "
                  f"{row['cpu_ms_per_node']} ms | {row['peak_mib']} MiB | {row['read_mb']} MB | "
                  f"{row['wall_s']} s |", flush=True)


if __name__ == "__main__":
    main()
