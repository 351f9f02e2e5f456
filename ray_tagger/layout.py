"""Reading a data set folder in the Kaggle or the Zenodo (FSDKaggle2019) layout.

The result is an index: the class vocabulary (in the data set's own order) and one
:class:`ClipRecord` per CSV row, each flagged with the problem found in its row, if any.
Whole-file problems (a missing CSV, a header without ``fname``) raise :class:`LayoutError`.
"""

from __future__ import annotations

import csv
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

SOURCES = ("curated", "noisy", "test")


class LayoutError(ValueError):
    """The data set folder cannot be read at all (one line: file and reason)."""


@dataclass(frozen=True)
class Problem:
    """Why one input row cannot be used."""

    kind: str
    """Machine-readable kind, one of :data:`PROBLEM_KINDS`."""
    reason: str
    """One human line naming the file and what is wrong."""


PROBLEM_KINDS = (
    "missing_file",
    "unreadable_audio",
    "empty_audio",
    "wrong_sample_rate",
    "multi_channel",
    "unknown_label",
    "duplicate_fname",
    "malformed_csv",
)


@dataclass(frozen=True)
class ClipRecord:
    """One CSV row: a clip to prepare, or a row to skip (``problem`` set)."""

    source: str
    fname: str
    path: str
    labels: tuple[str, ...]
    csv_path: str
    row: int
    """1-based line number in ``csv_path`` (the header is line 1)."""
    problem: Problem | None = None


@dataclass(frozen=True)
class DataSetIndex:
    """Everything the CSVs say about a data set folder."""

    layout: str
    vocabulary: tuple[str, ...]
    records: tuple[ClipRecord, ...]
    csv_files: tuple[str, ...] = field(default=())

    def count(self, source: str) -> int:
        return sum(r.source == source for r in self.records)


_KAGGLE = {
    "curated": ("train_curated.csv", "train_curated"),
    "noisy": ("train_noisy.csv", "train_noisy"),
    "test": ("sample_submission.csv", "test"),
}
_ZENODO_META = "FSDKaggle2019.meta"
_ZENODO = {
    "curated": ("train_curated_post_competition.csv", "FSDKaggle2019.audio_train_curated"),
    "noisy": ("train_noisy_post_competition.csv", "FSDKaggle2019.audio_train_noisy"),
    "test": ("test_post_competition.csv", "FSDKaggle2019.audio_test"),
}


def read_dataset(data_dir: str | Path) -> DataSetIndex:
    """Index a data set folder in either layout; raises :class:`LayoutError`."""
    root = Path(data_dir)
    if not root.is_dir():
        raise LayoutError(f"{root}: not a folder")
    if (root / _ZENODO_META).is_dir():
        return _read_zenodo(root)
    if (root / "train_curated.csv").exists() or (root / "sample_submission.csv").exists():
        return _read_kaggle(root)
    raise LayoutError(
        f"{root}: neither the Kaggle layout (train_curated.csv, train_noisy.csv, "
        f"sample_submission.csv) nor the Zenodo layout ({_ZENODO_META}/)"
    )


def _read_kaggle(root: Path) -> DataSetIndex:
    submission = root / "sample_submission.csv"
    header = _read_rows(submission)[0]
    if not header or header[0] != "fname" or len(header) < 2:
        raise LayoutError(f"{submission}: header must be 'fname' followed by the class names")
    vocabulary = tuple(header[1:])
    records: list[ClipRecord] = []
    for source, (csv_name, folder) in _KAGGLE.items():
        with_labels = source != "test"
        records += _records(root / csv_name, root / folder, source, vocabulary, with_labels)
    files = tuple(str(root / name) for name, _ in _KAGGLE.values())
    return DataSetIndex("kaggle", vocabulary, tuple(records), files)


def _read_zenodo(root: Path) -> DataSetIndex:
    meta = root / _ZENODO_META
    vocab_csv = meta / "vocabulary.csv"
    vocabulary = tuple(_read_vocabulary(vocab_csv))
    records: list[ClipRecord] = []
    for source, (csv_name, folder) in _ZENODO.items():
        records += _records(meta / csv_name, root / folder, source, vocabulary, True)
    files = (str(vocab_csv),) + tuple(str(meta / name) for name, _ in _ZENODO.values())
    return DataSetIndex("zenodo", vocabulary, tuple(records), files)


def _read_vocabulary(path: Path) -> list[str]:
    names = []
    for line, row in enumerate(_read_rows(path), start=1):
        if len(row) != 2 or not row[1].strip():
            raise LayoutError(f"{path}:{line}: expected 'index,label', got {','.join(row)!r}")
        names.append(row[1].strip())
    if len(set(names)) != len(names) or not names:
        raise LayoutError(f"{path}: the vocabulary is empty or names a class twice")
    return names


def _read_rows(path: Path) -> list[list[str]]:
    if not path.is_file():
        raise LayoutError(f"{path}: missing")
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f, strict=True))
    except (csv.Error, UnicodeDecodeError) as e:
        raise LayoutError(f"{path}: malformed CSV ({e})") from None
    if not rows:
        raise LayoutError(f"{path}: empty file")
    return rows


def _records(
    csv_path: Path, folder: Path, source: str, vocabulary: tuple[str, ...], with_labels: bool
) -> list[ClipRecord]:
    rows = _read_rows(csv_path)
    header = [h.strip() for h in rows[0]]
    if "fname" not in header or (with_labels and "labels" not in header):
        need = "'fname' and 'labels'" if with_labels else "'fname'"
        raise LayoutError(f"{csv_path}: header must name {need}, got {','.join(header)!r}")
    i_fname = header.index("fname")
    i_labels = header.index("labels") if with_labels else None
    known = set(vocabulary)
    first_seen: dict[str, int] = {}
    out = []
    for line, row in enumerate(rows[1:], start=2):
        fname = row[i_fname].strip() if len(row) > i_fname else ""
        labels: tuple[str, ...] = ()
        if i_labels is not None and len(row) > i_labels:
            labels = tuple(x.strip() for x in row[i_labels].split(",") if x.strip())
        where = f"{csv_path}:{line}"
        problem = None
        if len(row) != len(header) or not fname:
            what = f"row of {fname}" if fname else "row without fname"
            problem = Problem(
                "malformed_csv", f"{where}: malformed {what} ({len(row)} fields for a {len(header)}-column header)"
            )
        elif fname in first_seen:
            problem = Problem(
                "duplicate_fname", f"{where}: duplicate fname {fname} (first on line {first_seen[fname]})"
            )
        elif with_labels and not labels and source != "test":
            problem = Problem("malformed_csv", f"{where}: {fname} has no labels")
        elif unknown := [x for x in labels if x not in known]:
            problem = Problem("unknown_label", f"{where}: {fname} has labels not in the vocabulary: {', '.join(unknown)}")
        first_seen.setdefault(fname, line)
        out.append(ClipRecord(source, fname, str(folder / fname), labels, str(csv_path), line, problem))
    log.debug("%s: %d rows", csv_path, len(out))
    return out


def n_hot(label_sets, index: dict[str, int], dtype=np.float32) -> np.ndarray:
    """``N label lists, {class: column} -> (N, K)`` with 1 where a list names the class."""
    out = np.zeros((len(label_sets), len(index)), dtype)
    for i, labels in enumerate(label_sets):
        out[i, [index[c] for c in labels]] = 1
    return out
