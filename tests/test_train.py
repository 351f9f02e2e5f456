"""Training one model on Ray (report §3): DDP on CPU, learning, determinism, kill and resume.

Every run goes through the real CLI in a subprocess with its own local Ray, as a user runs it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from ray_tagger.metrics import lwlrap
from tests.datasets import demo_shards

pytestmark = pytest.mark.e2e  # trains models through the CLI (see pyproject.toml)

ITERATIONS = 300


@pytest.fixture(scope="module")
def shards(ray_session, tmp_path_factory):
    return demo_shards(tmp_path_factory.mktemp("train"), clips=100)


def _cmd(shards: Path, run_dir: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "ray_tagger", "train", str(shards), str(run_dir), "--preset", "tiny",
            "--num-cpus", "8", *extra]


def _env() -> dict:
    return {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}


def _run(cmd: list[str], timeout: int = 900, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, env={**_env(), **env}, capture_output=True, text=True, timeout=timeout)


def _metrics(run_dir: Path) -> list[dict]:
    path = run_dir / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@pytest.fixture(scope="module")
def ddp_run(shards, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("ddp") / "run"
    # the local Ray as a user gets it, with its dashboard (the other tests' commands start theirs without)
    done = _run(_cmd(shards, run_dir, "--workers", "2", "--R", "8", "--set", "run.validate_every=100"),
                RAY_TAGGER_DASHBOARD="1")
    assert done.returncode == 0, done.stderr[-3000:]
    return run_dir, done


def test_console_is_calm_and_the_log_holds_rays_output(ddp_run):
    """Issue 12: stage lines, one progress bar and the result on the console; Ray's own output
    (the Train workers' forwarded logs, Ray Train's report lines) only in RUN_DIR/ray-tagger.log."""
    run_dir, done = ddp_run
    out = [line for line in done.stdout.splitlines() if line.strip()]
    err = [line for line in done.stderr.splitlines() if line.strip()]  # text mode turns the bar's \r into lines
    bars = [line for line in err if line.startswith("train:")]
    others = [line for line in err if not line.startswith("train:")]
    print("\n" + "\n".join(others + bars[-1:] + out))
    assert len(out) == 4 and out[0].startswith(f"trained {ITERATIONS} iterations") and out[3].startswith("model: "), out
    # --fold 0: the held-out curve and the classical baseline on the same clips (issue 11)
    curve = {m["iteration"]: m["val_lwlrap"] for m in _metrics(run_dir) if "val_lwlrap" in m and not m.get("final")}
    final = json.loads((run_dir / "summary.json").read_text())["final_metrics"]["val_lwlrap"]
    assert sorted(curve) == [100, 200, 300]
    assert out[1] == ("held-out lwlrap by iteration: " + ", ".join(f"{i} {v:.3f}" for i, v in sorted(curve.items()))
                      + f"; final model {final:.3f}"), out[1]
    rows = json.loads((run_dir / "baseline" / "baseline.json").read_text())["rows"]
    assert [r["held_out_clips"] for r in rows.values()] == [20, 20]  # fold 0 of 100 curated clips in 5 folds
    assert out[2].startswith("classical baseline on the same 20 held-out clips"), out[2]
    for name, r in rows.items():
        assert f"{name.rsplit(', ', 1)[1]} {r['held_out_lwlrap']:.4f}" in out[2]
        assert 0.3 < r["held_out_lwlrap"] <= 1.0  # 8 classes: random scores reach about 0.35 (see the test below)
    assert len(others) <= 3, others
    assert others[0] == f"ray-tagger train: Ray's output and the full log go to {run_dir / 'ray-tagger.log'} (-v: all on the console)"
    assert others[1].startswith("started a local Ray (8 logical CPUs), its dashboard at http://127.0.0.1:"), others[1]
    assert bars and f"{ITERATIONS}/{ITERATIONS} it" in bars[-1] and "runs 1/1 done, held-out 0." in bars[-1], bars[-1:]
    assert not any("RayTrainWorker" in line or "Reporting training result" in line for line in out + err)
    log = (run_dir / "ray-tagger.log").read_text()
    assert "(RayTrainWorker pid=" in log and "Reporting training result" in log
    # with the dashboard's state API, Ray Train's placement-group cleaner finds its controller (without
    # it, it logged "Failed to query Ray Train Controller actor state" every second of every run)
    assert "Failed to query Ray Train Controller actor state" not in log
    assert f"iteration {ITERATIONS}/{ITERATIONS}" in log and f"trained {ITERATIONS} iterations" in log


def test_two_ddp_workers_learn_clearly_better_than_chance(ddp_run, shards):
    from ray_tagger.model import CRNN, ModelConfig
    from ray_tagger.features import FeatureConfig
    from ray_tagger.modelfile import load_model
    from ray_tagger.scoring import score_features, window_frames

    run_dir, done = ddp_run
    assert f"trained {ITERATIONS} iterations" in done.stdout
    summary = json.loads((run_dir / "summary.json").read_text())
    final = summary["final_metrics"]
    assert final["final"] and final["iteration"] == ITERATIONS
    # SWA over the last quarter: snapshots at 240, 255, ..., 300 (tiny preset: start 225, every 15)
    assert summary["swa_snapshots"] == (ITERATIONS - 225) // 15 == 5
    assert final["bn_refresh_batches"] == 10
    # both workers' composers: each batched 8 examples per iteration, and every example its
    # stream delivered is batched, dropped or still waiting — none unaccounted for
    composer = final["composer"]
    assert composer["batched"] == 16 * ITERATIONS
    assert composer["seen"] == composer["batched"] + composer["dropped"] + composer["buffered"] > composer["batched"]
    # scored here from the saved model (SWA weights, refreshed BatchNorm), features computed
    # from the shards without the training stream, each clip the mean over windows of the crop
    weights, meta = load_model(run_dir / "model.pt")  # tensors + JSON, read with weights_only=True
    model = CRNN(ModelConfig(**{k: tuple(map(tuple, v)) if k == "blocks" else v for k, v in meta["model_config"].items()}))
    model.load_state_dict(weights)
    window = window_frames(meta["crop_s"], FeatureConfig(**meta["features"]))
    assert meta["crop_s"] == 2.0 and window == 101  # 2 s = 88200 samples, hop 882: 1 + 100 frames
    feats, y = _features(shards, "curated", meta["classes"], lambda r: r["fold"] == 0)
    assert abs(lwlrap(y, score_features([model], feats, window)[:, 0])[0] - final["val_lwlrap"]) < 1e-6
    truth = _truth(shards.parent / "data-test-labels.csv")
    feats, y = _features(shards, "test", meta["classes"], lambda r: True, truth)
    scores = score_features([model], feats, window)[:, 0]
    ours = lwlrap(y, scores)[0]
    rng = np.random.default_rng(0)
    chance = np.mean([lwlrap(y, rng.random(y.shape))[0] for _ in range(20)])
    print(f"\ntest lwlrap {ours:.3f} on {len(y)} clips, random scores {chance:.3f}; held-out fold {final['val_lwlrap']:.3f}")
    assert ours > chance + 0.12, "the model must beat random scores by a clear margin"


def _truth(path: Path) -> dict[str, list[str]]:
    import csv

    with open(path, newline="") as f:
        return {r["fname"]: r["labels"].split(",") for r in csv.DictReader(f)}


def _features(shards: Path, source: str, classes: list[str], keep, truth: dict | None = None):
    """Un-augmented features ``[(F, N)]`` and ``(N, K)`` targets of one source, computed here from
    the shards (not via the stream)."""
    import pyarrow.parquet as pq
    import torch

    from ray_tagger.decode import decode, to_float
    from ray_tagger.config import resolve_features
    from ray_tagger.features import LogMel
    from ray_tagger.normalization import NormStats

    stats = NormStats.load(shards / "stats.json")
    rows = [r for r in pq.read_table(shards / "audio" / f"source={source}").to_pylist() if keep(r)]
    logmel = LogMel(resolve_features("tiny"))  # the tests' shards are prepared for the tiny preset
    feats, targets = [], np.zeros((len(rows), len(classes)), np.float32)
    for i, r in enumerate(rows):
        wave = torch.from_numpy(to_float(decode(r["audio"], "flac")))
        feats.append(stats.normalize(logmel.clip(wave)).numpy())
        labels = truth[r["clip_id"]] if truth is not None else r["labels"]
        targets[i, [classes.index(c) for c in labels]] = 1
    return feats, targets


def test_the_same_seed_gives_the_same_loss_trace_with_features_on_the_pipeline_or_the_train_worker(ddp_run, shards,
                                                                                                  tmp_path):
    """Same seed, run name and workers give the same loss trace (the order of the examples and every
    random draw are fixed by them), also with ``stream.features_on=trainer``: the stream then delivers
    the mixed, cropped waveforms and each Train worker computes its batch's log-mel on its device
    (the CPU here); the examples, their order and their features are the pipeline's (to float
    rounding, hence rtol 1e-3), so the trace is the pipeline run's. One run checks both (each is a
    full DDP run through the CLI)."""
    run_dir, _ = ddp_run
    again = tmp_path / run_dir.name  # the run name is part of the seed
    done = _run(_cmd(shards, again, "--workers", "2", "--R", "8", "--set", "optim.iterations=30",
                     "--set", "run.validate_every=100", "--set", "stream.features_on=trainer", "--no-baseline"))
    assert done.returncode == 0, done.stderr[-3000:]
    assert not (again / "baseline").exists()
    first = [(m["iteration"], m["loss"]) for m in _metrics(run_dir) if "loss" in m and m["iteration"] <= 30]
    second = [(m["iteration"], m["loss"]) for m in _metrics(again) if "loss" in m]
    print(f"\nloss at 10, 20, 30: pipeline {[round(l, 5) for _, l in first]}, trainer {[round(l, 5) for _, l in second]}")
    assert [i for i, _ in second] == [i for i, _ in first] == [10, 20, 30]
    np.testing.assert_allclose([l for _, l in second], [l for _, l in first], rtol=1e-3)
    assert yaml.safe_load((again / "config.yaml").read_text())["job"]["stream"]["features_on"] == "trainer"


def _train_worker_pids(root: int) -> list[int]:
    """The Ray Train workers among the processes under ``root`` (the command and the local Ray it
    started), not those of another test's Ray on the same machine."""
    parents, cmdlines = {}, {}
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                stat = (proc / "stat").read_text()
                parents[int(proc.name)] = int(stat.rsplit(")", 1)[1].split()[1])
                cmdlines[int(proc.name)] = (proc / "cmdline").read_bytes()
            except (OSError, ValueError, IndexError):
                pass
    under, grew = {root}, True
    while grew:
        more = {pid for pid, parent in parents.items() if parent in under} - under
        under |= more
        grew = bool(more)
    return [pid for pid in sorted(under) if b"RayTrainWorker" in cmdlines.get(pid, b"")]


def _latest_checkpoint(run_dir: Path) -> str | None:
    """The newest checkpoint Ray Train's controller has recorded (its persisted snapshot), or None."""
    path = run_dir / "checkpoints" / run_dir.name / "checkpoint_manager_snapshot.json"
    try:
        return json.loads(path.read_text())["latest_checkpoint_result"]["checkpoint_dir_name"]
    except (OSError, ValueError, KeyError, TypeError):  # absent, or caught mid-write
        return None


def test_killed_worker_resumes_from_the_checkpoint_with_its_swa_state(shards, tmp_path):
    run_dir = tmp_path / "resume"
    cmd = _cmd(shards, run_dir, "--fold", "none", "--set", "optim.iterations=120", "--set", "run.checkpoint_every=30",
               "--set", "optim.swa_start=40", "--set", "optim.swa_every=10", "--set", "optim.lr_drop_at=90")
    killed_started_before = time.time()
    proc = subprocess.Popen(cmd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and proc.poll() is None:
        # kill once Ray Train has registered the checkpoint at 60 and not yet the one at 90: a
        # checkpoint a worker has reported but the controller has not yet recorded in its snapshot
        # is lost with the worker (the run would resume from the one before)
        if _latest_checkpoint(run_dir) == "iter_0000060":
            break
        time.sleep(0.05)
    assert proc.poll() is None, "training ended before it could be killed"
    before = _metrics(run_dir)
    workers = _train_worker_pids(proc.pid)
    assert workers, "no Ray Train worker under the command's process"
    for pid in workers:
        os.kill(pid, signal.SIGKILL)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode != 0 and "re-run the same command" in err
    killed_at = max(m["iteration"] for m in before)
    assert 60 <= killed_at < 120

    resumed_after = time.time()
    again = _run(cmd)
    assert again.returncode == 0, again.stderr[-3000:]
    # the resumed run's lines (the killed run may have written a line after `before` was read)
    after = [m for m in _metrics(run_dir)[len(before):] if m.get("resumed_from")]
    resumed = {m["resumed_from"] for m in after}
    assert resumed == {60}, f"resumed from {resumed}, expected the checkpoint at 60"
    trained = [m["iteration"] for m in after if "loss" in m]
    assert trained[0] == 70 and trained[-1] == 120
    # snapshots at 50, 60 (before the checkpoint) and 70..120 after it: 8 only if SWA state survived
    final = json.loads((run_dir / "summary.json").read_text())
    assert final["iterations"] == 120 and final["swa_snapshots"] == 8
    # the summary keeps the first call's start and the resumption's
    assert killed_started_before <= final["started"] < resumed_after and len(final["resumed"]) == 1
    assert resumed_after <= final["resumed"][0] < final["finished"]
    complete = _run(cmd)
    assert complete.stdout.count("trained 120 iterations") == 1, "a complete run trains nothing more"
    assert "started a local Ray" in again.stderr and "started a local Ray" not in complete.stderr, \
        "a complete run is answered without starting a Ray"


def test_cpu_accounting_against_hand_values():
    """paper preset, 1 actor × 1 CPU: a stream is limited to 1 + 1 read CPU; a run holds 1 worker CPU +
    1 actor + the BatchNorm pipeline's actor (+ the held-out fold's) + 1 read CPU."""
    import dataclasses

    from ray_tagger.config import resolve
    from ray_tagger.stream import pipeline_cpus
    from ray_tagger.train import Placement, required_cpus

    job = resolve("paper")
    assert pipeline_cpus(job, "train") == 2 and pipeline_cpus(job, "plain") == 2
    assert required_cpus(job, Placement(), holdout=False) == 4
    assert required_cpus(job, Placement(), holdout=True) == 5
    # 2 workers × (1 CPU + 3 actors × 0.5): 2 + 3 + BatchNorm 0.5 + 1 read
    wide = dataclasses.replace(job, stream=dataclasses.replace(job.stream, actors=3, cpus_per_actor=0.5))
    assert pipeline_cpus(wide, "train") == 2.5 and pipeline_cpus(wide, "val") == 1.5
    assert required_cpus(wide, Placement(workers=2), holdout=False) == 2 + 3 + 0.5 + 1
    # a larger limit admits more concurrent reads per stream and is counted per worker
    capped = dataclasses.replace(wide, stream=dataclasses.replace(wide.stream, cpu_limit=4.0))
    assert pipeline_cpus(capped, "train") == 4.0 and pipeline_cpus(capped, "plain") == 1.5
    assert required_cpus(capped, Placement(workers=2), holdout=False) == 2 + 2 * 3 + 0.5 + 1
    too_low = dataclasses.replace(wide, stream=dataclasses.replace(wide.stream, cpu_limit=2.0))
    with pytest.raises(ValueError, match="below what the pipeline needs"):
        pipeline_cpus(too_low, "train")


def test_pipelines_carry_their_run_name_and_cpu_limit(shards):
    """What the dashboard lists: each Ray Data pipeline is named for its run and role, and training
    passes each one its CPU limit."""
    from ray_tagger.config import resolve
    from ray_tagger.stream import StreamSpec, execution_options, stream

    job = resolve("tiny")
    spec = StreamSpec(str(shards), 0, 1, 4, 1, 2)
    assert stream(spec, job, "train", "s0_f1").name == "s0_f1.train1"
    assert stream(spec, job, "plain", "s0_f1").name == "s0_f1.plain"
    assert stream(spec, job, "val", "s0_f1").name == "s0_f1.val"
    options = execution_options(job, "train")
    assert options.preserve_order and options.resource_limits.cpu == job.stream.actors * job.stream.cpus_per_actor + 1


def _pass_keys(ds) -> list[str]:
    return [k for b in ds.iter_batches(batch_size=None, batch_format="numpy") for k in b["key"]]


def test_a_training_stream_within_read_once_mb_reads_the_shards_once(shards, tmp_path):
    """``stream.read_once_mb``: a training stream whose shards fit reads them when it is built and
    takes every pass from Ray's object store, so passes go on with the files gone, each pass
    holding the same examples in a block order of its own; with 0 every pass reads the files."""
    import dataclasses
    import shutil

    import ray

    from ray_tagger.config import resolve
    from ray_tagger.storage import tree_bytes
    from ray_tagger.stream import StreamSpec, configure_data_context, read_once, stream

    copy = tmp_path / "shards"
    shutil.copytree(shards, copy)
    audio = copy / "audio"
    size = tree_bytes(audio / "source=curated") + tree_bytes(audio / "source=noisy")
    assert read_once(audio, ["curated", "noisy"], size / 1024**2) and not read_once(audio, ["curated", "noisy"], size / 1024**2 - 1e-3)
    assert not read_once(audio, ["curated", "noisy"], 0)
    job = resolve("tiny", extra={"stream": {"read_once_mb": 1024}})  # the default (the tiny preset reads every pass)
    never = resolve("tiny", extra={"stream": {"read_once_mb": 0}})
    spec = StreamSpec(str(copy), 0, 1, 2, 0, 1)
    ctx = ray.data.DataContext.get_current()
    saved = ctx.target_max_block_size, ctx.use_datasource_v2, ctx.enable_progress_bars
    configure_data_context(block_bytes=256 * 1024)  # as training does, in blocks small enough for several per file
    try:
        kept, every = stream(spec, job, "train", "once"), stream(spec, never, "train", "every")
        # worker 0 of 2, built three times: the same order each time, whichever read finishes first
        rebuilt = [stream(dataclasses.replace(spec, world=2), job, "train", "once") for _ in range(3)]
    finally:
        ctx.target_max_block_size, ctx.use_datasource_v2, ctx.enable_progress_bars = saved
    assert len({tuple(_pass_keys(ds)) for ds in rebuilt}) == 1
    first = _pass_keys(kept)
    assert len(first) == len(set(first)) > 100 and sorted(first) == sorted(_pass_keys(every))
    shutil.rmtree(audio)
    passes = [_pass_keys(kept) for _ in range(3)]
    assert all(sorted(p) == sorted(first) for p in passes)
    assert len({tuple(p) for p in [first, *passes]}) > 1, "the block order is drawn anew for each pass"
    with pytest.raises(Exception):  # noqa: B017 - whatever Ray Data raises for the missing files
        _pass_keys(every)


@pytest.mark.parametrize("compute", ["tasks", "actors"])
def test_a_pool_without_examples_leaves_no_pickled_column_in_the_stream(shards, compute):
    """Every noisy pool of a validation pass gives no examples. Such a pool used to give an empty
    block whose ``targets (0, K)`` did not convert to Arrow's tensor type and went as pickled objects
    (with a warning in the log); now its task yields nothing, and Ray Data's block for it has no
    columns. The held-out clips arrive once each, their targets a tensor column."""
    import pyarrow.parquet as pq
    import ray

    from ray_tagger.config import resolve
    from ray_tagger.stream import StreamSpec, stream

    job = resolve("tiny", extra={"stream": {"compute": compute, "pool_size": 4}})
    curated = pq.read_table(shards / "audio" / "source=curated", columns=["clip_id", "fold"]).to_pylist()
    held_out = sorted(r["clip_id"] for r in curated if r["fold"] == 0)
    blocks = ray.get(stream(StreamSpec(str(shards), holdout_fold=0), job, "val", f"val-{compute}").to_arrow_refs())
    full = [b for b in blocks if b.num_rows]
    assert held_out and sorted(k for b in full for k in b.column("key").to_pylist()) == held_out
    classes = json.loads((shards / "vocabulary.json").read_text())["classes"]
    assert {str(b.schema.field("targets").type) for b in full} == {f"ArrowTensorTypeV2(shape=({len(classes)},), dtype=float)"}
    assert not [str(b.schema) for b in blocks if "pickled" in str(b.schema)]
