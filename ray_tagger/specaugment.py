"""The report's SpecAugment variant (§2.2–2.4): frequency warping, one frequency mask and
one time mask, on normalised log-mel ``(B, 1, F, N)``; training only.

Frequency warping: cutoff ``f_c ~ Exp(scale 0.5·F)``, factor ``α = (1+u)^(2s−1)``,
``u ~ Exp(scale 0.07)``, ``s ~ Bernoulli(1/2)``. The warp maps the frequency axis piecewise
linearly through ``(0, 0)``, ``(src, α·src)``, ``(F, F)`` with ``src = 2·f_c/(α+1)`` (so the
breakpoint's mid-point is f_c); when the breakpoint falls outside the axis the whole axis is
scaled by α. Values are interpolated linearly. Masked values are set to 0, the mean after
normalisation.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class SpecAugmentConfig:
    """Parameters of §2.2–2.4; defaults are the report's."""

    warp: bool = True
    """Apply frequency warping."""
    cutoff_scale: float = 0.5
    """f_c ~ Exponential(scale = cutoff_scale · F)."""
    alpha_scale: float = 0.07
    """α = (1+u)^(2s−1), u ~ Exponential(scale = alpha_scale)."""
    freq_mask_max: int = 16
    """Frequency mask height H ~ U{0..freq_mask_max}."""
    time_mask_max: int = 70
    """Time mask width W ~ U{0..min(time_mask_max, time_mask_fraction·N)}."""
    time_mask_fraction: float = 0.2
    """See time_mask_max; N is the example's own length in frames."""


def _exponential(n: int, scale: float, generator: torch.Generator) -> torch.Tensor:
    return -scale * torch.log1p(-torch.rand(n, generator=generator, dtype=torch.float64))


def sample_warp(batch: int, n_bins: int, config: SpecAugmentConfig, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw ``(B,) f_c`` in bins and ``(B,) α``."""
    f_c = _exponential(batch, config.cutoff_scale * n_bins, generator)
    u = _exponential(batch, config.alpha_scale, generator)
    s = torch.randint(0, 2, (batch,), generator=generator).double()
    return f_c, (1 + u) ** (2 * s - 1)


def warp_map(f: torch.Tensor, n_bins: int, f_c: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """The warp g: source frequency → warped frequency. ``(M,), F, (B,), (B,) -> (B, M)``."""
    src, tgt = 2 * f_c / (alpha + 1), 2 * f_c * alpha / (alpha + 1)
    outside = (src >= n_bins) | (tgt >= n_bins)
    f, src, tgt, alpha = f[None, :], src[:, None], tgt[:, None], alpha[:, None]
    inside = torch.where(f <= src, f * alpha, tgt + (f - src) * (n_bins - tgt) / (n_bins - src).clamp_min(1e-9))
    return torch.where(outside[:, None], f * alpha, inside)


def source_positions(n_bins: int, f_c: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """For each warped bin, where to read the original: g⁻¹(0..F−1), ``(B,) -> (B, F)``.

    g⁻¹ is the warp through the swapped points, i.e. ``warp_map`` with 1/α and the
    breakpoint's image.
    """
    f = torch.arange(n_bins, dtype=torch.float64)
    src, tgt = 2 * f_c / (alpha + 1), 2 * f_c * alpha / (alpha + 1)
    outside = (src >= n_bins) | (tgt >= n_bins)
    f2, src, tgt, a = f[None, :], src[:, None], tgt[:, None], alpha[:, None]
    inside = torch.where(f2 <= tgt, f2 / a, src + (f2 - tgt) * (n_bins - src) / (n_bins - tgt).clamp_min(1e-9))
    return torch.where(outside[:, None], f2 / a, inside).clamp(0, n_bins - 1)


def frequency_warp(x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """``(B, C, F, N), (B, F) source positions -> (B, C, F, N)`` by linear interpolation."""
    b, c, f, n = x.shape
    pos = positions.to(device=x.device, dtype=x.dtype)
    low = pos.floor().long().clamp(0, f - 1)
    high = (low + 1).clamp(max=f - 1)
    w = (pos - low.to(x.dtype))[:, None, :, None]
    idx = lambda i: i[:, None, :, None].expand(b, c, f, n)
    return torch.gather(x, 2, idx(low)) * (1 - w) + torch.gather(x, 2, idx(high)) * w


def sample_masks(
    batch: int, n_bins: int, lengths: torch.Tensor, config: SpecAugmentConfig, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Draw ``(B,) f0, H, n0, W``: H ~ U{0..16}, f0 ~ U{0..F−H}, W ~ U{0..min(70, 0.2·N_b)}, n0 ~ U{0..N_b−W}."""
    u = torch.rand(4, batch, generator=generator, dtype=torch.float64)
    height = (u[0] * (config.freq_mask_max + 1)).floor().long()
    f0 = (u[1] * (n_bins - height + 1)).floor().long()
    lengths = lengths.cpu().long()
    w_max = torch.minimum(torch.full_like(lengths, config.time_mask_max), (config.time_mask_fraction * lengths).floor().long())
    width = (u[2] * (w_max + 1)).floor().long()
    n0 = (u[3] * (lengths - width + 1)).floor().long()
    return f0, height, n0, width


def apply_masks(x: torch.Tensor, f0, height, n0, width) -> torch.Tensor:
    """``(B, C, F, N) -> (B, C, F, N)`` with rows [f0, f0+H) and frames [n0, n0+W) set to 0."""
    _, _, f, n = x.shape
    dev = x.device
    fr = torch.arange(f, device=dev)[None, :]
    tr = torch.arange(n, device=dev)[None, :]
    f0, height, n0, width = (t.to(dev)[:, None] for t in (f0, height, n0, width))
    keep_f = ~((fr >= f0) & (fr < f0 + height))
    keep_t = ~((tr >= n0) & (tr < n0 + width))
    return x * (keep_f[:, None, :, None] & keep_t[:, None, None, :]).to(x.dtype)


class SpecAugment:
    """``(B, 1, F, N), (B,) frame lengths, generator -> (B, 1, F, N)``; never modifies its input."""

    def __init__(self, config: SpecAugmentConfig = SpecAugmentConfig()):
        self.config = config

    def __call__(self, x: torch.Tensor, lengths: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        b, _, f, _ = x.shape
        if self.config.warp:
            f_c, alpha = sample_warp(b, f, self.config, generator)
            x = frequency_warp(x, source_positions(f, f_c, alpha))
        return apply_masks(x, *sample_masks(b, f, lengths, self.config, generator))
