"""--batch-size auto: the largest batch whose training step fits a memory budget, found by measuring.

A formula (engine/models/memory.py) can only guess what MLX allocates; here the run's own step (the
same loss, compile setting, clipping and AdamW) runs a few times on the longest rows of the data at
growing powers of two, and MLX's peak memory decides. The trial steps use a throwaway optimizer and
put the weights back, so the run starts from the model it was given.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

import mlx.core as mx   # engine.backend (fast BLAS) ran first: this module is inside the engine package
from mlx.utils import tree_flatten, tree_unflatten

from engine.errors import TrainingError
from engine.models.memory import human_bytes, memory_budget, physical_memory, process_memory
from engine.training.step import build_step, make_optimizer

FIRST_TRIAL = 8     # most runs fit 8; smaller or larger powers of two are tried from there
MAX_BATCH = 1024
TRIAL_STEPS = 2     # the second step holds the first step's AdamW moments: the steady-state peak


@dataclass
class BatchPlan:
    batch_size: int                 # the largest power of two measured under the budget
    budget: int                     # bytes
    budget_source: str              # how the budget was decided, in words
    measured: dict[int, int]        # batch size → peak MLX memory (bytes) of its trial steps
    length: int                     # tokens of the longest row the trial batches hold
    predicted: set[int]             # batch sizes not tried: their peak, extrapolated, would pass the RAM

    def event_fields(self) -> dict:
        return {"batch_size": self.batch_size, "budget_bytes": self.budget, "budget_source": self.budget_source,
                "max_tokens": self.length,
                "measured": [{"batch_size": b, "peak_memory_bytes": p, "predicted": b in self.predicted}
                             for b, p in sorted(self.measured.items())]}


def search(measure, budget: int, limit: int, ceiling: float = math.inf) -> tuple[dict[int, int], set[int]]:
    """({batch: peak}, the batches whose peak was predicted, not measured) over powers of two up to
    ``limit``: from FIRST_TRIAL up while the peak stays within ``budget``, or down while it does not,
    stopping at the first size on the other side. A size whose peak, on the straight line through the
    last two measured, would pass ``ceiling`` (memory the machine may not have) is not tried."""
    top = 1 << (max(limit, 1).bit_length() - 1)  # the largest power of two ≤ limit
    measured, predicted, b = {}, set(), min(FIRST_TRIAL, top)
    while b not in measured:
        if b // 4 in measured and b // 2 in measured:   # going up: a step's memory grows linearly with the batch
            guess = measured[b // 2] + 2 * (measured[b // 2] - measured[b // 4])
            if guess > ceiling:
                measured[b] = guess
                predicted.add(b)
                break
        measured[b] = measure(b)
        fits = measured[b] <= budget
        if fits and b < top:
            b *= 2
        elif not fits and b > 1:
            b //= 2
    return measured, predicted


def step_peak(model, loss_fn, args, batch: dict, steps: int = TRIAL_STEPS) -> int:
    """Peak MLX memory (bytes) of ``steps`` training steps on ``batch``: the run's step on a throwaway
    AdamW, with the weights put back after. The weights kept aside count in the peak, so the figure
    errs on the high side by at most the weights' size."""
    weights = tree_flatten(model.parameters())
    optimizer = make_optimizer(args, steps, 0)
    optimizer.init(model.trainable_parameters())
    step, _, _ = build_step(model, loss_fn, optimizer, args.max_grad_norm, args.compile)
    mx.eval(optimizer.state)
    mx.clear_cache()
    mx.reset_peak_memory()
    try:
        for _ in range(steps):
            step(batch)
            mx.eval(model.state, optimizer.state)   # the sync point: each trial step runs to the end
        return int(mx.get_peak_memory())
    finally:
        model.update(tree_unflatten(weights))
        del optimizer, step
        mx.clear_cache()


def plan_batch(model, args, trials: dict) -> BatchPlan:
    """Measure and choose. ``trials``: {dataset: (loss_fn, token lengths of its rows, make_batch(row
    indices) → collated batch)}; each dataset's trial batches hold its longest rows (already truncated to
    max_length), so no real batch is longer, and the dataset that fits the fewest rows decides."""
    outside = max(process_memory() - mx.get_active_memory() - mx.get_cache_memory(), 0)
    budget, source = memory_budget(args.memory_budget, outside)
    ram = physical_memory()
    ceiling = max(budget, (budget + ram) / 2) if ram else math.inf   # a trial over the budget, not over the RAM
    plans = []
    for loss_fn, lengths, make_batch in trials.values():
        longest = np.argsort(-lengths, kind="stable")
        measured, predicted = search(lambda b: step_peak(model, loss_fn, args, make_batch(longest[:b])), budget,
                                     min(len(lengths), MAX_BATCH), ceiling)
        fits = [b for b, peak in measured.items() if peak <= budget]
        plans.append(BatchPlan(max(fits, default=0), budget, source, measured, int(lengths[longest[0]]), predicted))
    plan = min(plans, key=lambda p: p.batch_size)
    mx.reset_peak_memory()   # the run's step events report its own peak, not the largest trial's
    if not plan.batch_size:
        raise TrainingError("out_of_memory", f"Even batch size 1 needs {human_bytes(plan.measured[1])} for a training "
                                             f"step on the longest rows ({plan.length} tokens), over the memory budget "
                                             f"of {human_bytes(budget)} ({source}).",
                            "Lower --max-length, pass --grad-checkpoint or --lora-rank, raise --memory-budget, or use "
                            "a smaller model.")
    return plan


def advice(plan: BatchPlan, wanted: int, accumulation: int, args) -> str:
    """The warning when ``wanted`` examples per step do not fit: how the run makes them up, and what
    keeps in-batch negatives whole (a cached loss) where accumulation would shrink them."""
    batch = math.ceil(wanted / accumulation)
    text = (f"A batch of {wanted} does not fit the memory budget of {human_bytes(plan.budget)}: training at batch "
            f"{batch} × {accumulation} gradient accumulation steps.")
    cached = "cached_late_interaction" if args.use_late_interaction else "cached_mnrl"
    if args.loss in (None, "mnrl", "late_interaction"):   # the losses with in-batch negatives
        text += (f" For a contrastive loss each row then sees in-batch negatives from {batch} rows only; for all "
                 f"{wanted}, use the cached loss: --loss {cached} --batch-size {wanted} --mini-batch-size {batch}.")
    return text


def recorded_batch(checkpoint: Path) -> dict:
    """The batch size and accumulation a checkpoint was trained with (a resumed auto run keeps them,
    so the data position means the same rows)."""
    training = json.loads((checkpoint / "trainer_state.json").read_text())["config"]["training"]
    return {k: training[k] for k in ("batch_size", "gradient_accumulation_steps")}


def resolve(model, args, trials: dict, emit, checkpoint: Path | None = None):
    """``args`` with ``batch_size`` 'auto' replaced: by the checkpoint's when resuming, else by measurement
    (`plan_batch`; a ``batch_size_chosen`` event). With --effective-batch, the batch and accumulation that
    make it up (a warning when accumulation is needed)."""
    resolved = {"memory_budget": None, "effective_batch": None}   # they belong to 'auto' alone
    if checkpoint:
        return replace(args, **recorded_batch(checkpoint), **resolved)
    emit("phase", name="measuring")
    plan = plan_batch(model, args, trials)
    wanted = args.effective_batch
    accumulation = math.ceil(wanted / plan.batch_size) if wanted else 1
    batch = math.ceil(wanted / accumulation) if wanted else plan.batch_size   # ≤ the largest that fits
    emit("batch_size_chosen", **{**plan.event_fields(), "batch_size": batch},
         gradient_accumulation_steps=accumulation, largest_fitting=plan.batch_size)
    if accumulation > 1:
        emit("warning", message=advice(plan, wanted, accumulation, args))
    return replace(args, batch_size=batch, gradient_accumulation_steps=accumulation, **resolved)
