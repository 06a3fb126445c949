"""Find hard negatives (the Data page's step for pair data): the project's model ranks the positives
for each anchor (engine.mining, off the GUI thread, with progress and Cancel), the table shows each
anchor / positive / mined negative with their scores, closest calls first, and the user unticks the
rows that are really answers (false negatives). "Use these" writes the kept triplets to a new file
beside the data (never over a file) and opens it on the Data page with the negative role mapped."""
from __future__ import annotations

import itertools
from html import escape
from pathlib import Path

import numpy as np
from PySide6.QtCore import QAbstractTableModel, QModelIndex, Qt, Signal
from PySide6.QtWidgets import (QAbstractItemView, QDialog, QDoubleSpinBox, QHBoxLayout, QHeaderView, QLabel,
                               QProgressBar, QPushButton, QSpinBox, QTableView, QVBoxLayout)

from engine import inference
from engine.mining import Mined, mine_hard_negatives, read_pairs, summary_path, write_mined
from raclate_app import theme
from raclate_app.workers import Cancelled, Progress, Worker, model_thread_pool

ROLES = {"anchor": "text", "positive": "text_pair", "negative": "negative"}   # output column -> app role


def mining_problem(project) -> str | None:
    """Why the project's data cannot be mined (None: it can): pair data in a local file, with the
    text and text-pair roles mapped and no negative yet."""
    if project.task.engine_task != "sentence-similarity" or project.preview is None:
        return "Hard negatives are for sentence-similarity pair data."
    columns = project.engine_columns()
    if "text" not in columns or "text_pair" not in columns:
        return "Map the anchor (text) and positive (text pair) columns first."
    if any(role.startswith("negative") for role in columns):
        return "This data already has negatives."
    if not Path(project.source).is_file():
        return "Mining reads a local data file (not a folder or a Hub dataset)."
    return None


def mine(data: str, columns: dict, encoding: str | None, model: str, settings: dict, progress) -> Mined:
    """The dialog's job (on its model thread): read the pairs, load ``model`` as an embedding model,
    mine one triplet per negative with the scores."""
    progress(0, 0, "Reading the pairs")
    pairs = read_pairs(data, columns, encoding=encoding)
    progress(0, 0, "Loading the model")
    loaded, tokenizer, _, _ = inference.load_for_task(model, "sentence-similarity")
    return mine_hard_negatives(loaded, tokenizer, pairs, output_format="triplet", with_scores=True,
                               progress=progress, **settings)


def output_path(data: str) -> Path:
    """Where the triplets of ``data`` go: beside it, under a name that neither it nor its summary has yet."""
    data = Path(data)
    for n in itertools.count(1):
        path = data.with_name(f"{data.stem}.triplets{'' if n == 1 else f'-{n}'}.jsonl")
        if not path.exists() and not summary_path(path).exists():
            return path


def write_kept(mined: Mined, keep: np.ndarray, data: str) -> str:
    """The kept rows (without their scores) as a new triplets file beside ``data``, with the summary
    and how many rows the user dropped; returns its path."""
    rows = [{k: v for k, v in row.items() if k != "scores"} for row, kept in zip(mined.rows, keep) if kept]
    if not rows:
        raise ValueError("Every row is unticked: keep at least one triplet.")
    path = output_path(data)
    write_mined(Mined(rows, {**mined.summary, "rows": len(rows), "dropped_in_review": int((~keep).sum())}), path)
    return str(path)


def open_triplets(project, path: str) -> None:
    """Open ``path`` as the project's data with anchor, positive and negative mapped; the validation
    file chosen for the pairs stays."""
    eval_file = project.eval_file

    def follow() -> None:
        project.source_changed.disconnect(follow)
        if project.source != path:
            return
        if project.task.engine_task != "sentence-similarity":
            project.set_task("sentence-similarity")
        for column, role in ROLES.items():
            project.set_role(column, role)
        if eval_file:
            project.set_eval_file(eval_file)
    project.source_changed.connect(follow)
    project.open_source(path)


class MinedModel(QAbstractTableModel):
    """The mined triplets, closest calls first (the least gap between the positive's and the
    negative's score), each with a Keep box."""
    HEADERS = ("Keep", "Anchor", "Positive", "Mined negative", "Positive score", "Negative score")
    kept_changed = Signal()

    def __init__(self, parent=None):
        super().__init__(parent)
        self.rows: list[dict] = []
        self.order = np.zeros(0, np.int64)
        self.keep = np.zeros(0, bool)   # in the rows' own order

    def set_rows(self, rows: list[dict]) -> None:
        self.beginResetModel()
        self.rows = rows
        gap = np.array([r["scores"][0] - r["scores"][1] for r in rows], np.float32)
        self.order = np.argsort(gap, kind="stable")
        self.keep = np.ones(len(rows), bool)
        self.endResetModel()
        self.kept_changed.emit()

    def rowCount(self, parent=QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self.rows)

    def columnCount(self, parent=QModelIndex()) -> int:
        return len(self.HEADERS)

    def headerData(self, section, orientation, role=Qt.ItemDataRole.DisplayRole):
        if role == Qt.ItemDataRole.DisplayRole and orientation == Qt.Orientation.Horizontal:
            return self.HEADERS[section]
        return None

    def flags(self, index):
        extra = Qt.ItemFlag.ItemIsUserCheckable if index.column() == 0 else Qt.ItemFlag.NoItemFlags
        return Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable | extra

    def data(self, index, role=Qt.ItemDataRole.DisplayRole):
        i = int(self.order[index.row()])
        row, col = self.rows[i], index.column()
        if role == Qt.ItemDataRole.CheckStateRole and col == 0:
            return Qt.CheckState.Checked if self.keep[i] else Qt.CheckState.Unchecked
        if role in (Qt.ItemDataRole.DisplayRole, Qt.ItemDataRole.ToolTipRole) and 1 <= col <= 3:
            return row[("anchor", "positive", "negative")[col - 1]]
        if role == Qt.ItemDataRole.DisplayRole and col >= 4:
            return f"{row['scores'][col - 4]:.4f}"
        if role == Qt.ItemDataRole.TextAlignmentRole and col >= 4:
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        return None

    def setData(self, index, value, role=Qt.ItemDataRole.EditRole) -> bool:
        if role != Qt.ItemDataRole.CheckStateRole or index.column() != 0:
            return False
        self.keep[int(self.order[index.row()])] = Qt.CheckState(value) == Qt.CheckState.Checked
        self.dataChanged.emit(index, index, [role])
        self.kept_changed.emit()
        return True


class MiningDialog(QDialog):
    mined = Signal(object)            # the engine's Mined result
    triplets_written = Signal(str)    # the new file, now the project's data

    def __init__(self, project, parent=None):
        super().__init__(parent)
        self.setWindowTitle("Find hard negatives")
        self.project = project
        self.worker = Worker(self, pool=model_thread_pool(self))   # the model loads and runs on one thread
        self.relay: Progress | None = None
        self.result: Mined | None = None
        self.negatives = QSpinBox(minimum=1, maximum=20, value=1)
        self.negatives.setToolTip("Negatives per pair: each becomes one (anchor, positive, negative) row.")
        self.range_min = QSpinBox(minimum=0, maximum=1000, value=0)
        self.range_min.setToolTip("Skip this many of the closest candidates: the very closest are often other "
                                  "right answers.")
        self.range_max = QSpinBox(minimum=1, maximum=10_000, value=50)
        self.range_max.setToolTip("Pick negatives among this many of the closest candidates.")
        self.margin = QDoubleSpinBox(minimum=0.0, maximum=1.0, singleStep=0.01, decimals=3, value=0.05)
        self.margin.setToolTip("False-negative guard: a negative must score at least this much below the "
                               "positive (cosine).")
        self.intro = QLabel(wordWrap=True)
        self.start_button = QPushButton("Find negatives")
        self.cancel_button = QPushButton("Cancel")
        self.progress = QProgressBar(minimum=0, maximum=0, textVisible=True)
        self.status = QLabel(wordWrap=True)
        self.model = MinedModel(self)
        self.table = QTableView()
        self.table.setModel(self.model)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setWordWrap(False)
        self.table.verticalHeader().hide()
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        for col in (1, 2, 3):   # the texts share the width; the box and the scores take what they need
            header.setSectionResizeMode(col, QHeaderView.ResizeMode.Stretch)
        self.use_button = QPushButton("Use these")
        self.close_button = QPushButton("Close")
        self._build()
        self.start_button.clicked.connect(self.start)
        self.cancel_button.clicked.connect(self.cancel)
        self.use_button.clicked.connect(self.use_these)
        self.close_button.clicked.connect(self.reject)
        self.model.kept_changed.connect(self.show_summary)
        self._set_busy(False)
        self.use_button.setEnabled(False)
        self.resize(1100, 640)
        self.intro.setText(f"The model <b>{escape(project.model)}</b> ranks every positive of "
                           f"<b>{escape(Path(project.source).name)}</b> for each anchor; its closest wrong ones become "
                           "hard negatives. Untick the rows whose “negative” is really a right answer.")

    def _build(self) -> None:
        form = QHBoxLayout()
        for title, box in (("Negatives per pair", self.negatives), ("Skip the closest", self.range_min),
                           ("Among the closest", self.range_max), ("Margin below the positive", self.margin)):
            form.addWidget(QLabel(title))
            form.addWidget(box)
            form.addSpacing(16)
        form.addStretch()
        run = QHBoxLayout()
        run.addWidget(self.start_button)
        run.addWidget(self.cancel_button)
        run.addWidget(self.progress, 1)
        bottom = QHBoxLayout()
        bottom.addStretch()
        bottom.addWidget(self.use_button)
        bottom.addWidget(self.close_button)
        layout = QVBoxLayout(self)
        layout.addWidget(self.intro)
        layout.addLayout(form)
        layout.addLayout(run)
        layout.addWidget(self.status)
        layout.addWidget(self.table, 1)
        layout.addLayout(bottom)

    def settings(self) -> dict:
        return {"num_negatives": self.negatives.value(), "range_min": self.range_min.value(),
                "range_max": max(self.range_max.value(), self.range_min.value() + 1),
                "margin": self.margin.value() or None}

    # -- mining --------------------------------------------------------------------------------------
    def start(self) -> bool:
        p = self.project
        problem = mining_problem(p)
        if problem or self.worker.is_busy():
            self.set_status(problem or "Already mining.", "over")
            return False
        columns = {r: c for r, c in p.engine_columns().items() if r in ("text", "text_pair")}
        relay = self.relay = Progress(self)
        relay.progressed.connect(self.on_progress)
        self._set_busy(True)
        self.use_button.setEnabled(False)
        self.set_status("Mining …")
        self.worker.submit("mine", mine, p.source, columns, p.encoding, p.model, self.settings(), relay,
                           on_done=self.on_mined, on_error=self.on_failed)
        return True

    def cancel(self) -> None:
        if self.relay is not None:
            self.relay.cancel()
            self.set_status("Cancelling …", "tight")

    def on_progress(self, done: int, total: int, text: str) -> None:
        self.progress.setRange(0, max(total, 0))
        self.progress.setValue(min(done, max(total, 0)))
        self.progress.setFormat(f"{text}: {done:,} of {total:,}" if total > 0 else text)

    def on_mined(self, mined: Mined) -> None:
        self._set_busy(False)
        self.result = mined
        self.model.set_rows(mined.rows)
        self.use_button.setEnabled(bool(mined.rows))
        self.mined.emit(mined)

    def on_failed(self, exc: Exception) -> None:
        self._set_busy(False)
        if isinstance(exc, Cancelled):
            self.set_status("Cancelled; nothing was written.", "tight")
        else:
            hint = getattr(exc, "fix", "") or getattr(exc, "hint", "")
            self.set_status(f"<b>Could not mine:</b> {escape(str(exc))}" + (f"<br>{escape(hint)}" if hint else ""),
                            "over")

    def show_summary(self) -> None:
        s = self.result.summary if self.result else None
        if s is None:
            return
        removed = s["removed"]["margin"]
        short = f" {s['pairs_short_of_negatives']:,} pairs got fewer negatives than asked." \
            if s["pairs_short_of_negatives"] else ""
        kept = int(self.model.keep.sum())
        self.set_status(f"{s['negatives']:,} negatives for {s['pairs']:,} pairs from {s['corpus']:,} texts; the margin "
                        f"removed {removed:,} candidates as likely right answers.{short} Closest calls first: "
                        f"<b>{kept:,} of {len(self.model.rows):,} rows kept</b>.", "ok")

    # -- using them ----------------------------------------------------------------------------------
    def use_these(self) -> None:
        """Write the kept rows to a new file beside the data (off the GUI thread), then open it."""
        if self.result is None:
            return
        self.use_button.setEnabled(False)
        self.project.worker.submit("write-triplets", write_kept, self.result, self.model.keep.copy(),
                                   self.project.source, on_done=self.on_written, on_error=self.on_write_failed)

    def on_written(self, path: str) -> None:
        open_triplets(self.project, path)
        self.project.notice.emit(f"Wrote {Path(path).name}: the Data page now trains on the triplets.")
        self.triplets_written.emit(path)
        self.accept()

    def on_write_failed(self, exc: Exception) -> None:
        self.use_button.setEnabled(True)
        self.set_status(f"<b>Could not write the triplets:</b> {escape(str(exc))}", "over")

    # -- state ---------------------------------------------------------------------------------------
    def set_status(self, html: str, level: str = "unknown") -> None:
        color = theme.muted_text() if level == "unknown" else theme.status_color(level)
        self.status.setText(f"<span style='color:{theme.hex_of(color)}'>{html}</span>")

    def _set_busy(self, on: bool) -> None:
        self.start_button.setEnabled(not on)
        self.cancel_button.setVisible(on)
        self.progress.setVisible(on)
        self.progress.setRange(0, 0)
        if not on:
            self.relay = None

    def done(self, code: int) -> None:
        """Closing cancels a running job and waits for the model thread (the model is freed with it)."""
        self.cancel()
        self.worker.pool.waitForDone(30_000)
        super().done(code)
