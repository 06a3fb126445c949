"""The JSON-line event stream (docs/ARCHITECTURE.md, Events): the same records go to Python callbacks,
the CLI's --events FILE|-, and through it to the GUI."""
from __future__ import annotations

import json
import math
import sys
import time

from engine.errors import UsageError

EVENTS = ("run_started", "phase", "batch_size_chosen", "step", "eval", "checkpoint", "warning", "error", "finished")


def plain(value):
    """JSON-safe: floats stay floats (NaN/inf → None), arrays → lists, anything else → str."""
    if isinstance(value, bool) or value is None or isinstance(value, (int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if hasattr(value, "item") and getattr(value, "size", 2) == 1:
        return plain(value.item())
    if hasattr(value, "tolist"):
        return plain(value.tolist())
    return str(value)


def make_event(event: str, /, **fields) -> dict:
    if event not in EVENTS:
        raise ValueError(f"unknown event {event!r}")
    return {"event": event, "time": time.time(), **plain(fields)}


class JsonLineWriter:
    """A callback writing one JSON object per line to a file or stdout ('-'), flushed each line."""

    def __init__(self, target: str):
        try:
            self.stream = sys.stdout if target == "-" else open(target, "a", encoding="utf-8")
        except OSError as exc:
            raise UsageError(f"Cannot write events to {target}: {exc.strerror or exc}. Give --events a file in an "
                             "existing, writable folder, or '-' for standard output.") from None

    def __call__(self, event: dict) -> None:
        self.stream.write(json.dumps(event, ensure_ascii=False) + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.stream is not sys.stdout:
            self.stream.close()
