"""``ray-tagger bench pipeline``: the Ray Data training stream against a torch DataLoader.

Both sides do the same work on the same shards and the same configuration: the clip rows of
``audio/source=curated`` and ``audio/source=noisy`` go in pools of ``stream.pool_size`` through
:class:`~ray_tagger.stream.MixFeaturize` (mode "train": R curated copies + the mixed stream,
decode, mixup per stream, log-mel, normalise), with N CPU workers, and a consuming loop on the
driver counts what arrives.

* **Ray Data**: the real training stream of one worker (:func:`ray_tagger.stream.stream`, split 0,
  no held-out fold, rank 0 of 1) with ``stream.actors = N``, iterated with
  ``iter_batches`` as the Train worker iterates it (whole blocks); each pass re-executes the dataset,
  announced to an :class:`~ray_tagger.stream.EpochClock` first, as the Train worker does.
  ``preserve_order`` is on and the CPU limit is the training stream's (N actors or tasks + 1 CPU
  of reads, :func:`~ray_tagger.stream.pipeline_cpus`), as in training.
* **DataLoader**: the Parquet files read with pyarrow, cut into pools in file order, one pool per
  item (``batch_size=None``), ``num_workers=N``, ``persistent_workers=False`` (worker start-up is
  paid per pass, like the actor pool's), one ``MixFeaturize`` per worker process, built lazily.

* **bare**: the same ``MixFeaturize`` calls over the same pools in this process on one thread,
  no Ray, no worker processes, no transfers: the bare compute cost of the work. Each side's
  examples/s per CPU is reported as a ratio to it (1.0 would be a pipeline without overhead).

Every pass of every side uses its own epoch (fresh mixup draws). The order is: untimed
warm-up (one pool through ``MixFeaturize`` in this process, which also puts the files in the
page cache; one Ray Data read of the shards), Ray, DataLoader, Ray again, bare; Ray is reported
pooled over its two runs (total examples / total seconds), and both runs are printed, so
drift (other load on the machine) shows.

With ``features_on="trainer"`` (``stream.features_on``) every side stops after mixup and the
crop and delivers waveforms: the CPU share of the work when the Train worker computes the
log-mel on its device.

With a CUDA device, a third measurement runs the report's default CRNN train step
(:func:`ray_tagger.bench.model.train_step`) on batches composed from the Ray stream and
reports the GPU busy fraction: the sum of CUDA-event-timed step times over the wall time (with
``features_on="trainer"`` each step first computes its batch's log-mel on the GPU, inside the
timed step).
"""

from __future__ import annotations

import datetime
import math
import os
import platform
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import ray

from ..config import TrainJobConfig, resolve
from ..runtime import using_execution_options
from ..splits import content_key
from ..stream import (CLIP_COLUMNS, EpochClock, MixFeaturize, StreamSpec, configure_data_context, execution_options,
                      mix_featurize_kwargs, shard_meta, stream)
from ..train import ITER_BATCH
from .model import _load, device_name

COMPUTES = ("actors", "tasks")
SOURCES = ("curated", "noisy")
RUN = "bench-pipeline"
"""Run name of both sides' mixup seeds (plus a hash of the stream's inputs, see :func:`run_name`)."""
_KEY = re.compile(r"^(?P<clip>.*)(?:\|(?:curated|mixed)\d+|#s\d+p\d+)$")


def source_clip(key: str) -> str:
    """The clip an example key comes from: ``clip|curated3``, ``clip|mixed0``, ``clip#s0p1`` -> ``clip``."""
    m = _KEY.match(key)
    return m.group("clip") if m else key


def run_name(spec: StreamSpec, config: TrainJobConfig) -> str:
    """``RUN`` plus a hash of the spec and configuration. ``compute="tasks"`` caches one
    ``MixFeaturize`` per Ray worker process keyed by (run, mode, rank, world) only, so a second
    measurement in the same Ray session with other shards or settings must not reuse the name."""
    return f"{RUN}-{content_key(repr((spec, config.to_dict()))) % 16**8:08x}"


def default_ray_cpus(workers: int) -> int:
    """Logical CPUs of a local Ray for this benchmark: all cores, and at least ``workers + 1``.

    With ``compute="actors"`` the N actors hold N CPUs for the whole pass; the Parquet read
    tasks ahead of them need one more, or the stream never starts (Ray Data waits for it).
    """
    return max(os.cpu_count() or 1, workers + 1)


@dataclass(frozen=True)
class Pass:
    """One full iteration of a side's stream as seen by the consuming loop."""

    epoch: int
    seconds: float
    first_example_s: float
    """From the start of the pass to the first delivered batch (Ray: 32 examples; DataLoader: one pool)."""
    examples: int
    source_clips: int
    """Distinct clips the pass's examples come from."""
    audio_s: float
    """Seconds of audio in the delivered examples (sum of frames × hop / sample rate)."""


@dataclass(frozen=True)
class Side:
    """The passes of one timed run (or, for the Ray mean, of both Ray runs pooled)."""

    name: str
    passes: tuple[Pass, ...]

    @property
    def seconds(self) -> float:
        return sum(p.seconds for p in self.passes)

    @property
    def examples(self) -> int:
        return sum(p.examples for p in self.passes)

    @property
    def examples_per_pass(self) -> tuple[int, ...]:
        return tuple(p.examples for p in self.passes)

    @property
    def examples_per_s(self) -> float:
        """The unit the trainer consumes; also the trainer's "clips/s" (every curated copy and noisy excerpt is a clip)."""
        return self.examples / self.seconds

    @property
    def source_clips_per_s(self) -> float:
        return sum(p.source_clips for p in self.passes) / self.seconds

    @property
    def audio_s_per_s(self) -> float:
        return sum(p.audio_s for p in self.passes) / self.seconds

    @property
    def first_example_s(self) -> float:
        """Mean over the passes."""
        return sum(p.first_example_s for p in self.passes) / len(self.passes)


@dataclass(frozen=True)
class GpuBusy:
    """Train steps on the Ray stream's examples on a CUDA device."""

    steps: int
    busy_s: float
    """Sum of the CUDA-event-timed train steps."""
    wall_s: float
    device: str

    @property
    def fraction(self) -> float:
        return self.busy_s / self.wall_s


@dataclass
class PipelineBench:
    """Everything ``run_bench`` prints."""

    shards: str
    workers: int
    passes: int
    preset: str
    R: int
    compute: str
    pool_size: int
    classes: int
    features_on: str
    ray_runs: tuple[Side, Side]
    loader: Side
    ray: Side
    """Both Ray runs pooled: rates are total / total, time to first example the mean of all its passes."""
    ratio: float
    """Ray / DataLoader examples per second."""
    bare: Side
    """The same work in one process on one thread (the bare compute cost)."""
    counts_match: bool
    """Every pass of every run delivered the same number of examples."""
    ray_cpus: float
    ray_cpu_limit: float
    """Ray Data's CPU limit of the stream (:func:`~ray_tagger.stream.pipeline_cpus`)."""
    loader_start_method: str
    gpu: GpuBusy | None = None
    gpu_note: str = ""
    cpu_model: str = field(default_factory=lambda: device_name(_cpu()))
    cores: int = field(default_factory=lambda: os.cpu_count() or 0)
    usable_cores: int = field(default_factory=lambda: len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 0)
    wall_s: float = math.nan
    load: tuple[float, float] = (math.nan, math.nan)
    date: str = field(default_factory=lambda: datetime.datetime.now().astimezone().isoformat(timespec="seconds"))
    command: str = field(default_factory=lambda: " ".join(sys.argv))

    @property
    def examples_per_pass(self) -> int | None:
        return self.loader.passes[0].examples if self.counts_match else None


def _cpu():
    import torch

    return torch.device("cpu")


# -- the shared consuming loop ------------------------------------------------------------------


def _time_pass(epoch: int, batches: Callable[[], Iterable[dict]], hop_s: float) -> Pass:
    """Iterate one pass to the end; count examples, their clips and audio, time the first batch."""
    clips: set[str] = set()
    examples, frames, first = 0, 0, math.nan
    t0 = time.perf_counter()
    for b in batches():
        if math.isnan(first) and len(b["key"]):
            first = time.perf_counter() - t0
        examples += len(b["key"])
        frames += int(np.sum(b["frames"]))
        clips.update(source_clip(k) for k in b["key"])
    return Pass(epoch, time.perf_counter() - t0, first, examples, len(clips), frames * hop_s)


# -- Ray Data -----------------------------------------------------------------------------------


def ray_run(ds: ray.data.Dataset, clock, passes: int, hop_s: float, name: str = "Ray Data") -> Side:
    """``passes`` passes over the training stream, each announced to the clock first."""
    out = []
    for epoch in range(passes):
        ray.get(clock.set.remote(epoch))
        out.append(_time_pass(epoch, lambda: ds.iter_batches(batch_size=ITER_BATCH, batch_format="numpy"), hop_s))
    return Side(name, tuple(out))


# -- the bare compute cost -----------------------------------------------------------------------


def bare_run(pools: list[pa.Table], kwargs: dict, passes: int, hop_s: float, first_epoch: int = 0,
             name: str = "bare (1 process)") -> Side:
    """The same work in this process on one thread: ``MixFeaturize`` over every pool, ``passes``
    times (epochs ``first_epoch + k``), with no Ray, no processes and no transfers. Its
    examples/s is what one CPU can do; every side's examples/s per CPU is judged against it."""
    import torch

    threads = torch.get_num_threads()
    try:
        fn = MixFeaturize(**kwargs)  # sets torch's threads to 1 in this process
        out = []
        for k in range(passes):
            fn.epoch = first_epoch + k
            out.append(_time_pass(fn.epoch, lambda: (fn(p) for p in pools), hop_s))
    finally:
        torch.set_num_threads(threads)
    return Side(name, tuple(out))


# -- torch DataLoader ---------------------------------------------------------------------------


def read_pools(shards_dir: str | Path, pool_size: int) -> list[pa.Table]:
    """The clip rows of both training sources (:data:`CLIP_COLUMNS` + ``source``), curated
    first, each source's files in name order, cut into pools of ``pool_size`` rows."""
    tables = []
    for source in SOURCES:
        for path in sorted((Path(shards_dir) / "audio" / f"source={source}").glob("*.parquet")):
            t = pq.read_table(path, columns=CLIP_COLUMNS)
            tables.append(t.append_column("source", pa.array([source] * t.num_rows, pa.string())))
    if not tables:
        raise FileNotFoundError(f"{shards_dir}: no Parquet files under audio/source=curated|noisy")
    rows = pa.concat_tables(tables).combine_chunks()
    # each pool owns its buffers: a slice pickles its parent's whole buffers (pyarrow 26), and the
    # DataLoader side sends every pool to every worker at every pass (5.4 GB per worker on the
    # demo shards before this)
    return [rows.take(np.arange(i, min(i + pool_size, rows.num_rows))) for i in range(0, rows.num_rows, pool_size)]


LOADER_START_METHOD = "forkserver"
"""DataLoader workers start from a clean server process: forked from a parent whose torch
thread pool already ran, a worker can hang in its first stft (seen in the test suite)."""


class PoolDataset:
    """A map-style dataset of pools; item ``i`` is ``MixFeaturize(pool i)``.

    ``MixFeaturize`` is built on first use in each DataLoader worker process (never in the
    parent); ``epoch`` is set by the driver before a pass (the dataset is sent to fresh
    workers at every pass).
    """

    def __init__(self, pools: list[pa.Table], kwargs: dict):
        self.pools, self.kwargs, self.epoch = pools, kwargs, 0
        self._fn: MixFeaturize | None = None

    def __len__(self) -> int:
        return len(self.pools)

    def __getitem__(self, i: int) -> dict:
        if self._fn is None:
            self._fn = MixFeaturize(**self.kwargs)
        self._fn.epoch = self.epoch
        return self._fn(self.pools[i])


def _as_is(item):
    return item


def loader_run(dataset: PoolDataset, workers: int, passes: int, hop_s: float, first_epoch: int = 0,
               name: str = "DataLoader") -> Side:
    """``passes`` full iterations of a fresh-worker DataLoader, epoch ``first_epoch + k`` for pass k."""
    from torch.utils.data import DataLoader

    loader = DataLoader(dataset, batch_size=None, shuffle=False, num_workers=workers, persistent_workers=False,
                        collate_fn=_as_is, multiprocessing_context=LOADER_START_METHOD)
    out = []
    for k in range(passes):
        dataset.epoch = first_epoch + k
        out.append(_time_pass(dataset.epoch, lambda: iter(loader), hop_s))
    return Side(name, tuple(out))


# -- GPU busy fraction (UNTESTED: written on a machine without a CUDA device) ---------------------


def gpu_busy(ds: ray.data.Dataset, clock, config: TrainJobConfig, steps: int, warmup: int = 3,
             first_epoch: int = 0, stats=None) -> GpuBusy:
    """The report's default CRNN (``ModelConfig()``, this data set's classes) trained on the Ray
    stream: batch composer → collate → ``train_step`` on cuda. After ``warmup`` untimed steps,
    ``steps`` steps are bracketed by CUDA events; wall time runs from the end of the warm-up
    (synchronised) to the end of the last step (synchronised) and includes waiting for data.

    NOTE: untested here (no CUDA device where this was written); kept deliberately simple.
    """
    import torch

    from ..batching import BatchComposer, Example, collate
    from ..features import BatchFeatures, pad_waves
    from ..model import CRNN, ModelConfig
    from .model import LEARNING_RATE, Batch, train_step

    device = torch.device("cuda")
    column = "audio" if config.stream.features_on == "trainer" else "features"
    on_device = BatchFeatures(config.features, stats).to(device) if column == "audio" else None
    torch.manual_seed(0)
    model = CRNN(ModelConfig(n_classes=config.model.n_classes)).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)

    def examples() -> Iterator[Example]:
        epoch = first_epoch
        while True:
            ray.get(clock.set.remote(epoch))
            for b in ds.iter_batches(batch_size=ITER_BATCH, batch_format="numpy"):
                for i in range(len(b["key"])):
                    yield Example(int(b["frames"][i]), frozenset(np.flatnonzero(b["targets"][i]).tolist()),
                                  (b[column][i], b["targets"][i]))
            epoch += 1

    batches = BatchComposer(config.batch)(examples())
    events, t0 = [], None
    try:
        for k, chosen in enumerate(batches):
            targets = np.stack([e.data[1] for e in chosen])
            if on_device is None:
                x, lengths, y = collate([e.data[0] for e in chosen], targets)
                x, lengths = x.to(device), lengths.to(device)
            else:
                waves, samples = pad_waves([e.data[0] for e in chosen])
                waves, samples = waves.to(device), samples.to(device)
                y = torch.as_tensor(targets, dtype=torch.float32)
            y = y.to(device)
            if k == warmup:
                torch.cuda.synchronize(device)
                t0 = time.perf_counter()
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            if on_device is not None:
                x, lengths = on_device(waves, samples)
            train_step(model, opt, Batch(x, lengths, y))
            end.record()
            if k >= warmup:
                events.append((start, end))
            if len(events) == steps:
                break
    finally:
        batches.close()
    torch.cuda.synchronize(device)
    wall = time.perf_counter() - t0
    busy = sum(s.elapsed_time(e) for s, e in events) / 1000.0
    return GpuBusy(len(events), busy, wall, torch.cuda.get_device_name(device))


# -- the benchmark ------------------------------------------------------------------------------


def measure(
    shards_dir: str | Path, workers: int = 2, passes: int = 2, preset: str = "demo", R: int = 4,
    compute: str = "actors", gpu_steps: int = 50, progress: Callable[[str], None] | None = None,
    features_on: str = "pipeline",
) -> PipelineBench:
    """Warm up, then time Ray, DataLoader, Ray on the same shards and configuration (see module doc).

    Needs a connected Ray (``ray_tagger.runtime.ensure_ray``); with ``compute="actors"`` it must
    have at least ``workers + 1`` CPUs (see :func:`default_ray_cpus`).
    """
    if workers < 1 or passes < 1 or gpu_steps < 1:
        raise ValueError(f"need workers, passes and gpu_steps >= 1, got {workers}, {passes}, {gpu_steps}")
    if compute not in COMPUTES:
        raise ValueError(f"compute must be one of {COMPUTES}, got {compute!r}")
    if not ray.is_initialized():
        raise RuntimeError("bench pipeline needs a connected Ray (ray_tagger.runtime.ensure_ray)")
    ray_cpus = ray.cluster_resources().get("CPU", 0)
    if compute == "actors" and ray_cpus < workers + 1:
        raise ValueError(f"compute=actors with {workers} actors needs at least {workers + 1} Ray CPUs (the actors hold "
                         f"{workers} for the whole pass, the Parquet reads need one more, or the stream never starts); "
                         f"Ray has {ray_cpus:g}: pass --num-cpus {workers + 1} or fewer --workers")
    say = progress or (lambda _: None)
    import torch

    classes, _, _ = shard_meta(shards_dir)
    config = resolve(preset, extra={"model": {"n_classes": len(classes)},
                                    "stream": {"R": R, "actors": workers, "compute": compute, "features_on": features_on}})
    _, stats, audio_format = shard_meta(shards_dir, config.features)
    hop_s = config.features.hop_length / config.features.sample_rate
    spec = StreamSpec(str(Path(shards_dir).resolve()), split=0, holdout_fold=None, R=R, rank=0, world=1)
    run = run_name(spec, config)
    kwargs = mix_featurize_kwargs(spec, config, "train", run, classes, stats, audio_format)  # as the training stream's
    start, load_before = time.perf_counter(), _load()

    # untimed warm-up: page cache and imports here, Ray Data's read path in its workers
    say("bench pipeline: warm-up")
    configure_data_context()
    pools = read_pools(shards_dir, config.stream.pool_size)
    threads = torch.get_num_threads()
    try:
        MixFeaturize(**kwargs)(pools[0])  # sets torch's threads to 1 in this process; restored below
    finally:
        torch.set_num_threads(threads)
    root = Path(spec.shards_dir) / "audio"
    ray.data.read_parquet([str(root / f"source={s}") for s in SOURCES], columns=CLIP_COLUMNS + ["source"]).take(1)

    options = execution_options(config, "train")  # as the Train worker's DataConfig
    cpu_limit = options.resource_limits.cpu
    with using_execution_options(ray.data.DataContext.get_current(), options):
        clock = EpochClock.remote()
        ds = stream(spec, config, "train", run, clock)
        say(f"bench pipeline: Ray Data #1 ({passes} passes, {workers} {compute})")
        ray1 = ray_run(ds, clock, passes, hop_s, "Ray Data #1")
        say(f"bench pipeline: DataLoader ({passes} passes, {workers} workers)")
        dataset = PoolDataset(pools, kwargs)
        loader = loader_run(dataset, workers, passes, hop_s)
        say(f"bench pipeline: Ray Data #2 ({passes} passes, {workers} {compute})")
        ray2 = ray_run(ds, clock, passes, hop_s, "Ray Data #2")
        say(f"bench pipeline: bare compute ({passes} passes in this process, one thread)")
        bare = bare_run(pools, kwargs, passes, hop_s)
        gpu, note = None, "n/a (no CUDA device)"
        if torch.cuda.is_available():
            say(f"bench pipeline: GPU busy fraction ({gpu_steps} train steps on the Ray stream)")
            try:
                gpu, note = gpu_busy(ds, clock, config, gpu_steps, first_epoch=passes, stats=stats), ""
            except Exception as e:  # noqa: BLE001 - an untested path reports, never sinks the CPU results
                note = f"failed: {type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"[:200]
    ray_mean = Side("Ray Data (mean)", ray1.passes + ray2.passes)
    counts = set(ray_mean.examples_per_pass + loader.examples_per_pass + bare.examples_per_pass)

    return PipelineBench(
        shards=str(shards_dir), workers=workers, passes=passes, preset=preset, R=R, compute=compute,
        pool_size=config.stream.pool_size, classes=len(classes), features_on=config.stream.features_on, ray_runs=(ray1, ray2), loader=loader, ray=ray_mean,
        ratio=ray_mean.examples_per_s / loader.examples_per_s, bare=bare, counts_match=len(counts) == 1, ray_cpus=ray_cpus,
        ray_cpu_limit=cpu_limit, loader_start_method=LOADER_START_METHOD, gpu=gpu, gpu_note=note,
        wall_s=time.perf_counter() - start, load=(load_before, _load()),
    )


def format_report(b: PipelineBench) -> str:
    """The fixed-width table ``run_bench`` prints."""
    import torch

    limit = f", Ray Data CPU limit {b.ray_cpu_limit:g}"
    lines = [
        f"bench pipeline: {b.shards} ({b.classes} classes), preset {b.preset}, R {b.R}, pool {b.pool_size} clips, "
        f"split 0, no held-out fold, features on the {b.features_on}"
        + (" (every side delivers waveforms: log-mel is the Train worker's)" if b.features_on == "trainer" else ""),
        f"workers N {b.workers} on each side (Ray: compute={b.compute}, stream.actors {b.workers}{limit}; "
        f"DataLoader: num_workers {b.workers}, {b.loader_start_method}, fresh per pass), passes P {b.passes}",
        f"machine: {platform.node()}, CPU {b.cpu_model}, {b.cores} cores ({b.usable_cores} usable), "
        f"Ray CPUs {b.ray_cpus:g}",
        f"versions: ray {ray.__version__}, torch {torch.__version__}, python {platform.python_version()}",
        f"date: {b.date}, load average (1 min) {b.load[0]:.2f} before, {b.load[1]:.2f} after",
        f"command: {b.command}",
        "order: warm-up (untimed), Ray Data #1, DataLoader, Ray Data #2, bare; Ray = both runs pooled",
        "",
    ]
    head = (f"{'':16s} {'seconds':>8s} {'examples/s':>11s} {'src clips/s':>12s} {'audio-s/s':>10s} "
            f"{'1st ex s':>9s} {'examples/pass':>14s}")
    lines += [head, "-" * len(head)]
    for s in (*b.ray_runs, b.ray, b.loader, b.bare):
        per_pass = "/".join(str(n) for n in dict.fromkeys(s.examples_per_pass))
        lines.append(f"{s.name:16s} {s.seconds:8.2f} {s.examples_per_s:11.1f} {s.source_clips_per_s:12.1f} "
                     f"{s.audio_s_per_s:10.1f} {s.first_example_s:9.2f} {per_pass:>14s}")
    lines.append("-" * len(head))
    for s in (*b.ray_runs, b.loader):
        lines.append(f"{s.name + ' passes':22s} " + ", ".join(
            f"epoch {p.epoch}: {p.seconds:.2f} s (first {p.first_example_s:.2f} s)" for p in s.passes))
    r, d = b.ray, b.loader
    lines.append(f"ratio Ray/DataLoader: {b.ratio:.2f}x examples/s, {r.source_clips_per_s / d.source_clips_per_s:.2f}x "
                 f"source clips/s, {r.audio_s_per_s / d.audio_s_per_s:.2f}x audio-s/s; "
                 f"time to first example {r.first_example_s:.2f} s vs {d.first_example_s:.2f} s")
    lines.append(f"examples/s per CPU (bare: 1 CPU; Ray Data: its {b.workers} {b.compute}, reads excluded; DataLoader: "
                 f"{b.workers} workers): bare {b.bare.examples_per_s:.1f}, Ray Data {b.ray.examples_per_s / b.workers:.1f} "
                 f"({b.ray.examples_per_s / b.workers / b.bare.examples_per_s:.2f}x bare), DataLoader "
                 f"{b.loader.examples_per_s / b.workers:.1f} ({b.loader.examples_per_s / b.workers / b.bare.examples_per_s:.2f}x bare)")
    if b.counts_match:
        lines.append(f"examples per pass: {b.examples_per_pass} on both sides (every pass of every run)")
    else:
        lines.append("examples per pass: MISMATCH - Ray #1 {} / Ray #2 {} / DataLoader {}".format(
            *(list(s.examples_per_pass) for s in (*b.ray_runs, b.loader))) + f" / bare {list(b.bare.examples_per_pass)}")
    lines.append("examples/s is the trainer's clips/s (each curated copy and noisy excerpt is one clip); "
                 "src clips/s counts distinct source clips per pass")
    if b.gpu is not None:
        lines.append(f"GPU busy fraction: {b.gpu.fraction:.2f} ({b.gpu.steps} default-CRNN train steps on the Ray stream, "
                     f"{b.gpu.busy_s:.2f} s busy of {b.gpu.wall_s:.2f} s wall, {b.gpu.device})")
    else:
        lines.append(f"GPU busy fraction: {b.gpu_note}")
    lines.append(f"total wall time {b.wall_s:.0f} s")
    return "\n".join(lines)


def run_bench(
    shards_dir: str | Path, workers: int = 2, passes: int = 2, preset: str = "demo", R: int = 4,
    compute: str = "actors", gpu_steps: int = 50, progress: Callable[[str], None] | None = None,
    features_on: str = "pipeline",
) -> str:
    """``measure`` then ``format_report``: the text of ``ray-tagger bench pipeline``."""
    return format_report(measure(shards_dir, workers, passes, preset, R, compute, gpu_steps, progress, features_on))
