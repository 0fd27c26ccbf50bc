import sys
from pathlib import Path

# ssd is one file at the repository root; the tests import it as a module.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
