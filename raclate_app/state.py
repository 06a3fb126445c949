"""Project: what the user has chosen so far (data, mapping, task, model, settings) and the
background work that follows from it (preview, validation, tokenizer). Pages read and change it;
it never blocks the GUI thread: every engine call goes through the Worker."""
from __future__ import annotations

from dataclasses import MISSING, fields
from pathlib import Path

from PySide6.QtCore import QObject, QTimer, Signal

from engine.data import DataError, DatasetArgs, preview
from engine.data.args import base_role
from engine.defaults import RESOURCES_DIR
from engine.training.args import TrainingArgs
from engine.training.config import build_run_config
from raclate_app.checks import CheckResult, check_data, finding_from_error, load_tokenizer
from raclate_app.settings import AppSettings
from raclate_app.tasks import DEFAULT_TASK, IGNORE, engine_columns, get_task, guess_mapping, missing_roles, \
    suggest_task
from raclate_app.workers import Worker

DEMO_FILE = RESOURCES_DIR / "demo" / "pairs.jsonl"
PREVIEW_ROWS = 200
VALIDATE_DELAY_MS = 250   # coalesce quick edits (a slider drag) into one validation
MULTI_ROLES = ("negative", IGNORE)


def training_defaults() -> dict:
    """TrainingArgs defaults, read from the dataclass (the one source of truth)."""
    out = {}
    for f in fields(TrainingArgs):
        out[f.name] = f.default if f.default is not MISSING else f.default_factory()
    return out


class Project(QObject):
    source_changed = Signal()
    source_failed = Signal(object)      # the exception (DataError says file, row and fix)
    task_changed = Signal(str)
    mapping_changed = Signal()
    split_changed = Signal()
    model_changed = Signal(str)
    training_changed = Signal()
    validation_started = Signal()
    report_changed = Signal()
    tokenizer_changed = Signal()
    notice = Signal(str)                # one-line status-bar messages

    def __init__(self, settings: AppSettings | None = None, parent=None):
        super().__init__(parent)
        self.settings = settings or AppSettings()
        self.worker = Worker(self)
        self.source = ""
        self.subset: str | None = None
        self.split: str | None = None
        self.eval_file: str | None = None
        self.validation_split = 0.1
        self.preview = None
        self.loading_source = ""
        self.task_key = self.settings.get("task/last", DEFAULT_TASK)
        self.mapping: dict[str, str] = {}
        self.model = self.settings.get("model/last", "default")
        self.training: dict = {}
        self.keep_settings_for: str | None = None   # a duplicated run's model: its preset must not apply
        self.check: CheckResult | None = None
        self.validating = False
        self.tokenizer = None
        self.tokenizer_model: str | None = None
        self.tokenizer_error: Exception | None = None
        self._timer = QTimer(self, singleShot=True, interval=VALIDATE_DELAY_MS)
        self._timer.timeout.connect(self.validate_now)
        self.load_tokenizer()

    # -- what is chosen ----------------------------------------------------------------------------
    @property
    def task(self):
        return get_task(self.task_key)

    @property
    def columns(self) -> list[str]:
        return list(self.preview.columns) if self.preview else []

    @property
    def has_validation_split(self) -> bool:
        return bool(self.eval_file) or bool(self.preview and "validation" in (self.preview.splits or {}))

    def training_values(self) -> dict:
        return {**training_defaults(), **self.training, **self.task.training}

    def engine_columns(self) -> dict[str, str]:
        return engine_columns(self.mapping, self.columns)

    # -- data ----------------------------------------------------------------------------------------
    def open_source(self, path_or_id: str, subset: str | None = None, split: str | None = None) -> None:
        """Preview a file, folder or Hub dataset off the GUI thread; source_changed when it is in."""
        path_or_id = str(path_or_id).strip()
        if not path_or_id:
            return
        self.loading_source = path_or_id
        self.eval_file = None   # a validation file belongs to the data it came with
        self.notice.emit(f"Opening {path_or_id} …")
        self.worker.submit("preview", preview, path_or_id, PREVIEW_ROWS, subset=subset or None, split=split or None,
                           on_done=lambda pv: self._on_preview(pv, path_or_id, subset, split),
                           on_error=self._on_preview_failed)

    def load_demo(self) -> None:
        """The bundled question/answer pairs with sentence similarity and the embedded model."""
        self.set_task("sentence-similarity")
        self.set_model("default")
        self.open_source(str(DEMO_FILE))

    def rows_at(self, offset: int, on_done) -> None:
        """Preview rows of the current source from row ``offset`` (to show a row the report points at)."""
        self.worker.submit("rows_at", preview, self.source, PREVIEW_ROWS, subset=self.subset, split=self.split,
                           offset=offset, on_done=on_done, on_error=lambda exc: self.notice.emit(str(exc)))

    def _on_preview(self, pv, source: str, subset, split) -> None:
        self.loading_source = ""
        self.preview, self.source, self.subset, self.split = pv, source, subset or None, split or None
        self.check = None   # the old report is about other data
        rows = f"{pv.num_rows:,} rows" if pv.num_rows is not None else "rows unknown"
        self.notice.emit(f"Opened {Path(source).name or source}: {len(pv.columns)} columns, {rows}.")
        suggested = suggest_task(pv.columns, pv.dtypes, self.task_key)
        if suggested != self.task_key:
            self.task_key = suggested
            self.notice.emit(f"Task set to {self.task.title}: the columns fit it. Change it on the Model & Task page.")
            self.task_changed.emit(suggested)
        self.mapping = guess_mapping(pv.columns, self.task)
        if Path(source).exists():
            self.settings.add_recent("files", str(Path(source).resolve()))
        self.source_changed.emit()
        self.mapping_changed.emit()
        self.split_changed.emit()
        self.schedule_validation()

    def _on_preview_failed(self, exc: Exception) -> None:
        self.loading_source = ""
        self.source_failed.emit(exc)

    def set_role(self, column: str, role: str) -> None:
        """Map ``column`` to ``role``; a single-column role moves here from the column that had it."""
        if self.mapping.get(column) == role:
            return
        if role not in MULTI_ROLES:
            for other, r in self.mapping.items():
                if r == role and other != column:
                    self.mapping[other] = IGNORE
        self.mapping[column] = role
        self.mapping_changed.emit()
        self.schedule_validation()

    def set_task(self, key: str) -> None:
        if key == self.task_key:
            return
        self.task_key = get_task(key).key
        self.settings.set("task/last", self.task_key)
        if self.preview:
            self.mapping = guess_mapping(self.preview.columns, self.task)
        self.task_changed.emit(self.task_key)
        self.mapping_changed.emit()
        self.schedule_validation()

    def set_eval_file(self, path: str | None) -> None:
        self.eval_file = str(path) if path else None
        self.split_changed.emit()
        self.schedule_validation()

    def set_validation_split(self, fraction: float) -> None:
        self.validation_split = round(float(fraction), 3)
        self.split_changed.emit()
        self.schedule_validation()

    # -- model & settings --------------------------------------------------------------------------
    def set_model(self, name: str) -> None:
        name = str(name).strip() or "default"
        if name == self.model and self.tokenizer_model == name:
            return
        self.model = name
        self.settings.set("model/last", name)
        self.settings.add_recent("models", name)
        self.model_changed.emit(name)
        self.load_tokenizer()

    def load_tokenizer(self) -> None:
        self.tokenizer, self.tokenizer_model, self.tokenizer_error = None, self.model, None
        model = self.model
        self.worker.submit("tokenizer", load_tokenizer, model, on_done=lambda tok: self._on_tokenizer(model, tok, None),
                           on_error=lambda exc: self._on_tokenizer(model, None, exc))

    def _on_tokenizer(self, model: str, tokenizer, error) -> None:
        if model != self.model:
            return
        self.tokenizer, self.tokenizer_error = tokenizer, error
        self.tokenizer_changed.emit()
        if tokenizer is not None:
            self.schedule_validation()   # now token lengths can be checked too

    def set_training(self, values: dict) -> None:
        changed = {k: v for k, v in values.items() if self.training.get(k) != v}
        if not changed:
            return
        self.training.update(changed)
        self.training_changed.emit()
        if "max_length" in changed or "seed" in changed:
            self.schedule_validation()

    # -- validation ----------------------------------------------------------------------------------
    def data_args(self) -> dict:
        """DatasetArgs fields for run.json (task, max_length and seed are set by the CLI from the rest)."""
        chosen = self.engine_columns()
        # Roles the user left on "ignore" are sent as None, so the engine does not guess them back.
        unmapped = {r: None for r in self.task.required + self.task.optional
                    if not any(base_role(c) == r for c in chosen)}
        return {"data": self.source, "eval_data": self.eval_file, "subset": self.subset, "split": self.split,
                "validation_split": 0.0 if self.has_validation_split else self.validation_split,
                "columns": {**unmapped, **chosen}}

    def schedule_validation(self) -> None:
        if self.preview is not None:
            self._timer.start()

    def validate_now(self) -> None:
        self._timer.stop()
        if self.preview is None:
            return
        values = self.training_values()
        try:
            args = DatasetArgs(**self.data_args(), task_type=self.task.engine_task, max_length=values["max_length"],
                               seed=values["seed"], is_regression=values.get("is_regression"))
        except DataError as err:
            self._on_checked(CheckResult(report=_report_of(err)))
            return
        self.validating = True
        self.validation_started.emit()
        self.worker.submit("validate", check_data, args, self.tokenizer, on_done=self._on_checked,
                           on_error=lambda exc: self._on_checked(CheckResult(report=_report_of(exc))))

    def _on_checked(self, result: CheckResult) -> None:
        self.validating = False
        self.check = result
        self.report_changed.emit()

    def blocking_problem(self) -> str | None:
        """Why training cannot start now, saying what to change; None when it can."""
        if self.preview is None:
            return "Choose training data first: drop a file on the Data page or try the demo dataset."
        missing = missing_roles(self.mapping, self.task)
        if missing:
            from raclate_app.tasks import role_title
            names = ", ".join(f"“{role_title(r, self.task)}”" for r in missing)
            return f"{self.task.title} needs a column for {names}: set it in the column roles on the Data page."
        if self.validating or self._timer.isActive() or self.check is None:
            return "Checking the data …"
        fatal = self.check.report.fatal
        if fatal:
            first = fatal[0]
            more = f" (and {len(fatal) - 1} more problem{'s' if len(fatal) > 2 else ''})" if len(fatal) > 1 else ""
            where = f"column “{first.column}”: " if first.column else ""
            return f"Fix the data first — {where}{first.message} {first.fix}{more}".strip()
        return None

    def blocking_level(self, problem: str | None = None) -> str:
        """How to colour a blocking message: "ok", "unknown" (nothing wrong yet: no data, checking) or "over"."""
        problem = self.blocking_problem() if problem is None else problem
        if not problem:
            return "ok"
        return "unknown" if self.preview is None or problem.startswith("Checking") else "over"

    def run_config(self, output_dir: str | Path) -> dict:
        """run.json for the current choices, made by the engine's builder (the one `raclate train` uses):
        it fills what was not chosen from the dataclass defaults and the model family's preset."""
        settings = {"model": self.model, "task": self.task.engine_task, "data": self.data_args(),
                    "training": {**self.training, **self.task.training}}
        return build_run_config(settings, output_dir=str(output_dir)).to_dict()


def _report_of(exc: Exception):
    from engine.data import Report
    return Report(findings=[finding_from_error(exc)])
