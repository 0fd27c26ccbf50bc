"""The JSON contract: every document ssd prints is checked against schemas/ by the tests that see it.

validate(doc) picks the schema from the document's own mode (and format, for snapshots), so a
document that lost its mode or schema_version fails too.
"""
from __future__ import annotations

import json
from pathlib import Path

import jsonschema
from referencing import Registry, Resource

SCHEMAS = Path(__file__).resolve().parents[1] / "schemas"
BASE = "https://ssd.invalid/schemas/"
BY_MODE = {"node": "node-report", "gossip-consistency": "gossip-report", "all-nodes": "fleet-report",
           "all-nodes-watch": "fleet-watch"}


def _registry() -> Registry:
    resources = []
    for path in sorted(SCHEMAS.glob("*.schema.json")):
        schema = json.loads(path.read_text())
        assert schema["$id"] == BASE + path.name, path
        resources.append((schema["$id"], Resource.from_contents(schema)))
    return Registry().with_resources(resources)


REGISTRY = _registry()


def kind_of(doc: dict) -> str:
    if doc.get("format") == "ssd-snapshot":
        return "snapshot"
    if doc.get("status") == "incomplete" and doc.get("node") is None and "findings" in doc \
            and doc.get("mode") not in BY_MODE:
        return "error"
    return BY_MODE.get(doc.get("mode"), "error")


def validate(doc: dict, kind: str | None = None) -> None:
    """Raise jsonschema.ValidationError unless doc is a valid document of its kind."""
    name = kind or kind_of(doc)
    validate_with(doc, REGISTRY.contents(BASE + f"{name}.schema.json"))


def validate_with(doc: dict, schema: dict) -> None:
    """Validate doc against this schema, its references resolved in schemas/."""
    validator = jsonschema.Draft202012Validator(schema, registry=REGISTRY)
    error = jsonschema.exceptions.best_match(validator.iter_errors(doc))
    if error is not None:
        raise error
