"""Log-mel features against an independent computation, and the normalisation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ray_tagger.batching import collate
from ray_tagger.features import BatchFeatures, FeatureConfig, LogMel, pad_waves
from ray_tagger.normalization import NormStats, StatsAccumulator

SR = 44100


def htk_mel_matrix(n_fft: int, n_mels: int, f_min: float, f_max: float, sr: int) -> np.ndarray:
    """``(n_fft//2+1, n_mels)`` triangular filters equally spaced on the HTK mel scale."""
    mel = lambda f: 2595.0 * np.log10(1.0 + f / 700.0)
    hz = lambda m: 700.0 * (10.0 ** (m / 2595.0) - 1.0)
    edges = hz(np.linspace(mel(f_min), mel(f_max), n_mels + 2))
    freqs = np.arange(n_fft // 2 + 1) * sr / n_fft
    fb = np.zeros((len(freqs), n_mels))
    for m in range(n_mels):
        left, centre, right = edges[m], edges[m + 1], edges[m + 2]
        rising = (freqs - left) / (centre - left)
        falling = (right - freqs) / (right - centre)
        fb[:, m] = np.maximum(0.0, np.minimum(rising, falling))
    return fb


def reference_logmel(wave: np.ndarray) -> np.ndarray:
    """``(T,) -> (128, 1 + T // 882)`` with torch.stft in float64 and the HTK matrix above."""
    window = torch.signal.windows.blackman(1764, sym=False, dtype=torch.float64)
    spec = torch.stft(
        torch.from_numpy(wave.astype(np.float64)), n_fft=2048, hop_length=882, win_length=1764, window=window,
        center=True, pad_mode="constant", return_complex=True,
    )
    power = spec.abs().numpy() ** 2
    mel = htk_mel_matrix(2048, 128, 50.0, 16000.0, SR).T @ power
    return np.log(np.maximum(mel, 1e-18))


def test_one_second_gives_51_frames():
    assert FeatureConfig().num_frames(SR) == 51
    out, frames = LogMel()(torch.zeros(1, SR) + 0.1, torch.tensor([SR]))
    assert out.shape == (1, 1, 128, 51) and frames.tolist() == [51]


def test_logmel_equals_an_independent_computation():
    rng = np.random.default_rng(0)
    t = np.arange(int(1.7 * SR)) / SR
    wave = 0.3 * rng.standard_normal(t.size) + 0.2 * np.sin(2 * np.pi * 440 * t) + 0.1 * np.sin(2 * np.pi * 7000 * t)
    ours = LogMel().clip(torch.from_numpy(wave.astype(np.float32))).double().numpy()
    ref = reference_logmel(wave.astype(np.float32))
    assert ours.shape == ref.shape == (128, 1 + wave.size // 882)
    # a log difference of 1e-4 is a relative error of 1e-4 in the mel energies
    assert np.max(np.abs(ours - ref)) < 1e-4


def test_batched_with_lengths_matches_each_clip_alone():
    rng = np.random.default_rng(1)
    lengths = [SR // 3, SR, 2 * SR + 17]
    waves = [rng.uniform(-0.5, 0.5, n).astype(np.float32) for n in lengths]
    batch = torch.zeros(3, max(lengths))
    for b, w in enumerate(waves):
        batch[b, : len(w)] = torch.from_numpy(w)
    logmel = LogMel()
    out, frames = logmel(batch, torch.tensor(lengths))
    for b, w in enumerate(waves):
        alone = logmel.clip(torch.from_numpy(w))
        assert frames[b] == alone.shape[1] == 1 + len(w) // 882
        torch.testing.assert_close(out[b, 0, :, : frames[b]], alone, rtol=1e-4, atol=1e-4)


def test_batch_features_on_the_worker_equal_the_pipelines_features_collated():
    """``stream.features_on='trainer'``: the Train worker's batched features of the padded
    waveforms are what the pipeline's per-clip features give after ``collate``."""
    rng = np.random.default_rng(3)
    config = FeatureConfig(n_mels=64)
    stats = NormStats(rng.normal(-8.0, 2.0, 64), 3.5, 1000)
    waves = [rng.uniform(-0.5, 0.5, n).astype(np.float32) for n in (SR // 3, 2 * SR + 17, SR, 4 * SR)]
    pipeline = [stats.normalize(LogMel(config).clip(torch.from_numpy(w))).numpy() for w in waves]
    want, want_frames, _ = collate(pipeline, np.zeros((4, 2), np.float32))
    x, frames = BatchFeatures(config, stats)(*pad_waves(waves))
    assert frames.tolist() == want_frames.tolist() == [1 + len(w) // 882 for w in waves]
    assert x.shape == want.shape == (4, 1, 64, 1 + 4 * SR // 882)
    torch.testing.assert_close(x, want, rtol=1e-4, atol=1e-4)
    assert torch.all(x[0, 0, :, frames[0]:] == 0)  # past an example's frames: zeros, as collate pads


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_gpu_equals_cpu():
    wave = torch.from_numpy(np.random.default_rng(2).uniform(-0.5, 0.5, (2, SR)).astype(np.float32))
    cpu, _ = LogMel()(wave)
    gpu, _ = LogMel().cuda()(wave.cuda())
    torch.testing.assert_close(gpu.cpu(), cpu, rtol=1e-3, atol=1e-3)


def test_normalisation_subtracts_band_means_and_divides_by_one_scalar():
    rng = np.random.default_rng(3)
    clips = [rng.normal(loc=np.arange(4)[:, None], scale=2.0, size=(4, n)) for n in (10, 25, 7)]
    acc = StatsAccumulator(4)
    for c in clips:
        acc.update(c)
    stats = acc.finalize()
    x = np.concatenate(clips, axis=1)
    np.testing.assert_allclose(stats.mean, x.mean(axis=1), rtol=1e-12)
    np.testing.assert_allclose(stats.std, np.sqrt(np.mean((x - x.mean(axis=1, keepdims=True)) ** 2)), rtol=1e-12)
    assert stats.frames == 42
    y = stats.normalize(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(y.mean(axis=1), 0.0, atol=1e-12)
    np.testing.assert_allclose(y.std(), 1.0, rtol=1e-12)
    assert NormStats.from_json(stats.to_json()).std == stats.std


@pytest.mark.parametrize("n_mels", [128, 64])
def test_mel_power_is_torchaudios_mel_spectrogram(n_mels):
    """re² + im² of the complex STFT instead of torchaudio's |x|² (abs, then square): the same
    values to float rounding."""
    import torchaudio

    c = FeatureConfig(n_mels=n_mels)
    theirs = torchaudio.transforms.MelSpectrogram(
        sample_rate=c.sample_rate, n_fft=c.n_fft, win_length=c.frame_length, hop_length=c.hop_length, f_min=c.f_min,
        f_max=c.f_max, n_mels=c.n_mels, window_fn=torch.blackman_window, power=2.0, center=True, pad_mode="constant",
        norm=None, mel_scale="htk")
    waves = torch.from_numpy(np.random.default_rng(1).normal(0, 0.1, (3, 44100)).astype(np.float32))
    ours = LogMel(c).mel(waves)
    assert ours.shape == (3, n_mels, 51)
    torch.testing.assert_close(ours, theirs(waves), rtol=1e-5, atol=1e-9)
