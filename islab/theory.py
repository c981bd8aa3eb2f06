"""Theory quantities and detection metrics (docs/METHODS.md sections 4 and 6).

Detection metrics score how well a per-example score flags the corrupted examples (high
score = flagged).  The McDiarmid radius and the Theorem 1/2 checks are added below.
"""
from __future__ import annotations

import numpy as np


def detection_metrics(score, corrupt_mask) -> dict:
    """AUROC and average precision of `score` for detecting corrupted examples.

    NaN when the mask has only one class (no corruption): detection is undefined there.
    """
    from sklearn.metrics import average_precision_score, roc_auc_score

    score = np.asarray(score, dtype=np.float64)
    mask = np.asarray(corrupt_mask, dtype=bool)
    if mask.all() or not mask.any():
        return {"auroc": float("nan"), "ap": float("nan")}
    return {"auroc": float(roc_auc_score(mask, score)), "ap": float(average_precision_score(mask, score))}


def corruption_in_subset(subset, corrupt_mask) -> float:
    """Fraction of a kept subset that is corrupted (chance level = the corruption rate)."""
    return float(np.asarray(corrupt_mask, dtype=bool)[np.asarray(subset)].mean())


def paired_ttest(acc, ref) -> tuple[float, float]:
    """Two-sided paired t-test of acc vs ref (same seeds, scipy.stats.ttest_rel): (t, p).

    (nan, nan) with fewer than 2 pairs or when the differences are all equal (zero variance:
    the test is undefined)."""
    from scipy.stats import ttest_rel

    acc, ref = np.asarray(acc, dtype=np.float64), np.asarray(ref, dtype=np.float64)
    if len(acc) < 2 or len(acc) != len(ref) or np.allclose(acc - ref, (acc - ref)[0]):
        return float("nan"), float("nan")
    res = ttest_rel(acc, ref)
    return float(res.statistic), float(res.pvalue)


# =============================================================== Theorem 1: bounded differences
#
# Derivation of the bounded-difference constant (docs/METHODS.md section 6).  Let x_1..x_K lie in [0, 1] and
# V0 = (1/K) sum_j (x_j - mean)^2 (ddof=0, our default).  Fix the other K-1 values, with sum S and
# mean m = S/(K-1), and look at V0 as a function of the free value y:
#     V0(y) = (y^2 + Q)/K - ((y + S)/K)^2          (Q = sum of the others' squares)
#           = (K-1)/K^2 * (y - m)^2 + V0(m),
# a parabola with its minimum at y = m.  Replacing x by y therefore changes V0 by
#     (K-1)/K^2 * [(y - m)^2 - (x - m)^2],
# whose absolute value is at most (K-1)/K^2 * max (y - m)^2 <= (K-1)/K^2, attained when the
# others are all 0 (m = 0), x = 0 and y = 1.  So c_K = (K-1)/K^2 < 1/K for the 1/K normalisation.
# The 1/(K-1) normalisation is V1 = K/(K-1) * V0, so its constant is K/(K-1) * (K-1)/K^2 = 1/K.
# `brute_force_bounded_difference` checks both on a grid (tests/unit/test_theory.py).
#
# McDiarmid: P(|s_i - E s_i| >= t) <= 2 exp(-2 t^2 / (K c_K^2)).  Setting the right-hand side to
# delta/N and taking a union bound over the N examples gives, with probability >= 1 - delta,
# |s_i - E s_i| <= r for all i, with r = c_K sqrt(K ln(2N/delta) / 2).
# For ddof=0, r = (K-1)/K^(3/2) sqrt(ln(2N/delta)/2): it RISES from K=2 to K=3 and falls for
# K >= 3 (d/dK of (K-1)K^(-3/2) has the sign of 3 - K); for ddof=1, r = sqrt(ln(2N/delta)/(2K))
# falls for every K.


def _check_k(K: int) -> int:
    K = int(K)
    assert K >= 2, "a variance over proxies needs K >= 2"
    return K


def bounded_difference_constant(K: int, ddof: int = 0) -> float:
    """Max change of the variance of K values in [0, 1] when one value is replaced.

    ddof=0 (1/K normalisation): (K-1)/K^2.  ddof=1 (1/(K-1) normalisation): 1/K.
    """
    K = _check_k(K)
    assert ddof in (0, 1), "ddof must be 0 (1/K) or 1 (1/(K-1))"
    return (K - 1) / K**2 if ddof == 0 else 1.0 / K


def brute_force_bounded_difference(K: int, ddof: int = 0, grid_points: int = 7) -> float:
    """Max over a grid of |var(x) - var(x')| with x' = x except one value (the test's oracle).

    The grid is linspace(0, 1, grid_points) (it contains both extremes).  Variance is symmetric
    in its arguments, so replacing the first value while the other K-1 range over multisets
    covers every case.  Cost: C(g+K-2, K-1) * g^2 variances, vectorised.
    """
    import itertools

    K = _check_k(K)
    g = np.linspace(0.0, 1.0, int(grid_points))
    others = np.array(list(itertools.combinations_with_replacement(g, K - 1)))   # (M, K-1)
    best = 0.0
    for x in g:
        a = np.column_stack([np.full(len(others), x), others]).var(axis=1, ddof=ddof)   # (M,)
        for y in g:
            b = np.column_stack([np.full(len(others), y), others]).var(axis=1, ddof=ddof)
            best = max(best, float(np.abs(a - b).max()))
    return best


def mcdiarmid_radius(K: int, N: int, delta: float, ddof: int = 0) -> float:
    """r(K, N, delta) = c_K sqrt(K ln(2N/delta) / 2): with prob. >= 1 - delta every s_i lies
    within r of its expectation (McDiarmid + union bound over N examples)."""
    assert int(N) >= 1 and 0 < delta < 1, "N >= 1 and delta in (0, 1)"
    return bounded_difference_constant(K, ddof) * float(np.sqrt(_check_k(K) * np.log(2 * N / delta) / 2))


def expected_variance_factor(K: int, ddof: int = 0) -> float:
    """E[s_i] = factor * sigma_i^2 for K i.i.d. ranks of population variance sigma_i^2:
    (K-1)/K for the 1/K normalisation, 1 for the unbiased 1/(K-1) one."""
    K = _check_k(K)
    return (K - 1) / K if ddof == 0 else 1.0


def max_variance(K: int, ddof: int = 0) -> float:
    """Largest possible variance of K values in [0, 1]: half at 0, half at 1,
    floor(K/2) ceil(K/2) / K^2 (ddof=0); times K/(K-1) for ddof=1."""
    K = _check_k(K)
    v = (K // 2) * (K - K // 2) / K**2
    return v if ddof == 0 else v * K / (K - 1)


def bulk_variance_bound(tau: float, eta: float) -> float:
    """Population variance bound for a rank with P(r >= tau) >= 1 - eta (paper Assumption 2,
    proof step 2): Var r <= E(r - (1+tau)/2)^2 <= (1-eta)(1-tau)^2/4 + eta."""
    assert 0 <= tau <= 1 and 0 <= eta <= 1, "tau and eta lie in [0, 1]"
    return (1.0 - eta) * (1.0 - tau) ** 2 / 4.0 + eta


def theorem1(K: int, N: int, delta: float, tau: float, eta: float, v_boundary: float,
             v_tail: float, tail_size: int, alpha: float, ddof: int = 0) -> dict:
    """Theorem 1 quantities, as reconstructed from the proof in the paper's Appendix A.1.

    (i)   bulk corrupted:  s_i <= f_K U + r,   U = bulk_variance_bound(tau, eta), f_K = E s / sigma^2
    (ii)  boundary clean:  s_i >= f_K v_B - r
    (iii) gap = f_K (v_B - U); the bound theta = f_K U + r separates the two groups when
          gap > 2r.  A tail point can clear theta only if sigma_i^2 >= U, so by Markov at most
          tail_size * min(1, v_T / U) tail points do, and the top-alpha subset (when the boundary
          set fills it) has contamination <= tail_size * min(1, v_T / U) / round(alpha N).
    Returns these numbers; `separated` is the worst-case certificate gap > 2r.
    """
    r = mcdiarmid_radius(K, N, delta, ddof)
    f = expected_variance_factor(K, ddof)
    u = bulk_variance_bound(tau, eta)
    gap = f * (v_boundary - u)
    surviving = min(1.0, v_tail / u) if u > 0 else 1.0
    from islab.sampling import n_keep

    keep = n_keep(N, alpha)   # alpha N rounded half up, as the selection itself
    return {"radius": r, "two_radius": 2 * r, "bulk_upper": f * u + r, "boundary_lower": f * v_boundary - r,
            "gap": gap, "separated": bool(gap > 2 * r), "threshold": f * u + r,
            "contamination_bound": min(1.0, tail_size * surviving / keep)}


# =============================================================== Theorem 2 checks


def theorem2_mass_bound(p, corrupt_mask) -> dict:
    """Mass a sampling distribution puts on the corrupted set vs the corruption rate eps.

    Theorem 2: a score non-decreasing in the loss, under loss-aligned contamination, gives
    mass >= eps.  Returns {'mass', 'eps', 'holds' (mass >= eps)}.
    """
    p = np.asarray(p, dtype=np.float64)
    mask = np.asarray(corrupt_mask, dtype=bool)
    assert p.shape == mask.shape, "one probability per example"
    mass = float(p[mask].sum() / p.sum())
    eps = float(mask.mean())
    return {"mass": mass, "eps": eps, "holds": bool(mass >= eps - 1e-12)}


def loss_aligned(losses, corrupt_mask) -> bool:
    """Theorem 2's hypothesis: every corrupted loss >= every clean loss (vacuous if a group is empty)."""
    losses = np.asarray(losses, dtype=np.float64)
    mask = np.asarray(corrupt_mask, dtype=bool)
    if mask.all() or not mask.any():
        return True
    return bool(losses[mask].min() >= losses[~mask].max())


# =============================================================== Appendix H assumption checks
#
# The paper's Appendix H checks A1 (the corrupted bulk has consistently high ranks, hence low
# rank variance) and A2 (clean boundary examples disagree: the histogram of s is not a spike at
# zero) by looking at histograms.  The quantities below turn those checks into numbers.  Where
# the paper's formulas were lost in extraction we use these empirical definitions (documented,
# ours):
#   boundary set B   the round(alpha N) clean examples with the highest s (Theorem 1(iii) needs
#                    a boundary set that can fill the kept subset); q_boundary = min s over B
#   bulk / tail      the corrupted examples sorted by s: the lowest (1 - rho) fraction is the
#                    bulk, the rest the escaping tail; q_bulk = max s over the bulk
#   empirical gap    q_boundary - q_bulk (> 0: every bulk corrupted example lies below the
#                    whole boundary set); compared with 2r as in the paper's Figure 1 right
#   A1 holds         empirical gap > 0
#   A2 holds         q_boundary >= a2_min_spread * max_variance(K)  (default 5 %, ours)
#   plug-in Theorem 1: tau = eta-quantile of the bulk's (example, proxy) ranks, v_B = q_boundary
#                    / f_K, v_T = mean tail s / f_K.  These estimate population quantities from
#                    the same sample, so the result describes the data; it is no certificate.
# The strict gap above (the whole boundary vs the bulk at the chosen rho) is reported beside the
# alternatives the paper's text leaves open (separation_gaps): the bulk at tail fraction 0.1 and
# 0.2, each against the boundary's lowest s ("min", strict) and against its median s ("median":
# the paper's D.4 compares the boundary median with the corrupted variances).
ALT_TAIL_FRACTIONS = (0.1, 0.2)
GAP_BOUNDARIES = ("min", "median")


def separation_gaps(s, corrupt_mask, alpha: float, tail_fractions=ALT_TAIL_FRACTIONS) -> dict:
    """The empirical separation gap under each definition: boundary B = the round(alpha N) clean
    examples with the highest s, summarised by its min (q_boundary) or its median
    (q_boundary_median); bulk = the lowest (1 - t) fraction of the corrupted by s, summarised
    by its max (q_bulk_tail<t>).  Keys: q_boundary, q_boundary_median, q_bulk_tail<t>,
    gap_min_tail<t> = q_boundary - q_bulk_tail<t>, gap_median_tail<t> = q_boundary_median -
    q_bulk_tail<t> (t written with :g, e.g. gap_median_tail0.2); NaN where a group is empty."""
    s = np.asarray(s, dtype=np.float64)
    mask = np.asarray(corrupt_mask, dtype=bool)
    nan = float("nan")
    keep = max(1, int(round(alpha * len(s))))
    boundary = np.sort(s[~mask])[::-1][:keep]
    out = {"q_boundary": float(boundary.min()) if len(boundary) else nan,
           "q_boundary_median": float(np.median(boundary)) if len(boundary) else nan}
    corrupt = np.sort(s[mask])
    for t in tail_fractions:
        assert 0 <= t < 1, "tail fraction in [0, 1)"
        bulk = corrupt[:len(corrupt) - int(round(t * len(corrupt)))]
        q = float(bulk.max()) if len(bulk) else nan
        out[f"q_bulk_tail{t:g}"] = q
        for b in GAP_BOUNDARIES:
            out[f"gap_{b}_tail{t:g}"] = out["q_boundary" if b == "min" else "q_boundary_median"] - q
    return out


def assumption_checks(ranks, corrupt_mask, alpha: float = 0.3, tail_fraction: float = 0.1,
                      eta: float = 0.1, delta: float = 0.05, ddof: int = 0,
                      a2_min_spread: float = 0.05) -> dict:
    """Appendix H numbers for one ensemble.  ranks: (K, N) normalised ranks; mask: (N,) bool.

    Keys (NaN where a group is empty): K, N, eps, radius, two_radius, max_variance, q_boundary,
    spread (q_boundary / max_variance), boundary_to_median (q_boundary / median s), q_bulk,
    empirical_gap, frac_corrupt_above_boundary, subset_corruption, subset_bulk, subset_tail,
    corrupt_mean_rank, clean_mean_rank, a1_holds, a2_holds, auroc_low_s, tau,
    bulk_variance_bound, v_boundary, v_tail, nominal_gap, certified, contamination_bound,
    the alternative gaps of separation_gaps (q_boundary_median, q_bulk_tail<t>,
    gap_min_tail<t>, gap_median_tail<t> for t in ALT_TAIL_FRACTIONS),
    plus the settings alpha, tail_fraction, eta, delta, ddof, a2_min_spread.
    """
    from islab.sampling import keep_top_fraction, n_keep
    from islab.scores import consensus_rank, rank_variance

    ranks = np.atleast_2d(np.asarray(ranks, dtype=np.float64))
    K, N = ranks.shape
    mask = np.asarray(corrupt_mask, dtype=bool)
    assert mask.shape == (N,), "one mask entry per example"
    assert 0 < alpha <= 1 and 0 <= tail_fraction < 1 and 0 <= eta <= 1, "alpha, rho or eta out of range"
    s = rank_variance(ranks, ddof=ddof)
    mean_rank = consensus_rank(ranks)
    f = expected_variance_factor(K, ddof)
    nan = float("nan")
    out = {"K": K, "N": N, "eps": float(mask.mean()), "alpha": alpha, "tail_fraction": tail_fraction,
           "eta": eta, "delta": delta, "ddof": ddof, "a2_min_spread": a2_min_spread,
           "radius": mcdiarmid_radius(K, N, delta, ddof), "max_variance": max_variance(K, ddof)}
    out["two_radius"] = 2 * out["radius"]

    keep = n_keep(N, alpha)   # alpha N rounded half up, as keep_top_fraction
    s_clean = np.sort(s[~mask])[::-1]                      # descending
    boundary = s_clean[:min(keep, len(s_clean))]
    out["q_boundary"] = float(boundary.min()) if len(boundary) else nan
    out.update(separation_gaps(s, mask, alpha))   # the alternatives, beside the strict gap below
    out["spread"] = out["q_boundary"] / out["max_variance"]
    med = float(np.median(s))
    out["boundary_to_median"] = out["q_boundary"] / med if med > 0 else float("nan")
    out["a2_holds"] = bool(out["spread"] >= a2_min_spread) if len(boundary) else False
    out["clean_mean_rank"] = float(np.median(mean_rank[~mask])) if (~mask).any() else nan

    subset = keep_top_fraction(s, alpha)
    out["subset_corruption"] = float(mask[subset].mean())
    corrupt_ids = np.flatnonzero(mask)
    if len(corrupt_ids) == 0:
        out.update({k: nan for k in ("q_bulk", "empirical_gap", "frac_corrupt_above_boundary", "subset_bulk",
                                     "subset_tail", "corrupt_mean_rank", "auroc_low_s", "tau",
                                     "bulk_variance_bound", "v_tail", "nominal_gap", "contamination_bound")})
        out["v_boundary"] = out["q_boundary"] / f
        out["a1_holds"], out["certified"] = None, None       # not checkable without corruption
        return out

    order = corrupt_ids[np.argsort(s[corrupt_ids], kind="stable")]   # corrupted, ascending s
    n_tail = int(round(tail_fraction * len(order)))
    bulk, tail = order[:len(order) - n_tail], order[len(order) - n_tail:]
    out["q_bulk"] = float(s[bulk].max()) if len(bulk) else nan
    out["empirical_gap"] = out["q_boundary"] - out["q_bulk"]
    out["a1_holds"] = bool(out["empirical_gap"] > 0)
    out["frac_corrupt_above_boundary"] = float((s[corrupt_ids] > out["q_boundary"]).mean())
    in_subset = np.zeros(N, dtype=bool)
    in_subset[subset] = True
    out["subset_bulk"] = float(in_subset[bulk].sum() / len(subset))
    out["subset_tail"] = float(in_subset[tail].sum() / len(subset))
    out["corrupt_mean_rank"] = float(np.median(mean_rank[corrupt_ids]))
    out["auroc_low_s"] = detection_metrics(-s, mask)["auroc"]

    tau = float(np.quantile(ranks[:, bulk].ravel(), eta)) if len(bulk) else 0.0
    v_b = out["q_boundary"] / f
    v_t = float(s[tail].mean() / f) if len(tail) else 0.0
    t1 = theorem1(K, N, delta, tau, eta, v_b, v_t, len(tail), alpha, ddof)
    out.update({"tau": tau, "bulk_variance_bound": bulk_variance_bound(tau, eta), "v_boundary": v_b,
                "v_tail": v_t, "nominal_gap": t1["gap"], "certified": t1["separated"],
                "contamination_bound": t1["contamination_bound"]})
    return out


def _fmt(x, spec=".4f") -> str:
    return "nan" if x is None or (isinstance(x, float) and not np.isfinite(x)) else format(x, spec)


def verdict(checks: dict, masses: dict | None = None, aligned: bool | None = None) -> str:
    """A short human-readable Appendix H verdict with the numbers behind it.

    checks: an `assumption_checks` dict; masses: optional {sampler: mass on corrupted};
    aligned: optional result of `loss_aligned` for the mean proxy loss.
    """
    c = checks
    norm = "1/K" if c["ddof"] == 0 else "1/(K-1)"
    lines = [f"Appendix H verdict (K={c['K']}, N={c['N']}, eps={c['eps']:.3f}, alpha={c['alpha']:g}, "
             f"rho={c['tail_fraction']:g}, delta={c['delta']:g}, {norm} variance):"]
    if c["a1_holds"] is None:
        lines.append("  A1 corrupted bulk stable: not checkable (no corrupted examples)")
    else:
        lines.append(
            f"  A1 corrupted bulk stable: {'HOLDS' if c['a1_holds'] else 'FAILS'} - the lowest "
            f"{1 - c['tail_fraction']:.0%} of corrupted have s <= {_fmt(c['q_bulk'])}, "
            f"clean boundary starts at "
            f"{_fmt(c['q_boundary'])} (empirical gap {c['empirical_gap']:+.4f}); median mean-rank "
            f"corrupted {_fmt(c['corrupt_mean_rank'], '.2f')} vs clean {_fmt(c['clean_mean_rank'], '.2f')}")
    lines.append(
        f"  A2 boundary disagreement: {'HOLDS' if c['a2_holds'] else 'FAILS'} - clean-boundary s "
        f"{_fmt(c['q_boundary'])} = {c['spread']:.1%} of the maximum {c['max_variance']:.4f} "
        f"(needs >= {c['a2_min_spread']:.0%}); {_fmt(c['boundary_to_median'], '.2f')} x the median s")
    if c["a1_holds"] is not None:
        alts = [f"{b} / rho {t:g} {c[f'gap_{b}_tail{t:g}']:+.4f} ({'holds' if c[f'gap_{b}_tail{t:g}'] > 0 else 'fails'})"
                for t in ALT_TAIL_FRACTIONS for b in GAP_BOUNDARIES if f"gap_{b}_tail{t:g}" in c]
        if alts:
            lines.append("  A1 under the alternative definitions (boundary min or median / bulk tail fraction): "
                         + ", ".join(alts))
        lines.append(
            f"  escaping tail: {c['frac_corrupt_above_boundary']:.1%} of corrupted lie above the clean "
            f"boundary; "
            f"top-{c['alpha']:.0%} subset corruption {c['subset_corruption']:.3f} (chance {c['eps']:.3f}; "
            f"bulk {c['subset_bulk']:.3f}, tail {c['subset_tail']:.3f}); "
            f"AUROC of low s {_fmt(c['auroc_low_s'], '.3f')}")
        lines.append(
            f"  Theorem 1 worst case: {'CERTIFIED' if c['certified'] else 'not certified'} - plug-in gap "
            f"{c['nominal_gap']:+.4f} (tau {c['tau']:.3f}, v_B {c['v_boundary']:.4f}) "
            f"vs 2r = {c['two_radius']:.4f}; "
            f"empirical gap {'exceeds' if c['empirical_gap'] > c['two_radius'] else 'is below'} 2r; "
            f"contamination bound {c['contamination_bound']:.3f}")
    else:
        lines.append(f"  McDiarmid radius r = {c['radius']:.4f} (2r = {c['two_radius']:.4f})")
    if masses and c["eps"] > 0:   # without corruption every mass is 0: nothing to show
        cells = ", ".join(f"{k} {v:.3f}" for k, v in masses.items())
        lines.append(f"  Theorem 2 mass on corrupted (eps {c['eps']:.3f}): {cells}"
                     + ("" if aligned is None else f"; mean proxy loss loss-aligned: {aligned}"))
    return "\n".join(lines)
