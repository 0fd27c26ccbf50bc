"""Tier 1: a layer is one declaration. Which findings are a layer's, its block, its status in
JSON and in the fleet matrix all follow from LAYERS and each check id's layer; no id prefix or id
set decides anything."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

import ssd.catalog
import ssd.model
import ssd.report
import ssd.run
import ssd.snapshot
import ssd.swarmwide.answers
import ssd.swarmwide.report

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = str(REPO / "examples" / "healthy-node1.json")


def healthy() -> ssd.model.RunResult:
    doc = ssd.snapshot.load_snapshot(EXAMPLE)
    _, result = ssd.run.settled_check(ssd.snapshot.SnapshotCollector(doc, EXAMPLE), [], 0, live=False)
    assert result.findings == []
    return result


def text(result: ssd.model.RunResult) -> list[str]:
    return ssd.report.render_text(result, ssd.report.Painter(False), quiet=False, verbose=False).splitlines()


def test_every_check_id_names_a_declared_layer():
    assert {info.layer for info in ssd.catalog.CHECKS.values()} <= set(ssd.catalog.LAYERS)
    assert set(ssd.catalog.LAYERS) >= {"kernel", "networkdb", "dns", "overlay"}


def test_fwmark_duplicate_is_shown_with_networkdb_not_the_load_balancer():
    """Two services with one LocalLBIndex is NetworkDB contradicting itself (its layer), not a
    fault of the load balancer of the service it names."""
    result = healthy()
    result.findings.append(ssd.model.Finding("fwmark-duplicate", "services s1 and s2 share fwmark 0x100",
                                       network="ov2", service="s1", subject="0x100"))
    lines = text(result)
    at = lines.index(next(line for line in lines if line.startswith("fwmark-duplicate") or
                          line.startswith("  fwmark-duplicate")))
    header = next(line for line in reversed(lines[:at]) if line.startswith(("Verifying", "Checking",
                                                                           "Comparing", "Asking")))
    assert header in ("Checking NetworkDB's view of network ov2",
                      "Comparing swarm with NetworkDB for network ov2"), lines
    assert "service s1... OK" in lines
    ov2 = next(n for n in ssd.report.to_json(result)["networks"] if n["name"] == "ov2")
    assert {s["name"]: s["status"] for s in ov2["services"]}["s1"] == "ok"


def test_an_overlay_finding_read_in_the_host_namespace_counts_under_its_network():
    """overlay-esp-missing is read from the host's IPsec state (namespace host): the fleet
    matrix's cell of its network fails, not the host's published ports."""
    report = ssd.report.to_json(healthy())
    net = next(n for n in report["networks"] if n["name"] == "ov2")
    report["findings"].append(ssd.model.Finding("overlay-esp-missing", "no ESP state towards 10.99.0.2",
                                          network="ov2", namespace="host").to_json())
    node = ssd.swarmwide.answers.FleetNode("n1", "node1", report, None, 1.0)
    assert ssd.swarmwide.report.fleet_cell(node, net["id"]) == "FAIL 1"
    assert ssd.swarmwide.report.fleet_cell(node, None) == "OK"
    report["findings"].append(ssd.model.Finding("ingress-dnat-missing", "no DNAT for 8080/tcp",
                                          network="ingress", namespace="host").to_json())
    assert ssd.swarmwide.report.fleet_cell(node, None) == "FAIL 1"


def test_a_new_layer_is_one_declaration(monkeypatch, catalog_restored):
    """A brand-new layer (no existing one patched): its declaration, its check id and its check;
    its findings get a block of their own, its status, its 'layer:' line, a place among the
    layers by rank, and leave the load balancer alone."""
    result = healthy()  # before the layer exists
    ssd.catalog.declare_layer(ssd.catalog.Layer(
        "canary", 35, "the canary, against the air", read=lambda net: net.view.name == "ov2",
        describe=lambda net: (f"Listening to the canary of {net.view.name}", "one canary", True)))

    @ssd.catalog.register_check(ssd.catalog.CheckInfo("canary-dead", "The canary is dead.", "Open a window.",
                                                      layer="canary"), scope="network")
    def check_canary(view, state):
        return [ssd.model.Finding("canary-dead", "no song", network=view.name, service="s1", subject="canary")
                ] if view.name == "ov2" else []

    result.findings += ssd.catalog.run_checks(ssd.model.NodeState(ssd.catalog.engine_model("28.5.2"),
                                                                  "/nonexistent", [n.view for n in result.networks]))
    assert list(ssd.catalog.LAYERS).index("canary") == list(ssd.catalog.LAYERS).index("dns") + 1
    lines = text(result)
    block = lines.index("Listening to the canary of ov2")
    assert lines[block + 1] == "one canary... FAIL"
    assert lines[block + 2].startswith("  canary-dead: no song")
    assert "    layer: the canary, against the air" in lines
    assert "service s1... OK" in lines
    ov2 = next(n for n in result.networks if n.view.name == "ov2")
    assert ssd.report.layer_status(result, ov2, "canary") == "fail"
    ingress = next(n for n in result.networks if n.view.name == "ingress")
    assert ssd.report.layer_status(result, ingress, "canary") == "error"  # not read there
    assert json.loads(json.dumps(ssd.report.to_json(result)))["findings"][0]["layer"] == "canary"


def test_a_layer_is_declared_once():
    with pytest.raises(ValueError, match="declared twice"):
        ssd.catalog.declare_layer(ssd.catalog.Layer("dns", 99, "again"))


def test_a_check_may_emit_only_the_ids_it_registered(monkeypatch):
    stray = ssd.catalog.Check(("mark-missing",), "node", (), lambda subject, state: [ssd.model.Finding("mark-stale", "x")])
    monkeypatch.setattr(ssd.catalog, "REGISTRY", [stray])
    state = ssd.model.NodeState(ssd.catalog.engine_model("28.5.2"), "/nonexistent", [])
    with pytest.raises(ValueError, match="mark-stale"):
        ssd.catalog.run_checks(state)


def test_no_id_prefix_or_set_decides_a_layer():
    source = "".join(path.read_text() for path in sorted((REPO / "ssd").rglob("*.py")))
    for smell in ('startswith("overlay-")', 'startswith("dns-")', "SWARM_CHECKS", "LAYER_TEXT"):
        assert smell not in source, smell
    assert not any(f.name in ("overlay", "dns", "swarm") for f in dataclasses.fields(ssd.model.Finding))
