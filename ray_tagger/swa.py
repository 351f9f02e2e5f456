"""Stochastic weight averaging (report §3.2) and the BatchNorm statistics refresh.

SWA keeps an equal-weight running mean of snapshots of the model's parameters
(``torch.optim.swa_utils.AveragedModel``); at the end of training the averaged weights are
swapped in and every BatchNorm's running statistics are recomputed with one pass over
un-augmented training data.
"""

from __future__ import annotations

from typing import Callable, Iterable

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel


class SWA:
    """Equal-weight average of parameter snapshots, with ``state_dict``/``load_state_dict``."""

    def __init__(self, model: nn.Module):
        self.averaged = AveragedModel(model, use_buffers=False)

    @property
    def snapshots(self) -> int:
        """Number of snapshots averaged so far."""
        return int(self.averaged.n_averaged.item())

    def update(self, model: nn.Module) -> None:
        """Add the model's current parameters as one more snapshot."""
        self.averaged.update_parameters(model)

    def copy_to(self, model: nn.Module) -> None:
        """Overwrite the model's parameters with the average (buffers are left as they are)."""
        if self.snapshots == 0:
            raise RuntimeError("SWA has no snapshot to copy")
        with torch.no_grad():
            for p, avg in zip(model.parameters(), self.averaged.module.parameters()):
                p.copy_(avg)

    def state_dict(self) -> dict:
        return self.averaged.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.averaged.load_state_dict(state)


def refresh_batchnorm(model: nn.Module, batches: Iterable, forward: Callable[[nn.Module, object], object]) -> int:
    """Recompute every BatchNorm's running mean and variance from ``batches``.

    The statistics are reset and accumulated as a cumulative average over the batches
    (``momentum=None``), i.e. the mean over batches of each batch's mean and unbiased
    variance. ``forward(model, batch)`` runs one batch. Returns the number of batches; the
    model's train/eval mode is restored.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = {m: m.momentum for m in norms}
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
    was_training = model.training
    model.train()
    count = 0
    with torch.no_grad():
        for batch in batches:
            forward(model, batch)
            count += 1
    for m in norms:
        m.momentum = momenta[m]
    model.train(was_training)
    return count
