"""The configuration of one training run: one frozen dataclass per stage, presets as YAML.

``TrainJobConfig()`` is the report's system; a preset (``ray_tagger/presets/NAME.yaml``)
overrides some fields, and ``--set section.field=value`` overrides single fields after it.
The resolved configuration is written into every run folder.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from .batching import BatchConfig
from .features import FeatureConfig
from .mixup import MixupConfig
from .model import ModelConfig
from .specaugment import SpecAugmentConfig


@dataclass(frozen=True)
class OptimConfig:
    """Optimisation and schedule of report §3.2 (200k iterations, SWA over the last 50k)."""

    iterations: int = 200_000
    """Total training iterations."""
    lr: float = 3e-4
    """Adam learning rate before ``lr_drop_at``."""
    lr_drop_at: int = 150_000
    """Iteration after which the learning rate is ``lr_final``."""
    lr_final: float = 1e-4
    """Adam learning rate from ``lr_drop_at`` on."""
    grad_clip: float = 15.0
    """Gradient-norm clipping threshold."""
    swa_start: int = 150_000
    """SWA snapshots are taken at iterations after this one ..."""
    swa_every: int = 1_000
    """... every this many iterations (equal weights)."""
    bn_refresh_batches: int | None = None
    """Batches of un-augmented training data for the final BatchNorm refresh (None: all)."""


@dataclass(frozen=True)
class StreamConfig:
    """The Ray Data training stream (report §3.1: two mixup streams, curated R times as often)."""

    R: int = 4
    """The curated-only stream is iterated R times as often as the curated+noisy one."""
    pool_size: int = 32
    """Clips per mixup pool (one Ray Data batch); partners come from the same stream in it."""
    shuffle_buffer: int = 256
    """Local shuffle on each Train worker: examples held back, each new one swapping places with a
    random one of them (seeded by the run and the pass; the held-back ones carry over into the
    next pass); 0: the stream's order."""
    actors: int = 1
    """CPU actors per pipeline that decode, mix and compute features."""
    cpus_per_actor: float = 1.0
    """CPUs reserved per pipeline actor (or task)."""
    compute: str = "actors"
    """'actors': an actor pool per pass (start-up paid once per pass, right for long passes);
    'tasks': pooled Ray worker processes reused across passes (right for short passes)."""
    crop_s: float | None = None
    """Training examples longer than this many seconds are cut to a random excerpt of it, after
    mixup and before the features (None: whole examples, as in the report). Models trained on
    crops score long clips as the mean over windows of this length (see ``ray_tagger.scoring``)."""
    audio_cache_mb: float = 512
    """Decoded audio each training-stream process keeps across passes (MB; 0: decode every pass).
    Every Ray worker process that runs the stream's tasks keeps its own, so a node may hold this
    times the processes of every run it trains."""
    cpu_limit: float | None = None
    """CPUs one Train worker's stream may use at once, its actors and its Parquet reads together
    (Ray Data ``resource_limits``), so concurrent runs' pipelines do not starve each other;
    None: ``actors × cpus_per_actor + 1``."""
    read_once_mb: float = 1024
    """A training stream whose shards (the Parquet files of its sources, curated and noisy) total at
    most this many MB reads them once per run into Ray's object store and takes every pass from
    there, its blocks in an order shuffled per pass; larger sets are read from the files at every
    pass, as is everything with 0. Each run's training stream holds its own copy (per Train
    worker, that worker's clips)."""
    features_on: str = "pipeline"
    """Where a training example's log-mel and normalisation are computed: 'pipeline' (the CPU
    workers of the stream, the design card's default) or 'trainer' (the stream delivers the mixed,
    cropped waveforms and the Train worker computes the features of each batch at once on its
    device, a GPU's when it has one, before SpecAugment). The same features either way (to float
    rounding); validation and the BatchNorm refresh always take the pipeline's."""

    def __post_init__(self) -> None:
        if self.features_on not in ("pipeline", "trainer"):
            raise ValueError(f"stream.features_on must be 'pipeline' or 'trainer', got {self.features_on!r}")
        if self.read_once_mb < 0:
            raise ValueError(f"stream.read_once_mb must be 0 (read every pass) or more, got {self.read_once_mb:g}")


@dataclass(frozen=True)
class RunConfig:
    """Bookkeeping of a run."""

    seed: int = 0
    """Seed of every random draw of the run (with the run name and content keys)."""
    log_every: int = 100
    """Report loss and throughput every this many iterations."""
    checkpoint_every: int = 5_000
    """Checkpoint every this many iterations (and at the end)."""
    validate_every: int = 5_000
    """Validation lwlrap on the held-out fold every this many iterations (when a fold is held out)."""
    max_failures: int = 0
    """Ray Train restarts failed workers this many times (from the last checkpoint)."""
    channels_last: bool = True
    """Keep the convolution weights in channels-last memory layout (an execution choice, not the
    report's), faster on x86 CPUs (docs/BENCHMARKS.md, ``bench model``). The same model and loss,
    but less exact gradients: channels-last BatchNorm backward loses about 1e-5 per layer, so the
    first blocks' gradients come 4-8 % (relative) from a float64 reference on one thread, against
    4e-6 for the default layout (tests/test_model.py). No effect on learning was seen (two fold-0
    runs, docs/LEARNING.md). False: PyTorch's default layout."""
    autocast: str = "none"
    """Precision of the training forward pass: 'none' (float32, the report) or 'bf16'
    (``torch.autocast`` with bfloat16 on the Train worker's device, for GPUs with bfloat16 tensor
    cores; weights, gradients, optimizer state, SWA and the loss stay float32). An execution
    choice, not the report's; ``bench model`` measures its speed per device."""

    def __post_init__(self) -> None:
        if self.autocast not in ("none", "bf16"):
            raise ValueError(f"run.autocast must be 'none' or 'bf16', got {self.autocast!r}")


@dataclass(frozen=True)
class SystemConfig:
    """The report's full system (§4.1, §4.2): which models the relabelling and final ensembles train.

    Lives in a preset's ``system:`` section, beside the per-model sections of :class:`TrainJobConfig`.
    """

    relabel_R: int = 8
    """Curated oversampling factor of the relabelling models."""
    relabel_splits: tuple[int, ...] = (0, 1, 2)
    """Noisy-clip splits the relabelling models train on (one model per split and fold)."""
    relabel_folds: tuple[int, ...] = (0, 1, 2, 3, 4)
    """Curated folds held out, one relabelling model each (per split)."""
    final_R: tuple[int, ...] = (2, 4)
    """Curated oversampling factors of the final models (one model per R and split)."""
    final_splits: tuple[int, ...] = (0, 1, 2)
    """Relabelled splits the final models train on."""
    relabel_min_gain: float = 0.1
    """Relabel only when the relabelling ensemble's held-out curated lwlrap is at least chance + this."""
    relabel_max_drop: float = 0.5
    """Relabel only when the thresholds would drop at most this share of the noisy excerpts."""
    relabel_on_failure: str = "stop"
    """When a check above fails: 'stop' (an error, nothing relabelled) or 'keep_provided' (provided labels kept)."""
    baseline_weights: tuple[float, ...] = (0.0,)
    """Not the report's (0: its submission is the mean of the final models' scores): the submission is
    ``(1 - w) ·`` that mean ``+ w ·`` the classical baseline's scores (:mod:`ray_tagger.baseline`, the
    row that scores better on its held-out curated fold), each w in [0, 1). One value: that weight.
    Several: the one under which the relabelling models, blended with the baseline refitted without
    their held-out folds, score best on those curated folds (:func:`ray_tagger.baseline.choose_weight`;
    ties: the smaller weight)."""

    GUARD_FIELDS = ("relabel_min_gain", "relabel_max_drop", "relabel_on_failure")
    """Fields that decide whether relabelling may proceed, not what any model learns: changing them
    after a refusal resumes the same run (they are left out of :meth:`identity`)."""

    def __post_init__(self) -> None:
        if self.relabel_on_failure not in ("stop", "keep_provided"):
            raise ValueError(f"system.relabel_on_failure must be 'stop' or 'keep_provided', got {self.relabel_on_failure!r}")
        weights = self.baseline_weights if isinstance(self.baseline_weights, (list, tuple)) else (self.baseline_weights,)
        try:  # a single number stands for a one-value list; YAML 1.1 reads '5e-1' as a string
            weights = tuple(float(w) for w in weights)
        except (TypeError, ValueError):
            raise ValueError(f"system.baseline_weights must be numbers, got {self.baseline_weights!r}") from None
        if not weights or not all(0.0 <= w < 1.0 for w in weights):
            raise ValueError(f"system.baseline_weights must be one or more weights in [0, 1), got {self.baseline_weights!r}")
        object.__setattr__(self, "baseline_weights", weights)

    @property
    def blends(self) -> bool:
        """Whether the submission may blend in the classical baseline (a weight above 0 among the choices)."""
        return max(self.baseline_weights) > 0

    def identity(self) -> dict:
        """:meth:`to_dict` without :attr:`GUARD_FIELDS`: what a run folder's inputs are compared on."""
        return {k: v for k, v in self.to_dict().items() if k not in self.GUARD_FIELDS}

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "SystemConfig":
        return _build(cls, data)


@dataclass(frozen=True)
class TrainJobConfig:
    """Everything one model's training needs; defaults are the report's."""

    features: FeatureConfig = field(default_factory=FeatureConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    mixup: MixupConfig = field(default_factory=MixupConfig)
    specaugment: SpecAugmentConfig = field(default_factory=SpecAugmentConfig)
    batch: BatchConfig = field(default_factory=BatchConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    stream: StreamConfig = field(default_factory=StreamConfig)
    run: RunConfig = field(default_factory=RunConfig)

    def __post_init__(self) -> None:
        if self.model.n_mels != self.features.n_mels:
            raise ValueError(f"model.n_mels ({self.model.n_mels}) must equal features.n_mels ({self.features.n_mels}): "
                             f"set both")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "TrainJobConfig":
        return _build(cls, data)


def _build(cls, data: dict):
    unknown = set(data) - {f.name for f in dataclasses.fields(cls)}
    if unknown:
        raise ValueError(f"unknown {cls.__name__} field(s): {', '.join(sorted(unknown))}")
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name not in data:
            continue
        value = data[f.name]
        sub = f.default_factory if f.default_factory is not dataclasses.MISSING else None
        if sub is not None and dataclasses.is_dataclass(sub):
            value = _build(sub, value or {})
        elif isinstance(value, list):
            value = _tuples(value)
        elif f.type in ("float", "float | None") and isinstance(value, str):
            try:  # YAML 1.1 reads '1e-3' (no dot) as a string
                value = float(value)
            except ValueError:
                raise ValueError(f"{cls.__name__}.{f.name} must be a number, got {value!r}") from None
        kwargs[f.name] = value
    return cls(**kwargs)


def _tuples(value: Any) -> Any:
    return tuple(_tuples(v) for v in value) if isinstance(value, (list, tuple)) else value


def _merge(base: dict, update: dict) -> dict:
    out = dict(base)
    for k, v in update.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def preset_names() -> list[str]:
    return sorted(p.name[:-5] for p in resources.files("ray_tagger.presets").iterdir() if p.name.endswith(".yaml"))


def load_preset(name_or_path: str) -> dict:
    """A preset by name (``paper``, ``demo``, ``tiny``) or a YAML file path."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") and path.is_file():
        text = path.read_text()
    elif name_or_path in preset_names():
        text = resources.files("ray_tagger.presets").joinpath(f"{name_or_path}.yaml").read_text()
    else:
        raise ValueError(f"unknown preset {name_or_path!r}; known: {', '.join(preset_names())} or a .yaml file")
    return yaml.safe_load(text) or {}


def parse_overrides(items: list[str]) -> dict:
    """``['optim.iterations=300', 'stream.R=8'] -> {'optim': {'iterations': 300}, 'stream': {'R': 8}}``."""
    out: dict = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or "." not in key:
            raise ValueError(f"--set expects section.field=value, got {item!r}")
        node = out
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = yaml.safe_load(raw)
    return out


def _layered(preset: str, overrides: list[str] | None, extra: dict | None) -> dict:
    data = _merge({**TrainJobConfig().to_dict(), "system": SystemConfig().to_dict()}, load_preset(preset))
    data = _merge(data, extra or {})
    return _merge(data, parse_overrides(overrides or []))


def resolve(preset: str = "paper", overrides: list[str] | None = None, extra: dict | None = None) -> TrainJobConfig:
    """Report defaults ← preset ← ``extra`` (command-line flags) ← ``--set`` overrides."""
    data = _layered(preset, overrides, extra)
    data.pop("system")
    return TrainJobConfig.from_dict(data)


def resolve_system(preset: str = "paper", overrides: list[str] | None = None, extra: dict | None = None) -> SystemConfig:
    """The ``system`` section, layered like :func:`resolve` (``--set system.final_R=[4]``)."""
    return SystemConfig.from_dict(_layered(preset, overrides, extra)["system"])


def resolve_features(preset: str = "paper", overrides: list[str] | None = None) -> FeatureConfig:
    """The ``features`` section (log-mel settings), layered like :func:`resolve`; what ``prepare``
    computes the normalisation statistics with."""
    return _build(FeatureConfig, _layered(preset, overrides, None)["features"])
