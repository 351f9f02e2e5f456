"""Batch inference of an ensemble with Ray Data actors: audio → log-mel → every member's scores.

Inputs (``kind``):

- ``excerpts``: noisy clip rows of a shards folder; each clip gives its two excerpts of every
  split (the relabelling data, report §4.1); keys are :func:`~ray_tagger.splits.excerpt_id` s.
- ``clips``: clip rows of a shards folder (e.g. ``source=test``); keys are clip ids.
- ``files``: rows with a ``path`` to an audio file of any sample rate and channel count
  (downmixed, resampled to the model's rate with torchaudio); keys are file names.
- ``relabel``: noisy and curated clip rows with their ``source`` (:func:`relabel_rows`): a noisy
  row gives its excerpts (as ``excerpts``); a curated clip named in ``held_out`` gives its whole
  clip keyed :func:`curated_key`, scored only by the members ``held_out`` names for it (the
  others' rows NaN) — the relabelling stage's two inputs in one pass.

An ensemble member is a ``model.pt`` written by ``train`` (weights as tensors; model and feature
configuration, class list and normalisation statistics as JSON; :mod:`ray_tagger.modelfile`,
read without running code). Members must agree on everything but the
weights. Output per key: ``(M, K)`` scores, one row per member, averaged by the caller.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pyarrow as pa
import ray

from .config import _build
from .decode import decode, to_float
from .features import FeatureConfig, normalized_clips
from .console import count_progress
from .model import CRNN, ModelConfig, fast_layout
from .modelfile import load_model
from .normalization import NormStats
from .scoring import score_features, window_frames
from .splits import excerpt_id
from .storage import location

log = logging.getLogger(__name__)

KINDS = ("excerpts", "clips", "files", "relabel")
BATCH = 16
CURATED = "curated/"
"""Prefix of a curated clip's key in a ``relabel`` pass (a file name holds no ``/``, so no excerpt id has it)."""


def curated_key(clip_id: str) -> str:
    return CURATED + clip_id


def member_paths(run_dir: str | Path) -> list[Path]:
    """The ``model.pt`` files of a run folder: an ensemble (``ensemble.json``), one training run,
    or a ``ray-tagger run`` folder (its final ensemble)."""
    root = location(run_dir)
    for candidate in (root / "ensemble.json", root / "final" / "ensemble.json"):
        if candidate.is_file():
            members = json.loads(candidate.read_text())["members"]
            return [candidate.parent / m for m in members]
    if (root / "model.pt").is_file():
        return [root / "model.pt"]
    raise FileNotFoundError(f"{root}: no ensemble.json, final/ensemble.json or model.pt; is it a run folder?")


def blend_warning(run_dir: str | Path, what: str) -> str | None:
    """For the commands that score with the final models alone (``what``: ``tag --frames``, ``export``): a
    line saying that the ``ray-tagger run`` folder ``run_dir`` (or its ``final/``) submitted a blend with
    the classical baseline (:func:`~ray_tagger.baseline.load_blend`); else None."""
    from .baseline import load_blend, run_root

    blend = load_blend(run_dir)
    if blend is None:
        return None
    return (f"{run_root(run_dir)}: its run's submission blends the classical baseline in at weight {blend.weight:g}; "
            f"{what} scores with the final models alone")


def load_member(path: str | Path, channels_last: bool = True) -> tuple[CRNN, dict]:
    """A trained model in eval mode and its metadata (classes, features, stats, run); its weights in
    channels-last layout unless ``channels_last`` is False (:func:`~ray_tagger.model.fast_layout`)."""
    weights, meta = load_model(path)
    model = CRNN(_build(ModelConfig, meta["model_config"]))
    model.load_state_dict(weights)
    if channels_last:
        fast_layout(model)
    model.eval()
    return model, meta


def check_model_files(paths: list[Path]) -> list[dict]:
    """Every member's metadata, read without running code (:mod:`ray_tagger.modelfile`), before any
    Ray work starts: a foreign or tampered file fails here with one line naming it."""
    metas = [load_model(p)[1] for p in paths]
    check_members(metas)
    return metas


def check_members(metas: list[dict]) -> None:
    """Members must share classes, features and statistics (else their scores do not average)."""
    first = metas[0]
    for m in metas[1:]:
        for key in ("classes", "features", "stats", "crop_s"):
            if m.get(key) != first.get(key):
                raise ValueError(f"ensemble members disagree on {key}: run {first.get('run')} vs {m.get('run')}")


def read_audio(path: str | Path, sample_rate: int) -> np.ndarray:
    """Any audio file soundfile reads → mono float32 ``(T,)`` at ``sample_rate`` (torchaudio resampling)."""
    import soundfile as sf
    import torch
    import torchaudio

    try:
        data, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as e:  # soundfile raises several types; the message is what matters
        reason = str(e).replace(f"Error opening {str(path)!r}: ", "").strip() or type(e).__name__
        raise ValueError(f"{path}: cannot read audio ({reason})") from None
    if data.shape[0] == 0:
        raise ValueError(f"{path}: no samples")
    mono = torch.from_numpy(np.ascontiguousarray(data.mean(axis=1)))
    if sr != sample_rate:
        mono = torchaudio.functional.resample(mono, sr, sample_rate)
    return mono.numpy()


class EnsembleScorer:
    """Scores waves with every member. ``__call__``: a batch of input rows (see module doc) →
    ``key (B',)``, ``scores (B', M, K)`` float32, ``error (B',)`` (B' = examples, two per split for
    excerpts; ``error`` is non-empty only for an audio file that could not be read); with ``pooled``
    also ``pooled (B', 3F)``, the classical baseline's features of each example
    (:func:`~ray_tagger.baseline.pooled_clip`, from the same normalised log-mel). ``held_out``
    (``relabel`` only): curated clip id → the indices of the members that score it."""

    def __init__(self, members: list[str], kind: str, audio_format: str | None = None, splits: list[int] | None = None,
                 pooled: bool = False, held_out: dict[str, list[int]] | None = None):
        import torch

        from .features import LogMel

        torch.set_num_threads(1)
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}")
        loaded = [load_member(p) for p in members]
        check_members([m for _, m in loaded])
        self.models = [m for m, _ in loaded]
        meta = loaded[0][1]
        self.classes = meta["classes"]
        self.features = FeatureConfig(**meta["features"])
        self.stats = NormStats.from_json(meta["stats"])
        self.logmel = LogMel(self.features)
        self.window = window_frames(meta.get("crop_s"), self.features)
        self.kind, self.audio_format, self.splits, self.pooled = kind, audio_format, splits or [], pooled
        self.held_out = held_out or {}

    def _waves(self, rows: list[dict], bad: list[tuple[str, str]]) -> tuple[list[str], list[np.ndarray]]:
        """Keys and waves of ``rows``; an unreadable file (``files`` only) goes to ``bad`` as (key, message)."""
        keys, waves = [], []
        for r in rows:
            if self.kind == "files":
                try:
                    wave = read_audio(r["path"], self.features.sample_rate)
                except ValueError as e:
                    bad.append((Path(r["path"]).name, str(e)))
                    continue
                keys.append(Path(r["path"]).name)
                waves.append(wave)
                continue
            curated = self.kind == "relabel" and r["source"] == "curated"
            if curated and r["clip_id"] not in self.held_out:
                continue
            audio = to_float(decode(r["audio"], self.audio_format))
            if self.kind == "clips" or curated:
                keys.append(r["clip_id"] if self.kind == "clips" else curated_key(r["clip_id"]))
                waves.append(audio)
                continue
            for split in self.splits:
                cut = r["cuts"][split]
                for part, (start, stop) in enumerate(((0, cut), (cut, len(audio)))):
                    keys.append(excerpt_id(r["clip_id"], split, part))
                    waves.append(audio[start:stop])
        return keys, waves

    def scores(self, waves: list[np.ndarray]) -> np.ndarray:
        """``B waves (T_b,) -> (B, M, K)`` eval-mode scores (:func:`~ray_tagger.scoring.score_features`)."""
        return self.scores_and_pooled(waves)[0]

    def scores_and_pooled(self, waves: list[np.ndarray], keys: list[str] | None = None) -> tuple[np.ndarray, np.ndarray | None]:
        """``B waves (T_b,) -> (B, M, K)`` scores and, with ``pooled``, ``(B, 3F)`` pooled features (else None).
        Given the waves' ``keys``, a curated clip's (``relabel``) by its ``held_out`` members only, NaN for the rest."""
        from .baseline import pooled_clip

        feats = normalized_clips(self.logmel, self.stats, waves)
        pooled = np.stack([pooled_clip(f) for f in feats]) if self.pooled else None
        everyone = tuple(range(len(self.models)))
        groups: dict[tuple[int, ...], list[int]] = {}
        for b, key in enumerate(keys or [""] * len(feats)):
            curated = self.kind == "relabel" and key.startswith(CURATED)
            groups.setdefault(tuple(self.held_out[key[len(CURATED):]]) if curated else everyone, []).append(b)
        out = np.full((len(feats), len(self.models), len(self.classes)), np.nan, np.float32)
        for members, rows in groups.items():
            out[np.ix_(rows, members)] = score_features([self.models[m] for m in members], [feats[b] for b in rows],
                                                        self.window, batch_size=BATCH)
        return out, pooled

    def __call__(self, batch: pa.Table) -> dict:
        """``-> {key, scores (B, M, K), error}`` (and ``pooled (B, 3F)``): a file that could not be read is a
        row of zeros with its message in ``error`` (empty for the rows that were scored)."""
        bad: list[tuple[str, str]] = []
        keys, waves = self._waves(batch.to_pylist(), bad)
        width = 3 * self.features.n_mels
        scores, pooled = self.scores_and_pooled(waves, keys) if waves else \
            (np.zeros((0, len(self.models), len(self.classes)), np.float32), np.zeros((0, width), np.float32))
        if bad:
            scores = np.concatenate([scores, np.zeros((len(bad), *scores.shape[1:]), scores.dtype)])
        out = {"key": np.array(keys + [k for k, _ in bad], dtype=object), "scores": scores,
               "error": np.array([""] * len(keys) + [m for _, m in bad], dtype=object)}
        if self.pooled:
            out["pooled"] = np.concatenate([pooled, np.zeros((len(bad), width), np.float32)]) if bad else pooled
        return out


def score(ds: ray.data.Dataset, members: list[str | Path], kind: str, audio_format: str | None = None,
          splits: list[int] | None = None, actors: int = 1, rows_per_batch: int = 8,
          bad: list[tuple[str, str]] | None = None, pooled: list[np.ndarray] | None = None,
          held_out: dict[str, list[int]] | None = None) -> tuple[list[str], np.ndarray]:
    """Run :class:`EnsembleScorer` over ``ds`` on an actor pool; ``-> keys, (N, M, K)`` scores of the inputs
    that could be read (``held_out``: see the class). Unreadable files (``files``) are appended to ``bad`` as
    (name, message), or raise when ``bad`` is None. Given a list, ``pooled`` receives one ``(N, 3F)`` array:
    the same inputs' pooled log-mel features (the classical baseline's input), row for row."""
    scored = ds.map_batches(
        EnsembleScorer,
        fn_constructor_kwargs={"members": [str(location(p)) for p in members], "kind": kind,
                               "audio_format": audio_format, "splits": splits, "pooled": pooled is not None,
                               "held_out": held_out},
        batch_size=rows_per_batch, batch_format="pyarrow",
        compute=ray.data.ActorPoolStrategy(size=actors), num_cpus=1,
    )
    scored.set_name(f"ensemble_scores_{kind}")  # how the pipeline shows in the dashboard and the logs
    keys, scores, features, failed, rows = [], [], [], [], 0
    with count_progress(f"scoring ({kind})", "examples") as advance:
        for b in scored.iter_batches(batch_size=64, batch_format="numpy"):
            ok = b["error"] == ""
            keys.extend(b["key"][ok].tolist())
            scores.append(b["scores"][ok])
            if pooled is not None:
                features.append(b["pooled"][ok])
            failed.extend(zip(b["key"][~ok].tolist(), b["error"][~ok].tolist()))
            rows += len(b["key"])
            advance(len(b["key"]))
    if len(set(keys) | {k for k, _ in failed}) != rows:
        raise ValueError("duplicate input names: two inputs share a file name")
    if failed and bad is None:
        raise ValueError(failed[0][1])
    if bad is not None:
        bad.extend(failed)
    if not keys:
        raise ValueError(f"nothing could be scored: all {rows} inputs are unreadable" if rows else "nothing to score: the input has no rows")
    if pooled is not None:
        pooled.append(np.concatenate(features))
    return keys, np.concatenate(scores)


def shard_rows(shards_dir: str | Path, source: str, actors: int = 1) -> ray.data.Dataset:
    """The clip rows of one source of a shards folder (for ``clips`` and ``excerpts``). Read into 4 blocks
    per scoring actor: a shard file is one block otherwise, and one block goes to one actor however many
    there are."""
    return _read_sources(shards_dir, [source], actors)


def relabel_rows(shards_dir: str | Path, actors: int = 1) -> ray.data.Dataset:
    """Every noisy and curated clip row, each with its ``source`` (for ``relabel``; blocks as :func:`shard_rows`)."""
    return _read_sources(shards_dir, ["noisy", "curated"], actors, ["source"])


def _read_sources(shards_dir: str | Path, sources: list[str], actors: int, extra: list[str] = ()) -> ray.data.Dataset:
    """The rows of ``sources`` (``source=NAME`` folders under ``audio/``; ``extra`` may name the partition column
    ``source``, which Ray Data reads from the folder names)."""
    paths = [location(shards_dir) / "audio" / f"source={source}" for source in sources]
    for path, source in zip(paths, sources):
        if not path.is_dir():
            raise FileNotFoundError(f"{shards_dir}: no {source} shards")
    return ray.data.read_parquet([str(p) for p in paths], columns=["clip_id", "num_samples", "cuts", "audio", *extra],
                                 override_num_blocks=4 * actors if actors > 1 else None)


def file_rows(paths: list[str | Path]) -> ray.data.Dataset:
    missing = [str(p) for p in paths if not Path(p).is_file()]
    if missing:
        raise FileNotFoundError(f"no such audio file: {missing[0]}" + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))
    return ray.data.from_items([{"path": str(Path(p).resolve())} for p in paths])
