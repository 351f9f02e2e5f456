"""Noisy-clip splits (report §3.1, §4) and the curated folds (§4.1).

Every draw is keyed by content (seed, split, clip name), never by processing order, so the
same input gives the same splits and folds however the work is distributed.
"""

from __future__ import annotations

import hashlib

import numpy as np


def content_key(name: str) -> int:
    """A stable 64-bit integer for a string (for seeding)."""
    return int.from_bytes(hashlib.blake2b(name.encode("utf-8"), digest_size=8).digest(), "little")


def clip_rng(*keys: int | str) -> np.random.Generator:
    """A generator seeded from content keys, e.g. ``clip_rng(seed, split, fname)``."""
    entropy = [content_key(k) if isinstance(k, str) else int(k) for k in keys]
    return np.random.default_rng(np.random.SeedSequence(entropy))


def noisy_cut(fname: str, num_samples: int, seed: int, split: int, low: float = 0.1, high: float = 0.9) -> int:
    """Sample index r·T, r ~ U(low, high), at which a noisy clip is cut in ``split``."""
    r = clip_rng(seed, split, fname).uniform(low, high)
    return int(np.clip(round(r * num_samples), 1, num_samples - 1))


def excerpt_id(clip_id: str, split: int, part: int) -> str:
    """Name of part 0 (``[0, cut)``) or 1 (``[cut, T)``) of a noisy clip in ``split``."""
    return f"{clip_id}#s{split}p{part}"


def assign_folds(fnames: list[str], folds: int, seed: int) -> dict[str, int]:
    """Partition clips into ``folds`` folds of sizes differing by at most one."""
    order = sorted(fnames, key=lambda f: (clip_rng(seed, "fold", f).random(), f))
    return {f: i % folds for i, f in enumerate(order)}
