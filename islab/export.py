"""Per-example exports in standard formats: the one implementation every script and the public API
call (results/README.md, "Per-example exports", documents the formats).

  scores-<tag>.csv      one row per training example, keyed by `example_id` (its index in the
                        training split), then `dataset_id` when known (its index in the data set's
                        full training split: differs under --train-size), noisy_label, clean_label,
                        corrupted, then one column per
                        score (ensemble statistics: dris, consensus, el2n, gradnorm, forgetting, aum,
                        loss, margin, plus what the script adds) and one per proxy and statistic,
                        named `<stat>__<proxy>_s<seed>`.  Always written.
  probs-<...>.npz       a sampling distribution at each refresh: `epochs` int64 (R,), the 0-based
                        epoch from which each row is used, `p` float32 (R, N), one row per refresh,
                        and the ids of its N columns: `example_id` int64 (N,) (index in the training
                        split) and `dataset_id` int64 (N,) (index in the full training split of the
                        data set).  Opt-in: --export-probs (online: per refresh; static: the kept
                        subset as the distribution 1/|S| the target trains on).
  dynamics-<tag>/<proxy>_s<seed>/training_dynamics/dynamics_epoch_<e>.jsonl
                        allenai/cartography's format, one file per epoch e (0-based), one JSON
                        record per example: {"guid": id, "logits_epoch_<e>": [C floats], "gold":
                        training label}; logits of the last training-mode presentation in that
                        epoch (null if not presented).  Opt-in (--export-dynamics): ~12 MB per
                        epoch and proxy on Fashion-MNIST's 60,000 examples.
  aum_values.csv, forgetting_values.csv
                        `sample_id,aum` (the aum package's file) and `sample_id,forgetting`, from
                        islab.dynamics.TrainingDynamics.save.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from islab.runs import atomic_save_npz, atomic_write_text

ENSEMBLE_COLUMNS = ("dris", "consensus", "el2n", "gradnorm", "forgetting", "aum", "loss")
PROXY_STATS = ("loss", "el2n", "gradnorm", "margin", "aum", "forgetting")


def proxy_label(name: str, seed: int) -> str:
    return f"{name}_s{int(seed)}"


def ensemble_columns(ens, ddof: int = 0) -> dict:
    """The per-example columns of a ProxyEnsemble: every ensemble score (islab.scores names; dris
    and consensus need K >= 2) and the mean margin, then `<stat>__<proxy>_s<seed>` per proxy."""
    from islab import scores

    cols = {}
    for name in ENSEMBLE_COLUMNS:
        if name in ("dris", "consensus") and len(ens.names) < 2:
            continue
        cols[name] = scores.ensemble_score(ens, name, ddof=ddof)
    cols["margin"] = np.asarray(ens["margin"], dtype=np.float64).mean(axis=0)
    for k, (name, seed) in enumerate(zip(ens.names, ens.seeds)):
        for stat in PROXY_STATS:
            cols[f"{stat}__{proxy_label(name, seed)}"] = np.asarray(ens[stat][k], dtype=np.float64)
    return cols


def per_example_frame(columns: dict, labels=None, clean=None, corrupt=None, ids=None, dataset_ids=None):
    """A DataFrame keyed by example_id (ids, default 0..N-1): dataset_id, noisy_label, clean_label,
    corrupted (when given), then `columns` (name -> (N,) array) in their order."""
    import pandas as pd

    n = _length(columns, labels, clean, corrupt, ids, dataset_ids)
    out = {"example_id": np.arange(n) if ids is None else np.asarray(ids)}
    if dataset_ids is not None:
        out["dataset_id"] = np.asarray(dataset_ids, dtype=np.int64)
    if labels is not None:
        out["noisy_label"] = np.asarray(labels)
    if clean is not None:
        out["clean_label"] = np.asarray(clean)
    if corrupt is not None:
        out["corrupted"] = np.asarray(corrupt, dtype=bool).astype(np.int8)
    for name, v in columns.items():
        out[name] = np.asarray(v)
    return pd.DataFrame(out)


def _length(columns, *arrays) -> int:
    lengths = {len(np.asarray(v)) for v in [*columns.values(), *arrays] if v is not None}
    if len(lengths) != 1:
        raise ValueError(f"per-example columns of different lengths: {sorted(lengths)}")
    return lengths.pop()


def write_scores_csv(path, columns: dict, labels=None, clean=None, corrupt=None, ids=None,
                     dataset_ids=None) -> Path:
    """scores CSV (see the module doc) written atomically; floats with full precision."""
    path = Path(path)
    frame = per_example_frame(columns, labels, clean, corrupt, ids, dataset_ids)
    atomic_write_text(path, frame.to_csv(index=False, float_format="%.9g"))
    return path


def read_scores_csv(path):
    import pandas as pd

    return pd.read_csv(path)


def save_probs(path, epochs, probs, example_id=None, dataset_id=None) -> Path:
    """A sampling distribution at each refresh: epochs (R,) int64, p (R, N) float32, and the ids of
    the N columns, example_id and dataset_id (N,) int64 (default 0..N-1; dataset_id defaults to
    example_id)."""
    p = np.asarray(probs, dtype=np.float32)
    e = np.asarray(epochs, dtype=np.int64)
    if p.ndim != 2 or e.shape != (p.shape[0],):
        raise ValueError(f"probs must be (refreshes, N) with one epoch per row, got {p.shape} and {e.shape}")
    ex = np.arange(p.shape[1], dtype=np.int64) if example_id is None else np.asarray(example_id, dtype=np.int64)
    ds_ids = ex if dataset_id is None else np.asarray(dataset_id, dtype=np.int64)
    if ex.shape != (p.shape[1],) or ds_ids.shape != ex.shape:
        raise ValueError(f"one example_id and dataset_id per column of p: p {p.shape}, example_id {ex.shape}, "
                         f"dataset_id {ds_ids.shape}")
    atomic_save_npz(path, epochs=e, p=p, example_id=ex, dataset_id=ds_ids)
    return Path(path)


def load_probs(path):
    """(epochs (R,), p (R, N) float32) of a probs-*.npz file."""
    with np.load(path) as z:
        return z["epochs"], z["p"]


def load_probs_ids(path):
    """(example_id (N,), dataset_id (N,)) of a probs-*.npz file (files written before the ids were
    recorded: 0..N-1 for both)."""
    with np.load(path) as z:
        n = z["p"].shape[1]
        ex = z["example_id"] if "example_id" in z.files else np.arange(n, dtype=np.int64)
        return ex, z["dataset_id"] if "dataset_id" in z.files else ex


def subset_probs(ids, n: int) -> np.ndarray:
    """(N,) the distribution a static subset trains on: 1/|S| on the kept ids S, 0 elsewhere."""
    p = np.zeros(int(n))
    p[np.asarray(ids, dtype=np.int64)] = 1.0 / len(ids)
    return p


def write_cartography(folder, epoch_logits, labels, ids=None) -> list:
    """<folder>/training_dynamics/dynamics_epoch_<e>.jsonl for e = 0..E-1 (allenai/cartography).

    epoch_logits (E, N, C); labels (N,) the training labels ("gold"); ids (N,) the guids."""
    logits = np.asarray(epoch_logits, dtype=np.float32)
    if logits.ndim != 3:
        raise ValueError(f"epoch_logits must be (epochs, N, classes), got {logits.shape}")
    labels = np.asarray(labels)
    ids = np.arange(logits.shape[1]) if ids is None else np.asarray(ids)
    if labels.shape != (logits.shape[1],) or ids.shape != labels.shape:
        raise ValueError(f"one label and one id per example: logits {logits.shape}, labels {labels.shape}, "
                         f"ids {ids.shape}")
    out_dir = Path(folder) / "training_dynamics"
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    gold, guid = labels.tolist(), ids.tolist()
    for e in range(logits.shape[0]):
        key = f"logits_epoch_{e}"
        rows = logits[e]
        lines = []
        for i in range(rows.shape[0]):
            v = rows[i]
            values = None if np.isnan(v).any() else [float(x) for x in v]
            lines.append(json.dumps({"guid": guid[i], key: values, "gold": gold[i]}))
        path = out_dir / f"dynamics_epoch_{e}.jsonl"
        atomic_write_text(path, "\n".join(lines) + "\n")
        written.append(path)
    return written


def read_cartography(folder):
    """(guids (N,), gold (N,), logits (E, N, C) float32) from a training_dynamics folder (the
    reader of the format above; NaN rows where a record holds null)."""
    folder = Path(folder)
    folder = folder / "training_dynamics" if (folder / "training_dynamics").is_dir() else folder
    files = sorted(folder.glob("dynamics_epoch_*.jsonl"), key=lambda p: int(p.stem.rsplit("_", 1)[1]))
    epochs, guids, gold = [], None, None
    for e, path in enumerate(files):
        recs = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        key = f"logits_epoch_{e}"
        width = max((len(r[key]) for r in recs if r[key] is not None), default=0)
        epochs.append(np.array([r[key] if r[key] is not None else [np.nan] * width for r in recs],
                               dtype=np.float32))
        guids, gold = [r["guid"] for r in recs], [r["gold"] for r in recs]
    return np.asarray(guids), np.asarray(gold), np.stack(epochs) if epochs else np.zeros((0, 0, 0), np.float32)


def write_dynamics(folder, aum, forgetting, epoch_logits=None, labels=None, ids=None) -> list:
    """aum_values.csv and forgetting_values.csv (sample_id, value), plus cartography's jsonl files
    when logits and labels are given.  Returns the paths written."""
    import pandas as pd

    folder = Path(folder)
    aum = np.asarray(aum, dtype=np.float64)
    ids = np.arange(len(aum)) if ids is None else np.asarray(ids)
    written = []
    for name, v in (("aum", aum), ("forgetting", np.asarray(forgetting, dtype=np.float64))):
        path = folder / f"{name}_values.csv"
        atomic_write_text(path, pd.DataFrame({"sample_id": ids, name: v}).to_csv(index=False, float_format="%.9g"))
        written.append(path)
    if epoch_logits is not None and labels is not None:
        written += write_cartography(folder, epoch_logits, labels, ids)
    return written


def write_proxy_dynamics(folder, ens, labels) -> list:
    """Cartography files of every proxy of an ensemble trained with recorded logits:
    <folder>/<proxy>_s<seed>/training_dynamics/dynamics_epoch_<e>.jsonl.  Returns the paths."""
    written = []
    for name, seed, logits in zip(ens.names, ens.seeds, ens.dynamics or []):
        if logits is not None:
            written += write_cartography(Path(folder) / proxy_label(name, seed), logits, labels)
    return written
