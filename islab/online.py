"""Online importance-sampling methods (docs/METHODS.md sections 1, 3 and 5; DR-IS Algorithm 2).

Each method is a sampling distribution over the training examples, handed to the one training
loop (islab.train) as a `Sampling`.  Weighted methods draw with replacement and weight the
loss by 1 / (N p_i), so the step is unbiased for the mean training loss (docs/METHODS.md section 1).

  uniform       ordinary shuffled epochs (without replacement; Sampling mode 'shuffle');
                weights all 1.  Not i.i.d. draws: the usual SGD baseline.
  standard_is   p proportional to the last-layer gradient-norm bound of the CURRENT target,
                recomputed every epoch over the full training set, + the relative floor
                islab.sampling.IS_FLOOR = 0.1 (the rule shared with the convex family's
                Standard IS and Loss IS; `is_floor=0` is the plain variance-optimal rule).
                With is_source='proxy' the bound comes instead from the proxies' snapshot
                (their mean gradient-norm bound at E_s), computed once and frozen: the
                sensitivity variant that isolates "refreshed target vs frozen proxy".
  rho_approx    RHO-LOSS "approximate": score = proxy mean loss - irreducible loss, computed
                once and frozen; p proportional to max(score, 0) + floor.
  rho_faithful  RHO-LOSS "faithful": score = current target loss - irreducible loss,
                recomputed every `rho_every` epochs; p proportional to max(score, 0) + floor.
  dris          DR-IS-online: p_i = (s_i + c) / sum_j (s_j + c), c = gamma * mean(s), s the
                proxy rank variance; fixed for the run.

Floors are RELATIVE (islab.sampling.relative_floor_probs): `floor` is a fraction of the mean
clipped score added to every example, so p does not depend on the score's units, and the largest
importance weight is bounded by (1 + floor) / floor (11 for the one default IS_FLOOR = 0.1, which
RHO-LOSS uses too; 101 for RHO_PAPER_FLOOR = 0.01, the RHO-LOSS paper's "small floor", which on
Fashion-MNIST lets a few weight-101 draws blow the target up).  With floor 0 an example whose
score is 0 is never drawn, and the weights are bounded only by the smallest positive score.

`reweight=False` draws from the same p but gives every drawn example weight 1 (the biased,
"unweighted" variant of a sampler: it then minimises the p-weighted loss, not the mean loss).

The irreducible (RHO-LOSS reference) model is trained on a held-out split of the TRAINING set
(never the test set); the RHO targets train on the rest (`keep_dataset`).  The holdout carries
the same label noise as the rest of the training set.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import torch

from islab import sampling as smp
from islab import scores
from islab.data import Dataset, example_ids, split_indices, subset
from islab.seeding import numpy_rng
from islab.train import Sampling, TrainConfig, per_example_stats, train

METHODS = ("uniform", "standard_is", "rho_approx", "rho_faithful", "dris")
RHO_METHODS = ("rho_approx", "rho_faithful")
PROXY_METHODS = ("rho_approx", "dris")       # need the shared proxy run (standard_is too with is_source='proxy')
IS_SOURCES = ("target", "proxy")             # standard_is: refreshed current target, or frozen proxy snapshot
RHO_PAPER_FLOOR = 0.01                       # the RHO-LOSS paper's small floor (weights up to 101); opt-in


def needs_proxies(method: str, is_source: str = "target") -> bool:
    """Does `method` read the shared proxy run's scores?"""
    return method in PROXY_METHODS or (method == "standard_is" and is_source == "proxy")


# ---------------------------------------------------------------- distributions (pure numpy)

def rho_probs(current_loss, irreducible_loss, floor: float) -> np.ndarray:
    """RHO-LOSS: p proportional to max(current - irreducible, 0) + floor (relative).

    Sign convention (scores.rho_score): a high reducible loss (high now, low under the
    holdout model: learnable and not yet learnt) is sampled more; an example the holdout model
    also gets wrong (high irreducible loss: noisy or ambiguous) gets only the floor."""
    return smp.relative_floor_probs(scores.rho_score(current_loss, irreducible_loss), floor)


def max_weight(p) -> float:
    """The largest importance weight 1 / (N min_{p_i > 0} p_i) a draw from p can carry."""
    p = np.asarray(p, dtype=np.float64)
    return float(1.0 / (len(p) * p[p > 0].min()))


# ---------------------------------------------------------------- refresh hooks


@dataclass
class RefreshLog:
    """What each (re)computation of p looked like: one dict per call, in call order.

    Keys: epoch (0-based epoch the p is used from), ess (effective sample size / N),
    max_weight, finite (False if the score had NaN/inf and the previous p was kept).  With
    keep_probs, `probs` holds each call's p as float32 (islab.export.save_probs writes them)."""
    calls: list = field(default_factory=list)
    keep_probs: bool = False
    probs: list = field(default_factory=list)

    def add(self, epoch: int, p, finite: bool = True) -> None:
        self.calls.append({"epoch": int(epoch), "ess": smp.effective_sample_size(p),
                           "max_weight": max_weight(p), "finite": bool(finite)})
        if self.keep_probs:
            self.probs.append(np.asarray(p, dtype=np.float32))

    def save_probs(self, path, example_id=None, dataset_id=None):
        """probs-*.npz: epochs (R,) and p (R, N) float32, one row per (re)computation, and the ids
        of p's N columns (islab.export.save_probs)."""
        from islab import export

        return export.save_probs(path, [c["epoch"] for c in self.calls], np.stack(self.probs), example_id, dataset_id)

    def state_dict(self) -> dict:
        """What a training checkpoint keeps of this log (islab.train.Sampling.state)."""
        return {"calls": [dict(c) for c in self.calls], "probs": list(self.probs)}

    def load_state_dict(self, state: dict) -> None:
        """The calls made before the checkpoint replace those logged so far (the fixed p logged
        again by make_sampling is one of them)."""
        self.calls = [dict(c) for c in state["calls"]]
        if self.keep_probs:
            self.probs = list(state["probs"])

    def per_epoch(self, epochs: int, key: str) -> np.ndarray:
        """(epochs,) value of `key` in force during each epoch (NaN before the first call)."""
        out = np.full(epochs, np.nan)
        for c in self.calls:
            out[c["epoch"]:] = c[key]
        return out


def _guarded(score_fn, to_probs, n: int, log: RefreshLog | None):
    """A refresh(model, epoch) hook: p = to_probs(score_fn(model)); a non-finite score (a
    model that already blew up) keeps the previous p so the trainer records the divergence
    from the training loss instead of crashing inside the sampler."""
    state = {"p": smp.uniform_probs(n)}

    def refresh(model, epoch):
        s = score_fn(model)
        finite = bool(np.all(np.isfinite(s)))
        if finite:
            state["p"] = to_probs(s)
        if log is not None:
            log.add(epoch, state["p"], finite)
        return state["p"]

    return refresh


def _labels_on(ds: Dataset, labels) -> torch.Tensor:
    return torch.as_tensor(np.asarray(labels), dtype=torch.long, device=ds.train.x.device)


def gradnorm_refresh(ds: Dataset, labels, cfg: TrainConfig, floor: float = smp.IS_FLOOR,
                     log: RefreshLog | None = None):
    """Standard IS hook: p proportional to the current model's last-layer gradient-norm bound
    over all N training examples (eval mode, un-augmented), + relative floor."""
    y = _labels_on(ds, labels)

    def score(model):
        return per_example_stats(model, ds, ds.train.x, y, cfg)["gradnorm"]

    return _guarded(score, lambda s: smp.relative_floor_probs(s, floor), len(y), log)


def rho_refresh(ds: Dataset, labels, irreducible_loss, cfg: TrainConfig, floor: float,
                log: RefreshLog | None = None):
    """Faithful RHO-LOSS hook: current model loss minus the (fixed) irreducible loss."""
    y = _labels_on(ds, labels)
    irr = np.asarray(irreducible_loss, dtype=np.float64)
    assert len(irr) == len(y), "one irreducible loss per training example"

    def score(model):
        return per_example_stats(model, ds, ds.train.x, y, cfg)["loss"]

    return _guarded(score, lambda s: rho_probs(s, irr, floor), len(y), log)


# ---------------------------------------------------------------- RHO-LOSS holdout


def holdout_split(n: int, holdout: int, seed: int):
    """(keep_idx, holdout_idx) of range(n), the holdout of size `holdout`, from seed's
    'rho-holdout' stream: one split per noise configuration, shared by every target seed."""
    return split_indices(n, holdout, numpy_rng(seed, "rho-holdout"))


def keep_dataset(ds: Dataset, idx) -> Dataset:
    """ds with its training split restricted to the examples idx (test split unchanged)."""
    return replace(ds, train=subset(ds.train, idx), train_ids=example_ids(ds, idx))


@dataclass
class Irreducible:
    """The RHO-LOSS reference: split, its model's loss on the kept examples, diagnostics."""
    keep: np.ndarray          # (N - H,) ids the RHO targets train on
    holdout: np.ndarray       # (H,) ids the irreducible model trained on
    loss: np.ndarray          # (N - H,) irreducible loss of each kept example
    test_acc: float           # the irreducible model's test accuracy, %
    diverged: bool


def train_irreducible(ds: Dataset, labels, holdout: int, model_name: str, cfg: TrainConfig, seed: int,
                      log=None, progress: bool = False) -> Irreducible:
    """Train the irreducible model on a holdout of the (noisy) training set and return its
    eval-mode loss on the remaining examples (what the RHO score subtracts)."""
    labels = np.asarray(labels)
    keep, hold = holdout_split(len(labels), holdout, seed)
    res = train(model_name, keep_dataset(ds, hold), labels[hold], cfg, seed, progress=progress,
                desc=f"irreducible {model_name}")
    x_keep = ds.train.x[torch.as_tensor(keep, device=ds.train.x.device)]
    loss = per_example_stats(res.model, ds, x_keep, _labels_on(ds, labels[keep]), cfg)["loss"]
    if log:
        log(f"irreducible {model_name} (seed {seed}) on {len(hold)} holdout examples: "
            f"test acc {res.test_acc:.2f}%, diverged={res.diverged} ({res.seconds:.1f}s)")
    return Irreducible(keep, hold, np.asarray(loss, dtype=np.float64), float(res.test_acc), res.diverged)


# ---------------------------------------------------------------- one method -> Sampling


def make_sampling(method: str, ds: Dataset, labels, cfg: TrainConfig, *, disagreement=None,
                  proxy_mean_loss=None, irreducible_loss=None, proxy_gradnorm=None, gamma: float = 0.1,
                  is_floor: float = smp.IS_FLOOR, rho_floor: float = smp.IS_FLOOR, rho_every: int = 5,
                  is_source: str = "target", reweight: bool = True,
                  log: RefreshLog | None = None) -> Sampling:
    """The Sampling for one method on `ds` (for the RHO methods: the kept split, and
    proxy_mean_loss / irreducible_loss indexed like it).  Fixed distributions are logged
    once at epoch 0; refreshed ones at every refresh.  is_source 'proxy' makes standard_is use
    the frozen proxy_gradnorm; reweight=False drops the 1/(N p) weights (uniform is unaffected).
    `log` is the Sampling's state: saved with training checkpoints, restored on resume."""
    sampling = _sampling(method, ds, labels, cfg, disagreement, proxy_mean_loss, irreducible_loss,
                         proxy_gradnorm, gamma, is_floor, rho_floor, rho_every, is_source, reweight, log)
    sampling.state = log
    return sampling


def _sampling(method, ds, labels, cfg, disagreement, proxy_mean_loss, irreducible_loss, proxy_gradnorm,
              gamma, is_floor, rho_floor, rho_every, is_source, reweight, log) -> Sampling:
    """make_sampling before its log is attached."""
    n = len(ds.train)
    assert is_source in IS_SOURCES, f"is_source must be one of {IS_SOURCES}"
    if method == "uniform":
        if log is not None:
            log.add(0, smp.uniform_probs(n))
        return Sampling(mode="shuffle")
    if method == "standard_is" and is_source == "target":
        return Sampling(mode="weighted", refresh=gradnorm_refresh(ds, labels, cfg, is_floor, log),
                        refresh_every=1, reweight=reweight)
    if method == "rho_faithful":
        assert irreducible_loss is not None, "rho_faithful needs the irreducible loss"
        assert rho_every >= 1, "rho_every must be >= 1"
        hook = rho_refresh(ds, labels, irreducible_loss, cfg, rho_floor, log)
        return Sampling(mode="weighted", refresh=hook, refresh_every=rho_every, reweight=reweight)
    if method == "standard_is":   # is_source 'proxy': the proxies' snapshot bound, frozen
        assert proxy_gradnorm is not None, "standard_is with is_source='proxy' needs the proxy gradient norms"
        p = smp.relative_floor_probs(proxy_gradnorm, is_floor)
    elif method == "rho_approx":
        assert proxy_mean_loss is not None and irreducible_loss is not None, \
            "rho_approx needs the proxy mean loss and the irreducible loss"
        p = rho_probs(proxy_mean_loss, irreducible_loss, rho_floor)
    elif method == "dris":
        assert disagreement is not None, "dris needs the proxy rank variance"
        p = smp.smoothed_probs(disagreement, gamma)   # DR-IS online (paper eq. 7)
    else:
        raise ValueError(f"unknown online method {method!r}; choose from {', '.join(METHODS)}")
    assert len(p) == n, f"p has {len(p)} entries for {n} training examples"
    if log is not None:
        log.add(0, p)
    return Sampling(mode="weighted", probs=p, reweight=reweight)
