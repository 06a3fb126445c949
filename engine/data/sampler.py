"""Length-grouped batches: little compute goes to padding, order stays random and resumable."""
from __future__ import annotations

import numpy as np


class LengthGroupedBatchSampler:
    """Yields lists of row indices, one list per batch.

    Each epoch: shuffle all rows (``default_rng([seed, epoch])``), cut them into chunks of
    ``group_size`` rows, sort each chunk by length, cut chunks into global batches of
    ``batch_size * num_replicas`` rows, then shuffle the batch order (the batch holding the longest
    row goes first, so an out-of-memory error shows at once). Rank ``r`` gets the ``r``-th contiguous
    slice of every global batch; ``len()`` is the number of batches per epoch.

    Resume: ``state_dict()`` holds the epoch and the batches already consumed; after
    ``load_state_dict()`` iteration skips those. ``set_epoch(e)`` with a new epoch starts it from 0.
    """

    def __init__(self, lengths, batch_size: int, seed: int = 0, shuffle: bool = True, drop_last: bool = False,
                 group_size: int | None = None, num_replicas: int = 1, rank: int = 0):
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

    def __len__(self) -> int:
        n = len(self.lengths)
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
        n = len(self.lengths)
        rng = np.random.default_rng([self.seed, epoch])
        order = rng.permutation(n) if self.shuffle else np.arange(n)
        batches = []
        for start in range(0, n, self.group_size):
            chunk = order[start:start + self.group_size]
            chunk = chunk[np.argsort(-self.lengths[chunk], kind="stable")]
            batches += [chunk[i:i + self.global_batch] for i in range(0, len(chunk), self.global_batch)]
        short = [b for b in batches if len(b) < self.global_batch]
        batches = [b for b in batches if len(b) == self.global_batch]
        if short and not self.drop_last:   # only the last chunk can end short; merge its remainders
            rest = np.concatenate(short)
            batches += [rest[i:i + self.global_batch] for i in range(0, len(rest), self.global_batch)]
        if self.shuffle and batches:
            batches = [batches[i] for i in rng.permutation(len(batches))]
            longest = max(range(len(batches)), key=lambda i: self.lengths[batches[i]].max())
            batches.insert(0, batches.pop(longest))
        return batches

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
