"""Score a Kaggle submission CSV against a truth CSV with lwlrap.

Scores CSV: ``fname`` column + one column per class (class order = column order).
Truth CSV: ``fname,labels`` with labels comma-separated inside one (quoted) field; extra
columns (e.g. ``usage``) are ignored. Rows are aligned by fname. Every problem with the
files raises :class:`EvaluationError` with a one-line message that names the file.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from os import PathLike
from typing import Sequence

import numpy as np
import pandas as pd

from ray_tagger.metrics import lwlrap

logger = logging.getLogger(__name__)

__all__ = [
    "EvalResult",
    "EvaluationError",
    "evaluate",
    "format_result",
    "read_scores",
    "read_truth",
]

PathType = str | PathLike[str]


class EvaluationError(ValueError):
    """A scores or truth file cannot be evaluated; the message names the file."""


@dataclass(frozen=True)
class EvalResult:
    """lwlrap of one scores file against one truth file."""

    overall: float
    """lwlrap over all truth labels."""
    per_class: dict[str, float]
    """Class name -> lwlrap (NaN without truth labels), in scores column order."""
    label_counts: dict[str, int]
    """Class name -> number of truth labels, in scores column order."""
    n_clips: int
    """Truth clips with at least one label (the ones that count)."""
    n_labels: int
    """Total number of truth labels."""
    n_ignored_scores: int
    """Scores rows whose fname has no truth row (ignored)."""


def read_scores(
    path: PathType, classes: Sequence[str] | None = None
) -> tuple[list[str], list[str], np.ndarray]:
    """Read a Kaggle submission CSV.

    Args:
        path: CSV with a ``fname`` column and one numeric column per class.
        classes: if given, return these columns in this order (each must exist).

    Returns:
        ``(fnames, class_names, scores)`` with scores of shape (len(fnames), len(class_names)).
    """
    table = _read_csv(path, required=("fname",))
    class_names = [c for c in table.columns if c != "fname"]
    if classes is not None:
        unknown = [c for c in classes if c not in class_names]
        if unknown:
            raise EvaluationError(f"{path}: no score column for classes {unknown[:5]}")
        class_names = list(classes)
    if not class_names:
        raise EvaluationError(f"{path}: no class columns besides 'fname'")
    fnames = table["fname"].tolist()
    _check_unique(fnames, path)
    return fnames, class_names, _numeric(table, fnames, class_names, path)


def read_truth(path: PathType) -> dict[str, list[str]]:
    """Read ``fname,labels`` (labels comma-separated in one field) -> {fname: labels}.

    Extra columns are ignored; an empty labels field gives an empty list.
    """
    table = _read_csv(path, required=("fname", "labels"))
    fnames = table["fname"].tolist()
    _check_unique(fnames, path)
    return {
        fname: [label.strip() for label in cell.split(",") if label.strip()]
        for fname, cell in zip(fnames, table["labels"].tolist())
    }


def evaluate(scores_csv: PathType, truth_csv: PathType) -> EvalResult:
    """lwlrap of ``scores_csv`` against ``truth_csv``, rows aligned by fname."""
    truth = read_truth(truth_csv)
    fnames, class_names, scores = read_scores(scores_csv)
    truth_matrix = _truth_matrix(truth, class_names, truth_csv, scores_csv)  # (M, K)
    row_of = {fname: i for i, fname in enumerate(fnames)}
    missing = [fname for fname in truth if fname not in row_of]
    if missing:
        raise EvaluationError(
            f"{scores_csv}: {len(missing)} fname(s) of {truth_csv} have no scores, "
            f"e.g. {missing[:3]}"
        )
    if not truth_matrix.any():
        raise EvaluationError(f"{truth_csv}: no labels to evaluate")
    overall, per_class = lwlrap(truth_matrix, scores[[row_of[f] for f in truth]])
    counts = truth_matrix.sum(axis=0)
    result = EvalResult(
        overall=overall,
        per_class={c: float(v) for c, v in zip(class_names, per_class)},
        label_counts={c: int(n) for c, n in zip(class_names, counts)},
        n_clips=int(truth_matrix.any(axis=1).sum()),
        n_labels=int(counts.sum()),
        n_ignored_scores=len(fnames) - len(truth),
    )
    logger.info(
        "lwlrap %.6f on %d clips / %d labels (%d score rows without truth ignored)",
        result.overall, result.n_clips, result.n_labels, result.n_ignored_scores,
    )
    return result


def format_result(result: EvalResult) -> str:
    """Fixed-width table: overall lwlrap, then per-class lwlrap and label counts."""
    width = max([len("class"), *(len(c) for c in result.per_class)])
    lines = [
        f"overall lwlrap: {result.overall:.6f}",
        f"clips: {result.n_clips}  labels: {result.n_labels}  "
        f"ignored score rows without truth: {result.n_ignored_scores}",
        "",
        f"{'class':<{width}}  {'lwlrap':>8}  {'labels':>6}",
    ]
    for name, value in result.per_class.items():
        shown = "n/a" if math.isnan(value) else f"{value:.6f}"
        lines.append(f"{name:<{width}}  {shown:>8}  {result.label_counts[name]:>6d}")
    return "\n".join(lines)


def _read_csv(path: PathType, required: Sequence[str]) -> pd.DataFrame:
    """Read a CSV as strings ("" for empty cells); check header for duplicates/required."""
    try:
        raw = pd.read_csv(
            path, header=None, dtype=str, keep_default_na=False, encoding="utf-8-sig"
        )
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise EvaluationError(f"{path}: cannot read CSV ({_one_line(exc)})") from exc
    header = [str(c).strip() for c in raw.iloc[0].tolist()]
    duplicated = sorted({c for c in header if header.count(c) > 1})
    if duplicated:
        raise EvaluationError(f"{path}: duplicate columns {duplicated[:5]}")
    for column in required:
        if column not in header:
            raise EvaluationError(f"{path}: missing column {column!r}")
    table = raw.iloc[1:].fillna("")
    table.columns = header
    return table.reset_index(drop=True)


def _check_unique(fnames: list[str], path: PathType) -> None:
    """Raise if a fname occurs twice."""
    seen: set[str] = set()
    for fname in fnames:
        if fname in seen:
            raise EvaluationError(f"{path}: duplicate fname {fname!r}")
        seen.add(fname)


def _numeric(
    table: pd.DataFrame, fnames: list[str], class_names: list[str], path: PathType
) -> np.ndarray:
    """Class columns as finite floats, shape (len(fnames), len(class_names))."""
    values = (
        table[class_names].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=np.float64)
    )
    bad = np.argwhere(~np.isfinite(values))
    if bad.size:
        i, j = bad[0]
        raise EvaluationError(
            f"{path}: non-numeric score {table[class_names[j]].iloc[i]!r} "
            f"for fname {fnames[i]!r}, class {class_names[j]!r}"
        )
    return values


def _truth_matrix(
    truth: dict[str, list[str]],
    class_names: list[str],
    truth_csv: PathType,
    scores_csv: PathType,
) -> np.ndarray:
    """{fname: labels} -> (len(truth), len(class_names)) bool, rows in truth order."""
    column_of = {name: j for j, name in enumerate(class_names)}
    matrix = np.zeros((len(truth), len(class_names)), dtype=bool)
    for i, (fname, labels) in enumerate(truth.items()):
        for label in labels:
            if label not in column_of:
                raise EvaluationError(
                    f"{truth_csv}: label {label!r} of fname {fname!r} "
                    f"is not a class column of {scores_csv}"
                )
            matrix[i, column_of[label]] = True
    return matrix


def _one_line(exc: BaseException) -> str:
    """Exception text squeezed onto one line."""
    return " ".join(str(exc).split())
