"""The engine calls the pages run off the GUI thread: validation of a mapping, tokenizer loading and
"what the model sees". Qt-free; each function is a plain call a worker thread can run."""
from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass, field

from engine.data import DataError, DatasetArgs, Report, load_dataset, render
from engine.data.validation import Finding

# A HF fast tokenizer changes its truncation state while encoding; two threads encoding with one
# tokenizer at once fail ("Already borrowed"), so every use from a worker holds this lock.
TOKENIZER_LOCK = threading.Lock()
_IMPORT_LOCK = threading.Lock()


def import_transformers() -> None:
    """Import transformers completely, once. Two threads importing it at once see a half-initialised
    module (datasets' fingerprinting then fails on transformers.PreTrainedTokenizerBase)."""
    with _IMPORT_LOCK:
        import transformers
        transformers.PreTrainedTokenizerBase  # noqa: B018  (forces the lazy attribute to load)


@dataclass
class CheckResult:
    report: Report
    columns: dict[str, str] = field(default_factory=dict)   # role → column, as the engine resolved it
    label_names: list[str] | None = None
    is_regression: bool = False


def finding_from_error(err: Exception) -> Finding:
    if isinstance(err, DataError):
        return Finding("fatal", err.code, err.message, err.fix or "", err.file, err.row, err.column,
                       1 if err.row else 0, [err.row] if err.row else [])
    return Finding("fatal", "unreadable", f"{type(err).__name__}: {err}",
                   "Check the file, or copy the diagnostics (Help menu) into a report.")


def check_data(args: DatasetArgs, tokenizer=None) -> CheckResult:
    """Everything `raclate train` would check before training, as a report (never raises for bad data).

    Uses the engine's own load_dataset, so what the page shows is exactly what the run will meet.
    """
    import_transformers()
    try:
        with TOKENIZER_LOCK if tokenizer is not None else contextlib.nullcontext():
            loaded = load_dataset(args, tokenizer, strict=False)   # counts and lengths survive a fatal finding
    except DataError as err:
        findings = list(err.findings) or [finding_from_error(err)]
        return CheckResult(Report(findings=findings))
    except (OSError, ValueError) as err:
        return CheckResult(Report(findings=[finding_from_error(err)]))
    info = loaded.label_info
    return CheckResult(loaded.report, dict(loaded.columns), info.names, info.is_regression)


def load_tokenizer(model: str):
    """The model's HF tokenizer ('default' → the embedded model); may download a Hub id."""
    import_transformers()
    from transformers import AutoTokenizer

    from engine.models.loading import resolve_model_dir
    folder = resolve_model_dir(model)
    return AutoTokenizer.from_pretrained(str(folder))


def render_row(row: dict, columns: dict[str, str], tokenizer, engine_task: str, max_length: int,
               use_chat_template: bool = False) -> dict:
    """engine.data.render for one preview row mapped to roles ({role: column})."""
    role_row = {role: row.get(column) for role, column in columns.items() if role != "label"}
    with TOKENIZER_LOCK:
        return render(role_row, tokenizer, engine_task, max_length, use_chat_template=use_chat_template)
