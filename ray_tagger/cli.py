"""The ``ray-tagger`` command line. Each sub-command lives in the module of its stage."""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
from pathlib import Path

from . import __version__
from .console import runs_progress, say
from .storage import OBJECT_STORES, location

log = logging.getLogger("ray_tagger")

BENCH_MODEL_MODES = ("eager-fp32", "bf16-autocast", "channels-last", "compile", "compile-bf16")
"""``bench model --modes`` choices, kept literal so parsing does not import torch (= bench.model.MODES)."""


def _demo_data(args: argparse.Namespace) -> int:
    from .demo_data import DemoConfig, generate

    summary = generate(args.out, DemoConfig(clips=args.clips, seed=args.seed, layout=args.layout), overwrite=args.overwrite,
                       workers=os.cpu_count() or 1)
    counts = ", ".join(f"{n} {s}" for s, n in summary.counts.items())
    print(f"demo data set in {summary.out_dir}: {counts} clips, {summary.total_audio_s / 60:.1f} min of audio")
    print(f"test labels: {summary.test_labels_path}")
    print(f"noisy-label truth (planted corruption {summary.realised_corruption_rate:.0%}): {summary.noisy_truth_path}")
    return 0


def _prepare(args: argparse.Namespace) -> int:
    from .config import resolve_features
    from .prepare import PrepareConfig, prepare
    from .runtime import ensure_ray

    if any(not item.startswith("features.") for item in args.set):
        raise ValueError("prepare --set takes only features.FIELD=VALUE (the log-mel settings)")
    config = PrepareConfig(
        splits=args.splits, folds=args.folds, seed=args.seed, on_bad=args.on_bad, audio_format=args.audio_format,
        features=resolve_features(args.preset, args.set),
    )
    ensure_ray(args.num_cpus)
    manifest = prepare(args.data_dir, args.shards_dir, config)
    print(f"shards in {args.shards_dir} ({manifest['layout']} layout, {manifest['classes']} classes):")
    for source, c in manifest["counts"].items():
        print(f"  {source:8s} {c['written']:6d} written  {c['skipped']:4d} skipped  of {c['total']:6d}  ({c['audio_seconds'] / 3600:.2f} h)")
    print(f"  noisy excerpts: {manifest['excerpts']} ({manifest['config']['splits']} splits)")
    for item in manifest["skipped"][:10]:
        print(f"  skipped: {item['reason']}")
    if len(manifest["skipped"]) > 10:
        print(f"  ... {len(manifest['skipped']) - 10} more skipped rows listed in {location(args.shards_dir) / 'manifest.json'}")
    return 0


def _train(args: argparse.Namespace) -> int:
    from .config import resolve
    from .runtime import defer_ray
    from .train import Placement, required_cpus, train

    job = resolve(args.preset, args.set, extra={"stream": {"R": args.R}} if args.R is not None else None)
    fold = None if args.fold == "none" else int(args.fold)
    placement = Placement(args.workers, args.gpus_per_worker, args.cpus_per_worker)
    needed = int(required_cpus(job, placement, fold is not None) + 0.999)
    defer_ray(args.num_cpus or max(os.cpu_count() or 1, needed))  # started by train() unless the run is complete
    run_dir = location(args.run_dir)
    with runs_progress("train", {run_dir.name: run_dir}, job.optim.iterations):
        summary = train(args.shards_dir, run_dir, job, args.split, fold, placement, args.storage_path,
                        str(location(args.relabeled)) if args.relabeled else None)
    final = summary["final_metrics"]
    val = f", held-out lwlrap {final['val_lwlrap']:.4f}" if "val_lwlrap" in final else ""
    say(f"trained {summary['iterations']} iterations ({summary['swa_snapshots']} SWA snapshots){val}")
    if fold is not None:
        say(_heldout_curve(run_dir / "metrics.jsonl"))
        if not args.no_baseline:
            say(_fold_baseline(args.shards_dir, run_dir / "baseline", fold, job.features))
    say(f"model: {summary['model']}; config, metrics and checkpoints in {args.run_dir}")
    return 0


def _heldout_curve(metrics_path: Path) -> str:
    """One line: the held-out lwlrap at each validation point of a run and of its final model."""
    import json

    points, final = {}, None  # by iteration: a resumed run repeats the iterations after its checkpoint
    for line in metrics_path.read_text().splitlines():
        m = json.loads(line)
        if "val_lwlrap" in m:
            if m.get("final"):
                final = m["val_lwlrap"]
            else:
                points[m["iteration"]] = m["val_lwlrap"]
    tail = f"; final model {final:.3f}" if final is not None else ""
    return "held-out lwlrap by iteration: " + ", ".join(f"{i} {v:.3f}" for i, v in sorted(points.items())) + tail


def _fold_baseline(shards_dir: str, out_dir: Path, fold: int, features) -> str:
    """The classical baseline on the held-out fold of a ``train --fold`` run, as a line to print."""
    from .baseline import fold_baseline

    rows = fold_baseline(shards_dir, out_dir, fold, features)
    parts = [f"{name.rsplit(', ', 1)[1]} {r['held_out_lwlrap']:.4f} (L2 {r['l2']:g})" for name, r in rows.items()
             if r["held_out_lwlrap"] is not None]
    clips = next(iter(rows.values()))["held_out_clips"]
    return (f"classical baseline on the same {clips} held-out clips (logistic regression on pooled log-mel, fitted "
            f"on the other training clips, L2 chosen on these clips): " + ", ".join(parts))


def _placement(args: argparse.Namespace):
    from .train import Placement

    return Placement(args.workers, args.gpus_per_run / args.workers, args.cpus_per_worker)


def _ray_for_runs(args: argparse.Namespace, job, n_runs: int, holdout: bool) -> int | None:
    """Connect to ``RAY_ADDRESS`` now, or size the local Ray that the first stage with work starts
    (:func:`~ray_tagger.runtime.defer_ray`): logical CPUs for ``--concurrency`` runs (default: as
    many runs as cores, at least 2, at most ``n_runs``). Returns the concurrency to ask for (None: fit the cluster)."""
    from .runs import local_cpus
    from .runtime import defer_ray

    if os.environ.get("RAY_ADDRESS"):
        defer_ray()
        return args.concurrency
    concurrency = args.concurrency or min(n_runs, max(2, os.cpu_count() or 1))
    defer_ray(args.num_cpus or local_cpus(job, _placement(args), holdout, concurrency))
    return concurrency


def _relabel(args: argparse.Namespace) -> int:
    from .config import resolve, resolve_system
    from .relabel import format_changes, relabel

    job, system = resolve(args.preset, args.set), resolve_system(args.preset, args.set, _keep_provided(args))
    n = len(system.relabel_splits) * len(system.relabel_folds)
    concurrency = _ray_for_runs(args, job, n, holdout=True)
    summary = relabel(args.shards_dir, args.run_dir, job, system, _placement(args), concurrency, args.actors)
    say(format_changes(args.run_dir, args.noisy_truth))
    say(f"relabelled tables: {', '.join(summary['tables'].values())}")
    return 0


def _keep_provided(args: argparse.Namespace) -> dict | None:
    """``--keep-provided-labels`` as a ``system`` section layer (``--set`` still overrides it)."""
    return {"system": {"relabel_on_failure": "keep_provided"}} if args.keep_provided_labels else None


def _ensemble(args: argparse.Namespace) -> int:
    from .config import resolve, resolve_system
    from .ensemble import ensemble

    extra = {"system": {k: v for k, v in (("final_R", args.R), ("final_splits", args.splits)) if v is not None}}
    job, system = resolve(args.preset, args.set, extra), resolve_system(args.preset, args.set, extra)
    concurrency = _ray_for_runs(args, job, len(system.final_R) * len(system.final_splits), holdout=False)
    info = ensemble(args.shards_dir, args.run_dir, args.relabeled, job, system, _placement(args), concurrency)
    say(f"ensemble of {len(info['members'])} models in {args.run_dir}: " + ", ".join(r["name"] for r in info["runs"]))
    return 0


def _int_list(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def _folder(text: str) -> str:
    """A path of the local file system (a shared mount on a cluster): data set folders and the
    files a user takes home. Object-store URIs are refused here: written as paths they would
    become local folders named "s3:" on one node."""
    uri = re.match(r"([A-Za-z][A-Za-z0-9+.-]*)://", text)
    if uri:
        raise argparse.ArgumentTypeError(
            f"{text}: an object-store URI ({uri.group(1)}://) is not supported here, only for shards and run folders; "
            "give a local folder (or a shared mount readable from every node), see cluster/README.md")
    return text


def _place(text: str) -> str:
    """A shards or run folder: a local path (or shared mount), or an object-store URI that pyarrow's
    file systems open (``s3://bucket/key``, ``gs://bucket/key``; :mod:`ray_tagger.storage`)."""
    uri = re.match(r"([A-Za-z][A-Za-z0-9+.-]*)://", text)
    if uri and uri.group(1).lower() not in OBJECT_STORES:
        raise argparse.ArgumentTypeError(
            f"{text}: {uri.group(1)}:// is not an object store ray-tagger writes to; use one of "
            f"{', '.join(s + '://' for s in OBJECT_STORES)} or a local folder")
    return text


def _warn_if_blended(run_dir, what: str) -> None:
    from .infer import blend_warning

    warning = blend_warning(run_dir, what)
    if warning:
        log.warning(warning)


def _predict(args: argparse.Namespace) -> int:
    from .infer import check_model_files, member_paths
    from .predict import predict
    from .runtime import ensure_ray

    check_model_files(member_paths(args.run_dir))  # refuse a foreign model file before Ray starts
    ensure_ray(args.num_cpus)
    done = predict(args.run_dir, args.inputs, args.out, args.actors)
    weight = done["baseline_weight"]
    what = f"mean of {done['members']} models" if not weight else \
        f"mean of {done['members']} models × {1 - weight:g} + the run's classical baseline × {weight:g}, as its submission"
    print(f"{done['rows']} rows × {done['classes']} classes ({what}) → {done['out']}")
    return 0


def _tag(args: argparse.Namespace) -> int:
    from .predict import tag, tag_seconds

    if args.frames:
        _warn_if_blended(args.run_dir, "tag --frames")
        for path, seconds in tag_seconds(args.run_dir, args.files, args.top, args.window):
            print(f"{path}:")
            for i, top in enumerate(seconds):
                print(f"  {i:4d}–{i + 1:<4d}s  " + ", ".join(f"{c} {s:.3f}" for c, s in top))
        return 0
    for path, top in tag(args.run_dir, args.files, args.top):
        print(f"{path}: " + ", ".join(f"{c} {s:.3f}" for c, s in top))
    return 0


def _export(args: argparse.Namespace) -> int:
    from .export import export

    done = export(args.run_dir, args.out)
    blended = f" blended with the run's classical baseline at weight {done['baseline_weight']:g}," if done["baseline_weight"] else ""
    print(f"{done['members']} models,{blended} {done['classes']} classes → {done['out']} ({done['bytes'] / 1e6:.1f} MB, "
          f"TorchScript: torch.jit.load(path)(wave) → scores, .classes the vocabulary)")
    return 0


def _run(args: argparse.Namespace) -> int:
    from .config import resolve, resolve_system
    from .pipeline import run

    job, system = resolve(args.preset, args.set), resolve_system(args.preset, args.set, _keep_provided(args))
    n = max(len(system.relabel_splits) * len(system.relabel_folds), len(system.final_R) * len(system.final_splits))
    concurrency = _ray_for_runs(args, job, n, holdout=True)
    actors = args.actors or concurrency or 1  # scoring runs between the training stages, on their CPUs
    run(args.data_dir, args.run_dir, job, system, args.preset, _placement(args), concurrency, args.demo_clips,
        args.demo_classes, actors)
    return 0


def _sweep(args: argparse.Namespace) -> int:
    from .config import resolve
    from .sweep import format_sweep, sweep

    job = resolve(args.preset, args.set)
    concurrency = _ray_for_runs(args, job, args.samples, holdout=True)
    result = sweep(args.shards_dir, args.run_dir, job, args.preset, args.samples, _placement(args), concurrency,
                   args.grace, args.seed)
    say(format_sweep(result))
    say(f"best configuration written as a preset: {result['preset']} (use it with ensemble/run --preset)")
    return 0


def _runs_options(p: argparse.ArgumentParser, preset: str = "paper") -> None:
    """Options shared by the commands that train many runs at once."""
    p.add_argument("--preset", default=preset, help="paper, demo, tiny or a YAML file (its system: section picks the runs)")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE", help="override one config field")
    p.add_argument("--concurrency", type=int, default=None,
                   help="runs at once (default: on a cluster as many as fit, locally max(2, cores))")
    p.add_argument("--gpus-per-run", type=float, default=0.0, help="GPUs per run; fractions share a GPU (e.g. 0.25)")
    p.add_argument("--workers", type=int, default=1, help="DDP workers per run")
    p.add_argument("--cpus-per-worker", type=float, default=1.0)
    p.add_argument("--num-cpus", type=int, default=None,
                   help="logical CPUs of a local Ray (default: enough for --concurrency runs; ignored with RAY_ADDRESS)")


def _keep_provided_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--keep-provided-labels", action="store_true",
                   help="when the relabelling ensemble fails its check (held-out lwlrap near chance, or most excerpts "
                        "dropped), train the final models on the provided labels instead of stopping")


def _show_config(args: argparse.Namespace) -> int:
    import json

    import yaml

    from .config import resolve, resolve_system

    data = {**resolve(args.preset, args.set).to_dict(), "system": resolve_system(args.preset, args.set).to_dict()}
    print(yaml.safe_dump(json.loads(json.dumps(data)), sort_keys=False), end="")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from .evaluate import evaluate, format_result

    print(format_result(evaluate(args.scores_csv, args.truth_csv)))
    return 0


def _bench_prepare(args: argparse.Namespace) -> int:
    from .bench.prepare import run_bench
    from .runtime import ensure_ray

    ensure_ray(args.num_cpus)
    print(run_bench(args.data_dir, args.work_dir, audio_format=args.audio_format))
    return 0


def _bench_model(args: argparse.Namespace) -> int:
    from .bench.model import run_bench
    from .config import resolve

    model = resolve(args.preset, args.set).model
    print(run_bench(args.steps, args.warmup, args.batch, args.seconds, args.modes, args.device, model, progress=log.info))
    return 0


def _bench_pipeline(args: argparse.Namespace) -> int:
    from .bench.pipeline import default_ray_cpus, run_bench
    from .runtime import ensure_ray

    ensure_ray(args.num_cpus if args.num_cpus is not None else default_ray_cpus(args.workers))
    print(run_bench(args.shards_dir, args.workers, args.passes, args.preset, args.R, args.compute, args.gpu_steps,
                    progress=log.info, features_on=args.features_on))
    return 0


def _bench_sharing(args: argparse.Namespace) -> int:
    from .bench.sharing import bench_job, run_bench
    from .runs import local_cpus
    from .runtime import ensure_ray
    from .train import Placement

    job = bench_job(args.preset, args.iterations, args.log_every, args.set)
    ensure_ray(args.num_cpus or local_cpus(job, Placement(), False, args.models))
    print(run_bench(args.shards_dir, args.preset, args.iterations, args.log_every, args.models, args.work_dir, args.set))
    return 0


def _bench_driver(args: argparse.Namespace) -> int:
    from .bench.driver import run_bench
    from .runtime import ensure_ray

    ensure_ray(args.num_cpus)
    print(run_bench(args.shards_dir, args.run_dir, args.source, args.passes, args.modes, progress=log.info))
    return 0


def build_parser() -> argparse.ArgumentParser:
    from .demo_data import DemoConfig

    p = argparse.ArgumentParser(
        prog="ray-tagger", description="The UPB DCASE 2019 Task 2 audio tagger, prepared and trained on Ray."
    )
    p.add_argument("--version", action="version", version=f"ray-tagger {__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True)

    d = sub.add_parser("demo-data", help="synthesise a small data set in the FSDKaggle2019 layout")
    d.add_argument("out", type=_folder, help="folder to create; the test labels go beside it")
    d.add_argument("--clips", type=int, default=DemoConfig.clips, help="curated clips (noisy: as many, test: half)")
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--layout", choices=("kaggle", "zenodo"), default="kaggle")
    d.add_argument("--overwrite", action="store_true", help="replace an existing folder")
    d.set_defaults(func=_demo_data)

    pr = sub.add_parser("prepare", help="validate a data set and write Parquet shards (a Ray Data job)")
    pr.add_argument("data_dir", type=_folder, help="Kaggle or Zenodo (FSDKaggle2019) layout")
    pr.add_argument("shards_dir", type=_place)
    pr.add_argument("--splits", type=int, default=3, help="random cuts of the noisy clips")
    pr.add_argument("--folds", type=int, default=5, help="folds over the curated clips")
    pr.add_argument("--seed", type=int, default=0)
    pr.add_argument("--on-bad", choices=("skip", "fail"), default="skip", help="what to do with a bad input row")
    pr.add_argument("--audio-format", choices=("flac", "pcm16"), default="flac")
    pr.add_argument("--preset", default="paper",
                    help="the preset (or YAML file) whose log-mel features the normalisation statistics are for: "
                         "train with the same one")
    pr.add_argument("--set", action="append", default=[], metavar="features.FIELD=VALUE",
                    help="override one log-mel setting of the preset")
    pr.add_argument("--num-cpus", type=int, default=None, help="CPUs of a local Ray (ignored with RAY_ADDRESS)")
    pr.set_defaults(func=_prepare)

    t = sub.add_parser("train", help="train one model with Ray Train (DDP), with SWA, checkpoints and resume")
    t.add_argument("shards_dir", type=_place)
    t.add_argument("run_dir", type=_place, help="resolved config, metrics, checkpoints and the final SWA model; re-run to resume")
    t.add_argument("--split", type=int, default=0, help="which random cut of the noisy clips")
    t.add_argument("--fold", default="0", help="curated fold held out for validation, or 'none'")
    t.add_argument("--R", type=int, default=None, help="curated oversampling factor (default: the preset's)")
    t.add_argument("--no-baseline", action="store_true",
                   help="with --fold: skip the classical baseline on the held-out fold (printed beside the model)")
    t.add_argument("--preset", default="paper", help="paper, demo, tiny or a YAML file")
    t.add_argument("--workers", type=int, default=1, help="DDP workers; they share the batch of 16")
    t.add_argument("--gpus-per-worker", type=float, default=0.0, help="may be fractional")
    t.add_argument("--cpus-per-worker", type=float, default=1.0)
    t.add_argument("--storage-path", default=None, help="checkpoint storage (local folder, s3://, gs://); default RUN_DIR/checkpoints")
    t.add_argument("--relabeled", type=_place, default=None,
                   help="a relabelled excerpt table (relabel's relabeled/split_S.parquet) in place of the provided noisy labels")
    t.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE", help="override one config field")
    t.add_argument("--num-cpus", type=int, default=None,
                   help="logical CPUs of a local Ray (default: enough for the run, at least the cores; ignored with RAY_ADDRESS)")
    t.set_defaults(func=_train)

    c = sub.add_parser("show-config", help="print the resolved training configuration of a preset")
    c.add_argument("--preset", default="paper", help="paper, demo, tiny or a YAML file")
    c.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE")
    c.set_defaults(func=_show_config)

    rl = sub.add_parser("relabel", help="train splits × folds models concurrently (Tune), relabel the noisy excerpts")
    rl.add_argument("shards_dir", type=_place)
    rl.add_argument("run_dir", type=_place, help="runs, relabelled tables, thresholds and changes; re-run to resume")
    _runs_options(rl)
    rl.add_argument("--actors", type=int, default=1, help="Ray Data actors scoring the noisy excerpts")
    _keep_provided_option(rl)
    rl.add_argument("--noisy-truth", default=None, metavar="CSV",
                    help="a demo set's DATA-noisy-truth.csv: also print how often the changed labels are right")
    rl.set_defaults(func=_relabel)

    en = sub.add_parser("ensemble", help="train the final models concurrently on the relabelled splits")
    en.add_argument("shards_dir", type=_place)
    en.add_argument("run_dir", type=_place)
    en.add_argument("--relabeled", type=_place, required=True, help="the output folder of 'ray-tagger relabel'")
    en.add_argument("--R", type=_int_list, default=None, help="curated oversampling factors, e.g. 2,4 (default: the preset's)")
    en.add_argument("--splits", type=_int_list, default=None, help="relabelled splits, e.g. 0,1,2 (default: the preset's)")
    _runs_options(en)
    en.set_defaults(func=_ensemble)

    pd_ = sub.add_parser("predict", help="ensemble-averaged scores in the Kaggle submission format")
    pd_.add_argument("run_dir", type=_place, help="an ensemble folder, a training run folder or a 'run' folder")
    pd_.add_argument("inputs", nargs="+", help="a shards folder (its test clips), audio folders, audio files or .txt lists")
    pd_.add_argument("--out", type=_place, required=True, help="submission CSV to write")
    pd_.add_argument("--actors", type=int, default=1, help="Ray Data scoring actors")
    pd_.add_argument("--num-cpus", type=int, default=None, help="CPUs of a local Ray (ignored with RAY_ADDRESS)")
    pd_.set_defaults(func=_predict)

    tg = sub.add_parser("tag", help="print the top tags of audio files (any rate, any channels)")
    tg.add_argument("run_dir", type=_place)
    tg.add_argument("files", nargs="+")
    tg.add_argument("--top", type=int, default=5)
    tg.add_argument("--frames", action="store_true",
                    help="per-second scores: one line per second of each file, scored on a window centred on it")
    tg.add_argument("--window", type=float, default=None,
                    help="with --frames: window in seconds (default: the models' training crop, else 1 s)")
    tg.set_defaults(func=_tag)

    ex = sub.add_parser("export", help="the ensemble as one TorchScript file: mono waveform → class scores, vocabulary inside")
    ex.add_argument("run_dir", type=_place, help="an ensemble folder, a training run folder or a 'run' folder")
    ex.add_argument("out", type=_folder, help="the file to write (e.g. tagger.pt)")
    ex.set_defaults(func=_export)

    rn = sub.add_parser("run", help="the whole system: [demo data] → prepare → relabel → ensemble → predict → evaluate")
    rn.add_argument("data_dir", type=_place, nargs="?", default=None,
                    help="Kaggle or Zenodo data set (default: generate the demo set), or a prepared shards folder (local or s3://, gs://)")
    rn.add_argument("run_dir", type=_place)
    _runs_options(rn, preset="demo")
    rn.add_argument("--demo-clips", type=int, default=DemoConfig.clips, help="curated clips of the generated demo set")
    rn.add_argument("--demo-classes", type=int, default=None,
                    help="classes of the generated demo set: N spread evenly over its vocabulary (default: all)")
    rn.add_argument("--actors", type=int, default=None,
                    help="Ray Data actors scoring noisy excerpts and test clips (default: as many as runs train at a time)")
    _keep_provided_option(rn)
    rn.set_defaults(func=_run)

    sw = sub.add_parser("sweep", help="Ray Tune with ASHA over R and the augmentation strength")
    sw.add_argument("shards_dir", type=_place)
    sw.add_argument("run_dir", type=_place)
    sw.add_argument("--samples", type=int, default=8, help="trials (R is cycled through 1, 2, 4, 8)")
    sw.add_argument("--grace", type=int, default=None, help="ASHA grace period in iterations (default: a quarter of the run)")
    sw.add_argument("--seed", type=int, default=0, help="seed of the strength draws")
    _runs_options(sw, preset="demo")
    sw.set_defaults(func=_sweep)

    e = sub.add_parser("evaluate", help="lwlrap of a submission CSV against the truth")
    e.add_argument("scores_csv", help="Kaggle submission format: fname + one column per class")
    e.add_argument("truth_csv", help="fname,labels")
    e.set_defaults(func=_evaluate)

    b = sub.add_parser("bench", help="benchmarks, each against a baseline measured in the same run")
    bsub = b.add_subparsers(dest="bench", required=True)
    bp = bsub.add_parser("prepare", help="prepare (Ray Data) against a single-process loop")
    bp.add_argument("data_dir")
    bp.add_argument("--work-dir", default=None, help="where to write the shards (default: a temporary folder)")
    bp.add_argument("--audio-format", choices=("flac", "pcm16"), default="flac")
    bp.add_argument("--num-cpus", type=int, default=None)
    bp.set_defaults(func=_bench_prepare)
    bm = bsub.add_parser("model", help="CRNN train-step throughput per execution mode against eager fp32")
    bm.add_argument("--steps", type=int, default=5, help="timed train steps per mode")
    bm.add_argument("--warmup", type=int, default=2, help="untimed steps per mode first (absorb compilation)")
    bm.add_argument("--batch", type=int, default=16, help="clips per batch")
    bm.add_argument("--seconds", type=float, default=10.0, help="seconds of audio per clip")
    bm.add_argument(
        "--modes", nargs="+", default=list(BENCH_MODEL_MODES), choices=BENCH_MODEL_MODES,
        help="modes to time (eager-fp32, the baseline, always runs first and last)",
    )
    bm.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="auto: cuda when available")
    bm.add_argument("--preset", default="paper", help="whose model (width, mel bands) to time: paper, demo, tiny or a YAML file")
    bm.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE", help="override one config field")
    bm.set_defaults(func=_bench_model)
    bl = bsub.add_parser("pipeline", help="the Ray Data training stream against a torch DataLoader doing the same work")
    bl.add_argument("shards_dir")
    bl.add_argument("--workers", type=int, default=2, help="CPU workers on each side (Ray: stream.actors; DataLoader: num_workers)")
    bl.add_argument("--passes", type=int, default=2, help="passes over the data per timed run")
    bl.add_argument("--preset", default="demo", help="paper, demo, tiny or a YAML file")
    bl.add_argument("--R", type=int, default=4, help="curated oversampling factor")
    bl.add_argument("--compute", choices=("actors", "tasks"), default="actors", help="stream.compute of the Ray side")
    bl.add_argument("--features-on", choices=("pipeline", "trainer"), default="pipeline",
                    help="stream.features_on: trainer stops every side after mixup and the crop (waveforms out; log-mel "
                         "in the GPU busy-fraction steps)")
    bl.add_argument("--gpu-steps", type=int, default=50, help="timed train steps for the GPU busy fraction (CUDA only)")
    bl.add_argument("--num-cpus", type=int, default=None,
                    help="CPUs of a local Ray (default: all cores, at least workers + 1; ignored with RAY_ADDRESS)")
    bl.set_defaults(func=_bench_pipeline)
    bs = bsub.add_parser("sharing", help="k models training at once on one device (fractional GPUs) against 1 model, "
                                        "and the projected wall time of the full system")
    bs.add_argument("shards_dir")
    bs.add_argument("--preset", default="paper", help="paper, demo, tiny or a YAML file")
    bs.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE", help="override one config field")
    bs.add_argument("--iterations", type=int, default=40, help="iterations per run")
    bs.add_argument("--log-every", type=int, default=5, help="iterations between the reports the steady rate is read from")
    bs.add_argument("--models", type=int, default=4, help="runs sharing the device in the shared measurement")
    bs.add_argument("--work-dir", default=None, help="keep the run folders here (default: a temporary folder, removed)")
    bs.add_argument("--num-cpus", type=int, default=None,
                    help="logical CPUs of a local Ray (default: enough for --models runs; ignored with RAY_ADDRESS)")
    bs.set_defaults(func=_bench_sharing)
    bd = bsub.add_parser("driver", help="the driver's Ray Data stages (ensemble scoring, the baseline's pooled features) "
                                       "against the same work in one process")
    bd.add_argument("shards_dir")
    bd.add_argument("run_dir", help="whose models score: a training run, an ensemble or a `run` folder")
    bd.add_argument("--source", choices=("curated", "noisy", "test"), default="curated",
                    help="the shards scored (noisy: both excerpts of every split, as relabelling scores them)")
    bd.add_argument("--passes", type=int, default=3, help="passes over every mode (the table gives the median)")
    bd.add_argument("--modes", nargs="+", default=None, metavar="STAGE:MODE",
                    help="a subset: scoring:v1 scoring:v2 features:capped features:uncapped features:prepared "
                         "(bare always runs)")
    bd.add_argument("--num-cpus", type=int, default=8,
                    help="logical CPUs of a local Ray (default 8, the over-subscription of the tests' runs; "
                         "ignored with RAY_ADDRESS)")
    bd.set_defaults(func=_bench_driver)
    return p


CALM_COMMANDS = ("run", "relabel", "ensemble", "train", "sweep")
"""Commands whose console is calm unless ``-v`` (:mod:`ray_tagger.console`); their log is RUN_DIR/ray-tagger.log."""


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    if args.command in CALM_COMMANDS and not args.verbose:
        from .console import LOG_NAME, Console
        from .runtime import shutdown_own_ray

        with Console(location(args.run_dir) / LOG_NAME, args.command) as console:
            try:
                return _dispatch(args, console.err)
            finally:
                shutdown_own_ray()  # Ray's shutdown messages go to the log too
    return _dispatch(args, sys.stderr)


def _dispatch(args: argparse.Namespace, err) -> int:
    """Run the sub-command; expected failures become one line on ``err`` and an exit code."""
    from .prepare import BadInputError
    from .layout import LayoutError
    from .evaluate import EvaluationError
    from .runs import RunsFailedError

    try:
        return args.func(args)
    except (BadInputError, LayoutError, EvaluationError, FileExistsError, ValueError, RunsFailedError) as e:
        print(f"ray-tagger {args.command}: error: {e}", file=err)
        return 1
    except FileNotFoundError as e:
        print(f"ray-tagger {args.command}: error: {e}", file=err)
        return 1
    except Exception as e:  # a Ray Train failure: say how to go on, keep the details in the log
        if type(e).__name__ not in ("TrainingFailedError", "WorkerGroupError", "ControllerError"):
            raise
        log.debug("training failed", exc_info=True)
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        print(f"ray-tagger {args.command}: training failed ({type(e).__name__}: {first[:300]}); "
              "re-run the same command to resume from the last checkpoint", file=err)
        return 2
    except KeyboardInterrupt:
        print(f"ray-tagger {args.command}: interrupted", file=err)
        return 130


if __name__ == "__main__":
    sys.exit(main())
