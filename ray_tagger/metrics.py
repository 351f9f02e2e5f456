"""Evaluation metric: label-weighted label-ranking average precision (lwlrap).

DCASE 2019 Task 2 definition. For every positive label (i, k) the precision is

    #{positive labels j of row i with scores[i, j] >= scores[i, k]}
    / #{labels j of row i with scores[i, j] >= scores[i, k]}

(ties count as ranked above, as in sklearn's ``label_ranking_average_precision_score``).
lwlrap is the mean of these precisions over all positive labels; per-class lwlrap is the
mean over the positive labels of one class. It equals
``label_ranking_average_precision_score(truth, scores, sample_weight=truth.sum(1))``
on the rows that carry at least one label.
"""

from __future__ import annotations

import logging

import numpy as np
from numpy.typing import ArrayLike

logger = logging.getLogger(__name__)

__all__ = ["lwlrap"]


def lwlrap(truth: ArrayLike, scores: ArrayLike) -> tuple[float, np.ndarray]:
    """Label-weighted label-ranking average precision.

    Args:
        truth: (N, K) 0/1 labels (bool or numeric). Rows without a label are ignored.
        scores: (N, K) finite float scores, higher = more likely.

    Returns:
        ``(overall, per_class)``: overall is a float; per_class has shape (K,), NaN for a
        class without a positive label. overall equals the mean of per_class weighted by
        each class's label count.

    Raises:
        ValueError: shapes differ or are not 2-D, truth is not 0/1, scores are not finite,
            or truth holds no positive label at all.

    Neither input is modified.
    """
    truth_b, scores_f = _validated(truth, scores)
    label_counts = truth_b.sum(axis=0)  # (K,)
    precision_sums = np.array(
        [_class_precision_sum(truth_b, scores_f, k) for k in range(truth_b.shape[1])]
    )  # (K,)
    per_class = np.full(truth_b.shape[1], np.nan)
    np.divide(precision_sums, label_counts, out=per_class, where=label_counts > 0)
    overall = float(precision_sums.sum() / label_counts.sum())
    return overall, per_class


def _class_precision_sum(truth: np.ndarray, scores: np.ndarray, k: int) -> float:
    """Sum of precisions over the positive labels of class k.

    truth: (N, K) bool, scores: (N, K) float -> scalar.
    """
    rows = np.flatnonzero(truth[:, k])
    if rows.size == 0:
        return 0.0
    row_scores = scores[rows]  # (n_k, K)
    at_or_above = row_scores >= row_scores[:, k : k + 1]  # (n_k, K)
    ranks = at_or_above.sum(axis=1)  # (n_k,), >= 1: class k itself counts
    hits = (at_or_above & truth[rows]).sum(axis=1)  # (n_k,)
    return float((hits / ranks).sum())


def _validated(truth: ArrayLike, scores: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Check inputs; return (truth as new (N, K) bool array, scores as (N, K) float)."""
    truth_a = np.asarray(truth)
    try:
        scores_f = np.asarray(scores, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"lwlrap: scores are not numeric ({exc})") from exc
    if truth_a.ndim != 2 or scores_f.ndim != 2:
        raise ValueError(
            f"lwlrap: truth and scores must be 2-D (N, K); got shapes "
            f"{truth_a.shape} and {scores_f.shape}"
        )
    if truth_a.shape != scores_f.shape:
        raise ValueError(
            f"lwlrap: truth and scores shapes differ: {truth_a.shape} vs {scores_f.shape}"
        )
    if truth_a.dtype != np.bool_ and not np.isin(truth_a, (0, 1)).all():
        raise ValueError("lwlrap: truth must contain only 0/1 (or bool) values")
    if not np.isfinite(scores_f).all():
        raise ValueError("lwlrap: scores contain NaN or infinite values")
    truth_b = truth_a.astype(bool)  # always a copy
    if not truth_b.any():
        raise ValueError("lwlrap: truth has no positive label; the metric is undefined")
    return truth_b, scores_f
