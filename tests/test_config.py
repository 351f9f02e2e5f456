"""The paper preset resolves to every constant of the report (DESIGN §2), written into run folders."""

from __future__ import annotations

import pytest
import yaml

from ray_tagger.cli import main
from ray_tagger.config import TrainJobConfig, parse_overrides, preset_names, resolve, resolve_system

# The report's constants, typed in from the report (§1.1, §2.1–2.4, §3.1–3.2).
REPORT = {
    "features": {"sample_rate": 44100, "frame_length": 1764, "hop_length": 882, "n_fft": 2048, "n_mels": 128,
                 "f_min": 50.0, "f_max": 16000.0},
    "model": {"n_classes": 80, "blocks": [[16, 2, 2], [32, 2, 2], [64, 2, 2], [128, 2, 1], [256, 1, 1]],
              "conv1d_channels": 256, "conv1d_layers": 3, "gru_hidden": 256, "gru_layers": 2, "fc_hidden": 256},
    "mixup": {"probability": 2 / 3, "max_partner_ratio": 1.1, "gain_max": 2.0, "max_seconds": 30.0},
    "specaugment": {"warp": True, "cutoff_scale": 0.5, "alpha_scale": 0.07, "freq_mask_max": 16, "time_mask_max": 70,
                    "time_mask_fraction": 0.2},
    "batch": {"batch_size": 16, "max_padding": 0.2},
    "optim": {"iterations": 200_000, "lr": 3e-4, "lr_drop_at": 150_000, "lr_final": 1e-4, "grad_clip": 15.0,
              "swa_start": 150_000, "swa_every": 1_000, "bn_refresh_batches": None},
}


# §4.1 and §4.2: 3 splits × 5 folds relabelling models with R = 8; final models R ∈ {2, 4} on 3 splits.
REPORT_SYSTEM = {"relabel_R": 8, "relabel_splits": [0, 1, 2], "relabel_folds": [0, 1, 2, 3, 4], "final_R": [2, 4],
                 "final_splits": [0, 1, 2],
                 # the check before relabelling (not in the report): chance + 0.1, at most half dropped, else stop
                 "relabel_min_gain": 0.1, "relabel_max_drop": 0.5, "relabel_on_failure": "stop",
                 # the submission is the final models' mean alone (§4.2), no classical baseline blended in
                 "baseline_weights": [0.0]}


def _check(resolved: dict) -> None:
    for section, values in REPORT.items():
        for key, expected in values.items():
            got = resolved[section][key]
            if isinstance(expected, float):
                assert got == pytest.approx(expected, rel=1e-12), f"{section}.{key}"
            else:
                assert got == expected, f"{section}.{key}"


def test_paper_preset_is_the_report():
    _check(yaml.safe_load(yaml.safe_dump(_lists(resolve("paper").to_dict()))))
    assert resolve("paper") == TrainJobConfig(), "the code defaults are the report's too"


def test_show_config_prints_the_resolved_paper_config(capsys):
    assert main(["show-config", "--preset", "paper"]) == 0
    shown = yaml.safe_load(capsys.readouterr().out)
    _check(shown)
    assert shown["system"] == REPORT_SYSTEM


def test_presets_and_overrides():
    assert {"paper", "demo", "tiny"} <= set(preset_names())
    job = resolve("tiny", ["optim.iterations=12", "stream.R=8", "model.blocks=[[4,1,2],[4,1,2],[4,1,2],[4,1,1],[4,1,1]]"])
    assert (job.optim.iterations, job.stream.R, job.model.blocks[0]) == (12, 8, (4, 1, 2))
    assert parse_overrides(["a.b=1.5", "a.c=null"]) == {"a": {"b": 1.5, "c": None}}
    with pytest.raises(ValueError, match="section.field=value"):
        parse_overrides(["iterations=3"])
    with pytest.raises(ValueError, match="unknown OptimConfig field"):
        resolve("paper", ["optim.iterationz=3"])
    with pytest.raises(ValueError, match="unknown preset"):
        resolve("nonesuch")


def _lists(x):
    if isinstance(x, dict):
        return {k: _lists(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_lists(v) for v in x]
    return x


def test_the_model_and_the_features_must_agree_on_the_mel_bands():
    with pytest.raises(ValueError, match=r"model.n_mels \(128\) must equal features.n_mels \(64\)"):
        resolve("paper", ["features.n_mels=64"])
    assert resolve("paper", ["features.n_mels=64", "model.n_mels=64"]).model.n_mels == 64


def test_float_fields_take_exponent_notation_and_the_baseline_weights_are_checked():
    # YAML 1.1 reads 1e-3 (no dot) as a string; a float field takes it as the number
    assert resolve("paper", ["optim.lr=1e-3"]).optim.lr == 0.001
    assert resolve("paper", ["stream.crop_s=4e0"]).stream.crop_s == 4.0  # a float-or-None field
    assert resolve("paper", ["stream.crop_s=null"]).stream.crop_s is None
    with pytest.raises(ValueError, match="OptimConfig.lr must be a number, got 'fast'"):
        resolve("paper", ["optim.lr=fast"])
    # one weight, as a list or a bare number, or several to choose from
    assert resolve_system("paper", ["system.baseline_weights=[5e-1]"]).baseline_weights == (0.5,)
    assert resolve_system("paper", ["system.baseline_weights=0.25"]).baseline_weights == (0.25,)
    assert resolve_system("paper", ["system.baseline_weights=[0, 0.5]"]).baseline_weights == (0.0, 0.5)
    assert resolve_system("tiny").baseline_weights == (0.0,) and not resolve_system("tiny").blends
    assert max(resolve_system("demo").baseline_weights) > 0 and resolve_system("demo").blends
    for bad in ("1", "-0.1", "[0.5, 1.5]", "[]"):
        with pytest.raises(ValueError, match=r"baseline_weights must be one or more weights in \[0, 1\)"):
            resolve_system("paper", [f"system.baseline_weights={bad}"])
    with pytest.raises(ValueError, match="baseline_weights must be numbers, got"):
        resolve_system("paper", ["system.baseline_weights=[half]"])


def test_the_read_once_limit_is_a_size_or_zero():
    assert resolve("paper", ["stream.read_once_mb=0"]).stream.read_once_mb == 0
    assert resolve("demo").stream.read_once_mb == 1024 and resolve("tiny").stream.read_once_mb == 0
    with pytest.raises(ValueError, match=r"stream.read_once_mb must be 0 \(read every pass\) or more, got -1"):
        resolve("paper", ["stream.read_once_mb=-1"])
