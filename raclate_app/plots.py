"""Live training plots: loss (raw + smoothed, log-scale toggle), learning rate, eval metrics.

Each curve is created once; events append to numpy buffers; a QTimer redraws dirty curves with
setData every 100 ms (never per event). Clip-to-view and peak downsampling keep long runs cheap.
Legends are text rows beside the plots (never over the curves), step axes tick at whole steps,
bounded metrics keep their axis inside their bounds, and a plot without data says what it waits for.
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
UNIT_METRICS = ("accuracy", "f1", "precision", "recall", "ndcg", "mrr", "map")   # words of metrics in [0, 1]
CORRELATIONS = ("pearson", "spearman")                                          # in [-1, 1]


def metric_bounds(name: str) -> tuple[float, float] | None:
    """The range a metric cannot leave (engine.metrics names: macro_f1, recall@5, spearman_cosine …);
    None for unbounded ones (mse, mae, perplexity)."""
    words = name.removeprefix("eval_").split("@")[0].split("_")
    if any(w in CORRELATIONS for w in words):
        return -1.0, 1.0
    if any(w in UNIT_METRICS for w in words):
        return 0.0, 1.0
    return None


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


class StepAxis(pg.AxisItem):
    """An axis of training steps: ticks at whole steps only (never at step 0.5)."""

    def tickSpacing(self, minVal, maxVal, size):
        levels = [(spacing, offset) for spacing, offset in super().tickSpacing(minVal, maxVal, size) if spacing >= 1]
        return levels or [(1.0, 0.0)]


class Plot(pg.PlotWidget):
    """A plot over steps that shows ``empty_text`` instead of bare axes while it has no data."""
    empty_label = None   # pyqtgraph resizes the view inside its own __init__, before the label exists

    def __init__(self, title: str, empty_text: str):
        super().__init__(title=title, axisItems={"bottom": StepAxis("bottom")})
        self.getPlotItem().setLabel("bottom", "step")   # before set_empty: setting a label shows its axis
        self.empty_label = QLabel(empty_text, self, alignment=Qt.AlignmentFlag.AlignCenter)
        self.empty_label.setAttribute(Qt.WidgetAttribute.WA_TransparentForMouseEvents)
        self.set_empty(True)

    def set_empty(self, empty: bool) -> None:
        self.empty = empty
        item = self.getPlotItem()
        for axis in ("left", "bottom"):
            item.showAxis(axis, not empty)
        self.empty_label.setVisible(empty)

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        if self.empty_label is not None:
            self.empty_label.setGeometry(self.rect())


def _legend_html(entries) -> str:
    """A one-line legend: a coloured dash before each name."""
    return " &nbsp; ".join(f"<span style='color:{color}'>━</span> {name}" for name, color in entries)


class LivePlots(QWidget):
    def __init__(self, parent=None):
        super().__init__(parent)
        pg.setConfigOptions(antialias=True)
        self.log_scale = QCheckBox("Log scale (loss)")
        self.loss_plot = Plot("Loss", "Waiting for the first step…")
        self.lr_plot = Plot("Learning rate", "Waiting for the first step…")
        self.eval_plot = Plot("Evaluation metrics", "No evaluation yet")
        self.plots = (self.loss_plot, self.lr_plot, self.eval_plot)
        for plot in self.plots:
            item = plot.getPlotItem()
            item.setClipToView(True)
            item.setDownsampling(auto=True, mode="peak")
            # no grid: pyqtgraph's alpha-blended grid costs ~10x the rest of a repaint (measured
            # ~14 ms vs ~1.5 ms per plot offscreen), which alone would break the 50 ms GUI budget
            item.getAxis("left").setWidth(64)   # a fixed width: new tick labels never re-lay the plot out
            item.enableAutoRange(y=False)       # y ranges grow in steps (see _fit_y), not every frame
            plot.setMinimumHeight(110)
        # legends are text rows beside their plot: an in-plot legend covers the curves (and a label is
        # cheaper to repaint); the metrics' row wraps, as there can be many
        self.loss_legend = QLabel(_legend_html((name, theme.curve_color(i)) for name, i in
                                               (("loss", 0), ("smoothed", 1), ("eval loss", 3))))
        self.metric_legend = QLabel()
        for legend in (self.loss_legend, self.metric_legend):
            legend.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Fixed)
            legend.setTextFormat(Qt.TextFormat.RichText)
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
        top.addWidget(self.loss_legend, 1)
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
                self.metric_legend.setText(_legend_html((n, self._metric_colors[n]) for n in self.metric_series
                                                        if n in self.metric_curves))
            del self._new_metrics[:2]
            series = list(self.metric_series.values())
            for name, values in self.metric_series.items():
                if name in self.metric_curves:
                    self.metric_curves[name].setData(values.x, values.y)
                    _mark_lone_point(self.metric_curves[name], values)
        empty = not any(s.n for s in series)
        if plot.empty != empty:   # the axes appear with the first point (one re-layout)
            plot.set_empty(empty)
        self._fit_y(plot, series, self._y_bounds(key))
        if not (key == "eval" and self._new_metrics):
            self._dirty.discard(key)

    def _y_bounds(self, key: str) -> tuple[float | None, float | None]:
        """Values a plot's y axis need not go past: a learning rate is never negative; metrics stay in
        their common bounds when they all have some (accuracy, F1, ndcg … in [0, 1])."""
        if key == "lr":
            return 0.0, None
        if key == "eval" and self.metric_series:
            bounds = [metric_bounds(name) for name in self.metric_series]
            if all(bounds):
                return min(b[0] for b in bounds), max(b[1] for b in bounds)
        return None, None

    def _fit_y(self, plot, series: list[Series], bounds: tuple[float | None, float | None] = (None, None)) -> None:
        """Change the y range only when the data leaves it or fills less than a third of it: every
        range change regenerates the axis (the costliest part of a repaint), so it should be rare.
        The padding around the data never crosses ``bounds``."""
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
        low, high = lo - pad, hi + pad
        if bounds[0] is not None:
            low = max(low, min(bounds[0], lo))
        if bounds[1] is not None:
            high = min(high, max(bounds[1], hi))
        item.setYRange(low, high, padding=0)

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
            plot.empty_label.setStyleSheet(f"color:{theme.hex_of(theme.muted_text(pal))}")

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
