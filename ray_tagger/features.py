"""Log-mel features of report §1.1, computed with torchaudio.

A clip of T samples at 44.1 kHz gives ``1 + T // 882`` frames (the STFT is centred), so one
second of audio (44,100 samples) gives 51 frames.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torchaudio


@dataclass(frozen=True)
class FeatureConfig:
    """Log-mel parameters; the defaults are the report's (§1.1)."""

    sample_rate: int = 44100
    """Sample rate of the audio in Hz; the report does not resample."""
    frame_length: int = 1764
    """STFT window length in samples (40 ms)."""
    hop_length: int = 882
    """STFT hop in samples (20 ms)."""
    n_fft: int = 2048
    """FFT size; the 1764-sample Blackman window is zero-padded to it."""
    n_mels: int = 128
    """Number of mel bands (HTK scale)."""
    f_min: float = 50.0
    """Lowest mel band edge in Hz."""
    f_max: float = 16000.0
    """Highest mel band edge in Hz."""
    log_floor: float = 1e-18
    """Power floor before the natural log."""

    def num_frames(self, num_samples: int) -> int:
        """Frames produced for a clip of ``num_samples`` samples (centred STFT)."""
        return 1 + num_samples // self.hop_length


class MelPower(torch.nn.Module):
    """Mel-band power: ``(B, T) -> (B, F, N)``, torchaudio's STFT and mel filterbank (HTK, no
    norm), the power taken as ``re² + im²`` of the complex STFT. The same values as
    ``torchaudio.transforms.MelSpectrogram(power=2)`` (to float rounding), which computes
    ``|x|²`` through ``abs``: a square root and its square, a third of a clip's feature cost."""

    def __init__(self, config: FeatureConfig):
        super().__init__()
        self.spectrogram = torchaudio.transforms.Spectrogram(
            n_fft=config.n_fft,
            win_length=config.frame_length,
            hop_length=config.hop_length,
            window_fn=torch.blackman_window,
            power=None,
            center=True,
            pad_mode="constant",
        )
        self.mel_scale = torchaudio.transforms.MelScale(
            n_mels=config.n_mels,
            sample_rate=config.sample_rate,
            f_min=config.f_min,
            f_max=config.f_max,
            n_stft=config.n_fft // 2 + 1,
            norm=None,
            mel_scale="htk",
        )

    def forward(self, waves: torch.Tensor) -> torch.Tensor:
        spec = self.spectrogram(waves)
        return self.mel_scale(spec.real.square() + spec.imag.square())


class LogMel(torch.nn.Module):
    """Batched log-mel energies with per-example lengths.

    ``(B, T) float waveforms, (B,) sample lengths -> (B, 1, F, N) log-mel, (B,) frame lengths``
    with ``N = 1 + T // hop`` and ``F = n_mels``. Frames past an example's length see only
    zero padding; their values are the log floor and must be ignored through the lengths.
    """

    def __init__(self, config: FeatureConfig = FeatureConfig()):
        super().__init__()
        self.config = config
        self.mel = MelPower(config)

    def forward(
        self, waves: torch.Tensor, lengths: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, T), (B,) -> (B, 1, F, N), (B,)``; lengths default to T for every example."""
        if waves.dim() != 2:
            raise ValueError(f"expected waveforms of shape (B, T), got {tuple(waves.shape)}")
        if lengths is None:
            lengths = torch.full((waves.shape[0],), waves.shape[1], device=waves.device)
        power = self.mel(waves.float())
        logmel = torch.log(power.clamp_min(self.config.log_floor)).unsqueeze(1)
        frames = 1 + torch.div(lengths, self.config.hop_length, rounding_mode="floor")
        return logmel, frames.to(torch.long)

    def clip(self, wave: torch.Tensor) -> torch.Tensor:
        """One clip: ``(T,) -> (F, N)``."""
        return self.forward(wave.unsqueeze(0))[0][0, 0]


def normalized_clips(logmel: LogMel, stats, waves: list[np.ndarray]) -> list[np.ndarray]:
    """``B waves (T_b,) -> B arrays (F, N_b)`` float32: log-mel of each clip, normalised with ``stats``
    (a :class:`~ray_tagger.normalization.NormStats`), without autograd."""
    with torch.no_grad():
        return [stats.normalize(logmel.clip(torch.from_numpy(np.ascontiguousarray(w, np.float32)))).numpy() for w in waves]


def pad_waves(waves: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """``B waves (T_b,) -> (B, T_max)`` float32 zero-padded, ``(B,)`` sample lengths."""
    lengths = torch.tensor([len(w) for w in waves], dtype=torch.long)
    out = torch.zeros(len(waves), int(lengths.max()) if len(waves) else 0, dtype=torch.float32)
    for b, w in enumerate(waves):
        out[b, : len(w)] = torch.as_tensor(np.asarray(w, np.float32))
    return out, lengths


class BatchFeatures(torch.nn.Module):
    """Normalised log-mel of a padded batch at once, on whatever device the module and the batch
    are on (the Train worker's, with ``stream.features_on='trainer'``).

    ``(B, T) waveforms, (B,) sample lengths -> (B, 1, F, N) features, (B,) frame lengths`` with
    ``N = 1 + T // hop``: each example's frames equal :func:`normalized_clips` of it alone (to
    float rounding), and frames past its length are 0, as :func:`~ray_tagger.batching.collate`
    pads them.
    """

    def __init__(self, config: FeatureConfig, stats):
        super().__init__()
        self.logmel = LogMel(config)
        self.stats = stats

    def forward(self, waves: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.no_grad():
            logmel, frames = self.logmel(waves, lengths)
            x = self.stats.normalize(logmel)
            valid = torch.arange(x.shape[-1], device=x.device)[None, :] < frames.to(x.device)[:, None]
            return x * valid[:, None, None, :], frames
