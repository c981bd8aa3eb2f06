"""Known-answer tests of islab/convex.py (squared hinge + L2, solver, data, IS chains)."""
import numpy as np
import pytest

from islab import convex as cv
from islab import noise, sampling, seeding

LAM = 0.05


def small_problem(n=40, d=3, seed=0, ratio=10.0, lam=LAM):
    clean = cv.make_clean(n, 30, d, 0.2, ratio, 0.1, seed, lam)
    return clean, cv.corrupt(clean, "uniform", 0.1, lam)


# ---------------------------------------------------------------- objective


def test_objective_hand_computed():
    X = np.array([[1.0, 0.0], [0.0, 2.0], [3.0, 3.0]])
    y = np.array([1.0, -1.0, 1.0])
    w = np.array([0.5, 0.25])
    # margins 0.5, -0.5, 2.25 -> losses 0.25, 2.25, 0
    np.testing.assert_allclose(cv.margins(w, X, y), [0.5, -0.5, 2.25])
    np.testing.assert_allclose(cv.losses(w, X, y), [0.25, 2.25, 0.0])
    assert cv.objective(w, X, y, 0.1) == pytest.approx(2.5 / 3 + 0.05 * 0.3125)
    # grad = (1/3)(-2*0.5*1*[1,0] - 2*1.5*(-1)*[0,2]) + 0.1 w
    np.testing.assert_allclose(cv.gradient(w, X, y, 0.1), np.array([-1.0, 6.0]) / 3 + 0.1 * w)
    np.testing.assert_allclose(cv.example_grad_norms(w, X, y), [1.0, 6.0, 0.0])
    assert cv.test_error(w, X, y) == pytest.approx(1 / 3)


def test_gradient_matches_finite_differences():
    clean, noisy = small_problem()
    rng = np.random.default_rng(1)
    for _ in range(5):
        w = rng.standard_normal(3) * 0.3
        h = 1e-6
        F = lambda v: cv.objective(v, noisy.X, noisy.y, LAM)  # noqa: E731
        fd = np.array([(F(w + h * e) - F(w - h * e)) / (2 * h) for e in np.eye(3)])
        np.testing.assert_allclose(cv.gradient(w, noisy.X, noisy.y, LAM), fd, rtol=1e-6, atol=1e-7)


def test_gradient_bound_dominates_every_gradient_on_the_ball():
    _, pr = small_problem()
    G = cv.gradient_bound(pr.X, LAM)
    rng = np.random.default_rng(2)
    for _ in range(50):
        w = rng.standard_normal(3)
        w *= cv.ball_radius(LAM) / np.linalg.norm(w) * rng.uniform(0, 1)
        assert np.all(cv.example_grad_norms(w, pr.X, pr.y) <= G + 1e-9)
    # the worst case w = -R x_i / ||x_i|| y_i attains it
    i = 0
    w = -cv.ball_radius(LAM) * pr.y[i] * pr.X[i] / np.linalg.norm(pr.X[i])
    assert cv.example_grad_norms(w, pr.X, pr.y)[i] == pytest.approx(G[i])


# ---------------------------------------------------------------- solver


def test_solver_reaches_tiny_gradient_inside_the_ball():
    for ratio in (1.0, 50.0):
        clean, noisy = small_problem(n=200, d=5, ratio=ratio)
        for pr in (clean, noisy):
            assert pr.opt.grad_norm < 1e-10
            grad = cv.gradient(pr.opt.w, pr.X, pr.y, LAM)
            np.testing.assert_allclose(np.linalg.norm(grad), pr.opt.grad_norm)
            assert np.linalg.norm(pr.opt.w) <= 1 / np.sqrt(2 * LAM) + 1e-12  # module-doc bound


def test_solver_all_active_closed_form():
    # strong lam keeps every margin < 1: the optimum solves (2/N X^T X + lam I) w = (2/N) X^T y
    X = np.array([[1.0, 0.5], [-0.3, 1.0], [0.2, -0.4], [0.7, 0.7]])
    y = np.array([1.0, 1.0, -1.0, -1.0])
    lam = 2.0
    opt = cv.solve(X, y, lam)
    w = np.linalg.solve(2 / 4 * X.T @ X + lam * np.eye(2), 2 / 4 * X.T @ y)
    assert np.all(cv.margins(w, X, y) < 1)
    np.testing.assert_allclose(opt.w, w, rtol=1e-12, atol=1e-14)


def test_solver_matches_brute_force_grid():
    rng = np.random.default_rng(3)
    X = rng.standard_normal((12, 2))
    y = np.where(rng.random(12) < 0.5, 1.0, -1.0)
    lam = 0.1
    opt = cv.solve(X, y, lam)
    step = 0.005
    assert np.all(np.abs(opt.w) < 2)
    g = np.arange(-2, 2 + step / 2, step)
    W = np.stack(np.meshgrid(g, g, indexing="ij"), -1).reshape(-1, 2)
    F = np.square(np.maximum(0, 1 - y * (W @ X.T))).mean(1) + 0.5 * lam * np.square(W).sum(1)
    assert np.all(np.abs(W[F.argmin()] - opt.w) <= step)
    assert opt.value <= F.min() + 1e-12


# ---------------------------------------------------------------- data and noise


def test_data_generator_norms_labels_and_rare_count():
    teacher = cv.make_teacher(10, seeding.numpy_rng(0, "data", 0))
    X1, y1, rare1 = cv.make_points(2000, 10, 0.1, 1.0, 0.1, teacher, seeding.numpy_rng(0, "data", 1))
    X20, y20, rare20 = cv.make_points(2000, 10, 0.1, 20.0, 0.1, teacher, seeding.numpy_rng(0, "data", 1))
    assert rare20.sum() == 200 and np.array_equal(rare1, rare20) and np.array_equal(y1, y20)
    # same draws: the rare rows are exactly ratio times the ratio-1 rows, the common rows equal
    np.testing.assert_allclose(X20[rare20], 20 * X1[rare1])
    np.testing.assert_array_equal(X20[~rare20], X1[~rare1])
    nrm = np.linalg.norm(X20, axis=1)
    assert np.median(nrm[rare20]) / np.median(nrm[~rare20]) == pytest.approx(20, rel=0.1)
    assert np.median(nrm[~rare20]) == pytest.approx(1.0, abs=0.15)
    scale = np.where(rare20, 20.0, 1.0)
    assert np.all(y20 * (X20 @ teacher) >= 0.1 * scale - 1e-12)  # the margin, scaled with the point


def test_noise_kinds_and_targeted_choice():
    clean = cv.make_clean(400, 10, 5, 0.1, 20.0, 0.1, 0, LAM)
    for flip, rate in (("uniform", 0.1), ("targeted", 0.25), ("rare", 0.05)):
        pr = cv.corrupt(clean, flip, rate, LAM)
        assert pr.corrupt.sum() == noise.n_corrupt(400, rate)
        np.testing.assert_array_equal(pr.y[pr.corrupt], -clean.y[pr.corrupt])
        np.testing.assert_array_equal(pr.y[~pr.corrupt], clean.y[~pr.corrupt])
        if flip == "rare":
            assert np.all(clean.rare[pr.corrupt])
        if flip == "targeted":  # the flipped set is the top by (grad norm, then smaller margin)
            gn = cv.example_grad_norms(clean.opt.w, clean.X, clean.y)
            m = cv.margins(clean.opt.w, clean.X, clean.y)
            assert gn[pr.corrupt].min() >= gn[~pr.corrupt].max()
            tied = ~pr.corrupt & (gn == gn[pr.corrupt].min())
            if tied.any():
                assert m[pr.corrupt & (gn == gn[pr.corrupt].min())].max() <= m[tied].min()


# ---------------------------------------------------------------- sampling and the estimator


def test_draw_indices_frequencies_and_zero_mass():
    p = np.array([0.0, 0.5, 0.0, 0.3, 0.2])
    idx = cv.draw_indices(p, np.random.default_rng(0).random(200_000))
    freq = np.bincount(idx, minlength=5) / len(idx)
    assert freq[0] == 0 and freq[2] == 0
    np.testing.assert_allclose(freq, p, atol=0.005)


def test_importance_weighted_gradient_is_unbiased():
    _, pr = small_problem(n=60, ratio=20.0)
    w = np.array([0.3, -0.2, 0.1])
    p = sampling.proportional_probs(cv.gradient_bound(pr.X, LAM))
    assert p.max() / p.min() > 20  # genuinely non-uniform
    idx = cv.draw_indices(p, np.random.default_rng(5).random(400_000))
    a = np.maximum(0, 1 - cv.margins(w, pr.X, pr.y))
    per = (-2 * a * pr.y)[:, None] * pr.X                      # grad phi_i, (N, d)
    samples = per[idx] * sampling.importance_weights(p, idx)[:, None] + LAM * w
    est, se = samples.mean(0), samples.std(0) / np.sqrt(len(idx))
    full = cv.gradient(w, pr.X, pr.y, LAM)
    assert np.all(np.abs(est - full) < 5 * se + 1e-12)


def test_projection_keeps_the_ball():
    R = cv.ball_radius(LAM)
    W = np.random.default_rng(0).standard_normal((100, 4)) * 10
    P = cv.project_rows(W, R)
    assert np.all(np.linalg.norm(P, axis=1) <= R * (1 + 1e-12))
    inside = np.linalg.norm(W, axis=1) <= R
    np.testing.assert_array_equal(P[inside], W[inside])
    np.testing.assert_allclose(P[~inside] / np.linalg.norm(P[~inside], axis=1)[:, None],
                               W[~inside] / np.linalg.norm(W[~inside], axis=1)[:, None])


def test_step_size_schedule_and_caps():
    assert cv.step_size(0, 0.1, 10, 0) == pytest.approx(1.0)
    assert cv.step_size(90, 0.1, 10, 0) == pytest.approx(0.1)
    assert cv.step_size(0, 0.1, 10, 0.25) == 0.25
    X = np.array([[1.0, 0.0], [0.0, 3.0]])
    assert cv.safe_cap(np.array([0.5, 0.5]), X, True, 1.0) == pytest.approx(1 / 18)
    # p = (0.1, 0.9): w = (5, 5/9), L = (2, 18) -> max w L = 10
    assert cv.safe_cap(np.array([0.1, 0.9]), X, True, 1.0) == pytest.approx(1 / 10)


def test_dr_is_probs_identical_proxies_give_uniform():
    losses = np.tile(np.arange(6.0), (3, 1))
    np.testing.assert_allclose(cv.dr_is_probs(losses, 0.1), np.full(6, 1 / 6))
    losses[0, 0] = 10.0  # proxy 0 disagrees on example 0 -> it gets the most mass
    assert cv.dr_is_probs(losses, 0.1).argmax() == 0


# ---------------------------------------------------------------- chains


def _cfg(**kw):
    base = dict(lam=LAM, t0=20.0, epochs=2, batch=1, safe=1.0, proxies=2, proxy_epochs=1)
    base.update(kw)
    return cv.SGDConfig(**base)


@pytest.mark.parametrize("batch", [1, 3])
def test_vectorised_chains_equal_reference_loop(batch):
    clean, noisy = small_problem()
    cfg = _cfg(batch=batch)
    problems = [clean, noisy]
    chains = cv.method_chains(problems, cv.METHODS, cfg)
    Xs, ys = np.stack([p.X for p in problems]), np.stack([p.y for p in problems])
    hist = cv.run_chains(Xs, ys, chains, LAM, cfg.t0, cfg.eta_max, cfg.epochs, batch, cfg.floor,
                         safe=cfg.safe)
    fresh = cv.method_chains(problems, cv.METHODS, cfg)  # same streams, from the start
    for c in range(len(fresh.data)):
        pr = problems[fresh.data[c]]
        W = cv.reference_chain(pr.X, pr.y, fresh.rule[c], fresh.p[c], True, fresh.rngs[c], LAM, cfg.t0,
                               cfg.eta_max, cfg.epochs, batch, cfg.floor, safe=cfg.safe)
        np.testing.assert_allclose(hist.W[:, c], W, rtol=1e-10, atol=1e-12)
    assert np.abs(hist.W[-1]).max() > 0.1  # the chains moved


def test_chain_alone_equals_chain_in_batch_exactly():
    clean, noisy = small_problem()
    problems = [clean, noisy]
    cfg = _cfg()
    Xs, ys = np.stack([p.X for p in problems]), np.stack([p.y for p in problems])
    chains = cv.method_chains(problems, cv.METHODS, cfg)
    hist = cv.run_chains(Xs, ys, chains, LAM, cfg.t0, 0.0, 2, safe=1.0)
    fresh = cv.method_chains(problems, cv.METHODS, cfg)
    for c in (1, 3, 4, 5 + len(cv.METHODS)):  # fixed IS, loss-is, grad-is, dr-is on the noisy set
        one = cv.Chains(data=np.array([0]), rule=[fresh.rule[c]], p=fresh.p[c:c + 1],
                        reweight=fresh.reweight[c:c + 1], rngs=[fresh.rngs[c]])
        pr = problems[fresh.data[c]]
        alone = cv.run_chains(pr.X[None], pr.y[None], one, LAM, cfg.t0, 0.0, 2, safe=1.0)
        np.testing.assert_array_equal(alone.W[:, 0], hist.W[:, c])


def test_unclamped_chain_stays_in_the_ball_and_uniform_mass_equals_rate():
    _, noisy = small_problem(ratio=50.0)
    cfg = _cfg(safe=0.0, t0=1.0, epochs=3)  # eta_0 = 1/lam: wild steps, projection must hold
    out = cv.run_methods([noisy], ["uniform", "is-norm"], cfg)
    chains = cv.method_chains([noisy], ["uniform", "is-norm"], cfg)
    hist = cv.run_chains(noisy.X[None], noisy.y[None], chains, LAM, 1.0, 0.0, 3)
    assert np.all(np.linalg.norm(hist.W, axis=-1) <= cv.ball_radius(LAM) * (1 + 1e-12))
    np.testing.assert_allclose(out["mass_corrupt"][1:, 0, 0], noisy.corrupt.mean())
    assert np.isnan(out["mass_corrupt"][0]).all()


def test_metrics_at_the_start_are_known():
    clean, noisy = small_problem()
    out = cv.run_methods([noisy], ["uniform"], _cfg(epochs=1))
    assert out["dist_train"][0, 0, 0] == pytest.approx(np.linalg.norm(noisy.opt.w))
    assert out["dist_clean"][0, 0, 0] == pytest.approx(np.linalg.norm(clean.opt.w))
    assert out["gap"][0, 0, 0] == pytest.approx(1.0 - noisy.opt.value)  # F(0) = 1
    assert out["test_err_pct"][0, 0, 0] == 100.0                      # w = 0 scores 0 = error


def test_sgd_attacker_known_answers():
    """An attacker with 0 epochs is w = 0: every gradient norm is 2 ||x_i||, so targeted noise at
    rate = rho flips exactly the rare (large-norm) cluster; more epochs move the flips toward the
    boundary, and attacker_w=None is the exact-optimum rule of docs/METHODS.md section 2."""
    cfg = cv.SGDConfig(lam=LAM, t0=100.0, safe=1.0)
    cleans = [cv.make_clean(400, 10, 5, 0.1, 20.0, 0.0, s, LAM) for s in (0, 1)]
    w0 = cv.train_attacker(cleans, cfg, 0)
    assert w0.shape == (2, 5) and not w0.any()
    for c in cleans:
        pr = cv.corrupt(c, "targeted", 0.1, LAM, attacker_w=np.zeros(5))
        np.testing.assert_array_equal(pr.corrupt, c.rare)
    w2 = cv.train_attacker(cleans, cfg, 2)
    again = cv.train_attacker(cleans[1:], cfg, 2)          # a problem's attacker does not depend on
    np.testing.assert_array_equal(w2[1], again[0])          # which other problems share the run
    for c, w in zip(cleans, w2):
        assert cv.test_error(w, c.X_test, c.y_test) < 0.5   # it learned the clean rule
        pr = cv.corrupt(c, "targeted", 0.1, LAM, attacker_w=w)
        assert pr.corrupt.sum() == noise.n_corrupt(400, 0.1)
        exact = cv.corrupt(c, "targeted", 0.1, LAM)
        np.testing.assert_array_equal(exact.corrupt,
                                      cv.corrupt(c, "targeted", 0.1, LAM, attacker_w=c.opt_clean.w).corrupt)
        assert (pr.corrupt & c.rare).sum() >= (exact.corrupt & c.rare).sum()
