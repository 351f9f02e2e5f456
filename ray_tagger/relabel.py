"""``ray-tagger relabel``: the noisy-label relabelling of report §4.1.

    splits × folds runs (provided labels, R = 8) ─Tune trials─▶ models
    models ─Ray Data actors─▶ scores of every noisy excerpt of every split, averaged over models
    per class: the threshold with the lowest error rate against the provided labels
    per split: excerpt → classes at or above threshold, or dropped when none is left

Output folder (RELABEL_DIR): ``runs/s{split}_f{fold}/`` (one training run each),
``relabeled/split_{s}.parquet`` (``excerpt_id, clip_id, split, provided, labels, dropped,
scores``; ``labels`` is what the training stream uses), ``thresholds.json``, ``changes.csv``
(per class: threshold, error rate, provided, kept, added, removed) and ``summary.json``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from .config import SystemConfig, TrainJobConfig
from .infer import score, shard_rows
from .layout import n_hot
from .runs import RunSpec, train_many
from .splits import excerpt_id
from .stream import shard_meta
from .train import Placement

log = logging.getLogger(__name__)


def choose_thresholds(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per class, the threshold t minimising the errors of ``scores >= t`` against ``labels``.

    ``(N, K) scores, (N, K) 0/1 labels -> (K,) thresholds, (K,) error rates``. Candidates are the
    score values themselves and +inf (nothing positive); ties go to the highest threshold.
    """
    n, k = scores.shape
    thresholds, errors = np.empty(k), np.empty(k)
    for c in range(k):
        s, y = scores[:, c], labels[:, c].astype(bool)
        order = np.argsort(-s, kind="stable")
        s_sorted, y_sorted = s[order], y[order]
        # predicting the top i positive: false positives = negatives among them, false negatives = positives after
        fp = np.concatenate([[0], np.cumsum(~y_sorted)])
        fn = y.sum() - np.concatenate([[0], np.cumsum(y_sorted)])
        err = fp + fn
        # a threshold can only cut between distinct scores: allowed prefix lengths end a run of ties
        allowed = np.concatenate([[True], np.append(s_sorted[1:] != s_sorted[:-1], True)])
        err = np.where(allowed, err, n + 1)
        best = int(np.argmin(err))
        thresholds[c] = np.inf if best == 0 else s_sorted[best - 1]
        errors[c] = err[best] / n
    return thresholds, errors


def relabel_specs(system: SystemConfig) -> list[RunSpec]:
    return [RunSpec(f"s{s}_f{f}", s, f, system.relabel_R) for s in system.relabel_splits for f in system.relabel_folds]


def _noisy_table(shards_dir: Path, splits: list[int]) -> pd.DataFrame:
    """One row per noisy excerpt of every split: excerpt_id, clip_id, split, provided labels."""
    table = pq.read_table(shards_dir / "audio" / "source=noisy", columns=["clip_id", "labels"]).to_pylist()
    rows = [{"excerpt_id": excerpt_id(r["clip_id"], s, part), "clip_id": r["clip_id"], "split": s, "provided": list(r["labels"])}
            for s in splits for r in table for part in (0, 1)]
    return pd.DataFrame(rows)


def relabel(
    shards_dir: str | Path,
    out_dir: str | Path,
    job: TrainJobConfig,
    system: SystemConfig = SystemConfig(),
    placement: Placement = Placement(),
    concurrency: int | None = None,
    actors: int = 1,
) -> dict:
    """Train the relabelling runs (skipping finished ones), score and relabel; returns the summary."""
    shards_dir, out_dir = Path(shards_dir).resolve(), Path(out_dir).resolve()
    summary_path = out_dir / "summary.json"
    if summary_path.is_file():
        log.info("%s is complete; nothing to relabel", out_dir)
        return json.loads(summary_path.read_text())
    classes, _, audio_format = shard_meta(shards_dir)
    manifest = json.loads((shards_dir / "manifest.json").read_text())
    n_splits, n_folds = manifest["config"]["splits"], manifest["config"]["folds"]
    bad = [s for s in system.relabel_splits if not 0 <= s < n_splits] + [f for f in system.relabel_folds if not 0 <= f < n_folds]
    if bad:
        raise ValueError(f"{shards_dir} has {n_splits} splits and {n_folds} folds; system.relabel_splits/folds ask for {bad}")
    specs = relabel_specs(system)
    summaries = train_many(shards_dir, out_dir, job, specs, placement, concurrency, stage="relabel")
    members = [s["model"] for s in summaries]
    splits = list(range(n_splits))
    log.info("relabel: scoring every noisy excerpt of %d splits with %d models (Ray Data, %d actors)", n_splits, len(members), actors)
    keys, scores = score(shard_rows(shards_dir, "noisy"), members, "excerpts", audio_format, splits, actors)
    mean = pd.DataFrame(scores.mean(axis=1), index=keys)
    table = _noisy_table(shards_dir, splits)
    missing = set(table.excerpt_id) - set(keys)
    if missing:
        raise ValueError(f"relabel: {len(missing)} excerpts were not scored (e.g. {sorted(missing)[0]})")
    s = mean.loc[table.excerpt_id].to_numpy()
    provided = n_hot(table.provided, {c: i for i, c in enumerate(classes)}, bool)
    thresholds, errors = choose_thresholds(s, provided)
    new = s >= thresholds[None, :]
    table["labels"] = [[classes[c] for c in np.flatnonzero(row)] for row in new]
    table["dropped"] = ~new.any(axis=1)
    table["scores"] = list(s.astype(np.float32))
    out = out_dir / "relabeled"
    out.mkdir(parents=True, exist_ok=True)
    for split in splits:
        part = table[table.split == split]
        pq.write_table(pa.Table.from_pandas(part, preserve_index=False), out / f"split_{split}.parquet")
    changes = pd.DataFrame({
        "class": classes, "threshold": thresholds, "error_rate": errors, "provided": provided.sum(0),
        "kept": (provided & new).sum(0), "added": (~provided & new).sum(0), "removed": (provided & ~new).sum(0),
    })
    changes.to_csv(out_dir / "changes.csv", index=False)
    (out_dir / "thresholds.json").write_text(json.dumps(dict(zip(classes, map(float, thresholds))), indent=1))
    summary = {
        "relabel_dir": str(out_dir), "models": members, "excerpts": len(table), "dropped": int(table.dropped.sum()),
        "labels_added": int(changes.added.sum()), "labels_removed": int(changes.removed.sum()),
        "tables": {str(sp): str(out / f"split_{sp}.parquet") for sp in splits},
        "runs": [{"name": sp.name, "started": su["started"], "finished": su["finished"],
                  "val_lwlrap": su["final_metrics"].get("val_lwlrap")} for sp, su in zip(specs, summaries)],
    }
    summary_path.write_text(json.dumps(summary, indent=1))
    return summary


def format_changes(out_dir: str | Path) -> str:
    """The per-class table of what relabelling changed, and the totals."""
    out_dir = Path(out_dir)
    changes = pd.read_csv(out_dir / "changes.csv")
    summary = json.loads((out_dir / "summary.json").read_text())
    lines = [f"{'class':24s} {'threshold':>9s} {'error':>6s} {'provided':>8s} {'added':>6s} {'removed':>7s}"]
    for r in changes.itertuples():
        lines.append(f"{r[1][:24]:24s} {r.threshold:9.3f} {r.error_rate:6.3f} {r.provided:8d} {r.added:6d} {r.removed:7d}")
    lines.append(f"{summary['excerpts']} excerpts: {summary['labels_added']} labels added, {summary['labels_removed']} removed, "
                 f"{summary['dropped']} excerpts dropped (no class left)")
    return "\n".join(lines)
