"""Several datasets in one run: load each with its own column mapping, and order their batches so that
every batch comes from one dataset (in-batch negatives never mix tasks).

The order is a pure function of the seed and the epoch, like the one-dataset sampler's, so a resumed
run continues the same batch sequence:
- ``proportional``: every batch of every dataset once per epoch, in a shuffled order, so datasets are
  drawn in proportion to their sizes (sentence-transformers' ProportionalBatchSampler);
- ``round-robin``: one batch of each dataset in turn; a dataset that runs out leaves the rotation and the
  others go on until every row was used once (sentence-transformers' RoundRobinBatchSampler stops at
  the first dataset that runs out instead, leaving the larger datasets' tails unused).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from engine.data.args import DatasetArgs
from engine.data.labels import LabelInfo
from engine.data.loading import load_dataset
from engine.data.validation import Report


class MixedBatchSampler:
    """Yields ``(dataset, indices)``: the position of the dataset in ``samplers`` and a batch of its row
    indices (the dataset's own sampler cut it: length grouping, ranks). One dataset yields its sampler's
    batches in its order, so a run on one dataset is what it was before.

    State: ``state_dict()`` holds the epoch and the batches consumed (the one-dataset sampler's keys);
    ``load_state_dict()`` makes iteration skip those. ``set_epoch(e)`` with a new epoch starts it from 0.
    """

    def __init__(self, samplers: list, seed: int = 0, sampling: str = "proportional"):
        self.samplers, self.seed, self.sampling = list(samplers), seed, sampling
        self.epoch, self.consumed = 0, 0
        self._start_children()   # the datasets' seeds follow this one's (``dataset_seed``)

    def __len__(self) -> int:
        return sum(len(s) for s in self.samplers)

    def set_epoch(self, epoch: int) -> None:
        if epoch != self.epoch:
            self.epoch, self.consumed = int(epoch), 0
            self._start_children()

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "batches_consumed": self.consumed, "seed": self.seed}

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self.consumed = int(state["epoch"]), int(state["batches_consumed"])
        self.seed = int(state.get("seed", self.seed))
        self._start_children()

    def _start_children(self, consumed=None) -> None:
        """Every dataset's sampler at this epoch (their batch counts can depend on it), from its batch
        ``consumed[d]`` (default 0)."""
        for d, sampler in enumerate(self.samplers):
            sampler.load_state_dict({"epoch": self.epoch, "seed": dataset_seed(self.seed, d),
                                     "batches_consumed": 0 if consumed is None else int(consumed[d])})

    def order(self) -> np.ndarray:
        """The dataset of each batch of this epoch, in order."""
        counts = [len(s) for s in self.samplers]
        if self.sampling == "round-robin":
            # turn t takes batch t of every dataset that still has one: d0, d1, d2, d0, d1, d0, ...
            turns = [[d for d, n in enumerate(counts) if n > t] for t in range(max(counts, default=0))]
            return np.array([d for turn in turns for d in turn], dtype=np.int64)
        order = np.repeat(np.arange(len(counts)), counts)
        if len(counts) == 1:
            return order
        # its own stream: [seed, epoch] already shuffles the rows in the datasets' samplers
        return np.random.default_rng([self.seed, self.epoch, len(counts)]).permutation(order)

    def __iter__(self):
        self._start_children()
        order = self.order()
        start = self.consumed if self.consumed < len(order) else 0
        self._start_children(np.bincount(order[:start], minlength=len(self.samplers)))   # each goes on from there
        batches = [iter(s) for s in self.samplers]
        for i in range(start, len(order)):
            self.consumed = i + 1
            yield int(order[i]), next(batches[order[i]])


def dataset_seed(seed: int, position: int) -> int:
    """The seed of the sampler of the dataset at ``position``: each dataset shuffles its own way."""
    return seed + 1_000_003 * position


@dataclass
class MixedData:
    """Several loaded datasets: {name: split} for training and validation (a name without validation
    rows is left out of ``validation``) and what each dataset's loading found."""
    train: dict
    validation: dict
    label_info: LabelInfo
    report: Report
    loaded: dict = field(default_factory=dict, repr=False)   # name → LoadedData

    @property
    def splits(self) -> dict:
        return {f"{name}/{split}": ds for name, data in self.loaded.items() for split, ds in data.splits.items()}


def load_datasets(args: DatasetArgs, **kw):
    """``load_dataset`` for a run: one dataset as before (LoadedData), several as MixedData, each loaded
    with its own mapping (its errors name its file and column)."""
    if not args.several:
        return load_dataset(args, **kw)
    loaded = {name: load_dataset(one, **kw) for name, _, one in args.per_dataset()}
    first = next(iter(loaded.values()))
    return MixedData(train={n: d.train for n, d in loaded.items()},
                     validation={n: d.validation for n, d in loaded.items() if d.validation is not None},
                     label_info=first.label_info, loaded=loaded,
                     report=Report(findings=[f for d in loaded.values() for f in d.report.findings]))
