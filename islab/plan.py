"""A sweep as the launchers see it: the plan (script, argv, run folder, job list), the launcher
flags a process the launcher starts drops, and the machine's cores and GPUs.

islab.launch (inline and local launchers, the flags) and islab.slurm (--launcher slurm) both
build on this module; launch re-exports every name here (launch.Plan, launch.UNPLANNED, ...),
so scripts keep using launch alone.
"""
from __future__ import annotations

import os
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path

UNPLANNED = "unplanned"                   # --only-jobs token: the jobs the planned list cannot name
# flags that only make sense with --launcher slurm (dest -> flag, for the error line)
SLURM_FLAGS = {"slurm_partition": "--slurm-partition", "timeout_min": "--timeout-min",
               "gpus_per_task": "--gpus-per-task", "cpus_per_task": "--cpus-per-task",
               "array_parallelism": "--array-parallelism", "slurm_extra": "--slurm-extra",
               "slurm_executor": "--slurm-executor"}
DEFAULT_TIMEOUT_MIN = 1440                # a task's Slurm time limit (minutes) unless --timeout-min


@dataclass
class Plan:
    """A sweep as the launcher sees it: the script and its argv (re-run by every process it
    starts), the run folder, the job list and the configurations whose prerequisites are shared."""
    script: Path
    argv: list
    path: Path
    keys: list
    configs: list = field(default_factory=list)
    unplanned: bool = False      # more jobs appear once the prerequisites are known (one extra task)
    task_keys: list | None = None   # the jobs that get a Slurm task (default: all; DL-correlation's
    #                                 comparisons are done by whoever finishes a replicate's last model)

    def tasks(self) -> list:
        return self.keys if self.task_keys is None else self.task_keys

    def command(self, stage: str, only=None, extra=()) -> list[str]:
        """The command line of one process the launcher starts: the user's arguments without the
        launcher's own, then the folder, --resume and the stage (the last value of a flag wins)."""
        cmd = [sys.executable, str(Path(self.script).resolve()), *strip_launcher_flags(self.argv),
               "--run-dir", str(self.path.resolve()),
               "--resume", "--launcher", "inline", "--stage", stage]
        if only:
            cmd += ["--only-jobs", ",".join(only)]
        return cmd + list(extra)


LAUNCHER_VALUE_FLAGS = ("--launcher", "--workers", "--stage", "--only-jobs", "--run-dir", *SLURM_FLAGS.values())


def strip_launcher_flags(argv) -> list[str]:
    """argv without --dry-run and the launcher's flags (written in full; an abbreviation stays and
    is overridden by the flags the launcher appends, or ignored outside stage all)."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
            continue
        if a == "--dry-run" or any(a.startswith(f + "=") for f in LAUNCHER_VALUE_FLAGS):
            continue
        if a in LAUNCHER_VALUE_FLAGS:
            skip = True
            continue
        out.append(a)
    return out


def shell(cmd, env=None) -> str:
    pre = " ".join(f"{k}={shlex.quote(str(v))}" for k, v in (env or {}).items())
    return (pre + " " if pre else "") + " ".join(shlex.quote(str(c)) for c in cmd)


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:   # not Linux
        return os.cpu_count() or 1


def gpus(args) -> list[str]:
    """The GPUs this process may hand out (its CUDA_VISIBLE_DEVICES, else all), [] on CPU runs."""
    dev = getattr(args, "torch_device", None)
    if dev is None or dev.type != "cuda":
        return []
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible:
        return [g.strip() for g in visible.split(",") if g.strip()]
    import torch

    return [str(i) for i in range(torch.cuda.device_count())]
