"""A seeded fuzzer over snapshots (--from), in tier 1: each case is a real recording with a few
parts replaced by hostile values (another type, null, a huge or odd number, control characters, a
deep structure, a key removed), checked exactly as `ssd --from FILE` checks it, in every output
format. Every case must end with exit 0-3, never a traceback, and exit 1 only with its findings
printed; the seed corpus is the inputs issue 43 lists.

Deterministic: the same seed, the same cases. SSD_FUZZ_CASES sets how many (default 1,500)."""
from __future__ import annotations

import contextlib
import copy
import io
import json
import os
import random
import signal

import pytest

import ssd.cli
import ssd.swarmwide.job
from helpers import EXAMPLES

HUGE = "an integer of 5,000 digits"  # written as one into the file
CASES = int(os.environ.get("SSD_FUZZ_CASES", "1500"))
SOURCES = ["healthy-node1.json", "stale-backend-node2.json", "overlay-fdb-missing-node2.json",
           "stack-node1.json", "port-change-node1.json"]
HOSTILE = [None, True, 0, -1, 2 ** 63, 10 ** 30, 1.5e308, "", "x" * 300, "\x1b[2K\r\nSSD OK", "10.0.0.1/33",
           "not-an-ip", [], [None], [[]], {}, {"": None}, {"Name": None}, "0x101", -0.0]


def paths(value, path=()):
    """Every place in a document: (path to it, its value)."""
    yield path, value
    if isinstance(value, dict):
        for key, child in value.items():
            yield from paths(child, (*path, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield from paths(child, (*path, index))


def mutate(doc: dict, rng: random.Random) -> dict:
    doc = copy.deepcopy(doc)
    places = [p for p, _ in paths(doc) if p]
    for _ in range(rng.choice((1, 1, 2, 3))):
        path = rng.choice(places)
        parent = doc
        try:
            for key in path[:-1]:
                parent = parent[key]
            key = path[-1]
            roll = rng.random()
            if roll < 0.15 and isinstance(parent, dict):
                del parent[key]
            elif roll < 0.25:
                deep: object = 1
                for _ in range(rng.choice((50, 500))):
                    deep = [deep]
                parent[key] = deep
            else:
                parent[key] = copy.deepcopy(rng.choice(HOSTILE))
        except (KeyError, IndexError, TypeError):
            continue  # a place an earlier mutation removed
    return doc


def check(tmp_path, doc: dict, *options: str) -> tuple[int, str, str]:
    """`ssd --from FILE OPTIONS`, in this process: main() as the command runs it."""
    path = tmp_path / "case.json"
    path.write_text(json.dumps(doc).replace(json.dumps(HUGE), "9" * 5000))  # (json cannot write one)
    out, err = io.StringIO(), io.StringIO()
    handlers = {s: signal.getsignal(s) for s in ssd.swarmwide.job.STOP_SIGNALS}  # main() sets them
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            status = ssd.cli.main(["--from", str(path), *options])
    finally:
        for signum, handler in handlers.items():
            signal.signal(signum, handler)
    return status, out.getvalue(), err.getvalue()


def judge(status: int, out: str, err: str, options: tuple[str, ...], what: str) -> None:
    assert "Traceback" not in err and "internal error" not in err, (what, err[-600:])
    if "--nagios" in options:
        assert status in (0, 1, 2, 3) and out.count("\n") == 1, (what, status, out)
        return
    assert status in (0, 1, 2, 3), (what, status)
    if status == 1:  # findings, reported
        if "--json" in options:
            assert json.loads(out)["findings"], (what, out[:300])
        else:
            assert "inconsistenc" in out, (what, out[-300:])
    if status == 2:
        assert err.strip(), (what, "exit 2 with nothing on stderr")


SEED_CORPUS = {  # issue 43's inputs, each at its place
    "version-huge": lambda d: d.update(version=HUGE),
    "samples-null": lambda d: d.update(samples=[None]),
    "info-list": lambda d: d["samples"][0]["api"].update({"GET /info": []}),
    "networks-nulls": lambda d: [s["api"].update({"GET /networks": [None]}) for s in d["samples"]],
    "networks-object": lambda d: [s["api"].update({"GET /networks": {}}) for s in d["samples"]],
    "services-nulls": lambda d: [s["api"].update({"GET /services": [None]}) for s in d["samples"]],
    "services-object": lambda d: [s["api"].update({"GET /services": {}}) for s in d["samples"]],
    "nodes-string": lambda d: [s["api"].update({"GET /nodes": "node1"}) for s in d["samples"]],
    "host-absent": lambda d: [s["namespaces"].pop("host", None) for s in d["samples"]],
    "host-error": lambda d: [s["namespaces"].update(host={"error": "gone"}) for s in d["samples"]],
}


@pytest.mark.parametrize("name", sorted(SEED_CORPUS))
def test_the_seed_corpus(tmp_path, name):
    doc = json.loads((EXAMPLES / "healthy-node1.json").read_text())
    SEED_CORPUS[name](doc)
    for options in ((), ("--json",), ("--nagios",), ("-v",)):
        judge(*check(tmp_path, doc, *options), options, name)


def test_fuzzed_snapshots_end_in_a_verdict_or_one_line(tmp_path):
    rng = random.Random(43)
    docs = {name: json.loads((EXAMPLES / name).read_text()) for name in SOURCES}
    formats = ((), ("--json",), ("--nagios",), ("-v", "--prometheus", str(tmp_path / "ssd.prom")))
    for case in range(CASES):
        name = SOURCES[case % len(SOURCES)]
        options = formats[case % len(formats)]
        judge(*check(tmp_path, mutate(docs[name], rng), *options), options, f"case {case} of {name}")


def test_the_mutator_mutates():
    rng = random.Random(1)
    doc = json.loads((EXAMPLES / "healthy-node1.json").read_text())
    assert sum(mutate(doc, rng) != doc for _ in range(50)) >= 45
