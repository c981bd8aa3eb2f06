"""Small helpers the script tests share: finding and forgetting job files of a run folder, and
counting the trainings a static run's log records.  A script is loaded as a module with islab.loader.load_script."""
import json
import re
from pathlib import Path


def job_files(folder) -> dict:
    """{job file: its key} of a run folder's finished jobs."""
    return {p: json.loads(p.read_text())["key"] for p in sorted(Path(folder, "jobs").glob("*.json"))}


def forget_jobs(folder, pred) -> int:
    """Delete the job files whose key satisfies pred (as if those jobs never finished)."""
    gone = [p for p, key in job_files(folder).items() if pred(key)]
    for p in gone:
        p.unlink()
    return len(gone)


def trainings(folder) -> dict:
    """How often each job was trained: one 'test acc' log line per training, whoever ran it."""
    counts = {}
    for line in (folder / "log.txt").read_text().splitlines():
        m = re.match(r"\[(\S+)\] (\S+) alpha (\S+) seed (\d+): test acc", line)
        if m:
            counts[m.groups()] = counts.get(m.groups(), 0) + 1
    return counts

