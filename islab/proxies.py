"""Proxy ensembles, the targeted-noise attacker, and the cache between them and every method.

One proxy = one registry model trained (islab.train) on the possibly corrupted training set
with its own seed.  Its per-example statistics (eval-mode loss, EL2N, gradient-norm bound,
margin at the snapshot epoch E_s; AUM and forgetting over all E_p epochs; test accuracy) are
cached on disk, one file per proxy, keyed by everything that changes them: dataset and its
content, the exact training labels, model name, seed and training config.  A cache file whose
key does not match, or that cannot be read in full, is rebuilt, never trusted; one whose SHA-256
(recorded beside it, <file>.sha256) differs is moved aside with a warning and rebuilt.  Ensembles of
different K reuse the same per-proxy files.  Each entry is locked (<entry>.lock) while it is
looked up and trained: a second process (another launcher worker, another run folder sharing
the cache) that wants the same proxy waits, then reads it, instead of training it again.
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
from islab.data import Dataset, data_fingerprint, hash_arrays
from islab.runs import file_lock, intact, save_npz_verified
from islab.seeding import derive_seed, numpy_rng
from islab.train import TrainConfig, new_model, train

STAT_NAMES = ("loss", "el2n", "gradnorm", "margin", "correct", "aum", "forgetting")
CACHE_VERSION = 2   # 2: runtime (torch, threads) and pipeline (augment, ...) in the key


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
    dynamics: list | None = None   # per proxy (E_p, N, C) float32 training logits (record_logits)
    diverged: list | None = None   # proxies left out because they diverged (skip_diverged): (name, seed, why)

    def __getitem__(self, key):
        return self.stats[key]

    def take(self, k: int) -> "ProxyEnsemble":
        """The first k proxies (for K ablations)."""
        return ProxyEnsemble(self.names[:k], self.seeds[:k],
                             {s: v[:k] for s, v in self.stats.items()}, self.test_acc[:k],
                             None if self.dynamics is None else self.dynamics[:k], self.diverged)


fingerprint = hash_arrays   # a short content hash of tensors/arrays (islab.data.hash_arrays)


def runtime_key(device) -> dict:
    """What, besides data, labels, model, seed and schedule, changes a run's numbers: the device
    type, the torch release (kernels) and, on the CPU, the torch thread count (the order of
    floating-point reductions).  Part of every cache key, so a cache filled by another setting is
    never read as this one's."""
    device = torch.device(device)
    return {"device": device.type, "torch": torch.__version__,
            "threads": torch.get_num_threads() if device.type == "cpu" else None}


# TrainConfig fields that never change a proxy's numbers: left out of the cache key (so caches
# filled before a field existed stay valid)
NOT_KEYED = ("eval_batch", "compile", "record_logits")


def _cache_key(ds: Dataset, labels, name, seed, cfg: TrainConfig) -> dict:
    cfg_d = {k: v for k, v in asdict(cfg).items() if k not in NOT_KEYED}
    cfg_d["snapshot_epochs"] = list(cfg.snapshot_epochs)
    pipeline = {"classes": int(ds.num_classes), "mean": None if ds.mean is None else list(ds.mean),
                "std": None if ds.std is None else list(ds.std),
                "augment": ds.augment, "crop_pad": int(getattr(ds, "crop_pad", 4))}
    return {"version": CACHE_VERSION, "dataset": ds.name, "data": data_fingerprint(ds),
            "labels": fingerprint(np.asarray(labels)), "model": name, "seed": int(seed), "train": cfg_d,
            "pipeline": pipeline, **runtime_key(ds.train.x.device)}


def _cache_file(cache_dir, key: dict) -> Path:
    digest = hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]
    return Path(cache_dir) / f"{key['dataset']}-{key['model']}-s{key['seed']}-{digest}.npz"


def _dynamics_file(path: Path) -> Path:
    """The per-epoch training logits of a cached proxy: a file beside its statistics, written only
    when asked for (--export-dynamics), so the statistics' cache never depends on it."""
    return path.with_name(path.stem + "-dynamics.npz")


def _load_dynamics(path: Path, key: dict, epochs: int, n: int, warn=None):
    if not intact(_dynamics_file(path), warn):
        return None
    try:
        with np.load(_dynamics_file(path), allow_pickle=False) as z:
            if json.loads(str(z["key"])) != key:
                return None
            logits = z["logits"]
    except Exception:  # missing, truncated or foreign: train again
        return None
    return logits if logits.ndim == 3 and logits.shape[:2] == (epochs, n) else None


def _load(path: Path, key: dict, n: int, dynamics_epochs: int | None = None, warn=None):
    """The cached arrays, or None when the file is missing, damaged (its SHA-256 differs: moved
    aside, islab.runs.intact) or for another key (or, with dynamics_epochs, when the per-epoch
    logits file is missing or incomplete)."""
    if not intact(path, warn):
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
    if dynamics_epochs is not None:
        out["dynamics"] = _load_dynamics(path, key, dynamics_epochs, n, warn)
        if out["dynamics"] is None:
            return None
    return out, acc


def _proxy_config(cfg: TrainConfig, snapshot_epoch: int, dynamics: bool = False) -> TrainConfig:
    assert 1 <= snapshot_epoch <= cfg.epochs, "snapshot epoch must lie within the proxy run"
    return TrainConfig(**{**asdict(cfg), "snapshot_epochs": (snapshot_epoch,), "track_presentations": True,
                          "record_logits": dynamics})


@contextlib.contextmanager
def _locked(paths):
    """Hold the lock of every cache entry in `paths` (None: no cache), taken in one global order
    (sorted), so processes locking overlapping groups never wait for each other in a cycle."""
    with contextlib.ExitStack() as stack:
        for path in sorted({str(p) for p in paths if p is not None}):
            Path(path).parent.mkdir(parents=True, exist_ok=True)   # a cache folder not made yet
            stack.enter_context(file_lock(Path(path).with_suffix(".lock")))
        yield


def _cached(ds, labels, name, seed, cfg, cache_dir, log):
    """(key, path, hit): the proxy's cache key, file (None without a cache folder or for a model
    given as a factory, which has no name to key it by) and, when the file holds that key in
    full, its (stats, test acc)."""
    if not isinstance(name, str):
        return None, None, None
    key = _cache_key(ds, labels, name, seed, cfg)
    path = _cache_file(cache_dir, key) if cache_dir else None
    return key, path, _read(path, key, len(ds.train), cfg, name, seed, log)


def _read(path, key, n: int, cfg, name, seed, log):
    """The cached (stats, test acc) of `key` in `path` (None: no file, or not that key in full)."""
    hit = _load(path, key, n, cfg.epochs if cfg.record_logits else None, log) if path is not None else None
    if hit is not None and log:
        log(f"proxy {name} seed {seed}: cached ({path.name})")
    return hit


def _finish(res, name, seed, cfg, snapshot_epoch, key, path, log, trainer: str):
    """One finished proxy run -> (stats dict of (N,) arrays, test acc %), cached on disk.

    The same for a sequential run and for a member of a batched one (islab.ensemble).  A
    diverged run raises, naming the proxy; nothing is cached for it."""
    if res.diverged:
        raise ProxyDiverged(f"proxy {model_label(name)} seed {seed} diverged at epoch {res.diverged_epoch}")
    snap = res.snapshots[snapshot_epoch]
    out = {s: np.asarray(snap[s], dtype=np.float64)
           for s in ("loss", "el2n", "gradnorm", "margin", "correct")}
    out["aum"], out["forgetting"] = res.aum, res.forgetting
    if log:
        log(f"proxy {model_label(name)} seed {seed}: trained {cfg.epochs} epochs ({trainer}), "
            f"test acc {res.test_acc:.2f}% ({res.seconds:.1f}s)")
    if path is not None:   # `trainer` is recorded, not keyed: both trainers fill the same files
        save_npz_verified(path, key=np.array(json.dumps(key, sort_keys=True)),
                          test_acc=np.array(res.test_acc), trainer=np.array(trainer), **out)
        if res.dynamics is not None:
            save_npz_verified(_dynamics_file(path), key=np.array(json.dumps(key, sort_keys=True)),
                              logits=res.dynamics)
    if res.dynamics is not None:
        out["dynamics"] = res.dynamics
    return out, res.test_acc


def model_label(model) -> str:
    """A registry name as is; a model factory by its __name__ (what logs and exports show)."""
    return model if isinstance(model, str) else getattr(model, "__name__", type(model).__name__)


def check_factory(model, what: str = "model") -> None:
    """ValueError unless `model` is a registry name or a factory: a module INSTANCE is callable too
    (its forward), so without this check it fails later with a TypeError from forward()."""
    if isinstance(model, torch.nn.Module):
        cls = type(model)
        shown = f"nn.{cls.__name__}" if cls.__module__.startswith("torch.nn") else cls.__name__
        raise ValueError(f"{what} is an nn.Module instance ({cls.__name__}), not a factory: pass a factory that builds "
                         f"a fresh model, e.g. lambda: {shown}(...) with the arguments you built it with (each proxy "
                         f"trains its own copy from its own seed; a list takes one factory per proxy)")
    if not (isinstance(model, str) or callable(model)):
        raise ValueError(f"{what} must be a model factory (a callable returning an nn.Module), got "
                         f"{type(model).__name__}")


class NamedFactory:
    """A model factory under a chosen name (what logs, ProxyEnsemble.names and exports show)."""

    def __init__(self, name: str, factory):
        self.__name__, self.factory = str(name), factory

    def __call__(self):
        return self.factory()


def train_proxy(ds: Dataset, labels, name, seed: int, cfg: TrainConfig, snapshot_epoch: int,
                cache_dir=None, log=None, progress=False, dynamics: bool = False):
    """Train one proxy (or read it from the cache): (stats dict of (N,) arrays, test acc %).

    name: a registry model name, or a factory `f() -> nn.Module` (islab.train.new_model builds it
    from the seed's 'init' stream; never cached: a factory has no name to key the cache by).
    dynamics: also return (and cache) the per-epoch training logits under 'dynamics'.
    The cache entry is locked while it is trained, so concurrent processes train it once."""
    cfg = _proxy_config(cfg, snapshot_epoch, dynamics)
    key = _cache_key(ds, labels, name, seed, cfg) if isinstance(name, str) else None
    path = _cache_file(cache_dir, key) if cache_dir and key is not None else None
    with _locked([path]):
        hit = _read(path, key, len(ds.train), cfg, name, seed, log)
        if hit is not None:
            return hit
        res = train(new_model(name, ds, seed, ds.train.x.device), ds, labels, cfg, seed, progress=progress,
                    desc=f"proxy {model_label(name)} s{seed}")
        return _finish(res, name, seed, cfg, snapshot_epoch, key, path, log, "sequential")


def _train_batched(ds, labels, name, cfg, snapshot_epoch, todo, log, progress):
    """Proxies `todo` (list of (seed, key, path)) of one architecture as one batched model;
    returns ({seed: (stats, acc)}, {seed: ProxyDiverged}).  Every member that finished is cached."""
    from islab.ensemble import train_ensemble

    runs = train_ensemble(name, ds, labels, cfg, [s for s, _, _ in todo], progress=progress,
                          desc=f"proxies {name} x{len(todo)}")
    trainer = f"batched with {len(todo) - 1} other seed(s)"
    done, failed = {}, {}
    for (seed, key, path), res in zip(todo, runs):
        try:
            done[seed] = _finish(res, name, seed, cfg, snapshot_epoch, key, path, log, trainer)
        except ProxyDiverged as err:
            failed[seed] = err
    return done, failed


def proxy_ensemble(ds: Dataset, labels, names, seeds, cfg: TrainConfig, snapshot_epoch: int,
                   cache_dir=None, log=None, progress=False, batched: bool = True,
                   dynamics: bool = False, skip_diverged: bool = False) -> ProxyEnsemble:
    """K proxies (names[k] trained with seeds[k]) on the given (possibly noisy) labels.

    batched: proxies of one architecture that are not cached yet are trained together as one
    batched model (islab.ensemble) when there are at least two of them and the architecture
    folds; their numbers equal those of separate runs up to floating-point rounding
    (tests/unit/test_ensemble.py).  Other proxies, and all with batched=False, train one by one.
    Either way each proxy has its own cache file, so any K reads what any other K trained.
    names may also hold model factories (train_proxy); those train one by one, uncached.
    dynamics: record each proxy's per-epoch training logits (ProxyEnsemble.dynamics).
    A diverged proxy raises ProxyDiverged (the first, after the others of its batch are cached);
    with skip_diverged it is left out instead and listed in ProxyEnsemble.diverged (the caller
    decides whether the proxies left are enough)."""
    assert len(names) == len(seeds), "one seed per proxy"
    pcfg = _proxy_config(cfg, snapshot_epoch, dynamics)
    found, failed = {}, {}   # (name, seed) -> (stats, acc) / ProxyDiverged
    todo = {}   # name -> [(seed, key, path)] still to train, in list order
    for name, seed in zip(names, seeds):
        key, path, hit = _cached(ds, labels, name, seed, pcfg, cache_dir, log)
        if hit is not None:
            found[(name, seed)] = hit
        elif (name, seed) not in found:
            todo.setdefault(name, [])
            if all(s != seed for s, _, _ in todo[name]):
                todo[name].append((seed, key, path))
    if batched:
        from islab.ensemble import foldable

        for name, group in todo.items():
            if len(group) >= 2 and isinstance(name, str) and foldable(name, ds):
                with _locked([path for _, _, path in group]):
                    left = []   # another process may have trained some while this one waited
                    for seed, key, path in group:
                        hit = _read(path, key, len(ds.train), pcfg, name, seed, log)
                        if hit is not None:
                            found[(name, seed)] = hit
                        else:
                            left.append((seed, key, path))
                    if len(left) >= 2:
                        done, bad = _train_batched(ds, labels, name, pcfg, snapshot_epoch, left, log, progress)
                        found.update({(name, seed): hit for seed, hit in done.items()})
                        failed.update({(name, seed): err for seed, err in bad.items()})
    if failed and not skip_diverged:
        raise next(iter(failed.values()))
    stats = {s: [] for s in STAT_NAMES}
    accs, logits, kept, diverged = [], [], [], []
    for name, seed in zip(names, seeds):
        if (name, seed) not in found and (name, seed) not in failed:   # sequential, in list order
            try:
                found[(name, seed)] = train_proxy(ds, labels, name, seed, cfg, snapshot_epoch, cache_dir,
                                                  log, progress, dynamics)
            except ProxyDiverged as err:
                if not skip_diverged:
                    raise
                failed[(name, seed)] = err
        if (name, seed) in failed:
            diverged.append((model_label(name), int(seed), str(failed[(name, seed)])))
            continue
        kept.append((name, seed))
        out, acc = found[(name, seed)]
        for s in STAT_NAMES:
            stats[s].append(out[s])
        accs.append(acc)
        logits.append(out.get("dynamics"))
    if not kept:
        raise next(iter(failed.values()))
    return ProxyEnsemble([model_label(n) for n, _ in kept], [s for _, s in kept],
                         {s: np.stack(v) for s, v in stats.items()}, np.asarray(accs), logits if dynamics else None,
                         diverged if skip_diverged else None)


def attacker_score(ds: Dataset, model: str, cfg: TrainConfig, seed: int, cache_dir=None, log=None):
    """Targeted-noise attacker (docs/METHODS.md section 2): a model trained on the CLEAN labels; each
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


# ---------------------------------------------------------------- out-of-sample probabilities


def stratified_folds(labels, folds: int, seed: int) -> np.ndarray:
    """(N,) fold id in 0..folds-1 of each example: within every class (of `labels`), a random
    permutation from seed's 'cv-folds' stream dealt round-robin, so each fold holds ~1/folds of
    every class."""
    labels = np.asarray(labels)
    if folds < 2:
        raise ValueError(f"cross-validation needs at least 2 folds, got {folds}")
    rng = numpy_rng(seed, "cv-folds")
    fold = np.empty(len(labels), dtype=np.int64)
    for c in np.unique(labels):
        ids = np.flatnonzero(labels == c)
        fold[rng.permutation(ids)] = np.arange(len(ids)) % folds
    return fold


def out_of_sample_probs(ds: Dataset, labels, names, seeds, cfg: TrainConfig, folds: int, fold_seed: int,
                        cache_dir=None, log=None, progress=False) -> np.ndarray:
    """(N, C) out-of-sample predicted probabilities, as cleanlab prescribes: for each of `folds`
    stratified folds (stratified_folds) and each proxy k, names[k] (seed seeds[k]) is trained with
    islab.train on the OTHER folds for cfg.epochs epochs, and its eval-mode softmax on the held-out
    fold is that fold's prediction; the K proxies' probabilities are averaged.

    Each (fold, proxy) run is cached like a proxy (key: the fold's training data and labels, the
    model, seed and schedule, plus the held-out ids).  A diverging run raises ProxyDiverged."""
    from dataclasses import replace

    from islab.data import example_ids, subset
    from islab.train import predict_probs

    labels = np.asarray(labels)
    fold = stratified_folds(labels, folds, fold_seed)
    n, c = len(labels), ds.num_classes
    total = np.zeros((n, c))
    device = ds.train.x.device
    for f in range(folds):
        held, keep = np.flatnonzero(fold == f), np.flatnonzero(fold != f)
        fold_ds = replace(ds, train=subset(ds.train, keep), train_ids=example_ids(ds, keep))
        x_held = ds.train.x[torch.as_tensor(held, device=device)]
        for name, seed in zip(names, seeds):
            key = {**_cache_key(fold_ds, labels[keep], name, seed, cfg), "heldout": fingerprint(held),
                   "output": "held-out softmax"}
            path = _cache_file(cache_dir, key) if (cache_dir and isinstance(name, str)) else None
            probs = _load_probs(path, key, (len(held), c), log) if path is not None else None
            tag = f"{model_label(name)} seed {seed} fold {f + 1}/{folds}"
            if probs is not None:
                if log:
                    log(f"cross-validated proxy {tag}: cached ({path.name})")
            else:
                res = train(new_model(name, fold_ds, seed, device), fold_ds, labels[keep], cfg, seed,
                            progress=progress, desc=f"cv {tag}")
                if res.diverged:
                    raise ProxyDiverged(f"cross-validated proxy {tag} diverged at epoch {res.diverged_epoch}")
                probs = predict_probs(res.model, ds, x_held, cfg)
                if log:
                    log(f"cross-validated proxy {tag}: trained on {len(keep)} examples, test acc "
                        f"{res.test_acc:.2f}% ({res.seconds:.1f}s)")
                if path is not None:
                    save_npz_verified(path, key=np.array(json.dumps(key, sort_keys=True)), probs=probs,
                                      test_acc=np.array(res.test_acc))
            total[held] += probs
    return total / len(names)


def _load_probs(path: Path, key: dict, shape, warn=None):
    if not intact(path, warn):
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            if json.loads(str(z["key"])) != key:
                return None
            probs = z["probs"].astype(np.float64)
    except Exception:  # missing, truncated or foreign: train again
        return None
    return probs if probs.shape == shape and np.all(np.isfinite(probs)) else None
