"""``runtime.ensure_ray``: which Ray it connects to and the controller poll a local Ray gets
(``ray.init`` replaced by a recorder: no Ray is started)."""

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
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.delenv(VAR, raising=False)
    return calls


def test_a_local_ray_polls_its_training_runs_every_half_second(inits):
    runtime.ensure_ray(num_cpus=3)
    assert inits == [({"num_cpus": 3, "include_dashboard": False}, "0.5")]
    assert runtime._started_here


def test_a_users_poll_setting_is_kept(inits, monkeypatch):
    monkeypatch.setenv(VAR, "2.0")
    runtime.ensure_ray()
    assert inits == [({"num_cpus": None, "include_dashboard": False}, "2.0")]


def test_a_cluster_keeps_its_own_setting(inits, monkeypatch):
    monkeypatch.setenv("RAY_ADDRESS", "ray://head:10001")
    runtime.ensure_ray()
    assert inits == [({"address": "ray://head:10001"}, None)]
    assert not runtime._started_here
