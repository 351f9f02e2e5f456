"""``ray-tagger run``: the whole system, each stage skipped when its outputs are complete.

    [demo data] → prepare → relabel → ensemble → predict → evaluate + plots

RUN_DIR holds ``demo-data/`` (without DATA_DIR), ``shards/``, ``relabel/``, ``final/``,
``predictions/`` (``submission.csv``, ``test_scores.npz`` with every member's scores and the submission's:
the members' mean, or with ``system.baseline_weights`` its blend with the classical baseline),
``baseline/`` (the classical baseline's pooled features, ``baseline.json`` and, when it may blend,
``submission_weight.json``: the weight used and, with several to choose from, their held-out lwlrap;
``submission_baseline.npz``: the blended row's model, which ``predict``, ``tag`` and ``export`` apply too),
``results.json``, ``plots/`` and ``run.json`` (the inputs and the preset). An interrupted run resumes: prepare is
idempotent, finished training runs are not retrained, unfinished ones resume from their
checkpoints, and later stages redo only what they have not written.
"""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import os
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from . import __version__
from .config import SystemConfig, TrainJobConfig
from .console import say, stage
from .layout import n_hot
from .storage import ObjectPath, location
from .train import Placement

log = logging.getLogger(__name__)

STAGES = ("data", "prepare", "relabel", "ensemble", "predict", "evaluate")


def _stage(i: int, text: str) -> None:
    stage(log, "== stage %d/%d: %s", i, len(STAGES), text)


def test_truth(shards_dir: Path, data_dir: Path | None, classes: list[str], fnames: list[str]) -> np.ndarray | None:
    """``(N, K)`` test truth in ``fnames`` order: the labels in the test shards (Zenodo layout), else a
    ``DATA_DIR-test-labels.csv`` beside the data set (the demo set), else None."""
    from .evaluate import read_truth

    table = pq.read_table(str(shards_dir / "audio" / "source=test"), columns=["clip_id", "labels"]).to_pylist()
    truth = {r["clip_id"]: list(r["labels"]) for r in table}
    if not any(truth.values()):
        if data_dir is None:
            return None
        csv = data_dir.parent / f"{data_dir.name}-test-labels.csv"
        if not csv.is_file():
            return None
        truth = read_truth(csv)
    return n_hot([truth.get(f, []) for f in fnames], {c: i for i, c in enumerate(classes)}, np.float64)


def run(
    data_dir: str | Path | None,
    run_dir: str | Path,
    job: TrainJobConfig,
    system: SystemConfig,
    preset: str,
    placement: Placement = Placement(),
    concurrency: int | None = None,
    demo_clips: int = 240,
    demo_classes: int | None = None,
    actors: int = 1,
) -> dict:
    """Run (or resume) the whole system into ``run_dir``; returns ``results.json``'s content (or the
    prediction summary when the test clips have no labels). ``data_dir``: a data set folder, a
    prepared shards folder (e.g. on object storage: no data set folder needed then), or None for
    the demo set. ``actors``: Ray Data actors scoring the noisy excerpts (relabelling) and the test
    clips."""
    from .demo_data import DemoConfig, generate
    from .ensemble import ensemble
    from .predict import predict_scores, write_submission
    from .prepare import PrepareConfig, prepare
    from .relabel import format_changes, relabel
    from .report import format_table, plot_per_class, plot_relabel_changes, plot_training_curves, results_table

    run_dir = location(run_dir)
    if data_dir is None and isinstance(run_dir, ObjectPath):
        raise ValueError(f"{run_dir}: with a RUN_DIR on object storage give DATA_DIR too: a local or shared data set "
                         "folder ('ray-tagger demo-data DIR' writes the demo set) or prepared shards (ray-tagger prepare)")
    run_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    _stage(1, "data")
    data_dir = None if data_dir is None else location(data_dir)
    given_shards = data_dir is not None and (data_dir / "manifest.json").is_file()
    if given_shards:
        log.info("%s holds prepared shards: the run reads them (no data set folder)", data_dir)
    elif isinstance(data_dir, ObjectPath):
        raise ValueError(f"{data_dir}: holds no prepared shards (manifest.json); a data set folder must be a local or shared "
                         "folder: prepare it into the bucket first (ray-tagger prepare DATA_DIR s3://.../shards) and give "
                         "the shards' URI")
    elif data_dir is None:
        data_dir = run_dir / "demo-data"
        if (data_dir / "demo_info.json").is_file():
            log.info("demo data set exists in %s", data_dir)
        else:
            generate(data_dir, DemoConfig(clips=demo_clips, num_classes=demo_classes or DemoConfig.num_classes,
                                          class_choice="first" if demo_classes is None else "spread"),
                     workers=os.cpu_count() or 1)
    _write_or_check(run_dir / "run.json", {"data_dir": str(data_dir), "preset": preset, "job": job.to_dict(),
                                           "system": system.identity(), "ray_tagger_version": __version__})
    if given_shards:
        shards, data_dir = data_dir, None
        _stage(2, f"prepare: none, {shards} is prepared")
        manifest = json.loads((shards / "manifest.json").read_text())
    else:
        shards = run_dir / "shards"
        _stage(2, f"prepare {data_dir} → {shards}")
        splits = max(max(system.relabel_splits + system.final_splits) + 1, 3)  # at least the report's 3 splits
        folds = max(max(system.relabel_folds) + 1, 5)  # and 5 folds
        manifest = prepare(data_dir, shards, PrepareConfig(splits=splits, folds=folds, features=job.features))
    stage(log, "shards: %s", ", ".join(f"{s} {c['written']}" for s, c in manifest["counts"].items()))
    _stage(3, f"relabel ({len(system.relabel_splits)} splits × {len(system.relabel_folds)} folds, R={system.relabel_R})")
    relabel(shards, run_dir / "relabel", job, system, placement, concurrency, actors)
    noisy_truth = None if data_dir is None else data_dir.parent / f"{data_dir.name}-noisy-truth.csv"  # the demo set's
    say(format_changes(run_dir / "relabel", noisy_truth if noisy_truth is not None and noisy_truth.is_file() else None))
    _stage(4, f"final ensemble (R ∈ {list(system.final_R)} × splits {list(system.final_splits)})")
    info = ensemble(shards, run_dir / "final", run_dir / "relabel", job, system, placement, concurrency)
    _stage(5, "predict the test clips")
    pred = run_dir / "predictions"
    npz = pred / "test_scores.npz"
    if npz.is_file():
        log.info("%s exists; not predicting again", npz)
        saved = np.load(io.BytesIO(npz.read_bytes()), allow_pickle=False)
        fnames, scores, classes = saved["fnames"].tolist(), saved["scores"], saved["classes"].tolist()
    else:
        fnames, scores, classes, _ = predict_scores(run_dir / "final", [shards], actors)
    truth = test_truth(shards, data_dir, classes, fnames)
    baselines, blended, weighing = {}, None, None
    if truth is not None or system.blends:
        from .baseline import best_row, blend, fit_baselines

        baselines = fit_baselines(shards, run_dir / "baseline", fnames, truth, job.features)
        if system.blends:
            fitted = json.loads((run_dir / "baseline" / "baseline.json").read_text())
            row = best_row(fitted)
            weight, weighing = _submission_weight(shards, run_dir, row, fitted["rows"][row]["l2"], system, job)
            if weight > 0:
                blended = (f"ensemble (all) + baseline ({row.split(', ')[-1]}) at weight {weight:g}",
                           blend(scores, baselines[row], weight))
                stage(log, "submission: the final models' mean score × %g + the %s × %g", 1 - weight, row, weight)
            else:
                stage(log, "submission: the final models' mean score (the baseline's chosen weight is 0)")
    submission = scores.mean(axis=1) if blended is None else blended[1]
    if not npz.is_file():
        write_submission(pred / "submission.csv", fnames, submission, classes)
        buffer = io.BytesIO()
        np.savez(buffer, fnames=np.array(fnames), scores=scores, classes=np.array(classes), submission=submission)
        npz.write_bytes(buffer.getvalue())
    plots = run_dir / "plots"
    plots.mkdir(parents=True, exist_ok=True)
    plot_training_curves({"relabel": run_dir / "relabel", "final": run_dir / "final"}, plots / "training_curves.png")
    plot_relabel_changes(run_dir / "relabel", plots / "relabel_changes.png")
    _stage(6, "evaluate")
    if truth is None:
        log.info("the test clips have no labels: submission in %s, nothing to evaluate", pred / "submission.csv")
        return {"submission": str(pred / "submission.csv")}
    from .metrics import lwlrap

    rows = results_table(truth, scores, info["runs"], baselines)
    if blended is not None:
        rows.append({"name": blended[0], "models": scores.shape[1], "lwlrap": lwlrap(truth, blended[1])[0]})
    overall, per_class_arr = lwlrap(truth, submission)
    per_class = dict(zip(classes, map(float, per_class_arr)))
    what = f"final ensemble ({scores.shape[1]} models{'' if blended is None else ' + baseline'})"
    plot_per_class(per_class, dict(zip(classes, truth.sum(0).astype(int).tolist())), plots / "per_class_lwlrap.png",
                   f"{what}: test lwlrap {overall:.3f}")
    results = {"table": rows, "per_class": per_class, "test_clips": int((truth.sum(1) > 0).sum()),
               "submission": str(pred / "submission.csv"), "submission_lwlrap": overall, "submission_weighing": weighing,
               "plots": sorted(str(p) for p in plots.glob("*.png")), "wall_s_this_call": time.time() - t0}
    (run_dir / "results.json").write_text(json.dumps(results, indent=1, default=float))
    say(format_table(rows))
    return results


def _submission_weight(shards: Path, run_dir: Path, row: str, l2: float, system: SystemConfig,
                       job: TrainJobConfig) -> tuple[float, dict]:
    """The baseline's weight in the submission (``row`` at its chosen ``l2``): ``system.baseline_weights``' only value, or the one
    :func:`~ray_tagger.baseline.choose_weight` picks on the relabelling's held-out curated clips;
    ``-> (weight, record)``, the record also written to ``baseline/submission_weight.json``. With a
    weight above 0, the row's model and the weight go to ``baseline/`` + :data:`~ray_tagger.baseline.BLEND_FILE`,
    from which ``predict``, ``tag`` and ``export`` blend as the submission did."""
    from .baseline import BLEND_FILE, BaselineBlend, BaselineConfig, cached_features, choose_weight, fit_row, save_blend
    from .relabel import HELDOUT
    from .stream import shard_meta

    weights = system.baseline_weights
    record = {"row": row, "weights": list(weights), "weight": weights[0]}
    classes, stats, _ = shard_meta(shards, job.features)
    data, _ = cached_features(shards, run_dir / "baseline", job.features, BaselineConfig())
    if len(weights) > 1:
        path = run_dir / "relabel" / HELDOUT
        if not path.is_file():
            raise FileNotFoundError(f"{path}: missing, so system.baseline_weights {list(weights)} cannot be chosen from "
                                    "(a relabel stage of an older version?); give one weight")
        with np.load(io.BytesIO(path.read_bytes()), allow_pickle=False) as f:
            heldout = {k: f[k] for k in f.files}
        if heldout["classes"].tolist() != classes:
            raise ValueError(f"{path}: scores other classes than {shards}")
        weight, grid = choose_weight(data, heldout, row, l2, weights)
        record.update(weight=weight, heldout_clips=int(len(heldout["clip_id"])), folds=sorted(set(heldout["fold"].tolist())),
                      heldout_lwlrap={f"{w:g}": v for w, v in grid.items()})
        stage(log, "baseline weight: held-out lwlrap of the relabelling models blended with the %s on %d curated clips "
                   "of folds %s: %s → %g", row, record["heldout_clips"], record["folds"],
              ", ".join(f"w {w:g} {v:.3f}" for w, v in grid.items()), weight)
    (run_dir / "baseline" / "submission_weight.json").write_text(json.dumps(record, indent=1))
    if record["weight"] > 0:
        save_blend(run_dir / "baseline" / BLEND_FILE, BaselineBlend(
            fit_row(data, row, l2), record["weight"], row, classes, dataclasses.asdict(job.features), stats.to_json()))
    return record["weight"], record


def _write_or_check(path: Path, data: dict) -> None:
    text = json.dumps(data, indent=1, sort_keys=True)
    if path.is_file() and json.loads(path.read_text()) != json.loads(text):
        raise ValueError(f"{path.parent} holds a run with other inputs or settings; use a new RUN_DIR")
    path.write_text(text)
