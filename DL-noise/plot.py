#!/usr/bin/env python
"""DL-noise figures from a results folder written by DL-noise/is.py.

    python DL-noise/plot.py results/DL-noise/r-b64          # or --run results/DL-noise/r-b64
    python DL-noise/plot.py results/DL-noise/r-b64 --out figs

Draws, into the folder (or --out):
  accuracy_vs_noise.png    final and best test accuracy % vs label-noise rate (a true rate axis),
                           one marker per strategy, error bars = sd over seeds, chance dashed
  corrupted_vs_noise.png   fraction of drawn training examples whose label was corrupted vs the
                           noise rate (dashed: what uniform sampling draws, = the rate)
  curves_test_acc.png      test accuracy % vs epoch per strategy, one panel per noise rate
  curves_train_loss.png    training loss vs epoch, log scale, two rows: the plain mean
                           cross-entropy (the baseline) and the 1/(N p)-weighted loss the sampled
                           strategies minimise (levels not comparable, so never on one axis)
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # standalone: find islab

import json  # noqa: E402

import numpy as np  # noqa: E402
from matplotlib.transforms import ScaledTranslation  # noqa: E402

from islab import cli, plots, runs  # noqa: E402
from islab.cli import UsageError  # noqa: E402

FIGURES = ("accuracy_vs_noise.png", "corrupted_vs_noise.png", "curves_test_acc.png", "curves_train_loss.png")


def dodged_errorbars(ax, df, hue: str, order, sts) -> None:
    """Mean over seeds +- one sd per strategy at each noise rate, on a true rate axis: the points
    sit at the rates themselves (x data = the rate in %), the strategies shifted sideways by a
    few points on the page only (a display offset), so no error bar hides another."""
    hues = [h for h in order if (df[hue] == h).any()]
    step = 5.0   # points between neighbouring strategies
    for k, h in enumerate(hues):
        st = df[df[hue] == h].groupby("noise %")["value"].agg(["mean", "std"]).reset_index()
        s = sts[h]
        shift = ScaledTranslation((k - (len(hues) - 1) / 2) * step / 72, 0, ax.figure.dpi_scale_trans)
        x, mean, sd = st["noise %"].to_numpy(float), st["mean"].to_numpy(float), st["std"].fillna(0.0).to_numpy(float)
        ax.errorbar(x, mean, yerr=sd, color=s["color"], marker=s["marker"], linestyle=s["linestyle"], capsize=2.5,
                    label=plots.display(h), zorder=3, transform=ax.transData + shift)
        # an offset transform hides the points from autoscaling: give it their data extent
        ax.update_datalim(np.c_[np.r_[x, x], np.r_[mean - sd, mean + sd]])
    ax.autoscale_view()
    rates = sorted(df["noise %"].unique())
    plots.integer_ticks(ax, "x", rates)
    ax.set_xlabel("label-noise rate (%)")


def loss_kinds(run_dir, order) -> dict:
    """{strategy: 'plain' or 'weighted'}: the loss each strategy's train_loss is.  The baseline
    and the subset mode train on the plain mean cross-entropy; the weighted mode's strategies
    on the 1/(N p)-weighted loss."""
    try:
        mode = json.loads((Path(run_dir) / "config.json").read_text()).get("mode", "weighted")
    except (OSError, ValueError, AttributeError):
        mode = "weighted"
    return {s: "plain" if s == "baseline" or mode != "weighted" else "weighted" for s in order}


def loss_curves(per_epoch, order, kinds, path, seeds: str) -> None:
    """curves_train_loss.png: a row per kind of loss (their levels are not comparable), a column
    per noise rate, log y, mean +- sd over seeds."""
    plt = plots.plt
    d = per_epoch[per_epoch["metric"] == "train_loss"]
    rows = [k for k in ("plain", "weighted") if any(kinds[s] == k for s in order if (d["strategy"] == s).any())]
    rates = sorted(d["noise %"].unique())
    sts = plots.styles(order)
    fig, axes = plt.subplots(len(rows), len(rates), figsize=(3.0 * len(rates) + 0.6, 2.6 * len(rows) + 0.6),
                             squeeze=False, sharex=True, sharey="row")
    label = {"plain": "plain mean\ncross-entropy (log)", "weighted": "1/(N p)-weighted\nloss (log)"}
    for i, kind in enumerate(rows):
        for j, r in enumerate(rates):
            ax = axes[i, j]
            for s in order:
                if kinds[s] != kind:
                    continue
                g = d[(d["strategy"] == s) & (d["noise %"] == r)]
                xs, mid, lo, hi = plots.seed_stats({e: v["value"].to_numpy(float) for e, v in g.groupby("epoch")},
                                                   logy=True)
                if len(xs):
                    plots.band(ax, xs, mid, lo, hi, s, st=sts[s])
            plots.log_axis(ax, "y")
            plots.integer_ticks(ax, "x")
            ax.set_title(f"noise {r:g} %" if i == 0 else "")
            if i == len(rows) - 1:
                ax.set_xlabel("epoch")
        axes[i, 0].set_ylabel(label[kind])
    plots.legend_outside(fig, axes, title="strategy")
    fig.suptitle(plots.wrap("DL-noise: training loss per epoch, each strategy on the loss its step minimises "
                            f"(geometric mean x/÷ geometric sd over {seeds})", 50 * len(rates)))
    plots.save(fig, path)


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
    twice = df.drop(columns="value").duplicated()   # every seed would count twice in the figures
    if twice.any():
        first = df[twice].iloc[0]
        raise UsageError(f"{where}: {int(twice.sum())} rows repeat a measurement already there (e.g. strategy "
                         f"{first['strategy']}, rate {first['rate']}, seed {first['seed']}, {first['metric']}): "
                         "a table concatenated twice? remove the repeated rows")
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
    seeds = plots.count_seeds(final, ["strategy", "noise %", "metric"])
    classes = runs_classes(run_dir)
    fig, axes = plt.subplots(1, 2, figsize=(8.0, 3.2), sharey=True)
    chance = None
    for ax, (metric, title) in zip(axes, [("final_test_acc", "final test accuracy"),
                                          ("best_test_acc", "best test accuracy over the epochs")]):
        dodged_errorbars(ax, final[final["metric"] == metric], "strategy", order, sts)
        if classes:
            chance = plots.chance_level(ax, 100.0 / classes, f"chance (1/{classes})")
        ax.set_title(title)
    axes[0].set_ylabel("test accuracy (%)")
    handles = [plots.legend_handle(h, sts[h]) for h in order if (final["strategy"] == h).any()]
    plots.legend_outside(fig, handles=handles + ([chance] if chance is not None else []), title="strategy")
    fig.suptitle(f"DL-noise: test accuracy vs label noise (mean +- sd over {seeds})")
    plots.save(fig, out / FIGURES[0])
    written.append(out / FIGURES[0])

    fig, ax = plt.subplots(figsize=(5.0, 3.2))
    d = final[final["metric"] == "drawn_corrupt"]
    rates = np.array(sorted(d["noise %"].unique()), dtype=float)
    # what uniform sampling draws: the noise rate itself, the diagonal (the baseline lies on it)
    ax.plot(rates, rates / 100.0, **plots.REFERENCE, label="noise rate (what uniform sampling draws)")
    dodged_errorbars(ax, d, "strategy", order, sts)
    ax.set_ylim(bottom=0)
    ax.set_ylabel("fraction of drawn examples corrupted")
    ax.set_title(plots.wrap(f"corrupted labels drawn during training (mean +- sd over {seeds})", 55))
    plots.legend_outside(fig, [ax], title="strategy")
    plots.save(fig, out / FIGURES[1])
    written.append(out / FIGURES[1])

    dd = per_epoch[per_epoch["metric"] == "test_acc"].rename(columns={"value": "test_acc"})
    plots.lines_with_band(dd, "epoch", "test_acc", "strategy", out / FIGURES[2],
                          title="DL-noise: test accuracy per epoch", ylabel="test accuracy (%)", col="noise %",
                          clip=(0, 100), integer_x=True, hue_order=order, panel="noise {value:g} %",
                          reference=100.0 / classes if classes else None,
                          reference_label=f"chance (1/{classes})")
    written.append(out / FIGURES[2])
    loss_curves(per_epoch, order, loss_kinds(run_dir, order), out / FIGURES[3],
                plots.count_seeds(per_epoch, ["strategy", "noise %", "epoch", "metric"]))
    written.append(out / FIGURES[3])
    return written


def runs_classes(run_dir) -> int | None:
    """The number of classes of the run's data set (chance = 1/classes), from config.json; None
    when it does not say."""
    try:
        cfg = json.loads((Path(run_dir) / "config.json").read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(cfg, dict):
        return None
    return {"cifar100": 100}.get(cfg.get("dataset"), 10 if cfg.get("dataset") else None)


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
