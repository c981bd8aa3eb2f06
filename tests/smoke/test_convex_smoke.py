"""Smoke test of Convex-Noise/IS-noise.py: the CLI on its --quick setting in a tmp results root."""
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from helpers import forget_jobs, job_files

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "Convex-Noise" / "IS-noise.py"
METHODS = ["uniform", "is-norm", "partial-is", "loss-is", "grad-is", "dr-is"]


def run(root, *args):
    return subprocess.run([sys.executable, str(SCRIPT), "--quick", "--results-root", str(root), *args],
                          capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    """Two identical runs, a and b (same seeds, different folders)."""
    root = tmp_path_factory.mktemp("res")
    for name in ("a", "b"):
        proc = run(root, "--name", name)
        assert proc.returncode == 0, proc.stderr
    return root, root / "Convex-Noise" / "a"


def test_outputs_exist_and_are_tidy(first_run):
    _, folder = first_run
    for f in ("config.json", "cmd.txt", "env.json", "log.txt", "res.txt", "results.csv",
              "summary.png"):
        assert (folder / f).stat().st_size > 0, f
    for ratio in ("1", "20"):
        for flip in ("clean", "uniform"):
            sub = folder / f"scaled_{ratio}" / f"flip-{flip}"
            for f in ("res.txt", "results.csv", "curves.png", "labels.npz"):
                assert (sub / f).stat().st_size > 0, sub / f
    df = pd.read_csv(folder / "scaled_20" / "flip-uniform" / "results.csv")
    assert list(df.columns) == ["ratio", "flip", "rate", "method", "seed", "epoch", "metric", "value"]
    assert sorted(df["method"].unique()) == sorted(METHODS)
    assert set(df["metric"]) == {"dist_train", "dist_clean", "gap", "test_err_pct", "mass_corrupt", "diverged"}
    assert (df[df["metric"] == "diverged"]["value"] == 0).all()
    assert sorted(df["seed"].unique()) == [0, 1] and sorted(df["epoch"].unique()) == [0, 1, 2]
    assert (df[df["metric"] == "gap"]["value"] >= -1e-9).all()  # F(w) >= F(w*) at the exact optimum
    mass = df[(df["metric"] == "mass_corrupt") & (df["method"] == "uniform")]["value"]
    assert mass.round(12).eq(0.1).all()  # uniform sampling puts exactly the noise rate on the corrupted
    root_df = pd.read_csv(folder / "results.csv")
    assert (root_df["epoch"] == 2).all()
    assert len(root_df) == 4 * 2 * 6 * 6  # configurations x seeds x methods x metrics
    res = (folder / "res.txt").read_text()
    assert "clean test error" in res and all(m in res for m in METHODS)
    assert len(job_files(folder)) == 4


def test_same_seed_same_results(first_run):
    root, folder = first_run
    other = root / "Convex-Noise" / "b"
    for rel in ("results.csv", "scaled_20/flip-uniform/results.csv", "scaled_1/flip-clean/results.csv"):
        assert (folder / rel).read_bytes() == (other / rel).read_bytes(), rel


def test_resume_skips_finished_and_redoes_the_rest_identically(first_run):
    root, folder = first_run
    # mark one configuration of run b unfinished: --resume must redo exactly that one
    b = root / "Convex-Noise" / "b"
    assert forget_jobs(b, lambda k: k == {"flip": "uniform", "ratio": 20.0}) == 1
    target = b / "scaled_20" / "flip-uniform" / "results.csv"
    target.unlink()
    proc = run(root, "--name", "b", "--resume")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("skipped (--resume)") == 3
    assert "ratio 20: 2 problems" in proc.stdout  # only the uniform configuration's problems ran
    assert "ratio 1:" not in proc.stdout
    assert target.read_bytes() == (folder / "scaled_20" / "flip-uniform" / "results.csv").read_bytes()
    keys = ["ratio", "flip", "rate", "method", "seed", "epoch", "metric"]
    ra, rb = (pd.read_csv(f / "results.csv").sort_values(keys).reset_index(drop=True) for f in (folder, b))
    pd.testing.assert_frame_equal(ra, rb)  # same rows; the redone job's rows replaced, not duplicated
    assert len(job_files(b)) == 4
    # an existing run without --resume is refused, with one line and status 2
    proc = run(root, "--name", "b")
    assert proc.returncode == 2 and "--resume" in proc.stderr


@pytest.mark.parametrize("bad", [["--rates", "1.0"], ["--rates", "-0.1"], ["--ratios", "0"],
                                 ["--ratios", "2,x"], ["--methods", "uniform,magic"], ["--flips", "pair"],
                                 ["--flips", "rare", "--rates", "0.5", "--rho", "0.1"], ["--batch", "0"]])
def test_bad_input_exits_2_without_a_folder(tmp_path, bad):
    proc = run(tmp_path, "--name", "bad", *bad)
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert not (tmp_path / "Convex-Noise").exists()
