"""Collation off the training loop's critical path: an iterator run in a thread, a few items ahead.

The Trainer's batch generator (sampler → rows → collator) runs in one background thread, so the
batches come in exactly the order and with exactly the values of the plain generator; only *when*
they are built changes. The thread creates arrays from NumPy data and runs no MLX computation
(streams belong to the thread that made them); anything collective (distributed) stays on the
training thread.
"""
from __future__ import annotations

import queue
import threading

_DONE = object()


class Prefetcher:
    """``iter(Prefetcher(items, depth))`` yields what ``items`` yields, computed up to ``depth`` ahead in a
    thread; an exception raised there is raised here at the same position. ``depth=0``: no thread."""

    def __init__(self, items, depth: int = 2):
        self._items = iter(items)
        self._stop = threading.Event()
        self._queue: queue.Queue | None = None
        if depth > 0:
            self._queue = queue.Queue(maxsize=depth)
            # The thread holds the queue, the iterator and the event, never self: dropping the
            # Prefetcher lets __del__ stop it.
            self._thread = threading.Thread(target=_fill, args=(self._items, self._queue, self._stop),
                                            name="raclate-prefetch", daemon=True)
            self._thread.start()

    def __iter__(self):
        return self

    def __next__(self):
        if self._queue is None:
            return next(self._items)
        kind, value = self._queue.get()
        if kind is _DONE:
            self._queue.put((_DONE, value))  # every later call ends the same way
            if isinstance(value, BaseException):
                raise value
            raise StopIteration
        return value

    def close(self) -> None:
        """Stop the thread (it finishes the item in hand) and drop what it had prepared."""
        self._stop.set()
        if self._queue is not None:
            while self._thread.is_alive():
                try:
                    self._queue.get(timeout=0.05)
                except queue.Empty:
                    pass

    def __del__(self):
        self._stop.set()


def _fill(items, out: queue.Queue, stop: threading.Event) -> None:
    def put(entry) -> bool:
        while not stop.is_set():
            try:
                out.put(entry, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    try:
        for item in items:
            if not put((None, item)):
                return
    except BaseException as exc:  # handed to the consumer, raised there
        put((_DONE, exc))
        return
    put((_DONE, None))
