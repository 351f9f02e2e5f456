"""The Ray Data streams of one training run (report §3.1).

    shards ─read_parquet (file order shuffled per pass)→ this worker's clips
             └ or, within stream.read_once_mb: read once per run into the object store,
               the blocks' order shuffled per pass
           ─MixFeaturize actors: clips → examples of both streams → decode → mixup per stream
                                 → log-mel → normalise ─→ the Train worker

Examples of the *curated* stream are the curated clips, R copies each per pass; examples of
the *mixed* stream are the curated clips once more plus both excerpts of every noisy clip in
the run's split. A Ray Data batch of ``pool_size`` clips is one mixup pool: partners come
from the same stream in it, never from the same clip, and the pool's examples leave in a
shuffled order. Audio travels once per clip (not once per copy) and is decoded once per pool.

Every pass over the data is an *epoch*. The Train worker announces the epoch to an
:class:`EpochClock` actor before it iterates; the pipeline actors, created afresh for every
pass, read it, so each pass draws fresh mixup randomness seeded from (seed, run, epoch, pool).
With ``preserve_order`` the stream is deterministic for a given seed and worker count.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import ray

from .decode import decode, to_float
from .features import FeatureConfig, normalized_clips
from .layout import n_hot
from .mixup import MixupConfig, mixup
from .normalization import NormStats
from .runtime import use_v1_parquet_reader, using_execution_options
from .splits import clip_rng, content_key, excerpt_id
from .storage import location, tree_bytes

log = logging.getLogger(__name__)

CLIP_COLUMNS = ["clip_id", "labels", "num_samples", "fold", "cuts", "audio"]
MODES = ("train", "plain", "val")
"""train: both mixup streams, mixed; plain: every training example once, unmixed (BatchNorm
refresh; cropped like train when ``stream.crop_s`` is set, so the statistics are those of the
inputs the model was trained on); val: the held-out curated fold, unmixed and whole."""


@ray.remote(num_cpus=0)
class EpochClock:
    """Holds the epoch a Train worker is about to iterate (one per worker and run)."""

    def __init__(self) -> None:
        self.epoch = 0

    def set(self, epoch: int) -> None:
        self.epoch = epoch

    def get(self) -> int:
        return self.epoch


@dataclass(frozen=True)
class StreamSpec:
    """Which examples a pipeline produces, and for whom."""

    shards_dir: str
    split: int = 0
    holdout_fold: int | None = None
    R: int = 4
    rank: int = 0
    world: int = 1
    relabeled: str | None = None
    """Optional Parquet table (``excerpt_id``, ``labels``) replacing the noisy excerpts' labels;
    excerpts it does not list, or lists without labels, are dropped."""


@dataclass(frozen=True)
class Item:
    """One example before decoding: a sample range of a clip, its labels and its stream."""

    key: str
    stream: str
    clip_id: str
    start: int
    stop: int
    labels: list


class FeatureMismatchError(ValueError):
    """The shards' normalisation statistics were computed with other log-mel settings."""


def shard_meta(shards_dir: str | Path, features: FeatureConfig | None = None) -> tuple[list[str], NormStats, str]:
    """Vocabulary, normalisation statistics and audio format of a shards folder.

    With ``features``, the log-mel settings the statistics were computed with (the manifest's
    prepare config) must be those: otherwise :class:`FeatureMismatchError`, one line that says
    which settings differ and how to prepare the shards for them.
    """
    root = location(shards_dir)
    manifest_path = root / "manifest.json"
    if not manifest_path.is_file():
        from .prepare import IN_PROGRESS

        if (root / IN_PROGRESS).exists():
            raise FileNotFoundError(f"{root}: a prepare into it was interrupted or is still running (no manifest.json "
                                    "yet); run 'ray-tagger prepare' again")
        raise FileNotFoundError(f"{root}: no manifest.json; run 'ray-tagger prepare' first")
    manifest = json.loads(manifest_path.read_text())
    if features is not None:
        prepared = manifest["config"].get("features", dataclasses.asdict(FeatureConfig()))
        wanted = dataclasses.asdict(features)
        differ = [f"{k} {prepared.get(k)} (shards) vs {v} (config)" for k, v in wanted.items() if prepared.get(k) != v]
        if differ:
            raise FeatureMismatchError(
                f"{root}: prepared for other log-mel features ({'; '.join(differ)}); prepare the data again with "
                f"the same preset (ray-tagger prepare DATA SHARDS --preset NAME) into another folder")
    classes = json.loads((root / "vocabulary.json").read_text())["classes"]
    return classes, NormStats.load(root / "stats.json"), manifest["audio_format"]


def clip_items(row: dict, source: str, spec: StreamSpec, mode: str, relabel: dict | None) -> list[Item]:
    """The examples one clip row contributes in ``mode`` (see :data:`MODES`)."""
    clip, n = row["clip_id"], row["num_samples"]
    held_out = spec.holdout_fold is not None and row["fold"] == spec.holdout_fold
    if source == "curated":
        if mode == "val":
            return [Item(clip, "val", clip, 0, n, row["labels"])] if held_out else []
        if held_out:
            return []
        copies = [("curated", r) for r in range(spec.R)] if mode == "train" else []
        return [Item(f"{clip}|{s}{r}", s, clip, 0, n, row["labels"]) for s, r in copies + [("mixed", 0)]]
    if mode == "val":
        return []
    cut = row["cuts"][spec.split]
    items = []
    for part, (start, stop) in enumerate(((0, cut), (cut, n))):
        excerpt = excerpt_id(clip, spec.split, part)
        labels = row["labels"] if relabel is None else relabel.get(excerpt)
        if labels:
            items.append(Item(excerpt, "mixed", clip, start, stop, list(labels)))
    return items


class MixFeaturize:
    """Pipeline actor: a pool of clip rows → examples (decoded, mixed, log-mel, normalised).

    Batch in: clip rows (:data:`CLIP_COLUMNS` + ``source``). Batch out: ``key (B,)``,
    ``features`` B arrays ``(F, N_b)`` float32, ``frames (B,)``, ``targets (B, K)`` float32; with
    ``waves_only`` (``stream.features_on='trainer'``) ``audio`` B arrays ``(T_b,)`` float32 instead
    of ``features``, and ``frames`` the frames their log-mel will have.
    """

    def __init__(self, spec: StreamSpec, mode: str, classes: list[str], stats: NormStats, features: FeatureConfig,
                 mixup_config: MixupConfig, audio_format: str, seed: int, run: str, clock=None,
                 crop_s: float | None = None, audio_cache_mb: float = 0, waves_only: bool = False):
        import torch

        from .features import LogMel

        torch.set_num_threads(1)
        self.spec, self.mode = spec, mode
        self.index = {c: i for i, c in enumerate(classes)}
        self.stats, self.mixup_config, self.audio_format = stats, mixup_config, audio_format
        self.seed, self.run = seed, run
        self.epoch = ray.get(clock.get.remote()) if clock is not None else 0
        self.relabel = _relabel_table(spec.relabeled)
        self.logmel = LogMel(features)
        self.crop = None if crop_s is None else int(round(crop_s * features.sample_rate))
        self.audio = AudioCache(audio_cache_mb, audio_format)
        self.waves_only = waves_only

    def __call__(self, batch: pa.Table) -> dict:
        rows = batch.to_pylist()
        items = [i for r in rows for i in clip_items(r, r["source"], self.spec, self.mode, self.relabel)]
        column = "audio" if self.waves_only else "features"
        if not items:
            return {"key": np.array([], dtype=object), column: np.array([], dtype=object),
                    "frames": np.array([], np.int64), "targets": np.zeros((0, len(self.index)), np.float32)}
        audio = {r["clip_id"]: self.audio.get(r["clip_id"], r["audio"]) for r in rows}
        waves = [to_float(audio[i.clip_id][i.start: i.stop]) for i in items]
        targets = n_hot([i.labels for i in items], self.index)
        if self.mode == "train":
            rng = clip_rng(self.seed, self.run, self.epoch, items[0].key)
            waves, targets = self._mix(items, waves, targets, rng)
            order = rng.permutation(len(items))
            items, waves, targets = [items[i] for i in order], [waves[i] for i in order], targets[order]
            if self.crop is not None:
                waves = [random_crop(w, self.crop, rng) for w in waves]
        elif self.crop is not None:  # plain
            rng = clip_rng(self.seed, self.run, self.epoch, items[0].key)
            waves = [random_crop(w, self.crop, rng) for w in waves]
        if self.waves_only:
            arrays = [np.ascontiguousarray(w, np.float32) for w in waves]
            frames = [self.logmel.config.num_frames(len(w)) for w in arrays]
        else:
            arrays = normalized_clips(self.logmel, self.stats, waves)
            frames = [f.shape[1] for f in arrays]
        out = np.empty(len(arrays), dtype=object)
        out[:] = arrays
        return {"key": np.array([i.key for i in items], dtype=object), column: out,
                "frames": np.array(frames, np.int64), "targets": targets}

    def _mix(self, items, waves, targets, rng):
        waves, targets = list(waves), targets.copy()
        for stream in ("curated", "mixed"):
            idx = [k for k, item in enumerate(items) if item.stream == stream]
            if idx:
                mixed, mixed_targets, _ = mixup([waves[k] for k in idx], targets[idx], rng, self.mixup_config,
                                                groups=[items[k].clip_id for k in idx], copy=False)
                for j, k in enumerate(idx):
                    waves[k], targets[k] = mixed[j], mixed_targets[j]
        return waves, targets


def random_crop(wave: np.ndarray, length: int, rng: np.random.Generator) -> np.ndarray:
    """``(T,) -> (min(T, length),)``: a uniformly placed excerpt of ``length`` samples (the whole
    wave when it is not longer). Mixed examples are cropped after mixup, so a crop may hold the
    partner alone; the targets stay the union (the label rule of the report's mixup)."""
    if len(wave) <= length:
        return wave
    start = int(rng.integers(0, len(wave) - length + 1))
    return wave[start: start + length]


class AudioCache:
    """Decoded clips (int16 samples, half the bytes of float32) kept across passes, up to ``limit_mb``: the first clips seen stay,
    later ones are decoded every pass (a pass visits every clip, so evicting old clips for new
    ones would keep none of them by the next visit). Decoding FLAC is about a fifth of a pool's
    cost; a pipeline process that sees a clip again takes it from here. ``limit_mb = 0`` keeps
    nothing."""

    def __init__(self, limit_mb: float, audio_format: str):
        self.limit, self.audio_format = limit_mb * 1024**2, audio_format
        self.clips: dict[str, np.ndarray] = {}
        self.bytes, self.hits, self.misses = 0, 0, 0

    def get(self, clip_id: str, encoded: bytes) -> np.ndarray:
        """``-> (T,)`` int16 samples of the clip; callers must not modify them (the stream converts
        the part it uses with :func:`~ray_tagger.decode.to_float`)."""
        if clip_id in self.clips:
            self.hits += 1
            return self.clips[clip_id]
        self.misses += 1
        wave = decode(encoded, self.audio_format)
        if self.bytes + wave.nbytes <= self.limit:
            self.clips[clip_id] = wave
            self.bytes += wave.nbytes
        return wave


def configure_data_context(block_bytes: int = 8 * 1024**2, progress_bars: bool = False) -> None:
    """Small output blocks, so examples reach the Train worker as soon as a pool is done (the
    default 128 MiB blocks would hold back a whole pass of the demo set), and optionally no
    progress bars (training reports its own progress)."""
    ctx = ray.data.DataContext.get_current()
    ctx.target_max_block_size = block_bytes
    use_v1_parquet_reader()  # else every pass of every stream would start footer actors
    ctx.enable_progress_bars = progress_bars


def _relabel_table(path: str | None) -> dict | None:
    if path is None:
        return None
    import pyarrow.parquet as pq

    table = pq.read_table(path, columns=["excerpt_id", "labels"])
    return dict(zip(table.column("excerpt_id").to_pylist(), table.column("labels").to_pylist()))


_POOLED: dict = {}


def _with_rows(out: dict):
    """A generator of ``out`` when it holds examples, of nothing when the pool gave none (every noisy
    pool of a validation pass; a pool whose excerpts relabelling all dropped): Ray Data then keeps
    no block of our columns for it; an empty ``targets (0, K)`` does not convert to a tensor column
    and went as pickled objects, with a warning in the log."""
    if len(out["key"]):
        yield out


def mix_featurize_task(batch: pa.Table, key: int, **kwargs):
    """:class:`MixFeaturize` as a Ray Data *task*: one instance per worker process and ``key``
    (a hash of every setting but the clock; reused across passes, so a new pass starts no
    process), the epoch read from the clock on every call. Yields the pool's examples, if any."""
    if key not in _POOLED:
        _POOLED[key] = MixFeaturize(**kwargs)
    inst = _POOLED[key]
    if kwargs.get("clock") is not None:
        inst.epoch = ray.get(kwargs["clock"].get.remote())
    return _with_rows(inst(batch))


class MixFeaturizeActor(MixFeaturize):
    """:class:`MixFeaturize` as a Ray Data *actor* (``stream.compute = 'actors'``): yields the pool's
    examples, if any (a pool without examples gives no block)."""

    def __call__(self, batch: pa.Table):
        return _with_rows(super().__call__(batch))


def _select(batch: pa.Table, rank: int, world: int) -> pa.Table:
    """Keep this worker's clips (by a hash of the clip id)."""
    mine = [content_key(c) % world == rank for c in batch.column("clip_id").to_pylist()]
    return batch.filter(pa.array(mine, pa.bool_()))


def pipeline_cpus(config, mode: str) -> float:
    """CPU limit of one pipeline (Ray Data ``resource_limits``): its actors (or tasks) and one CPU
    of Parquet reads; ``stream.cpu_limit`` replaces it for training streams. ``config`` is a
    :class:`~ray_tagger.config.TrainJobConfig`."""
    s = config.stream
    least = (s.actors if mode == "train" else 1) * s.cpus_per_actor + 1
    if mode != "train" or s.cpu_limit is None:
        return least
    if s.cpu_limit < least:
        raise ValueError(f"stream.cpu_limit {s.cpu_limit:g} is below what the pipeline needs at once: {s.actors} actors × "
                         f"{s.cpus_per_actor:g} CPUs + 1 CPU for the Parquet reads = {least:g}")
    return s.cpu_limit


def execution_options(config, mode: str) -> ray.data.ExecutionOptions:
    """Ordered output (the batch rules see examples in stream order) within :func:`pipeline_cpus`."""
    return ray.data.ExecutionOptions(preserve_order=True,
                                     resource_limits=ray.data.ExecutionResources(cpu=pipeline_cpus(config, mode)))


def dataset_name(run: str, mode: str, rank: int) -> str:
    """What the dashboard calls a pipeline: ``RUN.train0`` (worker 0), ``RUN.plain`` (BatchNorm refresh), ``RUN.val``."""
    return f"{run}.train{rank}" if mode == "train" else f"{run}.{mode}"


def mix_featurize_kwargs(spec: StreamSpec, config, mode: str, run: str, classes: list[str], stats: NormStats,
                         audio_format: str, clock=None) -> dict:
    """The :class:`MixFeaturize` arguments of a ``mode`` pipeline under ``config`` (a
    :class:`~ray_tagger.config.TrainJobConfig`): crops for training and the BatchNorm refresh, the
    audio cache and (with ``stream.features_on='trainer'``) waveforms out for training only."""
    return {"spec": spec, "mode": mode, "classes": classes, "stats": stats, "features": config.features,
            "mixup_config": config.mixup, "audio_format": audio_format, "seed": config.run.seed, "run": run,
            "clock": clock, "crop_s": config.stream.crop_s if mode in ("train", "plain") else None,
            "audio_cache_mb": config.stream.audio_cache_mb if mode == "train" else 0,
            "waves_only": mode == "train" and config.stream.features_on == "trainer"}


def read_once(root, sources: list[str], limit_mb: float) -> bool:
    """Whether the Parquet files of ``sources`` under ``root`` (a shards' ``audio`` folder) total at
    most ``limit_mb`` MB (``stream.read_once_mb``): a training stream then reads them once per run."""
    return limit_mb > 0 and sum(tree_bytes(root / f"source={s}") for s in sources) <= limit_mb * 1024**2


def stream(spec: StreamSpec, config, mode: str, run: str, clock=None) -> ray.data.Dataset:
    """One pipeline: ``mode='train'`` for worker ``spec.rank`` of ``spec.world``, or 'plain' / 'val'.

    ``config`` is a :class:`~ray_tagger.config.TrainJobConfig`.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}")
    classes, stats, audio_format = shard_meta(spec.shards_dir, config.features)
    root = location(spec.shards_dir) / "audio"
    sources = ["curated"] if mode == "val" else ["curated", "noisy"]
    seed = content_key(f"{config.run.seed}/{run}/{spec.rank}") % 2**31
    keep = mode == "train" and read_once(root, sources, config.stream.read_once_mb)
    # each pass in a new order: of the files when they are read every pass, of their blocks when read once
    shuffle = ray.data.FileShuffleConfig(seed=seed) if mode == "train" and not keep else None
    ds = ray.data.read_parquet([str(root / f"source={s}") for s in sources], columns=CLIP_COLUMNS + ["source"],
                               shuffle=shuffle)
    if spec.world > 1:
        ds = ds.map_batches(_select, fn_kwargs={"rank": spec.rank, "world": spec.world}, batch_format="pyarrow")
    if keep:
        log.info("%s: reading the curated and noisy shards once for the run into Ray's object store (they total at "
                 "most stream.read_once_mb = %g MB)", dataset_name(run, mode, spec.rank), config.stream.read_once_mb)
        # the blocks in the files' order whichever read finishes first (the seeded shuffle of their order is
        # then a function of the seed and the run); the passes run under the options they had
        with using_execution_options(ds.context, ray.data.ExecutionOptions(preserve_order=True)) as options:
            ds = ds.materialize()
        ds.context.execution_options = options  # the materialized data set's context is a copy
        ds = ds.randomize_block_order(seed=ray.data.RandomSeedConfig(seed=seed, reseed_after_execution=True))
    kwargs = mix_featurize_kwargs(spec, config, mode, run, classes, stats, audio_format, clock)
    size = config.stream.actors if mode == "train" else 1
    if config.stream.compute == "tasks":
        key = content_key(repr((sorted((k, repr(v)) for k, v in kwargs.items() if k != "clock"))))
        ds = ds.map_batches(mix_featurize_task, fn_kwargs={"key": key, **kwargs}, batch_size=config.stream.pool_size,
                            batch_format="pyarrow", num_cpus=config.stream.cpus_per_actor,
                            compute=ray.data.TaskPoolStrategy(size=size))
    else:
        ds = ds.map_batches(MixFeaturizeActor, fn_constructor_kwargs=kwargs, batch_size=config.stream.pool_size,
                            batch_format="pyarrow", num_cpus=config.stream.cpus_per_actor,
                            compute=ray.data.ActorPoolStrategy(size=size))
    ds.set_name(dataset_name(run, mode, spec.rank))
    return ds
