"""Sweeps across GPUs and Slurm nodes: ONE launcher for every job-based script.

A sweep is a run folder (islab.runs) with a job list.  The launcher starts processes that
point at that folder; each claims jobs through islab.runs (a claimed job runs exactly once,
a finished one never again), so the launcher never splits the list itself.

    --launcher inline            this process runs every job, one after another (the default)
    --launcher local --workers N N worker processes on this machine: one GPU each
                                 (CUDA_VISIBLE_DEVICES) on a GPU node; on a CPU node the cores
                                 are split between them (OMP_NUM_THREADS = cores // N)
    --launcher slurm             job arrays through submitit (AutoExecutor + submit_array):
                                 prepare (one task per configuration) -> jobs (one task per
                                 pending job, after the prepare array) -> report (one task,
                                 after the jobs array); the command returns once submitted

Stages.  A process the launcher starts runs the script with `--launcher inline --resume
--run-dir <folder> --stage S`:
    prepare  the shared prerequisites (noise draw, attacker, proxy runs, RHO's irreducible
             model) of each configuration with pending jobs; a configuration another process
             is preparing is skipped (non-blocking lock jobs/prepare-<tag>.lock)
    work     prepare, then claim and train jobs (the local workers)
    jobs     claim and train jobs (`--only-jobs ID,...` limits it to those ids: Slurm tasks)
    report   no training: res.txt, results.csv and plots from every job file
    all      today's inline run: all of it in one process (the default)
Every process that needs a configuration's prerequisites takes that configuration's lock
(blocking) first, so it waits for the process preparing it and then reads the shared cache:
each prerequisite is computed once however many processes start.  The proxy cache also locks
each entry (islab.proxies), so two run folders sharing a cache never train one proxy twice.

Preemption.  Each Slurm task is an islab.slurm.Task: submitit calls its `checkpoint()` on Slurm's
pre-timeout / preemption signal, which stops the child (SIGTERM: it keeps every finished job
and the last epoch's training state, see --checkpoint) and requeues the same command; the
requeued task skips finished jobs (job files) and resumes the interrupted one from its
checkpoint (islab/slurm.py).  The tests run the Slurm path through submitit's local executors
(`--slurm-executor local|debug`) and, with `make test-slurm`, on a one-node Slurm cluster.

Scripts use it through islab.sweep (DR-IS static / online / diagnostics, DL-noise):
    launch.add_args(parser)                       # the flags above (+ --dry-run, --checkpoint)
    launch.check_args(args)                       # after parsing: bad input exits 2, one line
    return sweep.sweep(__file__, args, argv, path, configs, run_job, report)
sweep() makes the Plan, the dry run, the run folder, delegate(), the Role of this process, the
prepare pass, the claims, the checkpoints and the report.  The scripts not moved to it yet
(DL-correlation, ablations, food101, synthetic, Convex-Noise, memorisation) call those pieces
themselves.
"""
from __future__ import annotations

import argparse

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from islab import cli, runs
# the plan, the constants and the machine's cores and GPUs live in islab/plan.py (islab.slurm uses
# them too); re-exported here, so scripts use launch.Plan, launch.UNPLANNED, ... as before
from islab.plan import (DEFAULT_TIMEOUT_MIN, LAUNCHER_VALUE_FLAGS, SLURM_FLAGS, UNPLANNED,  # noqa: F401
                        Plan, cores, gpus, shell, strip_launcher_flags)

LAUNCHERS = ("inline", "local", "slurm")
STAGES = ("all", "prepare", "work", "jobs", "report")
EXECUTORS = ("slurm", "local", "debug")  # submitit executors of --launcher slurm (islab/slurm.py)
TERM_WAIT_S = 120                         # how long a stopped worker may take to save and exit
PROGRESS_EVERY_S = 5.0                    # at most one progress line this often (seconds)
POLL_S = 0.1                              # how often the local launcher looks at its workers


# ---------------------------------------------------------------- arguments


def add_args(p, checkpoint: bool = True) -> None:
    """The launcher flags (every job-based script) and, with `checkpoint`, --checkpoint."""
    g = p.add_argument_group("launcher (sweeps across processes, GPUs and Slurm nodes; results/README.md)")
    g.add_argument("--launcher", choices=LAUNCHERS, default="inline",
                   help="inline: this process runs every job; local: --workers processes on this machine; "
                        "slurm: job arrays through submitit (prepare -> jobs -> report), returns once submitted")
    g.add_argument("--workers", type=cli.positive_int, default=None,
                   help="--launcher local: worker processes (default: one per GPU, or one per CPU core); "
                        "each GPU worker sees one GPU, CPU workers split the cores (threads = cores // N)")
    g.add_argument("--slurm-partition", default=None, help="--launcher slurm: partition (sbatch --partition)")
    g.add_argument("--timeout-min", type=cli.positive_int, default=None,
                   help=f"--launcher slurm: time limit of each task in minutes (default {DEFAULT_TIMEOUT_MIN}); "
                        "a task that reaches it is checkpointed and requeued")
    g.add_argument("--gpus-per-task", type=cli.nonnegative_int, default=None,
                   help="--launcher slurm: number of GPUs of each task (default: 1 when the tasks train on a "
                        "GPU: --device cuda, or auto with cifar10 / cifar100; else 0, e.g. the digits preset)")
    g.add_argument("--cpus-per-task", type=cli.positive_int, default=None,
                   help="--launcher slurm: CPU cores of each task, also its torch threads (default: Slurm's "
                        "cores and torch's threads; with --gpus-per-task 0, one thread: on a CPU every task "
                        "must run the same thread count to share the proxy cache)")
    g.add_argument("--array-parallelism", type=cli.positive_int, default=None,
                   help="--launcher slurm: at most this many tasks of an array run at once (default 256)")
    g.add_argument("--slurm-extra", action="append", default=None, metavar="KEY=VALUE",
                   help="--launcher slurm: any other sbatch option, repeatable (e.g. account=abc, qos=high, "
                        "constraint=a100, mem=32G, setup='module load cuda'); submitit's own slurm_* "
                        "parameters by that name, else an #SBATCH --KEY=VALUE line")
    g.add_argument("--slurm-executor", choices=EXECUTORS, default=None,
                   help="--launcher slurm: slurm (sbatch, the default), or submitit's LocalExecutor (local: "
                        "the same tasks as processes here) / DebugExecutor (debug: in this process), which "
                        "run the Slurm path without a cluster (the tests do)")
    g.add_argument("--dry-run", action="store_true",
                   help="print the job list, the command each process or task runs and the counts; "
                        "create nothing")
    if checkpoint:
        g.add_argument("--checkpoint", action="store_true",
                       help="save each target run's state after every epoch in <run>/checkpoints/ and resume "
                            "from it after an interruption (removed once the job is recorded); on by "
                            "default for --launcher slurm tasks")
    # Set by the launcher for the processes it starts, never by a user: hidden from --help.
    # --stage: prepare (shared prerequisites only), work (prepare, then jobs), jobs, report (no
    # training), all (everything); --only-jobs: run only these job ids (jobs/<id>.json);
    # --run-dir: the run folder itself (instead of <results-root>/<family>/<name>).
    g.add_argument("--stage", choices=STAGES, default="all", help=argparse.SUPPRESS)
    g.add_argument("--only-jobs", type=cli.comma_list(str, unique=True), default=None, help=argparse.SUPPRESS)
    g.add_argument("--run-dir", type=cli.folder, default=None, help=argparse.SUPPRESS)


def check_args(args) -> None:
    """Launcher flags that cannot work exit 2 with one line, before any folder exists.  Only a
    user's command is checked: processes the launcher starts (--stage other than all) carry
    their parent's flags followed by --launcher inline, which wins."""
    if getattr(args, "stage", "all") != "all":
        return
    launcher = args.launcher
    if args.workers is not None and launcher != "local":
        cli.fail(f"--workers needs --launcher local (got --launcher {launcher})")
    given = [flag for dest, flag in SLURM_FLAGS.items() if getattr(args, dest, None) is not None]
    if given and launcher != "slurm":
        cli.fail(f"{given[0]} needs --launcher slurm (got --launcher {launcher})")
    if launcher == "local":
        dev = getattr(args, "torch_device", None)
        if dev is not None and dev.type == "cuda" and dev.index is not None:
            cli.fail(f"--device {args.device} pins one GPU; --launcher local gives each worker its own: "
                     "use --device cuda or auto")
    if launcher == "slurm":
        from islab import slurm

        slurm.check_args(args)


def run_path(args, family_root: Path, default_name) -> Path:
    """The run folder: --run-dir when the launcher set it, else <results-root>/<family>/<name>."""
    if getattr(args, "run_dir", None):
        return Path(args.run_dir)
    return Path(family_root) / (args.name or default_name(args))


# ---------------------------------------------------------------- what one process does


class Role:
    """What this process does in a sweep, from --stage and --only-jobs (see the module doc)."""

    def __init__(self, args):
        self.stage = getattr(args, "stage", "all") or "all"
        only = getattr(args, "only_jobs", None)
        self.only = set(only) if only else None

    @property
    def reports(self) -> bool:
        """Write res.txt and plots (the inline run and the report stage)."""
        return self.stage in ("all", "report")

    @property
    def trains(self) -> bool:
        return self.stage in ("all", "work", "jobs")

    def runs(self, key: dict, planned: bool = True) -> bool:
        """May this process claim and train the job `key`?  Jobs missing from the planned list
        (static's aum_tsr: its alpha is learnt from the proxies) go to the task whose selection
        holds UNPLANNED."""
        if not self.trains:
            return False
        if self.only is None:
            return True
        return (runs.job_id(key) in self.only) if planned else UNPLANNED in self.only

    def wants(self, run, keys) -> bool:
        """Does this process need the prerequisites of a configuration whose jobs are `keys`?
        The report needs every configuration's facts; a worker only those it may still train."""
        if self.reports:
            return True
        if self.stage == "prepare":
            return bool(run.pending(keys))
        return any(self.runs(k) and not run.is_done(k) for k in keys)

    @contextlib.contextmanager
    def prepared(self, run, tag: str):
        """Hold configuration `tag`'s prepare lock (blocking): a process preparing it finishes
        first, then this one reads its prerequisites from the cache."""
        with runs.file_lock(prepare_lock(run, tag)):
            yield

    def prepare_pass(self, run, steps) -> None:
        """Stages prepare and work: for each (tag, keys, prepare) with pending jobs, run
        prepare() unless another process holds that configuration (then skip it)."""
        if self.stage not in ("prepare", "work"):
            return
        for tag, keys, prepare in steps:
            if not run.pending(keys):
                continue
            fd = runs.try_lock(prepare_lock(run, tag))
            if fd is None:
                run.log(f"[{tag}] prerequisites: another process prepares them, skipped")
                continue
            try:
                t0 = time.time()
                prepare()
                run.log(f"[{tag}] prerequisites ready ({time.time() - t0:.1f}s)")
            finally:
                os.close(fd)


def prepare_lock(run, tag: str) -> Path:
    return run.path / "jobs" / f"prepare-{tag}.lock"


def checkpoint_file(run, args, name: str):
    """Where one job's training state is saved after each epoch (None without --checkpoint): an
    islab.checkpoint.CheckpointFile keyed by the job's name and the folder's config hash, so a
    checkpoint of another job or run is moved aside, never resumed (warnings go to the log)."""
    if not getattr(args, "checkpoint", False):
        return None
    from islab.checkpoint import CheckpointFile

    return CheckpointFile(run.path / "checkpoints" / f"{name}.pt", key={"job": name, "config": run.config_sha},
                          warn=run.log)


def resuming(run, ckpt, what: str) -> None:
    """Log that a job continues from its checkpoint (an interrupted or requeued task); a bad
    checkpoint is moved aside first (islab.checkpoint.check) and the job starts afresh."""
    from islab import checkpoint

    if ckpt is not None and checkpoint.check(ckpt):
        run.log(f"{what}: resuming from {Path(ckpt).relative_to(run.path)}")


def drop_checkpoint(ckpt) -> None:
    """A recorded job needs its training state no more."""
    if ckpt is not None:
        with contextlib.suppress(FileNotFoundError):
            Path(ckpt).unlink()   # (the folder stays: another worker may be writing into it)


# ---------------------------------------------------------------- the plan (Plan: islab/plan.py)


def user_argv(argv) -> list[str]:
    """The arguments a script was called with (main(argv) or the command line)."""
    return list(sys.argv[1:] if argv is None else argv)


def _finished_ids(path: Path) -> set[str]:
    """Job ids with a job file (unverified: for --dry-run counts, which read and write nothing)."""
    jobs = Path(path) / "jobs"
    return {p.stem for p in jobs.glob("*.json")} if jobs.is_dir() else set()


def dry_run(plan: Plan, args) -> int:
    """Print the job list, who runs what, and the counts; create nothing."""
    done = _finished_ids(plan.path)
    ids = [runs.job_id(k) for k in plan.keys]
    pending = [i for i in ids if i not in done]
    exists = plan.path.exists()
    print(f"run folder: {plan.path}" + (" (exists: pass --resume to continue it)" if exists else
                                        " (not created by --dry-run)"))
    print(f"jobs: {len(ids)} planned, {len(pending)} to run (estimated from the job files present)"
          + (f"; shared prerequisites of {len(plan.configs)} configuration(s) ({', '.join(plan.configs)}) "
             "run first, each once, cached in " + str(getattr(args, "cache_dir", "the cache"))
             if plan.configs else ""))
    launcher, task_of = args.launcher, {}
    if launcher == "inline":
        print("launcher inline: this process runs every job in order: "
              + shell([sys.executable, str(plan.script), *strip_launcher_flags(plan.argv)]))
    elif launcher == "local":
        n = min(worker_count(args), max(1, len(pending)))
        envs = worker_envs(n, args)
        print(f"launcher local: {n} worker process(es) on this machine (logs: {plan.path}/launch/worker-<k>.log), "
              "each preparing the configurations nobody else prepares, then claiming jobs:")
        for k in range(n):
            print(f"  worker {k}: " + shell(plan.command("work"), envs[k]))
        print("then this process writes res.txt, results.csv and the plots")
    else:
        from islab import slurm

        task_of = slurm.describe(plan, args, done, pending)
    print(f"job list ({len(ids)}):")
    for i, (k, jid) in enumerate(zip(plan.keys, ids)):
        mark = "done" if jid in done else "todo"
        task = f"task {task_of[jid]}  " if jid in task_of else ""
        print(f"  {i:4d} {mark} {jid}  {task}" + ", ".join(f"{a}={v}" for a, v in k.items()))
    return 0


# ---------------------------------------------------------------- starting the processes


def delegate(plan: Plan, args, run) -> bool:
    """Run the sweep through the launcher.  Returns True when this process has nothing more to
    do (Slurm: submitted; the submitit local executors: the report task wrote res.txt); False
    when the script goes on (inline, or local after its workers: args.stage becomes 'report')."""
    run.plan(plan.keys)
    _check_stage(plan, args, run)
    if args.stage != "all" or args.launcher == "inline":
        return False
    if args.launcher == "local":
        _run_local(plan, args, run)
        args.stage = "report"
        return False
    from islab import slurm

    return slurm.start(plan, args, run)


def _check_stage(plan: Plan, args, run) -> None:
    """--only-jobs names jobs of this sweep, and --stage report has finished jobs to report:
    else UsageError (exit 2, one line; the fresh folder goes again, cli.guarded)."""
    only = getattr(args, "only_jobs", None)
    if only:
        known = {runs.job_id(k) for k in plan.keys} | {UNPLANNED}
        bad = [j for j in only if j not in known]
        if bad:
            raise cli.UsageError(f"--only-jobs: {bad[0]!r} is no job of this sweep ({len(plan.keys)} jobs; "
                             "a job's id is the name of its jobs/<id>.json)")
    if getattr(args, "stage", "all") == "report" and not run.records():
        raise cli.UsageError(f"--stage report: {run.path} holds no finished job to report; run the jobs first")


def finish(args) -> None:
    """After the report: exit 1 with one line when a worker or task of the launcher failed."""
    failed = getattr(args, "launch_failures", None)
    if failed:
        prog = sys.argv[0].rsplit("/", 1)[-1] if sys.argv and sys.argv[0] else "islab"
        sys.stderr.write(f"{prog}: error: {failed[0]}"
                         + (f" (and {len(failed) - 1} more)" if len(failed) > 1 else "")
                         + "; rerun the same command with --resume to finish\n")
        raise SystemExit(1)


def worker_count(args) -> int:
    if args.workers is not None:
        return args.workers
    visible = gpus(args)
    return len(visible) if visible else cores()


def worker_envs(n: int, args) -> list[dict]:
    """Per worker: one GPU (round robin) on a GPU run, else an equal share of the cores."""
    visible = gpus(args)
    if visible:
        return [{"CUDA_VISIBLE_DEVICES": visible[k % len(visible)]} for k in range(n)]
    threads = str(max(1, cores() // n))
    return [{"OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads} for _ in range(n)]


def _progress_line(run, total: int, started: float) -> str:
    done, _ = run.progress()
    return f"launcher: {done} of {total} jobs finished ({time.time() - started:.0f}s)"


def _run_local(plan: Plan, args, run) -> None:
    """N worker processes on this machine (stage work), waited for; Ctrl-C or SIGTERM stops
    them (each keeps its finished jobs) before it propagates."""
    pending = run.pending(plan.keys)
    if not pending and not plan.unplanned:
        run.log("launcher local: every job is finished; writing the report only")
        return
    n = min(worker_count(args), max(1, len(pending)))
    envs = worker_envs(n, args)
    if gpus(args) and n > len(gpus(args)):
        run.log(f"launcher local: {n} workers share {len(gpus(args))} GPU(s)")
    logs = run.path / "launch"
    logs.mkdir(exist_ok=True)
    cmd = plan.command("work")
    share = ", ".join(f"{k}: " + " ".join(f"{a}={b}" for a, b in e.items() if a != "MKL_NUM_THREADS")
                      for k, e in enumerate(envs))
    run.log(f"launcher local: {n} workers ({share}) on {len(pending)} pending jobs; logs in {logs}/worker-<k>.log")
    run.log(f"launcher local: each runs {shell(cmd)}", quiet=True)
    procs, files, started = [], [], time.time()
    try:
        for k in range(n):
            f = open(logs / f"worker-{k}.log", "a")
            files.append(f)
            procs.append(subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT,
                                          env={**os.environ, **envs[k], "PYTHONUNBUFFERED": "1"}))
        last, shown = None, 0.0
        while any(p.poll() is None for p in procs):
            time.sleep(POLL_S)
            if time.time() - shown < PROGRESS_EVERY_S:
                continue
            line = _progress_line(run, len(plan.keys), started)
            if line.split(" (")[0] != last:   # a line when the count changes, at most every few seconds
                run.log(line)
                last, shown = line.split(" (")[0], time.time()
    except BaseException:
        _stop(procs)
        raise
    finally:
        for f in files:
            f.close()
    failures = [f"worker {k} exited {p.returncode} ({_last_line(logs / f'worker-{k}.log')}; log "
                f"{logs / f'worker-{k}.log'})" for k, p in enumerate(procs) if p.returncode != 0]
    for msg in failures:
        run.log(f"launcher local: {msg}")
    run.log(f"launcher local: workers done in {time.time() - started:.1f}s")
    args.launch_failures = failures
    if "OMP_NUM_THREADS" in envs[0]:   # the report reads the workers' cache entries, whose keys hold
        import torch                     # the torch thread count on a CPU (islab.proxies.runtime_key)

        torch.set_num_threads(int(envs[0]["OMP_NUM_THREADS"]))


def _stop(procs) -> None:
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    deadline = time.time() + TERM_WAIT_S
    for p in procs:
        try:
            p.wait(timeout=max(0.1, deadline - time.time()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def _last_line(path: Path) -> str:
    try:
        lines = [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return "no log"
    return lines[-1].strip()[:300] if lines else "no output"
