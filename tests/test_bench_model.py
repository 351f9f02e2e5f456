"""``ray-tagger bench model``: structure of the result, the train step, the synthetic batch, failure handling.

Tiny settings only (no timing assertions; compile is too slow for the suite).
"""

from __future__ import annotations

import math

import pytest
import torch

from ray_tagger.bench import model as bench
from ray_tagger.cli import BENCH_MODEL_MODES, build_parser
from ray_tagger.loss import bce_loss
from ray_tagger.model import CRNN, ModelConfig, count_parameters


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny tensors: one intra-op thread avoids OpenMP barrier stalls on a loaded machine (seconds per step)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_measure_structure_and_ratios():
    modes = ["eager-fp32", "channels-last"]
    tiny = ModelConfig.tiny()
    result = bench.measure(steps=1, warmup=1, batch=2, seconds=1.0, modes=modes, device="cpu", config=tiny)
    labels = [r.label for r in result.results]
    assert labels == ["eager-fp32 #1", "channels-last", "eager-fp32 #2"]
    assert {r.mode for r in result.results} == set(modes)
    assert result.input_shape == (2, 1, 128, 51)  # 1 + 44100 // 882 frames
    assert result.parameters == count_parameters(CRNN(tiny))
    assert result.threads == 1
    for r in result.results:
        assert r.ok, r.error
        assert r.steps == 1
        assert math.isfinite(r.clips_per_s) and r.clips_per_s > 0
        assert math.isfinite(r.last_loss)
        assert r.median_s_per_step == pytest.approx(r.seconds_per_step, rel=1e-6)  # one timed step
        assert r.peak_mem_bytes is None  # CPU: no CUDA memory stats
    eager = [r for r in result.results if r.mode == "eager-fp32"]
    baseline = 2 / (sum(r.seconds_per_step for r in eager) / len(eager))
    assert result.baseline_clips_per_s == pytest.approx(baseline, rel=1e-12)
    for r in result.results:
        assert r.clips_per_s == pytest.approx(2 / r.seconds_per_step, rel=1e-12)
        assert r.ratio == pytest.approx(r.clips_per_s / baseline, rel=1e-12)
    text = bench.format_report(result)
    for label in labels + ["baseline", "device: cpu", "torch ", "threads ", "date: ", "command: "]:
        assert label in text


def test_train_step_learns_a_fixed_batch():
    torch.manual_seed(0)
    model = CRNN(ModelConfig.tiny())
    opt = torch.optim.Adam(model.parameters(), lr=bench.LEARNING_RATE * 10)
    batch = bench.make_batch(batch=4, seconds=1.0, seed=1)
    before = [p.detach().clone() for p in model.parameters()]
    losses = [float(bench.train_step(model, opt, batch)) for _ in range(5)]
    assert all(not torch.equal(a, p) for a, p in zip(before, model.parameters()))
    model.eval()  # train_step puts it back in train mode; compare like with like
    with torch.no_grad():
        final = float(bce_loss(model.logits(batch.x, batch.lengths), batch.targets))
    torch.manual_seed(0)
    fresh = CRNN(ModelConfig.tiny()).eval()
    with torch.no_grad():
        initial = float(bce_loss(fresh.logits(batch.x, batch.lengths), batch.targets))
    assert losses[-1] < losses[0]
    assert final < initial


def test_make_batch_obeys_the_padding_rule():
    b = bench.make_batch(batch=16, seconds=10.0, seed=3)
    n = 1 + 441000 // 882
    assert b.x.shape == (16, 1, 128, n) and b.targets.shape == (16, 80)
    assert int(b.lengths.max()) == n and int(b.lengths.min()) >= math.ceil(0.8 * n)
    assert int(b.lengths.min()) >= 0.8 * int(b.lengths.max())
    for x, length in zip(b.x, b.lengths):
        assert torch.all(x[..., int(length):] == 0) and torch.any(x[..., : int(length)] != 0)
    assert set(b.targets.unique().tolist()) <= {0.0, 1.0}
    assert torch.all(b.targets.sum(1) >= 1)


def test_a_failing_mode_is_reported_not_raised(monkeypatch):
    def broken_compile(*args, **kwargs):
        raise RuntimeError("no compiler here\nsecond line")

    monkeypatch.setattr(torch, "compile", broken_compile)
    result = bench.measure(steps=1, warmup=0, batch=2, seconds=1.0, modes=["compile"], device="cpu",
                           config=ModelConfig.tiny())
    failed = [r for r in result.results if r.mode == "compile"]
    assert len(failed) == 1 and not failed[0].ok
    assert failed[0].error == "RuntimeError: no compiler here"
    assert math.isnan(failed[0].ratio)
    assert "compile            failed: RuntimeError: no compiler here" in bench.format_report(result)


def test_cli_wiring():
    assert BENCH_MODEL_MODES == bench.MODES
    args = build_parser().parse_args(["bench", "model"])
    assert (args.steps, args.warmup, args.batch, args.seconds, args.device) == (5, 2, 16, 10.0, "auto")
    assert args.modes == list(bench.MODES)
    args = build_parser().parse_args(["bench", "model", "--steps", "3", "--modes", "compile", "bf16-autocast", "--device", "cpu"])
    assert args.steps == 3 and args.modes == ["compile", "bf16-autocast"] and args.device == "cpu"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["bench", "model", "--modes", "fp8"])


def test_cli_times_the_model_of_the_preset_asked_for(capsys):
    from ray_tagger.cli import main

    assert main(["bench", "model", "--preset", "demo", "--steps", "1", "--warmup", "0", "--batch", "2", "--seconds", "1",
                 "--modes", "eager-fp32", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "input: batch 2 x 1 s = (2, 1, 64, 51)" in out, out  # the demo preset's 64 bands, 1 + 44100 // 882 frames
