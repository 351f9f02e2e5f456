"""Drum and percussion classes: kick, snare, tom, hi-hat, hand clap, shaker.

Every generator is ``f(rng, duration_s, sr) -> (round(duration_s * sr),)`` unit-RMS float64:
it draws a drum (tuning, decay, mix of tone and noise) and a pattern (:func:`.scores.hits`:
tempo, density, swing, dynamics), renders a few strokes and places them.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from . import signals as s
from .scores import event_times, hits

KICK_STEPS = (1.0, 0.05, 0.2, 0.1, 0.4, 0.05, 0.3, 0.2, 0.9, 0.05, 0.3, 0.1, 0.4, 0.05, 0.2, 0.2)
SNARE_STEPS = (0.05, 0.1, 0.05, 0.15, 1.0, 0.1, 0.05, 0.2, 0.05, 0.15, 0.05, 0.1, 1.0, 0.1, 0.1, 0.25)
HAT_STEPS = (1.0, 0.4, 0.8, 0.4) * 4
TOM_STEPS = (0.5,) * 16
SHAKER_STEPS = (1.0, 0.7, 0.85, 0.7) * 4
"""Step weights of one 16-step bar (probability of a stroke, up to the pattern's density)."""


def _place(n: int, strokes: list[tuple[int, float]], sound: Callable[[int], np.ndarray]) -> np.ndarray:
    """Sum of ``velocity * sound(i)`` at each (start, velocity) of ``strokes`` -> (n,)."""
    out = np.zeros(n)
    for i, (start, velocity) in enumerate(strokes):
        s.add_at(out, start, velocity * sound(i))
    return out


def _variants(count: int, make: Callable[[], np.ndarray]) -> Callable[[int], np.ndarray]:
    """``count`` renderings of ``make`` (strokes differ a little), cycled through by index."""
    sounds = [make() for _ in range(count)]
    return lambda i: sounds[i % count]


def _click(rng: np.random.Generator, m: int, sr: int, length_s: float, lowpass_hz: float) -> np.ndarray:
    """(m,) low-passed noise click of ``length_s``, linearly fading, at the start."""
    k = min(m, s.num_samples(length_s, sr))
    out = np.zeros(m)
    noise = s.spectral_filter(rng.standard_normal(k), sr, s.lowpass_gain(min(lowpass_hz, s.max_freq(sr))))
    out[:k] = noise * np.linspace(1.0, 0.0, k)
    return out


def _gliding_sine(
    rng: np.random.Generator, m: int, sr: int, f_start: float, f_end: float, glide_s: float, t60_s: float
) -> np.ndarray:
    """(m,) sine gliding exponentially from ``f_start`` to ``f_end`` (time constant
    ``glide_s``), decaying 60 dB in ``t60_s``."""
    t = np.arange(m) / sr
    freq = f_end + (f_start - f_end) * np.exp(-t / glide_s)
    return np.sin(2.0 * np.pi * np.cumsum(freq) / sr + rng.uniform(-0.3, 0.3)) * s.decay(m, sr, t60_s)


def kick_drum(rng: np.random.Generator, duration_s: float, sr: int) -> np.ndarray:
    """Bass drum: a sine gliding from 100-220 Hz down to 40-70 Hz in 15-60 ms, decaying in
    0.15-0.6 s, with a beater click of variable hardness; rock to dance patterns at 80-150 bpm."""
    n = s.num_samples(duration_s, sr)
    f_start, f_end, glide = rng.uniform(100.0, 220.0), rng.uniform(40.0, 70.0), rng.uniform(0.015, 0.06)
    t60, click_db, hard = rng.uniform(0.15, 0.6), rng.uniform(-26.0, -6.0), rng.uniform(2000.0, 9000.0)

    def make() -> np.ndarray:
        m = min(n, s.num_samples(t60, sr))
        body = _gliding_sine(rng, m, sr, f_start * rng.uniform(0.97, 1.03), f_end, glide, t60)
        return body + float(s.db(click_db)) * _click(rng, m, sr, rng.uniform(0.002, 0.006), hard)

    strokes = hits(rng, n, sr, (80.0, 150.0), KICK_STEPS, (0.4, 1.1))
    return s.unit_rms(_place(n, strokes, _variants(3, make)))


def snare_drum(rng: np.random.Generator, duration_s: float, sr: int) -> np.ndarray:
    """Snare: membrane modes 1, 1.59, 2.14 x 160-260 Hz (decay 0.08-0.25 s) plus snare-wire
    noise band-passed at 1-9 kHz (decay 0.1-0.4 s) in a random mix; backbeats with ghost notes."""
    n = s.num_samples(duration_s, sr)
    f0, tone_t60, noise_t60 = rng.uniform(160.0, 260.0), rng.uniform(0.08, 0.25), rng.uniform(0.1, 0.4)
    low, high, wires = rng.uniform(1000.0, 2500.0), rng.uniform(5000.0, 9000.0), float(s.db(rng.uniform(-4.0, 8.0)))
    band = s.highpass_gain(low, 2)

    def make() -> np.ndarray:
        m = min(n, s.num_samples(max(tone_t60, noise_t60), sr))
        ratios = np.array([1.0, 1.59, 2.14])
        phases = rng.uniform(0.0, 2.0 * np.pi, 3)
        tone = s.damped_modes(m, sr, f0 * ratios, tone_t60 / ratios, np.array([1.0, 0.6, 0.4]), phases)
        top = s.lowpass_gain(min(high, s.max_freq(sr)), 2)
        noise = s.filtered_noise(rng, m, sr, lambda f: band(f) * top(f)) * s.decay(m, sr, noise_t60)
        return tone + wires * noise

    strokes = hits(rng, n, sr, (70.0, 150.0), SNARE_STEPS, (0.7, 1.2), swing=rng.uniform(0.0, 0.2))
    return s.unit_rms(_place(n, strokes, _variants(3, make)))


def tom_drum(rng: np.random.Generator, duration_s: float, sr: int) -> np.ndarray:
    """Toms: 2-3 drums, the highest at 110-250 Hz, each 3-7 semitones below the next, membrane
    modes 1, 1.59, 2.14, 2.30 with a slight downward glide, decay 0.3-1 s, stick attack;
    sparse fills moving from high to low."""
    n = s.num_samples(duration_s, sr)
    top = rng.uniform(110.0, 250.0)
    tunings = top * 2.0 ** (-np.cumsum([0.0, *rng.uniform(3.0, 7.0, int(rng.integers(1, 3)))]) / 12.0)
    t60 = rng.uniform(0.3, 1.0)

    def make(f0: float) -> np.ndarray:
        m = min(n, s.num_samples(t60, sr))
        body = _gliding_sine(rng, m, sr, f0 * rng.uniform(1.03, 1.1), f0, 0.05, t60)
        ratios = np.array([1.59, 2.14, 2.30])
        levels, phases = rng.uniform(0.1, 0.4, 3), rng.uniform(0.0, 2.0 * np.pi, 3)
        over = s.damped_modes(m, sr, f0 * ratios, t60 / ratios**1.5, levels, phases)
        return body + over + 0.2 * _click(rng, m, sr, 0.003, 5000.0)

    drums = [make(f) for f in tunings]
    strokes = hits(rng, n, sr, (70.0, 140.0), TOM_STEPS, (0.2, 0.8))
    order = np.minimum(np.arange(len(strokes)) * len(drums) // max(1, len(strokes)), len(drums) - 1)

    def drum(i: int) -> np.ndarray:  # mostly high to low, sometimes any drum
        return drums[int(order[i])] if rng.random() < 0.7 else drums[int(rng.integers(len(drums)))]

    return s.unit_rms(_place(n, strokes, drum))


def _metal(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    """(n,) unit-RMS metallic source: six square waves at inharmonic ratios of 300-500 Hz
    (the classic drum-machine cymbal) plus white noise, high-passed at 5-9 kHz and rolled off
    above 8-18 kHz (brightness)."""
    base = rng.uniform(300.0, 500.0)
    ratios = np.array([1.0, 1.4826, 1.8002, 2.5457, 2.6301, 3.8964])
    squares = sum(((s.phase_cycles(rng, base * r, n, sr) % 1.0) < 0.5) - 0.5 for r in ratios)
    mix = s.unit_rms(squares) + rng.uniform(0.5, 2.0) * rng.standard_normal(n)
    low = s.highpass_gain(min(rng.uniform(5000.0, 9000.0), s.max_freq(sr) * 0.7), 3)
    high = s.lowpass_gain(min(rng.uniform(8000.0, 18000.0), s.max_freq(sr)), 1)
    return s.unit_rms(s.spectral_filter(mix, sr, lambda f: low(f) * high(f)))


def hi_hat(rng: np.random.Generator, duration_s: float, sr: int) -> np.ndarray:
    """Hi-hat: metallic high-passed noise of variable brightness; closed strokes decay in 30-150 ms, open ones
    (10-35 % of strokes) in 0.3-0.9 s; eighth or sixteenth patterns at 80-170 bpm with accents."""
    n = s.num_samples(duration_s, sr)
    source = _metal(rng, n, sr)
    closed, opened, open_prob = rng.uniform(0.03, 0.15), rng.uniform(0.3, 0.9), rng.uniform(0.1, 0.35)
    env = np.zeros(n)
    for start, velocity in hits(rng, n, sr, (80.0, 170.0), HAT_STEPS, (0.5, 1.1), swing=rng.uniform(0.0, 0.25)):
        t60 = opened if rng.random() < open_prob else closed
        s.add_at(env, start, velocity * s.decay(min(n, s.num_samples(t60, sr)), sr, t60))
    return s.unit_rms(source * env)


def shaker(rng: np.random.Generator, duration_s: float, sr: int) -> np.ndarray:
    """Shaker / maraca: beads - granular noise band-passed at 3-9 kHz - in shakes with a
    10-40 ms swell and 60-200 ms decay; steady sixteenths at 80-170 bpm with accents."""
    n = s.num_samples(duration_s, sr)
    band = s.band_gain(min(rng.uniform(3000.0, 9000.0), s.max_freq(sr) / 2), rng.uniform(1.5, 3.0))
    noise = s.filtered_noise(rng, n, sr, band)
    beads = np.abs(s.smooth_curve(rng, n, sr, rng.uniform(300.0, 1500.0)))
    grains = np.exp(rng.uniform(1.0, 3.0) * np.log(beads + 1e-9))  # |curve|^p, p in [1, 3]
    rise, t60 = rng.uniform(0.01, 0.04), rng.uniform(0.06, 0.2)
    m = min(n, s.num_samples(rise + t60, sr))
    t = np.arange(m) / sr
    shake = np.minimum(t / rise, 1.0) ** 2 * np.exp(-s.LN_1000 * np.maximum(t - rise, 0.0) / t60)
    env = np.zeros(n)
    for start, velocity in hits(rng, n, sr, (80.0, 170.0), SHAKER_STEPS, (0.7, 1.2)):
        s.add_at(env, start, velocity * shake)
    return s.unit_rms(noise * grains * env)


def hand_clap(rng: np.random.Generator, duration_s: float, sr: int) -> np.ndarray:
    """Hand claps by 1-3 people: each clap 2-4 micro-bursts 4-12 ms apart then a 40-200 ms
    tail of noise band-passed at 0.8-2.5 kHz; steady clapping every 0.2-0.6 s."""
    n = s.num_samples(duration_s, sr)
    out = np.zeros(n)
    for _ in range(int(rng.choice([1, 1, 2, 3]))):
        centre, width = rng.uniform(800.0, 2500.0), rng.uniform(1.0, 2.0)
        noise = s.filtered_noise(rng, n, sr, s.band_gain(centre, width))
        tail, gap = rng.uniform(0.04, 0.2), rng.uniform(0.004, 0.012)
        bursts = int(rng.integers(2, 5))
        m = min(n, s.num_samples(bursts * gap + tail, sr))
        clap = np.zeros(m)
        for b in range(bursts):
            burst = s.decay(s.num_samples(0.006, sr), sr, 0.006) * rng.uniform(0.5, 1.0)
            s.add_at(clap, s.num_samples(b * gap, sr) - 1, burst)
        s.add_at(clap, s.num_samples((bursts - 1) * gap, sr) - 1, s.decay(m, sr, tail))
        env = np.zeros(n)
        for start in event_times(rng, n, sr, (0.2, 0.6), 0.08):
            s.add_at(env, start, clap * rng.uniform(0.6, 1.0))
        out += noise * env * rng.uniform(0.5, 1.0)
    return s.unit_rms(out)
