"""Proxy ensembles, the targeted-noise attacker, and the cache between them and every method.

One proxy = one registry model trained (islab.train) on the possibly corrupted training set
with its own seed.  Its per-example statistics (eval-mode loss, EL2N, gradient-norm bound,
margin at the snapshot epoch E_s; AUM and forgetting over all E_p epochs; test accuracy) are
cached on disk, one file per proxy, keyed by everything that changes them: dataset and its
content, the exact training labels, model name, seed and training config.  A cache file whose
key does not match, or that cannot be read in full, is rebuilt, never trusted.  Ensembles of
different K reuse the same per-proxy files.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from islab import noise as noise_lib
from islab.data import Dataset
from islab.runs import atomic_save_npz, file_lock
from islab.seeding import derive_seed, numpy_rng
from islab.train import TrainConfig, train

STAT_NAMES = ("loss", "el2n", "gradnorm", "margin", "correct", "aum", "forgetting")
CACHE_VERSION = 1


class ProxyDiverged(RuntimeError):
    """A proxy (or the targeted-noise attacker) run diverged: its scores do not exist.  Scripts
    record the jobs that need them as diverged and carry on (nothing is cached)."""


@dataclass
class ProxyEnsemble:
    """Per-example statistics of K proxies: every array is (K, N), indexed by example id."""
    names: list
    seeds: list
    stats: dict            # name in STAT_NAMES -> (K, N) float64
    test_acc: np.ndarray   # (K,) final test accuracy of each proxy, %

    def __getitem__(self, key):
        return self.stats[key]

    def take(self, k: int) -> "ProxyEnsemble":
        """The first k proxies (for K ablations)."""
        return ProxyEnsemble(self.names[:k], self.seeds[:k],
                             {s: v[:k] for s, v in self.stats.items()}, self.test_acc[:k])


def fingerprint(*arrays) -> str:
    """A short content hash of tensors/arrays (data and labels are part of every cache key)."""
    h = hashlib.sha1()
    for a in arrays:
        a = a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)
        h.update(str(a.shape).encode())
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()[:16]


def _cache_key(ds: Dataset, labels, name, seed, cfg: TrainConfig) -> dict:
    cfg_d = {k: v for k, v in asdict(cfg).items() if k not in ("eval_batch", "compile")}
    cfg_d["snapshot_epochs"] = list(cfg.snapshot_epochs)
    return {"version": CACHE_VERSION, "dataset": ds.name, "data": fingerprint(ds.train.x, ds.test.x),
            "labels": fingerprint(labels), "model": name, "seed": int(seed), "train": cfg_d,
            "device": ds.train.x.device.type}


def _cache_file(cache_dir, key: dict) -> Path:
    digest = hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]
    return Path(cache_dir) / f"{key['dataset']}-{key['model']}-s{key['seed']}-{digest}.npz"


def _load(path: Path, key: dict, n: int):
    """The cached arrays, or None when the file is missing, truncated or for another key."""
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            if json.loads(str(z["key"])) != key:
                return None
            out = {s: z[s].astype(np.float64) for s in STAT_NAMES}
            acc = float(z["test_acc"])
    except Exception:  # truncated / corrupt file: rebuild
        return None
    if any(v.shape != (n,) for v in out.values()):
        return None
    return out, acc


def train_proxy(ds: Dataset, labels, name: str, seed: int, cfg: TrainConfig, snapshot_epoch: int,
                cache_dir=None, log=None, progress=False):
    """Train one proxy (or read it from the cache): (stats dict of (N,) arrays, test acc %).

    The cache entry is locked while it is looked up and trained (<entry>.lock): a second
    process that wants the same proxy waits, then reads it, instead of training it again."""
    assert 1 <= snapshot_epoch <= cfg.epochs, "snapshot epoch must lie within the proxy run"
    cfg = TrainConfig(**{**asdict(cfg), "snapshot_epochs": (snapshot_epoch,), "track_presentations": True})
    key = _cache_key(ds, labels, name, seed, cfg)
    path = _cache_file(cache_dir, key) if cache_dir else None
    with file_lock(path.with_suffix(".lock")) if path is not None else contextlib.nullcontext():
        return _cached_or_trained(ds, labels, name, seed, cfg, snapshot_epoch, key, path, log, progress)


def _cached_or_trained(ds, labels, name, seed, cfg, snapshot_epoch, key, path, log, progress):
    if path is not None:
        hit = _load(path, key, len(ds.train))
        if hit is not None:
            if log:
                log(f"proxy {name} seed {seed}: cached ({path.name})")
            return hit
    res = train(name, ds, labels, cfg, seed, progress=progress, desc=f"proxy {name} s{seed}")
    if res.diverged:
        raise ProxyDiverged(f"proxy {name} seed {seed} diverged at epoch {res.diverged_epoch}")
    snap = res.snapshots[snapshot_epoch]
    out = {s: np.asarray(snap[s], dtype=np.float64) for s in ("loss", "el2n", "gradnorm", "margin", "correct")}
    out["aum"], out["forgetting"] = res.aum, res.forgetting
    if log:
        log(f"proxy {name} seed {seed}: trained {cfg.epochs} epochs, test acc {res.test_acc:.2f}% "
            f"({res.seconds:.1f}s)")
    if path is not None:
        atomic_save_npz(path, key=np.array(json.dumps(key, sort_keys=True)),
                        test_acc=np.array(res.test_acc), **out)
    return out, res.test_acc


def proxy_ensemble(ds: Dataset, labels, names, seeds, cfg: TrainConfig, snapshot_epoch: int,
                   cache_dir=None, log=None, progress=False) -> ProxyEnsemble:
    """K proxies (names[k] trained with seeds[k]) on the given (possibly noisy) labels."""
    assert len(names) == len(seeds), "one seed per proxy"
    stats = {s: [] for s in STAT_NAMES}
    accs = []
    for name, seed in zip(names, seeds):
        out, acc = train_proxy(ds, labels, name, seed, cfg, snapshot_epoch, cache_dir, log, progress)
        for s in STAT_NAMES:
            stats[s].append(out[s])
        accs.append(acc)
    return ProxyEnsemble(list(names), list(seeds), {s: np.stack(v) for s, v in stats.items()},
                         np.asarray(accs))


def attacker_score(ds: Dataset, model: str, cfg: TrainConfig, seed: int, cache_dir=None, log=None):
    """Targeted-noise attacker (SPEC section 2): a model trained on the CLEAN labels; each
    example is scored by its exact last-layer gradient norm at the end of training."""
    clean = ds.train.y.cpu().numpy()
    out, acc = train_proxy(ds, clean, model, derive_seed(seed, "attacker"), cfg, cfg.epochs,
                           cache_dir, log)
    return out["gradnorm"]


def noisy_labels(ds: Dataset, kind: str, rate: float, noise_seed: int, attacker_model: str = "cnn",
                 attacker_cfg: TrainConfig | None = None, cache_dir=None, log=None):
    """(noisy labels, corruption mask, clean labels) for one (dataset, kind, rate, noise seed).

    Shared by every method of that configuration: it depends on nothing else.
    """
    clean = ds.train.y.cpu().numpy()
    rng = numpy_rng(noise_seed, "noise")
    score = None
    if kind == "targeted" and noise_lib.n_corrupt(len(clean), rate) > 0:
        score = attacker_score(ds, attacker_model, attacker_cfg or TrainConfig(), noise_seed, cache_dir, log)
    noisy, mask = noise_lib.corrupt_labels(clean, kind, rate, ds.num_classes, rng, score=score)
    return noisy, mask, clean
