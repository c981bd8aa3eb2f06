#!/usr/bin/env python
"""DL-noise figures from a results folder written by DL-noise/is.py.

    python DL-noise/plot.py results/DL-noise/r-b64          # or --run results/DL-noise/r-b64
    python DL-noise/plot.py results/DL-noise/r-b64 --out figs

Draws, into the folder (or --out):
  accuracy_vs_noise.png    final and best test accuracy % vs label-noise rate, one marker per
                           strategy (dodged), error bars = sd over seeds
  corrupted_vs_noise.png   fraction of drawn training examples whose label was corrupted vs the
                           noise rate (grey marks: what uniform sampling draws, = the rate)
  curves_test_acc.png      test accuracy % vs epoch per strategy, one panel per noise rate
  curves_train_loss.png    training loss vs epoch, log scale (the baseline's plain loss; the
                           1/(N p)-weighted loss for the sampled strategies, as the title says)
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # standalone: find islab

import numpy as np  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

from islab import cli, plots, runs  # noqa: E402
from islab.cli import UsageError  # noqa: E402

FIGURES = ("accuracy_vs_noise.png", "corrupted_vs_noise.png", "curves_test_acc.png", "curves_train_loss.png")


def dodged_errorbars(ax, df, hue: str, order, sts) -> None:
    """Mean over seeds +- one sd per strategy at each noise rate.  The rates sit at evenly
    spaced positions (0, 2, 5, 10, 25 % are not crowded at the left) and the strategies are
    dodged sideways, so no error bar hides another."""
    rates = sorted(df["noise %"].unique())
    pos = {r: i for i, r in enumerate(rates)}
    hues = [h for h in order if (df[hue] == h).any()]
    width = 0.5 / max(len(hues), 1)
    for k, h in enumerate(hues):
        st = df[df[hue] == h].groupby("noise %")["value"].agg(["mean", "std"]).reset_index()
        x = np.array([pos[r] for r in st["noise %"]]) + (k - (len(hues) - 1) / 2) * width
        s = sts[h]
        ax.errorbar(x, st["mean"], yerr=st["std"].fillna(0.0), color=s["color"], marker=s["marker"],
                    linestyle=s["linestyle"], capsize=2.5, label=str(h), zorder=3)
    ax.set_xticks(range(len(rates)), [f"{r:g}" for r in rates])
    ax.set_xlabel("label-noise rate (%)")


REQUIRED = ("rate", "strategy", "seed", "metric", "value", "epoch")


def load_results(folder):
    """The tidy rows of a DL-noise run: from its checksummed job files when it has them, else from
    results.csv.  Anything else (empty, header only, garbage, another script's table) raises
    UsageError with one line."""
    import pandas as pd

    folder = Path(folder)
    if (folder / "jobs").is_dir():
        df = runs.read_frame(folder)
        where = f"{folder} (job files)"
    else:
        where = folder / "results.csv"
        try:
            df = pd.read_csv(where)
        except pd.errors.EmptyDataError:
            raise UsageError(f"{where} is empty") from None
        except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as e:
            raise UsageError(f"{where} is not a results table ({type(e).__name__})") from None
    missing = [c for c in REQUIRED if c not in df]
    if missing:
        raise UsageError(f"{where} is not a DL-noise/is.py results table: no column {', '.join(missing)}")
    if df["epoch"].notna().all():
        raise UsageError(f"{where} holds no finished runs")
    if df["epoch"].isna().all():   # the per-epoch figures would have no line to draw
        raise UsageError(f"{where} holds no per-epoch rows (test_acc, train_loss by epoch)")
    for c in ("rate", "value", "epoch"):
        if not pd.api.types.is_numeric_dtype(df[c]):
            raise UsageError(f"{where}: column {c} is not numeric")
    return df


def draw(run_dir, out=None) -> list[Path]:
    """Every figure of one DL-noise results folder; returns the written paths."""
    import matplotlib.pyplot as plt

    run_dir = Path(run_dir)
    out = Path(out) if out else run_dir
    df = load_results(run_dir)
    df["noise %"] = 100.0 * df["rate"]
    final = df[df["epoch"].isna()]
    per_epoch = df[df["epoch"].notna()]
    written = []

    order = list(dict.fromkeys(final["strategy"]))
    sts = plots.styles(order)
    fig, axes = plt.subplots(1, 2, figsize=(8.0, 3.2), sharey=True)
    for ax, (metric, title) in zip(axes, [("final_test_acc", "final test accuracy"),
                                          ("best_test_acc", "best test accuracy over the epochs")]):
        dodged_errorbars(ax, final[final["metric"] == metric], "strategy", order, sts)
        ax.set_title(title)
    axes[0].set_ylabel("test accuracy (%)")
    plots.legend_outside(fig, axes, title="strategy")
    fig.suptitle("DL-noise: test accuracy vs label noise (mean +- sd over seeds)")
    plots.save(fig, out / FIGURES[0])
    written.append(out / FIGURES[0])

    fig, ax = plt.subplots(figsize=(5.0, 3.2))
    d = final[final["metric"] == "drawn_corrupt"]
    rates = sorted(d["noise %"].unique())
    # the noise rate (what uniform sampling draws): a mark at the centre of each group, on top of
    # the dodged points, so neither hides the baseline, which lies on it
    dodged_errorbars(ax, d, "strategy", order, sts)
    ax.scatter(range(len(rates)), [r / 100.0 for r in rates], marker="_", s=260, linewidths=1.6,
               color="0.25", zorder=4)
    ref = Line2D([], [], marker="_", markersize=12, markeredgewidth=1.6, linestyle="none", color="0.25",
                 label="noise rate (what uniform sampling draws)")
    ax.set_ylim(bottom=0)
    ax.set_ylabel("fraction of drawn examples corrupted")
    ax.set_title("corrupted labels drawn during training")
    handles = ax.get_legend_handles_labels()[0] + [ref]
    plots.legend_outside(fig, handles=handles, title="strategy")
    plots.save(fig, out / FIGURES[1])
    written.append(out / FIGURES[1])

    for name, metric, ylabel, title, logy, clip in [
            (FIGURES[2], "test_acc", "test accuracy (%)", "DL-noise: test accuracy per epoch", False, (0, 100)),
            (FIGURES[3], "train_loss", "training loss (log)",
             "DL-noise: training loss per epoch; baseline: the plain mean cross-entropy, "
             + ", ".join(s for s in order if s != "baseline")
             + ": the 1/(N p)-weighted loss the step minimises (not comparable in level with the baseline's)",
             True, None)]:
        dd = per_epoch[per_epoch["metric"] == metric].rename(columns={"value": metric})
        plots.lines_with_band(dd, "epoch", metric, "strategy", out / name, title=title, ylabel=ylabel,
                              col="noise %", logy=logy, clip=clip, integer_x=True, hue_order=order,
                              panel="noise {value:g} %")
        written.append(out / name)
    return written


def build_parser():
    p = cli.make_parser(__doc__.split("\n\n")[0])
    p.add_argument("path", nargs="?", type=cli.path, help="results folder of DL-noise/is.py (holds results.csv)")
    p.add_argument("--run", type=cli.path, help="the same folder as a flag (instead of the positional path)")
    p.add_argument("--out", type=cli.folder, help="folder for the figures (default: the results folder)")
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    folder = args.path or args.run
    if folder is None:
        cli.fail("give the results folder (positional path or --run)")
    if args.path and args.run and Path(args.path) != Path(args.run):
        cli.fail("give the results folder once: positional path or --run, not two different ones")
    folder = Path(folder)
    if not folder.is_dir():
        cli.fail(f"results folder {folder} does not exist")
    if not (folder / "results.csv").is_file() and not (folder / "jobs").is_dir():
        cli.fail(f"{folder} holds no results.csv (run DL-noise/is.py first)")
    load_results(folder)   # a bad table exits 2 before --out is created
    if args.out:
        runs.make_dirs(args.out, "--out")
    for path in draw(folder, args.out):
        print(path)


if __name__ == "__main__":
    cli.run_main(main)
