"""DL-noise/is.py and plot.py on a tiny digits setting: the real command line in a subprocess for
the main run, its resume and one bad input; main(argv) in-process for the cheaper checks."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from islab.loader import load_script

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "DL-noise" / "is.py"
PLOT = ROOT / "DL-noise" / "plot.py"
TINY = ["--train-size", "200", "--epochs", "1", "--proxy-epochs", "1", "--snapshot-epoch", "1",
        "--rates", "0,0.1", "--seeds", "0", "--quiet"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}


def load(name):
    """A DL-noise script as a fresh module (for the cheaper in-process checks; each runs main())."""
    return load_script(ROOT / "DL-noise" / name, f"dl_noise_{name[:-3]}", fresh=True)


def run(script, *args):
    return subprocess.run([sys.executable, str(script), *map(str, args)], capture_output=True, text=True,
                          env=ENV, cwd=ROOT, timeout=300)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("dln")
    args = [*TINY, "--results-root", root, "--cache-dir", root / "cache"]
    p = run(SCRIPT, *args)
    assert p.returncode == 0, p.stderr
    return root, args


def test_outputs_and_known_answers(tiny):
    root, _ = tiny
    folder = root / "DL-noise" / "r-b64"  # digits preset: batch 64, default mode and noise kind
    for f in ["res.txt", "results.csv", "scores.csv", "config.json", "cmd.txt", "env.json",
              "labels-clean.npz", "labels-uniform0.1.npz", "scores-uniform0.1.npz", "scores-uniform0.1.csv",
              "accuracy_vs_noise.png", "corrupted_vs_noise.png", "curves_test_acc.png",
              "curves_train_loss.png"]:
        assert (folder / f).is_file(), f
    lab = np.load(folder / "labels-uniform0.1.npz")
    assert lab["corrupt"].sum() == 20  # round(0.1 * 200)
    assert np.all((lab["noisy"] != lab["clean"]) == lab["corrupt"])

    df = pd.read_csv(folder / "results.csv")
    fin = df[df["epoch"].isna()]
    got = fin.pivot_table(index=["rate", "strategy", "seed"], columns="metric", values="value")
    assert len(got) == 2 * 3  # rates x strategies x seeds
    # baseline = shuffled epochs: each epoch is one pass over all 200, so exactly 20 are corrupted
    assert got.loc[(0.1, "baseline", 0), "drawn_corrupt"] == pytest.approx(0.1)
    assert got.loc[(0.0, "ambiguous", 0), "drawn_corrupt"] == 0.0
    # the sampled strategies' logged mass is that of p = smoothed_probs(score, gamma 0.1) on the mask
    sc = np.load(folder / "scores-uniform0.1.npz")
    for strategy, score in (("consensus-high", "consensus"), ("ambiguous", "dris")):   # named as in DR-IS
        s = sc[score]
        p = (s + 0.1 * s.mean()) / (s + 0.1 * s.mean()).sum()
        assert got.loc[(0.1, strategy, 0), "mass_corrupt"] == pytest.approx(p[lab["corrupt"]].sum())
    # one test_acc row per epoch per run
    assert len(df[(df["metric"] == "test_acc") & df["epoch"].notna()]) == 6
    text = (folder / "res.txt").read_text()
    assert "mean +- std" in text and "consensus-high" in text


def test_resume_skips_finished_jobs_and_rerun_without_it_is_refused(tiny, capsys):
    root, args = tiny
    folder = root / "DL-noise" / "r-b64"
    before = (folder / "results.csv").read_text()
    p = run(SCRIPT, *args, "--resume")
    assert p.returncode == 0, p.stderr
    log = (folder / "log.txt").read_text()
    # one line per noise rate: 3 strategies x 1 seed each
    assert log.count("3 finished jobs skipped (--resume)") == 2
    assert (folder / "results.csv").read_text() == before
    assert len(list((folder / "jobs").glob("*.json"))) == 6
    with pytest.raises(SystemExit) as e:  # same folder without --resume: refused, not overwritten
        load("is.py").main([str(a) for a in args])
    assert e.value.code == 2 and len(capsys.readouterr().err.strip().splitlines()) == 1


def test_bad_rate_exits_2_with_one_line_and_no_folder(tmp_path):
    p = run(SCRIPT, *TINY, "--results-root", tmp_path / "res", "--cache-dir", tmp_path / "cache",
            "--rates", "0,1.0")
    assert p.returncode == 2
    assert len(p.stderr.strip().splitlines()) == 1, p.stderr
    assert not (tmp_path / "res").exists()


@pytest.mark.parametrize("bad", [["--strategies", "baseline,greedy"], ["--rates", "0.1,x"],
                                 ["--mode", "greedy"], ["--gamma", "-1"], ["--alpha", "0"]])
def test_other_bad_inputs_exit_2_in_process(tmp_path, capsys, bad):
    with pytest.raises(SystemExit) as e:
        load("is.py").main([*TINY, "--results-root", str(tmp_path / "res"), *bad])
    assert e.value.code == 2 and len(capsys.readouterr().err.strip().splitlines()) == 1
    assert not (tmp_path / "res").exists()


def test_subset_mode_keeps_top_alpha_and_names_the_run(tmp_path):
    load("is.py").main(["--train-size", "200", "--epochs", "1", "--proxy-epochs", "1",
                        "--snapshot-epoch", "1", "--rates", "0.25", "--seeds", "0", "--quiet",
                        "--mode", "subset", "--alpha", "0.5",
                        "--strategies", "baseline,consensus-high", "--results-root", str(tmp_path),
                        "--cache-dir", str(tmp_path / "c")])
    folder = tmp_path / "DL-noise" / "r-b64-subset"
    mask = np.load(folder / "labels-uniform0.25.npz")["corrupt"]
    s = np.load(folder / "scores-uniform0.25.npz")["consensus"]
    top = np.argsort(-s, kind="stable")[:100]  # top half by consensus rank
    fin = pd.read_csv(folder / "results.csv")
    fin = fin[fin["epoch"].isna() & (fin["metric"] == "mass_corrupt")].set_index("strategy")["value"]
    assert fin["consensus-high"] == pytest.approx(mask[top].mean())
    assert 0.0 <= fin["baseline"] <= 1.0


def test_plot_cli(tiny, tmp_path, capsys):
    root, _ = tiny
    plot = load("plot.py")
    plot.main(["--run", str(root / "DL-noise" / "r-b64"), "--out", str(tmp_path)])
    assert sorted(f.name for f in tmp_path.glob("*.png")) == sorted(plot.FIGURES)
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        plot.main([str(tmp_path / "missing")])
    assert e.value.code == 2 and len(capsys.readouterr().err.strip().splitlines()) == 1


def test_epoch_mean_ignores_a_diverged_epoch_without_the_value():
    m = load("is.py")
    hist = [{"drawn_corrupt": 0.2}, {"drawn_corrupt": 0.4}, {"train_loss": float("nan")}]
    assert m.epoch_mean(hist, "drawn_corrupt") == pytest.approx(0.3)
    assert np.isnan(m.epoch_mean([], "drawn_corrupt"))
