"""The documentation cannot drift: the man page is what the argument parser makes, every page the
README links exists, and the README stays a few screens."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from helpers import REPO



def without_date(page: str) -> str:
    return re.sub(r'^(\.TH \S+ "\d+" )"[^"]*"', r"\1DATE", page, flags=re.M)


def test_the_man_page_is_what_the_parser_makes(tmp_path):
    made = tmp_path / "ssd.1"
    venv = Path(sys.executable).parent.parent
    proc = subprocess.run(["make", "-s", "man", f"VENV={venv}", f"MAN_OUT={made}"], cwd=REPO,
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    page = made.read_text()
    assert without_date(page) == without_date((REPO / "docs" / "ssd.1").read_text()), \
        "docs/ssd.1 is stale: run make man"
    for option in ("context", "timeout", "prometheus", "all\\-nodes", "from"):
        assert f"\\fB\\-\\-{option}\\fR" in page, option
    assert ".SH EXIT STATUS" in page and ".SH ENVIRONMENT" in page


def test_every_page_the_readme_links_exists():
    readme = (REPO / "README.md").read_text()
    links = re.findall(r"\]\(([^)#]+)\)", readme) + re.findall(r"\b(docs/[\w.-]+)", readme)
    assert len(set(links)) >= 6
    for link in set(links):
        assert (REPO / link).exists(), link


def test_the_readme_is_a_few_screens():
    readme = (REPO / "README.md").read_text()
    assert len(readme.splitlines()) <= 150 and len(readme) <= 8000, "move detail to docs/"
    for needed in ("pipx install", "make install", "make test", "ssd ov2 gossip-consistency",
                   "--all-nodes", "--cap-add SYS_ADMIN", "Exit status"):
        assert needed in readme, needed


def test_the_check_table_is_made_from_the_declarations():
    """docs/checks.md's table is what `make docs` makes from the checks' own declarations."""
    sys.path.insert(0, str(REPO / "tools"))
    import make_docs
    current = (REPO / "docs" / "checks.md").read_text()
    assert make_docs.page(current) == current, "docs/checks.md is stale: run make docs"
    stale = current.replace("| `sysctl` |", "| `sysctl-old` |")
    assert stale != current and make_docs.page(stale) == current
    assert len(make_docs.checks_table().splitlines()) == 2 + len(make_docs.CHECKS) >= 50
    schema = (REPO / "schemas" / "node-report.schema.json").read_text()
    assert make_docs.node_schema(schema) == schema, "the schema's layers are stale: run make docs"
    stale = schema.replace('            "dns",\n', '            "dns",\n            "gone",\n')
    assert stale != schema and make_docs.node_schema(stale) == schema


def test_the_json_contract_names_every_layer():
    """docs/monitoring.md's sketch of the report lists the layers a finding can be of."""
    import ssd.layers  # noqa: F401 (they declare themselves)
    from ssd.catalog import LAYERS
    line = next(line for line in (REPO / "docs" / "monitoring.md").read_text().splitlines()
                if '"layer": ' in line and '"findings"' in line)
    assert re.findall(r'"(\w+)"(?= \||,)', line.split('"layer": ')[1]) == list(LAYERS), line
