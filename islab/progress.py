"""Progress of long work: one line per finished job of a run folder, with the elapsed time and
an estimate of the time left, e.g.

    [progress] 12/30 jobs (40 %), elapsed 1:05, about 1:38 left; last: config=clean method=dris seed=2

Shown by default in a terminal; quiet when stdout is not a terminal (a file, a pipe, a Slurm
log) and in CI (the CI environment variable is set).  ISLAB_PROGRESS=1 forces the lines on,
ISLAB_PROGRESS=0 off.  They go to stdout only, never to log.txt (they hold wall-clock times).
`RunFolder.finish_job` calls `report` after every job, so every script gets them without code
of its own; the counts come from `RunFolder.progress()` (the run folder knows done / total).
"""
from __future__ import annotations

import os
import sys


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
