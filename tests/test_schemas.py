"""Tier 1: the JSON contract. Every document kind ssd prints validates against its schema in
schemas/, examples and errors of every mode included; the schemas refuse what breaks the contract.
(Live documents are validated where tiers 2 and 3 produce them: tests/schemas.py's validate.)"""
from __future__ import annotations

import copy
import json
import subprocess
import sys

import jsonschema
import pytest

from schemas import SCHEMAS, validate
from helpers import REPO, SSD

EXAMPLES = sorted((REPO / "examples").glob("*-node*.json"))
ENV = {"PATH": "/usr/bin:/bin", "NO_COLOR": "1", "DOCKER_HOST": "unix:///nonexistent.sock"}


def ssd_json(*args: str) -> tuple[int, dict]:
    proc = subprocess.run([sys.executable, SSD, "--json", *args], capture_output=True, text=True,
                          timeout=60, check=False, cwd=REPO, env=ENV)
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc.returncode, json.loads(proc.stdout)


@pytest.mark.parametrize("path", sorted(SCHEMAS.glob("*.schema.json")), ids=lambda p: p.name)
def test_each_schema_is_a_valid_schema(path):
    jsonschema.Draft202012Validator.check_schema(json.loads(path.read_text()))


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_every_example_and_its_report_validate(example):
    validate(json.loads(example.read_text()))
    code, doc = ssd_json("--from", str(example))
    assert code in (0, 1, 3) and doc["mode"] == "node" and doc["schema_version"] == 1
    validate(doc)


@pytest.mark.parametrize("case", ["healthy", "diverged"])
def test_gossip_reports_of_the_examples_validate(case):
    files = sorted((REPO / "examples").glob(f"{case}-node*.json"))
    _, doc = ssd_json("ov2", "gossip-consistency", *(a for f in files for a in ("--from", str(f))))
    assert doc["mode"] == "gossip-consistency"
    validate(doc)
    assert bool(doc["differences"]) is (case == "diverged")


@pytest.mark.parametrize("args,mode", [
    (["--settle", "nan", "ov2"], "node"),  # a usage error
    (["ov2"], "node"),  # no daemon
    (["--from", "/nonexistent.json"], "node"),
    (["ov2", "gossip-consistency"], "gossip-consistency"),
    (["ov2", "gossip-consistency", "--timeout", "0"], "gossip-consistency"),
    (["--all-nodes"], "all-nodes"),
    (["--all-nodes", "--from", "x.json"], "all-nodes"),
])
def test_an_error_in_every_mode_is_a_valid_document_of_that_mode(args, mode):
    code, doc = ssd_json(*args)
    assert code == 2 and doc["mode"] == mode and doc["status"] == "incomplete"
    validate(doc)
    validate(doc, "error")


def report() -> dict:
    return ssd_json("--from", str(REPO / "examples" / "stale-backend-node2.json"))[1]


@pytest.mark.parametrize("breakage", ["no schema_version", "another schema_version", "no mode",
                                      "unknown status", "finding without check", "check id spelled",
                                      "service status", "node without id"])
def test_the_schemas_refuse_what_breaks_the_contract(breakage):
    doc = copy.deepcopy(report())
    validate(doc)
    finding = doc["findings"][0]
    if breakage == "no schema_version":
        del doc["schema_version"]
    elif breakage == "another schema_version":
        doc["schema_version"] = 2
    elif breakage == "no mode":
        del doc["mode"]
    elif breakage == "unknown status":
        doc["status"] = "fine"
    elif breakage == "finding without check":
        del finding["check"]
    elif breakage == "check id spelled":
        finding["check"] = "IPVS backend stale"
    elif breakage == "service status":
        doc["networks"][0]["services"][0]["status"] = "green"
    else:
        del doc["node"]["id"]
    with pytest.raises(jsonschema.ValidationError):
        validate(doc, "node-report")

