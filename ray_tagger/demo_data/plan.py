"""Configuration and clip plans: sizes, label sets, lengths and label corruption.

A plan says everything about a clip except its audio; :func:`plan_clips` is cheap, so label
statistics can be studied without rendering. Every clip has its own random streams derived
from ``(seed, source, index, purpose)`` through ``np.random.SeedSequence``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .signals import num_samples
from .sounds import CLASSES

SOURCES: tuple[str, ...] = ("curated", "noisy", "test")
LAYOUTS: tuple[str, ...] = ("kaggle", "zenodo")

SOURCE_IDS = {"curated": 0, "noisy": 1, "test": 2}
FNAME_PREFIX = {"curated": "c", "noisy": "n", "test": "t"}
PLAN, AUDIO, CORRUPT, PERM = 0, 1, 2, 3
"""Purposes of the per-clip random streams (last element of the SeedSequence entropy)."""


@dataclass(frozen=True)
class DemoConfig:
    """How to synthesise the demo data set (defaults: 240 curated, 240 noisy and 120 test
    clips of all 28 classes, about 80 min of audio)."""

    clips: int = 240
    """Number of curated clips; noisy = clips, test = clips // 2 (each at least 1)."""
    seed: int = 0
    """Root seed; every clip's randomness derives from (seed, source, index)."""
    sample_rate: int = 44100
    """Sample rate of the wav files in Hz."""
    noise_rate: float = 0.3
    """Probability that a noisy clip's published label set is corrupted."""
    layout: str = "kaggle"
    """Folder layout: "kaggle" (competition files) or "zenodo" (FSDKaggle2019 release)."""
    num_classes: int = len(CLASSES)
    """How many of :data:`CLASSES` to use (see ``class_choice``)."""
    class_choice: str = "first"
    """Which ``num_classes`` of :data:`CLASSES`: "first" (in vocabulary order) or "spread" (evenly
    over the vocabulary, so a small set mixes instruments, drums and environments)."""
    min_length_s: float = 0.5
    """Shortest curated/test clip in seconds (lengths are log-uniform)."""
    max_length_s: float = 15.0
    """Longest curated/test clip in seconds."""
    noisy_min_length_s: float = 14.0
    """Shortest noisy clip in seconds (lengths are uniform)."""
    noisy_max_length_s: float = 15.0
    """Longest noisy clip in seconds."""
    label_count_probs: tuple[float, ...] = (0.6, 0.3, 0.1)
    """Probabilities of 1, 2, 3, ... true labels per clip."""
    snr_db: tuple[float, float] = (5.0, 25.0)
    """Range of per-event SNR (event RMS over its span vs background RMS) for curated/test."""
    noisy_snr_db: tuple[float, float] = (-5.0, 15.0)
    """Range of per-event SNR for noisy clips (louder background)."""
    background_beta: tuple[float, float] = (0.5, 2.0)
    """Range of the background noise colour beta (power ~ 1/f^beta: 0 white, 1 pink, 2 brown)."""
    rt60_s: tuple[float, float] = (0.1, 1.2)
    """Range of the reverberation time of each clip's synthetic room."""
    wet: tuple[float, float] = (0.05, 0.5)
    """Range of the reverberant share of the events' energy."""
    room_tone_prob: float = 0.5
    """Probability that the background carries a mains hum and ventilation band besides noise."""
    noisy_lowpass_hz: tuple[float, float] = (2000.0, 8000.0)
    """Range of the cut-off of the 4th-order low-pass channel applied to noisy clips."""
    noisy_clip_prob: float = 0.25
    """Probability that a noisy clip is over-driven by 1.5-4x and hard-clipped."""
    peak: tuple[float, float] = (0.3, 0.95)
    """Range of the random peak amplitude each clip is normalised to."""

    def __post_init__(self) -> None:
        """Reject settings that cannot produce a valid data set."""
        checks = [
            (self.clips >= 1, f"clips must be >= 1, got {self.clips}"),
            (0.0 <= self.noise_rate <= 1.0, f"noise_rate must lie in [0, 1], got {self.noise_rate}"),
            (self.layout in LAYOUTS, f"layout must be one of {LAYOUTS}, got {self.layout!r}"),
            (self.class_choice in ("first", "spread"), f"class_choice must be 'first' or 'spread', got {self.class_choice!r}"),
            (
                2 <= self.num_classes <= len(CLASSES),
                f"num_classes must lie in [2, {len(CLASSES)}], got {self.num_classes}",
            ),
            (0 < self.min_length_s <= self.max_length_s, "need 0 < min_length_s <= max_length_s"),
            (
                0 < self.noisy_min_length_s <= self.noisy_max_length_s,
                "need 0 < noisy_min_length_s <= noisy_max_length_s",
            ),
            (abs(sum(self.label_count_probs) - 1.0) < 1e-9, "label_count_probs must sum to 1"),
            (
                0.0 <= self.background_beta[0] <= self.background_beta[1] <= 3.0,
                "background_beta range must lie in [0, 3]",
            ),
            (0 < self.rt60_s[0] <= self.rt60_s[1] <= 5.0, "rt60_s range must lie in (0, 5] s"),
            (0 <= self.wet[0] <= self.wet[1] < 1.0, "wet range must lie in [0, 1)"),
            (0.0 <= self.room_tone_prob <= 1.0, "room_tone_prob must lie in [0, 1]"),
            (0 < self.peak[0] <= self.peak[1] < 1.0, "peak range must lie in (0, 1)"),
            (self.sample_rate >= 8000, f"sample_rate must be >= 8000, got {self.sample_rate}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(f"DemoConfig: {message}")


@dataclass(frozen=True)
class ClipPlan:
    """Everything about one clip except its audio (which :func:`~.mix.render_clip` derives)."""

    source: str
    """"curated", "noisy" or "test"."""
    index: int
    """Position within the source, from 0."""
    fname: str
    """File name, e.g. "c0001.wav"."""
    num_samples: int
    """Length of the clip in samples."""
    true_labels: tuple[str, ...]
    """Classes actually present, in vocabulary order."""
    labels: tuple[str, ...]
    """Published labels (differ from ``true_labels`` only for corrupted noisy clips)."""
    corruption: str
    """"none", "replace", "add" or "drop"."""

    @property
    def corrupted(self) -> bool:
        """Whether the published labels differ from the true ones."""
        return self.corruption != "none"


@dataclass(frozen=True)
class DemoSummary:
    """What :func:`~.write.generate` wrote."""

    out_dir: Path
    """The data set folder."""
    layout: str
    """"kaggle" or "zenodo"."""
    counts: Mapping[str, int]
    """Clips per source ("curated", "noisy", "test")."""
    realised_corruption_rate: float
    """Fraction of noisy clips whose published labels are corrupted."""
    total_audio_s: float
    """Seconds of audio over all sources."""
    test_labels_path: Path
    """``<out_dir>-test-labels.csv`` (beside out_dir): the test clips' true labels."""
    noisy_truth_path: Path
    """``<out_dir>-noisy-truth.csv`` (beside out_dir): published vs true noisy labels."""


def class_names(config: DemoConfig) -> tuple[str, ...]:
    """The vocabulary of a config: ``num_classes`` names of :data:`CLASSES` (the first ones, or spread
    evenly over it: indices round(i · len / num_classes)), in vocabulary order."""
    names = tuple(CLASSES)
    if config.class_choice == "first":
        return names[: config.num_classes]
    return tuple(names[int(i * len(names) / config.num_classes + 0.5)] for i in range(config.num_classes))


def source_count(config: DemoConfig, source: str) -> int:
    """Number of clips of ``source``: curated = noisy = clips, test = max(1, clips // 2)."""
    if source not in SOURCES:
        raise ValueError(f"unknown source {source!r}; expected one of {SOURCES}")
    return config.clips if source != "test" else max(1, config.clips // 2)


def clip_rng(config: DemoConfig, source: str, index: int, purpose: int) -> np.random.Generator:
    """Independent random stream for (seed, source, index, purpose)."""
    return np.random.default_rng(np.random.SeedSequence([config.seed, SOURCE_IDS[source], index, purpose]))


def _primary_class(config: DemoConfig, source: str, index: int) -> int:
    """Class guaranteed in clip ``index``: clips cycle through a fresh random permutation of
    the classes every ``num_classes`` clips, so each class appears once per block."""
    block, pos = divmod(index, config.num_classes)
    return int(clip_rng(config, source, block, PERM).permutation(config.num_classes)[pos])


def _true_label_set(rng: np.random.Generator, primary: int, config: DemoConfig) -> tuple[int, ...]:
    """Primary class plus 0-2 distinct others drawn by ``label_count_probs``, sorted."""
    probs = config.label_count_probs
    k = min(1 + int(rng.choice(len(probs), p=probs)), config.num_classes)
    others = rng.permutation([c for c in range(config.num_classes) if c != primary])[: k - 1]
    return tuple(sorted({primary, *(int(c) for c in others)}))


def corrupt(
    rng: np.random.Generator, labels: tuple[int, ...], config: DemoConfig
) -> tuple[str, tuple[int, ...]]:
    """Corrupt a label set: replace one label by a wrong class, add a spurious one (keeping
    at most the maximal label count), or drop one when several; the kind is drawn uniformly
    among those possible. Returns (kind, new sorted labels), always different from ``labels``."""
    free = [c for c in range(config.num_classes) if c not in labels]
    kinds = [k for k, ok in (
        ("replace", bool(free)),
        ("add", bool(free) and len(labels) < len(config.label_count_probs)),
        ("drop", len(labels) > 1),
    ) if ok]
    kind = kinds[int(rng.integers(len(kinds)))]
    out = set(labels)
    if kind in ("replace", "drop"):
        out.remove(labels[int(rng.integers(len(labels)))])
    if kind in ("replace", "add"):
        out.add(free[int(rng.integers(len(free)))])
    return kind, tuple(sorted(out))


def _duration_s(rng: np.random.Generator, source: str, config: DemoConfig) -> float:
    """Clip length: log-uniform for curated/test, uniform for noisy."""
    if source == "noisy":
        return float(rng.uniform(config.noisy_min_length_s, config.noisy_max_length_s))
    return float(np.exp(rng.uniform(np.log(config.min_length_s), np.log(config.max_length_s))))


def _plan_clip(config: DemoConfig, source: str, index: int, width: int) -> ClipPlan:
    """Labels, length and name of one clip (no audio is made)."""
    names = class_names(config)
    rng = clip_rng(config, source, index, PLAN)
    n = num_samples(_duration_s(rng, source, config), config.sample_rate)
    true = _true_label_set(rng, _primary_class(config, source, index), config)
    kind, published = "none", true
    if source == "noisy":
        corrupt_rng = clip_rng(config, source, index, CORRUPT)
        if corrupt_rng.random() < config.noise_rate:
            kind, published = corrupt(corrupt_rng, true, config)
    return ClipPlan(
        source=source,
        index=index,
        fname=f"{FNAME_PREFIX[source]}{index + 1:0{width}d}.wav",
        num_samples=n,
        true_labels=tuple(names[c] for c in true),
        labels=tuple(names[c] for c in published),
        corruption=kind,
    )


def plan_clips(config: DemoConfig, source: str) -> tuple[ClipPlan, ...]:
    """Plans (labels, lengths, names) of all clips of ``source``, without rendering audio.

    Cheap: use it to study label statistics for large ``clips``.
    """
    count = source_count(config, source)
    width = max(4, len(str(count)))
    return tuple(_plan_clip(config, source, i, width) for i in range(count))
