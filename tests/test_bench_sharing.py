"""``ray-tagger bench sharing``: the arithmetic of its figures against hand-computed values (the
measurement itself trains models and is run as a benchmark, see docs/BENCHMARKS.md)."""

from __future__ import annotations

import json

import pytest

from ray_tagger.bench import sharing
from ray_tagger.bench.sharing import Measurement, RunRate, project, stage_seconds, steady_rate
from ray_tagger.cli import build_parser

pytestmark = pytest.mark.e2e  # trains models through the CLI (see pyproject.toml)


def test_steady_rate_skips_the_final_report(tmp_path):
    path = tmp_path / "metrics.jsonl"
    rows = [{"iteration": 5, "loss": 0.7, "time": 100.0}, {"iteration": 10, "loss": 0.6, "time": 104.0},
            {"iteration": 40, "loss": 0.5, "time": 112.0}, {"iteration": 40, "final": True, "time": 130.0}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    rate = steady_rate("m0", path)
    assert rate.first == (5, 100.0) and rate.last == (40, 112.0)
    assert rate.its_per_s == pytest.approx(35 / 12)


def test_steady_rate_needs_two_reports(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text(json.dumps({"iteration": 5, "loss": 0.7, "time": 1.0}) + "\n")
    with pytest.raises(ValueError, match="1 training reports"):
        steady_rate("m0", path)


def test_measurement_aggregate_and_overlap():
    runs = [RunRate("a", (5, 10.0), (45, 30.0)), RunRate("b", (5, 14.0), (45, 34.0))]  # 2 it/s each
    m = Measurement(models=2, gpus_per_run=0.5, iterations=50, wall_s=50.0, runs=runs, busy=None)
    assert m.aggregate == pytest.approx(4.0)
    assert m.per_model == pytest.approx(2.0)
    assert m.wall_its_per_s == pytest.approx(2 * 50 / 50.0)
    assert m.common == (14.0, 30.0)
    assert m.overlap == pytest.approx(16 / 20)


def test_stage_seconds_counts_waves():
    # 15 runs, one device, one at a time: 15 waves of 200k / 2 s.
    assert stage_seconds(15, 1, 1, 2.0) == pytest.approx(15 * 100_000)
    # 8 devices × 4 runs = 32 slots: one wave, at the shared per-model rate.
    assert stage_seconds(15, 8, 4, 0.5) == pytest.approx(400_000)
    # 6 runs on 1 device × 4: two waves.
    assert stage_seconds(6, 1, 4, 0.5) == pytest.approx(800_000)
    # 15 runs on 8 devices alone: two waves.
    assert stage_seconds(15, 8, 1, 2.0, iterations=1000) == pytest.approx(1000)


def test_project_rows():
    rows = {(r["models_per_device"], r["devices"]): r for r in project({1: 2.0, 4: 1.0})}
    assert set(rows) == {(1, 1), (1, 8), (4, 1), (4, 8)}
    # 1 model per device, 1 device: (15 + 6) waves × 100k s.
    assert rows[1, 1]["total_h"] == pytest.approx(21 * 100_000 / 3600)
    # 4 per device, 1 device: ceil(15/4) = 4 and ceil(6/4) = 2 waves × 200k s.
    assert rows[4, 1]["relabel_h"] == pytest.approx(4 * 200_000 / 3600)
    assert rows[4, 1]["final_h"] == pytest.approx(2 * 200_000 / 3600)
    # 8 devices: 1 per device → 2 + 1 waves; 4 per device → 1 + 1 waves.
    assert rows[1, 8]["total_h"] == pytest.approx(3 * 100_000 / 3600)
    assert rows[4, 8]["total_h"] == pytest.approx(2 * 200_000 / 3600)


def test_bad_arguments_are_refused_before_any_training(tmp_path):
    with pytest.raises(ValueError, match="at least 2"):
        sharing.run_bench(tmp_path, models=1)
    with pytest.raises(ValueError, match="fewer than two reports"):
        sharing.run_bench(tmp_path, iterations=8, log_every=5)


def test_cli_defaults():
    args = build_parser().parse_args(["bench", "sharing", "shards"])
    assert (args.preset, args.iterations, args.log_every, args.models) == ("paper", 40, 5, 4)
