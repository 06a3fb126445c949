"""PreviewModel: a QAbstractTableModel over the engine's lazy ``preview`` (the first rows only),
with mapped columns tinted by role."""
from __future__ import annotations

import json

from PySide6.QtCore import QAbstractTableModel, QModelIndex, Qt

from raclate_app import theme
from raclate_app.tasks import IGNORE

CELL_CHARS = 160


def cell_text(value, limit: int | None = CELL_CHARS) -> str:
    if value is None:
        return ""
    if isinstance(value, (list, dict)):
        text = json.dumps(value, ensure_ascii=False)
    else:
        text = str(value)
    text = text.replace("\n", " ⏎ ")
    return text if limit is None or len(text) <= limit else text[:limit - 1] + "…"


class PreviewModel(QAbstractTableModel):
    def __init__(self, parent=None):
        super().__init__(parent)
        self.columns: list[str] = []
        self.dtypes: dict[str, str] = {}
        self.rows: list[dict] = []
        self.roles: dict[str, str] = {}          # column → role
        self.role_titles: dict[str, str] = {}    # column → what the header shows for its role
        self.first_row_number = 1                # file line of the first data row (csv: 2)
        self.numbering = "line"
        self.offset = 0                          # data row of the first shown row (a window further down)

    def set_preview(self, pv) -> None:
        self.beginResetModel()
        self.columns = list(pv.columns) if pv else []
        self.dtypes = dict(pv.dtypes) if pv else {}
        self.rows = list(pv.rows) if pv else []
        self.first_row_number = 2 if pv and pv.format in ("csv", "tsv") else 1
        self.numbering = "line" if pv and pv.format in ("csv", "tsv", "jsonl") else "row"
        self.offset = int(getattr(pv, "offset", 0) or 0)
        self.endResetModel()

    def set_roles(self, roles: dict[str, str], titles: dict[str, str]) -> None:
        self.roles, self.role_titles = dict(roles), dict(titles)
        if self.columns:
            self.headerDataChanged.emit(Qt.Orientation.Horizontal, 0, len(self.columns) - 1)
            self.dataChanged.emit(self.index(0, 0), self.index(max(len(self.rows) - 1, 0), len(self.columns) - 1),
                                  [Qt.ItemDataRole.BackgroundRole])

    def row_for_line(self, number: int) -> int:
        """Data row index (0 = the first data row of the file) for a file line / row number from a
        validation finding; the table shows it at ``index - offset``."""
        return number - self.first_row_number

    def number_of(self, row: int) -> int:
        """The file line / row number of table row ``row``."""
        return row + self.offset + self.first_row_number

    # Qt model API -----------------------------------------------------------------------------------
    def rowCount(self, parent=QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self.rows)

    def columnCount(self, parent=QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self.columns)

    def data(self, index, role=Qt.ItemDataRole.DisplayRole):
        if not index.isValid():
            return None
        column = self.columns[index.column()]
        if role == Qt.ItemDataRole.DisplayRole:
            return cell_text(self.rows[index.row()].get(column))
        if role == Qt.ItemDataRole.ToolTipRole:
            text = cell_text(self.rows[index.row()].get(column), None)
            return text if len(text) > 40 else None
        if role == Qt.ItemDataRole.BackgroundRole:
            mapped = self.roles.get(column)
            return theme.role_color(mapped) if mapped and mapped != IGNORE else None
        return None

    def headerData(self, section, orientation, role=Qt.ItemDataRole.DisplayRole):
        if orientation == Qt.Orientation.Vertical:
            if role == Qt.ItemDataRole.DisplayRole:
                return str(self.number_of(section))
            if role == Qt.ItemDataRole.ToolTipRole:
                return "Line in the file" if self.numbering == "line" else "Row number"
            return None
        if section >= len(self.columns):
            return None
        column = self.columns[section]
        mapped = self.roles.get(column, IGNORE)
        if role == Qt.ItemDataRole.DisplayRole:
            title = self.role_titles.get(column, mapped)
            return f"{column}\n→ {title}" if mapped != IGNORE else f"{column}\n(ignored)"
        if role == Qt.ItemDataRole.ToolTipRole:
            return f"{column}: {self.dtypes.get(column, '?')}, role {self.role_titles.get(column, mapped)}"
        if role == Qt.ItemDataRole.ForegroundRole and mapped != IGNORE:
            return theme.role_swatch(mapped)
        return None
