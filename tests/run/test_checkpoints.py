"""Damaged training checkpoints (islab/checkpoint.py): a checkpoint of another job, a truncated
one and garbage are detected, moved aside as <name>.corrupt-<timestamp>-<pid> with a warning
line naming the file, and the job restarts from epoch 0 with the numbers of a fresh run -- once
through islab.train directly, once through DR-IS/static.py --resume --checkpoint."""
import json
import shutil
from pathlib import Path

import pytest
from helpers import forget_jobs, job_files

from islab import cli
from islab.checkpoint import CheckpointFile
from islab.data import load_dataset
from islab.loader import load_script
from islab.train import TrainConfig, train

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def ds():
    return load_dataset("digits")


CFG = TrainConfig(epochs=2, batch_size=64, lr=0.05)


def losses(res):
    return [(h["train_loss"], h["test_acc"]) for h in res.history]


def _cut(path):
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])


DAMAGE = {
    "truncated": _cut,
    "garbage": lambda p: p.write_bytes(bytes(range(256)) * 64),
    "empty": lambda p: p.write_bytes(b""),
    "one payload byte flipped": lambda p: p.write_bytes(p.read_bytes()[:-10] + b"X" + p.read_bytes()[-9:]),
}


@pytest.mark.parametrize("case", sorted(DAMAGE))
def test_a_damaged_checkpoint_is_moved_aside_and_the_run_starts_afresh(ds, tmp_path, case, capfd):
    y = ds.train.y.numpy()
    fresh = train("mlp", ds, y, CFG, seed=0)
    ck = tmp_path / "job.pt"
    train("mlp", ds, y, TrainConfig(epochs=1, batch_size=64, lr=0.05), seed=0, checkpoint=ck)
    DAMAGE[case](ck)
    capfd.readouterr()
    again = train("mlp", ds, y, CFG, seed=0, checkpoint=ck)
    assert losses(again) == losses(fresh)
    aside = list(tmp_path.glob("job.pt.corrupt-*"))
    assert len(aside) == 1
    err = capfd.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(ck) in err[0] and aside[0].name in err[0]


def test_a_checkpoint_of_other_inputs_is_never_resumed(ds, tmp_path, capfd):
    """Same path, other labels (or seed): the old code resumed it and reported its numbers."""
    y = ds.train.y.numpy()
    ck = tmp_path / "job.pt"
    train("mlp", ds, (y + 1) % 10, CFG, seed=0, checkpoint=ck)      # a finished run of other labels
    fresh = train("mlp", ds, y, CFG, seed=0)
    assert losses(train("mlp", ds, y, CFG, seed=0, checkpoint=ck)) == losses(fresh)
    assert "other inputs" in capfd.readouterr().err


def test_a_checkpoint_of_another_job_key_is_never_resumed(ds, tmp_path):
    y = ds.train.y.numpy()
    warned = []
    other = CheckpointFile(tmp_path / "a.pt", key={"job": "a"})
    train("mlp", ds, y, TrainConfig(epochs=1, batch_size=64, lr=0.05), seed=0, checkpoint=other)
    shutil.copy(tmp_path / "a.pt", tmp_path / "b.pt")
    mine = CheckpointFile(tmp_path / "b.pt", key={"job": "b"}, warn=warned.append)
    assert losses(train("mlp", ds, y, CFG, seed=0, checkpoint=mine)) == losses(train("mlp", ds, y, CFG, seed=0))
    assert len(warned) == 1 and "written by another job" in warned[0] and "b.pt" in warned[0]


# ---------------------------------------------------------------- through the real CLI


def _load(rel):
    return load_script(ROOT / rel, "ckpt_" + Path(rel).stem)


static = _load("DR-IS/static.py")


def run_static(root, cache, *extra):
    argv = ["--train-size", "100", "--epochs", "2", "--target", "linear", "--proxies", "linear,mlp",
            "--proxy-epochs", "1", "--snapshot-epoch", "1", "--attacker", "linear", "--seeds", "0", "--quiet",
            "--cache-dir", str(cache), "--device", "cpu", "--noise", "clean", "--methods", "random,full",
            "--alpha", "0.5", "--results-root", str(root), "--name", "ck", "--checkpoint", *extra]
    return cli.guarded(static.main, argv, signals=False)


def _rows(folder, method):
    rec = next(json.loads(p.read_text()) for p in job_files(folder) if json.loads(p.read_text())["key"]["method"] == method)
    return [(r["metric"], r.get("epoch"), r["value"]) for r in rec["rows"] if "second" not in r["metric"]]


@pytest.fixture(scope="module")
def kept(tmp_path_factory, monkeypatch_module):
    """A finished run whose checkpoints were kept (drop_checkpoint disabled): each job's final state."""
    root = tmp_path_factory.mktemp("ckrun")
    monkeypatch_module.setattr(static.launch, "drop_checkpoint", lambda ckpt: None)
    assert run_static(root / "res", root / "cache") == 0
    monkeypatch_module.undo()
    folder = root / "res" / "DR-IS" / "static" / "ck"
    return root, folder


@pytest.fixture(scope="module")
def monkeypatch_module():
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()


CLI_DAMAGE = {
    # the random job's checkpoint replaced by: the full job's checkpoint, half of its own, garbage
    "checkpoint of another job": lambda ck: shutil.copy(ck.parent / "clean-full-a1-s0.pt", ck),
    "truncated checkpoint": _cut,
    "garbage checkpoint": lambda ck: ck.write_bytes(b"\x00garbage" * 999),
}


@pytest.mark.parametrize("case", sorted(CLI_DAMAGE))
def test_resume_moves_a_bad_checkpoint_aside_and_reruns_the_job(kept, case, tmp_path):
    root, ref = kept
    folder = tmp_path / "res" / "DR-IS" / "static" / "ck"
    shutil.copytree(ref, folder)
    ck = folder / "checkpoints" / "clean-random-a0.5-s0.pt"
    assert ck.exists() and (folder / "checkpoints" / "clean-full-a1-s0.pt").exists()
    assert forget_jobs(folder, lambda k: k["method"] == "random") == 1
    CLI_DAMAGE[case](ck)
    assert run_static(tmp_path / "res", root / "cache", "--resume") == 0
    assert _rows(folder, "random") == _rows(ref, "random")       # the numbers of the fresh run
    aside = list((folder / "checkpoints").glob("clean-random-a0.5-s0.pt.corrupt-*"))
    assert len(aside) == 1
    log = (folder / "log.txt").read_text()
    assert f"checkpoint {ck} is unusable" in log and aside[0].name in log
    assert "resuming from checkpoints/clean-random" not in log


# ---------------------------------------------------------------- online jobs (DR-IS/online.py)

online = _load("DR-IS/online.py")


def run_online(root, cache, name, *extra):
    argv = ["--train-size", "100", "--epochs", "2", "--target", "linear", "--proxies", "linear,mlp",
            "--proxy-epochs", "1", "--snapshot-epoch", "1", "--seeds", "0", "--quiet", "--device", "cpu",
            "--noise", "clean", "--methods", "uniform,standard_is,dris", "--cache-dir", str(cache),
            "--results-root", str(root), "--name", name, *extra]
    return cli.guarded(online.main, argv, signals=False)


def _online_rows(folder):
    """Every job's rows but wall-clock seconds, keyed by method."""
    return {key["method"]: [(r["metric"], r.get("epoch"), r["value"]) for r in json.loads(p.read_text())["rows"]
                            if "second" not in r["metric"]] for p, key in job_files(folder).items()}


@pytest.fixture(scope="module")
def online_runs(tmp_path_factory):
    """An uninterrupted run without checkpoints and one with --checkpoint (the old code crashed at
    the end of its first job: 'CheckpointFile' object has no attribute 'unlink')."""
    root = tmp_path_factory.mktemp("online")
    assert run_online(root / "res", root / "cache", "plain") == 0
    assert run_online(root / "res", root / "cache", "ck", "--checkpoint") == 0
    return root, root / "res" / "DR-IS" / "online"


def test_an_online_run_with_checkpoints_is_recorded_like_one_without(online_runs):
    _, base = online_runs
    assert len(job_files(base / "ck")) == 3
    assert _online_rows(base / "ck") == _online_rows(base / "plain")
    assert not list((base / "ck" / "checkpoints").glob("*.pt"))   # each dropped once its job was recorded


def test_an_online_job_killed_after_its_last_checkpoint_resumes_to_the_same_rows(online_runs, tmp_path,
                                                                                 monkeypatch):
    """Killed after the final epoch's checkpoint, before the job file: --resume continues from
    that checkpoint (no epoch left to train) and records the rows of the uninterrupted run,
    the importance-sampling refreshes made before the kill included."""
    root, base = online_runs
    monkeypatch.setattr(online.launch, "drop_checkpoint", lambda ckpt: None)
    assert run_online(tmp_path / "res", root / "cache", "kill", "--checkpoint") == 0
    folder = tmp_path / "res" / "DR-IS" / "online" / "kill"
    assert forget_jobs(folder, lambda k: k["method"] != "uniform") == 2   # as if killed before recording
    assert run_online(tmp_path / "res", root / "cache", "kill", "--checkpoint", "--resume") == 0
    log = (folder / "log.txt").read_text()
    assert "[clean] standard_is seed 0: resuming from checkpoints/clean-standard_is-s0.pt" in log
    assert "[clean] dris seed 0: resuming from checkpoints/clean-dris-s0.pt" in log
    assert _online_rows(folder) == _online_rows(base / "plain")
    csv = [line for line in (folder / "results.csv").read_text().splitlines() if "second" not in line]
    assert csv == [line for line in (base / "plain" / "results.csv").read_text().splitlines() if "second" not in line]
