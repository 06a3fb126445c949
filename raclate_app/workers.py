"""Run a function off the GUI thread (QThreadPool) and get its result or error back as a signal.

Only the latest job per *channel* is delivered: a preview or validation that was overtaken by a
newer request is dropped, so a slow file can never overwrite a newer one on screen.
"""
from __future__ import annotations

import logging
import threading
import traceback

from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal


class Cancelled(Exception):
    """Raised inside a job by its Progress when the user pressed Cancel."""


class Progress(QObject):
    """Handed to a long job as its ``progress(done, total, text)`` callback: each call is relayed to the
    GUI thread as ``progressed`` and raises :class:`Cancelled` once ``cancel()`` was called."""
    progressed = Signal(int, int, str)

    def __init__(self, parent=None):
        super().__init__(parent)
        self._cancel = threading.Event()

    def cancel(self) -> None:
        self._cancel.set()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def __call__(self, done: int, total: int, text: str = "") -> None:
        if self._cancel.is_set():
            raise Cancelled()
        try:
            self.progressed.emit(int(done), int(total), str(text))
        except RuntimeError:
            pass   # the page closed while the job ran


def model_thread_pool(parent=None) -> QThreadPool:
    """One dedicated thread that never expires: every job that touches a page's loaded MLX model runs
    on it, one at a time and in order (a model and its tokenizer are never used by two threads)."""
    pool = QThreadPool(parent)
    pool.setMaxThreadCount(1)
    pool.setExpiryTimeout(-1)
    return pool


class _JobSignals(QObject):
    job_finished = Signal(int, object)
    job_failed = Signal(int, object, str)


class _Job(QRunnable):
    def __init__(self, number: int, signals: _JobSignals, fn, args, kwargs):
        super().__init__()
        self.setAutoDelete(True)
        self.number, self.signals, self.fn, self.args, self.kwargs = number, signals, fn, args, kwargs

    def run(self) -> None:
        try:
            try:
                result = self.fn(*self.args, **self.kwargs)
            except Exception as exc:  # noqa: BLE001 — delivered to the page, never swallowed
                self.signals.job_failed.emit(self.number, exc, traceback.format_exc())
            else:
                self.signals.job_finished.emit(self.number, result)
        except RuntimeError:
            pass   # the window (and with it the signals object) closed while the job ran


class Worker(QObject):
    """``worker.submit("preview", fn, *args, on_done=..., on_error=...)``; callbacks run on the GUI thread."""

    busy_changed = Signal(bool)

    def __init__(self, parent=None, pool: QThreadPool | None = None):
        super().__init__(parent)
        self.pool = pool or QThreadPool.globalInstance()
        self.signals = _JobSignals(self)
        self.signals.job_finished.connect(self.on_job_finished)
        self.signals.job_failed.connect(self.on_job_failed)
        self._counter = 0
        self._latest: dict[str, int] = {}
        self._pending: dict[int, tuple[str, object, object]] = {}

    def submit(self, channel: str, fn, *args, on_done=None, on_error=None, **kwargs) -> int:
        self._counter += 1
        number = self._counter
        self._latest[channel] = number
        self._pending[number] = (channel, on_done, on_error)
        if len(self._pending) == 1:
            self.busy_changed.emit(True)
        self.pool.start(_Job(number, self.signals, fn, args, kwargs))
        return number

    def is_busy(self, channel: str | None = None) -> bool:
        return any(channel in (None, c) for c, _, _ in self._pending.values())

    def _take(self, number: int):
        channel, on_done, on_error = self._pending.pop(number, (None, None, None))
        if not self._pending:
            self.busy_changed.emit(False)
        if channel is None or self._latest.get(channel) != number:
            return False, None, None   # overtaken by a newer job on the same channel
        return True, on_done, on_error

    def on_job_finished(self, number: int, result) -> None:
        current, on_done, _ = self._take(number)
        if current and on_done is not None:
            _deliver(on_done, result)

    def on_job_failed(self, number: int, exc, trace: str) -> None:
        current, _, on_error = self._take(number)
        if current and on_error is not None:
            _deliver(on_error, exc)
        elif current:
            logging.getLogger(__name__).error("background job failed:\n%s", trace)


def _deliver(callback, value) -> None:
    """Call a page's callback unless the page was closed meanwhile (its widgets are gone)."""
    try:
        callback(value)
    except RuntimeError as exc:
        if "already deleted" not in str(exc):
            raise
