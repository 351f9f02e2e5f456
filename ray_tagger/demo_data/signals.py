"""DSP helpers of the demo data set, numpy only (no scipy).

Every function returns new float64 arrays and never modifies its inputs (except :func:`add_at`,
whose job is to add into a buffer); randomness comes from an explicit ``rng``. Filters work in
the FFT domain (zero phase) or on short-time spectra; oscillators are phase accumulators read
through wavetables; decaying modes are summed as blocks of complex exponentials with one matrix
product; the Karplus-Strong loop runs one period block at a time.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

Gain = Callable[[np.ndarray], np.ndarray]
"""Magnitude response: frequencies in Hz (F,) -> gains (F,)."""

LN_1000 = float(np.log(1000.0))
"""Natural log of 1000: an amplitude decays by 60 dB in a T60 of time when ~exp(-LN_1000 t / T60)."""

TABLE_SIZE = 2048
"""Samples per period of a wavetable (harmonics up to TABLE_SIZE // 2 - 1)."""


def num_samples(duration_s: float, sr: int) -> int:
    """Samples in ``duration_s`` seconds at ``sr`` Hz (at least 1)."""
    return max(1, int(round(duration_s * sr)))


def max_freq(sr: int) -> float:
    """Highest frequency a generator may use: 0.45 * sr (keeps clear of Nyquist)."""
    return 0.45 * sr


def midi_hz(pitch: float | np.ndarray) -> float | np.ndarray:
    """MIDI pitch (69 = A4) -> frequency in Hz."""
    return 440.0 * np.exp((np.asarray(pitch, dtype=np.float64) - 69.0) * (np.log(2.0) / 12.0))


def log_uniform(rng: np.random.Generator, low: float, high: float) -> float:
    """One draw, uniform on a log scale between ``low`` and ``high``."""
    return float(np.exp(rng.uniform(np.log(low), np.log(high))))


def db(gain_db: float | np.ndarray) -> float | np.ndarray:
    """Decibels -> amplitude factor."""
    return np.exp(np.asarray(gain_db, dtype=np.float64) * (np.log(10.0) / 20.0))


# ------------------------------------------------------------------------------ FFT filters


def fast_len(n: int) -> int:
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


def spectral_filter(x: np.ndarray, sr: int, gain: Gain) -> np.ndarray:
    """Filter (n,) -> (n,) by multiplying its zero-padded rfft with ``gain(freqs_hz)``
    (zero phase; padding to a fast FFT size also limits circular wrap-around)."""
    size = fast_len(x.size)
    spec = np.fft.rfft(x, size)
    return np.fft.irfft(spec * gain(np.fft.rfftfreq(size, 1.0 / sr)), size)[: x.size]


def lowpass_gain(cutoff_hz: float, order: int = 4) -> Gain:
    """Butterworth-shaped magnitude response ``1 / sqrt(1 + (f / fc)^(2 order))``."""
    return lambda f: 1.0 / np.sqrt(1.0 + np.exp((2 * order) * np.log(np.maximum(f, 1e-3) / cutoff_hz)))


def highpass_gain(cutoff_hz: float, order: int = 4) -> Gain:
    """Butterworth-shaped high-pass ``1 / sqrt(1 + (fc / f)^(2 order))`` (0 at DC)."""
    return lambda f: 1.0 / np.sqrt(1.0 + np.exp((2 * order) * np.log(cutoff_hz / np.maximum(f, 1e-3))))


def band_gain(centre_hz: float, octaves: float) -> Gain:
    """Gaussian band on a log-frequency axis, ``octaves`` wide at about -11 dB (0 at DC)."""
    sigma = octaves / 2.0
    return lambda f: np.exp(-0.5 * (np.log2(np.maximum(f, 1e-3) / centre_hz) / sigma) ** 2) * (f > 0)


def peaks_gain(centres_hz: Sequence[float], octaves: Sequence[float], gains: Sequence[float], floor: float) -> Gain:
    """Sum of :func:`band_gain` resonances with peak ``gains`` over a flat ``floor``."""

    def gain(f: np.ndarray) -> np.ndarray:
        out = np.full(f.shape, floor)
        for c, w, g in zip(centres_hz, octaves, gains):
            out += g * band_gain(c, w)(f)
        return out

    return gain


def unit_rms(x: np.ndarray) -> np.ndarray:
    """(n,) -> (n,) scaled to RMS 1 (returned unchanged if silent)."""
    rms = float(np.sqrt(np.mean(x**2)))
    return x / rms if rms > 0 else x


def rfft_power(spec: np.ndarray, size: int) -> float:
    """Mean power per sample of the real signal of length ``size`` whose rfft is ``spec`` (Parseval)."""
    parts = np.ascontiguousarray(spec).view(np.float64)  # interleaved real and imaginary parts
    energy = 2.0 * float(np.einsum("i,i->", parts, parts)) - abs(spec[0]) ** 2
    if size % 2 == 0:
        energy -= abs(spec[-1]) ** 2
    return energy / size**2


def noise_spectrum(rng: np.random.Generator, size: int, sr: int, gain: Gain) -> np.ndarray:
    """rfft (size // 2 + 1,) of unit-RMS Gaussian noise of length ``size`` shaped by ``gain``,
    drawn directly in the frequency domain (DC removed)."""
    bins = size // 2 + 1
    spec = rng.standard_normal((bins, 2)).view(np.complex128)[:, 0]  # real and imaginary parts
    spec *= gain(np.fft.rfftfreq(size, 1.0 / sr))
    spec[0] = 0.0
    power = rfft_power(spec, size)
    if power > 0:
        spec *= 1.0 / np.sqrt(power)
    return spec


def filtered_noise(rng: np.random.Generator, n: int, sr: int, gain: Gain) -> np.ndarray:
    """Unit-RMS Gaussian noise (n,) with magnitude spectrum ``gain(freqs_hz)``."""
    size = fast_len(n)
    return unit_rms(np.fft.irfft(noise_spectrum(rng, size, sr, gain), size)[:n])


def coloured_gain(beta: float) -> Gain:
    """Power spectrum ~ 1/f^beta (0 white, 1 pink, 2 brown), flat below 20 Hz."""
    return lambda f: np.exp((-beta / 2.0) * np.log(np.maximum(f, 20.0)))


# ------------------------------------------------------------------------- short-time spectra


def stft_sizes(sr: int) -> tuple[int, int]:
    """(frame, hop) of the short-time helpers: ~23 ms frames (1024 at 44.1 kHz), 50 % overlap."""
    frame = 1024 if sr >= 32000 else 512
    return frame, frame // 2


def _sqrt_hann(frame: int) -> np.ndarray:
    """Square root of a periodic Hann window (its square overlap-adds to 1 at 50 % hop)."""
    return np.sqrt(0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(frame) / frame))


def _overlap_add(frames: np.ndarray, hop: int, n: int) -> np.ndarray:
    """(T, 2 hop) windowed frames, frame t starting at (t - 1) hop -> (n,) signal."""
    count = frames.shape[0]
    out = np.zeros((count + 1) * hop)
    out[: count * hop] += frames[:, :hop].ravel()
    out[hop : (count + 1) * hop] += frames[:, hop:].ravel()
    return out[hop : hop + n]


def stft_noise(
    rng: np.random.Generator, n: int, sr: int, gain_tf: Callable[[np.ndarray, np.ndarray], np.ndarray]
) -> np.ndarray:
    """Noise (n,) whose short-time magnitude follows ``gain_tf(times_s (T,), freqs_hz (F,)) -> (T, F)``
    (random-phase frames, sqrt-Hann overlap-add). Not normalised: unit gain gives about unit RMS."""
    frame, hop = stft_sizes(sr)
    count = n // hop + 2
    times = (np.arange(count) - 1) * hop / sr + frame / (2.0 * sr)
    freqs = np.fft.rfftfreq(frame, 1.0 / sr)
    spec = rng.standard_normal((count, freqs.size)) + 1j * rng.standard_normal((count, freqs.size))
    spec *= gain_tf(times, freqs) * np.sqrt(frame / 2.0)
    spec[:, 0] = 0.0
    return _overlap_add(np.fft.irfft(spec, frame, axis=1) * _sqrt_hann(frame), hop, n)


def stft_filter(x: np.ndarray, sr: int, gain_tf: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> np.ndarray:
    """Time-varying zero-phase filter (n,) -> (n,): each 50 %-overlapped sqrt-Hann frame is
    multiplied in the frequency domain by ``gain_tf(times_s (T,), freqs_hz (F,)) -> (T, F)``."""
    frame, hop = stft_sizes(sr)
    n = x.size
    count = n // hop + 2
    padded = np.zeros((count + 1) * hop)
    padded[hop : hop + n] = x
    frames = np.lib.stride_tricks.sliding_window_view(padded, frame)[::hop][:count] * _sqrt_hann(frame)
    times = (np.arange(count) - 1) * hop / sr + frame / (2.0 * sr)
    spec = np.fft.rfft(frames, axis=1) * gain_tf(times, np.fft.rfftfreq(frame, 1.0 / sr))
    return _overlap_add(np.fft.irfft(spec, frame, axis=1) * _sqrt_hann(frame), hop, n)


# ------------------------------------------------------------------------------ oscillators


def phase_cycles(rng: np.random.Generator, freq_hz: float | np.ndarray, n: int, sr: int) -> np.ndarray:
    """Phase in cycles (n,) of an oscillator with frequency ``freq_hz`` (scalar or (n,)) and a
    random start phase."""
    start = rng.uniform()
    if np.ndim(freq_hz) == 0:
        return start + float(freq_hz) * np.arange(n) / sr
    return start + np.cumsum(freq_hz) / sr


def sine(rng: np.random.Generator, freq_hz: float | np.ndarray, n: int, sr: int) -> np.ndarray:
    """Unit sine (n,) of frequency ``freq_hz`` (scalar or (n,)) with a random start phase."""
    return np.sin(2.0 * np.pi * phase_cycles(rng, freq_hz, n, sr))


def wavetable(amps: np.ndarray, phases: np.ndarray | None = None) -> np.ndarray:
    """One period (TABLE_SIZE + 1,) (last sample repeats the first) of
    ``sum_k amps[k] cos(2 pi (k + 1) t + phases[k])``; harmonics K < TABLE_SIZE // 2."""
    k = len(amps)
    if k >= TABLE_SIZE // 2:
        raise ValueError(f"wavetable holds fewer than {TABLE_SIZE // 2} harmonics, got {k}")
    spec = np.zeros(TABLE_SIZE // 2 + 1, dtype=np.complex128)
    spec[1 : k + 1] = np.asarray(amps) * np.exp(1j * (np.zeros(k) if phases is None else np.asarray(phases)))
    table = np.fft.irfft(spec, TABLE_SIZE) * (TABLE_SIZE / 2.0)
    return np.append(table, table[0])


def table_read(table: np.ndarray, cycles: np.ndarray) -> np.ndarray:
    """Read a :func:`wavetable` at phases ``cycles`` (n,) with linear interpolation -> (n,)."""
    pos = (cycles % 1.0) * (table.size - 1)
    index = pos.astype(np.int64)
    frac = pos - index
    return table[index] * (1.0 - frac) + table[index + 1] * frac


def harmonic_count(f0_hz: float, sr: int, limit: int = 64, headroom: float = 1.06) -> int:
    """Harmonics of ``f0_hz`` (raised by ``headroom`` for vibrato) that stay below
    :func:`max_freq`, at least 1 and at most ``limit``."""
    return int(np.clip(max_freq(sr) // (f0_hz * headroom), 1, limit))


# ---------------------------------------------------------------------------- decaying modes


def damped_modes(
    n: int,
    sr: int,
    freqs_hz: np.ndarray,
    t60_s: np.ndarray,
    amps: np.ndarray,
    phases: np.ndarray,
    block: int = 512,
) -> np.ndarray:
    """Sum of decaying sinusoids (n,): ``sum_k amps_k 1000^(-t / t60_k) cos(2 pi f_k t + phases_k)``.

    Modes above :func:`max_freq` are dropped. Computed block-wise: mode k at sample
    ``b block + j`` is ``c_k^b w_k[j]`` with complex ``c``, ``w``, so the sum over modes is one
    real product of (blocks, 2K) by (2K, block), done by ``einsum`` (single-threaded, no BLAS,
    so the result does not depend on thread counts).
    """
    freqs_hz, t60_s, amps, phases = (np.asarray(a, dtype=np.float64) for a in (freqs_hz, t60_s, amps, phases))
    keep = (freqs_hz < max_freq(sr)) & (amps != 0)
    if not np.any(keep):
        return np.zeros(n)
    rate = (-LN_1000 / t60_s[keep] + 2j * np.pi * freqs_hz[keep]) / sr  # (K,) per-sample exponent
    length = min(block, n)
    blocks = -(-n // length)
    within = np.exp(np.outer(rate, np.arange(length)))  # (K, L)
    exponent = np.outer(np.arange(blocks) * length, rate)  # (B, K)
    faded = exponent.real <= -60.0
    exponent.real = np.maximum(exponent.real, -60.0)
    across = (amps[keep] * np.exp(1j * phases[keep])) * np.exp(exponent)
    across[faded] = 0.0
    left = np.concatenate([across.real, -across.imag], axis=1)
    right = np.concatenate([within.real, within.imag], axis=0)
    return np.einsum("bk,kl->bl", left, right, optimize=False).ravel()[:n]


def karplus_strong(
    excitation: np.ndarray, f0_hz: float, n: int, sr: int, t60_s: float, brightness: float
) -> np.ndarray:
    """Plucked string (n,): Karplus-Strong loop ``y[t] = x[t] + g (b y[t-P] + (1-b) y[t-P-1])``.

    The loop delay is ``P + 1 - b`` samples (P integer), so the pitch is ``sr / (P + 1 - b)``,
    close to ``f0_hz``; ``brightness`` b in [0.5, 1) sets the loop low-pass (0.5: dull,
    near 1: bright); ``g`` gives the fundamental a decay time ``t60_s``. ``excitation`` (m,)
    is played into the loop from t = 0. Vectorised over one period block at a time; the
    loop stops once a block has decayed below 1e-5 of the peak.
    """
    b = float(np.clip(brightness, 0.5, 0.999))
    period = max(2, int(round(sr / f0_hz - (1.0 - b))))
    g = 1000.0 ** (-period / (t60_s * sr))
    taps = (g * b, g * (1.0 - b))
    z = np.zeros(n + 1)  # z[t + 1] = y[t]; z[0] = 0 stands for y[-1]
    m = min(n, excitation.size)
    z[1 : m + 1] = excitation[:m]
    peak = float(np.max(np.abs(excitation[:m]))) if m else 0.0
    start = period
    while start < n:
        stop = min(n, start + period)
        previous = z[start + 1 - period : stop + 1 - period]  # y[t - P]
        before = z[start - period : stop - period]  # y[t - P - 1]
        z[start + 1 : stop + 1] += taps[0] * previous + taps[1] * before
        if start > m and float(np.max(np.abs(z[start + 1 : stop + 1]))) < 1e-5 * peak:
            break
        start = stop
    return z[1:]


# ------------------------------------------------------------------------------- envelopes


def fade(n: int, sr: int, fade_s: float = 0.01) -> np.ndarray:
    """Raised-cosine fade-in/out envelope (n,), ``fade_s`` long at each end (at most n/2)."""
    k = min(int(fade_s * sr), n // 2)
    env = np.ones(n)
    if k > 0:
        ramp = 0.5 - 0.5 * np.cos(np.pi * (np.arange(k) + 0.5) / k)
        env[:k] = ramp
        env[n - k :] = ramp[::-1]
    return env


def decay(n: int, sr: int, t60_s: float) -> np.ndarray:
    """Exponential decay (n,) from 1, down 60 dB after ``t60_s``."""
    return np.exp(-LN_1000 * np.arange(n) / (t60_s * sr))


def adsr(n: int, sr: int, attack_s: float, decay_s: float, sustain: float, release_s: float, hold: int) -> np.ndarray:
    """Attack-decay-sustain-release envelope (n,): linear attack to 1, exponential decay
    (time constant ``decay_s``) towards ``sustain``, held until sample ``hold``, then a
    raised-cosine release of ``release_s`` and silence."""
    env = np.full(n, float(sustain))
    a = min(n, max(1, int(attack_s * sr)))
    env[:a] = np.arange(1, a + 1) / a
    d = min(n - a, int(5.0 * decay_s * sr))
    if d > 0:
        env[a : a + d] = sustain + (1.0 - sustain) * np.exp(-np.arange(d) / max(decay_s * sr, 1.0))
    hold = int(np.clip(hold, 0, n))
    r = min(n - hold, max(1, int(release_s * sr)))
    env[hold : hold + r] *= 0.5 + 0.5 * np.cos(np.pi * np.arange(r) / max(1, int(release_s * sr)))
    env[hold + r :] = 0.0
    return env


def smooth_curve(rng: np.random.Generator, n: int, sr: float, rate_hz: float) -> np.ndarray:
    """Slowly varying random curve (n,): standard normal values every 1 / ``rate_hz`` seconds,
    joined by raised-cosine interpolation."""
    step = max(1, int(sr / rate_hz))
    points = rng.standard_normal(n // step + 2)
    ramp = 0.5 - 0.5 * np.cos(np.pi * np.arange(step) / step)
    segments = points[:-1, None] + np.diff(points)[:, None] * ramp[None, :]
    return segments.ravel()[:n]


def add_at(out: np.ndarray, start: int, event: np.ndarray) -> None:
    """Add ``event`` into ``out`` at sample ``start`` (negative starts crop the event's head),
    cropped at the end (in place on ``out``)."""
    skip = max(0, -start)
    start = max(0, start)
    stop = min(out.size, start + event.size - skip)
    if stop > start:
        out[start:stop] += event[skip : skip + stop - start]


def poisson_times(rng: np.random.Generator, n: int, sr: int, rate: np.ndarray | float) -> np.ndarray:
    """Sample indices of a Poisson process over n samples with intensity ``rate`` events/s
    (scalar or (n,)), drawn by thinning; sorted."""
    peak = float(np.max(rate))
    count = rng.poisson(peak * n / sr)
    times = np.sort(rng.integers(0, n, size=count))
    if np.ndim(rate) == 0:
        return times
    return times[rng.random(count) * peak < np.asarray(rate)[times]]


# ---------------------------------------------------------------------------------- rooms


def room_response(rng: np.random.Generator, sr: int, rt60_s: float, wet: float) -> np.ndarray:
    """Synthetic room impulse response (m,): the direct path (amplitude sqrt(1 - wet)), then,
    after a 2-20 ms pre-delay, 2-6 early reflections and a Gaussian-noise tail of energy
    ``wet`` that decays 60 dB in ``rt60_s`` below a 1.5-5 kHz crossover and 1.5-3.5x faster
    above it (air and wall absorption); m = pre-delay + rt60_s * sr."""
    pre = num_samples(rng.uniform(0.002, 0.02), sr)
    tail_n = num_samples(rt60_s, sr)
    white = rng.standard_normal(tail_n)
    low = spectral_filter(white, sr, lowpass_gain(min(rng.uniform(1500.0, 5000.0), max_freq(sr)), order=2))
    tail = low * decay(tail_n, sr, rt60_s) + (white - low) * decay(tail_n, sr, rt60_s / rng.uniform(1.5, 3.5))
    energy = np.sqrt(np.sum(tail**2))
    early = rng.integers(0, max(1, min(tail_n, num_samples(0.04, sr))), size=int(rng.integers(2, 7)))
    tail[early] += rng.choice([-1.0, 1.0], size=early.size) * rng.uniform(0.2, 0.6, size=early.size) * energy
    h = np.zeros(pre + tail_n)
    h[0] = np.sqrt(1.0 - wet)
    h[pre:] = np.sqrt(wet) * tail / np.sqrt(np.sum(tail**2))
    return h
