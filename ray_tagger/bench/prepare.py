"""``ray-tagger bench prepare``: the Ray Data prepare job against a single-process loop.

The loop does the same work per clip as the two Ray passes (decode and validate, log-mel
sums of training clips, decode again, lossless encode) and writes one Parquet file per
source; both are timed in the same run on the same input.
"""

from __future__ import annotations

import platform
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import ray
import torch

from ..decode import BadAudio, encode, read_source, to_float
from ..features import FeatureConfig, LogMel
from ..layout import read_dataset
from ..normalization import StatsAccumulator
from ..prepare import PrepareConfig, prepare


@dataclass(frozen=True)
class Timing:
    """Wall time of one way of preparing ``clips`` clips holding ``audio_s`` seconds."""

    name: str
    seconds: float
    clips: int
    audio_s: float

    @property
    def clips_per_s(self) -> float:
        return self.clips / self.seconds

    @property
    def audio_s_per_s(self) -> float:
        return self.audio_s / self.seconds


def single_process(data_dir: str | Path, out_dir: Path, audio_format: str, features: FeatureConfig = FeatureConfig()) -> Timing:
    """The baseline: one process, one clip at a time, one torch thread."""
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    index = read_dataset(data_dir)
    logmel, stats = LogMel(features), StatsAccumulator(features.n_mels)
    records = [r for r in index.records if r.problem is None]
    rows, audio_s = {}, 0.0
    for r in records:
        try:
            samples = read_source(r.path, features.sample_rate)
        except BadAudio:
            continue
        if r.source != "test":
            with torch.no_grad():
                stats.update(logmel.clip(torch.from_numpy(to_float(samples))).double().numpy())
        samples = read_source(r.path, features.sample_rate)
        audio_s += samples.shape[0] / features.sample_rate
        rows.setdefault(r.source, []).append({"clip_id": r.fname, "audio": encode(samples, features.sample_rate, audio_format)})
    out_dir.mkdir(parents=True, exist_ok=True)
    for source, items in rows.items():
        pq.write_table(pa.Table.from_pylist(items), out_dir / f"{source}.parquet")
    stats.finalize()
    return Timing("single process", time.perf_counter() - t0, sum(map(len, rows.values())), audio_s)


def ray_prepare(data_dir: str | Path, out_dir: Path, audio_format: str) -> Timing:
    """The product: ``prepare`` as a Ray Data job (fresh output, so nothing is skipped)."""
    t0 = time.perf_counter()
    manifest = prepare(data_dir, out_dir, PrepareConfig(audio_format=audio_format))
    seconds = time.perf_counter() - t0
    counts = manifest["counts"].values()
    return Timing("ray data prepare", seconds, sum(c["written"] for c in counts), sum(c["audio_seconds"] for c in counts))


def run_bench(data_dir: str | Path, work_dir: str | Path | None = None, audio_format: str = "flac") -> str:
    """Warm the page cache with one untimed loop, then time Ray and the loop on the same input."""
    with tempfile.TemporaryDirectory(dir=work_dir) as tmp:
        single_process(data_dir, Path(tmp) / "warmup", audio_format)  # warm the page cache for both
        timed_ray = ray_prepare(data_dir, Path(tmp) / "ray", audio_format)
        timed_loop = single_process(data_dir, Path(tmp) / "loop", audio_format)
    cpus = int(ray.cluster_resources().get("CPU", 0))
    lines = [
        f"bench prepare: {data_dir} ({timed_loop.clips} clips, {timed_loop.audio_s / 60:.1f} min of audio, {audio_format})",
        f"machine: {platform.node()}, {platform.machine()}, Ray CPUs {cpus}, python {platform.python_version()}",
        f"{'':18s} {'seconds':>9s} {'clips/s':>9s} {'audio-s/s':>10s}",
    ]
    for t in (timed_loop, timed_ray):
        lines.append(f"{t.name:18s} {t.seconds:9.2f} {t.clips_per_s:9.1f} {t.audio_s_per_s:10.1f}")
    lines.append(f"ratio ray/single: {timed_ray.clips_per_s / timed_loop.clips_per_s:.2f}x clips/s")
    return "\n".join(lines)
