"""Environmental and everyday classes: rain, wind, stream, fire, engine, footsteps, dog,
bird, speech babble.

Every generator is ``f(rng, duration_s, sr) -> (round(duration_s * sr),)`` unit-RMS float64.
Textures are shaped noise with slowly varying random envelopes; discrete sounds are
small physical models (bubbles, membranes, formant filters) placed in time.
"""

from __future__ import annotations

import numpy as np

from . import signals as s
from .scores import event_times


def _bubble(rng: np.random.Generator, sr: int, freq_hz: float, t60_s: float, rise: float) -> np.ndarray:
    """A resonating bubble or drop: sine starting at ``freq_hz`` and rising by a factor
    ``rise`` over its ``t60_s`` decay (Minnaert resonance of a shrinking bubble) -> (m,)."""
    m = s.num_samples(t60_s, sr)
    freq = np.minimum(freq_hz * (1.0 + (rise - 1.0) * np.arange(m) / m), s.max_freq(sr))
    return np.sin(2.0 * np.pi * np.cumsum(freq) / sr) * s.decay(m, sr, t60_s)


def _scatter(
    rng: np.random.Generator, n: int, sr: int, rate: np.ndarray | float, sounds: list[np.ndarray], loudness: float
) -> np.ndarray:
    """Sounds placed at Poisson times of intensity ``rate`` (events/s), each picked at random
    from ``sounds`` with a log-normal level of spread ``loudness`` (nepers) -> (n,)."""
    out = np.zeros(n)
    times = s.poisson_times(rng, n, sr, rate)
    picks = rng.integers(len(sounds), size=times.size)
    levels = np.exp(loudness * rng.standard_normal(times.size))
    for start, pick, level in zip(times, picks, levels):
        s.add_at(out, int(start), level * sounds[pick])
    return out


def rain(rng: np.random.Generator, duration_s: float, sr: int) -> np.ndarray:
    """Rain: broadband hiss (pink to white above a 300-1500 Hz high-pass) whose intensity
    drifts, plus 30-400 drops/s - short bright bubbles of 1.5-6 kHz (5-25 ms) with clicks."""
    n = s.num_samples(duration_s, sr)
    intensity = np.exp(0.4 * s.smooth_curve(rng, n, sr, rng.uniform(0.1, 0.5)))
    hp, beta = s.highpass_gain(rng.uniform(300.0, 1500.0), 2), rng.uniform(0.0, 1.0)
    hiss = s.filtered_noise(rng, n, sr, lambda f: hp(f) * s.coloured_gain(beta)(f)) * intensity
    drops = []
    for _ in range(8):
        freq = min(s.log_uniform(rng, 1500.0, 6000.0), s.max_freq(sr) / 1.5)
        drop = _bubble(rng, sr, freq, rng.uniform(0.005, 0.025), rng.uniform(1.0, 1.4))
        drop[: s.num_samples(0.001, sr)] += rng.standard_normal(s.num_samples(0.001, sr)) * rng.uniform(0.2, 1.0)
        drops.append(drop)
    pattern = _scatter(rng, n, sr, rng.uniform(30.0, 400.0) * intensity, drops, 0.6)
    return s.unit_rms(hiss * float(s.db(rng.uniform(-12.0, 3.0))) + s.unit_rms(pattern))


def stream(rng: np.random.Generator, duration_s: float, sr: int) -> np.ndarray:
    """Running water: dense bubbles (60-600/s) in a 250-2700 Hz range, 10-50 ms, rising in
    pitch as they close, over a low gurgle (noise low-passed at 300-900 Hz, fluctuating at 2-8 Hz)."""
    n = s.num_samples(duration_s, sr)
    low = s.log_uniform(rng, 250.0, 900.0)
    high = low * rng.uniform(1.5, 3.0)
    bubbles = [
        _bubble(rng, sr, s.log_uniform(rng, low, high), rng.uniform(0.01, 0.05), rng.uniform(1.1, 1.8))
        for _ in range(12)
    ]
    flow = np.exp(0.3 * s.smooth_curve(rng, n, sr, rng.uniform(0.2, 1.0)))
    pattern = _scatter(rng, n, sr, rng.uniform(60.0, 600.0) * flow, bubbles, 0.5)
    gurgle = s.filtered_noise(rng, n, sr, s.lowpass_gain(rng.uniform(300.0, 900.0), 2))
    gurgle *= 1.0 + 0.5 * s.smooth_curve(rng, n, sr, rng.uniform(2.0, 8.0))
    return s.unit_rms(s.unit_rms(pattern) + float(s.db(rng.uniform(-12.0, 0.0))) * gurgle)


def wind(rng: np.random.Generator, duration_s: float, sr: int) -> np.ndarray:
    """Wind: noise in a 2-4 octave band whose centre (150-600 Hz) and level rise with random
    gusts (0.1-0.6 Hz); in half the events a narrow howl at 300-1500 Hz that follows the gusts."""
    n = s.num_samples(duration_s, sr)
    frame_rate = sr / s.stft_sizes(sr)[1]
    gusts = s.smooth_curve(rng, int(n / sr * frame_rate) + 8, int(frame_rate), rng.uniform(0.1, 0.6))
    centre, width, depth = rng.uniform(150.0, 600.0), rng.uniform(2.0, 4.0), rng.uniform(0.3, 1.0)
    howl = rng.uniform(300.0, 1500.0) if rng.random() < 0.5 else 0.0
    howl_db = rng.uniform(-6.0, 6.0)

    def gain(times: np.ndarray, freqs: np.ndarray) -> np.ndarray:
        g = gusts[np.minimum((times * frame_rate).astype(int) + 4, gusts.size - 1)][:, None] * depth
        octaves = np.log2(np.maximum(freqs[None, :], 20.0) / (centre * 2.0 ** (0.7 * g)))
        out = np.exp(g) * np.exp(-0.5 * (octaves / (width / 2.0)) ** 2)
        if howl:
            narrow = np.log2(np.maximum(freqs[None, :], 20.0) / (howl * 2.0 ** (0.3 * g)))
            out = out + float(s.db(howl_db)) * np.exp(2 * g) * np.exp(-0.5 * (narrow / 0.04) ** 2)
        return out

    return s.unit_rms(s.stft_noise(rng, n, sr, gain))


def fire_crackle(rng: np.random.Generator, duration_s: float, sr: int) -> np.ndarray:
    """Fire: a flickering low roar (noise low-passed at 150-600 Hz, 2-8 Hz flicker), faint
    hiss, and crackles - 0.3-3 ms high-passed clicks at 5-40/s in clusters, some as resonant pops."""
    n = s.num_samples(duration_s, sr)
    roar = s.filtered_noise(rng, n, sr, s.lowpass_gain(rng.uniform(150.0, 600.0), 2))
    roar *= np.exp(0.4 * s.smooth_curve(rng, n, sr, rng.uniform(2.0, 8.0)))
    hiss = s.filtered_noise(rng, n, sr, s.highpass_gain(4000.0, 2)) * float(s.db(rng.uniform(-36.0, -24.0)))
    clicks = []
    for _ in range(10):
        m = s.num_samples(rng.uniform(0.0003, 0.003), sr)
        click = s.spectral_filter(rng.standard_normal(m), sr, s.highpass_gain(rng.uniform(1000.0, 5000.0), 2))
        click *= s.decay(m, sr, m / sr)
        if rng.random() < 0.3:
            pop = _bubble(rng, sr, rng.uniform(500.0, 3000.0), rng.uniform(0.005, 0.02), 1.0)
            pop[:m] += click
            click = pop
        clicks.append(click)
    rate = rng.uniform(5.0, 40.0) * np.exp(1.2 * s.smooth_curve(rng, n, sr, rng.uniform(0.5, 3.0)))
    crackles = _scatter(rng, n, sr, rate, clicks, 0.9)
    return s.unit_rms(roar * float(s.db(rng.uniform(-14.0, 0.0))) + hiss + s.unit_rms(crackles))


def engine(rng: np.random.Generator, duration_s: float, sr: int) -> np.ndarray:
    """Combustion engine: firing rate 15-90 Hz (idling truck to motorbike) wandering by 3-20 %
    and sometimes revving, harmonic pulses through 1-2 resonances with a half-rate component
    from uneven cylinders, firing-synchronous mechanical noise, and in a third of the events
    a gear whine."""
    n = s.num_samples(duration_s, sr)
    fire = s.log_uniform(rng, 15.0, 90.0)
    wander = np.exp(rng.uniform(0.03, 0.2) * s.smooth_curve(rng, n, sr, rng.uniform(0.2, 1.0)))
    if rng.random() < 0.4:
        t = np.arange(n) / n
        peak = rng.uniform(0.2, 0.8)
        wander *= 1.0 + rng.uniform(0.3, 0.8) * np.exp(-0.5 * ((t - peak) / rng.uniform(0.08, 0.25)) ** 2)
    freq = fire / 2.0 * wander  # tables hold harmonics of half the firing rate
    cutoff = rng.uniform(300.0, 1500.0)
    centres = [rng.uniform(150.0, 600.0), rng.uniform(700.0, 2000.0)]
    res = s.peaks_gain(centres, [0.6, 0.8], rng.uniform(0.5, 3.0, 2), 0.3)
    k = np.arange(1, s.harmonic_count(fire / 2.0, sr, 200, headroom=2.0) + 1)
    uneven = rng.uniform(0.05, 0.4)
    amps = np.exp(-k * fire / 2.0 / cutoff) * res(k * fire / 2.0) * np.where(k % 2 == 0, 1.0, uneven)
    cycles = s.phase_cycles(rng, freq, n, sr)
    tone = s.table_read(s.wavetable(amps, rng.uniform(0.0, 2.0 * np.pi, k.size)), cycles)
    band = s.band_gain(rng.uniform(1000.0, 4000.0), 2.0)
    pulses = 1.0 + 0.8 * np.cos(4.0 * np.pi * cycles)  # at the firing rate
    mech = s.filtered_noise(rng, n, sr, band) * pulses * float(s.db(rng.uniform(-20.0, -6.0)))
    x = s.unit_rms(tone) + mech
    if rng.random() < 1.0 / 3.0:
        ratio = min(rng.uniform(8.0, 30.0), s.max_freq(sr) / fire / 2.0)  # whine at ratio x firing rate
        x = x + float(s.db(rng.uniform(-24.0, -10.0))) * np.sin(4.0 * np.pi * ratio * cycles)
    return s.unit_rms(x)


def footsteps(rng: np.random.Generator, duration_s: float, sr: int) -> np.ndarray:
    """Footsteps walking (0.45-0.7 s apart) or running (0.28-0.4 s): a heel thud (50-120 Hz
    body plus a surface resonance of 250-900 Hz on hard floors) and a toe or scuff 60-150 ms
    later; on gravel or leaves a grainy 40-150 ms noise crunch instead of the resonance."""
    n = s.num_samples(duration_s, sr)
    interval = (0.45, 0.7) if rng.random() < 0.7 else (0.28, 0.4)
    hard = rng.random() < 0.6
    thud_f, surface_f = rng.uniform(50.0, 120.0), rng.uniform(250.0, 900.0)
    toe_delay, crunch_s = rng.uniform(0.06, 0.15), rng.uniform(0.04, 0.15)
    crunch_band = s.band_gain(rng.uniform(1500.0, 5000.0), 2.5)

    def step() -> np.ndarray:
        m = min(n, s.num_samples(toe_delay + 0.25, sr))
        phases = rng.uniform(0.0, 2.0 * np.pi, 2)
        freqs = np.array([thud_f, thud_f * 2.3])
        out = s.damped_modes(m, sr, freqs, np.array([0.08, 0.05]), np.array([1.0, 0.4]), phases)
        if hard:
            freqs, phases = np.array([surface_f, surface_f * 1.7]), rng.uniform(0.0, 2.0 * np.pi, 2)
            ring = s.damped_modes(m, sr, freqs, np.array([0.06, 0.04]), np.array([0.5, 0.25]), phases)
            for at in (0, s.num_samples(toe_delay, sr)):
                s.add_at(out, at, ring[: m - at] * rng.uniform(0.5, 1.0))
        else:
            k = min(m, s.num_samples(crunch_s, sr))
            grains = np.abs(s.smooth_curve(rng, k, sr, 800.0)) ** 2
            crunch = s.filtered_noise(rng, k, sr, crunch_band) * grains * s.decay(k, sr, crunch_s)
            for at in (0, s.num_samples(toe_delay, sr)):
                s.add_at(out, at, 0.8 * crunch)
        return out

    steps = [step() for _ in range(4)]
    out = np.zeros(n)
    for i, start in enumerate(event_times(rng, n, sr, interval, 0.08)):
        s.add_at(out, start, steps[i % 4] * (1.0 if i % 2 else rng.uniform(0.6, 0.9)) * rng.uniform(0.8, 1.0))
    return s.unit_rms(out)


def dog_bark(rng: np.random.Generator, duration_s: float, sr: int) -> np.ndarray:
    """Dog barks: a harsh harmonic source (f0 200-800 Hz, rising then falling within the
    bark, with rough noise) through formants at 400-900, 1100-2000 and 2300-3500 Hz, pitch and
    formants scaled down by the dog's size (0.8-1.25); barks of 80-300 ms in groups of 1-4,
    groups 0.6-2.5 s apart."""
    n = s.num_samples(duration_s, sr)
    size = rng.uniform(0.8, 1.25)
    f0, length, rough = s.log_uniform(rng, 200.0, 800.0) / size, rng.uniform(0.08, 0.3), rng.uniform(0.1, 0.6)
    formants = [rng.uniform(lo, hi) / size for lo, hi in ((400.0, 900.0), (1100.0, 2000.0), (2300.0, 3500.0))]
    k = np.arange(1, s.harmonic_count(f0, sr, 60, headroom=1.5) + 1)
    table = s.wavetable(k ** -rng.uniform(0.6, 1.2), rng.uniform(0, 2 * np.pi, k.size))
    source = np.zeros(n)
    group = event_times(rng, n, sr, (0.6, 2.5), 0.5)
    for start in group:
        t = start
        for _ in range(int(rng.integers(1, 5))):
            m = min(n - t, s.num_samples(length * rng.uniform(0.8, 1.2), sr)) if t < n else 0
            if m <= 0:
                break
            shape = np.sin(np.pi * np.arange(m) / m)
            freq = f0 * rng.uniform(0.9, 1.1) * (1.0 + rng.uniform(0.1, 0.4) * shape)
            voice = s.table_read(table, s.phase_cycles(rng, freq, m, sr)) * (1.0 + rough * rng.standard_normal(m))
            env = np.minimum(np.arange(m) / (0.01 * sr), 1.0) * shape**0.5
            s.add_at(source, t, voice * env * rng.uniform(0.7, 1.0))
            t += m + s.num_samples(rng.uniform(0.08, 0.3), sr)
    tract = s.peaks_gain(formants, [0.5, 0.5, 0.6], [1.0, 0.7, 0.4], 0.05)
    return s.unit_rms(s.spectral_filter(source, sr, tract))


def bird_song(rng: np.random.Generator, duration_s: float, sr: int) -> np.ndarray:
    """Songbird: a repertoire of 2-5 syllable types in a 1.8-7 kHz band (up/down sweeps,
    trills with 20-80 Hz frequency modulation, hooks; 20-200 ms, weak second harmonic),
    sung as phrases of repeated syllables separated by 0.2-2 s pauses."""
    n = s.num_samples(duration_s, sr)
    band = min(s.log_uniform(rng, 1800.0, 7000.0), s.max_freq(sr) / 2.5)
    types = []
    for _ in range(int(rng.integers(2, 6))):
        m = s.num_samples(rng.uniform(0.02, 0.2), sr)
        u = np.arange(m) / m
        f_a, f_b = band * rng.uniform(0.6, 1.6), band * rng.uniform(0.6, 1.6)
        kind = int(rng.integers(3))
        if kind == 0:
            freq = f_a + (f_b - f_a) * u
        elif kind == 1:
            freq = f_a * (1.0 + rng.uniform(0.05, 0.2) * np.sin(2 * np.pi * rng.uniform(20.0, 80.0) * u * m / sr))
        else:
            freq = f_a * (1.0 + rng.uniform(0.2, 0.5) * (2.0 * u - 1.0) ** 2)
        phase = 2.0 * np.pi * np.cumsum(freq) / sr
        env = np.sin(np.pi * u) ** 2
        types.append((np.sin(phase) + rng.uniform(0.0, 0.3) * np.sin(2.0 * phase)) * env)
    out = np.zeros(n)
    t = int(rng.uniform(0.0, min(0.1, 0.2 * n / sr)) * sr)
    while t < n:
        for _ in range(int(rng.integers(1, 4))):
            syllable = types[int(rng.integers(len(types)))]
            gap = s.num_samples(rng.uniform(0.02, 0.12), sr)
            level = rng.uniform(0.5, 1.0)
            for _ in range(int(rng.integers(2, 9))):
                s.add_at(out, t, syllable * level)
                t += syllable.size + gap
        t += s.num_samples(rng.uniform(0.2, 2.0), sr)
    return s.unit_rms(out)


VOWELS = np.array(
    [[730, 1090, 2440], [530, 1840, 2480], [270, 2290, 3010], [570, 840, 2410],
     [300, 870, 2240], [660, 1720, 2410], [490, 1350, 1690]],
    dtype=np.float64,
)
"""Formants F1-F3 (Hz) of seven vowels of an adult male voice."""


def _talker(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    """One voice (n,): glottal harmonics with a declining, accented f0 contour through
    vowel formants that glide from syllable to syllable (short-time filter), syllables at
    3-6/s in phrases of 0.8-3 s, fricative bursts (2.5-8 kHz noise) at some syllable onsets."""
    f0 = s.log_uniform(rng, 85.0, 150.0) if rng.random() < 0.5 else s.log_uniform(rng, 160.0, 280.0)
    tract = rng.uniform(0.9, 1.25) * (1.0 if f0 < 155.0 else 1.15)
    rate = rng.uniform(3.0, 6.0)
    voiced, fricative = np.zeros(n), np.zeros(n)
    pitch = np.full(n, f0)
    target_times, targets = [0.0], [VOWELS[int(rng.integers(len(VOWELS)))]]
    t = int(rng.uniform(0.0, min(0.3, 0.2 * n / sr)) * sr)
    while t < n:
        phrase_end = min(n, t + s.num_samples(rng.uniform(0.8, 3.0), sr))
        start = t
        while t < phrase_end:
            m = min(n - t, s.num_samples(rng.uniform(0.7, 1.3) / rate, sr))
            vowel = int(rng.integers(len(VOWELS)))
            target_times.append((t + m / 2) / sr)
            targets.append(VOWELS[vowel] * tract * rng.uniform(0.93, 1.07, 3))
            u = np.arange(m) / m
            s.add_at(voiced, t, np.sin(np.pi * np.minimum(u * 1.4, 1.0)) ** 0.7 * rng.uniform(0.6, 1.0))
            if rng.random() < 0.35:
                k = min(m, s.num_samples(rng.uniform(0.03, 0.09), sr))
                s.add_at(fricative, t, np.sin(np.pi * np.arange(k) / k) * rng.uniform(0.3, 0.8))
            t += m
        decline = np.linspace(1.1, 0.85, max(1, t - start))
        pitch[start:t] = f0 * decline[: t - start] * 2.0 ** (rng.uniform(-2.0, 2.0) / 12.0)
        t += s.num_samples(rng.uniform(0.2, 0.8), sr)
    pitch *= np.exp(0.4 * s.smooth_curve(rng, n, sr, rate) * (np.log(2.0) / 12.0))
    k = np.arange(1, s.harmonic_count(f0 * 1.5, sr, 80) + 1)
    glottal = s.table_read(s.wavetable(k**-1.0, np.zeros(k.size)), s.phase_cycles(rng, pitch, n, sr))
    target_times_arr, targets_arr = np.array(target_times), np.log2(np.array(targets))

    def gain(times: np.ndarray, freqs: np.ndarray) -> np.ndarray:
        log_f = np.log2(np.maximum(freqs, 20.0))[None, :]
        out = np.full((times.size, freqs.size), 0.02)
        for j, width in enumerate((0.25, 0.2, 0.2)):
            centre = np.interp(times, target_times_arr, targets_arr[:, j])[:, None]
            out += (1.0 - 0.3 * j) * np.exp(-0.5 * ((log_f - centre) / width) ** 2)
        return out

    speech = s.stft_filter(glottal * voiced, sr, gain)
    noise = s.filtered_noise(rng, n, sr, s.band_gain(rng.uniform(3500.0, 6000.0), 1.5)) * fricative
    return s.unit_rms(speech) + noise * float(s.db(rng.uniform(-10.0, 0.0)))


def speech_babble(rng: np.random.Generator, duration_s: float, sr: int) -> np.ndarray:
    """Speech-like voices: 1-3 talkers (male or female f0) producing vowel-formant syllables
    at 3-6/s with intonation, phrase pauses and fricatives."""
    n = s.num_samples(duration_s, sr)
    talkers = int(rng.choice([1, 1, 2, 3]))
    return s.unit_rms(sum(_talker(rng, n, sr) * rng.uniform(0.5, 1.0) for _ in range(talkers)))
