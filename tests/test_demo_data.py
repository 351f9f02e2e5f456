"""Tests for ray_tagger.demo_data: layouts, audio format, labels, corruption, determinism,
and that the classes are learnable (but not trivially) by a simple model of our own."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import label_ranking_average_precision_score
from sklearn.multiclass import OneVsRestClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from ray_tagger import demo_data as dd

SMALL = dd.DemoConfig(clips=24, seed=0)
KAGGLE_FILES = (
    "train_curated.csv", "train_noisy.csv", "sample_submission.csv", "train_curated", "train_noisy", "test"
)
ZENODO_META = (
    "train_curated_post_competition.csv",
    "train_noisy_post_competition.csv",
    "test_post_competition.csv",
    "vocabulary.csv",
)
ZENODO_AUDIO = (
    "FSDKaggle2019.audio_train_curated", "FSDKaggle2019.audio_train_noisy", "FSDKaggle2019.audio_test"
)


@pytest.fixture(scope="module")
def kaggle(tmp_path_factory: pytest.TempPathFactory) -> dd.DemoSummary:
    return dd.generate(tmp_path_factory.mktemp("k") / "demo", SMALL)


@pytest.fixture(scope="module")
def zenodo(tmp_path_factory: pytest.TempPathFactory) -> dd.DemoSummary:
    config = dd.DemoConfig(clips=24, seed=0, layout="zenodo")
    return dd.generate(tmp_path_factory.mktemp("z") / "demo", config)


def split(field: object) -> list[str]:
    """A CSV labels field -> list of labels."""
    return [] if pd.isna(field) else str(field).split(",")


def read_labels(path: Path, column: str = "labels") -> dict[str, list[str]]:
    table = pd.read_csv(path)
    return dict(zip(table["fname"], (split(v) for v in table[column])))


def kaggle_tables(summary: dd.DemoSummary) -> dict[str, dict[str, list[str]]]:
    """Published labels of curated and noisy, true labels of test."""
    out = summary.out_dir
    return {
        "curated": read_labels(out / "train_curated.csv"),
        "noisy": read_labels(out / "train_noisy.csv"),
        "test": read_labels(summary.test_labels_path),
    }


def tree_files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


# ---------------------------------------------------------------- config and generators


@pytest.mark.parametrize(
    "kwargs",
    [{"clips": 0}, {"noise_rate": 1.5}, {"layout": "tar"}, {"num_classes": 1}, {"num_classes": 99},
     {"min_length_s": 5.0, "max_length_s": 1.0}, {"label_count_probs": (0.5, 0.4)}, {"peak": (0.3, 1.2)}],
)
def test_config_rejects_bad_values(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        dd.DemoConfig(**kwargs)


def test_counts_follow_clips() -> None:
    assert [dd.source_count(dd.DemoConfig(clips=7), s) for s in dd.SOURCES] == [7, 7, 3]
    assert [dd.source_count(dd.DemoConfig(clips=1), s) for s in dd.SOURCES] == [1, 1, 1]


@pytest.mark.parametrize("name", list(dd.CLASSES))
@pytest.mark.parametrize("duration_s", [0.05, 1.3])
def test_generators_shape_finite_nonsilent(name: str, duration_s: float) -> None:
    x = dd.CLASSES[name](np.random.default_rng(3), duration_s, 44100)
    assert x.shape == (round(duration_s * 44100),)
    assert np.all(np.isfinite(x)) and np.sqrt(np.mean(x**2)) > 1e-3


def test_generators_randomise_parameters() -> None:
    for name, gen in dd.CLASSES.items():
        a, b = gen(np.random.default_rng(1), 0.5, 44100), gen(np.random.default_rng(2), 0.5, 44100)
        assert not np.allclose(a, b), name


# ---------------------------------------------------------------- layouts and audio


def test_kaggle_layout_files(kaggle: dd.DemoSummary) -> None:
    for name in (*KAGGLE_FILES, "demo_info.json"):
        assert (kaggle.out_dir / name).exists(), name
    assert not (kaggle.out_dir / "FSDKaggle2019.meta").exists()
    assert len(list((kaggle.out_dir / "train_curated").glob("*.wav"))) == 24
    assert len(list((kaggle.out_dir / "train_noisy").glob("*.wav"))) == 24
    assert len(list((kaggle.out_dir / "test").glob("*.wav"))) == 12
    assert list(pd.read_csv(kaggle.out_dir / "train_curated.csv").columns) == ["fname", "labels"]
    # several labels are quoted in one field, written by the csv module
    assert '"' in (kaggle.out_dir / "train_curated.csv").read_text()


def test_zenodo_layout_files(zenodo: dd.DemoSummary) -> None:
    meta = zenodo.out_dir / "FSDKaggle2019.meta"
    for name in ZENODO_META:
        assert (meta / name).exists(), name
    for name in ZENODO_AUDIO:
        assert any((zenodo.out_dir / name).glob("*.wav")), name
    assert not any((zenodo.out_dir / name).exists() for name in KAGGLE_FILES)
    train_columns = ["fname", "labels", "freesound_id", "license"]
    for name in ("train_curated_post_competition.csv", "train_noisy_post_competition.csv"):
        assert list(pd.read_csv(meta / name).columns) == train_columns
    test_columns = ["fname", "labels", "usage", "freesound_id", "license"]
    assert list(pd.read_csv(meta / "test_post_competition.csv").columns) == test_columns
    vocab = pd.read_csv(meta / "vocabulary.csv", header=None)
    assert list(vocab[0]) == list(range(12)) and tuple(vocab[1]) == dd.class_names(SMALL)
    usage = list(pd.read_csv(meta / "test_post_competition.csv")["usage"])
    assert usage == ["Public"] * 6 + ["Private"] * 6


def test_wav_format_and_lengths(kaggle: dd.DemoSummary) -> None:
    bounds = {"train_curated": (0.5, 15.0), "test": (0.5, 15.0), "train_noisy": (13.0, 15.5)}
    for folder, (lo, hi) in bounds.items():
        for path in (kaggle.out_dir / folder).glob("*.wav"):
            info = sf.info(path)
            assert (info.samplerate, info.channels, info.subtype, info.format) == (44100, 1, "PCM_16", "WAV")
            assert lo <= info.frames / info.samplerate <= hi, path
            x = sf.read(path, dtype="float64")[0]
            assert 0.29 <= np.max(np.abs(x)) <= 0.951, path  # peak-normalised, never at full scale


def test_curated_lengths_spread(kaggle: dd.DemoSummary) -> None:
    lengths = [sf.info(p).duration for p in (kaggle.out_dir / "train_curated").glob("*.wav")]
    assert min(lengths) < 2.0 and max(lengths) > 6.0


def test_label_counts_and_class_coverage(kaggle: dd.DemoSummary) -> None:
    classes = set(dd.class_names(SMALL))
    truth = read_labels(kaggle.noisy_truth_path, "true_labels")
    for source, table in {**kaggle_tables(kaggle), "noisy_true": truth}.items():
        assert all(1 <= len(v) <= 3 and len(set(v)) == len(v) for v in table.values()), source
        assert set().union(*table.values()) == classes, source


def test_sample_submission_columns(kaggle: dd.DemoSummary) -> None:
    sub = pd.read_csv(kaggle.out_dir / "sample_submission.csv")
    assert list(sub.columns) == ["fname", *dd.class_names(SMALL)]
    assert sorted(sub["fname"]) == sorted(p.name for p in (kaggle.out_dir / "test").glob("*.wav"))
    assert (sub.drop(columns="fname").to_numpy() == 0).all()


def test_beside_files_not_inside(kaggle: dd.DemoSummary) -> None:
    out = kaggle.out_dir
    assert kaggle.test_labels_path == out.parent / "demo-test-labels.csv"
    assert kaggle.noisy_truth_path == out.parent / "demo-noisy-truth.csv"
    assert kaggle.test_labels_path.exists() and kaggle.noisy_truth_path.exists()
    assert not list(out.rglob("*-test-labels.csv")) and not list(out.rglob("*-noisy-truth.csv"))
    truth = pd.read_csv(kaggle.noisy_truth_path)
    assert list(truth.columns) == ["fname", "labels", "true_labels", "corrupted"]
    assert truth["corrupted"].dtype == bool


def test_demo_info_and_summary(kaggle: dd.DemoSummary) -> None:
    info = json.loads((kaggle.out_dir / "demo_info.json").read_text())
    assert info["config"]["clips"] == 24 and info["classes"] == list(dd.class_names(SMALL))
    assert info["counts"] == {"curated": 24, "noisy": 24, "test": 12} == dict(kaggle.counts)
    assert len(info["description"]) > 200 and "low-pass" in info["noisy_channel"]
    truth = pd.read_csv(kaggle.noisy_truth_path)
    assert info["realised_corruption_rate"] == kaggle.realised_corruption_rate == truth["corrupted"].mean()
    seconds = sum(sf.info(p).duration for p in kaggle.out_dir.rglob("*.wav"))
    assert kaggle.total_audio_s == pytest.approx(seconds, abs=0.01) == info["total_audio_seconds"]


# ---------------------------------------------------------------- label corruption


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_corruption_rate_within_binomial_bound(seed: int) -> None:
    config = dd.DemoConfig(clips=200, seed=seed, noise_rate=0.3)
    plans = dd.plan_clips(config, "noisy")
    rate = np.mean([p.corrupted for p in plans])
    sigma = math.sqrt(0.3 * 0.7 / len(plans))
    print(f"seed {seed}: realised corruption rate {rate:.3f} (0.3 +- {3 * sigma:.3f})")
    assert abs(rate - 0.3) <= 3 * sigma
    kinds = {p.corruption for p in plans if p.corrupted}
    assert kinds == {"replace", "add", "drop"}


def test_corrupted_rows_differ_uncorrupted_equal(kaggle: dd.DemoSummary) -> None:
    for plan in dd.plan_clips(dd.DemoConfig(clips=200, seed=5), "noisy"):
        assert (plan.labels != plan.true_labels) == plan.corrupted
        assert 1 <= len(plan.labels) <= 3
    truth = pd.read_csv(kaggle.noisy_truth_path)
    published = read_labels(kaggle.out_dir / "train_noisy.csv")
    for row in truth.itertuples():
        assert split(row.labels) == published[row.fname]
        assert (set(split(row.labels)) != set(split(row.true_labels))) == row.corrupted


def test_noise_rate_extremes_and_true_labels_unchanged() -> None:
    plans = {r: dd.plan_clips(dd.DemoConfig(clips=50, noise_rate=r), "noisy") for r in (0.0, 0.3, 1.0)}
    assert not any(p.corrupted for p in plans[0.0]) and all(p.corrupted for p in plans[1.0])
    # true labels and lengths do not depend on the noise rate (separate random streams)
    assert {tuple(p.true_labels) for p in plans[0.0]} == {tuple(p.true_labels) for p in plans[1.0]}
    assert [p.num_samples for p in plans[0.0]] == [p.num_samples for p in plans[0.3]]


def test_curated_and_test_are_never_corrupted() -> None:
    config = dd.DemoConfig(clips=60, noise_rate=1.0)
    assert all(p.labels == p.true_labels for s in ("curated", "test") for p in dd.plan_clips(config, s))


# ---------------------------------------------------------------- determinism and layouts


def test_same_seed_identical_bytes(kaggle: dd.DemoSummary, tmp_path: Path) -> None:
    again = dd.generate(tmp_path / "demo", SMALL)
    assert tree_files(again.out_dir) == tree_files(kaggle.out_dir)
    assert again.noisy_truth_path.read_bytes() == kaggle.noisy_truth_path.read_bytes()
    assert again.test_labels_path.read_bytes() == kaggle.test_labels_path.read_bytes()


def test_different_seed_differs(kaggle: dd.DemoSummary, tmp_path: Path) -> None:
    other = dd.generate(tmp_path / "demo", dd.DemoConfig(clips=24, seed=1))
    for name in ("train_curated.csv", "train_curated/c0001.wav", "train_noisy/n0001.wav", "test/t0001.wav"):
        assert (other.out_dir / name).read_bytes() != (kaggle.out_dir / name).read_bytes(), name


def test_zenodo_and_kaggle_carry_same_labels_and_audio(
    kaggle: dd.DemoSummary, zenodo: dd.DemoSummary
) -> None:
    meta = zenodo.out_dir / "FSDKaggle2019.meta"
    names = {"curated": "train_curated", "noisy": "train_noisy", "test": "test"}
    z = {s: read_labels(meta / f"{name}_post_competition.csv") for s, name in names.items()}
    assert z == kaggle_tables(kaggle)
    assert zenodo.test_labels_path.read_bytes() == kaggle.test_labels_path.read_bytes()
    assert zenodo.noisy_truth_path.read_bytes() == kaggle.noisy_truth_path.read_bytes()
    for k_dir, z_dir in zip(("train_curated", "train_noisy", "test"), ZENODO_AUDIO):
        assert tree_files(kaggle.out_dir / k_dir) == tree_files(zenodo.out_dir / z_dir)


def test_refuses_non_empty_out_dir_unless_overwrite(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(ValueError, match="not empty"):
        dd.generate(out, dd.DemoConfig(clips=2))
    dd.generate(out, dd.DemoConfig(clips=2), overwrite=True)
    dd.generate(out, dd.DemoConfig(clips=2, layout="zenodo"), overwrite=True)
    assert (out / "keep.txt").read_text() == "mine"
    assert (out / "FSDKaggle2019.meta").is_dir() and not (out / "train_curated").exists()


def test_render_matches_written_audio(kaggle: dd.DemoSummary) -> None:
    plan = dd.plan_clips(SMALL, "curated")[3]
    written = sf.read(kaggle.out_dir / "train_curated" / plan.fname, dtype="int16")[0]
    expected = np.round(dd.render_clip(plan, SMALL) * 32767).astype(np.int16)
    np.testing.assert_array_equal(written, expected)


# ---------------------------------------------------------------- learnability


def band_features(x: np.ndarray, sr: int) -> np.ndarray:
    """(n,) -> (64,): mean and std over 40 ms frames of log energies in 32 log-spaced bands."""
    frame = int(0.04 * sr)
    x = np.pad(x, (0, max(0, frame - x.size)))
    frames = np.lib.stride_tricks.sliding_window_view(x, frame)[::frame] * np.hanning(frame)
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2
    band = np.digitize(np.fft.rfftfreq(frame, 1 / sr), np.geomspace(50, 16000, 33)) - 1
    energy = np.stack([power[:, band == b].sum(1) for b in range(32)], axis=1)
    log_e = np.log(energy + 1e-10)
    return np.concatenate([log_e.mean(0), log_e.std(0)])


def features_and_truth(config: dd.DemoConfig, source: str) -> tuple[np.ndarray, np.ndarray]:
    """(clips, 64) features and (clips, classes) n-hot published labels of ``source``."""
    names = dd.class_names(config)
    plans = dd.plan_clips(config, source)
    x = np.stack([band_features(dd.render_clip(p, config), config.sample_rate) for p in plans])
    y = np.array([[n in p.labels for n in names] for p in plans], dtype=float)
    return x, y


def test_classes_learnable_but_not_trivial() -> None:
    config = dd.DemoConfig(clips=160, seed=0)
    x_train, y_train = features_and_truth(config, "curated")
    x_test, y_test = features_and_truth(config, "test")
    model = make_pipeline(StandardScaler(), OneVsRestClassifier(LogisticRegression(max_iter=2000)))
    scores = model.fit(x_train, y_train).predict_proba(x_test)
    weight = y_test.sum(1)
    lwlrap = label_ranking_average_precision_score(y_test, scores, sample_weight=weight)
    random_scores = [np.random.default_rng(k).random(y_test.shape) for k in range(5)]
    chance = np.mean(
        [label_ranking_average_precision_score(y_test, r, sample_weight=weight) for r in random_scores]
    )
    print(f"learnability: lwlrap {lwlrap:.3f} (logistic regression on band statistics), random {chance:.3f}")
    assert lwlrap >= chance + 0.25
    assert lwlrap < 0.999
