import sys
from pathlib import Path

import pytest

# ssd is one file at the repository root; the tests import it as a module.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))


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
