"""App settings in QSettings under versioned keys ("v1/..."): values, never combo indices.
Lists are stored as JSON text so that a one-item list survives every QSettings backend."""
from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

from PySide6.QtCore import QSettings

ORGANIZATION = "RACLATE"
APPLICATION = "RACLATE Tuner"
VERSION = 1
RECENT_LIMIT = 8
DEFAULT_STOP_TIMEOUT_S = 5.0   # counted from the child's last output, so a slow save is not cut off
DEFAULT_CHILD_NICE = 10


class AppSettings:
    def __init__(self, qsettings: QSettings | None = None):
        self.q = qsettings or QSettings(ORGANIZATION, APPLICATION)

    @staticmethod
    def key(name: str) -> str:
        return f"v{VERSION}/{name}"

    def get(self, name: str, default=None):
        value = self.q.value(self.key(name), None)
        return default if value is None else value

    def set(self, name: str, value) -> None:
        self.q.setValue(self.key(name), value)

    def get_json(self, name: str, default):
        raw = self.get(name)
        try:
            return json.loads(raw) if isinstance(raw, str) else default
        except ValueError:
            return default

    def set_json(self, name: str, value) -> None:
        self.set(name, json.dumps(value))

    # recent files / models ---------------------------------------------------------------------
    def recent(self, kind: str) -> list[str]:
        values = self.get_json(f"recent/{kind}", [])
        return [v for v in values if isinstance(v, str)]

    def add_recent(self, kind: str, value: str) -> list[str]:
        values = [value] + [v for v in self.recent(kind) if v != value]
        self.set_json(f"recent/{kind}", values[:RECENT_LIMIT])
        return values[:RECENT_LIMIT]

    def clear_recent(self, kind: str) -> None:
        self.set_json(f"recent/{kind}", [])

    # runs --------------------------------------------------------------------------------------
    def runs_root(self) -> Path:
        return Path(self.get("runs/root", str(Path.home() / "RACLATE" / "runs"))).expanduser()

    def new_output_dir(self, task_key: str, now: datetime | None = None) -> Path:
        """<runs root>/<YYYY-MM-DD-HHMMSS>-<task>, unique."""
        stamp = (now or datetime.now()).strftime("%Y-%m-%d-%H%M%S")
        base = self.runs_root() / f"{stamp}-{task_key}"
        path, n = base, 2
        while path.exists():
            path, n = base.with_name(f"{base.name}-{n}"), n + 1
        return path

    def child_nice(self) -> int:
        """Niceness of the training process (0 = same priority as the app; 10 keeps the GUI responsive)."""
        try:
            return int(self.get("training/nice", DEFAULT_CHILD_NICE))
        except (TypeError, ValueError):
            return DEFAULT_CHILD_NICE

    def stop_timeout_s(self) -> float:
        try:
            return float(self.get("training/stop_timeout_s", DEFAULT_STOP_TIMEOUT_S))
        except (TypeError, ValueError):
            return DEFAULT_STOP_TIMEOUT_S
