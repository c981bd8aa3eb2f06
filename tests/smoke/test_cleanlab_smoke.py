"""DR-IS/cleanlab_compare.py through its real CLI on tiny digits (linear models, 1-2 epochs), its
pieces with known answers, and islab.proxies' out-of-sample probabilities."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import job_files

from islab.loader import load_script

# cleanlab is pinned in requirements.txt; an existing environment without it (make test PYTHON=...)
# reports these tests as skipped, with this reason
pytest.importorskip("cleanlab", reason="cleanlab is not installed (pip install -r requirements.txt)")

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "DR-IS" / "cleanlab_compare.py"
TINY = ["--train-size", "240", "--epochs", "1", "--target", "linear", "--proxies", "linear,mlp",
        "--proxy-epochs", "2", "--snapshot-epoch", "1", "--attacker", "linear", "--attacker-epochs", "2",
        "--seeds", "0,1", "--methods", "random,dris,cleanlab,full", "--quiet"]


def _load():
    return load_script(SCRIPT, "cleanlab_compare_under_test")


def cli(tmp, *extra):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    return subprocess.run([sys.executable, str(SCRIPT), *TINY, "--results-root", str(tmp / "res"),
                           "--cache-dir", str(tmp / "cache"), *extra], capture_output=True, text=True, cwd=ROOT,
                          timeout=300, env=env)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cleanlab")
    r = cli(tmp, "--name", "smoke")
    assert r.returncode == 0, r.stderr[-3000:]
    return tmp, tmp / "res" / "DR-IS" / "cleanlab" / "smoke"


def test_outputs_tables_and_exports(run_dir):
    _, out = run_dir
    for f in ("res.txt", "table.md", "results.csv", "config.json", "env.json", "detection-uniform0.25.npz",
              "detection-targeted0.25.npz", "scores-uniform0.25.csv", "pruning/res.txt", "pruning/results.csv"):
        assert (out / f).exists(), f
    table = (out / "table.md").read_text()
    for name in ("| cleanlab |", "| dris |", "| aum |", "| el2n |", "| consensus |", "| random |", "| full |"):
        assert name in table, name
    df = pd.read_csv(out / "results.csv")
    det = df[(df["part"] == "detection") & (df["metric"] == "auroc")]
    assert set(det["score"]) == {"cleanlab", "dris", "aum", "el2n", "consensus"}
    assert det["value"].between(0, 1).all()
    # the detection job recorded its files; cleanlab's own columns are in the scores CSV
    records = [k for k in job_files(out).values() if k.get("part") == "detection"]
    assert len(records) == 2
    scores = pd.read_csv(out / "scores-uniform0.25.csv")
    assert {"cleanlab_quality", "cleanlab_issue", "dris", "noisy_label", "clean_label", "corrupted"} <= set(scores)
    with np.load(out / "detection-uniform0.25.npz") as z:
        probs, issues = z["probs"], z["issues"]
        np.testing.assert_allclose(probs.sum(1), 1, atol=1e-6)
        assert issues.tolist() == scores["cleanlab_issue"].astype(bool).tolist()
    # the static sub-run trained cleanlab's kept set: its keep fraction is 1 - flagged fraction
    prune = pd.read_csv(out / "pruning" / "results.csv")
    kept = prune[(prune["method"] == "cleanlab") & (prune["metric"] == "kept_fraction") & (prune["config"] == "uniform0.25")]
    assert kept["value"].iloc[0] == pytest.approx(1 - issues.mean(), abs=1e-9)


def test_resume_redoes_nothing_and_reuses_the_cache(run_dir):
    tmp, out = run_dir
    before = {p: p.stat().st_mtime_ns for p in job_files(out)}
    r = cli(tmp, "--name", "smoke", "--resume")
    assert r.returncode == 0, r.stderr[-3000:]
    assert {p: p.stat().st_mtime_ns for p in job_files(out)} == before
    log = (out / "log.txt").read_text()
    assert "detection: done, skipped (--resume)" in log and "pruning: done, skipped (--resume)" in log


def test_detection_orientation_and_cleanlab_rows():
    mod = _load()
    mask = np.array([True, False, False, True])
    det = {"low_is_bad": -np.array([0.1, 0.9, 0.8, 0.2])}
    rows = mod.detection_rows(det, issues=np.array([True, True, False, False]), mask=mask)
    got = {(r["score"], r["metric"]): r["value"] for r in rows}
    assert got[("low_is_bad", "auroc")] == 1.0
    assert got[("cleanlab", "precision")] == 0.5 and got[("cleanlab", "recall")] == 0.5
    assert got[("cleanlab", "flagged_fraction")] == 0.5
    assert mod.DETECTORS["dris"][1] == -1 and mod.DETECTORS["el2n"][1] == 1


def test_stratified_folds_and_out_of_sample_probs(tmp_path):
    from islab.data import load_dataset
    from islab.proxies import out_of_sample_probs, stratified_folds
    from islab.train import TrainConfig

    labels = np.repeat(np.arange(3), [9, 6, 3])
    folds = stratified_folds(labels, 3, seed=0)
    for c in range(3):   # every class dealt evenly over the folds
        assert np.bincount(folds[labels == c], minlength=3).tolist() == [np.sum(labels == c) // 3] * 3
    assert (folds == stratified_folds(labels, 3, seed=0)).all()
    with pytest.raises(ValueError):
        stratified_folds(labels, 1, seed=0)

    ds = load_dataset("digits", train_size=150)
    y = ds.train.y.numpy()
    cfg = TrainConfig(epochs=1, batch_size=32, lr=0.05)
    p1 = out_of_sample_probs(ds, y, ["linear", "mlp"], [1, 2], cfg, 3, 0, cache_dir=tmp_path)
    assert p1.shape == (150, 10)
    np.testing.assert_allclose(p1.sum(1), 1, atol=1e-6)   # float32 softmax
    assert len(list(tmp_path.glob("*.npz"))) == 6              # one file per (fold, proxy)
    p2 = out_of_sample_probs(ds, y, ["linear", "mlp"], [1, 2], cfg, 3, 0, cache_dir=tmp_path)
    np.testing.assert_array_equal(p1, p2)                       # read back from the cache
