"""The run folders this process has open, innermost last: a leaf module (no islab import).

islab.runs adds a RunFolder here when it opens one and removes it on close(); the top-level guard
(islab.cli.guarded: the "run folder:" line, the interrupt line, removing a fresh folder on exit 2)
and the heartbeat (islab.progress) read this list, so neither imports islab.runs, which imports
them.  A run folder here has .path, .progress(), .close() and .discard_if_fresh().
"""
from __future__ import annotations

OPEN: list = []   # open run folders of this process, for the interrupt line

NOTHING_OPEN = "interrupted before a run folder was opened; nothing was written"


def close_since(mark: int) -> None:
    """Forget the run folders opened after the first `mark` (a finished or failed main())."""
    for run in OPEN[mark:]:
        run.close()


def discard_fresh(mark: int = 0) -> list:
    """Remove the run folders this process created that hold no finished job and that no other
    process opened: bad input found after the folder was made (a damaged weights file, a
    solver that cannot start) then leaves nothing behind.  Called by cli.guarded on exit 2."""
    removed = []
    for run in list(reversed(OPEN[mark:])):
        run.close()
        if run.discard_if_fresh():
            removed.append(run.path)
    return removed


def interrupt_line() -> str:
    """What an interrupted script prints: how far the innermost open run folder got."""
    if not OPEN:
        return NOTHING_OPEN
    run = OPEN[-1]
    done, total = run.progress()
    return f"interrupted after {done} of {total} jobs in {run.path}; rerun with --resume to continue"
