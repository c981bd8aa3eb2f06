"""K proxies of one architecture trained as ONE batched model (the batched form of islab.train).

DR-IS trains K proxies of the same architecture with different seeds (the K1/K2 ablations, and
every homogeneous preset); EL2N, forgetting and AUM read the same runs.  Run one after the
other, each small step pays the fixed per-step cost (Python, dispatch, optimiser) K times.
Here the K copies are folded into one model whose every layer holds the K members side by side:

    member k's channels/features are block k of the folded ones:
      activations (B, K*C, H, W) / (B, K*D);  Conv2d -> one conv with groups*K (weights stacked);
      BatchNorm2d -> one BatchNorm over K*C channels;  Linear -> StackedLinear: weights stacked
      (K, out, in), each member's product the very call a separate layer makes;
      parameter-free layers (ReLU, pools, flatten) act per channel anyway.
    One optimiser step, one loss, one data gather and normalisation, one set of counters then
    serve all K members: what a small model spends per step outside its layers is paid once.

The registry model's own forward code runs unchanged on the folded tensors, so only models
whose forward never mixes channels of different members fold (see `foldable`: every leaf layer
of a known kind, no dropout, and a numerical check of the folded forward against the K
members).  Everything else keeps the sequential path (islab.proxies decides).

Each member k is exactly the run islab.train(name, ds, labels, cfg, seeds[k]) would make:
  init            islab.train.new_model(name, ds, seeds[k])   (folded copies, bit for bit)
  data order      its own 'order' generator and shuffled stream (same permutations)
  augmentation    its own 'augment' generator (same crops and flips; drawn per member,
                  applied to all members' batches in one gather)
  loss            its own batch mean; the K means are summed, so each member's gradient is
                  exactly its own (no term of the sum depends on another member's weights)
  optimiser       SGD is element-wise: one optimiser over the stacked parameters is K optimisers
  statistics      its own AUM / forgetting counters, test metrics and eval-mode snapshots
Models without convolutions (linear, mlp, mlp2x256) therefore give K separate runs' numbers
bit for bit.  A grouped convolution sums in another order than K narrow ones, so conv nets agree
up to rounding, which SGD amplifies over epochs as it amplifies a change of thread count
(tests/unit/test_ensemble.py states and checks both tolerances).  A member whose epoch loss is not
finite is stopped and marked diverged exactly like a sequential run; the others go on (members
share no parameter, so a NaN cannot leak from one to another).
"""
from __future__ import annotations

import copy
import math
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from islab.data import Dataset, apply_crop_flip, as_input, draw_crop_flip
from islab.dynamics import TrainingDynamics
from islab.models import build_model
from islab.progress import Heartbeat
from islab.seeding import torch_generator
from islab.train import (STAT_KEYS, TrainConfig, TrainResult, autocast_context, batch_format, compile_forward,
                         device_format, gather, lr_at_step, new_model, stats_from_logits, use_compile)

# Leaf layers without parameters that act on every channel alike (so on folded channels too).
PARAMETER_FREE = (nn.ReLU, nn.ReLU6, nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.Identity,
                  nn.Flatten)
FOLD_CHECK_RTOL = 1e-4   # folded vs member forwards at construction (float32 rounding only)


class StackedLinear(nn.Module):
    """K nn.Linear(d, o) side by side: (B, K*d) -> (B, K*o), member k on block k.

    weight (K, o, d) and bias (K, o) hold the members' weights and biases.  Forward and backward
    run K matrix products, each the very call F.linear and its autograd make for one member
    (addmm(b_k, x_k, W_k^T); grad_x = g_k W_k; grad_W = g_k^T x_k; grad_b = sum_B g_k), on
    contiguous member blocks: the same numbers as K separate layers, bit for bit, and on the CPU
    faster than one batched matmul for large inputs (measured: K = 3, 128 x 784 -> 10, forward
    + backward: 0.58 ms vs 0.87 ms for baddbmm).  On CUDA (bf16 autocast, GPU numbers are not
    bit-reproducible anyway) one batched matmul replaces the K kernel launches: batched_linear."""

    def __init__(self, members: list[nn.Linear]):
        super().__init__()
        self.members, self.in_features, self.out_features = len(members), members[0].in_features, \
            members[0].out_features
        self.weight = nn.Parameter(torch.stack([m.weight.detach() for m in members]).clone())
        self.bias = None if members[0].bias is None else nn.Parameter(
            torch.stack([m.bias.detach() for m in members]).clone())

    def forward(self, x):
        if x.is_cuda:   # one batched kernel instead of K launches; autocast applies to it as usual
            return batched_linear(x, self.weight, self.bias)
        return _MemberLinear.apply(x, self.weight, self.bias)


def batched_linear(x, weight, bias):
    """The GPU form of StackedLinear: one (b)addbmm over the K members (rounds differently)."""
    k, o, d = weight.shape
    b = x.shape[0]
    xk = x.reshape(b, k, d).transpose(0, 1)                             # (K, B, d)
    wt = weight.transpose(1, 2)                                         # (K, d, o)
    out = torch.bmm(xk, wt) if bias is None else torch.baddbmm(bias[:, None, :], xk, wt)
    return out.transpose(0, 1).reshape(b, k * o)


class _MemberLinear(torch.autograd.Function):
    """y_k = x_k W_k^T + b_k for each member block k of x (B, K*d); see StackedLinear."""

    @staticmethod
    def forward(ctx, x, weight, bias):
        k, o, d = weight.shape
        b = x.shape[0]
        xk = x.reshape(b, k, d).transpose(0, 1).contiguous()           # (K, B, d)
        out = x.new_empty(k, b, o)
        for m in range(k):
            if bias is None:
                torch.mm(xk[m], weight[m].t(), out=out[m])
            else:
                torch.addmm(bias[m], xk[m], weight[m].t(), out=out[m])
        ctx.save_for_backward(xk, weight)
        ctx.has_bias = bias is not None
        return out.transpose(0, 1).reshape(b, k * o)

    @staticmethod
    def backward(ctx, grad):
        xk, weight = ctx.saved_tensors
        k, o, d = weight.shape
        b = grad.shape[0]
        gk = grad.reshape(b, k, o).transpose(0, 1).contiguous()        # (K, B, o)
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            gx = grad.new_empty(k, b, d)
            for m in range(k):
                torch.mm(gk[m], weight[m], out=gx[m])
            grad_x = gx.transpose(0, 1).reshape(b, k * d)
        if ctx.needs_input_grad[1]:
            grad_w = torch.empty_like(weight)
            for m in range(k):
                torch.mm(gk[m].t(), xk[m], out=grad_w[m])
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_b = torch.stack([gk[m].sum(0) for m in range(k)])
        return grad_x, grad_w, grad_b


def _stacked_conv(members: list[nn.Conv2d]) -> nn.Conv2d:
    m, k = members[0], len(members)
    conv = nn.Conv2d(k * m.in_channels, k * m.out_channels, m.kernel_size, m.stride, m.padding,
                     m.dilation, groups=k * m.groups, bias=m.bias is not None, padding_mode=m.padding_mode)
    with torch.no_grad():
        conv.weight.copy_(torch.cat([c.weight for c in members]))
        if m.bias is not None:
            conv.bias.copy_(torch.cat([c.bias for c in members]))
    return conv


def _stacked_bn(members: list[nn.BatchNorm2d]) -> nn.BatchNorm2d:
    m, k = members[0], len(members)
    bn = nn.BatchNorm2d(k * m.num_features, m.eps, m.momentum, m.affine, m.track_running_stats)
    with torch.no_grad():
        for name, t in list(bn.named_parameters()) + list(bn.named_buffers()):
            parts = [getattr(b, name) for b in members]
            t.copy_(parts[0] if name == "num_batches_tracked" else torch.cat(parts))
    return bn


def _fold_tree(template: nn.Module, members: list[nn.Module]) -> None:
    """Replace, in `template` (a copy of members[0]), each leaf layer by its K-member form."""
    for name, child in list(template.named_children()):
        peers = [getattr(m, name) for m in members]
        if type(child) is nn.Linear:
            setattr(template, name, StackedLinear(peers))
        elif type(child) is nn.Conv2d:
            setattr(template, name, _stacked_conv(peers))
        elif type(child) is nn.BatchNorm2d:
            setattr(template, name, _stacked_bn(peers))
        elif isinstance(child, PARAMETER_FREE):
            continue
        elif any(True for _ in child.children()):
            own = list(child.parameters(recurse=False)) + list(child.buffers(recurse=False))
            if own:
                raise NotFoldable(f"{type(child).__name__} holds its own parameters")
            _fold_tree(child, peers)
        else:
            raise NotFoldable(f"no folded form for {type(child).__name__}")


class NotFoldable(ValueError):
    """The architecture cannot be trained as one folded model (islab.proxies falls back)."""


def fold(models: list[nn.Module]) -> nn.Module:
    """One module computing K same-architecture models side by side (see the module doc).

    forward_with_features on a folded input (B, K*C, H, W) returns logits (B, K*classes) and
    features (B, K*D), member k on block k.  Raises NotFoldable when a layer has no folded form;
    whether the model's forward keeps members apart is what `foldable` checks."""
    assert len(models) >= 1 and len({type(m) for m in models}) == 1, "fold needs models of one class"
    folded = copy.deepcopy(models[0])
    _fold_tree(folded, models)
    folded.members = len(models)
    return folded


def unfold(folded: nn.Module, template: nn.Module, k: int) -> nn.Module:
    """Member k of a folded model as a stand-alone copy of `template` (same architecture)."""
    member = copy.deepcopy(template)
    state = {}
    for prefix, module in folded.named_modules():
        dot = prefix + "." if prefix else ""
        tensors = list(module.named_parameters(recurse=False)) + list(module.named_buffers(recurse=False))
        for key, t in tensors:
            if isinstance(module, StackedLinear):        # (K, ...): entry k
                part = t[k]
            elif key == "num_batches_tracked":           # one step count, shared by all members
                part = t
            else:                                        # conv / BatchNorm: block k of dim 0
                size = t.shape[0] // folded.members
                part = t[k * size:(k + 1) * size]
            state[dot + key] = part.detach().clone()
    member.load_state_dict(state)
    member.train(folded.training)
    return member


def fold_input(x: torch.Tensor) -> torch.Tensor:
    """(K, B, C, H, W) member batches -> the folded (B, K*C, H, W)."""
    k, b, c, h, w = x.shape
    return x.transpose(0, 1).reshape(b, k * c, h, w)


def shared_input(x: torch.Tensor, k: int) -> torch.Tensor:
    """One batch (B, C, H, W) fed to all K members -> (B, K*C, H, W)."""
    b, c, h, w = x.shape
    return x.unsqueeze(1).expand(b, k, c, h, w).reshape(b, k * c, h, w)


def unfold_output(t: torch.Tensor, k: int) -> torch.Tensor:
    """Folded (B, K*D) -> (K, B, D)."""
    return t.reshape(t.shape[0], k, -1).transpose(0, 1)


def foldable(name: str, ds: Dataset, k: int = 2) -> bool:
    """Whether K copies of registry model `name` can be folded for this data set's shapes: every
    layer has a folded form and the folded forward equals the members' (checked on random
    input, eval mode, within FOLD_CHECK_RTOL)."""
    if len(ds.input_shape) != 3:   # folding stacks members along the channels of (C, H, W) inputs
        return False
    try:
        gen = torch.Generator().manual_seed(0)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            models = [build_model(name, ds.num_classes, ds.input_shape).eval() for _ in range(k)]
        folded = fold(models).eval()
    except NotFoldable:
        return False
    x = torch.randn(k, 3, *ds.input_shape, generator=gen)
    with torch.no_grad():
        ref_logits, ref_h = zip(*(m.forward_with_features(x[i]) for i, m in enumerate(models)))
        logits, h = folded.forward_with_features(fold_input(x))
    logits, h = unfold_output(logits, k), unfold_output(h, k)
    if logits.shape != (k, 3, ds.num_classes) or h.shape[:2] != (k, 3):
        return False
    return bool(torch.allclose(logits, torch.stack(ref_logits), rtol=FOLD_CHECK_RTOL, atol=1e-5)
                and torch.allclose(h, torch.stack(ref_h), rtol=FOLD_CHECK_RTOL, atol=1e-5))


@torch.no_grad()
def _eval_members(folded, ds: Dataset, x_uint8, labels, cfg: TrainConfig, k: int, full: bool, nhwc: bool):
    """Per member: (accuracy %, mean loss) on (x, labels), or with full=True the per-example
    statistics of islab.train.per_example_stats.  Same formulas, member by member."""
    if len(labels) == 0:   # no test split (a user's data set)
        return [{key: np.zeros(0) for key in STAT_KEYS} for _ in range(k)] if full else \
            [(float("nan"), float("nan"))] * k
    was_training = folded.training
    folded.eval()
    device = x_uint8.device
    out = [{key: [] for key in STAT_KEYS} for _ in range(k)]
    for s in range(0, len(labels), cfg.eval_batch):
        xb = as_input(ds, x_uint8[s:s + cfg.eval_batch])
        yb = labels[s:s + cfg.eval_batch]
        xb = shared_input(xb, k)
        xb = xb.contiguous(memory_format=torch.channels_last) if nhwc else batch_format(xb, device, cfg)
        with autocast_context(device, cfg):
            logits, h = folded.forward_with_features(xb)
        logits, h = unfold_output(logits.float(), k), unfold_output(h, k)
        for m in range(k):
            if full:
                for key, v in stats_from_logits(logits[m], h[m], yb).items():
                    out[m][key].append(v)
            else:
                out[m]["loss"].append(F.cross_entropy(logits[m], yb, reduction="none"))
                out[m]["correct"].append(logits[m].argmax(1) == yb)
    folded.train(was_training)
    if full:
        return [{key: torch.cat(v).cpu().numpy() for key, v in o.items()} for o in out]
    return [(100.0 * float(torch.cat(o["correct"]).cpu().numpy().mean()),
             float(torch.cat(o["loss"]).cpu().numpy().mean())) for o in out]


class _MemberStreams:
    """K of islab.train's shuffled streams over range(N), one per member generator, read together.

    All members have the same N and batch size, so their passes start on the same step: at each
    pass start every member draws its permutation (torch.randperm from its own generator, as
    _ShuffledStream does); a step then takes one (K, b) slice."""

    def __init__(self, n: int, generators, device):
        self.n, self.gens, self.device = n, generators, device
        self.order, self.pos = None, n

    def next(self, b: int) -> torch.Tensor:
        if self.pos >= self.n:
            self.order = torch.stack([torch.randperm(self.n, generator=g, device=self.device)
                                      for g in self.gens])
            self.pos = 0
        idx = self.order[:, self.pos:self.pos + b]
        self.pos += b
        return idx


def train_ensemble(name: str, ds: Dataset, labels, cfg: TrainConfig, seeds, progress: bool = False,
                   log=None, desc: str = "") -> list[TrainResult]:
    """K = len(seeds) runs of islab.train.train(name, ds, labels, cfg, seeds[k]) (shuffle mode)
    as one batched model.  Returns one TrainResult per member, in the order of `seeds`; each
    history row's 'seconds' is the wall time of the batched epoch (all members together).

    Raises NotFoldable if `name` cannot be folded (check with `foldable` first)."""
    seeds = [int(s) for s in seeds]
    k = len(seeds)
    assert k >= 1, "at least one member"
    device = ds.train.x.device
    members = [new_model(name, ds, s, "cpu") for s in seeds]
    folded = device_format(fold(members).to(device), device, cfg)
    # Convolutions on the CPU run on NHWC tensors: measured 1.4-1.9x faster than NCHW for the
    # folded cnn / pooled_cnn (one thread, process time), where K separate narrow layers gain
    # less.  (On CUDA device_format already chose the layout from cfg.channels_last.)
    nhwc = device.type == "cpu" and any(isinstance(m, nn.Conv2d) for m in folded.modules())
    if nhwc:
        folded = folded.to(memory_format=torch.channels_last)
    compiled = compile_forward(folded) if use_compile(cfg, device) else None

    n = len(ds.train)
    y = torch.as_tensor(np.asarray(labels), dtype=torch.long, device=device)
    assert len(y) == n, "one label per training example"
    steps_per_epoch = math.ceil(n / cfg.batch_size)
    total_steps = cfg.epochs * steps_per_epoch
    opt = torch.optim.SGD(folded.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                          weight_decay=cfg.weight_decay, nesterov=cfg.nesterov)
    aug_gens = [torch_generator(s, "augment", device=device) for s in seeds]
    streams = _MemberStreams(n, [torch_generator(s, "order", device=device) for s in seeds], device)
    # one counter per (member, example): member m's example i lives at m*N + i
    tracker = (TrainingDynamics(k * n, device, record_logits=cfg.record_logits, validate=False)
               if cfg.track_presentations else None)
    offset = (torch.arange(k, device=device) * n)[:, None]                     # (K, 1)
    augment = ds.augment == "crop_flip"
    pad = getattr(ds, "crop_pad", 4)

    results = [TrainResult() for _ in range(k)]
    active = [True] * k
    t_start = time.time()
    folded.train()
    heartbeat = Heartbeat(desc or f"proxies {name} x{k}")
    for epoch in range(cfg.epochs):
        t0 = time.time()
        losses, counts = [], []
        bar = range(steps_per_epoch)
        if progress and heartbeat.every == 0:   # a bar in a terminal; a heartbeat line elsewhere
            from tqdm import tqdm

            bar = tqdm(bar, desc=f"{desc} ep {epoch + 1}/{cfg.epochs}", leave=False)
        for s in bar:
            heartbeat.tick(epoch + 1, cfg.epochs, s + 1, steps_per_epoch)
            lr = lr_at_step(epoch * steps_per_epoch + s, total_steps, cfg, steps_per_epoch)
            for g in opt.param_groups:
                g["lr"] = lr
            idx = streams.next(cfg.batch_size)                                    # (K, b)
            b = idx.shape[1]
            rows = idx.t().reshape(-1)                                            # (b*K,) batch-major
            xb = gather(ds.train.x, rows)                                         # (b*K, C, H, W)
            if augment:   # each member's draws from its own generator, in islab.train's order
                draws = [draw_crop_flip(b, g, device, pad) for g in aug_gens]
                offsets = torch.stack([d[0] for d in draws], 2).reshape(2, -1)    # (2, b*K) batch-major
                flips = torch.stack([d[1] for d in draws], 1).reshape(-1)
                xb = apply_crop_flip(xb, offsets, flips, pad)
            c, hh, ww = xb.shape[1:]
            xb = as_input(ds, xb).reshape(b, k * c, hh, ww)   # fold after: C ops, not K*C
            xb = xb.contiguous(memory_format=torch.channels_last) if nhwc else batch_format(xb, device, cfg)
            yb = gather(y, idx.reshape(-1)).view(k, b)
            with autocast_context(device, cfg):
                logits = (compiled if compiled is not None and b == cfg.batch_size else folded)(xb)
            # member-major rows: member m's logits are rows m*b .. m*b+b-1
            logits = unfold_output(logits, k).float().reshape(k * b, -1)
            labels_b = yb.reshape(-1)
            per_ex = F.cross_entropy(logits, labels_b, reduction="none")
            # each member's mean over its own contiguous row of b losses: the same reduction as
            # islab.train's 1-D mean (bit for bit, tests/unit/test_ensemble.py)
            member_loss = per_ex.view(k, b).mean(1)                               # (K,)
            if tracker is not None:
                tracker.update(logits, labels_b, (idx + offset).reshape(-1))
            opt.zero_grad(set_to_none=True)
            member_loss.sum().backward()
            opt.step()
            losses.append(member_loss.detach())
            counts.append(b)
        if tracker is not None:
            tracker.end_epoch()
        per_step = torch.stack(losses).double().cpu().numpy()                    # (steps, K), one sync
        drawn = sum(counts)
        live = [m for m in range(k) if active[m]]
        train_loss = {}
        for m in live:
            acc = 0.0   # islab.train's float64 sum, in step order
            for v, c_ in zip(per_step[:, m].tolist(), counts):
                acc += v * c_
            train_loss[m] = acc / drawn
        lr_now = opt.param_groups[0]["lr"]
        diverged = [m for m in live if not math.isfinite(train_loss[m])]
        for m in diverged:
            active[m] = False
            results[m].diverged, results[m].diverged_epoch = True, epoch + 1
            results[m].history.append({"epoch": epoch + 1, "train_loss": train_loss[m], "lr": lr_now,
                                       "test_acc": float("nan"), "test_loss": float("nan")})
            if log:
                log(f"{desc} member {m} (seed {seeds[m]}) epoch {epoch + 1}: non-finite training loss "
                    "-> run stopped as diverged")
        live = [m for m in live if active[m]]
        if not live:
            break
        test = _eval_members(folded, ds, ds.test.x, ds.test.y, cfg, k, full=False, nhwc=nhwc)
        seconds = time.time() - t0
        for m in live:
            results[m].history.append({"epoch": epoch + 1, "train_loss": train_loss[m], "lr": lr_now,
                                       "test_acc": test[m][0], "test_loss": test[m][1], "seconds": seconds})
        if (epoch + 1) in cfg.snapshot_epochs:
            snaps = _eval_members(folded, ds, ds.train.x, y, cfg, k, full=True, nhwc=nhwc)
            for m in live:
                results[m].snapshots[epoch + 1] = snaps[m]
        if log:
            log(f"{desc} epoch {epoch + 1}/{cfg.epochs} ({len(live)} of {k} members) test acc "
                + " ".join(f"{test[m][0]:.2f}%" for m in live) + f" ({seconds:.1f}s)")

    template = members[0]
    for m, res in enumerate(results):
        accs = [r["test_acc"] for r in res.history if math.isfinite(r.get("test_acc", float("nan")))]
        res.test_acc = res.history[-1]["test_acc"] if res.history else float("nan")
        res.best_test_acc = max(accs) if accs else float("nan")
        if tracker is not None:
            part = slice(m * n, (m + 1) * n)
            res.aum, res.forgetting = tracker.aum(part), tracker.forgetting(part)
            logits_m = tracker.epoch_logits(part)
            # a member that diverged stopped at its epoch: keep only the epochs it trained
            res.dynamics = None if logits_m is None else logits_m[:len(res.history)]
        res.model = unfold(folded, template, m).to(device)
        res.seconds = time.time() - t_start
    return results
