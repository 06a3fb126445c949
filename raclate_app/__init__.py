"""RACLATE Tuner desktop app (PySide6 + pyqtgraph). `raclate-app` → raclate_app.main:main."""
from __future__ import annotations

import sys


def _immortalize_singletons() -> bool:
    """Work around PySide6 6.12 on Python < 3.12.

    PySide6 6.12 treats True/False/None as immortal (as they are from Python 3.12 on) and skips
    their reference counts: every ``signal.emit()`` returns a borrowed True and every Python slot's
    None return is released once too often (measured: 100 emits → True's refcount −100; a small
    script aborts with "bool_dealloc"/"none_dealloc" after a few hundred). A long session would
    crash the app. Giving the three singletons a huge reference count makes them effectively
    immortal, which is exactly what PySide6 6.12 assumes. No-op elsewhere.
    """
    if sys.version_info >= (3, 12):
        return False
    try:
        import PySide6
        if tuple(int(p) for p in PySide6.__version__.split(".")[:2]) < (6, 12):
            return False
    except (ImportError, ValueError):
        return False
    import ctypes
    for obj in (True, False, None):
        ctypes.c_ssize_t.from_address(id(obj)).value += 1 << 40   # ob_refcnt is the first field
    return True


SINGLETONS_IMMORTALIZED = _immortalize_singletons()
