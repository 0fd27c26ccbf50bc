import sys
from pathlib import Path

import pytest

# The package ssd/ is at the repository root; the tests import its modules.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))


@pytest.fixture
def catalog_restored(monkeypatch):
    """declare_layer and register_check add to the catalog in place: put it back afterwards."""
    import ssd.catalog
    import ssd.layers  # the catalog whole before it is kept
    kept = [(table, dict(table)) for table in (ssd.catalog.LAYERS, ssd.catalog.CHECKS)]
    monkeypatch.setattr(ssd.catalog, "REGISTRY", list(ssd.catalog.REGISTRY))
    yield
    for table, entries in kept:
        table.clear()
        table.update(entries)


@pytest.fixture
def node(tmp_path):
    """The recorded 20.10 node laid out in real namespaces of this kernel (tier 2)."""
    from kernel_node import KernelNode
    kernel_node = KernelNode(tmp_path)
    try:  # a layout that fails half-way is taken down too: no namespace mount left behind
        yield kernel_node.create()
    finally:
        kernel_node.destroy()


@pytest.fixture
def engine(tmp_path):
    """A fake Engine API on a unix socket serving the recorded daemon's JSON (tier 2)."""
    from fake_engine import FakeEngine
    with FakeEngine(str(tmp_path / "docker.sock")) as fake:
        yield fake
