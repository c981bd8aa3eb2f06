"""Test set-up: make islab importable from the repository root and keep torch on few threads."""
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("MPLBACKEND", "Agg")

try:
    import torch

    # One thread: the suite runs many small ops, where a second thread only adds contention.
    torch.set_num_threads(1)
except ImportError:
    pass
