"""``ray-tagger ensemble``: the final models of report §4.2, trained concurrently.

One run per relabelled split and curated oversampling factor R, on all data of the split (no
held-out fold: SWA needs none), with the relabelled noisy labels. The ensemble averages the
members' scores. Output folder: ``runs/s{split}_R{R}/`` and ``ensemble.json`` (members, their
split and R, and the relabelling they used) that ``predict`` and ``tag`` read.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from .config import SystemConfig, TrainJobConfig
from .runs import RunSpec, run_dir, train_many
from .storage import location
from .train import Placement

log = logging.getLogger(__name__)


def relabeled_table(relabel_dir: str | Path, split: int) -> Path:
    """The relabelled excerpt table of ``split`` in a ``relabel`` output folder."""
    path = location(relabel_dir) / "relabeled" / f"split_{split}.parquet"
    if not path.is_file():
        raise FileNotFoundError(f"{relabel_dir}: no relabelled table for split {split} ({path.name}); run 'ray-tagger relabel' first")
    return path


def ensemble_specs(system: SystemConfig, relabel_dir: str | Path) -> list[RunSpec]:
    return [RunSpec(f"s{s}_R{r}", s, None, r, str(relabeled_table(relabel_dir, s)))
            for r in system.final_R for s in system.final_splits]


def ensemble(
    shards_dir: str | Path,
    out_dir: str | Path,
    relabel_dir: str | Path,
    job: TrainJobConfig,
    system: SystemConfig = SystemConfig(),
    placement: Placement = Placement(),
    concurrency: int | None = None,
) -> dict:
    """Train every final model not yet trained; write and return ``ensemble.json``'s content."""
    out_dir = location(out_dir)
    specs = ensemble_specs(system, relabel_dir)
    summaries = train_many(shards_dir, out_dir, job, specs, placement, concurrency, stage="ensemble")
    info = {
        "members": [str((run_dir(out_dir, s) / "model.pt").relative_to(out_dir)) for s in specs],
        "runs": [{"name": s.name, "split": s.split, "R": s.R, "started": su["started"], "finished": su["finished"]}
                 for s, su in zip(specs, summaries)],
        "relabel_dir": str(location(relabel_dir)),
        "shards": str(location(shards_dir)),
    }
    (out_dir / "ensemble.json").write_text(json.dumps(info, indent=1))
    return info
