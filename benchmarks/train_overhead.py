"""Per-step overhead of islab.train against a plain PyTorch loop, side by side in one run.

Both arms train the same registry model (same init) with the same SGD hyper-parameters on the
same generated uint8 images (default: Fashion-MNIST-shaped, 1x28x28, 10 classes), one pass of
N images per epoch in batches of b:
  plain        randperm, x[idx], (x/255 - mean)/std, forward, cross-entropy, backward, step
  islab.train  the project's loop (lr schedule, data stream, per-epoch test evaluation, ...)
  baseline     (with --baseline REF) islab/train.py as it was at git commit REF, loaded from
               `git show` next to today's library: before/after a change, side by side
The arms alternate --repeats times so a busy machine slows all alike; images/s are medians.
Prints plain / islab (1.0 = no overhead) and, with a baseline, today / baseline.  A ratio is
what to compare across machines, not the images/s of a shared machine.

    python benchmarks/train_overhead.py                         # mlp, 28x28 grey, batch 128, 1 thread
    python benchmarks/train_overhead.py --baseline 2d3fd34      # ... and the loop before issue 14
    python benchmarks/train_overhead.py --model linear --shape 1,8,8 --batch-size 64
"""
from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from islab import cli, runs  # noqa: E402
from islab.loader import load_script  # noqa: E402
from islab.data import Dataset, Split  # noqa: E402
from islab.models import MODELS  # noqa: E402
from islab.train import TrainConfig, new_model, train  # noqa: E402

# Fashion-MNIST's training-set pixel statistics (units of x/255), used for the generated images too
FMNIST_MEAN, FMNIST_STD = 0.2860, 0.3530


def generated_dataset(shape, n_train: int, n_test: int, classes: int = 10, seed: int = 0) -> Dataset:
    """Uniform random uint8 images with random labels: only the shapes matter for a timing."""
    g = torch.Generator().manual_seed(seed)
    c = shape[0]

    def split(n):
        return Split(torch.randint(0, 256, (n, *shape), generator=g, dtype=torch.uint8),
                     torch.randint(0, classes, (n,), generator=g))

    return Dataset(name=f"generated{'x'.join(map(str, shape))}", train=split(n_train), test=split(n_test),
                   num_classes=classes, input_shape=tuple(shape), mean=(FMNIST_MEAN,) * c,
                   std=(FMNIST_STD,) * c, augment="none")


def parse_shape(text: str) -> tuple:
    try:
        shape = tuple(int(t) for t in text.split(","))
    except ValueError:
        cli.fail(f"--shape must be C,H,W integers, got {text!r}")
    if len(shape) != 3 or min(shape) < 1:
        cli.fail(f"--shape must be three positive integers C,H,W, got {text!r}")
    return shape


def plain_loop(name, ds, cfg: TrainConfig) -> float:
    """images/s of the textbook loop (no evaluation, no bookkeeping)."""
    model = new_model(name, ds, 0, "cpu")
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    x, y, n = ds.train.x, ds.train.y, len(ds.train)
    mean, std = ds.mean[0], ds.std[0]
    t = time.perf_counter()
    for _ in range(cfg.epochs):
        perm = torch.randperm(n)
        for s in range(0, n, cfg.batch_size):
            idx = perm[s:s + cfg.batch_size]
            loss = F.cross_entropy(model((x[idx].float() / 255 - mean) / std), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return cfg.epochs * n / (time.perf_counter() - t)


def islab_loop(name, ds, cfg: TrainConfig, train_fn=train) -> float:
    t = time.perf_counter()
    train_fn(name, ds, ds.train.y.numpy(), cfg, seed=0)
    return cfg.epochs * len(ds.train) / (time.perf_counter() - t)


def baseline_train(ref: str):
    """islab.train.train as of git commit `ref` (this repository's history), or exit 2."""
    import subprocess
    import tempfile

    repo = Path(__file__).resolve().parent.parent
    res = subprocess.run(["git", "-C", str(repo), "show", f"{ref}:islab/train.py"], capture_output=True,
                         text=True)
    if res.returncode != 0:
        cli.fail(f"--baseline {ref}: cannot read islab/train.py at that commit ({res.stderr.strip()[:120]})")
    path = Path(tempfile.mkdtemp()) / "train_baseline.py"
    path.write_text(res.stdout)
    return load_script(path, "train_baseline", fresh=True).train


def main(argv=None):
    p = cli.make_parser(__doc__.split("\n")[0])
    p.add_argument("--model", default="mlp", help="registry model name")
    p.add_argument("--shape", default="1,28,28", help="image shape C,H,W (pixels)")
    p.add_argument("--n", type=cli.positive_int, default=60000, help="training images per epoch")
    p.add_argument("--n-test", type=cli.positive_int, default=10000,
                   help="test images (islab.train evaluates them after every epoch)")
    p.add_argument("--batch-size", type=cli.positive_int, default=128, help="images per step")
    p.add_argument("--epochs", type=cli.positive_int, default=1, help="epochs per timed run")
    p.add_argument("--repeats", type=cli.positive_int, default=3, help="alternating timed runs per arm")
    p.add_argument("--threads", type=cli.positive_int, default=1, help="torch CPU threads")
    p.add_argument("--baseline", default=None, help="git commit whose islab/train.py runs as a third arm")
    p.add_argument("--out", type=cli.output_file, default=None, help="also write the report to this text file")
    args = p.parse_args(argv)
    if args.model not in MODELS:
        cli.fail(f"unknown model {args.model!r}; choose from {', '.join(MODELS)}")
    shape = parse_shape(args.shape)
    torch.set_num_threads(args.threads)
    ds = generated_dataset(shape, args.n, args.n_test)
    cfg = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=0.05)
    old = baseline_train(args.baseline) if args.baseline else None
    speeds = {"plain": [], "islab.train": []}
    if old is not None:
        speeds[f"baseline {args.baseline}"] = []
    for _ in range(args.repeats):
        speeds["plain"].append(plain_loop(args.model, ds, cfg))
        speeds["islab.train"].append(islab_loop(args.model, ds, cfg))
        if old is not None:
            speeds[f"baseline {args.baseline}"].append(islab_loop(args.model, ds, cfg, old))
    med = {k: statistics.median(v) for k, v in speeds.items()}
    lines = [f"{k:18s} median {med[k]:9.0f} images/s  (runs: {', '.join(f'{s:.0f}' for s in v)})"
             for k, v in speeds.items()]
    lines.append(f"{args.model} on {args.shape} images, batch {args.batch_size}, N {args.n} "
                 f"(+{args.n_test} test), {args.threads} thread(s), torch {torch.__version__}; "
                 f"arms alternated {args.repeats}x")
    lines.append(f"ratio plain / islab.train = {med['plain'] / med['islab.train']:.2f}")
    if old is not None:
        b = med[f"baseline {args.baseline}"]
        lines.append(f"ratio plain / baseline {args.baseline} = {med['plain'] / b:.2f}")
        lines.append(f"ratio islab.train / baseline {args.baseline} = {med['islab.train'] / b:.2f}")
    print("\n".join(lines))
    if args.out:
        runs.atomic_write_text(args.out, "\n".join(lines) + "\n")
    return med


if __name__ == "__main__":
    cli.run_main(main)   # bad input and OSErrors: exit 2, one line
