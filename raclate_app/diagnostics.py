"""Help → Copy diagnostics: versions, machine, the run config, the last events and the log, as
plain text someone can paste into a bug report."""
from __future__ import annotations

import json
import os
import platform
import sys


def versions() -> dict:
    import importlib.metadata as md
    out = {"python": platform.python_version(), "platform": platform.platform()}
    for name in ("raclate-tuner", "mlx", "transformers", "tokenizers", "datasets", "numpy", "PySide6-Essentials",
                 "PySide6", "pyqtgraph"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            pass
    try:
        from PySide6.QtCore import qVersion
        out["Qt"] = qVersion()
    except ImportError:
        pass
    return out


def machine() -> dict:
    from engine.models.memory import human_bytes, machine_memory
    available, source = machine_memory()
    return {"machine": platform.machine(), "processor": platform.processor() or "", "cpus": os.cpu_count(),
            "memory": f"{human_bytes(available)} ({source})", "executable": sys.executable}


def diagnostics_text(project, train_page=None, max_events: int = 40, max_log_lines: int = 200) -> str:
    parts = ["# RACLATE Tuner diagnostics", "", "## Versions"]
    parts += [f"- {k}: {v}" for k, v in versions().items()]
    parts += ["", "## Machine"] + [f"- {k}: {v}" for k, v in machine().items()]
    parts += ["", "## Project",
              f"- data: {project.source or '(none)'}" + (f" subset={project.subset}" if project.subset else "")
              + (f" split={project.split}" if project.split else ""),
              f"- validation file: {project.eval_file or '(none)'}; validation split {project.validation_split}",
              f"- task: {project.task_key} (engine: {project.task.engine_task})",
              f"- model: {project.model}",
              f"- mapping: {json.dumps(project.engine_columns())}"]
    if project.check is not None:
        for f in project.check.report.findings[:10]:
            parts.append(f"- finding: {f}")
    config = getattr(train_page, "last_config", None) if train_page else None
    try:
        config = config or project.run_config("(not started)")
    except ValueError as exc:   # nothing to train yet (no data): the reason instead
        config = {"not ready": str(exc)}
    parts += ["", "## Run config", "```json", json.dumps(config, indent=2, default=str), "```"]
    if train_page is not None:
        events = list(train_page.events)[-max_events:]
        parts += ["", f"## Last {len(events)} events", "```"]
        parts += [json.dumps({k: v for k, v in e.items() if k != "config"}, default=str) for e in events]
        parts += ["```", "", "## Log", "```"]
        parts += train_page.log.toPlainText().splitlines()[-max_log_lines:]
        parts.append("```")
        if train_page.result:
            parts += ["", "## Last result", "```json", json.dumps(train_page.result, indent=2, default=str), "```"]
    return "\n".join(parts) + "\n"
