#!/usr/bin/env python
"""Benchmark: the Convex-Noise default sweep's SGD chains, vectorised vs one chain at a time.

    python benchmarks/convex_chains.py              # default sweep config (Convex-Noise/IS-noise.py)
    python benchmarks/convex_chains.py --sample 12  # more chains in the timed loop sample

Vectorised: islab.convex.run_chains advancing every chain of one ratio as one (chains, d)
update, for every ratio of the default sweep (exactly the chains IS-noise.py runs, proxies
and metrics excluded).  Loop: islab.convex.reference_chain (a plain per-step loop on one (d,)
vector) on a sample of those chains, spread over methods and ratios; its time is extrapolated
linearly to all chains (every chain does the same number of steps).  The machine may be shared:
both are process CPU times (time.process_time) and the wall times are printed too.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from islab import cli, convex  # noqa: E402
from islab.loader import load_script  # noqa: E402


def sweep_args():
    """The default arguments of Convex-Noise/IS-noise.py (its file name has a hyphen)."""
    mod = load_script(REPO / "Convex-Noise" / "IS-noise.py", "is_noise", fresh=True)
    return mod, mod.parse_args([])


def main(argv=None):
    p = cli.make_parser(__doc__.split("\n\n")[0])
    p.add_argument("--sample", type=cli.positive_int, default=6,
                   help="chains timed one at a time with the reference loop (then extrapolated)")
    p.add_argument("--epochs", type=cli.positive_int, default=None,
                   help="override the sweep's epochs (default: the script's default)")
    args = p.parse_args(argv)
    script, sweep = sweep_args()
    if args.epochs:
        sweep.epochs = args.epochs
    cfg = convex.sgd_config(sweep)
    plan = script.configs(sweep)

    # build every ratio's chains (problems, proxies for DR-IS, sampler streams) untimed
    batches = []
    for ratio in sweep.ratios:
        problems = [it[3] for it in script.make_problems(sweep, ratio, plan)]
        batches.append((problems, lambda pr=problems: convex.method_chains(pr, sweep.methods, cfg)))
    n_chains = sum(len(pr) * len(sweep.methods) for pr, _ in batches)

    vec_cpu = vec_wall = 0.0
    for problems, make in batches:
        chains = make()  # untimed: sampler streams and DR-IS proxies
        Xs, ys = np.stack([q.X for q in problems]), np.stack([q.y for q in problems])
        t, w = time.process_time(), time.perf_counter()
        convex.run_chains(Xs, ys, chains, cfg.lam, cfg.t0, cfg.eta_max, cfg.epochs, cfg.batch, cfg.floor,
                          safe=cfg.safe)
        vec_cpu += time.process_time() - t
        vec_wall += time.perf_counter() - w

    # the loop: a sample of chains spread over ratios and methods, each from a fresh stream
    rng = np.random.default_rng(0)
    picks = [(b, c) for b in range(len(batches)) for c in range(len(batches[b][0]) * len(sweep.methods))]
    chosen = rng.choice(len(picks), size=min(args.sample, len(picks)), replace=False)
    picks = [picks[i] for i in sorted(chosen)]
    loop_cpu = loop_wall = 0.0
    for b, c in picks:
        problems, make = batches[b]
        chains = make()
        pr = problems[chains.data[c]]
        t, w = time.process_time(), time.perf_counter()
        convex.reference_chain(pr.X, pr.y, chains.rule[c], chains.p[c], True, chains.rngs[c], cfg.lam,
                               cfg.t0, cfg.eta_max, cfg.epochs, cfg.batch, cfg.floor, safe=cfg.safe)
        loop_cpu += time.process_time() - t
        loop_wall += time.perf_counter() - w
    scale = n_chains / len(picks)
    print(f"default sweep: {len(sweep.ratios)} ratios, {n_chains} chains, {cfg.epochs} epochs x "
          f"{sweep.n // cfg.batch} steps, d={sweep.d}")
    print(f"vectorised (all {n_chains} chains, measured): cpu {vec_cpu:.2f} s, wall {vec_wall:.2f} s")
    print(f"one chain at a time ({len(picks)} chains measured: cpu {loop_cpu:.2f} s; "
          f"extrapolated x{scale:.0f}): cpu {loop_cpu * scale:.1f} s, wall {loop_wall * scale:.1f} s")
    print(f"speed-up (cpu): {loop_cpu * scale / vec_cpu:.0f}x")


if __name__ == "__main__":
    cli.run_main(main)
