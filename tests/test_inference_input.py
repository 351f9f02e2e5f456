"""Bad and unusual input at inference (``tag`` in this process, ``predict`` through Ray Data).

A folder with a corrupt and an empty file among good ones: the good ones are scored, each bad
one gets one line, and the exit status is non-zero only when nothing could be scored. Any
sample rate and channel count is accepted, and the formats soundfile reads (FLAC, Ogg Vorbis,
MP3) score like the WAV they were made from. The model is a tiny CRNN with random weights: these
tests are about the input path, not about what it learned.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import torch

from ray_tagger.cli import main
from ray_tagger.infer import EnsembleScorer, read_audio
from tests.datasets import random_model_run

CLASSES = ["bark", "bell", "chime", "drum"]
RATE = 44100


def _tone(seconds: float = 1.5, rate: int = RATE, freq: float = 660.0) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * freq * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t))).astype(np.float32)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "run"
    random_model_run(path, CLASSES)
    return path


@pytest.fixture()
def mixed_folder(tmp_path):
    """good1.wav, good2.flac, corrupt.wav (a header-less byte soup), empty.wav (0 bytes)."""
    folder = tmp_path / "audio"
    folder.mkdir()
    sf.write(folder / "good1.wav", _tone(), RATE)
    sf.write(folder / "good2.flac", _tone(freq=220.0), RATE)
    (folder / "corrupt.wav").write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    (folder / "empty.wav").write_bytes(b"")
    return folder


def _env() -> dict:
    return {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}


def test_tag_scores_the_good_files_and_gives_one_line_per_bad_one(run, mixed_folder):
    files = sorted(mixed_folder.iterdir())
    done = subprocess.run([sys.executable, "-m", "ray_tagger", "tag", str(run), *map(str, files), "--top", "2"],
                          env=_env(), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    out, err = done.stdout, done.stderr
    tagged = [line.split(":")[0] for line in out.strip().splitlines()]
    assert sorted(tagged) == [str(mixed_folder / "good1.wav"), str(mixed_folder / "good2.flac")]
    for bad in ("corrupt.wav", "empty.wav"):
        assert sum(bad in line for line in err.splitlines()) == 1, err


def test_tag_with_nothing_readable_fails_with_one_line(run, mixed_folder, capsys):
    assert main(["tag", str(run), str(mixed_folder / "corrupt.wav"), str(mixed_folder / "empty.wav")]) == 1
    err = capsys.readouterr().err
    assert "nothing could be scored" in err.strip().splitlines()[-1]


def test_predict_writes_rows_for_the_good_files_only_and_names_each_bad_one(run, mixed_folder, tmp_path):
    out = tmp_path / "sub.csv"
    done = subprocess.run([sys.executable, "-m", "ray_tagger", "predict", str(run), str(mixed_folder), "--out", str(out),
                           "--num-cpus", "2"], env=_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    with open(out, newline="") as f:
        rows = list(csv.DictReader(f))
    assert sorted(r["fname"] for r in rows) == ["good1.wav", "good2.flac"]
    assert all(0.0 <= float(r[c]) <= 1.0 for r in rows for c in CLASSES)
    skipped = [line for line in done.stderr.splitlines() if "skipped (not scored)" in line]
    assert len(skipped) == 2 and any("corrupt.wav" in s for s in skipped) and any("empty.wav" in s for s in skipped)


def test_predict_with_nothing_readable_exits_non_zero(run, mixed_folder, tmp_path):
    (mixed_folder / "good1.wav").unlink()
    (mixed_folder / "good2.flac").unlink()
    out = tmp_path / "sub.csv"
    done = subprocess.run([sys.executable, "-m", "ray_tagger", "predict", str(run), str(mixed_folder), "--out", str(out),
                           "--num-cpus", "2"], env=_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 1
    assert "nothing could be scored: all 2 inputs are unreadable" in done.stderr
    assert not out.exists()


def test_any_rate_and_channel_count_is_downmixed_and_resampled(tmp_path):
    mono = _tone()
    sf.write(tmp_path / "mono.wav", mono, RATE)
    sf.write(tmp_path / "stereo.wav", np.stack([mono, mono], axis=1), RATE)  # equal channels: the mean is the mono
    assert np.array_equal(read_audio(tmp_path / "stereo.wav", RATE), read_audio(tmp_path / "mono.wav", RATE))
    # the same tone sampled at 48 kHz with 3 channels, resampled to 44.1 kHz: same length, same wave
    t48 = _tone(rate=48000)
    sf.write(tmp_path / "three48.wav", np.stack([t48, t48, t48], axis=1), 48000)
    wave = read_audio(tmp_path / "three48.wav", RATE)
    assert abs(len(wave) - len(mono)) <= 1
    n = min(len(wave), len(mono))
    inner = slice(1000, n - 1000)  # away from the resampler's edges
    assert np.max(np.abs(wave[:n][inner] - mono[:n][inner])) < 0.01


@pytest.mark.parametrize("fmt,subtype,suffix,tol", [("FLAC", "PCM_16", "flac", 1e-3), ("OGG", "VORBIS", "ogg", 0.05),
                                                    ("MP3", "MPEG_LAYER_III", "mp3", 0.05)])
def test_flac_ogg_and_mp3_score_like_the_wav(run, tmp_path, fmt, subtype, suffix, tol):
    torch.manual_seed(0)
    wave = _tone()
    sf.write(tmp_path / "ref.wav", wave, RATE, subtype="FLOAT")
    sf.write(tmp_path / f"x.{suffix}", wave, RATE, format=fmt, subtype=subtype)
    scorer = EnsembleScorer([str(run / "model.pt")], "files")
    ref, other = (scorer.scores([read_audio(tmp_path / name, RATE)])[0, 0] for name in ("ref.wav", f"x.{suffix}"))
    assert np.isfinite(other).all() and np.max(np.abs(ref - other)) < tol
