"""Model and checkpoint files that hold no code: tensors, plain containers and JSON metadata.

A ``model.pt`` (one trained model, an ensemble member) is ``torch.save`` of::

    {"format": "ray_tagger.model/1", "weights": {name: tensor}, "meta": "<JSON text>"}

where the JSON holds what inference needs beside the weights: ``classes``, ``model_config``,
``features``, ``stats`` (normalisation), ``crop_s`` and the run's ``run/split/fold/R``. A training
checkpoint (``state.pt`` in each Ray Train checkpoint) holds the model, optimizer and SWA state
dicts, the generator's state (a byte tensor) and two integers. Both are read with
``torch.load(weights_only=True)``, whose unpickler accepts only tensors and plain containers: a
file that names any other Python object (a pickle that would run code on load) is refused with
:class:`ModelFileError` before anything in it is executed.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

from .storage import location

MODEL_FORMAT = "ray_tagger.model/1"


class ModelFileError(ValueError):
    """A file that is not a ray_tagger model or checkpoint of the code-free form; one line."""


def _load(path: str | Path, what: str):
    import torch

    try:
        return torch.load(io.BytesIO(location(path).read_bytes()), weights_only=True, map_location="cpu")
    except FileNotFoundError:
        raise
    except Exception as e:  # UnpicklingError for foreign objects, RuntimeError/struct.error for junk
        raise ModelFileError(f"{path}: refused, not a ray_tagger {what} of tensors and plain data "
                             f"(nothing in it was run; {_reason(e)})") from None


def _reason(e: Exception) -> str:
    """The line of torch's message that names what was refused (e.g. ``GLOBAL posix.system``)."""
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    named = [line for line in lines if "GLOBAL" in line or "Unsupported" in line]
    return (named or lines or [type(e).__name__])[0][:160]


def save_model(path: str | Path, weights: dict, meta: dict) -> None:
    """``weights`` (a state dict of tensors) and ``meta`` (JSON-serialisable) → ``path``."""
    import torch

    with location(path).open("wb") as f:
        torch.save({"format": MODEL_FORMAT, "weights": weights, "meta": json.dumps(meta, default=_plain)}, f)


def _plain(value):
    """numpy scalars in metadata → Python numbers (anything else is a bug of the caller)."""
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"model metadata must be JSON data, not {type(value).__name__}")


def load_model(path: str | Path) -> tuple[dict, dict]:
    """``-> (weights, meta)`` of a model file written by :func:`save_model`; :class:`ModelFileError` otherwise."""
    blob = _load(path, "model file")
    if not isinstance(blob, dict) or blob.get("format") != MODEL_FORMAT or not isinstance(blob.get("meta"), str):
        raise ModelFileError(f"{path}: not a ray_tagger model file (format {MODEL_FORMAT!r} expected; "
                             "models saved by earlier ray_tagger versions must be trained again)")
    try:
        meta = json.loads(blob["meta"])
    except json.JSONDecodeError as e:
        raise ModelFileError(f"{path}: its metadata is not JSON ({e})") from None
    missing = {"classes", "model_config", "features", "stats"} - set(meta)
    if missing:
        raise ModelFileError(f"{path}: its metadata lacks {sorted(missing)}")
    return blob["weights"], meta


def save_checkpoint(path: str | Path, state: dict) -> None:
    """A training state (state dicts, generator state, integers) → ``path``."""
    import torch

    with location(path).open("wb") as f:
        torch.save(state, f)


def load_checkpoint(path: str | Path) -> dict:
    """A training state written by :func:`save_checkpoint`, loaded without running code."""
    blob = _load(path, "checkpoint")
    if not isinstance(blob, dict) or not {"model", "optimizer", "swa", "generator", "iteration", "epoch"} <= set(blob):
        raise ModelFileError(f"{path}: not a ray_tagger training checkpoint")
    return blob
