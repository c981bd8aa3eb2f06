"""Files a run writes follow the umask (issue 26): under umask 022 every file is -rw-r--r-- and
every folder drwxr-xr-x, the atomically written ones (res.txt, results.csv, figures, job records,
written through mkstemp, which makes 0600 files) like those written by open() (cmd.txt, log.txt)."""
import os
import stat
import subprocess
import sys
from pathlib import Path

from islab import runs

ROOT = Path(__file__).resolve().parents[2]
TINY = ["--train-size", "120", "--epochs", "1", "--target", "linear", "--proxies", "linear,linear",
        "--proxy-epochs", "2", "--snapshot-epoch", "1", "--seeds", "0", "--noise", "clean",
        "--methods", "random,dris", "--quiet", "--name", "modes"]


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_atomic_writes_follow_the_umask(tmp_path):
    old = os.umask(0o027)
    try:
        runs.atomic_write_text(tmp_path / "a.txt", "x\n")
    finally:
        os.umask(old)
    assert mode(tmp_path / "a.txt") == 0o640
    assert runs.current_umask() == old


def test_a_run_under_umask_022_writes_files_others_can_read(tmp_path):
    r = subprocess.run([sys.executable, str(ROOT / "DR-IS" / "static.py"), *TINY, "--results-root", str(tmp_path)],
                       capture_output=True, text=True, cwd=ROOT, timeout=600, umask=0o022,
                       env={**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"})
    assert r.returncode == 0, r.stderr[-2000:]
    run = tmp_path / "DR-IS" / "static" / "modes"
    files = [p for p in run.rglob("*") if p.is_file()]
    names = {p.name for p in files}
    assert {"res.txt", "results.csv", "cmd.txt", "log.txt", "config.json"} <= names
    assert any(p.suffix == ".png" for p in files), sorted(names)
    assert any(p.parent.name == "jobs" for p in files)                    # a job record
    wrong = {str(p.relative_to(tmp_path)): oct(mode(p)) for p in files if mode(p) != 0o644}
    assert not wrong, wrong
    folders = [p for p in tmp_path.rglob("*") if p.is_dir()]
    wrong = {str(p.relative_to(tmp_path)): oct(mode(p)) for p in folders if mode(p) != 0o755}
    assert not wrong, wrong
