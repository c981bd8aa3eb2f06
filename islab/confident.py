"""cleanlab's confident learning on out-of-sample probabilities (the comparison of
DR-IS/cleanlab_compare.py and the `cleanlab` method of DR-IS/static.py).

cleanlab is a pinned requirement (requirements.txt) but imported only here, when used."""
from __future__ import annotations

import numpy as np

FILTERS = ("prune_by_noise_rate", "prune_by_class", "both", "confident_learning", "predicted_neq_given")


def label_issues(labels, probs, filter_by: str = "prune_by_noise_rate"):
    """(issues (N,) bool, quality (N,) float64) from cleanlab: `issues` is
    cleanlab.filter.find_label_issues(labels, probs, filter_by=...), the examples it flags;
    `quality` is cleanlab.rank.get_label_quality_scores (self-confidence: the probability of the
    given label; low = likely mislabelled).  probs must be out-of-sample (cross-validated)."""
    try:
        from cleanlab.filter import find_label_issues
        from cleanlab.rank import get_label_quality_scores
    except ImportError as e:   # a pinned requirement; say what to install
        raise ImportError("the cleanlab comparison needs the cleanlab package (pip install -r requirements.txt)") from e
    labels = np.asarray(labels, dtype=np.int64)
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2 or probs.shape[0] != len(labels):
        raise ValueError(f"probs must be (N, classes) for {len(labels)} labels, got {probs.shape}")
    if filter_by not in FILTERS:
        raise ValueError(f"unknown cleanlab filter {filter_by!r}; choose from {', '.join(FILTERS)}")
    # n_jobs=1: cleanlab would otherwise fork a process pool, whose workers inherit the scripts'
    # signal handlers (and torch); one process is deterministic and fast enough for N <= 60,000
    issues = find_label_issues(labels, probs, filter_by=filter_by, n_jobs=1)
    quality = get_label_quality_scores(labels, probs, method="self_confidence")
    return np.asarray(issues, dtype=bool), np.asarray(quality, dtype=np.float64)
