"""Tier 1 on real recordings of every engine the lab runs: 20.10, 26.1 and 28.5.

tests/fixtures/snapshot-<engine>-node<N>.json are snapshots taken by `ssd --snapshot` on the
seed scenario of a 3-node lab swarm (bench/run --snapshots; node1 is the manager, node2 a
worker); for 28.5 they are examples/healthy-node<N>.json (lab/record-examples). Each must check consistent; then one real datapath element is removed from the
recording, as a fault would remove it from the kernel, and its check id must be found.
"""
from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import REPO

FIXTURES = REPO / "tests" / "fixtures"
NEWEST = [REPO / "examples" / f"healthy-node{n}.json" for n in (1, 2)]
SNAPSHOTS = sorted(FIXTURES.glob("snapshot-*-node[12].json")) + NEWEST


def check(doc: dict, tmp_path: Path) -> tuple[int, dict]:
    path = tmp_path / "snap.json"
    path.write_text(json.dumps(doc))
    proc = subprocess.run([sys.executable, str(REPO / "ssd.py"), "--from", str(path), "--json"],
                          capture_output=True, text=True, timeout=60, check=False)
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc.returncode, json.loads(proc.stdout)


def load(path: Path) -> dict:
    return json.loads(path.read_text())


def lb_namespace(doc: dict) -> tuple[str, dict]:
    return next((p, ns) for p, ns in doc["samples"][0]["namespaces"].items()
                if p.rsplit("/", 1)[-1].startswith("lb_"))


def s1(doc: dict) -> dict:
    api = doc["samples"][0]["api"]
    ov2 = next(n for n in api["GET /networks"] if n["Name"] == "ov2")
    return api[f"GET /networks/{ov2['Id']}"]["Services"]["s1"]


def drop_vip_mark(doc: dict) -> None:
    _, ns = lb_namespace(doc)
    vip = s1(doc)["VIP"].split("/")[0]
    for backend, text in ns["iptables"].items():
        ns["iptables"][backend] = "\n".join(line for line in text.splitlines()
                                            if not (line.startswith("-A INPUT") and f"-d {vip}/32" in line))


def drop_backend(doc: dict) -> None:
    _, ns = lb_namespace(doc)
    service = s1(doc)
    ip = service["Tasks"][0]["EndpointIP"].split("/")[0]
    ipvs = next(s for s in ns["ipvs"] if s["fwmark"] == service["LocalLBIndex"])
    ipvs["dests"] = [d for d in ipvs["dests"] if d["address"] != ip]


def drop_alias(doc: dict) -> None:
    _, ns = lb_namespace(doc)
    vip = s1(doc)["VIP"].split("/")[0]
    ns["addresses"] = {name: [a for a in addrs if a[0] != vip] for name, addrs in ns["addresses"].items()}


def drop_dnat(doc: dict) -> None:
    host = doc["samples"][0]["namespaces"]["host"]
    for backend, text in host["iptables"].items():
        host["iptables"][backend] = "\n".join(
            line for line in text.splitlines()
            if not (line.startswith("-A DOCKER-INGRESS") and re.search(r"--dport 8080 .*DNAT", line)))


FAULTS = {"mark-missing": drop_vip_mark, "ipvs-backend-missing": drop_backend,
          "vip-alias-missing": drop_alias, "ingress-dnat-missing": drop_dnat}


def test_every_engine_is_recorded():
    engines = {load(p)["node"]["engine_version"][:4] for p in SNAPSHOTS}
    assert "28.5" in engines, engines


@pytest.mark.parametrize("path", SNAPSHOTS, ids=lambda p: p.name)
def test_recorded_engine_is_consistent(path, tmp_path):
    doc = load(path)
    code, report = check(doc, tmp_path)
    assert code == 0, report["findings"] + report["errors"]
    assert report["node"]["engine_version"] == doc["node"]["engine_version"]
    assert report["node"]["era"] == "lb-sandbox"
    assert report["node"]["manager"] is path.name.endswith("node1.json")
    names = {n["name"]: n for n in report["networks"]}
    assert {"ov2", "ingress"} <= set(names)
    assert {s["name"] for s in names["ov2"]["services"]} >= {"s1", "s2", "s3"}


@pytest.mark.parametrize("fault", sorted(FAULTS))
@pytest.mark.parametrize("path", SNAPSHOTS, ids=lambda p: p.name)
def test_fault_in_recorded_engine_is_found(path, fault, tmp_path):
    doc = copy.deepcopy(load(path))
    FAULTS[fault](doc)
    code, report = check(doc, tmp_path)
    assert code == 1
    assert {f["check"] for f in report["findings"]} == {fault}, report["findings"]
