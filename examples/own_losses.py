"""Bring your own losses: DR-IS from a (K proxies, N examples) loss matrix you computed yourself.

Here three scikit-learn proxies on a tabular data set with 20 % of its labels flipped; any
models work.  Row k of the matrix is proxy k's per-example loss on the (possibly noisy) labels
you train on.  Then: the DR-IS score, a static subset (Algorithm 1), and an importance sampler
(Algorithm 2) for a plain PyTorch loop, on one process and split over data-parallel ranks.
Runs in a few seconds on a CPU (tests/unit/test_api.py runs it as written):

    pip install -e .                  # once (or prefix the next line with PYTHONPATH=.)
    python examples/own_losses.py
"""
import numpy as np
import torch
import torch.nn.functional as F
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression
from sklearn.naive_bayes import GaussianNB
from sklearn.tree import DecisionTreeClassifier

import islab

# a tabular data set, 1,000 examples, 3 classes; 20 % of the labels flipped to another class
X, clean = make_classification(n_samples=1000, n_features=10, n_informative=5, n_classes=3, random_state=0)
rng = np.random.default_rng(0)
corrupt = rng.random(len(clean)) < 0.2
y = np.where(corrupt, (clean + rng.integers(1, 3, len(clean))) % 3, clean)

# 1. your proxies, their held-out losses: one row per proxy, one column per example -> shape (K, N)
proxies = {"logreg": LogisticRegression(max_iter=1000), "bayes": GaussianNB(),
           "tree": DecisionTreeClassifier(max_depth=4, random_state=0)}
# HELD-OUT losses: each example's loss from a copy fitted on the other 4 of 5 folds (in-sample losses of
# a model that can memorise, e.g. an unlimited-depth tree, are ~0 everywhere and rank nothing)
losses = islab.cross_fit_losses(proxies, X, y, folds=5, seed=0)   # (3, 1000); (1000, 3) is refused
s = islab.rank_disagreement(losses)      # (N,) DR-IS score: variance of each example's loss ranks

# 2. static pruning (Algorithm 1): the top 30 % by s, alpha N rounded half up
keep = islab.select_top(s, alpha=0.3)
print(f"kept {len(keep)} of {len(y)}: {corrupt[keep].mean():.2f} corrupted (all: {corrupt.mean():.2f})")

# 3. online importance sampling (Algorithm 2): p_i = (s_i + c) / sum_j (s_j + c), c = gamma mean(s)
sampler = islab.ImportanceSampler.from_scores(s, gamma=0.1, generator=torch.Generator().manual_seed(0))
w = sampler.importance_weights(torch.arange(len(y)))   # 1/(N p_i) of every example
print(f"largest weight {w.max():.1f} (bound (1 + gamma) / gamma = 11)")
Xt, yt = torch.tensor(X, dtype=torch.float32), torch.tensor(y)
model = torch.nn.Linear(10, 3)
opt = torch.optim.SGD(model.parameters(), lr=0.1)
for epoch in range(5):
    ids = torch.tensor(list(sampler))                 # N draws from p, with replacement
    for batch in ids.split(100):
        per_example = F.cross_entropy(model(Xt[batch]), yt[batch], reduction="none")
        loss = (per_example * sampler.importance_weights(batch)).mean()   # weights 1/(N p_i): unbiased
        opt.zero_grad()
        loss.backward()
        opt.step()
accuracy = (model(Xt).argmax(1).numpy() == clean).mean()
print(f"linear model trained by DR-IS sampling: {100 * accuracy:.1f} % of the clean labels")

# 4. data-parallel: each rank draws its share of ONE global draw (same seed and epoch on every
# rank); pass num_replicas and rank, or let it read them from torch.distributed
ranks = [islab.DistributedImportanceSampler.from_scores(s, gamma=0.1, num_replicas=2, rank=r, seed=0)
         for r in range(2)]
for r in ranks:
    r.set_epoch(3)
print(f"rank 0 draws {len(ranks[0])}, rank 1 draws {len(ranks[1])}: together the global draw of "
      f"{len(ranks[0].global_draw())}")
