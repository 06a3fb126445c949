"""The optimizer and the train step: AdamW with bias correction, gradient clipping, a non-finite guard,
and the compiled functions the Trainer calls (one full step, or grads + apply for accumulation)."""
from __future__ import annotations

import engine  # noqa: F401  (fast BLAS before mlx.core)
import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim
from mlx.utils import tree_flatten, tree_map

from engine.schedules import make_schedule


def make_optimizer(args, total_steps: int, warmup_steps: int) -> optim.AdamW:
    """AdamW on the args' schedule. MLX defaults to ``bias_correction=False``; PyTorch corrects,
    and without it the first few hundred steps run at several times the nominal learning rate."""
    schedule = make_schedule(args.lr_scheduler_type, args.learning_rate, total_steps, warmup_steps)
    return optim.AdamW(learning_rate=schedule, weight_decay=args.weight_decay, bias_correction=True)


def assign_tree(dst, src) -> None:
    """Copy the leaves of ``src`` into the containers of ``dst`` (same structure)."""
    for key in (dst.keys() if isinstance(dst, dict) else range(len(dst))):
        if isinstance(dst[key], (dict, list)):
            assign_tree(dst[key], src[key])
        else:
            dst[key] = src[key]


def global_norm(grads) -> mx.array:
    return mx.sqrt(sum(mx.sum(g.astype(mx.float32) ** 2) for _, g in tree_flatten(grads)))


def build_step(model, loss_fn, optimizer, max_grad_norm: float, compile: bool = True):
    """(full_step(batch) -> (loss, norm, ok), grads_fn(batch) -> (loss, grads), apply_fn(loss, grads, scale)
    -> (norm, ok)). A loss with ``loss_and_grads`` (GradCache) brings its own gradients and is not compiled."""
    value_and_grad = nn.value_and_grad(model, loss_fn)
    cached = hasattr(loss_fn, "loss_and_grads")
    state = [model.state, optimizer.state]

    def apply(loss, grads, scale):
        """Average, clip and apply the gradients unless the loss or their norm is not finite."""
        grads = tree_map(lambda g: g * scale, grads)
        if max_grad_norm > 0:
            grads, norm = optim.clip_grad_norm(grads, max_grad_norm)
        else:
            norm = global_norm(grads)
        ok = mx.isfinite(loss) & mx.isfinite(norm)
        before = (model.trainable_parameters(), tree_map(lambda x: x, optimizer.state))
        optimizer.update(model, grads)
        step = optimizer.state["step"]
        keep = lambda new, old: mx.where(ok, new, old)
        model.update(tree_map(keep, model.trainable_parameters(), before[0]))
        # In place: mx.compile captured this very dict as an output.
        assign_tree(optimizer.state, tree_map(keep, optimizer.state, before[1]))
        optimizer.state["step"] = step  # a skipped step still counts: the schedule follows the trainer's step
        return norm, ok

    def grads_of(batch):
        return loss_fn.loss_and_grads(model, batch) if cached else value_and_grad(model, batch)

    def full_step(batch):
        loss, grads = grads_of(batch)
        norm, ok = apply(loss, grads, 1.0)
        return loss, norm, ok

    if compile and not cached:
        full_step = mx.compile(full_step, inputs=state, outputs=state)
        # value_and_grad leaves traced copies in the model: the state must be an output too.
        grads_of = mx.compile(grads_of, inputs=state, outputs=state)
        apply = mx.compile(apply, inputs=state, outputs=state)
    return full_step, grads_of, apply


def accumulate(grads_fn, apply_fn, batches: list):
    """One optimizer step over micro-batches: the mean of their losses and gradients (so k×b equals
    one batch of k·b for mean losses) → (loss, norm, ok)."""
    loss, grads = grads_fn(batches[0])
    for batch in batches[1:]:
        more_loss, more_grads = grads_fn(batch)
        loss, grads = loss + more_loss, tree_map(mx.add, grads, more_grads)
    k = len(batches)
    norm, ok = apply_fn(loss / k, grads, 1.0 / k)
    return loss / k, norm, ok
