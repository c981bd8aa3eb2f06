#!/usr/bin/env python
"""An & Ying (seed 001): does resampling-reweighting (RR, i.e. importance-sampled SGD) change
WHICH minimum SGD finds in a non-convex landscape?  Three examples, vectorised chains
(islab/nonconvex.py; the derivations and parameter choices are in Convex-Noise/README.md).

  twowell  their Section 2: a sharp global and a flat local minimum carved by two subgroups of
           different Lipschitz scale; histogram of the iterates of SGD and RR (sampled terms, and
           the diffusion of their Lemma 2.1) against the Lemma's stationary density.
  welsch   their Section 4.1.2: Welsch-loss regression with a sensitive and an insensitive
           subgroup; fraction of chains ending in the better minimum vs the learning rate.
  mb       their Section 4.2: the Mueller-Brown potential as a sum of its four terms with
           population proportions; fraction of runs ending in the global minimum.

    python Convex-Noise/nonconvex_rr.py            # all three parts (about a minute of CPU)
    python Convex-Noise/nonconvex_rr.py --quick    # a few-second smoke run

Output: results/Convex-Noise/nonconvex/<run>/ with res.txt, results.csv (tidy: part, method,
dynamics, eta, metric, value), twowell.png, welsch.png, mueller_brown.png, twowell.npz,
welsch.npz, mb.npz, plus config/cmd/env provenance.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # standalone: find islab

import numpy as np  # noqa: E402

from islab import cli, nonconvex as nc, runs, seeding, tables  # noqa: E402

FAMILY = "Convex-Noise/nonconvex"
PARTS = ("twowell", "welsch", "mb")
PART_KEY = {p: i for i, p in enumerate(PARTS)}          # seed key of each part's streams
QUICK = dict(tw_chains=60, tw_steps=3000, tw_every=10, tw_diffusion_steps=300, tw_substeps=10,
             w_chains=40, w_steps=400, w_etas="0.01,0.05",
             w_polish=400, mb_chains=40, mb_steps=300, mb_etas="1e-4,2e-3", mb_polish=400)
MB_POLISH_STEP = 2e-4   # < 1 / 4068, the largest Hessian eigenvalue of V at its three minima
MB_TOL = 0.02           # a polished point within this distance of a minimum belongs to it
HIST_RANGE, HIST_BINS = (-3.0, 3.0), 240
COLUMNS = ["part", "method", "dynamics", "eta", "metric", "value"]


# ---------------------------------------------------------------- arguments


def build_parser():
    p = cli.make_parser(__doc__.split("\n\n")[0])
    p.epilog = "schemes: " + "; ".join(f"{k} = {v}" for k, v in nc.SCHEME_HELP.items())
    g = p.add_argument_group("study")
    g.add_argument("--parts", type=cli.comma_list(str), default=",".join(PARTS),
                   help=f"comma list from {', '.join(PARTS)}")
    g.add_argument("--seed", type=cli.seed, default=0,
                   help="run seed (data, starting points and every chain's sampler derive from it)")
    g = p.add_argument_group("twowell (x and the losses are dimensionless)")
    g.add_argument("--tw-a1", type=cli.positive_float, default=0.5,
                   help="proportion of the sensitive subgroup 1, in (0, 1)")
    g.add_argument("--tw-k1", type=cli.positive_float, default=8.0,
                   help="slope of f1 around its (sharp) minimum x = -1 (loss per unit x)")
    g.add_argument("--tw-k2", type=cli.positive_float, default=1.0,
                   help="slope of f2 around its (flat) minimum x = +1 (loss per unit x)")
    g.add_argument("--tw-eps", type=cli.positive_float, default=0.3,
                   help="slope of each term on the far side of 0 (loss per unit x)")
    g.add_argument("--tw-eta", type=cli.positive_float, default=0.1,
                   help="step size (x per unit gradient), the same for SGD and RR")
    g.add_argument("--tw-chains", type=cli.positive_int, default=1000,
                   help="chains per scheme and dynamics, started uniformly in [-2, 2]")
    g.add_argument("--tw-steps", type=cli.positive_int, default=40000, help="steps per chain")
    g.add_argument("--tw-every", type=cli.positive_int, default=5,
                   help="histogram: record every chain every this many steps, over the second half")
    g.add_argument("--tw-diffusion-steps", type=cli.positive_int, default=2000,
                   help="steps (of size eta each) of the Lemma 2.1 diffusion chains; it mixes in a few "
                        "hundred")
    g.add_argument("--tw-substeps", type=cli.positive_int, default=100,
                   help="Euler-Maruyama substeps per step of the diffusion (its stationary width is "
                        "eta s2 / (2 |F'|), below one SGD jump: it needs fine substeps)")
    g = p.add_argument_group("welsch (features, responses and coefficients are dimensionless)")
    g.add_argument("--w-sensitive", type=cli.positive_int, default=30,
                   help="examples of the sensitive subgroup (features scale * U[0.5, 1.5])")
    g.add_argument("--w-clean", type=cli.nonnegative_int, default=28,
                   help="insensitive examples (features U[0.5, 1.5]) that respond with --w-beta")
    g.add_argument("--w-corrupt", type=cli.positive_int, default=42,
                   help="insensitive examples that respond with --w-beta-bad (systematic corruption)")
    g.add_argument("--w-scale", type=cli.positive_float, default=10.0,
                   help="feature scale of the sensitive subgroup (x 1 for the insensitive one)")
    g.add_argument("--w-c", type=cli.positive_float, default=1.0, help="Welsch scale c (response units)")
    g.add_argument("--w-beta", type=float, default=1.0, help="true coefficient (response per unit feature)")
    g.add_argument("--w-beta-bad", type=float, default=-1.0,
                   help="coefficient of the corrupted responses (response per unit feature)")
    g.add_argument("--w-noise", type=cli.nonnegative_float, default=0.05,
                   help="std of the Gaussian response noise (response units)")
    g.add_argument("--w-etas", type=cli.comma_list(cli.positive_float),
                   default="0.005,0.01,0.02,0.03,0.05,0.08,0.12",
                   help="learning rates (coefficient per unit gradient), comma list")
    g.add_argument("--w-chains", type=cli.positive_int, default=500,
                   help="chains per scheme and learning rate, started uniformly between the minima +-1")
    g.add_argument("--w-steps", type=cli.positive_int, default=5000, help="steps per chain (1 example each)")
    g.add_argument("--w-polish", type=cli.positive_int, default=3000,
                   help="full-gradient steps (step 1 / mean x^2) that tell which basin a final iterate is in")
    g = p.add_argument_group("mb (Mueller-Brown; coordinates and V in the units of Mueller & Brown 1979)")
    g.add_argument("--mb-props", type=cli.comma_list(cli.positive_float), default="0.32,0.32,0.04,0.32",
                   help="population proportions a_k of the four terms (normalised to sum 1); term k is "
                        "f_k = V_k / a_k, so a rare term is a term of large Lipschitz scale")
    g.add_argument("--mb-etas", type=cli.comma_list(cli.positive_float), default="1e-4,3e-4,1e-3,2e-3",
                   help="learning rates (coordinate per unit gradient of V), comma list")
    g.add_argument("--mb-chains", type=cli.positive_int, default=500,
                   help="runs per scheme and learning rate, started uniformly in the box "
                        "[-1.5, 1.2] x [-0.5, 2.0] (iterates are clipped to it)")
    g.add_argument("--mb-steps", type=cli.positive_int, default=4000, help="steps per run (1 term each)")
    g.add_argument("--mb-polish", type=cli.positive_int, default=3000,
                   help=f"gradient-descent steps (step {MB_POLISH_STEP:g}) that tell which minimum a run "
                        "ends in")
    g = p.add_argument_group("run")
    g.add_argument("--results-root", type=cli.folder, default=str(runs.RESULTS_ROOT),
                   help="results folder; the run lands in <root>/Convex-Noise/nonconvex/<name> (default: the repository's "
                        "results/)")
    g.add_argument("--name", type=runs.check_name, default=None,
                   help="run folder name, one folder (default: from the parameters)")
    g.add_argument("--resume", action="store_true", help="continue a run folder, skipping finished parts")
    cli.add_quick(g, QUICK)
    return p


def parse_args(argv=None):
    args = cli.parse_quick(build_parser(), QUICK, argv)
    cli.check_choices(args.parts, PARTS, "part")
    args.parts = list(dict.fromkeys(args.parts))
    if not args.tw_a1 < 1:
        cli.fail(f"--tw-a1 must lie in (0, 1), got {args.tw_a1:g}")
    tw = two_well(args)
    if not (tw.a1 * tw.k1 > tw.a[1] * tw.eps and tw.a[1] * tw.k2 > tw.a1 * tw.eps):
        cli.fail("the two-well loss needs a1*k1 > a2*eps and a2*k2 > a1*eps "
                 "(else x = -1 or +1 is no minimum)")
    if len(args.mb_props) != 4:
        cli.fail(f"--mb-props needs 4 proportions (one per Mueller-Brown term), got {len(args.mb_props)}")
    if "welsch" in args.parts and len(welsch_problem(args)[1]) < 2:
        cli.fail("the Welsch data set has fewer than two local minima; separate --w-beta and --w-beta-bad "
                 "by more than a few --w-c")
    for opt in ("w_etas", "mb_etas"):
        setattr(args, opt, sorted(set(getattr(args, opt))))
    return args


def default_name(args) -> str:
    return runs.run_name("quick" if args.quick else "study", f"s{args.seed}", runs.config_digest(args))


def two_well(args) -> nc.TwoWell:
    return nc.TwoWell(a1=args.tw_a1, k1=args.tw_k1, k2=args.tw_k2, eps=args.tw_eps)


def welsch_problem(args):
    """The Welsch data set of this seed and its local minima, sorted by loss (best first)."""
    pr = nc.make_welsch(args.w_sensitive, args.w_clean, args.w_corrupt, args.w_scale, args.w_beta,
                        args.w_beta_bad, args.w_noise, args.w_c,
                        seeding.numpy_rng(args.seed, "data", PART_KEY["welsch"]))
    lo = min(args.w_beta, args.w_beta_bad) - 3 * args.w_c
    hi = max(args.w_beta, args.w_beta_bad) + 3 * args.w_c
    mins = nc.minima_1d(pr.loss, lo, hi)
    return pr, mins[np.argsort(pr.loss(mins))]


def chain_rngs(args, part, *keys, n):
    return [seeding.numpy_rng(args.seed, "sampler", PART_KEY[part], *keys, c) for c in range(n)]


def rows_of(method, dynamics, eta, values: dict) -> list:
    return [{"method": method, "dynamics": dynamics, "eta": eta, "metric": k, "value": float(v)}
            for k, v in values.items()]


# ---------------------------------------------------------------- (a) two wells


def run_twowell(args, run):
    tw = two_well(args)
    C, eta = args.tw_chains, args.tw_eta
    X0 = seeding.numpy_rng(args.seed, "init", PART_KEY["twowell"]).uniform(-2, 2, (C, 1))
    edges = np.linspace(*HIST_RANGE, HIST_BINS + 1)
    rows, hists, pred = [], {}, {}
    rows += rows_of("-", "init", eta, {"left_final": (X0 < 0).mean()})
    for si, scheme in enumerate(("sgd", "rr")):
        m, s2 = tw.region_moments(scheme)
        left = nc.left_mass(m, s2, eta)
        dens = bin_masses(m, s2, eta, edges)
        pred[scheme] = dens
        rows += rows_of(scheme, "lemma", eta,
                        {"left_mass": left, "var_at_minus1": s2[1], "var_at_plus1": s2[2],
                         "slope_minus1": m[1], "slope_plus1": -m[2]})
        for di, dyn in enumerate(("sampled", "diffusion")):
            counts = np.zeros(HIST_BINS)
            n_rec = [0, 0]
            T = args.tw_steps if dyn == "sampled" else args.tw_diffusion_steps

            def record(t, X, counts=counts, n_rec=n_rec, T=T):
                if t > T // 2:
                    x = X[:, 0]
                    counts += np.histogram(x, edges)[0]
                    n_rec[0] += len(x)
                    n_rec[1] += int((x < 0).sum())

            rngs = chain_rngs(args, "twowell", si, di, n=C)
            t0 = time.perf_counter()
            if dyn == "sampled":
                X = nc.run_chains(tw, scheme, X0, eta, T, rngs, record_every=args.tw_every, record=record)
            else:
                X = nc.diffusion_chains(tw, scheme, X0, eta, T, rngs, substeps=args.tw_substeps,
                                        record_every=args.tw_every, record=record)
            inside = counts.sum() / max(n_rec[0], 1)
            emp = counts / max(counts.sum(), 1)
            tv = 0.5 * np.abs(emp - dens / dens.sum()).sum()
            hists[f"{scheme}-{dyn}"] = counts
            vals = {"left_final": (X < 0).mean(), "left_time": n_rec[1] / max(n_rec[0], 1),
                    "tv_to_lemma": tv, "hist_coverage": inside}
            rows += rows_of(scheme, dyn, eta, vals)
            run.log(f"  twowell {scheme:3s} {dyn:9s}: P(x < 0) at the end {vals['left_final']:.3f}, over the "
                    f"second half {vals['left_time']:.3f}; Lemma 2.1 {left:.3g}; TV to the Lemma "
                    f"histogram {tv:.3f} ({time.perf_counter() - t0:.1f} s)")
    run.save_arrays("twowell.npz", edges=edges, **{f"hist_{k}": v for k, v in hists.items()},
                    **{f"lemma_{k}": v for k, v in pred.items()}, x0=X0[:, 0])
    plot_twowell(run, tw, eta, edges, hists, pred, args.tw_chains)
    return rows


def bin_masses(m, s2, eta, edges, sub: int = 40) -> np.ndarray:
    """Lemma 2.1 probability of each histogram bin (normalised over all of R, so bins that miss
    the tails sum to a little less than 1): midpoint rule on `sub` points per bin, rescaled by
    the closed-form total mass."""
    lm = nc.region_log_masses(m, s2, eta)
    top = max(lm.max(), nc.stationary_log_density(np.linspace(edges[0], edges[-1], 2001), m, s2, eta).max())
    total = np.exp(lm - top).sum()
    w = np.diff(edges)
    pts = edges[:-1, None] + (np.arange(sub) + 0.5)[None] / sub * w[:, None]
    dens = np.exp(nc.stationary_log_density(pts, m, s2, eta) - top).mean(1) * w
    return dens / total


# ---------------------------------------------------------------- (b) Welsch regression


def run_welsch(args, run):
    pr, mins = welsch_problem(args)
    best = mins[0]
    lo, hi = min(mins) - 1.0, max(mins) + 1.0
    C = args.w_chains
    X0 = seeding.numpy_rng(args.seed, "init", PART_KEY["welsch"]).uniform(lo, hi, (C, 1))
    step = 1.0 / pr.smoothness()
    start_basin = nc.nearest_minimum(nc.descend(pr, X0, step, args.w_polish), mins[:, None], 1e-3)
    rows = rows_of("-", "gd", 0.0, {"better_fraction": (start_basin == 0).mean()})
    thr = {s: nc.stability_threshold(pr.curvatures(best), pr.a, nc.fixed_probs(pr, s)) for s in ("sgd", "rr")}
    for s in ("sgd", "rr"):
        rows += rows_of(s, "lemma", 0.0, {"stability_eta_at_better": thr[s]})
    finals = {}
    for si, scheme in enumerate(("sgd", "rr")):
        for ei, eta in enumerate(args.w_etas):
            X = nc.run_chains(pr, scheme, X0, eta, args.w_steps, chain_rngs(args, "welsch", si, ei, n=C))
            basin = nc.nearest_minimum(nc.descend(pr, X, step, args.w_polish), mins[:, None], 1e-3)
            finals[f"{scheme}-{eta:g}"] = X[:, 0]
            vals = {"better_fraction": (basin == 0).mean(), "worse_fraction": (basin == len(mins) - 1).mean(),
                    "unassigned_fraction": (basin < 0).mean(), "mean_final_loss": pr.loss(X[:, 0]).mean()}
            rows += rows_of(scheme, "sampled", eta, vals)
            run.log(f"  welsch {scheme:3s} eta {eta:g}: ends in the better minimum "
                    f"{vals['better_fraction']:.3f}")
    run.save_arrays("welsch.npz", x=pr.x, y=pr.y, group=pr.group.astype(str), minima=mins, x0=X0[:, 0],
                    **{f"final_{k}": v for k, v in finals.items()})
    plot_welsch(run, args, pr, mins, rows, thr)
    return rows


# ---------------------------------------------------------------- (c) Mueller-Brown


def run_mb(args, run):
    pr = nc.MuellerBrown(props=np.array(args.mb_props))
    minima = np.array([nc.mb_newton(p[:2]) for p in nc.MB_MINIMA])
    C = args.mb_chains
    X0 = seeding.numpy_rng(args.seed, "init", PART_KEY["mb"]).uniform(pr.box[0], pr.box[1], (C, 2))
    lab0 = nc.nearest_minimum(nc.descend(pr, X0, MB_POLISH_STEP, args.mb_polish), minima, MB_TOL)
    rows = rows_of("-", "gd", 0.0, {f"frac_{k}": (lab0 == i).mean() for i, k in enumerate("ABC")})
    finals = {}
    for si, scheme in enumerate(("sgd", "rr-local")):
        for ei, eta in enumerate(args.mb_etas):
            X = nc.run_chains(pr, scheme, X0, eta, args.mb_steps, chain_rngs(args, "mb", si, ei, n=C))
            lab = nc.nearest_minimum(nc.descend(pr, X, MB_POLISH_STEP, args.mb_polish), minima, MB_TOL)
            finals[f"{scheme}-{eta:g}"] = X
            vals = {f"frac_{k}": (lab == i).mean() for i, k in enumerate("ABC")}
            vals["frac_none"] = (lab < 0).mean()
            rows += rows_of(scheme, "sampled", eta, vals)
            run.log(f"  mb {scheme:8s} eta {eta:g}: ends in the global minimum A {vals['frac_A']:.3f} "
                    f"(B {vals['frac_B']:.3f}, C {vals['frac_C']:.3f})")
    run.save_arrays("mb.npz", x0=X0, minima=minima, props=pr.a,
                    **{f"final_{k}": v for k, v in finals.items()})
    plot_mb(run, pr, minima, rows)
    return rows


# ---------------------------------------------------------------- report and plots


def table(df, part, metric, methods, etas, fmt="{:.3f}"):
    head = ["eta"] + list(methods)
    out = []
    for eta in etas:
        row = [f"{eta:g}"]
        for m in methods:
            v = df[(df.part == part) & (df.method == m) & (df.dynamics == "sampled") & np.isclose(df.eta, eta)
                   & (df.metric == metric)]["value"]
            row.append(fmt.format(v.iloc[0]) if len(v) else "-")
        out.append(row)
    return tables.text_table(head, out)


def value(df, part, method, dynamics, metric, eta=None):
    d = df[(df.part == part) & (df.method == method) & (df.dynamics == dynamics) & (df.metric == metric)]
    if eta is not None:
        d = d[np.isclose(d.eta, eta)]
    return float(d["value"].iloc[0]) if len(d) else float("nan")


def write_summary(run, args):
    df = run.frame()
    if df.empty:
        return
    text = [f"An & Ying (seed 001): resampling-reweighting (RR) vs SGD in non-convex landscapes; "
            f"seed {args.seed}",
            "schemes: " + "; ".join(f"{k} = {v}" for k, v in nc.SCHEME_HELP.items()), ""]
    if (df.part == "twowell").any():
        tw = two_well(args)
        F = tw.loss(np.array([-1.0, 0.0, 1.0]))
        text += [f"## (a) two subgroups (their Section 2): a1 {tw.a1:g}, k1 {tw.k1:g}, k2 {tw.k2:g}, "
                 f"eps {tw.eps:g}, "
                 f"eta {args.tw_eta:g}; F(-1) = {F[0]:.3f} (sharp, global), F(0) = {F[1]:.3f}, "
                 f"F(+1) = {F[2]:.3f} (flat); {args.tw_chains} chains from U[-2, 2]: {args.tw_steps} "
                 "SGD/RR steps "
                 f"(sampled terms), {args.tw_diffusion_steps} steps of the diffusion ({args.tw_substeps} "
                 "Euler-Maruyama substeps each)",
                 "P(x < 0) = probability of the global minimum's well: at the last step, over the second "
                 "half, and the Lemma 2.1 prediction; TV = total variation between the second-half histogram "
                 "and the "
                 "Lemma's bin masses; var = variance of one step's direction at each minimum",
                 f"initial P(x < 0): {value(df, 'twowell', '-', 'init', 'left_final'):.3f}"]
        head = ["scheme", "dynamics", "P(x<0) end", "P(x<0) 2nd half", "Lemma 2.1", "TV to Lemma",
                "var at -1", "var at +1"]
        out = []
        for s in ("sgd", "rr"):
            for dyn in ("sampled", "diffusion"):
                out.append([s, dyn, f"{value(df, 'twowell', s, dyn, 'left_final'):.3f}",
                            f"{value(df, 'twowell', s, dyn, 'left_time'):.3f}",
                            f"{value(df, 'twowell', s, 'lemma', 'left_mass'):.3g}",
                            f"{value(df, 'twowell', s, dyn, 'tv_to_lemma'):.3f}",
                            f"{value(df, 'twowell', s, 'lemma', 'var_at_minus1'):.3f}",
                            f"{value(df, 'twowell', s, 'lemma', 'var_at_plus1'):.3f}"])
        text += tables.table_lines(head, out) + [""]
    if (df.part == "welsch").any():
        pr, mins = welsch_problem(args)
        text += [f"## (b) Welsch regression (their Section 4.1.2): {args.w_sensitive} sensitive (x ~ "
                 f"{args.w_scale:g} U[0.5,1.5]), {args.w_clean} insensitive clean, {args.w_corrupt} "
                 f"insensitive corrupted (beta {args.w_beta:g} / {args.w_beta_bad:g}), c {args.w_c:g}, "
                 f"noise {args.w_noise:g}; "
                 f"{args.w_chains} chains x {args.w_steps} steps per (scheme, eta)",
                 "minima (beta, F): " + ", ".join(f"({b:.3f}, {pr.loss(b):.4f})" for b in mins)
                 + f"; better = {mins[0]:.3f}",
                 f"share of the starts whose gradient flow ends in the better minimum: "
                 f"{value(df, 'welsch', '-', 'gd', 'better_fraction'):.3f}",
                 "linear stability limit at the better minimum "
                 "(Lemma 3.2, eta <= 2 sum a h / sum (a^2/p) h^2): "
                 f"sgd {value(df, 'welsch', 'sgd', 'lemma', 'stability_eta_at_better'):.4f}, "
                 f"rr {value(df, 'welsch', 'rr', 'lemma', 'stability_eta_at_better'):.4f}",
                 "fraction of chains ending in the better minimum:",
                 table(df, "welsch", "better_fraction", ("sgd", "rr"), args.w_etas), "",
                 "mean final loss F:",
                 table(df, "welsch", "mean_final_loss", ("sgd", "rr"), args.w_etas, "{:.4f}"),
                 ""]
    if (df.part == "mb").any():
        a = np.array(args.mb_props) / np.sum(args.mb_props)
        text += [f"## (c) Mueller-Brown (Mueller & Brown 1979; their Section 4.2): proportions a = "
                 f"({', '.join(f'{v:.3g}' for v in a)}); {args.mb_chains} runs x {args.mb_steps} steps per "
                 "(scheme, eta) from U(box)",
                 "minima A (global) / B / C: " + "; ".join(f"({p[0]:.3f}, {p[1]:.3f}) V = {p[2]:.2f}"
                                                           for p in nc.MB_MINIMA),
                 "share of the starts whose gradient flow ends in A / B / C: "
                 + " / ".join(f"{value(df, 'mb', '-', 'gd', f'frac_{k}'):.3f}" for k in "ABC"),
                 "fraction of runs ending in the global minimum A:",
                 table(df, "mb", "frac_A", ("sgd", "rr-local"), args.mb_etas), "",
                 "fraction ending in B / in C:",
                 table(df, "mb", "frac_B", ("sgd", "rr-local"), args.mb_etas), "",
                 table(df, "mb", "frac_C", ("sgd", "rr-local"), args.mb_etas), ""]
    run.write_text("res.txt", "\n".join(text) + "\n")


def _plt():
    from islab import plots

    return plots.plt


def _save(run, fig, name):
    from islab import plots

    plots.save(fig, run.path / name, tight=False)


def plot_twowell(run, tw, eta, edges, hists, pred, chains):
    from islab import plots

    plt = _plt()
    fig, axes = plt.subplots(1, 3, figsize=(12.5, 3.9))
    x = np.linspace(-2.5, 2.5, 1001)
    ax = axes[0]
    ax.plot(x, tw.loss(x), color="k", lw=1.6, label="F = a1 f1 + a2 f2")
    ax.plot(x, tw.a[0] * tw.term_losses(x)[:, 0], color=plots.FALLBACK[1], ls="--", lw=1,
            label="a1 f1 (sensitive)")
    ax.plot(x, tw.a[1] * tw.term_losses(x)[:, 1], color=plots.FALLBACK[4], ls="--", lw=1,
            label="a2 f2 (insensitive)")
    ax.set_xlabel("x (parameter)")
    ax.set_ylabel("loss")
    ax.set_title("(a) landscape: sharp global min at -1", fontsize=10)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2)
    w = np.diff(edges)
    mid = (edges[:-1] + edges[1:]) / 2
    for ax, scheme, name in ((axes[1], "sgd", f"(b) {plots.display('sgd')}"), (axes[2], "rr", "(c) RR")):
        for dyn, style in (("sampled", dict(color=plots.FALLBACK[3], lw=1.6,
                                            label="iterates, sampled terms (SGD / RR)")),
                           ("diffusion", dict(color=plots.FALLBACK[2], lw=1.2,
                                              label="iterates, Lemma 2.1 diffusion (E-M)"))):
            h = hists[f"{scheme}-{dyn}"] / max(hists[f"{scheme}-{dyn}"].sum(), 1) / w
            ax.step(mid, np.where(h > 0, h, np.nan), where="mid", **style)
        ax.plot(mid, pred[scheme] / w, color="k", ls="--", lw=1.2, label="Lemma 2.1 density")
        ax.set_yscale("log")
        ax.set_ylim(1e-3, 100)
        ax.axvline(0, color="grey", lw=0.6)
        ax.set_xlabel("x (parameter)")
        ax.set_ylabel("density of iterates (per unit x, log)")
        ax.set_title(f"{name}, eta {eta:g}, {chains} chains, second half of the run", fontsize=10)
        ax.set_xlim(-2.2, 2.2)
    axes[1].legend(fontsize=7, loc="upper center", bbox_to_anchor=(1.1, -0.2), ncol=3)
    axes[2].sharey(axes[1])
    fig.subplots_adjust(left=0.06, right=0.99, top=0.9, bottom=0.3, wspace=0.3)
    _save(run, fig, "twowell.png")


def plot_welsch(run, args, pr, mins, rows, thr):
    import pandas as pd

    from islab import plots

    plt = _plt()
    df = pd.DataFrame(rows)
    fig, axes = plt.subplots(1, 2, figsize=(10.5, 3.9))
    b = np.linspace(min(mins) - 1.5, max(mins) + 1.5, 3001)
    ax = axes[0]
    ax.plot(b, pr.loss(b), color="k", lw=1.4)
    for i, m in enumerate(mins):
        ax.plot([m], [pr.loss(m)], "o", color=plots.FALLBACK[2] if i == 0 else plots.FALLBACK[1], ms=6,
                label=("better" if i == 0 else "worse") + f" minimum, beta = {m:.2f}")
    ax.set_xlabel("coefficient beta")
    ax.set_ylabel("Welsch objective F(beta)")
    ax.set_title("(a) landscape", fontsize=10)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2)
    ax = axes[1]
    for s in ("sgd", "rr"):
        d = df[(df.method == s) & (df.dynamics == "sampled") & (df.metric == "better_fraction")]
        st = plots.style(s)
        color = st["color"]
        ax.plot(d.eta, d.value, marker=st["marker"], linestyle=st["linestyle"], color=color,
                label=f"{plots.display(s)}: chains in the better minimum")
        ax.axvline(thr[s], color=color, ls=":", lw=1,
                   label=f"{plots.display(s)}: linear stability limit {thr[s]:.3f}")
    g = df[(df.dynamics == "gd") & (df.metric == "better_fraction")]["value"].iloc[0]
    ax.axhline(g, **plots.REFERENCE, label=f"starts in its basin ({g:.2f})")
    ax.set_xscale("log")
    plots.integer_ticks(ax, "x", args.w_etas)
    ax.set_ylim(-0.03, 1.03)
    ax.set_xlabel("learning rate eta (log scale)")
    ax.set_ylabel("fraction of chains")
    ax.set_title(f"(b) {args.w_chains} chains x {args.w_steps} steps per point", fontsize=10)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2)
    fig.subplots_adjust(left=0.07, right=0.99, top=0.9, bottom=0.36, wspace=0.25)
    _save(run, fig, "welsch.png")


def plot_mb(run, pr, minima, rows):
    import pandas as pd

    from islab import plots

    plt = _plt()
    df = pd.DataFrame(rows)
    fig, axes = plt.subplots(1, 2, figsize=(10.5, 4.2))
    ax = axes[0]
    gx, gy = np.meshgrid(np.linspace(pr.box[0][0], pr.box[1][0], 300),
                         np.linspace(pr.box[0][1], pr.box[1][1], 300))
    V = nc.mb_potential(np.stack([gx, gy], -1))
    cs = ax.contourf(gx, gy, np.minimum(V, 100), levels=np.linspace(-150, 100, 26), cmap="viridis")
    ax.grid(False)
    fig.colorbar(cs, ax=ax, label="V (clipped at 100)")
    for p, k in zip(minima, "ABC"):
        ax.plot(*p, "w*", ms=10)
        ax.annotate(k, p, xytext=(5, 5), textcoords="offset points", color="w", fontsize=10)
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    ax.set_title("(a) Mueller-Brown potential, minima A (global), B, C", fontsize=10)
    ax = axes[1]
    for s in ("sgd", "rr-local"):
        d = df[(df.method == s) & (df.dynamics == "sampled") & (df.metric == "frac_A")]
        st = plots.style(s)
        ax.plot(d.eta, d.value, marker=st["marker"], linestyle=st["linestyle"], color=st["color"],
                label=f"{plots.display(s)}: runs ending in A")
    g = df[(df.dynamics == "gd") & (df.metric == "frac_A")]["value"].iloc[0]
    ax.axhline(g, **plots.REFERENCE, label=f"starts in A's basin ({g:.2f})")
    ax.set_xscale("log")
    plots.integer_ticks(ax, "x", sorted(df[df.dynamics == "sampled"].eta.unique()))
    ax.set_ylim(-0.03, 1.03)
    ax.set_xlabel("learning rate eta (log scale)")
    ax.set_ylabel("fraction of runs")
    ax.set_title("(b) term proportions a = (" + ", ".join(f"{v:.2g}" for v in pr.a) + ")", fontsize=10)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.17), ncol=2)
    fig.subplots_adjust(left=0.07, right=0.99, top=0.9, bottom=0.3, wspace=0.3)
    _save(run, fig, "mueller_brown.png")


# ---------------------------------------------------------------- main

RUNNERS = {"twowell": run_twowell, "welsch": run_welsch, "mb": run_mb}


def main(argv=None):
    args = parse_args(argv)  # every check happens here, before any folder exists
    run = runs.open_run(Path(args.results_root) / FAMILY / (args.name or default_name(args)), args,
                        seed=args.seed)
    t_all = time.perf_counter()
    run.plan([{"part": part} for part in args.parts])
    for part in args.parts:
        with run.claim({"part": part}) as job:
            if job is None:
                run.log(f"{part}: " + ("done, skipped (--resume)" if run.is_done({"part": part})
                                       else "running in another worker, skipped"))
                continue
            t0 = time.perf_counter()
            job.finish(RUNNERS[part](args, run))
        run.log(f"{part}: finished in {time.perf_counter() - t0:.1f} s")
        with run.locked():
            write_summary(run, args)
    with run.locked():   # from every worker's job files
        write_summary(run, args)
    run.log(f"done in {time.perf_counter() - t_all:.1f} s -> {run.path}")
    return run.path


if __name__ == "__main__":
    cli.run_main(main)
