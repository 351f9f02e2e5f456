"""``ray-tagger train``: one model, end to end per report §3.2, as a Ray Train run.

Driver: resolves the configuration, builds one Ray Data training stream per Train worker
(plus the held-out fold and the un-augmented data for the BatchNorm refresh) and fits a
``TorchTrainer``. Worker loop: batch composer → SpecAugment → CRNN (DDP) → BCE → Adam →
clip at 15 → learning-rate drop → SWA snapshots → checkpoints; at the end the SWA weights are
swapped in, BatchNorm statistics refreshed, and the final model reported as a checkpoint.

Batch size: the report's batch of 16 is the *global* batch. With W workers each composes
batches of 16 / W (W must divide 16) under the same rules, DDP averages the gradients, and so
one iteration is still one step on 16 examples. The padding rule holds for every worker's
tensor; the label rule holds within each worker's part of the batch.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import queue
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import ray
import torch
import yaml

from . import __version__
from .batching import BatchComposer, BatchConfig, Example, collate
from .config import TrainJobConfig
from .features import BatchFeatures, pad_waves
from .loss import bce_loss
from .metrics import lwlrap
from .model import CRNN, fast_layout
from .modelfile import load_checkpoint, save_checkpoint, save_model
from .normalization import NormStats
from .runtime import ensure_ray
from .scoring import score_features, window_frames
from .specaugment import SpecAugment
from .splits import content_key, excerpt_id
from .storage import location
from .stream import EpochClock, StreamSpec, configure_data_context, execution_options, pipeline_cpus, shard_meta, stream
from .swa import SWA, refresh_batchnorm

log = logging.getLogger(__name__)

CHECKPOINT_FILE = "state.pt"


@dataclass(frozen=True)
class Placement:
    """How one run uses the cluster."""

    workers: int = 1
    """DDP Train workers."""
    gpus_per_worker: float = 0.0
    """GPUs per worker; fractions let several runs share one GPU."""
    cpus_per_worker: float = 1.0
    """CPUs reserved per worker (the data pipeline's actors reserve their own)."""


# -- worker -----------------------------------------------------------------------------------


def _as_examples(b: dict):
    """A stream batch as :class:`Example` s with data (features ``(F, N)``, or the waveform ``(T,)``
    with ``stream.features_on='trainer'``; targets ``(K,)``) and the length in frames."""
    inputs = b["audio"] if "audio" in b else b["features"]
    for i in range(len(b["key"])):
        yield Example(int(b["frames"][i]), frozenset(np.flatnonzero(b["targets"][i]).tolist()),
                      (inputs[i], b["targets"][i]))


ITER_BATCH = None
"""``iter_batches`` batch size of the Train worker's stream: whole blocks as the pipeline made them.
Re-cutting them into batches of 32 concatenated the blocks' tensor columns again on the Train
worker (170 of its 2,251 py-spy samples in a ``demo`` run, 8 %); the examples and
their order are the same either way."""

PREFETCH = 256
"""Examples read ahead of the model step, so the next pass starts (a new Ray Data execution: a
few seconds) while the model still trains on the end of the last one."""


def _examples(shard, clock, first_epoch: int, state: dict, seed: int, shuffle_buffer: int, prefetch: int = PREFETCH):
    """Endless examples from this worker's stream; each pass is announced as a new epoch.

    A reader thread iterates the passes back to back into a bounded queue; ``state["epoch"]``
    is the latest pass an example handed out came from. The order is the stream's (one reader), shuffled
    locally: each example swaps places with a random one of the ``shuffle_buffer`` held back (a
    seeded draw per example, so the order does not depend on how Ray Data cuts the stream into
    blocks, which differs between feature columns and waveform columns). The held-back examples
    carry over into the next pass instead of being flushed at its end, so a buffer as large as a
    pass neither stalls the model step while the next pass refills it nor hands out a pass's
    last examples in a block; a resumed run starts with an empty buffer at the pass after the
    one it stopped in.
    """
    queue_: queue.Queue = queue.Queue(maxsize=prefetch)
    stop = threading.Event()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                queue_.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def read() -> None:
        epoch, pool = first_epoch, []  # pool: (pass, example) held back, kept across passes
        try:
            while not stop.is_set():
                ray.get(clock.set.remote(epoch))
                batches = iter(shard.iter_batches(batch_size=ITER_BATCH, batch_format="numpy"))
                rng = np.random.default_rng([seed, epoch])
                try:
                    for b in batches:
                        for example in _as_examples(b):
                            item = (epoch, example)
                            if len(pool) < shuffle_buffer:
                                pool.append(item)
                                continue
                            if pool:
                                k = int(rng.integers(len(pool)))
                                pool[k], item = item, pool[k]
                            if not put(item):
                                return
                finally:
                    getattr(batches, "close", lambda: None)()  # stops the pass's execution when training ends in it
                epoch += 1
        except BaseException as e:  # noqa: BLE001 - handed to the training loop, which raises it
            put((None, e))

    reader = threading.Thread(target=read, name="train-stream-reader", daemon=True)
    reader.start()
    try:
        while True:
            epoch, item = queue_.get()
            if epoch is None:
                raise item
            state["epoch"] = max(state["epoch"], epoch)  # held-back examples of the pass before may follow
            yield item
    finally:
        stop.set()
        reader.join(timeout=30)


def _plain_examples(shard):
    """Un-augmented examples of a plain stream (one pass)."""
    for b in shard.iter_batches(batch_size=64, batch_format="numpy"):
        yield from _as_examples(b)


def _val_set(shard) -> tuple[list[np.ndarray], np.ndarray]:
    """The held-out fold: ``N`` features ``(F, N_b)`` and ``(N, K)`` truth; small enough to keep in memory."""
    rows = list(_plain_examples(shard))
    return [e.data[0] for e in rows], np.stack([e.data[1] for e in rows])


def val_lwlrap(model: torch.nn.Module, val: tuple[list[np.ndarray], np.ndarray], window: int | None, device) -> float:
    """Held-out lwlrap of ``model`` scored as ``predict`` and ``tag`` score (windows when trained on crops)."""
    feats, truth = val
    scores = score_features([model], feats, window, device, batch_size=32)[:, 0]
    model.train()
    return lwlrap(truth, scores)[0]


def _bn_batches(shard, batch: BatchConfig, limit: int | None):
    """Streamed batches of un-augmented training data; the padding rule keeps padding low, the
    label rule is off (single-label clips of one class would otherwise never share a batch)."""
    composer = BatchComposer(dataclasses.replace(batch, label_rule=False))
    for i, examples in enumerate(composer(_plain_examples(shard))):
        if limit is not None and i >= limit:
            return
        yield collate([e.data[0] for e in examples], np.stack([e.data[1] for e in examples]))


def train_step(model: torch.nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, lengths: torch.Tensor, y: torch.Tensor,
               grad_clip: float, autocast: str = "none") -> tuple[torch.Tensor, torch.Tensor]:
    """One optimisation step on a batch ``x (B, 1, F, N)``, ``lengths (B,)``, ``y (B, K)``; ``-> (loss, grad
    norm before clipping)``. ``autocast='bf16'`` runs the forward pass under ``torch.autocast`` with
    bfloat16 on ``x``'s device; the loss is taken on float32 logits and the update is float32."""
    model.train()
    precision = torch.autocast(x.device.type, dtype=torch.bfloat16) if autocast == "bf16" else contextlib.nullcontext()
    with precision:
        logits = model(x, lengths, return_logits=True)
    loss = bce_loss(logits.float(), y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    opt.step()
    return loss, grad_norm


def _save(path: Path, base, opt, swa, gen, state) -> None:
    save_checkpoint(path, {"model": base.state_dict(), "optimizer": opt.state_dict(), "swa": swa.state_dict(),
                           "generator": gen.get_state(), "iteration": state["iteration"], "epoch": state["epoch"]})


def train_loop(cfg: dict) -> None:
    """The per-worker loop (see module doc); ``cfg`` is built by :func:`train`."""
    import ray.train
    import ray.train.torch

    job = TrainJobConfig.from_dict(cfg["job"])
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    device = ray.train.torch.get_device()
    seed = content_key(f"{job.run.seed}/{cfg['run']}") % 2**31
    torch.manual_seed(seed)
    base = CRNN(job.model)
    if job.run.channels_last:
        fast_layout(base)
    model = ray.train.torch.prepare_model(base)
    opt = torch.optim.Adam(model.parameters(), lr=job.optim.lr)
    swa = SWA(base)
    gen = torch.Generator().manual_seed(seed + rank)
    state = {"iteration": 0, "epoch": -1}
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as d:
            blob = load_checkpoint(Path(d) / CHECKPOINT_FILE)
        base.load_state_dict(blob["model"])
        opt.load_state_dict(blob["optimizer"])
        swa.load_state_dict(blob["swa"])
        gen.set_state(blob["generator"])
        state.update(iteration=blob["iteration"], epoch=blob["epoch"])
    resumed_from = state["iteration"]
    o, r = job.optim, job.run
    composer = BatchComposer(dataclasses.replace(job.batch, batch_size=job.batch.batch_size // world))
    examples = _examples(ray.train.get_dataset_shard(f"train_{rank}"), cfg["clocks"][rank], state["epoch"] + 1, state, seed,
                         job.stream.shuffle_buffer)
    augment = SpecAugment(job.specaugment)
    on_worker = BatchFeatures(job.features, NormStats.from_json(cfg["stats"])).to(device) \
        if job.stream.features_on == "trainer" else None
    score_window = window_frames(job.stream.crop_s, job.features)
    val = None
    metrics_path = location(cfg["run_dir"]) / "metrics.jsonl"
    window, t0 = [], time.perf_counter()

    def report(metrics: dict, checkpoint: bool, to_ray: bool, final: bool = False) -> None:
        """Append to ``metrics.jsonl`` (rank 0); with ``to_ray`` also ``ray.train.report`` (every rank)."""
        if rank == 0:
            with metrics_path.open("a") as f:
                f.write(json.dumps(metrics) + "\n")
        if not to_ray:
            return
        name = "final" if final else f"iter_{state['iteration']:07d}"
        if rank != 0 or not checkpoint:
            ray.train.report(metrics, checkpoint_dir_name=name)
            return
        with tempfile.TemporaryDirectory() as tmp:
            _save(Path(tmp) / CHECKPOINT_FILE, base, opt, swa, gen, state)
            ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(tmp), checkpoint_dir_name=name)

    if state["iteration"] < o.iterations:
        for batch in composer(examples):
            it = state["iteration"] + 1
            lr = o.lr if it <= o.lr_drop_at else o.lr_final
            for g in opt.param_groups:
                g["lr"] = lr
            if on_worker is None:
                x, lengths, y = collate([e.data[0] for e in batch], np.stack([e.data[1] for e in batch]))
            else:  # the batch's log-mel at once, on this worker's device
                waves, samples = pad_waves([e.data[0] for e in batch])
                x, lengths = on_worker(waves.to(device), samples.to(device))
                y = torch.as_tensor(np.stack([e.data[1] for e in batch]), dtype=torch.float32)
            x = augment(x, lengths, gen)
            loss, grad_norm = train_step(model, opt, x.to(device), lengths.to(device), y.to(device), o.grad_clip, r.autocast)
            state["iteration"] = it
            window.append(loss.item())
            if it > o.swa_start and (it - o.swa_start) % o.swa_every == 0:
                swa.update(base)
            log_due = it % r.log_every == 0 or it == o.iterations
            ckpt_due = it % r.checkpoint_every == 0 and it < o.iterations
            if log_due or ckpt_due:
                dt = time.perf_counter() - t0
                metrics = {"iteration": it, "loss": float(np.mean(window)), "lr": lr, "grad_norm": float(grad_norm),
                           "clips_per_s": len(window) * job.batch.batch_size / dt, "epoch": state["epoch"],
                           "swa_snapshots": swa.snapshots, "resumed_from": resumed_from, "dropped_examples": composer.stats.dropped,
                           "buffered_examples": composer.buffered,
                           "time": time.time()}
                val_due = cfg["holdout"] and it % r.validate_every == 0
                if val_due and rank == 0:
                    val = val or _val_set(ray.train.get_dataset_shard("val"))
                    metrics["val_lwlrap"] = val_lwlrap(base, val, score_window, device)
                # Ray Train takes one report per controller poll (2 s) and blocks the loop until
                # then: only checkpoints and validations go to Ray (Tune's scheduler needs them)
                report(metrics, checkpoint=ckpt_due, to_ray=ckpt_due or val_due)
                if rank == 0:
                    log.info("iteration %d/%d  loss %.4f  %.1f clips/s%s", it, o.iterations, metrics["loss"], metrics["clips_per_s"],
                             f"  held-out lwlrap {metrics['val_lwlrap']:.4f}" if "val_lwlrap" in metrics else "")
                window, t0 = [], time.perf_counter()
            if it >= o.iterations:
                break
    examples.close()  # ends the reader thread and its pass
    final = {"iteration": state["iteration"], "swa_snapshots": swa.snapshots, "resumed_from": resumed_from,
             "final": True, "composer": _composer_counts(composer, world, device), "time": time.time()}
    if rank == 0:
        if swa.snapshots:
            swa.copy_to(base)
        bn = _bn_batches(ray.train.get_dataset_shard("plain"), job.batch, o.bn_refresh_batches)
        final["bn_refresh_batches"] = refresh_batchnorm(base, bn, lambda m, b: m(b[0].to(device), b[1].to(device)))
        if cfg["holdout"]:
            val = val or _val_set(ray.train.get_dataset_shard("val"))
            final["val_lwlrap"] = val_lwlrap(base, val, score_window, device)
    report(final, checkpoint=True, to_ray=True, final=True)


def _composer_counts(composer: BatchComposer, world: int, device: torch.device) -> dict:
    """What the batch composers of all workers did with the examples their streams delivered
    since this run (re)started: ``seen`` = ``batched`` + ``dropped`` + ``buffered`` (still
    waiting for partners the batch rules allow when training ended)."""
    s = composer.stats
    counts = torch.tensor([s.seen, s.batched, s.dropped, composer.buffered], dtype=torch.int64, device=device)
    if world > 1:
        torch.distributed.all_reduce(counts)
    return dict(zip(("seen", "batched", "dropped", "buffered"), counts.tolist()))


# -- driver -----------------------------------------------------------------------------------


def required_cpus(job: TrainJobConfig, placement: Placement, holdout: bool) -> float:
    """Logical CPUs one run holds at once: its Train workers, each worker's training stream
    within its CPU limit (actors + reads, :func:`~ray_tagger.stream.pipeline_cpus`), and the
    single-actor pipelines of the BatchNorm refresh and the held-out fold, which share one read CPU
    with the training streams (they run at the end and at validation points)."""
    streams = placement.workers * (pipeline_cpus(job, "train") - 1)
    return placement.workers * placement.cpus_per_worker + streams + (1 + int(holdout)) * job.stream.cpus_per_actor + 1


def check_cpus(needed: float) -> None:
    """Refuse to start a run the cluster cannot hold (it would wait forever for CPUs)."""
    have = ray.cluster_resources().get("CPU", 0)
    if have < needed:
        raise ValueError(
            f"this run holds {needed:g} CPUs at once (Train workers + data pipeline actors + reads) but the "
            f"Ray cluster has {have:g}; add CPUs, lower --workers or stream.actors, or start a local Ray with "
            f"--num-cpus {int(needed + 0.999)} (logical CPUs may exceed the cores)"
        )


def train(
    shards_dir: str | Path,
    run_dir: str | Path,
    job: TrainJobConfig,
    split: int = 0,
    fold: int | None = None,
    placement: Placement = Placement(),
    storage_path: str | None = None,
    relabeled: str | None = None,
    callbacks: list | None = None,
) -> dict:
    """Train one model into ``run_dir``; re-running the same call resumes or, when complete, returns.

    ``callbacks`` are Ray Train callbacks (e.g. Tune's ``TuneReportCallback`` when the run is a
    Tune trial). The summary records when the run was first started (``started``), when each later
    call resumed it (``resumed``) and when it finished (``finished``), as Unix times.
    """
    import ray.train
    from ray.train.torch import TorchTrainer

    run_dir = location(run_dir)
    summary_path = run_dir / "summary.json"
    if summary_path.is_file():
        log.info("%s is complete; nothing to train", run_dir)
        return json.loads(summary_path.read_text())
    ensure_ray()
    started = time.time()
    classes, stats, _ = shard_meta(shards_dir, job.features)
    job = dataclasses.replace(job, model=dataclasses.replace(job.model, n_classes=len(classes)))
    if job.batch.batch_size % placement.workers:
        raise ValueError(f"{placement.workers} workers cannot share a batch of {job.batch.batch_size} equally")
    if relabeled is not None:
        _check_relabeled(relabeled, split)
    resolved = {"ray_tagger_version": __version__, "shards": str(location(shards_dir)), "split": split,
                "fold": fold, "relabeled": relabeled, "placement": dataclasses.asdict(placement), "job": job.to_dict()}
    times = _record_start(run_dir, resolved, started)
    run = run_dir.name
    spec = StreamSpec(str(location(shards_dir)), split, fold, job.stream.R, 0, placement.workers, relabeled)
    check_cpus(required_cpus(job, placement, fold is not None))
    configure_data_context()
    clocks = [EpochClock.remote() for _ in range(placement.workers)]
    pipelines = {f"train_{r}": (dataclasses.replace(spec, rank=r), "train", clocks[r]) for r in range(placement.workers)}
    pipelines["plain"] = (dataclasses.replace(spec, world=1), "plain", None)
    if fold is not None:
        pipelines["val"] = (dataclasses.replace(spec, world=1), "val", None)
    datasets = {name: stream(s, job, mode, run, clock) for name, (s, mode, clock) in pipelines.items()}
    resources = {"CPU": placement.cpus_per_worker}
    if placement.gpus_per_worker:
        resources["GPU"] = placement.gpus_per_worker
    trainer = TorchTrainer(
        train_loop,
        train_loop_config={"job": job.to_dict(), "run": run, "clocks": clocks, "run_dir": str(run_dir), "holdout": fold is not None,
                           "stats": stats.to_json()},
        scaling_config=ray.train.ScalingConfig(num_workers=placement.workers, use_gpu=placement.gpus_per_worker > 0,
                                               resources_per_worker=resources),
        run_config=ray.train.RunConfig(
            name=run, storage_path=storage_path or str(run_dir / "checkpoints"),
            failure_config=ray.train.FailureConfig(max_failures=job.run.max_failures),
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=2),
            callbacks=callbacks,
        ),
        datasets=datasets,
        dataset_config=ray.train.DataConfig(datasets_to_split=[], execution_options={
            name: execution_options(job, mode) for name, (_, mode, _) in pipelines.items()}),
    )
    result = trainer.fit()
    counts = (result.metrics or {}).get("composer")
    if counts and counts["seen"]:
        log.info("%s: the batch composer placed %d of the %d examples its stream delivered (%.0f %%), dropped %d and "
                 "held %d still waiting for partners the batch rules allow when training ended", run, counts["batched"],
                 counts["seen"], 100 * counts["batched"] / counts["seen"], counts["dropped"], counts["buffered"])
    with result.checkpoint.as_directory() as d:
        blob = load_checkpoint(Path(d) / CHECKPOINT_FILE)
    save_model(run_dir / "model.pt", blob["model"], {
        "model_config": dataclasses.asdict(job.model), "classes": classes, "features": dataclasses.asdict(job.features),
        "stats": stats.to_json(), "run": run, "split": split, "fold": fold, "R": job.stream.R, "crop_s": job.stream.crop_s})
    summary = {"run_dir": str(run_dir), "iterations": blob["iteration"], "swa_snapshots": int(blob["swa"]["n_averaged"].item()),
               "final_metrics": result.metrics, "model": str(run_dir / "model.pt"), **times, "finished": time.time()}
    summary_path.write_text(json.dumps(summary, indent=1, default=float))
    return summary


def _check_relabeled(path: str, split: int) -> None:
    """A relabelled table must list excerpts of the run's split (else every noisy excerpt would be dropped)."""
    import pyarrow.parquet as pq

    if not location(path).is_file():
        raise FileNotFoundError(f"no relabelled table {path}")
    ids = pq.read_table(path, columns=["excerpt_id"]).column("excerpt_id").to_pylist()
    suffixes = (excerpt_id("", split, 0), excerpt_id("", split, 1))
    if not any(excerpt.endswith(suffixes) for excerpt in ids):
        raise ValueError(f"{path} lists no excerpt of split {split}; use the table of that split (relabeled/split_{split}.parquet)")


def _record_start(run_dir: Path, resolved: dict, now: float) -> dict:
    """Write the run's ``config.yaml`` and ``started.json`` on its first call; on a later call check
    the configuration is the same and add ``now`` to the resumption times. Returns
    ``{"started": first call's time, "resumed": [later calls' times]}``."""
    path, times_path = run_dir / "config.yaml", run_dir / "started.json"
    text = yaml.safe_dump(json.loads(json.dumps(resolved)), sort_keys=False)
    if path.is_file():
        if yaml.safe_load(path.read_text()) != yaml.safe_load(text):
            raise ValueError(f"{run_dir} holds a run with another configuration; use a new RUN_DIR")
        log.info("resuming the run in %s", run_dir)
        # a run folder written before started.json existed: its first start is not known
        times = json.loads(times_path.read_text()) if times_path.is_file() else {"started": None, "resumed": []}
        times["resumed"].append(now)
    else:
        run_dir.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        times = {"started": now, "resumed": []}
    times_path.write_text(json.dumps(times))
    return times
