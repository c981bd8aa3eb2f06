"""DL-correlation/IS_01_corelations.py: helpers with known answers, the trained path on tiny
digits (noise, early snapshots, resume), the pretrained path offline with a fake checkpoint
saved under the exact released file name, and one-line exit-2 errors."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats

from islab.loader import load_script

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "DL-correlation" / "IS_01_corelations.py"
RESNET20_FILE = "cifar10_resnet20-4118986f.pt"          # the released file name (chenyaofo/pytorch-cifar-models)
SHUFFLE_FILE = "cifar10_shufflenetv2_x0_5-1308b4e9.pt"


dlc = load_script(SCRIPT, "is_01_corelations")


def cli(*args, env_extra=None):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg", **(env_extra or {})}
    return subprocess.run([sys.executable, str(SCRIPT), *args], cwd=ROOT, capture_output=True, text=True,
                          env=env, timeout=300)


# ---------------------------------------------------------------- known answers


def test_top_set_jaccard_and_margin_orientation():
    assert dlc.top_set(np.array([0.1, 0.9, 0.5, 0.9]), 0.5).tolist() == [1, 3]   # ties: lower id first
    assert dlc.jaccard([1, 2, 3], [2, 3, 4]) == pytest.approx(0.5)
    # hardest by margin = LOWEST margin
    assert dlc.top_set(dlc.hardness("margin", [2.0, -1.0, 0.5, 3.0]), 0.25).tolist() == [1]
    assert dlc.top_set(dlc.hardness("loss", [2.0, -1.0, 0.5, 3.0]), 0.25).tolist() == [3]
    assert dlc.chance_jaccard(0.1) == pytest.approx(0.1 / 1.9)
    a = np.array([3.0, 1.0, 2.0, 5.0, 4.0])
    same, flipped = dlc.compare(a, a, 0.4), dlc.compare(a, -a, 0.4)
    assert same == pytest.approx({"spearman": 1.0, "kendall": 1.0, "pearson": 1.0, "jaccard": 1.0})
    assert flipped["spearman"] == pytest.approx(-1.0) and flipped["kendall"] == pytest.approx(-1.0)
    assert flipped["jaccard"] == 0.0                       # top-2 {3, 4} vs {1, 2}
    b = np.array([1.0, 2.0, 3.0, 5.0, 4.0])                # one swap of five: tau = (9 - 1) / 10
    assert dlc.compare(a, b, 0.4)["kendall"] == pytest.approx(stats.kendalltau(a, b)[0])


# ---------------------------------------------------------------- trained path


def test_trained_digits_noise_early_and_resume(tmp_path):
    args = ["--train-size", "200", "--epochs", "2", "--models", "linear,mlp", "--seeds", "0,1",
            "--noise-kind", "uniform", "--noise-rate", "0.2", "--early-epochs", "1",
            "--results-root", str(tmp_path), "--cache-dir", str(tmp_path / "cache"), "--name", "t"]
    r = cli(*args)
    assert r.returncode == 0, r.stderr[-2000:]
    run = tmp_path / "DL-correlation" / "t"
    for f in ("res.txt", "results.csv", "config.json", "labels-uniform0.2.npz",
              "scores-linear-s0.npz", "scores-mlp-s1.npz", "heat.png",
              "scatter-loss.png", "early.png", "scores-s1.csv"):
        assert (run / f).is_file(), f
    table = pd.read_csv(run / "scores-s0.csv")
    np.testing.assert_allclose(table["loss__linear"], np.load(run / "scores-linear-s0.npz")["loss"], rtol=1e-8)
    assert table["corrupted"].sum() == 40
    df = pd.read_csv(run / "results.csv")
    pairs = df[(df.job == "pairs") & (df.seed == 0)]

    # the stored correlations are those of the saved per-example arrays (target = last model, mlp)
    lin, mlp = np.load(run / "scores-linear-s0.npz"), np.load(run / "scores-mlp-s0.npz")
    labels = np.load(run / "labels-uniform0.2.npz")
    assert labels["corrupt"].sum() == 40 and (labels["noisy"] != labels["clean"]).sum() == 40

    def value(score, measure, a="linear", b="mlp", frame=pairs):
        v = frame[(frame.score == score) & (frame.measure == measure) & (frame.model_a == a)
                  & (frame.model_b == b)]
        assert len(v) == 1, (score, measure, a, b)
        return float(v.value.iloc[0])

    assert value("loss", "spearman") == pytest.approx(stats.spearmanr(lin["loss"], mlp["loss"])[0])
    assert value("loss", "spearman", "mlp", "linear") == value("loss", "spearman")   # both orders stored
    clean = ~labels["corrupt"]
    assert value("loss", "spearman_clean") == pytest.approx(
        stats.spearmanr(lin["loss"][clean], mlp["loss"][clean])[0])
    assert value("el2n", "kendall") == pytest.approx(stats.kendalltau(lin["el2n"], mlp["el2n"])[0])
    k = 20  # top-q 0.1 of 200
    top = lambda h: set(np.argsort(-h, kind="stable")[:k].tolist())  # noqa: E731
    ja, jb = top(-lin["margin"]), top(-mlp["margin"])                # lowest margin = hardest
    assert value("margin", "jaccard") == pytest.approx(len(ja & jb) / len(ja | jb))
    # early snapshots: the target's own final point is 1, a proxy's final point is its pair value
    assert value("loss", "early_spearman", "mlp", "mlp", pairs[pairs.epoch == 2]) == 1.0
    assert value("loss", "early_spearman", "linear", "mlp", pairs[pairs.epoch == 2]) == pytest.approx(
        value("loss", "spearman"))
    assert value("loss", "early_spearman", "linear", "mlp", pairs[pairs.epoch == 1]) == pytest.approx(
        stats.spearmanr(lin["loss_ep1"], mlp["loss"])[0])
    # noise detection: AUROC of the loss against the saved corruption mask
    from sklearn.metrics import roc_auc_score

    det = df[(df.job == "model") & (df.seed == 0) & (df.model_a == "linear") & (df.measure == "auroc")
             & (df.score == "loss") & (df.epoch == 2)]
    assert float(det.value.iloc[0]) == pytest.approx(roc_auc_score(labels["corrupt"], lin["loss"]))
    res = (run / "res.txt").read_text()
    assert "detecting the corrupted" in res and "proxy x epoch" in res and "spearman matrix, loss" in res

    # --resume: every (model, seed) job is reloaded, nothing retrained, same numbers
    r2 = cli(*args, "--resume", "--no-plots")
    assert r2.returncode == 0, r2.stderr[-2000:]
    assert r2.stdout.count("reloaded from scores-") == 4 and "trained test acc" not in r2.stdout
    df2 = pd.read_csv(run / "results.csv")
    assert len(df2) == len(df)
    assert np.allclose(df2.sort_values(list(df.columns[:4])).value.to_numpy(dtype=float),
                       df.sort_values(list(df.columns[:4])).value.to_numpy(dtype=float), equal_nan=True)


# ---------------------------------------------------------------- pretrained path (offline)


def test_pretrained_path_loads_local_released_file(tmp_path):
    from islab.data import load_dataset
    from islab.models import build_model
    from islab.train import TrainConfig, per_example_stats

    weights = tmp_path / "weights"
    weights.mkdir()
    torch.manual_seed(123)
    fake = build_model("resnet20", 10, (3, 32, 32)).eval()
    torch.save(fake.state_dict(), weights / RESNET20_FILE)
    torch.save(build_model("shufflenetv2_x0_5", 10, (3, 32, 32)).state_dict(), weights / SHUFFLE_FILE)
    r = cli("--dataset", "fake_cifar", "--train-size", "64", "--pretrained", "--weights-dir", str(weights),
            "--models", "resnet20,shufflenetv2_x0_5", "--split", "test", "--device", "cpu",
            "--results-root", str(tmp_path / "res"), "--name", "pt", "--no-plots")
    assert r.returncode == 0, r.stderr[-2000:]
    run = tmp_path / "res" / "DL-correlation" / "pt"
    got = np.load(run / "scores-resnet20-s0.npz")["loss"]
    ds = load_dataset("fake_cifar", train_size=64)
    want = per_example_stats(fake, ds, ds.test.x, ds.test.y, TrainConfig())["loss"]
    assert got.shape == (len(ds.test),)
    assert np.allclose(got, want, rtol=1e-4, atol=1e-5)          # the saved weights were the ones used
    fresh = build_model("resnet20", 10, (3, 32, 32))
    other = per_example_stats(fresh, ds, ds.test.x, ds.test.y, TrainConfig())
    assert not np.allclose(got, other["loss"], rtol=1e-4, atol=1e-5)  # ... and a fresh init would differ
    df = pd.read_csv(run / "results.csv")
    assert set(df[df.job == "pairs"].measure) == {"spearman", "kendall", "pearson", "jaccard"}


def one_line_exit_2(capsys, argv):
    with pytest.raises(SystemExit) as e:
        dlc.main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def test_missing_weights_exit_2_naming_the_file(tmp_path, capsys, monkeypatch):
    empty = tmp_path / "empty"
    empty.mkdir()
    base = ["--dataset", "fake_cifar", "--train-size", "32", "--pretrained", "--models", "resnet20,resnet32",
            "--device", "cpu", "--results-root", str(tmp_path / "res")]
    assert RESNET20_FILE in one_line_exit_2(capsys, [*base, "--weights-dir", str(empty)])
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))   # an empty hub cache
    line = one_line_exit_2(capsys, base)
    assert RESNET20_FILE in line and "hub" in line
    assert not (tmp_path / "res").exists()


@pytest.mark.parametrize("argv", [
    ["--noise-kind", "uniform", "--split", "test"],          # noise lives on the training set
    ["--top-q", "0"],                                        # fraction outside (0, 1]
    ["--early-epochs", "6", "--epochs", "6"],                # snapshots must precede the final epoch
    ["--models", "linear,nope"],                             # unknown model
    ["--models", "linear"],                                  # nothing to compare
    ["--noise-rate", "0.1"],                                 # a rate without a kind
    ["--pretrained", "--dataset", "digits"],                 # no zoo for 1x8x8 digits
])
def test_bad_inputs_exit_2_one_line_no_folder(tmp_path, capsys, argv):
    one_line_exit_2(capsys, [*argv, "--results-root", str(tmp_path / "res")])
    assert not (tmp_path / "res").exists()
