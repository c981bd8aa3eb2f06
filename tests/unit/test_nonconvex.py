"""Known answers for islab.nonconvex (An & Ying's resampling-reweighting beyond convexity)."""
import numpy as np
import pytest

from islab import nonconvex as nc
from islab.seeding import numpy_rng


def welsch(seed=0):
    return nc.make_welsch(6, 5, 7, 10.0, 1.0, -1.0, 0.05, 1.0, np.random.default_rng(seed))


PROBLEMS = {
    "twowell": (nc.TwoWell(), ("sgd", "rr", "rr-local"), np.array([[-1.7], [-0.4], [0.3], [1.6]])),
    "welsch": (welsch(), ("sgd", "rr", "rr-local"), np.array([[-1.2], [0.2], [0.97], [2.0]])),
    "mb": (nc.MuellerBrown(props=np.array([0.3, 0.3, 0.05, 0.35])), ("sgd", "rr-local"),
           np.array([[-0.5, 1.4], [0.6, 0.1], [0.0, 0.5], [-1.0, 0.2]])),
}


# ---------------------------------------------------------------- the estimator


@pytest.mark.parametrize("name", PROBLEMS)
def test_rr_step_is_unbiased_by_enumeration(name):
    pr, schemes, X = PROBLEMS[name]
    for scheme in schemes:
        np.testing.assert_allclose(nc.expected_step(pr, X, scheme), pr.grad(X), rtol=1e-12, atol=1e-10)


@pytest.mark.parametrize("name", ["welsch", "mb"])
def test_rr_step_is_unbiased_monte_carlo(name):
    """One step of many chains from the same point: the mean displacement / eta is grad F within
    5 standard errors (the variance from step_moments)."""
    pr, schemes, X = PROBLEMS[name]
    x = X[1:2]
    C = 20000
    for si, scheme in enumerate(schemes):
        rngs = [numpy_rng(si, "sampler", c) for c in range(C)]
        eta = 1e-6   # small enough that no step reaches the Mueller-Brown box
        X1 = nc.run_chains(pr, scheme, np.repeat(x, C, 0), eta, 1, rngs)
        if getattr(pr, "box", None) is not None:
            assert np.all((X1 > pr.box[0]) & (X1 < pr.box[1])), "keep the test point away from the box"
        mean, var = nc.step_moments(pr, x, scheme)
        est = (x - X1).mean(0) / eta
        assert np.all(np.abs(est - mean[0]) <= 5 * np.sqrt(var[0] / C)), (scheme, est, mean)


def test_rr_probabilities_follow_the_scales():
    pr = nc.TwoWell(a1=0.5, k1=8.0, k2=1.0, eps=0.3)
    np.testing.assert_allclose(nc.fixed_probs(pr, "sgd"), [0.5, 0.5])
    np.testing.assert_allclose(nc.fixed_probs(pr, "rr"), [8 / 9, 1 / 9])     # ∝ a_i L_i
    G = pr.all_term_grads(np.array([[-0.5]]))                                  # slopes +8 and -0.3
    np.testing.assert_allclose(nc.local_probs(pr, G), [[8 / 8.3, 0.3 / 8.3]])
    with pytest.raises(ValueError):
        nc.fixed_probs(pr, "rr-local")


@pytest.mark.parametrize("name", PROBLEMS)
def test_vectorised_chains_equal_the_plain_loop_and_do_not_depend_on_the_batch(name):
    pr, schemes, X = PROBLEMS[name]
    eta = {"twowell": 0.1, "welsch": 0.02, "mb": 2e-4}[name]
    for si, scheme in enumerate(schemes):
        rngs = [numpy_rng(7, "sampler", si, c) for c in range(len(X))]
        out = nc.run_chains(pr, scheme, X, eta, 50, rngs, block=16)
        for c in range(len(X)):
            ref = nc.reference_chain(pr, scheme, X[c], eta, 50, numpy_rng(7, "sampler", si, c), block=16)
            np.testing.assert_allclose(out[c], ref, rtol=0, atol=1e-12)
        alone = nc.run_chains(pr, scheme, X[2:3], eta, 50, [numpy_rng(7, "sampler", si, 2)], block=16)
        np.testing.assert_array_equal(alone[0], out[2])


# ---------------------------------------------------------------- (a) two wells and Lemma 2.1


def test_twowell_slopes_losses_and_variances():
    tw = nc.TwoWell(a1=0.5, k1=8.0, k2=1.0, eps=0.3)
    x = np.array([-1.6, -0.4, 0.3, 1.7])
    h = 1e-6
    fd = (tw.term_losses(x + h) - tw.term_losses(x - h)) / (2 * h)          # (4, 2)
    np.testing.assert_allclose(fd.T, tw.slopes(), atol=1e-6)
    F = tw.loss(np.array([-1.0, 0.0, 1.0]))
    np.testing.assert_allclose(F, [0.5 * 1.3, 4.5, 0.5 * 8.3])               # F(-1) < F(1): -1 is global
    m, s2 = tw.region_moments("sgd")
    np.testing.assert_allclose(m, 0.5 * tw.slopes().sum(0))                  # the drift is F'
    g1, g2 = tw.slopes()
    np.testing.assert_allclose(s2, 0.25 * (g1 - g2) ** 2)                    # a1 a2 (g1 - g2)^2 (Appendix A)
    mr, s2r = tw.region_moments("rr")
    np.testing.assert_allclose(mr, m)                                        # same drift ...
    assert s2r[1] / s2r[2] < 2 < s2[1] / s2[2]                               # ... balanced variances


def test_lemma_density_integrates_to_its_closed_form_and_has_zero_flux():
    tw = nc.TwoWell(a1=0.5, k1=2.0, k2=1.0, eps=0.1)
    for scheme, eta in (("sgd", 1.0), ("rr", 0.3)):
        m, s2 = tw.region_moments(scheme)
        lm = nc.region_log_masses(m, s2, eta)
        for r, (lo, hi) in enumerate(((-12, -1), (-1, 0), (0, 1), (1, 12))):
            x = np.linspace(lo + 1e-13, hi - 1e-13, 400_001)        # one region (the density jumps at edges)
            rho = np.exp(nc.stationary_log_density(x, m, s2, eta))
            assert np.trapezoid(rho, x) == pytest.approx(np.exp(lm[r]), rel=1e-6)
        D = eta * s2 / 2
        for edge, (left, right) in ((-1.0, (0, 1)), (0.0, (1, 2)), (1.0, (2, 3))):    # D rho continuous
            below = np.exp(nc.stationary_log_density(edge - 1e-12, m, s2, eta))
            above = np.exp(nc.stationary_log_density(edge + 1e-12, m, s2, eta))
            assert D[left] * below == pytest.approx(D[right] * above, rel=1e-9)
        # inside each region (D rho)' = -m rho (zero flux), checked by finite differences
        for xi in (-3.0, -0.5, 0.5, 3.0):
            r = nc.TwoWell.region(xi)
            f = lambda z: np.exp(nc.stationary_log_density(z, m, s2, eta))  # noqa: E731
            d = (D[r] * f(xi + 1e-6) - D[r] * f(xi - 1e-6)) / 2e-6
            assert d == pytest.approx(-m[r] * f(xi), rel=1e-5)


def test_lemma_with_equal_variance_is_the_gibbs_density():
    m = np.array([-2.0, 1.5, -0.5, 1.0])
    s2 = np.full(4, 0.8)
    eta = 0.25
    x = np.linspace(-3, 3, 61)
    F = np.select([x < -1, x < 0, x < 1], [-1.5 - 2.0 * (x + 1), 1.5 * x, -0.5 * x], -0.5 + 1.0 * (x - 1))
    lp = nc.stationary_log_density(x, m, s2, eta)
    np.testing.assert_allclose(lp - lp[30], -2 * (F - F[30]) / (eta * 0.8), atol=1e-12)


def test_diffusion_simulation_matches_lemma_and_not_the_other_conventions():
    """Euler-Maruyama of dX = -m dt + sqrt(eta s2) dW (40 substeps per step) spends the time the
    Ito density (1/D) exp(-int m/D) predicts on the left; the density without the 1/D prefactor
    (or with 1/sqrt(D)) would put 0.57 (0.45) there."""
    tw = nc.TwoWell(a1=0.5, k1=2.0, k2=1.0, eps=0.1)
    eta = 1.0
    m, s2 = tw.region_moments("sgd")
    pred = nc.left_mass(m, s2, eta)
    assert pred == pytest.approx(0.1169, abs=1e-4)
    C, T = 2000, 300
    acc = [0, 0]

    def rec(t, X):
        if t > 100:
            acc[0] += len(X)
            acc[1] += int((X < 0).sum())

    X0 = np.random.default_rng(0).uniform(-2, 2, (C, 1))
    nc.diffusion_chains(tw, "sgd", X0, eta, T, [numpy_rng(1, "sampler", c) for c in range(C)], substeps=40,
                        record_every=2, record=rec)
    assert acc[1] / acc[0] == pytest.approx(pred, abs=0.03)


# ---------------------------------------------------------------- (b) Welsch regression


def test_welsch_gradients_bounds_and_minima():
    pr = welsch()
    B = np.array([[-0.8], [0.4], [1.01]])
    h = 1e-6
    r = lambda b: pr.y - b * pr.x  # noqa: E731
    f = lambda b: pr.c ** 2 * (1 - np.exp(-r(b) ** 2 / (2 * pr.c ** 2)))  # noqa: E731
    for b in B[:, 0]:
        fd = (f(b + h) - f(b - h)) / (2 * h)
        np.testing.assert_allclose(pr.all_term_grads(np.array([[b]]))[0, :, 0], fd, atol=1e-5)
        g = lambda z: pr.all_term_grads(np.array([[z]]))[0, :, 0]  # noqa: E731
        np.testing.assert_allclose(pr.curvatures(b), (g(b + h) - g(b - h)) / (2 * h), atol=1e-4)
    grid = np.linspace(-5, 5, 20001)
    assert np.all(np.abs(pr.all_term_grads(grid[:, None])[..., 0]).max(0) <= pr.lipschitz * (1 + 1e-9))
    mins = nc.minima_1d(pr.loss, -4, 4)
    assert len(mins) == 2
    assert mins[np.argmin(pr.loss(mins))] == pytest.approx(1.0, abs=0.02)    # the sensitive group's beta
    assert np.abs(pr.grad(mins[:, None])).max() < 1e-6


def test_stability_threshold_known_values():
    h, a = np.array([1.0, 9.0]), np.array([0.5, 0.5])                        # features 1 and 3
    assert nc.stability_threshold(h, a, a) == pytest.approx(10 / 41)          # SGD: 2 E[h] / E[h^2]
    assert nc.stability_threshold(h, a, np.array([0.25, 0.75])) == pytest.approx(10 / 28)   # p ∝ |x|
    # RR never has a smaller limit (Cauchy-Schwarz, Remark 3.4), equal when the features are equal
    rng = np.random.default_rng(0)
    for _ in range(20):
        x = rng.uniform(0.1, 10, 7)
        a = rng.dirichlet(np.ones(7))
        p = a * x / np.sum(a * x)
        assert nc.stability_threshold(x ** 2, a, p) >= nc.stability_threshold(x ** 2, a, a) * (1 - 1e-12)


# ---------------------------------------------------------------- (c) Mueller-Brown


def test_mueller_brown_stationary_points_match_the_literature():
    for p in nc.MB_MINIMA:
        q = nc.mb_newton(p[:2])
        np.testing.assert_allclose(q, p[:2], atol=1e-3)
        assert nc.mb_potential(q) == pytest.approx(p[2], abs=0.01)
        assert np.all(np.linalg.eigvalsh(nc.mb_hessian(q)) > 0)
    for p in nc.MB_SADDLES:
        q = nc.mb_newton(p[:2])
        np.testing.assert_allclose(q, p[:2], atol=1e-3)
        assert nc.mb_potential(q) == pytest.approx(p[2], abs=0.01)
        ev = np.linalg.eigvalsh(nc.mb_hessian(q))
        assert ev[0] < 0 < ev[1]
    global_min = min(nc.MB_MINIMA, key=lambda p: p[2])
    np.testing.assert_allclose(global_min[:2], [-0.558, 1.442])


def test_mueller_brown_terms_sum_to_the_potential_and_rr_local_ignores_the_proportions():
    P = np.array([[0.1, 0.7], [-0.9, 1.1]])
    h = 1e-6
    fd = np.stack([(nc.mb_potential(P + [h, 0]) - nc.mb_potential(P - [h, 0])) / (2 * h),
                   (nc.mb_potential(P + [0, h]) - nc.mb_potential(P - [0, h])) / (2 * h)], -1)
    np.testing.assert_allclose(nc.mb_gradient(P), fd, rtol=1e-6)
    a, b = nc.MuellerBrown(props=np.full(4, 0.25)), nc.MuellerBrown(props=np.array([0.3, 0.3, 0.05, 0.35]))
    np.testing.assert_allclose((a.all_term_grads(P) * a.a[:, None]).sum(1), nc.mb_gradient(P))
    X = np.array([[-0.5, 1.3], [0.5, 0.2], [0.0, 0.6]])
    xa = nc.run_chains(a, "rr-local", X, 2e-4, 30, [numpy_rng(3, "sampler", c) for c in range(3)])
    xb = nc.run_chains(b, "rr-local", X, 2e-4, 30, [numpy_rng(3, "sampler", c) for c in range(3)])
    np.testing.assert_allclose(xa, xb, atol=1e-9)
