"""Smoke tests of DR-IS/online.py through its real CLI on a tiny digits setting (its runs, resume, and
the --export-probs / --export-dynamics files)."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import forget_jobs, job_files

from islab import export

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "DR-IS" / "online.py"
TINY = ["--train-size", "300", "--epochs", "2", "--target", "mlp", "--proxies", "linear,mlp",
        "--proxy-epochs", "2", "--snapshot-epoch", "1", "--attacker", "linear", "--attacker-epochs", "2",
        "--irreducible-model", "linear", "--irreducible-epochs", "2", "--rho-every", "1",
        "--noise", "clean,targeted:0.2", "--seeds", "0,1", "--quiet"]
METHODS = ["uniform", "standard_is", "rho_approx", "rho_faithful", "dris"]


def cli(tmp_path, *extra):
    cmd = [sys.executable, str(SCRIPT), *TINY, "--results-root", str(tmp_path / "res"),
           "--cache-dir", str(tmp_path / "cache"), *extra]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=300,
                          env={"OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg", "PATH": "/usr/bin:/bin"})


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("online")
    r = cli(tmp, "--name", "smoke")
    assert r.returncode == 0, r.stderr
    return tmp, tmp / "res" / "DR-IS" / "online" / "smoke"


def test_outputs_and_per_epoch_records(run_dir):
    _, out = run_dir
    for f in ("res.txt", "results.csv", "config.json", "cmd.txt", "env.json", "jobs", "acc_vs_epoch.png",
              "mass_corrupt_vs_epoch.png", "labels-clean.npz", "labels-targeted0.2.npz",
              "irreducible-targeted0.2.npz", "configs.json"):
        assert (out / f).exists(), f
    df = pd.read_csv(out / "results.csv")
    assert set(df["method"]) == set(METHODS) and set(df["config"]) == {"clean", "targeted0.2"}
    ep = df[df["epoch"].notna()]
    # every run: test accuracy, mass on corrupted and ESS at each of the 2 epochs
    for metric in ("test_acc", "mass_corrupt", "drawn_corrupt", "ess"):
        counts = ep[ep["metric"] == metric].groupby(["config", "method", "seed"]).size()
        assert len(counts) == 2 * 5 * 2 and (counts == 2).all(), metric
    noisy = ep[ep["config"] == "targeted0.2"]
    mass = noisy[noisy["metric"] == "mass_corrupt"]
    # uniform puts exactly eps on the corrupted set; DR-IS's fixed p gives the same mass every epoch
    assert np.allclose(mass[mass["method"] == "uniform"]["value"], 0.2)
    assert mass[mass["method"] == "dris"]["value"].nunique() == 1
    ess = noisy[noisy["metric"] == "ess"]
    assert np.allclose(ess[ess["method"] == "uniform"]["value"], 1.0)
    assert (ess[ess["method"] != "uniform"]["value"] <= 1.0 + 1e-9).all()
    fin = df[df["metric"] == "final_acc"]
    assert len(fin) == 20 and fin["value"].between(0, 100).all()
    for m in ("diverged", "collapsed"):
        assert set(df[df["metric"] == m]["value"]) <= {0.0, 1.0}
    text = (out / "res.txt").read_text()
    assert "== noise targeted0.2 ==" in text and "paired t" in text
    for m in METHODS:
        assert m in text
    irr = np.load(out / "irreducible-targeted0.2.npz")
    assert len(irr["holdout"]) == 60 and len(irr["keep"]) == 240   # default 20 % of the 300 training examples
    config = json.loads((out / "config.json").read_text())
    assert config["holdout"] == 0.2 and config["attacker_epochs"] == 2 and config["is_floor"] == 0.1
    # RHO-LOSS uses the one floor by default (weights <= 11); the paper's 0.01 is opt-in
    assert config["rho_floor"] == 0.1 and config["is_source"] == "target" and config["unweighted"] is False
    maxw = df[(df["metric"] == "max_weight_max") & df["method"].isin(["rho_approx", "rho_faithful"])]["value"]
    assert (maxw <= 11 + 1e-6).all()
    # what the holdout does to the RHO comparison, stated per configuration (batch 64)
    assert "RHO targets: N' = 240 of N = 300 examples (80.0 %), 4 vs 5 steps per epoch" in text
    assert "targeted-noise attacker linear (2 epochs)" in text


def test_resume_skips_finished_jobs_and_redoes_a_missing_one(run_dir):
    tmp, out = run_dir
    rows_before = len(pd.read_csv(out / "results.csv"))
    assert forget_jobs(out, lambda k: k == {"config": "targeted0.2", "method": "dris", "seed": 1}) == 1
    r = cli(tmp, "--name", "smoke", "--resume")
    assert r.returncode == 0, r.stderr
    log = (out / "log.txt").read_text().split("digits:")[-1]   # this invocation's lines
    assert "[clean] 10 finished jobs skipped" in log and "[targeted0.2] 9 finished jobs skipped" in log
    assert log.count("final acc") == 1 and "[targeted0.2] dris seed 1" in log
    assert len(pd.read_csv(out / "results.csv")) == rows_before       # replaced, not duplicated
    assert len(job_files(out)) == 20
    # the same folder without --resume is refused (exit 2, one line), never overwritten
    r = cli(tmp, "--name", "smoke")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("bad", [["--methods", "uniform,nope"], ["--noise", "clean,targeted:1.5"],
                                 ["--holdout", "299"], ["--gamma", "-1"]])
def test_bad_input_exits_2_with_one_line_and_no_folder(tmp_path, bad):
    r = cli(tmp_path, *bad)
    assert r.returncode == 2, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not (tmp_path / "res").exists()


def test_online_cli_exports_probs_and_dynamics(tmp_path):
    """DR-IS/online.py --export-probs --export-dynamics on tiny digits: the files exist, p rows are
    distributions refreshed as the method says, dynamics cover every proxy epoch; the flags are
    mechanics (not in config.json)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    args = ["--train-size", "150", "--epochs", "2", "--target", "linear", "--proxies", "linear,mlp",
            "--proxy-epochs", "2", "--snapshot-epoch", "1", "--noise", "uniform:0.2", "--seeds", "0",
            "--methods", "standard_is,dris", "--quiet", "--results-root", str(tmp_path), "--name", "x",
            "--export-probs", "--export-dynamics"]
    r = subprocess.run([sys.executable, str(root / "DR-IS" / "online.py"), *args], capture_output=True, text=True,
                       cwd=root, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"})
    assert r.returncode == 0, r.stderr[-2000:]
    run = tmp_path / "DR-IS" / "online" / "x"
    epochs, p = export.load_probs(run / "probs-uniform0.2-standard_is-s0.npz")
    assert epochs.tolist() == [0, 1] and p.shape == (2, 150)          # refreshed every epoch
    np.testing.assert_allclose(p.sum(1), 1, atol=1e-5)
    epochs, p = export.load_probs(run / "probs-uniform0.2-dris-s0.npz")
    assert epochs.tolist() == [0]                                       # fixed for the run
    table = pd.read_csv(run / "scores-uniform0.2.csv")
    from islab.sampling import smoothed_probs

    np.testing.assert_allclose(p[0], smoothed_probs(table["dris"].to_numpy(), 0.1), rtol=1e-5)
    guids, gold, logits = export.read_cartography(run / "dynamics-uniform0.2" / "mlp_s1001")
    assert logits.shape == (2, 150, 10) and gold.tolist() == table["noisy_label"].tolist()
    assert "export_probs" not in json.loads((run / "config.json").read_text())
    # --train-size 150: positions 0..149 in the files, and the original digits ids beside them
    from islab.data import load_dataset

    original = load_dataset("digits", train_size=150).train_ids
    assert len(original) == 150 and original[-1] > 149
    example_id, dataset_id = export.load_probs_ids(run / "probs-uniform0.2-dris-s0.npz")
    assert example_id.tolist() == list(range(150)) and dataset_id.tolist() == original.tolist()
    assert table["dataset_id"].tolist() == original.tolist()
    assert np.load(run / "labels-uniform0.2.npz")["dataset_id"].tolist() == original.tolist()
    records = [json.loads(f.read_text()) for f in (run / "jobs").glob("*.json")]
    assert all(any(k.startswith("probs-") for k in rec["files"]) for rec in records)
