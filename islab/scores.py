"""Per-example scores from proxy runs (docs/METHODS.md section 3).

Pure functions on arrays indexed by example id (numpy for the ensemble statistics; torch for
the per-batch quantities the trainer computes from logits it already has), plus two on-device
trackers that accumulate AUM margins and forgetting events during training.
"""
from __future__ import annotations

import numpy as np
from scipy.stats import rankdata

# ---------------------------------------------------------------- ensemble statistics (numpy)


def normalised_ranks(losses) -> np.ndarray:
    """Per proxy, rank the N losses (average rank for ties) and map to [0, 1].

    losses: (K, N).  Returns r with r[k, i] = (rank - 1) / (N - 1); higher = harder.
    """
    losses = np.atleast_2d(np.asarray(losses, dtype=np.float64))
    n = losses.shape[1]
    assert n >= 2, "ranking needs at least two examples"
    return (rankdata(losses, method="average", axis=1) - 1.0) / (n - 1)


def rank_variance(ranks, ddof: int = 0) -> np.ndarray:
    """DR-IS disagreement s_i: variance over proxies of the normalised ranks.

    ddof=0 is the 1/K normalisation (our default; the one the theory constants in
    islab.theory use); ddof=1 gives the unbiased 1/(K-1) version.  Rankings are identical.
    """
    ranks = np.atleast_2d(np.asarray(ranks, dtype=np.float64))
    v = ranks.var(axis=0, ddof=ddof)
    # Identical ranks give ~1e-33 of round-off instead of 0; a smoothed distribution built
    # from such values would rank pure noise, so snap them to exact zero.
    v[v < 1e-15] = 0.0
    return v


def consensus_rank(ranks) -> np.ndarray:
    """Consensus-loss: mean over proxies of the normalised rank (high = consistently hard)."""
    return np.atleast_2d(np.asarray(ranks, dtype=np.float64)).mean(axis=0)


def rho_score(current_loss, irreducible_loss) -> np.ndarray:
    """RHO-LOSS reducible loss: training loss minus the irreducible (holdout-model) loss."""
    return np.asarray(current_loss, dtype=np.float64) - np.asarray(irreducible_loss, dtype=np.float64)


def hybrid_score(disagreement, gradnorm, lam: float) -> np.ndarray:
    """(1 - lam) * s + lam * gradnorm, both first mapped to [0, 1] by their normalised rank
    so the mix does not depend on their units (docs/METHODS.md section 4 hybrid ablation)."""
    assert 0.0 <= lam <= 1.0, "lambda must lie in [0, 1]"
    r = normalised_ranks(np.stack([disagreement, gradnorm]))
    return (1.0 - lam) * r[0] + lam * r[1]


# ---------------------------------------------------------------- from logits (torch)


def cross_entropy_terms(logits, labels):
    """softmax probabilities and the residual p - onehot(y), in float32."""
    import torch

    probs = torch.softmax(logits.float(), dim=1)
    resid = probs.clone()
    resid[torch.arange(len(labels), device=labels.device), labels] -= 1.0
    return probs, resid


def el2n(logits, labels):
    """EL2N = ||softmax(z) - onehot(y)||_2 per example."""
    return cross_entropy_terms(logits, labels)[1].norm(dim=1)


def gradnorm_bound(logits, labels, features):
    """Exact norm of the last linear layer's (weight and bias) loss gradient, per example:
    ||softmax(z) - onehot(y)|| * sqrt(||h||^2 + 1), h the penultimate features."""
    return el2n(logits, labels) * (features.float().pow(2).sum(dim=1) + 1.0).sqrt()


def margins(logits, labels):
    """Logit margin z_y - max_{k != y} z_k per example."""
    import torch

    z = logits.float()
    rows = torch.arange(len(labels), device=labels.device)
    true = z[rows, labels]
    other = z.clone()
    other[rows, labels] = float("-inf")
    return true - other.max(dim=1).values


class AUMTracker:
    """Running mean of the training-mode margin of each example, over all its presentations."""

    def __init__(self, n: int, device="cpu"):
        import torch

        self.total = torch.zeros(n, dtype=torch.float64, device=device)
        self.count = torch.zeros(n, dtype=torch.int64, device=device)

    def update(self, idx, logits, labels):
        m = margins(logits.detach(), labels).double()
        self.total.index_add_(0, idx, m)
        self.count.index_add_(0, idx, torch_ones_like(idx))

    def value(self) -> np.ndarray:
        return aum_value(self.total, self.count)


def aum_value(total, count) -> np.ndarray:
    """Mean margin per example from running (total, count) tensors; NaN where never presented."""
    c = count.clamp(min=1).double()
    out = (total / c).cpu().numpy()
    out[count.cpu().numpy() == 0] = np.nan  # never presented: no margin to average
    return out


class ForgettingTracker:
    """Forgetting events (Toneva et al.): correct -> incorrect transitions between consecutive
    presentations of an example.  Examples never classified correctly get max(count) + 1."""

    def __init__(self, n: int, device="cpu"):
        import torch

        self.prev = torch.zeros(n, dtype=torch.bool, device=device)
        self.ever = torch.zeros(n, dtype=torch.bool, device=device)
        self.events = torch.zeros(n, dtype=torch.int64, device=device)

    def update(self, idx, logits, labels):
        # If an index repeats inside one batch (sampling with replacement), the presentations
        # are simultaneous; we keep one (the last write wins), which is the natural reading.
        correct = logits.detach().argmax(dim=1) == labels
        forgotten = self.prev[idx] & ~correct
        self.events.index_add_(0, idx, forgotten.long())
        self.prev[idx] = correct
        self.ever[idx] |= correct

    def value(self) -> np.ndarray:
        return forgetting_value(self.events, self.ever)


def forgetting_value(events, ever) -> np.ndarray:
    """Forgetting counts from (events, ever-correct) tensors of one run; examples never classified
    correctly get the run's max(count) + 1."""
    ev = events.cpu().numpy().astype(np.float64)
    never = ~ever.cpu().numpy()
    if never.any():
        ev[never] = (ev[~never].max() if (~never).any() else 0.0) + 1.0
    return ev


def torch_ones_like(idx):
    import torch

    return torch.ones_like(idx, dtype=torch.int64)


# ---------------------------------------------------------------- method scores from an ensemble

# Each static/online method's per-example score, computed from one cached proxy run.
# Convention: high = keep / sample more.  AUM is "high = confidently learned", so the AUM
# method keeps the highest margins (docs/METHODS.md section 4).
ENSEMBLE_SCORES = ("dris", "consensus", "el2n", "gradnorm", "forgetting", "aum", "loss")


def ensemble_score(ens, name: str, ddof: int = 0) -> np.ndarray:
    """One (N,) score from a ProxyEnsemble (islab.proxies): rank statistics use the snapshot
    losses; the others average the per-proxy statistic over proxies."""
    if name == "dris":
        return rank_variance(normalised_ranks(ens["loss"]), ddof=ddof)
    if name == "consensus":
        return consensus_rank(normalised_ranks(ens["loss"]))
    if name in ("el2n", "gradnorm", "forgetting", "aum", "loss"):
        return np.asarray(ens[name], dtype=np.float64).mean(axis=0)
    raise ValueError(f"unknown score {name!r}; choose from {', '.join(ENSEMBLE_SCORES)}")
