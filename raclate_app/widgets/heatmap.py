"""Two heatmaps: the confusion matrix (pyqtgraph ImageItem, class names on the axes, a count in every
cell) and the MaxSim map of a late-interaction model (query tokens × document tokens, painted here
so the document tokens can stand upright above their columns)."""
from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPointF, QRectF, QSize, Qt
from PySide6.QtGui import QColor, QFont, QFontMetrics, QPainter, QPalette, QPen
from PySide6.QtWidgets import QSizePolicy, QToolTip, QWidget

from raclate_app import theme

MAX_LABEL_CHARS = 16
MAX_CELL_TEXT = 20       # classes up to which every cell shows its count


def _short(text: str, n: int = MAX_LABEL_CHARS) -> str:
    text = str(text)
    return text if len(text) <= n else text[:n - 1] + "…"


def _ramp(pal: QPalette | None = None) -> list[QColor]:
    """From the page background to a strong blue: low values fade into the page, light or dark."""
    base = (pal or theme.palette()).color(QPalette.ColorRole.Base)
    strong = QColor("#1d4ed8") if not theme.is_dark(pal) else QColor("#60a5fa")
    return [QColor(int(base.red() + (strong.red() - base.red()) * t), int(base.green() + (strong.green() - base.green()) * t),
                   int(base.blue() + (strong.blue() - base.blue()) * t)) for t in np.linspace(0, 1, 256)]


class ConfusionMatrixView(pg.GraphicsLayoutWidget):
    """Rows = true class, columns = predicted class. Cells are shaded by the share of their row (so
    small classes read as well as large ones) and show the count."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.matrix = np.zeros((0, 0), np.int64)
        self.names: list[str] = []
        self.plot = self.addPlot()
        self.plot.setMenuEnabled(False)
        self.plot.setMouseEnabled(x=False, y=False)
        self.plot.hideButtons()
        self.plot.invertY(True)
        self.plot.setAspectLocked(True)   # square cells
        self.plot.setTitle("Rows: true class · columns: predicted class · shade: share of the row")
        self.image = pg.ImageItem(axisOrder="row-major")
        self.plot.addItem(self.image)
        self.texts: list[pg.TextItem] = []
        self.plot.setLabel("left", "true class")
        self.plot.setLabel("bottom", "predicted class")
        self.setMinimumSize(260, 220)
        self.apply_palette()

    def apply_palette(self) -> None:
        pal = self.palette()
        self.setBackground(pal.color(QPalette.ColorRole.Base))
        fg = pal.color(QPalette.ColorRole.Text)
        for name in ("left", "bottom"):
            axis = self.plot.getAxis(name)
            axis.setPen(pg.mkPen(fg))
            axis.setTextPen(pg.mkPen(fg))
        self.image.setLookupTable(np.array([[c.red(), c.green(), c.blue()] for c in _ramp(pal)], np.uint8))

    def set_matrix(self, matrix, names: list[str]) -> None:
        m = np.asarray(matrix, dtype=np.int64)
        self.matrix, self.names = m, list(names)
        for item in self.texts:
            self.plot.removeItem(item)
        self.texts = []
        if m.size == 0:
            self.image.clear()
            return
        share = m / np.maximum(m.sum(axis=1, keepdims=True), 1)   # (C, C) row-normalised
        self.image.setImage(share, levels=(0.0, 1.0))
        self.image.setRect(QRectF(-0.5, -0.5, m.shape[1], m.shape[0]))
        ticks = [[(i, _short(n)) for i, n in enumerate(self.names)]]
        self.plot.getAxis("left").setTicks(ticks)
        self.plot.getAxis("bottom").setTicks(ticks)
        self.plot.setRange(xRange=(-0.5, m.shape[1] - 0.5), yRange=(-0.5, m.shape[0] - 0.5), padding=0)
        if len(m) <= MAX_CELL_TEXT:
            light, dark = QColor("#ffffff"), self.palette().color(QPalette.ColorRole.Text)
            for (r, c), count in np.ndenumerate(m):
                text = pg.TextItem(f"{count:,}", color=light if share[r, c] > 0.55 else dark, anchor=(0.5, 0.5))
                font = QFont()
                font.setBold(r == c)
                text.setFont(font)
                text.setPos(c, r)
                self.plot.addItem(text)
                self.texts.append(text)

    def changeEvent(self, event) -> None:
        if event.type() == event.Type.PaletteChange and hasattr(self, "image"):
            self.apply_palette()
        super().changeEvent(event)


class MaxSimHeatmap(QWidget):
    """Query tokens (rows) × document tokens (columns) similarity. Each row's best document token is
    framed; the column on the right lists those maxima (each query token's contribution to the
    MaxSim score, their sum: ``total``)."""

    CELL_MAX, CELL_MIN, PAD = 28, 16, 8

    def __init__(self, parent=None):
        super().__init__(parent)
        self.q_tokens: list[str] = []
        self.d_tokens: list[str] = []
        self.sim = np.zeros((0, 0), np.float32)
        self.best = np.zeros(0, np.int64)
        self.row_max = np.zeros(0, np.float32)
        self.total = 0.0
        self.setMouseTracking(True)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.message = "Pick a result to see how its score comes about."

    def set_map(self, result: dict) -> None:
        self.q_tokens, self.d_tokens = list(result["query_tokens"]), list(result["doc_tokens"])
        self.sim = np.asarray(result["sim"], np.float32)
        self.best, self.row_max = np.asarray(result["best"]), np.asarray(result["row_max"], np.float32)
        self.total = float(result["total"])
        self.updateGeometry()
        self.update()

    def clear(self, message: str = "") -> None:
        self.set_map({"query_tokens": [], "doc_tokens": [], "sim": np.zeros((0, 0)), "best": [], "row_max": [],
                      "total": 0.0})
        self.message = message or self.message

    # -- geometry -----------------------------------------------------------------------------------
    def _margins(self) -> tuple[int, int, int, int]:
        fm = QFontMetrics(self.font())
        left = max([fm.horizontalAdvance(_short(t)) for t in self.q_tokens] + [40]) + self.PAD * 2
        top = max([fm.horizontalAdvance(_short(t)) for t in self.d_tokens] + [40]) + self.PAD * 2
        right = fm.horizontalAdvance("max 0.000") + self.PAD * 3
        return left, top, right, self.PAD

    def _cell(self) -> float:
        left, top, right, bottom = self._margins()
        if not self.q_tokens or not self.d_tokens:
            return self.CELL_MAX
        w = (self.width() - left - right) / len(self.d_tokens)
        h = (self.height() - top - bottom) / len(self.q_tokens)
        return max(self.CELL_MIN, min(self.CELL_MAX, w, h))

    def sizeHint(self) -> QSize:
        left, top, right, bottom = self._margins()
        cell = 20
        return QSize(left + right + cell * max(len(self.d_tokens), 8), top + bottom + cell * max(len(self.q_tokens), 4))

    def minimumSizeHint(self) -> QSize:
        left, top, right, bottom = self._margins()
        return QSize(left + right + self.CELL_MIN * max(len(self.d_tokens), 4),
                     top + bottom + self.CELL_MIN * max(len(self.q_tokens), 2))

    def cell_at(self, pos) -> tuple[int, int] | None:
        left, top, _, _ = self._margins()
        cell = self._cell()
        c, r = int((pos.x() - left) // cell), int((pos.y() - top) // cell)
        return (r, c) if 0 <= r < len(self.q_tokens) and 0 <= c < len(self.d_tokens) else None

    # -- painting -----------------------------------------------------------------------------------
    def paintEvent(self, _event) -> None:
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing, False)
        pal = self.palette()
        text, muted = pal.color(QPalette.ColorRole.Text), theme.muted_text(pal)
        if not self.q_tokens or not self.d_tokens:
            p.setPen(muted)
            p.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap, self.message)
            return
        left, top, right, bottom = self._margins()
        cell = self._cell()
        ramp = _ramp(pal)
        lo, hi = float(self.sim.min()), float(self.sim.max())
        scale = (self.sim - lo) / (hi - lo) if hi > lo else np.zeros_like(self.sim)
        fm = QFontMetrics(self.font())
        for r, token in enumerate(self.q_tokens):   # row labels, right-aligned next to the grid
            p.setPen(text)
            p.drawText(QRectF(self.PAD, top + r * cell, left - 2 * self.PAD, cell),
                       Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter, _short(token))
        for c, token in enumerate(self.d_tokens):   # column labels, upright above the grid
            p.save()
            p.translate(left + (c + 0.5) * cell + fm.ascent() / 2 - 1, top - self.PAD)
            p.rotate(-90)
            p.setPen(text)
            p.drawText(QPointF(0, 0), _short(token))
            p.restore()
        for (r, c), t in np.ndenumerate(scale):
            p.fillRect(QRectF(left + c * cell, top + r * cell, cell, cell), ramp[int(t * 255)])
        frame = QPen(theme.status_color("over", pal), 2)
        p.setPen(frame)
        for r, c in enumerate(self.best):
            p.drawRect(QRectF(left + c * cell + 1, top + r * cell + 1, cell - 2, cell - 2))
        x = left + len(self.d_tokens) * cell + self.PAD
        p.setPen(text)
        for r, value in enumerate(self.row_max):
            p.drawText(QRectF(x, top + r * cell, right, cell), Qt.AlignmentFlag.AlignVCenter, f"{value:.3f}")
        p.setPen(muted)
        p.drawText(QRectF(x, top - fm.height() - 2, right, fm.height()), Qt.AlignmentFlag.AlignLeft, "max")

    def mouseMoveEvent(self, event) -> None:
        hit = self.cell_at(event.position())
        if hit is None:
            QToolTip.hideText()
            return
        r, c = hit
        best = " — the best match of this query token" if self.best[r] == c else ""
        QToolTip.showText(event.globalPosition().toPoint(),
                          f"query “{self.q_tokens[r]}” · document “{self.d_tokens[c]}”: {self.sim[r, c]:.3f}{best}", self)
