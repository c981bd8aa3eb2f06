"""Small helpers the script tests share: finding and forgetting job files of a run folder, and
counting the trainings a static run's log records, loading a script as a module."""
import importlib.util
import json
import sys
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


def load_script(path, name: str):
    """A script (e.g. DR-IS/claims.py) imported as module `name`; registered in sys.modules
    first, because dataclasses look their module up there."""
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod
