"""Tiny hand-built data sets for tests, in the Kaggle layout (independent of demo-data)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import soundfile as sf

CLASSES = ("Bark", "Meow", "Siren", "Waves")


def write_wav(path: Path, seconds: float, seed: int, rate: int = 44100, channels: int = 1) -> np.ndarray:
    """A random 16-bit wav; returns its int16 samples ``(T,)`` or ``(T, C)``."""
    rng = np.random.default_rng(seed)
    shape = (int(seconds * rate),) if channels == 1 else (int(seconds * rate), channels)
    samples = rng.integers(-8000, 8000, size=shape, dtype=np.int16)
    sf.write(path, samples, rate, subtype="PCM_16")
    return samples


def write_csv(path: Path, rows: list[list[str]]) -> None:
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows(rows)


def tiny_kaggle(root: Path) -> dict[str, list[tuple[str, str]]]:
    """3 curated, 2 noisy, 2 test clips of 0.3–2 s; returns ``{source: [(fname, labels)]}``."""
    rows = {
        "curated": [("c1.wav", "Bark"), ("c2.wav", "Meow,Siren"), ("c3.wav", "Waves")],
        "noisy": [("n1.wav", "Bark"), ("n2.wav", "Siren")],
        "test": [("t1.wav", ""), ("t2.wav", "")],
    }
    folders = {"curated": "train_curated", "noisy": "train_noisy", "test": "test"}
    for k, (source, items) in enumerate(rows.items()):
        (root / folders[source]).mkdir(parents=True)
        for j, (fname, _) in enumerate(items):
            write_wav(root / folders[source] / fname, 0.3 + 0.5 * j + 0.2 * k, seed=10 * k + j)
    write_csv(root / "train_curated.csv", [["fname", "labels"]] + [list(r) for r in rows["curated"]])
    write_csv(root / "train_noisy.csv", [["fname", "labels"]] + [list(r) for r in rows["noisy"]])
    write_csv(root / "sample_submission.csv", [["fname", *CLASSES]] + [[f, *["0"] * len(CLASSES)] for f, _ in rows["test"]])
    return rows


def demo_shards(root: Path, clips: int, seed: int = 0, classes: int = 8, preset: str = "tiny") -> Path:
    """A demo data set of the first ``classes`` demo classes in ``root/data`` (test labels beside it)
    prepared into ``root/shards`` for the log-mel features of ``preset``; needs a Ray session. The
    tests' tiny models learn 8 classes from a few dozen clips in a few hundred iterations; the whole
    vocabulary is for the demo preset."""
    from ray_tagger.config import resolve_features
    from ray_tagger.demo_data import DemoConfig, generate
    from ray_tagger.prepare import PrepareConfig, prepare

    generate(root / "data", DemoConfig(clips=clips, seed=seed, num_classes=classes, class_choice="spread"))
    prepare(root / "data", root / "shards", PrepareConfig(features=resolve_features(preset)))
    return root / "shards"


def random_model_run(run: Path, classes: list[str], seed: int = 0):
    """A run folder holding one ``model.pt`` of the tiny preset's CRNN with random weights (a real
    model file for the inference commands, without training); returns the model."""
    import dataclasses

    import torch

    from ray_tagger.config import resolve, resolve_features
    from ray_tagger.model import CRNN
    from ray_tagger.modelfile import save_model

    config = dataclasses.replace(resolve("tiny").model, n_classes=len(classes))
    torch.manual_seed(seed)
    model = CRNN(config).eval()
    features = resolve_features("tiny")
    run.mkdir(parents=True, exist_ok=True)
    save_model(run / "model.pt", model.state_dict(), {
        "classes": list(classes), "model_config": dataclasses.asdict(config), "features": dataclasses.asdict(features),
        "stats": {"mean": [0.0] * features.n_mels, "std": 1.0, "frames": 1}, "crop_s": 2.0, "run": run.name,
        "split": 0, "fold": None, "R": 4})
    return model
