"""Small helpers the tests share (import them as `helpers` or `tests.helpers` from any folder):

  * run folders: finding and forgetting the job files of a run folder, and counting how often a
    static run trained each job (its log.txt: see `trainings`);
  * reference implementations the known-answer tests compare the library with
    (`forgetting_from_sequence`), and resetting the library's process-wide heartbeat clock.

A script is loaded as a module with islab.loader.load_script, never from here."""
import json
import re
from pathlib import Path

import numpy as np


def job_files(folder) -> dict:
    """{job file: its key} of a run folder's finished jobs."""
    return {p: json.loads(p.read_text())["key"] for p in sorted(Path(folder, "jobs").glob("*.json"))}


def forget_jobs(folder, pred) -> int:
    """Delete the job files whose key satisfies pred (as if those jobs never finished)."""
    gone = [p for p, key in job_files(folder).items() if pred(key)]
    for p in gone:
        p.unlink()
    return len(gone)


# One line per training of a DR-IS static job, written by whichever process trained it:
# "[<config>] <method> alpha <alpha> seed <seed>: test acc ..." (DR-IS/static.py).
TRAINED = re.compile(r"\[(\S+)\] (\S+) alpha (\S+) seed (\d+): test acc")


def trainings(folder) -> dict:
    """{(config, method, alpha, seed): how many times that job was TRAINED} from log.txt.

    The log is the only record of this count, so it is read here on purpose: a run folder's
    structured records say which jobs FINISHED, not how often each was trained.  A job has one
    record, jobs/<id>.json, replaced atomically by whoever finishes it, and results.csv (and
    runs.read_frame / runs.finished_ids) is derived from those records, so a job trained twice by
    two workers, or again after a kill, still has one record and the same rows.  Counting those
    re-trainings (N workers on one folder, resume after SIGTERM, a requeued Slurm task) is what the
    tests that call this check; every training appends its line to log.txt, whoever ran it."""
    counts = {}
    for line in (Path(folder) / "log.txt").read_text().splitlines():
        m = TRAINED.match(line)
        if m:
            counts[m.groups()] = counts.get(m.groups(), 0) + 1
    return counts


def forgetting_from_sequence(correct) -> np.ndarray:
    """Reference forgetting counter on a (T presentations, N) boolean array of correct flags:
    the number of correct -> wrong transitions per example; an example never learned gets the
    largest count among the learned ones plus one (islab.scores.ForgettingTracker's rule)."""
    c = np.asarray(correct, dtype=bool)
    ev = (c[:-1] & ~c[1:]).sum(axis=0).astype(np.float64)
    never = ~c.any(axis=0)
    if never.any():
        ev[never] = (ev[~never].max() if (~never).any() else 0.0) + 1.0
    return ev


def reset_heartbeat() -> None:
    """Start islab.progress's process-wide heartbeat clock again at its next tick."""
    from islab import progress

    progress._CLOCK.update(start=None, next=None)
