"""RunCompare: the loss curves and one evaluation metric of several runs on shared plots (one colour
per run), and CheckpointPicker: the dialog that picks the checkpoint a run resumes from."""
from __future__ import annotations

from datetime import datetime
from html import escape

import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtGui import QPalette
from PySide6.QtWidgets import (QAbstractItemView, QComboBox, QDialog, QDialogButtonBox, QHBoxLayout, QHeaderView, QLabel,
                               QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget)

from raclate_app import theme
from raclate_app.runs import curves


class RunCompare(QWidget):
    def __init__(self, parent=None):
        super().__init__(parent)
        pg.setConfigOptions(antialias=True)
        self.loss_plot = pg.PlotWidget(title="Training loss")
        self.metric_plot = pg.PlotWidget(title="Evaluation")
        self.metric_combo = QComboBox()
        self.metric_combo.setMinimumContentsLength(14)
        self.hint = QLabel(wordWrap=True)
        self.runs: list = []
        self.data: dict[str, dict] = {}
        for plot in (self.loss_plot, self.metric_plot):
            plot.getPlotItem().setLabel("bottom", "step")
            plot.addLegend(offset=(-10, 10), labelTextColor=self.palette().color(QPalette.ColorRole.Text))
            plot.setMinimumHeight(150)
        pick = QHBoxLayout()
        pick.addWidget(QLabel("Metric"))
        pick.addWidget(self.metric_combo)
        pick.addStretch()
        right = QVBoxLayout()
        right.setContentsMargins(0, 0, 0, 0)
        right.addLayout(pick)
        right.addWidget(self.metric_plot, 1)
        self.plots = QWidget()
        plots = QHBoxLayout(self.plots)
        plots.setContentsMargins(0, 0, 0, 0)
        plots.addWidget(self.loss_plot, 1)
        plots.addLayout(right, 1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.hint)
        layout.addWidget(self.plots, 1)
        layout.addStretch()
        self.metric_combo.currentIndexChanged.connect(lambda _i: self.draw_metric())
        self.apply_palette()
        self.set_runs([])

    def apply_palette(self) -> None:
        pal = self.palette()
        for plot in (self.loss_plot, self.metric_plot):
            plot.setBackground(pal.color(QPalette.ColorRole.Base))
            item = plot.getPlotItem()
            for axis in ("left", "bottom"):
                item.getAxis(axis).setPen(pg.mkPen(pal.color(QPalette.ColorRole.Text)))
                item.getAxis(axis).setTextPen(pg.mkPen(pal.color(QPalette.ColorRole.Text)))
            item.titleLabel.setText(item.titleLabel.text, color=theme.hex_of(pal.color(QPalette.ColorRole.Text)))

    def set_runs(self, runs: list) -> None:
        """Plot ``runs`` (RunInfo); the curves come from each run's history (read when it was scanned)."""
        self.runs = list(runs)
        self.data = {str(r.path): curves(r) for r in self.runs}
        self.plots.setVisible(bool(self.runs))   # no empty axes before there is anything to draw
        muted = theme.hex_of(theme.muted_text())
        if len(self.runs) < 2:
            self.hint.setText(f"<span style='color:{muted}'>Select two or more runs in the table (Ctrl- or Shift-click) "
                              "to compare their curves on one plot.</span>")
        else:
            self.hint.setText(f"<span style='color:{muted}'>Comparing {len(self.runs)} runs.</span>")
        keep = self.metric_combo.currentText()
        names = sorted({k for d in self.data.values() for k in d if k != "loss"},
                       key=lambda k: (k != "eval_loss", k))
        self.metric_combo.blockSignals(True)
        self.metric_combo.clear()
        self.metric_combo.addItems(names)
        preferred = next((k for k in (keep, "ndcg@10", "accuracy", "spearman", "f1", "perplexity") if k in names), None)
        if preferred:
            self.metric_combo.setCurrentText(preferred)
        self.metric_combo.blockSignals(False)
        self._draw(self.loss_plot, "loss")
        self.draw_metric()

    def draw_metric(self) -> None:
        self._draw(self.metric_plot, self.metric_combo.currentText())

    def curve_names(self, plot) -> list[str]:
        legend = plot.getPlotItem().legend
        return [label.text for _, label in legend.items] if legend else []

    def _draw(self, plot, key: str) -> None:
        item = plot.getPlotItem()
        item.clear()
        if item.legend is not None:
            item.legend.clear()
        if plot is self.metric_plot:
            item.setTitle(f"Evaluation: {key}" if key else "Evaluation (no metrics recorded)" if self.runs else "Evaluation",
                          color=theme.hex_of(self.palette().color(QPalette.ColorRole.Text)))
        for i, run in enumerate(self.runs):
            xs, ys = self.data.get(str(run.path), {}).get(key, ([], []))
            if not xs:
                continue
            color = theme.curve_color(i)
            symbol = "o" if len(xs) < 30 else None
            item.plot(xs, ys, name=run.name, pen=pg.mkPen(color, width=2), symbol=symbol, symbolSize=5,
                      symbolBrush=color, symbolPen=None)
        item.enableAutoRange()


class CheckpointPicker(QDialog):
    """The checkpoints of a run with their step, time and last evaluation; OK resumes from the selected one."""

    def __init__(self, run, parent=None):
        super().__init__(parent)
        self.run = run
        self.setWindowTitle(f"Resume {run.name}")
        self.checkpoints = list(reversed(run.checkpoints()))   # newest first
        names = sorted({k for c in self.checkpoints for k in c.metrics})[:6]
        self.table = QTableWidget(len(self.checkpoints), 2 + len(names))
        self.table.setHorizontalHeaderLabels(["Step", "Saved", *names])
        self.table.verticalHeader().hide()
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        for row, ckpt in enumerate(self.checkpoints):
            saved = datetime.fromtimestamp(ckpt.saved).strftime("%Y-%m-%d %H:%M") if ckpt.saved else ""
            values = [str(ckpt.step), saved] + [f"{ckpt.metrics[n]:.4f}" if n in ckpt.metrics else "–" for n in names]
            for col, value in enumerate(values):
                item = QTableWidgetItem(value)
                item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                item.setToolTip(str(ckpt.path))
                self.table.setItem(row, col, item)
        total = (run.record.get("training") or {}).get("max_steps")
        muted = theme.hex_of(theme.muted_text())
        note = QLabel(f"Training continues in <b>{escape(str(run.path))}</b> with the run's own settings, from the "
                      "chosen checkpoint's step (weights, optimizer, data position and random state as they were). "
                      f"<span style='color:{muted}'>The final model in that folder is replaced when it ends"
                      + (f"; the run stops at step {total}." if total and total > 0 else ".") + "</span>",
                      wordWrap=True)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        self.buttons.button(QDialogButtonBox.StandardButton.Ok).setText("Resume training")
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        self.table.itemSelectionChanged.connect(self._update)
        self.table.itemDoubleClicked.connect(lambda _item: self.accept())
        layout = QVBoxLayout(self)
        layout.addWidget(QLabel("<b>Pick the checkpoint to continue from</b>"))
        layout.addWidget(self.table, 1)
        layout.addWidget(note)
        layout.addWidget(self.buttons)
        self.resize(620, 360)
        if self.checkpoints:
            self.table.selectRow(0)
        self._update()

    def _update(self) -> None:
        self.buttons.button(QDialogButtonBox.StandardButton.Ok).setEnabled(self.selected() is not None)

    def selected(self):
        rows = self.table.selectionModel().selectedRows()
        return self.checkpoints[rows[0].row()] if rows else None
