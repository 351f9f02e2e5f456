"""Pitched instrument classes: plucked, struck, bowed and blown strings, organ, mallets, bells.

Every generator is ``f(rng, duration_s, sr) -> (round(duration_s * sr),)`` unit-RMS float64
and draws its own register, tempo, note values, dynamics and timbre, then plays a score
(:mod:`.scores`) with a physical model (:mod:`.signals`).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from . import signals as s
from .scores import Note, event_times, melody

Spectrum = Callable[[float, float], np.ndarray]
"""``(f0_hz, velocity) -> (K,)`` harmonic amplitudes of one note."""


def _play(n: int, notes: list[Note], render: Callable[[Note, int], np.ndarray]) -> np.ndarray:
    """Sum of ``render(note, samples_left)`` placed at each note's start -> (n,)."""
    out = np.zeros(n)
    for note in notes:
        if note.start < n:
            s.add_at(out, note.start, render(note, n - note.start))
    return out


# ---------------------------------------------------------------------------------- plucked


def _plucked(
    rng: np.random.Generator,
    duration_s: float,
    sr: int,
    register: tuple[int, int],
    span: int,
    bpm: tuple[float, float],
    t60_s: tuple[float, float],
    brightness: tuple[float, float],
    body_hz: tuple[tuple[float, float], ...],
    lowpass_hz: tuple[float, float],
    chord_prob: float,
    softness: tuple[float, float],
) -> np.ndarray:
    """Karplus-Strong string played from a melody; per event: decay, loop brightness, pick
    position, pluck softness (smoothing of the excitation), body resonances and tone
    low-pass; per note: velocity."""
    n = s.num_samples(duration_s, sr)
    notes = melody(rng, n, sr, register, span, bpm, (0.5, 1.0, 2.0), legato=(0.7, 1.0), chord_prob=chord_prob)
    t60 = rng.uniform(*t60_s)
    bright = rng.uniform(*brightness)
    pick = rng.uniform(0.08, 0.3)
    soft = rng.uniform(*softness)

    def pluck(note: Note, left: int) -> np.ndarray:
        f0 = float(s.midi_hz(note.pitch))
        period = max(2, int(sr / f0))
        burst = rng.uniform(-1.0, 1.0, period)
        width = 1 + int(soft * period / 6)
        burst = np.convolve(burst, np.ones(width) / width, mode="same")  # softer finger, fewer highs
        burst = burst - np.roll(burst, max(1, int(pick * period)))  # pick position comb
        m = min(left, note.length + s.num_samples(0.08, sr))
        decay_t60 = float(np.clip(t60 * (110.0 / f0) ** 0.3, 0.3, 8.0))
        y = s.karplus_strong(burst * note.velocity, f0, m, sr, decay_t60, bright)
        return y * s.adsr(m, sr, 0.0005, 1.0, 1.0, 0.06, hold=max(1, m - s.num_samples(0.06, sr)))

    x = _play(n, notes, pluck)
    centres = [rng.uniform(*band) for band in body_hz]
    body = s.peaks_gain(centres, [0.35] * len(centres), rng.uniform(1.0, 3.0, len(centres)), 1.0)
    top = s.lowpass_gain(min(rng.uniform(*lowpass_hz), s.max_freq(sr)), order=2)
    return s.unit_rms(s.spectral_filter(x, sr, lambda f: body(f) * top(f)))


def acoustic_guitar(rng: np.random.Generator, duration_s: float, sr: int) -> np.ndarray:
    """Plucked steel/nylon string (Karplus-Strong), E2-B5: melodies and strummed chords at
    60-170 bpm, decay 1.5-5 s, variable brightness, pick position and pluck softness,
    body resonances near 100, 220 and 450 Hz."""
    return _plucked(
        rng, duration_s, sr, (40, 83), 19, (60.0, 170.0), (1.5, 5.0), (0.6, 0.95),
        ((85.0, 120.0), (180.0, 260.0), (380.0, 520.0)), (2500.0, 9000.0), 0.35, (0.0, 0.6),
    )


def bass_guitar(rng: np.random.Generator, duration_s: float, sr: int) -> np.ndarray:
    """Plucked bass string (Karplus-Strong), E1-G3 (overlaps the guitar's low register):
    slow lines at 60-140 bpm, decay 2-6 s, dark loop filter, soft finger plucks."""
    return _plucked(
        rng, duration_s, sr, (28, 55), 12, (60.0, 140.0), (2.0, 6.0), (0.5, 0.7),
        ((60.0, 90.0), (150.0, 220.0)), (800.0, 3000.0), 0.0, (0.5, 1.0),
    )


def piano(rng: np.random.Generator, duration_s: float, sr: int) -> np.ndarray:
    """Struck string: two slightly detuned strings per note with stiffness inharmonicity
    (f_k = k f0 sqrt(1 + B k^2)), hammer brightness growing with velocity, upper partials
    decaying faster, dampers at note off; A1-C7, melodies and chords at 50-160 bpm."""
    n = s.num_samples(duration_s, sr)
    notes = melody(rng, n, sr, (33, 96), 24, (50.0, 160.0), (0.5, 1.0, 2.0), legato=(0.5, 1.0), chord_prob=0.4)
    t60_mid = rng.uniform(1.5, 6.0)
    stiffness = rng.uniform(0.3, 2.0) * 1e-4
    hammer_pos = rng.uniform(1 / 9, 1 / 6)
    detune_cents = rng.uniform(0.3, 2.5)

    def strike(note: Note, left: int) -> np.ndarray:
        f0 = float(s.midi_hz(note.pitch))
        count = s.harmonic_count(f0, sr, 18, headroom=1.2)
        k = np.arange(1, count + 1)
        freqs = k * f0 * np.sqrt(1.0 + stiffness * (f0 / 262.0) * k**2)
        cutoff = 600.0 + 5000.0 * note.velocity**1.5
        amps = np.abs(np.sin(np.pi * k * hammer_pos)) / k / (1.0 + (freqs / cutoff) ** 2) * note.velocity
        t60_1 = float(np.clip(t60_mid * (262.0 / f0) ** 0.6, 0.3, 14.0))
        t60 = t60_1 / (1.0 + 0.12 * (k - 1))
        m = min(left, note.length + s.num_samples(0.25, sr), s.num_samples(t60_1, sr))
        detune = 2.0 ** (detune_cents / 1200.0)
        y = s.damped_modes(
            m, sr, np.concatenate([freqs, freqs * detune]), np.tile(t60, 2), np.tile(amps, 2),
            rng.uniform(0.0, 2.0 * np.pi, 2 * count),
        )
        release = s.num_samples(rng.uniform(0.08, 0.2), sr)
        return y * s.adsr(m, sr, 0.002, 1.0, 1.0, release / sr, hold=max(1, min(note.length, m - release)))

    return s.unit_rms(_play(n, notes, strike))


# ------------------------------------------------------------------------ sustained tones


def _sustained(
    rng: np.random.Generator,
    n: int,
    sr: int,
    notes: list[Note],
    spectrum: Spectrum,
    vibrato: tuple[float, float],
    attack_s: float,
    release_s: float,
    scoop_cents: float = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Wavetable tones for ``notes`` with vibrato (rate Hz, depth cents; fading in over the
    first 0.1-0.4 s), slow pitch drift, an attack pitch scoop from ``-scoop_cents``, and an
    ADSR envelope scaled by velocity. Returns (tone (n,), summed envelope (n,))."""
    rate, depth = vibrato
    delay = rng.uniform(0.1, 0.4)
    wobble = depth * s.sine(rng, rate, n, sr) + 4.0 * s.smooth_curve(rng, n, sr, 3.0)  # cents
    tone, env_sum = np.zeros(n), np.zeros(n)
    release = s.num_samples(release_s, sr)
    for note in notes:
        if note.start >= n:
            continue
        f0 = float(s.midi_hz(note.pitch))
        m = min(n - note.start, note.length + release)
        t = np.arange(m) / sr
        cents = wobble[note.start : note.start + m] * np.minimum(t / delay, 1.0)
        if scoop_cents:
            cents = cents - scoop_cents * np.exp(-t / 0.04)
        freq = f0 * np.exp(cents * (np.log(2.0) / 1200.0))
        amps = spectrum(f0, note.velocity)
        table = s.wavetable(amps, rng.uniform(0.0, 2.0 * np.pi, amps.size))
        env = note.velocity * s.adsr(m, sr, attack_s, 0.15, rng.uniform(0.7, 1.0), release_s, hold=note.length)
        tone[note.start : note.start + m] += s.table_read(table, s.phase_cycles(rng, freq, m, sr)) * env
        env_sum[note.start : note.start + m] += env
    return tone, env_sum


def _breath(
    rng: np.random.Generator, env: np.ndarray, sr: int, centre_hz: float, octaves: float, level_db: float
) -> np.ndarray:
    """Band noise following ``env`` (n,), ``level_db`` relative to the tone, with a brief extra
    burst at each attack (the envelope's rising edges) -> (n,)."""
    noise = s.filtered_noise(rng, env.size, sr, s.band_gain(min(centre_hz, s.max_freq(sr) / 2), octaves))
    rise = np.maximum(np.diff(env, prepend=0.0), 0.0) * sr * 0.03
    return noise * (env + np.minimum(rise, 1.5)) * float(s.db(level_db))


def _bowed(
    rng: np.random.Generator,
    duration_s: float,
    sr: int,
    register: tuple[int, int],
    body_hz: tuple[tuple[float, float], ...],
) -> np.ndarray:
    """Bowed string: Helmholtz (sawtooth-like, 1/k) harmonics shaped by bow position and body
    resonances ``body_hz``, vibrato 4.5-7 Hz of 8-35 cents, bow noise and scratchy attacks."""
    n = s.num_samples(duration_s, sr)
    notes = melody(rng, n, sr, register, 19, (50.0, 140.0), (0.5, 1.0, 2.0), legato=(0.8, 1.0), rest_prob=0.05)
    centres = [rng.uniform(*band) for band in body_hz]
    body = s.peaks_gain(centres, rng.uniform(0.3, 0.7, len(centres)), rng.uniform(1.0, 4.0, len(centres)), 0.3)
    bow = rng.uniform(0.06, 0.16)
    rolloff = rng.uniform(0.8, 1.3)

    def spectrum(f0: float, velocity: float) -> np.ndarray:
        k = np.arange(1, s.harmonic_count(f0, sr, 60) + 1)
        return np.abs(np.sin(np.pi * k * bow) + 0.05) / k**rolloff * body(k * f0) * (0.6 + 0.6 * velocity) ** (k / 8)

    vibrato = (rng.uniform(4.5, 7.0), rng.uniform(8.0, 35.0))
    tone, env = _sustained(rng, n, sr, notes, spectrum, vibrato, rng.uniform(0.03, 0.15), rng.uniform(0.05, 0.2))
    noise = _breath(rng, env, sr, rng.uniform(2000.0, 5000.0), 2.5, rng.uniform(-32.0, -20.0))
    return s.unit_rms(s.unit_rms(tone) + noise)


def violin(rng: np.random.Generator, duration_s: float, sr: int) -> np.ndarray:
    """Bowed string, G3-E6: body resonances near 280, 450 Hz and a 2-3.5 kHz bridge hill,
    melodies at 50-140 bpm with vibrato and bow noise (confusable with the cello's top)."""
    return _bowed(rng, duration_s, sr, (55, 88), ((260.0, 300.0), (400.0, 520.0), (2000.0, 3500.0)))


def cello(rng: np.random.Generator, duration_s: float, sr: int) -> np.ndarray:
    """Bowed string, C2-A4 (overlapping the violin's low octave): body resonances near 100,
    220 Hz and 1-1.8 kHz, the violin's bowing model."""
    return _bowed(rng, duration_s, sr, (36, 69), ((90.0, 130.0), (190.0, 260.0), (1000.0, 1800.0)))


def flute(rng: np.random.Generator, duration_s: float, sr: int) -> np.ndarray:
    """Blown pipe, C4-C7: strong fundamental, geometrically weaker harmonics, breath noise
    with an attack chiff, vibrato 4.5-5.5 Hz with matching tremolo."""
    n = s.num_samples(duration_s, sr)
    notes = melody(rng, n, sr, (60, 96), 19, (60.0, 150.0), (0.5, 1.0, 2.0), legato=(0.75, 1.0))
    ratio = rng.uniform(0.12, 0.4)

    def spectrum(f0: float, velocity: float) -> np.ndarray:
        k = np.arange(1, s.harmonic_count(f0, sr, 24) + 1)
        return (ratio * (0.7 + 0.5 * velocity)) ** (k - 1) * ((f0 < 1200.0) | (k < 4))

    vibrato = (rng.uniform(4.5, 5.5), rng.uniform(10.0, 30.0))
    tone, env = _sustained(rng, n, sr, notes, spectrum, vibrato, rng.uniform(0.03, 0.09), rng.uniform(0.04, 0.12))
    tremolo = 1.0 + rng.uniform(0.05, 0.2) * np.sin(2 * np.pi * vibrato[0] * np.arange(n) / sr)
    noise = _breath(rng, env, sr, rng.uniform(1500.0, 4000.0), 2.0, rng.uniform(-24.0, -12.0))
    return s.unit_rms(s.unit_rms(tone) * tremolo + noise)


def clarinet(rng: np.random.Generator, duration_s: float, sr: int) -> np.ndarray:
    """Reed and cylindrical bore, D3-C6: odd harmonics strong and even ones weak up to
    1.5-2.5 kHz, all harmonics above; little or no vibrato, soft breath noise."""
    n = s.num_samples(duration_s, sr)
    notes = melody(rng, n, sr, (50, 84), 19, (60.0, 150.0), (0.5, 1.0, 2.0), legato=(0.75, 1.0))
    even_level, split_hz, rolloff = rng.uniform(0.03, 0.15), rng.uniform(1500.0, 2500.0), rng.uniform(0.8, 1.4)

    def spectrum(f0: float, velocity: float) -> np.ndarray:
        k = np.arange(1, s.harmonic_count(f0, sr, 40) + 1)
        odd = (k % 2 == 1) | (k * f0 > split_hz)
        return np.where(odd, 1.0, even_level) / k ** (rolloff + 0.6 * (1.0 - velocity))

    vibrato = (rng.uniform(4.0, 6.0), rng.uniform(0.0, 6.0))
    tone, env = _sustained(rng, n, sr, notes, spectrum, vibrato, rng.uniform(0.02, 0.06), rng.uniform(0.03, 0.1))
    noise = _breath(rng, env, sr, rng.uniform(1500.0, 3500.0), 2.0, rng.uniform(-34.0, -24.0))
    return s.unit_rms(s.unit_rms(tone) + noise)


def trumpet(rng: np.random.Generator, duration_s: float, sr: int) -> np.ndarray:
    """Brass, E3-C6: harmonic tone whose brightness grows with loudness, a formant near
    1-1.6 kHz, attacks scooping up 30-90 cents, light late vibrato, some breath noise."""
    n = s.num_samples(duration_s, sr)
    notes = melody(rng, n, sr, (52, 84), 17, (70.0, 170.0), (0.5, 1.0, 2.0), legato=(0.6, 0.95), rest_prob=0.15)
    formant = s.peaks_gain([rng.uniform(1000.0, 1600.0)], [1.2], [rng.uniform(1.0, 3.0)], 0.5)

    def spectrum(f0: float, velocity: float) -> np.ndarray:
        k = np.arange(1, s.harmonic_count(f0, sr, 40) + 1)
        slope = 1.9 - 1.3 * velocity
        return k ** (-slope) * formant(k * f0) * np.where(k == 1, 0.6, 1.0)

    vibrato = (rng.uniform(5.0, 6.0), rng.uniform(0.0, 15.0))
    tone, env = _sustained(
        rng, n, sr, notes, spectrum, vibrato, rng.uniform(0.015, 0.04), rng.uniform(0.03, 0.1), rng.uniform(30.0, 90.0)
    )
    noise = _breath(rng, env, sr, rng.uniform(1500.0, 3000.0), 2.0, rng.uniform(-34.0, -24.0))
    return s.unit_rms(s.unit_rms(tone) + noise)


def organ(rng: np.random.Generator, duration_s: float, sr: int) -> np.ndarray:
    """Drawbar organ: random stops at 16', 8', 5 1/3', 4', 2 2/3', 2', 1 3/5', 1 1/3', 1'
    played as sustained chords (C2-C6) at 50-120 bpm with abrupt attacks, key clicks, no vibrato or
    (one event in three) a rotating-speaker tremolo of 5.5-7 Hz."""
    n = s.num_samples(duration_s, sr)
    notes = melody(rng, n, sr, (36, 84), 17, (50.0, 120.0), (1.0, 2.0, 4.0), legato=(0.85, 1.0), chord_prob=0.8)
    stops = np.array([2, 4, 6, 8, 12, 16, 20, 24, 32])  # harmonics of f0 / 2
    levels = rng.uniform(0.0, 1.0, stops.size) ** 2 * (rng.random(stops.size) < 0.6)
    levels[1] = max(levels[1], 0.6)

    def spectrum(f0: float, velocity: float) -> np.ndarray:
        count = s.harmonic_count(f0 / 2.0, sr, 40, headroom=1.0)
        amps = np.zeros(count)
        inside = stops <= count
        amps[stops[inside] - 1] = levels[inside]
        return amps

    def half(note: Note) -> Note:  # tables hold harmonics of f0 / 2
        return Note(note.start, note.length, note.pitch - 12.0, 0.8)

    tone, _ = _sustained(rng, n, sr, [half(x) for x in notes], spectrum, (6.0, 0.0), 0.008, rng.uniform(0.02, 0.08))
    x = s.unit_rms(tone)
    click_level, click_n = float(s.db(rng.uniform(-20.0, -8.0))), s.num_samples(0.003, sr)
    for note in notes:
        s.add_at(x, note.start, click_level * rng.standard_normal(click_n) * np.linspace(1.0, 0.0, click_n))
    if rng.random() < 1.0 / 3.0:
        x = x * (1.0 + 0.3 * s.sine(rng, rng.uniform(5.5, 7.0), n, sr))
    return s.unit_rms(x)


# ---------------------------------------------------------------------------------- mallets


def _mallet(
    rng: np.random.Generator,
    duration_s: float,
    sr: int,
    register: tuple[int, int],
    ratios: tuple[float, ...],
    overtone_levels: tuple[tuple[float, float], ...],
    t60_s: tuple[float, float],
    t60_ref_hz: float,
    click_db: tuple[float, float],
) -> np.ndarray:
    """Struck bar: modes at ``ratios`` x f0 (+-1 %) with per-mode decay (higher modes
    faster), overtone levels growing with mallet hardness, a contact click; melodies or
    (one event in four) tremolo rolls at 10-18 strokes/s."""
    n = s.num_samples(duration_s, sr)
    notes = melody(rng, n, sr, register, 19, (60.0, 180.0), (0.25, 0.5, 1.0), chord_prob=0.15)
    ratio = np.asarray(ratios) * rng.uniform(0.99, 1.01, len(ratios))
    ratio[0] = 1.0
    hardness = rng.uniform(0.3, 1.0)
    levels = np.array([1.0] + [rng.uniform(*r) for r in overtone_levels]) * hardness ** np.arange(len(ratios))
    levels[0] = 1.0
    t60_base = rng.uniform(*t60_s)
    click = float(s.db(rng.uniform(*click_db))) * hardness
    roll = rng.uniform(10.0, 18.0) if rng.random() < 0.25 else 0.0
    cache: dict[float, np.ndarray] = {}

    def bar(pitch: float) -> np.ndarray:
        if pitch not in cache:
            f0 = float(s.midi_hz(pitch))
            t60_1 = float(np.clip(t60_base * (t60_ref_hz / f0) ** 0.5, 0.05, 4.0))
            t60 = t60_1 / ratio**0.8
            m = min(n, s.num_samples(t60_1, sr))
            y = s.damped_modes(m, sr, f0 * ratio, t60, levels, rng.uniform(0.0, 2.0 * np.pi, len(ratios)))
            k = min(m, s.num_samples(0.002, sr))
            y[:k] += click * rng.standard_normal(k) * np.linspace(1.0, 0.0, k)
            cache[pitch] = y
        return cache[pitch]

    def strike(note: Note, left: int) -> np.ndarray:
        y = bar(note.pitch)
        if not roll:
            return note.velocity * y
        out = np.zeros(min(left, note.length + y.size))
        for start in range(0, note.length, max(1, int(sr / roll))):
            s.add_at(out, start, y * note.velocity * rng.uniform(0.6, 1.0))
        return out

    return s.unit_rms(_play(n, notes, strike))


def marimba(rng: np.random.Generator, duration_s: float, sr: int) -> np.ndarray:
    """Wooden bar over a resonator, A2-E6: modes 1 : 4 : 10 with the overtones weak and fast
    decaying, decay 0.4-1.5 s at C4, soft to hard mallets, melodies or rolls."""
    return _mallet(
        rng, duration_s, sr, (45, 88), (1.0, 3.98, 9.9), ((0.05, 0.4), (0.01, 0.1)), (0.4, 1.5), 262.0, (-40.0, -26.0)
    )


def xylophone(rng: np.random.Generator, duration_s: float, sr: int) -> np.ndarray:
    """Hard wooden bar, F4-C8 (overlapping the marimba's top): modes 1 : 3 : 6, bright,
    short decay (0.15-0.6 s at C5) and a loud mallet click."""
    return _mallet(
        rng, duration_s, sr, (65, 108), (1.0, 3.0, 6.0, 9.5), ((0.2, 0.8), (0.05, 0.4), (0.02, 0.15)),
        (0.15, 0.6), 523.0, (-26.0, -12.0),
    )


def _bell_tolls(
    rng: np.random.Generator,
    n: int,
    sr: int,
    bells: list[np.ndarray],
    interval_s: tuple[float, float],
    choose: Callable[[], int],
) -> np.ndarray:
    """Bells (pre-rendered modal responses) struck at :func:`event_times` -> (n,)."""
    out = np.zeros(n)
    for start in event_times(rng, n, sr, interval_s, 0.3):
        s.add_at(out, start, bells[choose()] * rng.uniform(0.5, 1.0))
    return out


def church_bell(rng: np.random.Generator, duration_s: float, sr: int) -> np.ndarray:
    """Cast bells: hum, prime, minor-third tierce, quint, nominal and higher partials
    (0.5, 1, 1.2, 1.5, 2, 2.5, 2.67, 3, 4, 5.3 x prime, +-1.5 %), each a beating doublet,
    the hum ringing 4-12 s; 1-3 bells (prime 150-700 Hz) tolled every 1-3.5 s."""
    n = s.num_samples(duration_s, sr)
    base = np.array([0.5, 1.0, 1.2, 1.5, 2.0, 2.5, 2.67, 3.0, 4.0, 5.3])
    weights = np.array([0.6, 0.7, 0.8, 0.3, 1.0, 0.4, 0.3, 0.3, 0.2, 0.1])
    hum_t60 = rng.uniform(4.0, 12.0)
    bells = []
    for _ in range(int(rng.integers(1, 4))):
        prime = s.log_uniform(rng, 150.0, 700.0)
        ratios = base * rng.uniform(0.985, 1.015, base.size)
        amps = weights * rng.uniform(0.5, 1.5, base.size)
        t60 = hum_t60 / (ratios / 0.5) ** 0.8
        beat = rng.uniform(0.3, 2.0, base.size)
        m = min(n, s.num_samples(hum_t60, sr))
        freqs = np.concatenate([prime * ratios, prime * ratios + beat])
        phases = rng.uniform(0.0, 2.0 * np.pi, 2 * base.size)
        bells.append(s.damped_modes(m, sr, freqs, np.tile(t60, 2), np.tile(amps, 2) / 2, phases))
    return s.unit_rms(_bell_tolls(rng, n, sr, bells, (1.0, 3.5), lambda: int(rng.integers(len(bells)))))


def wind_chimes(rng: np.random.Generator, duration_s: float, sr: int) -> np.ndarray:
    """Hanging tubes: 4-6 tubes tuned to a pentatonic chord on 600-1500 Hz, free-free bar
    modes 1, 2.76, 5.40, 8.93, ringing 1.5-4 s; struck at random, 2-10 times a second,
    in gusts."""
    n = s.num_samples(duration_s, sr)
    root = rng.uniform(600.0, 1500.0)
    steps = np.sort(rng.choice([0, 2, 4, 7, 9, 12, 14, 16], size=int(rng.integers(4, 7)), replace=False))
    ratios = np.array([1.0, 2.756, 5.404, 8.933])
    t60_1 = rng.uniform(1.5, 4.0)
    tubes = []
    for step in steps:
        f = root * 2.0 ** (step / 12.0)
        m = min(n, s.num_samples(t60_1, sr))
        amps = np.array([1.0, rng.uniform(0.3, 0.8), rng.uniform(0.1, 0.4), rng.uniform(0.05, 0.2)])
        tubes.append(s.damped_modes(m, sr, f * ratios, t60_1 / ratios**0.6, amps, rng.uniform(0, 2 * np.pi, 4)))
    gust = np.exp(1.0 * s.smooth_curve(rng, n, sr, rng.uniform(0.2, 0.8)))
    rate = rng.uniform(2.0, 10.0) * gust / np.mean(gust)
    times = s.poisson_times(rng, n, sr, rate)
    if times.size == 0:
        times = np.array([0])
    out = np.zeros(n)
    for start in times:
        s.add_at(out, int(start), tubes[int(rng.integers(len(tubes)))] * rng.uniform(0.2, 1.0))
    return s.unit_rms(out)
