"""What the proxies cost, as a share of one target run, measured side by side in one process.

The DR-IS paper claims its proxies add under 10 % to the cost of training the target.  For a
preset this trains, on the real data set and uncached, each proxy of the preset for E_p epochs
(what one noise configuration of DR-IS/static.py trains once, then shares between every method
and target seed) and the target once for E epochs on all data, alternating them --repeats times
so a busy machine slows both alike, and prints median seconds and the ratio proxies / target.

    python benchmarks/proxy_cost.py --preset fashion-mnist          # the short regime (about 2 min, 1 thread)
    python benchmarks/proxy_cost.py --preset fashion-mnist-mem      # the memorisation-matched regime (about 5 min)
    python benchmarks/proxy_cost.py --preset digits --out cost.csv  # the csv REPRODUCTION.md reads
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from islab import cli, experiment  # noqa: E402


def build_parser():
    p = cli.make_parser(__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="fashion-mnist", choices=sorted(experiment.PRESETS),
                   help="protocol preset whose proxies (E_p epochs each) and target (E epochs) are timed")
    p.add_argument("--data-dir", type=cli.path, default="data", help="folder holding the torchvision data sets")
    p.add_argument("--repeats", type=cli.positive_int, default=1,
                   help="alternations of proxies and target (medians are reported)")
    p.add_argument("--out", type=cli.path, default=None,
                   help="also write the medians as a csv (preset, arm, seconds, epochs) to this file")
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    import torch

    ns = argparse.Namespace(**experiment.PRESETS[args.preset], preset=args.preset, torch_device=torch.device("cpu"),
                            train_size=None, download=False, data_dir=args.data_dir, momentum=0.9, no_amp=False,
                            compile=False)
    ds = experiment.open_dataset(ns)
    import numpy as np

    from islab.train import train

    labels = ds.train.y.cpu().numpy().astype(np.int64)
    tcfg = experiment.target_config(ns)
    # as islab.proxies trains them: a snapshot at E_s and AUM / forgetting tracked every step
    pcfg = replace(experiment.proxy_config(ns), snapshot_epochs=(ns.snapshot_epoch,), track_presentations=True)
    proxies = experiment.parse_list(ns.proxies, "proxies")
    times = {"proxies": [], "target": []}
    for r in range(args.repeats):
        t0 = time.perf_counter()
        for k, name in enumerate(proxies):   # one config's proxies, as islab.proxies trains them (no cache)
            train(name, ds, labels, pcfg, 1000 + k)
        times["proxies"].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        train(ns.target, ds, labels, tcfg, r)
        times["target"].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"{args.preset}: proxies {', '.join(proxies)} x {ns.proxy_epochs} epochs: {med['proxies']:.1f} s; "
          f"target {ns.target} x {ns.epochs} epochs: {med['target']:.1f} s; proxies / target = "
          f"{med['proxies'] / med['target']:.2f} (torch threads {torch.get_num_threads()}, "
          f"{args.repeats} repeat{'s' if args.repeats > 1 else ''})")
    if args.out:
        from islab import runs

        runs.atomic_write_text(Path(args.out), "preset,arm,seconds,epochs\n" + "".join(
            f"{args.preset},{arm},{med[arm]:.2f},{ns.proxy_epochs if arm == 'proxies' else ns.epochs}\n"
            for arm in ("proxies", "target")))
    return 0


if __name__ == "__main__":
    cli.run_main(main)
