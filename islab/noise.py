"""Label-noise injection (docs/METHODS.md section 2).

Every function takes the clean labels and a numpy Generator and returns (noisy, mask), where
mask[i] is True exactly for the examples whose label was changed.  Exactly n_corrupt(N, rate)
examples are corrupted (rate * N rounded half up, see `n_corrupt`), and a corrupted label
never equals the clean one.
"""
from __future__ import annotations

import math
from fractions import Fraction

import numpy as np

# The no-noise setting is spelled `clean` in every flag, file and table; `none` (its former
# spelling) is still accepted as input (`kind_name`).
MULTICLASS_KINDS = ("clean", "uniform", "targeted", "pair")
BINARY_KINDS = ("clean", "uniform", "targeted", "rare")
ALIASES = {"none": "clean"}


def kind_name(kind: str) -> str:
    """The one spelling of a noise kind (`none` -> `clean`)."""
    return ALIASES.get(kind, kind)


def check_rate(rate: float) -> float:
    if not 0.0 <= float(rate) < 1.0:
        raise ValueError(f"corruption rate must lie in [0, 1), got {rate}")
    return float(rate)


def n_corrupt(n: int, rate: float) -> int:
    """How many of n examples a rate corrupts: rate * n rounded half UP.

    The product is taken exactly on the decimal the rate was written as (Fraction of its
    shortest repr), so n_corrupt(10, 0.25) = 3, n_corrupt(10, 0.35) = 4 and n_corrupt(10, 0.15) = 2
    even though 0.35 * 10 is 3.4999999999999996 in floating point.  (Python's round() rounds
    half to EVEN, which gave n_corrupt(10, 0.25) = 2: a rule nobody writes in a paper.)
    """
    exact = Fraction(repr(check_rate(rate))) * int(n)
    return int(math.floor(exact + Fraction(1, 2)))


def _other_class(labels: np.ndarray, num_classes: int, rng: np.random.Generator) -> np.ndarray:
    """A label drawn uniformly from the C-1 classes other than each given label."""
    shift = rng.integers(1, num_classes, size=len(labels))
    return (labels + shift) % num_classes


def _flip_at(labels, chosen, new_labels):
    noisy = labels.copy()
    noisy[chosen] = new_labels
    mask = np.zeros(len(labels), dtype=bool)
    mask[chosen] = True
    return noisy, mask


def uniform_flip(labels, rate, num_classes, rng):
    """Symmetric noise: n_corrupt(N, rate) examples, chosen uniformly, get a uniform other class."""
    labels = np.asarray(labels, dtype=np.int64)
    chosen = np.sort(rng.choice(len(labels), size=n_corrupt(len(labels), rate), replace=False))
    return _flip_at(labels, chosen, _other_class(labels[chosen], num_classes, rng))


def top_indices(score, k: int) -> np.ndarray:
    """Indices of the k largest scores; ties broken by the lower index (stable, deterministic)."""
    order = np.argsort(-np.asarray(score, dtype=np.float64), kind="stable")
    return np.sort(order[:k])


def targeted_flip(labels, rate, num_classes, score, rng):
    """Targeted noise: the n_corrupt(N, rate) examples with the highest attacker score are flipped.

    `score` is the attacker's per-example gradient norm on the clean labels (docs/METHODS.md section 2).
    """
    labels = np.asarray(labels, dtype=np.int64)
    assert len(score) == len(labels), "one attacker score per example"
    chosen = top_indices(score, n_corrupt(len(labels), rate))
    return _flip_at(labels, chosen, _other_class(labels[chosen], num_classes, rng))


def pair_flip(labels, rate, num_classes, rng):
    """Pair noise (AUM's "flip"): n_corrupt(N, rate) uniformly chosen examples get class (c+1) mod C."""
    labels = np.asarray(labels, dtype=np.int64)
    chosen = np.sort(rng.choice(len(labels), size=n_corrupt(len(labels), rate), replace=False))
    return _flip_at(labels, chosen, (labels[chosen] + 1) % num_classes)


def corrupt_labels(labels, kind, rate, num_classes, rng, score=None):
    """Dispatch on the noise kind of a multi-class data set.  `score` only for 'targeted'."""
    labels = np.asarray(labels, dtype=np.int64)
    kind = kind_name(kind)
    if kind == "clean" or n_corrupt(len(labels), rate) == 0:
        return labels.copy(), np.zeros(len(labels), dtype=bool)
    if kind == "uniform":
        return uniform_flip(labels, rate, num_classes, rng)
    if kind == "pair":
        return pair_flip(labels, rate, num_classes, rng)
    if kind == "targeted":
        if score is None:
            raise ValueError("targeted noise needs the attacker's per-example score")
        return targeted_flip(labels, rate, num_classes, score, rng)
    raise ValueError(f"unknown noise kind {kind!r}; choose from {', '.join(MULTICLASS_KINDS)}")


def binary_flip(y, kind, rate, rng, score=None, rare=None):
    """Sign flips of +-1 labels (convex family).

    uniform: random examples; targeted: the top examples by `score` (gradient norm at the clean
    optimum); rare: uniformly chosen inside the rare cluster (`rare` boolean mask), at most
    its size.  The count is n_corrupt(N, rate) (half up) in every case, so rates are comparable
    across kinds.
    """
    y = np.asarray(y, dtype=np.float64)
    n = len(y)
    k = n_corrupt(n, rate)
    kind = kind_name(kind)
    if kind == "clean" or k == 0:
        chosen = np.array([], dtype=np.int64)
    elif kind == "uniform":
        chosen = np.sort(rng.choice(n, size=k, replace=False))
    elif kind == "targeted":
        if score is None:
            raise ValueError("targeted binary noise needs the per-example gradient norm")
        chosen = top_indices(score, k)
    elif kind == "rare":
        if rare is None:
            raise ValueError("rare binary noise needs the rare-cluster mask")
        pool = np.flatnonzero(rare)
        if k > len(pool):
            raise ValueError(f"rare noise asks for {k} flips but the rare cluster has {len(pool)}")
        chosen = np.sort(rng.choice(pool, size=k, replace=False))
    else:
        raise ValueError(f"unknown binary noise kind {kind!r}; choose from {', '.join(BINARY_KINDS)}")
    noisy = y.copy()
    noisy[chosen] = -noisy[chosen]
    mask = np.zeros(n, dtype=bool)
    mask[chosen] = True
    return noisy, mask
