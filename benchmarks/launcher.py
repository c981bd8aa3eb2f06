"""One DR-IS static sweep run inline and with `--launcher local --workers N` on this machine:
the wall-clock ratio of the two (issue 10 expects about 1.8x with 2 workers on 2 cores for
CPU-bound jobs), and a check that both give the same numbers.

    python benchmarks/launcher.py                     # Fashion-MNIST, 10,000 images, 18 jobs, 2 workers
    python benchmarks/launcher.py --preset digits --train-size 1437   # a one-minute version on digits

Each arm starts from an empty results folder and an empty proxy cache, so both train the same
prerequisites (attacker, proxies) and the same jobs.  Each worker gets cores // N torch threads
(the launcher's rule) and so does the inline arm by default (--inline-threads): the same thread
count gives bit-identical numbers (a different one changes the order of float sums, hence the
last digits), and one thread is the repository's default for these small models (Makefile).
Flags after `--` go to DR-IS/static.py (e.g. `-- --epochs 4`).  Measure on an idle machine:
other processes on the cores change both arms, and their ratio; the first line printed says how
much CPU this machine gave N concurrent processes compared with one (a pure-Python loop), so a
busy machine shows itself (N.00x when N cores are free).
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from islab import cli, experiment  # noqa: E402

STATIC = HERE.parent / "DR-IS" / "static.py"


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def build_parser():
    p = cli.make_parser(__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="fashion-mnist", choices=("digits", "fashion-mnist"),
                   help="data set and models of the sweep (islab.experiment.PRESETS; fashion-mnist: `make data`)")
    p.add_argument("--train-size", type=cli.positive_int, default=10000,
                   help="seeded subset of this many training examples (jobs CPU-bound, not tiny)")
    p.add_argument("--noise", default="clean,targeted:0.25", help="noise configurations of the sweep")
    p.add_argument("--methods", default="random,dris,full", help="static methods of the sweep")
    p.add_argument("--seeds", default="0,1,2", help="target seeds of the sweep")
    p.add_argument("--workers", type=cli.positive_int, default=2, help="number of worker processes of the local arm")
    p.add_argument("--inline-threads", type=cli.positive_int, default=None,
                   help="torch threads of the inline arm (default: cores // workers, as each worker gets)")
    p.add_argument("--keep", default=None, help="keep both run folders under this folder (default: a temporary one)")
    return p


SPIN = "import time\nt = time.perf_counter()\nx = 0\nfor i in range(10_000_000):\n    x += i\nprint(time.perf_counter() - t)"


def cpu_check(n: int) -> float:
    """How much faster n concurrent CPU-bound processes get through n loops than one process
    through one loop, scaled: n.00 when n cores are free, about 1.00 when the machine is busy."""
    def spin(k):
        procs = [subprocess.Popen([sys.executable, "-c", SPIN], stdout=subprocess.PIPE, text=True) for _ in range(k)]
        return max(float(p.communicate()[0]) for p in procs)
    return n * spin(1) / spin(n)


def arm(root: Path, launcher: list[str], threads: int, sweep: list[str]) -> float:
    """Seconds of one run of the sweep into root (its own cache)."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads), "MPLBACKEND": "Agg"}
    cmd = [sys.executable, str(STATIC), *sweep, "--results-root", str(root), "--cache-dir", str(root / "cache"),
           "--name", "bench", "--quiet", *launcher]
    t = time.perf_counter()
    r = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if r.returncode != 0:
        cli.fail(f"{' '.join(launcher) or 'inline'} arm failed (exit {r.returncode}): "
                 + (r.stderr.strip().splitlines() or ["no output"])[-1])
    return time.perf_counter() - t


def numbers(root: Path):
    import pandas as pd

    df = pd.read_csv(root / "DR-IS" / "static" / "bench" / "results.csv")
    df = df[df["metric"] != "seconds"]   # wall time per job is the one column allowed to differ
    return df.sort_values(list(df.columns.drop("value"))).reset_index(drop=True)


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    args = build_parser().parse_args(argv[:argv.index("--")] if "--" in argv else argv)
    sweep = ["--preset", args.preset, "--noise", args.noise, "--methods", args.methods, "--seeds", args.seeds,
             "--device", "cpu", "--train-size", str(args.train_size), *extra]
    static = _load_static()
    parsed = static.parse_args(sweep)           # bad flags exit 2 here, before anything runs
    experiment.open_dataset(parsed)             # and missing data
    n_jobs = len(static.planned_keys(parsed))
    n = cores()
    per_worker = max(1, n // args.workers)
    inline_threads = args.inline_threads or per_worker
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(args.keep or tmp)
        print(f"machine check: {args.workers} concurrent CPU-bound processes ran {cpu_check(args.workers):.2f}x "
              f"the work of one in the same time ({args.workers}.00x when {args.workers} cores are free)", flush=True)
        print(f"sweep: DR-IS/static.py {' '.join(sweep)}: {n_jobs} jobs over {len(parsed.noise_list)} "
              f"configuration(s), {n} core(s)", flush=True)
        t_inline = arm(base / "inline", [], inline_threads, sweep)
        print(f"inline                 (OMP_NUM_THREADS={inline_threads}): {t_inline:.1f} s", flush=True)
        t_local = arm(base / "local", ["--launcher", "local", "--workers", str(args.workers)], n, sweep)
        print(f"local --workers {args.workers}      (OMP_NUM_THREADS={per_worker} each): {t_local:.1f} s",
              flush=True)
        import pandas as pd

        same = True
        try:
            pd.testing.assert_frame_equal(numbers(base / "inline"), numbers(base / "local"))
        except AssertionError:
            same = False
        print(f"ratio inline / local: {t_inline / t_local:.2f}x  (same numbers in both arms: "
              f"{'yes' if same else 'NO'})")
    return 0 if same else 1


def _load_static():
    from islab.loader import load_script

    return load_script(STATIC, "bench_static", fresh=True)


if __name__ == "__main__":
    cli.run_main(main)
