"""The one sweep helper: a script describes its configurations and how to run one job; sweep()
does the rest.

    configs = [Config(tag, keys, prepare, jobs), ...]   # one per noise configuration
    return sweep(__file__, args, argv, path, configs, run_job, report)

A configuration's `prepare` computes what its jobs share (noise draw, proxy runs, RHO-LOSS's
irreducible model; cached on disk, so a second process reads it back), `jobs` lists its jobs in
run order, and `run_job(prepared, job, checkpoint)` trains one and returns its rows.  Behind that
one call (islab.launch, islab.runs): the run folder, --dry-run, --resume (a finished job is never
run again), job claims (N workers or Slurm tasks on one folder run each job once), the stages of
the local and Slurm launchers (prepare -> jobs -> report), per-epoch checkpoints (--checkpoint),
res.txt and plots written under the folder lock, and the exit status of failed workers.
"""
from __future__ import annotations

import functools
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from islab import launch, runs


@dataclass
class Job:
    """One job of a sweep, as its script describes it."""
    key: dict                 # its identity: jobs/<id>.json and the key columns of its results rows
    name: str                 # how the log names it, e.g. "[clean] dris seed 0"
    checkpoint: str           # its training-state file under checkpoints/ (--checkpoint), e.g. clean-dris-s0
    planned: bool = True      # False: the key is learnt from the prerequisites (static's aum_tsr, cleanlab)
    data: Any = None          # what run_job needs beside the key (static: the kept ids and scores)


@dataclass
class Outcome:
    """What run_job returns: the job's record and its line in the log."""
    rows: list                # tidy result rows (the run folder adds the key columns)
    line: str                 # one log line, written once the job is recorded
    files: tuple = ()         # files recorded (SHA-256) with the job: a report verifies them
    trained: bool = True      # False: recorded without training (its proxies or attacker diverged)


@dataclass
class Config:
    """One configuration of a sweep (a noise setting): the jobs that share one set of prerequisites."""
    tag: str                              # e.g. targeted0.25
    keys: list                            # its job keys known before anything is prepared
    prepare: Callable[[Any, list], Any]   # (run folder, pending keys) -> the prerequisites its jobs share
    jobs: Callable[[Any], list]           # prerequisites -> [Job] in run order
    learns_jobs: bool = False             # jobs() may return keys the plan cannot name (planned=False)
    report_needs_prepare: bool = False    # the report reads what prepare returns: prepare it even when done
    # after its jobs, in a process that writes the report, under the folder lock: (run folder,
    # prerequisites, trained: this process trained one of them), e.g. to refresh the figures
    after: Callable[[Any, Any, bool], None] | None = None


def sweep(script, args, argv, path: Path, configs: list[Config], run_job: Callable[[Any, Any, Job, Any], Outcome],
          report: Callable[[Any, bool], None], run_config=None, header: Callable[[runs.RunFolder], str] | None = None,
          seed: int | None = None):
    """Run every job of `configs` in the run folder `path` as args' launcher, stage and job
    selection say (islab.launch), and write the report; returns the folder (the exit status of
    --dry-run).  run_job(run folder, prerequisites, job, checkpoint file or None) trains one job;
    report(run folder, final) writes res.txt (and, when final, the figures) from the job files,
    under the folder lock.  run_config: what config.json records (default args); header(run): the log line
    that opens the run; seed: the seed env.json records (default the first of args.seed_list)."""
    plan = launch.Plan(Path(script), launch.user_argv(argv), path, [k for c in configs for k in c.keys],
                       [c.tag for c in configs], unplanned=any(c.learns_jobs for c in configs))
    if args.dry_run:
        return launch.dry_run(plan, args)
    run = runs.open_run(path, args if run_config is None else run_config,
                        seed=args.seed_list[0] if seed is None else seed, quiet=args.quiet)
    if header is not None:
        run.log(header(run))
    if launch.delegate(plan, args, run):   # submitted to Slurm, or the submitit executors reported
        return run.path
    role = launch.Role(args)
    role.prepare_pass(run, [(c.tag, c.keys, functools.partial(c.prepare, run, c.keys)) for c in configs])
    if role.stage == "prepare":
        return run.path
    t_start = time.time()
    for c in configs:
        done = [run.is_done(k) for k in c.keys]   # one look at each job record
        todo = [k for k, d in zip(c.keys, done) if not d and role.runs(k)]
        finished = sum(done)
        if finished and role.trains:
            run.log(f"[{c.tag}] {finished} finished job{'s' if finished > 1 else ''} skipped (--resume)")
        learnt = c.learns_jobs and role.runs({"config": c.tag}, planned=False)
        if not (todo or learnt or (c.report_needs_prepare and role.wants(run, c.keys))):
            continue
        with role.prepared(run, c.tag):   # waits for a process that prepares it, then reads its cache
            prepared = c.prepare(run, todo)
        trained = False
        for job in c.jobs(prepared):
            if not role.runs(job.key, planned=job.planned) or job.planned and run.is_done(job.key):
                continue   # another process's job, or a finished one (counted above)
            with run.claim(job.key) as claimed:
                if claimed is None:
                    run.log(f"{job.name}: " + ("done, skipped (--resume)" if run.is_done(job.key)
                                               else "running in another worker, skipped"))
                    continue
                ckpt = launch.checkpoint_file(run, args, job.checkpoint)
                launch.resuming(run, ckpt, job.name)
                out = run_job(run, prepared, job, ckpt)
                claimed.finish(out.rows, files=list(out.files))
                launch.drop_checkpoint(ckpt)   # only once recorded: a kill before resumes from the last epoch
                trained = trained or out.trained
            run.log(out.line)
            if role.reports:
                with run.locked():
                    report(run, False)
        if c.after is not None and role.reports:
            with run.locked():
                c.after(run, prepared, trained)
    if role.reports:
        with run.locked():   # from every worker's job files
            report(run, True)
    run.log(f"done in {time.time() - t_start:.1f}s -> {run.path}")
    launch.finish(args)
    return run.path


def record_facts(run, name: str, tag: str, facts: dict) -> dict:
    """Merge one configuration's facts into the run folder's JSON file `name` (read, update, atomic
    write under the folder lock: every worker adds its configurations); returns the whole file.  A
    damaged or hand-edited file counts as empty and is rewritten."""
    with run.locked():
        infos = read_facts(run.path / name)
        infos[tag] = {**infos.get(tag, {}), **facts}
        runs.atomic_write_json(run.path / name, infos)
    return infos


def read_facts(path) -> dict:
    """A facts file of record_facts ({} when missing or damaged; entries that are not dicts dropped)."""
    try:
        d = json.loads(Path(path).read_text()) if Path(path).exists() else {}
    except (ValueError, OSError):
        return {}
    return {k: v for k, v in d.items() if isinstance(v, dict)} if isinstance(d, dict) else {}
