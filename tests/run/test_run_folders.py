"""Run folders that can be trusted (islab/runs.py): damaged files are detected and never trusted,
orphan temporary files are removed, a killed worker releases its job, N workers on one folder
train every job exactly once, and Ctrl-C / SIGTERM keep the finished jobs.

The damage table drives Convex-Noise/IS-noise.py --quick in-process (cli.guarded, ~0.5 s per
case); the concurrency and signal tests drive DR-IS/static.py through its real CLI."""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from helpers import job_files, trainings

from islab import cli, runs
from islab.loader import load_script

ROOT = Path(__file__).resolve().parents[2]
CONVEX = ROOT / "Convex-Noise" / "IS-noise.py"
STATIC = ROOT / "DR-IS" / "static.py"
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}


convex_script = load_script(CONVEX, "convex_under_damage")


def convex(root, *args):
    """Convex-Noise --quick in this process: (status, stdout, stderr lines)."""
    return cli.guarded(convex_script.main, ["--quick", "--results-root", str(root), *args], signals=False)


# ---------------------------------------------------------------- the damage table


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    root = tmp_path_factory.mktemp("damage")
    assert convex(root, "--name", "ref") == 0
    return root, root / "Convex-Noise" / "ref"


def _copy(reference, name):
    root, ref = reference
    dst = root / "Convex-Noise" / name
    shutil.copytree(ref, dst)
    (dst / "log.txt").write_text("")   # this case's log only
    return dst


def _cut(path, fraction=0.5):
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * fraction)])


def _first_job(folder, flip="uniform", ratio=20.0):
    return next(p for p, k in job_files(folder).items() if k == {"flip": flip, "ratio": ratio})


def _edit_value(path):
    rec = json.loads(path.read_text())
    rec["rows"][0]["value"] += 1.0          # valid JSON, wrong numbers: the checksum tells
    path.write_text(json.dumps(rec))


DAMAGE = {
    # case: (damage, expected status, text in log.txt or stderr, jobs that must run again)
    "results.csv cut in half": (lambda f: _cut(f / "results.csv"), 0, "did not match the job files", 0),
    "results.csv deleted": (lambda f: (f / "results.csv").unlink(), 0, "results.csv was missing", 0),
    "results.csv malformed line": (lambda f: (f / "results.csv").write_text(
        (f / "results.csv").read_text().replace("\n", "\n1,2,oops,,,\n", 1)), 0, "did not match", 0),
    "job file truncated": (lambda f: _cut(_first_job(f)), 0, "is damaged (unreadable", 1),
    "job file edited (checksum)": (lambda f: _edit_value(_first_job(f)), 0, "checksum mismatch", 1),
    "job file emptied": (lambda f: _first_job(f).write_text(""), 0, "is damaged (unreadable", 1),
    "job output file deleted": (lambda f: (f / "scaled_20" / "flip-uniform" / "results.csv").unlink(), 0,
                                "flip-uniform/results.csv is missing", 1),
    "job output file edited": (lambda f: (f / "scaled_1" / "flip-clean" / "res.txt").write_text("x"), 0,
                               "flip-clean/res.txt changed", 1),
    "config.json truncated": (lambda f: _cut(f / "config.json"), 2, "config.json is damaged", 0),
    "config.json deleted": (lambda f: (f / "config.json").unlink(), 2, "config.json is missing", 0),
}


@pytest.mark.parametrize("case", list(DAMAGE))
def test_damaged_files_are_detected_and_never_trusted(reference, case, capfd):
    root, ref = reference
    damage, status, needle, reruns = DAMAGE[case]
    name = re.sub(r"\W+", "_", case)
    folder = _copy(reference, name)
    jobs_before = {p.name: p.read_bytes() for p in (folder / "jobs").glob("*.json")}
    damage(folder)
    capfd.readouterr()
    got = convex(root, "--name", name, "--resume")
    out, err = capfd.readouterr()
    text = (folder / "log.txt").read_text() + err
    assert got == status, err
    assert needle in text, text
    ran = out.count("problems x")   # one line per vectorised run of a ratio
    print(f"damage case {case!r}: status {got}, detected ({needle!r}), jobs run again {ran}")
    if status == 2:
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
        # nothing was relabelled: the job files are exactly the old ones
        assert {p.name: p.read_bytes() for p in (folder / "jobs").glob("*.json")} == jobs_before
    else:
        assert ran == reruns
        assert (folder / "results.csv").read_bytes() == (ref / "results.csv").read_bytes()
        for rel in ("scaled_20/flip-uniform/results.csv", "scaled_1/flip-clean/results.csv"):
            assert (folder / rel).read_bytes() == (ref / rel).read_bytes()
        assert len(job_files(folder)) == 4


def test_deleted_config_never_relabels_old_results(reference, capfd):
    """The issue's case: config.json deleted, then --resume --epochs 7 on 2-epoch results."""
    root, _ = reference
    folder = _copy(reference, "relabel")
    (folder / "config.json").unlink()
    before = (folder / "results.csv").read_bytes()
    capfd.readouterr()
    assert convex(root, "--name", "relabel", "--resume", "--epochs", "7") == 2
    err = capfd.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "config.json is missing" in err[0]
    assert (folder / "results.csv").read_bytes() == before and not (folder / "config.json").exists()


def test_orphan_temporary_files_are_removed_but_live_ones_kept(reference, capfd):
    root, ref = reference
    folder = _copy(reference, "orphans")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    orphans = [folder / f".results.csv.{runs.HOST}.{dead}.ab12cd.tmp",
               folder / "jobs" / f".x.json.{runs.HOST}.{dead}.zz.tmp",
               folder / "scaled_1" / "flip-clean" / f".curves.png.{runs.HOST}.{dead}.q.tmp",
               folder / ".results.csv.k3j4.tmp"]                       # an older, owner-less name
    live = [folder / f".res.txt.{runs.HOST}.{os.getpid()}.live.tmp",   # this process: alive
            folder / ".res.txt.otherhost.12.live.tmp"]                 # another host, recent
    for p in orphans + live:
        p.write_text("partial")
    old = time.time() - 2 * runs.ORPHAN_AGE_S
    os.utime(orphans[-1], (old, old))
    assert convex(root, "--name", "orphans", "--resume") == 0
    assert not any(p.exists() for p in orphans) and all(p.exists() for p in live)
    assert "removed 4 temporary file(s)" in (folder / "log.txt").read_text()
    assert (folder / "results.csv").read_bytes() == (ref / "results.csv").read_bytes()
    print(f"orphan tmp files: {len(orphans)} removed, {len(live)} live ones kept")


def test_old_format_folders_are_migrated_or_refused(tmp_path):
    path = tmp_path / "old"
    path.mkdir()
    (path / "config.json").write_text(json.dumps({"x": 1, "quiet": True}))   # old: mechanics inside
    (path / "done.json").write_text(json.dumps([json.dumps({"m": "a", "s": 0}, sort_keys=True)]))
    (path / "results.csv").write_text("m,s,metric,value\na,0,acc,0.5\nb,0,acc,0.7\n")
    run = runs.RunFolder(path, {"x": 1}, resume=True, quiet=True)
    assert run.is_done({"m": "a", "s": 0}) and not run.is_done({"m": "b", "s": 0})   # b was never done
    assert run.frame().to_dict("records") == [{"m": "a", "s": 0, "metric": "acc", "value": 0.5}]
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "config.json").write_text(json.dumps({"x": 1}))
    (bad / "done.json").write_text('["{\\"m\\": ')   # truncated
    with pytest.raises(cli.UsageError, match="damaged"):
        runs.RunFolder(bad, {"x": 1}, resume=True, quiet=True)


# ---------------------------------------------------------------- claims and locks


def test_a_held_job_is_skipped_and_a_killed_holder_releases_it(tmp_path):
    path = tmp_path / "r"
    a = runs.RunFolder(path, {"x": 1}, quiet=True)
    b = runs.RunFolder(path, {"x": 1}, resume=True, quiet=True)
    with a.claim({"j": 1}) as job:
        assert job is not None
        with b.claim({"j": 1}) as other:          # another open file description: flock says busy
            assert other is None
        job.finish([{"metric": "m", "value": 1.0}])
    with b.claim({"j": 1}) as again:
        assert again is None                      # finished: never runs twice
    # a process that holds a job's lock and is killed (-9) releases it
    code = (f"import sys, time; sys.path.insert(0, {str(ROOT)!r}); from islab import runs; "
            f"r = runs.RunFolder({str(path)!r}, {{'x': 1}}, resume=True, quiet=True); "
            "c = r.claim({'j': 2}); c.__enter__(); print('held', flush=True); time.sleep(60)")
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    with b.claim({"j": 2}) as job:
        assert job is None
    holder.kill()
    holder.wait()
    with b.claim({"j": 2}) as job:
        assert job is not None                    # the dead holder's lock went with it
        job.finish([{"metric": "m", "value": 2.0}])
    assert sorted(b.frame()["value"]) == [1.0, 2.0]


def test_a_block_that_raises_leaves_the_job_to_run_again(tmp_path):
    run = runs.RunFolder(tmp_path / "r", {"x": 1}, quiet=True)
    with pytest.raises(RuntimeError):
        with run.claim({"j": 1}) as job:
            assert job is not None
            raise RuntimeError("training crashed")
    assert not run.is_done({"j": 1})
    with run.claim({"j": 1}) as job:
        assert job is not None


# ---------------------------------------------------------------- many workers, signals

SWEEP = ["--train-size", "200", "--epochs", "2", "--target", "mlp", "--proxies", "linear,mlp",
         "--proxy-epochs", "2", "--snapshot-epoch", "1", "--attacker", "linear", "--seeds", "0,1,2",
         "--noise", "clean,uniform:0.2", "--alpha", "0.3", "--methods", "random,dris,full", "--quiet"]
N_JOBS = 2 * 3 * 3   # configurations x methods x seeds (one alpha)


def static(root, *args, wait=True):
    cmd = [sys.executable, str(STATIC), *SWEEP, "--results-root", str(root), "--cache-dir",
           str(root.parent / "cache"), *args]
    if wait:
        return subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=ENV, timeout=600)
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=ENV)


def final_table(folder):
    df = pd.read_csv(folder / "results.csv")
    df = df[df["metric"] != "seconds"]
    keys = ["config", "alpha", "method", "seed", "metric", "epoch"]
    return df.sort_values(keys).reset_index(drop=True)


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    """The sweep in one process (it also fills the proxy cache the other runs share)."""
    base = tmp_path_factory.mktemp("workers")
    r = static(base / "one", "--name", "s")
    assert r.returncode == 0, r.stderr[-2000:]
    return base, base / "one" / "DR-IS" / "static" / "s"


def test_four_workers_on_one_folder_equal_one_process(single):
    base, one = single
    four = base / "four" / "DR-IS" / "static" / "s"
    four.mkdir(parents=True)
    # Hold the folder lock while the workers start: each blocks in open_run until all have
    # had time to get there, so they race for the jobs together instead of the first one to
    # import torch finishing the whole (tiny) sweep alone on a loaded machine.
    with runs.folder_lock(four):
        procs = [static(base / "four", "--name", "s", "--resume", wait=False) for _ in range(4)]
        time.sleep(8)
    outs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, [o[1][-1500:] for o in outs]
    counts = trainings(four)
    workers = {json.loads(p.read_text())["worker"] for p in (four / "jobs").glob("*.json")}
    lost = N_JOBS - len(job_files(four))
    print(f"concurrency: 4 workers, {N_JOBS} jobs, {sum(counts.values())} trainings, "
          f"{len(counts)} distinct jobs trained, {lost} lost, jobs finished by {len(workers)} workers")
    assert len(counts) == N_JOBS and set(counts.values()) == {1}     # each job trained exactly once
    assert lost == 0 and len(workers) >= 2
    pd.testing.assert_frame_equal(final_table(one), final_table(four))
    assert (one / "res.txt").read_text() == (four / "res.txt").read_text()
    assert len((four / "cmd.txt").read_text().splitlines()) == 4


@pytest.mark.parametrize("sig,status", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_signals_keep_finished_jobs_and_resume_completes(single, sig, status):
    base, one = single
    name = f"sig{status}"
    folder = base / name / "DR-IS" / "static" / name
    p = static(base / name, "--name", name, wait=False)
    deadline = time.time() + 300
    while time.time() < deadline and len(list((folder / "jobs").glob("*.json"))) < 3:
        time.sleep(0.05)
    p.send_signal(sig)
    out, err = p.communicate(timeout=120)
    lines = err.strip().splitlines()
    done = len(job_files(folder))
    print(f"signal {sig.name}: status {p.returncode}, line {lines[-1] if lines else ''!r}")
    assert p.returncode == status and len(lines) == 1 and "Traceback" not in err
    assert re.search(rf"interrupted after {done} of {N_JOBS} jobs .*rerun with --resume", lines[0]), lines
    assert 3 <= done < N_JOBS
    r = static(base / name, "--name", name, "--resume")
    assert r.returncode == 0, r.stderr[-2000:]
    assert len(job_files(folder)) == N_JOBS
    counts = trainings(folder)
    assert set(counts.values()) == {1}        # the finished ones were not trained again
    pd.testing.assert_frame_equal(final_table(one), final_table(folder))


def test_workers_with_dependent_jobs_compare_every_replicate_once(tmp_path):
    """DL-correlation: a replicate's comparisons need all its models, which other workers may be
    training; whoever finishes the last one compares them (each job once, none left behind)."""
    script = ROOT / "DL-correlation" / "IS_01_corelations.py"
    args = ["--train-size", "150", "--epochs", "1", "--models", "linear,mlp,cnn", "--seeds", "0,1",
            "--early-epochs", "none", "--no-plots", "--quiet", "--device", "cpu", "--cache-dir",
            str(tmp_path / "cache"), "--name", "w", "--resume"]
    procs = [subprocess.Popen([sys.executable, str(script), *args, "--results-root", str(tmp_path / "three")],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=ENV)
             for _ in range(3)]
    outs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0] * 3, [o[1][-1500:] for o in outs]
    one = load_script(script, "dlc_single")
    assert cli.guarded(one.main, [*args, "--results-root", str(tmp_path / "one")], signals=False) == 0
    folder = tmp_path / "three" / "DL-correlation" / "w"
    keys = sorted(json.dumps(k, sort_keys=True) for k in job_files(folder).values())
    trained = re.findall(r"\[seed (\d)\] (\S+): trained", (folder / "log.txt").read_text())
    print(f"dependent jobs: 3 workers, {len(keys)} jobs (6 models + 2 comparisons), {len(trained)} trainings")
    assert len(keys) == 8 and sum(k.count('"pairs"') for k in keys) == 2
    assert len(trained) == 6 and len(set(trained)) == 6
    cols = ["job", "seed", "score", "model_a", "model_b", "measure", "epoch"]

    def table(f):
        df = pd.read_csv(f / "results.csv")
        df = df[df["measure"] != "seconds"]
        return df.sort_values([c for c in cols if c in df]).reset_index(drop=True)

    pd.testing.assert_frame_equal(table(folder), table(tmp_path / "one" / "DL-correlation" / "w"))
