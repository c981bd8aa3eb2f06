"""islab.online: the online-IS distributions, refresh hooks and RHO-LOSS holdout (known answers)."""
import numpy as np
import pytest
import torch

from islab import online, sampling
from islab.data import load_dataset
from islab.models import build_model
from islab.sampling import effective_sample_size, mass_on
from islab.train import Sampling, TrainConfig


@pytest.fixture(scope="module")
def ds():
    return load_dataset("digits", train_size=200)


def cfg():
    return TrainConfig(epochs=1, batch_size=32, lr=0.05)


# ---------------------------------------------------------------- distributions


def test_relative_floor_known_values():
    # clipped score [0, 1, 3, 0] (mean 1); floor 0.5 adds 0.5 -> [0.5, 1.5, 3.5, 0.5] / 6
    p = sampling.relative_floor_probs([-2.0, 1.0, 3.0, 0.0], floor=0.5)
    np.testing.assert_allclose(p, [0.5 / 6, 1.5 / 6, 3.5 / 6, 0.5 / 6])
    # floor 0: plain proportional, negative and zero scores never drawn
    np.testing.assert_allclose(sampling.relative_floor_probs([-2.0, 1.0, 3.0, 0.0], 0.0), [0, 0.25, 0.75, 0])
    # nowhere positive: uniform
    np.testing.assert_allclose(sampling.relative_floor_probs([-1.0, -3.0, 0.0], 0.01), [1 / 3] * 3)


def test_floor_keeps_every_probability_positive_and_bounds_the_weight():
    rng = np.random.default_rng(0)
    s = np.concatenate([rng.exponential(size=500), np.zeros(50), -rng.exponential(size=50)])
    for f in (0.01, 0.1, 1.0):
        p = sampling.relative_floor_probs(s, f)
        assert np.all(p > 0) and p.sum() == pytest.approx(1.0)
        assert online.max_weight(p) <= (1 + f) / f + 1e-9   # N p_min >= f mean / (mean + f mean)


def test_smoothed_probs_known_values():
    # s = [0, 0.1, 0.2, 0.1], mean 0.1, gamma 0.5 -> c = 0.05 -> [0.05, 0.15, 0.25, 0.15] / 0.6
    p = sampling.smoothed_probs([0.0, 0.1, 0.2, 0.1], gamma=0.5)
    np.testing.assert_allclose(p, np.array([0.05, 0.15, 0.25, 0.15]) / 0.6)
    assert np.all(sampling.smoothed_probs([0.0, 0.0, 1.0], 0.1) > 0)


def test_rho_score_sign_convention():
    current = np.array([2.0, 2.0, 0.1, 1.0])
    irreducible = np.array([0.1, 3.0, 0.1, 0.5])
    # reducible loss = [1.9, -1.0, 0.0, 0.5]: learnable-not-learnt first; noisy (high irreducible)
    # and already-learnt examples get only the floor
    p = online.rho_probs(current, irreducible, floor=0.0)
    np.testing.assert_allclose(p, np.array([1.9, 0.0, 0.0, 0.5]) / 2.4)
    assert np.argmax(p) == 0 and p[1] == 0.0
    p = online.rho_probs(current, irreducible, floor=0.1)
    assert p[1] == p[2] > 0 and p[0] > p[3] > p[1]


def test_theorem2_loss_aligned_contamination_gets_at_least_eps():
    """Theorem 2 on a hand-made set: every corrupted loss >= every clean loss, p non-decreasing
    in the loss (proportional, with or without a floor) -> mass on corrupted >= eps."""
    clean = np.array([0.05, 0.1, 0.2, 0.3, 0.5, 0.8, 1.0, 1.2])      # 8 clean
    corrupt = np.array([1.2, 1.5])                                     # 2 corrupted, eps = 0.2
    loss = np.concatenate([clean, corrupt])
    mask = np.arange(10) >= 8
    eps = mask.mean()
    m0 = mass_on(sampling.relative_floor_probs(loss, 0.0), mask)
    assert m0 == pytest.approx(2.7 / (4.15 + 2.7))                   # = 0.394 by hand
    assert m0 >= eps
    for f in (0.01, 1.0, 100.0):                                       # still non-decreasing in loss
        assert mass_on(sampling.relative_floor_probs(loss, f), mask) >= eps
    # the bound is tight when the losses are all equal (mass = eps exactly)
    assert mass_on(sampling.relative_floor_probs(np.ones(10), 0.0), mask) == pytest.approx(eps)
    # a non-monotone score (DR-IS: clean boundary points disagree, corrupted bulk does not) can go below eps
    disagreement = np.array([0.0, 0.0, 0.1, 0.2, 0.3, 0.3, 0.2, 0.1, 0.01, 0.01])
    assert mass_on(sampling.smoothed_probs(disagreement, 0.1), mask) < eps


def test_effective_sample_size_of_dris_between_floor_and_one():
    s = np.array([0.0] * 9 + [1.0])
    p = sampling.smoothed_probs(s, 0.1)   # c = 0.01: nine at 0.01, one at 1.01 (total 1.1)
    assert effective_sample_size(p) == pytest.approx(1.0 / (10 * ((9 * 0.01**2 + 1.01**2) / 1.1**2)))


# ---------------------------------------------------------------- refresh hooks


def test_gradnorm_refresh_returns_a_distribution_over_n(ds):
    torch.manual_seed(0)
    model = build_model("mlp", ds.num_classes, ds.input_shape)
    log = online.RefreshLog()
    labels = ds.train.y.numpy()
    p = online.gradnorm_refresh(ds, labels, cfg(), floor=0.0, log=log)(model, 0)
    assert p.shape == (len(ds.train),) and p.sum() == pytest.approx(1.0) and np.all(p >= 0)
    from islab.train import per_example_stats

    g = per_example_stats(model, ds, ds.train.x, ds.train.y, cfg())["gradnorm"]
    np.testing.assert_allclose(p, g / g.sum(), rtol=1e-6)   # proportional to the gradient-norm bound
    assert log.calls[0]["epoch"] == 0 and log.calls[0]["ess"] == pytest.approx(effective_sample_size(p))


def test_rho_refresh_distribution_and_nonfinite_guard(ds):
    torch.manual_seed(0)
    model = build_model("mlp", ds.num_classes, ds.input_shape)
    n = len(ds.train)
    irr = np.full(n, 0.5)
    log = online.RefreshLog()
    hook = online.rho_refresh(ds, ds.train.y.numpy(), irr, cfg(), floor=0.01, log=log)
    p = hook(model, 0)
    assert p.shape == (n,) and p.sum() == pytest.approx(1.0) and np.all(p > 0)
    with torch.no_grad():   # a blown-up model: the previous p is kept and the call is flagged
        for q in model.parameters():
            q.fill_(float("nan"))
    p2 = hook(model, 5)
    np.testing.assert_array_equal(p2, p)
    assert [c["finite"] for c in log.calls] == [True, False]
    np.testing.assert_array_equal(log.per_epoch(7, "finite")[[0, 4, 5, 6]], [1, 1, 0, 0])


def test_make_sampling_modes(ds):
    n = len(ds.train)
    y = ds.train.y.numpy()
    s = online.make_sampling("uniform", ds, y, cfg())
    assert s.mode == "shuffle"
    s = online.make_sampling("standard_is", ds, y, cfg())
    assert s.mode == "weighted" and s.refresh is not None and s.refresh_every == 1
    s = online.make_sampling("rho_faithful", ds, y, cfg(), irreducible_loss=np.zeros(n), rho_every=3)
    assert s.refresh is not None and s.refresh_every == 3
    dis = np.linspace(0, 1, n)
    s = online.make_sampling("dris", ds, y, cfg(), disagreement=dis, gamma=0.1)
    np.testing.assert_allclose(s.probs, sampling.smoothed_probs(dis, 0.1))
    s = online.make_sampling("rho_approx", ds, y, cfg(), proxy_mean_loss=dis,
                             irreducible_loss=np.full(n, 0.5))
    assert isinstance(s, Sampling) and s.probs[: n // 2 - 1].max() == pytest.approx(s.probs.min())
    with pytest.raises(ValueError):
        online.make_sampling("nope", ds, y, cfg())


def test_rho_default_floor_is_the_one_floor(ds):
    # scores [0 x (n-1), 1]: mean clipped score 1/n; floor f gives the zeros p = f/n / (1/n + f/n)
    # each over n -> largest weight (1 + f) / f: 11 at the default 0.1, 101 at the paper's 0.01
    n = len(ds.train)
    y = ds.train.y.numpy()
    loss = np.zeros(n)
    loss[-1] = 1.0
    s = online.make_sampling("rho_approx", ds, y, cfg(), proxy_mean_loss=loss, irreducible_loss=np.zeros(n))
    assert online.max_weight(s.probs) == pytest.approx(11.0)
    s = online.make_sampling("rho_approx", ds, y, cfg(), proxy_mean_loss=loss, irreducible_loss=np.zeros(n),
                             rho_floor=online.RHO_PAPER_FLOOR)
    assert online.max_weight(s.probs) == pytest.approx(101.0)


def test_standard_is_frozen_proxy_source_and_unweighted(ds):
    n = len(ds.train)
    y = ds.train.y.numpy()
    g = np.linspace(1.0, 2.0, n)
    s = online.make_sampling("standard_is", ds, y, cfg(), is_source="proxy", proxy_gradnorm=g, is_floor=0.0)
    assert s.refresh is None and s.reweight   # frozen: one fixed p, proportional to the proxies' bound
    np.testing.assert_allclose(s.probs, g / g.sum())
    assert online.needs_proxies("standard_is", "proxy") and not online.needs_proxies("standard_is")
    for m, kw in (("standard_is", {}), ("rho_faithful", {"irreducible_loss": np.zeros(n)}),
                  ("dris", {"disagreement": g})):
        assert not online.make_sampling(m, ds, y, cfg(), reweight=False, **kw).reweight


# ---------------------------------------------------------------- RHO-LOSS holdout


def test_holdout_split_is_disjoint_seeded_and_never_the_test_set(ds):
    keep, hold = online.holdout_split(len(ds.train), 40, seed=0)
    assert len(hold) == 40 and len(keep) == len(ds.train) - 40
    assert not set(keep) & set(hold) and set(keep) | set(hold) == set(range(len(ds.train)))
    k2, h2 = online.holdout_split(len(ds.train), 40, seed=0)
    np.testing.assert_array_equal(h2, hold)
    sub = online.keep_dataset(ds, keep)
    assert len(sub.train) == len(keep) and sub.test is ds.test
    assert torch.equal(sub.train.x, ds.train.x[torch.as_tensor(keep)])


def test_train_irreducible_scores_only_the_kept_examples(ds):
    labels = ds.train.y.numpy()
    irr = online.train_irreducible(ds, labels, 50, "linear", cfg(), seed=0)
    assert len(irr.loss) == len(irr.keep) == len(ds.train) - 50 and len(irr.holdout) == 50
    assert np.all(np.isfinite(irr.loss)) and np.all(irr.loss >= 0) and not irr.diverged
