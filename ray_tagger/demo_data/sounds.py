"""The vocabulary of the demo data set: class name -> generator, in vocabulary order."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType

import numpy as np

from . import environment as env
from . import instruments as ins
from . import percussion as per

ClassGenerator = Callable[[np.random.Generator, float, int], np.ndarray]
"""``f(rng, duration_s, sr) -> (round(duration_s * sr),)`` float64 waveform, unit RMS."""

CLASSES: Mapping[str, ClassGenerator] = MappingProxyType(
    {
        "acoustic_guitar": ins.acoustic_guitar,
        "bass_guitar": ins.bass_guitar,
        "piano": ins.piano,
        "violin": ins.violin,
        "cello": ins.cello,
        "flute": ins.flute,
        "clarinet": ins.clarinet,
        "trumpet": ins.trumpet,
        "organ": ins.organ,
        "marimba": ins.marimba,
        "xylophone": ins.xylophone,
        "church_bell": ins.church_bell,
        "wind_chimes": ins.wind_chimes,
        "kick_drum": per.kick_drum,
        "snare_drum": per.snare_drum,
        "tom_drum": per.tom_drum,
        "hi_hat": per.hi_hat,
        "shaker": per.shaker,
        "hand_clap": per.hand_clap,
        "rain": env.rain,
        "stream": env.stream,
        "wind": env.wind,
        "fire_crackle": env.fire_crackle,
        "engine": env.engine,
        "footsteps": env.footsteps,
        "dog_bark": env.dog_bark,
        "bird_song": env.bird_song,
        "speech_babble": env.speech_babble,
    }
)
"""Synthetic sound classes, in vocabulary order: name -> generator ``f(rng, duration_s, sr)``."""

CONFUSABLE: tuple[tuple[str, str], ...] = (
    ("violin", "cello"),
    ("acoustic_guitar", "bass_guitar"),
    ("marimba", "xylophone"),
    ("church_bell", "wind_chimes"),
    ("hi_hat", "shaker"),
    ("kick_drum", "tom_drum"),
    ("rain", "stream"),
    ("flute", "clarinet"),
)
"""Pairs made deliberately similar (overlapping registers, bands or rhythms)."""
