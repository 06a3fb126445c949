"""The engine calls the pages run off the GUI thread: validation of a mapping (a quick check of the
first rows, then the full check), tokenizer loading and "what the model sees". Qt-free; each function
is a plain call a worker thread can run."""
from __future__ import annotations

import copy
import dataclasses
import re
import threading
from dataclasses import dataclass, field

from engine.data import DataError, DatasetArgs, Report, load_dataset, render
from engine.data.validation import Finding

# A HF fast tokenizer changes its truncation state while encoding; two threads encoding with one
# tokenizer at once fail ("Already borrowed"), so every use from a worker holds this lock.
TOKENIZER_LOCK = threading.Lock()
_IMPORT_LOCK = threading.Lock()
SAMPLE_ROWS = 2000   # rows of the quick check that lets training start while the full check goes on
# What the first rows cannot tell about the whole file (a file sorted by class starts with one class).
WHOLE_FILE_FINDINGS = ("single_class", "all_texts_empty", "no_labels")


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
    sample: bool = False            # only the first SAMPLE_ROWS rows (of each file) were checked
    rows: int | None = None         # rows of the data trained on as read (exact after a full check)


def finding_from_error(err: Exception) -> Finding:
    if isinstance(err, DataError):
        return Finding("fatal", err.code, err.message, err.fix or "", err.file, err.row, err.column,
                       1 if err.row else 0, [err.row] if err.row else [])
    return Finding("fatal", "unreadable", f"{type(err).__name__}: {err}",
                   "Check the file, or copy the diagnostics (Help menu) into a report.")


def detected_encoding(err: Exception) -> str | None:
    """The encoding a DataError about undecodable bytes names as the file's likely one (its fix says
    "--encoding cp1252"); None for any other error."""
    if isinstance(err, DataError) and err.code == "bad_encoding":
        found = re.search(r"--encoding (\S+)", err.fix or "")
        return found.group(1) if found else None
    return None


def check_data(args: DatasetArgs, tokenizer=None, progress=None) -> CheckResult:
    """Everything `raclate train` would check before training, as a report (never raises for bad data).

    Uses the engine's own load_dataset, so what the page shows is exactly what the run will meet.
    The tokenizer is copied first: a long check then holds no lock that "what the model sees" waits
    for. ``progress(done, total)`` follows the token count; an exception it raises (Cancel) ends the check.
    """
    import_transformers()
    if tokenizer is not None:
        with TOKENIZER_LOCK:
            tokenizer = copy.deepcopy(tokenizer)
    try:
        # strict=False: counts and lengths survive a fatal finding
        loaded = load_dataset(args, tokenizer, strict=False, progress=progress)
    except DataError as err:
        findings = list(err.findings) or [finding_from_error(err)]
        return CheckResult(Report(findings=findings))
    except (OSError, ValueError) as err:
        return CheckResult(Report(findings=[finding_from_error(err)]))
    info = loaded.label_info
    return CheckResult(loaded.report, dict(loaded.columns), info.names, info.is_regression, rows=loaded.rows_read)


def check_sample(args: DatasetArgs, tokenizer=None) -> CheckResult:
    """check_data on the first SAMPLE_ROWS rows: seconds on any file, so Start need not wait for the full
    check. Fatal findings about the whole file are left to the full check (the sample cannot know)."""
    result = check_data(dataclasses.replace(args, max_rows=min(args.max_rows or SAMPLE_ROWS, SAMPLE_ROWS)), tokenizer)
    report = result.report
    report.findings = [f for f in report.findings if not (f.severity == "fatal" and f.code in WHOLE_FILE_FINDINGS)]
    return dataclasses.replace(result, sample=True, rows=None)


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
