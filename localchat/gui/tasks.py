"""The window's one way to run work off the GUI thread: ``run_task(owner, fn, on_done, on_error)``.

``fn`` runs on a pool thread; its result (or the exception it raised) comes back on the GUI thread to ``on_done``
(or ``on_error``), queued like any signal. If ``owner`` is destroyed first, nothing is delivered, so a page that
closes never gets a callback into a dead widget. In the spirit of Anki's ``QueryOp``.

Long-lived loops are not tasks: the engine thread (``engine_bridge``) owns the worker process for the window's
lifetime, and the socket monitor polls on its own thread.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal, Slot

log = logging.getLogger(__name__)
_POOL = QThreadPool()
_POOL.setMaxThreadCount(4)  # Hub requests, header reads, fit badges, copies: few, mostly waiting on I/O


class Task(QObject):
    """One call in flight. ``finished`` is emitted on the GUI thread after the callback ran (tests wait on it).

    Signals:
        finished(): the result or the error was delivered (or dropped because the owner is gone).
    """

    finished = Signal()
    _result = Signal(object)
    _error = Signal(object)

    def __init__(self, owner: QObject, name: str, on_done: Callable[[Any], None] | None,
                 on_error: Callable[[BaseException], None] | None) -> None:
        super().__init__(owner)
        self.name = name
        self.done = False
        self._on_done = on_done
        self._on_error = on_error
        self._result.connect(self._deliver_result)
        self._error.connect(self._deliver_error)

    @Slot(object)
    def _deliver_result(self, value: Any) -> None:
        try:
            if self._on_done is not None:
                self._on_done(value)
        finally:
            self._end()

    @Slot(object)
    def _deliver_error(self, exc: BaseException) -> None:
        try:
            if self._on_error is not None:
                self._on_error(exc)
            else:
                log.warning("background task %s failed: %s", self.name, exc)
        finally:
            self._end()

    def _end(self) -> None:
        self.done = True
        self.finished.emit()
        self.deleteLater()


class _Runnable(QRunnable):
    def __init__(self, task: Task, fn: Callable[[], Any]) -> None:
        super().__init__()
        self.task = task
        self.fn = fn

    def run(self) -> None:
        try:
            value = self.fn()
        except Exception as exc:  # delivered to on_error on the GUI thread, never raised in the pool
            self._emit(self.task._error, exc)
        else:
            self._emit(self.task._result, value)

    @staticmethod
    def _emit(signal: Any, value: Any) -> None:
        try:
            signal.emit(value)
        except RuntimeError:  # the owner, and with it the task, was destroyed meanwhile: nobody to tell
            pass


def run_task(owner: QObject, fn: Callable[[], Any], on_done: Callable[[Any], None] | None = None,
             on_error: Callable[[BaseException], None] | None = None, *, name: str = "") -> Task:
    """Run ``fn`` off the GUI thread; deliver its result or error on the GUI thread (see the module's doc)."""
    task = Task(owner, name or getattr(fn, "__name__", "task"), on_done, on_error)
    _POOL.start(_Runnable(task, fn))
    return task


def wait_all(msecs: int = 10_000) -> bool:
    """Block until every running task's function has returned (shutdown and tests); False on timeout."""
    return bool(_POOL.waitForDone(msecs))
