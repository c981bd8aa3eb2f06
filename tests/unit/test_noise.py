import numpy as np
import pytest

from islab import noise
from islab.seeding import numpy_rng


@pytest.mark.parametrize("kind", ["uniform", "pair"])
@pytest.mark.parametrize("rate", [0.0, 0.02, 0.1, 0.25, 0.5])
def test_exact_counts_and_labels_change(kind, rate):
    y = np.arange(1000) % 10
    noisy, mask = noise.corrupt_labels(y, kind, rate, 10, numpy_rng(3, "noise"))
    assert mask.sum() == round(rate * 1000)
    assert np.all(noisy[mask] != y[mask])           # never the original label
    assert np.all(noisy[~mask] == y[~mask])         # nothing else touched
    assert noisy.min() >= 0 and noisy.max() < 10


def test_pair_goes_to_next_class():
    y = np.array([0, 1, 2, 9, 9, 3])
    noisy, mask = noise.pair_flip(y, 0.5, 10, numpy_rng(0, "noise"))
    assert np.all(noisy[mask] == (y[mask] + 1) % 10)


def test_uniform_other_class_is_uniform():
    # every example flipped many times: the new label is uniform over the 9 other classes
    y = np.zeros(9000, dtype=np.int64)
    noisy, mask = noise.uniform_flip(y, 0.999, 10, numpy_rng(1, "noise"))
    counts = np.bincount(noisy[mask], minlength=10)
    assert counts[0] == 0
    assert counts[1:].min() > 0.8 * counts[1:].mean()


def test_same_seed_same_mask_and_different_seed_differs():
    y = np.arange(500) % 7
    a = noise.uniform_flip(y, 0.2, 7, numpy_rng(5, "noise"))
    b = noise.uniform_flip(y, 0.2, 7, numpy_rng(5, "noise"))
    c = noise.uniform_flip(y, 0.2, 7, numpy_rng(6, "noise"))
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert not np.array_equal(a[1], c[1])


def test_targeted_takes_top_scores():
    y = np.array([0, 1, 2, 0, 1, 2, 0, 1, 2, 0])
    score = np.array([0.1, 9, 0.3, 8, 0.2, 7, 0.0, 0.4, 0.5, 0.6])
    noisy, mask = noise.targeted_flip(y, 0.3, 3, score, numpy_rng(0, "noise"))
    assert set(np.flatnonzero(mask)) == {1, 3, 5}
    assert np.all(noisy[mask] != y[mask])


def test_rate_outside_unit_interval_rejected():
    with pytest.raises(ValueError):
        noise.n_corrupt(10, 1.0)
    with pytest.raises(ValueError):
        noise.n_corrupt(10, -0.1)


def test_rate_that_flips_nothing_changes_nothing():
    y = np.arange(10) % 3
    noisy, mask = noise.corrupt_labels(y, "uniform", 0.04, 3, numpy_rng(0, "noise"))  # round(0.4)=0
    assert not mask.any() and np.array_equal(noisy, y)


def test_binary_flips():
    y = np.where(np.arange(100) % 2 == 0, 1.0, -1.0)
    rare = np.zeros(100, dtype=bool)
    rare[:20] = True
    noisy, mask = noise.binary_flip(y, "rare", 0.1, numpy_rng(0, "noise"), rare=rare)
    assert mask.sum() == 10 and np.all(mask <= rare) and np.all(noisy[mask] == -y[mask])
    score = np.arange(100.0)
    noisy, mask = noise.binary_flip(y, "targeted", 0.05, numpy_rng(0, "noise"), score=score)
    assert set(np.flatnonzero(mask)) == {95, 96, 97, 98, 99}
    with pytest.raises(ValueError):
        noise.binary_flip(y, "rare", 0.5, numpy_rng(0, "noise"), rare=rare)


@pytest.mark.parametrize("n, rate, expected", [
    (10, 0.25, 3),     # 2.5 -> 3 (round half to even gave 2)
    (10, 0.35, 4),     # 3.5 -> 4 although 0.35 * 10 == 3.4999999999999996 in floating point
    (10, 0.15, 2),     # 1.5 -> 2
    (10, 0.45, 5),     # 4.5 -> 5
    (10, 0.05, 1),     # 0.5 -> 1
    (10, 0.04, 0),     # 0.4 -> 0
    (3, 0.5, 2),       # 1.5 -> 2
    (1437, 0.1, 144),  # 143.7 -> 144 (digits: unchanged from the old rule)
    (1437, 0.25, 359),  # 359.25 -> 359
    (50000, 0.25, 12500),
    (10, 0.0, 0),
])
def test_n_corrupt_rounds_half_up(n, rate, expected):
    assert noise.n_corrupt(n, rate) == expected


def test_n_corrupt_counts_what_the_flips_flip():
    y = np.arange(10) % 3
    for kind in ("uniform", "pair"):
        _, mask = noise.corrupt_labels(y, kind, 0.25, 3, numpy_rng(0, "noise"))
        assert mask.sum() == 3
    _, mask = noise.targeted_flip(y, 0.25, 3, np.arange(10.0), numpy_rng(0, "noise"))
    assert set(np.flatnonzero(mask)) == {7, 8, 9}
    _, mask = noise.binary_flip(np.ones(10), "uniform", 0.25, numpy_rng(0, "noise"))
    assert mask.sum() == 3
