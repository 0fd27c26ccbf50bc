#!/usr/bin/env python3
"""make docs: docs/checks.md's table of check ids, made from the checks' own declarations
(CheckInfo in each register_check of ssd/layers/), between its two markers. With --check, exit 1
when the committed page is not what this makes (tests/test_docs.py does the same)."""
from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ssd import layers  # noqa: E402,F401 (every layer module declares its checks)
from ssd.catalog import CHECKS, LAYERS  # noqa: E402

PAGE = REPO / "docs" / "checks.md"
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


def main() -> int:
    current = PAGE.read_text()
    made = page(current)
    if sys.argv[1:] == ["--check"]:
        return 0 if made == current else 1
    if made != current:
        PAGE.write_text(made)
    return 0


if __name__ == "__main__":
    sys.exit(main())
