"""MappingEditor: one role combo box per data column, offering the roles of the chosen task."""
from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QComboBox, QGridLayout, QLabel, QScrollArea, QVBoxLayout, QWidget

from raclate_app import theme
from raclate_app.tasks import IGNORE, ROLE_HINTS, AppTask, role_title


class MappingEditor(QWidget):
    role_chosen = Signal(str, str)   # column, role

    def __init__(self, parent=None):
        super().__init__(parent)
        self.combos: dict[str, QComboBox] = {}
        self.swatches: dict[str, QLabel] = {}
        self.summary = QLabel(wordWrap=True)
        self.summary.setTextFormat(Qt.TextFormat.RichText)
        self.grid_host = QWidget()
        self.grid = QGridLayout(self.grid_host)
        self.grid.setContentsMargins(0, 0, 0, 0)
        self.grid.setHorizontalSpacing(8)
        self.grid.setColumnStretch(1, 1)
        self.scroll = scroll = QScrollArea(widgetResizable=True, frameShape=QScrollArea.Shape.NoFrame)
        scroll.setWidget(self.grid_host)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.summary)
        layout.addWidget(scroll, 1)
        self._task: AppTask | None = None

    def set_columns(self, columns: list[str], dtypes: dict[str, str], mapping: dict[str, str], task: AppTask) -> None:
        """Rebuild the rows (new file or new task) and select each column's role."""
        while self.grid.count():
            item = self.grid.takeAt(0)
            if item.widget():
                item.widget().deleteLater()
        self.combos.clear()
        self.swatches.clear()
        self._task = task
        for row, column in enumerate(columns):
            swatch = QLabel()
            swatch.setFixedSize(12, 12)
            name = QLabel(f"<b>{_escape(column)}</b> <span style='color:{theme.hex_of(theme.muted_text())}'>"
                          f"{_escape(_short_dtype(dtypes.get(column, '')))}</span>")
            name.setToolTip(f"{column}: {dtypes.get(column, '?')}")
            combo = QComboBox()
            combo.setObjectName(f"role:{column}")
            combo.setAccessibleName(f"Role of column {column}")
            for role in task.roles:
                combo.addItem(role_title(role, task), role)
                combo.setItemData(combo.count() - 1, ROLE_HINTS.get(role, ""), Qt.ItemDataRole.ToolTipRole)
            combo.currentIndexChanged.connect(lambda _i, c=column, box=combo: self.role_chosen.emit(c, box.currentData()))
            self.grid.addWidget(swatch, row, 0)
            self.grid.addWidget(name, row, 1)
            self.grid.addWidget(combo, row, 2)
            self.combos[column], self.swatches[column] = combo, swatch
        self.grid.setRowStretch(len(columns), 1)
        self.set_mapping(mapping)
        # as tall as the rows up to ~8 columns, then scroll
        if self.combos:
            combo = next(iter(self.combos.values()))
            row_height = max(combo.sizeHint().height(), 20) + max(self.grid.verticalSpacing(), 6)
            self.scroll.setFixedHeight(min(len(columns) * row_height + 6, 8 * row_height))

    def set_mapping(self, mapping: dict[str, str]) -> None:
        for column, combo in self.combos.items():
            role = mapping.get(column, IGNORE)
            combo.blockSignals(True)
            combo.setCurrentIndex(max(combo.findData(role), 0))
            combo.blockSignals(False)
            color = theme.role_swatch(role) if role != IGNORE else None
            self.swatches[column].setStyleSheet(
                f"background:{theme.hex_of(color)}; border-radius:3px;" if color else
                "border:1px solid palette(mid); border-radius:3px;")
        self._update_summary(mapping)

    def _update_summary(self, mapping: dict[str, str]) -> None:
        task = self._task
        if task is None:
            return
        used = set(mapping.values())
        parts = []
        for role in task.required:
            ok = role in used
            color = theme.hex_of(theme.status_color("ok" if ok else "over"))
            parts.append(f"<span style='color:{color}'>{'✓' if ok else '✗'} {role_title(role, task)}</span>")
        optional = ", ".join(role_title(r, task) for r in task.optional)
        self.summary.setText(f"{task.title} needs: " + " &nbsp; ".join(parts)
                             + (f"<br><span style='color:{theme.hex_of(theme.muted_text())}'>optional: {optional}</span>"
                                if optional else ""))


def _short_dtype(dtype: str) -> str:
    if dtype.startswith(("list<", "large_list<", "List(")):
        return "list"
    return {"large_string": "string", "double": "float", "int64": "int"}.get(dtype, dtype)[:24]


def _escape(text: str) -> str:
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
