import numpy as np
import pytest
import torch

from islab import sampling
from islab.loader import load_script
from islab.seeding import torch_generator


@pytest.mark.parametrize("make", [
    lambda s: sampling.uniform_probs(len(s)),
    lambda s: sampling.proportional_probs(s, floor=1e-3),
    lambda s: sampling.partially_biased_probs(s),
    lambda s: sampling.smoothed_probs(s, 0.1),
])
def test_distributions_sum_to_one_and_are_positive(make):
    s = np.array([0.0, 1.0, 5.0, 0.2, 3.0])
    p = make(s)
    assert p.sum() == pytest.approx(1.0) and np.all(p > 0)


def test_known_values():
    np.testing.assert_allclose(sampling.partially_biased_probs([1, 3]), [0.25 + 0.125, 0.25 + 0.375])
    # c = 0.1 * mean([0, 2]) = 0.1 -> (0.1, 2.1) / 2.2
    np.testing.assert_allclose(sampling.smoothed_probs([0, 2], 0.1), [0.1 / 2.2, 2.1 / 2.2])
    np.testing.assert_allclose(sampling.importance_weights([0.5, 0.25, 0.25], [0, 1]), [2 / 3, 4 / 3])
    assert sampling.mass_on([0.2, 0.3, 0.5], [True, False, True]) == pytest.approx(0.7)


def test_weighted_sampler_gradient_estimate_is_unbiased():
    # f_i(w) = 0.5 * (w - a_i)^2 -> grad_i = w - a_i; the weighted minibatch mean is unbiased
    rng = np.random.default_rng(0)
    a = rng.normal(size=50) * np.linspace(0.1, 10, 50)
    w = 0.7
    full = np.mean(w - a)
    p = sampling.proportional_probs(np.abs(w - a), floor=0.01)
    sampler = sampling.WeightedSampler(p)
    g = torch_generator(0, "sampler")
    ests = []
    for _ in range(4000):
        idx, wt = sampler.draw(16, g)
        ests.append(np.mean(wt.numpy() * (w - a[idx.numpy()])))
    ests = np.array(ests)
    se = ests.std() / np.sqrt(len(ests))
    assert abs(ests.mean() - full) < 4 * se
    # with p proportional to |gradient| the per-draw variance is lower than uniform sampling's
    uni = sampling.WeightedSampler(sampling.uniform_probs(50))
    assert torch.allclose(uni.weight, torch.ones(50))
    uests = []
    for _ in range(4000):
        idx, wt = uni.draw(16, g)
        uests.append(np.mean(wt.numpy() * (w - a[idx.numpy()])))
    assert ests.var() < np.var(uests)


def test_exact_expectation_of_weights():
    # E_p[w_i g_i] = sum_i p_i * g_i / (N p_i) = mean(g), exactly
    p = np.array([0.1, 0.2, 0.3, 0.4])
    g = np.array([4.0, -1.0, 2.0, 0.5])
    w = sampling.importance_weights(p, np.arange(4))
    assert np.sum(p * w * g) == pytest.approx(g.mean())


def test_sampler_draws_follow_p():
    p = np.array([0.7, 0.2, 0.1])
    idx, _ = sampling.WeightedSampler(p).draw(20000, torch_generator(1, "sampler"))
    freq = np.bincount(idx.numpy(), minlength=3) / 20000
    np.testing.assert_allclose(freq, p, atol=0.015)


def test_one_floor_rule_for_standard_and_loss_is_in_both_families():
    # known values: clipped score [0, 1, 3, 0] (mean 1); floor 0.1 adds 0.1 -> [0.1, 1.1, 3.1, 0.1] / 4.4
    p = sampling.relative_floor_probs([-2.0, 1.0, 3.0, 0.0])
    np.testing.assert_allclose(p, np.array([0.1, 1.1, 3.1, 0.1]) / 4.4)
    assert 1.0 / (4 * p.min()) <= (1 + sampling.IS_FLOOR) / sampling.IS_FLOOR  # weight bound 11
    # the convex family (Loss IS, gradient-norm IS) and the DL family (Standard IS) share it
    from pathlib import Path

    from islab import convex, online

    assert sampling.IS_FLOOR == 0.1
    assert convex.SGDConfig().floor == sampling.IS_FLOOR
    assert not hasattr(online, "relative_floor_probs") and not hasattr(online, "dris_probs")   # one name each
    w = np.array([0.5, -1.0])
    X = np.array([[1.0, 0.0], [0.0, 2.0], [3.0, 1.0]])
    y = np.array([1.0, 1.0, -1.0])
    np.testing.assert_array_equal(convex.refreshed_probs("loss", w, X, y, sampling.IS_FLOOR),
                                  sampling.relative_floor_probs(convex.losses(w, X, y)))
    mod = load_script(Path(__file__).resolve().parents[2] / "DR-IS" / "online.py", "dris_online")
    assert mod.build_parser().get_default("is_floor") == sampling.IS_FLOOR


def test_n_keep_rounds_half_up_on_the_written_decimal():
    """docs/METHODS.md section 4: alpha N rounded half up (the noise count's rule), at least 1."""
    assert [sampling.n_keep(n, a) for n, a in ((10, 0.25), (10, 0.35), (10, 0.15), (5, 0.5), (1437, 0.5),
                                               (1437, 0.3), (3, 0.1), (7, 1.0))] == [3, 4, 2, 3, 719, 431, 1, 7]
    rng = np.random.default_rng(0)
    assert len(sampling.keep_top_fraction(np.arange(10.0), 0.25)) == 3
    assert len(sampling.random_subset(10, 0.25, rng)) == 3
    # the uniform mix inside the subset rounds half up too: beta 0.5 of 3 kept -> 2 uniform, 1 top
    mixed = sampling.keep_top_fraction(np.arange(10.0), 0.25, rng=rng, beta=0.5)
    assert len(mixed) == 3 and 9 in mixed and not {8, 7} <= set(mixed.tolist())


def test_smoothed_probs_at_gamma_zero_is_the_unsmoothed_distribution():
    """gamma = 0: p proportional to s exactly (s = 0 never drawn); it used to add a 1e-12 floor,
    which gave such an example a weight of about 1e11 if it was ever drawn."""
    p = sampling.smoothed_probs([0.0, 1.0, 3.0], 0.0)
    np.testing.assert_array_equal(p, [0.0, 0.25, 0.75])
    np.testing.assert_allclose(sampling.smoothed_probs([0.0, 0.0], 0.1), [0.5, 0.5])   # nothing to prefer
    np.testing.assert_allclose(sampling.smoothed_probs([0.0, 0.0], 0.0), [0.5, 0.5])
    # the weight bound (1 + gamma) / gamma of a positive gamma
    p = sampling.smoothed_probs([0.0, 1.0, 3.0, 2.0], 0.1)
    assert float(sampling.importance_weights(p, [0])[0]) == pytest.approx(11.0)
