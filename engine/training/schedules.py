"""Learning-rate schedules: pure functions of the optimizer step (as transformers defines them:
the update made at step s uses lr(s), so with warmup the very first update has lr 0)."""
from __future__ import annotations

import math

import mlx.core as mx


def warmup_steps_for(total_steps: int, warmup_steps: int = 0, warmup_ratio: float = 0.0) -> int:
    return warmup_steps if warmup_steps > 0 else math.ceil(total_steps * warmup_ratio)


def lr_at(step, kind: str, base_lr: float, total_steps: int, warmup_steps: int):
    """Learning rate for ``step`` (int or mx.array; works inside mx.compile)."""
    s = mx.array(step, dtype=mx.float32)
    warm = s / max(1, warmup_steps)
    progress = mx.clip((s - warmup_steps) / max(1, total_steps - warmup_steps), 0.0, 1.0)
    if kind == "constant":
        decay = mx.ones_like(progress)
    elif kind == "linear":
        decay = 1.0 - progress
    elif kind == "cosine":
        decay = 0.5 * (1.0 + mx.cos(math.pi * progress))
    else:
        raise ValueError(f"Unknown schedule {kind!r}; use linear, cosine or constant.")
    return base_lr * mx.where(s < warmup_steps, warm, decay)


def make_schedule(kind: str, base_lr: float, total_steps: int, warmup_steps: int):
    return lambda step: lr_at(step, kind, base_lr, total_steps, warmup_steps)
