"""The one training loop of the deep-learning families (SPEC section 1; DESIGN "speed").

Every method is the same loop with a different index stream:
  shuffle   ordinary shuffled epochs over all N examples (uniform, without replacement)
  subset    shuffled epochs over a kept subset; the step budget stays that of full-data
            training (E epochs of ceil(N/b) steps), i.e. E/alpha passes over the subset
  weighted  b i.i.d. draws per step from p (with replacement), loss weighted by 1/(N p_i);
            `refresh(model, epoch)` may return a new p every `refresh_every` epochs
An "epoch" is always ceil(N/b) optimiser steps, N the full training-set size, so every method
gets the same number of gradient steps.  Per-example statistics come from logits the step
already computed (AUM margins, forgetting events); eval-mode snapshots of loss, EL2N,
gradient-norm bound and margin on the un-augmented training set are taken at chosen epochs.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from islab import scores
from islab.data import Dataset, prepare_batch
from islab.models import build_model
from islab.sampling import WeightedSampler, mass_on
from islab.seeding import derive_seed, torch_generator

MODES = ("shuffle", "subset", "weighted")


@dataclass
class TrainConfig:
    epochs: int = 30                 # budget epochs (each ceil(N/b) steps)
    batch_size: int = 128            # examples per step
    lr: float = 0.1                  # peak learning rate (cosine decay to 0 over all steps)
    momentum: float = 0.9
    weight_decay: float = 5e-4       # L2 coefficient (SGD weight_decay)
    nesterov: bool = False
    warmup_epochs: float = 0.0       # linear warm-up length, in epochs
    eval_batch: int = 1024           # examples per eval forward pass
    amp: bool = True                 # bf16 autocast (CUDA only; ignored on CPU)
    channels_last: bool = True       # NHWC memory format (CUDA only)
    compile: bool = False            # torch.compile the model (CUDA only)
    snapshot_epochs: tuple = ()      # epochs (1-based, after the epoch) to snapshot stats
    track_presentations: bool = False  # AUM margins + forgetting events during training


@dataclass
class Sampling:
    mode: str = "shuffle"
    subset: np.ndarray | None = None            # kept example ids (mode subset)
    probs: np.ndarray | None = None             # initial p over N (mode weighted)
    refresh: Callable | None = None             # (model, epoch) -> new p (mode weighted)
    refresh_every: int = 1                      # epochs between refreshes

    def __post_init__(self):
        assert self.mode in MODES, f"unknown sampling mode {self.mode!r}"
        if self.mode == "subset":
            assert self.subset is not None and len(self.subset) > 0, "subset mode needs kept ids"
        if self.mode == "weighted":
            assert self.probs is not None or self.refresh is not None, "weighted mode needs p or refresh"


@dataclass
class TrainResult:
    history: list = field(default_factory=list)   # one dict per epoch
    test_acc: float = float("nan")                # final, %
    best_test_acc: float = float("nan")           # best over epochs, %
    diverged: bool = False
    diverged_epoch: int | None = None
    snapshots: dict = field(default_factory=dict)  # epoch -> per-example stats (numpy)
    aum: np.ndarray | None = None
    forgetting: np.ndarray | None = None
    seconds: float = 0.0
    model: torch.nn.Module | None = None


def pick_device(name: str = "auto") -> torch.device:
    """auto, cpu, cuda or cuda:N as a torch.device; ValueError (one line) for anything else."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"unknown --device {name!r}; use auto, cpu, cuda or cuda:N") from None
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"unsupported --device {name!r}; use auto, cpu, cuda or cuda:N")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError("--device cuda requested but no CUDA device is available")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s) here")
    return device


def new_model(name: str, ds: Dataset, seed: int, device) -> torch.nn.Module:
    """Build a registry model with its init drawn from the run's own 'init' stream."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(seed, "init"))
        model = build_model(name, ds.num_classes, ds.input_shape)
    return model.to(device)


def _autocast(device, cfg):
    if device.type == "cuda" and cfg.amp:
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return torch.autocast("cpu", enabled=False)


@torch.no_grad()
def per_example_stats(model, ds: Dataset, x_uint8, labels, cfg: TrainConfig) -> dict:
    """Eval-mode loss, EL2N, gradient-norm bound, margin and correctness for every example.

    x_uint8: (N, C, H, W) on the model's device; labels: (N,) int64.  Returns numpy arrays.
    """
    was_training = model.training
    model.eval()
    device = x_uint8.device
    out = {k: [] for k in ("loss", "el2n", "gradnorm", "margin", "correct")}
    for s in range(0, len(labels), cfg.eval_batch):
        xb = prepare_batch(ds, x_uint8[s:s + cfg.eval_batch], train=False)
        yb = labels[s:s + cfg.eval_batch]
        with _autocast(device, cfg):
            logits, h = model.forward_with_features(_fmt(xb, device, cfg))
        logits = logits.float()
        out["loss"].append(F.cross_entropy(logits, yb, reduction="none"))
        out["el2n"].append(scores.el2n(logits, yb))
        out["gradnorm"].append(scores.gradnorm_bound(logits, yb, h.float()))
        out["margin"].append(scores.margins(logits, yb))
        out["correct"].append(logits.argmax(1) == yb)
    model.train(was_training)
    return {k: torch.cat(v).cpu().numpy() for k, v in out.items()}


@torch.no_grad()
def evaluate(model, ds: Dataset, cfg: TrainConfig, split=None) -> tuple[float, float]:
    """(accuracy %, mean cross-entropy) on a split (default: the test split)."""
    split = split if split is not None else ds.test
    st = per_example_stats(model, ds, split.x, split.y, cfg)
    return 100.0 * float(st["correct"].mean()), float(st["loss"].mean())


def _fmt(x, device, cfg):
    if device.type == "cuda" and cfg.channels_last and x.dim() == 4:
        return x.contiguous(memory_format=torch.channels_last)
    return x


class _ShuffledStream:
    """Consecutive slices of fresh random permutations of `pool` (ids on the device)."""

    def __init__(self, pool: torch.Tensor, generator):
        self.pool, self.gen = pool, generator
        self.order, self.pos = None, len(pool)

    def next(self, b: int) -> torch.Tensor:
        if self.pos >= len(self.pool):
            self.order = self.pool[torch.randperm(len(self.pool), generator=self.gen,
                                                  device=self.pool.device)]
            self.pos = 0
        idx = self.order[self.pos:self.pos + b]   # the last batch of a pass may be short
        self.pos += b
        return idx


def _lr_at(step, total, cfg, steps_per_epoch):
    warm = cfg.warmup_epochs * steps_per_epoch
    if warm > 0 and step < warm:
        return cfg.lr * (step + 1) / warm
    t = (step - warm) / max(1.0, total - warm)
    return cfg.lr * 0.5 * (1.0 + math.cos(math.pi * min(1.0, t)))


def train(model, ds: Dataset, labels, cfg: TrainConfig, seed: int, sampling: Sampling | None = None,
          corrupt_mask=None, progress: bool = False, log: Callable | None = None,
          checkpoint: str | Path | None = None, desc: str = "") -> TrainResult:
    """Train `model` (a registry name or a module) on ds.train with `labels` (possibly noisy).

    corrupt_mask (N bool, optional) makes each epoch log the sampling mass on corrupted
    examples and the fraction of drawn examples that were corrupted.  A non-finite training
    loss stops the run and marks it diverged.  With `checkpoint` set, state is saved after each
    epoch and a later call with the same path resumes from it.
    """
    sampling = sampling or Sampling()
    device = ds.train.x.device
    if isinstance(model, str):
        model = new_model(model, ds, seed, device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        if cfg.channels_last:
            model = model.to(memory_format=torch.channels_last)
    step_model = torch.compile(model) if (cfg.compile and device.type == "cuda") else model

    n = len(ds.train)
    y = torch.as_tensor(np.asarray(labels), dtype=torch.long, device=device)
    assert len(y) == n, "one label per training example"
    mask_np = None if corrupt_mask is None else np.asarray(corrupt_mask, dtype=bool)
    mask_t = None if mask_np is None else torch.as_tensor(mask_np, device=device)
    steps_per_epoch = math.ceil(n / cfg.batch_size)
    total_steps = cfg.epochs * steps_per_epoch

    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                          weight_decay=cfg.weight_decay, nesterov=cfg.nesterov)
    order_gen = torch_generator(seed, "order", device=device)
    aug_gen = torch_generator(seed, "augment", device=device)
    aum = scores.AUMTracker(n, device) if cfg.track_presentations else None
    forget = scores.ForgettingTracker(n, device) if cfg.track_presentations else None
    if sampling.mode == "subset":
        stream = _ShuffledStream(torch.as_tensor(np.sort(sampling.subset), device=device), order_gen)
    elif sampling.mode == "shuffle":
        stream = _ShuffledStream(torch.arange(n, device=device), order_gen)
    p = sampling.probs
    sampler = WeightedSampler(p, device) if (sampling.mode == "weighted" and p is not None) else None

    res = TrainResult(model=model)
    start_epoch, t_start = 0, time.time()
    ckpt = Path(checkpoint) if checkpoint else None
    if ckpt is not None and ckpt.exists():
        state = torch.load(ckpt, map_location=device, weights_only=False)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        order_gen.set_state(state["order_gen"])
        aug_gen.set_state(state["aug_gen"])
        res.history, res.snapshots = state["history"], state["snapshots"]
        start_epoch = state["epoch"]
        p = state["p"]
        sampler = WeightedSampler(p, device) if p is not None else None
        if aum is not None:
            aum.total, aum.count = state["aum"]
            forget.prev, forget.ever, forget.events = state["forget"]
        if sampling.mode != "weighted":
            stream.order, stream.pos = state["stream"]
    model.train()
    for epoch in range(start_epoch, cfg.epochs):
        t0 = time.time()
        # Dropout draws from the global generator: give it its own stream, reset per epoch so a
        # resumed run draws exactly what an uninterrupted one would.
        torch.manual_seed(derive_seed(seed, "dropout", epoch))
        if sampling.mode == "weighted" and sampling.refresh is not None and (
                epoch % sampling.refresh_every == 0 or sampler is None):
            p = np.asarray(sampling.refresh(model, epoch), dtype=np.float64)
            sampler = WeightedSampler(p, device)
            model.train()
        loss_sum = torch.zeros((), device=device, dtype=torch.float64)
        drawn_bad = torch.zeros((), device=device, dtype=torch.int64)
        drawn = 0
        bar = range(steps_per_epoch)
        if progress:
            from tqdm import tqdm

            bar = tqdm(bar, desc=f"{desc} ep {epoch + 1}/{cfg.epochs}", leave=False)
        for s in bar:
            step = epoch * steps_per_epoch + s
            for g in opt.param_groups:
                g["lr"] = _lr_at(step, total_steps, cfg, steps_per_epoch)
            if sampling.mode == "weighted":
                idx, w = sampler.draw(cfg.batch_size, order_gen)
            else:
                idx, w = stream.next(cfg.batch_size), None
            xb = _fmt(prepare_batch(ds, ds.train.x[idx], train=True, generator=aug_gen), device, cfg)
            yb = y[idx]
            with _autocast(device, cfg):
                logits = step_model(xb)
            per_ex = F.cross_entropy(logits.float(), yb, reduction="none")
            loss = (per_ex * w).mean() if w is not None else per_ex.mean()
            if aum is not None:  # training-mode logits, before the update (AUM / forgetting)
                aum.update(idx, logits, yb)
                forget.update(idx, logits, yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss_sum += loss.detach().double() * len(idx)
            drawn += len(idx)
            if mask_t is not None:
                drawn_bad += mask_t[idx].sum()
        train_loss = float(loss_sum) / drawn  # one device sync per epoch
        rec = {"epoch": epoch + 1, "train_loss": train_loss, "lr": opt.param_groups[0]["lr"]}
        if not math.isfinite(train_loss):
            res.diverged, res.diverged_epoch = True, epoch + 1
            rec.update(test_acc=float("nan"), test_loss=float("nan"))
            res.history.append(rec)
            if log:
                log(f"{desc} epoch {epoch + 1}: non-finite training loss -> run stopped as diverged")
            break
        rec["test_acc"], rec["test_loss"] = evaluate(model, ds, cfg)
        if mask_np is not None:
            if sampling.mode == "weighted":
                rec["mass_corrupt"] = mass_on(p, mask_np)
            elif sampling.mode == "subset":
                rec["mass_corrupt"] = float(mask_np[sampling.subset].mean())
            else:
                rec["mass_corrupt"] = float(mask_np.mean())
            rec["drawn_corrupt"] = float(drawn_bad) / drawn
        rec["seconds"] = time.time() - t0
        res.history.append(rec)
        if (epoch + 1) in cfg.snapshot_epochs:
            res.snapshots[epoch + 1] = per_example_stats(model, ds, ds.train.x, y, cfg)
        if log:
            log(f"{desc} epoch {epoch + 1}/{cfg.epochs} loss {train_loss:.4f} "
                f"test acc {rec['test_acc']:.2f}% ({rec['seconds']:.1f}s)")
        if ckpt is not None:
            _save_checkpoint(ckpt, model, opt, order_gen, aug_gen, res, epoch + 1, p, aum, forget,
                             None if sampling.mode == "weighted" else (stream.order, stream.pos))

    accs = [r["test_acc"] for r in res.history if math.isfinite(r.get("test_acc", float("nan")))]
    res.test_acc = res.history[-1]["test_acc"] if res.history else float("nan")
    res.best_test_acc = max(accs) if accs else float("nan")
    if aum is not None:
        res.aum, res.forgetting = aum.value(), forget.value()
    res.seconds = time.time() - t_start
    return res


def _save_checkpoint(path, model, opt, order_gen, aug_gen, res, epoch, p, aum, forget, stream):
    import io

    from islab.runs import atomic_write_bytes

    buf = io.BytesIO()
    torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "epoch": epoch,
                "order_gen": order_gen.get_state(), "aug_gen": aug_gen.get_state(),
                "history": res.history, "snapshots": res.snapshots, "p": p,
                "aum": None if aum is None else (aum.total, aum.count),
                "forget": None if forget is None else (forget.prev, forget.ever, forget.events),
                "stream": stream}, buf)
    atomic_write_bytes(path, buf.getvalue())
