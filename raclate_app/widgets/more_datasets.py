"""The files trained together with the Data page's file: each with its own column roles, how batches are
drawn from them, and "Add another file…". Every batch comes from one file (engine/data/mixing.py)."""
from __future__ import annotations

from html import escape
from pathlib import Path

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QComboBox, QFrame, QGroupBox, QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from engine.data.args import SAMPLING, dataset_name
from raclate_app import theme
from raclate_app.tasks import missing_roles
from raclate_app.widgets.mapping import MappingEditor

SAMPLING_TITLES = {"proportional": "in proportion to their sizes", "round-robin": "in turn (round-robin)"}


class MoreDatasetsBox(QGroupBox):
    add_requested = Signal()
    removed = Signal(int)                # the added file's position
    role_chosen = Signal(int, str, str)  # the added file's position, column, role
    sampling_chosen = Signal(str)

    def __init__(self, parent=None):
        super().__init__("More datasets", parent)
        self.note = QLabel(wordWrap=True)
        self.panels = QVBoxLayout()
        self.panels.setContentsMargins(0, 0, 0, 0)
        self.editors: list[MappingEditor] = []
        self.statuses: list[QLabel] = []   # each file's check of its first rows
        self.sampling = QComboBox()
        for name in SAMPLING:
            self.sampling.addItem(SAMPLING_TITLES[name], name)
        self.sampling.setToolTip("Proportional: a bigger file gives more batches, spread over the epoch. "
                                 "Round-robin: one batch of each file in turn until each runs out.")
        self.sampling_row = QWidget()
        row = QHBoxLayout(self.sampling_row)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(QLabel("Batches drawn"))
        row.addWidget(self.sampling, 1)
        self.add_button = QPushButton("Add another file…")
        self.add_button.setToolTip("Train on another file too: each batch comes from one file, with its own "
                                   "column roles and loss (e.g. pairs with MNRL and scored pairs with CoSENT).")
        layout = QVBoxLayout(self)
        layout.addWidget(self.note)
        layout.addLayout(self.panels)
        layout.addWidget(self.sampling_row)
        layout.addWidget(self.add_button)
        self.add_button.clicked.connect(self.add_requested)
        self.sampling.currentIndexChanged.connect(lambda _i: self.sampling_chosen.emit(self.sampling.currentData()))
        self._shown = None   # (task, files) the panels were built for: a new role only updates them

    def update_from(self, project) -> None:
        more, task = project.more, project.task
        shown = (task.key, tuple(d["path"] for d in more))
        if shown != self._shown:
            self._rebuild(more, task)
        else:
            for editor, dataset in zip(self.editors, more):
                editor.set_mapping(dataset["mapping"])
        for status, dataset in zip(self.statuses, more):   # a missing role: the editor's summary says so
            status.setText("" if missing_roles(dataset["mapping"], task) else _status(dataset["check"]))
        self.sampling.blockSignals(True)
        self.sampling.setCurrentIndex(max(self.sampling.findData(project.sampling), 0))
        self.sampling.blockSignals(False)
        self.sampling_row.setVisible(bool(more))
        self.add_button.setEnabled(project.preview is not None and project.can_add_dataset)
        muted = theme.hex_of(theme.muted_text())
        if not project.can_add_dataset:
            text = f"{task.title} trains on one file: each file would number its labels its own way."
        elif more:
            names = ", ".join(f"“{escape(n)}_…”" for n in [dataset_name(project.source)] + [d["name"] for d in more])
            text = f"Every batch comes from one file; metrics are shown per file ({names})."
        else:
            text = "Train on several files at once, each batch from one file."
        self.note.setText(f"<span style='color:{muted}'>{text}</span>")

    def _rebuild(self, more: list[dict], task) -> None:
        while self.panels.count():
            widget = self.panels.takeAt(0).widget()
            if widget is not None:
                widget.deleteLater()
        self.editors, self.statuses = [], []
        for index, dataset in enumerate(more):
            panel = QFrame(frameShape=QFrame.Shape.StyledPanel)
            header = QHBoxLayout()
            pv = dataset["preview"]
            rows = f"{'≈' if pv.num_rows_is_estimate else ''}{pv.num_rows:,} rows" if pv.num_rows is not None else ""
            title = QLabel(f"<b>{escape(dataset['name'])}</b> · {escape(Path(dataset['path']).name)}"
                           + (f" · {rows}" if rows else ""))
            title.setToolTip(dataset["path"])
            remove = QPushButton("Remove")
            remove.setAccessibleName(f"Remove {dataset['name']}")
            remove.clicked.connect(lambda _c=False, i=index: self.removed.emit(i))
            header.addWidget(title, 1)
            header.addWidget(remove)
            editor = MappingEditor()
            editor.set_columns(list(pv.columns), pv.dtypes, dataset["mapping"], task)
            editor.role_chosen.connect(lambda column, role, i=index: self.role_chosen.emit(i, column, role))
            box = QVBoxLayout(panel)
            box.setContentsMargins(6, 6, 6, 6)
            status = QLabel(wordWrap=True)
            box.addLayout(header)
            box.addWidget(editor)
            box.addWidget(status)
            self.panels.addWidget(panel)
            self.editors.append(editor)
            self.statuses.append(status)
        self._shown = (task.key, tuple(d["path"] for d in more))


def _status(check) -> str:
    """One line about a file's first rows: checking, fine, or its first fatal problem."""
    if check is None:
        return f"<span style='color:{theme.hex_of(theme.muted_text())}'>Checking its first rows …</span>"
    fatal = check.report.fatal
    if not fatal:
        return f"<span style='color:{theme.hex_of(theme.status_color('ok'))}'>✓ Its first rows are fine.</span>"
    where = f"column “{escape(fatal[0].column)}”: " if fatal[0].column else ""
    return (f"<span style='color:{theme.hex_of(theme.status_color('over'))}'>✗ {where}{escape(fatal[0].message)} "
            f"{escape(fatal[0].fix or '')}</span>")
