"""Window scoring of long clips and per-second scores, against hand-computed windows."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import torch

from ray_tagger.scoring import score_crops, score_features, score_seconds, second_starts, window_starts
from tests.datasets import random_model_run

CLASSES = ["a", "b", "c"]


def test_window_starts_hand_values():
    assert window_starts(3, 4) == [0] and window_starts(10, None) == [0]
    assert window_starts(10, 4) == [0, 2, 4, 6]  # half a window apart, the last ends at frame 10
    assert window_starts(11, 4) == [0, 2, 4, 6, 7]  # one more, moved back to end at the clip's end


def test_second_starts_hand_values():
    # 10 s at 50 frames/s, 3 s windows (150 frames) centred on 25, 75, ..., 475, kept inside [0, 350]
    assert second_starts(500, 150, 50.0) == [0, 0, 50, 100, 150, 200, 250, 300, 350, 350]
    assert second_starts(120, 150, 50.0) == [0, 0, 0]  # shorter than a window: the whole clip, 3 seconds
    assert second_starts(10, 150, 50.0) == [0]
    assert len(second_starts(901, 150, 50.0)) == 18  # 18 s of audio: 1 + 900 frames, 18 seconds, not 19


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    run = tmp_path_factory.mktemp("m")
    return [random_model_run(run / "one", CLASSES, seed=1), random_model_run(run / "two", CLASSES, seed=2)]


def _one(model, crop: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(crop)[None, None], torch.tensor([crop.shape[1]]))[0].numpy()


def test_score_features_is_the_mean_over_the_windows_each_scored_alone(models):
    rng = np.random.default_rng(0)
    feats = [rng.standard_normal((models[0].n_mels, n)).astype(np.float32) for n in (90, 230, 400)]
    got = score_features(models, feats, window=100)
    for b, f in enumerate(feats):
        starts = window_starts(f.shape[1], 100)
        for m, model in enumerate(models):
            want = np.mean([_one(model, f[:, s: s + min(100, f.shape[1])]) for s in starts], axis=0)
            np.testing.assert_allclose(got[b, m], want, atol=1e-5)


def test_score_seconds_scores_each_second_on_its_own_window(models):
    feat = np.random.default_rng(1).standard_normal((models[0].n_mels, 333)).astype(np.float32)  # 6.66 s at 50 frames/s
    got = score_seconds(models, feat, 100, 50.0)
    starts = second_starts(333, 100, 50.0)
    assert got.shape == (7, 2, 3) and len(starts) == 7
    for i, s in enumerate(starts):
        for m, model in enumerate(models):
            np.testing.assert_allclose(got[i, m], _one(model, feat[:, s: s + 100]), atol=1e-5)
    np.testing.assert_allclose(score_crops(models, [feat[:, :100]])[0], got[0], atol=1e-6)


def test_tag_frames_prints_one_line_per_second(tmp_path):
    run = tmp_path / "run"
    random_model_run(run, CLASSES)
    rate = 44100
    t = np.arange(int(4.5 * rate)) / rate
    sf.write(tmp_path / "long.wav", (0.2 * np.sin(2 * np.pi * 330 * t)).astype(np.float32), rate)
    done = subprocess.run([sys.executable, "-m", "ray_tagger", "tag", str(run), str(tmp_path / "long.wav"), "--frames",
                           "--top", "2"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert lines[0] == f"{tmp_path / 'long.wav'}:"
    assert len(lines) == 1 + 5  # 4.5 s: seconds 0..4
    assert lines[1].split()[0] == "0–1" and lines[5].split()[0] == "4–5"
    assert all(len(line.split(",")) == 2 for line in lines[1:])


def test_export_scores_equal_the_ensemble_scorer_and_carry_the_vocabulary(tmp_path):
    """Two random members; waves shorter than, equal to and longer than the 2 s window."""
    import json

    from ray_tagger.cli import main
    from ray_tagger.infer import EnsembleScorer

    one, two = tmp_path / "one", tmp_path / "two"
    random_model_run(one, CLASSES, seed=1)
    random_model_run(two, CLASSES, seed=2)
    (tmp_path / "ensemble.json").write_text(json.dumps({"members": ["one/model.pt", "two/model.pt"]}))
    assert main(["export", str(tmp_path), str(tmp_path / "tagger.pt")]) == 0
    extra = {"classes.json": ""}
    tagger = torch.jit.load(str(tmp_path / "tagger.pt"), _extra_files=extra)
    assert tagger.classes == CLASSES and json.loads(extra["classes.json"]) == CLASSES and tagger.sample_rate == 44100
    scorer = EnsembleScorer([str(one / "model.pt"), str(two / "model.pt")], "files")
    rng = np.random.default_rng(0)
    for n in (20_000, 88_200, 300_001):
        wave = (0.1 * rng.standard_normal(n)).astype(np.float32)
        np.testing.assert_allclose(tagger(torch.from_numpy(wave)).numpy(), scorer.scores([wave]).mean(axis=1)[0], atol=1e-5)


def test_a_blending_runs_export_and_tag_blend_its_classical_baseline(tmp_path):
    """A `run` folder whose submission blends the baseline in (its baseline/submission_baseline.npz):
    the exported file and `tag` give ``(1 - w) ·`` the members' mean ``+ w ·`` the logistic regression
    on the pooled statistics, computed here with numpy from the scorer's normalised log-mel."""
    import dataclasses
    import json

    from ray_tagger.baseline import BLEND_FILE, BaselineBlend, LogisticModel, save_blend
    from ray_tagger.cli import main
    from ray_tagger.config import resolve_features
    from ray_tagger.features import normalized_clips
    from ray_tagger.infer import EnsembleScorer
    from ray_tagger.predict import tag

    run = tmp_path / "run"
    for name, seed in (("one", 1), ("two", 2)):
        random_model_run(run / "final" / "runs" / name, CLASSES, seed=seed)
    (run / "final" / "ensemble.json").write_text(json.dumps({"members": ["runs/one/model.pt", "runs/two/model.pt"]}))
    (run / "run.json").write_text("{}")
    (run / "baseline").mkdir()
    features = resolve_features("tiny")
    rng = np.random.default_rng(3)
    D = 3 * features.n_mels
    model = LogisticModel(rng.normal(0, 1, D), rng.uniform(0.5, 2, D), rng.normal(0, 0.3, (D, 3)), rng.normal(0, 1, 3))
    save_blend(run / "baseline" / BLEND_FILE, BaselineBlend(model, 0.3, "r", CLASSES, dataclasses.asdict(features),
                                                            {"mean": [0.0] * features.n_mels, "std": 1.0, "frames": 1}))
    assert main(["export", str(run), str(tmp_path / "tagger.pt")]) == 0
    tagger = torch.jit.load(str(tmp_path / "tagger.pt"))
    assert tagger.baseline_weight == pytest.approx(0.3)
    scorer = EnsembleScorer([str(run / "final" / "runs" / n / "model.pt") for n in ("one", "two")], "files")
    waves = [(0.1 * rng.standard_normal(n)).astype(np.float32) for n in (20_000, 300_001)]
    for i, wave in enumerate(waves):
        f = normalized_clips(scorer.logmel, scorer.stats, [wave])[0]
        pooled = np.concatenate([f.mean(1), f.std(1), f.max(1)])
        expected = 0.7 * scorer.scores([wave]).mean(axis=1)[0] + 0.3 * model.predict(pooled[None])[0]
        np.testing.assert_allclose(tagger(torch.from_numpy(wave)).numpy(), expected, atol=1e-5)
        sf.write(tmp_path / f"w{i}.wav", wave, 44100, subtype="FLOAT")
        (_, top), = tag(run, [tmp_path / f"w{i}.wav"], top=3)
        assert {c: s for c, s in top} == pytest.approx(dict(zip(CLASSES, expected)), abs=1e-5)


def test_a_relabel_pass_scores_excerpts_by_every_member_and_a_held_out_clip_by_its_own(tmp_path):
    """``relabel`` rows: a noisy clip gives its two excerpts per split, scored by both members; a curated
    clip of a held-out fold is scored whole by the member that held it out only (the other's row NaN),
    each score equal to that member scoring the same audio alone; a curated clip nobody held out is
    not scored; a curated clip named like a noisy one keeps its own key."""
    import pyarrow as pa

    from ray_tagger.decode import encode
    from ray_tagger.infer import EnsembleScorer, curated_key

    for name, seed in (("one", 1), ("two", 2)):
        random_model_run(tmp_path / name, CLASSES, seed=seed)
    paths = [tmp_path / name / "model.pt" for name in ("one", "two")]
    rate, rng = 44100, np.random.default_rng(3)
    waves = {name: (3000 * rng.standard_normal(int(seconds * rate))).astype(np.int16)
             for name, seconds in (("n", 3.0), ("c", 2.5), ("d", 1.5))}
    cuts = [rate, 2 * rate]  # split 0 cuts at 1 s, split 1 at 2 s

    def row(source, clip_id, wave, cuts):
        return {"clip_id": clip_id, "num_samples": len(wave), "cuts": cuts, "source": source,
                "audio": encode(wave, rate, "pcm16")}

    table = pa.Table.from_pylist([row("noisy", "x.wav", waves["n"], cuts), row("curated", "x.wav", waves["c"], []),
                                  row("curated", "y.wav", waves["d"], [])])
    scorer = EnsembleScorer([str(p) for p in paths], "relabel", "pcm16", splits=[0, 1], held_out={"x.wav": [1]})
    out = scorer(table)
    assert list(out["key"]) == ["x.wav#s0p0", "x.wav#s0p1", "x.wav#s1p0", "x.wav#s1p1", curated_key("x.wav")]
    plain = EnsembleScorer([str(p) for p in paths], "files")
    n, c = [(w / 32768).astype(np.float32) for w in (waves["n"], waves["c"])]
    np.testing.assert_allclose(out["scores"][:4], plain.scores([n[:rate], n[rate:], n[:2 * rate], n[2 * rate:]]), atol=1e-5)
    assert np.isnan(out["scores"][4, 0]).all()
    np.testing.assert_allclose(out["scores"][4, 1], plain.scores([c])[0, 1], atol=1e-5)
