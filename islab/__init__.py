"""islab: the shared library of the importance-sampling-under-label-noise experiments.

Small modules with one job each; the experiment scripts compose them.  Importing islab has
no side effects (no seeding, no device set-up, no file I/O) and imports neither torch nor
numpy: the public DR-IS API (islab.dris, docs/own-data.md "DR-IS on your own data") is loaded on
first use, e.g. `islab.rank_disagreement(losses)` or `from islab import ImportanceSampler`.
"""
from __future__ import annotations

__version__ = "0.1.0"

# name -> module of the public API, imported lazily (PEP 562)
_PUBLIC = {name: "islab.dris" for name in (
    "rank_disagreement", "consensus", "normalised_ranks", "select_top", "online_probs", "importance_weights",
    "losses_from_probs", "cross_fit_losses",
    "ImportanceSampler", "DistributedImportanceSampler", "WithIndex", "proxy_statistics", "per_example_scores")}
_PUBLIC["TrainingDynamics"] = "islab.dynamics"

__all__ = sorted(_PUBLIC)


def __getattr__(name: str):
    if name in _PUBLIC:
        import importlib

        return getattr(importlib.import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'islab' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_PUBLIC))
