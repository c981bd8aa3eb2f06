#!/usr/bin/env python
"""DL-noise figures from a results folder written by DL-noise/is.py.

    python DL-noise/plot.py results/DL-noise/r-b64          # or --run results/DL-noise/r-b64
    python DL-noise/plot.py results/DL-noise/r-b64 --out figs

Draws, into the folder (or --out):
  accuracy_vs_noise.png    final and best test accuracy % vs label-noise rate, one line per
                           strategy, error bars = std over seeds
  corrupted_vs_noise.png   fraction of drawn training examples whose label was corrupted vs the
                           noise rate (dashed: what uniform sampling draws, = the rate)
  curves_test_acc.png      test accuracy % vs epoch per strategy, one panel per noise rate
  curves_train_loss.png    training loss vs epoch (the 1/(N p)-weighted loss for sampled runs)
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # standalone: find islab

from islab import cli, plots, runs  # noqa: E402
from islab.cli import UsageError  # noqa: E402

FIGURES = ("accuracy_vs_noise.png", "corrupted_vs_noise.png", "curves_test_acc.png", "curves_train_loss.png")


def errorbar_lines(ax, df, x: str, hue: str, ylabel: str, title: str = "") -> None:
    """Mean over seeds +- one std (error bars), one line per `hue`; df is tidy with a 'value' column."""
    stats = df.groupby([hue, x], sort=False)["value"].agg(["mean", "std"]).reset_index()
    for h, d in stats.groupby(hue, sort=False):
        d = d.sort_values(x)
        ax.errorbar(d[x], d["mean"], yerr=d["std"].fillna(0.0), marker="o", capsize=3, label=str(h))
    ax.set_xlabel(x)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend()


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
    for c in ("rate", "value", "epoch"):
        if not pd.api.types.is_numeric_dtype(df[c]):
            raise UsageError(f"{where}: column {c} is not numeric")
    return df


def draw(run_dir, out=None) -> list[Path]:
    """Every figure of one DL-noise results folder; returns the written paths."""
    import matplotlib.pyplot as plt
    import pandas as pd

    run_dir = Path(run_dir)
    out = Path(out) if out else run_dir
    df = load_results(run_dir)
    df["noise %"] = 100.0 * df["rate"]
    final = df[df["epoch"].isna()]
    per_epoch = df[df["epoch"].notna()]
    written = []

    fig, axes = plt.subplots(1, 2, figsize=(9.0, 3.6), sharey=True)
    for ax, (metric, title) in zip(axes, [("final_test_acc", "final test accuracy"),
                                          ("best_test_acc", "best test accuracy over epochs")]):
        errorbar_lines(ax, final[final["metric"] == metric], "noise %", "strategy", "test accuracy %", title)
    plots.save(fig, out / FIGURES[0])
    written.append(out / FIGURES[0])

    fig, ax = plt.subplots(figsize=(4.8, 3.6))
    errorbar_lines(ax, final[final["metric"] == "drawn_corrupt"], "noise %", "strategy",
                   "fraction of drawn examples corrupted", "corrupted labels drawn during training")
    rates = sorted(final["noise %"].unique())
    ax.plot(rates, [r / 100.0 for r in rates], "k--", lw=1, label="noise rate (uniform)")
    ax.legend()
    plots.save(fig, out / FIGURES[1])
    written.append(out / FIGURES[1])

    for name, metric, ylabel in [(FIGURES[2], "test_acc", "test accuracy %"),
                                 (FIGURES[3], "train_loss", "training loss")]:
        d = per_epoch[per_epoch["metric"] == metric].rename(columns={"value": metric})
        plots.lines_with_band(d, "epoch", metric, "strategy", out / name, title=f"{ylabel} vs epoch "
                              "(mean +- std over seeds)", ylabel=ylabel, col="noise %",
                              logy=metric == "train_loss")
        written.append(out / name)
    return written


def main(argv=None):
    p = cli.make_parser(__doc__.split("\n\n")[0])
    p.add_argument("path", nargs="?", help="results folder of DL-noise/is.py (holds results.csv)")
    p.add_argument("--run", help="the same folder as a flag (instead of the positional path)")
    p.add_argument("--out", type=cli.folder, help="folder for the figures (default: the results folder)")
    args = p.parse_args(argv)
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
