"""--launcher slurm on a real Slurm cluster: `make test-slurm` starts a one-node cluster on this
machine (.ci/slurm-local.sh: Debian's slurm-wlm + munge) and runs this file; `make test` skips
it (reason printed) unless `sinfo` reaches a cluster whose only node is this machine (the run
folders are under /tmp, which other nodes would not see).

A tiny DR-IS static sweep (digits, one configuration, two methods) goes through the real CLI:
three sbatch submissions (prepare, the jobs array, report) run on the node.  One job task gets
Slurm's warning signal (scancel --signal=USR2: what Slurm sends before a time limit or a
preemption), on which submitit calls islab.slurm.Task.checkpoint: the command is stopped and the
task requeued (scontrol requeue), then runs again and finishes the job.  The sweep must end with
every task COMPLETED, every job recorded once, each proxy trained once, and the numbers of the
same sweep run inline."""
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from helpers import job_files, trainings

ROOT = Path(__file__).resolve().parents[2]
STATIC = ROOT / "DR-IS" / "static.py"
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
SWEEP = ["--train-size", "200", "--epochs", "2", "--target", "mlp", "--proxies", "linear,mlp",
         "--proxy-epochs", "2", "--snapshot-epoch", "1", "--seeds", "0", "--noise", "clean", "--alpha", "0.3",
         "--methods", "random,dris", "--quiet", "--device", "cpu", "--name", "s"]
N_JOBS = 2
# the most the submission, and then the sweep, may take (seconds; a machine whose cores are busy
# with other work may need more: each task starts its own Python and torch)
WAIT_S = float(os.environ.get("ISLAB_SLURM_WAIT_S", 600))


def _why_not() -> str | None:
    """Why the cluster tests cannot run here, None when they can."""
    if shutil.which("sinfo") is None or shutil.which("sbatch") is None:
        return "no Slurm on this machine (sinfo not found); `make test-slurm` installs and starts a one-node cluster"
    try:
        r = subprocess.run(["sinfo", "-h", "-N", "-o", "%N %T"], capture_output=True, text=True, timeout=10)
    except subprocess.TimeoutExpired:
        return "sinfo did not answer in 10 s; `make test-slurm` starts a one-node cluster"
    if r.returncode != 0:
        said = (r.stderr.strip().splitlines() or ["no output"])[-1]
        return f"no Slurm cluster reachable (sinfo exit {r.returncode}: {said}); `make test-slurm` starts one"
    nodes = dict(line.split()[:2] for line in r.stdout.splitlines() if line.strip())
    host = socket.gethostname().split(".")[0]
    if set(nodes) != {host}:
        return f"the cluster's nodes ({', '.join(sorted(nodes)) or 'none'}) are not just this machine ({host})"
    if nodes[host].rstrip("*") not in ("idle", "mixed", "allocated", "completing"):
        return f"node {host} is {nodes[host]}"
    return None


WHY_NOT = _why_not()
REQUIRED = os.environ.get("ISLAB_SLURM_REQUIRED") == "1"   # make test-slurm: no cluster is a failure
pytestmark = [pytest.mark.slurm,
              pytest.mark.skipif(WHY_NOT is not None and not REQUIRED, reason=f"slurm: {WHY_NOT}")]


def static(root, *args):
    cmd = [sys.executable, str(STATIC), *SWEEP, "--results-root", str(root), "--cache-dir", str(root / "cache"), *args]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=ENV, timeout=WAIT_S)


def final_table(folder):
    df = pd.read_csv(folder / "results.csv")
    df = df[df["metric"] != "seconds"]
    return df.sort_values(["config", "alpha", "method", "seed", "metric", "epoch"]).reset_index(drop=True)


def wait_for(cond, what: str, timeout: float = WAIT_S):
    deadline = time.time() + timeout
    while not cond():
        if time.time() > deadline:
            queue = subprocess.run(["squeue"], capture_output=True, text=True).stdout
            pytest.fail(f"{what}: not after {timeout:.0f} s; squeue:\n{queue}")
        time.sleep(0.2)


def read(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""


def submitted_ids(folder) -> list[str]:
    """The Slurm job ids of the prepare array, the jobs array and the report job (from log.txt)."""
    m = re.search(r"submitted prepare (\d+) .*; jobs (\d+) .*; report (\d+)", read(folder / "log.txt"))
    return list(m.groups()) if m else []


def job_records(job_id: str) -> list[dict]:
    """scontrol's records of a job (one per array task): {field: value}."""
    text = subprocess.run(["scontrol", "-o", "show", "job", job_id], capture_output=True, text=True).stdout
    return [dict(f.split("=", 1) for f in line.split() if "=" in f) for line in text.splitlines() if line.strip()]


def test_a_static_sweep_on_slurm_with_a_requeued_task_equals_inline(tmp_path):
    if WHY_NOT is not None:
        pytest.fail(f"slurm: {WHY_NOT}")
    t0 = time.time()
    folder = tmp_path / "slurm" / "DR-IS" / "static" / "s"
    try:
        r = static(tmp_path / "slurm", "--launcher", "slurm", "--timeout-min", "30")
        submitted = submitted_ids(folder)
        assert r.returncode == 0 and submitted, r.stderr[-2000:] + read(folder / "log.txt")[-2000:]
        prepare, jobs, report = submitted
        task0 = folder / "launch" / "submitit" / f"{jobs}_0_0_log.out"
        # the warning once task 0's command runs (the task knows its child from that line on)
        wait_for(lambda: "islab task: started as process" in read(task0), f"jobs task {jobs}_0 to start")
        subprocess.run(["scancel", "--signal=USR2", f"{jobs}_0"], check=True, timeout=60)
        inline = static(tmp_path / "inline")        # meanwhile: the same sweep in one process
        assert inline.returncode == 0, inline.stderr[-2000:]
        wait_for(lambda: not subprocess.run(["squeue", "-h", "-j", ",".join(submitted)],
                                            capture_output=True, text=True).stdout.strip(), "the sweep to finish")
    finally:   # nothing of this test stays queued
        if submitted_ids(folder):
            subprocess.run(["scancel", *submitted_ids(folder)], capture_output=True)
    log0 = read(task0)
    print(f"slurm sweep: {time.time() - t0:.0f} s; the requeued task: "
          + "; ".join(ln for ln in log0.splitlines() if "stopping" in ln or "resuming" in ln))
    # the requeue: stopped, requeued by submitit, run a second time, then completed
    assert "islab task: stopping the command for a requeue: SIGTERM" in log0, log0
    assert f"Requeued job {jobs}_0" in log0 and log0.count("islab task: started as process") == 2, log0
    records = job_records(prepare) + job_records(jobs) + job_records(report)
    assert len(records) == 1 + N_JOBS + 1
    assert {rec["JobState"] for rec in records} == {"COMPLETED"}, [(rec["JobId"], rec["JobState"]) for rec in records]
    assert [rec["Restarts"] for rec in job_records(f"{jobs}_0")] == ["1"]
    # every job recorded once, each trained to the end once; each proxy trained once
    assert len(job_files(folder)) == N_JOBS and sorted(trainings(folder).values()) == [1] * N_JOBS
    assert len(re.findall(r"^proxy \S+ seed \d+: trained", read(folder / "log.txt"), re.M)) == 2
    # the numbers of the inline run
    ref = tmp_path / "inline" / "DR-IS" / "static" / "s"
    pd.testing.assert_frame_equal(final_table(ref), final_table(folder))
    assert read(folder / "res.txt") == read(ref / "res.txt") != ""
