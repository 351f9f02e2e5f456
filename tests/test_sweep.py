"""``ray-tagger sweep``: a tiny Ray Tune sweep with ASHA through the real CLI, and its preset."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from ray_tagger.config import resolve, resolve_system
from tests.datasets import demo_shards

pytestmark = pytest.mark.e2e  # trains models through the CLI (see pyproject.toml)

ITERATIONS = 60


@pytest.fixture(scope="module")
def swept(ray_session, tmp_path_factory):
    root = tmp_path_factory.mktemp("sweep")
    shards = demo_shards(root, clips=40)
    ray_session.shutdown()  # the CLI starts its own local Ray
    out = root / "sweep"
    cmd = [sys.executable, "-m", "ray_tagger", "sweep", str(shards), str(out), "--preset", "tiny", "--samples", "4",
           "--concurrency", "2", "--grace", "20", "--set", f"optim.iterations={ITERATIONS}", "--set", "optim.swa_start=40",
           "--set", "optim.lr_drop_at=40", "--set", "run.checkpoint_every=20"]
    done = subprocess.run(cmd, env={k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}, capture_output=True,
                          text=True, timeout=1500)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return out, done


def test_sweep_runs_four_trials_and_asha_stops_one_early(swept):
    out, done = swept
    record = json.loads((out / "sweep.json").read_text())
    trials = record["trials"]
    print("\n" + done.stdout)
    assert len(trials) == 4 and sorted(t["R"] for t in trials) == [1, 2, 4, 8]
    assert all(t["error"] is None for t in trials)
    stopped = [t for t in trials if t["stopped_early"]]
    assert stopped, "ASHA stopped no trial"
    assert all(t["iterations"] < ITERATIONS for t in stopped)
    assert any(t["iterations"] == ITERATIONS for t in trials)
    assert "stopped early by ASHA" in done.stdout


def test_best_trial_becomes_a_preset_that_resolves(swept):
    out, _ = swept
    record = json.loads((out / "sweep.json").read_text())
    best = record["best"]
    finished = [t for t in record["trials"] if t["iterations"] == ITERATIONS]
    assert best["val_lwlrap"] == max(t["val_lwlrap"] for t in finished)
    job = resolve(str(out / "best.yaml"))
    assert job.stream.R == best["R"]
    assert job.mixup.probability == pytest.approx(min(1.0, 2 / 3 * best["strength"]))
    assert job.specaugment.time_mask_max == round(70 * best["strength"])
    system = resolve_system(str(out / "best.yaml"))
    assert system.final_R == (best["R"],)
    assert system.relabel_folds == resolve_system("tiny").relabel_folds, "the swept preset's other system fields carry over"
    # the trial's own run folder holds the configuration the preset reproduces
    import yaml

    trial_config = yaml.safe_load((out / "trials" / best["name"] / "config.yaml").read_text())["job"]
    assert trial_config["stream"]["R"] == best["R"]
    assert trial_config["mixup"]["probability"] == pytest.approx(job.mixup.probability)
