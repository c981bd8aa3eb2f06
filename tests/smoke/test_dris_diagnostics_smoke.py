"""DR-IS/diagnostics.py: the per-K pieces on a hand-made ensemble, and a smoke run through the
real CLI on a tiny digits setting (mlp proxies, 2 epochs)."""
import argparse
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from islab.loader import load_script

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "DR-IS" / "diagnostics.py"

diag = load_script(SCRIPT, "dris_diagnostics_under_test")

TINY = ["--train-size", "200", "--proxies", "mlp", "--proxy-epochs", "2", "--snapshot-epoch", "1",
        "--attacker", "mlp", "--attacker-epochs", "2", "--k-values", "2,3", "--noise", "clean,targeted:0.2",
        "--bins", "10", "--quiet"]


def cli(*args, root):
    return subprocess.run([sys.executable, str(SCRIPT), *args, "--results-root", str(root)],
                          capture_output=True, text=True, cwd=ROOT, timeout=300)


def test_diagnose_hand_made_ensemble():
    from islab.proxies import STAT_NAMES, ProxyEnsemble

    rng = np.random.default_rng(0)
    n, k = 60, 4
    mask = np.zeros(n, dtype=bool)
    mask[:15] = True
    loss = rng.random((k, n))
    loss[:, :15] += 10.0                       # corrupted: consistently the highest losses
    stats = {s: np.ones((k, n)) for s in STAT_NAMES}
    stats["loss"], stats["gradnorm"] = loss, loss.copy()
    ens = ProxyEnsemble(list("abcd"), [0, 1, 2, 3], stats, np.full(k, 90.0))
    args = argparse.Namespace(k_list=[2, 4], ddof=0, alpha=0.3, tail_fraction=0.1, eta=0.1, delta=0.05,
                              a2_min_spread=0.05, gamma=0.1)
    rows, s_of, last = diag.diagnose(ens, mask, args)
    df = pd.DataFrame(rows)
    val = lambda K, m: df[(df.K == K) & (df.metric == m)]["value"].item()  # noqa: E731
    # Theorem 2: loss-aligned contamination, so loss IS and standard IS put >= eps = 0.25 on it
    assert val(4, "loss_aligned") == 1.0
    assert np.isclose(val(4, "mass_uniform"), 0.25)
    assert val(4, "mass_loss_is") >= 0.25 and val(4, "mass_standard_is") >= 0.25
    # the corrupted ranks are the top 15 in every proxy: s is tiny there, so DR-IS keeps none
    assert val(4, "cis_dris") == 0.0 and val(4, "cis_consensus") == 15 / 18
    assert val(4, "mass_dris") < 0.25 and val(4, "a1_holds") == 1.0
    assert set(s_of) == {2, 4} and s_of[4].shape == (n,)
    assert last["checks"]["K"] == 4


def test_cli_smoke_resume_and_bad_inputs(tmp_path):
    root = tmp_path / "res"
    args = [*TINY, "--cache-dir", str(tmp_path / "cache"), "--name", "t"]
    r = cli(*args, root=root)
    assert r.returncode == 0, r.stderr[-2000:]
    run = root / "DR-IS" / "diagnostics" / "t"
    for f in ("res.txt", "results.csv", "config.json", "cmd.txt", "env.json", "gap.png", "subset.png",
              "mass.png", "hist-clean-K2.png", "hist-targeted0.2-K3.png", "scores-targeted0.2.npz",
              "scores-targeted0.2.csv", "labels-targeted0.2.npz"):
        assert (run / f).exists(), f
    df = pd.read_csv(run / "results.csv")
    assert set(df["config"]) == {"clean", "targeted0.2"} and set(df["K"]) == {2, 3}
    t = df[df["config"] == "targeted0.2"]
    two_r = t[(t.metric == "two_radius") & (t.K == 2)]["value"].item()
    from islab import theory

    assert np.isclose(two_r, 2 * theory.mcdiarmid_radius(2, 200, 0.05))
    assert np.isclose(t[(t.metric == "eps") & (t.K == 3)]["value"].item(), 0.2)
    text = (run / "res.txt").read_text()
    assert "Appendix H verdict (K=3" in text and "Theorem 2 mass on corrupted" in text
    # the alternative gap definitions beside the strict one: in results.csv and the res.txt table
    for m in ("q_boundary_median", "gap_min_tail0.2", "gap_median_tail0.1", "gap_median_tail0.2"):
        assert len(t[(t.metric == m) & (t.K == 3)]) == 1, m
    strict = t[(t.metric == "empirical_gap") & (t.K == 3)]["value"].item()
    assert strict == t[(t.metric == "gap_min_tail0.1") & (t.K == 3)]["value"].item()   # rho 0.1 default
    assert "gap med/0.2" in text and "A1 under the alternative definitions" in text
    z = np.load(run / "scores-targeted0.2.npz")
    assert z["s_K3"].shape == (200,) and z["corrupt"].sum() == 40

    # --resume: both configurations are skipped, nothing is retrained, results unchanged
    r2 = cli(*args, "--resume", root=root)
    assert r2.returncode == 0, r2.stderr[-2000:]
    log = (run / "log.txt").read_text()
    assert log.count("1 finished job skipped (--resume)") == 2
    assert pd.read_csv(run / "results.csv").equals(df)
    assert "Appendix H verdict (K=3" in (run / "res.txt").read_text()

    # bad inputs: exit 2, one stderr line, no run folder
    for bad in (["--k-values", "1,3"], ["--proxies", "nosuchnet"]):
        r = cli(*TINY, *bad, "--name", "bad", root=root)
        assert r.returncode == 2, (bad, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert not (root / "DR-IS" / "diagnostics" / "bad").exists()
