"""Scores of whole clips from models trained on excerpts (``stream.crop_s``).

A model trained on crops of W frames never saw a longer input; its GRU summary of a 15 s clip
would come from a state it was not trained to read. Such a model scores a clip longer than W
as the mean of its scores over windows of W frames, half a window apart, the last one ending
at the clip's end. Models trained on whole clips (the report) score whole clips.
"""

from __future__ import annotations

import numpy as np
import torch

from .batching import collate


def window_starts(frames: int, window: int | None) -> list[int]:
    """Start frames of the windows over a clip of ``frames`` frames (``[0]`` when it fits one window)."""
    if window is None or frames <= window:
        return [0]
    hop = max(window // 2, 1)
    starts = list(range(0, frames - window + 1, hop))
    if starts[-1] + window < frames:
        starts.append(frames - window)
    return starts


def window_frames(crop_s: float | None, features) -> int | None:
    """The window in frames of a model trained on ``crop_s``-second crops (None: whole clips);
    ``features`` is the model's :class:`~ray_tagger.features.FeatureConfig`."""
    return None if crop_s is None else features.num_frames(int(round(crop_s * features.sample_rate)))


def score_crops(models: list, crops: list[np.ndarray], device: torch.device | str = "cpu", batch_size: int = 16) -> np.ndarray:
    """``P arrays (F, N_p) -> (P, M, K)`` eval-mode scores of every :class:`~ray_tagger.model.CRNN` for each
    input as it is, computed in length-sorted batches (little padding) without autograd."""
    order = sorted(range(len(crops)), key=lambda p: crops[p].shape[1])
    out = np.zeros((len(crops), len(models), models[0].config.n_classes), np.float32)
    for m in models:
        m.eval()
    with torch.no_grad():
        for i in range(0, len(order), batch_size):
            chosen = order[i: i + batch_size]
            x, lengths, _ = collate([crops[p] for p in chosen], np.zeros((len(chosen), 1), np.float32))
            x, lengths = x.to(device), lengths.to(device)
            out[chosen] = np.stack([model(x, lengths).float().cpu().numpy() for model in models], axis=1)  # (b, M, K)
    return out


def score_features(models: list, feats: list[np.ndarray], window: int | None,
                   device: torch.device | str = "cpu", batch_size: int = 16) -> np.ndarray:
    """``B arrays (F, N_b) -> (B, M, K)`` eval-mode scores of every :class:`~ray_tagger.model.CRNN`, each clip the mean over its
    windows (see module doc)."""
    pieces = [(b, s) for b, f in enumerate(feats) for s in window_starts(f.shape[1], window)]
    span = [min(f.shape[1], window or f.shape[1]) for f in feats]
    out = score_crops(models, [feats[b][:, s: s + span[b]] for b, s in pieces], device, batch_size)
    sums, counts = np.zeros((len(feats), len(models), models[0].config.n_classes)), np.zeros(len(feats))
    for (b, _), row in zip(pieces, out):
        sums[b] += row
        counts[b] += 1
    return (sums / np.maximum(counts, 1)[:, None, None]).astype(np.float32)


def second_starts(frames: int, window: int, frames_per_second: float) -> list[int]:
    """Start frames of one window per second of a clip of ``frames`` frames: the window centred on the
    middle of second i, moved inside the clip where it would overhang (the whole clip when shorter)."""
    seconds = max(1, int(np.ceil((frames - 1) / frames_per_second)))  # a centred STFT has 1 + T // hop frames
    last = max(frames - window, 0)
    return [int(min(max(round((i + 0.5) * frames_per_second - window / 2), 0), last)) for i in range(seconds)]


def score_seconds(models: list, feat: np.ndarray, window: int, frames_per_second: float,
                  device: torch.device | str = "cpu") -> np.ndarray:
    """``(F, N) -> (S, M, K)``: per-second scores of one clip, second i scored on the window of
    :func:`second_starts` (S = the clip's duration in whole seconds, rounded up)."""
    starts = second_starts(feat.shape[1], window, frames_per_second)
    return score_crops(models, [feat[:, s: s + window] for s in starts], device)
