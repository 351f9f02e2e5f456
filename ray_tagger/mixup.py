"""Waveform mixup of report §2.1.

With probability 2/3 an example gets one partner from the same pool, no longer than 1.1
times itself. The partner is scaled to the base's peak, each of the two gets a gain
``a^(2b-1)`` with ``a ~ U(1, 2)``, ``b ~ Bernoulli(1/2)``, and the partner is shifted by
``τ ~ U(max(-T_j, T_i - 30 s), min(T_i, 30 s - T_j))`` so the mix may grow, never past 30 s.
The targets are the union of both label sets. Examples that draw no mixup are returned
unchanged (DESIGN §2).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class MixupConfig:
    """Mixup parameters; defaults are the report's (§2.1)."""

    probability: float = 2 / 3
    """γ ~ Bernoulli(probability): whether an example gets a partner."""
    max_partner_ratio: float = 1.1
    """Partners satisfy T_j ≤ max_partner_ratio · T_i."""
    gain_max: float = 2.0
    """Gains are a^(2b−1) with a ~ U(1, gain_max)."""
    max_seconds: float = 30.0
    """A mix never grows past this length."""
    sample_rate: int = 44100
    """Sample rate of the waveforms."""


@dataclass(frozen=True)
class MixRecord:
    """What happened to one example: partner index (−1: none), gains and shift in samples."""

    partner: int
    gain_base: float = 1.0
    gain_partner: float = 0.0
    shift: int = 0


def gain(rng: np.random.Generator, gain_max: float) -> float:
    """λ = a^(2b−1), a ~ U(1, gain_max), b ~ Bernoulli(1/2): log-symmetric in [1/gain_max, gain_max]."""
    return float(rng.uniform(1.0, gain_max) ** (2 * rng.integers(0, 2) - 1))


def superpose(base: np.ndarray, partner: np.ndarray, shift: int, gain_base: float, gain_partner: float) -> np.ndarray:
    """``(T_i,), (T_j,) -> (T,)``: λ0·x_i(t) + λ1·(max|x_i|/max|x_j|)·x_j(t − τ) on the union of supports.

    The output starts at ``min(0, shift)`` and ends at ``max(T_i, shift + T_j)``.
    """
    start, stop = min(0, shift), max(len(base), shift + len(partner))
    out = np.zeros(stop - start, dtype=np.float32)
    out[-start : -start + len(base)] += gain_base * base
    peak_j = np.abs(partner).max()
    scale = np.abs(base).max() / peak_j if peak_j > 0 else 0.0
    out[shift - start : shift - start + len(partner)] += gain_partner * scale * partner
    return out


def draw(
    lengths: np.ndarray, i: int, rng: np.random.Generator, config: MixupConfig, groups: np.ndarray | None = None
) -> MixRecord:
    """Draw γ, the partner, the gains and the shift for example ``i`` of a pool of ``lengths``.

    Examples of the same group (e.g. copies of one clip) are never partners.
    """
    if rng.random() >= config.probability:
        return MixRecord(partner=-1)
    t_i = int(lengths[i])
    candidates = np.flatnonzero(lengths <= config.max_partner_ratio * t_i)
    candidates = candidates[candidates != i]
    if groups is not None:
        candidates = candidates[groups[candidates] != groups[i]]
    if candidates.size == 0:
        return MixRecord(partner=-1)
    j = int(rng.choice(candidates))
    t_j, t_max = int(lengths[j]), int(round(config.max_seconds * config.sample_rate))
    low, high = max(-t_j, t_i - t_max), min(t_i, t_max - t_j)
    shift = int(rng.integers(low, high + 1)) if high >= low else 0
    return MixRecord(j, gain(rng, config.gain_max), gain(rng, config.gain_max), shift)


def mixup(
    waves: list[np.ndarray],
    targets: np.ndarray,
    rng: np.random.Generator,
    config: MixupConfig = MixupConfig(),
    groups: list | None = None,
    copy: bool = True,
) -> tuple[list[np.ndarray], np.ndarray, list[MixRecord]]:
    """Mix a pool of variable-length waveforms with partners from the same pool.

    ``[(T_b,)] * B, (B, K) n-hot -> [(T'_b,)] * B float32, (B, K) n-hot, [MixRecord] * B``.
    ``groups`` (B,) keeps examples of the same group (copies of one clip) apart.
    The inputs are not modified. ``copy=False`` returns an unmixed float32 input itself rather
    than a copy (for callers that own their waves: the training stream).
    """
    lengths = np.array([len(w) for w in waves])
    group_ids = None if groups is None else np.asarray(groups)
    out_waves, out_targets, records = [], np.array(targets, copy=True), []
    for i, wave in enumerate(waves):
        record = draw(lengths, i, rng, config, group_ids)
        records.append(record)
        if record.partner < 0:
            unmixed = np.asarray(wave, dtype=np.float32)
            out_waves.append(unmixed.copy() if copy and np.shares_memory(unmixed, wave) else unmixed)
            continue
        j = record.partner
        out_waves.append(superpose(wave, waves[j], record.shift, record.gain_base, record.gain_partner))
        out_targets[i] = np.maximum(targets[i], targets[j])
    return out_waves, out_targets, records
