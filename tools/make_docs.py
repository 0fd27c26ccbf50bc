#!/usr/bin/env python3
"""make docs: what is made from the declarations of ssd/layers/: docs/checks.md's table of check
ids (CheckInfo in each register_check), between its two markers, and the enum of layers in
schemas/node-report.schema.json (each declare_layer). With --check, exit 1 when a committed file
is not what this makes (tests/test_docs.py does the same)."""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ssd import layers  # noqa: E402,F401 (every layer module declares its checks)
from ssd.catalog import CHECKS, LAYERS  # noqa: E402

PAGE = REPO / "docs" / "checks.md"
SCHEMA = REPO / "schemas" / "node-report.schema.json"
LAYER_ENUM = re.compile(r'("layer": \{\n(\s*)"enum": \[\n)(.*?)(\n\s*\])', re.S)
BEGIN = "<!-- the check ids: made by `make docs` from the checks' declarations; do not edit -->"
END = "<!-- end of the check ids -->"


def checks_table() -> str:
    """One row per check id, the layers in their order, each layer's ids in its checks' order."""
    rows = ["| check | what is wrong | what to do | layer |", "|---|---|---|---|"]
    for layer in LAYERS:
        rows += [f"| `{info.id}` | {info.meaning} | {info.action} | {layer} |"
                 for info in CHECKS.values() if info.layer == layer]
    return "\n".join(rows)


def page(text: str) -> str:
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{BEGIN}\n{checks_table()}\n{END}{tail}"


def node_schema(text: str) -> str:
    """The node report's schema with a finding's "layer" enum as the layers are declared."""
    def declared(match: re.Match) -> str:
        indent = match.group(2) + "  "
        return match.group(1) + ",\n".join(indent + json.dumps(name) for name in LAYERS) + match.group(4)
    made, found = LAYER_ENUM.subn(declared, text)
    if found != 1:
        raise SystemExit(f"{SCHEMA}: no single layer enum to make")
    return made


def main() -> int:
    stale = []
    for path, make in ((PAGE, page), (SCHEMA, node_schema)):
        current = path.read_text()
        made = make(current)
        if made != current:
            stale.append(path)
            if sys.argv[1:] != ["--check"]:
                path.write_text(made)
    return 1 if stale and sys.argv[1:] == ["--check"] else 0


if __name__ == "__main__":
    sys.exit(main())
