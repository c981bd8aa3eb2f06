#!/usr/bin/env python
"""DR-IS theory diagnostics (docs/METHODS.md section 6; paper Theorem 1, Theorem 2, Appendix H): how the
rank-disagreement score s_i separates clean from corrupted examples as the ensemble grows.

Per noise configuration ONE pool of K_max proxies is trained (shared cache), and for each K in
--k-values the first K proxies (ProxyEnsemble.take) give s_i (variance of the normalised loss
ranks, 1/K by default).  For each K:
  - histograms of s_i, clean vs corrupted                                   hist-<config>-K<k>.png
  - the empirical gap between the clean-boundary and the corrupted-bulk
    quantiles of s_i against 2 x the McDiarmid radius r(K, N, delta)        gap.png
  - the corruption in the top-alpha subset by s_i (and, for contrast, by
    consensus-loss and EL2N)                                                subset.png
  - the sampling mass on corrupted examples of each sampler (Theorem 2):    mass.png
      uniform, standard IS (p ~ ensemble mean gradient-norm bound), loss IS (p ~ ensemble mean
      loss), dris (smoothed, p ~ s + gamma mean(s))
  - the Appendix H verdict (A1 bulk stability, A2 boundary disagreement, plug-in Theorem 1)
    printed and written to res.txt; the numbers behind it are in results.csv.
The boundary / bulk definitions are in islab/theory.py (assumption_checks).  Standard IS uses
the proxies' snapshot gradient norms here (no target model is trained in this script).

    python DR-IS/diagnostics.py              # digits: clean + targeted 25 %, K = 2,3,4,6 (~1 min idle CPU)
    python DR-IS/diagnostics.py --noise uniform:0.2,targeted:0.1 --k-values 2,3,4,5,6,8 --proxies cnn,mlp
    python DR-IS/diagnostics.py --preset cifar10 --data-dir data --k-values 2,3,6   # pool: the preset's 3, x2

Output (results/DR-IS/diagnostics/<run>/): res.txt, results.csv (tidy: config, kind, rate, K,
metric, value), scores-<config>.npz (s_i per K, mean loss, mask), scores-<config>.csv (per-example
scores of the K_max pool, s_K<k> per K; results/README.md), labels-<config>.npz,
verdict-<config>.json (the verdict text, reused by --resume), plots,
config.json/cmd.txt/env.json/log.txt.  One proxy pool per configuration and no target seeds,
so the numbers are single draws (no std).
"""
from __future__ import annotations

import functools
import itertools
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # standalone: find islab

import numpy as np  # noqa: E402

from islab import cli, experiment, launch, runs, sampling, scores, sweep, tables, theory  # noqa: E402

FAMILY = "DR-IS/diagnostics"
DEFAULT_NOISE = "clean,targeted:0.25"
# Default proxy pool per data set, cycled to K_max (repeats get their own seeds).  digits uses
# the cheap cnn/mlp pair (the preset's resnet20 would take ~4x longer on CPU); other presets
# cycle their own proxy list.
DEFAULT_POOL = {"digits": "cnn,mlp"}
SAMPLERS = ("uniform", "standard_is", "loss_is", "dris")
SUBSET_SCORES = ("dris", "el2n", "consensus")   # consensus drawn last: on top of el2n, which it can equal


# ---------------------------------------------------------------- arguments


def build_parser():
    p = cli.make_parser(__doc__.split("\n\n")[0])
    # no target model is trained here: no --seeds, --target, --epochs
    experiment.add_common_args(p, exclude=("seeds", "target", "epochs"))
    for a in p._actions:  # shared flags whose meaning is specific here
        if a.dest == "proxies":
            a.help = ("comma list of proxy models, cycled to K_max = max(--k-values) (default: cnn,mlp on "
                      "digits, else the preset's list)")
    g = p.add_argument_group("diagnostics")
    g.add_argument("--noise", default=DEFAULT_NOISE,
                   help="noise configurations, comma list of clean | uniform:RATE | targeted:RATE | "
                        "pair:RATE (RATE = fraction of N relabelled, in [0, 1))")
    g.add_argument("--k-values", default="2,3,4,6",
                   help="ensemble sizes K (first K proxies of the pool), comma list of integers >= 2")
    g.add_argument("--alpha", type=cli.fraction, default=0.3,
                   help="keep fraction in (0, 1]: size of the top subset and of the clean boundary set (x N)")
    g.add_argument("--delta", type=cli.positive_float, default=0.05,
                   help="failure probability of the McDiarmid + union bound, in (0, 1)")
    g.add_argument("--tail-fraction", type=cli.unit_interval, default=0.1,
                   help="rho: fraction of corrupted examples (highest s) treated as the escaping tail, "
                        "in [0, 1)")
    g.add_argument("--eta", type=cli.unit_interval, default=0.1,
                   help="Assumption 2 exceedance probability: tau is the eta-quantile of the bulk's ranks")
    g.add_argument("--gamma", type=cli.nonnegative_float, default=0.1,
                   help="DR-IS smoothing of the dris sampler: c = gamma * mean(s) is added to every s_i "
                        "(dimensionless; docs/METHODS.md section 5)")
    g.add_argument("--ddof", type=int, choices=(0, 1), default=0,
                   help="divisor of the rank variance: 0 = 1/K (docs/METHODS.md), 1 = 1/(K-1)")
    g.add_argument("--a2-min-spread", type=cli.unit_interval, default=0.05,
                   help="A2 holds when the clean-boundary s is at least this fraction of the maximum "
                        "variance")
    g.add_argument("--bins", type=cli.positive_int, default=40, help="histogram bins")
    launch.add_args(p, checkpoint=False)   # no target is trained: nothing to checkpoint
    return p


def parse_args(argv=None):
    """Parse and validate everything (exit 2 with one line on bad input), before any folder exists."""
    p = build_parser()
    args = p.parse_args(argv)
    given_proxies = args.proxies
    experiment.resolve(args)
    args.noise_list = experiment.parse_noise_configs(args.noise)
    ks = sorted(set(experiment.parse_ints(args.k_values, "k-values")))
    if not ks or ks[0] < 2:
        cli.fail(f"--k-values must be integers >= 2, got {args.k_values!r}")
    args.k_list = ks
    if not 0 < args.delta < 1:
        cli.fail(f"--delta must lie in (0, 1), got {args.delta:g}")
    if args.tail_fraction >= 1:
        cli.fail(f"--tail-fraction must lie in [0, 1), got {args.tail_fraction:g}")
    base = experiment.parse_list(DEFAULT_POOL.get(args.preset, args.proxies) if given_proxies is None else given_proxies,
                                 "--proxies")
    from islab.models import MODELS

    cli.check_choices(base, list(MODELS), "model")
    args.proxy_list = list(itertools.islice(itertools.cycle(base), max(ks)))
    args.proxies = ",".join(base)   # config.json shows the pool actually cycled, not the preset's list
    launch.check_args(args)
    return args


def default_name(args) -> str:
    # no target seeds here (folders of earlier versions had a --seeds flag: left out of the digest)
    digest = runs.config_digest({k: v for k, v in vars(args).items() if k not in ("seeds", "seed_list")})
    return runs.run_name("diag", args.dataset, f"n{args.train_size}" if args.train_size else None,
                         "K" + "_".join(map(str, args.k_list)), f"a{args.alpha:g}", digest)


# ---------------------------------------------------------------- one configuration (pure)


def sampler_probs(ens, s, gamma: float) -> dict:
    """The four Theorem-2 samplers' distributions over N from a K-proxy ensemble and its s."""
    n = s.shape[0]
    return {"uniform": sampling.uniform_probs(n),
            "standard_is": sampling.proportional_probs(scores.ensemble_score(ens, "gradnorm")),
            "loss_is": sampling.proportional_probs(scores.ensemble_score(ens, "loss")),
            "dris": sampling.smoothed_probs(s, gamma)}


def diagnose(ens, mask, args) -> tuple[list[dict], dict, dict]:
    """Rows (K, metric, value), s per K, and the checks/masses/alignment of the largest K."""
    rows, s_of, last = [], {}, {}
    for k in args.k_list:
        sub = ens.take(k)
        ranks = scores.normalised_ranks(sub["loss"])
        s = scores.rank_variance(ranks, ddof=args.ddof)
        s_of[k] = s
        checks = theory.assumption_checks(ranks, mask, alpha=args.alpha, tail_fraction=args.tail_fraction,
                                          eta=args.eta, delta=args.delta, ddof=args.ddof,
                                          a2_min_spread=args.a2_min_spread)
        masses = {name: theory.theorem2_mass_bound(p, mask)["mass"]
                  for name, p in sampler_probs(sub, s, args.gamma).items()}
        aligned = theory.loss_aligned(scores.ensemble_score(sub, "loss"), mask)
        for name, v in checks.items():
            if name in ("K", "N", "ddof"):
                continue
            rows.append({"K": k, "metric": name, "value": float("nan") if v is None else float(v)})
        rows += [{"K": k, "metric": f"mass_{name}", "value": v} for name, v in masses.items()]
        rows.append({"K": k, "metric": "loss_aligned", "value": float(aligned)})
        for name in SUBSET_SCORES:
            keep = sampling.keep_top_fraction(scores.ensemble_score(sub, name, ddof=args.ddof), args.alpha)
            rows.append({"K": k, "metric": f"cis_{name}", "value": theory.corruption_in_subset(keep, mask)})
        last = {"checks": checks, "masses": masses, "aligned": aligned}
    return rows, s_of, last


# ---------------------------------------------------------------- report and plots


def config_table(df) -> str:
    """One configuration: a row per K with the separation, subset and Theorem-2 numbers."""
    cols = [("r", "radius", ".4f"), ("2r", "two_radius", ".4f"), ("q_bnd", "q_boundary", ".4f"),
            ("q_bulk", "q_bulk", ".4f"), ("emp gap", "empirical_gap", "+.4f"),
            *[(f"gap {b[:3]}/{t:g}", f"gap_{b}_tail{t:g}", "+.4f")
              for t in theory.ALT_TAIL_FRACTIONS for b in theory.GAP_BOUNDARIES],
            ("plug-in gap", "nominal_gap", "+.4f"),
            ("corr>bnd", "frac_corrupt_above_boundary", ".3f"), ("cis dris", "cis_dris", ".3f"),
            ("cis cons", "cis_consensus", ".3f"), ("cis el2n", "cis_el2n", ".3f"),
            ("AUROC low s", "auroc_low_s", ".3f"),
            ("spread", "spread", ".3f"), ("A1", "a1_holds", ""), ("A2", "a2_holds", ""),
            *[(f"mass {s}", f"mass_{s}", ".3f") for s in SAMPLERS]]
    wide = df.pivot_table(index="K", columns="metric", values="value", aggfunc="first", dropna=False)
    head = ["K"] + [c[0] for c in cols]
    body = []
    for k, row in wide.iterrows():
        cells = [str(int(k))]
        for _, m, spec in cols:
            v = row.get(m, float("nan"))
            if not np.isfinite(v):
                cells.append("-")
            elif spec == "":
                cells.append("yes" if v else "no")
            else:
                cells.append(format(v, spec))
        body.append(cells)
    return tables.text_table(head, body, strip=True)


def write_report(run, args, verdicts: dict, info: dict) -> None:
    df = run.frame()
    norm = "1/K" if args.ddof == 0 else "1/(K-1)"
    out = [f"DR-IS diagnostics: {args.dataset} (N = {info.get('n', '?')}), proxy pool "
           f"{','.join(args.proxy_list)} (E_p {args.proxy_epochs}, scores at epoch {args.snapshot_epoch}; "
           f"attacker {args.attacker}, {args.attacker_epochs} epochs), "
           f"s = {norm} variance of normalised loss ranks; alpha {args.alpha:g}, delta {args.delta:g}, "
           f"rho {args.tail_fraction:g}, eta {args.eta:g}, gamma {args.gamma:g}",
           "r: McDiarmid radius (theory.mcdiarmid_radius); q_bnd: lowest s of the round(alpha N) clean",
           "examples with the highest s (clean boundary); q_bulk: highest s of the lowest (1 - rho)",
           "corrupted (corrupted bulk); emp gap = q_bnd - q_bulk (> 0: bulk below the whole boundary, A1);",
           "gap min/T, gap med/T: the same gap with the corrupted bulk at tail fraction T and the boundary",
           "summarised by its lowest s (min: strict) or its median s (med: the paper's D.4 comparison);",
           "emp gap is gap min at the run's rho;",
           "spread = q_bnd / max variance; plug-in gap: Theorem 1 gap with",
           "tau, v_B estimated from this sample; corr>bnd: fraction of corrupted above q_bnd; cis <score>:",
           "corruption in the top-alpha subset by that score (chance = eps); A2: q_bnd >= "
           f"{args.a2_min_spread:g} x max variance;",
           "mass <sampler>: sampling mass on corrupted examples (Theorem 2; uniform = eps).",
           "One proxy pool per configuration, no target seeds: single draws, no std.", ""]
    if len(df):
        for kind, rate in args.noise_list:
            tag = experiment.noise_tag(kind, rate)
            d = df[df["config"] == tag]
            if len(d) == 0:
                continue
            meta = info.get(tag, {})
            out.append(f"== {tag}: eps = {meta.get('eps', float('nan')):.3f}"
                       + (f"; proxy test acc % {meta['proxy_acc']}" if meta.get("proxy_acc") else ""))
            out.append(config_table(d))
            if tag in verdicts:
                out.append(verdicts[tag])
            out.append("")
    run.write_text("res.txt", "\n".join(out) + "\n")


def gap_plot(gap, configs, path) -> None:
    """Empirical and plug-in gaps against 2r over K, one panel per configuration.  The gaps are
    ~100x smaller than 2r, so the y axis is symmetric-log (linear within +-1e-3)."""
    from islab import plots

    # quantities, not methods: colours no method has (islab/style.py)
    colours = {"empirical gap": plots.FALLBACK[2], "plug-in Theorem 1 gap": plots.FALLBACK[5], "2r (McDiarmid)": "0.3"}
    styles_ = {"empirical gap": ("o", "-"), "plug-in Theorem 1 gap": ("s", "-."), "2r (McDiarmid)": ("D", "--")}
    fig, axes = plots.plt.subplots(1, len(configs), figsize=(3.6 * len(configs) + 0.4, 3.1), squeeze=False,
                                   sharey=True)
    for ax, c in zip(axes[0], configs):
        for q, sub in gap[gap["config"] == c].groupby("quantity", sort=False):
            sub = sub.sort_values("K")
            mk, ls = styles_.get(q, ("o", "-"))
            ax.plot(sub["K"], sub["value"], marker=mk, linestyle=ls, color=colours.get(q), label=q)
        ax.axhline(0.0, color="0.5", linewidth=0.8)
        ax.set_yscale("symlog", linthresh=1e-3)
        plots.integer_ticks(ax, "x", sorted(gap["K"].unique()))
        ax.set_xlabel("K (proxies)")
        ax.set_title(c)
    axes[0, 0].set_ylabel("gap (units of s)")
    plots.legend_outside(fig, axes, title="quantity")
    fig.suptitle(plots.wrap("DR-IS diagnostics: separation gaps vs 2r (Theorem 1 certifies the separation "
                            "when a gap exceeds 2r; our A1 check needs the empirical gap > 0); symmetric log "
                            "axis, linear within +-0.001; one proxy pool (n = 1 seed)", 55 * max(len(configs), 1)))
    plots.save(fig, path)


def draw_hist(path, s, mask, rows, k: int, tag: str, args) -> None:
    """Histogram of s_i, clean vs corrupted, with the two quantiles the Appendix H verdict compares
    (the corrupted bulk's top q_bulk, the clean boundary's bottom q_bnd) and the 2r separation
    Theorem 1 asks for, drawn from q_bulk (its true extent is in the legend when it runs off the
    axis)."""
    from islab import plots

    val = {r["metric"]: r["value"] for r in rows if r["K"] == k}
    q_bulk, q_bnd, two_r = val.get("q_bulk", np.nan), val.get("q_boundary", np.nan), val.get("two_radius", np.nan)
    marks = [(q_bulk, f"q_bulk = {q_bulk:.4f}: the highest s of the lowest {1 - args.tail_fraction:.0%} of corrupted"),
             (q_bnd, f"q_bnd = {q_bnd:.4f}: the lowest s of the round({args.alpha:g} N) clean with the highest s")]
    span = None
    if np.isfinite(q_bulk) and np.isfinite(two_r):
        span = (q_bulk, q_bulk + two_r, f"q_bulk to q_bulk + 2r (2r = {two_r:.3f}): Theorem 1 certifies the "
                                        "separation only if q_bnd lies beyond")
    marks[1] = (q_bnd, marks[1][1] + " (A1: q_bnd > q_bulk)")
    if not mask.any():   # clean data: no corrupted bulk to separate; the threshold DR-IS keeps above
        marks = [(q_bnd, f"q_bnd = {q_bnd:.4f}: DR-IS keeps the round({args.alpha:g} N) examples above")]
        span = None
    plots.hist_by_group(s, np.where(mask, "corrupted", "clean"), path, bins=args.bins, marks=marks, span=span,
                        title=f"{tag}, K = {k}: rank disagreement s_i" + (", clean vs corrupted" if mask.any() else "")
                        + " (one proxy pool, n = 1 seed)",
                        xlabel="rank disagreement s_i (variance of normalised loss ranks)")


def write_plots(run, args) -> None:
    """gap.png, subset.png, mass.png over K, one panel per configuration with corruption."""
    from islab import plots

    df = run.frame()
    if len(df) == 0:
        return
    noisy = sorted({c for c in df["config"]
                    if (df[(df["config"] == c) & (df["metric"] == "eps")]["value"] > 0).any()})
    d = df[df["config"].isin(noisy)]
    if len(d) == 0:
        return
    names = {"empirical_gap": "empirical gap", "two_radius": "2r (McDiarmid)",
             "nominal_gap": "plug-in Theorem 1 gap"}
    gap = d[d["metric"].isin(list(names))].assign(quantity=lambda x: x["metric"].map(names))
    gap_plot(gap, noisy, run.path / "gap.png")
    cis = d[d["metric"].isin([f"cis_{s}" for s in SUBSET_SCORES])].assign(
        score=lambda x: x["metric"].str.replace("cis_", "", regex=False))
    eps = d[d["metric"] == "eps"].groupby("config")["value"].first().to_dict()
    ks = sorted(d["K"].unique())
    plots.lines_with_band(cis, "K", "value", "score", run.path / "subset.png", col="config", xticks=ks, xlabel="K (proxies)",
                          title=f"DR-IS diagnostics: corrupted fraction of the top-{args.alpha:g} subset "
                                "by each score", band_note=False, seeds="one proxy pool: single draws, n = 1 seed",
                          ylabel="corrupted fraction", clip=(0, 1), reference=eps,
                          reference_label="chance (= eps)", panel="{value}", ylim=(0, None),
                          hue_order=[s for s in SUBSET_SCORES if (cis["score"] == s).any()])
    mass = d[d["metric"].isin([f"mass_{s}" for s in SAMPLERS])].assign(
        sampler=lambda x: x["metric"].str.replace("mass_", "", regex=False))
    plots.lines_with_band(mass, "K", "value", "sampler", run.path / "mass.png", col="config", xticks=ks, xlabel="K (proxies)",
                          title="DR-IS diagnostics: sampling mass on the corrupted examples (Theorem 2; "
                                "uniform = eps)", band_note=False, seeds="one proxy pool: single draws, n = 1 seed",
                          ylabel="mass", clip=(0, 1),
                          panel="{value}", ylim=(0, None),
                          hue_order=[s for s in SAMPLERS if (mass["sampler"] == s).any()])


# ---------------------------------------------------------------- main


def load_verdicts(run, args, info: dict, verdicts: dict) -> None:
    """The verdicts of every finished configuration, whichever worker wrote them (their files
    are checksummed by the job records, so is_done verifies them)."""
    for kind, rate in args.noise_list:
        tag = experiment.noise_tag(kind, rate)
        saved = run.path / f"verdict-{tag}.json"
        if tag not in verdicts and run.is_done({"config": tag}):
            d = json.loads(saved.read_text())
            info[tag], verdicts[tag] = d["info"], d["verdict"]


def run_diagnostics(args, argv=None):
    ds = experiment.open_dataset(args)   # a missing data set exits 2 before any folder exists
    path = launch.run_path(args, experiment.results_root(args, FAMILY), default_name)
    n = len(ds.train)
    info, verdicts = {"n": n}, {}

    def prepare(kind, rate, run, _pending):   # the noise draw and the proxy pool: most of a job's cost
        return kind, rate, experiment.prepare(args, ds, kind, rate, run, need_proxies=True)

    def jobs(p):   # one job per configuration: every ensemble size of the pool
        tag = experiment.noise_tag(p[0], p[1])
        return [sweep.Job({"config": tag}, f"[{tag}]", tag)]

    def run_job(run, p, job, _ckpt):
        (kind, rate, prep), tag, t0 = p, job.key["config"], time.time()
        mask, ens = prep.mask, prep.ens
        saved = run.path / f"verdict-{tag}.json"
        eps = float(mask.mean()) if mask is not None else float("nan")
        if ens is None:   # a proxy (or the attacker) diverged: no s_i, recorded as such
            info[tag] = {"eps": eps, "diverged": prep.diverged}
            verdicts[tag] = f"DIVERGED: {prep.diverged}; no diagnostics for this configuration"
            runs.atomic_write_json(saved, {"info": info[tag], "verdict": verdicts[tag]})
            return sweep.Outcome([{"kind": kind, "rate": rate, "K": k, "metric": m, "value": v}
                                  for k in args.k_list for m, v in (("eps", eps), ("diverged", 1.0))],
                                 f"[{tag}] {verdicts[tag]}", files=(saved,), trained=False)
        info[tag] = {"eps": eps, "proxy_acc": ", ".join(f"{nm} {a:.1f}" for nm, a in zip(ens.names, ens.test_acc))}
        rows, s_of, last = diagnose(ens, mask, args)
        run.save_arrays(f"scores-{tag}.npz", index=np.arange(n), corrupt=mask,
                        mean_loss=scores.ensemble_score(ens, "loss"), **{f"s_K{k}": s for k, s in s_of.items()})
        for k, s in s_of.items():
            draw_hist(run.path / f"hist-{tag}-K{k}.png", s, mask, rows, k, tag, args)
        verdicts[tag] = theory.verdict(last["checks"], last["masses"], last["aligned"])
        runs.atomic_write_json(saved, {"info": info[tag], "verdict": verdicts[tag]})
        exported = experiment.export_configuration(run, args, tag, prep.labels, prep.clean, mask, ens,
                                                   extra={f"s_K{k}": s for k, s in s_of.items()},
                                                   ddof=args.ddof, ds=ds)
        return sweep.Outcome([{"kind": kind, "rate": rate, **r} for r in rows],
                             f"[{tag}] {len(args.k_list)} ensemble sizes in {time.time() - t0:.1f}s\n{verdicts[tag]}",
                             files=(saved, run.path / f"scores-{tag}.npz", exported[0]))

    def report(run, final):   # from every worker's job files
        load_verdicts(run, args, info, verdicts)
        write_report(run, args, verdicts, info)
        write_plots(run, args)

    def header(run):
        return (f"run folder {run.path}; {n} training examples, proxy pool {','.join(args.proxy_list)}, "
                f"K in {args.k_list}, device {args.torch_device}")

    configs = [sweep.Config(experiment.noise_tag(k, r), [{"config": experiment.noise_tag(k, r)}],
                            functools.partial(prepare, k, r), jobs) for k, r in args.noise_list]
    return sweep.sweep(__file__, args, argv, path, configs, run_job, report, header=header, seed=args.noise_seed)


def main(argv=None):
    return run_diagnostics(parse_args(argv), argv=argv)


if __name__ == "__main__":
    cli.run_main(main)
