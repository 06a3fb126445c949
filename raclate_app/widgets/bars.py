"""BarList: labelled horizontal bars for probabilities (classes, fill-mask tokens), best first."""
from __future__ import annotations

from html import escape

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QGridLayout, QLabel, QProgressBar, QWidget

from raclate_app import theme

STEPS = 1000


class BarList(QWidget):
    def __init__(self, parent=None):
        super().__init__(parent)
        self.grid = QGridLayout(self)
        self.grid.setContentsMargins(0, 0, 0, 0)
        self.grid.setHorizontalSpacing(10)
        self.grid.setVerticalSpacing(4)
        self.grid.setColumnStretch(1, 1)
        self.items: list[tuple[str, float]] = []
        self.bars: list[QProgressBar] = []

    def clear(self) -> None:
        while self.grid.count():
            item = self.grid.takeAt(0)
            if item.widget():
                item.widget().deleteLater()
        self.items, self.bars = [], []

    def set_items(self, items: list[tuple[str, float]], note: str = "") -> None:
        """``items``: (label, value in [0, 1]) best first; the first bar is drawn in the "ok" colour."""
        self.clear()
        self.items = list(items)
        ok = theme.hex_of(theme.status_color("ok"))
        for row, (label, value) in enumerate(self.items):
            name = QLabel(f"<b>{escape(label)}</b>" if row == 0 else escape(label))
            name.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            name.setMinimumWidth(90)
            bar = QProgressBar(minimum=0, maximum=STEPS, value=int(round(max(0.0, min(1.0, value)) * STEPS)))
            bar.setTextVisible(False)
            bar.setFixedHeight(14)
            if row == 0:
                bar.setStyleSheet(f"QProgressBar::chunk {{ background: {ok}; }}")
            number = QLabel(f"{value * 100:.1f}%" if value >= 0.001 or value == 0 else f"{value * 100:.3f}%")
            number.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            number.setMinimumWidth(56)
            self.grid.addWidget(name, row, 0)
            self.grid.addWidget(bar, row, 1)
            self.grid.addWidget(number, row, 2)
            self.bars.append(bar)
        if note:
            label = QLabel(f"<span style='color:{theme.hex_of(theme.muted_text())}'>{escape(note)}</span>",
                           wordWrap=True)
            self.grid.addWidget(label, len(self.items), 0, 1, 3)
        self.grid.setRowStretch(len(self.items) + 1, 1)
