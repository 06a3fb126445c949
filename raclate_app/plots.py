"""Live training plots: loss (raw + smoothed, log-scale toggle), learning rate, eval metrics.

Each curve is created once; events append to numpy buffers; a QTimer redraws dirty curves with
setData every 100 ms (never per event). Clip-to-view and peak downsampling keep long runs cheap.
"""
from __future__ import annotations

import math

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QEvent, Qt, QTimer
from PySide6.QtGui import QPalette
from PySide6.QtWidgets import QCheckBox, QHBoxLayout, QLabel, QSizePolicy, QVBoxLayout, QWidget

from raclate_app import theme

REDRAW_MS = 100
SMOOTHING = 0.9   # EMA weight of the past, with bias correction (as TensorBoard's smoothing)


class Series:
    """A growable (x, y) buffer; ``x``/``y`` are views of the filled part."""

    def __init__(self, capacity: int = 256):
        self._x = np.empty(capacity, dtype=np.float64)
        self._y = np.empty(capacity, dtype=np.float64)
        self.n = 0

    def append(self, x: float, y: float) -> None:
        if self.n == len(self._x):
            self._x = np.concatenate([self._x, np.empty_like(self._x)])
            self._y = np.concatenate([self._y, np.empty_like(self._y)])
        self._x[self.n], self._y[self.n] = x, y
        self.n += 1

    @property
    def x(self) -> np.ndarray:
        return self._x[:self.n]

    @property
    def y(self) -> np.ndarray:
        return self._y[:self.n]

    def clear(self) -> None:
        self.n = 0


class LivePlots(QWidget):
    def __init__(self, parent=None):
        super().__init__(parent)
        pg.setConfigOptions(antialias=True)
        self.log_scale = QCheckBox("Log scale (loss)")
        self.loss_plot = pg.PlotWidget(title="Loss")
        self.lr_plot = pg.PlotWidget(title="Learning rate")
        self.eval_plot = pg.PlotWidget(title="Evaluation metrics")
        self.plots = (self.loss_plot, self.lr_plot, self.eval_plot)
        for plot in self.plots:
            item = plot.getPlotItem()
            item.setClipToView(True)
            item.setDownsampling(auto=True, mode="peak")
            # no grid: pyqtgraph's alpha-blended grid costs ~10x the rest of a repaint (measured
            # ~14 ms vs ~1.5 ms per plot offscreen), which alone would break the 50 ms GUI budget
            item.setLabel("bottom", "step")
            item.getAxis("left").setWidth(64)   # a fixed width: new tick labels never re-lay the plot out
            item.enableAutoRange(y=False)       # y ranges grow in steps (see _fit_y), not every frame
            plot.setMinimumHeight(110)
        text = self.palette().color(QPalette.ColorRole.Text)
        self.loss_plot.addLegend(offset=(-10, 10), labelTextColor=text)    # loss falls: top right stays free
        # metrics get a wrapped text legend above their plot: there can be many, and an in-plot legend
        # would cover the curves (and it is cheaper to repaint)
        self.metric_legend = QLabel()
        self.metric_legend.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Fixed)
        self.metric_legend.setTextFormat(Qt.TextFormat.RichText)
        self.series = {"loss": Series(), "smooth": Series(), "lr": Series(), "eval_loss": Series()}
        self.curves = {
            "loss": self.loss_plot.plot(name="loss", pen=pg.mkPen(theme.curve_color(0), width=1.2)),
            "smooth": self.loss_plot.plot(name="smoothed", pen=pg.mkPen(theme.curve_color(1), width=2.5)),
            "eval_loss": self.loss_plot.plot(name="eval loss", pen=pg.mkPen(theme.curve_color(3), width=2,
                                                                            style=Qt.PenStyle.DashLine),
                                             symbolSize=6, symbolBrush=theme.curve_color(3)),
            "lr": self.lr_plot.plot(name="learning rate", pen=pg.mkPen(theme.curve_color(2), width=2)),
        }
        self.curves["loss"].setOpacity(0.55)
        self.metric_series: dict[str, Series] = {}
        self.metric_curves: dict[str, pg.PlotDataItem] = {}
        self._metric_colors: dict[str, str] = {}
        self._ema, self._ema_n = 0.0, 0
        self._dirty: set[str] = set()        # plots to update: "loss", "lr", "eval"
        self._new_metrics: list[str] = []    # metrics whose curve is still to be created
        self._x_total: dict[str, int] = {}   # step-axis ranges still to apply, per plot
        self._last = ""
        self.redraws = 0
        self.timer = QTimer(self, interval=REDRAW_MS)
        self.timer.timeout.connect(self.redraw)
        self.timer.start()
        self.log_scale.toggled.connect(self.on_log_scale_toggled)
        top = QHBoxLayout()
        top.addStretch()
        top.addWidget(self.log_scale)
        row = QHBoxLayout()
        row.addWidget(self.lr_plot)
        eval_box = QVBoxLayout()
        eval_box.setSpacing(0)
        eval_box.addWidget(self.eval_plot, 1)
        eval_box.addWidget(self.metric_legend)
        row.addLayout(eval_box)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(top)
        self.loss_plot.setMinimumHeight(170)
        layout.addWidget(self.loss_plot, 3)
        layout.addLayout(row, 2)
        self.apply_palette()

    # -- data in ------------------------------------------------------------------------------------
    def add_step(self, event: dict) -> None:
        step = float(event.get("step", 0))
        loss = event.get("loss")
        if isinstance(loss, (int, float)) and math.isfinite(loss):
            self.series["loss"].append(step, loss)
            self._ema = SMOOTHING * self._ema + (1 - SMOOTHING) * loss
            self._ema_n += 1
            self.series["smooth"].append(step, self._ema / (1 - SMOOTHING ** self._ema_n))
            self._dirty.add("loss")
        lr = event.get("learning_rate")
        if isinstance(lr, (int, float)):
            self.series["lr"].append(step, lr)
            self._dirty.add("lr")

    def add_eval(self, event: dict) -> None:
        step = float(event.get("step", 0))
        for name, value in (event.get("metrics") or {}).items():
            if not isinstance(value, (int, float)) or not math.isfinite(value):
                continue
            if name == "eval_loss":
                self.series["eval_loss"].append(step, value)
                self._dirty.add("loss")
                continue
            if name not in self.metric_series:   # a new metric: its curve is created once, at redraw
                self.metric_series[name] = Series(32)
                self._new_metrics.append(name)
            self.metric_series[name].append(step, value)
            self._dirty.add("eval")

    def on_log_scale_toggled(self, on: bool) -> None:
        item = self.loss_plot.getPlotItem()
        item.setLogMode(y=on)
        item.enableAutoRange(y=on)   # log mode: pyqtgraph ranges in log10 units, let it fit them
        if not on:
            item.getViewBox().setYRange(0, 1)
        self._dirty.add("loss")

    def set_total_steps(self, total: int) -> None:
        """Fix the step axis to the whole run, so the curves grow left to right like a progress bar
        (applied to each plot at its next redraw, so the three axes are not rebuilt in one frame)."""
        self._x_total = {"loss": total, "lr": total, "eval": total}
        self._dirty.add("loss")

    def clear(self) -> None:
        self._ema, self._ema_n = 0.0, 0
        self._new_metrics.clear()
        self._x_total.clear()
        if not any(s.n for s in self.series.values()) and not self.metric_series:
            return   # nothing drawn yet: leave the plots (and their axes) alone
        for s in self.series.values():
            s.clear()
        # Metric curves stay (hidden, empty) and come back when the next run reports the same
        # metric: each curve is made once per window, not once per run.
        for curve in self.metric_curves.values():
            curve.setData([], [])
            curve.setVisible(False)
        self.metric_legend.clear()
        self.metric_series.clear()
        self._dirty = {"loss", "lr", "eval"}
        for plot in self.plots:
            plot.getPlotItem().enableAutoRange(x=True, y=False)

    # -- drawing ------------------------------------------------------------------------------------
    def redraw(self) -> None:
        """One timer tick updates one plot: the changed plots take turns (loss first), so a tick
        repaints a single plot — a whole-page repaint of three plots cost ~20 ms of GUI time."""
        if not self._dirty:
            return
        order = ["loss", "lr", "eval"]
        start = (order.index(self._last) + 1) if self._last in order else 0
        key = next(k for k in order[start:] + order[:start] if k in self._dirty)
        self._update(key)
        self._last = key
        self.redraws += 1

    def flush(self) -> None:
        """Bring every plot up to date now (end of a run, tests)."""
        while self._dirty:
            self.redraw()

    def _update(self, key: str) -> None:
        plot = {"loss": self.loss_plot, "lr": self.lr_plot, "eval": self.eval_plot}[key]
        if key in self._x_total:
            plot.getPlotItem().setXRange(0, max(self._x_total.pop(key), 1), padding=0.02)
            plot.getPlotItem().enableAutoRange(x=False)
        if key == "loss":
            series = [self.series[k] for k in ("loss", "smooth", "eval_loss")]
            for name in ("loss", "smooth", "eval_loss"):
                self.curves[name].setData(self.series[name].x, self.series[name].y)
            _mark_lone_point(self.curves["eval_loss"], self.series["eval_loss"])
        elif key == "lr":
            series = [self.series["lr"]]
            self.curves["lr"].setData(series[0].x, series[0].y)
        else:
            for name in self._new_metrics[:2]:   # two new curves per tick: spread the work
                if name not in self.metric_curves:
                    color = theme.curve_color(len(self.metric_curves) + 4)
                    self.metric_curves[name] = self.eval_plot.plot(pen=pg.mkPen(color, width=2), symbolSize=6,
                                                                   symbolBrush=color)
                    self._metric_colors[name] = color
                self.metric_curves[name].setVisible(True)
            if self._new_metrics[:2]:
                self.metric_legend.setText(" &nbsp; ".join(
                    f"<span style='color:{self._metric_colors[n]}'>━</span> {n}" for n in self.metric_series
                    if n in self.metric_curves))
            del self._new_metrics[:2]
            series = list(self.metric_series.values())
            for name, values in self.metric_series.items():
                if name in self.metric_curves:
                    self.metric_curves[name].setData(values.x, values.y)
                    _mark_lone_point(self.metric_curves[name], values)
        self._fit_y(plot, series)
        if not (key == "eval" and self._new_metrics):
            self._dirty.discard(key)

    def _fit_y(self, plot, series: list[Series]) -> None:
        """Change the y range only when the data leaves it or fills less than a third of it: every
        range change regenerates the axis (the costliest part of a repaint), so it should be rare."""
        values = [s.y for s in series if s.n]
        item = plot.getPlotItem()
        if not values or (plot is self.loss_plot and self.log_scale.isChecked()):
            return
        lo, hi = min(float(v.min()) for v in values), max(float(v.max()) for v in values)
        cur_lo, cur_hi = item.getViewBox().viewRange()[1]
        span = hi - lo
        if lo >= cur_lo and hi <= cur_hi and span >= (cur_hi - cur_lo) / 3:
            return
        pad = 0.1 * span if span > 0 else max(abs(hi) * 0.1, 1e-12)
        item.setYRange(lo - pad, hi + pad, padding=0)

    def curve_data(self, key: str) -> tuple[np.ndarray, np.ndarray]:
        """What a curve holds now (for tests): the x and y arrays of its last setData."""
        curve = self.curves.get(key) or self.metric_curves.get(key)
        x, y = curve.getData()
        return (np.array([]) if x is None else x), (np.array([]) if y is None else y)

    def apply_palette(self) -> None:
        pal = self.palette()
        bg = pal.color(QPalette.ColorRole.Base)
        fg = pal.color(QPalette.ColorRole.Text)
        for plot in self.plots:
            plot.setBackground(bg)
            item = plot.getPlotItem()
            for axis in ("left", "bottom"):
                item.getAxis(axis).setPen(pg.mkPen(fg))
                item.getAxis(axis).setTextPen(pg.mkPen(fg))
            item.titleLabel.setText(item.titleLabel.text, color=theme.hex_of(fg))
            self._style_legend(plot)

    def _style_legend(self, plot) -> None:
        legend = plot.getPlotItem().legend
        if legend is None:
            return
        pal = self.palette()
        bg = pal.color(QPalette.ColorRole.Base)
        bg.setAlpha(210)   # lines stay visible behind the legend
        legend.setBrush(pg.mkBrush(bg))
        legend.setPen(pg.mkPen(pal.color(QPalette.ColorRole.Mid)))
        legend.setLabelTextColor(pal.color(QPalette.ColorRole.Text))
        for _sample, label in legend.items:   # labels keep the colour they were made with: redo them
            label.setText(label.text, color=theme.hex_of(pal.color(QPalette.ColorRole.Text)))
        legend.setVisible(bool(legend.items))

    def changeEvent(self, event) -> None:
        if event.type() == QEvent.Type.PaletteChange:
            self.apply_palette()
        super().changeEvent(event)


def _mark_lone_point(curve, series: Series) -> None:
    """A symbol only while a curve has one point (a line needs two to show); symbols are the costliest
    part of repainting a plot (~3x a plain line), so they go once the line can be seen."""
    symbol = "o" if series.n == 1 else None
    if curve.opts.get("symbol") != symbol:
        curve.setSymbol(symbol)
