"""One table of bad inputs for every script, through its real CLI entry point (cli.guarded, the
guard of every `if __name__ == "__main__"`): each must exit with status 2, print exactly one line
on stderr, no traceback, and leave no new file or folder anywhere (results root, cache dir, or
beside them).  Most cases run in this process (a process start costs ~3 s of torch imports); a
representative subset, one per class, runs as real subprocesses."""
import importlib.util
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from islab import cli
from islab.loader import load_script

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = {
    "convex": "Convex-Noise/IS-noise.py", "synthetic": "DR-IS/synthetic.py", "static": "DR-IS/static.py",
    "online": "DR-IS/online.py", "diagnostics": "DR-IS/diagnostics.py", "food101": "DR-IS/food101.py",
    "ablations": "DR-IS/ablations.py", "dlnoise": "DL-noise/is.py", "plot": "DL-noise/plot.py",
    "dlcorr": "DL-correlation/IS_01_corelations.py", "bench_digits": "benchmarks/digits.py",
    "bench_pipeline": "benchmarks/pipeline.py", "bench_convex": "benchmarks/convex_chains.py",
    "nonconvex": "Convex-Noise/nonconvex_rr.py", "reproduce": "DR-IS/reproduce.py",
    "cleanlab": "DR-IS/cleanlab_compare.py",
    "bench_launcher": "benchmarks/launcher.py", "bench_ensemble": "benchmarks/ensemble.py",
    "bench_gpu": "benchmarks/gpu.py", "bench_overhead": "benchmarks/train_overhead.py",
    "bench_readme": "benchmarks/readme.py", "report": "reporting/report.py", "gallery": "reporting/gallery.py",
}
OUT = ["--results-root", "{root}", "--name", "x"]
DL = ["--train-size", "100", "--epochs", "1", "--target", "linear", "--proxies", "linear,mlp",
      "--proxy-epochs", "1", "--snapshot-epoch", "1", "--attacker", "linear", "--seeds", "0", "--quiet",
      "--cache-dir", "{cache}", "--device", "cpu"]
# diagnostics.py trains no target: no --epochs, --target, --seeds
DIAG = [a for i, a in enumerate(DL) if a not in ("--epochs", "--target", "--seeds")
        and DL[i - 1] not in ("--epochs", "--target", "--seeds")]
BASE = {   # valid, tiny arguments; each case appends its bad flags (argparse: the last one wins)
    "convex": ["--quick", *OUT], "synthetic": ["--quick", *OUT], "nonconvex": ["--quick", *OUT],
    "reproduce": ["--preset", "digits", "--results-root", "{root}", "--report", "{tmp}/REPORT.md", "--dry-run"],
    "static": [*DL, "--noise", "clean", "--methods", "random", *OUT],
    "online": [*DL, "--noise", "clean", "--methods", "uniform", "--irreducible-model", "linear", *OUT],
    "diagnostics": [*DIAG, "--noise", "clean", "--k-values", "2", *OUT],
    "food101": ["--fake", "--fake-classes", "2", "--fake-per-class", "4", "--image-size", "32", "--target-arch",
                "resnet18", "--epochs", "1", "--seeds", "0", "--backbones", "resnet18,mobilenet_v3_small", "--methods",
                "random", "--quiet", "--cache-dir", "{cache}", "--device", "cpu", *OUT],
    # (no --proxies: the K sweep sets it itself)
    "ablations": ["--sweep", "alpha", "--values", "0.3", *DL[:6], *DL[8:], "--noise", "clean", "--methods",
                  "random", *OUT],
    "dlnoise": [*DL, "--rates", "0", "--strategies", "baseline", *OUT],
    "cleanlab": [*DL, "--noise", "uniform:0.2", "--methods", "random", *OUT],
    "dlcorr": [*DL[:4], "--models", "linear,mlp", "--seeds", "0", "--early-epochs", "none", "--no-plots",
               "--quiet", "--cache-dir", "{cache}", "--device", "cpu", *OUT],
    "plot": [], "bench_digits": ["--epochs", "1", "--seeds", "0"], "bench_pipeline": ["--n", "16"],
    "bench_convex": ["--epochs", "1"],
    "bench_launcher": ["--preset", "digits", "--train-size", "100", "--seeds", "0", "--methods", "random", "--noise", "clean"],
    "bench_ensemble": ["--n", "16", "--k", "2", "--repeats", "1"], "bench_gpu": ["--smoke", "--device", "cpu"],
    "bench_overhead": ["--repeats", "1"], "bench_readme": ["--check"],
    "report": ["--results-root", "{root}"], "gallery": ["--results-root", "{root}", "--out", "{tmp}/figs"],
}
WITH_ROOT = ["convex", "synthetic", "static", "online", "diagnostics", "food101", "ablations", "dlnoise", "dlcorr",
             "nonconvex", "cleanlab"]
WITH_CACHE = ["static", "online", "diagnostics", "food101", "ablations", "dlnoise", "dlcorr", "cleanlab"]
WITH_SEEDS = ["convex", "synthetic", "static", "online", "food101", "ablations", "dlnoise",
              "dlcorr", "bench_digits", "cleanlab"]
DIGITS = ["static", "online", "diagnostics", "ablations", "dlnoise", "dlcorr", "cleanlab"]
DEVICE = ["static", "online", "diagnostics", "food101", "ablations", "dlnoise", "dlcorr", "bench_pipeline",
          "cleanlab"]


def _cases():
    out = []

    def add(cls, scripts, argv):
        out.extend((cls, s, list(argv)) for s in scripts)

    # paths that cannot hold a results folder or a cache
    add("results root is a file", WITH_ROOT, ["--results-root", "{file}"])
    add("results root below a file", WITH_ROOT, ["--results-root", "{file}/sub"])
    add("results root read-only", WITH_ROOT, ["--results-root", "{ro}/res"])
    add("results root under /proc", WITH_ROOT, ["--results-root", "/proc/islab-test/res"])
    add("results root is /proc/self", ["static", "convex"], ["--results-root", "/proc/self"])
    add("results root empty", ["convex", "synthetic", "static", "food101", "ablations"], ["--results-root", ""])
    add("cache dir empty", ["online", "dlcorr"], ["--cache-dir", ""])
    add("cache dir is a file", WITH_CACHE, ["--cache-dir", "{file}"])
    add("cache dir read-only", WITH_CACHE, ["--cache-dir", "{ro}/cache"])
    add("cache dir under /proc", WITH_CACHE, ["--cache-dir", "/proc/islab-test/cache"])
    # empty or malformed comma lists
    add("--seeds empty", WITH_SEEDS, ["--seeds", ""])
    add("--seeds empty item", WITH_SEEDS, ["--seeds", "0,,1"])
    add("--seeds trailing comma", WITH_SEEDS, ["--seeds", "0,"])
    add("--seeds not integers", ["static", "dlnoise", "bench_digits", "convex"], ["--seeds", "0,x"])
    for s, flag, bad in [("dlnoise", "--rates", "0,,0.1,"), ("dlnoise", "--rates", "0.1,,"), ("dlnoise", "--rates", ""),
                         ("convex", "--rates", "0,,0.1,"), ("convex", "--rates", "0.1,,"), ("convex", "--ratios", ""),
                         ("convex", "--methods", "uniform,"), ("convex", "--flips", ",none"),
                         ("synthetic", "--noise", ""), ("synthetic", "--methods", ","),
                         ("static", "--alpha", "0.3,,0.5"), ("static", "--methods", ""), ("static", "--noise", "clean,"),
                         ("static", "--proxies", "linear,"), ("online", "--methods", "uniform,"),
                         ("online", "--noise", ""), ("diagnostics", "--k-values", "2,,3"),
                         ("diagnostics", "--noise", ","), ("food101", "--alpha", ""),
                         ("food101", "--backbones", "resnet18,"), ("ablations", "--values", "0.1,,0.3"),
                         ("ablations", "--values", ""), ("dlcorr", "--models", "linear,,mlp"),
                         ("dlcorr", "--early-epochs", "1,"), ("dlnoise", "--strategies", "baseline,")]:
        add(f"{flag} malformed list", [s], [flag, bad])
    # sizes, devices, data
    add("--train-size larger than the data", DIGITS, ["--train-size", "100000"])
    add("--device bogus", DEVICE, ["--device", "bogus"])
    add("--device cuda without CUDA", ["static", "dlnoise"], ["--device", "cuda:7"])
    add("one-class Food-101 set", ["food101"], ["--fake-classes", "1"])
    add("missing CIFAR data", ["static", "dlnoise", "ablations"], ["--preset", "cifar10", "--data-dir", "{nodata}"])
    add("truncated CIFAR batch", ["static", "dlnoise"], ["--dataset", "cifar10", "--data-dir", "{cifar_bad}"])
    add("truncated CIFAR batch", ["dlcorr"], ["--dataset", "cifar10", "--data-dir", "{cifar_bad}", "--train-proxies"])
    # DR-IS needs a rank disagreement: at least 2 proxies everywhere
    add("DR-IS with one proxy", ["static", "online"], ["--methods", "dris", "--proxies", "linear"])
    add("DR-IS with one proxy", ["dlnoise"], ["--strategies", "ambiguous", "--proxies", "linear"])
    add("DR-IS with one proxy", ["convex", "synthetic"], ["--methods", "dr-is", "--proxies", "1"])
    add("DR-IS with one proxy", ["food101"], ["--methods", "dris", "--backbones", "resnet18"])
    add("DR-IS with one proxy", ["ablations"], ["--sweep", "K", "--values", "1", "--methods", "random,dris"])
    add("DR-IS with one proxy", ["diagnostics"], ["--k-values", "1"])
    add("DR-IS with one proxy", ["cleanlab"], ["--proxies", "linear"])
    # the cleanlab comparison's own flags
    for flag, bad in [("--folds", "1"), ("--folds", "0"), ("--folds", "x"), ("--filter-by", "bogus"),
                      ("--methods", "random,nope"), ("--noise", "uniform:1.5"), ("--alpha", "0")]:
        add(f"cleanlab {flag} bad", ["cleanlab"], [flag, bad])
    add("missing CIFAR data", ["cleanlab"], ["--preset", "cifar10", "--data-dir", "{nodata}"])
    # the convex solver: settings where the exact optimum cannot be computed
    add("--lam too small", ["convex", "synthetic"], ["--lam", "1e-30"])
    add("--ratios too large", ["convex"], ["--ratios", "1e16"])
    add("targeted-noise attacker diverges", ["synthetic"], ["--noise", "targeted:0.1", "--t0", "1e-308",
                                                             "--safe-step", "0"])
    # --name must be one folder name
    add("--name ..", WITH_ROOT, ["--name", ".."])
    add("--name with a separator", WITH_ROOT, ["--name", "../../../../elsewhere/x"])
    add("--name absolute", WITH_ROOT, ["--name", "{tmp}/abs"])
    add("--name too long", WITH_ROOT, ["--name", "x" * 300])
    add("--name empty", ["static", "convex", "dlnoise"], ["--name", ""])
    # checkpoints
    add("checkpoint of the wrong architecture", ["dlcorr"],
        ["--dataset", "fake_cifar", "--pretrained", "--weights-dir", "{wrong_weights}", "--models",
         "resnet20,resnet32", "--split", "test"])
    add("truncated checkpoint", ["dlcorr"],
        ["--dataset", "fake_cifar", "--pretrained", "--weights-dir", "{cut_weights}", "--models",
         "resnet20,resnet32", "--split", "test"])
    # DL-noise/plot.py on what is not a DL-noise results folder
    for what in ("empty", "header_only", "garbage", "foreign", "binary", "no_finished_runs"):
        add(f"plot.py on a {what.replace('_', ' ')} results.csv", ["plot"], [f"{{plots}}/{what}"])
    add("plot.py --out is a file", ["plot"], ["{plots}/good", "--out", "{file}"])
    add("plot.py missing folder", ["plot"], ["{tmp}/nowhere"])
    # the non-convex examples and the reproduction driver
    for flag, bad in [("--parts", "twowell,"), ("--parts", ""), ("--w-etas", "0.1,,0.2"), ("--mb-props", ""),
                      ("--mb-props", "0.3,0.3"), ("--seed", "-1")]:
        add(f"{flag} malformed", ["nonconvex"], [flag, bad])
    for flag, bad in [("--stages", ""), ("--stages", "static,"), ("--stages", "nope"), ("--preset", "bogus"),
                      ("--results-root", "")]:
        add(f"reproduce {flag} bad", ["reproduce"], [flag, bad])
    # the launcher (islab/launch.py): checked before any folder exists
    launched = ["static", "online", "diagnostics", "ablations", "dlnoise", "dlcorr"]
    add("unknown launcher", launched, ["--launcher", "bogus"])
    add("--workers below 1", launched, ["--launcher", "local", "--workers", "0"])
    add("--workers without --launcher local", ["static", "dlnoise"], ["--workers", "2"])
    add("slurm option without --launcher slurm", launched, ["--slurm-partition", "gpu"])
    add("slurm option without --launcher slurm", ["static", "online"],
        ["--launcher", "local", "--timeout-min", "10"])
    add("submitit missing", launched, ["--launcher", "slurm", "--slurm-executor", "local"])
    add("--slurm-extra not KEY=VALUE", ["static", "dlcorr"],
        ["--launcher", "slurm", "--slurm-executor", "local", "--slurm-extra", "oops"])
    if shutil.which("sbatch") is None or shutil.which("srun") is None:
        add("--launcher slurm without Slurm", ["static", "diagnostics"], ["--launcher", "slurm"])
    # seeds: integers in [0, 2^32) everywhere (cli.seed)
    add("negative seed", WITH_SEEDS + ["bench_launcher"], ["--seeds", "-1"])
    add("negative seed in a list", ["static", "convex", "food101"], ["--seeds", "0,-3"])
    add("seed too large", ["static", "synthetic", "dlcorr"], ["--seeds", str(2 ** 64)])
    add("negative noise seed", ["static", "online", "diagnostics", "food101", "dlnoise", "dlcorr", "cleanlab"],
        ["--noise-seed", "-1"])
    add("negative seed", ["nonconvex"], ["--seed", "-5"])
    # inf and nan are no setting (cli._number: every float flag must be finite)
    for scripts, flag in [(["online", "dlnoise", "diagnostics", "convex", "synthetic"], "--gamma"),
                          (["online"], "--is-floor"), (["online"], "--holdout"), (["synthetic"], "--ratio"),
                          (["convex"], "--ratios"), (["convex", "synthetic"], "--margin"),
                          (["convex", "synthetic"], "--t0"), (["convex"], "--eta-max"),
                          (["nonconvex"], "--w-etas"), (["nonconvex"], "--mb-etas"), (["nonconvex"], "--tw-eta"),
                          (["nonconvex"], "--w-beta"), (["static"], "--aum-threshold")]:
        add(f"{flag} inf", scripts, [flag, "inf"])
        add(f"{flag} nan", scripts[:1], [flag, "nan"])
    add("--holdout -inf", ["online"], ["--holdout", "-inf"])
    # finite but beyond float64 once squared: one line, no RuntimeWarning before it (cli.guarded)
    add("data overflow float64", ["convex"], ["--margin", "1e300"])
    add("data overflow float64", ["convex"], ["--ratios", "1e300"])
    add("data overflow float64", ["synthetic"], ["--ratio", "1e300"])
    add("overflow warning while checking", ["nonconvex"], ["--w-beta", "1e300"])
    # data whose labels fall outside the classes
    add("CIFAR labels out of range", ["static", "dlnoise"], ["--dataset", "cifar10", "--data-dir", "{cifar_labels}"])
    # the launcher's stages on what cannot be run or reported
    add("--only-jobs bogus", ["static", "online", "dlnoise", "ablations", "dlcorr", "diagnostics"],
        ["--stage", "jobs", "--only-jobs", "bogus"])
    add("--stage report with nothing to report", ["static", "online", "dlnoise", "dlcorr", "diagnostics"],
        ["--stage", "report"])
    # data sets too small for what is asked of them
    add("Food-101 fake set too small", ["food101"], ["--fake-per-class", "1"])
    add("Food-101 fake set too small", ["food101"], ["--fake-per-class", "2", "--fake-classes", "2"])
    add("cleanlab --folds larger than a class", ["cleanlab"], ["--folds", "50"])
    add("plot.py on a run with no per-epoch rows", ["plot"], ["{plots}/no_epochs"])
    add("reproduce --report-only --no-report", ["reproduce"], ["--report-only", "--no-report"])
    # benchmarks
    add("benchmark bad --model", ["bench_digits", "bench_pipeline"], ["--model", "nope"])
    add("benchmark bad --device", ["bench_pipeline"], ["--device", "bogus"])
    add("benchmark bad --sample", ["bench_convex"], ["--sample", "0"])
    add("benchmark bad --workers", ["bench_launcher"], ["--workers", "0"])
    add("benchmark bad sweep", ["bench_launcher"], ["--methods", "nope"])
    add("benchmark bad sweep", ["bench_launcher"], ["--train-size", "100000"])
    # finite settings that overflow inside torch: SGD scales the float32 parameters by them
    add("learning rate beyond float32", ["static", "online", "dlnoise", "dlcorr", "cleanlab", "bench_digits"],
        ["--lr", "1e300"])
    add("learning rate beyond float32", ["food101"], ["--probe-lr", "1e39"])
    add("weight decay beyond float32", ["static", "online", "dlnoise", "diagnostics"], ["--weight-decay", "1e300"])
    add("weight decay beyond float32", ["food101"], ["--weight-decay", "3.5e38"])
    # names with control characters (a newline splits the "run folder:" line and every log line)
    for name in ("a\nb", "x\ty", "esc\x1b[31m"):
        add(f"--name with control character {name!r}", ["convex", "static", "dlcorr"], ["--name", name])
    # sizes too small for a method
    add("one training example to correlate", ["dlcorr"], ["--train-size", "1"])
    # the benchmarks: the usual guard, their flags parsed, --out checked before the work
    add("benchmark bad size", ["bench_ensemble"], ["--epochs", "0"])
    add("benchmark bad size", ["bench_gpu"], ["--k", "0"])
    add("benchmark bad size", ["bench_overhead"], ["--repeats", "0"])
    add("benchmark --out is a folder", ["bench_ensemble", "bench_gpu", "bench_overhead"], ["--out", "{tmp}"])
    add("benchmark --out under a file", ["bench_ensemble", "bench_gpu", "bench_overhead"], ["--out", "{file}/x.txt"])
    add("benchmark unknown flag", ["bench_readme"], ["--bogus"])
    # a report root (or figures' source) that is a file
    add("report root is a file", ["report", "gallery"], ["--results-root", "{file}"])
    # DL-noise/plot.py on a table whose rows are repeated (every seed would count twice)
    add("plot.py on a duplicated results.csv", ["plot"], ["{plots}/duplicated"])
    return out


CASES = _cases()
# one real subprocess per class of bad input (the rest run in-process)
SUBPROCESS = {("results root is a file", "convex"), ("cache dir is a file", "online"), ("--seeds empty", "static"),
              ("--rates malformed list", "dlnoise"), ("--train-size larger than the data", "dlcorr"),
              ("--device bogus", "food101"), ("DR-IS with one proxy", "synthetic"),
              ("missing CIFAR data", "ablations"), ("--lam too small", "convex"),
              ("--name with a separator", "diagnostics"), ("plot.py on a garbage results.csv", "plot"),
              ("benchmark bad --model", "bench_digits"), ("checkpoint of the wrong architecture", "dlcorr"),
              ("truncated CIFAR batch", "static"), ("cleanlab --folds bad", "cleanlab"),
              ("slurm option without --launcher slurm", "online"), ("overflow warning while checking", "nonconvex"),
              ("data overflow float64", "convex"), ("negative noise seed", "static"),
              ("learning rate beyond float32", "online"), ("--name with control character 'a\\nb'", "static"),
              ("benchmark --out under a file", "bench_overhead"), ("benchmark unknown flag", "bench_readme")}


def _load(key):
    return load_script(ROOT / SCRIPTS[key], f"bad_inputs_{key}")


MODULES = {}


def module(key):
    if key not in MODULES:
        MODULES[key] = _load(key)
    return MODULES[key]


# ---------------------------------------------------------------- inputs shared by the cases


@pytest.fixture(scope="session")
def readonly(tmp_path_factory):
    """A folder nobody can create entries in: chmod for a user, chattr +i for root."""
    d = tmp_path_factory.mktemp("readonly")
    if os.geteuid() != 0:
        d.chmod(0o555)
        yield d
        d.chmod(0o755)
        return
    if subprocess.run(["chattr", "+i", str(d)], capture_output=True).returncode != 0:
        pytest.skip("root without chattr +i: no way to make a read-only folder here")
    yield d
    subprocess.run(["chattr", "-i", str(d)], capture_output=True)


@pytest.fixture(scope="session")
def inputs(tmp_path_factory, readonly):
    import numpy as np
    import torch

    from islab.models import build_model

    d = tmp_path_factory.mktemp("inputs")
    (d / "nodata").mkdir()
    # a genuine-format CIFAR-10 folder whose third training batch was cut short
    folder = d / "cifar" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{b}" for b in range(1, 6)] + ["test_batch"]:
        entry = {"data": rng.integers(0, 256, (4, 3072), dtype=np.uint8), "labels": [0, 1, 2, 3],
                 "batch_label": name, "filenames": [f"{i}.png" for i in range(4)]}
        (folder / name).write_bytes(pickle.dumps(entry))
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": [f"c{i}" for i in range(10)]}))
    # the same format, labels outside 0..9 in data_batch_2
    bad_labels = d / "cifar_labels" / "cifar-10-batches-py"
    shutil.copytree(folder, bad_labels)
    entry = pickle.loads((bad_labels / "data_batch_2").read_bytes())
    entry["labels"] = [0, 1, 12, 3]
    (bad_labels / "data_batch_2").write_bytes(pickle.dumps(entry))
    cut = (folder / "data_batch_3").read_bytes()
    (folder / "data_batch_3").write_bytes(cut[:len(cut) // 2])
    # released file names holding the wrong network (a 100-class resnet20 under the 10-class
    # name), or cut short
    for sub, cut_short in (("wrong_weights", False), ("cut_weights", True)):
        w = d / sub
        w.mkdir()
        torch.save(build_model("resnet20", 100, (3, 32, 32)).state_dict(), w / "cifar10_resnet20-4118986f.pt")
        torch.save(build_model("resnet32", 10, (3, 32, 32)).state_dict(), w / "cifar10_resnet32-ef93fc4d.pt")
        if cut_short:
            data = (w / "cifar10_resnet20-4118986f.pt").read_bytes()
            (w / "cifar10_resnet20-4118986f.pt").write_bytes(data[:len(data) // 3])
    # results folders for DL-noise/plot.py
    plots = d / "plots"
    tables = {"empty": "", "header_only": "rate,strategy,seed,epoch,metric,value\n",
              "garbage": 'a,b\n1,2,3,4\n"unclosed\n', "foreign": "ratio,flip,rate,method,seed,epoch,metric,value\n"
              "1,none,0,uniform,0,2,gap,0.1\n", "no_finished_runs": "rate,strategy,seed,epoch,metric,value\n"
              "0.1,baseline,0,1,test_acc,50\n",
              "good": "rate,strategy,seed,epoch,metric,value\n0.1,baseline,0,,final_test_acc,50\n"
                      "0.1,baseline,0,1,test_acc,50\n",
              "no_epochs": "rate,strategy,seed,epoch,metric,value\n0.1,baseline,0,,final_test_acc,50\n"
                           "0.1,baseline,1,,final_test_acc,52\n0.2,baseline,0,,final_test_acc,40\n",
              "duplicated": "rate,strategy,seed,epoch,metric,value\n" + "0.1,baseline,0,,final_test_acc,50\n"
                            "0.1,baseline,0,1,test_acc,50\n" * 2}
    for name, text in tables.items():
        (plots / name).mkdir(parents=True)
        (plots / name / "results.csv").write_text(text)
    (plots / "binary").mkdir()
    (plots / "binary" / "results.csv").write_bytes(bytes(range(256)) * 4)
    return {"nodata": d / "nodata", "cifar_bad": d / "cifar", "cifar_labels": d / "cifar_labels", "wrong_weights": d / "wrong_weights",
            "cut_weights": d / "cut_weights", "plots": plots, "ro": readonly}


def _tree(path):
    return sorted(str(p.relative_to(path)) for p in path.rglob("*")) if path.exists() else []


# ---------------------------------------------------------------- the table


@pytest.mark.parametrize("cls,script,bad", CASES, ids=[f"{s}: {c} [{i}]" for i, (c, s, _) in enumerate(CASES)])
def test_bad_input_exits_2_with_one_line_and_leaves_nothing(cls, script, bad, inputs, tmp_path, capfd,
                                                            monkeypatch):
    (tmp_path / "file").write_text("a file where a folder belongs\n")
    where = {**{k: str(v) for k, v in inputs.items()}, "root": str(tmp_path / "res"),
             "cache": str(tmp_path / "cache"), "file": str(tmp_path / "file"), "tmp": str(tmp_path)}
    argv = [a.format(**where) for a in BASE[script] + bad]
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))   # never the user's hub cache
    before, ro_before = _tree(tmp_path), _tree(inputs["ro"])
    if cls == "submitit missing":   # as on a machine without it: its import fails
        monkeypatch.setitem(sys.modules, "submitit", None)
    if (cls, script) in SUBPROCESS:
        env = {**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg", "TORCH_HOME": str(tmp_path / "torch_home")}
        r = subprocess.run([sys.executable, str(ROOT / SCRIPTS[script]), *argv], capture_output=True, text=True,
                           cwd=ROOT, env=env, timeout=300)
        status, err = r.returncode, r.stderr
    else:
        capfd.readouterr()
        status = cli.guarded(module(script).main, argv, signals=False)
        err = capfd.readouterr().err
    lines = err.strip().splitlines()
    assert status == 2, (status, err[-3000:])
    assert len(lines) == 1 and "Traceback" not in err, err[-3000:]
    assert _tree(tmp_path) == before, "a file or folder was left behind"
    assert _tree(inputs["ro"]) == ro_before


def test_every_base_command_is_valid(inputs, tmp_path):
    """The cases fail because of their bad flags only: each script accepts its base arguments."""
    where = {**{k: str(v) for k, v in inputs.items()}, "root": str(tmp_path / "res"),
             "cache": str(tmp_path / "cache"), "file": str(tmp_path / "file"), "tmp": str(tmp_path)}
    has_cleanlab = importlib.util.find_spec("cleanlab") is not None   # optional in an existing environment
    for key in ("convex", "synthetic", "static", "online", "diagnostics", "food101", "dlnoise", "nonconvex",
                *(["cleanlab"] if has_cleanlab else [])):
        module(key).parse_args([a.format(**where) for a in BASE[key]])
    args = module("dlcorr").build_parser().parse_args([a.format(**where) for a in BASE["dlcorr"]])
    module("dlcorr").resolve_args(args)
    abl = module("ablations")
    args, forward = abl.build_parser().parse_known_args([a.format(**where) for a in BASE["ablations"]])
    args.values_list = abl.sweep_values(args)
    abl.plan(args, forward)
    module("plot").load_results(inputs["plots"] / "good")
    assert not (tmp_path / "res").exists()


def test_the_table_is_large_and_covers_every_script():
    assert len(CASES) >= 100
    assert {s for _, s, _ in CASES} == set(SCRIPTS)
    assert {(c, s) for c, s, _ in CASES} >= SUBPROCESS
    print(f"bad-input table: {len(CASES)} cases over {len(SCRIPTS)} scripts, "
          f"{len({c for c, _, _ in CASES})} classes, {len(SUBPROCESS)} as subprocesses")


def test_messages_say_what_is_wrong(inputs, tmp_path, capfd):
    """A few of the lines, read: they name the file, the key and shape, or the flag."""
    def line(script, *bad):
        where = {**{k: str(v) for k, v in inputs.items()}, "root": str(tmp_path / "res"),
                 "cache": str(tmp_path / "cache"), "file": str(tmp_path), "tmp": str(tmp_path)}
        argv = [a.format(**where) for a in BASE[script] + list(bad)]
        capfd.readouterr()
        assert cli.guarded(module(script).main, argv, signals=False) == 2
        return capfd.readouterr().err.strip()

    assert "data_batch_3" in line("static", "--dataset", "cifar10", "--data-dir", str(inputs["cifar_bad"]))
    wrong = line("dlcorr", "--dataset", "fake_cifar", "--pretrained", "--weights-dir", str(inputs["wrong_weights"]),
                 "--models", "resnet20,resnet32", "--split", "test")
    assert "cifar10_resnet20-4118986f.pt" in wrong and "has shape (100, 64) in the file but (10, 64)" in wrong
    assert "empty item" in line("dlnoise", "--rates", "0,,0.1,")
    assert "train_size 100000 exceeds" in line("dlnoise", "--train-size", "100000")
    assert "2 proxies" in line("convex", "--methods", "dr-is", "--proxies", "1")
    assert "one folder name" in line("static", "--name", "../x")


@pytest.mark.parametrize("limit", [300, 20000])
def test_a_write_error_names_the_file(tmp_path, limit):
    """'File too large' (a write past RLIMIT_FSIZE) carries no file name from the OS: runs.naming
    adds it, and the fresh folder goes again."""
    import resource
    import signal

    def small_files():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)   # the write then fails with EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    r = subprocess.run([sys.executable, str(ROOT / SCRIPTS["convex"]), "--quick", "--results-root",
                        str(tmp_path / "res"), "--name", "x"], capture_output=True, text=True, cwd=ROOT,
                       env={**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}, preexec_fn=small_files,
                       timeout=300)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1, r.stderr[-2000:]
    assert "File too large: " + str(tmp_path / "res" / "Convex-Noise" / "x") in lines[0]
    assert not (tmp_path / "res").exists()


# ---------------------------------------------------------------- hand-edited run-folder JSON


@pytest.fixture(scope="module")
def convex_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("edited") / "res"
    assert cli.guarded(module("convex").main, ["--quick", "--results-root", str(root), "--name", "x"],
                       signals=False) == 0
    return root


@pytest.mark.parametrize("text", ["[1, 2]", '"settings"', "5", "null", "true", '{"d": "twenty"}', '{"epochs": [2]}'])
def test_a_config_json_of_another_type_is_refused_on_resume(convex_run, tmp_path, capfd, text):
    """Every --resume (and every report of the folder) exits 2 with one line, the folder as it was."""
    root = tmp_path / "res"
    shutil.copytree(convex_run, root)
    folder = root / "Convex-Noise" / "x"
    (folder / "config.json").write_text(text + "\n")
    before = {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    capfd.readouterr()
    status = cli.guarded(module("convex").main, ["--quick", "--results-root", str(root), "--name", "x", "--resume"],
                         signals=False)
    err = capfd.readouterr().err.strip().splitlines()
    assert status == 2 and len(err) == 1 and "config" in err[0], err
    assert {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()} == before
    from islab import runs

    if not text.startswith("{"):
        with pytest.raises(cli.UsageError, match="config.json is not a JSON object"):
            runs.read_frame(folder)


def test_hand_edited_online_configuration_facts_are_dropped(tmp_path):
    """configs.json entries of another type (they crashed every resume at `{**infos[tag], ...}`)."""
    (tmp_path / "configs.json").write_text('{"clean": 5, "targeted0.2": {"n_train": 3}, "x": [1]}')
    from islab import sweep

    assert sweep.read_facts(tmp_path / "configs.json") == {"targeted0.2": {"n_train": 3}}
    (tmp_path / "configs.json").write_text('{"clean": {"n_tr')   # truncated: counts as empty
    assert sweep.read_facts(tmp_path / "configs.json") == {}


# ---------------------------------------------------------------- the public API (islab.*)


def _api_cases():
    import numpy as np
    import torch

    import islab

    losses = np.random.default_rng(0).gamma(2.0, size=(3, 20))
    s = islab.rank_disagreement(losses)
    p = islab.online_probs(s)
    tiny = np.full(20, 1e-320)
    tiny[0] = 1.0 - tiny[1:].sum()
    data = torch.utils.data.TensorDataset(torch.randn(30, 1, 8, 8), torch.arange(30) % 3)

    def model():
        return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 3))

    grad = lambda a: torch.tensor(a, requires_grad=True)  # noqa: E731
    return {
        # tensors that require grad
        "rank_disagreement, losses require grad": (lambda: islab.rank_disagreement(grad(losses)), TypeError, "losses"),
        "online_probs, score requires grad": (lambda: islab.online_probs(grad(s)), TypeError, "score"),
        "importance_weights, p requires grad": (lambda: islab.importance_weights(grad(p)), TypeError, "probs "),
        "select_top, score requires grad": (lambda: islab.select_top(grad(s), 0.3), TypeError, "score"),
        # complex values (np.asarray drops the imaginary part with a warning only)
        "rank_disagreement, complex losses": (lambda: islab.rank_disagreement(losses + 1j), TypeError, "losses"),
        "consensus, complex losses": (lambda: islab.consensus(losses.astype(complex)), TypeError, "losses"),
        "online_probs, complex score": (lambda: islab.online_probs(s + 0j), TypeError, "score"),
        "importance_weights, complex p": (lambda: islab.importance_weights(p + 0j), TypeError, "probs "),
        # NaN or non-integer labels (silently truncated before)
        "select_top, NaN label": (lambda: islab.select_top(s, 0.3, labels=np.r_[np.nan, np.zeros(19)]),
                                  ValueError, "labels"),
        "select_top, fractional label": (lambda: islab.select_top(s, 0.3, labels=np.linspace(0, 2.5, 20)),
                                         ValueError, "labels"),
        # fractional counts (int() truncated them)
        "TrainingDynamics, fractional num_examples": (lambda: islab.TrainingDynamics(2.5), ValueError,
                                                      "num_examples"),
        "proxy_statistics, fractional epochs": (lambda: islab.proxy_statistics(data, model, epochs=2.5), ValueError,
                                                "epochs"),
        "proxy_statistics, fractional seed": (lambda: islab.proxy_statistics(data, model, seeds=[0.5, 1, 2]),
                                              ValueError, "seeds"),
        "proxy_statistics, bool batch size": (lambda: islab.proxy_statistics(data, model, batch_size=True),
                                              ValueError, "batch_size"),
        # finite values that overflow: an infinite weight, a learning rate torch cannot apply
        "importance_weights, p near the smallest float": (lambda: islab.importance_weights(tiny), ValueError, "probs[1]"),
        "proxy_statistics, lr beyond float32": (lambda: islab.proxy_statistics(data, model, lr=1e300), ValueError,
                                                "lr"),
    }


API_CASES = sorted(_api_cases().items())


@pytest.mark.parametrize("case", [c for c, _ in API_CASES])
def test_public_api_names_the_bad_argument(case):
    call, error, name = dict(API_CASES)[case]
    with pytest.raises(error) as e:
        call()
    assert name in str(e.value), str(e.value)
