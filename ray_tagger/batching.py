"""The report's batch rules (§3.2), applied to a stream of examples on each Train worker.

Batches of 16 in which (1) no example is padded by more than 20 % — the longest is at most
the shortest / 0.8 — and (2) no example's label set is a subset of another's (which also
rules out equal sets). Examples wait in a buffer; once it is full, the oldest example seeds
a batch, filled from the 1.25-ratio length window around the seed that holds the most
buffered examples, nearest lengths first, keeping rule 2. A seed that cannot be completed
goes to the back of the buffer and waits for the next arrival (deferred); after
``max_deferrals`` failures it is dropped. Both counts are kept, so the loss is measured:
on 20,000 simulated FSD-like examples (0.3–30 s log-uniform, 1–3 of 80 labels) 0.7 % are
dropped (``tests/test_batching.py`` prints the figures). On small data sets the buffer can
hold thousands of examples that wait for partners that rarely come (few distinct clips per
length window, R identical copies, few classes): the composer reports how many wait
(``buffered``, ``buffered_examples`` in ``metrics.jsonl``), and its search is vectorised so
that a large buffer costs little time."""

from __future__ import annotations

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


class _Buffer:
    """The composer's waiting examples as arrays, so that a seed's search costs a few vector
    operations instead of a Python loop over the buffer (which reaches thousands of examples
    when the label rule starves some label sets: see docs/BENCHMARKS.md).

    Slots hold examples; ``seq`` orders them (the buffer's queue order: a deferred seed gets a
    new, largest number); label sets are bit masks, one row of 64-bit words per example.
    """

    def __init__(self) -> None:
        self.examples: list[Example | None] = []
        self.lengths = np.zeros(0, np.int64)
        self.seq = np.zeros(0, np.int64)
        self.alive = np.zeros(0, bool)
        self.masks = np.zeros((0, 1), np.uint64)
        self.next_seq = 0
        self.count = 0

    def __len__(self) -> int:
        return self.count

    def append(self, example: Example) -> None:
        n = len(self.examples)
        if n == len(self.lengths):
            self._grow(max(64, 2 * n))
        labels = [int(c) for c in example.labels]
        if labels and min(labels) < 0:
            raise ValueError(f"class ids must be non-negative, got {sorted(labels)}")
        words = max(labels, default=0) // 64 + 1
        if words > self.masks.shape[1]:
            self.masks = np.concatenate([self.masks, np.zeros((len(self.masks), words - self.masks.shape[1]), np.uint64)], 1)
        row = np.zeros(self.masks.shape[1], np.uint64)
        for c in labels:
            row[c // 64] |= np.uint64(1) << np.uint64(c % 64)
        self.examples.append(example)
        self.lengths[n], self.seq[n], self.alive[n], self.masks[n] = max(int(example.length), 0), self.next_seq, True, row
        self.next_seq += 1
        self.count += 1

    def _grow(self, capacity: int) -> None:
        extra = capacity - len(self.lengths)
        self.lengths = np.concatenate([self.lengths, np.zeros(extra, np.int64)])
        self.seq = np.concatenate([self.seq, np.zeros(extra, np.int64)])
        self.alive = np.concatenate([self.alive, np.zeros(extra, bool)])
        self.masks = np.concatenate([self.masks, np.zeros((extra, self.masks.shape[1]), np.uint64)])

    def oldest(self) -> int:
        """The slot at the front of the queue."""
        n = len(self.examples)
        return int(np.flatnonzero(self.alive[:n])[np.argmin(self.seq[:n][self.alive[:n]])])

    def to_back(self, slot: int) -> None:
        self.seq[slot] = self.next_seq
        self.next_seq += 1

    def remove(self, slots) -> None:
        for slot in slots:
            self.alive[slot], self.examples[slot] = False, None
        self.count -= len(slots)
        n = len(self.examples)
        if n > 1024 and self.count < n // 2:  # compact: keep the live slots, in slot order
            keep = np.flatnonzero(self.alive[:n])
            self.examples = [self.examples[i] for i in keep]
            m = len(keep)
            self.lengths[:m], self.seq[:m], self.masks[:m] = self.lengths[keep], self.seq[keep], self.masks[keep]
            self.alive[:m], self.alive[m:] = True, False


class BatchComposer:
    """Groups an iterable of :class:`Example` into lists of ``batch_size`` obeying both rules.

    Class ids (the labels) are non-negative integers. ``stats`` counts what happened to the
    examples seen so far; ``buffered`` is how many wait in the buffer now.
    """

    def __init__(self, config: BatchConfig = BatchConfig()):
        self.config = config
        self.stats = ComposerStats()
        self._ratio = 1.0 / (1.0 - config.max_padding)
        self._buffer = _Buffer()

    @property
    def buffered(self) -> int:
        """Examples waiting in the buffer (seen, not yet batched, dropped or left at the end)."""
        return len(self._buffer)

    def __call__(self, examples: Iterable[Example]) -> Iterator[list[Example]]:
        buffer = self._buffer = _Buffer()
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

    def _try_seed(self, buffer: _Buffer) -> list[Example] | None:
        seed = buffer.oldest()
        slots = self._fill(buffer, seed)
        if len(slots) == self.config.batch_size:
            batch = [buffer.examples[i] for i in slots]
            buffer.remove(slots)
            self.stats.batched += len(batch)
            return batch
        example = buffer.examples[seed]
        example.deferrals += 1
        self.stats.deferrals += 1
        if example.deferrals > self.config.max_deferrals:
            self.stats.dropped += 1
            buffer.remove([seed])
        else:
            buffer.to_back(seed)
        return None

    def _fill(self, buffer: _Buffer, seed: int) -> list[int]:
        """Slots of a batch for ``seed``: filled from the length window [low, low·ratio] around the
        seed that holds the most examples, nearest length ratio first (ties in queue order),
        each kept only if no label set in the batch contains another."""
        ratio, n = self._ratio, len(buffer.examples)
        s = int(buffer.lengths[seed])
        lengths_all, alive = buffer.lengths[:n], buffer.alive[:n].copy()
        alive[seed] = False
        near = np.flatnonzero(alive & (lengths_all >= s / ratio) & (lengths_all <= s * ratio))
        near = near[np.lexsort((buffer.seq[near], lengths_all[near]))]  # by length, then queue order
        lengths = lengths_all[near].astype(np.float64)
        # windows start at the seed's lower bound or at a buffered length, up to the seed's length
        lows = np.maximum(np.concatenate([[s / ratio], lengths]), s / ratio)
        lows = lows[lows <= s]
        counts = np.searchsorted(lengths, lows * ratio, side="right") - np.searchsorted(lengths, lows, side="left")
        best = lows[int(np.argmax(counts))]
        window = near[(lengths >= best) & (lengths <= best * ratio)]
        w_len = np.maximum(lengths_all[window], 1).astype(np.float64)
        s1 = float(max(s, 1))
        distance = np.maximum(w_len, s1) / np.minimum(w_len, s1)  # exp|log(length / seed length)|
        window = window[np.argsort(distance, kind="stable")]
        want = self.config.batch_size - 1
        if not self.config.label_rule:
            return [seed] + window[:want].tolist()
        masks = buffer.masks[window]
        ok = np.ones(len(window), bool)
        batch, start = [seed], 0

        def exclude(slot: int) -> None:
            m = buffer.masks[slot]
            inside = ((masks & ~m) == 0).all(axis=1)   # candidate ⊆ member
            contains = ((m & ~masks) == 0).all(axis=1)  # member ⊆ candidate
            ok[inside | contains] = False

        exclude(seed)
        while len(batch) <= want:
            free = np.flatnonzero(ok[start:])
            if len(free) == 0:
                break
            k = start + int(free[0])
            batch.append(int(window[k]))
            ok[k], start = False, k + 1
            exclude(batch[-1])
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
    view = x.numpy()  # numpy copies a read-only array (Arrow's zero-copy blocks) in; torch.as_tensor warned on each
    for b, f in enumerate(features):
        if isinstance(f, torch.Tensor):
            x[b, 0, :, : f.shape[-1]] = f
        else:
            view[b, 0, :, : f.shape[-1]] = f
    return x, lengths, torch.as_tensor(np.asarray(targets), dtype=torch.float32)
