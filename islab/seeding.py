"""One run seed, one independent random stream per purpose.

Every source of randomness (label noise, model init, data order, augmentation, ...) gets its
own generator derived from the run seed and a purpose string, so changing how many numbers one
purpose draws never shifts another purpose's stream (no hidden reseeding, no global state).
"""
from __future__ import annotations

import random
import zlib

import numpy as np

PURPOSES = ("noise", "init", "order", "augment", "split", "data", "attacker", "proxy", "sampler")


def derive_seed(seed: int, purpose: str, *extra: int) -> int:
    """A 63-bit seed for `purpose` (plus optional integer keys such as a chain index)."""
    key = [int(seed), zlib.crc32(purpose.encode())] + [int(e) for e in extra]
    return int(np.random.SeedSequence(key).generate_state(2, dtype=np.uint32).astype(np.uint64)
               .dot(np.array([1 << 31, 1], dtype=np.uint64)) & ((1 << 63) - 1))


def numpy_rng(seed: int, purpose: str, *extra: int) -> np.random.Generator:
    """A numpy Generator for one purpose of one run."""
    return np.random.default_rng(derive_seed(seed, purpose, *extra))


def torch_generator(seed: int, purpose: str, *extra: int, device="cpu"):
    """A torch.Generator for one purpose of one run, living on `device`."""
    import torch

    g = torch.Generator(device=device)
    g.manual_seed(derive_seed(seed, purpose, *extra))
    return g


def set_seed(seed: int) -> None:
    """Seed the global generators (python, numpy, torch) for code we do not control.

    Our own code never draws from the global generators; this only pins third-party defaults
    (e.g. a layer's default init when no generator can be passed).
    """
    random.seed(seed)
    np.random.seed(seed % (1 << 32))
    try:
        import torch
    except ImportError:  # the convex family runs without torch
        return
    torch.manual_seed(seed)
