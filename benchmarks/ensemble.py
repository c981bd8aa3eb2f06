"""A homogeneous proxy ensemble: K proxies as one batched model vs K sequential runs, side by side.

Both arms are islab.proxies.proxy_ensemble (no cache): the same K = len(seeds) proxies of one
registry model, with the proxy protocol (AUM and forgetting tracked every step, an eval-mode
snapshot of the training set at --snapshot-epoch, the test set evaluated every epoch):
  sequential  batched=False: K islab.train runs one after the other
  batched     batched=True:  one islab.ensemble run of the K members folded into one model
For every (data, model, K) the two arms run back to back --repeats times, alternating, so that a
machine shared with other jobs slows both alike; the ratio of their median wall times is printed
(> 1: batched is faster), for wall time and for the CPU time of the process (with one thread
the CPU-time ratio barely depends on other jobs; with more, it counts spinning threads too).
Absolute seconds on a shared machine are not a result; ratios are.

Data: `digits` (sklearn's 8x8 digits, 1437 training images, batch 64 as in the digits preset)
and `fmnist-shape` (generated uint8 images of Fashion-MNIST's shape 1x28x28, 10 classes, batch
128 as in the fashion-mnist preset; --n images, default 10,000 to keep K = 8 sequential short).

    python benchmarks/ensemble.py                                   # digits + fmnist-shape, K = 3, 8
    python benchmarks/ensemble.py --data digits --models mlp --k 3 --threads 1
    python benchmarks/ensemble.py --out benchmarks/results/ensemble-cpu.txt
"""
from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402

from islab import cli, ensemble, proxies, runs  # noqa: E402
from islab.data import load_dataset  # noqa: E402
from islab.models import MODELS  # noqa: E402
from islab.train import TrainConfig  # noqa: E402
from train_overhead import generated_dataset  # noqa: E402

DATA = {  # name -> (default models, batch size)
    "digits": ("linear,mlp,cnn", 64),
    "fmnist-shape": ("linear,mlp,pooled_cnn", 128),
}


def dataset(name: str, n: int):
    if name == "digits":
        return load_dataset("digits")
    return generated_dataset((1, 28, 28), n, max(1000, n // 6))


def timed(fn) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process: all its threads)."""
    t, c = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - t, time.process_time() - c


def main(argv=None):
    p = cli.make_parser(__doc__.split("\n")[0])
    p.add_argument("--data", default="digits,fmnist-shape", help=f"comma list from {', '.join(DATA)}")
    p.add_argument("--models", default=None,
                   help="comma list of registry models (default per data set: "
                        + "; ".join(f"{d}: {m}" for d, (m, _) in DATA.items()) + ")")
    p.add_argument("--k", default="3,8", help="comma list of ensemble sizes K")
    p.add_argument("--epochs", type=cli.positive_int, default=2, help="proxy epochs E_p")
    p.add_argument("--snapshot-epoch", type=cli.positive_int, default=1, help="E_s (1-based)")
    p.add_argument("--n", type=cli.positive_int, default=10000,
                   help="generated training images (fmnist-shape)")
    p.add_argument("--repeats", type=cli.positive_int, default=2, help="alternating timed runs per arm")
    p.add_argument("--threads", type=cli.positive_int, default=2, help="torch CPU threads")
    p.add_argument("--out", type=cli.output_file, default=None, help="also write the report to this text file")
    args = p.parse_args(argv)
    datas = [d for d in args.data.split(",") if d]
    for d in datas:
        if d not in DATA:
            cli.fail(f"unknown --data {d!r}; choose from {', '.join(DATA)}")
    try:
        ks = sorted({int(k) for k in args.k.split(",") if k})
    except ValueError:
        cli.fail(f"--k must be a comma list of integers, got {args.k!r}")
    if not ks or min(ks) < 2:
        cli.fail("--k values must be >= 2 (one proxy has nothing to batch)")
    if args.snapshot_epoch > args.epochs:
        cli.fail(f"--snapshot-epoch {args.snapshot_epoch} exceeds --epochs {args.epochs}")
    models = args.models.split(",") if args.models else None
    for m in models or []:
        if m not in MODELS:
            cli.fail(f"unknown model {m!r}; choose from {', '.join(MODELS)}")
    torch.set_num_threads(args.threads)

    lines = [f"batched vs sequential proxy ensembles, torch {torch.__version__}, {args.threads} thread(s), "
             f"{args.epochs} epochs, snapshot at {args.snapshot_epoch}, medians of {args.repeats} "
             "alternating runs per arm (shared machine: compare the ratios)",
             f"{'data':13s} {'model':11s} {'K':>2s} {'seq wall s':>10s} {'batch wall s':>12s} {'ratio':>6s}"
             f" {'seq cpu s':>10s} {'batch cpu s':>11s} {'cpu ratio':>9s}"]
    print("\n".join(lines), flush=True)
    for d in datas:
        ds = dataset(d, args.n)
        y = ds.train.y.numpy()
        cfg = TrainConfig(epochs=args.epochs, batch_size=DATA[d][1], lr=0.05)
        for name in models or DATA[d][0].split(","):
            if not ensemble.foldable(name, ds):
                line = f"{d:13s} {name:11s}  -  does not fold (sequential path only)"
                print(line, flush=True)
                lines.append(line)
                continue
            proxies.proxy_ensemble(ds, y, [name], [99], cfg, args.snapshot_epoch, batched=False)  # warm-up
            for k in ks:
                names, seeds = [name] * k, list(range(k))
                arms = {"sequential": [], "batched": []}
                for _ in range(args.repeats):
                    for arm, batched in (("sequential", False), ("batched", True)):
                        arms[arm].append(timed(lambda: proxies.proxy_ensemble(
                            ds, y, names, seeds, cfg, args.snapshot_epoch, batched=batched)))
                seq, bat = ([statistics.median(t[i] for t in arms[a]) for i in (0, 1)]
                            for a in ("sequential", "batched"))
                line = (f"{d:13s} {name:11s} {k:2d} {seq[0]:10.2f} {bat[0]:12.2f} {seq[0] / bat[0]:6.2f}"
                        f" {seq[1]:10.2f} {bat[1]:11.2f} {seq[1] / bat[1]:9.2f}")
                print(line, flush=True)
                lines.append(line)
    if args.out:
        runs.atomic_write_text(args.out, "\n".join(lines) + "\n")
    return lines


if __name__ == "__main__":
    cli.run_main(main)   # bad input and OSErrors: exit 2, one line
