"""Reading source wav files with validation, and the lossless audio codec of the shards.

Shards store 16-bit samples either as FLAC (default: about half the size) or as raw
little-endian int16 PCM; both give back the source samples bit for bit.
"""

from __future__ import annotations

import io
import os

import numpy as np
import soundfile as sf

from .layout import Problem

AUDIO_FORMATS = ("flac", "pcm16")


class BadAudio(Exception):
    """A source file that cannot be used; carries the :class:`Problem`."""

    def __init__(self, kind: str, reason: str):
        super().__init__(reason)
        self.problem = Problem(kind, reason)


def read_source(path: str, sample_rate: int) -> np.ndarray:
    """Read a mono 16-bit file: ``path -> (T,) int16``; raises :class:`BadAudio`."""
    if not os.path.isfile(path):
        raise BadAudio("missing_file", f"{path}: missing file")
    try:
        with sf.SoundFile(path) as f:
            info_rate, channels, frames, subtype = f.samplerate, f.channels, f.frames, f.subtype
            if channels != 1:
                raise BadAudio("multi_channel", f"{path}: {channels} channels, expected mono")
            if info_rate != sample_rate:
                raise BadAudio(
                    "wrong_sample_rate", f"{path}: sample rate {info_rate} Hz, expected {sample_rate} Hz"
                )
            if subtype != "PCM_16":
                raise BadAudio("unreadable_audio", f"{path}: sample format {subtype}, expected 16-bit PCM")
            samples = f.read(dtype="int16")
    except BadAudio:
        raise
    except (sf.LibsndfileError, RuntimeError, ValueError) as e:
        raise BadAudio("unreadable_audio", f"{path}: unreadable or corrupt audio ({_short(e)})") from None
    if frames == 0 or samples.size == 0:
        raise BadAudio("empty_audio", f"{path}: no samples")
    if samples.shape[0] != frames:
        raise BadAudio(
            "unreadable_audio", f"{path}: corrupt audio (header says {frames} samples, read {samples.shape[0]})"
        )
    return samples


def encode(samples: np.ndarray, sample_rate: int, audio_format: str) -> bytes:
    """``(T,) int16 -> bytes`` in one of :data:`AUDIO_FORMATS`."""
    if audio_format == "pcm16":
        return np.ascontiguousarray(samples, dtype="<i2").tobytes()
    if audio_format == "flac":
        buf = io.BytesIO()
        sf.write(buf, samples, sample_rate, format="FLAC", subtype="PCM_16")
        return buf.getvalue()
    raise ValueError(f"unknown audio format {audio_format!r}; expected one of {AUDIO_FORMATS}")


def decode(data: bytes, audio_format: str) -> np.ndarray:
    """``bytes -> (T,) int16``, the inverse of :func:`encode`."""
    if audio_format == "pcm16":
        return np.frombuffer(data, dtype="<i2").astype(np.int16)
    if audio_format == "flac":
        samples, _ = sf.read(io.BytesIO(data), dtype="int16")
        return samples
    raise ValueError(f"unknown audio format {audio_format!r}; expected one of {AUDIO_FORMATS}")


def to_float(samples: np.ndarray) -> np.ndarray:
    """``(T,) int16 -> (T,) float32`` in [-1, 1) (one pass: 1/32768 is exact in float32)."""
    return np.multiply(samples, np.float32(1 / 32768), dtype=np.float32)


def _short(error: Exception) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
