"""Run folders: provenance, atomic writes, and sweeps that N processes can share and resume.

A run folder holds
  config.json    the settings that change results (the parsed arguments minus MECHANICS)
  cmd.txt        every command line that opened the folder (resumes and workers included)
  env.json       seed, git commit (and whether the tree was dirty), package versions, device,
                 and the MECHANICS flags of the last invocation
  log.txt        the progress log (what was printed)
  jobs/<id>.json one file per FINISHED job: its key, its tidy rows, the row count, a SHA-256
                 of the record, the hash of config.json it ran under, and the SHA-256 of every
                 file it wrote (`files`).  Written atomically, only by the worker that claimed it.
  results.csv    DERIVED: the rows of every valid job file (tidy long format), rebuilt on
                 every open and after every job
  res.txt        DERIVED by the script from the job files (rewritten at the end of every run)
  plan.json      the ids of the jobs planned so far (finished when each has a valid job file)
plus plots and per-example arrays.

Guarantees (tests/run/test_runs.py, tests/smoke/test_bad_inputs.py):
  - Every file is written to a temporary name `.<name>.<host>.<pid>.<random>.tmp` and renamed
    into place, so a kill never leaves a half-written file; orphan temporary files of dead
    processes are removed on the next open (those of live processes are left alone).
  - A job file that does not parse, whose checksum, row count, key or config hash does not
    match, or whose files changed, is never trusted: it is logged, moved to jobs/<id>.damaged
    and the job runs again.  A damaged or missing results.csv is rebuilt from the job files.
    A damaged config.json, or a missing one next to finished jobs, stops with exit 2 (the old
    results are never relabelled with new settings).
  - Jobs are claimed under an OS lock (fcntl.flock on jobs/<id>.lock, held while the job runs;
    a killed process releases it).  A claimed job runs once; a job another process holds is
    skipped; a finished job is never lost.  So N processes started with --resume on the same
    folder (GPUs of one node, Slurm array tasks on a shared file system with working flock:
    local disks, NFSv4, Lustre mounted with -o flock, GPFS) split its jobs between them.
  - Folder-level writes (config check and creation, results.csv, res.txt) happen under the
    folder lock `.lock`, so the last report written reflects every finished job.

The API a script (or a launcher pointing workers at an existing folder) uses:
    run = open_run(path, args, seed)          # create or resume; bad folders exit 2, one line
    run.plan(keys)                            # declare the job list (order of results.csv)
    with run.claim(key) as job:               # None: finished, or another worker runs it
        if job is not None:
            job.finish(rows, files=[...])     # atomic job file; results.csv re-derived
    with run.locked():                        # derived files from every worker's jobs
        write_report(run.frame())
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import platform
import re
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from islab import progress
from islab.cli import UsageError
from islab.open_runs import close_since, discard_fresh, interrupt_line  # noqa: F401  (re-exported)
from islab.open_runs import OPEN as _ACTIVE

REPO_ROOT = Path(__file__).resolve().parent.parent
RESULTS_ROOT = REPO_ROOT / "results"
PACKAGES = ("numpy", "scipy", "pandas", "matplotlib", "seaborn", "torch", "torchvision",
            "scikit-learn", "tqdm", "cleanlab", "submitit")
# Flags that never change a number: left out of config.json (so --resume may change them) and
# of the default run names.  ONE list for every script.
MECHANICS = frozenset({
    "name", "resume", "quiet", "progress", "results_root", "cache_dir", "device", "torch_device",
    "data_dir", "download", "weights_dir", "compile", "checkpoint", "no_plots", "feature_batch",
    # the launcher's (islab/launch.py): how the jobs are spread over processes, never what they compute
    "launcher", "workers", "slurm_partition", "timeout_min", "gpus_per_task", "cpus_per_task",
    "array_parallelism", "slurm_extra", "slurm_executor", "dry_run", "stage", "only_jobs", "run_dir",
    "export_dynamics", "export_probs"})
JOB_VERSION = 1
PLAN_FILE = "plan.json"       # the ids of every job planned in the folder (RunFolder.plan)
ORPHAN_AGE_S = 3600.0          # a temporary file of another host older than this is an orphan
SYSTEM_ROOTS = ("/proc", "/sys", "/dev")
HOST = re.sub(r"[^A-Za-z0-9_-]", "_", socket.gethostname().split(".")[0]) or "host"

# ---------------------------------------------------------------- atomic writes


@contextlib.contextmanager
def naming(path):
    """Give an OSError raised inside the block the file name `path` when it has none: a failed
    write or fsync says only 'File too large' or 'Invalid argument' (cli.guarded prints the name)."""
    try:
        yield
    except OSError as e:
        if e.filename is None and e.errno is not None:
            raise OSError(e.errno, e.strerror or str(e), str(path)) from None
        raise


def atomic_write_bytes(path, data: bytes) -> None:
    atomic_write_with(path, lambda f: f.write(data))


def atomic_write_with(path, write, verified: bool = False) -> None:
    """write(binary file) into a temporary file of path's folder, then renamed into place; with
    verified, the temporary file's SHA-256 is recorded beside path first (digest_file, intact)."""
    with naming(path):
        _atomic_write(Path(path), write, verified)


def current_umask() -> int:
    """The process umask, read without changing it where Linux shows it (/proc/self/status);
    elsewhere set and restored at once."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _atomic_write(path: Path, write, verified: bool) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # host and pid in the name: the next open can tell an orphan from a live writer's file
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{HOST}.{os.getpid()}.", suffix=".tmp")
    try:
        # mkstemp makes the file 0600; a result file gets the mode open() would give it (0644 under
        # umask 022), like cmd.txt and log.txt, so others on a shared machine can read the run
        os.fchmod(fd, 0o666 & ~current_umask())
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        if verified:
            atomic_write_text(digest_file(path), file_sha256(tmp) + "\n")
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


# The small text files of a run folder that make its results of record (committed to git; no
# checkpoints, caches, arrays or figures): enough to recompute every table and test of its report.
RECORD_FILES = ("config.json", "cmd.txt", "env.json", "results.csv", "res.txt")


def copy_record(folder, dest) -> list[Path]:
    """Copy the RECORD_FILES that `folder` holds into `dest` (created), each written atomically."""
    folder, dest = Path(folder), Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    out = []
    for name in RECORD_FILES:
        if (folder / name).exists():
            atomic_write_bytes(dest / name, (folder / name).read_bytes())
            out.append(dest / name)
    return out


def publish_text(path, text: str) -> None:
    """atomic_write_text for a file of the repository (a README, REPRODUCTION.md): a write that
    fails part-way leaves the previous version whole; readable by all, as git checks files out."""
    atomic_write_text(path, text)
    os.chmod(path, 0o644)


def atomic_write_json(path, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def atomic_save_npz(path, **arrays) -> None:
    atomic_write_bytes(path, _npz_bytes(**arrays))


def _npz_bytes(**arrays) -> bytes:
    import io

    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return buf.getvalue()


def atomic_savefig(fig, path, **kwargs) -> None:
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format=Path(path).suffix.lstrip(".") or "png", **kwargs)
    atomic_write_bytes(path, buf.getvalue())


def _json_default(o):
    if isinstance(o, np.bool_):
        return bool(o)
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


def _plain(obj):
    """obj as plain JSON types (numpy scalars, paths, tuples converted), NaN kept."""
    return json.loads(json.dumps(obj, default=_json_default))


def _canon(obj) -> str:
    return json.dumps(obj, sort_keys=True, default=_json_default)


def _sha(text: str, n: int | None = None) -> str:
    h = hashlib.sha256(text.encode()).hexdigest()
    return h[:n] if n else h


def file_sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# ---------------------------------------------------------------- files read back, verified
#
# A file that a later stage or process reads back instead of computing it (proxy, attacker and
# feature cache entries, the online run's irreducible-loss file) has its SHA-256 recorded beside
# it, <name>.sha256: np.load checks a member's zip CRC only once it has read it to its end, and
# nothing of the zip's headers, so damage was either read as numbers or silently rebuilt over
# (the evidence gone).  The digest is written first, the file second (both atomic): a
# reader that does not hold the writer's lock sees either no file or the file with its digest.


def digest_file(path) -> Path:
    return Path(path).with_name(Path(path).name + ".sha256")


def save_npz_verified(path, **arrays) -> None:
    """atomic_save_npz with its SHA-256 recorded (atomic_write_with, verified)."""
    data = _npz_bytes(**arrays)
    atomic_write_with(path, lambda f: f.write(data), verified=True)


def intact(path, warn=None) -> bool:
    """True when `path` exists and holds the bytes whose SHA-256 was recorded when it was written.
    One that does not (damaged since, or written without a digest) is moved aside (move_aside,
    one warning through `warn`, else stderr) and False returned: the caller computes it again."""
    path = Path(path)
    if not path.is_file():
        return False
    try:
        want = digest_file(path).read_text().strip()
    except FileNotFoundError:
        want = None
    try:
        with naming(path):
            if want is not None and file_sha256(path) == want:
                return True
        move_aside(path, "SHA-256 mismatch" if want else "no SHA-256 recorded", "computed again", warn=warn)
    except FileNotFoundError:   # another process moved it aside first
        return False
    with contextlib.suppress(FileNotFoundError):
        digest_file(path).unlink()
    return False


def move_aside(path, why: str, then: str, what: str = "file", warn=None) -> Path:
    """Rename an unusable file to <name>.corrupt-<timestamp>-<pid> (kept for inspection, never read
    again) and say so in one line naming both: `warn(line)`, else stderr."""
    path = Path(path)
    dst = path.with_name(f"{path.name}.corrupt-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}")
    os.replace(path, dst)
    line = f"warning: {what} {path} is unusable ({why}): moved to {dst.name}; {then}"
    (warn or (lambda s: sys.stderr.write(s + "\n")))(line)
    return dst


# ---------------------------------------------------------------- orphan temporary files


def _tmp_owner(name: str):
    """(host, pid) from a temporary name `.<name>.<host>.<pid>.<random>.tmp`, else None."""
    parts = name[:-len(".tmp")].rsplit(".", 3)
    if len(parts) == 4 and parts[2].isdigit():
        return parts[1], int(parts[2])
    return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:   # someone else's live process
        return True
    return True


def remove_orphan_tmp(folder, now: float | None = None) -> list[Path]:
    """Delete temporary files (*.tmp) under `folder` left by killed writers; return them.

    A file of this host is an orphan when its pid is dead; one of another host (shared file
    system) when it is older than ORPHAN_AGE_S, as is an older temporary name without an owner.
    """
    now = time.time() if now is None else now
    removed = []
    for p in Path(folder).rglob("*.tmp"):
        if not p.is_file():
            continue
        owner = _tmp_owner(p.name)
        try:
            old = now - p.stat().st_mtime > ORPHAN_AGE_S
        except FileNotFoundError:   # renamed into place meanwhile
            continue
        orphan = (not _alive(owner[1])) if owner and owner[0] == HOST else old
        if orphan:
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
                removed.append(p)
    return removed


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
           "platform": platform.platform(), "argv": sys.argv, "host": socket.gethostname(),
           "pid": os.getpid()}
    if "torch" in sys.modules:
        torch = sys.modules["torch"]
        env["cuda"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
        env["torch_threads"] = torch.get_num_threads()
    return env


def run_name(*parts) -> str:
    """A folder name from the parameters that change results, e.g. run_name('digits', 's0')."""
    return "-".join(str(p).replace("/", "_").replace(" ", "") for p in parts if p not in (None, ""))


def result_config(config) -> dict:
    """The settings that change results: a Namespace or dict minus MECHANICS, as plain JSON."""
    d = vars(config) if hasattr(config, "__dict__") and not isinstance(config, dict) else dict(config)
    return _plain({k: v for k, v in d.items() if k not in MECHANICS})


def config_digest(config, n: int = 6) -> str:
    """A short hash of result_config(config): the last part of default run names."""
    return _sha(_canon(result_config(config)), n)


# ---------------------------------------------------------------- folders and locks


def _under_system_root(path: Path) -> str | None:
    resolved = str(Path(os.path.abspath(path)))
    for root in SYSTEM_ROOTS:
        if resolved == root or resolved.startswith(root + "/"):
            return root
    return None


def make_dirs(path, what: str) -> list[Path]:
    """Create `path` and missing parents; return the folders created (for rollback).

    Bad places raise UsageError with one line: under /proc, /sys or /dev, below a file, or
    where a folder cannot be created (read-only, no permission); nothing is left behind."""
    path = Path(os.path.abspath(os.path.expanduser(str(path))))
    root = _under_system_root(path)
    if root:
        raise UsageError(f"{what} {path} lies under {root}, which holds no files of ours")
    missing, p = [], path
    while not p.exists():
        if p.is_symlink():   # a dangling link
            raise UsageError(f"{what} {path}: {p} is a broken symbolic link")
        missing.append(p)
        p = p.parent
    if not p.is_dir():
        raise UsageError(f"{what} {path}: {p} is a file, not a folder")
    created = []
    try:
        for d in reversed(missing):
            os.mkdir(d)
            created.append(d)
        # a folder that exists may still be read-only: prove a file can be made in it
        fd, probe = tempfile.mkstemp(dir=path, prefix=f".probe.{HOST}.{os.getpid()}.", suffix=".tmp")
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        remove_created(created)
        raise UsageError(f"{what} {path}: cannot write there ({e.strerror or e})") from None
    return created


def remove_created(created) -> None:
    """Undo make_dirs: remove the folders it created (deepest first), with anything in them."""
    for d in reversed(list(created)):
        shutil.rmtree(d, ignore_errors=True)


_HELD: dict[str, list] = {}   # realpath of a folder lock -> [fd, depth] (re-entrant per process)


@contextlib.contextmanager
def folder_lock(folder):
    """Exclusive lock on `folder` (flock on folder/.lock), re-entrant within one process."""
    lock = os.path.realpath(os.path.join(folder, ".lock"))
    if lock in _HELD:
        _HELD[lock][1] += 1
        try:
            yield
        finally:
            _HELD[lock][1] -= 1
        return
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        _HELD[lock] = [fd, 1]
        yield
    finally:
        _HELD.pop(lock, None)
        os.close(fd)   # closing releases the flock


@contextlib.contextmanager
def file_lock(path):
    """A blocking exclusive flock on `path` (created if missing), held for the block: a second
    process waits here until the first is done (e.g. one proxy trained once, then read)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)   # closing releases the flock


def try_lock(path):
    """A non-blocking exclusive flock on `path` (created if missing): the fd, or None if held."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def job_id(key: dict) -> str:
    """File name stem of a job: readable key values plus a hash of the whole key."""
    key = _plain(key)
    slug = "-".join(re.sub(r"[^A-Za-z0-9.=_+]", "_", str(key[k])) for k in sorted(key))[:60]
    digest = _sha(_canon(key), 12)
    return f"{slug}-{digest}" if slug else digest


def _record_sha(rec: dict) -> str:
    return _sha(_canon({k: v for k, v in rec.items() if k != "sha256"}))


# ---------------------------------------------------------------- the run folder


class Job:
    """A claimed job: finish(rows, files) records it (see RunFolder.claim)."""

    def __init__(self, run: "RunFolder", key: dict):
        self.run, self.key = run, key

    def finish(self, rows: list[dict], files=()) -> None:
        self.run.finish_job(self.key, rows, files)


class RunFolder:
    """One run folder (see the module doc).  Create it only after validating the arguments.

    `resume=False` on a folder that already holds anything is refused (no silent overwrite);
    `resume=True` continues it if its config.json matches `config` (MECHANICS aside).
    """

    def __init__(self, path, config: dict, resume: bool = False, seed=None, quiet=False):
        self.path = Path(path)
        self.quiet = quiet
        config = dict(vars(config) if not isinstance(config, dict) else config)
        self.config = result_config(config)
        self.config_sha = _sha(_canon(self.config))
        self.mechanics = _plain({k: v for k, v in config.items() if k in MECHANICS and k != "torch_device"})
        self._order: dict[str, int] = {}     # job id -> position in the declared job list
        self._keys: dict[str, dict] = {}
        self._cache: dict[str, tuple] = {}   # job id -> (stat signature, record or None, reason)
        self._claimed: set[str] = set()
        self.finished_here = 0
        self._started = time.monotonic()   # for the progress lines (islab.progress)
        created = make_dirs(self.path, "run folder")
        try:
            with self.locked():
                self._open(resume, seed)
        except BaseException:
            remove_created(created)
            raise
        self._created = created   # folders this process made (for discard_fresh)
        _ACTIVE.append(self)

    # -- opening
    def _open(self, resume: bool, seed) -> None:
        orphans = remove_orphan_tmp(self.path)
        cfg_file, jobs = self.path / "config.json", self.path / "jobs"
        n_jobs = len(list(jobs.glob("*.json"))) if jobs.is_dir() else 0
        old_format = (self.path / "done.json").exists() and not jobs.is_dir()
        content = [p for p in self.path.iterdir() if p.name != ".lock"]
        exists_msg = f"run folder {self.path} exists; pass --resume to continue it or --name for a new one"
        if cfg_file.exists():
            if not resume:
                raise UsageError(exists_msg)
            try:
                old = json.loads(cfg_file.read_text())
                if not isinstance(old, dict):
                    raise ValueError("not a JSON object")
            except (ValueError, UnicodeDecodeError) as e:
                raise UsageError(f"cannot resume {self.path}: config.json is damaged ({type(e).__name__}); "
                                 "its results cannot be matched to settings: start a new run with --name"
                                 ) from None
            old = result_config(old)   # folders of older versions also stored the mechanics
            if old != self.config:
                diff = sorted(k for k in set(old) | set(self.config) if old.get(k) != self.config.get(k))
                raise UsageError(f"cannot resume {self.path}: config differs in {', '.join(diff)}")
        elif n_jobs or old_format:
            raise UsageError(f"cannot {'resume' if resume else 'reuse'} {self.path}: config.json is missing, "
                             f"so the settings of its finished jobs are unknown; restore it or start a "
                             f"new run with --name")
        elif content and not resume:
            raise UsageError(exists_msg)
        else:
            atomic_write_json(cfg_file, self.config)
        jobs.mkdir(exist_ok=True)
        cmd = " ".join(shlex.quote(a) for a in [sys.executable.rsplit("/", 1)[-1], *sys.argv])
        with naming(self.path / "cmd.txt"), open(self.path / "cmd.txt", "a") as f:  # every invocation
            f.write(cmd + "\n")
        atomic_write_json(self.path / "env.json", {**provenance(seed), "mechanics": self.mechanics})
        if orphans:
            self.log(f"removed {len(orphans)} temporary file(s) left by a killed process: "
                     + ", ".join(str(p.relative_to(self.path)) for p in orphans[:5]), quiet=True)
        if old_format:
            self._migrate()
        for jid in sorted(p.stem for p in jobs.glob("*.json")):
            rec, why = self._read(jid, verify_files=True)
            if rec is None:
                self._quarantine(jid, why)
        self._write_derived()

    def _migrate(self) -> None:
        """Folders of islab before job files: done.json + results.csv become job files."""
        import pandas as pd

        try:
            done = [json.loads(k) for k in json.loads((self.path / "done.json").read_text())]
            f = self.path / "results.csv"
            df = pd.read_csv(f) if f.exists() else pd.DataFrame()
        except Exception as e:  # noqa: BLE001  any parse failure: the old files cannot be trusted
            raise UsageError(f"cannot resume {self.path}: its done.json / results.csv (older format) "
                             f"are damaged ({type(e).__name__}); start a new run with --name") from None
        rows = df.to_dict("records")
        for i, key in enumerate(done):
            mine = [{k: v for k, v in r.items() if not (isinstance(v, float) and np.isnan(v) and k not in key)}
                    for r in rows if _same_key(r, key)]
            if mine:
                self._write_job(key, [{k: v for k, v in r.items() if k not in key} for r in mine], (), index=i)
        os.replace(self.path / "done.json", self.path / "done.json.migrated")
        self.log(f"migrated {len(done)} finished jobs from done.json to jobs/", quiet=True)

    # -- logging
    def log(self, msg: str, quiet: bool = False) -> None:
        if not (self.quiet or quiet):
            print(msg, flush=True)
        with naming(self.path / "log.txt"), open(self.path / "log.txt", "a") as f:   # one write per line
            f.write(msg + "\n")

    # -- locks
    def locked(self):
        """The folder lock: hold it around derived writes (res.txt, plots) from frame()."""
        return folder_lock(self.path)

    def _lock_path(self, jid: str) -> Path:
        return self.path / "jobs" / f"{jid}.lock"

    # -- job files
    def _job_path(self, jid: str) -> Path:
        return self.path / "jobs" / f"{jid}.json"

    def _read(self, jid: str, verify_files: bool = False):
        """(record, '') for a valid job file, else (None, why); cached by file signature."""
        path = self._job_path(jid)
        try:
            st = path.stat()
        except FileNotFoundError:
            return None, "missing"
        sig = (st.st_mtime_ns, st.st_size, st.st_ino)
        hit = self._cache.get(jid)
        if hit is None or hit[0] != sig:
            hit = (sig, *self._parse(path, jid))
            self._cache[jid] = hit
        rec, why = hit[1], hit[2]
        if rec is not None and verify_files:
            for rel, digest in rec.get("files", {}).items():
                f = self.path / rel
                if not f.is_file():
                    return None, f"its file {rel} is missing"
                if file_sha256(f) != digest:
                    return None, f"its file {rel} changed"
        return rec, why

    def _parse(self, path: Path, jid: str):
        try:
            rec = json.loads(path.read_text())
        except (ValueError, UnicodeDecodeError) as e:
            return None, f"unreadable ({type(e).__name__})"
        if not isinstance(rec, dict) or not {"key", "rows", "n_rows", "config", "sha256"} <= set(rec):
            return None, "fields missing"
        if rec["sha256"] != _record_sha(rec):
            return None, "checksum mismatch"
        if not isinstance(rec["rows"], list) or len(rec["rows"]) != rec["n_rows"]:
            return None, "row count mismatch"
        if job_id(rec["key"]) != jid:
            return None, "key does not match its file name"
        if rec["config"] != self.config_sha:
            return None, "written under another config.json"
        return rec, ""

    def _quarantine(self, jid: str, why: str) -> None:
        """Move a damaged job file aside (under its job lock: never one a worker just wrote)."""
        fd = try_lock(self._lock_path(jid))
        if fd is None:
            return   # a live worker is running this job; it will replace the file
        try:
            rec, why_now = self._read(jid, verify_files=True)
            if rec is None and why_now != "missing":
                os.replace(self._job_path(jid), self._job_path(jid).with_suffix(".damaged"))
                self._cache.pop(jid, None)
                self.log(f"job file jobs/{jid}.json is damaged ({why_now}): moved to jobs/{jid}.damaged; "
                         "the job runs again")
        finally:
            os.close(fd)

    def _write_job(self, key, rows, files, index=None) -> None:
        key = _plain(key)
        jid = job_id(key)
        rows = _plain([{**key, **r} for r in rows])
        files = {str(Path(f).resolve().relative_to(self.path.resolve())): None for f in files}
        rec = {"version": JOB_VERSION, "key": key, "index": index, "n_rows": len(rows),
               "config": self.config_sha,
               "files": {rel: file_sha256(self.path / rel) for rel in files},
               "worker": f"{socket.gethostname()}:{os.getpid()}", "finished": time.time(), "rows": rows}
        rec["sha256"] = _record_sha(rec)
        atomic_write_text(self._job_path(jid), json.dumps(rec, default=_json_default) + "\n")
        self._cache.pop(jid, None)

    # -- the job list
    def plan(self, keys) -> None:
        """Declare (more of) the job list, in run order: it orders results.csv, counts progress and
        is recorded in plan.json (a report uses a folder only when every planned job finished)."""
        before = len(self._order)
        for k in keys:
            self._register(k)
        if len(self._order) > before:   # the union with what other processes planned, in order
            ids = dict.fromkeys([*planned_ids(self.path), *self._order])
            atomic_write_json(self.path / PLAN_FILE, {"jobs": list(ids)})

    def _register(self, key) -> str:
        jid = job_id(key)
        if jid not in self._order:
            self._order[jid] = len(self._order)
            self._keys[jid] = _plain(key)
        return jid

    def is_done(self, key: dict) -> bool:
        """True when a valid job file exists for `key` (its files verified)."""
        return self._read(self._register(key), verify_files=True)[0] is not None

    def pending(self, keys) -> list[dict]:
        """The keys of `keys` without a valid job file (registering them all in the plan)."""
        return [k for k in keys if not self.is_done(k)]

    @contextlib.contextmanager
    def claim(self, key: dict):
        """Context manager: a Job to run and finish, or None when the job is finished or
        another process holds it.  The job lock is held until the block ends (exception,
        signal or not); a block that does not call finish() leaves the job to run again."""
        jid = self._register(key)
        if self._read(jid, verify_files=True)[0] is not None:
            yield None
            return
        fd = try_lock(self._lock_path(jid))
        if fd is None:
            self.log(f"job {jid}: held by another worker, skipped", quiet=True)
            yield None
            return
        try:
            rec, why = self._read(jid, verify_files=True)   # finished while we waited?
            if rec is not None:
                yield None
                return
            if why != "missing":
                os.replace(self._job_path(jid), self._job_path(jid).with_suffix(".damaged"))
                self.log(f"job file jobs/{jid}.json is damaged ({why}): moved to jobs/{jid}.damaged; "
                         "the job runs again")
            self._claimed.add(jid)
            yield Job(self, key)
        finally:
            self._claimed.discard(jid)
            os.close(fd)

    def finish_job(self, key: dict, rows: list[dict], files=()) -> None:
        """Record a finished job: one atomic job file (rows, checksum, the SHA-256 of `files`,
        paths inside the folder it wrote), then results.csv re-derived under the folder lock."""
        jid = self._register(key)
        fd = None
        if jid not in self._claimed:   # not claimed by this process: take the job lock now
            fd = os.open(self._lock_path(jid), os.O_RDWR | os.O_CREAT, 0o644)
            fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            self._write_job(key, rows, files, index=self._order[jid])
        finally:
            if fd is not None:
                os.close(fd)
        self.finished_here += 1
        with self.locked():
            self._write_derived()
        done, total = self.progress()
        progress.report(done, total, time.monotonic() - self._started, self.finished_here, key)

    # -- reading back
    def records(self) -> list[dict]:
        """Every valid job record, in job-list order (then finishing time)."""
        jobs = self.path / "jobs"
        out = []
        for p in jobs.glob("*.json"):
            rec, _ = self._read(p.stem)
            if rec is not None:
                out.append(rec)
        inf = float("inf")
        return sorted(out, key=lambda r: (r.get("index") if r.get("index") is not None else inf,
                                          r.get("finished", 0.0), job_id(r["key"])))

    def frame(self):
        """All rows of all valid job files as one tidy DataFrame (the source of every table)."""
        import pandas as pd

        return pd.DataFrame([row for rec in self.records() for row in rec["rows"]])

    def _write_derived(self) -> None:
        """results.csv from the job files; at open, a copy that differs is logged (damaged,
        edited or stale) before it is rebuilt."""
        df = self.frame()
        text = df.to_csv(index=False) if len(df) else ""
        f = self.path / "results.csv"
        old = f.read_text() if f.exists() else None
        if old == text or (old is None and not text):
            return
        if self.finished_here == 0:
            self.log("results.csv was missing: rebuilt from the job files" if old is None else
                     "results.csv did not match the job files (damaged, edited or stale): rebuilt", quiet=True)
        atomic_write_text(f, text)

    def progress(self) -> tuple[int, int]:
        """(finished jobs of the declared list, its length) for progress lines."""
        names = {p.stem for p in (self.path / "jobs").glob("*.json")}
        done = sum(j in names for j in self._order) if self._order else len(names)
        return done, max(len(self._order), done)

    # -- files
    def write_text(self, name: str, text: str) -> None:
        atomic_write_text(self.path / name, text)

    def save_arrays(self, name: str, **arrays) -> None:
        atomic_save_npz(self.path / name, **arrays)

    def savefig(self, fig, name: str, **kwargs) -> None:
        atomic_savefig(fig, self.path / name, **kwargs)

    def close(self) -> None:
        if self in _ACTIVE:
            _ACTIVE.remove(self)

    def discard_if_fresh(self) -> bool:
        """Remove this folder when this process created it just now and it holds no finished job
        (islab.open_runs.discard_fresh, on exit 2); True when it was removed."""
        if not getattr(self, "_created", None) or self.finished_here or not _fresh(self):
            return False
        with contextlib.suppress(OSError):
            if any((self.path / "jobs").glob("*.json")):
                return False
        # folders it made: the run folder (and parents) always, a cache folder only while it
        # holds no file (another process may already share it)
        remove_created([d for d in self._created if d == self.path or self.path.is_relative_to(d)
                        or not any(p.is_file() and not p.name.endswith((".lock", ".tmp")) for p in d.rglob("*"))])
        return True


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


def read_frame(path):
    """The tidy rows of a run folder written by another process, from its valid job files
    (read only, no lock): what DL-noise/plot.py and the ablation summary read."""
    import pandas as pd

    return pd.DataFrame([row for rec in RunFolder.records(_reader(path)) for row in rec["rows"]])


def finished_ids(path) -> set[str]:
    """The job ids of a run folder's valid job files (read only, no lock): is a sub-run complete?"""
    return {job_id(rec["key"]) for rec in RunFolder.records(_reader(path))}


def planned_ids(path) -> list[str]:
    """The job ids a run folder's processes planned (plan.json), [] when it has no usable record
    (a folder older than the record, or a damaged one)."""
    try:
        ids = json.loads((Path(path) / PLAN_FILE).read_text()).get("jobs")
    except (OSError, ValueError, AttributeError):
        return []
    return [i for i in ids if isinstance(i, str)] if isinstance(ids, list) else []


def verified_file(path, name: str) -> Path | None:
    """A file of another process's run folder that a report reads, checked against the job file
    that recorded it (its SHA-256 in `files`): the path when it matches, None when no valid job
    file records it (the job did not run, or the folder predates the record); a missing or
    changed file raises UsageError naming it -- a report never reads an unverified copy."""
    path = Path(path)
    for rec in RunFolder.records(_reader(path)):
        digest = rec.get("files", {}).get(name)
        if digest is None:
            continue
        f = path / name
        if not f.is_file():
            raise UsageError(f"{f}: missing, but job {job_id(rec['key'])} recorded it; rerun with --resume")
        if file_sha256(f) != digest:
            raise UsageError(f"{f}: damaged or changed since job {job_id(rec['key'])} recorded it "
                             "(SHA-256 mismatch); rerun with --resume to redo that job")
        return f
    return None


def _reader(path) -> "RunFolder":
    """A read-only view of another process's run folder (its config hash, for checking job files)."""
    path = Path(path)
    try:
        config = json.loads((path / "config.json").read_text())
    except (OSError, ValueError) as e:
        raise UsageError(f"{path}: config.json is missing or damaged ({type(e).__name__})") from None
    if not isinstance(config, dict):   # hand-edited: its jobs cannot be matched to settings
        raise UsageError(f"{path}: config.json is not a JSON object (it holds a {type(config).__name__})")
    reader = RunFolder.__new__(RunFolder)
    reader.path, reader._cache = path, {}
    reader.config_sha = _sha(_canon(result_config(config)))
    return reader


def check_name(name: str) -> str:
    """argparse type of --name: one folder name (no separators, not . or .., <= 255 bytes)."""
    import argparse

    if name in ("", ".", "..") or "/" in name or "\\" in name or "\0" in name:
        raise argparse.ArgumentTypeError(f"must be one folder name (no '/', not '..'), got {name!r}")
    if len(name.encode()) > 255:
        raise argparse.ArgumentTypeError(f"is {len(name.encode())} bytes long; a folder name holds at most 255")
    if any(ord(c) < 32 or ord(c) == 127 for c in name):   # a newline would split "run folder: ..." and log lines
        raise argparse.ArgumentTypeError(f"must be a folder name without control characters (newline, tab, ...), "
                                         f"got {name!r}")
    return name


def open_run(path, args, seed=None, quiet=False, cache_dir=None) -> RunFolder:
    """Create or resume the run folder for parsed args (and make sure `cache_dir`, default
    args.cache_dir, is a writable folder).  Errors exit 2 with one line and leave nothing."""
    from islab.cli import fail

    cache_dir = cache_dir or getattr(args, "cache_dir", None)
    config = vars(args) if not isinstance(args, dict) else args
    try:
        run = RunFolder(path, config, resume=bool(config.get("resume", False)), seed=seed, quiet=quiet)
        if cache_dir:
            try:
                run._created += make_dirs(cache_dir, "--cache-dir")   # (empty ones go with a fresh run)
            except UsageError:
                discard_fresh(_ACTIVE.index(run))   # the folder this call made goes again
                raise
            orphans = remove_orphan_tmp(cache_dir)   # the cache is written atomically too
            if orphans:
                run.log(f"removed {len(orphans)} temporary file(s) a killed process left in {cache_dir}",
                        quiet=True)
        return run
    except UsageError as e:
        fail(str(e))


def _fresh(run: RunFolder) -> bool:
    """True when this process created the folder just now (one command line in cmd.txt)."""
    try:
        return len((run.path / "cmd.txt").read_text().splitlines()) <= 1
    except OSError:
        return False


def mean_std_table(df, by: list[str], metrics: list[str], fmt="{:.2f}") -> str:
    """A fixed-width text table of mean +- std over seeds (rows: `by`, columns: metrics).

    df is tidy (columns ..., metric, value).  std is the sample std (ddof=1); n is shown.
    Non-finite values (diverged runs) are left out of the mean and counted in 'diverged'.
    """
    import pandas as pd

    d = df[df["metric"].isin(metrics)]
    g = d.groupby(by + ["metric"], sort=False)["value"]
    stats = g.agg(["mean", "std", "count", "size"]).reset_index()
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
            mu, sd, n, size = s["mean"].iloc[0], s["std"].iloc[0], int(s["count"].iloc[0]), int(s["size"].iloc[0])
            if n == 0:
                cells.append("nan")
                continue
            cells.append(fmt.format(mu) + (" +- " + fmt.format(sd) if pd.notna(sd) else "")
                         + (f" ({size - n} nan)" if size > n else ""))
        cells.append(str(n))
        rows.append(cells)
    from islab.tables import text_table

    return text_table(head, rows)
