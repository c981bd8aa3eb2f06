#!/usr/bin/env python
"""DR-IS online importance sampling (Algorithm 2) against Uniform SGD, Standard IS and RHO-LOSS
(approximate and faithful), under label noise.  (docs/METHODS.md sections 1, 3, 5, 7; paper Table 3.)

Per noise configuration: one noise draw and one cached proxy run shared by every method; the
target is trained by the one loop of islab.train with each method's sampling distribution
(islab.online), weights 1/(N p).  Every run logs per epoch the test accuracy, the sampling mass
on corrupted examples (Theorem 2), the fraction of drawn examples that were corrupted and the
effective sample size of p; divergence and collapse are recorded, never dropped.

    python DR-IS/online.py --noise clean,targeted:0.25 --seeds 0,1,2      # digits demo
    python DR-IS/online.py --preset cifar10 --seeds 0,1,2 --checkpoint    # paper Table 3 protocol

Output: results/DR-IS/online/<run>/ with res.txt (per configuration: final and best test
accuracy mean +- std, mass on corrupted, drawn corrupted, ESS, diverged/collapsed counts, paired
t-test against uniform), results.csv (tidy: every epoch plus per-run summaries),
acc_vs_epoch.png, mass_corrupt_vs_epoch.png, labels-<tag>.npz, irreducible-<tag>.npz,
scores-<tag>.csv (per-example proxy scores), with --export-probs probs-<tag>-<method>-s<seed>.npz
(p at each refresh, over the examples the job trains on: the RHO methods' are irreducible-<tag>.npz
'keep'), with --export-dynamics dynamics-<tag>/ (results/README.md), provenance.
"""
from __future__ import annotations

import argparse
import functools
import math
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # standalone: find islab

import numpy as np  # noqa: E402

from islab import cli, experiment, launch, online, runs, scores, sweep, tables, theory  # noqa: E402
from islab.data import example_ids  # noqa: E402
from islab.models import MODELS  # noqa: E402
from islab.sampling import IS_FLOOR  # noqa: E402
from islab.train import train  # noqa: E402

FAMILY = "DR-IS/online"
INFO_FILE = "configs.json"   # per-configuration facts for res.txt (noise count, proxy and reference accuracy)
DEFAULT_NOISE = "clean,uniform:0.1,targeted:0.1,targeted:0.25"
# RHO-LOSS reference model and holdout per preset (docs/METHODS.md section 3: ResNet-20 on a 5k holdout for CIFAR;
# digits: the small cnn on 20 % of the 1437 training examples, our default).
# RHO-LOSS's reference ("irreducible") model and holdout per preset: the paper's is its fastest
# proxy architecture on a 10 % holdout (ResNet-20 on 5,000 of 50,000); Fashion-MNIST likewise
# (pooled_cnn on 6,000 of 60,000: a cnn there took 340 s per configuration on 2 cores)
IRREDUCIBLE_DEFAULTS = {"cifar10": ("resnet20", 5000), "cifar100": ("resnet20", 5000), "digits": ("cnn", 0.2),
                        "fashion-mnist": ("pooled_cnn", 0.1), "fashion-mnist-mem": ("pooled_cnn", 0.1)}
COLLAPSE_MARGIN = 5.0    # a run "collapsed" when its final test accuracy <= chance + this (points)
EPOCH_METRICS = ("test_acc", "test_loss", "train_loss", "mass_corrupt", "drawn_corrupt", "max_weight_drawn")


# ---------------------------------------------------------------- arguments


def holdout_size(text: str) -> float:
    """--holdout: a count of examples (integer >= 1) or a fraction of N in (0, 1)."""
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"holdout must be a number, got {text!r}") from None
    if not (0 < v < 1 or (1 <= v < float("inf") and v == int(v))):   # (int(inf) would raise)
        raise argparse.ArgumentTypeError(
            f"holdout must be a fraction in (0, 1) or an integer count >= 1, got {text}")
    return v if v < 1 else int(v)


def build_parser():
    p = cli.make_parser(__doc__.split("\n\n")[0])
    experiment.add_common_args(p)
    experiment.add_probs_export_arg(p)
    g = p.add_argument_group("online importance sampling")
    g.add_argument("--methods", default=",".join(online.METHODS),
                   help=f"comma list from {', '.join(online.METHODS)} (uniform = shuffled epochs without "
                        "replacement; the others draw with replacement, weights 1/(N p))")
    g.add_argument("--noise", default=DEFAULT_NOISE,
                   help="comma list of noise configurations: clean, uniform:RATE, targeted:RATE, pair:RATE "
                        "(RATE = fraction of N corrupted, in [0, 1))")
    g.add_argument("--gamma", type=cli.nonnegative_float, default=0.1,
                   help="DR-IS smoothing: c = gamma * mean(s) added to every rank variance s_i (unitless)")
    g.add_argument("--is-floor", type=cli.nonnegative_float, default=IS_FLOOR,
                   help="Standard IS floor, as a fraction of the mean gradient-norm bound added to every "
                        "example (dimensionless; islab.sampling.IS_FLOOR, the rule of the convex "
                        "family's Standard IS and Loss IS too; bounds the weight by (1 + floor) / floor; "
                        "0 = the plain gradient-norm rule)")
    g.add_argument("--rho-floor", type=cli.nonnegative_float, default=IS_FLOOR,
                   help="RHO-LOSS floor, as a fraction of the mean of max(score, 0) added to every example "
                        "(dimensionless; default the one floor islab.sampling.IS_FLOOR of every magnitude "
                        "sampler; bounds the importance weight by (1 + floor) / floor: 11 at 0.1; "
                        f"{online.RHO_PAPER_FLOOR:g} = the RHO-LOSS paper's small floor, weights up to 101)")
    g.add_argument("--is-source", default="target", choices=online.IS_SOURCES,
                   help="standard_is's gradient-norm bound: target = the current target's, refreshed every "
                        "epoch (the method); proxy = the proxies' mean at their snapshot epoch E_s, frozen "
                        "(a sensitivity variant)")
    g.add_argument("--unweighted", action="store_true",
                   help="the non-uniform samplers draw from p but weight every drawn example 1 instead of "
                        "1/(N p) (biased; a sensitivity variant)")
    g.add_argument("--rho-every", type=cli.positive_int, default=5,
                   help="rho_faithful: epochs between recomputations of the current-target loss")
    g.add_argument("--holdout", type=holdout_size, default=None,
                   help="RHO-LOSS holdout carved from the TRAINING set: a count of examples or a fraction "
                        "of N (default: 5000 for the cifar presets, 0.2 for digits, 0.1 for fashion-mnist)")
    g.add_argument("--irreducible-model", default=None,
                   help="RHO-LOSS reference model trained on the holdout (default: resnet20 for the cifar "
                        "presets, cnn for digits, pooled_cnn for fashion-mnist)")
    g.add_argument("--irreducible-epochs", type=cli.positive_int, default=None,
                   help="epochs of the irreducible model over the holdout (default: as many SGD steps as one "
                        "proxy run over all N, i.e. round(proxy_epochs * N / holdout))")
    launch.add_args(p)   # the launcher flags and --checkpoint
    return p


def parse_args(argv=None):
    """Parse and validate everything that does not need the data (exit 2, one line)."""
    args = build_parser().parse_args(argv)
    experiment.resolve(args)
    args.method_list = experiment.parse_choices(args.methods, online.METHODS, "method")
    args.noise_configs = list(dict.fromkeys(experiment.parse_noise_configs(args.noise)))
    args.seed_list = list(dict.fromkeys(args.seed_list))
    model, hold = IRREDUCIBLE_DEFAULTS.get(args.preset, ("cnn", 0.2))
    args.irreducible_model = model if args.irreducible_model is None else args.irreducible_model
    args.holdout = hold if args.holdout is None else args.holdout
    if args.irreducible_model not in MODELS:
        cli.fail(f"unknown --irreducible-model {args.irreducible_model!r}; choose from {', '.join(MODELS)}")
    if "dris" in args.method_list and len(args.proxy_list) < 2:
        cli.fail("dris needs at least 2 proxies (a rank disagreement over one is 0); "
                 f"got --proxies {args.proxies}")
    launch.check_args(args)
    return args


def holdout_count(args, n: int) -> int:
    """The holdout size in examples (exit 2 if it leaves too few examples on either side); also
    fills the default --irreducible-epochs, which depends on it."""
    h = int(round(args.holdout * n)) if args.holdout < 1 else int(args.holdout)
    if any(m in online.RHO_METHODS for m in args.method_list) and not (1 <= h <= n - args.batch_size):
        cli.fail(f"--holdout {args.holdout:g} gives {h} of {n} training examples; need 1 <= holdout <= "
                 f"N - batch size ({n - args.batch_size}) for the RHO-LOSS methods")
    if args.irreducible_epochs is None:  # step-matched: the reference gets one proxy run's SGD steps
        args.irreducible_epochs = max(1, round(args.proxy_epochs * n / max(h, 1)))
    return h


def default_name(args) -> str:
    digest = runs.config_digest(args)
    size = f"n{args.train_size}" if args.train_size else None
    return runs.run_name(args.dataset, args.target, f"e{args.epochs}", size, digest)


# ---------------------------------------------------------------- one configuration's shared parts


def irreducible_for(args, ds, labels, mask, tag, run, n_hold):
    """The RHO-LOSS reference for one noise configuration, read back from the run folder when
    a previous invocation already trained it (--resume)."""
    path = run.path / f"irreducible-{tag}.npz"
    irr = None
    if runs.intact(path, run.log):   # its SHA-256 checked: a damaged file is moved aside, trained again
        try:
            with np.load(path) as z:
                irr = online.Irreducible(z["keep"], z["holdout"], z["loss"], float(z["test_acc"]),
                                         bool(z["diverged"]))
            run.log(f"[{tag}] irreducible model: read from {path.name}")
        except Exception as e:  # noqa: BLE001  truncated or foreign file: never trusted, trained again
            run.log(f"[{tag}] {path.name} is damaged ({type(e).__name__}): the irreducible model is trained again")
    if irr is None:
        cfg = replace(experiment.target_config(args), epochs=args.irreducible_epochs)
        irr = online.train_irreducible(ds, labels, n_hold, args.irreducible_model, cfg,
                                       seed=2000 + args.noise_seed, log=lambda m: run.log(f"[{tag}] {m}"),
                                       progress=args.progress)
        runs.save_npz_verified(path, keep=irr.keep, holdout=irr.holdout, loss=irr.loss,
                               test_acc=np.array(irr.test_acc), diverged=np.array(irr.diverged))
    run.log(f"[{tag}] RHO holdout: {len(irr.holdout)} examples, "
            f"{100 * mask[irr.holdout].mean():.1f}% corrupted (the holdout is part of the noisy training "
            f"set); targets train on the other {len(irr.keep)}")
    return irr


def config_info(ds, mask, ens, irr) -> dict:
    info = {"n_train": int(len(mask)), "n_corrupt": int(mask.sum())}
    if ens is not None:
        info["proxy_test_acc"] = [round(float(a), 2) for a in ens.test_acc]
        det = theory.detection_metrics(scores.ensemble_score(ens, "dris"), mask)
        info["dris_auroc_corrupt"] = det["auroc"]
    if irr is not None:
        info.update(irreducible_test_acc=irr.test_acc, irreducible_diverged=irr.diverged,
                    holdout_size=int(len(irr.holdout)), holdout_corrupt=float(mask[irr.holdout].mean()))
    return info


# ---------------------------------------------------------------- one job


def run_job(args, ds, method, seed, labels, mask, ens, irr, run, tag, clean, ckpt=None):
    """Train the target with one method and seed (ckpt: its training-state file, islab.sweep);
    returns (tidy rows, summary dict, files recorded with the job)."""
    cfg = experiment.target_config(args)
    if method in online.RHO_METHODS:  # RHO targets train on the examples outside the holdout
        d, y, m, c = online.keep_dataset(ds, irr.keep), labels[irr.keep], mask[irr.keep], clean[irr.keep]
    else:
        d, y, m, c = ds, labels, mask, clean
    kw = {}
    if method == "dris":
        kw["disagreement"] = scores.ensemble_score(ens, "dris")   # 1/K rank variance (ddof 0)
    if method == "rho_approx":
        kw["proxy_mean_loss"] = scores.ensemble_score(ens, "loss")[irr.keep]
    if method == "standard_is" and args.is_source == "proxy":
        kw["proxy_gradnorm"] = scores.ensemble_score(ens, "gradnorm")   # mean over proxies at E_s
    if method in online.RHO_METHODS:
        kw["irreducible_loss"] = irr.loss
    rlog = online.RefreshLog(keep_probs=bool(getattr(args, "export_probs", False)))
    sampling = online.make_sampling(method, d, y, cfg, gamma=args.gamma, is_floor=args.is_floor,
                                    rho_floor=args.rho_floor, rho_every=args.rho_every,
                                    is_source=args.is_source, reweight=not args.unweighted, log=rlog, **kw)

    def epoch_log(msg):  # per-epoch lines go to log.txt only (a failed write names the file)
        run.log(msg, quiet=True)

    res = train(args.target, d, y, cfg, seed, sampling=sampling, corrupt_mask=m, progress=args.progress,
                log=epoch_log, checkpoint=ckpt, desc=f"[{tag}] {method} s{seed}")
    chance = 100.0 / ds.num_classes
    ess = rlog.per_epoch(args.epochs, "ess")
    maxw = rlog.per_epoch(args.epochs, "max_weight")
    if method == "uniform":   # shuffled epochs: every example once, weight 1 (ESS/N = 1)
        ess, maxw = np.ones(args.epochs), np.ones(args.epochs)
    rows = []
    for h in res.history:
        e = h["epoch"]
        vals = {k: h.get(k) for k in EPOCH_METRICS}
        vals.update(ess=ess[e - 1], max_weight=maxw[e - 1])
        rows += [{"epoch": e, "metric": k, "value": float(v)} for k, v in vals.items()
                 if v is not None and math.isfinite(float(v))]
    final = chance if res.diverged else float(res.test_acc)  # a diverged run scores chance
    hist = res.history
    summary = {
        "final_acc": final,
        "best_acc": float(res.best_test_acc) if math.isfinite(res.best_test_acc) else chance,
        "diverged": float(res.diverged), "collapsed": float(final <= chance + COLLAPSE_MARGIN),
        "mass_corrupt_mean": _nanmean([h.get("mass_corrupt", np.nan) for h in hist]),
        "drawn_corrupt_mean": _nanmean([h.get("drawn_corrupt", np.nan) for h in hist]),
        "ess_mean": _nanmean(ess[:len(hist)]), "max_weight_max": _nanmax(maxw[:len(hist)]),
        "max_weight_drawn_max": _nanmax([h.get("max_weight_drawn", np.nan) for h in hist]),
        "epochs_run": float(len(hist)), "seconds": float(res.seconds),
        "nonfinite_refresh": float(sum(not call["finite"] for call in rlog.calls)),
        **experiment.fit_to_labels(res.model, d, y, c, m, cfg)[0],
    }
    rows += [{"metric": k, "value": v} for k, v in summary.items()]
    files = []
    if rlog.keep_probs and rlog.probs:   # a resumed checkpoint skips earlier refreshes: rows from here on
        files.append(rlog.save_probs(run.path / f"probs-{tag}-{method}-s{seed}.npz",
                                     example_id=irr.keep if method in online.RHO_METHODS else None,
                                     dataset_id=example_ids(d)))
    return rows, summary, files


def _nanmean(v) -> float:
    v = np.asarray(v, dtype=np.float64)
    return float(v[np.isfinite(v)].mean()) if np.isfinite(v).any() else float("nan")


def _nanmax(v) -> float:
    v = np.asarray(v, dtype=np.float64)
    return float(v[np.isfinite(v)].max()) if np.isfinite(v).any() else float("nan")


# ---------------------------------------------------------------- report


def ttest_vs_uniform(fin, method) -> str:
    """Paired t-test (scipy.stats.ttest_rel) of final accuracy against uniform, paired by seed."""
    a = fin[fin["method"] == method].set_index("seed")["value"]
    b = fin[fin["method"] == "uniform"].set_index("seed")["value"]
    common = sorted(set(a.index) & set(b.index))
    if method == "uniform" or len(common) < 2:
        return "-"
    d = a[common].values - b[common].values
    if np.all(d == d[0]):
        return f"diff {d[0]:+.2f} (constant)"
    t, p = theory.paired_ttest(a[common].values, b[common].values)
    return f"t={t:+.2f} p={p:.3f}"


def config_table(df, methods) -> str:
    """One noise configuration: rows = methods, cells mean +- std over seeds."""
    def cell(sub, metric, fmt):
        v = sub[sub["metric"] == metric]["value"].astype(float)
        if len(v) == 0 or v.isna().all():
            return "-"
        return fmt.format(v.mean()) + (f" +- {fmt.format(v.std())}" if len(v) > 1 else "")

    head = ["method", "final acc %", "best acc %", "mass corrupt", "drawn corrupt", "ESS/N", "max w",
            "max w drawn", "diverged", "collapsed", "vs uniform (paired t)", "n"]
    rows = []
    fin_all = df[df["metric"] == "final_acc"]
    for m in methods:
        sub = df[df["method"] == m]
        if sub.empty:
            continue
        n = int((sub["metric"] == "final_acc").sum())
        div = int(sub[sub["metric"] == "diverged"]["value"].sum())
        col = int(sub[sub["metric"] == "collapsed"]["value"].sum())
        rows.append([m, cell(sub, "final_acc", "{:.2f}"), cell(sub, "best_acc", "{:.2f}"),
                     cell(sub, "mass_corrupt_mean", "{:.3f}"), cell(sub, "drawn_corrupt_mean", "{:.3f}"),
                     cell(sub, "ess_mean", "{:.3f}"), cell(sub, "max_weight_max", "{:.1f}"),
                     cell(sub, "max_weight_drawn_max", "{:.1f}"), f"{div}/{n}", f"{col}/{n}", ttest_vs_uniform(fin_all, m), str(n)])
    return tables.text_table(head, rows)


def write_report(run, args, ds, infos, wall):
    df = run.frame()
    if df.empty:
        return
    chance = 100.0 / ds.num_classes
    lines = [f"DR-IS online importance sampling (Algorithm 2): {args.dataset}, target {args.target}, "
             f"{args.epochs} epochs x ceil(N/{args.batch_size}) steps, lr {args.lr:g} (cosine), "
             f"wd {args.weight_decay:g}",
             f"proxies {','.join(args.proxy_list)} (E_p {args.proxy_epochs}, E_s {args.snapshot_epoch}); "
             f"targeted-noise attacker {args.attacker} ({args.attacker_epochs} epochs); "
             f"gamma {args.gamma:g}; Standard IS floor {args.is_floor:g}, RHO floor {args.rho_floor:g} "
             "(relative to the mean score); "
             f"Standard IS score from the {'frozen proxy snapshot' if args.is_source == 'proxy' else 'refreshed target'}; "
             f"importance weights {'OFF (every drawn example weight 1)' if args.unweighted else '1/(N p)'}; "
             f"rho_faithful every {args.rho_every} epochs; irreducible {args.irreducible_model} "
             f"({args.irreducible_epochs} epochs) on holdout {args.holdout:g}",
             f"final acc = test accuracy after the last epoch (a diverged run counts as chance, "
             f"{chance:.2f}); collapsed = final acc <= chance + {COLLAPSE_MARGIN:g}; mass corrupt = "
             "sampling mass on corrupted examples (mean over epochs; uniform = eps); drawn corrupt = "
             "fraction of drawn examples that were corrupted; ESS/N = 1/(N sum p^2), mean over epochs; "
             "max w = largest importance weight 1/(N p_i) any example could carry (max over epochs); "
             "max w drawn = largest weight actually drawn in a minibatch (per-epoch values in results.csv). "
             "RHO methods train on N' = N - holdout examples (the holdout trains their reference model), "
             "so they get N'/N of the data and of the steps per epoch: a RHO-vs-uniform gap mixes the "
             "sampler with that smaller budget (docs/dris-studies.md measures uniform SGD on N' examples).",
             "mean +- std (ddof 1) over seeds; paired t-test of final acc against uniform across seeds.", ""]
    for kind, rate in args.noise_configs:
        tag = experiment.noise_tag(kind, rate)
        sub = df[df["config"] == tag]
        if sub.empty:
            continue
        info = infos.get(tag, {})
        extra = ", ".join(f"{k} {v if not isinstance(v, float) else round(v, 3)}" for k, v in info.items())
        lines += [f"== noise {tag} ==", f"({extra})" if extra else ""]
        if "holdout_size" in info:
            n, h = info["n_train"], info["holdout_size"]
            lines.append(f"RHO targets: N' = {n - h} of N = {n} examples ({100 * (n - h) / n:.1f} %), "
                         f"{math.ceil((n - h) / args.batch_size)} vs {math.ceil(n / args.batch_size)} steps "
                         "per epoch; the other methods train on all N")
        lines += [config_table(sub, args.method_list), ""]
    lines.append(f"wall time of this invocation so far: {wall:.1f} s")
    run.write_text("res.txt", "\n".join(lines) + "\n")
    plot(run, df, steps_per_epoch(args, infos), getattr(ds, "num_classes", None))


def steps_per_epoch(args, infos) -> dict:
    """{(config, method): optimizer steps per epoch}: ceil(N / batch) for every method, but
    ceil(N' / batch) for RHO-LOSS, which trains on N' = N - holdout (its reference model has the
    holdout)."""
    out = {}
    for tag, info in infos.items():
        if not isinstance(info, dict) or "n_train" not in info:
            continue
        n, h = int(info["n_train"]), int(info.get("holdout_size", 0))
        for m in args.method_list:
            out[tag, m] = math.ceil((n - h if m in online.RHO_METHODS else n) / args.batch_size)
    return out


def plot(run, df, steps=None, classes=None):
    """acc_vs_epoch.png and mass_corrupt_vs_epoch.png: mean +- sd over seeds per method, a panel
    per noise configuration (shared y axis, bands clipped to the metric's range, chance = 1 /
    classes dashed); clean data has no mass panel (nothing is corrupted).  The x axis counts
    optimizer steps (a marker per epoch) when `steps` = {(config, method): steps per epoch} is
    known: RHO-LOSS's epochs are shorter (it trains on N - holdout), and the axis shows it."""
    from islab.plots import lines_with_band

    ep = df[df["epoch"].notna()] if "epoch" in df else df.iloc[:0]
    methods = [m for m in dict.fromkeys(ep["method"])] if len(ep) else []
    x, xlabel = "epoch", "epoch"
    if steps and len(ep) and all((c, m) in steps for c, m in zip(ep["config"], ep["method"])):
        per = [steps[c, m] for c, m in zip(ep["config"], ep["method"])]
        ep = ep.assign(step=ep["epoch"].to_numpy(float) * np.asarray(per, dtype=float))
        x, xlabel = "step", "optimizer steps"
    for metric, name, label, clip in (("test_acc", "acc_vs_epoch.png", "test accuracy (%)", (0, 100)),
                                      ("mass_corrupt", "mass_corrupt_vs_epoch.png", "sampling mass on corrupted",
                                       (0, 1))):
        d = ep[ep["metric"] == metric]
        if metric == "mass_corrupt":  # nothing to see where nothing is corrupted
            d = d[d["config"] != "clean"]
        chance = 100.0 / classes if metric == "test_acc" and classes else None
        if not d.empty:
            lines_with_band(d, x, "value", "method", run.path / name, ylabel=label, col="config",
                            clip=clip, integer_x=True, hue_order=[m for m in methods if (d["method"] == m).any()],
                            panel="{value}", xlabel=xlabel,
                            title=f"DR-IS online: {label}" + ("; markers: epochs (RHO-LOSS trains on N - holdout)"
                                                              if x == "step" else ""),
                            reference=chance, reference_label=f"chance (1/{classes})")


# ---------------------------------------------------------------- main


def diverged_rows() -> list[dict]:
    """The record of a job that could not train because a proxy or the attacker diverged."""
    nan = float("nan")
    return [{"metric": k, "value": v} for k, v in
            {"final_acc": nan, "best_acc": nan, "diverged": 1.0, "proxy_diverged": 1.0, "collapsed": nan,
             "mass_corrupt_mean": nan, "drawn_corrupt_mean": nan, "ess_mean": nan, "max_weight_max": nan,
             "max_weight_drawn_max": nan,
             "epochs_run": 0.0, "seconds": 0.0, "nonfinite_refresh": nan}.items()]


def main(argv=None):
    args = parse_args(argv)
    return run_online(args, argv=argv)


def config_keys(args, tag: str) -> list[dict]:
    return [{"config": tag, "method": m, "seed": s} for m in args.method_list for s in args.seed_list]


def planned_keys(args) -> list[dict]:
    """Every job key, in run order."""
    return [k for kind, r in args.noise_configs for k in config_keys(args, experiment.noise_tag(kind, r))]


def prepare_config(args, ds, kind, rate, run, n_hold, methods):
    """One configuration's shared prerequisites for `methods`: the noise draw, the proxy runs
    (shared cache), RHO-LOSS's irreducible model (irreducible-<tag>.npz in the run folder) and
    the configuration's per-example exports (scores-<tag>.csv, islab.export)."""
    tag = experiment.noise_tag(kind, rate)
    need_proxies = any(online.needs_proxies(m, args.is_source) for m in methods)
    prep = experiment.prepare(args, ds, kind, rate, run, need_proxies=need_proxies)
    irr = (irreducible_for(args, ds, prep.labels, prep.mask, tag, run, n_hold)
           if prep.labels is not None and any(m in online.RHO_METHODS for m in methods) else None)
    experiment.export_configuration(run, args, tag, prep.labels, prep.clean, prep.mask, prep.ens, ds=ds)
    return prep, irr


def prepare(args, ds, n_hold: int, kind: str, rate: float, run, pending) -> tuple:
    """One configuration, ready for its jobs: the prerequisites of its pending jobs' methods (noise
    draw, proxies, RHO-LOSS's irreducible model); its facts for res.txt go to configs.json."""
    tag = experiment.noise_tag(kind, rate)
    methods = list(dict.fromkeys(k["method"] for k in pending))
    prep, irr = prepare_config(args, ds, kind, rate, run, n_hold, methods)
    sweep.record_facts(run, INFO_FILE, tag, {**(config_info(ds, prep.mask, prep.ens, irr) if prep.mask is not None
                                                else {}), **({"diverged": prep.diverged} if prep.diverged else {})})
    return tag, prep, irr


def train_job(args, ds, run, prepared: tuple, job, ckpt=None):
    """One job: train the target with one sampling method and seed (run_job), one log line."""
    tag, prep, irr = prepared
    method, seed = job.key["method"], job.key["seed"]
    if prep.labels is None or (prep.ens is None and online.needs_proxies(method, args.is_source)):
        # its proxies or the attacker diverged: recorded, not trained
        return sweep.Outcome(diverged_rows(), f"{job.name}: DIVERGED (no scores: {prep.diverged})", trained=False)
    rows, s, files = run_job(args, ds, method, seed, prep.labels, prep.mask, prep.ens, irr, run, tag, prep.clean, ckpt)
    flags = (" DIVERGED" if s["diverged"] else "") + (" COLLAPSED" if s["collapsed"] else "")
    return sweep.Outcome(rows, f"{job.name}: final acc {s['final_acc']:.2f}% (best {s['best_acc']:.2f}), "
                               f"mass on corrupted {s['mass_corrupt_mean']:.3f}, drawn corrupted "
                               f"{s['drawn_corrupt_mean']:.3f}, ESS/N {s['ess_mean']:.3f}, {s['seconds']:.1f}s{flags}",
                         files=tuple(files))


def run_online(args, ds=None, path=None, argv=None):
    """Every noise configuration x method x seed job of parsed args (the data set and the run
    folder path may be given, as DR-IS/ablations.py does, with the argv its launcher reruns);
    islab.sweep does the run folder, resume, workers and Slurm."""
    ds = ds if ds is not None else experiment.open_dataset(args)
    n_hold = holdout_count(args, len(ds.train))   # last check: exit 2 before any folder exists
    path = path or launch.run_path(args, experiment.results_root(args, FAMILY), default_name)
    t_start = time.time()

    def jobs(prepared):
        tag = prepared[0]
        return [sweep.Job({"config": tag, "method": m, "seed": s}, f"[{tag}] {m} seed {s}", f"{tag}-{m}-s{s}")
                for m in args.method_list for s in args.seed_list]

    def report(run, final):
        write_report(run, args, ds, sweep.read_facts(run.path / INFO_FILE), time.time() - t_start)

    configs = [sweep.Config(experiment.noise_tag(k, r), config_keys(args, experiment.noise_tag(k, r)),
                            functools.partial(prepare, args, ds, n_hold, k, r), jobs) for k, r in args.noise_configs]
    # config.json records the settings, not the device they ran on
    run_config = argparse.Namespace(**{k: v for k, v in vars(args).items() if k != "torch_device"})
    return sweep.sweep(__file__, args, argv, path, configs, functools.partial(train_job, args, ds), report,
                       run_config=run_config,
                       header=lambda run: f"{args.dataset}: {len(ds.train)} train / {len(ds.test)} test; methods "
                                          f"{args.method_list}; seeds {args.seed_list}; device {args.torch_device}")


if __name__ == "__main__":
    cli.run_main(main)
