"""Importance-sampling distributions and the unbiased weighted sampler (docs/METHODS.md section 1).

A sampler draws index i with probability p_i, with replacement; the step uses the weight
1 / (N p_i), so E[w_i grad f_i] = (1/N) sum_i grad f_i: the estimate is unbiased for any p
that is positive wherever a gradient can be non-zero.  Distributions are float64 numpy
vectors that sum to 1; the sampler moves one copy to the device.
"""
from __future__ import annotations

import math
from fractions import Fraction

import numpy as np

DISTRIBUTIONS = ("uniform", "proportional", "partially_biased", "smoothed")


def _normalise(w) -> np.ndarray:
    w = np.asarray(w, dtype=np.float64)
    if w.ndim != 1 or not np.all(np.isfinite(w)) or not np.all(w >= 0):
        raise ValueError("sampling weights must be a 1-D array of finite values >= 0")
    total = w.sum()
    if not total > 0:
        raise ValueError("sampling weights must not all be zero")
    return w / total


def check_distribution(p, positive: bool = True, name: str = "p") -> np.ndarray:
    """p as float64 after checking that it is a distribution over N >= 1 examples: 1-D, finite,
    >= 0, summing to 1 (within 1e-6), and, with positive=True, every p_i > 0 (an example with
    p_i = 0 would need the infinite weight 1/(N p_i) to keep the estimate unbiased).  ValueError
    with a clear message otherwise, naming the argument `name`."""
    p = np.asarray(p, dtype=np.float64)
    if p.ndim != 1 or len(p) < 1:
        raise ValueError(f"{name} must be a 1-D array over the N examples, got shape {p.shape}")
    if not np.all(np.isfinite(p)) or np.any(p < 0):
        raise ValueError(f"{name} must hold finite probabilities >= 0 (found NaN, inf or a negative value)")
    if abs(p.sum() - 1.0) > 1e-6:
        raise ValueError(f"{name} must sum to 1, sums to {p.sum():.9g}")
    if positive and np.any(p == 0):
        raise ValueError(f"{name} is 0 for {int((p == 0).sum())} example(s) (first: {int(np.argmax(p == 0))}); their "
                         "importance weight 1/(N p) would be infinite: smooth it first (online_probs, gamma > 0)")
    return p


def uniform_probs(n: int) -> np.ndarray:
    return np.full(n, 1.0 / n)


def proportional_probs(score, floor: float = 0.0) -> np.ndarray:
    """p_i proportional to max(score_i, 0) + floor (floor > 0 keeps every p_i positive)."""
    return _normalise(np.maximum(np.asarray(score, dtype=np.float64), 0.0) + floor)


# The floor rule of every magnitude-proportional sampler (Standard IS, Loss IS, gradient-norm IS),
# in the convex and the deep-learning families alike: p_i ∝ max(s_i, 0) + IS_FLOOR * mean_j max(s_j, 0).
# Why 0.1: (1) it is the DR-IS smoothing gamma (docs/METHODS.md section 5), so Standard IS, Loss IS and DR-IS
# differ only in their score, never in how much uniform mass is mixed in; (2) these distributions
# are refreshed once per epoch and then frozen while the model moves, and the estimator stays
# unbiased only if p_i > 0 wherever the gradient can be non-zero (docs/METHODS.md section 1): with floor 0 an
# example whose score was ~0 at the refresh is never drawn even after its gradient grows; (3) the
# largest importance weight is bounded by (1 + floor) / floor = 11, instead of being unbounded.
IS_FLOOR = 0.1


def relative_floor_probs(score, floor: float = IS_FLOOR) -> np.ndarray:
    """p_i proportional to max(score_i, 0) + floor * mean_j max(score_j, 0).

    score: (N,) finite.  The floor is relative to the mean clipped score, so p does not depend
    on the score's units, and every weight 1/(N p_i) is at most (1 + floor) / floor.  floor 0 is
    the plain proportional rule (an example with score 0 is never drawn).  A score that is
    nowhere positive gives the uniform distribution (nothing to prefer).
    """
    assert floor >= 0, "floor must be >= 0"
    clipped = np.maximum(np.asarray(score, dtype=np.float64), 0.0)
    scale = clipped.mean()
    if scale <= 0:
        return uniform_probs(len(clipped))
    return proportional_probs(clipped, floor=floor * scale)


def partially_biased_probs(bound) -> np.ndarray:
    """Needell et al.: p_i = 1/(2N) + G_i / (2 sum_j G_j)."""
    g = np.asarray(bound, dtype=np.float64)
    return 0.5 / len(g) + 0.5 * _normalise(g)


def smoothed_probs(score, gamma: float = 0.1) -> np.ndarray:
    """DR-IS online: p_i = (s_i + c) / sum_j (s_j + c), c = gamma * mean(s) (docs/METHODS.md section 5).

    gamma > 0 is a floor relative to the mean score: every weight 1/(N p_i) is at most
    (1 + gamma) / gamma.  gamma = 0 is the unsmoothed p proportional to s: an example with s_i = 0
    gets p_i = 0 and is never drawn (no weight of 1e11 from a tiny artificial floor).  A score that
    is 0 everywhere gives the uniform distribution (nothing to prefer)."""
    s = np.asarray(score, dtype=np.float64)
    assert gamma >= 0, "gamma must be >= 0"
    if not s.sum() > 0:
        return uniform_probs(len(s))
    return _normalise(s + gamma * s.mean())


def importance_weights(probs, ids=None) -> np.ndarray:
    """1 / (N p_i) for the example ids (default: all N) of the sampling probabilities `probs`:
    E_{i ~ p}[w_i l_i] = mean(l).  ValueError when probs is not a distribution or p_i = 0 (or so
    small that 1/(N p_i) overflows) where a weight is asked for; TypeError for a tensor that requires
    grad or complex values.  The one definition: islab.importance_weights is this function."""
    from islab.checks import check_ids, real_array   # torch: only when weights are asked for

    p = check_distribution(real_array(probs, "probs"), positive=False, name="probs")
    ids = np.arange(len(p)) if ids is None else check_ids(ids, len(p))
    zero = p[ids] == 0
    if zero.any():
        raise ValueError(f"probs is 0 at example {int(ids[np.argmax(zero)])}: its importance weight 1/(N p) is "
                         "infinite (it can never be drawn); smooth it first (online_probs with gamma > 0)")
    with np.errstate(over="ignore", divide="ignore"):
        w = 1.0 / (len(p) * p[ids])
    if not np.all(np.isfinite(w)):   # p_i so small (subnormal) that N p_i underflows
        i = int(ids[np.argmax(~np.isfinite(w))])
        raise ValueError(f"probs[{i}] = {p[i]:.3g} is so small that its importance weight 1/(N p) overflows to inf; "
                         "smooth it first (online_probs with gamma > 0)")
    return w


def mass_on(p, mask) -> float:
    """Probability mass a distribution puts on a set (e.g. the corrupted examples; Theorem 2)."""
    return float(np.asarray(p, dtype=np.float64)[np.asarray(mask, dtype=bool)].sum())


def effective_sample_size(p) -> float:
    """1 / sum p_i^2 as a fraction of N: 1 for uniform, small for a peaked distribution."""
    p = np.asarray(p, dtype=np.float64)
    return float(1.0 / np.square(p).sum() / len(p))


class WeightedSampler:
    """Draws minibatches i.i.d. from p (with replacement) and returns their 1/(N p) weights.

    Lives on the device: one torch.multinomial and a gather per batch.
    """

    def __init__(self, p, device="cpu"):
        import torch

        p = check_distribution(p, positive=False)   # p_i = 0: never drawn, so its weight is never read
        self.n = len(p)
        self.p = torch.as_tensor(p, dtype=torch.float64, device=device)
        # weights in float32 for the loss; computed in float64 first to keep tiny p exact
        self.weight = (1.0 / (self.n * self.p.clamp(min=1e-300))).float()

    def draw(self, batch_size: int, generator):
        import torch

        idx = torch.multinomial(self.p, batch_size, replacement=True, generator=generator)
        return idx, self.weight[idx]


def n_keep(n: int, alpha: float) -> int:
    """How many of n examples a keep fraction alpha keeps: alpha * n rounded half UP (at least 1),
    taken exactly on the decimal alpha was written as, the rule of islab.noise.n_corrupt
    (docs/METHODS.md sections 2 and 4): n_keep(5, 0.5) = 3, n_keep(1437, 0.5) = 719, where
    Python's round() (half to even) gives 2 and 718."""
    return max(1, _half_up(alpha, n))


def _half_up(fraction: float, n: int) -> int:
    return int(math.floor(Fraction(repr(float(fraction))) * int(n) + Fraction(1, 2)))


def keep_top_fraction(score, alpha: float, rng: np.random.Generator | None = None,
                      beta: float = 0.0) -> np.ndarray:
    """Static selection (docs/METHODS.md section 4): the n_keep(N, alpha) ids with the highest score,
    of which a fraction beta is instead drawn uniformly from the rest (uniform mix, paper D.6).

    Ties are broken by the lower id.  Returns sorted ids.  alpha in (0, 1], beta in [0, 1];
    how many: n_keep (alpha N rounded half up, at least 1).
    """
    from islab.noise import top_indices

    score = np.asarray(score, dtype=np.float64)
    n = len(score)
    if not (0 < alpha <= 1 and 0 <= beta <= 1):
        raise ValueError(f"alpha must lie in (0, 1] and beta in [0, 1], got alpha {alpha}, beta {beta}")
    m = n_keep(n, alpha)
    n_uniform = _half_up(beta, m)   # rounded half up too
    top = top_indices(score, m - n_uniform)
    if n_uniform == 0:
        return top
    assert rng is not None, "a uniform mix needs a generator"
    rest = np.setdiff1d(np.arange(n), top)
    return np.sort(np.concatenate([top, rng.choice(rest, size=n_uniform, replace=False)]))


def random_subset(n: int, alpha: float, rng: np.random.Generator) -> np.ndarray:
    """The Random baseline: n_keep(N, alpha) ids drawn uniformly without replacement."""
    return np.sort(rng.choice(n, size=n_keep(n, alpha), replace=False))


def keep_top_fraction_per_class(score, labels, alpha: float, rng: np.random.Generator | None = None,
                                beta: float = 0.0) -> np.ndarray:
    """Class-balanced static selection (our extension, not in the DR-IS paper): within each class
    c of `labels` (the labels the trainer sees, i.e. the possibly noisy ones), keep_top_fraction
    of that class's examples, so every class keeps about the same fraction alpha.

    A global top-alpha can starve whole classes (on digits, DR-IS's top 30 % kept 16 examples
    of classes 3 and 9 but 76-78 of classes 4 and 6).  Returns sorted ids.
    """
    score = np.asarray(score, dtype=np.float64)
    labels = np.asarray(labels)
    if score.shape != labels.shape:
        raise ValueError(f"one label per score: score {score.shape}, labels {labels.shape}")
    kept = []
    for c in np.unique(labels):
        ids = np.flatnonzero(labels == c)
        kept.append(ids[keep_top_fraction(score[ids], alpha, rng=rng, beta=beta)])
    return np.sort(np.concatenate(kept))
