"""``runtime.ensure_ray``: which Ray it connects to, the controller poll a local Ray gets, a local
Ray deferred until a stage needs it (``defer_ray``), the Parquet reader and the task cap of the
driver's Ray Data stages (``ray.init`` replaced by a recorder: no Ray is started)."""

from __future__ import annotations

import os

import pytest

from ray_tagger import runtime

VAR = "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S"


@pytest.fixture
def inits(monkeypatch):
    """Each ``ray.init`` call's keyword arguments and the poll variable at that moment."""
    calls = []
    monkeypatch.setattr(runtime.ray, "is_initialized", lambda: False)
    monkeypatch.setattr(runtime.ray, "init", lambda **kw: calls.append((kw, os.environ.get(VAR))))
    monkeypatch.setattr(runtime, "_started_here", False)
    monkeypatch.setattr(runtime, "_deferred_cpus", None)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.delenv(VAR, raising=False)
    import ray.data

    ctx = ray.data.DataContext.get_current()
    monkeypatch.setattr(ctx, "use_datasource_v2", True)  # Ray 2.60's default, restored after the test
    return calls


def test_a_local_ray_polls_its_training_runs_every_half_second(inits):
    runtime.ensure_ray(num_cpus=3)
    assert inits == [({"address": "local", "num_cpus": 3, "include_dashboard": False}, "0.5")]
    assert runtime._started_here


def test_a_users_poll_setting_is_kept(inits, monkeypatch):
    monkeypatch.setenv(VAR, "2.0")
    runtime.ensure_ray()
    assert inits == [({"address": "local", "num_cpus": None, "include_dashboard": False}, "2.0")]


def test_a_cluster_keeps_its_own_setting(inits, monkeypatch):
    monkeypatch.setenv("RAY_ADDRESS", "ray://head:10001")
    runtime.ensure_ray()
    assert inits == [({"address": "ray://head:10001"}, None)]
    assert not runtime._started_here


def test_the_driver_reads_parquet_with_the_v1_reader_on_either_ray(inits, monkeypatch):
    import ray.data

    runtime.ensure_ray()
    assert ray.data.DataContext.get_current().use_datasource_v2 is False
    monkeypatch.setattr(ray.data.DataContext.get_current(), "use_datasource_v2", True)
    monkeypatch.setattr(runtime, "_started_here", False)
    monkeypatch.setenv("RAY_ADDRESS", "ray://head:10001")
    runtime.ensure_ray()
    assert ray.data.DataContext.get_current().use_datasource_v2 is False


def test_a_deferred_local_ray_starts_at_the_first_stage_that_needs_it_with_the_cpus_recorded(inits):
    runtime.defer_ray(num_cpus=5)
    assert inits == [], "nothing is started before a stage has work"
    runtime.ensure_ray()
    assert inits == [({"address": "local", "num_cpus": 5, "include_dashboard": False}, "0.5")]
    runtime.shutdown_own_ray()  # ray.is_initialized is False here: only the record is reset
    runtime.ensure_ray()
    assert inits[-1][0]["num_cpus"] is None, "a later command does not inherit the record"


def test_deferring_connects_to_a_named_cluster_at_once(inits, monkeypatch):
    monkeypatch.setenv("RAY_ADDRESS", "ray://head:10001")
    runtime.defer_ray(num_cpus=5)
    assert inits == [({"address": "ray://head:10001"}, None)]


def test_driver_side_cpu_tasks_are_capped_at_the_cores_on_a_local_ray_only(inits, monkeypatch):
    import ray.data

    monkeypatch.setattr(runtime.os, "cpu_count", lambda: 3)
    assert runtime.cpu_tasks() is None  # no Ray started here yet
    runtime.ensure_ray(num_cpus=8)
    cap = runtime.cpu_tasks()
    assert isinstance(cap, ray.data.TaskPoolStrategy) and cap.size == 3
    monkeypatch.setattr(runtime, "_started_here", False)
    monkeypatch.setenv("RAY_ADDRESS", "ray://head:10001")
    runtime.ensure_ray()
    assert runtime.cpu_tasks() is None  # a cluster: Ray's own limit, the logical CPUs
