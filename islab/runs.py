"""Run folders: provenance, atomic writes, tidy results and resumable sweeps.

A run folder holds
  config.json    the parsed arguments (everything that changes results)
  cmd.txt        the exact command line
  env.json       seed, git commit (and whether the tree was dirty), package versions, device
  log.txt        the progress log (what was printed)
  results.csv    tidy long format: one row per (job keys..., metric, value) [, epoch]
  res.txt        the human-readable tables, rewritten atomically after each job
  done.json      the keys of finished jobs; `--resume` skips them
plus plots and per-example arrays.  Every file is written to a temporary name and moved into
place, so an interrupted run never leaves a half-written file, and the folder is only created
after the arguments were validated (invalid input leaves nothing behind).
"""
from __future__ import annotations

import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
RESULTS_ROOT = REPO_ROOT / "results"
PACKAGES = ("numpy", "scipy", "pandas", "matplotlib", "seaborn", "torch", "torchvision",
            "scikit-learn", "tqdm")


# ---------------------------------------------------------------- atomic writes


def atomic_write_bytes(path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def atomic_write_json(path, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def atomic_save_npz(path, **arrays) -> None:
    import io

    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    atomic_write_bytes(path, buf.getvalue())


def atomic_savefig(fig, path, **kwargs) -> None:
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format=Path(path).suffix.lstrip(".") or "png", **kwargs)
    atomic_write_bytes(path, buf.getvalue())


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    if type(o).__module__ == "torch" and type(o).__name__ == "device":  # args.torch_device (experiment.resolve)
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o)}")


# ---------------------------------------------------------------- provenance


def git_commit() -> dict:
    def git(*args):
        try:
            return subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True,
                                  timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    return {"commit": git("rev-parse", "HEAD") or "unknown",
            "dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}


def package_versions() -> dict:
    from importlib import metadata

    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def provenance(seed=None) -> dict:
    env = {"seed": seed, "git": git_commit(), "packages": package_versions(),
           "platform": platform.platform(), "argv": sys.argv}
    if "torch" in sys.modules:
        torch = sys.modules["torch"]
        env["cuda"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
        env["torch_threads"] = torch.get_num_threads()
    return env


def run_name(*parts) -> str:
    """A folder name from the parameters that change results, e.g. run_name('digits', 's0')."""
    return "-".join(str(p).replace("/", "_").replace(" ", "") for p in parts if p not in (None, ""))


# ---------------------------------------------------------------- the run folder


class RunFolder:
    """One run folder.  Create it only after validating the arguments.

    `resume=False` on a folder that already holds finished jobs is refused (no silent
    overwrite); `resume=True` continues it and `is_done(key)` tells which jobs to skip.  A
    resumed run must have the same config (minus the resume flag itself).
    """

    def __init__(self, path, config: dict, resume: bool = False, seed=None, quiet=False):
        self.path = Path(path)
        self.quiet = quiet
        config = {k: v for k, v in config.items() if k != "resume"}
        config = json.loads(json.dumps(config, default=_json_default))
        done_file = self.path / "done.json"
        if self.path.exists() and any(self.path.iterdir()):
            if not resume:
                raise FileExistsError(
                    f"run folder {self.path} exists; pass --resume to continue it or --name for a new one")
            old = json.loads((self.path / "config.json").read_text()) if (self.path / "config.json").exists() else config
            if old != config:
                diff = sorted(k for k in set(old) | set(config) if old.get(k) != config.get(k))
                raise FileExistsError(f"cannot resume {self.path}: config differs in {', '.join(diff)}")
        self.path.mkdir(parents=True, exist_ok=True)
        self.config = config
        self.done = json.loads(done_file.read_text()) if done_file.exists() else []
        self.rows = self._read_rows()
        atomic_write_json(self.path / "config.json", config)
        cmd = " ".join(shlex.quote(a) for a in [sys.executable.rsplit("/", 1)[-1], *sys.argv])
        with open(self.path / "cmd.txt", "a") as f:  # every invocation, resumes included
            f.write(cmd + "\n")
        atomic_write_json(self.path / "env.json", provenance(seed))

    # -- logging
    def log(self, msg: str) -> None:
        if not self.quiet:
            print(msg, flush=True)
        with open(self.path / "log.txt", "a") as f:
            f.write(msg + "\n")

    # -- jobs and results
    @staticmethod
    def _key(key: dict) -> str:
        return json.dumps(key, sort_keys=True, default=_json_default)

    def is_done(self, key: dict) -> bool:
        return self._key(key) in self.done

    def _read_rows(self):
        f = self.path / "results.csv"
        if not f.exists():
            return []
        import pandas as pd

        return pd.read_csv(f).to_dict("records")

    def finish_job(self, key: dict, rows: list[dict]) -> None:
        """Record a finished job: its rows join results.csv, its key joins done.json.

        Both files are rewritten atomically; results first, so a crash between the two writes
        only means the job is redone (its rows are then replaced, not duplicated).
        """
        import pandas as pd

        k = self._key(key)
        self.rows = [r for r in self.rows if not _same_key(r, key)]
        self.rows.extend({**key, **r} for r in rows)
        atomic_write_text(self.path / "results.csv", pd.DataFrame(self.rows).to_csv(index=False))
        if k not in self.done:
            self.done.append(k)
        atomic_write_json(self.path / "done.json", self.done)

    def frame(self):
        import pandas as pd

        return pd.DataFrame(self.rows)

    def write_text(self, name: str, text: str) -> None:
        atomic_write_text(self.path / name, text)

    def save_arrays(self, name: str, **arrays) -> None:
        atomic_save_npz(self.path / name, **arrays)

    def savefig(self, fig, name: str, **kwargs) -> None:
        atomic_savefig(fig, self.path / name, **kwargs)


def _same_key(row: dict, key: dict) -> bool:
    for c, v in key.items():
        rv = row.get(c)
        if isinstance(v, float) or isinstance(rv, float):
            try:
                if not np.isclose(float(rv), float(v)):
                    return False
            except (TypeError, ValueError):
                return False
        elif str(rv) != str(v):
            return False
    return True


def open_run(path, args, seed=None, quiet=False) -> RunFolder:
    """Create or resume the run folder for parsed args; errors exit 2 with one line."""
    from islab.cli import fail

    try:
        return RunFolder(path, vars(args), resume=getattr(args, "resume", False), seed=seed, quiet=quiet)
    except FileExistsError as e:
        fail(str(e))


def mean_std_table(df, by: list[str], metrics: list[str], fmt="{:.2f}") -> str:
    """A fixed-width text table of mean +- std over seeds (rows: `by`, columns: metrics).

    df is tidy (columns ..., metric, value).  std is the sample std (ddof=1); n is shown.
    """
    import pandas as pd

    d = df[df["metric"].isin(metrics)]
    g = d.groupby(by + ["metric"], sort=False)["value"]
    stats = g.agg(["mean", "std", "count"]).reset_index()
    lines = []
    head = by + [m for m in metrics] + ["n"]
    rows = []
    for keys, sub in stats.groupby(by, sort=False):
        keys = keys if isinstance(keys, tuple) else (keys,)
        cells = [str(k) for k in keys]
        n = 0
        for m in metrics:
            s = sub[sub["metric"] == m]
            if len(s) == 0:
                cells.append("-")
                continue
            mu, sd, n = s["mean"].iloc[0], s["std"].iloc[0], int(s["count"].iloc[0])
            cells.append(fmt.format(mu) + (" +- " + fmt.format(sd) if pd.notna(sd) else ""))
        cells.append(str(n))
        rows.append(cells)
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
    lines.append("  ".join(h.ljust(w) for h, w in zip(head, widths)))
    lines.append("  ".join("-" * w for w in widths))
    for r in rows:
        lines.append("  ".join(c.ljust(w) for c, w in zip(r, widths)))
    return "\n".join(lines)
