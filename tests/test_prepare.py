"""prepare on the demo data set: counts, cuts, splits, folds, bit-exact audio, statistics."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import ray
import soundfile as sf
import torch

from ray_tagger import prepare as prepare_module
from ray_tagger import runtime
from ray_tagger.decode import decode, to_float
from ray_tagger.demo_data import DemoConfig, generate
from ray_tagger.features import FeatureConfig, LogMel
from ray_tagger.prepare import PrepareConfig, prepare
from ray_tagger.stream import shard_meta

CLIPS = 12
FOLDERS = {"curated": "train_curated", "noisy": "train_noisy", "test": "test"}


@pytest.fixture(scope="module")
def demo(ray_session, tmp_path_factory):
    root = tmp_path_factory.mktemp("demo")
    generate(root / "data", DemoConfig(clips=CLIPS, seed=3))
    manifest = prepare(root / "data", root / "shards", PrepareConfig())
    return root / "data", root / "shards", manifest


def _csv_rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _audio(shards: Path, source: str, columns=None):
    return pq.read_table(shards / "audio" / f"source={source}", columns=columns).to_pylist()


def test_row_counts_per_source_match_the_csvs(demo):
    data, shards, manifest = demo
    expected = {
        "curated": len(_csv_rows(data / "train_curated.csv")),
        "noisy": len(_csv_rows(data / "train_noisy.csv")),
        "test": len(_csv_rows(data / "sample_submission.csv")),
    }
    assert expected == {"curated": CLIPS, "noisy": CLIPS, "test": CLIPS // 2}
    for source, n in expected.items():
        assert len(_audio(shards, source, ["clip_id"])) == n
        c = manifest["counts"][source]
        assert (c["total"], c["written"], c["skipped"]) == (n, n, 0)
    assert manifest["skipped"] == []
    excerpts = pq.read_table(shards / "excerpts.parquet").to_pylist()
    assert len(excerpts) == 3 * 2 * expected["noisy"] == manifest["excerpts"]


def test_labels_and_vocabulary_come_from_the_data_set(demo):
    data, shards, _ = demo
    header = next(csv.reader(open(data / "sample_submission.csv")))
    assert json.loads((shards / "vocabulary.json").read_text())["classes"] == header[1:]
    truth = {r["fname"]: r["labels"].split(",") for r in _csv_rows(data / "train_curated.csv")}
    stored = {r["clip_id"]: r["labels"] for r in _audio(shards, "curated", ["clip_id", "labels"])}
    assert stored == truth


def test_noisy_cuts_lie_within_the_report_range_and_splits_differ(demo):
    _, shards, _ = demo
    clips = {r["clip_id"]: r for r in _audio(shards, "noisy", ["clip_id", "num_samples", "cuts"])}
    for clip in clips.values():
        t = clip["num_samples"]
        assert len(clip["cuts"]) == 3
        for cut in clip["cuts"]:
            assert 0.1 * t <= cut <= 0.9 * t
    cuts = np.array([c["cuts"] for c in clips.values()])
    for a in range(3):
        for b in range(a + 1, 3):
            assert np.mean(cuts[:, a] != cuts[:, b]) > 0.9, f"splits {a} and {b} are nearly the same"
    excerpts = pq.read_table(shards / "excerpts.parquet").to_pylist()
    for e in excerpts:
        clip = clips[e["clip_id"]]
        cut = clip["cuts"][e["split"]]
        assert (e["start"], e["stop"]) == ((0, cut) if e["part"] == 0 else (cut, clip["num_samples"]))


def test_folds_partition_the_curated_clips(demo):
    _, shards, _ = demo
    folds = {r["clip_id"]: r["fold"] for r in _audio(shards, "curated", ["clip_id", "fold"])}
    assert len(folds) == CLIPS
    sizes = np.bincount(list(folds.values()), minlength=5)
    assert sizes.sum() == CLIPS and len(sizes) == 5 and sizes.max() - sizes.min() <= 1
    for source in ("noisy", "test"):
        assert {r["fold"] for r in _audio(shards, source, ["fold"])} == {-1}


@pytest.mark.parametrize("source", ["curated", "noisy", "test"])
def test_audio_reads_back_bit_for_bit(demo, source):
    data, shards, manifest = demo
    for row in _audio(shards, source):
        wav, rate = sf.read(data / FOLDERS[source] / row["clip_id"], dtype="int16")
        got = decode(row["audio"], manifest["audio_format"])
        assert rate == row["sample_rate"] == 44100
        assert got.dtype == np.int16 and np.array_equal(got, wav)
        assert row["num_samples"] == len(wav)


def _training_logmel(data: Path, features: FeatureConfig) -> np.ndarray:
    """``(F, frames)``: the log-mel of every training clip, side by side, computed directly."""
    logmel = LogMel(features)
    feats = []
    for source in ("curated", "noisy"):
        for row in _csv_rows(data / f"train_{source}.csv"):
            wav, _ = sf.read(data / FOLDERS[source] / row["fname"], dtype="int16")
            feats.append(logmel.clip(torch.from_numpy(to_float(wav))).double().numpy())
    return np.concatenate(feats, axis=1)


def test_statistics_have_the_report_shape_and_match_a_direct_computation(demo):
    data, shards, _ = demo
    stats = json.loads((shards / "stats.json").read_text())
    mean, std = np.asarray(stats["mean"]), stats["std"]
    assert mean.shape == (128,) and isinstance(std, float)
    x = _training_logmel(data, FeatureConfig())
    assert stats["frames"] == x.shape[1]
    np.testing.assert_allclose(mean, x.mean(axis=1), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(std, (x - x.mean(axis=1, keepdims=True)).std(), rtol=1e-9)


def test_pooled_statistics_of_every_clip_match_a_direct_computation(demo):
    """``pooled.parquet``: one row per written clip of every source (test clips too), holding the
    per-band mean, population std and max of the clip's own log-mel over its ``1 + T // 882`` frames."""
    data, shards, manifest = demo
    rows = pq.read_table(shards / "pooled.parquet").to_pylist()
    assert sorted((r["source"], r["clip_id"]) for r in rows) == sorted(
        (s, r["clip_id"]) for s in FOLDERS for r in _audio(shards, s, ["clip_id"]))
    assert len(rows) == sum(c["written"] for c in manifest["counts"].values())
    assert "pooled.parquet" in manifest["files"]
    logmel = LogMel(FeatureConfig())
    for r in rows:
        wav, _ = sf.read(data / FOLDERS[r["source"]] / r["clip_id"], dtype="int16")
        x = logmel.clip(torch.from_numpy(to_float(wav))).double().numpy()
        assert r["frames"] == x.shape[1] == 1 + len(wav) // 882
        np.testing.assert_allclose(r["mean"], x.mean(axis=1), rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(r["std"], x.std(axis=1), rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(r["max"], x.max(axis=1), rtol=1e-9, atol=1e-9)


def test_statistics_follow_the_configured_mel_bands_and_stages_check_them(demo, tmp_path):
    from ray_tagger.stream import FeatureMismatchError, shard_meta

    data, shards, _ = demo
    narrow = prepare(data, tmp_path / "mel64", PrepareConfig(features=FeatureConfig(n_mels=64)))
    assert narrow["config"]["features"]["n_mels"] == 64
    mean = np.asarray(json.loads((tmp_path / "mel64" / "stats.json").read_text())["mean"])
    assert mean.shape == (64,)
    np.testing.assert_allclose(mean, _training_logmel(data, FeatureConfig(n_mels=64)).mean(axis=1), rtol=1e-9, atol=1e-9)
    assert shard_meta(tmp_path / "mel64", FeatureConfig(n_mels=64))[1].mean.shape == (64,)
    with pytest.raises(FeatureMismatchError, match=r"n_mels 64 \(shards\) vs 128 \(config\)"):
        shard_meta(tmp_path / "mel64", FeatureConfig())
    with pytest.raises(FeatureMismatchError, match=r"f_max 16000.0 \(shards\) vs 8000.0"):
        shard_meta(shards, FeatureConfig(f_max=8000.0))


def test_prepare_takes_the_features_of_a_preset_and_nothing_else(demo, tmp_path, capsys):
    from ray_tagger.cli import main
    from ray_tagger.config import resolve, resolve_features

    data, _, _ = demo
    assert resolve_features("demo") == resolve("demo").features
    assert resolve_features("paper", ["features.n_mels=96"]).n_mels == 96
    assert main(["prepare", str(data), str(tmp_path / "s"), "--set", "optim.lr=0.1"]) == 1
    assert "prepare --set takes only features.FIELD=VALUE" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()


def _stored_order(shards: Path, source: str) -> list[str]:
    """The clip ids of a source as a training stream reads them: file by file, in each file's row order."""
    files = sorted((shards / "audio" / f"source={source}").glob("*.parquet"))
    return [c for f in files for c in pq.read_table(f, columns=["clip_id"]).column("clip_id").to_pylist()]


def test_clips_are_stored_in_the_data_sets_order_whichever_task_finishes_first(demo, tmp_path, monkeypatch):
    """One clip per task, tasks run side by side, and the tasks of the second curated and the second
    noisy clip held back a second in both passes, so that they finish after later ones: the files
    still list the clips in CSV order (without ``preserve_order`` on the write they listed the held-back
    clip later), and the statistics are the default prepare's to the last digit. The stages run as
    under a local Ray the command started (one task per core: encoding and writing are then two Ray
    Data operators, as in ``make demo``), with Ray Data's per-operator reservations off so that two
    tasks run at once (with them, small tasks ran one at a time here)."""
    data, shards, _ = demo
    slow = {_csv_rows(data / "train_curated.csv")[1]["fname"], _csv_rows(data / "train_noisy.csv")[1]["fname"]}
    inspect, encode = prepare_module.inspect_clips, prepare_module.encode_clips

    def slow_inspect(batch, features):  # nested, so that Ray ships it by value to its workers
        if slow & {os.path.basename(p) for p in batch["path"]}:
            time.sleep(1.0)
        return inspect(batch, features)

    def slow_encode(batch, sample_rate, audio_format):
        if slow & set(batch.column("clip_id").to_pylist()):
            time.sleep(1.0)
        return encode(batch, sample_rate, audio_format)

    monkeypatch.setattr(runtime, "_started_here", True)
    monkeypatch.setattr(prepare_module, "inspect_clips", slow_inspect)
    monkeypatch.setattr(prepare_module, "encode_clips", slow_encode)
    monkeypatch.setattr(ray.data.DataContext.get_current(), "op_resource_reservation_enabled", False)
    again = tmp_path / "shards"
    prepare(data, again, PrepareConfig(clips_per_batch=1, rows_per_file=CLIPS // 2))
    for source, csv_name in (("curated", "train_curated.csv"), ("noisy", "train_noisy.csv"),
                             ("test", "sample_submission.csv")):
        expected = [r["fname"] for r in _csv_rows(data / csv_name)]
        assert _stored_order(again, source) == expected
        assert _stored_order(shards, source) == expected
    assert len(list((again / "audio" / "source=noisy").glob("*.parquet"))) == 2
    assert (again / "stats.json").read_text() == (shards / "stats.json").read_text()


def test_rerun_on_the_same_input_is_a_no_op(demo):
    data, shards, manifest = demo
    before = {p: p.stat().st_mtime_ns for p in shards.rglob("*")}
    again = prepare(data, shards, PrepareConfig())
    assert again == manifest
    assert {p: p.stat().st_mtime_ns for p in shards.rglob("*")} == before


def test_changed_settings_rebuild_in_place(demo, tmp_path):
    data, _, manifest = demo
    shards = tmp_path / "pcm"
    first = prepare(data, shards, PrepareConfig(audio_format="pcm16", seed=1))
    assert first["fingerprint"] != manifest["fingerprint"]
    row = _audio(shards, "test")[0]
    wav, _ = sf.read(data / "test" / row["clip_id"], dtype="int16")
    assert np.array_equal(decode(row["audio"], "pcm16"), wav)
    second = prepare(data, shards, PrepareConfig(audio_format="pcm16", seed=2))
    assert second["config"]["seed"] == 2
    assert json.loads((shards / "manifest.json").read_text())["fingerprint"] == second["fingerprint"]
    assert not (shards / "_PREPARING").exists(), "the in-progress marker is gone once the manifest is written"
    written = sorted(str(p.relative_to(shards)) for p in shards.rglob("*") if p.is_file())
    assert written == sorted(second["files"]), "nothing of the first prepare is left beside the second's files"


def test_zenodo_layout_gives_the_same_shards(demo, tmp_path):
    data, shards, _ = demo
    generate(tmp_path / "zen", DemoConfig(clips=CLIPS, seed=3, layout="zenodo"))
    manifest = prepare(tmp_path / "zen", tmp_path / "zen_shards", PrepareConfig())
    assert manifest["layout"] == "zenodo"
    for source in ("curated", "noisy"):
        cols = ["clip_id", "labels", "num_samples", "fold", "cuts"]
        key = lambda r: r["clip_id"]
        assert sorted(_audio(tmp_path / "zen_shards", source, cols), key=key) == sorted(_audio(shards, source, cols), key=key)
    truth = {r["fname"]: r["labels"].split(",") for r in _csv_rows(Path(f"{data}-test-labels.csv"))}
    stored = {r["clip_id"]: r["labels"] for r in _audio(tmp_path / "zen_shards", "test", ["clip_id", "labels"])}
    assert stored == truth, "the Zenodo test CSV carries the labels"


def test_an_interrupted_prepare_leaves_nothing_a_later_stage_reads(demo, tmp_path):
    """Kill the CLI from outside while it writes; the folder has no manifest, later stages refuse it
    with a line that says so, and a re-run completes."""
    data, _, _ = demo
    shards = tmp_path / "shards"
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    cmd = [sys.executable, "-m", "ray_tagger", "prepare", str(data), str(shards), "--num-cpus", "2"]
    log = open(tmp_path / "prepare.log", "w")
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 120
    while not (shards / "_PREPARING").exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None, "prepare ended before it could be interrupted:\n" + (tmp_path / "prepare.log").read_text()[-3000:]
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (shards / "manifest.json").exists()
    with pytest.raises(FileNotFoundError, match="interrupted"):
        shard_meta(shards)
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "written" in done.stdout and (shards / "manifest.json").exists()
    assert not (shards / "_PREPARING").exists()
