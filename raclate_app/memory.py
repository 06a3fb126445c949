"""The Model page's words for the engine's memory estimate (engine/models/memory.py): how close a
run comes to this machine's memory, and what to change to fit; and the peaks a `--batch-size auto`
run measured, kept per model and settings, which replace the estimate where they apply. Qt-free."""
from __future__ import annotations

import json

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


# -- measured on this machine (--batch-size auto's trial steps, engine/training/batch_planner.py) ----------
MEASURED = "memory/measured"   # AppSettings key: {measurement_key: the batch_size_chosen event's figures}
KEEP = 20                      # settings combinations remembered


def measurement_key(model: str, task: str, training: dict) -> str:
    """What a measured peak depends on besides the batch: the model, the task and the settings that
    change a step's memory."""
    return json.dumps([model, task, training.get("max_length"), bool(training.get("grad_checkpoint")),
                       bool(training.get("freeze_embeddings")), int(training.get("lora_rank") or 0),
                       training.get("quantize_base")])


def remember(settings, key: str, event: dict) -> None:
    """Keep a run's batch_size_chosen figures for the Model page (the latest KEEP combinations)."""
    stored = settings.get_json(MEASURED, {})
    stored.pop(key, None)
    stored[key] = {"measured": event.get("measured") or [], "budget": event.get("budget_bytes"),
                   "largest": event.get("largest_fitting") or event.get("batch_size")}
    settings.set_json(MEASURED, dict(list(stored.items())[-KEEP:]))


def measured_for(settings, key: str) -> dict | None:
    return settings.get_json(MEASURED, {}).get(key)


def measured_peak(measured: list[dict], batch: int) -> int | None:
    """The peak at ``batch``: as measured, else on the straight line through the two measured batches
    nearest it (a step's memory grows linearly with the batch: weights and AdamW fixed, activations per row)."""
    points = sorted((m["batch_size"], m["peak_memory_bytes"]) for m in measured)
    if not points:
        return None
    exact = dict(points).get(batch)
    if exact is not None or len(points) == 1:
        return exact
    (b0, p0), (b1, p1) = sorted(points, key=lambda p: (abs(p[0] - batch), p[0]))[:2]
    return int(p0 + (p1 - p0) * (batch - b0) / (b1 - b0))
