"""Many training runs at once: each run is a Ray Tune trial whose function fits a ``TorchTrainer``.

Used by ``relabel`` (splits × folds), ``ensemble`` (splits × R) and ``sweep``. Every run has its
own folder under ``ROOT/runs/NAME`` (the folder of :func:`ray_tagger.train.train`); a run whose
``summary.json`` exists is complete and is not submitted again, and an interrupted run resumes
from its own last checkpoint. So re-running a stage retrains no finished run.

Concurrency: how many runs fit the cluster at once (CPUs, and GPUs when the runs use them), or
the number asked for. A trial itself only waits for its trainer and holds a sliver of a CPU; the
Train workers and the data pipelines reserve their own resources.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path

import ray

from . import console
from .config import TrainJobConfig
from .runtime import ensure_ray
from .storage import location
from .stream import shard_meta
from .train import Placement, required_cpus, train

log = logging.getLogger(__name__)

TRIAL_CPU = 0.01
"""CPU a Tune trial holds while its trainer runs (placement groups cannot be empty)."""


class RunsFailedError(RuntimeError):
    """Some runs of a stage failed; re-running the stage retrains only those."""


@dataclass(frozen=True)
class RunSpec:
    """One model of an ensemble."""

    name: str
    """Folder name under ROOT/runs (also the Train run's name)."""
    split: int
    """Noisy-clip split the run trains on."""
    fold: int | None
    """Curated fold held out for validation (None: train on all data)."""
    R: int
    """Curated oversampling factor."""
    relabeled: str | None = None
    """Relabelled excerpt table replacing the provided noisy labels."""


def run_dir(root: str | Path, spec: RunSpec) -> Path:
    return location(root) / "runs" / spec.name


def is_complete(root: str | Path, spec: RunSpec) -> bool:
    return (run_dir(root, spec) / "summary.json").is_file()


def _cpus_per_run(job: TrainJobConfig, placement: Placement, holdout: bool) -> float:
    """Logical CPUs one run holds: its trainer's and pipelines' (``required_cpus``) and its trial's."""
    return required_cpus(job, placement, holdout) + TRIAL_CPU


def fits_at_once(job: TrainJobConfig, placement: Placement, holdout: bool) -> int:
    """How many runs of this shape the connected Ray cluster holds at the same time."""
    resources = ray.cluster_resources()
    n = int(resources.get("CPU", 0) // _cpus_per_run(job, placement, holdout))
    gpus = placement.workers * placement.gpus_per_worker
    if gpus:
        n = min(n, int(resources.get("GPU", 0) / gpus + 1e-9))
    return n


def local_cpus(job: TrainJobConfig, placement: Placement, holdout: bool, concurrency: int) -> int:
    """Logical CPUs for a local Ray that holds ``concurrency`` runs (at least the cores; DESIGN §3)."""
    need = concurrency * _cpus_per_run(job, placement, holdout)
    return max(os.cpu_count() or 1, math.ceil(need))


def _trial(config: dict, shards: str, root: str, job: dict, placement: dict) -> None:
    """Tune function trainable: fit the run ``config['run']``; its Train reports become the trial's results.
    The arguments after ``config`` are the same for every trial (``tune.with_parameters``)."""
    from ray.tune.integration.ray_train import TuneReportCallback

    spec = RunSpec(name=config["run"], **config["spec"])
    job = TrainJobConfig.from_dict(job)
    job = dataclasses.replace(job, stream=dataclasses.replace(job.stream, R=spec.R))
    train(shards, run_dir(root, spec), job, spec.split, spec.fold, Placement(**placement),
          relabeled=spec.relabeled, callbacks=[TuneReportCallback()])


def train_many(
    shards_dir: str | Path,
    root: str | Path,
    job: TrainJobConfig,
    specs: list[RunSpec],
    placement: Placement = Placement(),
    concurrency: int | None = None,
    stage: str = "runs",
) -> list[dict]:
    """Train every run of ``specs`` not yet complete, ``concurrency`` at a time; return all summaries
    (in the order of ``specs``). Raises :class:`RunsFailedError` naming the runs that failed."""
    from ray import tune

    root = location(root)
    todo = [s for s in specs if not is_complete(root, s)]
    done = len(specs) - len(todo)
    if done:
        console.stage(log, "%s: %d of %d runs are complete and are not trained again", stage, done, len(specs))
    if todo:
        ensure_ray()
        holdout = any(s.fold is not None for s in todo)
        fit = fits_at_once(job, placement, holdout)
        if fit < 1 and concurrency is None:
            needed = required_cpus(job, placement, holdout)
            raise ValueError(f"{stage}: one run holds {needed:g} CPUs (and {placement.workers * placement.gpus_per_worker:g} GPUs) "
                             f"but the Ray cluster has {ray.cluster_resources().get('CPU', 0):g} CPUs / "
                             f"{ray.cluster_resources().get('GPU', 0):g} GPUs now; on an autoscaling cluster pass "
                             "--concurrency N and the runs wait for the nodes the autoscaler adds")
        shard_meta(shards_dir, job.features)  # shards prepared for other log-mel settings: one line, before any run
        n = min(len(todo), fit if concurrency is None else concurrency)
        if concurrency is not None and concurrency > fit:
            log.warning("%s: %d concurrent runs asked for, but the cluster holds %d at once now; the rest wait for free "
                        "resources (or for nodes an autoscaler adds)", stage, concurrency, fit)
        console.stage(log, "%s: training %d runs, %d at a time (%s)", stage, len(todo), n, ", ".join(s.name for s in todo))
        by_name = {s.name: {k: v for k, v in dataclasses.asdict(s).items() if k != "name"} for s in todo}
        trainable = tune.with_parameters(_trial, shards=str(location(shards_dir)), root=str(root), job=job.to_dict(),
                                         placement=dataclasses.asdict(placement))
        tuner = tune.Tuner(
            tune.with_resources(trainable, {"CPU": TRIAL_CPU}),
            param_space={"run": tune.grid_search(list(by_name)), "spec": tune.sample_from(lambda config: by_name[config["run"]])},
            tune_config=tune.TuneConfig(max_concurrent_trials=n),
            run_config=tune.RunConfig(name=stage, storage_path=str(root / "tune"), verbose=1),
        )
        with console.runs_progress(stage, {s.name: run_dir(root, s) for s in specs}, job.optim.iterations):
            grid_result = tuner.fit()
        failed = [s.name for s in todo if not is_complete(root, s)]
        if failed or grid_result.errors:
            first = grid_result.errors[0] if grid_result.errors else "no summary written"
            raise RunsFailedError(f"{stage}: {len(failed)} of {len(specs)} runs failed ({', '.join(failed)}); "
                               f"first error: {str(first).strip().splitlines()[-1][:300]}; re-run the same command to resume")
    return [json.loads((run_dir(root, s) / "summary.json").read_text()) for s in specs]
