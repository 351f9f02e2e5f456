"""``ray-tagger bench model``: train-step throughput of the CRNN under several execution modes.

One train step is what training does per batch: forward (``model.logits``), ``bce_loss``,
backward, gradient-norm clipping at 15 and an Adam step (lr 3e-4). The input is one fixed
synthetic batch of the default shape, 16 clips × 10 s = ``(16, 1, 128, 501)`` frames of
N(0, 1) "normalised" features, lengths drawn between 0.8·N and N (the padding rule of
report §3.2) with features past each length zeroed, and random n-hot targets; data
loading is not part of the measurement.

Every mode gets a fresh model and optimizer from the same seed. The modes run in the
order given, and the baseline (``eager-fp32``) runs once before them and once after, so
drift (thermal, other load) shows up as a difference between the two eager rows; the
ratios are taken against the mean of the two. A mode that fails (typically ``torch.compile``
on a machine without a working compiler) is reported with a one-line reason.
"""

from __future__ import annotations

import datetime
import math
import os
import platform
import statistics
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn

from ..features import FeatureConfig
from ..loss import bce_loss
from ..model import CRNN, ModelConfig

BASELINE = "eager-fp32"
MODES = ("eager-fp32", "bf16-autocast", "channels-last", "compile", "compile-bf16")
"""Known modes, in the default order."""
LEARNING_RATE = 3e-4
CLIP_NORM = 15.0


@dataclass(frozen=True)
class Batch:
    """One training batch: ``x (B, 1, F, N)``, ``lengths (B,)`` in frames, ``targets (B, K)`` n-hot."""

    x: torch.Tensor
    lengths: torch.Tensor
    targets: torch.Tensor

    @property
    def size(self) -> int:
        return self.x.shape[0]


def make_batch(
    batch: int = 16, seconds: float = 10.0, n_classes: int = 80, n_mels: int = 128, seed: int = 0,
    device: str | torch.device = "cpu", features: FeatureConfig = FeatureConfig(),
) -> Batch:
    """A random batch of ``batch`` clips of ``seconds`` s that obeys the padding rule.

    ``N = 1 + round(seconds · sr) // hop`` frames; lengths are uniform in ``[ceil(0.8·N), N]``
    with the longest example exactly N; 1–3 labels per clip.
    """
    g = torch.Generator().manual_seed(seed)
    n = features.num_frames(round(seconds * features.sample_rate))
    lengths = torch.randint(math.ceil(0.8 * n), n + 1, (batch,), generator=g)
    lengths[torch.argmax(lengths)] = n
    x = torch.randn(batch, 1, n_mels, n, generator=g)
    x *= (torch.arange(n)[None, :] < lengths[:, None]).float()[:, None, None, :]
    targets = torch.zeros(batch, n_classes)
    for i in range(batch):
        k = int(torch.randint(1, min(3, n_classes) + 1, (1,), generator=g))
        targets[i, torch.randperm(n_classes, generator=g)[:k]] = 1.0
    return Batch(x.to(device), lengths.to(device), targets.to(device))


def train_step(
    model: nn.Module, opt: torch.optim.Optimizer, batch: Batch,
    logits_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    autocast_dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """One train step; returns the (detached) loss before the update.

    ``logits_fn`` defaults to ``model.logits`` (a compiled version can be passed);
    ``autocast_dtype`` wraps forward and loss in ``torch.autocast``.
    """
    logits_fn = logits_fn or model.logits
    model.train()
    ctx = torch.autocast(batch.x.device.type, dtype=autocast_dtype) if autocast_dtype is not None else nullcontext()
    with ctx:
        loss = bce_loss(logits_fn(batch.x, batch.lengths), batch.targets)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), CLIP_NORM)
    opt.step()
    return loss.detach()


@dataclass
class ModeResult:
    """One timed run of a mode; ``ratio`` is clips/s over the baseline's (mean of the eager runs)."""

    mode: str
    label: str
    ok: bool
    steps: int = 0
    seconds_per_step: float = math.nan
    """Mean over the timed steps; clips/s and the ratio use it."""
    median_s_per_step: float = math.nan
    """Median over the timed steps: robust to a few steps slowed by other work on the machine."""
    clips_per_s: float = math.nan
    ratio: float = math.nan
    warmup_s: float = math.nan
    """Wall time of the untimed warmup steps (includes compilation)."""
    peak_mem_bytes: int | None = None
    """Peak allocated CUDA memory during the mode (GPU only)."""
    last_loss: float = math.nan
    error: str = ""


@dataclass
class BenchResult:
    """Everything ``run_bench`` prints."""

    results: list[ModeResult]
    baseline_clips_per_s: float
    device: str
    device_name: str
    batch: int
    seconds: float
    input_shape: tuple[int, ...]
    steps: int
    warmup: int
    threads: int
    parameters: int
    wall_s: float = math.nan
    """Wall time of the whole run (all modes, warmups included)."""
    load: tuple[float, float] = (math.nan, math.nan)
    """1-minute load average before and after the run (other work on the machine skews the ratios)."""
    torch_version: str = torch.__version__
    date: str = field(default_factory=lambda: datetime.datetime.now().astimezone().isoformat(timespec="seconds"))
    command: str = field(default_factory=lambda: " ".join(sys.argv))


def resolve_device(device: str) -> torch.device:
    """``auto`` -> cuda when available, else cpu."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: CUDA is not available on this machine")
    return torch.device(device)


def device_name(device: torch.device) -> str:
    """GPU name, or the CPU model from /proc/cpuinfo (platform info as a fallback)."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _load() -> float:
    try:
        return os.getloadavg()[0]
    except OSError:
        return math.nan


def _one_line(e: BaseException, limit: int = 160) -> str:
    text = f"{type(e).__name__}: {str(e).strip()}"
    line = text.splitlines()[0] if text else type(e).__name__
    return line if len(line) <= limit else line[: limit - 3] + "..."


def run_mode(
    mode: str, batch: Batch, config: ModelConfig, steps: int, warmup: int, seed: int = 0, label: str | None = None,
) -> ModeResult:
    """Fresh model + Adam from ``seed``, ``warmup`` untimed steps, then ``steps`` timed ones."""
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; known: {', '.join(MODES)}")
    device = batch.x.device
    result = ModeResult(mode, label or mode, ok=False)
    torch.manual_seed(seed)
    model = CRNN(config).to(device)
    x = batch.x
    if mode == "channels-last":
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    run_batch = Batch(x, batch.lengths, batch.targets)
    opt = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)
    autocast_dtype = torch.bfloat16 if mode in ("bf16-autocast", "compile-bf16") else None
    logits_fn = None
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    try:
        if mode.startswith("compile"):
            torch._dynamo.reset()  # each compiled mode starts from a clean cache (no recompile limit carry-over)
            logits_fn = torch.compile(model.logits)  # compiles lazily: on the first warmup step
        t0 = time.perf_counter()
        for _ in range(warmup):
            train_step(model, opt, run_batch, logits_fn, autocast_dtype)
        _sync(device)
        t1 = time.perf_counter()
        loss, step_s = None, []
        for _ in range(steps):
            loss = train_step(model, opt, run_batch, logits_fn, autocast_dtype)
            _sync(device)  # the model syncs per step anyway (lengths.cpu() for packing)
            step_s.append(time.perf_counter() - (t1 + sum(step_s)))
    except Exception as e:  # noqa: BLE001 - a failing mode is a result, not a crash
        result.error = _one_line(e)
        return result
    finally:
        if mode.startswith("compile"):
            torch._dynamo.reset()
    result.ok = True
    result.steps = steps
    result.warmup_s = t1 - t0
    result.seconds_per_step = sum(step_s) / steps
    result.median_s_per_step = statistics.median(step_s)
    result.clips_per_s = batch.size / result.seconds_per_step
    result.last_loss = float(loss) if loss is not None else math.nan
    if device.type == "cuda":
        result.peak_mem_bytes = torch.cuda.max_memory_allocated(device)
    return result


def measure(
    steps: int = 5, warmup: int = 2, batch: int = 16, seconds: float = 10.0, modes: tuple[str, ...] | list[str] = MODES,
    device: str = "auto", config: ModelConfig = ModelConfig(), seed: int = 0,
    progress: Callable[[str], None] | None = None,
) -> BenchResult:
    """Run the baseline, each other requested mode, and the baseline again; fill in ratios."""
    if steps < 1 or warmup < 0:
        raise ValueError(f"need steps >= 1 and warmup >= 0, got steps={steps}, warmup={warmup}")
    unknown = [m for m in modes if m not in MODES]
    if unknown:
        raise ValueError(f"unknown mode(s) {', '.join(unknown)}; known: {', '.join(MODES)}")
    dev = resolve_device(device)
    date = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    start, load_before = time.perf_counter(), _load()
    data = make_batch(batch, seconds, config.n_classes, config.n_mels, seed, dev)
    others = [m for m in dict.fromkeys(modes) if m != BASELINE]
    plan = [(BASELINE, f"{BASELINE} #1")] + [(m, m) for m in others] + [(BASELINE, f"{BASELINE} #2")]
    results = []
    for mode, label in plan:
        if progress:
            progress(f"bench model: {label} ({warmup} warmup + {steps} timed steps)")
        results.append(run_mode(mode, data, config, steps, warmup, seed, label))
    eager = [r for r in results if r.mode == BASELINE and r.ok]
    if not eager:
        raise RuntimeError(f"the baseline {BASELINE} failed: {results[0].error}")
    baseline_s = sum(r.seconds_per_step for r in eager) / len(eager)
    baseline_clips = batch / baseline_s
    for r in results:
        if r.ok:
            r.ratio = r.clips_per_s / baseline_clips
    return BenchResult(
        results=results, baseline_clips_per_s=baseline_clips, device=dev.type, device_name=device_name(dev),
        batch=batch, seconds=seconds, input_shape=tuple(data.x.shape), steps=steps, warmup=warmup,
        threads=torch.get_num_threads(), parameters=sum(p.numel() for p in CRNN(config).parameters()),
        wall_s=time.perf_counter() - start, load=(load_before, _load()), date=date,
    )


def format_report(bench: BenchResult) -> str:
    """The fixed-width table ``run_bench`` prints."""
    gpu = bench.device == "cuda"
    lines = [
        f"bench model: CRNN train step (forward, bce_loss, backward, clip 15, Adam {LEARNING_RATE:g}), "
        f"{bench.parameters:,} parameters",
        f"input: batch {bench.batch} x {bench.seconds:g} s = {tuple(bench.input_shape)}, "
        f"{bench.warmup} warmup + {bench.steps} timed steps per mode",
        f"device: {bench.device} ({bench.device_name}), torch {bench.torch_version}, "
        f"threads {bench.threads}, python {platform.python_version()}",
        f"date: {bench.date}, load average (1 min) {bench.load[0]:.2f} before, {bench.load[1]:.2f} after",
        f"command: {bench.command}",
        "",
    ]
    head = f"{'mode':18s} {'s/step':>9s} {'median':>9s} {'clips/s':>9s} {'ratio':>7s} {'warmup s':>9s}"
    if gpu:
        head += f" {'peak MiB':>9s}"
    lines.append(head)
    lines.append("-" * len(head))
    for r in bench.results:
        if not r.ok:
            lines.append(f"{r.label:18s} failed: {r.error}")
            continue
        row = f"{r.label:18s} {r.seconds_per_step:9.4f} {r.median_s_per_step:9.4f} {r.clips_per_s:9.2f} {r.ratio:6.2f}x {r.warmup_s:9.2f}"
        if gpu:
            row += f" {r.peak_mem_bytes / 2**20:9.0f}" if r.peak_mem_bytes is not None else f" {'':>9s}"
        lines.append(row)
    lines.append("-" * len(head))
    lines.append(
        f"{'baseline':18s} {bench.batch / bench.baseline_clips_per_s:9.4f} {'':9s} {bench.baseline_clips_per_s:9.2f} "
        f"{1.0:6.2f}x  (mean s/step of the two {BASELINE} runs)"
    )
    lines.append(f"total wall time {bench.wall_s:.0f} s")
    return "\n".join(lines)


def run_bench(
    steps: int = 5, warmup: int = 2, batch: int = 16, seconds: float = 10.0, modes: tuple[str, ...] | list[str] = MODES,
    device: str = "auto", config: ModelConfig = ModelConfig(), seed: int = 0,
    progress: Callable[[str], None] | None = None,
) -> str:
    """``measure`` then ``format_report``: the text of ``ray-tagger bench model``."""
    return format_report(measure(steps, warmup, batch, seconds, modes, device, config, seed, progress))
