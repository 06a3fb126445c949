"""Every exception the engine raises on purpose, and what each means for the user and the exit code.

One rule everywhere (CLI, app, API): **2** = bad input, the message says how to fix it; **1** = a
failure during the work; **130** = interrupted. ``classify_error`` turns any exception into the
``(kind, message, hint)`` of an ``error`` event and of the CLI's one-paragraph message, and
``exit_code`` maps the kind to the exit status.
"""
from __future__ import annotations

import errno
import shutil
from pathlib import Path

# Kinds whose cause is the user's input: the run never started or cannot start as asked.
BAD_INPUT_KINDS = frozenset({"bad_input", "bad_data", "bad_model", "hub", "bad_config", "export_refused"})
EXIT_BAD_INPUT, EXIT_FAILED, EXIT_INTERRUPTED = 2, 1, 130


class UsageError(ValueError):
    """Bad command-line or API input (a missing flag, an unknown task): exit code 2."""
    kind = "bad_input"


class DataError(ValueError):
    """Bad input data. ``str(err)`` reads "<file>, line 3, column 'label': <problem> Fix: <fix>".

    Attributes: ``file``, ``row`` (line number for jsonl/csv, 1-based data row otherwise),
    ``column``, ``fix``, ``code`` (machine-readable, e.g. ``"missing_column"``) and ``findings``
    (all fatal findings when raised from a validation report).
    """
    kind = "bad_data"

    def __init__(self, message: str, *, file: str | None = None, row: int | None = None,
                 column: str | None = None, fix: str | None = None, code: str = "bad_data",
                 row_label: str = "row", findings: list | None = None):
        self.message = message
        self.file, self.row, self.column, self.fix, self.code = file, row, column, fix, code
        self.findings = list(findings or [])
        where = location(file, row, column, row_label)
        text = f"{where}: {message}" if where else message
        if fix:
            text += f" Fix: {fix}"
        super().__init__(text)


class ModelError(ValueError):
    """A model that cannot be loaded or saved: the message says which file and what to do."""
    kind = "bad_model"


class TrainingError(RuntimeError):
    """A run that cannot go on; ``kind`` ∈ bad_data | out_of_memory | bad_model | io | diverged |
    export | hub | peer_lost | ... and ``hint`` says what to do next."""

    def __init__(self, kind: str, message: str, hint: str = ""):
        super().__init__(message)
        self.kind, self.hint = kind, hint


class ExportError(TrainingError):
    """An export that failed (a self-check mismatch: kind ``export``, exit 1) or was refused before any
    work (a format that does not fit the model, a folder it may not replace: ``refused``, exit 2)."""

    def __init__(self, message: str, hint: str = "", *, refused: bool = False):
        super().__init__("export_refused" if refused else "export", message, hint)


class HubError(TrainingError):
    """A push that cannot happen: no token, a bad repo id, or the Hub refused."""

    def __init__(self, message: str, hint: str = ""):
        super().__init__("hub", message, hint)


class Interrupted(KeyboardInterrupt):
    """Ctrl+C that stopped a run at once; ``training`` says whether training had begun (before it,
    nothing was saved and there is nothing to resume)."""

    def __init__(self, training: bool):
        super().__init__()
        self.training = training


def write_failed(exc: BaseException) -> bool:
    """A write that failed for want of space: ENOSPC / EDQUOT, or MLX's ``RuntimeError("[write] Unable
    to write …")``, which gives no reason (a full disk is by far the likeliest)."""
    if isinstance(exc, OSError):
        return exc.errno in (errno.ENOSPC, errno.EDQUOT)
    return isinstance(exc, RuntimeError) and str(exc).startswith("[write]")


def disk_full(folder, needed: int, what: str, exc: BaseException) -> TrainingError:
    """The error for ``what`` (e.g. "checkpoint step-0000010") that could not be written in ``folder``:
    the folder, the space it needs and the space left there."""
    try:
        free = f"{_megabytes(shutil.disk_usage(Path(folder)).free)} is free there"
    except OSError:
        free = "the free space could not be read"
    return TrainingError("io", f"The disk is full: {what} could not be written in {folder} ({exc}). It needs about "
                               f"{_megabytes(needed)}; {free}.",
                         "Free some space or choose an --output on another disk. Completed checkpoints are intact: "
                         "continue with --resume latest.")


def _megabytes(n: int) -> str:
    return f"{n / 1e6:,.1f} MB"


def location(file: str | None, row: int | None, column: str | None, row_label: str = "row") -> str:
    """"train.csv, line 4, column 'label'" — the parts that are known."""
    parts = []
    if file:
        parts.append(str(file))
    if row is not None:
        parts.append(f"{row_label} {row}")
    if column:
        parts.append(f"column {column!r}")
    return ", ".join(parts)


def classify_error(exc: BaseException) -> tuple[str, str, str]:
    """(kind, message, hint) for an error event and the one-paragraph CLI message."""
    text = str(exc) or type(exc).__name__
    if isinstance(exc, TrainingError):
        return exc.kind, text, exc.hint
    if isinstance(exc, UsageError):
        return "bad_input", text, ""
    if isinstance(exc, KeyboardInterrupt):
        if not getattr(exc, "training", True):
            return "stopped", "Stopped before training started; nothing was saved.", ""
        return ("stopped", "Stopped at once (a second Ctrl+C) without a final checkpoint.",
                "The last completed checkpoint is intact: continue with --resume latest.")
    if isinstance(exc, DataError):
        fix = exc.fix or ""
        return "bad_data", text.removesuffix(f" Fix: {fix}") if fix else text, fix or "Fix the data file or the column mapping."
    if isinstance(exc, ModelError):
        return "bad_model", text, "Check --model: a folder with config.json and model.safetensors, a Hub id, or 'default'."
    if isinstance(exc, MemoryError) or "out of memory" in text.lower() or "bad_alloc" in text.lower():
        return ("out_of_memory", f"Ran out of memory: {text}",
                "Lower --batch-size (use --grad-accum to keep the effective batch), lower --max-length, "
                "or pass --grad-checkpoint.")
    if write_failed(exc):
        return "io", f"The disk is full: {text}", "Free some space or choose an --output on another disk; " \
                                                  "completed checkpoints are intact."
    if isinstance(exc, OSError):
        return "io", text, "Check that the paths exist and are writable."
    return "internal", f"{type(exc).__name__}: {text}", "Run again with --debug and report the traceback."


def exit_code(kind: str) -> int:
    """The exit status for an error of ``kind``: 2 bad input, 130 interrupted, 1 otherwise."""
    if kind in BAD_INPUT_KINDS:
        return EXIT_BAD_INPUT
    if kind in ("stopped", "interrupted"):
        return EXIT_INTERRUPTED
    return EXIT_FAILED
