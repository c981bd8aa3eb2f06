"""--launcher slurm (islab/launch.py): the sweep as Slurm job arrays through submitit.

    array 1  prepare: one task per configuration (--stage prepare)
    array 2  jobs: one task per pending job (--stage jobs --only-jobs <id> --checkpoint), after
             array 1 (--dependency=afterany: a failed prepare task leaves its configuration to
             the job tasks, which prepare it once under its lock)
    job 3    report: res.txt, results.csv, plots (--stage report), after array 2
The submitting command returns once the three are queued.  submitit's LocalExecutor and
DebugExecutor (--slurm-executor local | debug) run the same tasks on this machine, one stage
after the other (they know no dependencies): that is how `make test` exercises this path;
`make test-slurm` runs it on a one-node Slurm cluster (tests/run/test_slurm_cluster.py).  submitit
is imported only here, on first use.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time

from islab import cli, runs
from islab import plan as _plan
from islab.plan import DEFAULT_TIMEOUT_MIN, UNPLANNED, Plan

SUBMITIT_PIN = "submitit==1.5.4"          # requirements.txt pins the same version
# how long a task's command may take to save and exit once the task is to be requeued (seconds):
# under the 90 s between Slurm's warning signal and its kill (submitit's signal_delay_s)
TASK_TERM_WAIT_S = 60
# Slurm sends its warning (USR2) to every process of a task; the command ignores it (its default
# action would kill it mid-epoch) and is stopped by checkpoint() with SIGTERM, which the scripts
# handle (exit 143, finished jobs kept).  An ignored signal stays ignored across exec.
IGNORE_USR2 = ["/bin/sh", "-c", 'trap "" USR2; exec "$@"', "islab-task"]
GPU_DATASETS = ("cifar10", "cifar100")    # the paper's protocols: --device auto asks a GPU for these only


def check_args(args) -> None:
    """--launcher slurm flags that cannot work: exit 2 with one line (before any folder exists)."""
    submitit_module()
    extra_params(args.slurm_extra or [])
    missing = [c for c in ("sbatch", "srun") if shutil.which(c) is None]
    if (args.slurm_executor or "slurm") == "slurm" and missing and not getattr(args, "dry_run", False):
        cli.fail(f"--launcher slurm: no Slurm on this machine ({missing[0]} not found); --slurm-executor local "
                 "runs the same tasks here")


def submitit_module():
    """submitit, imported on first use only (exit 2 naming the pip command when missing)."""
    try:
        import submitit
    except ImportError:
        cli.fail(f"--launcher slurm needs submitit, which is not installed: python -m pip install {SUBMITIT_PIN}")
    return submitit


def extra_params(items) -> tuple[dict, dict]:
    """--slurm-extra KEY=VALUE items -> (submitit slurm_* parameters, additional #SBATCH options)."""
    known = _slurm_parameters()
    params, additional = {}, {}
    for item in items:
        key, sep, value = str(item).partition("=")
        key = key.strip().lstrip("-").replace("-", "_")
        if not sep or not key:
            cli.fail(f"--slurm-extra {item!r}: expected KEY=VALUE, e.g. account=abc")
        value = int(value) if value.isdigit() else value
        if key == "setup":
            params["slurm_setup"] = [c.strip() for c in str(value).split(";") if c.strip()]
        elif key in known:
            params[f"slurm_{key}"] = value
        else:
            additional[key] = value
    return params, additional


def _slurm_parameters() -> set:
    try:
        from submitit.slurm.slurm import _get_default_parameters
    except ImportError:
        return set()
    # the ones the launcher sets itself are not open to --slurm-extra
    return set(_get_default_parameters()) - {"array_parallelism", "dependency", "partition", "time",
                                             "gpus_per_node", "cpus_per_task", "additional_parameters"}


def describe(plan: Plan, args, done: set, pending: list) -> dict:
    """--dry-run: the sbatch header of the three submissions once, then each stage's own #SBATCH
    lines and the command its tasks run (the jobs array's once, JOB_ID standing for the task's
    job).  Returns {job id: task index} for the job list.  Needs no Slurm on this machine."""
    executor = args.slurm_executor or "slurm"
    tasks = [runs.job_id(k) for k in plan.tasks() if runs.job_id(k) not in done]
    extra = ["--checkpoint"] if _has_checkpoint(args) else []
    stages = [("prepare", min(len(plan.configs), len(pending)), None, plan.command("prepare")),
              ("jobs", len(tasks) + plan.unplanned, "PREPARE_ID", plan.command("jobs", ["JOB_ID"], extra)),
              ("report", 1, "JOBS_ID", plan.command("report"))]
    stages = [st for st in stages if st[1]]
    folder = plan.path / "launch" / "submitit"
    if executor == "slurm":
        scripts = [sbatch_lines(args, folder, n, after) for _, n, after, _ in stages]
        common = [ln for ln in scripts[0] if all(ln in sc for sc in scripts[1:])]
        print(f"launcher slurm (submitit): {len(stages)} sbatch submissions; task logs in {folder}/ "
              "(<array id>_<task>_0_log.out / .err); the header of every submission:")
        print("".join(f"  {ln}\n" for ln in common), end="")
        if not gpus_per_task(args):
            print(f"  (no GPU: {'--gpus-per-task 0' if args.gpus_per_task == 0 else _cpu_reason(args)}; "
                  "--gpus-per-task N asks for N per task)")
    else:
        scripts = [[] for _ in stages]
        common = []
        print(f"launcher slurm (submitit's {executor} executor): the stages run on this machine, one after the "
              f"other; task logs in {folder}/")
    for k, ((stage, n, after, cmd), lines) in enumerate(zip(stages, scripts), 1):
        own = [ln for ln in lines if ln not in common and not ln.startswith(("#SBATCH --output", "#SBATCH --error"))]
        what = {"prepare": f"one task per configuration with pending jobs ({n}), all running",
                "jobs": f"one task per pending job ({n}): task i runs the job marked 'task i' in the job list"
                        + (f" (task {n - 1}: the jobs planned later, {UNPLANNED})" if plan.unplanned else ""),
                "report": "one task: res.txt, results.csv and the plots from the job files"}[stage]
        print(f"{k}. {stage}" + (f", after {k - 1}" if after else "") + f": {what}")
        for ln in own:
            print(f"  {ln}" + (f"   ({after}: the job id of submission {k - 1})" if after and after in ln else ""))
        print("  " + _plan.shell(cmd))
    if executor == "slurm" and shutil.which("sbatch") is None:
        print("(sbatch is not on this machine: submit from a Slurm login node)")
    return {jid: i for i, jid in enumerate(tasks)}


def sbatch_lines(args, folder, count: int, after: str | None) -> list[str]:
    """The #SBATCH lines (and --slurm-extra setup commands) of one submission as submitit writes
    them (an array when count > 1)."""
    from submitit.slurm.slurm import SlurmExecutor, _make_sbatch_string

    params, _ = submitit_params(args, "slurm")
    names = SlurmExecutor._equivalence_dict()
    sl = {(k[len("slurm_"):] if k.startswith("slurm_") else names[k]): v for k, v in params.items()}
    if count > 1:
        sl["map_count"] = count
    if after:
        sl["dependency"] = f"afterany:{after}"
    lines = _make_sbatch_string(command="", folder=folder, **sl).splitlines()
    setup = lines[lines.index("# setup"):lines.index("# command") - 1] if "# setup" in lines else []
    return [ln for ln in lines if ln.startswith("#SBATCH")] + setup


def _stop(child, wait_s: float) -> str:
    """SIGTERM the child, SIGKILL it after wait_s seconds; how it ended.  Runs in submitit's signal
    handler, which interrupts __call__'s child.wait() in the same thread: Popen.wait and poll would
    wait for the lock that wait holds (until the timeout: past Slurm's kill), so this looks at the
    child with waitid(WNOWAIT), leaving it to be reaped by whoever waits for it."""
    child.send_signal(signal.SIGTERM)
    deadline, how = time.time() + wait_s, "SIGTERM"
    while (info := _exit_info(child.pid)) is None:
        if how == "SIGTERM" and time.time() > deadline:
            child.kill()
            how = f"SIGKILL after {wait_s:.0f} s"
        time.sleep(0.05)
    return f"{how}, then it {info}"


def _exit_info(pid: int) -> str | None:
    """'exited N' / 'was killed by SIG...' for an ended child (not reaped), None while it runs."""
    try:
        res = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:   # reaped already by a thread waiting for it
        return "ended"
    if res is None or res.si_pid == 0:
        return None
    if res.si_code == os.CLD_EXITED:
        return f"exited {res.si_status}"
    return f"was killed by {signal.Signals(res.si_status).name}"


class TaskFailed(RuntimeError):
    """A task's command exited with a non-zero status (the array task is then FAILED)."""


class Task:
    """One Slurm task: run a script's command as a child process; its output goes to the task's
    log (submitit's stdout / stderr files in <run>/launch/submitit/).

    submitit calls checkpoint() on the signal Slurm sends before the time limit or a preemption:
    the child is stopped with SIGTERM (it records nothing half-done: finished jobs are job
    files, the running one keeps its last epoch's checkpoint) and the same command is requeued,
    so the next attempt skips what is finished and resumes the rest."""

    def __init__(self, cmd: list[str], env: dict | None = None, cwd: str | None = None, check: bool = True):
        self.cmd, self.env, self.cwd, self.check = list(cmd), dict(env or {}), cwd or os.getcwd(), check
        self._child = None

    def __call__(self) -> int:
        env = {**os.environ, **self.env, "PYTHONUNBUFFERED": "1"}
        threads = os.environ.get("SLURM_CPUS_PER_TASK")
        if threads and "OMP_NUM_THREADS" not in self.env:
            env["OMP_NUM_THREADS"] = threads
        print(f"islab task: {_plan.shell(self.cmd, self.env)}", flush=True)
        self._child = subprocess.Popen([*IGNORE_USR2, *self.cmd], env=env, cwd=self.cwd)
        print(f"islab task: started as process {self._child.pid}", flush=True)   # checkpoint() can stop it now
        rc = self._child.wait()
        self._child = None
        if rc != 0 and self.check:
            raise TaskFailed(f"exit status {rc}: {_plan.shell(self.cmd)}")
        return rc

    def checkpoint(self, *args, **kwargs):
        from submitit.helpers import DelayedSubmission

        child = self._child
        if child is not None and child.returncode is None:
            print(f"islab task: stopping the command for a requeue: {_stop(child, TASK_TERM_WAIT_S)}", flush=True)
        else:
            print("islab task: requeued with no command running", flush=True)
        return DelayedSubmission(Task(self.cmd, self.env, self.cwd, self.check))

    def __getstate__(self):
        return {k: v for k, v in self.__dict__.items() if k != "_child"}

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._child = None


def gpus_per_task(args) -> int:
    """The GPUs each task asks for: --gpus-per-task, else 1 when the tasks train on a GPU (--device
    cuda, or auto with a CIFAR data set) and 0 on a CPU (--device cpu, or auto with digits or
    (fashion-)mnist, the CPU-sized data sets: a CPU partition would never start a GPU task)."""
    if args.gpus_per_task is not None:
        return args.gpus_per_task
    device = str(getattr(args, "device", None) or "auto")
    if device.startswith("cuda"):
        return 1
    return int(device == "auto" and getattr(args, "dataset", None) in GPU_DATASETS)


def _cpu_reason(args) -> str:
    device = str(getattr(args, "device", None) or "auto")
    if device == "cpu":
        return "--device cpu"
    return f"--device {device} with {getattr(args, 'dataset', '?')}, a CPU-sized data set"


def _has_checkpoint(args) -> bool:
    return hasattr(args, "checkpoint")


def submitit_params(args, executor: str) -> tuple[dict, dict]:
    """(AutoExecutor parameters, additional #SBATCH options) from the launcher flags."""
    params = {"timeout_min": args.timeout_min or DEFAULT_TIMEOUT_MIN, "name": "islab"}
    gpus = gpus_per_task(args)
    if executor != "slurm":   # a local executor hands out only the GPUs this machine has
        gpus = min(gpus, len(_plan.gpus(args)))
    if gpus:
        params["gpus_per_node"] = gpus
    if args.cpus_per_task:
        params["cpus_per_task"] = args.cpus_per_task
    extra, additional = extra_params(args.slurm_extra or [])
    if executor == "slurm":
        if args.slurm_partition:
            params["slurm_partition"] = args.slurm_partition
        if args.array_parallelism:
            params["slurm_array_parallelism"] = args.array_parallelism
        params.update(extra)
        if additional:
            params["slurm_additional_parameters"] = additional
    return params, additional


def _task_env(args, executor: str, parallel: int) -> dict:
    """Every task of a sweep runs the same torch thread count on a CPU: the proxy cache key holds
    it there (islab.proxies.runtime_key), so tasks on nodes of different sizes still share entries."""
    if args.cpus_per_task:
        return {"OMP_NUM_THREADS": str(args.cpus_per_task)}
    if executor != "slurm":
        if _plan.gpus(args):
            return {}
        return {"OMP_NUM_THREADS": str(max(1, _plan.cores() // parallel))}   # processes here share the cores
    if gpus_per_task(args) == 0:   # a CPU partition without --cpus-per-task: one thread per task
        return {"OMP_NUM_THREADS": "1"}
    return {}


def _array_id(jobs) -> str:
    return str(jobs[0].job_id).split("_")[0]


def start(plan: Plan, args, run) -> bool:
    """Submit (Slurm) or run (local executors) the three stages; a submission that Slurm refuses
    (an unknown partition or account, a bad --slurm-extra) exits 2 with sbatch's last line."""
    if (args.slurm_executor or "slurm") != "slurm":
        return _submit_stages(plan, args, run)
    with _stderr_kept() as said:   # sbatch writes its refusal to our stderr: keep it for the one line
        try:
            return _submit_stages(plan, args, run)
        except (OSError, RuntimeError, ValueError, NameError, subprocess.SubprocessError) as e:
            err = said()
            text = " ".join((err.strip().splitlines()[-1] if err.strip() else str(e)).split())
            raise cli.UsageError(f"--launcher slurm: submission failed: {text[-400:]}") from None


@contextlib.contextmanager
def _stderr_kept():
    """Collect what child processes (sbatch) write to stderr; pass it on unless the block fails."""
    import tempfile

    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        failed = False

        def said() -> str:
            tmp.seek(0)
            return tmp.read().decode(errors="replace")
        try:
            yield said
        except BaseException:
            failed = True
            raise
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            if not failed and said():
                sys.stderr.write(said())


def _submit_stages(plan: Plan, args, run) -> bool:
    submitit = submitit_module()
    executor = args.slurm_executor or "slurm"
    folder = run.path / "launch" / "submitit"
    ex = submitit.AutoExecutor(folder=folder, cluster=executor)
    params, _ = submitit_params(args, executor)
    ex.update_parameters(**params)
    pending = run.pending(plan.keys)
    parallel = args.array_parallelism or (256 if executor == "slurm" else _plan.cores())
    env = _task_env(args, executor, parallel)
    check = executor != "debug"   # a raising task would open pdb in the DebugExecutor
    extra = ["--checkpoint"] if _has_checkpoint(args) else []
    prepare = [Task(plan.command("prepare"), env, check=check)
               for _ in range(min(len(plan.configs), len(pending)))]
    jobs = [Task(plan.command("jobs", [runs.job_id(k)], extra), env, check=check)
            for k in run.pending(plan.tasks())]
    if plan.unplanned:
        jobs.append(Task(plan.command("jobs", [UNPLANNED], extra), env, check=check))
    report = Task(plan.command("report"), env, check=check)
    run.log(f"launcher slurm ({executor}): {len(prepare)} prepare task(s), {len(jobs)} job task(s), 1 report "
            f"task; logs in {folder}")
    if executor == "slurm":   # the dependencies hold the order; this command returns now
        ids = []
        if prepare:
            done = ex.submit_array(prepare)
            ids.append(f"prepare {_array_id(done)} ({len(done)} tasks)")
            ex.update_parameters(slurm_dependency=f"afterany:{_array_id(done)}")
        if jobs:
            done = ex.submit_array(jobs)
            ids.append(f"jobs {_array_id(done)} ({len(done)} tasks, after the previous array)")
            ex.update_parameters(slurm_dependency=f"afterany:{_array_id(done)}")
        rep = ex.submit(report)
        ids.append(f"report {rep.job_id} (after the jobs)")
        args.submitted = rep
        run.log("launcher slurm: submitted " + "; ".join(ids) + f". res.txt is written by the report job; "
                f"progress: ls {run.path}/jobs/*.json | wc -l (of {len(plan.keys)}), squeue --me")
        return True
    # submitit's local executors: no dependencies, so each stage is waited for
    failures = []
    for stage, tasks in (("prepare", prepare), ("jobs", jobs), ("report", [report])):
        failures += _wait_window(ex, tasks, parallel, stage, executor)
    for msg in failures:
        run.log(f"launcher slurm ({executor}): {msg}")
    args.launch_failures = failures
    return True


def _wait_window(ex, tasks, parallel: int, stage: str, executor: str) -> list[str]:
    """Run tasks through a local submitit executor, at most `parallel` at once; the failures."""
    failures, queue, running = [], list(tasks), []
    if executor == "debug":
        for t in queue:
            rc = ex.submit(t).result()
            if rc != 0:
                failures.append(f"{stage} task exited {rc}")
        return failures
    while queue or running:
        while queue and len(running) < parallel:
            running.append(ex.submit(queue.pop(0)))
        time.sleep(0.2)
        for job in [j for j in running if j.done()]:
            running.remove(job)
            err = job.exception()
            if err is not None:
                failures.append(f"{stage} task {job.job_id} failed ({str(err).strip().splitlines()[-1][:300]}; "
                                f"log {job.paths.stderr})")
    return failures


def submit_after(run, args, cmd: list[str], after) -> object:
    """Submit one more task (e.g. the ablation summary) after the jobs `after` (Slurm only)."""
    submitit = submitit_module()
    ex = submitit.AutoExecutor(folder=run.path / "launch" / "submitit", cluster="slurm")
    params, _ = submitit_params(args, "slurm")
    ids = ":".join(str(j.job_id) for j in after)
    ex.update_parameters(**params, **({"slurm_dependency": f"afterany:{ids}"} if ids else {}))
    job = ex.submit(Task(cmd, _task_env(args, "slurm", 1)))
    run.log(f"launcher slurm: submitted {job.job_id} after {ids or 'nothing'}: {_plan.shell(cmd)}")
    return job


