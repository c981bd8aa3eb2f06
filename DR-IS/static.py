#!/usr/bin/env python
"""DR-IS static pruning (Algorithm 1; docs/METHODS.md sections 3, 4, 7): keep the top-alpha fraction of the
training set by a per-example score computed from ONE shared proxy run per noise configuration,
train the target on that subset with the step budget of full-data training (E/alpha passes),
and compare the scores under label noise.

    python DR-IS/static.py --noise clean,targeted:0.25          # digits on CPU (`make demo`, ~4 min)
    python DR-IS/static.py                                       # digits, the four default configurations
    python DR-IS/static.py --preset cifar10 --data-dir data      # paper protocol (GPU, CIFAR-10 on disk)

Methods (high score = keep; every score method keeps the top round(alpha*N) by its own score):
  random      uniform subset (its own seeded draw per target seed)
  el2n        ensemble mean EL2N at the snapshot epoch            forgetting  ensemble mean forgetting count
  consensus   mean normalised loss rank (consensus-loss)          aum         highest mean margin kept
  dris        variance of the normalised loss ranks (1/K)         full        all data (alpha = 1)
  hybrid<l>   (1-l) rank(dris) + l rank(gradnorm) for each l of --hybrid-lambda (paper D.6)
  aum_tsr     AUM threshold-sample recipe (Pleiss et al.): keeps every example the threshold test
              does not flag, so its keep fraction is its own (reported), not alpha; see --aum-threshold
  cleanlab    keeps every example cleanlab's find_label_issues does not flag, on out-of-sample
              probabilities of the proxies cross-validated over 3 folds (islab.proxies.
              out_of_sample_probs); its keep fraction is its own (DR-IS/cleanlab_compare.py sets folds)
Output (results/DR-IS/<run>/): res.txt (one table per configuration), results.csv (tidy),
scores-<tag>.npz (per-example scores keyed by example index), subsets-<tag>.npz (kept ids per
job), labels-<tag>.npz, accuracy.png, corruption.png, config.json/cmd.txt/env.json/log.txt.
"""
from __future__ import annotations

import functools
import sys
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # standalone: find islab

import numpy as np  # noqa: E402

from islab import cli, experiment, export, launch, runs, sampling, scores, sweep, tables, theory  # noqa: E402
from islab.data import example_ids  # noqa: E402
from islab.noise import top_indices  # noqa: E402
from islab.proxies import ProxyDiverged  # noqa: E402
from islab.seeding import numpy_rng  # noqa: E402

FAMILY = "DR-IS/static"
SCORE_METHODS = ("el2n", "forgetting", "consensus", "aum", "dris")   # islab.scores.ensemble_score names
BASE_METHODS = ("random",) + SCORE_METHODS + ("full",)
EXTRA_METHODS = ("hybrid", "aum_tsr", "cleanlab")   # need --hybrid-lambda / an AUM threshold / cleanlab
OWN_FRACTION = ("full", "aum_tsr", "cleanlab")   # methods whose keep fraction is their own, not alpha
LEARNT = ("aum_tsr", "cleanlab")   # ... learnt from the proxies: their job keys are unknown until then
NO_SCORE = ("random", "full")           # methods without a per-example score (no proxies needed)
DEFAULT_NOISE = "clean,uniform:0.1,targeted:0.1,targeted:0.25"  # the paper's Table 1 settings
DEFAULT_TSR_PERCENTILE = 99.0           # Pleiss et al.: flag AUM below the 99th threshold percentile
CLEANLAB_FOLDS = 3                      # cross-validation folds of the cleanlab method (ours)
CLEANLAB_FILTER = "prune_by_noise_rate"  # cleanlab's default find_label_issues filter


# ---------------------------------------------------------------- arguments


def build_parser():
    p = cli.make_parser(__doc__.split("\n\n")[0])
    experiment.add_common_args(p)
    experiment.add_probs_export_arg(p, "probs-<config>-<method>-a<alpha>-s<seed>.npz",
                                    "(the kept subset S as the distribution the target trains on: 1/|S| on S, 0 "
                                    "elsewhere; one row)")
    launch.add_args(p)
    g = p.add_argument_group("static pruning")
    g.add_argument("--noise", default=DEFAULT_NOISE,
                   help="noise configurations, comma list of clean | uniform:RATE | targeted:RATE | "
                        "pair:RATE (RATE = fraction of N relabelled, in [0, 1)); one shared proxy run each")
    g.add_argument("--alpha", type=cli.comma_list(cli.fraction, unique=True), default=[0.3],
                   help="keep fractions in (0, 1] (fraction of N kept), comma list")
    g.add_argument("--methods", type=cli.comma_list(str, unique=True), default=list(BASE_METHODS),
                   help=f"methods, from {', '.join(BASE_METHODS + EXTRA_METHODS)}")
    g.add_argument("--beta", type=cli.unit_interval, default=0.0,
                   help="uniform mix: fraction of each score method's subset drawn uniformly from the "
                        "rest instead (paper D.6), in [0, 1]")
    g.add_argument("--hybrid-lambda", type=cli.comma_list(cli.unit_interval, unique=True), default=None,
                   help="adds method hybrid<l> = (1-l) rank(dris) + l rank(gradnorm) for each l in [0, 1]")
    g.add_argument("--aum-threshold", type=float, default=None, metavar="PERCENTILE",
                   help="adds method aum_tsr: proxies retrained twice each with N//C threshold samples "
                        "in an extra class; an example is dropped if its AUM is below this percentile "
                        "(0-100) of the threshold samples' AUM in a run where it is not one (default "
                        f"{DEFAULT_TSR_PERCENTILE:g} when aum_tsr is listed in --methods)")
    g.add_argument("--class-balanced", action="store_true",
                   help="every score method keeps the top alpha of EACH class (by the noisy labels the "
                        "target sees) instead of a global top alpha; our extension, not in the paper. "
                        "random stays a uniform subset (class-balanced in expectation)")
    g.add_argument("--ddof", type=int, choices=(0, 1), default=0,
                   help="divisor of the rank variance: 0 = 1/K (docs/METHODS.md), 1 = 1/(K-1); the ranking is "
                        "the same")
    return p


def parse_args(argv=None):
    """Parse and validate everything (exit 2 with one line on bad input), before any folder exists."""
    return check_args(build_parser().parse_args(argv))


def check_args(args):
    """Resolve and validate parsed arguments (exit 2 with one line); DR-IS/cleanlab_compare.py
    parses static's flags with its own parser and validates them here."""
    experiment.resolve(args)
    args.noise_list = experiment.parse_noise_configs(args.noise)
    args.alpha_list = list(args.alpha)
    methods = list(args.methods)
    cli.check_choices(methods, BASE_METHODS + EXTRA_METHODS, "method")
    lambdas = list(args.hybrid_lambda or [])
    if "hybrid" in methods and not lambdas:
        cli.fail("method hybrid needs --hybrid-lambda, e.g. --hybrid-lambda 0.25,0.5")
    if lambdas and "hybrid" not in methods:
        methods.append("hybrid")
    if args.aum_threshold is not None:
        if not 0.0 < args.aum_threshold < 100.0:
            cli.fail(f"--aum-threshold is a percentile in (0, 100), got {args.aum_threshold:g}")
        if "aum_tsr" not in methods:
            methods.append("aum_tsr")
    elif "aum_tsr" in methods:
        args.aum_threshold = DEFAULT_TSR_PERCENTILE
    # expand 'hybrid' into one method per lambda, in place
    expanded = []
    for m in methods:
        expanded.extend([hybrid_name(lam) for lam in lambdas] if m == "hybrid" else [m])
    args.method_list = expanded
    args.lambda_list = lambdas
    if len(args.proxy_list) < 2 and ("dris" in expanded or lambdas):
        cli.fail("rank disagreement (dris, hybrid) needs at least 2 proxies (--proxies a,b,...)")
    if "cleanlab" in expanded:
        import importlib.util

        if importlib.util.find_spec("cleanlab") is None:
            cli.fail("method cleanlab needs the cleanlab package (pip install -r requirements.txt)")
    launch.check_args(args)
    return args


def hybrid_name(lam: float) -> str:
    return f"hybrid{lam:g}"


def default_name(args) -> str:
    """Run folder name: the main parameters plus a short hash of every result-changing flag."""
    digest = runs.config_digest(args)
    parts = ["static", args.dataset, args.target, f"e{args.epochs}",
             "a" + "_".join(f"{a:g}" for a in args.alpha_list),
             f"beta{args.beta:g}" if args.beta else None,
             f"n{args.train_size}" if args.train_size else None, digest]
    return runs.run_name(*parts)


# ---------------------------------------------------------------- scores and selection (pure)


def method_scores(ens, methods, lambdas=(), ddof: int = 0) -> dict:
    """Per-example keep scores, (N,) each, high = keep, from one ProxyEnsemble.

    Returns the scores of the requested score methods plus 'gradnorm' (the Standard-IS
    magnitude score) whenever an ensemble is given, so every configuration saves it.
    """
    if ens is None:
        return {}
    out = {}
    for m in SCORE_METHODS:
        if m in methods or (m == "dris" and lambdas):
            out[m] = scores.ensemble_score(ens, m, ddof=ddof)
    out["gradnorm"] = scores.ensemble_score(ens, "gradnorm")
    for lam in lambdas:
        out[hybrid_name(lam)] = scores.hybrid_score(out["dris"], out["gradnorm"], lam)
    return out


def select(method: str, score, n: int, alpha: float, seed: int, beta: float = 0.0,
           labels=None) -> np.ndarray:
    """Kept example ids (sorted) of one job.

    random: round(alpha*N) ids drawn uniformly with the target seed's own 'subset' stream;
    full: all ids; a score method: the top round(alpha*N) by score, of which a fraction beta
    is drawn uniformly from the rest (its 'subset-mix' stream); with `labels` given
    (--class-balanced) the same within each class.  aum_tsr is handled apart.
    """
    key = int(round(alpha * 1_000_000))   # a different draw for every keep fraction
    if method == "full":
        return np.arange(n)
    if method == "random":
        return sampling.random_subset(n, alpha, numpy_rng(seed, "subset", key))
    rng = numpy_rng(seed, "subset-mix", key) if beta > 0 else None
    if labels is not None:
        return sampling.keep_top_fraction_per_class(score, labels, alpha, rng=rng, beta=beta)
    return sampling.keep_top_fraction(score, alpha, rng=rng, beta=beta)


def tsr_scores(aum_runs, threshold_runs, percentile: float):
    """AUM threshold-sample test (Pleiss et al. 2020, section 3.1) from R proxy runs.

    aum_runs: (R, N) AUM of every example in each run (threshold samples measured against the
    extra class); threshold_runs: (R, N) bool, True where the example was a threshold sample.
    Per run the threshold is the `percentile` of the threshold samples' AUM; an example is
    flagged if its AUM falls below that threshold in any run where it is not a threshold
    sample.  Returns (margin (N,): mean over those runs of AUM - threshold, high = keep;
    flagged (N,) bool).  Every example must be a non-threshold sample in at least one run.
    """
    aum = np.asarray(aum_runs, dtype=np.float64)
    thr_mask = np.asarray(threshold_runs, dtype=bool)
    assert aum.shape == thr_mask.shape and aum.ndim == 2, "(R, N) arrays"
    valid = ~thr_mask
    assert valid.any(axis=0).all(), "every example needs a run in which it is not a threshold sample"
    thr = np.array([np.percentile(a[t], percentile) for a, t in zip(aum, thr_mask)])
    margin = aum - thr[:, None]
    mean_margin = np.where(valid, margin, 0.0).sum(axis=0) / valid.sum(axis=0)
    flagged = (valid & (margin < 0)).any(axis=0)
    return mean_margin, flagged


def threshold_sample_runs(args, ds, labels, log=None):
    """Train each proxy twice with disjoint sets of N//C threshold samples relabelled to an extra
    class C (a C+1-way model), through the shared proxy cache.  Returns (aum (2K, N), is_thr (2K, N))."""
    from islab.proxies import train_proxy

    n, c = len(labels), ds.num_classes
    m = n // c
    perm = numpy_rng(args.noise_seed, "aum-threshold").permutation(n)
    sets = [perm[:m], perm[m:2 * m]]          # disjoint: each example is a normal one somewhere
    ds_plus = replace(ds, num_classes=c + 1)  # models built from it get one extra output
    cfg = experiment.proxy_config(args)
    aums, masks = [], []
    for k, name in enumerate(args.proxy_list):
        for tset in sets:
            lab = np.asarray(labels).copy()
            lab[tset] = c
            out, _ = train_proxy(ds_plus, lab, name, experiment.proxy_seed(args, k), cfg,
                                 args.snapshot_epoch, cache_dir=args.cache_dir, log=log,
                                 progress=args.progress)
            mask = np.zeros(n, dtype=bool)
            mask[tset] = True
            aums.append(out["aum"])
            masks.append(mask)
    return np.stack(aums), np.stack(masks)


def cleanlab_scores(args, ds, labels, log=None):
    """(label quality (N,), issues (N,) bool, out-of-sample probs (N, C)) of cleanlab on the
    proxies cross-validated over args.cv_folds folds (default CLEANLAB_FOLDS), from the shared
    cache: each (fold, proxy) run is cached like a proxy.  Quality is high = keep."""
    from islab import confident
    from islab.proxies import out_of_sample_probs

    seeds = [experiment.proxy_seed(args, k) for k in range(len(args.proxy_list))]
    probs = out_of_sample_probs(ds, labels, args.proxy_list, seeds, experiment.proxy_config(args),
                                getattr(args, "cv_folds", CLEANLAB_FOLDS), args.noise_seed,
                                cache_dir=args.cache_dir, log=log, progress=args.progress)
    issues, quality = confident.label_issues(labels, probs, getattr(args, "cleanlab_filter", CLEANLAB_FILTER))
    return quality, issues, probs


# ---------------------------------------------------------------- report


JOB_KEYS = ["config", "alpha", "method", "seed"]   # a job of this script (tables.final_frame's keys)


def panels(fin, alphas):
    """Rows of each alpha panel: the jobs at that alpha plus the alpha-free methods (OWN_FRACTION)."""
    import pandas as pd

    free = fin[fin["method"].isin(OWN_FRACTION)]
    out = []
    for a in alphas:
        part = fin[np.isclose(fin["alpha"], a) & ~fin["method"].isin(OWN_FRACTION)]
        out.append(pd.concat([part, free]).assign(panel=a))
    return pd.concat(out) if out else fin.assign(panel=[])


def _pm(values, fmt) -> str:
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if len(v) == 0:
        return "nan"
    # the spread is shown even when it is 0 (a deterministic subset, or identical accuracies)
    return fmt.format(v.mean()) + (" +- " + fmt.format(v.std(ddof=1)) if len(v) > 1 else "")


def config_table(fin, tag: str, alpha: float, methods) -> str:
    """One configuration, one alpha panel: accuracy mean +- std over seeds, corruption in subset,
    AUROC/AP of the discard order, paired t-test vs random."""
    d = fin[(fin["config"] == tag) & np.isclose(fin["panel"], alpha)]
    ref = d[d["method"] == "random"].set_index("seed")["test_acc"]
    head = ["method", "kept", "class kept", "acc % (mean +- std)", "vs random pp", "corrupt in subset",
            "AUROC", "AP", "p vs random", "diverged", "n"]
    rows = []
    for m in methods:
        s = d[d["method"] == m]
        if len(s) == 0:
            continue
        acc = s.set_index("seed")["test_acc"]
        common = sorted(set(acc.index) & set(ref.index))
        if m == "random" or not common:
            delta, p = "-", "-"
        else:
            diff = acc[common].to_numpy() - ref[common].to_numpy()
            delta = f"{diff.mean():+.2f}"
            p = f"{theory.paired_ttest(acc[common], ref[common])[1]:.3g}"
        cover = (f"{s['class_kept_min'].min():.2f}-{s['class_kept_max'].max():.2f}"
                 if "class_kept_min" in s else "-")
        rows.append([m, f"{s['kept_fraction'].mean():.3f}", cover, _pm(s["test_acc"], "{:.2f}"), delta,
                     _pm(s["corruption_in_subset"], "{:.3f}"), _pm(s["auroc"], "{:.3f}"),
                     _pm(s["ap"], "{:.3f}"), p,
                     f"{int(s['diverged'].fillna(0).sum()) if 'diverged' in s else 0}/{len(s)}", str(len(s))])
    return tables.text_table(head, rows, strip=True)


def write_report(run, args, info: dict) -> None:
    """res.txt: per configuration, a header line and one table per alpha panel."""
    fin = tables.final_frame(run.frame(), JOB_KEYS)
    out = [f"DR-IS static pruning: {args.dataset}, target {args.target}, {args.epochs} epochs budget "
           f"(step parity: E/alpha passes over the subset), proxies {','.join(args.proxy_list)} "
           f"(E_p {args.proxy_epochs}, scores at epoch {args.snapshot_epoch}), beta {args.beta:g}, "
           f"{'class-balanced' if args.class_balanced else 'global'} top-alpha selection, "
           f"seeds {args.seeds}; targeted-noise attacker {args.attacker} ({args.attacker_epochs} epochs)",
           "acc: final test accuracy %, mean +- sample std over seeds;",
           "vs random: mean paired difference to random (pp);",
           "p vs random: paired t-test over seeds (scipy ttest_rel; nan with < 2 seeds);",
           "class kept: smallest-largest fraction of a true class kept (all = alpha when balanced);",
           "corrupt in subset: fraction of kept examples that are corrupted (chance = eps);",
           "AUROC/AP: how well the method's discard order (lowest keep-score first) finds the corrupted",
           "examples: 0.5 / eps = chance, below = the score prefers to KEEP corrupted examples;",
           "random and full have no score (nan; a random order has expected AUROC 0.5 and AP eps);",
           "diverged: runs whose training loss became non-finite, or that could not train because a proxy",
           "or the attacker diverged (their accuracy is nan and left out of the mean).", ""]
    if len(fin):
        fin = panels(fin, args.alpha_list)
        for kind, rate in args.noise_list:
            tag = experiment.noise_tag(kind, rate)
            if tag not in set(fin["config"]):
                continue
            meta = info.get(tag, {})
            if meta.get("diverged"):
                out.append(f"== {tag}: DIVERGED before training: {meta['diverged']}")
            out.append(f"== {tag}: eps = {meta.get('eps', float('nan')):.3f} "
                       f"({meta.get('n_corrupt', '?')} of {meta.get('n', '?')} corrupted)"
                       + (f"; proxy test acc % {meta['proxy_acc']}" if meta.get("proxy_acc") else ""))
            for a in args.alpha_list:
                out.append(f"-- alpha = {a:g}")
                out.append(config_table(fin, tag, a, args.method_list))
            out.append("")
    run.write_text("res.txt", "\n".join(out) + "\n")


def write_plots(run, args, num_classes: int | None = None) -> None:
    """accuracy.png (final test accuracy per configuration and method, sd error bars over seeds,
    y from 0, chance = 100 / num_classes % dashed) and corruption.png (corruption in the kept subset of the noisy configurations, a
    chance line = eps over each configuration's bars), one panel per alpha, one legend."""
    from islab import plots

    fin = tables.final_frame(run.frame(), JOB_KEYS)
    if len(fin) == 0:
        return
    fin = panels(fin, args.alpha_list)
    tags = [experiment.noise_tag(k, r) for k, r in args.noise_list]
    order = [t for t in tags if t in set(fin["config"])]
    hue = [m for m in args.method_list if m in set(fin["method"])]
    sts = plots.styles(hue)
    eps = fin.groupby("config")["eps"].first()
    for metric, fname, ylabel, groups in (
            ("test_acc", "accuracy.png", "final test accuracy (%)", order),
            ("corruption_in_subset", "corruption.png", "corrupted fraction of the kept subset",
             [t for t in order if eps.get(t, 0) > 0])):   # clean data has nothing to show here
        if not groups:
            continue
        n = len(args.alpha_list)
        width = 1.0 + 0.32 * len(hue) * len(groups)
        fig, axes = plots.plt.subplots(1, n, figsize=(width * n + 1.5, 3.3), squeeze=False, sharey=True)
        handles = []
        for ax, a in zip(axes[0], args.alpha_list):
            d = fin[np.isclose(fin["panel"], a)]
            stats = {(g, m): d[(d["config"] == g) & (d["method"] == m)][metric].to_numpy(dtype=float)
                     for g in groups for m in hue}
            if metric == "test_acc":   # a model that guesses: 1 / classes
                chance = {g: 100.0 / num_classes for g in groups} if num_classes else None
                label = f"chance (1/{num_classes})"
            else:
                chance, label = {g: float(eps.get(g, np.nan)) for g in groups}, "chance (= eps)"
            handles = plots.grouped_bars(ax, stats, groups, hue, chance=chance, chance_label=label,
                                         sts=sts) or handles
            if metric == "test_acc":
                ax.set_ylim(0, 100)
            ax.set_title(f"alpha = {a:g}")
            ax.set_xlabel("noise configuration")
        axes[0, 0].set_ylabel(ylabel)
        plots.legend_outside(fig, handles=handles, title="method")
        fig.suptitle(plots.wrap("DR-IS static pruning: " + ("final test accuracy" if metric == "test_acc" else
                                "corruption in the kept subset") + " (mean +- sd over "
                                + (plots.count_seeds(fin, ["config", "method", "panel"]) or "seeds") + ")", 80 * n))
        plots.save(fig, run.path / fname)


# ---------------------------------------------------------------- main


def file_logger(run):
    """Per-epoch lines of the target runs go to log.txt only (stdout gets one line per job)."""
    return lambda msg: run.log(msg, quiet=True)   # (a failed write names log.txt)


def class_coverage(ids, clean) -> tuple[float, float]:
    """(smallest, largest) fraction of a true class that the subset keeps (alpha each when balanced)."""
    clean = np.asarray(clean)
    kept = np.bincount(clean[ids], minlength=clean.max() + 1)
    frac = kept / np.maximum(np.bincount(clean, minlength=clean.max() + 1), 1)
    return float(frac.min()), float(frac.max())


def job_rows(res, ids, mask, score, eps, kind, rate, clean, fit: dict) -> list[dict]:
    """Tidy rows of one finished target run: per-epoch curves (epoch set) and final metrics."""
    nan = float("nan")
    rows = []
    for h in res.history:
        for m in ("test_acc", "train_loss", "drawn_corrupt"):
            if m in h:
                rows.append({"metric": f"epoch_{m}", "epoch": h["epoch"], "value": h[m]})
    det = theory.detection_metrics(-score, mask) if score is not None else {"auroc": nan, "ap": nan}
    final = {"test_acc": res.test_acc, "best_test_acc": res.best_test_acc,
             "corruption_in_subset": theory.corruption_in_subset(ids, mask),
             "kept_fraction": len(ids) / len(mask), "n_kept": len(ids),
             "auroc": det["auroc"], "ap": det["ap"],
             "class_kept_min": class_coverage(ids, clean)[0], "class_kept_max": class_coverage(ids, clean)[1],
             "eps": eps, "diverged": float(res.diverged), "seconds": res.seconds, **fit}
    rows += [{"metric": k, "epoch": nan, "value": float(v)} for k, v in final.items()]
    return [{"kind": kind, "rate": rate, **r} for r in rows]


def diverged_rows(eps, kind, rate) -> list[dict]:
    """The record of a job that could not train because its proxies (or the attacker) diverged."""
    nan = float("nan")
    final = {"test_acc": nan, "best_test_acc": nan, "corruption_in_subset": nan, "kept_fraction": nan,
             "n_kept": nan, "auroc": nan, "ap": nan, "eps": eps, "diverged": 1.0, "proxy_diverged": 1.0,
             "seconds": 0.0}
    return [{"kind": kind, "rate": rate, "metric": k, "epoch": nan, "value": v} for k, v in final.items()]


def jobs_of(args, n: int, score_of: dict, own_keep: dict, labels=None, ready: bool = True):
    """(alpha, method, seed, kept ids, keep score or None) for one configuration, in run order.

    full runs once (alpha 1); aum_tsr and cleanlab run once with their own keep fraction
    (own_keep[method], None when it could not be computed) as their alpha.  With ready=False
    (diverged proxies or attacker) the ids are None: the jobs are recorded as diverged."""
    out = []
    for a in args.alpha_list:
        for m in args.method_list:
            if m in OWN_FRACTION:
                continue
            for s in args.seed_list:
                ok = ready and (m in NO_SCORE or m in score_of)
                ids = (select(m, score_of.get(m), n, a, s, args.beta, labels=labels if args.class_balanced else None)
                       if ok else None)
                out.append((a, m, s, ids, score_of.get(m)))
    for m in OWN_FRACTION:
        if m in args.method_list:
            ids = np.arange(n) if m == "full" else own_keep.get(m)
            alpha = round(len(ids) / n, 4) if ids is not None else (1.0 if m == "full" else float("nan"))
            for s in args.seed_list:
                out.append((alpha, m, s, ids if ready else None, score_of.get(m)))
    return out


def planned_keys(args) -> list[dict]:
    """Every job key known before any proxy is trained (aum_tsr's and cleanlab's alpha are learnt later)."""
    keys = []
    for kind, rate in args.noise_list:
        tag = experiment.noise_tag(kind, rate)
        keys += [{"config": tag, "alpha": a, "method": m, "seed": s} for a in args.alpha_list
                 for m in args.method_list if m not in OWN_FRACTION for s in args.seed_list]
        if "full" in args.method_list:
            keys += [{"config": tag, "alpha": 1.0, "method": "full", "seed": s} for s in args.seed_list]
    return keys


def config_keys(args, tag: str) -> list[dict]:
    """The planned job keys of one noise configuration."""
    return [k for k in planned_keys(args) if k["config"] == tag]


def prepare_config(args, ds, kind: str, rate: float, run):
    """One configuration's shared prerequisites: the noise draw, the proxy runs (shared cache),
    every method's scores (saved as scores-<tag>.npz and exported as scores-<tag>.csv), aum_tsr's
    threshold-sample runs and cleanlab's cross-validated proxies.
    Returns (Prepared, scores by method, kept ids of the LEARNT methods, facts for res.txt)."""
    n, tag = len(ds.train), experiment.noise_tag(kind, rate)
    need = any(m not in NO_SCORE for m in args.method_list)
    prep = experiment.prepare(args, ds, kind, rate, run, need_proxies=need)
    labels, mask, clean, ens = prep.labels, prep.mask, prep.clean, prep.ens
    eps = float(mask.mean()) if mask is not None else float("nan")
    info = {"eps": eps, "n_corrupt": int(mask.sum()) if mask is not None else "?", "n": n}
    score_of = method_scores(ens, args.method_list, args.lambda_list, ddof=args.ddof)
    own_keep = {}
    if prep.diverged:
        info["diverged"] = prep.diverged
    if ens is not None:
        info["proxy_acc"] = ", ".join(f"{nm} {a:.1f}" for nm, a in zip(ens.names, ens.test_acc))
    if "aum_tsr" in args.method_list and ens is not None:
        try:
            aum_runs, thr_runs = threshold_sample_runs(args, ds, labels, log=run.log)
        except ProxyDiverged as e:
            run.log(f"[{tag}] aum_tsr: {e}; its jobs are recorded as diverged")
            aum_runs = None
        if aum_runs is not None:
            score_of["aum_tsr"], flagged = tsr_scores(aum_runs, thr_runs, args.aum_threshold)
            own_keep["aum_tsr"] = np.flatnonzero(~flagged)
            if len(own_keep["aum_tsr"]) == 0:   # every example flagged: keep the top-alpha by margin instead
                run.log(f"[{tag}] aum_tsr flagged every example; keeping the top alpha by margin")
                own_keep["aum_tsr"] = top_indices(score_of["aum_tsr"], sampling.n_keep(n, args.alpha_list[0]))
            bad = float(mask[flagged].mean()) if flagged.any() else float("nan")
            run.log(f"[{tag}] aum_tsr: {int(flagged.sum())} of {n} flagged (percentile "
                    f"{args.aum_threshold:g}), corruption among flagged {bad:.3f}")
    if "cleanlab" in args.method_list and ens is not None:
        try:
            score_of["cleanlab"], issues, _ = cleanlab_scores(args, ds, labels, log=run.log)
        except ProxyDiverged as e:
            run.log(f"[{tag}] cleanlab: {e}; its jobs are recorded as diverged")
        else:
            own_keep["cleanlab"] = np.flatnonzero(~issues)
            if len(own_keep["cleanlab"]) == 0:   # every example flagged: keep the top alpha by quality
                run.log(f"[{tag}] cleanlab flagged every example; keeping the top alpha by label quality")
                own_keep["cleanlab"] = top_indices(score_of["cleanlab"], sampling.n_keep(n, args.alpha_list[0]))
            bad = float(mask[issues].mean()) if issues.any() else float("nan")
            run.log(f"[{tag}] cleanlab: {int(issues.sum())} of {n} flagged, corruption among flagged {bad:.3f}")
    if mask is not None:
        run.save_arrays(f"scores-{tag}.npz", index=np.arange(n), corrupt=mask, noisy=labels, **score_of)
        experiment.export_configuration(run, args, tag, labels, clean, mask, ens, extra=score_of, ddof=args.ddof,
                                        ds=ds)
    return prep, score_of, own_keep, info


def prepare(args, ds, info: dict, kind: str, rate: float, run, _pending=None) -> dict:
    """One configuration, ready for its jobs: the noise draw, the proxies, every method's scores
    and kept ids (saved as subsets-<tag>.npz); its facts for res.txt go into info[tag]."""
    tag, n = experiment.noise_tag(kind, rate), len(ds.train)
    prep, score_of, own_keep, info[tag] = prepare_config(args, ds, kind, rate, run)
    todo = jobs_of(args, n, score_of, own_keep, prep.labels, ready=prep.labels is not None)
    subsets = {f"{m}-a{alpha:g}-s{seed}": ids for alpha, m, seed, ids, _ in todo if ids is not None}
    if subsets:   # every job's kept ids, whoever trains it
        run.save_arrays(f"subsets-{tag}.npz", **subsets)
    return {"tag": tag, "kind": kind, "rate": rate, "eps": info[tag]["eps"], "prep": prep, "jobs": todo}


def jobs(p: dict) -> list:
    """A prepared configuration's jobs in run order: (alpha, method, seed), the kept ids and score."""
    return [sweep.Job({"config": p["tag"], "alpha": alpha, "method": m, "seed": seed},
                      f"[{p['tag']}] {m} alpha {alpha:g} seed {seed}", f"{p['tag']}-{m}-a{alpha:g}-s{seed}",
                      planned=m not in LEARNT, data=(ids, score))
            for alpha, m, seed, ids, score in p["jobs"]]


def run_job(args, ds, run, p: dict, job, ckpt=None):
    """One job: train the target on the kept subset with the step budget of full-data training,
    then measure it (test accuracy, corruption kept, detection of the score, fit of the labels)."""
    from islab.train import Sampling, train

    prep, (ids, score), tcfg = p["prep"], job.data, experiment.target_config(args)
    m, seed, tag, n = job.key["method"], job.key["seed"], p["tag"], len(ds.train)
    if ids is None:   # its proxies or the attacker diverged: recorded, not trained
        return sweep.Outcome(diverged_rows(p["eps"], p["kind"], p["rate"]),
                             f"{job.name}: DIVERGED (no scores: {prep.diverged})", trained=False)
    res = train(args.target, ds, prep.labels, tcfg, seed, sampling=Sampling(mode="subset", subset=ids),
                corrupt_mask=prep.mask, log=file_logger(run), progress=args.progress, checkpoint=ckpt,
                desc=f"[{tag}] {m} a{job.key['alpha']:g} s{seed}")
    fit, pred = experiment.fit_to_labels(res.model, ds, prep.labels, prep.clean, prep.mask, tcfg)
    files = []
    if m == "full":   # the full-data fit of every configuration, for the memorisation baseline
        run.save_arrays(f"predictions-{tag}-full-s{seed}.npz", train_pred=pred)
        # recorded (SHA-256) with the labels it is compared with: reports verify both
        files = [run.path / f"predictions-{tag}-full-s{seed}.npz", run.path / f"labels-{tag}.npz"]
    if getattr(args, "export_probs", False):
        files.append(export.save_probs(run.path / f"probs-{tag}-{m}-a{job.key['alpha']:g}-s{seed}.npz",
                                       [0], export.subset_probs(ids, n)[None], dataset_id=example_ids(ds)))
    rows = job_rows(res, ids, prep.mask, score, p["eps"], p["kind"], p["rate"], prep.clean, fit)
    return sweep.Outcome(rows, f"{job.name}: test acc {res.test_acc:.2f}%{' DIVERGED' if res.diverged else ''}, "
                               f"corruption in subset {theory.corruption_in_subset(ids, prep.mask):.3f} "
                               f"(eps {p['eps']:.3f}), {res.seconds:.1f}s", files=tuple(files))


def run_static(args, ds=None, path=None, argv=None):
    """Every configuration x method x alpha x seed job of a parsed, validated args (data set and
    run folder path may be given, as ablations.py does for its sub-runs, with the static argv
    its launcher's processes rerun); islab.sweep does the run folder, resume, workers and Slurm."""
    ds = ds if ds is not None else experiment.open_dataset(args)   # missing data: exit 2, no folder
    path = path or launch.run_path(args, experiment.results_root(args, FAMILY), default_name)
    info = {}   # per-configuration facts for res.txt

    def after(run, p, trained):   # figures cost seconds: after each configuration but the last
        if trained and (p["kind"], p["rate"]) != args.noise_list[-1]:
            write_plots(run, args, ds.num_classes)

    def report(run, final):
        write_report(run, args, info)
        if final:
            write_plots(run, args, ds.num_classes)

    configs = [sweep.Config(experiment.noise_tag(k, r), config_keys(args, experiment.noise_tag(k, r)),
                            functools.partial(prepare, args, ds, info, k, r), jobs, after=after,
                            learns_jobs=any(m in args.method_list for m in LEARNT), report_needs_prepare=True)
               for k, r in args.noise_list]
    return sweep.sweep(__file__, args, argv, path, configs, functools.partial(run_job, args, ds), report,
                       header=lambda run: f"run folder {run.path}; {len(ds.train)} training examples, "
                                          f"device {args.torch_device}")


def main(argv=None):
    return run_static(parse_args(argv), argv=argv)


if __name__ == "__main__":
    cli.run_main(main)
