"""Synthetic demo data set in the layout of FSDKaggle2019, made with numpy only.

The demo set lets the whole pipeline (prepare -> 15 + 6 CRNN trainings -> ensemble) run in
minutes on a laptop. It imitates the structure that matters to the UPB system:

- ``curated`` clips: clean-ish mixtures of 1-3 sound classes, lengths 0.5-15 s (log-uniform);
- ``noisy`` clips: ~15 s, heard through a degraded channel (low-pass, louder background,
  occasional clipping), and for a fraction ``noise_rate`` of them a corrupted label set;
- ``test`` clips: like curated; their true labels are written *beside* the data set folder
  (``<out_dir>-test-labels.csv``) in the Kaggle layout, and into the test CSV in the Zenodo one.

Randomness is explicit: every clip has its own ``numpy.random.Generator`` streams derived
from ``(seed, source, index, purpose)`` through ``np.random.SeedSequence``; nothing touches
global state, so one config always gives byte-identical files.

Public API: :data:`CLASSES`, :class:`DemoConfig`, :class:`ClipPlan`, :class:`DemoSummary`,
:func:`class_names`, :func:`source_count`, :func:`plan_clips`, :func:`render_clip`,
:func:`generate`.
"""

from __future__ import annotations

import csv
import json
import logging
import shutil
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from types import MappingProxyType

import numpy as np
import soundfile as sf

logger = logging.getLogger(__name__)

ClassGenerator = Callable[[np.random.Generator, float, int], np.ndarray]
"""``f(rng, duration_s, sr) -> (round(duration_s * sr),)`` float64 waveform, any scale."""

SOURCES: tuple[str, ...] = ("curated", "noisy", "test")
LAYOUTS: tuple[str, ...] = ("kaggle", "zenodo")

_SOURCE_IDS = {"curated": 0, "noisy": 1, "test": 2}
_FNAME_PREFIX = {"curated": "c", "noisy": "n", "test": "t"}
# Purposes of the per-clip random streams (last element of the SeedSequence entropy).
_PLAN, _AUDIO, _CORRUPT, _PERM = 0, 1, 2, 3

_KAGGLE_AUDIO = {"curated": "train_curated", "noisy": "train_noisy", "test": "test"}
_ZENODO_META = "FSDKaggle2019.meta"
_ZENODO_AUDIO = {s: f"FSDKaggle2019.audio_{_KAGGLE_AUDIO[s]}" for s in SOURCES}
_CC0 = "http://creativecommons.org/publicdomain/zero/1.0/"
TEST_LABELS_SUFFIX = "-test-labels.csv"
NOISY_TRUTH_SUFFIX = "-noisy-truth.csv"
INFO_NAME = "demo_info.json"


# --------------------------------------------------------------------------------------
# Signal helpers. All return float64 arrays of shape (n,).
# --------------------------------------------------------------------------------------


def _num_samples(duration_s: float, sr: int) -> int:
    """Samples in ``duration_s`` seconds at ``sr`` Hz (at least 1)."""
    return max(1, int(round(duration_s * sr)))


def _max_freq(sr: int) -> float:
    """Highest frequency a generator may use: 0.45 * sr (keeps clear of Nyquist)."""
    return 0.45 * sr


def _sine_from_freq(rng: np.random.Generator, freq_hz: np.ndarray, sr: int) -> np.ndarray:
    """Instantaneous frequency (n,) in Hz -> unit sine (n,) with a random start phase."""
    phase = 2.0 * np.pi * np.cumsum(freq_hz) / sr + rng.uniform(0.0, 2.0 * np.pi)
    return np.sin(phase)


def _fast_len(n: int) -> int:
    """Smallest 5-smooth number (2^a 3^b 5^c) >= n: an FFT size numpy handles quickly."""
    best, p5 = 2 * max(n, 1), 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            p = p35
            while p < n:
                p *= 2
            best = min(best, p)
            p35 *= 3
        p5 *= 5
    return best


def _spectral_filter(x: np.ndarray, sr: int, gain: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """Filter (n,) -> (n,) by multiplying its zero-padded rfft with ``gain(freqs_hz)``
    (zero phase; padding to a fast FFT size also limits circular wrap-around)."""
    size = _fast_len(x.size)
    spec = np.fft.rfft(x, size)
    freqs = np.fft.rfftfreq(size, 1.0 / sr)
    return np.fft.irfft(spec * gain(freqs), size)[: x.size]


def _lowpass_gain(cutoff_hz: float, order: int = 4) -> Callable[[np.ndarray], np.ndarray]:
    """Butterworth-shaped magnitude response ``1 / sqrt(1 + (f / fc)^(2 order))``."""
    return lambda f: 1.0 / np.sqrt(1.0 + (f / cutoff_hz) ** (2 * order))


def _band_noise(rng: np.random.Generator, n: int, sr: int, centre_hz: float, octaves: float) -> np.ndarray:
    """White noise shaped by a Gaussian band on a log-frequency axis -> (n,)."""
    sigma = octaves / 2.0

    def gain(f: np.ndarray) -> np.ndarray:
        logf = np.log2(np.maximum(f, 1.0) / centre_hz)
        return np.exp(-0.5 * (logf / sigma) ** 2) * (f > 0)

    return _filtered_noise(rng, n, sr, gain)


def _filtered_noise(
    rng: np.random.Generator, n: int, sr: int, gain: Callable[[np.ndarray], np.ndarray]
) -> np.ndarray:
    """White noise of a fast FFT length, filtered by ``gain(freqs_hz)``, cropped -> (n,)."""
    return _spectral_filter(rng.standard_normal(_fast_len(n)), sr, gain)[:n]


def _coloured_noise(rng: np.random.Generator, n: int, sr: int, beta: float) -> np.ndarray:
    """Noise with power spectrum ~ 1/f^beta (0 white, 1 pink, 2 brown), unit RMS -> (n,)."""

    def gain(f: np.ndarray) -> np.ndarray:
        f = np.maximum(f, 20.0)
        return f ** (-beta / 2.0)

    return _unit_rms(_filtered_noise(rng, n, sr, gain))


def _unit_rms(x: np.ndarray) -> np.ndarray:
    """(n,) -> (n,) scaled to RMS 1 (returned unchanged if silent)."""
    rms = float(np.sqrt(np.mean(x**2)))
    return x / rms if rms > 0 else x


def _fade(n: int, sr: int, fade_s: float = 0.01) -> np.ndarray:
    """Raised-cosine fade-in/out envelope (n,), ``fade_s`` long at each end (at most n/2)."""
    k = min(int(fade_s * sr), n // 2)
    env = np.ones(n)
    if k > 0:
        ramp = 0.5 - 0.5 * np.cos(np.pi * (np.arange(k) + 0.5) / k)
        env[:k] = ramp
        env[n - k :] = ramp[::-1]
    return env


def _onsets(rng: np.random.Generator, n: int, sr: int, mean_interval_s: float, jitter: float) -> list[int]:
    """Sample indices of repeated events: the first within one interval (and the first half),
    then intervals of ``mean_interval_s * U(1 - jitter, 1 + jitter)``. Never empty."""
    first = rng.uniform(0.0, min(mean_interval_s, 0.5 * n / sr))
    times, t = [], first
    while t * sr < n:
        times.append(int(t * sr))
        t += mean_interval_s * rng.uniform(1.0 - jitter, 1.0 + jitter)
    return times


def _add_at(out: np.ndarray, start: int, event: np.ndarray) -> None:
    """Add ``event`` into ``out`` at sample ``start``, cropped at the end (in place on out)."""
    stop = min(out.size, start + event.size)
    out[start:stop] += event[: stop - start]


def _repeat_events(
    rng: np.random.Generator,
    n: int,
    sr: int,
    mean_interval_s: float,
    jitter: float,
    make: Callable[[np.random.Generator], np.ndarray],
) -> np.ndarray:
    """(n,) signal made of events ``make(rng)`` placed by :func:`_onsets`."""
    out = np.zeros(n)
    for start in _onsets(rng, n, sr, mean_interval_s, jitter):
        _add_at(out, start, make(rng))
    return out


def _burst_envelope(
    rng: np.random.Generator, n: int, sr: int, on_s: tuple[float, float], off_s: tuple[float, float]
) -> np.ndarray:
    """On/off envelope (n,): bursts of U(on_s) seconds separated by gaps of U(off_s)."""
    env = np.zeros(n)
    t = int(rng.uniform(0.0, min(off_s[1], 0.5 * n / sr)) * sr)
    while t < n:
        length = _num_samples(rng.uniform(*on_s), sr)
        _add_at(env, t, _fade(length, sr, 0.005))
        t += length + _num_samples(rng.uniform(*off_s), sr)
    return env


# --------------------------------------------------------------------------------------
# Class generators: f(rng, duration_s, sr) -> (round(duration_s * sr),)
# --------------------------------------------------------------------------------------


def low_hum(rng: np.random.Generator, duration_s: float, sr: int) -> np.ndarray:
    """Steady hum: f0 50-140 Hz with 4 harmonics of random weight and a slow level drift."""
    n = _num_samples(duration_s, sr)
    f0 = rng.uniform(50.0, 140.0)
    x = sum(rng.uniform(0.3, 1.0) / k * _sine_from_freq(rng, np.full(n, k * f0), sr) for k in range(1, 5))
    drift = 1.0 + 0.2 * _sine_from_freq(rng, np.full(n, rng.uniform(0.1, 0.5)), sr)
    return x * drift


def high_whistle(rng: np.random.Generator, duration_s: float, sr: int) -> np.ndarray:
    """Steady whistle: 2.5-5 kHz sine with a slight (0.2-0.6 %) vibrato and a weak 2nd harmonic."""
    n = _num_samples(duration_s, sr)
    f = min(rng.uniform(2500.0, 5000.0), _max_freq(sr) / 2)
    vib = 1.0 + rng.uniform(0.002, 0.006) * _sine_from_freq(rng, np.full(n, rng.uniform(3.0, 6.0)), sr)
    return _sine_from_freq(rng, f * vib, sr) + 0.1 * _sine_from_freq(rng, 2 * f * vib, sr)


def _sweep_train(rng: np.random.Generator, duration_s: float, sr: int, upward: bool) -> np.ndarray:
    """Repeated exponential sweeps between f_lo (400-1000 Hz) and f_lo * (2.5-5), each
    0.15-0.6 s long with gaps of 0.05-0.4 s; ``upward`` fixes the direction -> (n,)."""
    n = _num_samples(duration_s, sr)
    f_lo = rng.uniform(400.0, 1000.0)
    f_hi = min(f_lo * rng.uniform(2.5, 5.0), _max_freq(sr))
    sweep_s, gap_s = rng.uniform(0.15, 0.6), rng.uniform(0.05, 0.4)

    def sweep(r: np.random.Generator) -> np.ndarray:
        m = _num_samples(sweep_s * r.uniform(0.9, 1.1), sr)
        ratio = np.linspace(0.0, 1.0, m)
        freq = f_lo * (f_hi / f_lo) ** (ratio if upward else 1.0 - ratio)
        return _sine_from_freq(r, freq, sr) * _fade(m, sr, 0.02)

    return _repeat_events(rng, n, sr, sweep_s + gap_s, 0.1, sweep)


def chirp_up(rng: np.random.Generator, duration_s: float, sr: int) -> np.ndarray:
    """Train of rising sweeps (see :func:`_sweep_train`); same band as ``chirp_down``."""
    return _sweep_train(rng, duration_s, sr, upward=True)


def chirp_down(rng: np.random.Generator, duration_s: float, sr: int) -> np.ndarray:
    """Train of falling sweeps (see :func:`_sweep_train`); same band as ``chirp_up``."""
    return _sweep_train(rng, duration_s, sr, upward=False)


def click_train(rng: np.random.Generator, duration_s: float, sr: int) -> np.ndarray:
    """Broadband clicks (1-3 ms decaying noise) at 4-25 Hz with 15 % timing jitter."""
    n = _num_samples(duration_s, sr)

    def click(r: np.random.Generator) -> np.ndarray:
        m = _num_samples(r.uniform(0.001, 0.003), sr)
        return r.standard_normal(m) * np.exp(-np.arange(m) / (0.25 * m)) * r.uniform(0.6, 1.0)

    return _repeat_events(rng, n, sr, 1.0 / rng.uniform(4.0, 25.0), 0.15, click)


def _noise_bursts(
    rng: np.random.Generator, duration_s: float, sr: int, centre_hz: tuple[float, float]
) -> np.ndarray:
    """Band noise (centre U(centre_hz), 0.3-0.8 octaves wide) in bursts of 0.1-0.5 s."""
    n = _num_samples(duration_s, sr)
    centre = min(rng.uniform(*centre_hz), _max_freq(sr) / 2)
    noise = _band_noise(rng, n, sr, centre, rng.uniform(0.3, 0.8))
    return noise * _burst_envelope(rng, n, sr, (0.1, 0.5), (0.1, 0.6))


def low_noise_burst(rng: np.random.Generator, duration_s: float, sr: int) -> np.ndarray:
    """Bursts of low band noise centred at 150-600 Hz."""
    return _noise_bursts(rng, duration_s, sr, (150.0, 600.0))


def high_noise_burst(rng: np.random.Generator, duration_s: float, sr: int) -> np.ndarray:
    """Bursts of high band noise centred at 3-7 kHz."""
    return _noise_bursts(rng, duration_s, sr, (3000.0, 7000.0))


def warble(rng: np.random.Generator, duration_s: float, sr: int) -> np.ndarray:
    """FM tone: carrier 0.6-2 kHz, modulated at 4-12 Hz by 3-12 % of its frequency."""
    n = _num_samples(duration_s, sr)
    fc = rng.uniform(600.0, 2000.0)
    fm = _sine_from_freq(rng, np.full(n, rng.uniform(4.0, 12.0)), sr)
    freq = fc * (1.0 + rng.uniform(0.03, 0.12) * fm)
    return _sine_from_freq(rng, freq, sr) + 0.2 * _sine_from_freq(rng, 2 * freq, sr)


def tremolo(rng: np.random.Generator, duration_s: float, sr: int) -> np.ndarray:
    """AM tone: carrier 0.6-2 kHz, amplitude modulated at 3-10 Hz with depth 0.6-1."""
    n = _num_samples(duration_s, sr)
    fc = rng.uniform(600.0, 2000.0)
    am = 0.5 + 0.5 * _sine_from_freq(rng, np.full(n, rng.uniform(3.0, 10.0)), sr)
    tone = _sine_from_freq(rng, np.full(n, fc), sr) + 0.2 * _sine_from_freq(rng, np.full(n, 2 * fc), sr)
    return tone * (1.0 - rng.uniform(0.6, 1.0) * am)


def harmonic_buzz(rng: np.random.Generator, duration_s: float, sr: int) -> np.ndarray:
    """Buzz: sawtooth with f0 90-250 Hz (1 % jitter), low-passed at 4-8 kHz."""
    n = _num_samples(duration_s, sr)
    f0 = rng.uniform(90.0, 250.0) * (1.0 + 0.01 * rng.standard_normal())
    cycles = np.cumsum(np.full(n, f0)) / sr + rng.uniform()
    saw = 2.0 * (cycles % 1.0) - 1.0
    cutoff = min(rng.uniform(4000.0, 8000.0), _max_freq(sr))
    return _spectral_filter(saw, sr, _lowpass_gain(cutoff))


def knock(rng: np.random.Generator, duration_s: float, sr: int) -> np.ndarray:
    """Knocks every 0.25-1 s (30 % jitter): 2 decaying resonances at 100-500 Hz
    (decay 20-80 ms) plus a 2 ms noise transient."""
    n = _num_samples(duration_s, sr)
    freqs = rng.uniform(100.0, 500.0, size=2)
    tau = rng.uniform(0.02, 0.08)

    def hit(r: np.random.Generator) -> np.ndarray:
        m = _num_samples(5 * tau, sr)
        decay = np.exp(-np.arange(m) / (tau * sr))
        body = sum(_sine_from_freq(r, np.full(m, f), sr) for f in freqs) * decay
        transient = np.zeros(m)
        k = min(m, _num_samples(0.002, sr))
        transient[:k] = 0.5 * r.standard_normal(k)
        return (body + transient) * r.uniform(0.6, 1.0)

    return _repeat_events(rng, n, sr, rng.uniform(0.25, 1.0), 0.3, hit)


def dripping(rng: np.random.Generator, duration_s: float, sr: int) -> np.ndarray:
    """Drops every 0.15-0.8 s (50 % jitter): 20-60 ms sines gliding up from 0.9-2.5 kHz
    by a factor 1.3-2, with exponential decay."""
    n = _num_samples(duration_s, sr)
    f_start = rng.uniform(900.0, 2500.0)

    def drop(r: np.random.Generator) -> np.ndarray:
        m = _num_samples(r.uniform(0.02, 0.06), sr)
        glide = np.linspace(1.0, r.uniform(1.3, 2.0), m)
        freq = np.minimum(f_start * r.uniform(0.9, 1.1) * glide, _max_freq(sr))
        return _sine_from_freq(r, freq, sr) * np.exp(-np.arange(m) / (0.25 * m))

    return _repeat_events(rng, n, sr, rng.uniform(0.15, 0.8), 0.5, drop)


CLASSES: Mapping[str, ClassGenerator] = MappingProxyType(
    {
        "low_hum": low_hum,
        "high_whistle": high_whistle,
        "chirp_up": chirp_up,
        "chirp_down": chirp_down,
        "click_train": click_train,
        "low_noise_burst": low_noise_burst,
        "high_noise_burst": high_noise_burst,
        "warble": warble,
        "tremolo": tremolo,
        "harmonic_buzz": harmonic_buzz,
        "knock": knock,
        "dripping": dripping,
    }
)
"""Synthetic sound classes, in vocabulary order: name -> generator ``f(rng, duration_s, sr)``."""


# --------------------------------------------------------------------------------------
# Configuration and plans
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DemoConfig:
    """How to synthesise the demo data set (defaults: ~250 clips, ~35 min of audio)."""

    clips: int = 100
    """Number of curated clips; noisy = clips, test = clips // 2 (each at least 1)."""
    seed: int = 0
    """Root seed; every clip's randomness derives from (seed, source, index)."""
    sample_rate: int = 44100
    """Sample rate of the wav files in Hz."""
    noise_rate: float = 0.3
    """Probability that a noisy clip's published label set is corrupted."""
    layout: str = "kaggle"
    """Folder layout: "kaggle" (competition files) or "zenodo" (FSDKaggle2019 release)."""
    num_classes: int = 12
    """How many of :data:`CLASSES` to use (the first ones, in vocabulary order)."""
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
    snr_db: tuple[float, float] = (0.0, 20.0)
    """Range of per-event SNR (event RMS over its span vs background RMS) for curated/test."""
    noisy_snr_db: tuple[float, float] = (-5.0, 15.0)
    """Range of per-event SNR for noisy clips (louder background)."""
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
            (0 < self.peak[0] <= self.peak[1] < 1.0, "peak range must lie in (0, 1)"),
            (self.sample_rate >= 8000, f"sample_rate must be >= 8000, got {self.sample_rate}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(f"DemoConfig: {message}")


@dataclass(frozen=True)
class ClipPlan:
    """Everything about one clip except its audio (which :func:`render_clip` derives)."""

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
    """What :func:`generate` wrote."""

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
    """The vocabulary of a config: the first ``num_classes`` names of :data:`CLASSES`."""
    return tuple(CLASSES)[: config.num_classes]


def source_count(config: DemoConfig, source: str) -> int:
    """Number of clips of ``source``: curated = noisy = clips, test = max(1, clips // 2)."""
    if source not in SOURCES:
        raise ValueError(f"unknown source {source!r}; expected one of {SOURCES}")
    return config.clips if source != "test" else max(1, config.clips // 2)


def _rng(config: DemoConfig, source: str, index: int, purpose: int) -> np.random.Generator:
    """Independent random stream for (seed, source, index, purpose)."""
    return np.random.default_rng(np.random.SeedSequence([config.seed, _SOURCE_IDS[source], index, purpose]))


def _primary_class(config: DemoConfig, source: str, index: int) -> int:
    """Class guaranteed in clip ``index``: clips cycle through a fresh random permutation of
    the classes every ``num_classes`` clips, so each class appears once per block."""
    block, pos = divmod(index, config.num_classes)
    return int(_rng(config, source, block, _PERM).permutation(config.num_classes)[pos])


def _true_label_set(rng: np.random.Generator, primary: int, config: DemoConfig) -> tuple[int, ...]:
    """Primary class plus 0-2 distinct others drawn by ``label_count_probs``, sorted."""
    probs = config.label_count_probs
    k = min(1 + int(rng.choice(len(probs), p=probs)), config.num_classes)
    others = rng.permutation([c for c in range(config.num_classes) if c != primary])[: k - 1]
    return tuple(sorted({primary, *(int(c) for c in others)}))


def _corrupt(
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
    rng = _rng(config, source, index, _PLAN)
    n = _num_samples(_duration_s(rng, source, config), config.sample_rate)
    true = _true_label_set(rng, _primary_class(config, source, index), config)
    kind, published = "none", true
    if source == "noisy":
        corrupt_rng = _rng(config, source, index, _CORRUPT)
        if corrupt_rng.random() < config.noise_rate:
            kind, published = _corrupt(corrupt_rng, true, config)
    return ClipPlan(
        source=source,
        index=index,
        fname=f"{_FNAME_PREFIX[source]}{index + 1:0{width}d}.wav",
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


# --------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------


def _event(rng: np.random.Generator, name: str, n: int, sr: int) -> tuple[int, np.ndarray]:
    """One sound event of class ``name`` covering a random 25-100 % of an n-sample clip
    (at least 0.2 s when the clip allows). Returns (onset sample, unit-RMS faded event (m,))."""
    m = min(n, max(_num_samples(0.2, sr), int(rng.uniform(0.25, 1.0) * n)))
    onset = int(rng.integers(0, n - m + 1))
    x = np.asarray(CLASSES[name](rng, m / sr, sr), dtype=np.float64)
    if x.shape != (m,):
        raise RuntimeError(f"generator {name} returned shape {x.shape}, expected ({m},)")
    return onset, _unit_rms(x * _fade(m, sr))


def _degrade(rng: np.random.Generator, x: np.ndarray, config: DemoConfig) -> np.ndarray:
    """Noisy channel (n,) -> (n,): 4th-order low-pass at U(noisy_lowpass_hz), and with
    probability ``noisy_clip_prob`` over-drive by 1.5-4x and hard clipping."""
    y = _spectral_filter(x, config.sample_rate, _lowpass_gain(rng.uniform(*config.noisy_lowpass_hz)))
    if rng.random() < config.noisy_clip_prob:
        y = np.clip(y / np.max(np.abs(y)) * rng.uniform(1.5, 4.0), -1.0, 1.0)
    return y


def render_clip(plan: ClipPlan, config: DemoConfig) -> np.ndarray:
    """Audio of one planned clip: (num_samples,) float64, peak in ``config.peak``.

    Coloured background noise (1/f^beta, beta ~ U(0, 2)) plus one event per *true* label at
    a random onset and random SNR; noisy clips then pass through :func:`_degrade`.
    """
    sr, n = config.sample_rate, plan.num_samples
    rng = _rng(config, plan.source, plan.index, _AUDIO)
    x = _coloured_noise(rng, n, sr, rng.uniform(0.0, 2.0))
    snr_db = config.noisy_snr_db if plan.source == "noisy" else config.snr_db
    for name in plan.true_labels:
        onset, event = _event(rng, name, n, sr)
        _add_at(x, onset, event * 10.0 ** (rng.uniform(*snr_db) / 20.0))
    if plan.source == "noisy":
        x = _degrade(rng, x, config)
    return x * (rng.uniform(*config.peak) / np.max(np.abs(x)))


def _to_pcm16(x: np.ndarray) -> np.ndarray:
    """Float (n,) in [-1, 1] -> int16 (n,) scaled by 32767 and rounded."""
    return np.round(np.clip(x, -1.0, 1.0) * 32767.0).astype(np.int16)


# --------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------


def _audio_dir(layout: str, source: str) -> str:
    """Audio folder name of ``source`` in ``layout``."""
    return (_KAGGLE_AUDIO if layout == "kaggle" else _ZENODO_AUDIO)[source]


def _generated_entries() -> tuple[str, ...]:
    """Top-level names :func:`generate` may create inside out_dir, for both layouts."""
    kaggle = ("train_curated.csv", "train_noisy.csv", "sample_submission.csv", *_KAGGLE_AUDIO.values())
    return (*kaggle, _ZENODO_META, *_ZENODO_AUDIO.values(), INFO_NAME)


def _prepare_out_dir(out: Path, overwrite: bool) -> None:
    """Create ``out``; refuse a non-empty one unless ``overwrite`` (then remove only the
    entries this module writes)."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"out_dir {out} exists and is not a directory")
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise ValueError(
                f"out_dir {out} exists and is not empty; pass overwrite=True to replace the demo data in it"
            )
        for name in _generated_entries():
            path = out / name
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
        leftovers = sorted(p.name for p in out.iterdir())
        if leftovers:
            logger.warning("out_dir %s keeps files not written by demo_data: %s", out, leftovers)
    out.mkdir(parents=True, exist_ok=True)


def _write_csv(path: Path, header: Sequence[str] | None, rows: Iterable[Sequence[object]]) -> None:
    """CSV with '\\n' line ends; fields with commas are quoted (csv.QUOTE_MINIMAL)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        if header is not None:
            writer.writerow(header)
        writer.writerows(rows)


def _join(labels: Sequence[str]) -> str:
    """Labels -> the competition's comma-separated field."""
    return ",".join(labels)


def _write_audio(folder: Path, plans: Sequence[ClipPlan], config: DemoConfig) -> None:
    """Render and write every clip of one source as 16-bit PCM mono wav."""
    folder.mkdir(parents=True, exist_ok=True)
    for plan in plans:
        pcm = _to_pcm16(render_clip(plan, config))
        if not np.any(pcm):
            raise RuntimeError(f"clip {plan.fname} rendered silent")
        sf.write(folder / plan.fname, pcm, config.sample_rate, subtype="PCM_16", format="WAV")
        logger.debug("wrote %s (%d samples, labels %s)", folder / plan.fname, pcm.size, plan.labels)


def _freesound_id(plan: ClipPlan) -> int:
    """Synthetic, clearly out-of-range stand-in for a Freesound id."""
    return 900_000_000 + 1_000_000 * _SOURCE_IDS[plan.source] + plan.index + 1


def _write_kaggle_meta(out: Path, plans: Mapping[str, Sequence[ClipPlan]], names: Sequence[str]) -> None:
    """train_curated.csv, train_noisy.csv (published labels) and sample_submission.csv."""
    for source, csv_name in (("curated", "train_curated.csv"), ("noisy", "train_noisy.csv")):
        _write_csv(out / csv_name, ("fname", "labels"), ((p.fname, _join(p.labels)) for p in plans[source]))
    zeros = [0] * len(names)
    _write_csv(out / "sample_submission.csv", ("fname", *names), ((p.fname, *zeros) for p in plans["test"]))


def _write_zenodo_meta(out: Path, plans: Mapping[str, Sequence[ClipPlan]], names: Sequence[str]) -> None:
    """FSDKaggle2019.meta/: post-competition CSVs (test with labels and usage) and vocabulary."""
    meta = out / _ZENODO_META
    for source in ("curated", "noisy"):
        rows = ((p.fname, _join(p.labels), _freesound_id(p), _CC0) for p in plans[source])
        header = ("fname", "labels", "freesound_id", "license")
        _write_csv(meta / f"train_{source}_post_competition.csv", header, rows)
    public = (len(plans["test"]) + 1) // 2
    rows = (
        (p.fname, _join(p.labels), "Public" if p.index < public else "Private", _freesound_id(p), _CC0)
        for p in plans["test"]
    )
    header = ("fname", "labels", "usage", "freesound_id", "license")
    _write_csv(meta / "test_post_competition.csv", header, rows)
    _write_csv(meta / "vocabulary.csv", None, enumerate(names))


def _beside(out: Path, suffix: str) -> Path:
    """``<out><suffix>`` in out's parent folder."""
    return out.parent / f"{out.name}{suffix}"


def _write_beside_files(out: Path, plans: Mapping[str, Sequence[ClipPlan]]) -> tuple[Path, Path]:
    """Test truth and noisy truth, next to (not inside) ``out``."""
    test_path, noisy_path = _beside(out, TEST_LABELS_SUFFIX), _beside(out, NOISY_TRUTH_SUFFIX)
    _write_csv(test_path, ("fname", "labels"), ((p.fname, _join(p.true_labels)) for p in plans["test"]))
    rows = ((p.fname, _join(p.labels), _join(p.true_labels), p.corrupted) for p in plans["noisy"])
    _write_csv(noisy_path, ("fname", "labels", "true_labels", "corrupted"), rows)
    return test_path, noisy_path


DESCRIPTION = (
    "Every clip is synthesised with numpy: coloured background noise (power spectrum 1/f^beta, "
    "beta ~ U(0, 2)) plus one event per true label. An event covers a random 25-100 % of the clip "
    "(at least 0.2 s) at a random onset, with 10 ms fades, scaled to a random SNR (event RMS over "
    "its span against the background RMS). Each class draws its parameters (pitch, rate, bandwidth, "
    "decay) from class-specific ranges; several classes share a frequency range and differ only in "
    "temporal pattern (chirp_up/chirp_down, warble/tremolo, knock/low_hum/low_noise_burst, "
    "dripping/chirp_up). Clips carry 1-3 classes and are peak-normalised to a random peak before "
    "16-bit quantisation."
)
NOISY_CHANNEL = (
    "Noisy clips (train_noisy) are ~15 s, have a louder background (lower SNR range), pass through a "
    "4th-order Butterworth-shaped low-pass (zero phase, FFT domain) with a random cut-off, and are "
    "sometimes over-driven and hard-clipped before peak normalisation. For a fraction noise_rate of "
    "them the published label set is corrupted: one label replaced by a wrong class, a spurious "
    "label added, or one label dropped when there are several."
)


def _info(
    config: DemoConfig, plans: Mapping[str, Sequence[ClipPlan]], seconds: Mapping[str, float]
) -> dict[str, object]:
    """Content of demo_info.json (no absolute paths, so it is byte-stable across folders)."""
    from ray_tagger import __version__

    noisy = plans["noisy"]
    kinds = [p.corruption for p in noisy]
    return {
        "generator": "ray_tagger.demo_data",
        "version": __version__,
        "config": asdict(config),
        "classes": list(class_names(config)),
        "class_descriptions": {n: " ".join((CLASSES[n].__doc__ or "").split()) for n in class_names(config)},
        "counts": {s: len(plans[s]) for s in SOURCES},
        "audio_seconds": {s: round(seconds[s], 3) for s in SOURCES},
        "total_audio_seconds": round(sum(seconds.values()), 3),
        "realised_corruption_rate": sum(p.corrupted for p in noisy) / len(noisy),
        "corruptions": {k: kinds.count(k) for k in ("replace", "add", "drop")},
        "test_labels_file": f"<out_dir>{TEST_LABELS_SUFFIX}",
        "noisy_truth_file": f"<out_dir>{NOISY_TRUTH_SUFFIX}",
        "description": DESCRIPTION,
        "noisy_channel": NOISY_CHANNEL,
    }


def generate(
    out_dir: str | Path, config: DemoConfig = DemoConfig(), *, overwrite: bool = False
) -> DemoSummary:
    """Synthesise the demo data set into ``out_dir`` in ``config.layout``.

    Also writes ``<out_dir>-test-labels.csv`` and ``<out_dir>-noisy-truth.csv`` beside
    ``out_dir``. Raises ValueError if ``out_dir`` exists and is non-empty, unless
    ``overwrite`` (which removes only what this function writes, then regenerates).
    """
    out = Path(out_dir).resolve()
    _prepare_out_dir(out, overwrite)
    names = class_names(config)
    plans = {s: plan_clips(config, s) for s in SOURCES}
    counts = {s: len(p) for s, p in plans.items()}
    logger.info("synthesising demo data (%s) in %s: %s", config.layout, out, counts)
    for source in SOURCES:
        _write_audio(out / _audio_dir(config.layout, source), plans[source], config)
    (_write_kaggle_meta if config.layout == "kaggle" else _write_zenodo_meta)(out, plans, names)
    test_path, noisy_path = _write_beside_files(out, plans)
    seconds = {s: sum(p.num_samples for p in plans[s]) / config.sample_rate for s in SOURCES}
    info = _info(config, plans, seconds)
    (out / INFO_NAME).write_text(json.dumps(info, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    logger.info(
        "demo data: %.1f s of audio, corruption rate %.3f",
        info["total_audio_seconds"],
        info["realised_corruption_rate"],
    )
    return DemoSummary(
        out_dir=out,
        layout=config.layout,
        counts=MappingProxyType(dict(info["counts"])),
        realised_corruption_rate=float(info["realised_corruption_rate"]),
        total_audio_s=float(info["total_audio_seconds"]),
        test_labels_path=test_path,
        noisy_truth_path=noisy_path,
    )
