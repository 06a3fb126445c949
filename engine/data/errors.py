"""The one exception type for bad data: it names the file, row and column and says how to fix it."""
from __future__ import annotations


class DataError(ValueError):
    """Bad input data. ``str(err)`` reads "<file>, line 3, column 'label': <problem> Fix: <fix>".

    Attributes: ``file``, ``row`` (line number for jsonl/csv, 1-based data row otherwise),
    ``column``, ``fix``, ``code`` (machine-readable, e.g. ``"missing_column"``) and ``findings``
    (all fatal findings when raised from a validation report).
    """

    def __init__(self, message: str, *, file: str | None = None, row: int | None = None,
                 column: str | None = None, fix: str | None = None, code: str = "bad_data",
                 row_label: str = "row", findings: list | None = None):
        self.message = message
        self.file, self.row, self.column, self.fix, self.code = file, row, column, fix, code
        self.findings = list(findings or [])
        where = location(file, row, column, row_label)
        text = f"{where}: {message}" if where else message
        if fix:
            text += f" Fix: {fix}"
        super().__init__(text)


def location(file: str | None, row: int | None, column: str | None, row_label: str = "row") -> str:
    """"train.csv, line 4, column 'label'" — the parts that are known."""
    parts = []
    if file:
        parts.append(str(file))
    if row is not None:
        parts.append(f"{row_label} {row}")
    if column:
        parts.append(f"column {column!r}")
    return ", ".join(parts)
