"""Tier 1: a layer is one declaration. Which findings are a layer's, its block, its status in
JSON and in the fleet matrix all follow from LAYERS and each check id's layer; no id prefix or id
set decides anything."""
from __future__ import annotations

import dataclasses
import json
import sys

import pytest
import schemas

import ssd.catalog
import ssd.collect
import ssd.model
import ssd.report
import ssd.run
import ssd.snapshot
import ssd.swarmwide.answers
import ssd.swarmwide.report
from helpers import REPO

EXAMPLE = str(REPO / "examples" / "healthy-node1.json")


def healthy_result() -> ssd.model.RunResult:
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
    result = healthy_result()
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
    report = ssd.report.to_json(healthy_result())
    net = next(n for n in report["networks"] if n["name"] == "ov2")
    report["findings"].append(ssd.model.Finding("overlay-esp-missing", "no ESP state towards 10.99.0.2",
                                          network="ov2", namespace="host").to_json())
    node = ssd.swarmwide.answers.FleetNode("n1", "node1", report, None, 1.0)
    assert ssd.swarmwide.report.fleet_cell(node, net["id"]) == "FAIL 1"
    assert ssd.swarmwide.report.fleet_cell(node, None) == "OK"
    report["findings"].append(ssd.model.Finding("ingress-dnat-missing", "no DNAT for 8080/tcp",
                                          network="ingress", namespace="host").to_json())
    assert ssd.swarmwide.report.fleet_cell(node, None) == "FAIL 1"


def canary_layer(monkeypatch) -> None:
    """A brand-new layer, added as docs/development.md says: its module's parts (a read phase
    through the collector, a check, a summary, a block, a JSON part, the declaration), then its
    phase in ssd.run.PHASES. The air on each network is what it reads."""
    def read_canary(collector, state, reading):
        state.parts["canary"] = collector.lookup("canary", dict, optional=True)

    def summarise_canary(result, state, reading):
        if state.parts.get("canary") is not None:
            result.parts["canary"] = state.parts["canary"].get(result.view.name, "singing")

    ssd.catalog.declare_layer(ssd.catalog.Layer(
        "canary", 35, "the canary, against the air", was_read=lambda net: "canary" in net.parts,
        summarise=summarise_canary,
        describe=lambda net: (f"Listening to the canary of {net.view.name}", "one canary", True)
        if "canary" in net.parts else None,
        json=lambda net, status: {"song": net.parts["canary"], "status": status} if "canary" in net.parts else None))

    @ssd.catalog.register_check(ssd.catalog.CheckInfo("canary-dead", "The canary is dead.", "Open a window.",
                                                      layer="canary"), scope="network")
    def check_canary(view, state):
        song = (state.parts.get("canary") or {}).get(view.name)
        return [ssd.model.Finding("canary-dead", "no song", network=view.name, subject="canary",
                                  expected="singing", actual=song)] if song == "silent" else []

    phases = list(ssd.run.PHASES)
    phases.insert(phases.index(ssd.run.summarise_networks), read_canary)
    monkeypatch.setattr(ssd.run, "PHASES", tuple(phases))


def with_air(air: dict | None) -> dict:
    """The healthy recording, as a canary-aware ssd would have recorded it (None: before)."""
    doc = ssd.snapshot.load_snapshot(EXAMPLE)
    for sample in doc["samples"]:
        if air is not None:
            sample["lookups"]["canary"] = air
    return doc


def replayed(doc: dict) -> ssd.model.RunResult:
    return ssd.run.settled_check(ssd.snapshot.SnapshotCollector(doc, EXAMPLE), [], 0, live=False)[1]


def test_a_new_layer_is_read_checked_reported_and_snapshotted(monkeypatch, catalog_restored, tmp_path):
    """A brand-new layer (no existing one patched) is read, snapshotted, checked, reported in
    every format, validated by the schema made from the declarations, and leaves the load
    balancer alone."""
    canary_layer(monkeypatch)
    assert list(ssd.catalog.LAYERS).index("canary") == list(ssd.catalog.LAYERS).index("dns") + 1
    # read, through the collector: recorded in the sample, so a snapshot keeps and replays it
    live = ssd.collect.Collector(None, "/nonexistent")
    assert live.lookup("canary", lambda: {"ov2": "silent"}, optional=True) == {"ov2": "silent"}
    assert live.sample["lookups"]["canary"] == {"ov2": "silent"}
    result = replayed(with_air({"ov2": "silent"}))
    assert [(f.check, f.layer, f.network) for f in result.findings] == [("canary-dead", "canary", "ov2")]
    # text: its block, its line under the finding; the services stay OK
    lines = text(result)
    block = lines.index("Listening to the canary of ov2")
    assert lines[block + 1] == "one canary... FAIL"
    assert lines[block + 2].startswith("  canary-dead: no song")
    assert "    layer: the canary, against the air" in lines and "service s1... OK" in lines
    # JSON: its part of each network, its status, the finding's layer; valid by the made schema
    doc = ssd.report.to_json(result)
    ov2 = next(n for n in doc["networks"] if n["name"] == "ov2")
    assert ov2["canary"] == {"song": "silent", "status": "fail"}
    assert {s["name"]: s["status"] for s in ov2["services"]}["s1"] == "ok"
    assert doc["findings"][0]["layer"] == "canary" and doc["status"] == "inconsistent"
    sys.path.insert(0, str(REPO / "tools"))
    import make_docs
    schema = json.loads(make_docs.node_schema((REPO / "schemas" / "node-report.schema.json").read_text()))
    assert "canary" in schema["$defs"]["finding"]["properties"]["layer"]["enum"]
    schemas.validate_with(doc, schema)
    with pytest.raises(Exception, match="canary"):
        schemas.validate(doc)  # the committed schema does not know it: made, not copied
    # Nagios and Prometheus
    assert ssd.report.render_nagios(result, 1.0).startswith("SSD CRITICAL - 1 inconsistency on node node1: canary-dead")
    ssd.report.write_prometheus(str(tmp_path / "ssd.prom"), result, 1.0)
    metrics = (tmp_path / "ssd.prom").read_text()
    assert 'ssd_findings{check="canary-dead",network="ov2"} 1.0' in metrics.splitlines(), metrics
    # a snapshot from before the layer: the layer is not read there, said, not passed
    before = replayed(with_air(None))
    assert before.findings == []
    net = next(n for n in before.networks if n.view.name == "ov2")
    assert ssd.report.layer_status(before, net, "canary") == "error"


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
