"""The layering rule: engine/ imports no Qt and nothing of the app (raclate_app imports engine, never the reverse)."""
from __future__ import annotations

import ast
from pathlib import Path

ENGINE = Path(__file__).resolve().parent.parent / "engine"
FORBIDDEN = ("PySide6", "pyqtgraph", "raclate_app")


def imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
    return names


def test_engine_imports_no_qt_and_no_app():
    files = sorted(ENGINE.rglob("*.py"))
    assert len(files) > 40
    offending = {str(p.relative_to(ENGINE.parent)): sorted(m for m in imported_modules(p) if m.split(".")[0] in FORBIDDEN)
                 for p in files}
    assert {k: v for k, v in offending.items() if v} == {}
