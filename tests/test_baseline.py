"""The classical baseline: pooled log-mel statistics, the logistic regression, and one small end-to-end fit."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
import torch

from ray_tagger import baseline
from ray_tagger.baseline import NAME, best_row, blend, clip_features, fit_baselines, fit_logistic, pooled_features
from ray_tagger.features import FeatureConfig, LogMel, normalized_clips
from ray_tagger.metrics import lwlrap
from ray_tagger.normalization import NormStats
from ray_tagger.report import chance_lwlrap, format_table, results_table

ROW_NAMES = [f"{NAME}, curated", f"{NAME}, curated + noisy"]


def test_pooled_features_hand_computed_and_padding_ignored():
    x = torch.tensor([[[[1.0, 2, 3, 99], [0, 0, 6, 99]]],      # example 0: 3 valid frames, then padding
                      [[[-1.0, 1, 99, 99], [5, 5, 99, 99]]]])  # example 1: 2 valid frames
    frames = torch.tensor([3, 2])
    before = x.clone()
    out = pooled_features(x, frames)
    # [mean band0, mean band1 | std band0, std band1 | max band0, max band1], population std
    expected = torch.tensor([[2.0, 2.0, math.sqrt(2 / 3), math.sqrt(8), 3.0, 6.0],
                             [0.0, 5.0, 1.0, 0.0, 1.0, 5.0]])
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(pooled_features(x[:, 0], frames), expected)  # (B, F, N) works too
    assert torch.equal(x, before)


def test_clip_features_in_padded_batches_equal_one_clip_at_a_time():
    rng = np.random.default_rng(0)
    waves = [rng.normal(0, 0.1, n).astype(np.float32) for n in (44100, 3000, 20000, 9000, 44100 // 2)]
    logmel = LogMel()
    stats = NormStats(mean=rng.normal(-10, 1, 128), std=3.0, frames=1)
    batched = clip_features(waves, logmel, stats, batch=3)
    one_by_one = np.stack([pooled_features(torch.from_numpy(f)[None], torch.tensor([f.shape[1]]))[0].numpy()
                           for f in normalized_clips(logmel, stats, waves)])
    assert batched.shape == (5, 384)
    np.testing.assert_allclose(batched, one_by_one, rtol=1e-4, atol=1e-4)


def _planted(n: int, rng: np.random.Generator, W: np.ndarray, b: np.ndarray, margin: float = 0.5):
    """Clips ``(n, D)`` whose labels ``(n, K)`` are the signs of ``X @ W + b``, kept only when every class's
    logit is at least ``margin`` away from 0 and some class is positive."""
    X = rng.normal(size=(20 * n, W.shape[0]))
    z = X @ W + b
    keep = (np.abs(z).min(1) > margin) & (z > 0).any(1)
    assert keep.sum() >= n
    return X[keep][:n], (z[keep][:n] > 0).astype(np.float64)


def test_fit_logistic_recovers_a_planted_separable_multilabel_rule_deterministically():
    rng = np.random.default_rng(0)
    W = rng.normal(size=(20, 5))
    W /= np.linalg.norm(W, axis=0)
    b = rng.normal(size=5) * 0.5 - 0.5
    X, Y = _planted(300, rng, W, b)
    X_test, Y_test = _planted(300, rng, W, b)
    X_before, Y_before = X.copy(), Y.copy()
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        model = fit_logistic(X, Y, l2=1e-3, threads=1)
        assert torch.get_num_threads() == 2  # the caller's setting is restored
    finally:
        torch.set_num_threads(threads)
    # The planted rule ranks every held-out clip perfectly (each positive logit > 0.5 > each negative one),
    # so lwlrap 1 is reachable; random scores give ~0.6 here. Fitted hyperplanes within ~25° of the planted
    # ones (cos > 0.9) mis-rank only the few clips near a boundary: 0.95 leaves room for that, not for chance.
    assert lwlrap(Y_test, model.predict(X_test))[0] >= 0.95 > chance_lwlrap(Y_test) + 0.3
    fitted = model.weight / model.std[:, None]  # back to the units of X
    cosine = (fitted * W).sum(0) / np.linalg.norm(fitted, axis=0)
    assert (cosine > 0.9).all(), cosine
    again = fit_logistic(X, Y, l2=1e-3)
    assert np.array_equal(model.weight, again.weight) and np.array_equal(model.bias, again.bias)
    assert np.array_equal(X, X_before) and np.array_equal(Y, Y_before)


def test_results_table_and_format_table_show_baselines_beside_chance_not_as_single_models():
    truth = np.eye(4)[[0, 1, 2, 3, 0, 1]]
    scores = np.stack([truth, 1 - truth], axis=1)  # (N, M=2, K)
    runs = [{"name": "a", "R": 2}, {"name": "b", "R": 2}]
    rows = results_table(truth, scores, runs, {ROW_NAMES[0]: truth + 0.0, ROW_NAMES[1]: 1 - truth})
    by_name = {r["name"]: r for r in rows}
    assert by_name[ROW_NAMES[0]] == {"name": ROW_NAMES[0], "models": 0, "lwlrap": 1.0}
    assert by_name[ROW_NAMES[1]]["lwlrap"] == pytest.approx(0.25)
    lines = format_table(rows).splitlines()
    names = [line[: line.index("  ")] if "  " in line else line for line in lines[1:]]
    assert [n.strip() for n in names] == ["chance (random scores)", *ROW_NAMES, "best single model (a, of 2)",
                                          "ensemble R=2", "ensemble (all)"]
    assert lines[2].split()[-2:] == ["0", "1.0000"]


# -- end to end on a small generated data set --------------------------------------------------


def _small_shards(root):
    """64 curated, 64 noisy and 32 test clips of 6 classes, at most 4 s long, prepared into shards."""
    from ray_tagger.demo_data import DemoConfig, generate
    from ray_tagger.prepare import PrepareConfig, prepare

    generate(root / "data", DemoConfig(clips=64, num_classes=6, max_length_s=4.0, noisy_min_length_s=3.0,
                                       noisy_max_length_s=4.0))
    prepare(root / "data", root / "shards", PrepareConfig())
    return root / "shards"


@pytest.fixture(scope="module")
def fitted(ray_session, tmp_path_factory):
    from ray_tagger.evaluate import read_truth
    from ray_tagger.layout import n_hot
    from ray_tagger.stream import shard_meta

    root = tmp_path_factory.mktemp("baseline")
    shards = _small_shards(root)
    classes, _, _ = shard_meta(shards)
    labels = read_truth(root / "data-test-labels.csv")
    fnames = sorted(labels, reverse=True)  # any order: scores follow fnames
    truth = n_hot([labels[f] for f in fnames], {c: i for i, c in enumerate(classes)}, np.float64)
    return shards, root / "run" / "baseline", fnames, truth, fit_baselines(shards, root / "run" / "baseline", fnames, truth)


def test_baseline_scores_clearly_above_chance_on_the_demo_test_clips(fitted):
    _, out, fnames, truth, scores = fitted
    chance = chance_lwlrap(truth)
    assert list(scores) == ROW_NAMES
    info = json.loads((out / "baseline.json").read_text())
    for name, s in scores.items():
        assert s.shape == truth.shape
        measured = lwlrap(truth, s)[0]
        print(f"\n{name}: test lwlrap {measured:.3f} (chance {chance:.3f})")
        assert measured > chance + 0.1  # measured 0.68 and 0.76 against chance 0.49
        assert info["rows"][name]["test_lwlrap"] == measured
        assert info["rows"][name]["l2"] in info["config"]["l2_grid"]
    assert info["rows"][ROW_NAMES[1]]["train_clips"] == 2 * info["rows"][ROW_NAMES[0]]["train_clips"]
    assert info["feature_seconds"] > 0


def test_a_second_fit_reads_the_cached_features_and_gives_the_same_scores(fitted, monkeypatch):
    shards, out, fnames, truth, scores = fitted

    def recompute(*args, **kwargs):
        raise AssertionError("the features were computed again")

    monkeypatch.setattr(baseline, "shard_features", recompute)
    monkeypatch.setattr(baseline, "prepared_features", recompute)
    again = fit_baselines(shards, out, fnames[::-1], truth[::-1])
    for name in ROW_NAMES:
        assert np.array_equal(again[name], scores[name][::-1])
    assert json.loads((out / "baseline.json").read_text())["feature_seconds"] is None


def test_a_folds_baseline_is_fitted_once_and_read_back_while_shards_and_fold_are_the_same(fitted, tmp_path, monkeypatch):
    """``train --fold`` prints this yardstick; re-running a complete run reads it back instead of
    fitting it again, and another fold is fitted."""
    shards, _, _, _, _ = fitted
    out = tmp_path / "fold-baseline"
    first = baseline.fold_baseline(shards, out, 0)
    assert list(first) == ROW_NAMES and all(0 < r["held_out_lwlrap"] <= 1 for r in first.values())
    fits = []
    choose = baseline.choose_l2
    monkeypatch.setattr(baseline, "choose_l2", lambda *a, **k: fits.append(1) or choose(*a, **k))
    assert baseline.fold_baseline(shards, out, 0) == first and fits == []
    other = baseline.fold_baseline(shards, out, 1)
    assert len(fits) == len(ROW_NAMES) and json.loads((out / "baseline.json").read_text())["rows"] == other
    assert other != first


def test_features_from_prepare_equal_a_pass_over_the_shards_audio(fitted):
    """The pooled statistics ``prepare`` wrote, normalised, against :func:`shard_features`'s own pass
    (decoding the stored audio, log-mel in padded batches): same clips in the same order, same
    labels and folds, features equal to float32 rounding."""
    from ray_tagger.baseline import prepared_features, shard_features

    shards = fitted[0]
    from_prepare, from_audio = prepared_features(shards), shard_features(shards)
    assert len(from_prepare["clip_id"]) == 64 + 64 + 32
    for key in ("clip_id", "source", "fold", "targets"):
        assert np.array_equal(from_prepare[key], from_audio[key]), key
    assert from_prepare["features"].shape == from_audio["features"].shape == (160, 384)
    np.testing.assert_allclose(from_prepare["features"], from_audio["features"], rtol=1e-5, atol=1e-5)


def test_shards_without_pooled_statistics_get_them_from_the_audio(fitted, tmp_path, monkeypatch):
    """Shards prepared before ``pooled.parquet`` existed: the baseline computes the features itself."""
    import shutil

    shards = tmp_path / "shards"
    shutil.copytree(fitted[0], shards)
    (shards / "pooled.parquet").unlink()
    assert baseline.prepared_features(shards) is None
    calls = []
    monkeypatch.setattr(baseline, "shard_features", lambda *a, **k: calls.append(a) or baseline.prepared_features(fitted[0]))
    data, seconds = baseline.cached_features(shards, tmp_path / "out", FeatureConfig(), baseline.BaselineConfig())
    assert len(calls) == 1 and len(data["clip_id"]) == 160 and seconds > 0


def test_blend_is_the_weighted_mean_of_the_members_mean_and_the_baseline():
    members = np.array([[[0.2, 0.8], [0.4, 0.0]]])  # (N=1, M=2, K=2)
    base = np.array([[1.0, 0.0]])
    # members' mean [0.3, 0.4]; weight 0.25: 0.75 * [0.3, 0.4] + 0.25 * [1, 0] = [0.475, 0.3]
    assert np.allclose(blend(members, base, 0.25), [[0.475, 0.3]])
    assert np.allclose(blend(members, base, 0.0), [[0.3, 0.4]])


def test_best_row_is_the_one_better_on_its_held_out_fold_ties_to_the_larger():
    def info(cur, both):
        return {"rows": {ROW_NAMES[0]: {"l2": 0.01, "held_out_lwlrap": {"0.001": 0.9, "0.01": cur}},
                         ROW_NAMES[1]: {"l2": 0.1, "held_out_lwlrap": {"0.01": 0.9, "0.1": both}}}}
    # each row is judged at its own chosen L2, not at the other entries of its grid
    assert best_row(info(0.6, 0.5)) == ROW_NAMES[0]
    assert best_row(info(0.5, 0.6)) == ROW_NAMES[1]
    assert best_row(info(0.5, 0.5)) == ROW_NAMES[1]
    no_fold = {"rows": {n: {"l2": 0.01, "held_out_lwlrap": {}} for n in ROW_NAMES}}
    assert best_row(no_fold) == ROW_NAMES[1]


def _saved_blend(weight: float = 0.4):
    from ray_tagger.baseline import BaselineBlend, LogisticModel
    from ray_tagger.features import FeatureConfig

    model = LogisticModel(np.array([0.0, 1.0]), np.array([1.0, 2.0]), np.array([[1.0, -1.0], [0.5, 0.0]]), np.array([0.0, 1.0]))
    return BaselineBlend(model, weight, ROW_NAMES[1], ["a", "b"], dataclasses.asdict(FeatureConfig()),
                         {"mean": [0.5] * 128, "std": 2.0, "frames": 10})


def test_a_saved_blend_reads_back_and_blends_hand_computed(tmp_path):
    from ray_tagger.baseline import BLEND_FILE, load_blend, save_blend

    saved = _saved_blend()
    (tmp_path / "run" / "final").mkdir(parents=True)
    (tmp_path / "run" / "baseline").mkdir()
    (tmp_path / "run" / "run.json").write_text("{}")
    assert load_blend(tmp_path / "run") is None  # a run that does not blend writes no file
    save_blend(tmp_path / "run" / "baseline" / BLEND_FILE, saved)
    for given in ("run", "run/final"):
        back = load_blend(tmp_path / given)
        assert (back.weight, back.row, back.classes, back.features, back.stats) == \
            (saved.weight, saved.row, saved.classes, saved.features, saved.stats)
    # pooled [2, 5]: standardised [2, 2]; logits [2 + 1 + 0, -2 + 0 + 1] = [3, -1]
    pooled, members = np.array([[2.0, 5.0]]), np.array([[[0.2, 0.6], [0.4, 0.2]]])  # members' mean [0.3, 0.4]
    sigmoid = 1 / (1 + np.exp(-np.array([3.0, -1.0])))
    assert np.allclose(back.apply(members, pooled), [0.6 * np.array([0.3, 0.4]) + 0.4 * sigmoid])
    meta = {"classes": ["a", "b"], "features": saved.features, "stats": {"mean": [0.5] * 128, "std": 2.0, "frames": 3}}
    back.check(meta)  # frames are not part of the normalisation
    for bad in ({"classes": ["b", "a"]}, {"features": {**saved.features, "n_mels": 64}}, {"stats": {"mean": [0.6] * 128, "std": 2.0}},
                {"stats": {"mean": [0.5] * 128, "std": 2.5}}):
        with pytest.raises(ValueError, match="fitted on other classes, features or normalisation"):
            back.check({**meta, **bad})


def test_tag_frames_and_export_warn_only_for_a_run_folder_that_blends(tmp_path):
    from ray_tagger.baseline import BLEND_FILE, save_blend
    from ray_tagger.infer import blend_warning

    for name, weight in (("blended", 0.5), ("plain", None)):
        (tmp_path / name / "final" / "runs" / "s0_R2").mkdir(parents=True)
        (tmp_path / name / "baseline").mkdir()
        (tmp_path / name / "run.json").write_text("{}")
        if weight is not None:
            save_blend(tmp_path / name / "baseline" / BLEND_FILE, _saved_blend(weight))
    for given in ("blended", "blended/final"):
        assert blend_warning(tmp_path / given, "export") == (
            f"{tmp_path / 'blended'}: its run's submission blends the classical baseline in at weight 0.5; export "
            f"scores with the final models alone")
    for given in ("plain", "plain/final", "blended/final/runs/s0_R2"):
        assert blend_warning(tmp_path / given, "export") is None, given


def _weighing_data(rng: np.random.Generator) -> tuple[dict, dict]:
    """Pooled-feature ``data`` of 40 curated clips (folds 0 and 1, 20 each) and 20 noisy clips, 2 classes,
    one label each, features well separated by class; and ``heldout``: the curated clips as the
    relabelling check saw them (scores filled in by the test)."""
    n_cur, n_noisy = 40, 20
    labels = rng.integers(0, 2, n_cur + n_noisy)
    targets = np.eye(2, dtype=np.float32)[labels]
    data = {"clip_id": np.array([f"c{i}" for i in range(n_cur)] + [f"n{i}" for i in range(n_noisy)]),
            "source": np.array(["curated"] * n_cur + ["noisy"] * n_noisy),
            "fold": np.array([i % 2 for i in range(n_cur)] + [-1] * n_noisy),
            "targets": targets, "features": (4 * targets + rng.normal(0, 0.5, targets.shape)).astype(np.float32)}
    heldout = {"clip_id": data["clip_id"][:n_cur], "fold": data["fold"][:n_cur], "truth": targets[:n_cur].astype(np.float64)}
    return data, heldout


def test_choose_weight_follows_the_held_out_evidence_ties_to_the_smaller_weight():
    from ray_tagger.baseline import choose_weight

    data, heldout = _weighing_data(np.random.default_rng(0))
    weights = (0.0, 0.25, 0.75)
    # relabelling models that rank every clip's label last: one label of two, ranked 2nd → lwlrap 1/2 at w = 0;
    # at w = 0.25 the inverted scores (0.75 apart) still outweigh any baseline (at most 0.25 apart): 1/2; at
    # w = 0.75 a baseline that separates the classes by more than 1/3 in probability ranks every label first: 1
    inverted = {**heldout, "scores": 1.0 - heldout["truth"]}
    weight, grid = choose_weight(data, inverted, ROW_NAMES[0], 1e-2, weights)
    assert grid == pytest.approx({0.0: 0.5, 0.25: 0.5, 0.75: 1.0}) and weight == 0.75
    # perfect relabelling models: every weight ranks every label first (1.0 each); the tie goes to 0
    perfect = {**heldout, "scores": heldout["truth"].copy()}
    weight, grid = choose_weight(data, perfect, ROW_NAMES[1], 1e-2, weights)
    assert grid == pytest.approx({0.0: 1.0, 0.25: 1.0, 0.75: 1.0}) and weight == 0.0


def test_choose_weight_fits_each_folds_baseline_without_that_fold(monkeypatch):
    from ray_tagger.baseline import choose_weight

    data, heldout = _weighing_data(np.random.default_rng(1))
    seen = []
    real_fit = baseline.fit_logistic

    def recording_fit(X, Y, *args):
        seen.append({tuple(np.round(x, 5)) for x in X})
        return real_fit(X, Y, *args)

    monkeypatch.setattr(baseline, "fit_logistic", recording_fit)
    choose_weight(data, {**heldout, "scores": heldout["truth"]}, ROW_NAMES[1], 1e-2, (0.0, 0.5))
    rows = {tuple(np.round(x, 5)): (s, f) for x, s, f in zip(data["features"], data["source"], data["fold"])}
    assert len(seen) == 2  # one fit per held-out fold (0 and 1)
    for fold, trained in zip((0, 1), seen):
        # the curated + noisy row: all noisy clips and the curated clips of the other fold, nothing of this one
        assert trained == {x for x, (s, f) in rows.items() if s == "noisy" or f != fold}
