"""``runtime.ensure_ray``: which Ray it connects to, what a local Ray gets (the controller poll, no
preemption watcher, a dashboard whose address the console shows), a local Ray deferred until a
stage needs it (``defer_ray``), the Parquet reader and the task cap of the driver's Ray Data stages
(``ray.init`` replaced by a recorder: no Ray is started)."""

from __future__ import annotations

import logging
import os
from types import SimpleNamespace

import pytest

from ray_tagger import runtime

VAR = "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S"
WATCHER = "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER"
LOCAL = {"address": "local", "include_dashboard": True, "dashboard_host": "127.0.0.1"}


@pytest.fixture
def inits(monkeypatch):
    """Each ``ray.init`` call's keyword arguments and the poll variable at that moment (the recorder
    answers as a local Ray whose dashboard took port 8266)."""
    calls = []

    def init(**kw):
        calls.append((kw, os.environ.get(VAR)))
        return SimpleNamespace(dashboard_url="127.0.0.1:8266")

    monkeypatch.setattr(runtime.ray, "is_initialized", lambda: False)
    monkeypatch.setattr(runtime.ray, "init", init)
    monkeypatch.setattr(runtime, "_started_here", False)
    monkeypatch.setattr(runtime, "_deferred_cpus", None)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    for name in (VAR, WATCHER, "RAY_AUTH_MODE", runtime.DASHBOARD_VAR):  # unset here, as they were before the test afterwards
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    import ray.data

    ctx = ray.data.DataContext.get_current()
    monkeypatch.setattr(ctx, "use_datasource_v2", True)  # Ray 2.60's default, restored after the test
    return calls


def test_a_local_ray_polls_its_training_runs_every_half_second(inits):
    runtime.ensure_ray(num_cpus=3)
    assert inits == [({**LOCAL, "num_cpus": 3}, "0.5")]
    assert runtime._started_here


def test_a_local_ray_starts_no_preemption_watcher_and_shows_its_dashboard(inits, caplog, monkeypatch):
    caplog.set_level("INFO", logger=runtime.log.name)
    runtime.ensure_ray(num_cpus=3)
    assert os.environ[WATCHER] == "0"
    assert [(r.getMessage(), r.console) for r in caplog.records] == [(
        "started a local Ray (3 logical CPUs), its dashboard at http://127.0.0.1:8266 "
        "(sign in with the token `ray get-auth-token` prints)", True)]  # a console line
    caplog.clear()
    monkeypatch.setattr(runtime, "_started_here", False)
    monkeypatch.setenv(WATCHER, "1")  # a user's setting is kept
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")  # no token to sign in with
    runtime.ensure_ray(num_cpus=3)
    assert os.environ[WATCHER] == "1"
    assert [r.getMessage() for r in caplog.records] == [
        "started a local Ray (3 logical CPUs), its dashboard at http://127.0.0.1:8266"]
    caplog.clear()
    monkeypatch.setattr(runtime, "_started_here", False)
    monkeypatch.setenv(runtime.DASHBOARD_VAR, "0")
    runtime.ensure_ray(num_cpus=3)
    assert inits[-1][0]["include_dashboard"] is False
    assert [r.getMessage() for r in caplog.records] == [
        "started a local Ray (3 logical CPUs), without its dashboard (RAY_TAGGER_DASHBOARD=0)"]
    caplog.clear()
    monkeypatch.setattr(runtime, "_started_here", False)
    monkeypatch.delenv(runtime.DASHBOARD_VAR)
    monkeypatch.setattr(runtime.ray, "init", lambda **kw: SimpleNamespace(dashboard_url=""))  # Ray started without it
    runtime.ensure_ray(num_cpus=3)
    assert [r.getMessage() for r in caplog.records] == [
        "started a local Ray (3 logical CPUs); its dashboard did not start (Ray's reason is in the log)"]


def test_a_users_poll_setting_is_kept(inits, monkeypatch):
    monkeypatch.setenv(VAR, "2.0")
    runtime.ensure_ray()
    assert inits == [({**LOCAL, "num_cpus": None}, "2.0")]


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
    assert inits == [({**LOCAL, "num_cpus": 5}, "0.5")]
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


def test_a_local_ray_that_timed_out_during_startup_is_started_once_more(inits, monkeypatch, caplog):
    """Ray's own failure when the raylet or its agents come up too slowly on a busy machine: a second
    start, with a warning; any other failure, or a second timeout, reaches the user."""
    timeout = Exception("The current node timed out during startup. This could happen because some of the raylet "
                        "failed to startup or the GCS has become overloaded.")
    record = runtime.ray.init
    outcomes = [timeout]

    def flaky(**kw):
        if outcomes:
            raise outcomes.pop(0)
        return record(**kw)

    monkeypatch.setattr(runtime.ray, "init", flaky)
    monkeypatch.setattr(runtime.ray, "shutdown", lambda: None)
    with caplog.at_level(logging.WARNING, logger="ray_tagger.runtime"):
        runtime.ensure_ray(num_cpus=3)
    assert len(inits) == 1 and inits[0][0]["num_cpus"] == 3 and runtime._started_here
    assert "starting it again (try 2 of 2)" in caplog.text

    monkeypatch.setattr(runtime, "_started_here", False)
    outcomes[:] = [timeout, timeout]
    with pytest.raises(Exception, match="timed out during startup"):
        runtime.ensure_ray(num_cpus=3)
    outcomes[:] = [RuntimeError("something else")]
    with pytest.raises(RuntimeError, match="something else"):
        runtime.ensure_ray(num_cpus=3)
    assert len(inits) == 1, "no further start after a second timeout or another failure"


def test_a_local_rays_processes_name_its_own_gcs(inits, monkeypatch):
    """While ``ray.init`` starts the local Ray, ``RAY_ADDRESS`` names this Ray's GCS on the port Ray
    is told to take (its processes inherit both); afterwards this process's environment is as before."""
    seen = []
    record = runtime.ray.init

    def init(**kw):
        seen.append((os.environ.get("RAY_ADDRESS"), os.environ.get("RAY_GCS_SERVER_PORT")))
        return record(**kw)

    monkeypatch.setattr(runtime.ray, "init", init)
    monkeypatch.setenv("RAY_GCS_SERVER_PORT", "")
    monkeypatch.delenv("RAY_GCS_SERVER_PORT")
    runtime.ensure_ray(num_cpus=3)
    (address, port), = seen
    assert port.isdigit() and 0 < int(port) < 65536
    assert address == f"{runtime.ray.util.get_node_ip_address()}:{port}"
    assert "RAY_ADDRESS" not in os.environ and "RAY_GCS_SERVER_PORT" not in os.environ


def test_execution_options_hold_inside_the_block_and_come_back_after_it_even_on_an_error():
    import ray.data

    context = ray.data.DataContext()
    before = context.execution_options
    ordered = ray.data.ExecutionOptions(preserve_order=True)
    assert before.preserve_order is False
    with runtime.using_execution_options(context, ordered) as saved:
        assert context.execution_options is ordered
        assert saved is before
    assert context.execution_options is before
    with pytest.raises(RuntimeError, match="write failed"):
        with runtime.using_execution_options(context, ordered):
            raise RuntimeError("write failed")
    assert context.execution_options is before
