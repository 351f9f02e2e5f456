"""``ray-tagger bench driver``: the Ray Data stages a run's driver starts, against the same work in
one process.

Two stages, each a short pipeline over a few shard files, so that their fixed costs (new worker
processes, each importing torch; Ray Data's Parquet reader) weigh as much as their compute:

- ``scoring``: an ensemble scores one source of a shards folder (the relabelling scores, the
  check, ``predict``). ``bare``: :class:`~ray_tagger.infer.EnsembleScorer` in this process;
  ``v1``: :func:`~ray_tagger.infer.score` with the V1 Parquet reader, as the commands run it
  (:func:`~ray_tagger.runtime.use_v1_parquet_reader`); ``v2``: the same with Ray 2.60's default
  reader, which starts a pool of footer-reading actors on every read.
- ``features``: the classical baseline's pooled log-mel features of every clip of the shards.
  ``bare``: :func:`~ray_tagger.baseline.featurize_rows` in this process; ``capped``:
  :func:`~ray_tagger.baseline.shard_features` with at most one task per core of this machine
  (what the commands did on a local Ray before ``prepare`` kept the statistics,
  :func:`~ray_tagger.runtime.cpu_tasks`); ``uncapped``: as many tasks as the logical CPUs allow;
  ``prepared``: :func:`~ray_tagger.baseline.prepared_features`, from the statistics ``prepare``
  wrote (what the commands do now; shards without ``pooled.parquet`` cannot run this mode).

Each pass runs every mode once, in that order, so that a drift of the machine falls on all of
them; the table gives each mode's median seconds per pass and its ratio to ``bare`` of the same
stage. Both sides include reading the shards and building the models or the log-mel transform.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import ray

from ..baseline import featurize_rows, prepared_features, shard_features
from ..features import FeatureConfig
from ..infer import EnsembleScorer, member_paths, score, shard_rows
from ..runtime import core_tasks
from ..storage import location
from ..stream import shard_meta

MODES = {"scoring": ("bare", "v1", "v2"), "features": ("bare", "capped", "uncapped", "prepared")}
ROWS_PER_BATCH = 8
"""Shard rows per scorer call or feature task on both sides (as :func:`~ray_tagger.infer.score` and
:class:`~ray_tagger.baseline.BaselineConfig` do)."""


@dataclass
class StageResult:
    """One stage: seconds of each pass per mode, and what a pass produced (keys, then arrays)."""

    stage: str
    examples: int
    seconds: dict[str, list[float]] = field(default_factory=dict)
    outputs: dict[str, tuple[list[str], np.ndarray]] = field(default_factory=dict)

    def median(self, mode: str) -> float:
        return statistics.median(self.seconds[mode])

    def ratio(self, mode: str) -> float:
        """Median seconds of ``mode`` over those of ``bare``."""
        return self.median(mode) / self.median("bare")


@dataclass
class DriverBench:
    """A whole measurement: what was scored, the Ray and the machine it ran on, and each stage."""

    shards_dir: str
    source: str
    members: int
    passes: int
    ray_cpus: float
    cores: int
    stages: list[StageResult]
    command: str
    date: str


def _source_table(shards_dir: Path, source: str, columns: list[str]) -> pa.Table:
    return pq.read_table(str(shards_dir / "audio" / f"source={source}"), columns=columns)


def _scoring_kind(shards_dir: Path, source: str) -> tuple[str, list[int] | None]:
    """Noisy clips are scored as the relabelling scores them: both excerpts of every split."""
    if source != "noisy":
        return "clips", None
    splits = json.loads((shards_dir / "manifest.json").read_text())["config"]["splits"]
    return "excerpts", list(range(splits))


def _bare_scoring(shards_dir: Path, source: str, members: list[str], audio_format: str) -> tuple[list[str], np.ndarray]:
    kind, splits = _scoring_kind(shards_dir, source)
    table = _source_table(shards_dir, source, ["clip_id", "num_samples", "cuts", "audio"])
    scorer = EnsembleScorer(members, kind, audio_format, splits)
    keys, scores = [], []
    for i in range(0, table.num_rows, ROWS_PER_BATCH):
        out = scorer(table.slice(i, ROWS_PER_BATCH))
        keys.extend(out["key"].tolist())
        scores.append(out["scores"])
    return keys, np.concatenate(scores)


def _ray_scoring(shards_dir: Path, source: str, members: list[str], audio_format: str, v2: bool) -> tuple[list[str], np.ndarray]:
    kind, splits = _scoring_kind(shards_dir, source)
    ctx = ray.data.DataContext.get_current()
    saved = ctx.use_datasource_v2
    ctx.use_datasource_v2 = v2
    try:
        return score(shard_rows(shards_dir, source), members, kind, audio_format, splits)
    finally:
        ctx.use_datasource_v2 = saved


def _bare_features(shards_dir: Path, features: FeatureConfig) -> tuple[list[str], np.ndarray]:
    classes, stats, audio_format = shard_meta(shards_dir, features)
    keys, rows = [], []
    for path in sorted(p for p in (shards_dir / "audio").glob("source=*") if p.is_dir()):
        table = pq.read_table(str(path), columns=["clip_id", "labels", "fold", "audio"])
        table = table.append_column("source", pa.array([path.name.split("=", 1)[1]] * table.num_rows))
        for i in range(0, table.num_rows, ROWS_PER_BATCH):
            out = featurize_rows(table.slice(i, ROWS_PER_BATCH), classes, stats, features, audio_format)
            keys.extend(f"{s}/{c}" for s, c in zip(out["source"], out["clip_id"]))
            rows.append(out["features"])
    return keys, np.concatenate(rows)


def _ray_features(shards_dir: Path, features: FeatureConfig, capped: bool) -> tuple[list[str], np.ndarray]:
    return _keyed(shard_features(shards_dir, features, ROWS_PER_BATCH, compute=core_tasks() if capped else None))


def _prepared_features(shards_dir: Path, features: FeatureConfig) -> tuple[list[str], np.ndarray]:
    out = prepared_features(shards_dir, features)
    if out is None:
        raise FileNotFoundError(f"{shards_dir}: no pooled.parquet (prepared by an earlier version); prepare the data "
                                "again or leave out the mode features:prepared")
    return _keyed(out)


def _keyed(out: dict) -> tuple[list[str], np.ndarray]:
    """The baseline's features (``source``, ``clip_id``, ``features``) as ``source/clip_id`` keys and rows."""
    return [f"{s}/{c}" for s, c in zip(out["source"], out["clip_id"])], out["features"]


def measure(shards_dir: str | Path, run_dir: str | Path, source: str = "curated", passes: int = 3,
            modes: dict[str, tuple[str, ...]] | None = None, progress=None) -> DriverBench:
    """Time every mode of every stage ``passes`` times (needs a Ray session); ``modes`` picks a subset
    per stage (``bare`` always runs: it is the baseline)."""
    if passes < 1:
        raise ValueError("passes must be at least 1")
    root = location(shards_dir)
    members = [str(p) for p in member_paths(run_dir)]
    _, _, audio_format = shard_meta(root)
    if not (root / "audio" / f"source={source}").is_dir():
        raise FileNotFoundError(f"{root}: no {source} shards")
    features = FeatureConfig(**json.loads((root / "manifest.json").read_text())["config"]["features"])
    wanted = modes or MODES
    chosen = {s: ("bare", *[m for m in MODES[s][1:] if m in wanted[s]]) for s in MODES if s in wanted}
    work = {
        "scoring": {"bare": lambda: _bare_scoring(root, source, members, audio_format),
                    "v1": lambda: _ray_scoring(root, source, members, audio_format, v2=False),
                    "v2": lambda: _ray_scoring(root, source, members, audio_format, v2=True)},
        "features": {"bare": lambda: _bare_features(root, features),
                     "capped": lambda: _ray_features(root, features, capped=True),
                     "uncapped": lambda: _ray_features(root, features, capped=False),
                     "prepared": lambda: _prepared_features(root, features)},
    }
    results = {s: StageResult(s, 0) for s in chosen}
    for p in range(passes):
        for stage, stage_modes in chosen.items():
            for mode in stage_modes:
                t0 = time.perf_counter()
                keys, values = work[stage][mode]()
                seconds = time.perf_counter() - t0
                result = results[stage]
                result.seconds.setdefault(mode, []).append(seconds)
                result.outputs[mode] = (keys, values)
                result.examples = len(keys)
                if progress:
                    progress(f"bench driver: pass {p + 1}/{passes}, {stage} {mode}: {len(keys)} examples in {seconds:.1f} s")
    return DriverBench(str(root), source, len(members), passes, ray.cluster_resources().get("CPU", 0.0),
                       os.cpu_count() or 1, list(results.values()), " ".join(["ray-tagger", *sys.argv[1:]]),
                       time.strftime("%Y-%m-%d %H:%M:%S %Z"))


def format_report(b: DriverBench) -> str:
    lines = [f"bench driver: {b.shards_dir} (scoring: source={b.source}, {b.members} member(s)), {b.passes} passes",
             f"Ray: {b.ray_cpus:g} logical CPUs; machine: {platform.node()}, {b.cores} cores; "
             f"ray {ray.__version__}, python {platform.python_version()}",
             f"date: {b.date}", f"command: {b.command}",
             f"{'stage':<10}{'mode':<10}{'examples':>9}{'s/pass (median)':>17}{'x bare':>8}"]
    for s in b.stages:
        for mode in s.seconds:
            lines.append(f"{s.stage:<10}{mode:<10}{s.examples:>9}{s.median(mode):>17.2f}{s.ratio(mode):>8.2f}")
    return "\n".join(lines)


def run_bench(shards_dir: str | Path, run_dir: str | Path, source: str = "curated", passes: int = 3,
              modes: list[str] | None = None, progress=None) -> str:
    """``modes``: ``stage:mode`` names (e.g. ``scoring:v2``); None: all."""
    picked = None
    if modes:
        picked = {}
        for name in modes:
            stage, _, mode = name.partition(":")
            if stage not in MODES or mode not in MODES[stage]:
                raise ValueError(f"unknown mode {name!r}; choose from {', '.join(f'{s}:{m}' for s in MODES for m in MODES[s])}")
            picked[stage] = (*picked.get(stage, ()), mode)
    return format_report(measure(shards_dir, run_dir, source, passes, picked, progress))
