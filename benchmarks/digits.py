"""Engine check on the offline default: a registry model trained on digits with islab.train.

Prints final test accuracy and wall time.  Target (issue 3): `cnn` >= 95 % in under 30 s on
2 cores.

    python benchmarks/digits.py                 # cnn, 15 epochs, batch 64, lr 0.05
    python benchmarks/digits.py --model cnn_wide
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from islab import cli  # noqa: E402
from islab.data import load_dataset  # noqa: E402
from islab.models import MODELS  # noqa: E402
from islab.train import TrainConfig, train  # noqa: E402


def main(argv=None):
    p = cli.make_parser(__doc__.split("\n")[0])
    p.add_argument("--model", default="cnn", choices=sorted(MODELS), metavar="MODEL",
                   help=f"registry model name, one of {', '.join(MODELS)}")
    p.add_argument("--epochs", type=cli.positive_int, default=15, help="training epochs")
    p.add_argument("--batch-size", type=cli.positive_int, default=64, help="examples per step")
    p.add_argument("--lr", type=cli.learning_rate, default=0.05, help="peak learning rate (cosine)")
    p.add_argument("--seeds", type=cli.comma_list(cli.seed, unique=True), default="0,1,2",
                   help="comma list of seeds")
    p.add_argument("--threads", type=cli.positive_int, default=2, help="torch CPU threads")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    ds = load_dataset("digits")
    for seed in args.seeds:
        t = time.perf_counter()
        res = train(args.model, ds, ds.train.y.numpy(), TrainConfig(epochs=args.epochs, batch_size=args.batch_size,
                                                                    lr=args.lr), seed)
        print(f"{args.model} seed {seed}: test acc {res.test_acc:.2f}% after {args.epochs} epochs, "
              f"{time.perf_counter() - t:.1f} s ({args.threads} threads)", flush=True)


if __name__ == "__main__":
    cli.run_main(main)
