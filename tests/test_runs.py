"""``ray_tagger.runs``: how many runs a stage starts at once on the connected cluster (8 logical CPUs here)."""

from __future__ import annotations

import dataclasses
import json

import pytest

from ray_tagger.config import resolve
from ray_tagger.runs import RunSpec, fits_at_once, local_cpus, train_many
from ray_tagger.train import Placement


def _job(actors: int):
    job = resolve("tiny")
    return dataclasses.replace(job, stream=dataclasses.replace(job.stream, actors=actors))


def test_fits_at_once_counts_each_runs_cpus(ray_session):
    # tiny, 1 actor: 1 worker + 1 actor + 1 BatchNorm actor + 1 read + 0.01 trial = 4.01 CPUs → 1 run in 8
    assert fits_at_once(_job(1), Placement(), holdout=False) == 1
    # 1 worker + 2 actors + BatchNorm + held-out actors + 1 read + 0.01 = 6.01 → 1
    assert fits_at_once(_job(2), Placement(), holdout=True) == 1
    assert fits_at_once(_job(20), Placement(), holdout=False) == 0
    assert local_cpus(_job(1), Placement(), holdout=False, concurrency=2) >= 9  # ceil(2 × 4.01)


def test_a_run_larger_than_the_cluster_is_refused_with_the_autoscaling_hint(ray_session, tmp_path):
    # fold 0 held out: 1 worker + 20 actors + BatchNorm + held-out actors + 1 read = 24
    with pytest.raises(ValueError, match="holds 24 CPUs.*has 8 CPUs.*pass --concurrency N"):
        train_many(tmp_path / "shards", tmp_path / "root", _job(20), [RunSpec("s0_f0", 0, 0, 4)], Placement())
    assert not (tmp_path / "root" / "runs").exists(), "nothing was started"


def test_shards_prepared_for_other_mel_bands_are_refused_before_any_run(ray_session, tmp_path):
    from ray_tagger.features import FeatureConfig
    from ray_tagger.stream import FeatureMismatchError

    shards = tmp_path / "shards"  # the files shard_meta reads, as prepare writes them for the report's 128 bands
    shards.mkdir()
    (shards / "manifest.json").write_text(json.dumps({"config": {"features": dataclasses.asdict(FeatureConfig())},
                                                      "audio_format": "flac"}))
    (shards / "vocabulary.json").write_text(json.dumps({"classes": ["a", "b"]}))
    (shards / "stats.json").write_text(json.dumps({"mean": [0.0] * 128, "std": 1.0, "frames": 1}))
    demo = dataclasses.replace(resolve("demo"), stream=dataclasses.replace(resolve("demo").stream, actors=1))
    with pytest.raises(FeatureMismatchError, match=r"n_mels 128 \(shards\) vs 64 \(config\)\); prepare the data again"):
        train_many(shards, tmp_path / "root", demo, [RunSpec("s0_f0", 0, 0, 4)], Placement())
    assert not (tmp_path / "root" / "runs").exists(), "nothing was started"
