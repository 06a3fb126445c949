"""The one owner of ``raclate_run.json``: the record every run and export writes into its output
folder (config, status, metrics, history, self-check, versions), and how a reader tells its status.
A run may carry a ``name`` the user gave it (shown instead of its folder's name).

A record still saying ``running`` whose process is gone on this host is a crashed run: the record
holds ``pid``, ``host`` and ``started`` for that.
"""
from __future__ import annotations

import os
import platform
from pathlib import Path

from engine.errors import UsageError
from engine.files import read_json, write_json

RUN_FILE = "raclate_run.json"
STATUSES = ("finished", "stopped", "crashed", "failed", "running")


def run_file(folder) -> Path:
    return Path(folder) / RUN_FILE


def is_run_folder(folder) -> bool:
    return run_file(folder).is_file()


def read_run_record(folder) -> dict:
    """The record of ``folder``; {} when there is none or it cannot be read."""
    return read_json(run_file(folder))


def write_run_record(folder, record: dict) -> None:
    write_json(run_file(folder), record)


def run_name(folder, record: dict | None = None) -> str:
    """The name the user gave the run in ``folder``, else the folder's name."""
    record = read_run_record(folder) if record is None else record
    return str(record.get("name") or "").strip() or Path(folder).name


def set_run_name(folder, name: str | None) -> dict:
    """Name the run in ``folder`` (blank: no name, its folder's name shows); returns the new record.
    A running run is refused: it rewrites its record when it ends, which would drop the name."""
    record = read_run_record(folder)
    if not record:
        raise UsageError(f"{folder} is not a run folder (it has no {RUN_FILE}).")
    if effective_status(record) == "running":
        raise UsageError(f"{Path(folder).name} is still running: rename it when it has ended.")
    name = " ".join((name or "").split())   # one line: the name shows in tables and titles
    if name:
        record["name"] = name
    else:
        record.pop("name", None)
    write_run_record(folder, record)
    return record


def versions() -> dict:
    import importlib.metadata as md
    out = {"python": platform.python_version(), "platform": platform.platform()}
    for name in ("raclate-tuner", "mlx", "transformers", "tokenizers", "datasets", "safetensors", "numpy"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            pass
    return out


def _linux_start_time(pid: int) -> float | None:
    """When process ``pid`` started (epoch seconds), from /proc; None where there is no /proc."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        ticks = int(stat.rsplit(")", 1)[1].split()[19])   # field 22, counted after the command name
        boot = next(float(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
                    if line.startswith("btime"))
        return boot + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return None


def process_alive(pid, host: str | None = None, started: float | None = None) -> bool | None:
    """True/False for a process on this machine; None when it cannot be told (another host)."""
    if host and host != platform.node():
        return None
    try:
        pid = int(pid)
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True   # alive, owned by someone else
    except (OSError, ValueError, TypeError, OverflowError):
        return False
    began = _linux_start_time(pid)
    if began is not None and started is not None and began > started + 5:
        return False   # the id was reused by a newer process
    return True


def effective_status(record: dict) -> str:
    status = record.get("status") or "crashed"
    if status != "running":
        return status if status in STATUSES else "crashed"
    if record.get("pid") is None:
        return "crashed"   # written by an engine that did not record its process: nothing runs it now
    alive = process_alive(record["pid"], record.get("host"), record.get("started"))
    return "crashed" if alive is False else "running"
