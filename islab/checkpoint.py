"""Training checkpoints that can be trusted: each file names the job it belongs to and carries a
SHA-256 of its payload, so a checkpoint of another job (copied over, or left by a run with other
settings), a truncated one or garbage is detected, moved aside and the job restarted from epoch 0
-- never resumed with another job's numbers, never a crash on every --resume.

File layout (one atomic write, islab.runs.atomic_write_bytes):
    MAGIC                      b"islab-checkpoint 1\\n"
    one JSON line              {"key": <the job's key>, "sha256": <hex digest of the payload>, "size": n}
    payload                    n bytes of torch.save(state)
"""
from __future__ import annotations

import hashlib
import io
import json
import os
from pathlib import Path
from typing import Callable

MAGIC = b"islab-checkpoint 1\n"


class CheckpointFile(os.PathLike):
    """Where one job's training state lives, the key that names the job (plain JSON: its name in
    the run folder and the hash of the folder's config.json), and where warnings go (run.log).
    A path-like: Path(ckpt), ckpt.exists() and os.fspath work as on the file's path."""

    def __init__(self, path, key: dict | None = None, warn: Callable | None = None):
        self.path, self.key, self.warn = Path(path), key or {}, warn

    def __fspath__(self) -> str:
        return str(self.path)

    def exists(self) -> bool:
        return self.path.exists()

    def __repr__(self) -> str:
        return f"CheckpointFile({str(self.path)!r}, key={self.key!r})"


def as_checkpoint(checkpoint) -> CheckpointFile | None:
    """A CheckpointFile from a path or a CheckpointFile (None stays None)."""
    if checkpoint is None or isinstance(checkpoint, CheckpointFile):
        return checkpoint
    return CheckpointFile(checkpoint)


def _canon(key) -> str:
    return json.dumps(key, sort_keys=True, default=str)


def save(ckpt: CheckpointFile, state: dict) -> None:
    """Write `state` atomically with the job's key and the payload's checksum."""
    import torch

    from islab.runs import atomic_write_bytes

    buf = io.BytesIO()
    torch.save(state, buf)
    payload = buf.getvalue()
    head = {"key": json.loads(_canon(ckpt.key)), "sha256": hashlib.sha256(payload).hexdigest(),
            "size": len(payload)}
    atomic_write_bytes(ckpt.path, MAGIC + json.dumps(head, sort_keys=True).encode() + b"\n" + payload)


def _problem(data: bytes, key: dict) -> tuple[str, bytes]:
    """('', payload) for a valid checkpoint of `key`, else (what is wrong, b'')."""
    if not data.startswith(MAGIC):
        return "not a checkpoint of this code (no header)", b""
    head_end = data.find(b"\n", len(MAGIC))
    try:
        head = json.loads(data[len(MAGIC):head_end]) if head_end > 0 else None
    except (ValueError, UnicodeDecodeError):
        head = None
    if not isinstance(head, dict) or not {"key", "sha256", "size"} <= set(head):
        return "damaged header", b""
    payload = data[head_end + 1:]
    if len(payload) != head["size"]:
        return f"truncated: {len(payload)} of {head['size']} bytes", b""
    if hashlib.sha256(payload).hexdigest() != head["sha256"]:
        return "checksum mismatch", b""
    if _canon(head["key"]) != _canon(key):
        return f"written by another job: {_canon(head['key'])[:200]}", b""
    return "", payload


def move_aside(ckpt: CheckpointFile, why: str) -> Path:
    """Rename a bad checkpoint to <name>.corrupt-<timestamp>-<pid> and say so (ckpt.warn, else stderr)."""
    from islab.runs import move_aside as aside

    return aside(ckpt.path, why, "the job restarts from epoch 0", what="checkpoint", warn=ckpt.warn)


def _read(ckpt: CheckpointFile) -> tuple[str, bytes] | None:
    try:
        data = ckpt.path.read_bytes()
    except FileNotFoundError:
        return None
    return _problem(data, json.loads(_canon(ckpt.key)))


def check(ckpt) -> bool:
    """True when `ckpt` holds an intact checkpoint of its job (header, size, checksum, key); a bad
    one is moved aside (False).  No tensor is loaded."""
    ckpt = as_checkpoint(ckpt)
    got = _read(ckpt) if ckpt is not None else None
    if got is None:
        return False
    if got[0]:
        move_aside(ckpt, got[0])
    return not got[0]


def load(ckpt: CheckpointFile, fingerprint: dict | None = None) -> dict | None:
    """The saved state of this job, or None: no file, or a bad one (moved aside, see move_aside).
    `fingerprint` (plain JSON: what the training loop was given), unless None, must equal the
    one saved with the state.  Tensors are read on the CPU (the caller moves what must live on the device)."""
    import torch

    got = _read(ckpt)
    if got is None:
        return None
    why, payload = got
    if not why:
        try:
            state = torch.load(io.BytesIO(payload), map_location="cpu", weights_only=False)
            if not isinstance(state, dict) or "epoch" not in state:
                why = "no training state in it"
            elif fingerprint is not None and _canon(state.get("fingerprint")) != _canon(fingerprint):
                why = "saved by a training run with other inputs (labels, subset, seed or schedule)"
            else:
                return state
        except Exception as e:   # a payload torch cannot read despite its checksum
            why = f"unreadable ({type(e).__name__})"
    move_aside(ckpt, why)
    return None
