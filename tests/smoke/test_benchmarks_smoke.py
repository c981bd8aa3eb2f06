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


def test_ensemble_benchmark_prints_ratios():
    out = run("benchmarks/ensemble.py", "--data", "digits", "--models", "mlp,vgg11_bn", "--k", "2",
              "--epochs", "1", "--repeats", "1", "--threads", "1")
    assert "digits        mlp          2" in out and "does not fold" in out


def test_train_overhead_benchmark_prints_ratio():
    out = run("benchmarks/train_overhead.py", "--model", "linear", "--n", "512", "--n-test", "128",
              "--repeats", "1")
    assert "ratio plain / islab.train = " in out


def test_gpu_benchmark_runs_at_tiny_size_on_the_cpu(tmp_path):
    out = run("benchmarks/gpu.py", "--smoke", "--out", str(tmp_path / "gpu.txt"))
    for part in ("vgg19    vgg19_bn compile=False", "resnet20 K=3 proxies", "pipeline vgg19_bn"):
        assert part in out
    assert (tmp_path / "gpu.txt").read_text().count("\n") >= 5


def test_benchmarks_refuse_bad_input():
    import subprocess

    for args in (["benchmarks/ensemble.py", "--k", "1"], ["benchmarks/ensemble.py", "--data", "nope"],
                 ["benchmarks/gpu.py", "--parts", "nope"],
                 ["benchmarks/train_overhead.py", "--shape", "1,2"]):
        res = subprocess.run([sys.executable, *args], cwd=REPO_ROOT, capture_output=True, text=True,
                             timeout=120, env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})
        assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1, (args, res.stderr)


def test_benchmarks_readme_shows_the_result_files():
    """benchmarks/README.md's measured blocks are copies of benchmarks/results/*.txt."""
    run("benchmarks/readme.py", "--check")
