"""Argument checks of the public API (islab.dris, islab.dynamics): a bad argument raises
ValueError or TypeError naming it, never a silent conversion (a truncated count or label, a
dropped imaginary part, a tensor detached from its graph without the caller knowing)."""
from __future__ import annotations

import numpy as np
import torch


def real_array(x, name: str) -> np.ndarray:
    """x (array-like or tensor) as a float64 numpy array; TypeError naming the argument for a tensor
    that requires grad (scores are no part of a graph: the caller detaches, knowingly), complex
    values (np.asarray would drop the imaginary part with only a warning) or non-numbers."""
    if isinstance(x, torch.Tensor):
        if x.requires_grad:
            raise TypeError(f"{name} is a tensor that requires grad; pass {name}.detach() (DR-IS scores "
                            "are computed from values, not differentiated)")
        x = x.detach().cpu().numpy()
    a = np.asarray(x)
    if np.iscomplexobj(a):
        raise TypeError(f"{name} holds complex numbers ({a.dtype}); pass real values (e.g. {name}.real)")
    if a.dtype.kind not in "biuf":
        raise TypeError(f"{name} must hold real numbers, got dtype {a.dtype}")
    return a.astype(np.float64)


def check_labels(labels, n: int) -> np.ndarray:
    """labels as (N,) int64 class ids; ValueError for NaN or fractional values (never truncated)."""
    y = real_array(labels, "labels")
    if y.shape != (n,):
        raise ValueError(f"labels must have one entry per example: {n} examples, labels {y.shape}")
    bad = ~np.isfinite(y) | (y != np.round(y)) | (y < 0)
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(f"labels must be class ids (integers >= 0); labels[{i}] = {float(y[i])!r}")
    return y.astype(np.int64)


def check_count(v, name: str, lo: int = 1) -> int:
    """A count argument as an int >= lo; ValueError for a fractional one (never truncated) or a bool."""
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer, float, np.floating)) \
            or not float(v).is_integer():
        raise ValueError(f"{name} is a count and must be a whole number, got {v!r}")
    if int(v) < lo:
        raise ValueError(f"{name} must be >= {lo}, got {v!r}")
    return int(v)


def check_ids(ids, n: int) -> np.ndarray:
    """ids as int64 after checking they are a 1-D sequence of example ids in 0..n-1."""
    a = np.asarray(ids.cpu() if isinstance(ids, torch.Tensor) else ids)
    if a.ndim == 0:
        raise ValueError(f"ids must be a 1-D sequence of example ids (a tensor, list or array), got the scalar "
                         f"{ids!r}: pass [{ids!r}] for one example")
    if a.ndim > 1 or not (np.issubdtype(a.dtype, np.integer) or a.size == 0):
        raise ValueError(f"ids must be integer example ids, shape (B,); got {a.dtype} {a.shape}")
    if a.size and (a.min() < 0 or a.max() >= n):
        raise ValueError(f"ids must lie in 0..{n - 1}, got {a.min()}..{a.max()}")
    return a.astype(np.int64)
