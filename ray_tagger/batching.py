"""The report's batch rules (§3.2), applied to a stream of examples on each Train worker.

Batches of 16 in which (1) no example is padded by more than 20 % — the longest is at most
the shortest / 0.8 — and (2) no example's label set is a subset of another's (which also
rules out equal sets). Examples wait in a buffer; once it is full, the oldest example seeds
a batch, filled from the 1.25-ratio length window around the seed that holds the most
buffered examples, nearest lengths first, keeping rule 2. A seed that cannot be completed
goes to the back of the buffer and waits for the next arrival (deferred); after
``max_deferrals`` failures it is dropped. Both counts are kept, so the loss is measured:
on 20,000 simulated FSD-like examples (0.3–30 s log-uniform, 1–3 of 80 labels) 0.7 % are
dropped (``tests/test_batching.py`` prints the figures)."""

from __future__ import annotations

import math
from bisect import bisect_left
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator

import numpy as np
import torch


@dataclass(frozen=True)
class BatchConfig:
    """Batch composition; defaults are the report's."""

    batch_size: int = 16
    """Examples per batch."""
    max_padding: float = 0.2
    """No example is padded by more than this fraction: max_len ≤ min_len / (1 − max_padding)."""
    buffer_size: int = 256
    """Examples held back while looking for compatible partners."""
    max_deferrals: int = 8
    """A seed that fails this many times is dropped."""
    label_rule: bool = True
    """Rule 2 (no label set a subset of another's); off for the un-augmented BatchNorm refresh."""


@dataclass
class Example:
    """One training example: ``length`` (frames or samples), its class ids, and any payload."""

    length: int
    labels: frozenset[int]
    data: Any = None
    deferrals: int = field(default=0, compare=False)


@dataclass
class ComposerStats:
    """Counts of what the composer did with the examples it saw."""

    seen: int = 0
    batched: int = 0
    deferrals: int = 0
    dropped: int = 0
    left_at_end: int = 0

    @property
    def dropped_fraction(self) -> float:
        return (self.dropped + self.left_at_end) / max(self.seen, 1)


def labels_compatible(a: frozenset[int], b: frozenset[int]) -> bool:
    """Rule 2: neither label set contains the other."""
    return not (a <= b or b <= a)


class BatchComposer:
    """Groups an iterable of :class:`Example` into lists of ``batch_size`` obeying both rules."""

    def __init__(self, config: BatchConfig = BatchConfig()):
        self.config = config
        self.stats = ComposerStats()
        self._ratio = 1.0 / (1.0 - config.max_padding)

    def __call__(self, examples: Iterable[Example]) -> Iterator[list[Example]]:
        buffer: deque[Example] = deque()
        for example in examples:
            self.stats.seen += 1
            buffer.append(example)
            # one failed attempt per arrival at most: a deferred seed waits for new partners
            while len(buffer) >= self.config.buffer_size and (batch := self._try_seed(buffer)) is not None:
                yield batch
        while len(buffer) >= self.config.batch_size:
            if (batch := self._try_seed(buffer)) is not None:
                yield batch
        self.stats.left_at_end += len(buffer)

    def _try_seed(self, buffer: deque[Example]) -> list[Example] | None:
        seed = buffer[0]
        batch = self._fill(seed, list(buffer)[1:])
        if len(batch) == self.config.batch_size:
            chosen = {id(e) for e in batch}
            kept = [e for e in buffer if id(e) not in chosen]
            buffer.clear()
            buffer.extend(kept)
            self.stats.batched += len(batch)
            return batch
        buffer.popleft()
        seed.deferrals += 1
        self.stats.deferrals += 1
        if seed.deferrals > self.config.max_deferrals:
            self.stats.dropped += 1
        else:
            buffer.append(seed)
        return None

    def _fill(self, seed: Example, others: list[Example]) -> list[Example]:
        """Fill from the length window [low, low·ratio] around the seed that holds the most examples."""
        ratio = self._ratio
        near = sorted((e for e in others if seed.length / ratio <= e.length <= seed.length * ratio), key=lambda e: e.length)
        lengths = [e.length for e in near]
        best, best_count, j = seed.length / ratio, -1, 0
        for i, low in enumerate([seed.length / ratio] + lengths):
            low = max(low, seed.length / ratio)
            if low > seed.length:
                break
            while j < len(lengths) and lengths[j] <= low * ratio:
                j += 1
            count = j - bisect_left(lengths, low)
            if count > best_count:
                best, best_count = low, count
        window = [e for e in near if best <= e.length <= best * ratio]
        window.sort(key=lambda e: abs(math.log(max(e.length, 1) / max(seed.length, 1))))
        batch = [seed]
        for e in window:
            if not self.config.label_rule or all(labels_compatible(e.labels, b.labels) for b in batch):
                batch.append(e)
                if len(batch) == self.config.batch_size:
                    break
        return batch


def obeys_rules(batch: list[Example], config: BatchConfig = BatchConfig()) -> bool:
    """Whether a batch satisfies both rules (used by tests and as a guard)."""
    lengths = [e.length for e in batch]
    if max(lengths) > min(lengths) / (1.0 - config.max_padding) + 1e-9:
        return False
    return all(labels_compatible(a.labels, b.labels) for i, a in enumerate(batch) for b in batch[i + 1 :])


def collate(features: list[np.ndarray | torch.Tensor], targets: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pad log-mel examples: ``[(F, N_b)] * B, (B, K) -> (B, 1, F, N_max), (B,) lengths, (B, K)``."""
    lengths = torch.tensor([f.shape[-1] for f in features], dtype=torch.long)
    n_bins, n_max = features[0].shape[0], int(lengths.max())
    x = torch.zeros(len(features), 1, n_bins, n_max, dtype=torch.float32)
    for b, f in enumerate(features):
        x[b, 0, :, : f.shape[-1]] = torch.as_tensor(f, dtype=torch.float32)
    return x, lengths, torch.as_tensor(np.asarray(targets), dtype=torch.float32)
