"""``ray-tagger sweep``: Ray Tune over the curated oversampling factor R and the augmentation
strength, with ASHA early stopping on the held-out lwlrap.

Strength ``s`` scales the report's augmentation together (``s = 1`` is the report): mixup
probability ``min(1, 2/3·s)``, frequency-mask height ``16·s`` bands of 128 (an eighth of the
bands times s for other band counts), time-mask width ``70·s`` frames
and the warp-factor scale ``0.07·s``. Trial ``i`` takes ``R = (1, 2, 4, 8)[i mod 4]`` and ``s``
drawn uniformly from [0.25, 1.75] with the sweep's seed. Every trial is a training run (split 0,
fold 0 held out) in ``RUN_DIR/trials/NAME``. The best trial's configuration is written as a
preset (``RUN_DIR/best.yaml``) that ``ensemble`` and ``run`` accept.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from pathlib import Path

import numpy as np
import yaml

from .storage import location
from .config import TrainJobConfig, resolve_system
from .console import runs_progress, stage
from .runs import TRIAL_CPU, RunsFailedError
from .runtime import ensure_ray
from .stream import shard_meta
from .train import Placement

log = logging.getLogger(__name__)

R_VALUES = (1, 2, 4, 8)
STRENGTH_RANGE = (0.25, 1.75)


def with_strength(job: TrainJobConfig, strength: float) -> TrainJobConfig:
    """The job with its augmentation scaled by ``strength`` (see module doc)."""
    m, a = job.mixup, job.specaugment
    return dataclasses.replace(
        job,
        mixup=dataclasses.replace(m, probability=min(1.0, 2 / 3 * strength)),
        specaugment=dataclasses.replace(a, freq_mask_max=int(round(16 * strength * job.features.n_mels / 128)), time_mask_max=int(round(70 * strength)),
                                        alpha_scale=0.07 * strength),
    )


def trial_job(job: TrainJobConfig) -> TrainJobConfig:
    """The job a trial trains: every report must carry the held-out lwlrap (Tune refuses a result
    without the metric ASHA compares on), and a run reports at every log step, every checkpoint
    and its last iteration, so it logs and validates every ``gcd(log_every, checkpoint_every,
    iterations)`` iterations (``log_every`` itself when the others are multiples of it)."""
    step = math.gcd(math.gcd(job.run.log_every, job.run.checkpoint_every), job.optim.iterations)
    return dataclasses.replace(job, run=dataclasses.replace(job.run, log_every=step, validate_every=step))


def trial_plan(samples: int, seed: int) -> list[dict]:
    """``samples`` trials ``{name, R, strength}``: R cycles through :data:`R_VALUES`, strength is seeded-uniform."""
    rng = np.random.default_rng(seed)
    plan = []
    for i in range(samples):
        s = float(rng.uniform(*STRENGTH_RANGE))
        R = R_VALUES[i % len(R_VALUES)]
        plan.append({"name": f"t{i:02d}_R{R}_s{s:.2f}", "R": R, "strength": round(s, 4)})
    return plan


def _trial(config: dict, shards: str, root: str, job: dict, placement: dict) -> None:
    """Tune function trainable: one trial (``config``: name, R, strength) as a training run."""
    from ray.tune.integration.ray_train import TuneReportCallback

    from .train import train

    trial = with_strength(TrainJobConfig.from_dict(job), config["strength"])
    trial = dataclasses.replace(trial, stream=dataclasses.replace(trial.stream, R=config["R"]))
    train(shards, location(root) / "trials" / config["name"], trial, 0, 0, Placement(**placement), callbacks=[TuneReportCallback()])


def sweep(
    shards_dir: str | Path,
    out_dir: str | Path,
    job: TrainJobConfig,
    preset: str,
    samples: int = 8,
    placement: Placement = Placement(),
    concurrency: int | None = None,
    grace: int | None = None,
    seed: int = 0,
) -> dict:
    """Run the sweep; write ``sweep.json`` and the best preset; return the sweep's record."""
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler

    from .runs import fits_at_once

    if samples < 1:
        raise ValueError("--samples must be at least 1")
    ensure_ray()
    shard_meta(shards_dir, job.features)  # shards prepared for other log-mel settings: one line, before any trial
    out_dir = location(out_dir)
    base = job
    job = trial_job(job)
    iterations = job.optim.iterations
    grace = grace or max(job.run.log_every, iterations // 4)
    plan = trial_plan(samples, seed)
    n = min(samples, concurrency or max(1, fits_at_once(job, placement, True)))
    stage(log, "sweep: %d trials, %d at a time, ASHA on held-out lwlrap (grace %d of %d iterations)", samples, n, grace, iterations)
    by_name = {p["name"]: p for p in plan}
    trainable = tune.with_parameters(_trial, shards=str(location(shards_dir)), root=str(out_dir), job=job.to_dict(),
                                     placement=dataclasses.asdict(placement))
    tuner = tune.Tuner(
        tune.with_resources(trainable, {"CPU": TRIAL_CPU}),
        param_space={"name": tune.grid_search(list(by_name)), "R": tune.sample_from(lambda config: by_name[config["name"]]["R"]),
                     "strength": tune.sample_from(lambda config: by_name[config["name"]]["strength"])},
        tune_config=tune.TuneConfig(
            max_concurrent_trials=n,
            scheduler=ASHAScheduler(time_attr="iteration", metric="val_lwlrap", mode="max", max_t=iterations,
                                    grace_period=grace, reduction_factor=2),
        ),
        run_config=tune.RunConfig(name="sweep", storage_path=str(out_dir / "tune"), verbose=1),
    )
    with runs_progress("sweep", {name: out_dir / "trials" / name for name in by_name}, iterations, early_stops=True):
        grid = tuner.fit()
    trials = []
    for result in grid:
        trial = by_name[result.config["name"]]
        history = result.metrics_dataframe
        val = history.dropna(subset=["val_lwlrap"]) if history is not None and "val_lwlrap" in history else None
        last = val.iloc[-1] if val is not None and len(val) else None
        trials.append({**trial, "iterations": int(last["iteration"]) if last is not None else 0,
                       "val_lwlrap": float(last["val_lwlrap"]) if last is not None else None,
                       "error": str(result.error).strip().splitlines()[-1][:200] if result.error else None})
    for t in trials:
        t["stopped_early"] = t["error"] is None and t["iterations"] < iterations
    finished = [t for t in trials if t["iterations"] >= iterations and t["val_lwlrap"] is not None]
    if not finished:
        raise RunsFailedError(f"sweep: no trial reached {iterations} iterations; see {out_dir / 'tune'}")
    best = max(finished, key=lambda t: t["val_lwlrap"])
    best_job = with_strength(base, best["strength"])
    best_job = dataclasses.replace(best_job, stream=dataclasses.replace(best_job.stream, R=best["R"]))
    preset_path = out_dir / "best.yaml"
    header = (f"# written by 'ray-tagger sweep' from preset {preset!r}: trial {best['name']} "
              f"(R={best['R']}, strength {best['strength']}), held-out lwlrap {best['val_lwlrap']:.4f}\n")
    system = {**resolve_system(preset).to_dict(), "final_R": [best["R"]]}
    body = json.loads(json.dumps({**best_job.to_dict(), "system": system}))
    preset_path.write_text(header + yaml.safe_dump(body, sort_keys=False))
    record = {"trials": trials, "best": best, "preset": str(preset_path), "iterations": iterations, "grace": grace}
    (out_dir / "sweep.json").write_text(json.dumps(record, indent=1))
    return record


def format_sweep(record: dict) -> str:
    lines = [f"{'trial':18s} {'R':>2s} {'strength':>8s} {'iterations':>10s} {'val lwlrap':>10s}  status"]
    # finished trials first (the best is chosen among them), then by held-out lwlrap
    for t in sorted(record["trials"], key=lambda t: (t["iterations"] < record["iterations"], -(t["val_lwlrap"] or -1))):
        status = "error: " + t["error"] if t["error"] else ("stopped early by ASHA" if t["stopped_early"] else "finished")
        val = f"{t['val_lwlrap']:.4f}" if t["val_lwlrap"] is not None else "-"
        lines.append(f"{t['name']:18s} {t['R']:2d} {t['strength']:8.2f} {t['iterations']:10d} {val:>10s}  {status}")
    return "\n".join(lines)
