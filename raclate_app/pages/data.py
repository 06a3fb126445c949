"""Data page: open or drop data (in its text encoding), preview its first rows, see which task the
columns fit and why (or choose when several do), map columns to roles, choose validation data, read
the live validation report and see exactly what the model reads for a row."""
from __future__ import annotations

import sys
from html import escape
from pathlib import Path

from PySide6.QtCore import QItemSelectionModel, Qt, Signal
from PySide6.QtWidgets import (QAbstractItemView, QComboBox, QFileDialog, QGroupBox, QHBoxLayout, QHeaderView, QLabel,
                               QPushButton, QScrollArea, QSplitter, QStackedWidget, QTableView, QVBoxLayout, QWidget)

from engine.data import DataError
from engine.data.mapping import resolve_columns
from raclate_app import theme
from raclate_app.checks import SAMPLE_ROWS, detected_encoding, render_row
from raclate_app.mining_dialog import MiningDialog, mining_problem
from raclate_app.tasks import APP_TASKS, role_title
from raclate_app.widgets.mapping import MappingEditor
from raclate_app.widgets.model_sees import ModelSeesView
from raclate_app.widgets.more_datasets import MoreDatasetsBox
from raclate_app.widgets.preview_model import PreviewModel
from raclate_app.widgets.report import ReportView
from raclate_app.widgets.source import (FILE_FILTER, EmptyState, SourceBar, SplitBox, dropped_paths, encoding_title,
                                        is_readable, refusal, split_train_validation)
from raclate_app.widgets.task_choice import TaskChoiceBox


class DataPage(QWidget):
    title = "Data"
    next_requested = Signal()

    def __init__(self, project, parent=None):
        super().__init__(parent)
        self.project = project
        self.setAcceptDrops(True)
        self.source_bar = SourceBar()
        self.error_label = QLabel(wordWrap=True, textInteractionFlags=Qt.TextInteractionFlag.TextSelectableByMouse)
        self.error_label.hide()
        self.encoding_note = QLabel(wordWrap=True)   # the file is not UTF-8: which encoding it is read in
        self.encoding_note.hide()
        self.empty = EmptyState()
        self.table_model = PreviewModel(self)
        self.table = QTableView()
        self.table.setModel(self.table_model)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setAlternatingRowColors(False)
        self.table.setWordWrap(False)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.horizontalHeader().setDefaultAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter)
        self.table.verticalHeader().setDefaultSectionSize(24)
        self.info_label = QLabel()
        self.model_sees = ModelSeesView()
        self.task_combo = QComboBox()
        for task in APP_TASKS:
            self.task_combo.addItem(task.title, task.key)
        self.choice_box = TaskChoiceBox()
        self.mapping = MappingEditor()
        self.mine_button = QPushButton("Find hard negatives…")
        self.mine_button.setToolTip("Let the model pick, for each anchor, close but wrong texts as negatives; "
                                    "review them, then train on the triplets.")
        self.mining_dialog: MiningDialog | None = None
        self.more = MoreDatasetsBox()   # files trained with this one, each with its own roles
        self.split_box = SplitBox()
        self.report = ReportView()
        self.blocking = QLabel(wordWrap=True)
        self.next_button = QPushButton("Next: Model && Task  →")
        self._build()
        self._connect()
        self.empty.set_recent(project.settings.recent("files"))
        self.on_source_changed()
        self.on_report_changed()

    # -- layout --------------------------------------------------------------------------------------
    def _build(self) -> None:
        left = QSplitter(Qt.Orientation.Vertical)
        top = QWidget()
        top_layout = QVBoxLayout(top)
        top_layout.setContentsMargins(0, 0, 0, 0)
        top_layout.addWidget(self.info_label)
        top_layout.addWidget(self.table, 1)
        sees = QGroupBox("What the model sees (selected row)")
        QVBoxLayout(sees).addWidget(self.model_sees)
        left.addWidget(top)
        left.addWidget(sees)
        left.setStretchFactor(0, 3)
        left.setStretchFactor(1, 2)

        side = QWidget()
        side_layout = QVBoxLayout(side)
        side_layout.setContentsMargins(0, 0, 4, 0)
        task_row = QHBoxLayout()
        task_row.addWidget(QLabel("<b>Task</b>"))
        task_row.addWidget(self.task_combo, 1)
        side_layout.addLayout(task_row)
        side_layout.addWidget(self.choice_box)
        roles = QGroupBox("Column roles")
        roles_layout = QVBoxLayout(roles)
        roles_layout.addWidget(self.mapping)
        roles_layout.addWidget(self.mine_button)
        side_layout.addWidget(roles)
        side_layout.addWidget(self.more)
        side_layout.addWidget(self.split_box)
        check = QGroupBox("Data check")
        QVBoxLayout(check).addWidget(self.report)
        side_layout.addWidget(check, 3)
        side_scroll = QScrollArea(widgetResizable=True, frameShape=QScrollArea.Shape.NoFrame)
        side_scroll.setWidget(side)
        side_scroll.setMinimumWidth(300)

        content = QSplitter(Qt.Orientation.Horizontal)
        content.addWidget(left)
        content.addWidget(side_scroll)
        content.setStretchFactor(0, 3)
        content.setStretchFactor(1, 2)
        content.setChildrenCollapsible(False)
        self.stack = QStackedWidget()
        self.stack.addWidget(self.empty)
        self.stack.addWidget(content)

        bottom = QHBoxLayout()
        bottom.addWidget(self.blocking, 1)
        bottom.addWidget(self.next_button)
        layout = QVBoxLayout(self)
        layout.addWidget(self.source_bar)
        layout.addWidget(self.error_label)
        layout.addWidget(self.encoding_note)
        layout.addWidget(self.stack, 1)
        layout.addLayout(bottom)

    def _connect(self) -> None:
        p = self.project
        self.source_bar.open_file_requested.connect(self.open_file_dialog)
        self.source_bar.open_folder_requested.connect(self.open_folder_dialog)
        self.source_bar.hub_requested.connect(lambda i, s, sp: p.open_source(i, s or None, sp or None))
        self.source_bar.encoding_chosen.connect(p.set_encoding)
        self.choice_box.chosen.connect(p.set_task)
        self.empty.demo_requested.connect(p.load_demo)
        self.empty.recent_requested.connect(p.open_source)
        self.task_combo.currentIndexChanged.connect(lambda _i: p.set_task(self.task_combo.currentData()))
        self.mapping.role_chosen.connect(p.set_role)
        self.more.add_requested.connect(self.add_files_dialog)
        self.more.removed.connect(p.remove_dataset)
        self.more.role_chosen.connect(p.set_dataset_role)
        self.more.sampling_chosen.connect(p.set_sampling)
        self.split_box.fraction_changed.connect(p.set_validation_split)
        self.split_box.eval_file_requested.connect(self.open_eval_file_dialog)
        self.split_box.eval_file_cleared.connect(lambda: p.set_eval_file(None))
        self.report.row_clicked.connect(self.on_report_row_clicked)
        self.table.selectionModel().currentRowChanged.connect(lambda cur, _prev: self.render_row(cur.row()))
        self.next_button.clicked.connect(self.next_requested)
        self.mine_button.clicked.connect(self.open_mining_dialog)
        p.source_opening.connect(self.on_source_opening)
        p.source_changed.connect(self.on_source_changed)
        p.source_failed.connect(self.on_source_failed)
        p.task_changed.connect(self.on_task_changed)
        p.datasets_changed.connect(self.on_datasets_changed)
        p.mapping_changed.connect(self.on_mapping_changed)
        p.split_changed.connect(self.on_split_changed)
        p.validation_started.connect(self.on_report_changed)
        p.report_changed.connect(self.on_report_changed)
        p.check_progressed.connect(self.on_report_changed)
        p.tokenizer_changed.connect(self.render_current_row)
        p.training_changed.connect(self.render_current_row)

    # -- opening data --------------------------------------------------------------------------------
    def open_file_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open training data", self._start_dir(), FILE_FILTER)
        if path:
            self.open_paths([Path(path)])

    def open_folder_dialog(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Open a folder with train/validation files", self._start_dir())
        if path:
            self.open_paths([Path(path)])

    def add_files_dialog(self) -> None:
        paths, _ = QFileDialog.getOpenFileNames(self, "Add training data", self._start_dir(), FILE_FILTER)
        for path in paths:
            self.project.add_dataset(path)

    def open_eval_file_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Validation file", self._start_dir(), FILE_FILTER)
        if path:
            self.project.set_eval_file(path)
        else:
            self.split_box.update_from(self.project)

    def _start_dir(self) -> str:
        recent = self.project.settings.recent("files")
        return str(Path(recent[0]).parent) if recent else str(Path.home())

    def open_paths(self, paths: list[Path]) -> bool:
        """Open dropped or chosen paths; files it cannot read are refused with a message saying what it reads."""
        readable = [p for p in paths if is_readable(p)]
        if paths and not readable:
            self.show_error(escape(refusal(paths)))
            self.project.notice.emit(refusal(paths))
            return False
        train, validation = split_train_validation(readable)
        if train is None:
            return False
        self.project.open_source(str(train))
        if validation is not None:
            self.project.set_eval_file(str(validation))
        for path in readable:   # several training files dropped: the others train with it, each batch from one
            if path not in (train, validation):
                self.project.add_dataset(str(path))
        return True

    def dragEnterEvent(self, event) -> None:
        if dropped_paths(event.mimeData()):   # any local file: one it cannot read gets a message on the drop
            event.acceptProposedAction()

    def dropEvent(self, event) -> None:
        if self.open_paths(dropped_paths(event.mimeData())):
            event.acceptProposedAction()

    # -- project → widgets ---------------------------------------------------------------------------
    def on_source_opening(self, _source: str) -> None:
        self.error_label.hide()
        self._update_blocking()

    def on_source_changed(self) -> None:
        p = self.project
        pv = p.preview
        self.error_label.hide()
        self.table_model.set_preview(pv)
        self.stack.setCurrentIndex(1 if pv else 0)
        self.source_bar.set_encoding(p.encoding)
        self.source_bar.encoding.setEnabled(pv is None or pv.format not in ("parquet", "hub"))
        self._show_encoding_note()
        self.next_button.setEnabled(pv is not None)
        self.next_button.setToolTip("" if pv is not None else "Open training data first.")
        self._show_task(p.task_key)
        self.choice_box.show_choices(p.choices, p.task_key)
        if pv is None:
            self.empty.set_recent(p.settings.recent("files"))
            self.model_sees.show_message("Select a row of the preview to see exactly what the model reads.")
            self._update_blocking()
            return
        self._show_info()
        self.on_mapping_changed(rebuild=True)
        self.split_box.update_from(p)
        self.more.update_from(p)
        self.table.resizeColumnsToContents()
        for c in range(self.table_model.columnCount()):
            self.table.setColumnWidth(c, min(max(self.table.columnWidth(c), 90), 360))
        if pv.rows:
            self.table.selectRow(0)

    def _show_info(self) -> None:
        """The file, its format and rows: estimated from the head of a big file until the full check counts them."""
        p, pv = self.project, self.project.preview
        if pv is None:
            return
        total = f"{'≈' if pv.num_rows_is_estimate else ''}{pv.num_rows:,} rows" if pv.num_rows is not None else \
            "row count unknown"
        splits = f" · splits: {', '.join(pv.splits)}" if pv.splits else ""
        offset = getattr(pv, "offset", 0)
        shown = f"showing the first {len(pv.rows):,}" if not offset else \
            f"showing rows {offset + 1:,}–{offset + len(pv.rows):,}"
        self.info_label.setText(f"<b>{Path(p.source).name or p.source}</b> · {pv.format} · {total}{splits} · {shown}")
        self.info_label.setToolTip(p.source)

    def _show_encoding_note(self) -> None:
        """Say so when the file was read in another encoding than UTF-8 without the user choosing it."""
        p, err = self.project, self.project.encoding_error
        self.encoding_note.setVisible(err is not None and p.preview is not None)
        if err is None or p.preview is None:
            return
        what = f"Line {err.row} of {Path(p.source).name}" if err.row else Path(p.source).name
        color = theme.hex_of(theme.status_color("tight"))
        self.encoding_note.setText(
            f"<span style='color:{color}'>⚠ {escape(what)} is not UTF-8 text, so the file is read as "
            f"{escape(encoding_title(p.encoding))}. If characters look wrong, choose its encoding above.</span>")

    def on_split_changed(self) -> None:
        self.split_box.update_from(self.project)

    def render_current_row(self) -> None:
        self.render_row(self.table.currentIndex().row())

    def on_source_failed(self, exc) -> None:
        text = str(exc)
        guess = detected_encoding(exc)
        if guess:   # the engine's fix names the CLI flag; here the choice is the Encoding box above
            where = f"{Path(exc.file or '').name}{f', line {exc.row}' if exc.row else ''}: "
            text = (f"{where if exc.file else ''}{exc.message} Fix: choose {encoding_title(guess)} in “Encoding” "
                    "above, or save the file as UTF-8.")
        self.show_error(f"<b>Could not open the data; no data is loaded.</b> {escape(text)}")

    def show_error(self, html: str) -> None:
        color = theme.hex_of(theme.status_color("over"))
        self.error_label.setText(f"<span style='color:{color}'>{html}</span>")
        self.error_label.show()

    def on_task_changed(self, key: str) -> None:
        self._show_task(key)
        self.choice_box.set_current(key)
        self.on_mapping_changed(rebuild=True)
        self.more.update_from(self.project)

    def on_datasets_changed(self) -> None:
        self.more.update_from(self.project)
        self._update_blocking()

    def _show_task(self, key: str) -> None:
        self.task_combo.blockSignals(True)
        self.task_combo.setCurrentIndex(max(self.task_combo.findData(key), 0))
        self.task_combo.blockSignals(False)

    def on_mapping_changed(self, rebuild: bool = False) -> None:
        p = self.project
        if p.preview is None:
            return
        if rebuild or set(self.mapping.combos) != set(p.columns) or self.mapping._task is not p.task:
            self.mapping.set_columns(p.columns, p.preview.dtypes, p.mapping, p.task)
        else:
            self.mapping.set_mapping(p.mapping)
        self.table_model.set_roles(p.mapping, {c: role_title(r, p.task) for c, r in p.mapping.items()})
        self.mine_button.setVisible(mining_problem(p) is None)   # pair data without negatives
        self.render_row(self.table.currentIndex().row())
        self._update_blocking()

    def on_report_changed(self) -> None:
        p = self.project
        if p.loading_source:
            self.report.show_message(f"Opening {Path(p.loading_source).name or p.loading_source} …")
        elif p.check is None:
            self.report.show_message("Checking the data …" if p.validating or p.preview else "No data yet.")
        else:
            self.report.show_report(p.check.report, checking=self._checking_text(), notes=self._mapping_notes())
            self._show_info()   # the full check counts the rows exactly
        self._update_blocking()

    def _checking_text(self) -> str | bool:
        p = self.project
        if not p.full_checking:
            return p.validating
        done, total = p.check_progress
        how_far = f" ({done / total:.0%})" if total else ""
        return f"This report is about the first {SAMPLE_ROWS:,} rows; checking every row{how_far} …"

    def _mapping_notes(self) -> list[str]:
        """Columns the engine would still use although the page shows them as ignored."""
        p = self.project
        chosen = p.first_data_args()["columns"]
        try:
            resolved = resolve_columns(p.columns, p.task.engine_task, chosen)
        except DataError:
            return []
        return [f"Column “{col}” is set to ignore, but training will still use it as "
                f"{role_title(role, p.task)} (the engine completes the mapping from column names)."
                for role, col in resolved.items() if role not in chosen and col not in chosen.values()]

    def _update_blocking(self) -> None:
        problem = self.project.blocking_problem()
        level = self.project.blocking_level(problem)
        color = theme.muted_text() if level == "unknown" else theme.status_color(level)
        ready = (f"✓ The first {SAMPLE_ROWS:,} rows are ready: training can start while every row is checked "
                 "(a problem found stops the run before it trains)." if self.project.full_checking else
                 "✓ The data is ready for training.")
        self.blocking.setText(f"<span style='color:{theme.hex_of(color)}'>{problem or ready}</span>")

    def open_mining_dialog(self) -> None:
        self.mining_dialog = MiningDialog(self.project, self)
        self.mining_dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        self.mining_dialog.open()

    # -- rows ----------------------------------------------------------------------------------------
    def on_report_row_clicked(self, file, number: int, split: str) -> None:
        pv = self.project.preview
        if pv is None:
            return
        if file and pv.file and Path(file).resolve() != Path(pv.file).resolve():
            self.project.notice.emit(f"That row is in {Path(file).name}, which is not the previewed file.")
            return
        self.show_row(self.table_model.row_for_line(number))

    def show_row(self, row: int) -> None:
        """Select data row ``row`` (0 = the file's first data row), reading the rows around it when
        they are not in the preview."""
        local = row - self.table_model.offset
        if 0 <= local < self.table_model.rowCount():
            index = self.table_model.index(local, 0)
            self.table.selectionModel().setCurrentIndex(
                index, QItemSelectionModel.SelectionFlag.ClearAndSelect | QItemSelectionModel.SelectionFlag.Rows)
            self.table.scrollTo(index, QAbstractItemView.ScrollHint.PositionAtCenter)
            return
        pv = self.project.preview
        if row >= 0 and (pv.num_rows is None or pv.num_rows_is_estimate or row < pv.num_rows):
            number = row + self.table_model.first_row_number
            self.project.notice.emit(f"Reading the rows around {self.table_model.numbering} {number:,} …")
            self.project.rows_at(max(row - 20, 0), lambda window: self._on_rows_at(window, row))

    def _on_rows_at(self, window, row: int) -> None:
        if not 0 <= row - window.offset < len(window.rows):
            self.project.notice.emit(f"{self.table_model.numbering.capitalize()} "
                                     f"{row + self.table_model.first_row_number:,} is past the end of the data.")
            return
        window.num_rows, window.num_rows_is_estimate = self.project.preview.num_rows, \
            self.project.preview.num_rows_is_estimate
        self.project.preview = window
        self.on_source_changed()
        self.show_row(row)

    def render_row(self, row: int) -> None:
        p = self.project
        if p.preview is None or row < 0 or row >= len(self.table_model.rows):
            return
        if p.tokenizer is None:
            self.model_sees.show_message(f"Could not load the tokenizer of “{p.model}”: {p.tokenizer_error}"
                                         if p.tokenizer_error else "Loading the model's tokenizer …")
            return
        columns = p.engine_columns()
        if any(r not in columns for r in p.task.required):
            self.model_sees.show_message("Map the required columns to see what the model reads.")
            return
        values = p.training_values()
        label = f"{self.table_model.numbering.capitalize()} {self.table_model.number_of(row)}"
        titles = {r: role_title(r, p.task) for r in list(columns) + ["text", "tokens"]}
        tokenizer = p.tokenizer
        p.worker.submit("render", render_row, dict(self.table_model.rows[row]), columns, tokenizer,
                        p.task.engine_task, values["max_length"],
                        on_done=lambda out: self.model_sees.show_rendered(out, label, titles, tokenizer),
                        on_error=lambda exc: self.model_sees.show_message(f"Cannot render this row: {exc}"))


if __name__ == "__main__":
    from raclate_app.pages import run_alone
    sys.exit(run_alone(DataPage))
