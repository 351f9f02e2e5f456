"""Rendering one planned clip: events of its true classes in a synthetic room over a
background, and for noisy clips the degraded channel.

``render_clip`` does one FFT convolution per clip: the events' sum times the room's
response plus the background (drawn directly as a spectrum), times the channel's low-pass.
"""

from __future__ import annotations

import numpy as np

from . import signals as s
from .plan import AUDIO, ClipPlan, DemoConfig, clip_rng
from .sounds import CLASSES


def _event(rng: np.random.Generator, name: str, n: int, sr: int) -> tuple[int, np.ndarray]:
    """One sound event of class ``name`` covering a random 25-100 % of an n-sample clip
    (at least 0.2 s when the clip allows). Returns (onset sample, unit-RMS faded event (m,))."""
    m = min(n, max(s.num_samples(0.2, sr), int(rng.uniform(0.25, 1.0) * n)))
    onset = int(rng.integers(0, n - m + 1))
    x = np.asarray(CLASSES[name](rng, m / sr, sr), dtype=np.float64)
    if x.shape != (m,):
        raise RuntimeError(f"generator {name} returned shape {x.shape}, expected ({m},)")
    return onset, s.unit_rms(x * s.fade(m, sr))


def _background_gain(rng: np.random.Generator, beta: tuple[float, float], room_tone: bool) -> s.Gain:
    """Background spectrum: 1/f^beta noise (beta ~ U(``beta``)), plus with ``room_tone`` a
    ventilation band (centre 150-800 Hz, 1.5-3 octaves, +3 to +12 dB)."""
    colour = s.coloured_gain(rng.uniform(*beta))
    if not room_tone:
        return colour
    band = s.band_gain(rng.uniform(150.0, 800.0), rng.uniform(1.5, 3.0))
    level = float(s.db(rng.uniform(3.0, 12.0)))
    return lambda f: colour(f) / colour(np.array([1000.0]))[0] + level * band(f)


def _hum(rng: np.random.Generator, n: int, sr: int, channel: s.Gain | None) -> np.ndarray:
    """Mains hum (n,): 50 or 60 Hz and 5 harmonics at random levels, 20-35 dB below the
    background noise, scaled by the channel's gain at each frequency."""
    mains = 50.0 if rng.random() < 0.5 else 60.0
    freqs = mains * np.arange(1, 7)
    amps = float(s.db(rng.uniform(-35.0, -20.0))) * np.sqrt(2.0) * rng.uniform(0.0, 1.0, 6) ** 2
    if channel is not None:
        amps = amps * channel(freqs)
    phases = rng.uniform(0.0, 2.0 * np.pi, freqs.size)
    return s.damped_modes(n, sr, freqs, np.full(freqs.size, np.inf), amps, phases)


def render_clip(plan: ClipPlan, config: DemoConfig) -> np.ndarray:
    """Audio of one planned clip: (num_samples,) float64, peak in ``config.peak``.

    One event per *true* label (random span and onset, unit RMS times a random SNR against
    the unit-RMS background), all in one synthetic room (RT60 and wet share drawn from the
    config), over coloured background noise with (sometimes) a room tone. Noisy clips pass
    through a 4th-order low-pass with a random cut-off and are sometimes over-driven by
    1.5-4x and hard-clipped. Finally the clip is scaled to a random peak.
    """
    sr, n = config.sample_rate, plan.num_samples
    rng = clip_rng(config, plan.source, plan.index, AUDIO)
    noisy = plan.source == "noisy"
    snr_db = config.noisy_snr_db if noisy else config.snr_db
    dry = np.zeros(n)
    for name in plan.true_labels:
        onset, event = _event(rng, name, n, sr)
        s.add_at(dry, onset, event * float(s.db(rng.uniform(*snr_db))))
    room = s.room_response(rng, sr, rng.uniform(*config.rt60_s), rng.uniform(*config.wet))
    size = s.fast_len(n + room.size - 1)
    room_tone = rng.random() < config.room_tone_prob
    spec = np.fft.rfft(dry, size) * np.fft.rfft(room, size)
    spec += s.noise_spectrum(rng, size, sr, _background_gain(rng, config.background_beta, room_tone))
    channel = s.lowpass_gain(rng.uniform(*config.noisy_lowpass_hz)) if noisy else None
    if channel is not None:
        spec *= channel(np.fft.rfftfreq(size, 1.0 / sr))
    x = np.fft.irfft(spec, size)[:n]
    if room_tone:
        x += _hum(rng, n, sr, channel)
    if noisy and rng.random() < config.noisy_clip_prob:
        x = np.clip(x / np.max(np.abs(x)) * rng.uniform(1.5, 4.0), -1.0, 1.0)
    return x * (rng.uniform(*config.peak) / np.max(np.abs(x)))
