"""DR-IS/memorisation.py: the measurement that chooses the memorisation-matched regime, through
its real CLI on tiny digits runs, and the choice rule on hand-made numbers."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from islab.loader import load_script

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "DR-IS" / "memorisation.py"
mem = load_script(SCRIPT, "dris_memorisation_under_test")

TINY = ["--preset", "digits", "--train-size", "300", "--models", "linear,mlp", "--budgets", "1,3",
        "--weight-decays", "0", "--attacker", "linear", "--attacker-epochs", "2", "--noise", "targeted:0.2",
        "--quiet"]


def cli(*args, root):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, str(SCRIPT), *args, "--results-root", str(root)],
                          capture_output=True, text=True, cwd=ROOT, timeout=300, env=env)


def test_choose_takes_the_cheapest_candidate_that_memorises():
    assert mem.parameters("mlp2x256") == 269_322 and mem.parameters("mlp2x1024") == 1_863_690
    fin = pd.DataFrame({"labels": ["noisy", "noisy", "noisy", "clean"],
                        "model": ["mlp2x256", "mlp2x256", "mlp2x1024", "mlp2x256"],
                        "epochs": [20, 60, 10, 1], "wd": [0.0] * 4,
                        "fit_noisy_corrupt": [0.5, 0.9, 0.85, 0.95], "seconds": [10.0, 600.0, 1.0, 1.0]})
    # 60 x 269,322 = 16.2M < 10 x 1,863,690 = 18.6M: the small model wins whatever the wall time;
    # the failing 20-epoch run and the clean-label baseline never count
    pick = mem.choose(fin, 0.8)
    assert (pick.model, pick.epochs) == ("mlp2x256", 60)
    assert mem.choose(fin, 0.99) is None


def test_cli_records_a_fit_per_epoch_and_a_choice(tmp_path):
    r = cli(*TINY, "--name", "t", root=tmp_path)
    assert r.returncode == 0, r.stderr
    run = tmp_path / "DR-IS" / "memorisation" / "t"
    df = pd.read_csv(run / "results.csv")
    per_epoch = df[(df["metric"] == "fit_noisy_corrupt") & df["epoch"].notna()]
    # one value per epoch of every noisy-label candidate: 2 models x (1 + 3) epochs
    assert len(per_epoch) == 2 * (1 + 3)
    assert per_epoch["value"].between(0, 1).all()
    assert set(df["labels"]) == {"noisy", "clean"}      # the clean-label baselines ran too
    res = (run / "res.txt").read_text()
    assert "criterion: fit flipped >= 80 %" in res and "chosen:" in res
    assert (run / "memorisation.png").stat().st_size > 0
    # --resume skips every finished job: the rows stay the same
    again = cli(*TINY, "--name", "t", "--resume", root=tmp_path)
    assert again.returncode == 0, again.stderr
    assert pd.read_csv(run / "results.csv").equals(df)


def test_bad_inputs_exit_2_without_a_folder(tmp_path):
    for bad in (["--models", "nope"], ["--budgets", "0"], ["--noise", "clean"], ["--criterion", "1.5"]):
        r = cli(*TINY, *bad, "--name", "bad", root=tmp_path)
        assert r.returncode == 2, (bad, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1, (bad, r.stderr)
        assert not (tmp_path / "DR-IS" / "memorisation" / "bad").exists()
