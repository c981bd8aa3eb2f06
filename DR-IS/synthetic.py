#!/usr/bin/env python
"""DR-IS synthetic study (paper Appendix G; docs/dris-studies.md).

Uniform SGD, Standard IS, Loss IS and DR-IS with linear proxies on the two-cluster mixture of
islab.convex (squared hinge + L2), under clean / uniform 10 % / targeted 10 % / targeted 25 %
labels.  Every chain (noise configurations x seeds x methods) is one vectorised numpy run.

    python DR-IS/synthetic.py            # default study, see docs/dris-studies.md
    python DR-IS/synthetic.py --quick    # a two-second smoke run

Output: results/DR-IS/synthetic/<run>/ with res.txt (test accuracy and sampling mass on the
corrupted examples, mean +- std over seeds, per method and noise configuration), results.csv
(every epoch, tidy), synthetic.png, labels_<kind>-<rate>.npz (labels, masks, w*), plus
config/cmd/env provenance.
"""
from __future__ import annotations

import contextlib
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # standalone: find islab

import numpy as np  # noqa: E402

from islab import cli, convex, noise, runs, tables  # noqa: E402

FAMILY = "DR-IS/synthetic"
NAMES = {"uniform": "Uniform SGD", "grad-is": "Standard IS", "loss-is": "Loss IS", "dr-is": "DR-IS"}
# Paper Appendix G, final test accuracy % (typed from the paper); its generator is not
# recoverable.  One number per PAPER_CONFIGS entry; DR-IS/claims.py reads them from here.
PAPER_CONFIGS = (("clean", 0.0), ("uniform", 0.1), ("targeted", 0.1), ("targeted", 0.25))
PAPER = {"uniform": (95.84, 86.16, 23.62, 21.22), "grad-is": (95.92, 87.16, 22.62, 19.80),
         "loss-is": (95.86, 86.74, 24.94, 21.62), "dr-is": (94.64, 53.86, 22.98, 20.70)}
QUICK = dict(n=200, n_test=400, d=5, noise="clean,uniform:0.1,targeted:0.25", seeds="0,1", epochs=2)
COLLAPSE_PCT = 50.0  # a chain "collapsed" when its final clean test accuracy is <= this (coin flip)
COLUMNS = ["kind", "rate", "method", "seed", "epoch", "metric", "value"]


# ---------------------------------------------------------------- arguments


def noise_config(text):
    """clean or KIND:RATE, e.g. targeted:0.25 (KIND from islab.noise.BINARY_KINDS, RATE in [0, 1));
    the former spelling none:0 still reads as clean."""
    kind, sep, rate = text.partition(":")
    kind = noise.kind_name(kind)
    if kind == "clean":
        if sep:
            cli.rate(rate)
        return "clean", 0.0
    if not sep or kind not in noise.BINARY_KINDS:
        raise cli.argparse.ArgumentTypeError(
            f"noise must be clean or KIND:RATE with KIND in {', '.join(noise.BINARY_KINDS[1:])}, got {text!r}")
    return kind, cli.rate(rate)


def build_parser():
    p = cli.make_parser(__doc__.split("\n\n")[0])
    p.epilog = "methods: " + "; ".join(f"{m} = {h}" for m, h in convex.METHOD_HELP.items())
    g = p.add_argument_group("study")
    g.add_argument("--noise", type=cli.comma_list(noise_config),
                   default="clean,uniform:0.1,targeted:0.1,targeted:0.25",
                   help="noise configurations, comma list of clean | KIND:RATE (KIND from "
                        f"{', '.join(noise.BINARY_KINDS[1:])}; RATE = fraction of N flipped, in [0, 1))")
    g.add_argument("--methods", type=cli.comma_list(str), default="uniform,grad-is,loss-is,dr-is",
                   help=f"samplers, comma list from {', '.join(convex.METHODS)}; uniform = Uniform SGD, "
                        "grad-is = Standard IS (gradient norm of the current model, every epoch), "
                        "loss-is = Loss IS, dr-is = DR-IS")
    g.add_argument("--seeds", type=cli.comma_list(cli.seed), default="0,1,2,3,4",
                   help="run seeds, comma list (data, noise, proxies and samplers derive from each)")
    g = convex.add_data_args(p, margin=0.0)
    g.add_argument("--ratio", type=cli.positive_float, default=20.0,
                   help="rare-cluster norm / common-cluster norm (dimensionless)")
    convex.add_sgd_args(p)
    g = p.add_argument_group("targeted-noise attacker (paper: trained on the clean labels)")
    g.add_argument("--attacker", choices=("sgd", "exact"), default="sgd",
                   help="sgd: plain uniform SGD on the clean labels for --attacker-epochs (the paper's "
                        "attacker, islab.convex.train_attacker); exact: the exact clean optimum (Newton), "
                        "a documented variant under which the attack misses the rare cluster")
    g.add_argument("--attacker-epochs", type=cli.nonnegative_int, default=2,
                   help="epochs of the sgd attacker (one epoch = N // batch steps; same lambda, schedule and "
                        "safe cap as the proxies). Default 2 = --proxy-epochs' default: the attacker trains "
                        "as long as a proxy, as in every deep-learning preset")
    g = p.add_argument_group("run")
    g.add_argument("--results-root", type=cli.folder, default=str(runs.RESULTS_ROOT),
                   help="results folder; the run lands in <root>/DR-IS/synthetic/<name> (default: the repository's "
                        "results/)")
    g.add_argument("--name", type=runs.check_name, default=None,
                   help="run folder name, one folder (default: from the parameters)")
    g.add_argument("--resume", action="store_true",
                   help="continue a run folder, skipping finished noise configurations")
    cli.add_quick(g, QUICK)
    return p


def parse_args(argv=None):
    args = cli.parse_quick(build_parser(), QUICK, argv)
    cli.check_choices(args.methods, convex.METHODS, "method")
    if args.batch > args.n:
        cli.fail(f"--batch {args.batch} exceeds --n {args.n}")
    if args.n < 2:
        cli.fail("--n must be at least 2 (ranks need two examples)")
    n_rare = int(round(args.rho * args.n))
    for kind, rate in args.noise:
        if kind == "rare" and noise.n_corrupt(args.n, rate) > n_rare:
            cli.fail(f"rare:{rate:g} needs {noise.n_corrupt(args.n, rate)} flips but the rare cluster "
                     f"has {n_rare}")
    for opt in ("noise", "methods", "seeds"):
        setattr(args, opt, list(dict.fromkeys(getattr(args, opt))))
    convex.check_args(args)   # dr-is needs >= 2 proxies; the optima are checked in problems()
    return args


def problems(args):
    """(items, attacker test accuracy per seed): (kind, rate, seed, Problem) of every configuration
    and seed, with data, SGD attackers, noise and exact optima (cheap; the summary reports them
    all).  Settings under which these cannot be computed (a --lam too small for the exact
    optimum, an attacker whose SGD diverges) exit 2 here, before any folder exists: they are the
    data of the study, not one of its methods."""
    cfg = convex.sgd_config(args)
    try:
        cleans = [convex.make_clean(args.n, args.n_test, args.d, args.rho, args.ratio, args.margin, seed,
                                    args.lam) for seed in args.seeds]
        attackers = [None] * len(cleans)
        if args.attacker == "sgd" and any(k == "targeted" for k, _ in args.noise):
            attackers = list(convex.train_attacker(cleans, cfg, args.attacker_epochs))
            if not all(np.isfinite(w).all() for w in attackers):
                cli.fail("the targeted-noise attacker's SGD diverged with these step sizes (--t0, --lam, "
                         "--eta-max, --safe-step); the targeted labels cannot be drawn")
        items = []
        for seed, clean, w_att in zip(args.seeds, cleans, attackers):
            items += [(k, r, seed, clean if k == "clean" else
                       convex.corrupt(clean, k, r, args.lam, attacker_w=w_att if k == "targeted" else None))
                      for k, r in args.noise]
    except convex.SolveError as e:
        cli.fail(str(e))
    att_acc = {seed: 100 * (1 - convex.test_error(w, c.X_test, c.y_test))
               for seed, c, w in zip(args.seeds, cleans, attackers) if w is not None}
    return items, att_acc


def default_name(args) -> str:
    digest = runs.config_digest(args)
    return runs.run_name("quick" if args.quick else "study", f"ratio{args.ratio:g}", f"n{args.n}",
                         f"ep{args.epochs}", digest)


def label(kind, rate) -> str:
    return "clean" if kind == "clean" else f"{kind} {100 * rate:g}%"


# ---------------------------------------------------------------- tables and figure


def cell(values, fmt):
    v = np.asarray(values, dtype=np.float64)
    return fmt.format(v.mean()) + (" +- " + fmt.format(v.std(ddof=1)) if len(v) > 1 else "")


def matrix(final, metric, methods, configs, fmt):
    """Rows methods, columns noise configurations, cells mean +- std over seeds."""
    head = ["method"] + [label(k, r) for k, r in configs]
    rows = []
    for m in methods:
        row = [NAMES.get(m, m)]
        for k, r in configs:
            sel = (final["method"] == m) & (final["kind"] == k) & np.isclose(final["rate"], r)
            d = final[sel & (final["metric"] == metric)]
            div = final[sel & (final["metric"] == "diverged")]["value"]   # seeds whose chain diverged
            tag = f" [{int(div.sum())}/{len(div)} diverged]" if div.sum() else ""
            row.append(cell(d["value"], fmt) + tag if len(d) else ("diverged" if tag else "-"))
        rows.append(row)
    return tables.text_table(head, rows)


def collapse_matrix(final, methods, configs):
    """Rows methods, columns noise configurations, cells 'collapsed / seeds'."""
    head = ["method"] + [label(k, r) for k, r in configs]
    rows = []
    for m in methods:
        row = [NAMES.get(m, m)]
        for k, r in configs:
            d = final[(final["method"] == m) & (final["kind"] == k) & np.isclose(final["rate"], r)
                      & (final["metric"] == "test_acc_pct")]["value"]
            row.append(f"{int((d <= COLLAPSE_PCT).sum())}/{len(d)}" if len(d) else "-")
        rows.append(row)
    return tables.text_table(head, rows)


def attack_section(df, args, configs) -> list:
    """Where the flips landed (rows method == 'labels' of results.csv), per noise configuration."""
    lab = df[df["method"] == "labels"]
    n_rare = int(round(args.rho * args.n))
    att = (f"SGD attacker, {args.attacker_epochs} epoch(s) of plain uniform SGD on the clean labels"
           if args.attacker == "sgd" else "exact clean optimum (variant)")
    out = [f"## where the flips landed: flipped examples in the rare cluster (of {n_rare} rare, "
           f"N = {args.n}); targeted attacker: {att}; mean +- std over seeds [per seed]"]
    for k, r in configs:
        if k == "clean":
            continue
        sub = lab[(lab["kind"] == k) & np.isclose(lab["rate"], r)]
        fr = sub[sub["metric"] == "flips_in_rare"].sort_values("seed")["value"]
        nf = sub[sub["metric"] == "flips"]["value"]
        line = (f"{label(k, r)}: {cell(fr, '{:.1f}')} of {int(nf.max()) if len(nf) else '?'} flips "
                f"[{', '.join(str(int(v)) for v in fr)}]")
        acc = sub[sub["metric"] == "attacker_test_acc_pct"]["value"]
        if len(acc):
            line += f"; attacker clean test accuracy {cell(acc, '{:.2f}')} %"
        out.append(line)
    return out + [""]


def write_summary(run, args, configs, optima):
    df = run.frame()
    final = df[df["epoch"] == df["epoch"].max()]
    att = (f"SGD attacker ({args.attacker_epochs} epochs on the clean labels)" if args.attacker == "sgd"
           else "exact clean optimum as attacker (variant)")
    text = [f"DR-IS synthetic study: ratio {args.ratio:g}, rho {args.rho:g}, N {args.n}, d {args.d}, "
            f"{args.epochs} epochs, {len(args.seeds)} seeds; targeted noise: {att}; Standard IS / Loss IS "
            f"floor {args.floor:g} (relative); final epoch, mean +- std over seeds "
            "([k/n diverged]: k of n seeds' chains diverged, left out of the mean)", "",
            "## clean test accuracy (%)", matrix(final, "test_acc_pct", args.methods, configs, "{:.2f}"), "",
            "## sampling mass on corrupted examples (final epoch's distribution; uniform = the rate)",
            matrix(final, "mass_corrupt", args.methods, configs, "{:.3f}"), "",
            "## ||w - w*|| to the optimum of the noisy training objective",
            matrix(final, "dist_train", args.methods, configs, "{:.3g}"), ""]
    text += ["## collapsed chains (final clean test accuracy <= %g %%, i.e. no better than a coin), "
             "count / seeds" % COLLAPSE_PCT, collapse_matrix(final, args.methods, configs), ""]
    text += attack_section(df, args, configs)
    if optima:
        text += ["## exact optimum of each training objective (Newton), mean over seeds",
                 "\n".join(f"{label(k, r)}: test acc {np.mean([o[0] for o in v]):.2f} %, corrupted in rare "
                           f"cluster {np.mean([o[1] for o in v]):.1f}, "
                           f"max ||grad F|| {max(o[2] for o in v):.1e}"
                           for (k, r), v in optima.items()), ""]
    text += ["## paper Appendix G (its own generator; clean / uniform 10% / targeted 10% / targeted 25%)"]
    text += [f"{NAMES[m]:12s} {' / '.join(f'{v:.2f}' for v in vals)}" for m, vals in PAPER.items()]
    run.write_text("res.txt", "\n".join(text) + "\n")
    plot(run, df, args.methods, configs)


def plot(run, df, methods, configs):
    """Test accuracy and mass on corrupted vs epoch, a column per noise configuration; the rows
    share their y axis; epoch 0 (w = 0, accuracy 0) is not drawn.  The paper's Appendix G final
    accuracies (its own generator) are hollow markers right of the last epoch."""
    from islab import plots

    plt = plots.plt
    sts = plots.styles(methods)
    d = df[df["epoch"] >= 1]
    last = int(d["epoch"].max()) if len(d) else 0
    fig, axes = plt.subplots(2, len(configs), figsize=(2.9 * len(configs) + 0.8, 5.0), squeeze=False,
                             sharex=True, sharey="row")
    spare = None   # the mass panel of clean data (nothing is corrupted) holds the legend
    paper_shown = False
    for j, (k, r) in enumerate(configs):
        for i, (metric, clip) in enumerate((("test_acc_pct", (0, 100)), ("mass_corrupt", (0, 1)))):
            ax = axes[i, j]
            if metric == "mass_corrupt" and k == "clean":
                spare = spare or ax
                axes[0, j].tick_params(labelbottom=True)
                axes[0, j].set_xlabel("epoch")
                continue
            sub = d[(d["kind"] == k) & np.isclose(d["rate"], r) & (d["metric"] == metric)]
            for m in methods:
                g = {e: v["value"].to_numpy(dtype=float) for e, v in sub[sub["method"] == m].groupby("epoch")}
                xs, mid, lo, hi = plots.seed_stats(g)
                if len(xs):
                    plots.band(ax, xs, mid, lo, hi, m, clip=clip, markers=False, st=sts[m])
            if metric == "test_acc_pct":
                paper_shown |= paper_markers(ax, k, r, methods, sts, last)
                plots.reference_line(ax, 50.0, "chance (50 %, two classes)")
            plots.integer_ticks(ax, "x")
        axes[0, j].set_title(label(k, r))
        axes[1, j].set_xlabel("epoch")
    axes[0, 0].set_ylabel("clean test accuracy (%)")
    shown = [ax for ax in axes[1] if ax is not spare]
    if shown:   # the first drawn mass panel carries the row's y label and tick labels
        shown[0].set_ylabel(plots.wrap("sampling mass on corrupted", 20))
        shown[0].tick_params(labelleft=True)
    handles = [plots.legend_handle(m, sts[m]) for m in methods]
    if paper_shown:
        handles.append(plots.Line2D([], [], marker="o", markerfacecolor="none", markeredgecolor="0.2",
                                    linestyle="none", markersize=6.5,
                                    label="paper, Appendix G\n(final epoch; its own data)"))
    handles.append(plots.Line2D([], [], label="chance (50 %)", **{k: v for k, v in plots.REFERENCE.items()
                                                                   if k != "zorder"}))
    plots.legend_outside(fig, handles=handles, title="method", into=spare)
    for ax in axes[1]:
        if ax is not spare and not ax.has_data():
            ax.axis("off")
    seeds = plots.count_seeds(d[d["metric"] == "test_acc_pct"], ["kind", "rate", "method", "epoch"])
    fig.suptitle(f"DR-IS synthetic study: epochs 1-{last}, mean +- sd over {seeds or 'seeds'} "
                 "(epoch 0, w = 0, not drawn)")
    plots.save(fig, run.path / "synthetic.png")


def paper_markers(ax, kind, rate, methods, sts, last) -> bool:
    """The paper's Appendix G accuracy of each method in this configuration: a hollow marker at
    x = last epoch + 0.6 (its run length differs from ours); False when the paper has none."""
    try:
        col = [(k, round(r, 6)) for k, r in PAPER_CONFIGS].index((kind, round(rate, 6)))
    except ValueError:
        return False
    drawn = False
    for i, m in enumerate(m for m in methods if m in PAPER):
        st = sts[m]
        ax.plot([last + 0.6 + 0.25 * i], [PAPER[m][col]], marker=st["marker"], markersize=6.5, linestyle="none",
                markerfacecolor="none", markeredgecolor=st["color"], markeredgewidth=1.4, zorder=4)
        drawn = True
    return drawn


# ---------------------------------------------------------------- main


def label_rows(items, kind, att_acc) -> list:
    """Tidy rows (method 'labels', no epoch) of one noise configuration: per seed how many labels
    were flipped, how many of them in the rare cluster, the exact noisy optimum's test accuracy,
    and for targeted noise the SGD attacker's own clean test accuracy."""
    rows = []
    for _, _, seed, pr in items:
        vals = {"flips": int(pr.corrupt.sum()), "flips_in_rare": int((pr.corrupt & pr.rare).sum()),
                "opt_test_acc_pct": 100 * (1 - convex.test_error(pr.opt.w, pr.X_test, pr.y_test))}
        if kind == "targeted" and seed in att_acc:
            vals["attacker_test_acc_pct"] = att_acc[seed]
        rows += [{"method": "labels", "seed": seed, "epoch": np.nan, "metric": m, "value": float(v)}
                 for m, v in vals.items()]
    return rows


def main(argv=None):
    args = parse_args(argv)  # every check happens here, before any folder exists
    import pandas as pd

    # every configuration's data, noise and exact optima (cheap; the summary reports them all),
    # but SGD chains only for the configurations not finished yet
    items, att_acc = problems(args)
    run = runs.open_run(Path(args.results_root) / FAMILY / (args.name or default_name(args)), args,
                        seed=args.seeds[0])
    cfg = convex.sgd_config(args)
    run.plan([{"kind": k, "rate": r} for k, r in args.noise])
    optima = {(k, r): [(100 * (1 - convex.test_error(pr.opt.w, pr.X_test, pr.y_test)),
                        int((pr.corrupt & pr.rare).sum()), pr.opt.grad_norm)
                       for k2, r2, _, pr in items if (k2, r2) == (k, r)] for k, r in args.noise}
    # the pending configurations run as one vectorised update: claimed together
    with contextlib.ExitStack() as claims:
        jobs = {}
        for k, r in args.noise:
            job = claims.enter_context(run.claim({"kind": k, "rate": r}))
            if job is not None:
                jobs[(k, r)] = job
            else:
                run.log(f"{label(k, r)}: " + ("done, skipped (--resume)" if run.is_done({"kind": k, "rate": r})
                                              else "running in another worker, skipped"))
        items = [it for it in items if (it[0], it[1]) in jobs]
        if items:
            t0 = time.perf_counter()
            metrics = convex.run_methods([it[3] for it in items], args.methods, cfg)
            metrics["test_acc_pct"] = 100.0 - metrics["test_err_pct"]
            elapsed = time.perf_counter() - t0
            per_problem = {"kind": [it[0] for it in items], "rate": [it[1] for it in items],
                           "seed": [it[2] for it in items]}
            df = pd.DataFrame(convex.long_format(metrics, per_problem, args.methods))[COLUMNS]
            run.log(f"{len(items)} problems x {len(args.methods)} methods = "
                    f"{len(items) * len(args.methods)} chains, {args.epochs} epochs in {elapsed:.2f} s")
            for (k, r), job in jobs.items():
                its = [it for it in items if (it[0], it[1]) == (k, r)]
                labels_file = f"labels_{k}-{r:g}.npz"
                run.save_arrays(labels_file, seeds=np.array([it[2] for it in its]),
                                y_clean=np.stack([pr.y_clean for *_, pr in its]),
                                y_noisy=np.stack([pr.y for *_, pr in its]),
                                corrupt=np.stack([pr.corrupt for *_, pr in its]),
                                rare=np.stack([pr.rare for *_, pr in its]),
                                w_star=np.stack([pr.opt.w for *_, pr in its]))
                sub = df[(df["kind"] == k) & np.isclose(df["rate"], r)]
                rows = sub.drop(columns=["kind", "rate"]).to_dict("records") + label_rows(its, k, att_acc)
                job.finish(rows, files=[run.path / labels_file])
                last = sub[sub["epoch"] == args.epochs]
                acc = last[last["metric"] == "test_acc_pct"]
                means = acc.groupby("method", sort=False)["value"].mean()
                div = last[last["metric"] == "diverged"].groupby("method", sort=False)["value"].sum()
                n_rare = np.mean([(pr.corrupt & pr.rare).sum() for *_, pr in its])
                n_coll = int((acc["value"] <= COLLAPSE_PCT).sum())
                run.log(f"  {label(k, r)}: final test accuracy % " +
                        ", ".join(f"{NAMES.get(m, m)} {means.get(m, float('nan')):.2f}"
                                  + (f" ({int(div[m])} diverged)" if div.get(m, 0) else "")
                                  for m in args.methods) +
                        f"; flips in the rare cluster {n_rare:.1f} (mean over seeds); "
                        f"collapsed chains (acc <= {COLLAPSE_PCT:g} %) {n_coll}/{len(acc)}")
    with run.locked():   # from every worker's job files
        write_summary(run, args, args.noise, optima)
    run.log(f"done -> {run.path}")
    return run.path


if __name__ == "__main__":
    cli.run_main(main)
