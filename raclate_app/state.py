"""Project: the one app state — what the user has chosen so far (data, encoding, mapping, task, model,
settings) and the background work that follows from it (preview, validation, tokenizer). Every page
reads and changes it; it never blocks the GUI thread: every engine call goes through the Worker.

The task follows the data: each file opened gets the task its columns fit (engine suggest_tasks), and
when several fit, the choices with their reasons (``choices``) for the Data page to ask.

Big data is checked twice: the first SAMPLE_ROWS rows (seconds; training may start once they pass),
then every row in the background (``full_checking``). A fatal problem only the full check finds
makes ``data_refused`` say so, so that a run started meanwhile stops before it trains."""
from __future__ import annotations

from dataclasses import MISSING, fields
from pathlib import Path

from PySide6.QtCore import QObject, QTimer, Signal

from engine.data import DataError, DatasetArgs, Finding, Report, preview
from engine.data.args import SAMPLING, base_role, dataset_name
from engine.defaults import RESOURCES_DIR
from engine.demo import JOBS as DEMO_JOBS
from engine.training.args import TrainingArgs
from engine.training.config import MIXABLE_TASKS, build_run_config
from raclate_app.checks import (SAMPLE_ROWS, CheckResult, check_data, check_sample, detected_encoding,
                                finding_from_error, load_tokenizer)
from raclate_app.model_info import ModelCheck, check_model
from raclate_app.settings import AppSettings
from raclate_app.tasks import (DEFAULT_TASK, IGNORE, TaskChoice, engine_columns, get_task, guess_mapping,
                               missing_roles, role_title, task_choices)
from raclate_app.workers import Cancelled, Progress, Worker

DEMO = DEMO_JOBS["retrieval"]   # the headless demo's retrieval job: its data folder and training settings
DEMO_FILE = RESOURCES_DIR / "demo" / DEMO.data
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
    source_opening = Signal(str)        # a file, folder or Hub id is being read
    source_changed = Signal()           # read (or, after a failure, unloaded: preview is None)
    source_failed = Signal(object)      # the exception (DataError says file, row and fix)
    datasets_changed = Signal()         # another dataset was added, removed or remapped (``more``), or the sampling
    task_changed = Signal(str)
    mapping_changed = Signal()
    split_changed = Signal()
    model_changed = Signal(str)
    training_changed = Signal()
    validation_started = Signal()
    report_changed = Signal()
    check_progressed = Signal(int, int)  # the full check's rows measured so far, of all
    data_refused = Signal(str, object)  # a fatal problem the full check found after the sample passed; the data args
    tokenizer_changed = Signal()
    model_checked = Signal()            # check_model answered about the model (model_check)
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
        self.failed_source: tuple[str, str | None, str | None] | None = None   # the last open that failed
        self.encoding: str | None = None    # text encoding of the data (None: UTF-8)
        self.encoding_error: DataError | None = None   # why it was chosen without the user: the file is not UTF-8
        self.task_key = get_task(self.settings.get("task/last", DEFAULT_TASK)).key
        self.choices: list[TaskChoice] = []   # the tasks the data fits, best first, with their reasons
        self.mapping: dict[str, str] = {}
        # More files trained with the data, each batch from one file: {path, name, preview, mapping {column: role}}
        self.more: list[dict] = []
        self.sampling = SAMPLING[0]
        self.model = self.settings.get("model/last", "default")
        self.training: dict = {}
        self.keep_settings_for: str | None = None   # a duplicated run's model: its preset must not apply
        self.check: CheckResult | None = None
        self.validating = False
        self.full_checking = False   # the sample passed (or not) and every row is being checked
        self.check_progress = (0, 0)   # (rows measured, rows) of the full check
        self._full_progress: Progress | None = None   # the full check's progress; cancel() ends it
        self._checks = 0   # counts data changes: a check that finishes after one is about other data
        self.tokenizer = None
        self.tokenizer_model: str | None = None
        self.tokenizer_error: Exception | None = None
        self._timer = QTimer(self, singleShot=True, interval=VALIDATE_DELAY_MS)
        self._timer.timeout.connect(self.validate_now)
        self.model_check: ModelCheck | None = None   # what check_model found about the model; None: checking
        self.load_tokenizer()
        self.verify_model()

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

    def choice_for(self, key: str) -> TaskChoice | None:
        """The suggestion behind task ``key`` (late interaction reads the data as sentence similarity)."""
        key = "sentence-similarity" if key == "late-interaction" else key
        return next((c for c in self.choices if c.key == key), None)

    # -- data ----------------------------------------------------------------------------------------
    def open_source(self, path_or_id: str, subset: str | None = None, split: str | None = None,
                    encoding: str | None = None) -> None:
        """Preview a file, folder or Hub dataset off the GUI thread; source_changed when it is in, or
        source_changed (unloaded) and source_failed when it cannot be read."""
        path_or_id = str(path_or_id).strip()
        if not path_or_id:
            return
        self.eval_file = None   # a validation file belongs to the data it came with
        self.encoding, self.encoding_error = encoding or None, None
        if self.more:   # so do the files added to it
            self.more = []
            self.datasets_changed.emit()
        self._read(path_or_id, subset, split)

    @property
    def can_add_dataset(self) -> bool:
        """Whether the task trains on several files at once (a label task numbers each file's labels its own way)."""
        return self.task.engine_task in MIXABLE_TASKS

    def add_dataset(self, path: str) -> None:
        """Train on another file too (every batch from one file): read its first rows off the GUI thread
        and map its columns for the task; datasets_changed when it is in, a notice when it cannot be read."""
        path = str(path)
        if self.preview is None and not self.loading_source:   # no data yet: this file is the data
            self.open_source(path)
            return
        if path in (self.source, self.loading_source, *(d["path"] for d in self.more)):
            self.notice.emit(f"{_name(path)} is already in the data.")
            return
        self.worker.submit(f"dataset:{path}", preview, path, PREVIEW_ROWS,
                           on_done=lambda pv: self._on_dataset_preview(path, pv),
                           on_error=lambda exc: self.notice.emit(f"Could not add {_name(path)}: {exc}"))

    def _on_dataset_preview(self, path: str, pv) -> None:
        taken = {dataset_name(self.source or self.loading_source), *(d["name"] for d in self.more)}
        name, n = dataset_name(path), 2
        while name in taken:   # names tell the datasets apart in the metrics: files named alike get a number
            name, n = f"{dataset_name(path)}_{n}", n + 1
        self.more.append({"path": path, "name": name, "preview": pv, "mapping": self._mapping_of(pv, self.task),
                          "check": None})
        self.notice.emit(f"Added {_name(path)}: every batch comes from one file, so in-batch negatives never mix.")
        self.datasets_changed.emit()
        self._check_more(self.more[-1:])

    def _mapping_of(self, pv, task) -> dict[str, str]:
        """{column: role} of another file for ``task``: what suggest_tasks maps for it, else the name guess."""
        choice = next((c for c in task_choices(pv.columns, pv.rows) if c.key == task.key), None)
        return dict(choice.mapping) if choice else guess_mapping(list(pv.columns), task)

    def remove_dataset(self, index: int) -> None:
        del self.more[index]
        self.datasets_changed.emit()

    def set_dataset_role(self, index: int, column: str, role: str) -> None:
        """``column`` of added file ``index`` to ``role`` (a single-column role moves, as in set_role)."""
        mapping = self.more[index]["mapping"]
        if role not in MULTI_ROLES:
            for other, r in mapping.items():
                if r == role and other != column:
                    mapping[other] = IGNORE
        mapping[column] = role
        self._check_more([self.more[index]])
        self.datasets_changed.emit()

    def _check_more(self, datasets: list[dict]) -> None:
        """Check the first rows of added files with their own roles (the run checks every row again)."""
        values = self.training_values()
        for dataset in datasets:
            dataset["check"] = None
            missing = missing_roles(dataset["mapping"], self.task)
            if missing:   # blocking_problem says it in the page's words
                continue
            args = DatasetArgs(data=dataset["path"], columns=self._columns_of(dataset["mapping"], dataset["preview"].columns),
                               task_type=self.task.engine_task, max_length=values["max_length"], seed=values["seed"],
                               validation_split=0.0)

            def checked(result, dataset=dataset):
                if any(d is dataset for d in self.more):   # not removed since
                    dataset["check"] = result
                    self.datasets_changed.emit()
            self.worker.submit(f"check:{dataset['path']}", check_sample, args, self.tokenizer, on_done=checked,
                               on_error=lambda exc, done=checked: done(CheckResult(report=_report_of(exc))))

    def set_sampling(self, sampling: str) -> None:
        self.sampling = sampling
        self.datasets_changed.emit()

    def _remap_more(self) -> None:
        for dataset in self.more:
            dataset["mapping"] = self._mapping_of(dataset["preview"], self.task)
        if self.more:
            self.datasets_changed.emit()
            self._check_more(self.more)

    def set_encoding(self, encoding: str | None) -> None:
        """Read the data again in ``encoding`` (None: UTF-8, or the detected encoding when it is not)."""
        encoding = encoding or None
        if encoding == self.encoding and self.preview is not None:
            return
        self.encoding, self.encoding_error = encoding, None
        target = (self.source, self.subset, self.split) if self.preview is not None else self.failed_source
        if target is not None:
            self._read(*target)

    def _read(self, source: str, subset, split) -> None:
        self.loading_source = source
        self._forget_check()   # the report on screen is about the data before
        self.notice.emit(f"Opening {_name(source)} …")
        self.source_opening.emit(source)
        encoding = self.encoding
        self.worker.submit("preview", preview, source, PREVIEW_ROWS, subset=subset or None, split=split or None,
                           encoding=encoding, on_done=lambda pv: self._on_preview(pv, source, subset, split),
                           on_error=lambda exc: self._on_preview_failed(exc, source, subset, split, encoding))

    def load_demo(self) -> None:
        """The bundled retrieval demo (French questions → English command descriptions, its own held-out
        questions) with sentence similarity and the embedded model."""
        self.set_task(DEMO.task)
        self.set_model("default")
        self.set_training(DEMO.training)   # as `make run` headless: the README's before/after numbers
        self.open_source(str(DEMO_FILE))

    def rows_at(self, offset: int, on_done) -> None:
        """Preview rows of the current source from row ``offset`` (to show a row the report points at)."""
        self.worker.submit("rows_at", preview, self.source, PREVIEW_ROWS, subset=self.subset, split=self.split,
                           offset=offset, encoding=self.encoding, on_done=on_done,
                           on_error=lambda exc: self.notice.emit(str(exc)))

    def _on_preview(self, pv, source: str, subset, split) -> None:
        # The same data read again (in another encoding) keeps the user's task and roles.
        again = source == self.source and self.preview is not None and list(pv.columns) == self.columns
        self.loading_source, self.failed_source = "", None
        self.preview, self.source, self.subset, self.split = pv, source, subset or None, split or None
        rows = f"{pv.num_rows:,} rows" if pv.num_rows is not None else "rows unknown"
        self.notice.emit(f"Opened {_name(source)}: {len(pv.columns)} columns, {rows}.")
        if not again:
            self._follow_data(pv)
            self._remap_more()   # files added while this one opened follow its task
        if Path(source).exists():
            self.settings.add_recent("files", str(Path(source).resolve()))
        self.source_changed.emit()
        self.mapping_changed.emit()
        self.split_changed.emit()
        self.schedule_validation()

    def _follow_data(self, pv) -> None:
        """The task and roles of newly opened data: the best task its columns fit, never the last file's."""
        self.choices = task_choices(pv.columns, pv.rows)
        best = self.choices[0] if self.choices else None
        key = self.task_key if best is None else best.key
        if key == "sentence-similarity" and self.task_key == "late-interaction":
            key = self.task_key   # late interaction is the user's way of training pairs: keep it
        changed = key != self.task_key
        self.task_key = key
        self.settings.set("task/last", key)
        self.mapping = self._mapping_for(self.task)
        if best is not None:
            more = " Other tasks fit too: choose on the Data page." if len(self.choices) > 1 else ""
            self.notice.emit(f"Task: {self.task.title} — {best.reason}.{more}")
        if changed:
            self.task_changed.emit(key)

    def _mapping_for(self, task) -> dict[str, str]:
        choice = self.choice_for(task.key)
        return dict(choice.mapping) if choice else guess_mapping(self.columns, task)

    def _on_preview_failed(self, exc: Exception, source: str, subset, split, encoding) -> None:
        guess = detected_encoding(exc) if encoding is None else None
        if guess:   # not UTF-8: read it again in the encoding the engine recognised, and say so
            self.encoding, self.encoding_error = guess, exc
            self._read(source, subset, split)
            return
        # Unload the previous data: nothing may stay "ready" for a file the user no longer sees.
        self.loading_source, self.failed_source = "", (source, subset, split)
        self.preview, self.source, self.subset, self.split = None, "", None, None
        self.mapping, self.choices, self.eval_file = {}, [], None
        self._forget_check()
        self.notice.emit(f"Could not open {_name(source)}: the Data page says why.")
        self.source_changed.emit()
        self.mapping_changed.emit()
        self.split_changed.emit()
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
            self.mapping = self._mapping_for(self.task)
        self._remap_more()
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
            if self.model_check is not None and self.model_check.problem:
                self.verify_model()   # entered again: the folder or the network may have changed since
            return
        self.model = name
        self.settings.set("model/last", name)
        self.verify_model()
        self.model_changed.emit(name)
        self.load_tokenizer()

    def verify_model(self) -> None:
        """Check the model before anything says ready (a folder with config.json and weights, a Hub id
        in the cache or on the Hub); model_checked when the answer is in."""
        self.model_check, model = None, self.model
        self.worker.submit("model_check", check_model, model, on_done=lambda c: self._on_model_checked(model, c),
                           on_error=lambda exc: self._on_model_checked(model, ModelCheck(model, "", problem=str(exc))))

    def _on_model_checked(self, model: str, check: ModelCheck) -> None:
        if model != self.model:
            return
        self.model_check = check
        if check.problem is None:   # only models training can start from are offered again
            self.settings.add_recent("models", model)
        self.model_checked.emit()

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
        """DatasetArgs fields for run.json (task, max_length and seed are set by the CLI from the rest);
        with added files, ``data`` lists every file with its own columns."""
        first = self.first_data_args()
        if not self.more:
            return first
        entries = [{"path": self.source, "name": dataset_name(self.source), "columns": first["columns"], "loss": None,
                    "eval_data": self.eval_file}]
        entries += [{"path": d["path"], "name": d["name"], "columns": self._columns_of(d["mapping"], d["preview"].columns),
                     "loss": None, "eval_data": None} for d in self.more]
        # the files without a validation file each hold out validation_split of their rows
        return {**first, "data": entries, "eval_data": None, "columns": {}, "sampling": self.sampling,
                "validation_split": self.validation_split}

    def first_data_args(self) -> dict:
        """DatasetArgs fields of the first (previewed) file: what the data check reads."""
        return {"data": self.source, "eval_data": self.eval_file, "subset": self.subset, "split": self.split,
                "encoding": self.encoding,
                "validation_split": 0.0 if self.has_validation_split else self.validation_split,
                "columns": self._columns_of(self.mapping, self.columns)}

    def _columns_of(self, mapping: dict[str, str], columns) -> dict:
        """{role: column} of a file's {column: role}, for the engine."""
        chosen = engine_columns(mapping, list(columns))
        # Roles the user left on "ignore" are sent as None, so the engine does not guess them back.
        unmapped = {r: None for r in self.task.required + self.task.optional
                    if not any(base_role(c) == r for c in chosen)}
        return {**unmapped, **chosen}

    def schedule_validation(self) -> None:
        if self.preview is not None:
            self._timer.start()

    def validate_now(self) -> None:
        self._timer.stop()
        if self.preview is None or self.loading_source:
            return
        self._checks += 1
        self.cancel_full_check()
        self._check_more(self.more)   # max length or tokenizer may have changed
        number = self._checks
        missing = missing_roles(self.mapping, self.task)
        if missing:   # said here in the page's words (the engine's hint names its Python options)
            self._on_checked(number, CheckResult(report=Report(findings=[self._missing_finding(missing)])))
            return
        values = self.training_values()
        try:
            args = DatasetArgs(**self.first_data_args(), task_type=self.task.engine_task, max_length=values["max_length"],
                               seed=values["seed"], is_regression=values.get("is_regression"))
        except DataError as err:
            self._on_checked(number, CheckResult(report=_report_of(err)))
            return
        self.validating = True
        self.validation_started.emit()
        tokenizer = self.tokenizer

        def failed(exc):
            self._on_checked(number, CheckResult(report=_report_of(exc)))
        if self._is_big():   # the first rows now, every row after
            self.worker.submit("validate", check_sample, args, tokenizer, on_error=failed,
                               on_done=lambda result: self._on_sampled(number, args, tokenizer, result))
        else:
            self.worker.submit("validate", check_data, args, tokenizer, on_error=failed,
                               on_done=lambda result: self._on_checked(number, result))

    def _is_big(self) -> bool:
        """More rows than the sample check reads (or an unknown number: a validation file, a Hub dataset)."""
        rows = self.preview.num_rows
        return bool(self.eval_file) or rows is None or rows > SAMPLE_ROWS

    def _on_sampled(self, number: int, args: DatasetArgs, tokenizer, result: CheckResult) -> None:
        """The first rows are checked: show their report (Start may go on) and check every row."""
        if number != self._checks:
            return
        self.validating, self.full_checking, self.check = False, True, result
        self.check_progress = (0, 0)
        progress = self._full_progress = Progress()
        progress.progressed.connect(self._on_full_progressed)
        checked = self.data_args()

        def failed(exc):
            if not isinstance(exc, Cancelled):   # cancelled: given up for newer data, or the app quits
                self._on_full_checked(number, checked, CheckResult(report=_report_of(exc)))
        self.worker.submit("validate_full", check_data, args, tokenizer, progress=progress, on_error=failed,
                           on_done=lambda full: self._on_full_checked(number, checked, full))
        self.report_changed.emit()

    def _on_full_progressed(self, done: int, total: int, _text: str) -> None:
        progress = self._full_progress
        if progress is not None and self.sender() is progress:   # not a check given up since
            self.check_progress = (done, total)
            self.check_progressed.emit(done, total)

    def _on_full_checked(self, number: int, checked: dict, result: CheckResult) -> None:
        if number != self._checks:
            return   # about data (or a mapping) that has changed since
        sample_passed = self.check is not None and self.check.report.ok
        self.full_checking, self._full_progress, self.check = False, None, result
        pv = self.preview
        if result.rows is not None and pv is not None and (pv.num_rows is None or pv.num_rows_is_estimate):
            pv.num_rows, pv.num_rows_is_estimate = result.rows, False   # the exact count replaces the estimate
        self.report_changed.emit()
        if sample_passed and not result.report.ok:
            self.data_refused.emit(_fatal_problem(result.report), checked)

    def cancel_full_check(self) -> None:
        if self._full_progress is not None:
            self._full_progress.cancel()   # its next chunk raises Cancelled: the worker thread is free again
        self._full_progress, self.full_checking = None, False

    def _on_checked(self, number: int, result: CheckResult) -> None:
        if number != self._checks:
            return   # about data (or a mapping) that has changed since
        self.validating = False
        self.check = result
        self.report_changed.emit()

    def _forget_check(self) -> None:
        """Drop the report now (a check still running is about the data before) and say so."""
        self._timer.stop()
        self._checks += 1
        self.cancel_full_check()
        self.check, self.validating = None, False
        self.report_changed.emit()

    def _missing_finding(self, missing: list[str]) -> Finding:
        names = ", ".join(f"“{role_title(r, self.task)}”" for r in missing)
        return Finding("fatal", "missing_column", f"{self.task.title} needs a column for {names}.",
                       f"In Column roles, set the column that holds it to {names}; the columns are "
                       f"{', '.join(f'“{c}”' for c in self.columns)}.")

    def blocking_problem(self) -> str | None:
        """Why training cannot start now, saying what to change; None when it can."""
        if self.loading_source:
            return f"Opening {_name(self.loading_source)} …"
        if self.preview is None:
            return "Choose training data first: drop a file on the Data page or try the demo dataset."
        missing = missing_roles(self.mapping, self.task)
        if missing:
            names = ", ".join(f"“{role_title(r, self.task)}”" for r in missing)
            return f"{self.task.title} needs a column for {names}: set it in the column roles on the Data page."
        if self.more and not self.can_add_dataset:
            return (f"{self.task.title} trains on one file (each file would number its labels its own way): remove "
                    "the added files on the Data page, or merge them into one.")
        for dataset in self.more:
            missing = missing_roles(dataset["mapping"], self.task)
            if missing:
                names = ", ".join(f"“{role_title(r, self.task)}”" for r in missing)
                return (f"{_name(dataset['path'])} needs a column for {names}: set it in its column roles on the "
                        "Data page.")
            if dataset["check"] is None:
                return f"Checking {_name(dataset['path'])} …"
            if not dataset["check"].report.ok:
                return f"{_name(dataset['path'])}: {_fatal_problem(dataset['check'].report)}"
        if self.model_check is None:
            return "Checking the model …"
        if self.model_check.problem:
            return self.model_check.problem
        if self.validating or self._timer.isActive() or self.check is None:
            return "Checking the data …"
        return _fatal_problem(self.check.report)

    def blocking_level(self, problem: str | None = None) -> str:
        """How to colour a blocking message: "ok", "unknown" (nothing wrong yet: no data, checking) or "over"."""
        problem = self.blocking_problem() if problem is None else problem
        if not problem:
            return "ok"
        return "unknown" if self.preview is None or problem.startswith(("Checking", "Opening")) else "over"

    def run_config(self, output_dir: str | Path) -> dict:
        """run.json for the current choices, made by the engine's builder (the one `raclate train` uses):
        it fills what was not chosen from the dataclass defaults and the model family's preset."""
        settings = {"model": self.model, "task": self.task.engine_task, "data": self.data_args(),
                    "training": {**self.training, **self.task.training}}
        return build_run_config(settings, output_dir=str(output_dir)).to_dict()


def _fatal_problem(report: Report) -> str | None:
    """The first fatal finding of a report as what to fix, with how many more there are."""
    fatal = report.fatal
    if not fatal:
        return None
    first = fatal[0]
    more = f" (and {len(fatal) - 1} more problem{'s' if len(fatal) > 2 else ''})" if len(fatal) > 1 else ""
    where = f"column “{first.column}”: " if first.column else ""
    return f"Fix the data first — {where}{first.message} {first.fix}{more}".strip()


def _report_of(exc: Exception) -> Report:
    return Report(findings=[finding_from_error(exc)])


def _name(source: str) -> str:
    return Path(source).name or source

