"""``ray-tagger bench sharing``: 1 model on a device against k models sharing it, and what that
means for the full system's wall time.

Each measurement trains ``models`` runs of the preset at once, for a bounded number of
iterations, exactly as ``relabel`` and ``ensemble`` do (:func:`ray_tagger.runs.train_many`: Tune
trials of TorchTrainers, one Ray Data stream each; no held-out fold, so no validation passes).
With GPUs in the cluster each run gets ``1 / models`` of one GPU (fractional GPUs); without,
the runs share the machine's CPUs, and "device" below means that whole machine.

Figures per measurement:

* **steady it/s per model**: from each run's ``metrics.jsonl`` (written every ``log_every``
  iterations), iterations between its first and last report over the seconds between them; the
  first report absorbs the start-up (Train worker group, Ray Data pipeline, first pools).
* **aggregate it/s**: the sum of those over the concurrent runs (they overlap, see ``overlap``).
* **wall it/s**: all iterations of the measurement over its wall time, start-up included.
* **busy fraction**: the device's busy share sampled every 0.5 s during the runs' common steady
  interval: ``nvidia-smi`` utilization.gpu on a GPU machine (the driver must run on it), else the
  machine's CPU utilization (``psutil``).

Order: 1 model, k models, 1 model again; the baseline is pooled over its two runs so drift
shows. The projection (:func:`project`) puts the steady per-model rates into the report's
schedule: 15 relabelling runs, then 6 final runs, 200k iterations each.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import logging
import math
import platform
import shutil
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import ray

from ..config import TrainJobConfig, resolve
from ..runs import RunSpec, RunsFailedError, run_dir, train_many
from ..train import Placement

log = logging.getLogger(__name__)

PAPER_RUNS = (15, 6)
"""Runs of the report's two training stages: 3 splits × 5 folds relabelling, R ∈ {2, 4} × 3 splits final."""
PAPER_ITERATIONS = 200_000
SAMPLE_S = 0.5


@dataclass(frozen=True)
class RunRate:
    """One run's steady rate, from its metrics.jsonl."""

    name: str
    first: tuple[int, float]
    """(iteration, unix time) of the first report."""
    last: tuple[int, float]
    """(iteration, unix time) of the last report."""

    @property
    def its_per_s(self) -> float:
        return (self.last[0] - self.first[0]) / max(self.last[1] - self.first[1], 1e-9)


@dataclass
class Measurement:
    models: int
    gpus_per_run: float
    iterations: int
    wall_s: float
    runs: list[RunRate]
    busy: float | None
    """Mean busy fraction over the common steady interval (None: no samples in it)."""

    @property
    def per_model(self) -> float:
        return self.aggregate / self.models

    @property
    def aggregate(self) -> float:
        return sum(r.its_per_s for r in self.runs)

    @property
    def wall_its_per_s(self) -> float:
        return self.models * self.iterations / self.wall_s

    @property
    def common(self) -> tuple[float, float]:
        """The interval every run spent in its steady phase."""
        return max(r.first[1] for r in self.runs), min(r.last[1] for r in self.runs)

    @property
    def overlap(self) -> float:
        """The common steady interval as a share of the longest run's steady phase."""
        lo, hi = self.common
        longest = max(r.last[1] - r.first[1] for r in self.runs)
        return max(hi - lo, 0.0) / max(longest, 1e-9)


def steady_rate(name: str, metrics_jsonl: Path) -> RunRate:
    """A run's first and last training reports (the final report, which has no ``loss``, is skipped)."""
    rows = [json.loads(line) for line in metrics_jsonl.read_text().splitlines() if line.strip()]
    rows = [r for r in rows if "loss" in r]
    if len(rows) < 2:
        raise ValueError(f"{metrics_jsonl}: {len(rows)} training reports; raise --iterations or lower --log-every")
    return RunRate(name, (rows[0]["iteration"], rows[0]["time"]), (rows[-1]["iteration"], rows[-1]["time"]))


def stage_seconds(runs: int, devices: int, per_device: int, its_per_s_per_model: float,
                  iterations: int = PAPER_ITERATIONS) -> float:
    """Wall time of a stage of ``runs`` equal runs on ``devices`` devices holding ``per_device``
    runs each: ``ceil(runs / (devices · per_device))`` waves of ``iterations / rate`` seconds."""
    waves = math.ceil(runs / (devices * per_device))
    return waves * iterations / its_per_s_per_model


def project(per_model: dict[int, float], devices: tuple[int, ...] = (1, 8)) -> list[dict]:
    """Projected wall time of the full system (15 then 6 runs × 200k iterations) for every
    (models per device, devices) pair, from the steady per-model rate at that sharing."""
    rows = []
    for k, rate in sorted(per_model.items()):
        for g in devices:
            parts = [stage_seconds(n, g, k, rate) for n in PAPER_RUNS]
            rows.append({"models_per_device": k, "devices": g, "relabel_h": parts[0] / 3600,
                         "final_h": parts[1] / 3600, "total_h": sum(parts) / 3600})
    return rows


class BusySampler:
    """Samples the device's busy share every ``SAMPLE_S`` seconds in a thread: ``[(unix time, share)]``."""

    def __init__(self, gpu: bool):
        self.gpu = gpu
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _read(self) -> float:
        if self.gpu:
            out = subprocess.run(["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits"],
                                 capture_output=True, text=True, check=True).stdout.split()
            return float(out[0]) / 100
        import psutil

        return psutil.cpu_percent(interval=SAMPLE_S) / 100

    def _loop(self) -> None:
        while not self._stop.is_set():
            share = self._read()
            self.samples.append((time.time(), share))
            if self.gpu:
                self._stop.wait(SAMPLE_S)

    def __enter__(self) -> BusySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def mean(self, lo: float, hi: float) -> float | None:
        inside = [s for t, s in self.samples if lo <= t <= hi]
        return sum(inside) / len(inside) if inside else None


def measure(shards_dir: str | Path, work_dir: Path, job: TrainJobConfig, models: int, gpu: bool, tag: str) -> Measurement:
    """Train ``models`` runs of ``job`` at once (fresh folders under ``work_dir/tag``)."""
    root = work_dir / tag
    specs = [RunSpec(f"m{i}", split=i % 3, fold=None, R=job.stream.R) for i in range(models)]
    placement = Placement(gpus_per_worker=1 / models if gpu else 0.0)
    log.info("bench sharing: %d model(s) at once (%s)", models, f"{placement.gpus_per_worker:g} GPU each" if gpu else "CPU")
    t0 = time.perf_counter()
    with BusySampler(gpu) as sampler:
        try:
            train_many(shards_dir, root, job, specs, placement, concurrency=models, stage=f"bench-{tag}")
        except RunsFailedError as e:  # typically memory: each run holds its own model, batches and pipeline
            raise RunsFailedError(f"{models} run(s) at once did not all finish, so there is no figure for them; the "
                                  f"run folders are in {root}. {e}".replace("re-run the same command to resume",
                                                                            "try fewer --models or a smaller preset")) from None
    wall = time.perf_counter() - t0
    rates = [steady_rate(s.name, run_dir(root, s) / "metrics.jsonl") for s in specs]
    m = Measurement(models, placement.gpus_per_worker, job.optim.iterations, wall, rates, None)
    m.busy = sampler.mean(*m.common)
    return m


def bench_job(preset: str, iterations: int, log_every: int, overrides: list[str] | None = None) -> TrainJobConfig:
    """The preset, bounded: ``iterations`` iterations, reports every ``log_every``, no intermediate
    checkpoints, a 2-batch BatchNorm refresh at the end (not part of the steady rate)."""
    job = resolve(preset, overrides)
    return dataclasses.replace(
        job,
        optim=dataclasses.replace(job.optim, iterations=iterations, bn_refresh_batches=2),
        run=dataclasses.replace(job.run, log_every=log_every, checkpoint_every=iterations + 1),
    )


def run_bench(shards_dir: str | Path, preset: str = "paper", iterations: int = 40, log_every: int = 5, models: int = 4,
              work_dir: str | Path | None = None, overrides: list[str] | None = None) -> str:
    """Measure 1, ``models``, 1 model(s) at once and format the table and projection (Ray must be up)."""
    if models < 2:
        raise ValueError("--models must be at least 2 (the baseline is 1 model)")
    if iterations < 2 * log_every:
        raise ValueError(f"--iterations {iterations} gives fewer than two reports every {log_every}")
    job = bench_job(preset, iterations, log_every, overrides)
    gpu = ray.cluster_resources().get("GPU", 0) >= 1
    if gpu and not shutil.which("nvidia-smi"):
        raise ValueError("the cluster has GPUs but nvidia-smi is not on this machine's PATH (run the driver on the GPU node)")
    work = Path(work_dir) if work_dir else Path(tempfile.mkdtemp(prefix="bench-sharing-"))
    if work.exists() and any(work.iterdir()):
        raise FileExistsError(f"{work} is not empty; the measurements need fresh run folders")
    work.mkdir(parents=True, exist_ok=True)
    runs = [measure(shards_dir, work, job, k, gpu, tag) for k, tag in ((1, "base1"), (models, f"shared{models}"), (1, "base2"))]
    if work_dir is None:  # kept when a measurement fails: its run folders say why
        shutil.rmtree(work, ignore_errors=True)
    return format_result(runs, preset, gpu, shards_dir)


def _device() -> str:
    if ray.cluster_resources().get("GPU", 0) >= 1:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True, text=True, check=False)
        return out.stdout.strip().splitlines()[0] if out.returncode == 0 else "GPU"
    import torch

    from .model import device_name

    return f"CPU only: {device_name(torch.device('cpu'))}, {ray.cluster_resources().get('CPU', 0):g} logical Ray CPUs"


def format_result(runs: list[Measurement], preset: str, gpu: bool, shards_dir) -> str:
    base = [m for m in runs if m.models == 1]
    shared = next(m for m in runs if m.models > 1)
    base_rate = sum(m.aggregate for m in base) / len(base)
    lines = [
        f"bench sharing  {datetime.date.today()}  device: {_device()}",
        f"python {platform.python_version()}, ray {ray.__version__}, preset {preset}, shards {shards_dir}",
        f"{shared.iterations} iterations per run; busy fraction = {'nvidia-smi utilization.gpu' if gpu else 'CPU utilization'}",
        "",
        "| runs at once | GPU per run | steady it/s per model | aggregate it/s | ratio vs 1 model | wall it/s | overlap | busy |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for m, tag in zip(runs, ("1 (first)", f"{shared.models}", "1 (last)")):
        busy = f"{m.busy:.2f}" if m.busy is not None else "n/a"
        lines.append(f"| {tag} | {m.gpus_per_run:g} | {m.per_model:.3f} | {m.aggregate:.3f} | {m.aggregate / base_rate:.2f}x "
                     f"| {m.wall_its_per_s:.3f} | {m.overlap:.2f} | {busy} |")
    lines += ["", (f"projected full system ({PAPER_RUNS[0]} + {PAPER_RUNS[1]} runs × {PAPER_ITERATIONS:,} iterations), "
                   "steady rates, start-up not counted:"), "",
              "| models per device | devices | relabel stage h | final stage h | total h |", "|---|---|---|---|---|"]
    for row in project({1: base_rate, shared.models: shared.per_model}):
        lines.append(f"| {row['models_per_device']} | {row['devices']} | {row['relabel_h']:.1f} | {row['final_h']:.1f} | {row['total_h']:.1f} |")
    return "\n".join(lines)
