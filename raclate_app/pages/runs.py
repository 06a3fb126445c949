"""Runs page: every run under the runs folder (and folders the user added) with its date, name,
model, task, data, key settings, final metrics and status, filtered by words, task and date; open
its folder, duplicate its settings into a new run, compare the curves of several runs, resume one
from a checkpoint, evaluate it, export it or one of its checkpoints, rename it, or move it to the
trash."""
from __future__ import annotations

import sys
from html import escape
from pathlib import Path

from PySide6.QtCore import QFile, Qt, QUrl, Signal
from PySide6.QtGui import QColor, QDesktopServices
from PySide6.QtWidgets import (QAbstractItemView, QComboBox, QDialog, QFileDialog, QHBoxLayout, QHeaderView,
                               QInputDialog, QLabel, QLineEdit, QMessageBox, QPushButton, QSplitter, QTableWidget,
                               QTableWidgetItem, QTextBrowser, QVBoxLayout, QWidget)

from engine.data.args import data_paths
from engine.errors import UsageError
from engine.run_record import set_run_name
from raclate_app import theme
from raclate_app.runs import (DATE_RANGES, deletable, duplicate_settings, matches, resume_config, run_roots, scan_runs,
                              since)
from raclate_app.tasks import APP_TASKS, IGNORE, get_task
from raclate_app.widgets.run_compare import CheckpointPicker, RunCompare, comparison_html

COLUMNS = ("Started", "Run", "Status", "Task", "Model", "Data", "Final metrics", "Settings")
STATUS_COLUMN = 2
STATUS_LEVEL = {"finished": "ok", "stopped": "tight", "crashed": "over", "running": "info"}


def apply_duplicate(project, settings: dict) -> None:
    """Set the project up like a past run: task, model, settings now; data, mapping and validation
    once the data file's preview is in (the Data and Model & Task pages follow the project)."""
    from engine.data.args import base_role
    if settings["model"] != project.model:
        project.keep_settings_for = settings["model"]   # the new model's preset must not overwrite these settings
    project.set_task(settings["task"])
    project.set_model(settings["model"])
    project.set_training(settings["training"])
    source = str(settings["source"])

    def done():
        project.source_changed.disconnect(on_source)
        project.source_failed.disconnect(on_failed)

    def on_source():
        done()
        if project.source != source:
            return
        if project.task_key != settings["task"]:
            project.set_task(settings["task"])
        mapping = dict(project.mapping)
        for role in settings.get("unmapped", []):
            mapping = {c: (IGNORE if base_role(r) == base_role(role) else r) for c, r in mapping.items()}
        for role, column in settings["columns"].items():
            if column in mapping:
                mapping = {c: (IGNORE if r == base_role(role) and r != "negative" else r) for c, r in mapping.items()}
                mapping[column] = base_role(role)
        project.mapping = mapping
        if settings.get("eval_file"):
            project.eval_file = settings["eval_file"]
        project.validation_split = float(settings.get("validation_split") or 0.0) or project.validation_split
        project.mapping_changed.emit()
        project.split_changed.emit()
        project.schedule_validation()
        project.notice.emit(f"Settings of the run copied: data {Path(source).name}, {get_task(settings['task']).title}.")

    def on_failed(_exc):
        done()

    project.source_changed.connect(on_source)
    project.source_failed.connect(on_failed)
    project.open_source(source, settings.get("subset"), settings.get("split"))


def _cell(text: str, tip: str = "", color: QColor | None = None) -> QTableWidgetItem:
    item = QTableWidgetItem(text)
    item.setFlags(Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable)
    item.setToolTip(tip or text)
    if color is not None:
        item.setForeground(color)
    return item


class RunsPage(QWidget):
    title = "Runs"
    next_requested = Signal()
    duplicate_requested = Signal(object)    # duplicate_settings(record)
    resume_requested = Signal(object, object)   # run.json config, RunInfo
    evaluate_requested = Signal(str)        # a model folder
    export_requested = Signal(str)          # a model folder
    runs_changed = Signal()                 # a run was renamed or moved to the trash

    def __init__(self, project, parent=None):
        super().__init__(parent)
        self.project = project
        self.runs: list = []
        self.where = QLabel(wordWrap=True)
        self.add_button = QPushButton("Add folder…")
        self.add_button.setToolTip("Also list the runs in another folder (e.g. outputs of `raclate train`).")
        self.refresh_button = QPushButton("Refresh")
        self.search = QLineEdit(placeholderText="Filter by name, model, data …", clearButtonEnabled=True)
        self.task_filter = QComboBox()
        self.task_filter.addItem("All tasks", None)
        for task in APP_TASKS:
            self.task_filter.addItem(task.title, task.key)
        self.date_filter = QComboBox()
        for title, days in DATE_RANGES:
            self.date_filter.addItem(title, days)
        self.notice = QLabel(wordWrap=True)
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.verticalHeader().hide()
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.table.setWordWrap(False)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        header.setStretchLastSection(True)
        self.table.verticalHeader().setDefaultSectionSize(26)
        self.buttons = {name: QPushButton(text) for name, text in (
            ("open", "Open folder"), ("duplicate", "Duplicate settings"), ("resume", "Resume from checkpoint…"),
            ("evaluate", "Evaluate"), ("export", "Export…"), ("export_checkpoint", "Export checkpoint…"),
            ("rename", "Rename…"), ("delete", "Move to trash…"))}
        self.buttons["duplicate"].setToolTip("Fill the Data and Model & Task pages with this run's settings, "
                                             "for a new run.")
        self.buttons["rename"].setToolTip("Give the run a name, shown instead of its folder's name.")
        self.details = QTextBrowser()
        self.details.setOpenLinks(False)
        self.compare = RunCompare()
        self._build()
        self.add_button.clicked.connect(self.add_folder)
        self.refresh_button.clicked.connect(self.refresh)
        self.table.itemSelectionChanged.connect(self.on_selection_changed)
        self.table.itemDoubleClicked.connect(lambda _item: self.open_folder())
        self.buttons["open"].clicked.connect(self.open_folder)
        self.buttons["duplicate"].clicked.connect(self.duplicate)
        self.buttons["resume"].clicked.connect(self.resume)
        self.buttons["evaluate"].clicked.connect(lambda: self._emit_model(self.evaluate_requested))
        self.buttons["export"].clicked.connect(lambda: self._emit_model(self.export_requested))
        self.buttons["export_checkpoint"].clicked.connect(self.export_checkpoint)
        self.buttons["rename"].clicked.connect(self.rename)
        self.buttons["delete"].clicked.connect(self.delete)
        self.search.textChanged.connect(self.apply_filter)
        self.task_filter.currentIndexChanged.connect(self.apply_filter)
        self.date_filter.currentIndexChanged.connect(self.apply_filter)
        self.refresh()

    def _build(self) -> None:
        top = QHBoxLayout()
        top.addWidget(self.where, 1)
        top.addWidget(self.add_button)
        top.addWidget(self.refresh_button)
        filters = QHBoxLayout()
        filters.addWidget(QLabel("Show"))
        filters.addWidget(self.search, 1)
        filters.addWidget(self.task_filter)
        filters.addWidget(self.date_filter)
        actions = QVBoxLayout()   # two short rows: one long row would set the window's least width
        for names in (("evaluate", "export", "export_checkpoint", "resume"), ("open", "duplicate", "rename", "delete")):
            row = QHBoxLayout()
            for name in names:
                row.addWidget(self.buttons[name])
            row.addStretch()
            actions.addLayout(row)
        lower = QSplitter(Qt.Orientation.Horizontal)
        lower.addWidget(self.details)
        lower.addWidget(self.compare)
        lower.setChildrenCollapsible(False)
        lower.setSizes([400, 880])
        self.details.setMinimumWidth(300)
        upper = QWidget()
        u_layout = QVBoxLayout(upper)
        u_layout.setContentsMargins(0, 0, 0, 0)
        u_layout.addLayout(filters)
        u_layout.addWidget(self.table, 1)
        u_layout.addLayout(actions)
        u_layout.addWidget(self.notice)
        body = QSplitter(Qt.Orientation.Vertical)
        body.addWidget(upper)
        body.addWidget(lower)
        body.setSizes([320, 480])
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(body, 1)

    # -- the list ------------------------------------------------------------------------------------
    def roots(self) -> list[Path]:
        return run_roots(self.project.settings)

    def refresh(self) -> None:
        roots = self.roots()
        extra = f" and {len(roots) - 1} added folder{'s' if len(roots) > 2 else ''}" if len(roots) > 1 else ""
        self.where.setText(f"Runs in <b>{escape(str(roots[0]))}</b>{extra} · reading …")
        self.project.worker.submit("runs", scan_runs, roots, on_done=self.set_runs,
                                   on_error=lambda exc: self.where.setText(f"Could not read the runs: {exc}"))

    def add_folder(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "A folder with runs (or one run's output folder)")
        if path:
            self.add_root(path)

    def add_root(self, path: str) -> None:
        extra = [p for p in self.project.settings.get_json("runs/extra", []) if p != str(path)] + [str(path)]
        self.project.settings.set_json("runs/extra", extra)
        self.refresh()

    def set_runs(self, runs: list) -> None:
        keep = {str(r.path) for r in self.selected_runs()}
        self.runs = list(runs)
        self.table.setRowCount(len(self.runs))
        self.table.blockSignals(True)
        for row, run in enumerate(self.runs):
            metric = run.main_metric()
            metrics = ", ".join(f"{k} {v:.4f}" for k, v in list(run.metrics.items())[:4])
            started = run.started.strftime("%Y-%m-%d %H:%M") if run.started else "?"
            level = STATUS_LEVEL.get(run.status, "unknown")
            values = (started, run.name, run.status, get_task(run.task_key).title, run.model_name, run.data,
                      f"{metric[0]} {metric[1]:.4f}" if metric else "–", run.settings_text())
            tips = ("", f"{run.name}\n{run.path}", run.error_text(), "", run.model,
                    "\n".join(data_paths((run.record.get("data") or {}).get("data"))), metrics, "")
            for col, (value, tip) in enumerate(zip(values, tips)):
                color = QColor(theme.status_color(level)) if col == STATUS_COLUMN else None
                self.table.setItem(row, col, _cell(value, tip, color))
        self.table.clearSelection()
        self._hide_filtered()
        for row, run in enumerate(self.runs):
            if str(run.path) in keep and not self.table.isRowHidden(row):
                self.table.selectRow(row)
        first = next((r for r in range(len(self.runs)) if not self.table.isRowHidden(r)), None)
        if not keep and first is not None:
            self.table.selectRow(first)
        self.table.blockSignals(False)
        self.table.resizeColumnsToContents()
        for col in range(self.table.columnCount()):
            self.table.setColumnWidth(col, min(self.table.columnWidth(col), 280))
        self.on_selection_changed()

    def apply_filter(self, *_args) -> None:
        self._hide_filtered()
        self.on_selection_changed()

    def _hide_filtered(self) -> None:
        """Hide the rows the filter leaves out (rows stay in ``self.runs`` order) and count the rest."""
        after = since(self.date_filter.currentData())
        shown = 0
        for row, run in enumerate(self.runs):
            hide = not matches(run, self.search.text(), self.task_filter.currentData(), after)
            self.table.setRowHidden(row, hide)
            shown += not hide
        roots = self.roots()
        extra = f" and {len(roots) - 1} added folder{'s' if len(roots) > 2 else ''}" if len(roots) > 1 else ""
        count = f"<b>{shown}</b> of {len(self.runs)} runs" if shown < len(self.runs) else \
            f"<b>{len(self.runs)}</b> run{'s' if len(self.runs) != 1 else ''}"
        self.where.setText(f"{count} in <b>{escape(str(roots[0]))}</b>{extra}")

    def selected_runs(self) -> list:
        rows = sorted({i.row() for i in self.table.selectionModel().selectedRows()}) if self.table.selectionModel() else []
        return [self.runs[r] for r in rows if r < len(self.runs) and not self.table.isRowHidden(r)]

    def current_run(self):
        runs = self.selected_runs()
        return runs[0] if len(runs) == 1 else None

    def on_selection_changed(self) -> None:
        runs = self.selected_runs()
        run = runs[0] if len(runs) == 1 else None
        self.buttons["open"].setEnabled(bool(runs))
        self.buttons["duplicate"].setEnabled(run is not None)
        self.buttons["resume"].setEnabled(run is not None and bool(run.checkpoints()) and run.status != "running")
        self.buttons["resume"].setToolTip("" if run is None or run.checkpoints() else "This run kept no checkpoint.")
        has_model = run is not None and run.has_model
        self.buttons["evaluate"].setEnabled(run is not None and (has_model or bool(run.checkpoints())))
        self.buttons["export"].setEnabled(has_model)
        self.buttons["export_checkpoint"].setEnabled(run is not None and bool(run.checkpoints()))
        self.buttons["rename"].setEnabled(run is not None and run.status != "running")
        self.buttons["delete"].setEnabled(bool(runs) and all(r.status != "running" for r in runs))
        self.buttons["delete"].setToolTip("A running run cannot be deleted: stop it first."
                                          if any(r.status == "running" for r in runs) else
                                          "Move the selected run folders to the system trash (after asking).")
        self.compare.set_runs(runs)
        self.show_details(run, len(runs))

    def show_details(self, run, count: int) -> None:
        muted = theme.hex_of(theme.muted_text())
        if run is None and count > 1:
            self.details.setHtml(comparison_html(self.selected_runs()))
            return
        if run is None:
            text = f"{count} runs selected." if count else (
                "No runs yet. Train a model on the Train page; every run appears here with its settings and "
                "metrics. Runs made with <code>raclate train</code> elsewhere can be added with “Add folder…”.")
            self.details.setHtml(f"<p style='color:{muted}'>{text}</p>")
            return
        rec = run.record
        training = rec.get("training") or {}
        color = theme.hex_of(theme.status_color(STATUS_LEVEL.get(run.status, "unknown")))
        folder = f" <span style='color:{muted}'>({escape(run.path.name)})</span>" if run.named else ""
        parts = [f"<h3 style='margin:0'>{escape(run.name)}{folder}</h3>",
                 f"<p><span style='color:{color}'><b>{escape(run.status)}</b></span>"
                 + (f" at step {run.final_step}" if run.final_step else "") + f" · {escape(str(run.path))}</p>"]
        if run.error_text():
            parts.append(f"<p style='color:{theme.hex_of(theme.status_color('over'))}'>{escape(run.error_text())}</p>")
        rows = [("Task", get_task(run.task_key).title), ("Model", run.model),
                ("Data", ", ".join(data_paths((rec.get("data") or {}).get("data")))), ("Settings", run.settings_text())]
        rows += [(k, f"{v:.4f}") for k, v in run.metrics.items()]
        parts.append("<table cellspacing='0' cellpadding='2'>" + "".join(
            f"<tr><td style='color:{muted}; padding-right:12px'>{escape(k)}</td><td>{escape(str(v))}</td></tr>"
            for k, v in rows) + "</table>")
        ckpts = run.checkpoints()
        if ckpts:
            parts.append(f"<p style='color:{muted}'>Checkpoints at step {', '.join(str(c.step) for c in ckpts)}.</p>")
        others = ", ".join(f"{k} {v}" for k, v in training.items()
                           if k not in ("output_dir",) and v not in (None, False, "", [])
                           and k not in ("num_train_epochs", "batch_size", "learning_rate", "max_length"))
        parts.append(f"<p style='color:{muted}'>All settings: {escape(others)}</p>")
        self.details.setHtml("".join(parts))

    # -- actions -------------------------------------------------------------------------------------
    def open_folder(self) -> None:
        for run in self.selected_runs()[:4]:
            QDesktopServices.openUrl(QUrl.fromLocalFile(str(run.path)))

    def duplicate(self) -> None:
        run = self.current_run()
        if run is not None:
            self.duplicate_requested.emit(duplicate_settings(run.record))

    def pick_checkpoint(self, run, purpose: str = "resume"):
        """The checkpoint chosen in the picker, or None (a method, so tests can answer it)."""
        dialog = CheckpointPicker(run, self, purpose)
        return dialog.selected() if dialog.exec() == QDialog.DialogCode.Accepted else None

    def resume(self) -> None:
        run = self.current_run()
        if run is None or not run.checkpoints():
            return
        ckpt = self.pick_checkpoint(run)
        if ckpt is not None:
            self.resume_requested.emit(resume_config(run, ckpt.path), run)

    def export_checkpoint(self) -> None:
        run = self.current_run()
        if run is None or not run.checkpoints():
            return
        ckpt = self.pick_checkpoint(run, "export")
        if ckpt is not None:
            self.export_requested.emit(str(ckpt.path))

    def ask_name(self, run) -> str | None:
        """The new name typed for ``run`` (blank: back to its folder's name), None when cancelled; a
        method so tests can answer it."""
        name, ok = QInputDialog.getText(self, "Rename run", f"Name of the run in {run.path.name} (blank: the "
                                        "folder's name)", text=run.name if run.named else "")
        return name if ok else None

    def rename(self) -> None:
        run = self.current_run()
        name = self.ask_name(run) if run is not None else None
        if name is None:
            return
        try:
            set_run_name(run.path, name)
        except (UsageError, OSError) as exc:
            self.set_notice(f"Not renamed: {exc}", "over")
            return
        self.set_notice(f"Renamed {run.path.name} to “{name.strip()}”." if name.strip() else
                        f"{run.path.name} shows its folder's name again.", "ok")
        self.refresh()
        self.runs_changed.emit()

    def confirm_delete(self, runs: list) -> bool:
        """Whether the user confirms moving ``runs`` to the trash (a method so tests can answer it)."""
        buttons = QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.Cancel
        what = "this run" if len(runs) == 1 else f"these {len(runs)} runs"
        box = QMessageBox(QMessageBox.Icon.Question, "Move to the trash?", f"<b>Move {what} to the trash?</b>",
                          buttons, self)
        box.setInformativeText("These folders go to the system trash, with their model and checkpoints (restore "
                               "them from there):\n\n" + "\n".join(str(r.path) for r in runs))
        box.button(QMessageBox.StandardButton.Yes).setText("Move to trash")
        box.setDefaultButton(QMessageBox.StandardButton.Cancel)
        box.exec()
        box.deleteLater()
        return box.clickedButton() is box.button(QMessageBox.StandardButton.Yes)

    def delete(self) -> None:
        runs = self.selected_runs()
        refusals = [why for why in map(deletable, runs) if why]
        if refusals:
            self.set_notice("Nothing was deleted: " + " ".join(refusals), "over")
            return
        if not runs or not self.confirm_delete(runs):
            return
        moved, failed = [], []
        for run in runs:
            why = deletable(run)   # again: the run may have started or gone while the question was open
            if why is None and QFile.moveToTrash(str(run.path)):
                moved.append(run.path.name)
            else:
                failed.append(why or f"{run.path} could not be moved to the trash (no trash on that drive?); "
                                     "it was left as it is.")
        if moved:
            self.set_notice(f"Moved to the trash: {', '.join(moved)}." + (" " + " ".join(failed) if failed else ""),
                            "tight" if failed else "ok")
        else:
            self.set_notice(" ".join(failed), "over")
        self.refresh()
        if moved:
            self.runs_changed.emit()

    def set_notice(self, text: str, level: str = "unknown") -> None:
        color = theme.muted_text() if level == "unknown" else theme.status_color(level)
        self.notice.setText(f"<span style='color:{theme.hex_of(color)}'>{escape(text)}</span>")

    def _emit_model(self, signal) -> None:
        run = self.current_run()
        if run is None:
            return
        if run.has_model:
            signal.emit(str(run.path))
        elif run.checkpoints():
            signal.emit(str(run.checkpoints()[-1].path))


if __name__ == "__main__":
    from raclate_app.pages import run_alone
    sys.exit(run_alone(RunsPage))
