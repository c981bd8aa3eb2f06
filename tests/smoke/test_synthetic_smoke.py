"""Smoke test of DR-IS/synthetic.py on its --quick setting in a tmp results root."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import forget_jobs

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "DR-IS" / "synthetic.py"


def run(root, *args):
    return subprocess.run([sys.executable, str(SCRIPT), "--quick", "--results-root", str(root), *args],
                          capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def runs_ab(tmp_path_factory):
    root = tmp_path_factory.mktemp("res")
    for name in ("a", "b"):
        proc = run(root, "--name", name)
        assert proc.returncode == 0, proc.stderr
    return root, root / "DR-IS" / "synthetic"


def test_outputs(runs_ab):
    _, base = runs_ab
    a = base / "a"
    for f in ("config.json", "cmd.txt", "env.json", "res.txt", "results.csv", "synthetic.png",
              "labels_clean-0.npz", "labels_uniform-0.1.npz", "labels_targeted-0.25.npz"):
        assert (a / f).stat().st_size > 0, f
    config = json.loads((a / "config.json").read_text())
    assert config["attacker"] == "sgd" and config["attacker_epochs"] == 2
    df = pd.read_csv(a / "results.csv")
    assert list(df.columns) == ["kind", "rate", "method", "seed", "epoch", "metric", "value"]
    assert set(df["method"]) == {"uniform", "grad-is", "loss-is", "dr-is", "labels"}
    # where the flips landed: per seed, flips = n_corrupt(200, rate) and the rare count matches the masks
    lab = df[df["method"] == "labels"].set_index(["kind", "seed", "metric"])["value"]
    z = np.load(a / "labels_targeted-0.25.npz")
    for i, seed in enumerate(z["seeds"]):
        assert lab[("targeted", seed, "flips")] == 50
        assert lab[("targeted", seed, "flips_in_rare")] == (z["corrupt"][i] & z["rare"][i]).sum()
        assert 50 < lab[("targeted", seed, "attacker_test_acc_pct")] <= 100
    df = df[df["method"] != "labels"]
    acc = df[df["metric"] == "test_acc_pct"]
    err = df[df["metric"] == "test_err_pct"]
    assert abs(acc["value"].to_numpy() + err["value"].to_numpy() - 100).max() < 1e-9
    mass = df[(df["metric"] == "mass_corrupt") & (df["kind"] == "uniform") & (df["method"] == "uniform")]
    assert mass["value"].round(12).eq(0.1).all()
    res = (a / "res.txt").read_text()
    for s in ("clean test accuracy", "sampling mass on corrupted", "Uniform SGD", "Standard IS", "Loss IS",
              "DR-IS", "uniform 10%", "collapsed chains", "flipped examples in the rare cluster",
              "SGD attacker, 2 epoch(s)"):
        assert s in res, s


def test_same_seed_same_results_and_resume(runs_ab):
    root, base = runs_ab
    assert (base / "a" / "results.csv").read_bytes() == (base / "b" / "results.csv").read_bytes()
    b = base / "b"
    assert forget_jobs(b, lambda k: k["kind"] == "uniform") == 1
    proc = run(root, "--name", "b", "--resume")
    assert proc.returncode == 0, proc.stderr
    assert "clean: done, skipped (--resume)" in proc.stdout
    assert "2 problems x 4 methods" in proc.stdout  # only uniform 10 % (2 seeds) ran again
    assert "targeted 25%: done, skipped (--resume)" in proc.stdout
    keys = ["kind", "rate", "method", "seed", "epoch", "metric"]
    ra, rb = (pd.read_csv(f / "results.csv").sort_values(keys).reset_index(drop=True)
              for f in (base / "a", b))
    pd.testing.assert_frame_equal(ra, rb)


@pytest.mark.parametrize("bad", [["--noise", "uniform:1.0"], ["--noise", "pair:0.1"], ["--noise", "uniform"],
                                 ["--methods", "uniform,nope"], ["--ratio", "0"], ["--seeds", "-1"],
                                 ["--noise", "rare:0.5"], ["--attacker-epochs", "-1"],
                                 ["--attacker", "optimum"], ["--attacker-epochs", "1.5"]])
def test_bad_input_exits_2_without_a_folder(tmp_path, bad):
    proc = run(tmp_path, "--name", "bad", *bad)
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert not (tmp_path / "DR-IS").exists()
