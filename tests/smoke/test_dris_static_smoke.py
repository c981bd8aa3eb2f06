"""DR-IS/static.py and DR-IS/ablations.py: known-answer checks of the selection pieces, and
smoke runs through the real CLI on a tiny digits setting (linear models, 1-2 epochs)."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from islab.loader import load_script

ROOT = Path(__file__).resolve().parents[2]
STATIC = ROOT / "DR-IS" / "static.py"
ABLATIONS = ROOT / "DR-IS" / "ablations.py"


static = load_script(STATIC, "dris_static_under_test")

TINY = ["--train-size", "200", "--epochs", "1", "--target", "linear", "--proxies", "linear,mlp",
        "--proxy-epochs", "2", "--snapshot-epoch", "1", "--attacker", "linear", "--attacker-epochs", "2",
        "--seeds", "0,1", "--noise", "clean,targeted:0.2", "--methods", "random,el2n,aum,dris,full",
        "--quiet"]


def cli(script, *args, root):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}   # tiny models: one thread is fastest on a shared CPU
    return subprocess.run([sys.executable, str(script), *args, "--results-root", str(root)],
                          capture_output=True, text=True, cwd=ROOT, timeout=300, env=env)


# ---------------------------------------------------------------- known answers


def test_tsr_scores_hand_computed():
    # run 0: example 3 is the threshold sample (AUM -1 -> threshold -1);
    # run 1: example 2 is (AUM -2 -> threshold -2).  Margins = AUM - threshold.
    aum = np.array([[-3.0, 2.0, 3.0, -1.0],
                    [0.0, 5.0, -2.0, 4.0]])
    thr = np.array([[False, False, False, True],
                    [False, False, True, False]])
    margin, flagged = static.tsr_scores(aum, thr, percentile=99)
    # id0: run0 -3-(-1) = -2 (flagged), run1 0-(-2) = 2 -> mean 0; id1: (3 + 7)/2; id2: 4 (run 0
    # only); id3: 6 (run 1 only)
    np.testing.assert_allclose(margin, [0.0, 5.0, 4.0, 6.0])
    assert flagged.tolist() == [True, False, False, False]


def test_select_top_fraction_random_and_full():
    score = np.array([0.1, 0.9, 0.5, 0.7])
    assert static.select("dris", score, 4, 0.5, seed=0).tolist() == [1, 3]
    assert static.select("full", None, 4, 0.3, seed=0).tolist() == [0, 1, 2, 3]
    a = static.select("random", None, 1000, 0.3, seed=0)
    b = static.select("random", None, 1000, 0.3, seed=0)
    c = static.select("random", None, 1000, 0.3, seed=1)
    assert len(a) == 300 and len(np.unique(a)) == 300
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    # beta = 0.5: half of the kept ids are the top scores, half uniform from the rest
    s = np.arange(100, dtype=float)
    mixed = static.select("aum", s, 100, 0.2, seed=3, beta=0.5)
    assert len(mixed) == 20 and set(range(90, 100)) <= set(mixed.tolist())


def test_method_scores_from_a_two_proxy_ensemble():
    from islab.proxies import STAT_NAMES, ProxyEnsemble

    stats = {s: np.zeros((2, 3)) for s in STAT_NAMES}
    stats["loss"] = np.array([[1.0, 2.0, 3.0], [3.0, 2.0, 1.0]])   # ranks [0, .5, 1] and [1, .5, 0]
    stats["aum"] = np.array([[1.0, 2.0, 3.0], [3.0, 4.0, 5.0]])
    stats["gradnorm"] = np.array([[0.0, 1.0, 2.0], [0.0, 1.0, 2.0]])
    ens = ProxyEnsemble(["a", "b"], [0, 1], stats, np.array([50.0, 50.0]))
    out = static.method_scores(ens, ["dris", "consensus", "aum"], lambdas=[1.0])
    np.testing.assert_allclose(out["dris"], [0.25, 0.0, 0.25])          # 1/K variance of the ranks
    np.testing.assert_allclose(out["consensus"], [0.5, 0.5, 0.5])
    np.testing.assert_allclose(out["aum"], [2.0, 3.0, 4.0])
    np.testing.assert_allclose(out["hybrid1"], [0.0, 0.5, 1.0])        # lambda 1 = rank of gradnorm


def test_paired_p_known_value_and_nan():
    # the table's "p vs random" is islab.theory.paired_ttest's p (the one paired t-test; static.paired_p is gone)
    from islab import theory

    assert not hasattr(static, "paired_p")
    # differences 1, 2, 3: t = 2 / (1 / sqrt(3)) = 3.464 with 2 dof -> two-sided p = 0.0742
    assert theory.paired_ttest([1.0, 2.0, 3.0], [0.0, 0.0, 0.0])[1] == pytest.approx(0.0742, abs=1e-4)
    assert np.isnan(theory.paired_ttest([1.0], [0.0])[1])


# ---------------------------------------------------------------- the real CLI


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("static")
    args = TINY + ["--cache-dir", str(root / "cache"), "--name", "tiny"]
    r = cli(STATIC, *args, "--export-probs", root=root)
    assert r.returncode == 0, r.stderr[-2000:]
    # --quiet in a pipe: the run folder is still the last line
    assert r.stdout.splitlines()[-1] == f"run folder: {root / 'DR-IS' / 'static' / 'tiny'}"
    return root, args


def test_outputs_are_complete_and_consistent(tiny_run):
    root, _ = tiny_run
    run = root / "DR-IS" / "static" / "tiny"
    for f in ("res.txt", "results.csv", "config.json", "cmd.txt", "env.json", "accuracy.png",
              "corruption.png", "scores-targeted0.2.npz", "subsets-targeted0.2.npz",
              "labels-targeted0.2.npz", "jobs"):
        assert (run / f).exists(), f
    res = (run / "res.txt").read_text()
    assert "== clean" in res and "== targeted0.2" in res and "p vs random" in res
    df = pd.read_csv(run / "results.csv")
    fin = df[df["epoch"].isna() & (df["metric"] == "test_acc")]
    # 2 configurations x (4 alpha methods + full) x 2 seeds
    assert len(fin) == 2 * 5 * 2
    # saved arrays agree with the table: corruption in the kept subset of dris, from the files
    scores = np.load(run / "scores-targeted0.2.npz")
    subsets = np.load(run / "subsets-targeted0.2.npz")
    mask = np.load(run / "labels-targeted0.2.npz")["corrupt"]
    assert np.array_equal(scores["index"], np.arange(200)) and len(scores["dris"]) == 200
    assert mask.sum() == 40
    ids = subsets["dris-a0.3-s0"]
    assert len(ids) == 60 and set(ids) == set(np.argsort(-scores["dris"], kind="stable")[:60])
    row = df[(df["config"] == "targeted0.2") & (df["method"] == "dris") & (df["seed"] == 0)
             & (df["metric"] == "corruption_in_subset")]
    assert row["value"].iloc[0] == pytest.approx(mask[ids].mean())
    # random has no score: its AUROC is NaN; a score method's is a number
    auroc = df[(df["config"] == "targeted0.2") & (df["metric"] == "auroc")].groupby("method")["value"].first()
    assert np.isnan(auroc["random"]) and 0.0 <= auroc["aum"] <= 1.0
    # the per-example CSV (islab.export) holds the same scores, keyed by example id
    table = pd.read_csv(run / "scores-targeted0.2.csv")
    assert table["example_id"].tolist() == list(range(200)) and table["corrupted"].sum() == 40
    np.testing.assert_allclose(table["dris"], scores["dris"], rtol=1e-8)
    assert {"loss__linear_s1000", "aum__mlp_s1001", "clean_label", "noisy_label"} <= set(table)
    # --train-size 200: dataset_id maps each example back to its index in the full digits split
    from islab.data import load_dataset
    from islab.export import load_probs, load_probs_ids

    original = load_dataset("digits", train_size=200).train_ids.tolist()
    assert table["dataset_id"].tolist() == original
    # --export-probs: each job's kept subset as the distribution it trains on, with both ids
    epochs, p = load_probs(run / "probs-targeted0.2-dris-a0.3-s0.npz")
    assert epochs.tolist() == [0] and np.flatnonzero(p[0]).tolist() == sorted(ids)
    np.testing.assert_allclose(p[0][ids], 1 / 60, rtol=1e-6)
    assert [v.tolist() for v in load_probs_ids(run / "probs-targeted0.2-dris-a0.3-s0.npz")] == [
        list(range(200)), original]


def test_resume_skips_finished_jobs(tiny_run):
    root, args = tiny_run
    run = root / "DR-IS" / "static" / "tiny"
    before = len(pd.read_csv(run / "results.csv"))
    r = cli(STATIC, *args, "--resume", root=root)
    assert r.returncode == 0, r.stderr[-2000:]
    log = (run / "log.txt").read_text()
    # one line per configuration: (4 alpha methods + full) x 2 seeds
    assert log.count("finished jobs skipped (--resume)") == 2 and log.count("10 finished jobs skipped") == 2
    assert len(pd.read_csv(run / "results.csv")) == before


def test_rerun_without_resume_is_refused(tiny_run, capsys):
    root, args = tiny_run
    with pytest.raises(SystemExit) as e:
        static.main(args + ["--results-root", str(root)])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--resume" in err[0]


@pytest.mark.parametrize("bad", [["--methods", "random,nope"], ["--alpha", "0"]])
def test_bad_input_exits_2_with_one_line_and_no_folder(tmp_path, bad):
    r = cli(STATIC, *TINY, *bad, root=tmp_path)
    assert r.returncode == 2, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("bad", [["--methods", "hybrid"], ["--noise", "targeted:1.5"],
                                 ["--noise", "gauss:0.1"], ["--aum-threshold", "120"],
                                 ["--methods", "dris", "--proxies", "linear"]])
def test_more_bad_inputs_in_process(bad, capsys):
    with pytest.raises(SystemExit) as e:
        static.parse_args(TINY + bad)
    assert e.value.code == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_k_sweep_composes_static_and_reuses_the_proxy_cache(tmp_path):
    cache = tmp_path / "cache"
    common = ["--train-size", "200", "--epochs", "1", "--target", "linear", "--proxy-epochs", "1",
              "--snapshot-epoch", "1", "--seeds", "0", "--noise", "uniform:0.2", "--methods", "random,dris",
              "--proxy-pool", "linear,mlp,linear", "--cache-dir", str(cache), "--quiet", "--name", "k"]
    r = cli(ABLATIONS, "--sweep", "K", "--values", "2,3", *common, root=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    sweep = tmp_path / "DR-IS" / "ablations" / "k"
    text = (sweep / "summary.txt").read_text()
    assert "sweep K" in text and "dris" in text and "== uniform0.2" in text
    assert (sweep / "K2" / "res.txt").exists() and (sweep / "K3" / "res.txt").exists()
    # K3 trains only its third proxy: the first two come from K2's cache files
    assert len(list(cache.glob("*.npz"))) == 3
    assert len(list((sweep / "jobs").glob("*.json"))) == 2 and (sweep / "summary_acc.png").exists()
    r = cli(ABLATIONS, "--sweep", "K", "--values", "2", "--proxies", "linear,mlp", root=tmp_path / "bad")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "bad").exists()
