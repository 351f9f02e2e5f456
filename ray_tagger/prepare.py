"""``ray-tagger prepare``: a data set folder → verified Parquet shards, as a Ray Data job.

Two Ray Data passes over the clips named by the CSVs:

1. *inspect* — decode and validate every file and take its log-mel (with
   :mod:`ray_tagger.features`): the training clips' sums give the normalisation statistics, and
   every clip's per-band mean, std and max over its frames go to ``pooled.parquet`` (the
   classical baseline's input, :mod:`ray_tagger.baseline`, which then needs no pass of its own).
2. *encode* — decode the valid clips again, encode them losslessly and write them as
   Parquet shards, partitioned by source.

Noisy clips are stored once; each of the ``splits`` random cuts (report §3.1) is stored as a
sample index in the clip's ``cuts`` list and spelled out as two excerpt rows per split in
``excerpts.parquet``.

The target is a local folder or an object-store URI (:mod:`ray_tagger.storage`), written the
same way: object stores cannot rename, so instead of a staging folder the manifest is the
commit marker. Prepare first writes ``_PREPARING``, removes the manifest and anything an
earlier prepare left, writes the shards, then ``manifest.json`` last and removes the marker.
Later stages read only folders with a manifest, so an interrupted run leaves nothing they
read, and the next prepare into the same folder recognises the marker and starts afresh.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import ray

from . import __version__
from .decode import AUDIO_FORMATS, BadAudio, encode, read_source, to_float
from .features import FeatureConfig
from .layout import SOURCES, ClipRecord, DataSetIndex, Problem, read_dataset
from .normalization import StatsAccumulator
from .runtime import cpu_tasks, ensure_ray, using_execution_options
from .splits import assign_folds, excerpt_id, noisy_cut
from .storage import location, remove_tree

log = logging.getLogger(__name__)

SHARDS_FORMAT = "ray_tagger.shards/1"
IN_PROGRESS = "_PREPARING"
"""The marker of a shards folder being written (no manifest yet, or a stale one about to go)."""
TRAIN_SOURCES = ("curated", "noisy")

AUDIO_SCHEMA = pa.schema(
    [
        ("clip_id", pa.string()),
        ("source", pa.string()),
        ("labels", pa.list_(pa.string())),
        ("sample_rate", pa.int32()),
        ("num_samples", pa.int64()),
        ("duration_s", pa.float64()),
        ("fold", pa.int8()),
        ("cuts", pa.list_(pa.int64())),
        ("audio", pa.binary()),
    ]
)
"""One row per clip in ``audio/source=<source>/*.parquet``."""

EXCERPT_SCHEMA = pa.schema(
    [
        ("excerpt_id", pa.string()),
        ("clip_id", pa.string()),
        ("split", pa.int8()),
        ("part", pa.int8()),
        ("start", pa.int64()),
        ("stop", pa.int64()),
        ("labels", pa.list_(pa.string())),
    ]
)
"""Two rows per noisy clip and split in ``excerpts.parquet``: samples [start, stop)."""

POOLED_SCHEMA = pa.schema(
    [
        ("clip_id", pa.string()),
        ("source", pa.string()),
        ("frames", pa.int64()),
        ("mean", pa.list_(pa.float64())),
        ("std", pa.list_(pa.float64())),
        ("max", pa.list_(pa.float64())),
    ]
)
"""One row per written clip in ``pooled.parquet``: its log-mel's per-band mean, population std and
max over its ``frames`` frames ``(F,)`` each, before normalisation (the statistics are an affine map
per band, so the normalised values follow from ``stats.json``)."""


@dataclass(frozen=True)
class PrepareConfig:
    """Data preparation settings; defaults follow the report and DESIGN §2."""

    splits: int = 3
    """Independent random cuts of the noisy clips (report §4: three splits)."""
    folds: int = 5
    """Folds over the curated clips for the relabelling models (report §4.1)."""
    seed: int = 0
    """Base seed; split s uses (seed, s), folds use (seed, 'fold')."""
    on_bad: str = "skip"
    """'skip': record bad rows in the manifest and go on; 'fail': stop at the first."""
    audio_format: str = "flac"
    """Lossless storage of the samples: 'flac' or 'pcm16'."""
    cut_low: float = 0.1
    """Lower bound of the cut position r in r·T (report §3.1)."""
    cut_high: float = 0.9
    """Upper bound of the cut position r in r·T (report §3.1)."""
    clips_per_batch: int = 8
    """Clips per Ray Data batch in both passes."""
    rows_per_file: int = 256
    """At least this many clips per Parquet file (the last file of a source may hold fewer)."""
    features: FeatureConfig = field(default_factory=FeatureConfig)
    """Feature extractor used for the normalisation statistics."""

    def __post_init__(self) -> None:
        if self.on_bad not in ("skip", "fail"):
            raise ValueError(f"on_bad must be 'skip' or 'fail', got {self.on_bad!r}")
        if self.audio_format not in AUDIO_FORMATS:
            raise ValueError(f"audio_format must be one of {AUDIO_FORMATS}, got {self.audio_format!r}")
        if self.splits < 1 or self.folds < 2:
            raise ValueError("need at least 1 split and 2 folds")
        if not 0.0 < self.cut_low < self.cut_high < 1.0:
            raise ValueError("need 0 < cut_low < cut_high < 1")


class BadInputError(Exception):
    """A bad input row met with ``on_bad='fail'``; ``str()`` is one line naming file and reason."""

    def __init__(self, problem: Problem):
        super().__init__(problem.reason)
        self.problem = problem


def prepare(data_dir: str | Path, shards_dir: str | Path, config: PrepareConfig = PrepareConfig()) -> dict:
    """Prepare ``data_dir`` into ``shards_dir``; returns the manifest (also in manifest.json).

    Re-running on unchanged input and settings returns the existing manifest untouched.
    Raises :class:`~ray_tagger.layout.LayoutError` for an unreadable data set folder and
    :class:`BadInputError` for a bad row when ``config.on_bad == 'fail'``.
    """
    shards_dir = location(shards_dir)
    index = read_dataset(data_dir)
    fingerprint = _fingerprint(index, config)
    existing = _existing_manifest(shards_dir)
    if existing is not None and existing.get("fingerprint") == fingerprint:
        log.info("%s is up to date with %s; nothing to do", shards_dir, data_dir)
        return existing
    ensure_ray()
    bad_rows = [r for r in index.records if r.problem is not None]
    if config.on_bad == "fail" and bad_rows:
        raise BadInputError(bad_rows[0].problem)
    candidates = [r for r in index.records if r.problem is None]
    log.info(
        "prepare: %s layout, %d classes, %s rows; inspecting %d clips",
        index.layout, len(index.vocabulary),
        ", ".join(f"{index.count(s)} {s}" for s in SOURCES), len(candidates),
    )
    inspected = _inspect(candidates, config)
    problems = inspected["problems"]
    check_visible(candidates, problems)
    if config.on_bad == "fail" and problems:
        raise BadInputError(problems[min(problems)])
    good = [(i, r) for i, r in enumerate(candidates) if i not in problems]
    t0 = time.perf_counter()
    _begin(shards_dir)
    _write_audio(good, inspected["num_samples"], shards_dir, config)
    excerpts = _write_excerpts(good, inspected["num_samples"], shards_dir, config)
    stats = inspected["stats"].finalize()
    (shards_dir / "stats.json").write_text(json.dumps(stats.to_json(), indent=1))
    _write_pooled(good, inspected["pooled"], shards_dir)
    (shards_dir / "vocabulary.json").write_text(json.dumps({"classes": list(index.vocabulary)}, indent=1))
    skipped = bad_rows + [dataclasses.replace(candidates[i], problem=p) for i, p in sorted(problems.items())]
    manifest = _manifest(data_dir, index, config, fingerprint, good, inspected, skipped, excerpts, stats)
    manifest["write_seconds"] = round(time.perf_counter() - t0, 3)
    manifest["files"] = sorted(str(p.relative_to(shards_dir)) for p in shards_dir.rglob("*")
                               if p.name not in (IN_PROGRESS, "manifest.json") and p.is_file()) + ["manifest.json"]
    (shards_dir / "manifest.json").write_text(json.dumps(manifest, indent=1))  # the commit
    (shards_dir / IN_PROGRESS).unlink(missing_ok=True)
    return manifest


# -- pass 1: inspect ------------------------------------------------------------------------


@functools.lru_cache(maxsize=2)
def _logmel(features: FeatureConfig):
    """One extractor per worker process (Ray reuses worker processes across tasks)."""
    import torch

    from .features import LogMel

    torch.set_num_threads(1)
    return LogMel(features)


def inspect_clips(batch: dict[str, np.ndarray], features: FeatureConfig) -> dict[str, np.ndarray]:
    """Ray Data task: validate clips; each valid clip's log-mel sums over its frames.

    Batch in: ``idx (B,), path (B,)``. Batch out: ``idx (B,), num_samples (B,), kind (B,),
    reason (B,), band_sum (B, F), band_sumsq (B, F), band_max (B, F), frames (B,)`` (zeros for a
    bad clip).
    """
    import torch

    n, n_mels = len(batch["idx"]), features.n_mels
    out = {
        "idx": batch["idx"], "num_samples": np.zeros(n, np.int64),
        "kind": np.array([""] * n, dtype=object), "reason": np.array([""] * n, dtype=object),
        "band_sum": np.zeros((n, n_mels)), "band_sumsq": np.zeros((n, n_mels)), "band_max": np.zeros((n, n_mels)),
        "frames": np.zeros(n, np.int64),
    }
    for j, path in enumerate(batch["path"]):
        try:
            samples = read_source(str(path), features.sample_rate)
        except BadAudio as e:
            out["kind"][j], out["reason"][j] = e.problem.kind, e.problem.reason
            continue
        out["num_samples"][j] = samples.shape[0]
        with torch.no_grad():
            x = _logmel(features).clip(torch.from_numpy(to_float(samples))).double().numpy()
        out["band_sum"][j], out["band_sumsq"][j], out["band_max"][j] = x.sum(1), (x * x).sum(1), x.max(1)
        out["frames"][j] = x.shape[1]
    return out


def _inspect(candidates: list[ClipRecord], config: PrepareConfig) -> dict:
    items = [{"idx": i, "path": r.path} for i, r in enumerate(candidates)]
    n, n_mels = len(candidates), config.features.n_mels
    num_samples = np.zeros(n, np.int64)
    pooled = {"band_sum": np.zeros((n, n_mels)), "band_sumsq": np.zeros((n, n_mels)), "band_max": np.zeros((n, n_mels)),
              "frames": np.zeros(n, np.int64)}
    problems: dict[int, Problem] = {}
    stats = StatsAccumulator(n_mels)
    if not candidates:
        return {"num_samples": num_samples, "problems": problems, "stats": stats, "pooled": pooled}
    ds = ray.data.from_items(items, override_num_blocks=_num_blocks(len(candidates), config)).map_batches(
        inspect_clips, fn_kwargs={"features": config.features}, batch_size=config.clips_per_batch, num_cpus=1,
        compute=cpu_tasks(),
    )
    for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
        for j, i in enumerate(batch["idx"]):
            if batch["kind"][j]:
                problems[int(i)] = Problem(str(batch["kind"][j]), str(batch["reason"][j]))
                continue
            num_samples[i] = batch["num_samples"][j]
            for key, values in pooled.items():
                values[i] = batch[key][j]
        if config.on_bad == "fail" and problems:
            break  # leaving the iterator stops the streaming job
    # summed in the data set's order, not in the order the tasks finished: float sums depend on their order
    for i, r in enumerate(candidates):
        if i not in problems and r.source in TRAIN_SOURCES:
            stats.add_sums(pooled["band_sum"][i], pooled["band_sumsq"][i], pooled["frames"][i])
    return {"num_samples": num_samples, "problems": problems, "stats": stats, "pooled": pooled}


def check_visible(candidates: list[ClipRecord], problems: dict[int, Problem]) -> None:
    """Refuse (:class:`FileNotFoundError`, one line) when the Ray workers missed files that this
    process reads: on a cluster whose nodes do not all see the data set folder they would
    otherwise be skipped as ``missing_file`` rows and the shards written without them."""
    unseen = [candidates[i].path for i, p in sorted(problems.items()) if p.kind == "missing_file"
              and os.path.isfile(candidates[i].path)]
    if unseen:
        raise FileNotFoundError(
            f"{len(unseen)} audio files that this process reads (e.g. {unseen[0]}) were missing on the Ray node that "
            "inspected them: the data set folder must be readable at the same path on every node of the Ray cluster (a "
            "shared mount), or prepare with a local Ray (without RAY_ADDRESS) into the shards folder or bucket")


# -- pass 2: encode and write ---------------------------------------------------------------


def encode_clips(batch: pa.Table, sample_rate: int, audio_format: str) -> pa.Table:
    """Ray Data task: re-read valid clips and encode them into shard rows.

    Batch in: the clip table (one row per clip, no audio). Batch out: rows of
    :data:`AUDIO_SCHEMA`.
    """
    rows = batch.to_pylist()
    for row in rows:
        samples = read_source(row.pop("path"), sample_rate)
        if samples.shape[0] != row["num_samples"]:
            raise RuntimeError(f"{row['clip_id']}: audio changed while prepare was running")
        row["audio"] = encode(samples, sample_rate, audio_format)
    return pa.Table.from_pylist(rows, schema=AUDIO_SCHEMA)


def _clip_rows(good: list[tuple[int, ClipRecord]], num_samples: np.ndarray, config: PrepareConfig) -> list[dict]:
    folds = assign_folds([r.fname for _, r in good if r.source == "curated"], config.folds, config.seed)
    sr = config.features.sample_rate
    rows = []
    for i, r in good:
        n = int(num_samples[i])
        cuts = [noisy_cut(r.fname, n, config.seed, s, config.cut_low, config.cut_high) for s in range(config.splits)]
        rows.append({
            "clip_id": r.fname, "source": r.source, "labels": list(r.labels), "sample_rate": sr,
            "num_samples": n, "duration_s": n / sr, "fold": folds.get(r.fname, -1),
            "cuts": cuts if r.source == "noisy" else [], "path": r.path,
        })
    return rows


def _write_audio(good: list[tuple[int, ClipRecord]], num_samples: np.ndarray, shards_dir, config: PrepareConfig) -> None:
    if not good:
        log.warning("no valid clips: writing no audio shards")
        return
    rows = _clip_rows(good, num_samples, config)
    ds = ray.data.from_items(rows, override_num_blocks=_num_blocks(len(good), config)).map_batches(
        encode_clips,
        fn_kwargs={"sample_rate": config.features.sample_rate, "audio_format": config.audio_format},
        batch_size=config.clips_per_batch,
        batch_format="pyarrow",
        num_cpus=1,
        compute=cpu_tasks(),
    )
    # the clips reach the files in the data set's order whichever encode task finishes first: a training stream
    # reads a file's rows in the order they are stored, so two prepares of one data set must store the same order
    with using_execution_options(ds.context, ray.data.ExecutionOptions(preserve_order=True)):
        ds.write_parquet(str(shards_dir / "audio"), partition_cols=["source"], min_rows_per_file=config.rows_per_file)


def _write_excerpts(good: list[tuple[int, ClipRecord]], num_samples: np.ndarray, shards_dir, config: PrepareConfig) -> int:
    rows = []
    for i, r in good:
        if r.source != "noisy":
            continue
        n = int(num_samples[i])
        for s in range(config.splits):
            cut = noisy_cut(r.fname, n, config.seed, s, config.cut_low, config.cut_high)
            for part, (start, stop) in enumerate(((0, cut), (cut, n))):
                rows.append({
                    "excerpt_id": excerpt_id(r.fname, s, part), "clip_id": r.fname, "split": s, "part": part,
                    "start": start, "stop": stop, "labels": list(r.labels),
                })
    pq.write_table(pa.Table.from_pylist(rows, schema=EXCERPT_SCHEMA), str(shards_dir / "excerpts.parquet"))
    return len(rows)


def _write_pooled(good: list[tuple[int, ClipRecord]], pooled: dict[str, np.ndarray], shards_dir) -> None:
    """``pooled.parquet`` (:data:`POOLED_SCHEMA`) from the inspect pass's sums of the written clips."""
    idx = np.array([i for i, _ in good], np.int64)
    frames = pooled["frames"][idx]
    n = np.maximum(frames, 1)[:, None]  # every decoded clip has at least one frame (the STFT is centred)
    mean = pooled["band_sum"][idx] / n
    std = np.sqrt(np.maximum(pooled["band_sumsq"][idx] / n - mean**2, 0.0))
    table = pa.table({"clip_id": [r.fname for _, r in good], "source": [r.source for _, r in good], "frames": frames,
                      "mean": list(mean), "std": list(std), "max": list(pooled["band_max"][idx])}, schema=POOLED_SCHEMA)
    pq.write_table(table, str(shards_dir / "pooled.parquet"))


# -- bookkeeping ----------------------------------------------------------------------------


def _manifest(data_dir, index: DataSetIndex, config: PrepareConfig, fingerprint: str, good, inspected, skipped, excerpts, stats) -> dict:
    sr = config.features.sample_rate
    counts = {}
    for s in SOURCES:
        written = [i for i, r in good if r.source == s]
        counts[s] = {
            "total": index.count(s),
            "written": len(written),
            "skipped": sum(r.source == s for r in skipped),
            "audio_seconds": round(float(sum(inspected["num_samples"][i] for i in written)) / sr, 3),
        }
    by_kind: dict[str, int] = {}
    for r in skipped:
        by_kind[r.problem.kind] = by_kind.get(r.problem.kind, 0) + 1
    return {
        "format": SHARDS_FORMAT,
        "ray_tagger_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "data_dir": str(Path(data_dir).resolve()),
        "layout": index.layout,
        "fingerprint": fingerprint,
        "config": dataclasses.asdict(config),
        "audio_format": config.audio_format,
        "classes": len(index.vocabulary),
        "counts": counts,
        "excerpts": excerpts,
        "stats": {"frames": stats.frames, "std": stats.std},
        "skipped_by_kind": by_kind,
        "skipped": [
            {"source": r.source, "fname": r.fname, "csv": r.csv_path, "row": r.row, "kind": r.problem.kind, "reason": r.problem.reason}
            for r in skipped
        ],
    }


def _fingerprint(index: DataSetIndex, config: PrepareConfig) -> str:
    """Hash of the settings, the CSV bytes and every audio file's size and mtime."""
    h = hashlib.sha256(json.dumps([SHARDS_FORMAT, dataclasses.asdict(config)], sort_keys=True).encode())
    for path in index.csv_files:
        h.update(Path(path).read_bytes() if Path(path).exists() else b"<missing>")
    for r in index.records:
        try:
            st = os.stat(r.path)
            h.update(f"{r.path}:{st.st_size}:{st.st_mtime_ns}\n".encode())
        except OSError:
            h.update(f"{r.path}:missing\n".encode())
    return h.hexdigest()


def _existing_manifest(shards_dir) -> dict | None:
    manifest = shards_dir / "manifest.json"
    if manifest.is_file() and not (shards_dir / IN_PROGRESS).exists():
        return json.loads(manifest.read_text())
    if shards_dir.is_dir() and any(shards_dir.iterdir()) and not (shards_dir / IN_PROGRESS).exists():
        raise FileExistsError(f"{shards_dir}: exists, is not empty and holds no shards manifest; refusing to overwrite")
    return None


def _begin(shards_dir) -> None:
    """Mark ``shards_dir`` as being written, then clear what an earlier prepare left there (the manifest first)."""
    marker = shards_dir / IN_PROGRESS
    if marker.exists():
        log.info("%s: removing what an interrupted prepare left", shards_dir)
    shards_dir.mkdir(parents=True, exist_ok=True)
    marker.write_text(json.dumps({"started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "pid": os.getpid()}))
    (shards_dir / "manifest.json").unlink(missing_ok=True)
    for name in ("audio", "excerpts.parquet", "pooled.parquet", "stats.json", "vocabulary.json"):
        remove_tree(shards_dir / name)


def _num_blocks(n_clips: int, config: PrepareConfig) -> int:
    return max(1, -(-n_clips // config.clips_per_batch))
