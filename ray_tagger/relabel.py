"""``ray-tagger relabel``: the noisy-label relabelling of report §4.1.

    splits × folds runs (provided labels, R = 8) ─Tune trials─▶ models
    models ─Ray Data actors─▶ scores of every noisy excerpt of every split, averaged over models
                              (and of the curated clips the runs held out, for the check: one pass)
    per class: the threshold with the lowest error rate against the provided labels
    per split: excerpt → classes at or above threshold, or dropped when none is left

Before any label changes, a check (:func:`judge`): the relabelling ensemble must rank the
curated clips it held out (each clip scored by the models of its held-out fold) clearly better
than chance, ``lwlrap >= chance + system.relabel_min_gain``, and the thresholds may drop at most
``system.relabel_max_drop`` of the noisy excerpts. Models at chance make the lowest-error rule
drop every excerpt, and the final models would silently train on the curated clips only. When
the check fails, ``system.relabel_on_failure`` decides: ``stop`` raises :class:`RelabelRefused`
(one line: which condition, the numbers, what to do) and writes only ``refused.json``;
``keep_provided`` writes the tables with the provided labels unchanged (nothing dropped).

Output folder (RELABEL_DIR): ``runs/s{split}_f{fold}/`` (one training run each),
``relabeled/split_{s}.parquet`` (``excerpt_id, clip_id, split, provided, labels, dropped,
scores``; ``labels`` is what the training stream uses), ``thresholds.json`` (only when
relabelled), ``changes.csv`` (per class: the rule's threshold and error rate; provided, kept,
added, removed as applied), ``heldout.npz`` (:data:`HELDOUT`: the check's held-out curated clips with
their ensemble scores, which ``run`` also uses to choose the baseline's weight in the submission) and
``summary.json`` (with the ``check``); or, refused,
``refused.json`` and the training runs only.
"""

from __future__ import annotations

import csv
import io
import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from .config import SystemConfig, TrainJobConfig
from .console import stage
from .infer import CURATED, relabel_rows, score
from .layout import n_hot
from .metrics import lwlrap
from .report import chance_lwlrap
from .runs import RunSpec, train_many
from .runtime import ensure_ray
from .splits import excerpt_id
from .storage import location
from .stream import shard_meta
from .train import Placement

log = logging.getLogger(__name__)

HELDOUT = "heldout.npz"
"""RELABEL_DIR file: the held-out curated clips' ids, folds, ``truth (N, K)``, ensemble ``scores (N, K)``, ``classes (K,)``."""


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


class RelabelRefused(ValueError):
    """The relabelling ensemble failed the check (see the module doc); nothing was relabelled.
    ``check``: the record :func:`decide` would have returned."""

    def __init__(self, message: str, check: dict):
        super().__init__(message)
        self.check = check


def judge(truth: np.ndarray, scores: np.ndarray, would_drop: float, system: SystemConfig) -> dict:
    """The check record of the relabelling ensemble. ``truth (N, K)`` 0/1 labels of the held-out curated
    clips, ``scores (N, K)`` their held-out ensemble scores, ``would_drop`` the share of noisy excerpts the
    thresholds leave without a class. Raises :class:`RelabelRefused` when it fails and
    ``system.relabel_on_failure`` is ``stop``."""
    return decide(lwlrap(truth, scores)[0], chance_lwlrap(truth), would_drop, system)


def decide(heldout: float, chance: float, would_drop: float, system: SystemConfig) -> dict:
    """:func:`judge` from its numbers: ``{heldout_lwlrap, chance, min_gain, would_drop, max_drop, decision}``
    with decision ``relabelled`` or ``kept_provided``; or :class:`RelabelRefused`."""
    need = chance + system.relabel_min_gain
    weak, drops = heldout < need, would_drop > system.relabel_max_drop
    check = {"heldout_lwlrap": float(heldout), "chance": float(chance), "min_gain": system.relabel_min_gain,
             "would_drop": float(would_drop), "max_drop": system.relabel_max_drop,
             "decision": "kept_provided" if weak or drops else "relabelled"}
    if (weak or drops) and system.relabel_on_failure == "stop":
        raise RelabelRefused(refusal(check), {**check, "decision": "refused"})
    return check


def refusal(check: dict) -> str:
    """The one-line reason a check failed and what to do (the text of :class:`RelabelRefused`)."""
    allow = "" if check["heldout_lwlrap"] < check["chance"] + check["min_gain"] else \
        ", allow it with --set system.relabel_max_drop=SHARE"
    return (f"relabel: {_failures(check)}; train longer or wider (preset){allow}, or pass --keep-provided-labels "
            "(system.relabel_on_failure=keep_provided) to train the final models on the provided labels")


def _failures(check: dict) -> str:
    """Which conditions of a failed check failed, with the numbers, and what that means."""
    need = check["chance"] + check["min_gain"]
    parts = []
    if check["heldout_lwlrap"] < need:
        parts.append(f"the relabelling ensemble's held-out lwlrap on the curated folds is {check['heldout_lwlrap']:.3f}, "
                     f"chance on the same clips {check['chance']:.3f} (needs ≥ {need:.3f})")
    if check["would_drop"] > check["max_drop"]:
        parts.append(f"{'its' if parts else 'the relabelling'} thresholds would drop {check['would_drop']:.1%} of the "
                     f"noisy excerpts (at most {check['max_drop']:.0%})")
    why = "its scores cannot judge the noisy labels" if check["heldout_lwlrap"] < need else \
        "relabelling would discard most of the noisy data"
    return f"{' and '.join(parts)}: {why}"


def pool_heldout(keys: list[str], scores: np.ndarray, folds: dict[str, int], member_folds: list[int]) -> tuple[list[str], np.ndarray]:
    """Each curated clip's score by the members that held out its fold, averaged.

    ``keys`` N clip ids, ``scores (N, M, K)`` every member's scores, ``folds`` clip id → fold,
    ``member_folds`` the M members' held-out folds ``-> keys', (N', K)`` for the clips of those folds."""
    member_folds = np.asarray(member_folds)
    kept, pooled = [], []
    for i, key in enumerate(keys):
        members = np.flatnonzero(member_folds == folds[key])
        if members.size:
            kept.append(key)
            pooled.append(scores[i, members].mean(axis=0))
    if not kept:
        raise ValueError("relabel: no curated clip lies in a held-out fold of the relabelling runs")
    return kept, np.stack(pooled)


def _curated_folds(shards_dir: Path) -> tuple[dict[str, int], dict[str, list[str]]]:
    """Every curated clip's fold and labels."""
    table = pq.read_table(str(shards_dir / "audio" / "source=curated"), columns=["clip_id", "labels", "fold"]).to_pylist()
    return {r["clip_id"]: r["fold"] for r in table}, {r["clip_id"]: list(r["labels"]) for r in table}


def _heldout(keys: list[str], scores: np.ndarray, specs: list[RunSpec], folds: dict[str, int], labels: dict[str, list[str]],
             classes: list[str]) -> dict[str, np.ndarray]:
    """The curated clips of the held-out folds, from their ``(N, M, K)`` scores (a clip's by the members that held
    out its fold; the other members' rows are not read): ``clip_id (N,), fold (N,), truth (N, K)`` 0/1 labels and
    ``scores (N, K)`` held-out ensemble scores (each clip's mean over those members)."""
    keys, pooled = pool_heldout(keys, scores, folds, [s.fold for s in specs])
    return {"clip_id": np.array(keys), "fold": np.array([folds[k] for k in keys], np.int64),
            "truth": n_hot([labels[k] for k in keys], {c: i for i, c in enumerate(classes)}, np.float64), "scores": pooled}


def _noisy_table(shards_dir: Path, splits: list[int]) -> pd.DataFrame:
    """One row per noisy excerpt of every split: excerpt_id, clip_id, split, provided labels."""
    table = pq.read_table(str(shards_dir / "audio" / "source=noisy"), columns=["clip_id", "labels"]).to_pylist()
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
    """Train the relabelling runs (skipping finished ones), score, check (:func:`judge`) and relabel; returns
    the summary. Raises :class:`RelabelRefused` when the check fails and ``system.relabel_on_failure`` is ``stop``."""
    shards_dir, out_dir = location(shards_dir), location(out_dir)
    summary_path = out_dir / "summary.json"
    if summary_path.is_file():
        stage(log, "%s is complete; nothing to relabel", out_dir)
        return json.loads(summary_path.read_text())
    ensure_ray()
    classes, _, audio_format = shard_meta(shards_dir, job.features)
    manifest = json.loads((shards_dir / "manifest.json").read_text())
    n_splits, n_folds = manifest["config"]["splits"], manifest["config"]["folds"]
    bad = [s for s in system.relabel_splits if not 0 <= s < n_splits] + [f for f in system.relabel_folds if not 0 <= f < n_folds]
    if bad:
        raise ValueError(f"{shards_dir} has {n_splits} splits and {n_folds} folds; system.relabel_splits/folds ask for {bad}")
    specs = relabel_specs(system)
    summaries = train_many(shards_dir, out_dir, job, specs, placement, concurrency, stage="relabel")
    members = [s["model"] for s in summaries]
    splits = list(range(n_splits))
    folds, labels = _curated_folds(shards_dir)
    held_out = {k: [m for m, sp in enumerate(specs) if sp.fold == f] for k, f in folds.items()}
    held_out = {k: m for k, m in held_out.items() if m}
    stage(log, "relabel: scoring every noisy excerpt of %d splits with %d models, and the %d curated clips of the "
               "held-out folds with the models that held them out, for the check (Ray Data, %d actors)",
          len(splits), len(members), len(held_out), actors)
    keys, scores = score(relabel_rows(shards_dir, actors), members, "relabel", audio_format, splits, actors,
                         held_out=held_out)
    curated = np.array([k.startswith(CURATED) for k in keys], bool)
    table, s = _noisy_scores(shards_dir, [k for k, c in zip(keys, curated) if not c], scores[~curated], splits)
    provided = n_hot(table.provided, {c: i for i, c in enumerate(classes)}, bool)
    thresholds, errors = choose_thresholds(s, provided)
    new = s >= thresholds[None, :]
    heldout = _heldout([k[len(CURATED):] for k, c in zip(keys, curated) if c], scores[curated], specs, folds, labels, classes)
    try:
        check = judge(heldout["truth"], heldout["scores"], float((~new.any(axis=1)).mean()), system)
    except RelabelRefused as e:
        (out_dir / "refused.json").write_text(json.dumps({"message": str(e), "check": e.check}, indent=1))
        raise
    stage(log, "relabel check: held-out lwlrap %.3f (chance %.3f), would drop %.1f%% → %s", check["heldout_lwlrap"],
             check["chance"], 100 * check["would_drop"], check["decision"])
    if check["decision"] == "kept_provided":  # the provided labels verbatim, no excerpt dropped
        log.warning("relabel: %s; keeping the provided labels (system.relabel_on_failure=keep_provided)", _failures(check))
        new = provided.copy()
        table["labels"], table["dropped"] = table.provided, False
    else:
        table["labels"] = [[classes[c] for c in np.flatnonzero(row)] for row in new]
        table["dropped"] = ~new.any(axis=1)
    table["scores"] = list(s.astype(np.float32))
    changes = pd.DataFrame({
        "class": classes, "threshold": thresholds, "error_rate": errors, "provided": provided.sum(0),
        "kept": (provided & new).sum(0), "added": (~provided & new).sum(0), "removed": (provided & ~new).sum(0),
    })
    summary = {
        "relabel_dir": str(out_dir), "models": members, "excerpts": len(table), "dropped": int(table.dropped.sum()),
        "labels_added": int(changes.added.sum()), "labels_removed": int(changes.removed.sum()), "check": check,
        "tables": {str(sp): str(out_dir / "relabeled" / f"split_{sp}.parquet") for sp in splits},
        "runs": [{"name": sp.name, "started": su["started"], "finished": su["finished"],
                  "val_lwlrap": su["final_metrics"].get("val_lwlrap")} for sp, su in zip(specs, summaries)],
    }
    _write(out_dir, table, changes, summary, {**heldout, "classes": np.array(classes)})
    return summary


def _noisy_scores(shards_dir: Path, keys: list[str], scores: np.ndarray, splits: list[int]) -> tuple[pd.DataFrame, np.ndarray]:
    """The noisy excerpt table (:func:`_noisy_table`) and its ``(E, K)`` ensemble-mean scores, row for row, from the
    excerpts' ``keys`` and ``(E, M, K)`` scores by every member."""
    mean = pd.DataFrame(scores.mean(axis=1), index=keys)
    table = _noisy_table(shards_dir, splits)
    missing = set(table.excerpt_id) - set(keys)
    if missing:
        raise ValueError(f"relabel: {len(missing)} excerpts were not scored (e.g. {sorted(missing)[0]})")
    return table, mean.loc[table.excerpt_id].to_numpy()


def _write(out_dir: Path, table: pd.DataFrame, changes: pd.DataFrame, summary: dict, heldout: dict) -> None:
    """The tables, changes.csv, thresholds.json (when relabelled), heldout.npz and, last, summary.json."""
    for split, path in summary["tables"].items():
        location(path).parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_pandas(table[table.split == int(split)], preserve_index=False), path)
    (out_dir / "changes.csv").write_text(changes.to_csv(index=False))
    if summary["check"]["decision"] == "relabelled":
        (out_dir / "thresholds.json").write_text(json.dumps(dict(zip(changes["class"], map(float, changes.threshold))), indent=1))
    buffer = io.BytesIO()  # written whole: object stores have no rename
    np.savez(buffer, **heldout)
    (out_dir / HELDOUT).write_bytes(buffer.getvalue())
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=1))
    (out_dir / "refused.json").unlink(missing_ok=True)


def format_changes(out_dir: str | Path, noisy_truth: str | Path | None = None) -> str:
    """The per-class table of what relabelling changed, the totals and the check; with ``noisy_truth``
    (a demo set's ``-noisy-truth.csv``) also the precision of the changes (:func:`relabel_precision`)."""
    out_dir = location(out_dir)
    changes = pd.read_csv(io.StringIO((out_dir / "changes.csv").read_text()))
    summary = json.loads((out_dir / "summary.json").read_text())
    lines = [f"{'class':24s} {'threshold':>9s} {'error':>6s} {'provided':>8s} {'added':>6s} {'removed':>7s}"]
    for r in changes.itertuples():
        lines.append(f"{r[1][:24]:24s} {r.threshold:9.3f} {r.error_rate:6.3f} {r.provided:8d} {r.added:6d} {r.removed:7d}")
    lines.append(f"{summary['excerpts']} excerpts: {summary['labels_added']} labels added, {summary['labels_removed']} removed, "
                 f"{summary['dropped']} excerpts dropped (no class left)")
    if "check" in summary:
        lines.append(_format_check(summary["check"]))
    if noisy_truth is not None:
        lines.append(_format_precision(relabel_precision(out_dir, noisy_truth)))
    return "\n".join(lines)


def _format_check(check: dict) -> str:
    if check["decision"] == "kept_provided":
        return f"check failed, provided labels kept (the thresholds above were not applied): {_failures(check)}"
    return (f"check passed: held-out lwlrap on the curated folds {check['heldout_lwlrap']:.3f}, chance {check['chance']:.3f} "
            f"(needs ≥ {check['chance'] + check['min_gain']:.3f}); {check['would_drop']:.1%} of the excerpts dropped "
            f"(at most {check['max_drop']:.0%})")


def _format_precision(p: dict) -> str:
    def share(x: float | None) -> str:
        return "-" if x is None else f"{x:.1%}"

    return (f"against the planted truth: {p['added']} labels added, {share(p['added_precision'])} of them true "
            f"(random additions: {share(p['added_random'])}); {p['removed']} removed, {share(p['removed_precision'])} "
            f"of them really absent (random removals: {share(p['removed_random'])})")


def read_noisy_truth(path: str | Path) -> dict[str, set[str]]:
    """A demo set's ``DATA-noisy-truth.csv`` (``fname, labels, true_labels, corrupted``) → clip id → true labels."""
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if rows and "true_labels" not in rows[0]:
        raise ValueError(f"{path}: no true_labels column; expected a demo set's -noisy-truth.csv")
    return {r["fname"]: {c.strip() for c in r["true_labels"].split(",") if c.strip()} for r in rows}


def relabel_precision(relabel_dir: str | Path, truth_csv: str | Path) -> dict:
    """How often relabelling's changes are right, against known true labels (the demo set's).

    ``added_precision``: share of the added labels that are true; ``removed_precision``: share of the
    removed labels (dropped excerpts included) that are really absent. ``added_random`` /
    ``removed_random``: the expected precision of the same numbers of changes at random, i.e. the
    share of true labels among the cells not provided, and of absent labels among the provided
    cells. A precision is None when nothing was changed in that direction."""
    truth = read_noisy_truth(truth_csv)
    tables = sorted((location(relabel_dir) / "relabeled").glob("split_*.parquet"))
    if not tables:
        raise FileNotFoundError(f"{relabel_dir}: no relabelled tables")
    n = {"added": 0, "added_true": 0, "removed": 0, "removed_absent": 0, "free": 0, "free_true": 0, "provided": 0, "provided_absent": 0}
    for path in tables:
        for r in pq.read_table(str(path), columns=["clip_id", "provided", "labels", "scores"]).to_pylist():
            if r["clip_id"] not in truth:
                raise ValueError(f"{truth_csv}: no true labels for noisy clip {r['clip_id']}")
            provided, new, true = set(r["provided"]), set(r["labels"]), truth[r["clip_id"]]
            n["added"] += len(new - provided)
            n["added_true"] += len((new - provided) & true)
            n["removed"] += len(provided - new)
            n["removed_absent"] += len(provided - new - true)
            n["free"] += len(r["scores"]) - len(provided)
            n["free_true"] += len(true - provided)
            n["provided"] += len(provided)
            n["provided_absent"] += len(provided - true)

    def ratio(a: str, b: str) -> float | None:
        return n[a] / n[b] if n[b] else None

    return {"added": n["added"], "added_precision": ratio("added_true", "added"), "added_random": ratio("free_true", "free"),
            "removed": n["removed"], "removed_precision": ratio("removed_absent", "removed"),
            "removed_random": ratio("provided_absent", "provided")}
