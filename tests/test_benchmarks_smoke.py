"""The benchmark scripts run through their CLI at a tiny size (they are measured, not timed, here)."""
import subprocess
import sys

from islab.runs import REPO_ROOT


def run(*args):
    res = subprocess.run([sys.executable, *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
                         env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})
    assert res.returncode == 0, res.stderr
    return res.stdout


def test_pipeline_benchmark_prints_both_arms_and_ratio():
    out = run("benchmarks/pipeline.py", "--model", "linear", "--n", "64", "--batch-size", "32",
              "--warmup", "1", "--workers", "0", "--device", "cpu")
    assert "device-resident" in out and "DataLoader" in out and "ratio device-resident / DataLoader" in out


def test_convex_benchmark_prints_speedup():
    out = run("benchmarks/convex_chains.py", "--sample", "1", "--epochs", "1")
    assert "speed-up (cpu)" in out


def test_digits_benchmark_learns():
    out = run("benchmarks/digits.py", "--epochs", "3", "--seeds", "0", "--threads", "1")
    acc = float(out.split("test acc ")[1].split("%")[0])
    assert acc > 80.0
