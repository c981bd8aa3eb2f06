"""Training dynamics of every example, recorded from any training loop: AUM, forgetting events and
(optionally) the logits of each epoch.

    tracker = TrainingDynamics(len(train_set), record_logits=True)
    for epoch in range(epochs):
        for x, y, ids in loader:                 # ids: the examples' indices in the data set
            logits = model(x)
            tracker.update(logits, y, ids)       # training-mode logits, before the optimiser step
            ...
        tracker.end_epoch()
    tracker.aum(), tracker.forgetting()          # (N,) numpy, keyed by example index
    tracker.save("out/", labels=train_labels)    # aum_values.csv, forgetting_values.csv,
                                                 # training_dynamics/dynamics_epoch_<e>.jsonl

islab.train and islab.ensemble record their proxies with this same class (scores.AUMTracker and
scores.ForgettingTracker inside), so a user's loop and the scripts compute the same numbers.

  AUM          mean over all presentations of the margin z_y - max_{k != y} z_k (Pleiss et al.);
               NaN for an example never presented.
  forgetting   correct -> incorrect transitions between consecutive presentations (Toneva et al.);
               never classified correctly: the largest count + 1.
  logits       per epoch, the logits of each example's last presentation in that epoch
               (float32, NaN rows for examples not presented in the epoch).
"""
from __future__ import annotations

import numpy as np
import torch

from islab import scores
from islab.checks import check_count


class TrainingDynamics:
    """Per-example AUM, forgetting and per-epoch logits over one training run of N examples.

    validate=True (the default) checks every update's shapes and ids and raises ValueError with a
    clear message; islab's own loop, whose batches are right by construction, turns it off (an id
    range check reads the ids back from the device)."""

    def __init__(self, num_examples: int, device="cpu", record_logits: bool = False, validate: bool = True):
        self.n = check_count(num_examples, "num_examples")
        self.device = torch.device(device)
        self.record_logits = bool(record_logits)
        self.validate = validate
        self.aum_tracker = scores.AUMTracker(self.n, self.device)
        self.forget_tracker = scores.ForgettingTracker(self.n, self.device)
        self.epochs = 0            # completed epochs (end_epoch calls)
        self._logits = []          # one (N, C) float32 numpy array per completed epoch
        self._current = None       # (N, C) float32 on the device: this epoch's logits so far

    # -- recording
    def update(self, logits, targets, sample_ids) -> None:
        """Record one batch: logits (B, C), targets (B,) the labels trained on, sample_ids (B,) the
        examples' indices in 0..N-1 (any int array, list or tensor)."""
        if not isinstance(sample_ids, torch.Tensor) or not self._here(sample_ids):
            sample_ids = torch.as_tensor(np.asarray(sample_ids) if not isinstance(sample_ids, torch.Tensor)
                                         else sample_ids, device=self.device)
        if not isinstance(targets, torch.Tensor) or not self._here(targets):
            targets = torch.as_tensor(np.asarray(targets) if not isinstance(targets, torch.Tensor) else targets,
                                      device=self.device)
        if self.validate:
            self._check(logits, targets, sample_ids)
        sample_ids, targets = sample_ids.long(), targets.long()
        logits = logits.detach()
        if not self._here(logits):
            logits = logits.to(self.device)
        self.aum_tracker.update(sample_ids, logits, targets)
        self.forget_tracker.update(sample_ids, logits, targets)
        if self.record_logits:
            if self._current is None:
                self._current = torch.full((self.n, logits.shape[1]), float("nan"), device=self.device)
            self._current[sample_ids] = logits.float()

    def _here(self, t: torch.Tensor) -> bool:
        d = t.device
        return d.type == self.device.type and (self.device.index is None or d.index == self.device.index)

    def _check(self, logits, targets, ids) -> None:
        if not isinstance(logits, torch.Tensor) or logits.dim() != 2:
            raise ValueError(f"logits must be a (batch, classes) tensor, got {getattr(logits, 'shape', type(logits))}")
        b, c = logits.shape
        if targets.dim() != 1 or len(targets) != b:
            raise ValueError(f"targets must have shape ({b},) to match the logits, got {tuple(targets.shape)}")
        if ids.dim() != 1 or len(ids) != b:
            raise ValueError(f"sample_ids must have shape ({b},) to match the logits, got {tuple(ids.shape)}")
        if ids.dtype.is_floating_point or targets.dtype.is_floating_point:
            raise ValueError("sample_ids and targets must be integers")
        if ids.device.type == "cpu" and b and (int(ids.min()) < 0 or int(ids.max()) >= self.n):
            raise ValueError(f"sample_ids must lie in 0..{self.n - 1}, got {int(ids.min())}..{int(ids.max())}")
        if targets.device.type == "cpu" and b and (int(targets.min()) < 0 or int(targets.max()) >= c):
            raise ValueError(f"targets must lie in 0..{c - 1} for {c} logits, got "
                             f"{int(targets.min())}..{int(targets.max())}")
        if self._current is not None and self._current.shape[1] != c:
            raise ValueError(f"logits have {c} classes but earlier batches had {self._current.shape[1]}")

    def end_epoch(self) -> None:
        """Close the epoch: its logits (if recorded) are kept, one host copy per epoch."""
        if self.record_logits:
            if self._current is not None:
                self._logits.append(self._current.cpu().numpy())
            elif self._logits:   # an epoch without any update: every row NaN
                self._logits.append(np.full_like(self._logits[-1], np.nan))
            self._current = None
        self.epochs += 1

    # -- reading
    def aum(self, part: slice = slice(None)) -> np.ndarray:
        """(N,) mean margin per example (NaN where never presented); `part` selects a block of ids."""
        return scores.aum_value(self.aum_tracker.total[part], self.aum_tracker.count[part])

    def forgetting(self, part: slice = slice(None)) -> np.ndarray:
        """(N,) forgetting events per example (never learned: the largest count + 1)."""
        return scores.forgetting_value(self.forget_tracker.events[part], self.forget_tracker.ever[part])

    def epoch_logits(self, part: slice = slice(None)):
        """(epochs, N, C) float32 logits of the completed epochs, or None when not recorded."""
        if not self.record_logits or not self._logits:
            return None
        return np.stack([e[part] for e in self._logits])

    # -- checkpoints (islab.train saves and restores a run mid-way)
    def state_dict(self) -> dict:
        return {"aum": (self.aum_tracker.total, self.aum_tracker.count),
                "forget": (self.forget_tracker.prev, self.forget_tracker.ever, self.forget_tracker.events),
                "logits": list(self._logits), "epochs": self.epochs}

    def load_state_dict(self, state: dict) -> None:
        self.aum_tracker.total, self.aum_tracker.count = state["aum"]
        self.forget_tracker.prev, self.forget_tracker.ever, self.forget_tracker.events = state["forget"]
        self._logits = list(state.get("logits") or [])
        self.epochs = int(state.get("epochs", len(self._logits)))
        self._current = None

    # -- files
    def save(self, folder, labels=None, ids=None) -> list:
        """Write aum_values.csv and forgetting_values.csv (sample_id, value) and, with recorded
        logits and `labels` (the training labels, "gold"), cartography's
        training_dynamics/dynamics_epoch_<e>.jsonl.  ids: the sample ids to write (default 0..N-1).
        Returns the paths written."""
        from islab import export

        return export.write_dynamics(folder, self.aum(), self.forgetting(), self.epoch_logits(), labels=labels,
                                     ids=ids)
