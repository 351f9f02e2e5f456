"""Tests for ray_tagger.metrics.lwlrap."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import label_ranking_average_precision_score

from ray_tagger.metrics import lwlrap

TRUTH = np.array([[1, 0, 0, 1], [0, 1, 0, 0], [0, 0, 1, 1]])
SCORES = np.array([[0.9, 0.1, 0.2, 0.3], [0.2, 0.3, 0.8, 0.1], [0.1, 0.6, 0.5, 0.4]])


def _random_case(seed: int, n: int = 200, k: int = 20) -> tuple[np.ndarray, np.ndarray]:
    """(n, k) truth with 1-3 labels per row and tie-free (n, k) scores."""
    rng = np.random.default_rng(seed)
    truth = np.zeros((n, k), dtype=int)
    for i in range(n):
        truth[i, rng.choice(k, size=rng.integers(1, 4), replace=False)] = 1
    scores = rng.permuted(np.tile(np.arange(k, dtype=float), (n, 1)), axis=1)
    scores += rng.normal(0.0, 0.1, size=(n, k)) * (truth * 5)  # correlate a bit
    return truth, scores


def _sklearn_lwlrap(truth: np.ndarray, scores: np.ndarray) -> float:
    keep = truth.sum(axis=1) > 0
    return label_ranking_average_precision_score(
        truth[keep], scores[keep], sample_weight=truth[keep].sum(axis=1)
    )


def test_worked_example() -> None:
    overall, per_class = lwlrap(TRUTH, SCORES)
    assert overall == pytest.approx(11 / 15, abs=1e-12)
    np.testing.assert_allclose(per_class, [1, 1 / 2, 1 / 2, 5 / 6], rtol=0, atol=1e-12)
    assert per_class.shape == (4,)
    assert isinstance(overall, float)


def test_overall_is_label_count_weighted_mean_of_per_class() -> None:
    truth, scores = _random_case(7)
    overall, per_class = lwlrap(truth, scores)
    assert overall == pytest.approx(np.average(per_class, weights=truth.sum(0)), abs=1e-12)


def test_weighting_matters_unweighted_lrap_differs() -> None:
    unweighted = label_ranking_average_precision_score(TRUTH, SCORES)
    assert unweighted == pytest.approx(0.69444, abs=1e-5)
    overall, _ = lwlrap(TRUTH, SCORES)
    assert abs(overall - unweighted) > 0.03


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
def test_matches_sklearn_weighted_lrap_tie_free(seed: int) -> None:
    truth, scores = _random_case(seed)
    assert all(len(np.unique(row)) == row.size for row in scores)  # tie-free
    overall, _ = lwlrap(truth, scores)
    assert overall == pytest.approx(_sklearn_lwlrap(truth, scores), abs=1e-12)


@pytest.mark.parametrize("seed", [10, 11])
def test_matches_sklearn_with_ties(seed: int) -> None:
    rng = np.random.default_rng(seed)
    truth = (rng.random((300, 12)) < 0.2).astype(int)
    scores = rng.integers(0, 4, size=(300, 12)).astype(float)  # many ties
    overall, _ = lwlrap(truth, scores)
    assert overall == pytest.approx(_sklearn_lwlrap(truth, scores), abs=1e-12)


def test_tie_counts_as_ranked_above() -> None:
    # label 0 tied with a negative: rank 2, one hit -> precision 1/2.
    overall, _ = lwlrap(np.array([[1, 0, 0]]), np.array([[0.5, 0.5, 0.1]]))
    assert overall == pytest.approx(0.5, abs=1e-12)


def test_unlabelled_row_changes_nothing() -> None:
    overall, per_class = lwlrap(TRUTH, SCORES)
    truth2 = np.vstack([TRUTH, np.zeros((1, 4), dtype=int)])
    scores2 = np.vstack([SCORES, [[0.0, 1.0, 0.5, 0.2]]])
    overall2, per_class2 = lwlrap(truth2, scores2)
    assert overall2 == pytest.approx(overall, abs=1e-15)
    np.testing.assert_allclose(per_class2, per_class, rtol=0, atol=1e-15)


def test_class_without_labels_is_nan() -> None:
    truth = np.array([[1, 0, 0], [1, 1, 0]])
    _, per_class = lwlrap(truth, np.array([[0.3, 0.2, 0.1], [0.1, 0.2, 0.3]]))
    assert np.isnan(per_class[2]) and not np.isnan(per_class[:2]).any()


def test_perfect_scores_give_one() -> None:
    truth, _ = _random_case(5)
    scores = truth + np.random.default_rng(5).random(truth.shape) * 0.5
    overall, per_class = lwlrap(truth, scores)
    assert overall == 1.0
    np.testing.assert_array_equal(per_class[truth.sum(0) > 0], 1.0)


def test_bool_and_int_truth_agree() -> None:
    assert lwlrap(TRUTH.astype(bool), SCORES)[0] == lwlrap(TRUTH, SCORES)[0]


def test_inputs_unchanged() -> None:
    truth, scores = _random_case(3)
    truth_copy, scores_copy = truth.copy(), scores.copy()
    lwlrap(truth, scores)
    np.testing.assert_array_equal(truth, truth_copy)
    np.testing.assert_array_equal(scores, scores_copy)
    truth.setflags(write=False)
    scores.setflags(write=False)
    lwlrap(truth, scores)  # would raise if it wrote into either


def test_large_matrix_runs_and_is_bounded() -> None:
    rng = np.random.default_rng(0)
    truth = (rng.random((20_000, 80)) < 0.015).astype(np.int8)
    overall, per_class = lwlrap(truth, rng.random((20_000, 80)))
    assert 0.0 < overall < 1.0
    assert np.nanmin(per_class) > 0.0 and np.nanmax(per_class) <= 1.0


@pytest.mark.parametrize(
    ("truth", "scores", "match"),
    [
        (np.ones(4), np.ones(4), "2-D"),
        (np.ones((2, 3, 1)), np.ones((2, 3, 1)), "2-D"),
        (np.ones((2, 3)), np.ones((3, 2)), "shapes differ"),
        (np.ones((2, 3)), np.ones((2, 4)), "shapes differ"),
        (np.array([[1, 0]]), np.array([[np.nan, 0.1]]), "NaN or infinite"),
        (np.array([[1, 0]]), np.array([[np.inf, 0.1]]), "NaN or infinite"),
        (np.array([[2, 0]]), np.array([[0.5, 0.1]]), "0/1"),
        (np.array([[0, 0]]), np.array([[0.5, 0.1]]), "no positive label"),
        (np.array([[1, 0]]), np.array([["a", "b"]]), "not numeric"),
    ],
)
def test_bad_inputs_raise(truth: np.ndarray, scores: np.ndarray, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        lwlrap(truth, scores)
