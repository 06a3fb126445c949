"""The Model page's words for the engine's memory estimate (engine/models/memory.py): how close a
run comes to this machine's memory, and what to change to fit. Qt-free."""
from __future__ import annotations

from engine.models.memory import FIT_FRACTION


def verdict(total: int, available: int | None) -> str:
    """"ok" | "tight" | "over" | "unknown"."""
    if not available:
        return "unknown"
    ratio = total / available
    return "ok" if ratio <= 0.6 else "tight" if ratio <= FIT_FRACTION else "over"


def suggestion(level: str, *, grad_checkpoint: bool, batch_size: int, fitting_batch: int) -> str:
    if level in ("ok", "unknown"):
        return ""
    tips = []
    if not grad_checkpoint:
        tips.append("turn on gradient checkpointing (less memory, ~30% slower)")
    if fitting_batch and fitting_batch < batch_size:
        k = -(-batch_size // fitting_batch)
        tips.append(f"lower the batch size to {fitting_batch} and set gradient accumulation to {k} "
                    f"to keep an effective batch of {fitting_batch * k}")
    elif batch_size > 1:
        tips.append("lower the batch size and use gradient accumulation")
    tips.append("or lower the max length")
    return "To fit: " + "; ".join(tips) + "."
