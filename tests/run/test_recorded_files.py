"""Every file a static run records is checksummed (SHA-256) in the job file that wrote it and
verified on read (runs.verified_file): predictions-<config>-full-s<seed>.npz and labels-<config>.npz;
damaged or missing, reading them stops with one line naming the file (never a number computed from
them), and --resume redoes the job.  DR-IS/claims.py's memorisation section reads only the results
of record (results.csv: the full jobs' final fit_noisy_corrupt, fit_true_corrupt, fit_clean), so
a damaged npz never changes the report."""
import shutil
from pathlib import Path

import pytest
from helpers import job_files

from islab import cli, runs
from islab.cli import UsageError
from islab.loader import load_script

ROOT = Path(__file__).resolve().parents[2]


def _load(rel):
    return load_script(ROOT / rel, "rec_" + Path(rel).stem)


static, claims = _load("DR-IS/static.py"), _load("DR-IS/claims.py")


def run_static(root, cache, *extra):
    argv = ["--train-size", "100", "--epochs", "1", "--target", "linear", "--proxies", "linear,mlp",
            "--proxy-epochs", "1", "--snapshot-epoch", "1", "--attacker", "linear", "--seeds", "0", "--quiet",
            "--cache-dir", str(cache), "--device", "cpu", "--noise", "clean,targeted:0.25", "--methods", "full",
            "--results-root", str(root), "--name", "rec", *extra]
    return cli.guarded(static.main, argv, signals=False)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    root = tmp_path_factory.mktemp("recorded")
    assert run_static(root / "res", root / "cache") == 0
    return root, root / "res" / "DR-IS" / "static" / "rec"


def _copy(reference, tmp_path):
    folder = tmp_path / "res" / "DR-IS" / "static" / "rec"
    shutil.copytree(reference[1], folder)
    return folder


def memorisation(folder):
    return claims.memorisation(claims.Study("digits", lambda preset, stage, script: [folder], folder.parent))


def test_the_full_jobs_record_their_predictions_and_labels(reference):
    folder = reference[1]
    recorded = {name for p in job_files(folder) for name in runs.json.loads(p.read_text())["files"]}
    assert {"predictions-clean-full-s0.npz", "labels-clean.npz", "predictions-targeted0.25-full-s0.npz",
            "labels-targeted0.25.npz"} <= recorded
    assert runs.verified_file(folder, "predictions-clean-full-s0.npz") == folder / "predictions-clean-full-s0.npz"
    assert runs.verified_file(folder, "not-recorded.npz") is None
    text = memorisation(folder)
    # from results.csv: the fit of the flipped labels is a number; no memorisation study in this root
    assert "predicts the flipped label for " in text and "(not recorded)" not in text
    assert text.endswith("predicts the flipped label for (not measured).")


@pytest.mark.parametrize("damage", ["cut", "other seed's bytes", "deleted"])
@pytest.mark.parametrize("name", ["predictions-clean-full-s0.npz", "labels-targeted0.25.npz"])
def test_a_damaged_recorded_file_is_detected_never_trusted(reference, tmp_path, name, damage):
    folder = _copy(reference, tmp_path)
    f = folder / name
    if damage == "cut":
        f.write_bytes(f.read_bytes()[:100])
    elif damage == "deleted":
        f.unlink()
    else:   # a valid npz with other numbers: only the checksum tells
        runs.atomic_save_npz(f, train_pred=runs.np.zeros(100, dtype=runs.np.int64))
    with pytest.raises(UsageError, match=name):
        runs.verified_file(folder, name)
    assert memorisation(folder) == memorisation(reference[1])   # the report reads results.csv only
    # --resume sees the job's file changed, runs the job again and records it anew
    assert run_static(tmp_path / "res", reference[0] / "cache", "--resume") == 0
    assert runs.verified_file(folder, name) == f
    assert memorisation(folder) == memorisation(reference[1])
