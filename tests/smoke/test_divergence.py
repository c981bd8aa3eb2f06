"""Divergence is a result: a run, a proxy or the attacker that diverges (forced here with a
huge step size) is recorded as diverged and reported in res.txt, and the sweep carries on.
Every script runs through its CLI entry point in this process (cli.guarded)."""
from pathlib import Path

import pandas as pd
import pytest

from islab import cli
from islab.loader import load_script

ROOT = Path(__file__).resolve().parents[2]
DL = ["--train-size", "100", "--epochs", "1", "--target", "linear", "--proxies", "linear,mlp", "--proxy-epochs",
      "1", "--snapshot-epoch", "1", "--attacker", "linear", "--seeds", "0", "--quiet", "--device", "cpu",
      "--lr", "1e38"]
# diagnostics.py trains no target: no --epochs, --target, --seeds
DIAG = [a for i, a in enumerate(DL) if a not in ("--epochs", "--target", "--seeds")
        and DL[i - 1] not in ("--epochs", "--target", "--seeds")]


def _load(rel):
    """A fresh module per case (each case runs main() with its own huge step size)."""
    return load_script(ROOT / rel, "diverge_" + rel.replace("/", "_")[:-3].replace("-", "_"), fresh=True)


CASES = {
    # name: (script, arguments, family folder, what res.txt must say)
    "DL-noise, every run diverged": ("DL-noise/is.py", [*DL, "--rates", "0", "--strategies", "baseline"],
                                     "DL-noise", "DIVERGED"),
    "DL-noise, proxies diverged": ("DL-noise/is.py", [*DL, "--rates", "0,0.2"], "DL-noise",
                                   "proxies/attacker diverged: not trained"),
    "static, proxies and attacker diverged": ("DR-IS/static.py", [*DL, "--noise", "clean,targeted:0.2", "--methods",
                                                                  "random,dris,full"], "DR-IS/static",
                                              "DIVERGED before training"),
    "online, proxies diverged": ("DR-IS/online.py", [*DL, "--noise", "clean", "--methods", "uniform,dris",
                                                     "--irreducible-model", "linear"], "DR-IS/online", "diverged"),
    "diagnostics, proxies diverged": ("DR-IS/diagnostics.py", [*DIAG, "--noise", "clean", "--k-values", "2"],
                                      "DR-IS/diagnostics", "DIVERGED"),
    "food101, probes diverged": ("DR-IS/food101.py", ["--fake", "--fake-classes", "2", "--fake-per-class", "4",
                                                      "--image-size", "32", "--target-arch", "resnet18", "--epochs",
                                                      "1", "--seeds", "0", "--methods", "random,dris", "--noise",
                                                      "clean", "--probe-lr", "1e38", "--lr", "1e38", "--quiet",
                                                      "--device", "cpu"], "DR-IS/food101", "DIVERGED"),
    "DL-correlation, every model diverged": ("DL-correlation/IS_01_corelations.py",
                                             [*DL[:4], "--models", "linear,mlp", "--seeds", "0", "--early-epochs",
                                              "none", "--lr", "1e38", "--quiet", "--device", "cpu"],
                                             "DL-correlation", "diverged"),
    "Convex-Noise, step size overflows": ("Convex-Noise/IS-noise.py", ["--quick", "--t0", "1e-308", "--safe-step",
                                                                        "0"], "Convex-Noise", "diverged]"),
    "DR-IS synthetic, step size overflows": ("DR-IS/synthetic.py", ["--quick", "--t0", "1e-308", "--safe-step", "0",
                                                                     "--noise", "clean,uniform:0.1"],
                                             "DR-IS/synthetic", "diverged]"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_divergence_is_recorded_reported_and_survived(case, tmp_path, capfd):
    script, argv, family, needle = CASES[case]
    mod = _load(script)
    args = [*argv, "--results-root", str(tmp_path), "--name", "d"]
    if "--quick" not in argv:
        args += ["--cache-dir", str(tmp_path / "cache")]
    status = cli.guarded(mod.main, args, signals=False)
    err = capfd.readouterr().err
    assert status == 0 and "Traceback" not in err, err[-3000:]
    folder = tmp_path / family / "d"
    res = (folder / "res.txt").read_text()
    assert needle in res, res[-3000:]
    df = pd.read_csv(folder / "results.csv")
    col = "measure" if "measure" in df else "metric"
    div = df[df[col] == "diverged"]["value"]
    assert (div == 1).any()
    n_jobs = len(list((folder / "jobs").glob("*.json")))
    print(f"divergence {case!r}: status {status}, {n_jobs} jobs recorded, {int((div == 1).sum())} diverged "
          f"rows, res.txt says {needle!r}")
    # a resume finds every job finished: nothing is lost, nothing retrained
    assert cli.guarded(mod.main, [*args, "--resume"], signals=False) == 0
    assert len(list((folder / "jobs").glob("*.json"))) == n_jobs
