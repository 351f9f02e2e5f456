"""Writing the demo data set: the Kaggle and Zenodo layouts, CSVs, the label files beside the
folder, ``demo_info.json``, and :func:`generate`, which ties planning, rendering and writing."""

from __future__ import annotations

import csv
import json
import logging
import multiprocessing
import shutil
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict
from pathlib import Path
from types import MappingProxyType

import numpy as np
import soundfile as sf

from .mix import render_clip
from .plan import SOURCE_IDS, SOURCES, ClipPlan, DemoConfig, DemoSummary, class_names, plan_clips
from .sounds import CLASSES, CONFUSABLE

logger = logging.getLogger(__package__)

_KAGGLE_AUDIO = {"curated": "train_curated", "noisy": "train_noisy", "test": "test"}
_ZENODO_META = "FSDKaggle2019.meta"
_ZENODO_AUDIO = {s: f"FSDKaggle2019.audio_{_KAGGLE_AUDIO[s]}" for s in SOURCES}
_CC0 = "http://creativecommons.org/publicdomain/zero/1.0/"
TEST_LABELS_SUFFIX = "-test-labels.csv"
NOISY_TRUTH_SUFFIX = "-noisy-truth.csv"
INFO_NAME = "demo_info.json"


def _to_pcm16(x: np.ndarray) -> np.ndarray:
    """Float (n,) in [-1, 1] -> int16 (n,) scaled by 32767 and rounded."""
    return np.round(np.clip(x, -1.0, 1.0) * 32767.0).astype(np.int16)


def _audio_dir(layout: str, source: str) -> str:
    """Audio folder name of ``source`` in ``layout``."""
    return (_KAGGLE_AUDIO if layout == "kaggle" else _ZENODO_AUDIO)[source]


def _generated_entries() -> tuple[str, ...]:
    """Top-level names :func:`generate` may create inside out_dir, for both layouts."""
    kaggle = ("train_curated.csv", "train_noisy.csv", "sample_submission.csv", *_KAGGLE_AUDIO.values())
    return (*kaggle, _ZENODO_META, *_ZENODO_AUDIO.values(), INFO_NAME)


def _prepare_out_dir(out: Path, overwrite: bool) -> None:
    """Create ``out``; refuse a non-empty one unless ``overwrite`` (then remove only the
    entries this module writes)."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"out_dir {out} exists and is not a directory")
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise ValueError(
                f"out_dir {out} exists and is not empty; pass overwrite=True to replace the demo data in it"
            )
        for name in _generated_entries():
            path = out / name
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
        leftovers = sorted(p.name for p in out.iterdir())
        if leftovers:
            logger.warning("out_dir %s keeps files not written by demo_data: %s", out, leftovers)
    out.mkdir(parents=True, exist_ok=True)


def _write_csv(path: Path, header: Sequence[str] | None, rows: Iterable[Sequence[object]]) -> None:
    """CSV with '\\n' line ends; fields with commas are quoted (csv.QUOTE_MINIMAL)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        if header is not None:
            writer.writerow(header)
        writer.writerows(rows)


def _join(labels: Sequence[str]) -> str:
    """Labels -> the competition's comma-separated field."""
    return ",".join(labels)


def _write_clip(folder: Path, plan: ClipPlan, config: DemoConfig) -> None:
    """Render one clip and write it as 16-bit PCM mono wav (a pure function of the plan)."""
    pcm = _to_pcm16(render_clip(plan, config))
    if not np.any(pcm):
        raise RuntimeError(f"clip {plan.fname} rendered silent")
    sf.write(folder / plan.fname, pcm, config.sample_rate, subtype="PCM_16", format="WAV")
    logger.debug("wrote %s (%d samples, labels %s)", folder / plan.fname, pcm.size, plan.labels)


def _write_audio(folder: Path, plans: Sequence[ClipPlan], config: DemoConfig, workers: int = 1) -> None:
    """Render and write every clip of one source, in ``workers`` local processes when more than one
    (each clip depends on its plan only, so the files are the same either way)."""
    folder.mkdir(parents=True, exist_ok=True)
    if workers <= 1:
        for plan in plans:
            _write_clip(folder, plan, config)
        return
    # spawned, not forked: the caller may be a Ray driver, whose threads a fork would copy
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        for done in [pool.submit(_write_clip, folder, plan, config) for plan in plans]:
            done.result()


def _freesound_id(plan: ClipPlan) -> int:
    """Synthetic, clearly out-of-range stand-in for a Freesound id."""
    return 900_000_000 + 1_000_000 * SOURCE_IDS[plan.source] + plan.index + 1


def _write_kaggle_meta(out: Path, plans: Mapping[str, Sequence[ClipPlan]], names: Sequence[str]) -> None:
    """train_curated.csv, train_noisy.csv (published labels) and sample_submission.csv."""
    for source, csv_name in (("curated", "train_curated.csv"), ("noisy", "train_noisy.csv")):
        _write_csv(out / csv_name, ("fname", "labels"), ((p.fname, _join(p.labels)) for p in plans[source]))
    zeros = [0] * len(names)
    _write_csv(out / "sample_submission.csv", ("fname", *names), ((p.fname, *zeros) for p in plans["test"]))


def _write_zenodo_meta(out: Path, plans: Mapping[str, Sequence[ClipPlan]], names: Sequence[str]) -> None:
    """FSDKaggle2019.meta/: post-competition CSVs (test with labels and usage) and vocabulary."""
    meta = out / _ZENODO_META
    for source in ("curated", "noisy"):
        rows = ((p.fname, _join(p.labels), _freesound_id(p), _CC0) for p in plans[source])
        header = ("fname", "labels", "freesound_id", "license")
        _write_csv(meta / f"train_{source}_post_competition.csv", header, rows)
    public = (len(plans["test"]) + 1) // 2
    rows = (
        (p.fname, _join(p.labels), "Public" if p.index < public else "Private", _freesound_id(p), _CC0)
        for p in plans["test"]
    )
    header = ("fname", "labels", "usage", "freesound_id", "license")
    _write_csv(meta / "test_post_competition.csv", header, rows)
    _write_csv(meta / "vocabulary.csv", None, enumerate(names))


def _beside(out: Path, suffix: str) -> Path:
    """``<out><suffix>`` in out's parent folder."""
    return out.parent / f"{out.name}{suffix}"


def _write_beside_files(out: Path, plans: Mapping[str, Sequence[ClipPlan]]) -> tuple[Path, Path]:
    """Test truth and noisy truth, next to (not inside) ``out``."""
    test_path, noisy_path = _beside(out, TEST_LABELS_SUFFIX), _beside(out, NOISY_TRUTH_SUFFIX)
    _write_csv(test_path, ("fname", "labels"), ((p.fname, _join(p.true_labels)) for p in plans["test"]))
    rows = ((p.fname, _join(p.labels), _join(p.true_labels), p.corrupted) for p in plans["noisy"])
    _write_csv(noisy_path, ("fname", "labels", "true_labels", "corrupted"), rows)
    return test_path, noisy_path


DESCRIPTION = (
    "Every clip is synthesised with numpy from physical models: plucked strings (Karplus-Strong), "
    "struck strings and bars and bells (sums of decaying modes with inharmonic ratios), bowed and "
    "blown tones (wavetables with vibrato, body resonances and breath noise), drums (gliding "
    "sines, membrane modes, filtered noise), textures (shaped noise, bubbles, crackles) and "
    "formant-filtered voices. Each event draws its own register, tempo or density, timbre "
    "(brightness, partial levels, decay) and dynamics from class-specific ranges, and plays a "
    "random score. An event covers a random 25-100 % of the clip (at least 0.2 s) at a random "
    "onset, with 10 ms fades, scaled to a random SNR (event RMS over its span against the "
    "background RMS). All events of a clip sound in one synthetic room (exponentially decaying "
    "noise response, random RT60 and wet share, faster decay above a crossover) over coloured "
    "background noise (1/f^beta, beta drawn from background_beta), sometimes with a room tone (ventilation band "
    "and mains hum). Some class pairs are made confusable on purpose: "
    + ", ".join(f"{a}/{b}" for a, b in CONFUSABLE)
    + ". Clips carry 1-3 classes and are peak-normalised to a random peak before 16-bit quantisation."
)
NOISY_CHANNEL = (
    "Noisy clips (train_noisy) are ~15 s, have a louder background (lower SNR range), pass through a "
    "4th-order Butterworth-shaped low-pass (zero phase, FFT domain) with a random cut-off, and are "
    "sometimes over-driven and hard-clipped before peak normalisation. For a fraction noise_rate of "
    "them the published label set is corrupted: one label replaced by a wrong class, a spurious "
    "label added, or one label dropped when there are several."
)


def _info(
    config: DemoConfig, plans: Mapping[str, Sequence[ClipPlan]], seconds: Mapping[str, float]
) -> dict[str, object]:
    """Content of demo_info.json (no absolute paths, so it is byte-stable across folders)."""
    from ray_tagger import __version__

    noisy = plans["noisy"]
    kinds = [p.corruption for p in noisy]
    return {
        "generator": "ray_tagger.demo_data",
        "version": __version__,
        "config": asdict(config),
        "classes": list(class_names(config)),
        "class_descriptions": {n: " ".join((CLASSES[n].__doc__ or "").split()) for n in class_names(config)},
        "counts": {s: len(plans[s]) for s in SOURCES},
        "audio_seconds": {s: round(seconds[s], 3) for s in SOURCES},
        "total_audio_seconds": round(sum(seconds.values()), 3),
        "realised_corruption_rate": sum(p.corrupted for p in noisy) / len(noisy),
        "corruptions": {k: kinds.count(k) for k in ("replace", "add", "drop")},
        "test_labels_file": f"<out_dir>{TEST_LABELS_SUFFIX}",
        "noisy_truth_file": f"<out_dir>{NOISY_TRUTH_SUFFIX}",
        "description": DESCRIPTION,
        "noisy_channel": NOISY_CHANNEL,
    }


def generate(
    out_dir: str | Path, config: DemoConfig = DemoConfig(), *, overwrite: bool = False, workers: int = 1
) -> DemoSummary:
    """Synthesise the demo data set into ``out_dir`` in ``config.layout``.

    Also writes ``<out_dir>-test-labels.csv`` and ``<out_dir>-noisy-truth.csv`` beside
    ``out_dir``. Raises ValueError if ``out_dir`` exists and is non-empty, unless
    ``overwrite`` (which removes only what this function writes, then regenerates).
    ``workers`` > 1 renders the clips in that many local processes (same files).
    """
    out = Path(out_dir).resolve()
    _prepare_out_dir(out, overwrite)
    names = class_names(config)
    plans = {s: plan_clips(config, s) for s in SOURCES}
    counts = {s: len(p) for s, p in plans.items()}
    logger.info("synthesising demo data (%s) in %s: %s", config.layout, out, counts)
    for source in SOURCES:
        _write_audio(out / _audio_dir(config.layout, source), plans[source], config, workers)
    (_write_kaggle_meta if config.layout == "kaggle" else _write_zenodo_meta)(out, plans, names)
    test_path, noisy_path = _write_beside_files(out, plans)
    seconds = {s: sum(p.num_samples for p in plans[s]) / config.sample_rate for s in SOURCES}
    info = _info(config, plans, seconds)
    (out / INFO_NAME).write_text(json.dumps(info, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    logger.info(
        "demo data: %.1f s of audio, corruption rate %.3f",
        info["total_audio_seconds"],
        info["realised_corruption_rate"],
    )
    return DemoSummary(
        out_dir=out,
        layout=config.layout,
        counts=MappingProxyType(dict(info["counts"])),
        realised_corruption_rate=float(info["realised_corruption_rate"]),
        total_audio_s=float(info["total_audio_seconds"]),
        test_labels_path=test_path,
        noisy_truth_path=noisy_path,
    )
