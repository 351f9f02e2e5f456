"""Shared fixtures: one Ray session per test module, logically over-subscribed (DESIGN §3)."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("RAY_DEDUP_LOGS", "0")
# the commands the tests run start their local Ray without its dashboard (about 5 s each on 2 cores;
# runtime.DASHBOARD_VAR); the tests that look at it set 1
os.environ.setdefault("RAY_TAGGER_DASHBOARD", "0")
# with two test processes side by side on 2 cores (pytest -n 2, README), Ray Train's 60 s for a worker
# group to start (its actors import torch) may not be enough; 300 s here
os.environ.setdefault("RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S", "300")


@pytest.fixture(scope="module")
def ray_session():
    """A new local Ray with 8 logical CPUs on whatever cores the machine has (never a head already
    running here), with the Ray Train settings a command's local Ray gets but no dashboard; shut
    down after the module."""
    import ray

    from ray_tagger.runtime import local_train_env, start_local_ray, use_v1_parquet_reader

    local_train_env()
    start_local_ray(num_cpus=8, include_dashboard=False, log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    use_v1_parquet_reader()  # as every command does (ensure_ray)
    yield ray
    ray.shutdown()


def pytest_report_header(config):
    """The machine's speed when the suite starts, so that the suite's time can be compared across runs:
    the same VM ran the same suite in 20 to 39 minutes as its speed changed by the hour (README,
    Development). ``ray-tagger bench model --preset demo --seconds 4 --modes eager-fp32``'s
    reading, 6 timed steps (about 3 s)."""
    from ray_tagger.bench.model import measure
    from ray_tagger.config import resolve

    bench = measure(steps=6, warmup=2, seconds=4.0, modes=["eager-fp32"], device="cpu", config=resolve("demo").model)
    step = bench.batch / bench.baseline_clips_per_s
    return (f"machine speed: {step:.3f} s per eager training step of the demo CRNN on {bench.threads} threads, load "
            f"{bench.load[0]:.1f} (ray-tagger bench model --preset demo --seconds 4 --modes eager-fp32)")
