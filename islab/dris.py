"""DR-IS on your own data and model: the public API (docs/own-data.md, "DR-IS on your own data").

From per-proxy losses, a (K proxies, N examples) matrix (an (N, K) one is refused):
    s = rank_disagreement(losses)            # (N,) variance over proxies of the normalised loss ranks
    c = consensus(losses)                    # (N,) mean normalised rank (consistently hard = high)
    keep = select_top(s, alpha=0.3)          # static pruning: the top alpha N by s (rounded half up)
    p = online_probs(s, gamma=0.1)           # online IS: p_i = (s_i + c) / sum_j (s_j + c), c = gamma mean(s)
    w = importance_weights(p)                # 1 / (N p_i): unbiased reweighting of the sampled loss
    sampler = ImportanceSampler(p)           # a torch Sampler drawing ids from the PROBABILITIES p (with
                                             # replacement); sampler.importance_weights(ids) = 1 / (N p_i);
                                             # from a score: ImportanceSampler.from_scores(s, gamma)
    DistributedImportanceSampler(p, num_replicas, rank)   # each rank's share of one global draw

From a torch Dataset and any model factory (the proxies, trained by islab's one training loop):
    ens = proxy_statistics(train_set, {"a": make_a, "b": make_b, "c": make_c}, epochs=10)
    ens["loss"]                              # (K, N) eval-mode losses at the snapshot epoch; also
                                             # el2n, gradnorm, margin, correct, aum, forgetting
    per_example_scores(ens)                  # DataFrame keyed by example_id

From your own training loop:
    tracker = TrainingDynamics(N); tracker.update(logits, targets, sample_ids); tracker.end_epoch()

Every function here checks its input and raises ValueError with a clear message; the scripts of
this repository call the same code (islab.scores, islab.sampling, islab.proxies, islab.train).
"""
from __future__ import annotations

import numpy as np
import torch

from islab import sampling, scores
from islab.checks import check_count, check_ids, check_labels, real_array
from islab.cli import MAX_COEFFICIENT
from islab.dynamics import TrainingDynamics
from islab.sampling import importance_weights  # public here; defined (and checked) in islab.sampling

__all__ = ["rank_disagreement", "consensus", "normalised_ranks", "select_top", "online_probs", "losses_from_probs",
           "cross_fit_losses",
           "importance_weights", "ImportanceSampler", "DistributedImportanceSampler", "WithIndex",
           "proxy_statistics", "per_example_scores", "TrainingDynamics"]


# ---------------------------------------------------------------- scores from a loss matrix


def check_losses(losses, min_proxies: int = 2) -> np.ndarray:
    """losses as a (K, N) float64 array (row k = proxy k's losses on the N examples) after checking
    the orientation (K <= N), K >= min_proxies, N >= 2 and finite values."""
    a = real_array(losses, "losses")
    if a.ndim != 2:
        hint = (": one proxy's losses? stack K >= 2 proxies' losses as rows, np.stack([loss_a, loss_b, ...])"
                if a.ndim == 1 else "")
        raise ValueError(f"losses must be a (K proxies, N examples) matrix, got shape {a.shape}{hint}")
    k, n = a.shape
    if n < 2:
        raise ValueError(f"ranking needs at least 2 examples (columns), got N = {n}"
                         + ("; the rows are the proxies: pass losses.T if they are your examples" if k > 2 else ""))
    if k > n:   # more proxies than examples: almost surely an (N examples, K proxies) matrix
        raise ValueError(f"losses must be a (K proxies, N examples) matrix, one row per proxy; got shape {a.shape}, "
                         f"more rows than columns, which looks like (N, K): pass losses.T")
    if k < min_proxies:
        raise ValueError(f"rank disagreement needs at least {min_proxies} proxies (rows), got K = {k}; "
                         "the variance over one proxy is 0 for every example")
    bad = ~np.isfinite(a)
    if bad.any():
        k0, i0 = np.argwhere(bad)[0]
        raise ValueError(f"losses hold {int(bad.sum())} non-finite value(s) (NaN or inf), first at proxy {k0}, "
                         f"example {i0}; a diverged proxy has no ranking: leave its row out")
    return a


# A proxy whose losses are near 0 on almost every example, or take very few distinct values, has
# memorised its training data (in-sample losses of an unlimited-depth tree or a 1-nearest-neighbour
# model are all 0): its ranks are ties, and DR-IS built on them kept 0.485 flipped labels in its top
# 30 % against 0.195 overall on breast-cancer data, worse than random (issue 26).
NEAR_ZERO_LOSS = 1e-3      # nats: the true label's predicted probability above 0.999
MEMORISED_SHARE = 0.9      # warn when at least this share of a proxy's losses is near zero
FEW_DISTINCT = 10          # ... or when it has fewer distinct losses than this (and than 10 % of N)


def warn_if_memorised(losses, names=None) -> list[int]:
    """A UserWarning naming the proxies (rows of a (K, N) loss matrix) whose losses cannot rank the
    examples, with the fix; returns their row numbers.  Near 0 on at least MEMORISED_SHARE of the
    examples: in-sample losses of a model that memorised (use held-out losses, cross_fit_losses).
    Fewer than FEW_DISTINCT distinct values (and than 10 % of N): hard 0/1 predictions, all ties."""
    import warnings

    a = np.asarray(losses, dtype=np.float64)
    memorised, hard, bad = [], [], []
    for k, row in enumerate(a):
        label = f"proxy {names[k]!r}" if names is not None else f"proxy {k}"
        near_zero, distinct = float(np.mean(row < NEAR_ZERO_LOSS)), len(np.unique(row))
        if near_zero >= MEMORISED_SHARE:
            memorised.append(f"{label}: {near_zero:.0%} of its N = {len(row)} losses below {NEAR_ZERO_LOSS:g}")
            bad.append(k)
        elif distinct < min(FEW_DISTINCT, 0.1 * len(row)):
            hard.append(f"{label}: {distinct} distinct value(s) over N = {len(row)}")
            bad.append(k)
    if memorised:
        warnings.warn(f"proxy losses look memorised ({'; '.join(memorised)}): in-sample losses of a model that fits "
                      "its training data are about 0 everywhere, so the DR-IS ranking is noise; use held-out losses: "
                      "islab.cross_fit_losses(models, X, y) (each example's loss from a model not trained on it), or "
                      "islab.losses_from_probs(labels, [pred_probs, ...]) on out-of-sample probabilities",
                      UserWarning, stacklevel=_caller_level())
    if hard:
        warnings.warn(f"proxy losses take very few values ({'; '.join(hard)}): hard predictions tie almost every "
                      "example and rank nothing; use proxies with graded probabilities (a shallower tree, more "
                      "neighbours, a probabilistic model), on held-out losses (islab.cross_fit_losses)",
                      UserWarning, stacklevel=_caller_level())
    return bad


def losses_from_probs(labels, pred_probs) -> np.ndarray:
    """(K, N) cross-entropy losses -log p_k(y_i | x_i) in nats from K proxies' predicted class
    probabilities: pred_probs a list of K (N, C) arrays (or one (K, N, C) array; cleanlab's
    pred_probs per model), labels (N,) class ids in 0..C-1 (the labels you train on).  A
    probability below 1e-12 counts as 1e-12 (a loss of at most 27.6).  Use out-of-sample
    probabilities (cross-validated); in-sample ones of a model that memorised are warned about
    by rank_disagreement."""
    y = np.asarray(labels)
    if isinstance(pred_probs, np.ndarray) and pred_probs.ndim == 2 or isinstance(pred_probs, torch.Tensor) \
            and pred_probs.dim() == 2:
        raise ValueError(f"pred_probs must be a list of (N, C) arrays, one per proxy; got one array of shape "
                         f"{tuple(pred_probs.shape)}: pass [pred_probs] (DR-IS needs K >= 2 of them)")
    probs = [np.asarray(q.detach().cpu() if isinstance(q, torch.Tensor) else q, dtype=np.float64) for q in pred_probs]
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"labels must be integer class ids, shape (N,); got {y.dtype} {y.shape}")
    out = []
    for k, q in enumerate(probs):
        if q.ndim != 2 or len(q) != len(y):
            raise ValueError(f"pred_probs[{k}] must be (N, C) with N = {len(y)} (one row per label); got {q.shape}")
        if y.size and (y.min() < 0 or y.max() >= q.shape[1]):
            raise ValueError(f"labels must lie in 0..{q.shape[1] - 1} (the columns of pred_probs[{k}]), got "
                             f"{y.min()}..{y.max()}")
        rows = q.sum(1)
        if not np.all(np.isfinite(q)) or q.min() < 0 or np.abs(rows - 1).max() > 1e-3:
            i = int(np.argmax(~np.isfinite(rows) | (np.abs(rows - 1) > 1e-3) | (q.min(1) < 0)))
            raise ValueError(f"pred_probs[{k}] must hold probabilities (>= 0, each row summing to 1); row {i} "
                             f"sums to {rows[i]:.6g}: pass softmax(logits), not logits")
        out.append(-np.log(np.clip(q[np.arange(len(y)), y], 1e-12, None)))
    if not out:
        raise ValueError("pred_probs is empty: pass a list of (N, C) arrays, one per proxy")
    return np.stack(out)


def cross_fit_losses(models, X, y, folds: int = 5, seed: int = 0) -> np.ndarray:
    """(K, N) held-out cross-entropy losses (nats) of K scikit-learn-style classifiers (`fit`,
    `predict_proba`, `classes_`): X split into `folds` stratified folds (shuffled with `seed`), and
    each example's loss comes from a copy of the model fitted on the other folds, never on it.
    models: a list, or a dict name -> estimator (the order of the rows); each is cloned per fold
    (sklearn.base.clone), the originals stay unfitted.  What DR-IS needs from models that can fit
    their training data: in-sample losses of such a model are all about 0 (see warn_if_memorised)."""
    from sklearn.base import clone
    from sklearn.model_selection import StratifiedKFold

    y = np.asarray(y)
    estimators = list(models.values()) if isinstance(models, dict) else list(models)
    if not estimators:
        raise ValueError("models is empty: pass a list (or dict) of scikit-learn classifiers")
    if not (isinstance(folds, (int, np.integer)) and 2 <= folds <= len(y)):
        raise ValueError(f"folds must be an integer in 2..N = {len(y)}, got {folds!r}")
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer) or len(y) != len(X) or (y.size and y.min() < 0):
        raise ValueError(f"y must be integer class ids >= 0, one per row of X: X has {len(X)} rows, y is "
                         f"{y.dtype} {y.shape}")
    splits = list(StratifiedKFold(n_splits=int(folds), shuffle=True, random_state=seed).split(X, y))
    probs = []
    for k, est in enumerate(estimators):
        q = np.zeros((len(y), int(y.max()) + 1))
        for fit_ids, held in splits:
            model = clone(est).fit(X[fit_ids], y[fit_ids])
            q[np.ix_(held, np.asarray(model.classes_, dtype=np.int64))] = model.predict_proba(X[held])
        probs.append(q)
    return losses_from_probs(y, probs)


def normalised_ranks(losses) -> np.ndarray:
    """(K, N): within each proxy, the rank of each loss (ties share the average rank) mapped to
    [0, 1] as (rank - 1) / (N - 1); higher = harder.  The public, argument-checked name of its one
    definition, islab.scores.normalised_ranks (which the scripts call on their own loss matrices)."""
    return scores.normalised_ranks(check_losses(losses, min_proxies=1))


def rank_disagreement(losses, ddof: int = 0) -> np.ndarray:
    """(N,) DR-IS score s_i: the variance over the K proxies of example i's normalised loss rank.
    ddof 0 is the 1/K normalisation (the theory's), 1 the 1/(K-1) one; the ranking is the same."""
    if ddof not in (0, 1):
        raise ValueError(f"ddof must be 0 (1/K) or 1 (1/(K-1)), got {ddof}")
    a = check_losses(losses)
    warn_if_memorised(a)
    return scores.rank_variance(scores.normalised_ranks(a), ddof=ddof)


def consensus(losses) -> np.ndarray:
    """(N,) consensus-loss: the mean over proxies of the normalised rank (high = consistently hard)."""
    a = check_losses(losses)
    warn_if_memorised(a)
    return scores.consensus_rank(scores.normalised_ranks(a))


def select_top(score, alpha: float, labels=None) -> np.ndarray:
    """Sorted ids of the alpha N examples with the highest score, alpha N rounded half UP and at
    least 1 (docs/METHODS.md section 4; ties: lower id first); with `labels` (the labels you train
    on), the top alpha of EACH class instead (class-balanced)."""
    s = _check_score(score)
    if isinstance(alpha, bool) or not (isinstance(alpha, (int, float, np.floating)) and 0 < float(alpha) <= 1):
        raise ValueError(f"alpha is the kept fraction and must lie in (0, 1], got {alpha!r}")
    if labels is None:
        return sampling.keep_top_fraction(s, float(alpha))
    return sampling.keep_top_fraction_per_class(s, check_labels(labels, len(s)), float(alpha))


def online_probs(score, gamma: float = 0.1) -> np.ndarray:
    """(N,) DR-IS online distribution p_i = (s_i + c) / sum_j (s_j + c), c = gamma * mean(s)
    (docs/METHODS.md section 5): the public, argument-checked name of its one definition,
    islab.sampling.smoothed_probs (which the scripts call, and which also takes gamma = 0).

    score: (N,) finite, >= 0 (e.g. rank_disagreement).  gamma > 0 is the floor: every p_i >= c /
    sum_j (s_j + c) > 0, so every importance weight 1/(N p_i) is finite, at most (1 + gamma) / gamma
    (11 for gamma = 0.1).  gamma = 0 is refused: it gives p_i = 0 to every example with s_i = 0
    (never drawn, so the reweighted loss is biased).  A score that is 0 everywhere gives the
    uniform distribution."""
    s = _check_score(score)
    if np.any(s < 0):
        raise ValueError("the online score must be >= 0 (a variance, e.g. rank_disagreement)")
    if not (isinstance(gamma, (int, float, np.floating)) and np.isfinite(gamma) and gamma > 0):
        raise ValueError(f"gamma must be a finite number > 0 (the floor c = gamma * mean(s) that keeps every "
                         f"p_i > 0 and every weight 1/(N p_i) <= (1 + gamma) / gamma; 0.1 is the default), got "
                         f"{gamma!r}; gamma = 0 never draws the examples with s_i = 0 (a biased estimate)")
    return sampling.smoothed_probs(s, float(gamma))


def _check_score(score) -> np.ndarray:
    s = real_array(score, "score")
    if s.ndim != 1 or len(s) < 1:
        raise ValueError(f"a score is one value per example, shape (N,); got {s.shape}")
    if not np.all(np.isfinite(s)):
        raise ValueError(f"the score holds {int((~np.isfinite(s)).sum())} non-finite value(s) (NaN or inf)")
    return s


# ---------------------------------------------------------------- a sampler for a plain DataLoader


# Above this ratio max p / min p, a sampling distribution is taken for raw scores without a floor.
# A floored distribution stays far below it (online_probs with gamma = 0.1 on a rank disagreement:
# max / min of a few hundred at most on the demo's data), while an unfloored score (a rank disagreement
# near 0, a loss of 1e-5) gives ratios of 1e4 and more, and importance weights to match (2.1e4 on
# breast-cancer data, against 11 with from_scores: issue 26).
MAX_PROB_RATIO = 1e3


def check_probs(probs, what: str = "probs", check: bool = True) -> np.ndarray:
    """Sampling probabilities (N,) as a float64 distribution: normalised when they do not sum to 1.

    ValueError for a negative, NaN or inf entry, all zeros, or a zero anywhere (an example that is
    never drawn would need an infinite weight 1/(N p_i) for the estimate to stay unbiased).  With
    check=True, a UserWarning when the input looks like something else than probabilities:
    importance weights 1/(N p) (every value >= 1, or a sum near N: the sampler would draw the
    examples p wanted LEAST), or raw scores without a floor (max / min above MAX_PROB_RATIO = 1e3:
    importance weights up to that ratio); check=False passes exact probabilities quietly."""
    w = np.asarray(probs.detach().cpu() if isinstance(probs, torch.Tensor) else probs, dtype=np.float64)
    if w.ndim != 1 or len(w) < 1:
        raise ValueError(f"{what} must be one value per example, shape (N,); got {w.shape}")
    bad = ~np.isfinite(w) | (w < 0)
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(f"{what} must be finite and >= 0: {int(bad.sum())} are not, first at example {i} ({float(w[i])})")
    if not w.sum() > 0:
        raise ValueError(f"{what} are all zero: there is nothing to draw")
    if np.any(w == 0):
        raise ValueError(f"{what} are 0 for {int((w == 0).sum())} example(s) (first: {int(np.argmax(w == 0))}); "
                         "they would never be drawn and their importance weight 1/(N p) would be infinite: "
                         "add a floor first (ImportanceSampler.from_scores / online_probs with gamma > 0)")
    if check:
        _warn_unless_probs(w, what)
    return w / w.sum()


def _warn_unless_probs(w: np.ndarray, what: str) -> None:
    import warnings

    n, total = len(w), float(w.sum())
    fix = ("pass sampling probabilities (they sum to 1), e.g. ImportanceSampler.from_scores(score, gamma=0.1) "
           "for a score, or check=False if these are exact probabilities")
    if abs(total - 1.0) > 1e-6 and n > 1 and (w.min() >= 1 or total >= 0.5 * n):
        warnings.warn(f"{what} look like importance weights 1/(N p) (or raw scores), not sampling probabilities (sum {total:.4g} "
                      f"for N = {n} examples, smallest value {w.min():.3g}): sampling from them draws most often "
                      f"the examples p wanted least; {fix}", UserWarning, stacklevel=_caller_level())
    elif w.max() / w.min() > MAX_PROB_RATIO:
        warnings.warn(f"{what} look like raw scores without a floor: max / min = {w.max() / w.min():.3g} > "
                      f"{MAX_PROB_RATIO:g}, so the largest importance weight 1/(N p_i) is {total / (n * w.min()):.3g}; "
                      f"{fix}", UserWarning, stacklevel=_caller_level())


def _caller_level() -> int:
    """The stacklevel of the first frame outside this file (a warning points at the user's line)."""
    import sys

    frame, level = sys._getframe(1), 1
    while frame is not None and frame.f_code.co_filename == __file__:
        frame, level = frame.f_back, level + 1
    return level


class ImportanceSampler(torch.utils.data.Sampler):
    """Draws example ids i.i.d. from `probs`, with replacement (num_samples per pass, default N),
    for `DataLoader(dataset, batch_size=b, sampler=sampler)`; `importance_weights(ids)` gives the
    1/(N p_i) to multiply the per-example losses by, so the mean weighted loss estimates the mean
    loss without bias.  Wrap the dataset in WithIndex to get each example's id in the batch.

    probs: the sampling probabilities (N,), positive and finite (normalised here if they do not sum
    to 1); `sampler.probs` is the normalised distribution.  NOT importance weights: those are what
    `importance_weights` returns.  Input that looks like importance weights (values >= 1, a sum near
    N) or like raw scores without a floor (max / min > MAX_PROB_RATIO) is warned about; check=False
    passes exact probabilities quietly.  From a score vector: ImportanceSampler.from_scores(s, gamma).
    The draws are islab.sampling.WeightedSampler's (the sampler of islab.train): torch.multinomial
    from `generator` (a torch.Generator, or None for torch's global one)."""

    def __init__(self, probs, num_samples: int | None = None, generator: torch.Generator | None = None, *,
                 check: bool = True):
        probs = check_probs(probs, "probs", check=check)
        self.num_samples = len(probs) if num_samples is None else int(num_samples)
        if self.num_samples < 1:
            raise ValueError(f"num_samples must be >= 1, got {num_samples}")
        self._sampler = sampling.WeightedSampler(probs)
        self.probs = probs
        self.generator = generator

    @classmethod
    def from_scores(cls, score, gamma: float = 0.1, **kwargs):
        """The DR-IS sampling distribution of a score vector (docs/METHODS.md section 5):
        p_i = (s_i + c) / sum_j (s_j + c), c = gamma * mean(s) (online_probs); score (N,) finite
        and >= 0, gamma > 0 the floor (weights at most (1 + gamma) / gamma).  kwargs: those of
        the constructor (num_samples, generator; or num_replicas, rank, seed for the
        distributed sampler)."""
        kwargs.setdefault("check", False)   # exact probabilities by construction, the floor bounds the weights
        return cls(online_probs(score, gamma), **kwargs)

    def __iter__(self):
        idx, _ = self._sampler.draw(self.num_samples, self.generator)
        return iter(idx.tolist())

    def __len__(self) -> int:
        return self.num_samples

    def importance_weights(self, ids) -> torch.Tensor:
        """(B,) float32 importance weights 1/(N p_i) of the drawn ids (a 1-D tensor, list or array)."""
        ids = torch.as_tensor(check_ids(ids, len(self.probs)))
        return self._sampler.weight[ids]

    def weights(self, ids) -> torch.Tensor:
        """Deprecated name of importance_weights (torch's WeightedRandomSampler.weights means the
        sampling weights, the opposite)."""
        import warnings

        warnings.warn("ImportanceSampler.weights(ids) is renamed importance_weights(ids) (it returns 1/(N p_i), "
                      "not sampling weights)", DeprecationWarning, stacklevel=2)
        return self.importance_weights(ids)

    @property
    def p(self) -> np.ndarray:
        """Deprecated name of `probs`."""
        import warnings

        warnings.warn("ImportanceSampler.p is renamed probs", DeprecationWarning, stacklevel=2)
        return self.probs


class DistributedImportanceSampler(ImportanceSampler):
    """ImportanceSampler for data-parallel training (like torch's DistributedSampler): every rank
    computes the same global draw of num_replicas * ceil(num_samples / num_replicas) ids from probs
    (a generator seeded with seed + epoch, so call set_epoch(e) each epoch) and keeps its share,
    the ids at positions rank, rank + num_replicas, ...  The ranks together hold one i.i.d. draw
    from p, so the weighted loss averaged over all ranks' examples is unbiased, as on one process.

    num_replicas / rank: given explicitly (no torch.distributed needed), or read from the
    initialised default process group.  num_samples: the global draw per epoch (default N)."""

    def __init__(self, probs, num_replicas: int | None = None, rank: int | None = None,
                 num_samples: int | None = None, seed: int = 0, *, check: bool = True):
        if num_replicas is None or rank is None:
            import torch.distributed as dist

            if not (dist.is_available() and dist.is_initialized()):
                raise ValueError("pass num_replicas and rank, or initialise torch.distributed first")
            num_replicas = dist.get_world_size() if num_replicas is None else num_replicas
            rank = dist.get_rank() if rank is None else rank
        if not (int(num_replicas) >= 1 and 0 <= int(rank) < int(num_replicas)):
            raise ValueError(f"need num_replicas >= 1 and rank in 0..num_replicas-1, got {num_replicas}, {rank}")
        super().__init__(probs, num_samples=num_samples, check=check)
        self.num_replicas, self.rank, self.seed, self.epoch = int(num_replicas), int(rank), int(seed), 0
        self.total_size = -(-self.num_samples // self.num_replicas) * self.num_replicas

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def global_draw(self) -> torch.Tensor:
        """The draw of every rank together this epoch: (total_size,) int64 ids."""
        g = torch.Generator().manual_seed(self.seed + self.epoch)
        return self._sampler.draw(self.total_size, g)[0]

    def __iter__(self):
        return iter(self.global_draw()[self.rank::self.num_replicas].tolist())

    def __len__(self) -> int:
        return self.total_size // self.num_replicas


class WithIndex(torch.utils.data.Dataset):
    """A dataset yielding (x, y, i): the wrapped dataset's (x, y) and the example's index i."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i):
        x, y = self.dataset[i][:2]
        return x, y, i


# ---------------------------------------------------------------- proxies on your data and model


def proxy_statistics(train_set, models, *, num_proxies: int = 3, test_set=None, num_classes: int | None = None,
                     epochs: int = 10, snapshot_epoch: int | None = None, batch_size: int = 128, lr: float = 0.05,
                     momentum: float = 0.9, weight_decay: float = 5e-4, seeds=None, device="cpu",
                     record_logits: bool = False, progress: bool = False, log=None):
    """Train K >= 2 proxies on `train_set` and return their per-example statistics (a ProxyEnsemble:
    ens[stat] is (K, N), column i = example i of train_set; ens.names the proxies' names).

    train_set / test_set: torch Datasets yielding (x, y) (read once into tensors; inputs used as
    they come: no normalisation or augmentation is added).  models: a factory `f() -> nn.Module`
    (num_proxies copies, each its own seed), a list of factories (one proxy each, named by their
    __name__) or a dict name -> factory (one proxy each, under that name: logs, ens.names and the
    per-proxy columns of per_example_scores use it).  A factory, not a module: `lambda: MyNet()`.
    Any module whose last nn.Linear produces the logits works (features come from a forward hook on
    it).  Each proxy is trained by islab.train (SGD with momentum, cosine learning rate, `epochs`
    passes of ceil(N / batch_size) steps) with seeds[k] (default 1000 + k) for its init and data
    order.  Statistics (islab.proxies.STAT_NAMES): at the snapshot epoch (default
    ceil(epochs / 2)), in eval mode on train_set, loss, el2n, gradnorm (last-layer gradient-norm
    bound), margin and correct; over all epochs, aum and forgetting.  record_logits: ens.dynamics
    holds each proxy's (epochs, N, C) training logits.  Test accuracies (%) in ens.test_acc (NaN
    without test_set).

    A proxy that diverges (non-finite loss) is left out with a warning and listed in
    ens.diverged as (name, seed, reason); the others are kept.  Fewer than 2 proxies left raises
    islab.proxies.ProxyDiverged (a RuntimeError): the DR-IS scores need at least 2."""
    import warnings

    from islab.data import from_torch_dataset
    from islab.proxies import NamedFactory, ProxyDiverged, check_factory, proxy_ensemble
    from islab.train import TrainConfig, pick_device

    names, factories = _proxy_factories(models, num_proxies)
    listed = isinstance(models, (list, tuple))
    for k, (name, f) in enumerate(zip(names, factories)):
        check_factory(f, f"the model of proxy {name!r}" if name else f"models[{k}]" if listed else "models")
    if len(factories) < 2:
        raise ValueError(f"DR-IS needs at least 2 proxies (its scores are computed across them), got "
                         f"{len(factories)}: pass num_proxies >= 2, or a list or dict of >= 2 factories")
    seeds = ([1000 + k for k in range(len(factories))] if seeds is None
             else [check_count(s, "seeds", 0) for s in seeds])
    if len(seeds) != len(factories):
        raise ValueError(f"one seed per proxy: {len(factories)} proxies, {len(seeds)} seeds")
    epochs, batch_size = check_count(epochs, "epochs"), check_count(batch_size, "batch_size")
    snapshot_epoch = (epochs + 1) // 2 if snapshot_epoch is None else check_count(snapshot_epoch, "snapshot_epoch")
    if not 1 <= snapshot_epoch <= epochs:
        raise ValueError(f"snapshot_epoch must lie in 1..{epochs}, got {snapshot_epoch}")
    if not (lr > 0 and weight_decay >= 0 and 0 <= momentum <= 1):
        raise ValueError(f"need lr > 0, weight_decay >= 0, momentum in [0, 1]; got {lr}, {weight_decay}, {momentum}")
    for name, v in (("lr", lr), ("weight_decay", weight_decay)):
        if v > MAX_COEFFICIENT:   # torch's first step would raise: it scales float32 parameters by them
            raise ValueError(f"{name} = {v:g} is beyond float32's range (max {MAX_COEFFICIENT:.3g}), the type of "
                             "the parameters it multiplies")
    ds = from_torch_dataset(train_set, test_set, num_classes=num_classes, device=pick_device(str(device), "device"))
    names = [_check_output_size(f, name, ds) for name, f in zip(names, factories)]
    cfg = TrainConfig(epochs=int(epochs), batch_size=int(batch_size), lr=float(lr), momentum=float(momentum),
                      weight_decay=float(weight_decay))
    named = [NamedFactory(n, f) if n and callable(f) and n != getattr(f, "__name__", None) else f
             for n, f in zip(names, factories)]
    ens = proxy_ensemble(ds, ds.train.y.cpu().numpy(), named, seeds, cfg, snapshot_epoch, log=log,
                         progress=progress, dynamics=record_logits, skip_diverged=True)
    if ens.diverged:
        gone = "; ".join(why for _, _, why in ens.diverged)
        if len(ens.names) < 2:
            raise ProxyDiverged(f"{len(ens.diverged)} of {len(factories)} proxies diverged ({gone}); DR-IS needs at "
                                f"least 2 (try a smaller lr or other models)")
        warnings.warn(f"{len(ens.diverged)} of {len(factories)} proxies diverged and are left out ({gone}); the "
                      f"statistics hold the {len(ens.names)} others: {', '.join(ens.names)}", RuntimeWarning,
                      stacklevel=2)
    warn_if_memorised(ens["loss"], ens.names)   # a model that memorised by the snapshot epoch ranks nothing
    return ens


def _check_output_size(factory, name, ds) -> str | None:
    """The proxy's name (given, the factory's __name__, or for a lambda the class of the model it
    builds) after checking on two training inputs that the model gives one logit per class: a model
    with 5 outputs on 3 classes trains without complaint (cross-entropy over 5 classes) and is wrong."""
    if isinstance(factory, str):   # a registry name: built for ds.num_classes by islab.models
        return name
    with torch.random.fork_rng(devices=[]):   # the probe leaves the caller's random state alone
        model = factory()
        own = getattr(factory, "__name__", "<lambda>")
        label = name or (own if own != "<lambda>" else type(model).__name__)
        if not isinstance(model, torch.nn.Module):
            raise ValueError(f"the model factory of proxy {label!r} returned {type(model).__name__}, not a "
                             "torch.nn.Module: pass a callable that builds the model, e.g. lambda: MyNet()")
        with torch.no_grad():
            out = model.to(ds.train.x.device).eval()(ds.train.x[:2])
    if not (isinstance(out, torch.Tensor) and out.dim() == 2 and out.shape[1] == ds.num_classes):
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(f"the model of proxy {label!r} gives outputs of shape {got} on a batch of 2, but the data "
                         f"have num_classes = {ds.num_classes}: its last nn.Linear must have out_features = "
                         f"{ds.num_classes} (one logit per class), or pass num_classes")
    return label


def _proxy_factories(models, num_proxies: int):
    """(names or None, factories) of proxy_statistics' `models` argument."""
    if isinstance(models, dict):
        if not all(isinstance(k, str) and k.strip() for k in models):
            raise ValueError("the names of a dict of proxies must be non-empty strings")
        return list(models), list(models.values())
    if isinstance(models, (list, tuple)):
        return [None] * len(models), list(models)
    if int(num_proxies) < 1:
        raise ValueError(f"num_proxies must be >= 2, got {num_proxies}")
    return [None] * int(num_proxies), [models] * int(num_proxies)


def per_example_scores(ens, labels=None, clean=None, corrupt=None, ddof: int = 0, ids=None):
    """A DataFrame keyed by example_id with every score of an ensemble of K >= 2 proxies (dris,
    consensus, el2n, gradnorm, forgetting, aum, loss, margin) and `<stat>__<proxy>_s<seed>` per
    proxy: the columns of the scripts' scores-<config>.csv (islab.export).  ids: the example ids
    to write (default 0..N-1, the positions in the dataset the proxies saw), e.g. the indices of
    a Subset in its original dataset."""
    from islab import export

    if len(ens.names) < 2:
        raise ValueError(f"per_example_scores needs an ensemble of at least 2 proxies (dris and consensus are "
                         f"computed across proxies), got K = {len(ens.names)}")
    return export.per_example_frame(export.ensemble_columns(ens, ddof=ddof), labels, clean, corrupt, ids)
