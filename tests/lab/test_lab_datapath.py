"""Tier 3: nodes that joined with --data-path-addr (issue 22), on a lab booted for it.

`make lab-data-path` boots the 3 nodes with a second address each (10.98.0.N, on the same link)
and joins them with `--data-path-addr`: VXLAN then runs between those addresses, the tasks'
Host IP in NetworkDB is the data-path address, while NetworkDB's peer list and swarm's node
addresses stay the advertise addresses (10.99.0.N). The seeded swarm must be consistent on
every node, layers and --probe included, and a real fault still found. Skipped on a lab booted
without it.
"""
from __future__ import annotations

import json

import pytest
from test_lab import SHARE, faults, facts, found_only_on, in_ns, sh, ssd, ssd_everywhere

pytestmark = [pytest.mark.lab, pytest.mark.datapath]


@pytest.fixture(scope="module", autouse=True)
def data_path_lab(swarm):
    info = json.loads((SHARE.parent / "lab.json").read_text())
    if not info.get("data_path"):
        pytest.skip("the lab was not booted with --data-path (make lab-data-path)")


def test_vxlan_runs_between_the_data_path_addresses():
    fdb = sh(1, "for ns in /var/run/docker/netns/1-*; do nsenter --net=$ns bridge fdb show | "
                "grep -o 'dst [0-9.]*'; done | sort -u")
    assert "dst 10.98.0.2" in fdb and "dst 10.98.0.3" in fdb, fdb
    assert "dst 10.99.0." not in fdb, fdb


def test_the_seeded_swarm_is_consistent_on_every_node_with_probe():
    for node, (code, doc, stderr) in ssd_everywhere("--probe", "ov2").items():
        assert code == 0, (node, doc["findings"], doc["errors"], stderr)
        ov2 = next(n for n in doc["networks"] if n["name"] == "ov2")
        assert ov2["overlay"]["status"] == "ok" and ov2["overlay"]["remote_nodes"] == 2, ov2["overlay"]
        assert ov2["probe"]["reached"] == ov2["probe"]["nodes"] == 2, ov2["probe"]


def test_a_real_fault_is_still_found_on_its_node_only():
    ns, inject, undo = faults(facts(3))["mark-missing"]
    sh(3, in_ns(ns, inject))
    try:
        verdicts = ssd_everywhere("--settle", "1", "ov2")
    finally:
        sh(3, in_ns(ns, undo))
    doc = found_only_on(3, verdicts)
    assert {f["check"] for f in doc["findings"]} == {"mark-missing"}
    assert ssd(3, "ov2")[0] == 0
