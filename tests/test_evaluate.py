"""Tests for ray_tagger.evaluate: CSV reading, alignment, errors, formatting."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from ray_tagger.evaluate import (
    EvalResult,
    EvaluationError,
    evaluate,
    format_result,
    read_scores,
    read_truth,
)

# The DESIGN.md worked example with class names: a.wav {Bark, Walk}, b.wav {Cheer},
# c.wav {Drip, Walk}; expected lwlrap 11/15, per class [1, 1/2, 1/2, 5/6].
CLASSES = ["Bark", "Cheer", "Drip", "Walk"]
TRUTH_CSV = (
    "fname,labels,usage\n"
    'a.wav,"Bark,Walk",Public\n'
    "b.wav,Cheer,Private\n"
    'c.wav,"Drip,Walk",Public\n'
)
# Rows shuffled (c, extra, a, b); one row without truth.
SCORES_CSV = (
    "fname,Bark,Cheer,Drip,Walk\n"
    "c.wav,0.1,0.6,0.5,0.4\n"
    "extra.wav,0.5,0.5,0.5,0.5\n"
    "a.wav,0.9,0.1,0.2,0.3\n"
    "b.wav,0.2,0.3,0.8,0.1\n"
)


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    return _write(tmp_path, "scores.csv", SCORES_CSV), _write(tmp_path, "truth.csv", TRUTH_CSV)


def test_evaluate_worked_example_shuffled(files: tuple[Path, Path]) -> None:
    result = evaluate(*files)
    assert isinstance(result, EvalResult)
    assert result.overall == pytest.approx(11 / 15, abs=1e-12)
    assert list(result.per_class) == CLASSES
    np.testing.assert_allclose(
        list(result.per_class.values()), [1, 1 / 2, 1 / 2, 5 / 6], rtol=0, atol=1e-12
    )
    assert result.label_counts == {"Bark": 1, "Cheer": 1, "Drip": 1, "Walk": 2}
    assert (result.n_clips, result.n_labels, result.n_ignored_scores) == (3, 5, 1)


def test_result_is_frozen(files: tuple[Path, Path]) -> None:
    result = evaluate(*files)
    with pytest.raises(AttributeError):
        result.overall = 1.0  # type: ignore[misc]


def test_class_order_follows_columns_not_truth(tmp_path: Path) -> None:
    scores = "fname,Walk,Drip,Cheer,Bark\n" + "".join(
        f"{f},{w},{d},{c},{b}\n"
        for f, b, c, d, w in [
            ("a.wav", 0.9, 0.1, 0.2, 0.3),
            ("b.wav", 0.2, 0.3, 0.8, 0.1),
            ("c.wav", 0.1, 0.6, 0.5, 0.4),
        ]
    )
    result = evaluate(_write(tmp_path, "s.csv", scores), _write(tmp_path, "t.csv", TRUTH_CSV))
    assert list(result.per_class) == ["Walk", "Drip", "Cheer", "Bark"]
    assert result.per_class["Walk"] == pytest.approx(5 / 6, abs=1e-12)
    assert result.overall == pytest.approx(11 / 15, abs=1e-12)
    assert result.n_ignored_scores == 0


def test_unlabelled_truth_row_and_unlabelled_class(tmp_path: Path) -> None:
    scores = "fname,A,B,C\nx,0.9,0.1,0.5\ny,0.2,0.8,0.1\n"
    truth = "fname,labels\nx,A\ny,\n"
    result = evaluate(_write(tmp_path, "s.csv", scores), _write(tmp_path, "t.csv", truth))
    assert result.overall == 1.0
    assert math.isnan(result.per_class["B"]) and math.isnan(result.per_class["C"])
    assert (result.n_clips, result.n_labels) == (1, 1)


def test_read_scores_and_classes_argument(files: tuple[Path, Path]) -> None:
    fnames, class_names, scores = read_scores(files[0])
    assert fnames == ["c.wav", "extra.wav", "a.wav", "b.wav"]
    assert class_names == CLASSES
    assert scores.shape == (4, 4) and scores.dtype == np.float64
    np.testing.assert_array_equal(scores[2], [0.9, 0.1, 0.2, 0.3])
    _, picked, sub = read_scores(files[0], classes=["Walk", "Bark"])
    assert picked == ["Walk", "Bark"]
    np.testing.assert_array_equal(sub[2], [0.3, 0.9])
    with pytest.raises(EvaluationError, match="Nope"):
        read_scores(files[0], classes=["Nope"])


def test_read_truth_ignores_extra_columns(files: tuple[Path, Path]) -> None:
    assert read_truth(files[1]) == {
        "a.wav": ["Bark", "Walk"],
        "b.wav": ["Cheer"],
        "c.wav": ["Drip", "Walk"],
    }


def test_error_truth_fname_without_scores(tmp_path: Path, files: tuple[Path, Path]) -> None:
    truth = _write(tmp_path, "t2.csv", TRUTH_CSV + "d.wav,Bark,Public\n")
    with pytest.raises(EvaluationError, match="d.wav") as info:
        evaluate(files[0], truth)
    assert "scores.csv" in str(info.value) and "\n" not in str(info.value)


def test_error_truth_label_not_a_column(tmp_path: Path, files: tuple[Path, Path]) -> None:
    truth = _write(tmp_path, "t2.csv", TRUTH_CSV.replace("Cheer", "Meow"))
    with pytest.raises(EvaluationError, match=r"t2\.csv.*'Meow'"):
        evaluate(files[0], truth)


def test_error_duplicate_fname_in_scores(tmp_path: Path, files: tuple[Path, Path]) -> None:
    scores = _write(tmp_path, "s2.csv", SCORES_CSV + "a.wav,0.1,0.1,0.1,0.1\n")
    with pytest.raises(EvaluationError, match=r"s2\.csv.*duplicate fname 'a.wav'"):
        evaluate(scores, files[1])


def test_error_duplicate_fname_in_truth(tmp_path: Path, files: tuple[Path, Path]) -> None:
    truth = _write(tmp_path, "t2.csv", TRUTH_CSV + "b.wav,Bark,Public\n")
    with pytest.raises(EvaluationError, match=r"t2\.csv.*duplicate fname 'b.wav'"):
        evaluate(files[0], truth)


@pytest.mark.parametrize("bad", ["high", "", "nan", "inf"])
def test_error_non_numeric_score(tmp_path: Path, files: tuple[Path, Path], bad: str) -> None:
    scores = _write(tmp_path, "s2.csv", SCORES_CSV.replace("0.8", bad))
    with pytest.raises(EvaluationError, match=r"s2\.csv.*'b.wav', class 'Drip'"):
        evaluate(scores, files[1])


def test_error_missing_fname_column_scores(tmp_path: Path, files: tuple[Path, Path]) -> None:
    scores = _write(tmp_path, "s2.csv", SCORES_CSV.replace("fname,", "clip,", 1))
    with pytest.raises(EvaluationError, match=r"s2\.csv.*missing column 'fname'"):
        evaluate(scores, files[1])


def test_error_missing_fname_column_truth(tmp_path: Path, files: tuple[Path, Path]) -> None:
    truth = _write(tmp_path, "t2.csv", TRUTH_CSV.replace("fname,", "clip,", 1))
    with pytest.raises(EvaluationError, match=r"t2\.csv.*missing column 'fname'"):
        evaluate(files[0], truth)


def test_error_missing_file_is_evaluation_error(tmp_path: Path, files: tuple[Path, Path]) -> None:
    with pytest.raises(EvaluationError, match="nowhere.csv"):
        evaluate(tmp_path / "nowhere.csv", files[1])


def test_evaluation_error_is_value_error() -> None:
    assert issubclass(EvaluationError, ValueError)


def test_format_result(files: tuple[Path, Path]) -> None:
    result = evaluate(*files)
    text = format_result(result)
    lines = text.splitlines()
    assert "overall" in lines[0] and f"{11 / 15:.6f}" in lines[0]
    class_lines = [line for line in lines if line.split() and line.split()[0] in CLASSES]
    assert [line.split()[0] for line in class_lines] == CLASSES
    assert class_lines[3].split()[1:] == [f"{5 / 6:.6f}", "2"]
    assert len({len(line) for line in class_lines}) == 1  # fixed width
