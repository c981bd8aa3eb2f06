"""The one training loop of the deep-learning families (docs/METHODS.md section 1).

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

import contextlib
import math
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from islab import checkpoint as ckpts
from islab import scores
from islab.data import Dataset, prepare_batch
from islab.dynamics import TrainingDynamics
from islab.models import build_model, logits_and_features
from islab.progress import Heartbeat
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
    compile: bool = False            # torch.compile the training forward (CUDA only; see compile_forward)
    snapshot_epochs: tuple = ()      # epochs (1-based, after the epoch) to snapshot stats
    track_presentations: bool = False  # AUM margins + forgetting events during training
    record_logits: bool = False      # with track_presentations: keep each epoch's training logits
                                     # (TrainResult.dynamics); never changes a number


@dataclass
class Sampling:
    mode: str = "shuffle"
    subset: np.ndarray | None = None            # kept example ids (mode subset)
    probs: np.ndarray | None = None             # initial p over N (mode weighted)
    refresh: Callable | None = None             # (model, epoch) -> new p (mode weighted)
    refresh_every: int = 1                      # epochs between refreshes
    reweight: bool = True                       # mode weighted: loss x 1/(N p_i); False: every weight 1
    # what the caller records per refresh (state_dict() / load_state_dict(d), e.g. islab.online.RefreshLog):
    # saved with every checkpoint, so a resumed run reports the refreshes made before the interruption
    state: object | None = None

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
    dynamics: np.ndarray | None = None             # (epochs, N, C) float32 training logits (record_logits)
    seconds: float = 0.0
    model: torch.nn.Module | None = None


def pick_device(name: str = "auto", arg: str = "device") -> torch.device:
    """auto, cpu, cuda or cuda:N as a torch.device; ValueError (one line) for anything else.
    arg: what the caller calls the value in the message: the argument name (`device='cuda'`), or
    a command-line flag (`--device cuda`) when a script passes arg="--device"."""
    shown = f"{arg} {name}" if arg.startswith("--") else f"{arg}={name!r}"
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"unknown {shown}; use auto, cpu, cuda or cuda:N") from None
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"unsupported {shown}; use auto, cpu, cuda or cuda:N")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"{shown} asks for CUDA but no CUDA device is available here; use cpu (or auto)")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"{shown}: only {torch.cuda.device_count()} CUDA device(s) here")
    return device


def new_model(name, ds: Dataset, seed: int, device) -> torch.nn.Module:
    """Build a model with its init drawn from the run's own 'init' stream: `name` is a registry
    name, or a factory `f() -> nn.Module` (any architecture; it runs under the same seeding)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(seed, "init"))
        if isinstance(name, str):
            model = build_model(name, ds.num_classes, ds.input_shape)
        else:
            model = name()
            if not isinstance(model, torch.nn.Module):
                raise ValueError(f"the model factory returned {type(model).__name__}, not a torch.nn.Module")
    return model.to(device)


def autocast_context(device, cfg):
    """The mixed-precision context of a forward pass: bfloat16 autocast on CUDA with cfg.amp, else
    a no-op (shared by this loop and islab.ensemble's batched one, which must stay bit-equal)."""
    if device.type == "cuda" and cfg.amp:
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()   # no autocast object per step on the CPU (it costs ~6 us)


def gather(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """x[idx] (rows idx of x, same values and strides), ~15x faster on the CPU for a uint8 image
    tensor (measured: 4.5 vs 65 us for 128 rows of 28x28).

    index_select writes a contiguous result; its strides are then set to x's.  That is a no-op
    on memory (x is contiguous, so only the strides of size-1 dimensions can differ) but not on
    the numbers: a convolution reads a (B, 1, H, W) batch whose channel stride is 1 (digits
    arrive that way from numpy) as channels_last and picks another kernel.  A non-contiguous x
    (e.g. a channels_last image tensor) keeps advanced indexing, which preserves its layout."""
    if not x.is_contiguous():
        return x[idx]
    out = torch.index_select(x, 0, idx)
    if x.dim() > 1 and out.stride()[1:] != x.stride()[1:]:
        out = out.as_strided(out.shape, (out.stride(0), *x.stride()[1:]))
    return out


def stats_from_logits(logits, h, labels) -> dict:
    """The per-example statistics of a batch from its logits and penultimate features (torch)."""
    logits = logits.float()
    return {"loss": F.cross_entropy(logits, labels, reduction="none"),
            "el2n": scores.el2n(logits, labels),
            "gradnorm": scores.gradnorm_bound(logits, labels, h.float()),
            "margin": scores.margins(logits, labels),
            "correct": logits.argmax(1) == labels}


@torch.no_grad()
def per_example_stats(model, ds: Dataset, x_uint8, labels, cfg: TrainConfig) -> dict:
    """Eval-mode loss, EL2N, gradient-norm bound, margin and correctness for every example.

    x_uint8: (N, C, H, W) on the model's device; labels: (N,) int64.  Returns numpy arrays.
    """
    was_training = model.training
    model.eval()
    device = x_uint8.device
    out = {k: [] for k in STAT_KEYS}
    for s in range(0, len(labels), cfg.eval_batch):
        xb = prepare_batch(ds, x_uint8[s:s + cfg.eval_batch], train=False)
        yb = labels[s:s + cfg.eval_batch]
        with autocast_context(device, cfg):
            logits, h = logits_and_features(model, batch_format(xb, device, cfg))
        for k, v in stats_from_logits(logits, h, yb).items():
            out[k].append(v)
    model.train(was_training)
    return {k: torch.cat(v).cpu().numpy() for k, v in out.items()}


STAT_KEYS = ("loss", "el2n", "gradnorm", "margin", "correct")


@torch.no_grad()
def predict_probs(model, ds: Dataset, x, cfg: TrainConfig) -> np.ndarray:
    """Eval-mode softmax probabilities (N, C) float64 of `model` on inputs x (un-augmented)."""
    was_training = model.training
    model.eval()
    device = x.device
    out = []
    for s in range(0, len(x), cfg.eval_batch):
        xb = prepare_batch(ds, x[s:s + cfg.eval_batch], train=False)
        with autocast_context(device, cfg):
            logits = model(batch_format(xb, device, cfg))
        out.append(torch.softmax(logits.float(), dim=1).double())
    model.train(was_training)
    return torch.cat(out).cpu().numpy()


@torch.no_grad()
def evaluate(model, ds: Dataset, cfg: TrainConfig, split=None) -> tuple[float, float]:
    """(accuracy %, mean cross-entropy) on a split (default: the test split).

    Only what the epoch log needs (per_example_stats computes the full set for snapshots).  The
    mean is numpy's float32 mean of the per-example losses, as per_example_stats(...)["loss"]
    .mean() gives, so both paths report the same number."""
    split = split if split is not None else ds.test
    if len(split) == 0:   # a user's data set without a test split
        return float("nan"), float("nan")
    was_training = model.training
    model.eval()
    device = split.x.device
    losses, correct = [], torch.zeros((), dtype=torch.int64, device=device)
    for s in range(0, len(split), cfg.eval_batch):
        xb = prepare_batch(ds, split.x[s:s + cfg.eval_batch], train=False)
        yb = split.y[s:s + cfg.eval_batch]
        with autocast_context(device, cfg):
            logits = model(batch_format(xb, device, cfg)).float()
        losses.append(F.cross_entropy(logits, yb, reduction="none"))
        correct += (logits.argmax(1) == yb).sum()
    model.train(was_training)
    return 100.0 * (int(correct) / len(split)), float(torch.cat(losses).cpu().numpy().mean())


def device_format(model, device, cfg: TrainConfig):
    """The model as the loop runs it on `device`: on CUDA, cudnn autotuning on and, with
    cfg.channels_last, NHWC weights to match the NHWC batches `batch_format` makes (a model left in
    NCHW would convert every activation back and forth).  Unchanged on the CPU."""
    if torch.device(device).type == "cuda":
        torch.backends.cudnn.benchmark = True
        if cfg.channels_last:
            model = model.to(memory_format=torch.channels_last)
    return model


def batch_format(x, device, cfg):
    """A batch in the memory format the loop feeds the model: NHWC on CUDA with cfg.channels_last
    (for 4-D image batches), else unchanged (the batches' side of device_format)."""
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


def lr_at_step(step, total, cfg, steps_per_epoch):
    """The learning rate of optimiser step `step` of `total`: linear warm-up over
    cfg.warmup_epochs, then cosine decay from cfg.lr to 0."""
    warm = cfg.warmup_epochs * steps_per_epoch
    if warm > 0 and step < warm:
        return cfg.lr * (step + 1) / warm
    t = (step - warm) / max(1.0, total - warm)
    return cfg.lr * 0.5 * (1.0 + math.cos(math.pi * min(1.0, t)))


def use_compile(cfg: TrainConfig, device) -> bool:
    """Whether the loop runs the forward through compile_forward (cfg.compile, on CUDA only)."""
    return cfg.compile and device.type == "cuda"


def compile_forward(model):
    """torch.compile for the training forward: static shapes (dynamic=False), so a batch of
    another size would compile a second graph -- the loop never sends one (see train()).
    Graphs are cached per model class by torch (nn.Module parameters are graph inputs since
    torch 2.5, `inline_inbuilt_nn_modules`), so every proxy and target run of one architecture
    and batch size reuses the first run's graph instead of compiling again."""
    return torch.compile(model, dynamic=False)


def _load_checkpoint(ckpt, device, fingerprint=None) -> dict | None:
    """A checkpoint read on the CPU (islab.checkpoint: a bad one is moved aside and None returned),
    device-bound tensors then moved to `device`.

    torch.Generator.set_state needs a CPU ByteTensor, so the generator states must never follow
    the map_location to a GPU (the crash of issue 9); model and optimiser states are copied to
    the parameters' device by load_state_dict."""
    state = ckpts.load(ckpts.as_checkpoint(ckpt), fingerprint)
    if state is None:
        return None
    to_dev = (lambda t: t.to(device)) if torch.device(device).type != "cpu" else (lambda t: t)
    if state.get("aum") is not None:
        state["aum"] = tuple(to_dev(t) for t in state["aum"])
        state["forget"] = tuple(to_dev(t) for t in state["forget"])
    if state.get("stream") is not None:
        order, pos = state["stream"]
        state["stream"] = (None if order is None else to_dev(order), pos)
    return state


def _fingerprint(model, n, labels, cfg: TrainConfig, seed, sampling) -> dict:
    """What a checkpoint must have been trained on to be resumed (plain JSON): the settings that
    change numbers, the seed, and digests of the labels, the kept subset and the initial p."""
    import hashlib

    def digest(a):
        return None if a is None else hashlib.sha256(np.ascontiguousarray(np.asarray(a)).tobytes()).hexdigest()[:16]

    return {"model": model, "n": n, "seed": int(seed),
            "epochs": cfg.epochs, "batch_size": cfg.batch_size, "lr": cfg.lr, "momentum": cfg.momentum,
            "weight_decay": cfg.weight_decay, "nesterov": cfg.nesterov, "warmup_epochs": cfg.warmup_epochs,
            "snapshot_epochs": [int(e) for e in cfg.snapshot_epochs], "tracked": cfg.track_presentations,
            "labels": digest(np.asarray(labels, dtype=np.int64)), "mode": sampling.mode,
            "subset": digest(sampling.subset), "probs": digest(sampling.probs)}


def train(model, ds: Dataset, labels, cfg: TrainConfig, seed: int, sampling: Sampling | None = None,
          corrupt_mask=None, progress: bool = False, log: Callable | None = None,
          checkpoint=None, desc: str = "") -> TrainResult:
    """Train `model` (a registry name or a module) on ds.train with `labels` (possibly noisy).

    corrupt_mask (N bool, optional) makes each epoch log the sampling mass on corrupted
    examples and the fraction of drawn examples that were corrupted.  A non-finite training
    loss stops the run and marks it diverged.  With `checkpoint` set, state is saved after each
    epoch and a later call with the same path resumes from it (a path or an
    islab.checkpoint.CheckpointFile naming the job; a checkpoint of another job or training
    input, a truncated or a garbage one is moved aside and the run starts from epoch 0).

    With cfg.compile on CUDA, full batches run through the compiled model; the short last batch
    of a pass (N not a multiple of b, shuffle/subset modes) runs the same module uncompiled --
    the same parameters, buffers and math -- so no second graph is compiled, no example is
    dropped and the step budget stays ceil(N/b) steps per epoch.
    """
    sampling = sampling or Sampling()
    device = ds.train.x.device
    model_name = model if isinstance(model, str) else type(model).__name__
    if isinstance(model, str):
        model = new_model(model, ds, seed, device)
    model = device_format(model, device, cfg)
    compiled = compile_forward(model) if use_compile(cfg, device) else None

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
    tracker = (TrainingDynamics(n, device, record_logits=cfg.record_logits, validate=False)
               if cfg.track_presentations else None)
    if sampling.mode == "subset":
        stream = _ShuffledStream(torch.as_tensor(np.sort(sampling.subset), device=device), order_gen)
    elif sampling.mode == "shuffle":
        stream = _ShuffledStream(torch.arange(n, device=device), order_gen)
    p = sampling.probs
    sampler = WeightedSampler(p, device) if (sampling.mode == "weighted" and p is not None) else None

    res = TrainResult(model=model)
    start_epoch, t_start = 0, time.time()
    ckpt = ckpts.as_checkpoint(checkpoint) if checkpoint else None
    fingerprint = _fingerprint(model_name, n, y.cpu().numpy(), cfg, seed, sampling) if ckpt is not None else None
    state = _load_checkpoint(ckpt, device, fingerprint) if ckpt is not None else None
    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        order_gen.set_state(state["order_gen"])
        aug_gen.set_state(state["aug_gen"])
        res.history, res.snapshots = state["history"], state["snapshots"]
        start_epoch = state["epoch"]
        p = state["p"]
        sampler = WeightedSampler(p, device) if p is not None else None
        if tracker is not None:
            tracker.load_state_dict(state)
        if sampling.mode != "weighted":
            stream.order, stream.pos = state["stream"]
        if sampling.state is not None and state.get("sampling_state") is not None:
            sampling.state.load_state_dict(state["sampling_state"])
    model.train()
    x_train = ds.train.x
    heartbeat = Heartbeat(desc or "training")
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
        # per-step losses stay on the device; summed once per epoch (one sync, see below)
        losses, counts = [], []
        drawn_bad = torch.zeros((), device=device, dtype=torch.int64)
        w_max = torch.ones((), device=device)   # largest importance weight drawn this epoch (1 unweighted)
        bar = range(steps_per_epoch)
        if progress and heartbeat.every == 0:   # a bar in a terminal; a heartbeat line elsewhere
            from tqdm import tqdm

            bar = tqdm(bar, desc=f"{desc} ep {epoch + 1}/{cfg.epochs}", leave=False)
        for s in bar:
            heartbeat.tick(epoch + 1, cfg.epochs, s + 1, steps_per_epoch)
            step = epoch * steps_per_epoch + s
            lr = lr_at_step(step, total_steps, cfg, steps_per_epoch)
            for g in opt.param_groups:
                g["lr"] = lr
            if sampling.mode == "weighted":
                idx, w = sampler.draw(cfg.batch_size, order_gen)
                if sampling.reweight:
                    w_max = torch.maximum(w_max, w.max())
                else:   # drawn from p but not reweighted (biased toward p's favourites)
                    w = None
            else:
                idx, w = stream.next(cfg.batch_size), None
            b = len(idx)
            xb = batch_format(prepare_batch(ds, gather(x_train, idx), train=True, generator=aug_gen), device, cfg)
            yb = gather(y, idx)
            with autocast_context(device, cfg):
                logits = (compiled if compiled is not None and b == cfg.batch_size else model)(xb)
            per_ex = F.cross_entropy(logits.float(), yb, reduction="none")
            loss = (per_ex * w).mean() if w is not None else per_ex.mean()
            if tracker is not None:  # training-mode logits, before the update (AUM / forgetting)
                tracker.update(logits, yb, idx)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(loss.detach())
            counts.append(b)
            if mask_t is not None:
                drawn_bad += gather(mask_t, idx).sum()
        if tracker is not None:
            tracker.end_epoch()
        # The float64 running sum of loss * batch size, in step order, as a Python float: the
        # same IEEE operations as a float64 device accumulator, without 3 tensor ops per step.
        loss_sum = 0.0
        for v, c in zip(torch.stack(losses).tolist(), counts):
            loss_sum += v * c
        drawn = sum(counts)
        train_loss = loss_sum / drawn
        rec = {"epoch": epoch + 1, "train_loss": train_loss, "lr": opt.param_groups[0]["lr"],
               "max_weight_drawn": float(w_max)}
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
            _save_checkpoint(ckpt, model, opt, order_gen, aug_gen, res, epoch + 1, p, tracker,
                             None if sampling.mode == "weighted" else (stream.order, stream.pos), fingerprint,
                             None if sampling.state is None else sampling.state.state_dict())

    accs = [r["test_acc"] for r in res.history if math.isfinite(r.get("test_acc", float("nan")))]
    res.test_acc = res.history[-1]["test_acc"] if res.history else float("nan")
    res.best_test_acc = max(accs) if accs else float("nan")
    if tracker is not None:
        res.aum, res.forgetting, res.dynamics = tracker.aum(), tracker.forgetting(), tracker.epoch_logits()
    res.seconds = time.time() - t_start
    return res


def _save_checkpoint(ckpt, model, opt, order_gen, aug_gen, res, epoch, p, tracker, stream, fingerprint,
                     sampling_state=None):
    ckpts.save(ckpt, {"model": model.state_dict(), "opt": opt.state_dict(), "epoch": epoch,
                      "order_gen": order_gen.get_state(), "aug_gen": aug_gen.get_state(),
                      "history": res.history, "snapshots": res.snapshots, "p": p,
                      **(tracker.state_dict() if tracker is not None else {"aum": None, "forget": None}),
                      "stream": stream, "fingerprint": fingerprint, "sampling_state": sampling_state})
