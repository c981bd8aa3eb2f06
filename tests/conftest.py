"""Test set-up for every folder (tests/unit, tests/smoke, tests/run): make islab importable from
the repository root, make the shared helpers importable (`import helpers`, `import claims_record`,
or `from tests import helpers`), and keep torch on few threads."""
import os
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
for p in (str(TESTS), str(ROOT)):   # ROOT first on sys.path: islab and `tests` as a namespace package
    if p not in sys.path:
        sys.path.insert(0, p)
os.environ.setdefault("MPLBACKEND", "Agg")

try:
    import torch

    # One thread: the suite runs many small ops, where a second thread only adds contention.
    torch.set_num_threads(1)
except ImportError:
    pass
