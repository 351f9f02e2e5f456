"""Scores of the demo sounds: melodies, chords and drum patterns as sample-indexed notes.

A generator first draws a score (what is played when, how loud) and then renders it, so
tempo, note density, register and dynamics vary within every class.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SCALES: tuple[tuple[int, ...], ...] = (
    (0, 2, 4, 5, 7, 9, 11),  # major
    (0, 2, 3, 5, 7, 8, 10),  # natural minor
    (0, 2, 3, 5, 7, 9, 10),  # dorian
    (0, 2, 4, 7, 9),  # major pentatonic
    (0, 3, 5, 7, 10),  # minor pentatonic
)
"""Scales as semitone offsets from the tonic."""


@dataclass(frozen=True)
class Note:
    """One note of a score."""

    start: int
    """Onset in samples from the start of the event."""
    length: int
    """Sounding length in samples before the release (>= 1)."""
    pitch: float
    """MIDI pitch (69 = A4), possibly fractional."""
    velocity: float
    """Loudness in (0, 1]."""


def _scale_pitches(rng: np.random.Generator, low: int, high: int) -> np.ndarray:
    """All pitches of a random scale on a random tonic within [low, high], ascending."""
    scale = SCALES[int(rng.integers(len(SCALES)))]
    tonic = int(rng.integers(0, 12))
    return np.array([p for p in range(low, high + 1) if (p - tonic) % 12 in scale])


def melody(
    rng: np.random.Generator,
    n: int,
    sr: int,
    register: tuple[int, int],
    span: int,
    bpm: tuple[float, float],
    beats: tuple[float, ...],
    legato: tuple[float, float] = (0.6, 1.0),
    rest_prob: float = 0.1,
    chord_prob: float = 0.0,
) -> list[Note]:
    """A random-walk melody over n samples: a random scale on a window of ``span`` semitones
    placed at random within ``register`` (lowest, highest MIDI pitch), a tempo drawn from
    ``bpm``, note values (in beats) drawn from ``beats``, sounding for a fraction ``legato``
    of their value; steps of up to 3 scale degrees, turning back at the window's edges; a note
    becomes a rest with ``rest_prob`` and a 2-3 note chord (lower thirds) with ``chord_prob``.
    The first note starts within 20 ms, so the score is never empty."""
    base = int(rng.integers(register[0], max(register[0], register[1] - span) + 1))
    pitches = _scale_pitches(rng, base, base + span)
    beat = int(sr * 60.0 / rng.uniform(*bpm))
    values = np.array(beats)
    weights = rng.dirichlet(np.ones(values.size)) if values.size > 1 else np.ones(1)
    articulation = rng.uniform(*legato)
    level = rng.uniform(0.6, 1.0)
    degree = int(rng.integers(pitches.size))
    t = int(rng.uniform(0.0, 0.02) * sr)
    notes: list[Note] = []
    while t < n:
        value = max(1, int(beat * rng.choice(values, p=weights) * rng.uniform(0.97, 1.03)))
        if not notes or rng.random() >= rest_prob:
            step = int(rng.choice([-3, -2, -1, 0, 1, 2, 3], p=[0.05, 0.15, 0.25, 0.1, 0.25, 0.15, 0.05]))
            if not 0 <= degree + step < pitches.size:
                step = -step
            degree = int(np.clip(degree + step, 0, pitches.size - 1))
            velocity = float(np.clip(level * rng.uniform(0.75, 1.15), 0.1, 1.0))
            length = max(1, int(value * articulation))
            chord = [degree]
            if rng.random() < chord_prob:
                chord += [d for d in (degree - 2, degree - 4) if d >= 0][: int(rng.integers(1, 3))]
            for k, d in enumerate(chord):
                notes.append(Note(t + k * int(rng.uniform(0.0, 0.03) * sr), length, float(pitches[d]), velocity))
        t += value
    return notes


def hits(
    rng: np.random.Generator,
    n: int,
    sr: int,
    bpm: tuple[float, float],
    weights: tuple[float, ...],
    density: tuple[float, float],
    swing: float = 0.0,
) -> list[tuple[int, float]]:
    """A drum pattern over n samples as (onset sample, velocity) pairs.

    One bar of ``len(weights)`` steps (16 for sixteenths) is drawn with step probability
    ``weights[s] * d`` (d from ``density``) and repeated with 10 % of its steps flipped per
    bar; odd steps are delayed by ``swing`` of a step. Velocities follow the step weight.
    The first hit is at the start (within 20 ms), so the pattern is never empty.
    """
    steps = len(weights)
    step = sr * 60.0 / rng.uniform(*bpm) * 4.0 / steps
    w = np.asarray(weights, dtype=np.float64)
    bar = rng.random(steps) < np.clip(w * rng.uniform(*density), 0.0, 1.0)
    bar[0] = True
    offset = rng.uniform(0.0, 0.02) * sr
    level = rng.uniform(0.6, 1.0)
    out: list[tuple[int, float]] = []
    s = 0
    while True:
        if s % steps == 0 and s:
            flip = rng.random(steps) < 0.1
            bar = np.where(flip, ~bar, bar)
        t = offset + s * step + (swing * step if s % 2 else 0.0) + rng.normal(0.0, 0.004 * sr)
        if t >= n:
            break
        if bar[s % steps] or not out:
            velocity = level * (0.55 + 0.45 * w[s % steps]) * rng.uniform(0.85, 1.1)
            out.append((max(0, int(t)), float(np.clip(velocity, 0.05, 1.0))))
        s += 1
    return out


def event_times(
    rng: np.random.Generator, n: int, sr: int, interval_s: tuple[float, float], jitter: float
) -> list[int]:
    """Onsets of repeated events (footsteps, knocks): a mean interval drawn from
    ``interval_s``, each interval varied by ``U(1 - jitter, 1 + jitter)``; the first within
    one interval (and the first 20 % of the clip). Never empty."""
    mean = rng.uniform(*interval_s)
    t = rng.uniform(0.0, min(mean, 0.2 * n / sr))
    out = []
    while t * sr < n:
        out.append(int(t * sr))
        t += mean * rng.uniform(1.0 - jitter, 1.0 + jitter)
    return out
