"""Progress of long work: one line per finished job of a run folder, with the elapsed time and
an estimate of the time left, e.g.

    [progress] 12/30 jobs (40 %), elapsed 1:05, about 1:38 left; last: config=clean method=dris seed=2

Shown by default in a terminal; quiet when stdout is not a terminal (a file, a pipe, a Slurm
log) and in CI (the CI environment variable is set).  ISLAB_PROGRESS=1 forces the lines on,
ISLAB_PROGRESS=0 off.  They go to stdout only, never to log.txt (they hold wall-clock times).
`RunFolder.finish_job` calls `report` after every job, so every script gets them without code
of its own; the counts come from `RunFolder.progress()` (the run folder knows done / total).

Where stderr is not a terminal (a pipe, a log file, a Slurm log) a tqdm bar would be garbage
and a job can run for hours, so the training loops print a plain heartbeat line to stderr
instead, at most every 60 seconds (ISLAB_HEARTBEAT=<seconds> sets the interval, 0 turns it off):

    [heartbeat] [targeted0.25] dris s0: epoch 3/160, step 120/391; 0:05:12 elapsed; run 4/140 jobs done

The script's own last line is always the run folder (cli.guarded prints it, --quiet or not).
"""
from __future__ import annotations

import os
import sys
import time

from islab import open_runs

HEARTBEAT_S = 60.0   # default seconds between heartbeat lines where stderr is not a terminal


def enabled(stream=None) -> bool:
    """True when progress lines should be printed to `stream` (default stdout)."""
    flag = os.environ.get("ISLAB_PROGRESS", "").strip()
    if flag in ("0", "1"):
        return flag == "1"
    if os.environ.get("CI", "").strip() not in ("", "0", "false"):
        return False
    stream = sys.stdout if stream is None else stream
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def clock(seconds: float) -> str:
    """1:02:03 or 2:03 (hours only when needed)."""
    s = int(round(max(seconds, 0.0)))
    h, m, s = s // 3600, s // 60 % 60, s % 60
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def line(done: int, total: int, elapsed: float, finished_here: int, label: str = "") -> str:
    """The progress line: the time left is the mean time per job finished by this process times
    the jobs left (unknown before the first job of this process finishes)."""
    pct = f" ({100 * done / total:.0f} %)" if total else ""
    left = total - done
    if left <= 0:
        eta = "done"
    elif finished_here > 0:
        eta = f"about {clock(elapsed / finished_here * left)} left"
    else:
        eta = "time left unknown"
    return f"[progress] {done}/{total} jobs{pct}, elapsed {clock(elapsed)}, {eta}" + (f"; last: {label}" if label else "")


def key_label(key: dict) -> str:
    return " ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in key.items())


def report(done: int, total: int, elapsed: float, finished_here: int, key: dict | None = None, stream=None) -> bool:
    """Print the line when `enabled`; returns whether it was printed."""
    stream = sys.stdout if stream is None else stream
    if not enabled(stream):
        return False
    stream.write(line(done, total, elapsed, finished_here, key_label(key or {})) + "\n")
    stream.flush()
    return True


def heartbeat_interval(stream=None) -> float:
    """Seconds between heartbeat lines on `stream` (default stderr): ISLAB_HEARTBEAT if set (0 =
    off), else HEARTBEAT_S where the stream is not a terminal and 0 (off) in a terminal."""
    flag = os.environ.get("ISLAB_HEARTBEAT", "").strip()
    if flag:
        try:
            return max(float(flag), 0.0)
        except ValueError:
            return HEARTBEAT_S
    stream = sys.stderr if stream is None else stream
    try:
        return 0.0 if stream.isatty() else HEARTBEAT_S
    except (AttributeError, ValueError):
        return HEARTBEAT_S


class Heartbeat:
    """A plain progress line for a training loop, at most every `every` seconds (heartbeat_interval
    by default; 0 = never).  The clock is the process's, not the loop's: a sweep of many short
    training runs beats every `every` seconds too (each line names the run it interrupts).
    tick() costs one clock read between lines."""

    def __init__(self, desc: str, every: float | None = None, stream=None):
        self.desc, self.stream = desc, stream
        self.every = heartbeat_interval(stream) if every is None else float(every)

    def tick(self, epoch: int, epochs: int, step: int, steps: int) -> bool:
        """epoch and step 1-based.  Prints the line when it is due; returns whether it did."""
        if self.every <= 0:
            return False
        now = time.monotonic()
        if _CLOCK["start"] is None:
            _CLOCK["start"], _CLOCK["next"] = now, now + self.every
        if now < _CLOCK["next"]:
            return False
        _CLOCK["next"] = now + self.every
        stream = sys.stderr if self.stream is None else self.stream
        stream.write(f"[heartbeat] {self.desc}: epoch {epoch}/{epochs}, step {step}/{steps}; "
                     f"{clock(now - _CLOCK['start'])} elapsed{_run_progress()}\n")
        stream.flush()
        return True


_CLOCK = {"start": None, "next": None}   # the process's heartbeat clock: first tick, next line due (s)


def _run_progress() -> str:
    """'; run 4/140 jobs done' for the innermost open run folder of this process ('' if none)."""
    if not open_runs.OPEN:
        return ""
    try:
        done, total = open_runs.OPEN[-1].progress()
    except OSError:
        return ""
    return f"; run {done}/{total} jobs done"
