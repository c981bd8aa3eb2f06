#!/usr/bin/env python
"""Convex-Noise: does importance sampling speed up SGD on heterogeneous data, and what does
label noise do to it?  (Convex-Noise/README.md.)

Squared hinge + L2 on a two-cluster synthetic problem (a rare cluster whose features are
`ratio` times larger), six samplers (islab.convex.METHODS), four binary noise kinds, several
rates and seeds.  Every chain of one ratio (methods x seeds x noise configurations) runs as
one vectorised numpy update (islab.convex.run_chains).

    python Convex-Noise/IS-noise.py            # default sweep, see Convex-Noise/README.md
    python Convex-Noise/IS-noise.py --quick    # a two-second smoke run

Output: results/Convex-Noise/<run>/scaled_{ratio}/flip-{type}/ with res.txt, results.csv
(every epoch), curves.png and labels.npz; at the run root results.csv (final epoch of every
chain), res.txt (summary tables), summary.png, plus config/cmd/env provenance.
"""
from __future__ import annotations

import contextlib
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # standalone: find islab

import numpy as np  # noqa: E402

from islab import cli, convex, noise, runs, tables  # noqa: E402

FAMILY = "Convex-Noise"
# The --quick setting (smoke test): few points, two ratios, clean + uniform, two seeds, 2 epochs.
QUICK = dict(n=200, n_test=400, d=5, ratios="1,20", flips="clean,uniform", rates="0.1", seeds="0,1",
             epochs=2)


# ---------------------------------------------------------------- arguments


def build_parser():
    p = cli.make_parser(__doc__.split("\n\n")[0])
    p.epilog = "methods: " + "; ".join(f"{m} = {h}" for m, h in convex.METHOD_HELP.items())
    g = p.add_argument_group("sweep")
    g.add_argument("--ratios", type=cli.comma_list(cli.positive_float), default="1,5,20,50",
                   help="rare-cluster norm / common-cluster norm (dimensionless, each > 0), comma list; "
                        "one scaled_{ratio} folder each")
    g.add_argument("--flips", type=cli.comma_list(noise.kind_name), default=",".join(noise.BINARY_KINDS),
                   help=f"noise kinds, comma list from {', '.join(noise.BINARY_KINDS)} (clean = no flips); "
                        "one flip-{type} folder each")
    g.add_argument("--rates", type=cli.comma_list(cli.rate), default="0.05,0.1,0.25",
                   help="corruption rates in [0, 1) (fraction of N flipped), comma list; 'clean' ignores "
                        "them. "
                        "A 'rare' rate needing more flips than the rare cluster holds is skipped (logged)")
    g.add_argument("--methods", type=cli.comma_list(str), default=",".join(convex.METHODS),
                   help=f"samplers, comma list from {', '.join(convex.METHODS)} (see below)")
    g.add_argument("--seeds", type=cli.comma_list(cli.seed), default="0,1,2,3,4",
                   help="run seeds, comma list (data, noise, proxies and samplers derive from each)")
    convex.add_data_args(p, margin=0.1)
    convex.add_sgd_args(p)
    g = p.add_argument_group("run")
    g.add_argument("--results-root", type=cli.folder, default=str(runs.RESULTS_ROOT),
                   help="results folder; the run lands in <root>/Convex-Noise/<name> (default: the repository's "
                        "results/)")
    g.add_argument("--name", type=runs.check_name, default=None,
                   help="run folder name, one folder (default: from the parameters)")
    g.add_argument("--resume", action="store_true",
                   help="continue a run folder, skipping finished configurations")
    cli.add_quick(g, QUICK, ", ~2 s")
    return p


def parse_args(argv=None):
    args = cli.parse_quick(build_parser(), QUICK, argv)
    cli.check_choices(args.flips, noise.BINARY_KINDS, "noise kind")
    cli.check_choices(args.methods, convex.METHODS, "method")
    if args.batch > args.n:
        cli.fail(f"--batch {args.batch} exceeds --n {args.n}")
    if args.n < 2:
        cli.fail("--n must be at least 2 (ranks need two examples)")
    for opt in ("ratios", "flips", "rates", "methods", "seeds"):
        setattr(args, opt, list(dict.fromkeys(getattr(args, opt))))  # drop duplicates, keep order
    plan = configs(args)  # fails (exit 2) when a requested noise kind has no feasible rate
    # every exact optimum of the sweep (~0.3 s for the default): a --lam too small for the data
    # exits 2 here, before any folder exists, not half-way through the sweep
    convex.check_args(args, lambda: [make_problems(args, ratio, plan) for ratio in args.ratios])
    return args


def configs(args) -> list[tuple[str, list[float]]]:
    """(flip, rates) per noise kind; 'clean' has the single rate 0.  Infeasible 'rare' rates
    (more flips than the round(rho*N) rare examples) are dropped; none left -> exit 2."""
    out = []
    n_rare = int(round(args.rho * args.n))
    for flip in args.flips:
        if flip == "clean":
            out.append((flip, [0.0]))
            continue
        rates = [r for r in args.rates if flip != "rare" or noise.n_corrupt(args.n, r) <= n_rare]
        if not rates:
            cli.fail(f"'rare' noise needs n_corrupt(N, rate) <= round(rho*N) = {n_rare}; no rate in "
                     f"{args.rates} fits (raise --rho or lower --rates)")
        out.append((flip, rates))
    return out


def default_name(args) -> str:
    digest = runs.config_digest(args)
    return runs.run_name("quick" if args.quick else "sweep", f"n{args.n}", f"d{args.d}",
                         f"lam{args.lam:g}", f"ep{args.epochs}", digest)


# ---------------------------------------------------------------- one ratio


def make_problems(args, ratio, todo):
    """Problems of one ratio for the pending (flip, rates): list of (flip, rate, seed, Problem)."""
    out = []
    for seed in args.seeds:
        clean = convex.make_clean(args.n, args.n_test, args.d, args.rho, ratio, args.margin, seed, args.lam)
        for flip, rates in todo:
            for rate in rates:
                pr = clean if flip == "clean" else convex.corrupt(clean, flip, rate, args.lam)
                out.append((flip, rate, seed, pr))
    return out


COLUMNS = ["ratio", "flip", "rate", "method", "seed", "epoch", "metric", "value"]


def tidy(metrics, items, methods, ratio):
    """Metrics {name: (E+1, P, M)} -> long DataFrame with COLUMNS (epoch 0 has no mass row)."""
    import pandas as pd

    cols = convex.long_format(metrics, {"ratio": [ratio] * len(items), "flip": [it[0] for it in items],
                                        "rate": [it[1] for it in items], "seed": [it[2] for it in items]},
                              methods)
    return pd.DataFrame(cols)[COLUMNS]


def optimum_rows(items):
    """Test error (%) and ||grad F|| of the exact optima, one row per (rate, seed)."""
    import pandas as pd

    return pd.DataFrame([{"rate": rate, "seed": seed,
                          "opt_test_err_pct": 100 * convex.test_error(pr.opt.w, pr.X_test, pr.y_test),
                          "clean_opt_test_err_pct": 100 * convex.test_error(pr.opt_clean.w, pr.X_test,
                                                                            pr.y_test),
                          "opt_grad_norm": pr.opt.grad_norm,
                          "corrupt_in_rare": int((pr.corrupt & pr.rare).sum()),
                          "n_corrupt": int(pr.corrupt.sum())}
                         for _, rate, seed, pr in items])


# ---------------------------------------------------------------- writing one configuration

CONFIG_FILES = ("res.txt", "results.csv", "labels.npz", "curves.png")   # per job, checksummed

PLOT_METRICS = ("dist_train", "dist_clean", "gap", "test_err_pct", "mass_corrupt")
PLOT_LABELS = {"dist_train": "||w - w*|| (noisy obj.)", "dist_clean": "||w - w*_clean||",
               "gap": "F(w) - F(w*)", "test_err_pct": "clean test error (%)",
               "mass_corrupt": "sampling mass on corrupted"}


def final_table(df, methods):
    last = df[df["epoch"] == df["epoch"].max()]
    return runs.mean_std_table(last, ["rate", "method"], [*PLOT_METRICS, "diverged"], fmt="{:.3g}")


def write_config(folder: Path, df, items, methods, ratio, flip, elapsed):
    opt = optimum_rows(items)
    lines = [f"Convex-Noise  ratio={ratio:g}  flip={flip}  (final epoch {int(df['epoch'].max())}; "
             f"mean +- std over seeds; test error in %)", "",
             final_table(df, methods), "",
             "exact optima (Newton; mean over seeds):",
             opt.groupby("rate").agg(test_err_pct=("opt_test_err_pct", "mean"),
                                     clean_opt_test_err_pct=("clean_opt_test_err_pct", "mean"),
                                     corrupted=("n_corrupt", "mean"),
                                     corrupted_in_rare=("corrupt_in_rare", "mean"),
                                     max_grad_norm=("opt_grad_norm", "max")).to_string(), "",
             f"wall time of this ratio's vectorised run (shared by its configurations): {elapsed:.2f} s"]
    runs.atomic_write_text(folder / "res.txt", "\n".join(lines) + "\n")
    runs.atomic_write_text(folder / "results.csv", df.to_csv(index=False))
    rates = sorted({r for _, r, _, _ in items})
    seeds = sorted({s for _, _, s, _ in items})
    by = {(r, s): pr for _, r, s, pr in items}
    runs.atomic_save_npz(
        folder / "labels.npz", rates=np.array(rates), seeds=np.array(seeds),
        y_clean=np.stack([by[rates[0], s].y_clean for s in seeds]),
        rare=np.stack([by[rates[0], s].rare for s in seeds]),
        y_noisy=np.stack([[by[r, s].y for s in seeds] for r in rates]),
        corrupt=np.stack([[by[r, s].corrupt for s in seeds] for r in rates]),
        w_star=np.stack([[by[r, s].opt.w for s in seeds] for r in rates]),
        w_star_clean=np.stack([by[rates[0], s].opt_clean.w for s in seeds]))
    plot_curves(folder / "curves.png", df, methods, f"ratio {ratio:g}, {flip}")


def _per_x(df, x):
    """{x: per-seed values} of one method's rows."""
    return {xv: g["value"].to_numpy(dtype=float) for xv, g in df.groupby(x)}


# the metrics drawn on a log axis (positive, spanning decades), with log-space seed bands
LOG_METRICS = ("dist_train", "gap")
CLIP = {"test_err_pct": (0.0, 100.0), "mass_corrupt": (0.0, 1.0)}


def plot_curves(path, df, methods, title):
    """Every metric vs epoch, a column per rate, a row per metric.  Epoch 0 (w = 0: 100 % test
    error, the largest distances) is not drawn: it would flatten every curve.  The rows share
    their y axis across rates; a clean configuration has no mass-on-corrupted row."""
    from islab import plots

    plt = plots.plt
    rates = sorted(df["rate"].unique())
    metrics = [m for m in PLOT_METRICS if not (m == "mass_corrupt" and max(rates) == 0)]
    d = df[df["epoch"] >= 1]
    sts = plots.styles(methods)
    fig, axes = plt.subplots(len(metrics), len(rates), squeeze=False, sharex=True, sharey="row",
                             figsize=(2.9 * len(rates) + 2.3, 1.75 * len(metrics) + 1.2))
    for j, rate in enumerate(rates):
        for i, metric in enumerate(metrics):
            ax = axes[i, j]
            sub = d[(d["rate"] == rate) & (d["metric"] == metric)]
            for m in methods:
                xs, mid, lo, hi = plots.seed_stats(_per_x(sub[sub["method"] == m], "epoch"),
                                                   logy=metric in LOG_METRICS)
                if len(xs):
                    plots.band(ax, xs, mid, lo, hi, m, clip=CLIP.get(metric), markers=False, st=sts[m])
            if metric in LOG_METRICS:
                plots.log_axis(ax, "y")
            if j == 0:
                ax.set_ylabel(plots.wrap(PLOT_LABELS[metric], 18))
            if i == 0:
                ax.set_title("clean" if rate == 0 else f"rate {rate:g}")
            plots.integer_ticks(ax, "x")
        axes[-1, j].set_xlabel("epoch")
    plots.legend_outside(fig, axes, title="method", fixed=True)
    seeds = plots.count_seeds(d, ["rate", "method", "metric", "epoch"]) or "seeds"
    fig.suptitle(plots.wrap(title + f": epochs 1-{int(d['epoch'].max())}, mean +- sd over {seeds} (log "
                            "rows: geometric mean x/÷ geometric sd)", 38 * len(rates) + 20))
    # fixed margins: tight layout would cost more than the whole optimisation of a configuration
    plots.fixed_margins(fig, left=0.85, top=0.95, legend_width=1.3)
    plots.save(fig, path, tight=False, bbox=False)


# ---------------------------------------------------------------- run-level summary


def pivot_table(final, metric, methods, fmt="{:.2f}"):
    """Rows (ratio, flip, rate), columns methods, cells mean +- std over seeds; '*' marks the best
    mean; '[k/n diverged]' counts the seeds whose chain diverged (left out of the mean)."""
    keys = ["ratio", "flip", "rate", "method"]
    d = final[final["metric"] == metric]
    stats = d.groupby(keys)["value"].agg(["mean", "std"])
    div = final[final["metric"] == "diverged"].groupby(keys)["value"].agg(["sum", "count"])
    head = ["ratio", "flip", "rate"] + methods
    rows = []
    for (ratio, flip, rate), sub in div.groupby(level=[0, 1, 2]):
        sub = sub.droplevel([0, 1, 2])
        st = stats.loc[(ratio, flip, rate)] if (ratio, flip, rate) in stats.index.droplevel(-1) else stats.iloc[:0]
        best = st["mean"].idxmin() if metric != "mass_corrupt" and len(st) else None
        cells = [f"{ratio:g}", flip, f"{rate:g}"]
        for m in methods:
            k, n = (int(sub.loc[m, "sum"]), int(sub.loc[m, "count"])) if m in sub.index else (0, 0)
            if m not in st.index:
                cells.append("diverged" if k else "-")
                continue
            mu, sd = st.loc[m, "mean"], st.loc[m, "std"]
            text = fmt.format(mu) + ("" if np.isnan(sd) else " +- " + fmt.format(sd))
            cells.append(text + ("*" if m == best else "") + (f" [{k}/{n} diverged]" if k else ""))
        rows.append(cells)
    return tables.text_table(head, rows)


def write_summary(run, methods, total_s):
    final = run.frame()
    if final.empty:
        return
    final = final[final["epoch"] == final["epoch"].max()]
    text = [f"Convex-Noise summary: final epoch {int(final['epoch'].max())}, mean +- std over seeds, "
            "'*' = lowest mean in the row; [k/n diverged]: k of n seeds' chains diverged (non-finite "
            "iterate; left out of the mean)", ""]
    for metric, what, fmt in (("test_err_pct", "clean test error (%)", "{:.2f}"),
                              ("dist_train", "||w - w*|| to the noisy-objective optimum", "{:.3g}"),
                              ("gap", "objective gap F(w) - F(w*)", "{:.3g}"),
                              ("mass_corrupt", "sampling mass on corrupted examples", "{:.3f}")):
        text += [f"## {what}", pivot_table(final, metric, methods, fmt), ""]
    text.append(f"sweep wall time (this invocation, including writing): {total_s:.1f} s")
    run.write_text("res.txt", "\n".join(text) + "\n")
    plot_summary(run, final, methods)


def plot_summary(run, final, methods):
    """Final test error vs the norm ratio (per noise kind, at its largest rate) and vs the noise
    rate (per noisy kind, at the largest ratio; rate 0 = clean data).  The ratio axis shows the
    ratios themselves; the rate panels share the y axis of their row; no empty panel."""
    from islab import plots

    plt = plots.plt
    err = final[final["metric"] == "test_err_pct"]
    flips = list(dict.fromkeys(err["flip"]))
    noisy = [f for f in flips if f != "clean"]
    ratios = sorted(err["ratio"].unique())
    sts = plots.styles(methods)
    ncol = max(len(flips), 1)
    nrow = 2 if noisy else 1
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.0 * ncol + 0.6, 2.9 * nrow + 0.6), squeeze=False)
    for j, flip in enumerate(flips):  # row 1: error vs ratio at the largest rate of that kind
        d = err[err["flip"] == flip]
        rate = d["rate"].max()
        ax = axes[0, j]
        for m in methods:
            xs, mid, lo, hi = plots.seed_stats(_per_x(d[(d["rate"] == rate) & (d["method"] == m)], "ratio"))
            if len(xs):
                plots.band(ax, xs, mid, lo, hi, m, clip=(0, 100), st=sts[m])
        if len(ratios) > 1 and min(ratios) > 0:
            ax.set_xscale("log")
        plots.integer_ticks(ax, "x", ratios)
        ax.set_title("clean" if flip == "clean" else f"{flip} {rate:g}")
        ax.set_xlabel("norm ratio (rare / common)")
    ratio = err["ratio"].max()
    for j, flip in enumerate(noisy):  # row 2: error vs rate at the largest ratio (rate 0 = clean)
        d = err[(err["ratio"] == ratio) & err["flip"].isin([flip, "clean"])]
        ax = axes[1, j]
        for m in methods:
            xs, mid, lo, hi = plots.seed_stats(_per_x(d[d["method"] == m], "rate"))
            if len(xs):
                plots.band(ax, xs, mid, lo, hi, m, clip=(0, 100), st=sts[m])
        plots.integer_ticks(ax, "x", sorted(d["rate"].unique()))
        chance = plots.reference_line(ax, 50.0, "chance (50 %, two classes)")
        ax.set_title(f"{flip}, ratio {ratio:g}")
        ax.set_xlabel("noise rate (0 = clean)")
    for i in range(nrow):
        axes[i, 0].set_ylabel("final test error (%)")
    spare = list(axes[1, len(noisy):]) if nrow == 2 else []   # the row of noisy kinds is one shorter
    for ax in spare[1:]:
        ax.remove()
    for ax in axes[0]:
        chance = plots.reference_line(ax, 50.0, "chance (50 %, two classes)")
    handles = [plots.legend_handle(m, sts[m]) for m in methods] + [chance]
    plots.legend_outside(fig, handles=handles, title="method", into=spare[0] if spare else None)
    fig.suptitle(plots.wrap("Convex-Noise: final clean test error (mean +- sd over "
                            + (plots.count_seeds(err, ["flip", "rate", "ratio", "method"]) or "seeds")
                            + "); top: vs the norm ratio at each kind's largest rate; bottom: vs the rate at the "
                            "largest ratio", 50 * ncol))
    plots.save(fig, run.path / "summary.png")


# ---------------------------------------------------------------- main


def main(argv=None):
    args = parse_args(argv)  # every check happens here, before any folder exists
    name = args.name or default_name(args)
    run = runs.open_run(Path(args.results_root) / FAMILY / name, args, seed=args.seeds[0])
    cfg = convex.sgd_config(args)
    plan = configs(args)
    run.plan([{"ratio": ratio, "flip": f} for ratio in args.ratios for f, _ in plan])
    for flip in args.flips:
        if flip == "rare":
            dropped = [r for r in args.rates if r not in dict(plan)["rare"]]
            if dropped:
                run.log(f"rare noise: rates {dropped} skipped (need more flips than the "
                        f"{int(round(args.rho * args.n))} rare examples)")
    t_start = time.perf_counter()
    for ratio in args.ratios:
        # one job per (ratio, flip); the pending ones of a ratio run as one vectorised update,
        # so they are claimed together (another worker skips them and takes the next ratio)
        with contextlib.ExitStack() as claims:
            todo = []
            for f, rates in plan:
                job = claims.enter_context(run.claim({"ratio": ratio, "flip": f}))
                if job is not None:
                    todo.append((f, rates, job))
                else:
                    run.log(f"ratio {ratio:g} flip {f}: " + (
                        "done, skipped (--resume)" if run.is_done({"ratio": ratio, "flip": f})
                        else "running in another worker, skipped"))
            if not todo:
                continue
            t0 = time.perf_counter()
            items = make_problems(args, ratio, [(f, r) for f, r, _ in todo])
            metrics = convex.run_methods([it[3] for it in items], args.methods, cfg)
            elapsed = time.perf_counter() - t0
            df = tidy(metrics, items, args.methods, ratio)
            run.log(f"ratio {ratio:g}: {len(items)} problems x {len(args.methods)} methods = "
                    f"{len(items) * len(args.methods)} chains, {args.epochs} epochs in {elapsed:.2f} s")
            for flip, _, job in todo:
                sub = df[df["flip"] == flip]
                its = [it for it in items if it[0] == flip]
                folder = run.path / f"scaled_{ratio:g}" / f"flip-{flip}"
                write_config(folder, sub, its, args.methods, ratio, flip, elapsed)
                last = sub[sub["epoch"] == args.epochs]
                job.finish(last.drop(columns=["ratio", "flip"]).to_dict("records"),
                           files=[folder / f for f in CONFIG_FILES])
                err = last[last["metric"] == "test_err_pct"].groupby("method", sort=False)["value"].mean()
                div = last[last["metric"] == "diverged"].groupby("method", sort=False)["value"].sum()
                run.log(f"  {folder.relative_to(run.path)}: final test error % " +
                        ", ".join(f"{m} {err.get(m, float('nan')):.2f}"
                                  + (f" ({int(div[m])} diverged)" if div.get(m, 0) else "")
                                  for m in args.methods))
    total = time.perf_counter() - t_start
    with run.locked():   # from every worker's job files
        write_summary(run, args.methods, total)
    run.log(f"done in {total:.1f} s -> {run.path}")
    return run.path


if __name__ == "__main__":
    cli.run_main(main)
