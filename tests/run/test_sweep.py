"""islab.sweep on a toy sweep (no training): every job runs once, in order, with its prerequisites;
--resume runs none again; a job learnt from the prerequisites runs too; --stage selects what a
process does; the report sees every job."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from islab import cli, launch, sweep


def parse(argv):
    p = cli.make_parser("toy sweep")
    launch.add_args(p)
    p.add_argument("--resume", action="store_true")
    args = p.parse_args(argv)
    args.seed_list, args.quiet = [0], True
    return args


def toy(tmp_path, argv, learnt=False):
    """Two configurations a, b with jobs x, y (and a learnt job z in b); returns (folder, calls)."""
    calls = {"prepare": [], "run": [], "report": [], "after": []}

    def prepare(tag, run, pending):
        calls["prepare"].append((tag, [k["job"] for k in pending]))
        return {"tag": tag, "scale": 10 if tag == "a" else 20}

    def jobs(p):
        out = [sweep.Job({"config": p["tag"], "job": j}, f"[{p['tag']}] {j}", f"{p['tag']}-{j}") for j in "xy"]
        if learnt and p["tag"] == "b":
            out.append(sweep.Job({"config": "b", "job": "z"}, "[b] z", "b-z", planned=False))
        return out

    def run_job(run, p, job, ckpt):
        calls["run"].append((p["tag"], job.key["job"], ckpt))
        return sweep.Outcome([{"metric": "value", "value": p["scale"] + ord(job.key["job"]) - ord("x")}],
                             f"{job.name}: done")

    def report(run, final):
        calls["report"].append((final, len(run.frame())))

    def after(run, p, trained):
        calls["after"].append((p["tag"], trained))

    configs = [sweep.Config(t, [{"config": t, "job": j} for j in "xy"], lambda run, pending, t=t: prepare(t, run, pending),
                            jobs, learns_jobs=learnt and t == "b", after=after) for t in "ab"]
    folder = tmp_path / "toy"
    out = sweep.sweep(__file__, parse(argv), argv, folder, configs, run_job, report)
    return folder, out, calls


def test_every_job_runs_once_with_its_prerequisites_and_the_report_sees_all(tmp_path):
    folder, out, calls = toy(tmp_path, [])
    assert out == folder
    assert calls["prepare"] == [("a", ["x", "y"]), ("b", ["x", "y"])]
    assert [(t, j) for t, j, _ in calls["run"]] == [("a", "x"), ("a", "y"), ("b", "x"), ("b", "y")]
    assert all(ckpt is None for _, _, ckpt in calls["run"])          # no --checkpoint: no state file
    assert calls["after"] == [("a", True), ("b", True)]
    assert calls["report"][-1] == (True, 4) and [f for f, _ in calls["report"]].count(True) == 1
    df = pd.read_csv(folder / "results.csv")
    assert sorted(df["value"]) == [10, 11, 20, 21]
    assert "[a] x: done" in (folder / "log.txt").read_text()


def test_resume_runs_nothing_again_and_says_so_once_per_configuration(tmp_path):
    toy(tmp_path, [])
    folder, _, calls = toy(tmp_path, ["--resume"])
    assert calls["run"] == [] and calls["prepare"] == []             # nothing pending: nothing prepared
    log = (folder / "log.txt").read_text()
    assert log.count("[a] 2 finished jobs skipped (--resume)") == 1
    assert log.count("[b] 2 finished jobs skipped (--resume)") == 1
    assert calls["report"] == [(True, 4)]


def test_a_learnt_job_runs_and_the_checkpoint_file_is_named_for_its_job(tmp_path):
    folder, _, calls = toy(tmp_path, ["--checkpoint"], learnt=True)
    assert [(t, j) for t, j, _ in calls["run"]][-1] == ("b", "z")
    ckpt = calls["run"][-1][2]
    assert ckpt is not None and ckpt.key["job"] == "b-z" and Path(ckpt) == folder / "checkpoints" / "b-z.pt"
    assert len(pd.read_csv(folder / "results.csv")) == 5


def test_stage_prepare_prepares_and_trains_nothing(tmp_path):
    folder, _, calls = toy(tmp_path, ["--stage", "prepare"])
    assert calls["prepare"] == [("a", ["x", "y"]), ("b", ["x", "y"])] and calls["run"] == []
    assert calls["report"] == []


def test_dry_run_creates_no_folder(tmp_path, capsys):
    folder, out, calls = toy(tmp_path, ["--dry-run"])
    assert not folder.exists() and calls["run"] == [] and out == 0
    assert "4" in capsys.readouterr().out                             # the job count is listed
