"""Tier 1: a layer is one declaration. Which findings are a layer's, its block, its status in
JSON and in the fleet matrix all follow from LAYERS and each check id's layer; no id prefix or id
set decides anything."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

import ssd

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = str(REPO / "examples" / "healthy-node1.json")


def healthy() -> ssd.RunResult:
    doc = ssd.load_snapshot(EXAMPLE)
    _, result = ssd.settled_check(ssd.SnapshotCollector(doc, EXAMPLE), [], 0, live=False)
    assert result.findings == []
    return result


def text(result: ssd.RunResult) -> list[str]:
    return ssd.render_text(result, ssd.Painter(False), quiet=False, verbose=False).splitlines()


def test_every_check_id_names_a_declared_layer():
    assert {info.layer for info in ssd.CHECKS.values()} <= set(ssd.LAYERS)
    assert set(ssd.LAYERS) >= {"kernel", "networkdb", "dns", "overlay"}


def test_fwmark_duplicate_is_shown_with_networkdb_not_the_load_balancer():
    """Two services with one LocalLBIndex is NetworkDB contradicting itself (its layer), not a
    fault of the load balancer of the service it names."""
    result = healthy()
    result.findings.append(ssd.Finding("fwmark-duplicate", "services s1 and s2 share fwmark 0x100",
                                       network="ov2", service="s1", subject="0x100"))
    lines = text(result)
    at = lines.index(next(line for line in lines if line.startswith("fwmark-duplicate") or
                          line.startswith("  fwmark-duplicate")))
    header = next(line for line in reversed(lines[:at]) if line.startswith(("Verifying", "Checking",
                                                                           "Comparing", "Asking")))
    assert header in ("Checking NetworkDB's view of network ov2",
                      "Comparing swarm with NetworkDB for network ov2"), lines
    assert "service s1... OK" in lines
    ov2 = next(n for n in ssd.to_json(result)["networks"] if n["name"] == "ov2")
    assert {s["name"]: s["status"] for s in ov2["services"]}["s1"] == "ok"


def test_an_overlay_finding_read_in_the_host_namespace_counts_under_its_network():
    """overlay-esp-missing is read from the host's IPsec state (namespace host): the fleet
    matrix's cell of its network fails, not the host's published ports."""
    report = ssd.to_json(healthy())
    net = next(n for n in report["networks"] if n["name"] == "ov2")
    report["findings"].append(ssd.Finding("overlay-esp-missing", "no ESP state towards 10.99.0.2",
                                          network="ov2", namespace="host").to_json())
    node = ssd.FleetNode("n1", "node1", report, None, 1.0)
    assert ssd.fleet_cell(node, net["id"]) == "FAIL 1"
    assert ssd.fleet_cell(node, None) == "OK"
    report["findings"].append(ssd.Finding("ingress-dnat-missing", "no DNAT for 8080/tcp",
                                          network="ingress", namespace="host").to_json())
    assert ssd.fleet_cell(node, None) == "FAIL 1"


def test_a_new_layer_is_one_declaration(monkeypatch):
    """What the issue promises: a layer, its check id and a describe function; its findings get
    a block of their own, its status, its 'layer:' line, and leave the load balancer alone."""
    monkeypatch.setitem(ssd.LAYERS, "probe", ssd.Layer("traffic between nodes, against the overlay"))
    monkeypatch.setitem(ssd.CHECKS, "probe-unreachable", ssd.CheckInfo("No reply.", "Open 4789/udp.", "probe"))
    monkeypatch.setattr(ssd, "_describe_probe", lambda net: (f"Probing network {net.view.name}",
                                                             "2 other nodes", True), raising=False)
    result = healthy()
    result.findings.append(ssd.Finding("probe-unreachable", "node3 does not answer", network="ov2",
                                       service="s1", subject="node3"))
    lines = text(result)
    block = lines.index("Probing network ov2")
    assert lines[block + 1] == "2 other nodes... FAIL"
    assert lines[block + 2].startswith("  probe-unreachable: node3 does not answer")
    assert "    layer: traffic between nodes, against the overlay" in lines
    assert "service s1... OK" in lines
    ov2 = next(n for n in result.networks if n.view.name == "ov2")
    assert ssd.layer_status(result, ov2, "probe") == "fail"
    assert ssd.layer_status(result, ov2, "overlay") in ("ok", "error")
    assert json.loads(json.dumps(ssd.to_json(result)))["findings"][0]["layer"] == "probe"


def test_a_check_may_emit_only_the_ids_it_registered(monkeypatch):
    stray = ssd.Check(("mark-missing",), "node", (), lambda subject, state: [ssd.Finding("mark-stale", "x")])
    monkeypatch.setattr(ssd, "REGISTRY", [stray])
    state = ssd.NodeState(ssd.engine_model("28.5.2"), "/nonexistent", [])
    with pytest.raises(ValueError, match="mark-stale"):
        ssd.run_checks(state)


def test_no_id_prefix_or_set_decides_a_layer():
    source = (REPO / "ssd.py").read_text()
    for smell in ('startswith("overlay-")', 'startswith("dns-")', "SWARM_CHECKS", "LAYER_TEXT"):
        assert smell not in source, smell
    assert not any(f.name in ("overlay", "dns", "swarm") for f in dataclasses.fields(ssd.Finding))
