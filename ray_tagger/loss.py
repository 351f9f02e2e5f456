"""The training criterion of report §3.2."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def bce_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Binary cross entropy summed over the K classes, averaged over the batch.

    ``(B, K) logits, (B, K) n-hot targets -> ()``; computed from logits for stability, equal
    to −Σ_k [y_k log ŷ_k + (1−y_k) log(1−ŷ_k)] with ŷ = sigmoid(logits).
    """
    return F.binary_cross_entropy_with_logits(logits, targets, reduction="none").sum(dim=1).mean()
