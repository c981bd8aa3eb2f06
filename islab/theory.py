"""Theory quantities and detection metrics (SPEC sections 4 and 6).

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
