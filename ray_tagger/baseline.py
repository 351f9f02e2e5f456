"""Classical baseline beside chance in the results: logistic regression on pooled log-mel statistics.

Features: the model's own input (log-mel of report §1.1, normalised with the shards'
:class:`~ray_tagger.normalization.NormStats`), pooled per clip over its valid frames into the
mean, std and max of each band: ``F`` bands (128 in the report's features, 64 in the ``demo``
preset's) → a ``3F`` vector ``[mean | std | max]``.

Classifier: K one-vs-rest logistic regressions (sigmoid outputs, multi-label) fitted jointly on
BCE summed over classes, averaged over clips, plus ``l2 · ‖W‖²`` (biases not penalised), by
full-batch L-BFGS (strong Wolfe) in float64 from zero weights. Nothing is drawn at random, so a
fit is a pure function of its inputs. Features are standardised with the fit set's statistics.

L2 strength: each row picks from the fixed grid :attr:`BaselineConfig.l2_grid` the value with the
best lwlrap on the curated clips of fold :attr:`BaselineConfig.holdout_fold` when fitted on the
row's other training clips (ties: the stronger penalty), then refits on all of them.

The pooled statistics come from ``prepare``'s inspect pass, which takes every clip's log-mel anyway
(``pooled.parquet`` in the shards, :func:`prepared_features`); shards prepared before that file
existed get them from a Ray Data pass over the audio (:func:`shard_features`).

Rows: ``curated`` (curated clips) and ``curated + noisy`` (plus the whole noisy clips with their
provided labels: no excerpts, no relabelling). Run folder: ``features.npz`` (pooled features of
every clip, reused while the shards and feature settings match) and ``baseline.json``.
:func:`fold_baseline` scores both rows on one held-out curated fold instead (``train --fold``).

Blend (not the report's): with a weight w > 0 among ``SystemConfig.baseline_weights`` (several: the one
:func:`choose_weight` picks on the relabelling models' held-out curated folds), ``run`` submits :func:`blend`
of the final models' scores with the row chosen by :func:`best_row`.
"""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from .console import stage
from .decode import decode, to_float
from .features import FeatureConfig, LogMel, pad_waves
from .layout import n_hot
from .metrics import lwlrap
from .normalization import NormStats
from .runtime import cpu_tasks, ensure_ray
from .storage import location
from .stream import shard_meta

log = logging.getLogger(__name__)

NAME = "classical baseline (logistic regression on pooled log-mel)"
ROWS = {"curated": ("curated",), "curated + noisy": ("curated", "noisy")}
"""Row suffix → training sources."""
FEATURES_VERSION = 1


@dataclass(frozen=True)
class BaselineConfig:
    """Settings of the classical baseline."""

    l2_grid: tuple[float, ...] = (1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0)
    """Candidate L2 penalties on the weights (loss: summed BCE per clip, averaged)."""
    holdout_fold: int = 0
    """Curated fold that chooses the L2 penalty."""
    max_iter: int = 300
    """L-BFGS iterations per fit."""
    clips_per_task: int = 8
    """Clips per Ray Data task of the feature extraction."""
    threads: int = 1
    """Torch threads during a fit: these small problems run fastest on one, and stall on a busy machine
    with more (OpenMP waits); one thread also fixes the order of the sums."""


def pooled_features(logmel: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
    """``(B, 1, F, N) or (B, F, N), (B,) -> (B, 3F)``: per band ``[mean | std | max]`` over the first
    ``frames[b]`` frames of example b (population std; padded frames are ignored)."""
    x = logmel.reshape(logmel.shape[0], logmel.shape[-2], logmel.shape[-1])
    valid = torch.arange(x.shape[-1], device=x.device)[None, None, :] < frames[:, None, None]  # (B, 1, N)
    n = frames.to(x.dtype)[:, None]
    mean = torch.where(valid, x, 0).sum(-1) / n
    std = (torch.where(valid, x - mean[..., None], 0) ** 2).sum(-1).div(n).sqrt()
    peak = torch.where(valid, x, -torch.inf).amax(-1)
    return torch.cat([mean, std, peak], dim=1)


def clip_features(waves: list[np.ndarray], logmel: LogMel, stats: NormStats, batch: int = 8) -> np.ndarray:
    """``B waves (T_b,) float -> (B, 3F)`` float32 pooled normalised log-mel, in length-sorted padded batches."""
    out = np.zeros((len(waves), 3 * logmel.config.n_mels), np.float32)
    order = np.argsort([len(w) for w in waves], kind="stable")
    with torch.no_grad():
        for i in range(0, len(order), batch):
            idx = order[i: i + batch]
            x, frames = logmel(*pad_waves([waves[j] for j in idx]))
            out[idx] = pooled_features(stats.normalize(x), frames).numpy()
    return out


def featurize_rows(batch: pa.Table, classes: list[str], stats: NormStats, features: FeatureConfig,
                   audio_format: str) -> dict:
    """Ray Data task: clip rows (``clip_id, source, labels, fold, audio``) → ``clip_id (B,), source (B,),
    fold (B,), targets (B, K)`` float32, ``features (B, 3F)`` float32."""
    torch.set_num_threads(1)
    rows = batch.to_pylist()
    waves = [to_float(decode(r["audio"], audio_format)) for r in rows]
    return {"clip_id": np.array([r["clip_id"] for r in rows], object),
            "source": np.array([r["source"] for r in rows], object),
            "fold": np.array([r["fold"] for r in rows], np.int64),
            "targets": n_hot([r["labels"] for r in rows], {c: i for i, c in enumerate(classes)}),
            "features": clip_features(waves, LogMel(features), stats)}


def shard_features(shards_dir: str | Path, features: FeatureConfig = FeatureConfig(), clips_per_task: int = 8,
                   compute="auto") -> dict:
    """Pooled features of every clip of a shards folder (Ray Data tasks) → ``{key: (N, ...)}`` with keys
    ``clip_id, source, fold, targets (N, K), features (N, 3F)``, rows sorted by (source, clip_id).
    ``compute``: the tasks' ``compute=`` (``auto``: :func:`~ray_tagger.runtime.cpu_tasks`)."""
    import ray

    ensure_ray()
    classes, stats, audio_format = shard_meta(shards_dir, features)
    dirs = [p for p in sorted((location(shards_dir) / "audio").glob("source=*")) if p.is_dir()]
    ds = ray.data.read_parquet([str(p) for p in dirs], columns=["clip_id", "labels", "fold", "audio", "source"])
    ds = ds.map_batches(featurize_rows, fn_kwargs={"classes": classes, "stats": stats, "features": features,
                                                   "audio_format": audio_format},
                        batch_size=clips_per_task, batch_format="pyarrow", num_cpus=1,
                        compute=cpu_tasks() if compute == "auto" else compute)
    ds.set_name("baseline_features")
    parts = list(ds.iter_batches(batch_size=None, batch_format="numpy"))
    out = {k: np.concatenate([p[k] for p in parts]) for k in ("clip_id", "source", "fold", "targets", "features")}
    order = np.lexsort((out["clip_id"].astype(str), out["source"].astype(str)))
    return {k: v[order] for k, v in out.items()}


def prepared_features(shards_dir: str | Path, features: FeatureConfig = FeatureConfig()) -> dict | None:
    """What :func:`shard_features` returns, from the per-clip log-mel statistics ``prepare`` wrote
    (``pooled.parquet``), normalised with the shards' statistics: per band ``(mean - m_b) / s``,
    ``std / s`` and ``(max - m_b) / s`` (:meth:`~ray_tagger.normalization.NormStats.normalize` is that
    affine map). ``None`` when the shards have no such file (prepared by an earlier version)."""
    root = location(shards_dir)
    classes, stats, _ = shard_meta(root, features)
    if not (root / "pooled.parquet").is_file():
        return None
    pooled = pq.read_table(str(root / "pooled.parquet")).to_pydict()
    clips = {}
    for path in sorted(p for p in (root / "audio").glob("source=*") if p.is_dir()):
        source = path.name.split("=", 1)[1]
        for r in pq.read_table(str(path), columns=["clip_id", "labels", "fold"]).to_pylist():
            clips[(source, r["clip_id"])] = r
    keys = list(zip(pooled["source"], pooled["clip_id"]))
    if sorted(keys) != sorted(clips):
        raise ValueError(f"{root}: pooled.parquet lists {len(keys)} clips and the audio shards {len(clips)}, not the "
                         "same ones; prepare the data again into a new folder")
    band_mean, scale = np.asarray(stats.mean)[None, :], stats.std
    X = np.concatenate([(np.asarray(pooled["mean"]) - band_mean) / scale, np.asarray(pooled["std"]) / scale,
                        (np.asarray(pooled["max"]) - band_mean) / scale], axis=1).astype(np.float32)
    out = {"clip_id": np.array([c for _, c in keys], object), "source": np.array([s for s, _ in keys], object),
           "fold": np.array([clips[k]["fold"] for k in keys], np.int64),
           "targets": n_hot([clips[k]["labels"] for k in keys], {c: i for i, c in enumerate(classes)}), "features": X}
    order = np.lexsort((out["clip_id"].astype(str), out["source"].astype(str)))
    return {k: v[order] for k, v in out.items()}


def cached_features(shards_dir: str | Path, out_dir: Path, features: FeatureConfig, config: BaselineConfig) -> tuple[dict, float | None]:
    """:func:`shard_features`, read from ``out_dir/features.npz`` when it was made from the same shards and
    feature settings; ``-> (features, seconds spent computing them or None when cached)``."""
    key = json.dumps([FEATURES_VERSION, _shards_fingerprint(shards_dir), dataclasses.asdict(features)], sort_keys=True)
    path = out_dir / "features.npz"
    if path.is_file():
        saved = _load(path)
        if saved.pop("key") == key:
            log.info("baseline: pooled features of %d clips read from %s", len(saved["clip_id"]), path)
            return saved, None
    t0 = time.perf_counter()
    data = prepared_features(shards_dir, features)
    if data is not None:
        log.info("baseline: pooled log-mel features of %d clips from the shards' pooled.parquet in %.1f s",
                 len(data["clip_id"]), time.perf_counter() - t0)
    else:
        log.info("baseline: %s has no pooled.parquet (prepared by an earlier version): computing the pooled "
                 "log-mel features from the audio", shards_dir)
        data = shard_features(shards_dir, features, config.clips_per_task)
        log.info("baseline: pooled log-mel features of %d clips in %.1f s", len(data["clip_id"]), time.perf_counter() - t0)
    seconds = time.perf_counter() - t0
    out_dir.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()  # written whole (an interrupted write leaves no cache; object stores have no rename)
    np.savez(buffer, key=np.array(key), **{k: v.astype(str) if v.dtype == object else v for k, v in data.items()})
    path.write_bytes(buffer.getvalue())
    saved = _load(path)
    saved.pop("key")
    return saved, seconds


def _load(path: Path) -> dict:
    with np.load(io.BytesIO(path.read_bytes()), allow_pickle=False) as f:
        return {k: (str(f[k]) if k == "key" else f[k]) for k in f.files}


@dataclass(frozen=True)
class LogisticModel:
    """Standardisation ``(D,), (D,)`` and weights ``(D, K)``, biases ``(K,)`` of K logistic regressions."""

    mean: np.ndarray
    std: np.ndarray
    weight: np.ndarray
    bias: np.ndarray

    def predict(self, X: np.ndarray) -> np.ndarray:
        """``(N, D) -> (N, K)`` probabilities."""
        z = ((np.asarray(X, np.float64) - self.mean) / self.std) @ self.weight + self.bias
        return 1.0 / (1.0 + np.exp(-z))


def fit_logistic(X: np.ndarray, Y: np.ndarray, l2: float = 1e-2, max_iter: int = 300, threads: int = 1) -> LogisticModel:
    """``X (N, D), Y (N, K) 0/1 -> LogisticModel``: standardise X, then minimise
    ``mean_n Σ_k BCE + l2·‖W‖²`` by full-batch L-BFGS from zero weights (deterministic), on ``threads``
    torch threads (the caller's setting is restored)."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return _fit(X, Y, l2, max_iter)
    finally:
        torch.set_num_threads(before)


def _fit(X: np.ndarray, Y: np.ndarray, l2: float, max_iter: int) -> LogisticModel:
    X64 = np.asarray(X, np.float64)
    mean, std = X64.mean(0), X64.std(0)
    std = np.where(std > 1e-8, std, 1.0)
    x = torch.from_numpy((X64 - mean) / std)
    y = torch.from_numpy(np.asarray(Y, np.float64))
    w = torch.zeros(x.shape[1], y.shape[1], dtype=torch.float64, requires_grad=True)
    b = torch.zeros(y.shape[1], dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=max_iter, history_size=20, line_search_fn="strong_wolfe",
                            tolerance_grad=1e-9, tolerance_change=1e-12)

    def closure() -> torch.Tensor:
        opt.zero_grad()
        bce = torch.nn.functional.binary_cross_entropy_with_logits(x @ w + b, y, reduction="sum") / x.shape[0]
        loss = bce + l2 * (w * w).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return LogisticModel(mean, std, w.detach().numpy(), b.detach().numpy())


def choose_l2(X: np.ndarray, Y: np.ndarray, held_out: np.ndarray, config: BaselineConfig) -> tuple[float, dict]:
    """The grid's L2 with the best lwlrap on rows ``held_out (N,) bool`` after fitting on the others
    (ties: the larger L2); ``-> (l2, {l2: lwlrap})``. Without a usable fold: the grid's middle value."""
    if not Y[held_out].any() or held_out.all():
        l2 = config.l2_grid[len(config.l2_grid) // 2]
        log.warning("baseline: curated fold %d cannot choose the L2 penalty; using %g", config.holdout_fold, l2)
        return l2, {}
    scores = {l2: lwlrap(Y[held_out], fit_logistic(X[~held_out], Y[~held_out], l2, config.max_iter, config.threads).predict(X[held_out]))[0]
              for l2 in config.l2_grid}
    return max(scores, key=lambda l2: (scores[l2], l2)), scores


def _row(data: dict, sources: tuple[str, ...], fold: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One baseline row's training data: ``-> rows (N,) bool of data, X (n, 3F), Y (n, K), held_out (n,)``,
    ``held_out`` marking the row's curated clips of ``fold``."""
    rows = np.isin(data["source"], sources)
    held_out = (data["source"][rows] == "curated") & (data["fold"][rows] == fold)
    return rows, data["features"][rows], data["targets"][rows], held_out


def fit_baselines(shards_dir: str | Path, out_dir: str | Path, fnames: list[str], truth: np.ndarray | None = None,
                  features: FeatureConfig = FeatureConfig(), config: BaselineConfig = BaselineConfig()) -> dict[str, np.ndarray]:
    """Fit both baseline rows on the shards' training clips; ``-> {row name: (N, K) test scores}`` in
    ``fnames`` order. Writes ``out_dir/baseline.json`` (settings, chosen L2, test lwlrap when ``truth
    (N, K)`` is given) and caches the features in ``out_dir/features.npz``."""
    out_dir = location(out_dir)
    data, seconds = cached_features(shards_dir, out_dir, features, config)
    test = {c: i for i, c in enumerate(data["clip_id"]) if data["source"][i] == "test"}
    X_test = data["features"][[test[f] for f in fnames]]
    results, info = {}, {"config": dataclasses.asdict(config), "features": dataclasses.asdict(features),
                         "feature_seconds": seconds, "rows": {}}
    for suffix, sources in ROWS.items():
        rows, X, Y, held_out = _row(data, sources, config.holdout_fold)
        t0 = time.perf_counter()
        l2, grid = choose_l2(X, Y, held_out, config)
        name = f"{NAME}, {suffix}"
        results[name] = fit_logistic(X, Y, l2, config.max_iter, config.threads).predict(X_test)
        row = {"train_clips": int(rows.sum()), "l2": l2, "held_out_lwlrap": {str(k): v for k, v in grid.items()},
               "fit_seconds": time.perf_counter() - t0}
        if truth is not None:
            row["test_lwlrap"] = lwlrap(truth, results[name])[0]
        info["rows"][name] = row
        stage(log, "baseline %s: %d clips, l2 %g%s", suffix, row["train_clips"], l2,
                 f", test lwlrap {row['test_lwlrap']:.4f}" if truth is not None else "")
    (out_dir / "baseline.json").write_text(json.dumps(info, indent=1))
    return results


def best_row(info: dict) -> str:
    """The row of a ``baseline.json`` ``info`` whose held-out curated lwlrap at its chosen L2 is the
    higher (ties, or no usable held-out fold: the later row, the one with more training clips)."""
    rows = info["rows"]
    return max(reversed(list(rows)), key=lambda name: rows[name]["held_out_lwlrap"].get(str(rows[name]["l2"]), -1.0))


def blend(members: np.ndarray, baseline: np.ndarray, weight: float) -> np.ndarray:
    """``(N, M, K)`` members' scores, ``(N, K)`` the baseline's ``-> (N, K)``: ``(1 - weight) ·`` the
    members' mean ``+ weight ·`` the baseline (``SystemConfig.baseline_weights``)."""
    return (1.0 - weight) * members.mean(axis=1) + weight * baseline


def row_sources(row: str) -> tuple[str, ...]:
    """A row name of :func:`fit_baselines` (``"<NAME>, curated + noisy"``) ``->`` its training sources."""
    return ROWS[row.rsplit(", ", 1)[-1]]


def choose_weight(data: dict, heldout: dict, row: str, l2: float, weights: tuple[float, ...],
                  config: BaselineConfig = BaselineConfig()) -> tuple[float, dict[float, float]]:
    """The blend weight of ``weights`` with the best held-out lwlrap, judged on the relabelling models'
    held-out curated clips. ``data``: pooled features (:func:`cached_features`); ``heldout``:
    :data:`ray_tagger.relabel.HELDOUT`'s ``clip_id (N,), fold (N,), truth (N, K), scores (N, K)``. Per
    fold, baseline ``row`` at ``l2`` is fitted on the row's training clips outside that curated fold and
    scores the fold's clips; then ``(1 - w) · scores + w · baseline`` is scored over all N clips. Ties:
    the smaller weight. ``-> (weight, {weight: held-out lwlrap})``.

    A proxy: the relabelling models (provided labels, ``relabel_R``) stand for the final ones, and the
    L2 was chosen on :attr:`BaselineConfig.holdout_fold`, which may be one of these folds."""
    index = {c: i for i, c in enumerate(data["clip_id"]) if data["source"][i] == "curated"}
    baseline = np.zeros(heldout["scores"].shape, np.float64)
    for fold in np.unique(heldout["fold"]):
        _, X, Y, held_out = _row(data, row_sources(row), int(fold))
        clips = heldout["fold"] == fold
        model = fit_logistic(X[~held_out], Y[~held_out], l2, config.max_iter, config.threads)
        baseline[clips] = model.predict(data["features"][[index[c] for c in heldout["clip_id"][clips]]])
    scores = {float(w): lwlrap(heldout["truth"], (1.0 - w) * heldout["scores"] + w * baseline)[0] for w in weights}
    return max(scores, key=lambda w: (scores[w], -w)), scores


def fit_row(data: dict, row: str, l2: float, config: BaselineConfig = BaselineConfig()) -> LogisticModel:
    """Baseline ``row`` fitted at ``l2`` on all its training clips of ``data`` (:func:`cached_features`): the
    model whose test scores :func:`fit_baselines` reports (the fit is deterministic)."""
    _, X, Y, _ = _row(data, row_sources(row), -1)
    return fit_logistic(X, Y, l2, config.max_iter, config.threads)


BLEND_FILE = "submission_baseline.npz"
"""In a run's ``baseline/``: the baseline row its submission blends in, with the weight (:func:`save_blend`)."""


@dataclass(frozen=True)
class BaselineBlend:
    """The classical baseline of a run's submission: ``model`` (the row fitted on all its training clips),
    ``weight`` in the blend, its ``row`` name, and the ``classes``, log-mel ``features`` (a
    :class:`FeatureConfig` dict) and normalisation ``stats`` (:meth:`NormStats.to_json`) of its inputs."""

    model: LogisticModel
    weight: float
    row: str
    classes: list[str]
    features: dict
    stats: dict

    def check(self, meta: dict) -> None:
        """Refuse to blend with models whose metadata (``classes``, ``features``, ``stats``, as in a model
        file) name another vocabulary, other log-mel settings or another normalisation than the baseline's."""
        if (list(meta["classes"]) != self.classes or dict(meta["features"]) != self.features
                or not np.allclose(meta["stats"]["mean"], self.stats["mean"])
                or not np.isclose(meta["stats"]["std"], self.stats["std"])):
            raise ValueError("the run's classical baseline was fitted on other classes, features or normalisation than "
                             "its final models'")

    def apply(self, members: np.ndarray, pooled: np.ndarray) -> np.ndarray:
        """``(N, M, K)`` members' scores, ``(N, 3F)`` pooled features (:func:`pooled_clip`) ``-> (N, K)``."""
        return blend(members, self.model.predict(pooled), self.weight)


def save_blend(path: str | Path, blend_: BaselineBlend) -> None:
    """Write ``blend_`` to ``path`` (``.npz``, no pickles)."""
    m = blend_.model
    meta = {"weight": blend_.weight, "row": blend_.row, "classes": blend_.classes, "features": blend_.features,
            "stats": blend_.stats}
    buffer = io.BytesIO()
    np.savez(buffer, mean=m.mean, std=m.std, weight=m.weight, bias=m.bias, meta=np.array(json.dumps(meta)))
    location(path).write_bytes(buffer.getvalue())


def run_root(run_dir: str | Path) -> Path | None:
    """The ``ray-tagger run`` folder that ``run_dir`` is (it holds ``run.json``) or whose ``final/`` it is; else None."""
    root = location(run_dir)
    for candidate in (root, root.parent if root.name == "final" else None):
        if candidate is not None and (candidate / "run.json").is_file():
            return candidate
    return None


def load_blend(run_dir: str | Path, meta: dict | None = None) -> BaselineBlend | None:
    """The baseline blended into the submission of the ``ray-tagger run`` folder ``run_dir`` (or its
    ``final/``), or None: another kind of folder, or a run whose submission is the final models' alone.
    With ``meta`` (a final model's metadata), :meth:`BaselineBlend.check` it against them."""
    root = run_root(run_dir)
    path = None if root is None else root / "baseline" / BLEND_FILE
    if path is None or not path.is_file():
        return None
    with np.load(io.BytesIO(path.read_bytes()), allow_pickle=False) as f:
        saved = json.loads(str(f["meta"]))
        model = LogisticModel(f["mean"], f["std"], f["weight"], f["bias"])
    blend_ = BaselineBlend(model, float(saved["weight"]), saved["row"], list(saved["classes"]), saved["features"], saved["stats"])
    if meta is not None:
        blend_.check(meta)
    return blend_


def pooled_clip(feat: np.ndarray) -> np.ndarray:
    """``(F, N)`` one clip's normalised log-mel ``-> (3F,)`` its pooled features (:func:`pooled_features`)."""
    x = torch.from_numpy(np.ascontiguousarray(feat, np.float32))[None]
    return pooled_features(x, torch.tensor([x.shape[-1]])).numpy()[0]


def _shards_fingerprint(shards_dir: str | Path) -> str:
    """The fingerprint ``prepare`` wrote into the shards' manifest (its settings, CSVs and audio files)."""
    return json.loads((location(shards_dir) / "manifest.json").read_text())["fingerprint"]


def fold_baseline(shards_dir: str | Path, out_dir: str | Path, fold: int, features: FeatureConfig = FeatureConfig(),
                  config: BaselineConfig = BaselineConfig()) -> dict[str, dict]:
    """Both rows' held-out lwlrap on the curated clips of ``fold``, fitted on the row's other training
    clips, each with the grid's L2 that scores best on that very fold (which favours the baseline): the
    yardstick ``train --fold`` prints beside the model. ``-> {row name: {l2, held_out_lwlrap, grid,
    train_clips, held_out_clips}}``, also written to ``out_dir/baseline.json`` (features cached there),
    from which a later call with the same shards, fold and settings reads the rows back (re-running a
    complete ``train --fold`` fits nothing)."""
    out_dir = location(out_dir)
    settings = json.loads(json.dumps({"fold": fold, "shards": _shards_fingerprint(shards_dir), "config": dataclasses.asdict(config),
                                      "features": dataclasses.asdict(features)}))  # tuples as JSON gives them back
    record = out_dir / "baseline.json"
    if record.is_file():
        saved = json.loads(record.read_text())
        if {k: saved.get(k) for k in settings} == settings:
            log.info("baseline: fold %d's rows read from %s (fitted by an earlier run on the same shards)", fold, record)
            return saved["rows"]
    data, _ = cached_features(shards_dir, out_dir, features, config)
    rows_info = {}
    for suffix, sources in ROWS.items():
        _, X, Y, held_out = _row(data, sources, fold)
        if not held_out.any():
            raise ValueError(f"{shards_dir}: curated fold {fold} has no clips")
        l2, grid = choose_l2(X, Y, held_out, dataclasses.replace(config, holdout_fold=fold))
        rows_info[f"{NAME}, {suffix}"] = {
            "l2": l2, "held_out_lwlrap": grid.get(l2), "grid": {str(k): v for k, v in grid.items()},
            "train_clips": int((~held_out).sum()), "held_out_clips": int(held_out.sum())}
    record.write_text(json.dumps({**settings, "rows": rows_info}, indent=1))
    return rows_info
