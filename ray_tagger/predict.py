"""``ray-tagger predict`` and ``ray-tagger tag``: an ensemble's averaged scores for new audio.

``predict`` takes the test clips of a shards folder, a folder of audio files, audio files, or
a ``.txt`` list of audio paths, scores them with Ray Data actors (:mod:`ray_tagger.infer`) and
writes a Kaggle submission (``fname`` + one column per class, in the vocabulary's order).
``tag`` scores a few files in this process and returns their top classes; ``tag_seconds`` does
so for every second of each file. Given a ``ray-tagger run`` folder whose submission blended in the
classical baseline (:func:`~ray_tagger.baseline.load_blend`), ``predict`` and ``tag`` blend it in
the same way; ``tag_seconds`` scores with the final models alone. Audio files that cannot be read are skipped with one log line
each; only when nothing could be read is it an error.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from .infer import EnsembleScorer, check_model_files, file_rows, member_paths, read_audio, score, shard_rows
from .runtime import ensure_ray
from .storage import location

log = logging.getLogger(__name__)

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".aiff", ".aif", ".mp3")


def resolve_inputs(inputs: list[str | Path]) -> tuple[str, object]:
    """``('shards', dir)`` for a shards folder, else ``('files', [paths])`` from folders, files and ``.txt`` lists."""
    if len(inputs) == 1 and (location(inputs[0]) / "manifest.json").is_file():
        return "shards", location(inputs[0])
    paths = [Path(p) for p in inputs]
    files: list[Path] = []
    for p in paths:
        if p.is_dir():
            found = sorted(f for f in p.iterdir() if f.suffix.lower() in AUDIO_SUFFIXES)
            if not found:
                raise FileNotFoundError(f"{p}: no audio files ({', '.join(AUDIO_SUFFIXES)}) and no manifest.json")
            files.extend(found)
        elif p.suffix == ".txt" and p.is_file():
            files.extend(Path(line.strip()) for line in p.read_text().splitlines() if line.strip())
        else:
            files.append(p)
    return "files", files


def predict_scores(run_dir: str | Path, inputs: list[str | Path], actors: int = 1,
                   pooled: list[np.ndarray] | None = None) -> tuple[list[str], np.ndarray, list[str], list[Path]]:
    """``-> fnames, (N, M, K) per-member scores, classes, member paths`` (inputs as in :func:`resolve_inputs`);
    ``pooled``, given a list, receives the ``(N, 3F)`` pooled features of the same inputs (:func:`~ray_tagger.infer.score`)."""
    from .stream import shard_meta

    ensure_ray()
    members = member_paths(run_dir)
    classes = check_model_files(members)[0]["classes"]
    kind, what = resolve_inputs(inputs)
    if kind == "shards":
        _, _, audio_format = shard_meta(what)
        keys, scores = score(shard_rows(what, "test", actors), members, "clips", audio_format, actors=actors, pooled=pooled)
    else:
        bad: list[tuple[str, str]] = []
        keys, scores = score(file_rows(what), members, "files", actors=actors, bad=bad, pooled=pooled)
        _report_bad(bad, len(keys) + len(bad))
    return keys, scores, classes, members


def write_submission(path: str | Path, fnames: list[str], scores: np.ndarray, classes: list[str]) -> None:
    """Kaggle format: ``fname`` + one column per class; ``scores`` is ``(N, K)``."""
    table = pd.DataFrame(scores, columns=classes)
    table.insert(0, "fname", fnames)
    path = location(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(table.to_csv(index=False, float_format="%.6f"))


def predict(run_dir: str | Path, inputs: list[str | Path], out: str | Path, actors: int = 1) -> dict:
    """Ensemble-averaged scores of ``inputs`` into the submission ``out``, blended with the run's classical
    baseline as its own submission was, if it was (``baseline_weight`` in the result: its weight, or 0)."""
    blend = _blend(run_dir)
    pooled = None if blend is None else []
    fnames, scores, classes, members = predict_scores(run_dir, inputs, actors, pooled)
    write_submission(out, fnames, scores.mean(axis=1) if blend is None else blend.apply(scores, pooled[0]), classes)
    return {"rows": len(fnames), "members": len(members), "classes": len(classes), "out": str(out),
            "baseline_weight": 0.0 if blend is None else blend.weight}


def _blend(run_dir: str | Path):
    """The run's :class:`~ray_tagger.baseline.BaselineBlend`, checked against its final models, or None."""
    from .baseline import load_blend

    return load_blend(run_dir, check_model_files(member_paths(run_dir))[0])


def _report_bad(bad: list[tuple[str, str]], total: int) -> None:
    """One line per input that could not be read (the others are scored)."""
    for _, message in bad:
        log.warning("skipped (not scored): %s", message)
    if bad:
        log.warning("%d of %d inputs could not be read and are not in the output", len(bad), total)


def _readable(files: list[str | Path], sample_rate: int) -> tuple[list[str | Path], list[np.ndarray]]:
    """The files that can be read and their waves; one line per other file (:func:`_report_bad`), an
    error when none can be read."""
    good, waves, bad = [], [], []
    for f in files:
        try:
            waves.append(read_audio(f, sample_rate))
            good.append(f)
        except ValueError as e:
            bad.append((str(f), str(e)))
    _report_bad(bad, len(files))
    if not good:
        raise ValueError(f"nothing could be scored: all {len(files)} files are unreadable")
    return good, waves


def _top(row: np.ndarray, classes: list[str], top: int) -> list[tuple[str, float]]:
    return [(classes[c], float(row[c])) for c in np.argsort(-row, kind="stable")[:top]]


def tag(run_dir: str | Path, files: list[str | Path], top: int = 5) -> list[tuple[str, list[tuple[str, float]]]]:
    """``-> [(file, [(class, score)] * top)]``: the ensemble's top classes per readable file (in this
    process; a model file that is not code-free is refused as it loads, :mod:`ray_tagger.modelfile`),
    blended with the run's classical baseline as :func:`predict` does."""
    blend = _blend(run_dir)
    scorer = EnsembleScorer([str(m) for m in member_paths(run_dir)], "files", pooled=blend is not None)
    good, waves = _readable(files, scorer.features.sample_rate)
    scores, pooled = scorer.scores_and_pooled(waves)
    mean = scores.mean(axis=1) if blend is None else blend.apply(scores, pooled)
    return [(str(f), _top(row, scorer.classes, top)) for f, row in zip(good, mean)]


def tag_seconds(run_dir: str | Path, files: list[str | Path], top: int = 5,
                window_s: float | None = None) -> list[tuple[str, list[list[tuple[str, float]]]]]:
    """``-> [(file, per second [(class, score)] * top)]``: the ensemble's top classes in every second of
    each readable file (:func:`~ray_tagger.scoring.score_seconds`). Second i is scored on a window of
    ``window_s`` seconds (default: the models' training crop, else 1 s) centred on it."""
    from .features import normalized_clips
    from .scoring import score_seconds, window_frames

    scorer = EnsembleScorer([str(m) for m in member_paths(run_dir)], "files")
    window = window_frames(window_s, scorer.features) or scorer.window or window_frames(1.0, scorer.features)
    per_second = scorer.features.sample_rate / scorer.features.hop_length
    good, waves = _readable(files, scorer.features.sample_rate)
    out = []
    for f, feat in zip(good, normalized_clips(scorer.logmel, scorer.stats, waves)):
        mean = score_seconds(scorer.models, feat, window, per_second).mean(axis=1)  # (S, K)
        out.append((str(f), [_top(row, scorer.classes, top) for row in mean]))
    return out
