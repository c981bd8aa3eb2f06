"""Fashion-MNIST end to end: one smoke run of the real files through DR-IS/static.py (the
preset, class-balanced selection), and the missing / damaged data cases through the real CLI."""
import gzip
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from islab import sampling

ROOT = Path(__file__).resolve().parents[2]
STATIC = ROOT / "DR-IS" / "static.py"
REAL = Path("/usr/share/datasets/fashion-mnist")
HAVE_REAL = (REAL / "train-images-idx3-ubyte.gz").exists()


def cli(*args, root):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, str(STATIC), *args, "--results-root", str(root)],
                          capture_output=True, text=True, cwd=ROOT, timeout=300, env=env)


def test_keep_top_fraction_per_class_known_answer():
    score = np.array([5.0, 4.0, 3.0, 2.0, 1.0, 0.0, 9.0, 8.0])
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    # global top half: ids 6, 7, 0, 1 (class 0 keeps 2 of 4, class 1 keeps 2 of 4 by luck)
    assert sampling.keep_top_fraction(score, 0.5).tolist() == [0, 1, 6, 7]
    # a skewed case: class 0 holds all the high scores globally, balanced keeps half of each
    score2 = np.array([9.0, 8.0, 7.0, 6.0, 1.0, 0.0, 2.0, 3.0])
    assert sampling.keep_top_fraction(score2, 0.5).tolist() == [0, 1, 2, 3]
    assert sampling.keep_top_fraction_per_class(score2, labels, 0.5).tolist() == [0, 1, 6, 7]


@pytest.mark.skipif(not HAVE_REAL and not os.environ.get("CI"),
                    reason="real Fashion-MNIST not installed (`make data`); CI always has it")
def test_real_fashion_mnist_smoke_run_with_the_preset(tmp_path):
    r = cli("--preset", "fashion-mnist", "--train-size", "1500", "--epochs", "1", "--proxy-epochs", "1",
            "--snapshot-epoch", "1", "--seeds", "0", "--noise", "targeted:0.2", "--class-balanced",
            "--methods", "random,dris", "--quiet", "--name", "fm", "--cache-dir", str(tmp_path / "cache"),
            root=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    df = pd.read_csv(tmp_path / "DR-IS" / "static" / "fm" / "results.csv")
    fin = df[df["epoch"].isna()].pivot_table(index="method", columns="metric", values="value")
    assert set(fin.index) == {"random", "dris"}
    # class-balanced dris keeps (up to rounding) the same fraction of every noisy-label class
    labels = np.load(tmp_path / "DR-IS" / "static" / "fm" / "labels-targeted0.2.npz")["noisy"]
    kept = np.load(tmp_path / "DR-IS" / "static" / "fm" / "subsets-targeted0.2.npz")["dris-a0.3-s0"]
    frac = np.bincount(labels[kept], minlength=10) / np.bincount(labels, minlength=10)
    assert np.all(np.abs(frac - 0.3) < 0.02)
    assert (fin["test_acc"] > 10).all()          # 1 epoch on 1,500 real images beats chance
    res = (tmp_path / "DR-IS" / "static" / "fm" / "res.txt").read_text()
    assert "fashion-mnist, target mlp2x256" in res and "class-balanced" in res


def _write_idx(path, array):
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    path.write_bytes(gzip.compress(header + array.astype(np.uint8).tobytes()))


@pytest.mark.parametrize("case", ["missing", "truncated"])
def test_missing_or_truncated_idx_exits_2_with_one_line_and_no_folder(tmp_path, case):
    data = tmp_path / "data"
    if case == "missing":   # mnist has no system copy: an empty --data-dir means missing
        dataset = "mnist"
    else:                   # --data-dir is searched before the system copy
        dataset = "fashion-mnist"
        raw = data / "FashionMNIST" / "raw"
        raw.mkdir(parents=True)
        rng = np.random.default_rng(0)
        for prefix, n in (("train", 20), ("t10k", 10)):
            _write_idx(raw / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28)))
            _write_idx(raw / f"{prefix}-labels-idx1-ubyte.gz", rng.integers(0, 10, n))
        f = raw / "train-images-idx3-ubyte.gz"
        f.write_bytes(f.read_bytes()[:-40])
    results = tmp_path / "results"
    r = cli("--preset", "fashion-mnist", "--dataset", dataset, "--data-dir", str(data), "--seeds", "0",
            "--cache-dir", str(tmp_path / "cache"), root=results)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr
    assert ("apt-get install" in lines[0] or "--download" in lines[0])
    if case == "truncated":
        assert "train-images-idx3-ubyte.gz" in lines[0]
    assert not results.exists() and not (tmp_path / "cache").exists()
