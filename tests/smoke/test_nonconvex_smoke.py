"""Smoke test of Convex-Noise/nonconvex_rr.py on its --quick setting in a tmp results root."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import forget_jobs

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "Convex-Noise" / "nonconvex_rr.py"


def run(root, *args):
    return subprocess.run([sys.executable, str(SCRIPT), "--quick", "--results-root", str(root), *args],
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def runs_ab(tmp_path_factory):
    root = tmp_path_factory.mktemp("res")
    for name in ("a", "b"):
        proc = run(root, "--name", name)
        assert proc.returncode == 0, proc.stderr
    return root, root / "Convex-Noise" / "nonconvex"


def test_outputs(runs_ab):
    _, base = runs_ab
    a = base / "a"
    for f in ("config.json", "cmd.txt", "env.json", "log.txt", "res.txt", "results.csv",
              "twowell.png", "welsch.png", "mueller_brown.png", "twowell.npz", "welsch.npz", "mb.npz"):
        assert (a / f).stat().st_size > 0, f
    df = pd.read_csv(a / "results.csv")
    assert list(df.columns) == ["part", "method", "dynamics", "eta", "metric", "value"]
    assert set(df["part"]) == {"twowell", "welsch", "mb"}
    frac = df[df["metric"].isin(["left_final", "better_fraction", "frac_A", "frac_B", "frac_C"])]["value"]
    assert frac.between(0, 1).all()
    mb = df[(df.part == "mb") & (df.dynamics == "sampled")].pivot_table(index=["method", "eta"],
                                                                        columns="metric", values="value")
    np.testing.assert_allclose(mb[["frac_A", "frac_B", "frac_C", "frac_none"]].sum(1), 1.0)
    lemma = df[(df.part == "twowell") & (df.dynamics == "lemma") & (df.metric == "left_mass")]
    assert set(lemma["method"]) == {"sgd", "rr"}
    z = np.load(a / "twowell.npz")
    assert len(z["edges"]) == 241 and z["hist_sgd-sampled"].sum() > 0
    res = (a / "res.txt").read_text()
    for s in ("(a) two subgroups", "Lemma 2.1", "(b) Welsch regression", "linear stability limit",
              "(c) Mueller-Brown", "global minimum A"):
        assert s in res, s
    config = json.loads((a / "config.json").read_text())
    assert config["tw_chains"] == 60 and config["quick"] is True


def test_same_seed_same_results_and_resume(runs_ab):
    root, base = runs_ab
    assert (base / "a" / "results.csv").read_bytes() == (base / "b" / "results.csv").read_bytes()
    b = base / "b"
    assert forget_jobs(b, lambda k: k["part"] == "welsch") == 1
    proc = run(root, "--name", "b", "--resume")
    assert proc.returncode == 0, proc.stderr
    assert "twowell: done, skipped (--resume)" in proc.stdout
    assert "mb: done, skipped (--resume)" in proc.stdout
    assert "welsch: finished" in proc.stdout and "twowell sgd" not in proc.stdout
    keys = ["part", "method", "dynamics", "eta", "metric"]
    ra, rb = (pd.read_csv(f / "results.csv").sort_values(keys).reset_index(drop=True)
              for f in (base / "a", b))
    pd.testing.assert_frame_equal(ra, rb)
    proc = run(root, "--name", "b")
    assert proc.returncode == 2 and "--resume" in proc.stderr


@pytest.mark.parametrize("bad", [["--parts", "twowell,nope"], ["--tw-a1", "1.5"], ["--tw-eps", "50"],
                                 ["--tw-k1", "0"], ["--mb-props", "1,2,3"], ["--mb-props", "1,2,3,-1"],
                                 ["--w-beta-bad", "1.0"], ["--w-etas", "0.1,0"], ["--tw-chains", "0"],
                                 ["--seed", "-1"], ["--mb-etas", "x"]])
def test_bad_input_exits_2_without_a_folder(tmp_path, bad):
    proc = run(tmp_path, "--name", "bad", *bad)
    assert proc.returncode == 2, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert not (tmp_path / "Convex-Noise").exists()


def test_help_lists_every_flag_with_a_unit_or_range():
    out = subprocess.run([sys.executable, str(SCRIPT), "--help"], capture_output=True, text=True).stdout
    for flag in ("--tw-eta", "--tw-k1", "--w-etas", "--w-c", "--mb-props", "--mb-etas", "--tw-substeps"):
        assert flag in out
    assert "per unit" in out and "comma list" in out
