"""The CRNN of report §1.2, Table 1.

``(B, 1, F, N) normalised log-mel, (B,) frame lengths -> (B, K) class probabilities``.
Five Conv2d blocks (3×3, BatchNorm, ReLU; max pooling rounds up), reshape to
``(B, C·F', N')``, three Conv1d layers, a two-layer GRU read at the last valid frame of each
example (or, with ``readout='max'``, not the report's, its maximum over the valid frames),
FC + ReLU, FC + sigmoid. Frames past an example's length are zeroed before every
convolution and pooling, and the GRU runs on packed sequences, so padding never changes an
example's output in eval mode.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence


@dataclass(frozen=True)
class ModelConfig:
    """CRNN sizes; the defaults are Table 1 (2,647,680 trainable parameters)."""

    n_classes: int = 80
    """Output classes K."""
    n_mels: int = 128
    """Input mel bands F (must be divisible by 32: five poolings halve it)."""
    blocks: tuple[tuple[int, int, int], ...] = ((16, 2, 2), (32, 2, 2), (64, 2, 2), (128, 2, 1), (256, 1, 1))
    """Conv2d blocks as (channels, convolutions, time pooling); frequency pooling is always 2."""
    conv1d_channels: int = 256
    """Channels of each of the Conv1d layers."""
    conv1d_layers: int = 3
    """Number of Conv1d layers."""
    gru_hidden: int = 256
    """GRU units per layer."""
    gru_layers: int = 2
    """Stacked unidirectional GRU layers."""
    fc_hidden: int = 256
    """Units of the hidden fully connected layer."""
    readout: str = "last"
    """What the FC layers see of the GRU's sequence: 'last', its output at each example's last
    valid frame (Table 1), or 'max', the maximum of each unit over the valid frames (not the
    report's; the ``demo`` preset's: docs/LEARNING.md)."""
    label_rate: float | None = 1.5
    """Expected labels per example: the output layer's biases start at the log-odds of
    ``label_rate / n_classes``, so the first steps need not push every score down from 0.5
    (with zero biases they do it by saturating the GRU, whose last state then carries nothing
    for hundreds of iterations; docs/LEARNING.md). The report does not say how it initialises;
    None keeps PyTorch's default (zero-mean uniform) biases."""

    def __post_init__(self) -> None:
        if self.readout not in ("last", "max"):
            raise ValueError(f"model.readout must be 'last' or 'max', got {self.readout!r}")

    @classmethod
    def tiny(cls, n_classes: int = 80, n_mels: int = 128) -> "ModelConfig":
        """A narrow CRNN with the same structure, for tests and the demo."""
        return cls(
            n_classes=n_classes, n_mels=n_mels, blocks=((4, 2, 2), (8, 2, 2), (8, 2, 2), (16, 2, 1), (16, 1, 1)),
            conv1d_channels=32, gru_hidden=32, fc_hidden=32,
        )

    @property
    def time_reduction(self) -> int:
        """Factor by which the time axis shrinks (8 for Table 1)."""
        factor = 1
        for _, _, t in self.blocks:
            factor *= t
        return factor


def valid_mask(lengths: torch.Tensor, n: int) -> torch.Tensor:
    """``(B,) lengths, N -> (B, N)`` float mask of frames before each length."""
    return (torch.arange(n, device=lengths.device)[None, :] < lengths[:, None]).float()


def pooled_lengths(lengths: torch.Tensor, stride: int) -> torch.Tensor:
    """Lengths after pooling the time axis by ``stride`` with ceil mode."""
    return torch.div(lengths + stride - 1, stride, rounding_mode="floor")


class ConvBlock2d(nn.Module):
    """``(B, C_in, F, N) -> (B, C, F/2, ceil(N/t))``: k × (Conv2d 3×3 + BN + ReLU), max pool (2, t)."""

    def __init__(self, c_in: int, channels: int, convs: int, time_pool: int):
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv2d(c_in if i == 0 else channels, channels, 3, padding=1) for i in range(convs))
        self.norms = nn.ModuleList(nn.BatchNorm2d(channels) for _ in range(convs))
        self.pool = nn.MaxPool2d((2, time_pool), ceil_mode=True)
        self.time_pool = time_pool

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        for conv, norm in zip(self.convs, self.norms):
            x = torch.relu(norm(conv(x))) * valid_mask(lengths, x.shape[-1])[:, None, None, :]
        return self.pool(x), pooled_lengths(lengths, self.time_pool)


class CRNN(nn.Module):
    """Report Table 1. ``forward: (B, 1, F, N), (B,) -> (B, K)`` probabilities. Scriptable
    (``torch.jit.script``, for ``ray-tagger export``): the config is Python-only metadata."""

    __jit_ignored_attributes__ = ["config"]

    def __init__(self, config: ModelConfig = ModelConfig()):
        super().__init__()
        if config.n_mels % 32:
            raise ValueError(f"n_mels must be divisible by 32, got {config.n_mels}")
        self.config = config
        self.n_mels = config.n_mels
        self.readout = config.readout
        blocks, c_in = [], 1
        for channels, convs, time_pool in config.blocks:
            blocks.append(ConvBlock2d(c_in, channels, convs, time_pool))
            c_in = channels
        self.blocks = nn.ModuleList(blocks)
        c_in *= config.n_mels // 2 ** len(config.blocks)
        self.conv1d = nn.ModuleList(
            nn.Conv1d(c_in if i == 0 else config.conv1d_channels, config.conv1d_channels, 3, padding=1)
            for i in range(config.conv1d_layers)
        )
        self.norms1d = nn.ModuleList(nn.BatchNorm1d(config.conv1d_channels) for _ in range(config.conv1d_layers))
        self.gru = nn.GRU(config.conv1d_channels, config.gru_hidden, num_layers=config.gru_layers, batch_first=True)
        self.fc = nn.Linear(config.gru_hidden, config.fc_hidden)
        self.out = nn.Linear(config.fc_hidden, config.n_classes)
        if config.label_rate is not None:
            prior = min(max(config.label_rate / config.n_classes, 1e-4), 0.5)
            nn.init.constant_(self.out.bias, float(np.log(prior / (1 - prior))))

    def embed(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """``(B, 1, F, N), (B,) -> (B, H)``: the GRU output at each example's last valid frame, or
        with ``readout='max'`` each unit's maximum over the valid frames."""
        if x.dim() != 4 or x.shape[1] != 1 or x.shape[2] != self.n_mels:
            raise ValueError(f"expected input (B, 1, {self.n_mels}, N), got {x.shape}")
        lengths = lengths.to(device=x.device, dtype=torch.long).clamp(1, x.shape[-1])
        x = x * valid_mask(lengths, x.shape[-1])[:, None, None, :]
        for block in self.blocks:
            x, lengths = block(x, lengths)
        x = x.flatten(1, 2)  # (B, C', F', N') -> (B, C'·F', N')
        for conv, norm in zip(self.conv1d, self.norms1d):
            x = torch.relu(norm(conv(x))) * valid_mask(lengths, x.shape[-1])[:, None, :]
        packed = pack_padded_sequence(x.transpose(1, 2), lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, h_n = self.gru(packed)
        if self.readout == "last":
            return h_n[-1]
        seq, _ = pad_packed_sequence(out, batch_first=True, padding_value=float("-inf"))  # (B, N'', H), N'' = the longest length
        return seq.amax(dim=1)

    def logits(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """``(B, 1, F, N), (B,) -> (B, K)`` pre-sigmoid scores (for a stable BCE)."""
        return self.out(torch.relu(self.fc(self.embed(x, lengths))))

    def forward(self, x: torch.Tensor, lengths: torch.Tensor, return_logits: bool = False) -> torch.Tensor:
        """``(B, 1, F, N), (B,) -> (B, K)`` probabilities (or logits, for the loss under DDP)."""
        logits = self.logits(x, lengths)
        return logits if return_logits else torch.sigmoid(logits)


def fast_layout(model: nn.Module) -> nn.Module:
    """``model`` with its 4-D weights in channels-last memory layout (in place; returned for chaining).
    The inputs stay ``(B, 1, F, N)`` contiguous: PyTorch's convolutions follow the weights' layout,
    and a state_dict saved from either layout loads into the other."""
    return model.to(memory_format=torch.channels_last)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
