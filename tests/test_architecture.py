"""The package's shape, as docs/architecture.md draws it: every module says what it owns, none
is over ~700 lines, the imports between them have no cycle, and the drawing names them all."""
from __future__ import annotations

import ast
import re
from pathlib import Path
from helpers import REPO

PACKAGE = REPO / "ssd"
MAX_LINES = 700


def modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        name = ".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")
        found[name] = path
    return found


def imports_of(path: Path) -> set[str]:
    """The ssd modules a module imports when it runs (type-checking-only imports left out)."""
    tree = ast.parse(path.read_text())
    skipped = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If)
               and ast.unparse(node.test) == "TYPE_CHECKING" for n in ast.walk(node)}
    names = modules()
    found = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("ssd")}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("ssd"):
            for alias in node.names:  # from ssd.layers import lb: the module ssd.layers.lb
                sub = f"{node.module}.{alias.name}"
                found.add(sub if sub in names else node.module)
    return found


def test_every_module_says_what_it_owns_and_is_short():
    for name, path in modules().items():
        doc = ast.get_docstring(ast.parse(path.read_text()))
        assert doc and len(doc) > 40 and "TODO" not in doc, name
        assert len(path.read_text().splitlines()) <= MAX_LINES, name


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, str] = {}

    def visit(name: str, path: list[str]) -> list[str] | None:
        state[name] = "open"
        for dep in sorted(graph.get(name, ())):
            if state.get(dep) == "open":
                return [*path, name, dep]
            if dep not in state and (found := visit(dep, [*path, name])):
                return found
        state[name] = "done"
        return None

    for name in sorted(graph):
        if name not in state and (found := visit(name, [])):
            return found
    return None


def test_the_imports_have_no_cycle():
    graph = {name: imports_of(path) - {name} for name, path in modules().items()}
    # a package imports its own modules (ssd.layers imports each layer so that the catalog is whole)
    graph = {name: {m for m in deps if not m.startswith(name + ".")} for name, deps in graph.items()}
    assert sum(len(deps) for deps in graph.values()) > 50  # the imports were read
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


def test_a_cycle_is_found():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_one_banner_style():
    for path in modules().values():
        for line in re.findall(r"^# --- .*$", path.read_text(), flags=re.M):
            assert len(line) == 88 and line.endswith("---"), (path, line)


def test_the_package_entry_imports_nothing_of_its_own():
    """ssd/__init__.py runs first in every form (the guard): it must stay light and 3.7-valid."""
    assert imports_of(PACKAGE / "__init__.py") == set()


def test_the_drawing_names_every_module():
    drawing = (REPO / "docs" / "architecture.md").read_text()
    table = set(re.findall(r"^\| `(ssd(?:\.\w+)*)` \|", drawing, flags=re.M))
    assert table == set(modules()) - {"ssd.__main__"}, table ^ set(modules())
