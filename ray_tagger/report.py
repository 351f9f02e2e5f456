"""What a finished ``run`` shows a person: the results table and three plots.

- ``results.json`` / the printed table: chance, the classical baselines (:mod:`ray_tagger.baseline`),
  every final model, the ensembles by R and all.
- ``plots/training_curves.png``: loss (and held-out lwlrap) of every relabelling and final run.
- ``plots/per_class_lwlrap.png``: per-class lwlrap of the final ensemble on the test clips.
- ``plots/relabel_changes.png``: labels added and removed per class, excerpts dropped.
"""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from .metrics import lwlrap

log = logging.getLogger(__name__)

CHANCE_DRAWS = 50


def chance_lwlrap(truth: np.ndarray, seed: int = 0) -> float:
    """Mean lwlrap of uniformly random scores over :data:`CHANCE_DRAWS` seeded draws; ``truth (N, K)``.
    The rows are put in a fixed order first, so the figure does not depend on the order in which
    the clips' predictions arrived."""
    truth = np.asarray(truth)
    truth = truth[np.lexsort(truth.T[::-1])] if truth.ndim == 2 and len(truth) else truth
    rng = np.random.default_rng(seed)
    return float(np.mean([lwlrap(truth, rng.random(truth.shape))[0] for _ in range(CHANCE_DRAWS)]))


def results_table(truth: np.ndarray, scores: np.ndarray, runs: list[dict],
                  baselines: dict[str, np.ndarray] | None = None) -> list[dict]:
    """Rows ``{name, models, lwlrap}``: chance, each baseline, each member, the ensemble of each R, all members.

    ``truth (N, K)``, ``scores (N, M, K)`` per member, ``runs`` M dicts with ``name`` and ``R``,
    ``baselines`` name → ``(N, K)`` scores of a model that is not a member (``models`` 0, like chance).
    """
    rows = [{"name": "chance (random scores)", "models": 0, "lwlrap": chance_lwlrap(truth)}]
    rows += [{"name": name, "models": 0, "lwlrap": lwlrap(truth, s)[0]} for name, s in (baselines or {}).items()]
    for m, run in enumerate(runs):
        rows.append({"name": f"single model {run['name']}", "models": 1, "lwlrap": lwlrap(truth, scores[:, m])[0]})
    for R in sorted({r["R"] for r in runs}):
        idx = [m for m, r in enumerate(runs) if r["R"] == R]
        if len(idx) > 1:
            rows.append({"name": f"ensemble R={R}", "models": len(idx), "lwlrap": lwlrap(truth, scores[:, idx].mean(1))[0]})
    rows.append({"name": "ensemble (all)", "models": len(runs), "lwlrap": lwlrap(truth, scores.mean(1))[0]})
    return rows


def format_table(rows: list[dict]) -> str:
    """The rows of :func:`results_table`, the single models folded into the best one, shown after the
    rows without members (chance, baselines) and before the ensembles."""
    singles = [r for r in rows if r["models"] == 1]
    shown = [r for r in rows if r["models"] != 1]
    if singles:
        best = max(singles, key=lambda r: r["lwlrap"])
        at = next((i for i, r in enumerate(shown) if r["models"] > 1), len(shown))
        shown.insert(at, {**best, "name": f"best single model ({best['name'].split()[-1]}, of {len(singles)})"})
    width = max(len(r["name"]) for r in shown)
    lines = [f"{'':{width}s}  models  test lwlrap", *(f"{r['name']:{width}s}  {r['models']:6d}  {r['lwlrap']:.4f}" for r in shown)]
    return "\n".join(lines)


def _metrics(run_dir: Path) -> pd.DataFrame:
    path = run_dir / "metrics.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []
    return pd.DataFrame([r for r in rows if "loss" in r])


def plot_training_curves(stage_dirs: dict[str, Path], out: Path) -> None:
    """One panel per stage: training loss of every run; held-out lwlrap on a second axis when reported."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(stage_dirs), figsize=(6.5 * len(stage_dirs), 4.2), squeeze=False)
    for ax, (stage, root) in zip(axes[0], stage_dirs.items()):
        twin = None
        for run in sorted((root / "runs").glob("*")):
            m = _metrics(run)
            if m.empty:
                continue
            line, = ax.plot(m.iteration, m.loss, lw=1, label=run.name)
            if "val_lwlrap" in m and m.val_lwlrap.notna().any():
                twin = twin or ax.twinx()
                v = m.dropna(subset=["val_lwlrap"])
                twin.plot(v.iteration, v.val_lwlrap, ls="--", marker=".", color=line.get_color())
        ax.set(title=f"{stage} runs", xlabel="iteration", ylabel="training loss (BCE, summed over classes)")
        if twin is not None:
            twin.set_ylabel("held-out lwlrap (dashed)")
        ax.legend(fontsize=6, ncol=3)
    fig.tight_layout()
    _save_figure(fig, out)
    plt.close(fig)


def plot_per_class(per_class: dict[str, float], counts: dict[str, int], out: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = sorted(per_class, key=lambda c: per_class[c])
    fig, ax = plt.subplots(figsize=(7, 0.25 * len(names) + 1.5))
    ax.barh(range(len(names)), [per_class[c] for c in names], color="tab:blue")
    ax.set_yticks(range(len(names)), [f"{c} ({counts.get(c, 0)})" for c in names], fontsize=7)
    ax.set(xlim=(0, 1), xlabel="lwlrap (test labels in brackets)", title=title)
    fig.tight_layout()
    _save_figure(fig, out)
    plt.close(fig)


def plot_relabel_changes(relabel_dir: Path, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    changes = pd.read_csv(io.StringIO((relabel_dir / "changes.csv").read_text()))
    summary = json.loads((relabel_dir / "summary.json").read_text())
    y = np.arange(len(changes))
    fig, ax = plt.subplots(figsize=(7, 0.25 * len(changes) + 1.5))
    ax.barh(y, changes.kept, color="0.75", label="provided, kept")
    ax.barh(y, -changes.removed, color="tab:red", label="provided, removed")
    ax.barh(y, changes.added, left=changes.kept, color="tab:green", label="added")
    ax.set_yticks(y, changes["class"], fontsize=7)
    ax.axvline(0, color="k", lw=0.5)
    ax.set(xlabel="noisy excerpts (all splits)",
           title=f"relabelling: {summary['labels_added']} added, {summary['labels_removed']} removed, "
                 f"{summary['dropped']} of {summary['excerpts']} excerpts dropped")
    ax.legend(fontsize=7)
    fig.tight_layout()
    _save_figure(fig, out)
    plt.close(fig)


def _save_figure(fig, out) -> None:
    """A figure as PNG into ``out`` (a local path or an object-store location)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    out.write_bytes(buffer.getvalue())
