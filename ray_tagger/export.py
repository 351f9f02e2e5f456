"""``ray-tagger export``: an ensemble as one self-contained TorchScript file for inference elsewhere.

    wave (T,) mono float at the models' rate ─log-mel─▶ normalised (F, N) ─windows─▶ every member ─▶ mean ─▶ (K,)
                                                        └─pooled mean/std/max─▶ classical baseline ─▶ blend ─┘ (when the run blends)

The file holds the members' weights, the log-mel front end (torchaudio's STFT and mel filterbank, :class:`~ray_tagger.features.MelPower`),
the normalisation statistics, the scoring windows of :mod:`ray_tagger.scoring` and the
vocabulary (``tagger.classes``, and ``classes.json`` among the archive's extra files). It needs
torch (and torchaudio's operators, which are part of torch's library) but not ray_tagger:

    tagger = torch.jit.load("tagger.pt")
    scores = tagger(wave)          # (K,) probabilities, in the order of tagger.classes

For a ``ray-tagger run`` folder whose submission blended in the classical baseline
(:func:`~ray_tagger.baseline.load_blend`), the file holds that baseline too and blends as the
submission did (``tagger.baseline_weight``; 0 otherwise). Waves must be mono at
``tagger.sample_rate``; resampling and downmixing are the caller's. Scores equal ``predict``'s for
the same audio (a test holds them to 1e-4).
"""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path
from typing import List

import torch
from torch import nn

from .baseline import BaselineBlend, load_blend
from .features import FeatureConfig, LogMel
from .infer import check_model_files, load_member, member_paths
from .normalization import NormStats
from .scoring import window_frames, window_starts

log = logging.getLogger(__name__)


class EnsembleTagger(nn.Module):
    """``(T,) wave -> (K,)`` mean of every member's mean score over the windows, blended with a classical
    baseline (:class:`~ray_tagger.baseline.BaselineBlend`) when one is given (scriptable)."""

    def __init__(self, models: list[nn.Module], features: FeatureConfig, stats: NormStats, window: int | None,
                 classes: list[str], blend: BaselineBlend | None = None):
        super().__init__()
        self.mel = LogMel(features).mel
        self.members = nn.ModuleList(models)
        self.register_buffer("mean", torch.tensor(stats.mean, dtype=torch.float32)[:, None])
        self.std = float(stats.std)
        self.floor = float(features.log_floor)
        self.window = int(window or 0)
        self.sample_rate = int(features.sample_rate)
        self.classes: List[str] = list(classes)
        self.baseline_weight = 0.0 if blend is None else float(blend.weight)
        K, D = len(classes), 3 * features.n_mels
        m = None if blend is None else blend.model
        self.register_buffer("pooled_mean", torch.zeros(D) if m is None else torch.tensor(m.mean, dtype=torch.float32))
        self.register_buffer("pooled_std", torch.ones(D) if m is None else torch.tensor(m.std, dtype=torch.float32))
        self.register_buffer("baseline_w", torch.zeros(D, K) if m is None else torch.tensor(m.weight, dtype=torch.float32))
        self.register_buffer("baseline_b", torch.zeros(K) if m is None else torch.tensor(m.bias, dtype=torch.float32))

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        if wave.dim() != 1:
            raise ValueError("expected one mono waveform of shape (T,)")
        power = self.mel(wave.float().unsqueeze(0))[0]  # (F, N)
        x = (torch.log(power.clamp_min(self.floor)) - self.mean) / self.std
        n = x.shape[-1]
        w = n if self.window == 0 or n <= self.window else self.window
        starts = window_starts(n, w)  # scripted along with this module
        crops = torch.stack([x[:, s: s + w] for s in starts]).unsqueeze(1)  # (P, 1, F, w)
        lengths = torch.full((len(starts),), w, dtype=torch.long)
        total = torch.zeros(0)
        for i, member in enumerate(self.members):
            scores = member(crops, lengths).mean(0)
            total = scores if i == 0 else total + scores
        mean = total / len(self.members)
        if self.baseline_weight == 0.0:
            return mean
        pooled = torch.cat([x.mean(-1), x.std(-1, unbiased=False), x.amax(-1)])  # (3F,), baseline.pooled_features
        baseline = torch.sigmoid(((pooled - self.pooled_mean) / self.pooled_std) @ self.baseline_w + self.baseline_b)
        return (1.0 - self.baseline_weight) * mean + self.baseline_weight * baseline


def export(run_dir: str | Path, out: str | Path) -> dict:
    """Script the ensemble of ``run_dir`` (as ``predict`` finds it) into ``out``; returns a summary."""
    members = member_paths(run_dir)
    metas = check_model_files(members)
    meta = metas[0]
    models = [load_member(p, channels_last=False)[0] for p in members]  # the default layout: portable
    features = FeatureConfig(**meta["features"])
    blend = load_blend(run_dir, meta)
    tagger = EnsembleTagger(models, features, NormStats.from_json(meta["stats"]), window_frames(meta.get("crop_s"), features),
                            meta["classes"], blend).eval()
    for parameter in tagger.parameters():  # inference only: scores come back without autograd history
        parameter.requires_grad_(False)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    info = {"format": "ray_tagger.torchscript/1", "members": [str(p) for p in members], "classes": meta["classes"],
            "sample_rate": features.sample_rate, "crop_s": meta.get("crop_s"), "input": "mono float waveform (T,)",
            "output": "(K,) probabilities, classes order",
            "baseline": None if blend is None else {"row": blend.row, "weight": blend.weight}}
    with warnings.catch_warnings():  # torch 2.10+ marks TorchScript deprecated (README: Export)
        warnings.simplefilter("ignore", DeprecationWarning)
        scripted = torch.jit.script(tagger)
        torch.jit.save(scripted, str(out), _extra_files={"classes.json": json.dumps(meta["classes"]),
                                                          "ray_tagger.json": json.dumps(info)})
    log.info("exported %d models (%d classes) to %s", len(models), len(meta["classes"]), out)
    return {"out": str(out), "members": len(models), "classes": len(meta["classes"]), "bytes": out.stat().st_size,
            "baseline_weight": tagger.baseline_weight}
