#!/usr/bin/env python3
"""The swarm-wide coordinators at scale: gossip-consistency and --all-nodes against a simulated
swarm of N nodes.

The tests' fake swarm (tests/fake_swarm.py) grown to N nodes with unique task IDs, the nodes
finishing together or spread over WAVES polls. In gossip-consistency each node answers a
realistic gossip view (the recorded ov2 grown to SERVICES services: tens of KB). In fleet mode
each node answers what a worker of the recorded 28.5.2 swarm answers (its node report and its
NetworkDB views), and swarm's task list grows with the nodes (TASKS_PER_NODE real-sized task
records per node, on stack networks of their own, beside the recorded swarm's tasks): the
manager judges every worker's NetworkDB against it. The coordinator is the unmodified ssd, a
process; its CPU seconds (user + system: it sleeps while it waits) and peak RSS come from
getrusage of that child, the bytes it read from what the fake engine served.

    bench/scale.py [--mode gossip|fleet|both] [--out DIR] [N ...]   (default both, 10 100 1000)

With --out, writes DIR/scale.json, DIR/scale.md (the table) and DIR/scale.png (a plot, if
matplotlib is installed: CPU per node and peak memory against the number of nodes).
"""
from __future__ import annotations

import argparse
import copy
import json
import random
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
TASKS_PER_NODE = 4  # swarm's tasks grow with the nodes (fleet mode)
STACK_NETWORKS = 50


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


def coordinator(engine: FakeEngine, *args: str) -> tuple[dict, float, float, int]:
    """ssd as a process against the fake engine: its JSON document, wall time, CPU and peak RSS
    (getrusage of the child: it sleeps while it waits)."""
    cmd = [sys.executable, "-c", "import resource, subprocess, sys; p = subprocess.run(sys.argv[1:]); "
           "r = resource.getrusage(resource.RUSAGE_CHILDREN); "
           "print(r.ru_utime + r.ru_stime, r.ru_maxrss, file=sys.stderr); sys.exit(p.returncode)",
           sys.executable, str(REPO / "ssd.py"), "-H", engine.url, *args,
           "--image", "ssd:bench", "-t", "3600", "--json"]
    started = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=7200, check=False)
    wall = time.monotonic() - started
    try:
        cpu, peak = proc.stderr.splitlines()[-1].split()
        return json.loads(proc.stdout), wall, float(cpu), int(peak)
    except (IndexError, ValueError) as exc:
        sys.exit(f"scale: ssd {' '.join(args)} failed ({exc}): {proc.stderr[-800:]}")


def row(mode: str, nodes: int, waves: int, answer: int, tasks: int, doc: dict, wall: float, cpu: float,
        peak: int, swarm: FakeSwarm) -> dict:
    return {"mode": mode, "nodes": nodes, "waves": waves, "status": doc["status"],
            "answers": len(doc["nodes"]), "answer_kb": round(answer / 1024, 1), "swarm_tasks": tasks,
            "cpu_s": round(cpu, 2), "cpu_ms_per_node": round(1000 * cpu / nodes, 2),
            "peak_mib": round(peak / 1024, 1), "read_mb": round(swarm.log_bytes / 1e6, 1),
            "wall_s": round(wall, 1)}


def measure(mode: str, nodes: int, waves: int) -> dict:
    return (measure_gossip if mode == "gossip" else measure_fleet)(nodes, waves)


def spread(nodes: int, waves: int):
    return lambda index, poll: poll >= 2 + index * waves // nodes


def measure_gossip(nodes: int, waves: int) -> dict:
    view = grown_view()
    state = answers.gossip_state(view)
    digest = answers.gossip_digest(state)
    names = many_nodes(nodes)
    with tempfile.TemporaryDirectory() as tmp, FakeEngine(os.path.join(tmp, "docker.sock")) as engine:
        def answer(node: str, sample: int) -> tuple[str, str, str]:
            return "complete", answer_text(state, digest, node, names[node]), ""
        swarm = FakeSwarm(engine, answer, nodes=names, finishes=spread(nodes, waves))
        engine.routes[f"/networks/{view['Id']}"] = view
        doc, wall, cpu, peak = coordinator(engine, "ov2", "gossip-consistency")
        one = len(answer_text(state, digest, next(iter(names)), "node1"))
        return row("gossip", nodes, waves, one, 0, doc, wall, cpu, peak, swarm)


def worker_answer() -> tuple[str, dict]:
    """What node2 of the recorded 28.5.2 swarm (a worker) answers in fleet mode, as text with
    its node's ID and hostname to fill in; and the manager's API of the same swarm."""
    import ssd.run
    import ssd.snapshot
    fixtures = REPO / "tests" / "fixtures"
    doc = json.loads((fixtures / "snapshot-28.5-node2.json").read_text())
    collector = ssd.snapshot.SnapshotCollector(doc, "node2")
    node, result = ssd.run.settled_check(collector, [], 0, live=False)
    text = json.dumps(answers.fleet_answer(collector, node, result, None), separators=(",", ":")) + "\n"
    text = text.replace(node.id, "@ID@").replace(json.dumps(node.hostname), '"@HOST@"')
    manager = json.loads((fixtures / "snapshot-28.5-node1.json").read_text())
    return text, manager["samples"][-1]["api"]


def grown_tasks(names: dict[str, str]) -> list[dict]:
    """TASKS_PER_NODE running tasks on every node, each on one of STACK_NETWORKS networks that
    no answer's view holds (stacks of their own), real-sized records (bench/layout.py's)."""
    sys.path.insert(0, str(REPO / "bench"))
    from layout import task_record
    rng = random.Random(45)
    tasks = []
    for index, node in enumerate(names):
        for slot in range(TASKS_PER_NODE):
            k = (index * TASKS_PER_NODE + slot) % STACK_NETWORKS
            task = task_record(f"t{index:08d}s{slot}xxxxxxxxxxxx", f"stacksvc{k:04d}xxxxxxxxxxxx", slot,
                               f"stacknet{k:04d}xxxxxxxxxx", f"stack{k}_default",
                               f"10.{100 + k // 250}.{(index // 250) % 250}.{index % 250 + 2}", rng)
            task["NodeID"] = node
            tasks.append(task)
    return tasks


def measure_fleet(nodes: int, waves: int) -> dict:
    template, api = worker_answer()
    names = many_nodes(nodes)
    texts = {node: template.replace("@ID@", node).replace("@HOST@", host) for node, host in names.items()}
    with tempfile.TemporaryDirectory() as tmp, FakeEngine(os.path.join(tmp, "docker.sock")) as engine:
        def answer(node: str, sample: int) -> tuple[str, str, str]:
            return "complete", texts[node], ""
        swarm = FakeSwarm(engine, answer, nodes=names, finishes=spread(nodes, waves))
        swarm.swarm_services = api["GET /services"]
        swarm.swarm_tasks = [*api["GET /tasks"], *grown_tasks(names)]
        engine.routes["/networks"] = api["GET /networks"]
        for net in api["GET /networks"]:
            if f"GET /networks/{net['Id']}" in api:
                engine.routes[f"/networks/{net['Id']}"] = api[f"GET /networks/{net['Id']}"]
        doc, wall, cpu, peak = coordinator(engine, "--all-nodes")
        return row("fleet", nodes, waves, len(texts[next(iter(names))]), len(swarm.swarm_tasks), doc, wall,
                   cpu, peak, swarm)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=("gossip", "fleet", "both"), default="both")
    parser.add_argument("--out", type=Path, help="write scale.json, scale.md and scale.png here")
    parser.add_argument("sizes", nargs="*", type=int, default=[10, 100, 1000])
    args = parser.parse_args()
    lines = ["| mode | nodes | finishing | answer | swarm tasks | manager CPU | per node | peak RSS | "
             "log bytes read | wall |", "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|"]
    print("\n".join(lines))
    rows = []
    for mode in ("gossip", "fleet") if args.mode == "both" else (args.mode,):
        for nodes in args.sizes:
            for waves in (1, WAVES):
                r = measure(mode, nodes, waves)
                assert r["status"] == "consistent" and r["answers"] == nodes, r
                rows.append(r)
                how = "together" if waves == 1 else f"in {waves} waves"
                lines.append(f"| {mode} | {nodes} | {how} | {r['answer_kb']} KB | {r['swarm_tasks']} | "
                             f"{r['cpu_s']} s | {r['cpu_ms_per_node']} ms | {r['peak_mib']} MiB | "
                             f"{r['read_mb']} MB | {r['wall_s']} s |")
                print(lines[-1], flush=True)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "scale.json").write_text(json.dumps(rows, indent=1) + "\n")
        (args.out / "scale.md").write_text("\n".join(lines) + "\n")
        plot(rows, args.out / "scale.png")


def plot(rows: list[dict], path: Path) -> bool:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, (cpu, memory) = plt.subplots(1, 2, figsize=(11, 4))
    for mode in ("gossip", "fleet"):
        for waves, style in ((1, "o-"), (WAVES, "s--")):
            mine = [r for r in rows if r["mode"] == mode and r["waves"] == waves]
            if not mine:
                continue
            label = f"{mode}, {'together' if waves == 1 else f'in {waves} waves'}"
            cpu.plot([r["nodes"] for r in mine], [r["cpu_ms_per_node"] for r in mine], style, label=label)
            memory.plot([r["nodes"] for r in mine], [r["peak_mib"] for r in mine], style, label=label)
    for axis, what in ((cpu, "manager CPU per node, ms"), (memory, "manager peak RSS, MiB")):
        axis.set_xscale("log")
        axis.set_xlabel("nodes")
        axis.set_ylabel(what)
        axis.legend()
    fig.suptitle("The swarm-wide coordinator against a simulated swarm (this machine)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return True


if __name__ == "__main__":
    main()
