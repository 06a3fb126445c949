"""Evaluate page: pick a model (a run's output or checkpoint, or any folder) and the data (the run's
validation split, or another file mapped to roles with the Data page's editor), evaluate it with the
engine's metrics on the page's model thread, and compare with the base model it started from. A dense
embedding model can be evaluated at a smaller embedding size (its Matryoshka dims, or a truncation)."""
from __future__ import annotations

import sys
from pathlib import Path

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (QButtonGroup, QCheckBox, QFileDialog, QGroupBox, QHBoxLayout, QLabel, QProgressBar,
                               QPushButton, QRadioButton, QSpinBox, QVBoxLayout, QWidget)

from engine.data import preview
from raclate_app import theme
from raclate_app.evaluation import EvalSet, embedding_dims, folder_task_key, run_evaluation
from raclate_app.runs import run_roots, scan_runs
from raclate_app.tasks import IGNORE, engine_columns, get_task, guess_mapping, missing_roles, role_title
from raclate_app.widgets.dim_choice import DimChoice
from raclate_app.widgets.eval_results import EvalResults
from raclate_app.widgets.mapping import MappingEditor
from raclate_app.widgets.model_picker import ModelPicker
from raclate_app.widgets.source import FILE_FILTER
from raclate_app.workers import Cancelled, Progress, Worker, model_thread_pool


def move_role(mapping: dict[str, str], column: str, role: str) -> dict[str, str]:
    """Give ``column`` the role; a single-column role leaves the column that had it (as on the Data page)."""
    out = dict(mapping)
    if role not in ("negative", IGNORE):
        out = {c: (IGNORE if r == role and c != column else r) for c, r in out.items()}
    out[column] = role
    return out


def columns_for_engine(mapping: dict[str, str], columns: list[str], task) -> dict:
    """{role: column} with the roles left on "ignore" as None (the engine must not guess them)."""
    from engine.data.args import base_role
    chosen = engine_columns(mapping, columns)
    unmapped = {r: None for r in task.required + task.optional if not any(base_role(c) == r for c in chosen)}
    return {**unmapped, **chosen}


class EvaluatePage(QWidget):
    title = "Evaluate"
    next_requested = Signal()
    evaluated = Signal(object)   # the result dict

    def __init__(self, project, parent=None):
        super().__init__(parent)
        self.project = project
        self.worker = Worker(self, pool=model_thread_pool(self))   # models load and run on one thread
        self.progress_relay: Progress | None = None
        self.task_key: str | None = None
        self.file: str | None = None
        self.file_columns: list[str] = []
        self.file_dtypes: dict[str, str] = {}
        self.file_mapping: dict[str, str] = {}
        self.result: dict | None = None
        self.picker = ModelPicker("Model")
        self.use_validation = QRadioButton("The run's validation split")
        self.use_file = QRadioButton("Another file")
        group = QButtonGroup(self)
        group.addButton(self.use_validation)
        group.addButton(self.use_file)
        self.file_button = QPushButton("Choose file…")
        self.file_label = QLabel(wordWrap=True)
        self.mapping = MappingEditor()
        self.mapping.hide()
        self.compare = QCheckBox("Compare with the base model (before/after)")
        self.compare.setChecked(True)
        self.max_rows = QSpinBox(minimum=0, maximum=10_000_000, singleStep=100, value=0)
        self.max_rows.setSpecialValueText("all rows")
        self.max_rows.setToolTip("Evaluate on the first N rows only (quicker on large data).")
        self.dims = DimChoice()
        self.evaluate_button = QPushButton("▶  Evaluate")
        self.evaluate_button.setMinimumHeight(32)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.progress = QProgressBar(minimum=0, maximum=1, value=0, textVisible=True)
        self.progress.setFormat("")
        self.progress.hide()   # shown from the first run on
        self.status = QLabel(wordWrap=True)
        self.results = EvalResults()
        self.next_button = QPushButton("Next: Playground  →")
        self._build()
        self.picker.choice_changed.connect(self.on_picker_choice_changed)
        self.picker.refresh_button.clicked.connect(self.refresh_runs)
        self.use_validation.toggled.connect(self.update_state)
        self.file_button.clicked.connect(self.choose_file)
        self.use_file.clicked.connect(lambda: self.file or self.choose_file())
        self.mapping.role_chosen.connect(self.on_mapping_role_chosen)
        self.evaluate_button.clicked.connect(self.start)
        self.cancel_button.clicked.connect(self.cancel)
        self.next_button.clicked.connect(self.next_requested)
        self.use_validation.setChecked(True)
        self.refresh_runs()

    def _build(self) -> None:
        data = QGroupBox("Evaluation data")
        row = QHBoxLayout()
        row.addWidget(self.use_validation)
        row.addSpacing(16)
        row.addWidget(self.use_file)
        row.addWidget(self.file_button)
        row.addWidget(self.file_label, 1)
        options = QHBoxLayout()
        options.addWidget(self.compare)
        options.addSpacing(24)
        options.addWidget(QLabel("Rows"))
        options.addWidget(self.max_rows)
        options.addSpacing(24)
        options.addWidget(self.dims)
        options.addStretch()
        d_layout = QVBoxLayout(data)
        d_layout.addLayout(row)
        d_layout.addWidget(self.mapping)
        d_layout.addLayout(options)
        run = QHBoxLayout()
        run.addWidget(self.evaluate_button)
        run.addWidget(self.cancel_button)
        run.addWidget(self.progress, 1)
        run.addStretch()
        bottom = QHBoxLayout()
        bottom.addStretch()
        bottom.addWidget(self.next_button)
        layout = QVBoxLayout(self)
        layout.addWidget(self.picker)
        layout.addWidget(data)
        layout.addLayout(run)
        layout.addWidget(self.status)
        layout.addWidget(self.results, 1)
        layout.addLayout(bottom)

    # -- choices -------------------------------------------------------------------------------------
    def refresh_runs(self) -> None:
        self.project.worker.submit("evaluate-runs", scan_runs, run_roots(self.project.settings),
                                   on_done=self.on_runs_scanned, on_error=lambda exc: self.set_status(str(exc), "over"))

    def follow_run(self, path: str) -> None:
        """Select the model of a run that just ended, once the fresh list of runs holds it."""
        self.picker.follow(path)
        self.refresh_runs()

    def on_runs_scanned(self, runs) -> None:
        self.picker.set_runs(runs)

    def select_model(self, path: str) -> None:
        self.picker.select_path(path)

    def on_picker_choice_changed(self, choice) -> None:
        self.task_key = choice.task_key if choice else None
        if choice is not None and self.task_key is None:   # a plain folder: read its task from its files
            self.project.worker.submit("evaluate-task", folder_task_key, choice.path,
                                       on_done=lambda key: self._on_task_key(choice, key),
                                       on_error=lambda exc: self.set_status(f"Cannot read that model: {exc}", "over"))
        self.use_validation.setEnabled(bool(choice and choice.run_dir))
        if choice is not None and not choice.run_dir:
            self.use_file.setChecked(True)
        self.compare.setEnabled(bool(choice and choice.base))
        self._read_dims(choice)
        self._remap()
        self.update_state()

    def _on_task_key(self, choice, key: str) -> None:
        if self.picker.choice() == choice:
            self.task_key = key
            self._read_dims(choice)
            self._remap()
            self.update_state()

    def _read_dims(self, choice) -> None:
        """Offer the embedding sizes of a dense embedding model (read from its files off the GUI thread)."""
        self.dims.set_dims(None)
        if choice is not None and self.task_key == "sentence-similarity":
            self.project.worker.submit("evaluate-dims", embedding_dims, choice,
                                       on_done=lambda dims: self.on_dims_read(choice, dims))

    def on_dims_read(self, choice, dims) -> None:
        if self.picker.choice() == choice:   # not a model picked before the one shown now
            self.dims.set_dims(dims)

    def choose_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Data to evaluate on", str(Path.home()), FILE_FILTER)
        if path:
            self.open_file(path)
        elif not self.file:
            self.use_validation.setChecked(True)

    def open_file(self, path: str) -> None:
        self.use_file.setChecked(True)
        self.file_label.setText(f"Reading {Path(path).name} …")
        self.project.worker.submit("evaluate-file", preview, path, 50, on_done=lambda pv: self._on_file(path, pv),
                                   on_error=lambda exc: self.file_label.setText(f"Cannot read it: {exc}"))

    def _on_file(self, path: str, pv) -> None:
        self.file, self.file_columns, self.file_dtypes = path, list(pv.columns), dict(pv.dtypes)
        rows = f"{'≈' if pv.num_rows_is_estimate else ''}{pv.num_rows:,} rows" if pv.num_rows is not None else ""
        self.file_label.setText(f"<b>{Path(path).name}</b> {rows}")
        self.file_label.setToolTip(path)
        self.file_mapping = {}
        self._remap()
        self.update_state()

    def _remap(self) -> None:
        if not self.file or not self.task_key:
            self.mapping.hide()
            return
        task = get_task(self.task_key)
        if not self.file_mapping or self.mapping._task is not task:
            self.file_mapping = guess_mapping(self.file_columns, task)
        self.mapping.set_columns(self.file_columns, self.file_dtypes, self.file_mapping, task)
        self.mapping.setVisible(self.use_file.isChecked())

    def on_mapping_role_chosen(self, column: str, role: str) -> None:
        self.file_mapping = move_role(self.file_mapping, column, role)
        self.mapping.set_mapping(self.file_mapping)
        self.update_state()

    def problem(self) -> str | None:
        choice = self.picker.choice()
        if choice is None:
            return "Pick a model: a run's output or checkpoint, or a model folder."
        if self.use_file.isChecked():
            if not self.file:
                return "Choose the file to evaluate on."
            if not self.task_key:
                return "Reading the model's task …"
            task = get_task(self.task_key)
            missing = missing_roles(self.file_mapping, task)
            if missing:
                return f"Map a column to {', '.join(role_title(r, task) for r in missing)} for {task.title}."
        return None

    def update_state(self, *_args) -> None:
        self.mapping.setVisible(self.use_file.isChecked() and bool(self.file and self.task_key))
        self.file_button.setEnabled(True)
        busy = self.worker.is_busy("evaluate")
        problem = self.problem()
        self.evaluate_button.setEnabled(not busy and problem is None)
        if not busy:
            self.set_status(problem or "Ready.", "unknown" if problem else "ok")

    def set_status(self, text: str, level: str = "unknown") -> None:
        color = theme.muted_text() if level == "unknown" else theme.status_color(level)
        self.status.setText(f"<span style='color:{theme.hex_of(color)}'>{text}</span>")

    # -- running -------------------------------------------------------------------------------------
    def eval_set(self) -> EvalSet:
        rows = self.max_rows.value() or None
        if self.use_file.isChecked():
            columns = columns_for_engine(self.file_mapping, self.file_columns, get_task(self.task_key))
            return EvalSet(self.file, tuple(columns.items()), rows, self.dims.dim())
        return EvalSet(None, (), rows, self.dims.dim())

    def start(self) -> bool:
        if self.worker.is_busy("evaluate") or self.problem():
            return False
        choice = self.picker.choice()
        relay = self.progress_relay = Progress(self)
        relay.progressed.connect(self.on_progress)
        compare = self.compare.isEnabled() and self.compare.isChecked()
        self.worker.submit("evaluate", run_evaluation, choice, self.eval_set(), compare, relay,
                           on_done=self.on_done, on_error=self.on_failed)
        self.evaluate_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.progress.show()
        self.progress.setRange(0, 0)
        self.progress.setFormat("Starting …")
        self.set_status(f"Evaluating {choice.describe()} …")
        return True

    def cancel(self) -> None:
        if self.progress_relay is not None:
            self.progress_relay.cancel()
            self.cancel_button.setEnabled(False)
            self.set_status("Cancelling after the current batch …", "tight")

    def on_progress(self, done: int, total: int, text: str) -> None:
        if total <= 0:
            self.progress.setRange(0, 0)
        else:
            self.progress.setRange(0, total)
            self.progress.setValue(min(done, total))
        self.progress.setFormat(f"{text} … %p%" if total > 0 else f"{text} …")

    def _finish(self) -> None:
        self.progress_relay = None
        self.progress.setVisible(True)
        self.cancel_button.setEnabled(False)
        self.progress.setRange(0, 1)
        self.update_state()

    def on_done(self, result: dict) -> None:
        self.result = result
        self.progress.setValue(1)
        self.progress.setFormat("Done")
        self._finish()
        self.results.show_result(result)
        self.set_status(f"Evaluated {result['choice']} on {result['model']['rows']:,} rows.", "ok")
        self.evaluated.emit(result)

    def on_failed(self, exc: Exception) -> None:
        self.progress.setValue(0)
        self._finish()
        if isinstance(exc, Cancelled):
            self.progress.setFormat("Cancelled")
            self.set_status("Cancelled; nothing was changed.", "tight")
            return
        self.progress.setFormat("Failed")
        hint = getattr(exc, "hint", "") or getattr(exc, "fix", "")
        self.set_status(f"<b>Could not evaluate:</b> {exc}" + (f"<br>{hint}" if hint and hint not in str(exc) else ""),
                        "over")

    def shutdown(self) -> None:
        """Cancel a running evaluation (the window is closing) and wait for the model thread."""
        if self.progress_relay is not None:
            self.progress_relay.cancel()
        self.worker.pool.waitForDone(30_000)


if __name__ == "__main__":
    from raclate_app.pages import run_alone
    sys.exit(run_alone(EvaluatePage))
