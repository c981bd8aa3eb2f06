"""DR-IS/food101.py through its real CLI on the GENERATED stand-in (--fake: a few classes of tiny
images, untrained networks, no download); islab/features.py's pieces are tests/unit/test_features.py."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "DR-IS" / "food101.py"
TINY = ["--fake", "--fake-classes", "3", "--fake-per-class", "10", "--image-size", "32",
        "--target-arch", "resnet18", "--epochs", "1", "--seeds", "0", "--alpha", "0.5",
        "--probe-epochs", "2", "--probe-snapshot", "1", "--noise", "clean,targeted:0.2", "--quiet"]


def cli(*args, root, env=None):
    return subprocess.run([sys.executable, str(SCRIPT), *args, "--results-root", str(root)],
                          capture_output=True, text=True, cwd=ROOT, timeout=300, env=env)


def test_cli_fake_smoke_resume_and_bad_inputs(tmp_path):
    root, cache = tmp_path / "res", tmp_path / "cache"
    args = [*TINY, "--cache-dir", str(cache), "--name", "t"]
    r = cli(*args, root=root)
    assert r.returncode == 0, r.stderr[-2000:]
    run = root / "DR-IS" / "food101" / "t"
    for f in ("res.txt", "results.csv", "config.json", "accuracy.png", "scores-targeted0.2.npz",
              "labels-clean.npz"):
        assert (run / f).exists(), f
    df = pd.read_csv(run / "results.csv")
    fin = df[df["epoch"].isna()]
    assert set(fin["method"]) == {"random", "dris"} and set(fin["config"]) == {"clean", "targeted0.2"}
    cis = fin[(fin.metric == "corruption_in_subset") & (fin.config == "targeted0.2")]["value"]
    assert len(cis) == 2 and cis.between(0, 1).all()
    assert np.isclose(fin[(fin.metric == "kept_fraction")]["value"], 0.5).all()
    assert "FAKE GENERATED STAND-IN" in (run / "res.txt").read_text()
    assert len(list(cache.glob("features-fake_food101-*.npz"))) == 3      # one cache file per backbone

    r2 = cli(*args, "--resume", root=root)
    assert r2.returncode == 0, r2.stderr[-2000:]
    log = (run / "log.txt").read_text()
    assert log.count("done, skipped (--resume)") == 4 and "features resnet18: cached" in log

    # real mode: data present (the fake folder) but no weights in an empty torch hub -> exit 2, one line
    env = {**os.environ, "TORCH_HOME": str(tmp_path / "torch_home")}
    bad_runs = [(["--data-dir", str(tmp_path / "nowhere")], "food-101"),
                (["--data-dir", str(cache / "fake-food101")], "resnet18-f37072fd.pth"),
                (["--fake", "--backbones", "vgg"], "backbone")]
    for bad, needle in bad_runs:
        r = cli(*bad, "--cache-dir", str(cache), "--name", "bad", root=root, env=env)
        assert r.returncode == 2, (bad, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1 and needle in r.stderr, r.stderr
        assert not (root / "DR-IS" / "food101" / "bad").exists()
