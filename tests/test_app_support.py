"""Fixtures and helpers shared by the GUI tests (tests/test_app_*.py); no tests of its own.

Screenshots go to $RACLATE_SCREENSHOTS when set, else to a temporary folder; the path is printed.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

from PySide6.QtCore import QEvent, QMimeData, QPoint, QPointF, QSettings, Qt, QUrl  # noqa: E402
from PySide6.QtGui import QDragEnterEvent, QDropEvent  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

from raclate_app.settings import AppSettings  # noqa: E402


@pytest.fixture
def app_settings(tmp_path) -> AppSettings:
    """Settings in a private INI file (never the user's), runs under tmp_path/runs."""
    settings = AppSettings(QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat))
    settings.set("runs/root", str(tmp_path / "runs"))
    return settings


@pytest.fixture
def project(qtbot, app_settings):
    from raclate_app.state import Project
    p = Project(app_settings)
    yield p
    wait_idle(qtbot, p, timeout=60_000)   # pages built on it were closed already; jobs end quietly


@pytest.fixture
def window(qtbot, app_settings):
    from raclate_app.window import MainWindow
    w = MainWindow(settings=app_settings)   # not qtbot.addWidget: pytest-qt would close it before this teardown
    w.resize(1360, 860)
    w.show()
    yield w
    train = w.pages["train"]
    if train.running:
        train.supervisor.request_kill()
        qtbot.waitUntil(lambda: not train.running, timeout=30_000)
    wait_idle(qtbot, w.project, timeout=60_000)
    dispose(w)


@pytest.fixture(scope="session")
def screenshots(tmp_path_factory) -> Path:
    # one folder for every test module (each imports this fixture, so each gets its own instance)
    folder = Path(os.environ["RACLATE_SCREENSHOTS"]) if os.environ.get("RACLATE_SCREENSHOTS") else \
        tmp_path_factory.getbasetemp() / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    print(f"\nscreenshots: {folder}")
    return folder


def dispose(widget) -> None:
    """Close and delete a widget now and collect its Python cycles (pyqtgraph items hold many), so
    nothing of it is left for the interpreter's final garbage collection."""
    import gc
    widget.close()
    widget.deleteLater()
    QApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete.value)   # deleteLater, now
    QApplication.processEvents()
    gc.collect()


def shot(widget, folder: Path, name: str) -> Path:
    QApplication.processEvents()
    path = folder / f"{name}.png"
    assert widget.grab().save(str(path)), path
    print(f"screenshot: {path}")
    return path


def wait_idle(qtbot, project, timeout: int = 60_000) -> None:
    """Until no preview/validation/tokenizer job runs and no validation is scheduled."""
    qtbot.waitUntil(lambda: not project.worker.is_busy() and not project._timer.isActive(), timeout=timeout)


def wait_checked(qtbot, project, timeout: int = 60_000) -> None:
    wait_idle(qtbot, project, timeout)
    assert project.check is not None


def drop_paths(widget, paths) -> QDropEvent:
    """Drag ``paths`` over ``widget`` and drop them, as a file manager would (QMimeData with URLs)."""
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(p)) for p in paths])
    pos = QPoint(widget.width() // 2, widget.height() // 2)
    enter = QDragEnterEvent(pos, Qt.DropAction.CopyAction, mime, Qt.MouseButton.NoButton,
                            Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(widget, enter)
    assert enter.isAccepted(), "the widget refused the drag"
    drop = QDropEvent(QPointF(pos), Qt.DropAction.CopyAction, mime, Qt.MouseButton.NoButton,
                      Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(widget, drop)
    return drop


def write_jsonl(path: Path, rows) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


class Heartbeat:
    """A 10 ms QTimer on the GUI thread; ``worst_ms`` is the longest gap between its ticks, i.e. the
    longest time the GUI thread was busy. ``pause()`` excludes deliberate work (screenshots)."""

    def __init__(self, interval_ms: int = 10):
        from PySide6.QtCore import QTimer
        self.timer = QTimer(interval=interval_ms)
        self.timer.setTimerType(Qt.TimerType.PreciseTimer)
        self.timer.timeout.connect(self.tick)
        self.last = None
        self.gaps: list[float] = []
        self.cpu: list[float] = []      # GUI-thread CPU time within each gap: ours vs. waiting for a core
        self.at: list[float] = []       # when each gap ended, seconds after start()

    def start(self) -> None:
        self.resume()
        self.t0 = self.last
        self.timer.start()

    def tick(self) -> None:
        now, cpu = time.perf_counter(), time.thread_time()
        if self.last is not None:
            self.gaps.append((now - self.last) * 1000)
            self.cpu.append((cpu - self.last_cpu) * 1000)
            self.at.append(now - self.t0)
        self.last, self.last_cpu = now, cpu

    def pause(self) -> None:
        self.last = None

    def resume(self) -> None:
        self.last, self.last_cpu = time.perf_counter(), time.thread_time()

    def stop(self) -> None:
        self.timer.stop()

    @property
    def worst_ms(self) -> float:
        return max(self.gaps) if self.gaps else 0.0

    @property
    def worst_work_ms(self) -> float:
        """The GUI thread's own CPU time in its worst gap: what the app controls (a loaded machine can
        keep the thread waiting for a core far longer, which no code of ours can change)."""
        return max(self.cpu, default=0.0)

    def summary(self) -> str:
        if not self.gaps:
            return "no ticks"
        import numpy as np
        i = int(np.argmax(self.gaps))
        return (f"{len(self.gaps)} ticks, worst gap {self.gaps[i]:.1f} ms at {self.at[i]:.2f} s (GUI thread on CPU "
                f"for {self.cpu[i]:.1f} ms of it), 99th percentile {np.percentile(self.gaps, 99):.1f} ms, gaps > 50 ms: "
                f"{sum(g > 50 for g in self.gaps)}, load average {os.getloadavg()[0]:.1f}")


@pytest.fixture
def model_page(qtbot, project):
    """The Model & Task page at 1280×820, its summary of the chosen model loaded."""
    from raclate_app.pages.model import ModelPage
    page = ModelPage(project)
    qtbot.addWidget(page)
    page.resize(1280, 820)
    page.show()
    qtbot.waitUntil(lambda: page.summary is not None, timeout=20_000)
    return page


@pytest.fixture
def data_page(qtbot, project):
    from raclate_app.pages.data import DataPage
    page = DataPage(project)
    qtbot.addWidget(page)
    page.resize(1280, 820)
    page.show()
    return page
