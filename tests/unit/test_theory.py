"""Theory quantities (docs/METHODS.md section 6): known answers, brute force and properties."""
import math

import numpy as np
import pytest

from islab import sampling, theory


@pytest.mark.parametrize("K", [2, 3, 4, 5, 6])
@pytest.mark.parametrize("ddof", [0, 1])
def test_bounded_difference_constant_equals_brute_force(K, ddof):
    c = theory.bounded_difference_constant(K, ddof)
    # hand formulas: (K-1)/K^2 for 1/K, 1/K for 1/(K-1)
    assert c == pytest.approx((K - 1) / K**2 if ddof == 0 else 1 / K)
    # attained on a grid with the 0/1 extremes, never exceeded
    assert theory.brute_force_bounded_difference(K, ddof, grid_points=5) == pytest.approx(c, abs=1e-12)


@pytest.mark.parametrize("ddof", [0, 1])
def test_bounded_difference_never_exceeded_off_grid(ddof):
    rng = np.random.default_rng(0)
    for K in (2, 3, 5):
        x = rng.random((20000, K))
        y = x.copy()
        y[:, 0] = rng.random(20000)
        change = np.abs(x.var(axis=1, ddof=ddof) - y.var(axis=1, ddof=ddof))
        assert change.max() <= theory.bounded_difference_constant(K, ddof) + 1e-12


def test_mcdiarmid_radius_known_value():
    # K=4, N=1000, delta=0.05: c = 3/16, sqrt(4 ln(40000) / 2) = sqrt(21.193269...) = 4.6036151...
    assert theory.mcdiarmid_radius(4, 1000, 0.05) == pytest.approx(0.1875 * 4.6036151, rel=1e-6)
    # 1/(K-1) normalisation: c = 1/K, so r = sqrt(ln(2N/delta) / (2K))
    assert theory.mcdiarmid_radius(4, 1000, 0.05, ddof=1) == pytest.approx(math.sqrt(math.log(40000) / 8))


def test_mcdiarmid_radius_monotone():
    r = theory.mcdiarmid_radius
    # grows with N, shrinks with delta
    assert r(3, 100, 0.05) < r(3, 1000, 0.05) < r(3, 10**6, 0.05)
    assert r(3, 1000, 0.01) > r(3, 1000, 0.05) > r(3, 1000, 0.2)
    # in K: ddof=1 falls for every K; ddof=0 rises from K=2 to 3, then falls
    assert all(r(k, 1000, 0.05, 1) > r(k + 1, 1000, 0.05, 1) for k in range(2, 40))
    assert r(2, 1000, 0.05) < r(3, 1000, 0.05)
    assert all(r(k, 1000, 0.05) > r(k + 1, 1000, 0.05) for k in range(3, 40))


def test_max_variance_and_expected_factor():
    assert theory.max_variance(2) == pytest.approx(0.25)
    assert theory.max_variance(3) == pytest.approx(np.var([0, 0, 1]))
    assert theory.max_variance(3, ddof=1) == pytest.approx(np.var([0, 0, 1], ddof=1))
    assert theory.expected_variance_factor(4) == pytest.approx(0.75)
    assert theory.expected_variance_factor(4, ddof=1) == 1.0


def test_theorem1_hand_computed():
    # tau = 0.8, eta = 0.1: U = 0.9 * 0.04 / 4 + 0.1 = 0.109
    assert theory.bulk_variance_bound(0.8, 0.1) == pytest.approx(0.109)
    t = theory.theorem1(K=4, N=1000, delta=0.05, tau=0.8, eta=0.1, v_boundary=0.2, v_tail=0.0545,
                        tail_size=30, alpha=0.3)
    assert t["gap"] == pytest.approx(0.75 * (0.2 - 0.109))
    assert t["separated"] is False          # 0.068 << 2r = 1.73
    # Markov: half the tail can clear U; 15 of 300 kept
    assert t["contamination_bound"] == pytest.approx(15 / 300)


def test_theorem2_helpers_on_hand_made_examples():
    losses = np.array([1.0, 2.0, 3.0, 10.0])
    mask = np.array([False, False, False, True])
    assert theory.loss_aligned(losses, mask)
    out = theory.theorem2_mass_bound(losses / losses.sum(), mask)
    assert out["mass"] == pytest.approx(10 / 16) and out["eps"] == 0.25 and out["holds"]
    # not aligned: the corrupted example has the lowest loss, mass 1/16 < eps
    mask2 = np.array([True, False, False, False])
    assert not theory.loss_aligned(losses, mask2)
    out = theory.theorem2_mass_bound(losses / losses.sum(), mask2)
    assert out["mass"] == pytest.approx(1 / 16) and not out["holds"]
    # uniform puts exactly eps on the corrupted set
    assert theory.theorem2_mass_bound(sampling.uniform_probs(4), mask)["holds"]


def test_theorem2_property_random_aligned_losses():
    rng = np.random.default_rng(1)
    for _ in range(50):
        n, m = 40, rng.integers(1, 20)
        losses = np.concatenate([rng.random(n - m), 1 + rng.random(m)])   # corrupted all >= clean
        mask = np.arange(n) >= n - m
        assert theory.loss_aligned(losses, mask)
        for g in (lambda x: x, np.exp, lambda x: x**3 + 0.1):        # non-decreasing maps
            assert theory.theorem2_mass_bound(sampling.proportional_probs(g(losses)), mask)["holds"]


def test_detection_metrics_perfect_and_inverted():
    mask = np.array([0, 0, 0, 1, 1], dtype=bool)
    score = np.array([0.1, 0.2, 0.3, 0.8, 0.9])
    assert theory.detection_metrics(score, mask) == {"auroc": 1.0, "ap": 1.0}
    assert theory.detection_metrics(-score, mask)["auroc"] == 0.0
    assert np.isnan(theory.detection_metrics(score, np.zeros(5, bool))["auroc"])


def _ranks(stable_high: int, boundary: int, easy: int, K: int = 4, seed: int = 0):
    """Synthetic (K, N) ranks: corrupted examples consistently near 1, boundary clean examples
    spread over [0, 1], easy clean ones consistently near 0."""
    rng = np.random.default_rng(seed)
    r = np.concatenate([0.9 + 0.1 * rng.random((K, stable_high)),
                        rng.random((K, boundary)),
                        0.1 * rng.random((K, easy))], axis=1)
    mask = np.zeros(r.shape[1], dtype=bool)
    mask[:stable_high] = True
    return r, mask


def test_assumption_checks_separated_case():
    r, mask = _ranks(stable_high=50, boundary=80, easy=70)
    c = theory.assumption_checks(r, mask, alpha=0.3, tail_fraction=0.1)
    # 60 kept; the 80 boundary examples have s >> corrupted s, so the top-30 % holds no corruption
    assert c["a1_holds"] and c["a2_holds"] and c["empirical_gap"] > 0
    assert c["subset_corruption"] == 0.0 and c["frac_corrupt_above_boundary"] == 0.0
    assert c["auroc_low_s"] > 0.5
    assert c["tau"] >= 0.9 - 1e-12
    text = theory.verdict(c, masses={"uniform": 0.25}, aligned=False)
    assert "A1 corrupted bulk stable: HOLDS" in text and "uniform 0.250" in text


def test_assumption_checks_failing_case_and_clean():
    # corrupted examples disagree as much as the boundary: A1 fails
    rng = np.random.default_rng(2)
    r = rng.random((4, 200))
    mask = np.zeros(200, dtype=bool)
    mask[:50] = True
    c = theory.assumption_checks(r, mask, alpha=0.3)
    assert not c["a1_holds"] and c["subset_corruption"] > 0.1
    assert "FAILS" in theory.verdict(c)
    # no corruption: A1 not checkable, A2 still measured
    c = theory.assumption_checks(r, np.zeros(200, dtype=bool))
    assert c["a1_holds"] is None and c["a2_holds"]
    assert "not checkable" in theory.verdict(c)
    # every proxy agrees exactly: s = 0 everywhere, A2 fails
    c = theory.assumption_checks(np.tile(np.linspace(0, 1, 200), (4, 1)), mask)
    assert not c["a2_holds"]


def test_separation_gaps_hand_computed():
    # N = 20, alpha 0.2 -> boundary = the 4 highest clean s: 0.30, 0.25, 0.11, 0.10
    # (min 0.10, median (0.25 + 0.11) / 2 = 0.18); 10 corrupted, sorted: 0.01 .. 0.08, 0.12, 0.20
    corrupt = [0.01, 0.02, 0.03, 0.04, 0.05, 0.06, 0.07, 0.08, 0.12, 0.20]
    clean = [0.30, 0.25, 0.11, 0.10, 0.02, 0.01, 0.0, 0.03, 0.05, 0.09]
    s = np.array(corrupt + clean)
    mask = np.arange(20) < 10
    g = theory.separation_gaps(s, mask, alpha=0.2)
    assert g["q_boundary"] == pytest.approx(0.10) and g["q_boundary_median"] == pytest.approx(0.18)
    # tail 0.1 drops 1 corrupted (bulk max 0.12), tail 0.2 drops 2 (bulk max 0.08)
    assert g["q_bulk_tail0.1"] == pytest.approx(0.12) and g["q_bulk_tail0.2"] == pytest.approx(0.08)
    assert g["gap_min_tail0.1"] == pytest.approx(-0.02)      # strict: A1 fails
    assert g["gap_min_tail0.2"] == pytest.approx(0.02)       # a wider tail: holds
    assert g["gap_median_tail0.1"] == pytest.approx(0.06)    # the boundary median: holds
    assert g["gap_median_tail0.2"] == pytest.approx(0.10)
    # no corrupted examples: no bulk, NaN gaps; the boundary is still measured
    g = theory.separation_gaps(s, np.zeros(20, dtype=bool), alpha=0.2)
    assert np.isnan(g["gap_median_tail0.2"]) and g["q_boundary"] == pytest.approx(0.12)


def test_assumption_checks_report_the_alternatives_beside_the_strict_gap():
    rng = np.random.default_rng(3)
    r = rng.random((4, 200))
    mask = np.zeros(200, dtype=bool)
    mask[:50] = True
    c = theory.assumption_checks(r, mask, alpha=0.3, tail_fraction=0.1)
    assert c["gap_min_tail0.1"] == c["empirical_gap"] and c["q_bulk_tail0.1"] == c["q_bulk"]
    c2 = theory.assumption_checks(r, mask, alpha=0.3, tail_fraction=0.2)
    assert c2["empirical_gap"] == c["gap_min_tail0.2"]
    # a wider tail or the boundary median can only raise the gap
    assert c["gap_min_tail0.2"] >= c["gap_min_tail0.1"] and c["gap_median_tail0.1"] >= c["gap_min_tail0.1"]
    text = theory.verdict(c)
    assert "A1 under the alternative definitions (boundary min or median / bulk tail fraction): min / rho 0.1 " in text
    assert f"median / rho 0.2 {c['gap_median_tail0.2']:+.4f}" in text


def test_paired_ttest_known_value_and_undefined_cases():
    # differences 1, 2, 3: mean 2, sd 1, t = 2 / (1 / sqrt(3)) = 3.4641, two-sided p = 0.0742 (df 2)
    t, p = theory.paired_ttest([1.0, 2.0, 3.0], [0.0, 0.0, 0.0])
    assert t == pytest.approx(2 * np.sqrt(3)) and p == pytest.approx(0.0742, abs=1e-4)
    assert all(np.isnan(theory.paired_ttest([1.0], [0.0])))
    assert all(np.isnan(theory.paired_ttest([1.0, 2.0], [0.0, 1.0])))  # constant difference
