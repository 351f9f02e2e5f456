"""Global feature normalisation of report §1.1: per-band mean, one scalar standard deviation.

The statistics are accumulated once, at data preparation, over the training clips, and
stored beside the shards (``stats.json``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .storage import location


@dataclass(frozen=True)
class NormStats:
    """Per-band mean ``(F,)`` and the scalar std of the mean-free log-mel over all bands."""

    mean: np.ndarray
    std: float
    frames: int

    def to_json(self) -> dict:
        return {"mean": [float(m) for m in self.mean], "std": self.std, "frames": self.frames}

    @classmethod
    def from_json(cls, data: dict) -> "NormStats":
        return cls(np.asarray(data["mean"], dtype=np.float64), float(data["std"]), int(data["frames"]))

    @classmethod
    def load(cls, path: str | Path) -> "NormStats":
        return cls.from_json(json.loads(location(path).read_text()))

    def normalize(self, logmel: torch.Tensor) -> torch.Tensor:
        """``(..., F, N) -> (..., F, N)``: subtract the band means, divide by the scalar std."""
        mean = torch.tensor(self.mean, dtype=logmel.dtype, device=logmel.device)
        return (logmel - mean[:, None]) / self.std


class StatsAccumulator:
    """Sums over frames per band, mergeable across workers (float64)."""

    def __init__(self, n_bands: int):
        self.total = np.zeros(n_bands, dtype=np.float64)
        self.total_sq = np.zeros(n_bands, dtype=np.float64)
        self.frames = 0

    def update(self, logmel: np.ndarray) -> None:
        """Add one clip's log-mel ``(F, N)``."""
        x = np.asarray(logmel, dtype=np.float64)
        self.total += x.sum(axis=1)
        self.total_sq += (x * x).sum(axis=1)
        self.frames += x.shape[1]

    def add_sums(self, total: np.ndarray, total_sq: np.ndarray, frames: int) -> None:
        """Merge partial sums ``(F,), (F,), count`` computed elsewhere."""
        self.total += np.asarray(total, dtype=np.float64)
        self.total_sq += np.asarray(total_sq, dtype=np.float64)
        self.frames += int(frames)

    def finalize(self) -> NormStats:
        """Band means and the scalar std of ``x - mean_band`` over all bands and frames."""
        if self.frames == 0:
            raise ValueError("no training frames: cannot compute normalisation statistics")
        mean = self.total / self.frames
        var = (self.total_sq / self.frames - mean**2).mean()
        return NormStats(mean=mean, std=float(np.sqrt(max(var, 0.0))), frames=self.frames)
