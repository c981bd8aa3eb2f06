"""The launcher (islab/launch.py) through DR-IS/static.py's real CLI on a tiny digits sweep:

  - `--launcher local --workers 2` and submitit's LocalExecutor (`--launcher slurm
    --slurm-executor local`) give the numbers of `--launcher inline`, every job trained once and
    every shared prerequisite (attacker, proxies) trained once, with every task's log in the run
    folder;
  - a second call with --resume (submitit's DebugExecutor) only writes the report;
  - --dry-run prints the job list and each process's command and creates nothing; with --launcher
    slurm the sbatch header and each array once (no GPU asked on the CPU digits preset);
  - the Slurm submission (a stand-in sbatch that records its scripts) carries the three stages,
    their dependencies and the resources, and trains nothing on the submitting machine;
  - an interrupted job resumes from its checkpoint (what a requeued Slurm task does) and a
    finished one never runs again; Task.checkpoint is submitit's requeue hook;
  - the proxy cache trains an entry once when two callers race for it.
Here Slurm's path is exercised through submitit's local executors and the recorded sbatch
scripts; tests/run/test_slurm_cluster.py runs it on a real cluster (make test-slurm)."""
import json
import os
import pickle
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import job_files, trainings

from islab import cli, launch, runs, slurm
from islab.loader import load_script

ROOT = Path(__file__).resolve().parents[2]
STATIC = ROOT / "DR-IS" / "static.py"
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
SWEEP = ["--train-size", "200", "--epochs", "2", "--target", "mlp", "--proxies", "linear,mlp",
         "--proxy-epochs", "2", "--snapshot-epoch", "1", "--attacker", "linear", "--seeds", "0",
         "--noise", "clean,targeted:0.2", "--alpha", "0.3", "--methods", "random,dris", "--quiet",
         "--device", "cpu", "--name", "s"]
N_JOBS = 2 * 2             # configurations x methods (one seed)
N_PREREQUISITES = 2 * 2 + 1   # a proxy pair per configuration, one targeted-noise attacker


def static(root, *args, env=None):
    cmd = [sys.executable, str(STATIC), *SWEEP, "--results-root", str(root), "--cache-dir", str(root / "cache"), *args]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env={**ENV, **(env or {})}, timeout=600)


def static_here(root, *args) -> int:
    """The same command in this process (saves a process start; torch is imported already)."""
    argv = [*SWEEP, "--results-root", str(root), "--cache-dir", str(root / "cache"), *args]
    return cli.guarded(_static_module().main, argv, signals=False)


def folder_of(root) -> Path:
    return root / "DR-IS" / "static" / "s"


def prerequisite_trainings(folder) -> int:
    """Proxy and attacker runs trained (not read from the cache), over every process's lines."""
    return len(re.findall(r"^proxy \S+ seed \d+: trained", (folder / "log.txt").read_text(), re.M))


def final_table(folder):
    df = pd.read_csv(folder / "results.csv")
    df = df[df["metric"] != "seconds"]
    return df.sort_values(["config", "alpha", "method", "seed", "metric", "epoch"]).reset_index(drop=True)


@pytest.fixture(scope="module")
def inline(tmp_path_factory):
    root = tmp_path_factory.mktemp("inline")
    assert static_here(root) == 0
    return folder_of(root)


def _same_as_inline(folder, inline):
    pd.testing.assert_frame_equal(final_table(inline), final_table(folder))
    assert (folder / "res.txt").read_text() == (inline / "res.txt").read_text()
    assert (folder / "accuracy.png").is_file() and (folder / "corruption.png").is_file()


def test_inline_trains_every_job_and_prerequisite_once(inline):
    counts = trainings(inline)
    assert len(counts) == N_JOBS and set(counts.values()) == {1}
    assert prerequisite_trainings(inline) == N_PREREQUISITES == len(list((inline.parent.parent.parent / "cache")
                                                                         .glob("*.npz")))


def test_local_workers_equal_inline(inline, tmp_path):
    r = static(tmp_path, "--launcher", "local", "--workers", "2")
    assert r.returncode == 0, r.stderr[-2000:]
    folder = folder_of(tmp_path)
    counts = trainings(folder)
    workers = {json.loads(p.read_text())["worker"] for p in (folder / "jobs").glob("*.json")}
    print(f"local launcher: 2 workers, {sum(counts.values())} trainings of {N_JOBS} jobs, "
          f"{prerequisite_trainings(folder)} prerequisite runs, jobs finished by {len(workers)} processes")
    assert len(counts) == N_JOBS and set(counts.values()) == {1}      # every job once
    assert prerequisite_trainings(folder) == N_PREREQUISITES         # every proxy / attacker once
    assert len(workers) >= 1 and len(job_files(folder)) == N_JOBS
    _same_as_inline(folder, inline)
    logs = sorted(p.name for p in (folder / "launch").glob("worker-*.log"))
    assert logs == ["worker-0.log", "worker-1.log"]
    assert "--stage work" in (folder / "cmd.txt").read_text()
    # the workers' share of the cores: 1 thread each on this 2-core machine (cores // 2)
    env = json.loads((folder / "env.json").read_text())
    assert env["mechanics"]["launcher"] == "inline" and env["mechanics"]["stage"] in ("work", "all")


def test_submitit_local_executor_equals_inline(inline, tmp_path):
    """The targeted configuration alone (one prepare task, one task per job, one report task:
    four task processes, each with submitit's controller around it) gives inline's rows."""
    r = static(tmp_path, "--noise", "targeted:0.2", "--launcher", "slurm", "--slurm-executor", "local",
               "--array-parallelism", "2")
    assert r.returncode == 0, r.stderr[-2000:]
    folder = folder_of(tmp_path)
    counts = trainings(folder)
    tasks = sorted((folder / "launch" / "submitit").glob("*_log.out"))
    text = "\n".join(p.read_text() for p in tasks)
    stages = re.findall(r"--stage (\w+)", text)
    print(f"submitit local executor: {len(tasks)} task logs (stages {sorted(set(stages))}), "
          f"{sum(counts.values())} trainings of {N_JOBS // 2} jobs, {prerequisite_trainings(folder)} prerequisite runs")
    assert len(counts) == N_JOBS // 2 and set(counts.values()) == {1}
    assert prerequisite_trainings(folder) == N_PREREQUISITES - 2      # the attacker and this pair of proxies
    assert sorted(stages) == sorted(["prepare"] + ["jobs"] * (N_JOBS // 2) + ["report"])
    only = set(re.findall(r"--only-jobs (\S+)", text))
    assert only == {p.stem for p in (folder / "jobs").glob("*.json")}     # one task per job
    ref = final_table(inline)
    pd.testing.assert_frame_equal(ref[ref["config"] == "targeted0.2"].reset_index(drop=True), final_table(folder))
    assert "== targeted0.2" in (folder / "res.txt").read_text() and (folder / "accuracy.png").is_file()
    assert not any((folder / "checkpoints").glob("*.pt"))     # removed once each job was recorded


def test_resume_of_a_finished_sweep_only_reports(inline, tmp_path):
    """submitit's DebugExecutor (in process): nothing pending, so one report task and no training."""
    import shutil

    root = tmp_path / "copy"
    shutil.copytree(inline.parent.parent.parent, root)
    folder = folder_of(root)
    before = trainings(folder)
    (folder / "res.txt").unlink()
    assert static_here(root, "--resume", "--launcher", "slurm", "--slurm-executor", "debug") == 0
    assert trainings(folder) == before
    assert (folder / "res.txt").read_text() == (inline / "res.txt").read_text()
    assert "0 prepare task(s), 0 job task(s), 1 report task" in (folder / "log.txt").read_text()


@pytest.mark.parametrize("launcher", [["--launcher", "local", "--workers", "2"],
                                      ["--launcher", "slurm", "--slurm-executor", "local"], []])
def test_dry_run_lists_jobs_and_commands_and_creates_nothing(tmp_path, capsys, launcher):
    argv = [*SWEEP, "--results-root", str(tmp_path / "res"), "--cache-dir", str(tmp_path / "cache"), *launcher,
            "--dry-run"]
    assert cli.guarded(_static_module().main, argv, signals=False) == 0
    out = capsys.readouterr().out
    assert list(tmp_path.iterdir()) == []
    assert f"jobs: {N_JOBS} planned, {N_JOBS} to run" in out
    assert len(re.findall(r"^\s+\d+ todo \S+", out, re.M)) == N_JOBS
    if "local" in launcher and "slurm" not in launcher:
        assert len(re.findall(r"worker \d: OMP_NUM_THREADS=1 .*--stage work", out)) == 2
    elif "slurm" in launcher:   # the jobs array's command once; the job list names each job's task
        assert len(re.findall(r"--stage jobs --only-jobs JOB_ID --checkpoint$", out, re.M)) == 1
        assert re.findall(r"^\s+\d+ todo \S+  task (\d+) ", out, re.M) == [str(i) for i in range(N_JOBS)]
        assert "--stage prepare" in out and "--stage report" in out
    else:
        assert "launcher inline" in out


def test_slurm_dry_run_prints_the_sbatch_header_once_and_no_gpu_on_a_cpu_preset(tmp_path, capsys, monkeypatch):
    """Issue 20: the header once (not per task), the jobs array once, no GPU for the digits
    preset (--device auto); --device cuda asks one per task.  No sbatch needed for a dry run."""
    monkeypatch.setenv("PATH", str(tmp_path))   # no sbatch, no srun
    argv = [*SWEEP, "--results-root", str(tmp_path / "res"), "--launcher", "slurm", "--dry-run",
            "--array-parallelism", "3"]
    argv[argv.index("--device") + 1] = "auto"
    assert cli.guarded(_static_module().main, argv, signals=False) == 0
    out = capsys.readouterr().out
    assert [p.name for p in tmp_path.iterdir()] == []
    for line in ("#SBATCH --time=1440", "#SBATCH --signal=USR2@90", "#SBATCH --job-name=islab"):
        assert len(re.findall(f"^  {line}$", out, re.M)) == 1, (line, out)
    assert "--gpus-per-node" not in out and "no GPU: --device auto with digits" in out
    arrays = re.findall(r"^  #SBATCH --array=\S+", out, re.M)
    assert arrays == ["  #SBATCH --array=0-1%2", f"  #SBATCH --array=0-{N_JOBS - 1}%3"]
    assert out.count("#SBATCH --dependency=afterany:") == 2
    assert out.count("--stage jobs") == 1 and "sbatch is not on this machine" in out
    assert cli.guarded(_static_module().main, [*argv, "--device", "cuda"], signals=False) == 0
    out = capsys.readouterr().out
    assert len(re.findall(r"^  #SBATCH --gpus-per-node=1$", out, re.M)) == 1 and "no GPU" not in out


def test_reproduce_dry_run_through_slurm_plans_each_stage_and_writes_nothing(tmp_path):
    report = tmp_path / "REPORT.md"
    r = subprocess.run([sys.executable, str(ROOT / "DR-IS" / "reproduce.py"), "--preset", "digits", "--stages", "table1",
                        "--results-root", str(tmp_path / "res"), "--report", str(report), "--",
                        "--launcher", "slurm", "--dry-run"],
                       capture_output=True, text=True, cwd=ROOT, env={**ENV, "PATH": str(tmp_path)}, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    # one plan per draw (3 by default: each draw is its own run folder and its own submissions)
    assert r.stdout.count("#SBATCH --time=1440") == 3 and r.stdout.count("--stage jobs") == 3
    assert "--gpus-per-node" not in r.stdout and "nothing run, no report written" in r.stdout
    assert list(tmp_path.iterdir()) == []


def test_tasks_ask_a_gpu_only_when_they_train_on_one():
    from types import SimpleNamespace as NS

    assert slurm.gpus_per_task(NS(gpus_per_task=None, device="auto", dataset="digits")) == 0
    assert slurm.gpus_per_task(NS(gpus_per_task=None, device="auto", dataset="fashion-mnist")) == 0
    assert slurm.gpus_per_task(NS(gpus_per_task=None, device="auto", dataset="cifar10")) == 1
    assert slurm.gpus_per_task(NS(gpus_per_task=None, device="cuda:1", dataset="digits")) == 1
    assert slurm.gpus_per_task(NS(gpus_per_task=None, device="cpu", dataset="cifar100")) == 0
    assert slurm.gpus_per_task(NS(gpus_per_task=2, device="cpu", dataset="digits")) == 2


def _static_module():
    return load_script(STATIC, "launch_static")


FAKE_SBATCH = """#!/bin/sh
# stands in for Slurm's sbatch: keeps the submission script, answers with a job id
n=$(cat "$FAKE_SLURM/counter" 2>/dev/null || echo 4241); n=$((n+1)); echo $n > "$FAKE_SLURM/counter"
for last; do :; done
cp "$last" "$FAKE_SLURM/sbatch-$n.sh"
echo "Submitted batch job $n"
"""


def test_slurm_submission_has_arrays_dependencies_and_resources(tmp_path):
    bin_dir, rec = tmp_path / "bin", tmp_path / "slurm"
    bin_dir.mkdir()
    rec.mkdir()
    (bin_dir / "sbatch").write_text(FAKE_SBATCH)
    (bin_dir / "srun").write_text("#!/bin/sh\nexit 0\n")
    for f in bin_dir.iterdir():
        f.chmod(0o755)
    r = static(tmp_path, "--launcher", "slurm", "--slurm-partition", "gpu", "--timeout-min", "90",
               "--gpus-per-task", "1", "--cpus-per-task", "4", "--array-parallelism", "3",
               "--slurm-extra", "account=abc", "--slurm-extra", "constraint=a100", "--slurm-extra", "mail_type=END",
               env={"PATH": f"{bin_dir}:{os.environ['PATH']}", "FAKE_SLURM": str(rec)})
    assert r.returncode == 0, r.stderr[-2000:]
    scripts = {int(p.stem.split("-")[1]): p.read_text() for p in rec.glob("sbatch-*.sh")}
    assert sorted(scripts) == [4242, 4243, 4244]       # prepare, jobs, report
    prepare, jobs, report = scripts[4242], scripts[4243], scripts[4244]
    for text in scripts.values():
        for line in ("--partition=gpu", "--time=90", "--gpus-per-node=1", "--cpus-per-task=4", "--account=abc",
                     "--constraint=a100", "--mail-type=END", "--signal=USR2@90"):
            assert f"#SBATCH {line}" in text, (line, text)
    assert "#SBATCH --array=0-1%2" in prepare and "--dependency" not in prepare
    assert f"#SBATCH --array=0-{N_JOBS - 1}%3" in jobs and "#SBATCH --dependency=afterany:4242" in jobs
    assert "--array" not in report and "#SBATCH --dependency=afterany:4243" in report
    folder = folder_of(tmp_path)
    # the pickled tasks: one per job id, each the script's own command with its stage
    pickles = sorted((folder / "launch" / "submitit").glob("*_submitted.pkl"))
    cmds = [pickle.loads(p.read_bytes()).function.cmd for p in pickles]
    only = sorted(c[c.index("--only-jobs") + 1] for c in cmds if "--only-jobs" in c)
    assert only == sorted(runs.job_id(k) for k in _static_module().planned_keys(_static_module().parse_args(
        [*SWEEP, "--results-root", str(tmp_path)])))
    assert all("--checkpoint" in c for c in cmds if "jobs" in c)
    assert job_files(folder) == {} and not (folder / "res.txt").exists()   # nothing ran here
    assert "submitted prepare 4242" in (folder / "log.txt").read_text()


def test_a_refused_submission_exits_2_and_leaves_no_folder(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "sbatch").write_text("#!/bin/sh\necho 'sbatch: error: invalid partition specified: nope' >&2\nexit 1\n")
    (bin_dir / "srun").write_text("#!/bin/sh\nexit 0\n")
    for f in bin_dir.iterdir():
        f.chmod(0o755)
    (tmp_path / "res").mkdir()   # an existing results root, and a cache folder of its own
    r = static(tmp_path / "res", "--launcher", "slurm", "--slurm-partition", "nope", "--cache-dir",
               str(tmp_path / "cache"), env={"PATH": f"{bin_dir}:{os.environ['PATH']}"})
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1 and "Traceback" not in r.stderr, r.stderr[-2000:]
    assert "invalid partition specified: nope" in lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bin", "res"] and not any((tmp_path / "res").iterdir())


def test_an_interrupted_job_resumes_from_its_checkpoint(tmp_path):
    """What a requeued Slurm task does: the same command, --resume, the job's checkpoint."""
    one = ["--noise", "clean", "--methods", "full", "--seeds", "0", "--epochs", "60", "--name", "c"]
    assert static_here(tmp_path / "ref", *one) == 0
    cmd = [sys.executable, str(STATIC), *SWEEP, *one, "--results-root", str(tmp_path / "cut"), "--cache-dir",
           str(tmp_path / "ref" / "cache"), "--checkpoint"]
    folder = tmp_path / "cut" / "DR-IS" / "static" / "c"
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=ENV)
    deadline = time.time() + 300
    while time.time() < deadline and not list((folder / "checkpoints").glob("*.pt")) and p.poll() is None:
        time.sleep(0.01)
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 143, err[-2000:]
    assert job_files(folder) == {} and list((folder / "checkpoints").glob("*.pt"))
    assert cli.guarded(_static_module().main, cmd[2:] + ["--resume"], signals=False) == 0
    log = (folder / "log.txt").read_text()
    assert "[clean] full alpha 1 seed 0: resuming from checkpoints/clean-full-a1-s0.pt" in log
    ref_folder = tmp_path / "ref" / "DR-IS" / "static" / "c"
    pd.testing.assert_frame_equal(final_table(ref_folder), final_table(folder))   # as if never stopped
    assert not list((folder / "checkpoints").glob("*.pt"))     # the recorded job needs it no more
    assert sum(trainings(folder).values()) == 1                    # one completed training


def test_task_checkpoint_stops_the_child_and_requeues_the_same_command():
    task = slurm.Task([sys.executable, "-c", "import time; time.sleep(60)"])
    errors = []
    t = threading.Thread(target=lambda: errors.append(_raises(task)))
    t.start()
    deadline = time.time() + 30
    while task._child is None and time.time() < deadline:
        time.sleep(0.01)
    again = task.checkpoint()       # what submitit calls on Slurm's USR2 (timeout or preemption)
    t.join(timeout=30)
    assert not t.is_alive() and isinstance(errors[0], slurm.TaskFailed)    # the child was stopped
    assert again.function.cmd == task.cmd and again.function is not task
    assert pickle.loads(pickle.dumps(task)).cmd == task.cmd                 # picklable without its child


REQUEUED_IN_HANDLER = """
import signal, sys
sys.path.insert(0, sys.argv[1])
from islab import slurm
task = slurm.Task([sys.executable, "-c", "import time; time.sleep(300)"])
def on_usr2(signum, frame):     # what submitit's handler does on Slurm's USR2: checkpoint, requeue, exit
    again = task.checkpoint()
    print("requeued the same command:", again.function.cmd == task.cmd, flush=True)
    sys.exit(3)
signal.signal(signal.SIGUSR2, on_usr2)
task()
"""


def test_task_checkpoint_in_the_signal_handler_stops_the_child_at_once():
    """submitit calls checkpoint() in its signal handler, on top of the task's own wait for its
    child in the same thread: it must see the child end (not block on Popen's wait lock until
    the timeout, past Slurm's kill, as it did before the real-cluster test found it)."""
    p = subprocess.Popen([sys.executable, "-c", REQUEUED_IN_HANDLER, str(ROOT)], stdout=subprocess.PIPE, text=True)
    seen = []
    for line in p.stdout:
        seen.append(line)
        if "islab task: started as process" in line:   # (after which checkpoint() knows the child)
            break
    p.send_signal(signal.SIGUSR2)
    out = "".join(seen) + p.communicate(timeout=60)[0]    # (the stopping waits up to TASK_TERM_WAIT_S)
    assert p.returncode == 3, out
    assert "stopping the command for a requeue: SIGTERM, then it was killed by SIGTERM" in out, out
    assert "requeued the same command: True" in out


def _raises(task):
    try:
        task()
    except slurm.TaskFailed as e:
        return e
    return None


def test_worker_shares_gpus_round_robin_and_cpus_evenly(monkeypatch):
    import argparse

    import torch

    args = argparse.Namespace(torch_device=torch.device("cpu"), workers=None)
    monkeypatch.setattr(launch, "cores", lambda: 8)
    assert launch.worker_envs(3, args) == [{"OMP_NUM_THREADS": "2", "MKL_NUM_THREADS": "2"}] * 3
    assert launch.worker_count(args) == 8
    monkeypatch.setattr(launch, "gpus", lambda a: ["4", "5"])
    assert [e["CUDA_VISIBLE_DEVICES"] for e in launch.worker_envs(3, args)] == ["4", "5", "4"]
    assert launch.worker_count(args) == 2


def test_strip_launcher_flags():
    argv = ["--seeds", "0", "--launcher", "slurm", "--workers=2", "--slurm-extra", "a=b", "--dry-run",
            "--slurm-partition=gpu", "--quiet"]
    assert launch.strip_launcher_flags(argv) == ["--seeds", "0", "--quiet"]


def test_launcher_benchmark_prints_the_ratio_and_checks_the_numbers(capsys):
    bench = load_script(ROOT / "benchmarks" / "launcher.py", "bench_launcher")
    argv = ["--preset", "digits", "--train-size", "100", "--seeds", "0", "--methods", "random", "--noise", "clean",
            "--workers", "1", "--",
            "--epochs", "1", "--proxy-epochs", "1", "--snapshot-epoch", "1"]
    assert cli.guarded(bench.main, argv, signals=False) == 0
    out = capsys.readouterr().out
    assert re.search(r"ratio inline / local: \d+\.\d\dx  \(same numbers in both arms: yes\)", out), out


def test_the_proxy_cache_trains_an_entry_once_when_two_callers_race(tmp_path):
    from islab.data import load_dataset
    from islab.proxies import train_proxy
    from islab.train import TrainConfig

    ds = load_dataset("digits", device="cpu", train_size=200, seed=0)
    labels = ds.train.y.numpy()
    cfg = TrainConfig(epochs=2, batch_size=64, lr=0.05)
    lines, out = [], []

    def call():
        out.append(train_proxy(ds, labels, "mlp", 7, cfg, 1, cache_dir=tmp_path, log=lines.append))

    threads = [threading.Thread(target=call) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert sorted(ln.split(":")[1].split()[0] for ln in lines) == ["cached", "trained"], lines
    np.testing.assert_array_equal(out[0][0]["loss"], out[1][0]["loss"])
