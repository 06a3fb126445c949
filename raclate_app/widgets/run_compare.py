"""RunCompare: the loss curves and one evaluation metric of several runs on shared plots (one colour
per run, named in a legend row beside the plots, never over the curves), comparison_html: their
final metrics and the settings in which they differ, and CheckpointPicker: the dialog that picks
the checkpoint a run resumes from or is exported from."""
from __future__ import annotations

from datetime import datetime
from html import escape

import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtGui import QPalette
from PySide6.QtWidgets import (QAbstractItemView, QComboBox, QDialog, QDialogButtonBox, QHBoxLayout, QHeaderView, QLabel,
                               QSizePolicy, QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget)

from raclate_app import theme
from raclate_app.plots import Plot, _legend_html, metric_bounds
from raclate_app.runs import curves
from raclate_app.tasks import get_task


def comparison_html(runs: list) -> str:
    """Final metrics side by side, then only what differs between the runs: task, model, data file
    and the training settings."""
    muted = theme.hex_of(theme.muted_text())
    names = sorted({k for r in runs for k in r.metrics})[:6]
    rows = "".join(f"<tr><td>{escape(n)}</td>" + "".join(
        f"<td align='right'>{r.metrics[n]:.4f}</td>" if n in r.metrics else "<td align='right'>–</td>"
        for r in runs) + "</tr>" for n in names)
    head = "".join(f"<th align='right'>{i}</th>" for i in range(1, len(runs) + 1))
    legend = "".join(f"<p style='margin:0'>{i}. {escape(r.name)} <span style='color:{muted}'>({escape(r.status)})"
                     "</span></p>" for i, r in enumerate(runs, 1))
    settings = [r.record.get("training") or {} for r in runs]
    keys = sorted({k for t in settings for k in t} - {"output_dir", "resume_from_checkpoint"})
    differ = [k for k in keys if len({repr(t.get(k)) for t in settings}) > 1]
    data = [str((r.record.get("data") or {}).get("data") or "") for r in runs]   # several datasets: a list
    lines = [f"{what}: {' | '.join(shown)}" for what, values, shown in (
        ("task", [r.task_key for r in runs], [get_task(r.task_key).title for r in runs]),
        ("model", [r.model for r in runs], [r.model_name for r in runs]),
        ("data", data, [r.data or "–" for r in runs])) if len(set(values)) > 1]
    lines += [f"{k}: {' | '.join(str(t.get(k, '–')) for t in settings)}" for k in differ]
    diff = "".join(f"<p style='margin:0'>{escape(line)}</p>" for line in lines) or \
        f"<p style='color:{muted}'>Same task, model, data and settings.</p>"
    return (f"<p><b>{len(runs)} runs</b> — their curves are on the plots.</p>{legend}"
            f"<table cellspacing='0' cellpadding='3'><tr><th align='left'>metric</th>{head}</tr>{rows}</table>"
            f"<p style='margin-top:8px'><b>Settings that differ</b> (in the order above)</p>{diff}")


class RunCompare(QWidget):
    def __init__(self, parent=None):
        super().__init__(parent)
        pg.setConfigOptions(antialias=True)
        self.loss_plot = Plot("Training loss", "No training loss recorded")
        self.metric_plot = Plot("Evaluation", "No evaluation recorded")
        self.metric_combo = QComboBox()
        self.metric_combo.setMinimumContentsLength(14)
        self.hint = QLabel(wordWrap=True)
        # one legend row for both plots (a run has one colour on both): beside the curves, not over them
        self.legend = QLabel(wordWrap=True, textFormat=Qt.TextFormat.RichText)
        self.legend.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Minimum)
        self.runs: list = []
        self.data: dict[str, dict] = {}
        for plot in (self.loss_plot, self.metric_plot):
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
        plots = QVBoxLayout(self.plots)
        plots.setContentsMargins(0, 0, 0, 0)
        row = QHBoxLayout()
        row.addWidget(self.loss_plot, 1)
        row.addLayout(right, 1)
        plots.addLayout(row, 1)
        plots.addWidget(self.legend)
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
            plot.empty_label.setStyleSheet(f"color:{theme.hex_of(theme.muted_text(pal))}")

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
        self.legend.setText(_legend_html((escape(r.name), theme.curve_color(i)) for i, r in enumerate(self.runs)))
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

    @staticmethod
    def curve_names(plot) -> list[str]:
        """The runs drawn on ``plot``, in colour order."""
        return [item.name() for item in plot.getPlotItem().listDataItems()]

    def _draw(self, plot, key: str) -> None:
        item = plot.getPlotItem()
        item.clear()
        if plot is self.metric_plot:
            item.setTitle(f"Evaluation: {key}" if key else "Evaluation",
                          color=theme.hex_of(self.palette().color(QPalette.ColorRole.Text)))
        values = []
        for i, run in enumerate(self.runs):
            xs, ys = self.data.get(str(run.path), {}).get(key, ([], []))
            if not xs:
                continue
            color = theme.curve_color(i)
            symbol = "o" if len(xs) < 30 else None
            item.plot(xs, ys, name=run.name, pen=pg.mkPen(color, width=2), symbol=symbol, symbolSize=5,
                      symbolBrush=color, symbolPen=None)
            values += ys
        plot.set_empty(not values)
        item.enableAutoRange()
        bounds = metric_bounds(key) if values else None
        if bounds:   # padding around the curves, never past what the metric can reach (accuracy ≥ 0)
            lo, hi = min(values), max(values)
            pad = 0.1 * (hi - lo) or 0.05
            item.setYRange(max(bounds[0], lo - pad), min(bounds[1], hi + pad), padding=0)


class CheckpointPicker(QDialog):
    """The checkpoints of a run with their step, time and last evaluation; OK resumes from the selected
    one (``purpose`` "resume") or exports it ("export")."""

    def __init__(self, run, parent=None, purpose: str = "resume"):
        super().__init__(parent)
        self.run = run
        self.setWindowTitle(f"{'Export' if purpose == 'export' else 'Resume'} {run.name}")
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
        if purpose == "export":
            note = QLabel("The chosen checkpoint's weights are exported as a model folder, with the run's base model, "
                          f"task and labels. <span style='color:{muted}'>The run itself is left as it is.</span>",
                          wordWrap=True)
        else:
            note = QLabel(f"Training continues in <b>{escape(str(run.path))}</b> with the run's own settings, from the "
                          "chosen checkpoint's step (weights, optimizer, data position and random state as they were). "
                          f"<span style='color:{muted}'>The final model in that folder is replaced when it ends"
                          + (f"; the run stops at step {total}." if total and total > 0 else ".") + "</span>",
                          wordWrap=True)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        self.buttons.button(QDialogButtonBox.StandardButton.Ok).setText(
            "Export…" if purpose == "export" else "Resume training")
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        self.table.itemSelectionChanged.connect(self._update)
        self.table.itemDoubleClicked.connect(lambda _item: self.accept())
        layout = QVBoxLayout(self)
        layout.addWidget(QLabel(f"<b>Pick the checkpoint to {'export' if purpose == 'export' else 'continue from'}</b>"))
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
