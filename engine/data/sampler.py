"""Length-grouped batches: little compute goes to padding, order stays random and resumable; optionally no
batch holds the same text twice."""
from __future__ import annotations

import numpy as np

from engine.data.args import text_roles_of


def row_texts(ds) -> list[tuple]:
    """The texts of each row of a (tokenized) dataset: its anchor, positive and negative columns, for
    ``LengthGroupedBatchSampler(texts=...)``; a missing value (None, "") is no text."""
    columns = [ds[c] for c in text_roles_of(ds.column_names)]
    return [tuple(t for t in row if t) for row in zip(*columns)] if columns else [()] * len(ds)


def no_duplicate_batches(rows: np.ndarray, texts, size: int) -> list[np.ndarray]:
    """Cut ``rows`` (in their order) into batches of at most ``size`` rows in which no text appears twice.

    First fit, the rule of sentence-transformers' NoDuplicatesBatchSampler: each row joins the oldest
    open batch that holds none of its texts (``texts[row]``, a set), else opens a new one. Returns the
    batches that filled, in the order they filled, then the short ones still open.
    """
    open_batches, full = [], []   # open: (rows, texts they hold)
    for row in rows:
        mine = texts[row]
        batch = next((b for b in open_batches if b[1].isdisjoint(mine)), None)
        if batch is None:
            batch = ([], set())
            open_batches.append(batch)
        batch[0].append(row)
        batch[1].update(mine)
        if len(batch[0]) == size:
            open_batches.remove(batch)
            full.append(np.array(batch[0], dtype=np.int64))
    return full + [np.array(b[0], dtype=np.int64) for b in open_batches]


class LengthGroupedBatchSampler:
    """Yields lists of row indices, one list per batch.

    Each epoch: shuffle all rows (``default_rng([seed, epoch])``), cut them into chunks of
    ``group_size`` rows, sort each chunk by length, cut chunks into global batches of
    ``batch_size * num_replicas`` rows, then shuffle the batch order (the batch holding the longest
    row goes first, so an out-of-memory error shows at once). Rank ``r`` gets the ``r``-th contiguous
    slice of every global batch; ``len()`` is the number of batches per epoch.

    ``texts`` (one collection of texts per row, e.g. its anchor, positive and negatives): no global
    batch holds the same text twice (``no_duplicate_batches`` cuts each sorted chunk; rows it could not
    place there move on to the next chunk). A text in more rows than there are batches leaves short
    batches, so ``len()`` is that epoch's count, which can differ by a batch or two between epochs.

    Resume: ``state_dict()`` holds the epoch and the batches already consumed; after
    ``load_state_dict()`` iteration skips those. ``set_epoch(e)`` with a new epoch starts it from 0.
    The batches are a pure function of (seed, epoch), so a resumed run sees the same ones.
    """

    def __init__(self, lengths, batch_size: int, seed: int = 0, shuffle: bool = True, drop_last: bool = False,
                 group_size: int | None = None, num_replicas: int = 1, rank: int = 0, texts=None):
        if batch_size < 1:
            raise ValueError(f"batch_size must be ≥ 1, got {batch_size}")
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank must be in [0, {num_replicas}), got {rank}")
        self.lengths = np.asarray(lengths, dtype=np.int64)
        self.batch_size, self.seed, self.shuffle, self.drop_last = batch_size, seed, shuffle, drop_last
        self.num_replicas, self.rank = num_replicas, rank
        self.global_batch = batch_size * num_replicas
        # ~50 batches per sorted chunk: enough to find similar lengths, small enough to stay random.
        group = group_size or self.global_batch * 50
        self.group_size = max(self.global_batch, group // self.global_batch * self.global_batch)
        self.epoch, self.consumed = 0, 0
        if texts is not None and len(texts) != len(self.lengths):
            raise ValueError(f"texts has {len(texts)} rows, lengths {len(self.lengths)}")
        self.texts = None if texts is None else [frozenset(t) for t in texts]
        self._planned = (None, None)   # ((seed, epoch), its global batches): no_duplicates plans cost a pass

    def __len__(self) -> int:
        n = len(self.lengths)
        if self.texts is not None:
            return len(self.global_batches())
        return n // self.global_batch if self.drop_last else -(-n // self.global_batch)

    def set_epoch(self, epoch: int) -> None:
        if epoch != self.epoch:
            self.epoch, self.consumed = int(epoch), 0

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "batches_consumed": self.consumed, "seed": self.seed}

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self.consumed = int(state["epoch"]), int(state["batches_consumed"])
        self.seed = int(state.get("seed", self.seed))

    def global_batches(self, epoch: int | None = None) -> list[np.ndarray]:
        """Every global batch of ``epoch`` (default: the current one), in order."""
        epoch = self.epoch if epoch is None else epoch
        if self.texts is not None and self._planned[0] == (self.seed, epoch):
            return list(self._planned[1])
        n = len(self.lengths)
        rng = np.random.default_rng([self.seed, epoch])
        order = rng.permutation(n) if self.shuffle else np.arange(n)
        batches, short = [], []
        for start in range(0, n, self.group_size):
            # a short batch left by a chunk (only the last, unless no_duplicates) joins the next chunk's rows
            chunk = np.concatenate(short + [order[start:start + self.group_size]])
            chunk = chunk[np.argsort(-self.lengths[chunk], kind="stable")]
            cut = self._cut(chunk)
            batches += [b for b in cut if len(b) == self.global_batch]
            short = [b for b in cut if len(b) < self.global_batch]
        if not self.drop_last:
            batches += short
        if self.shuffle and batches:
            batches = [batches[i] for i in rng.permutation(len(batches))]
            longest = max(range(len(batches)), key=lambda i: self.lengths[batches[i]].max())
            batches.insert(0, batches.pop(longest))
        if self.texts is not None:
            self._planned = ((self.seed, epoch), list(batches))
        return batches

    def _cut(self, rows: np.ndarray) -> list[np.ndarray]:
        """``rows`` (sorted by length) cut into global batches, in order; only the last ones may be short."""
        if self.texts is not None:
            return no_duplicate_batches(rows, self.texts, self.global_batch)
        return [rows[i:i + self.global_batch] for i in range(0, len(rows), self.global_batch)]

    def _shard(self, batch: np.ndarray) -> list[int]:
        if self.num_replicas == 1:
            return batch.tolist()
        if len(batch) < self.global_batch:   # last batch: repeat its rows so every rank gets the same size
            per = -(-len(batch) // self.num_replicas)
            batch = np.resize(batch, per * self.num_replicas)
        per = len(batch) // self.num_replicas
        return batch[self.rank * per:(self.rank + 1) * per].tolist()

    def __iter__(self):
        batches = self.global_batches()
        start = self.consumed if self.consumed < len(batches) else 0
        for i in range(start, len(batches)):
            self.consumed = i + 1
            yield self._shard(batches[i])
