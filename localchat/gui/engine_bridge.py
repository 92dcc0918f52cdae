"""Qt adapter over the engine client: the worker is driven from a QThread and reports through signals.

Signals are connected to @Slot methods on the GUI side (queued across threads). Cancel is the one call made
directly from the GUI thread: ``EngineClient.cancel`` is thread-safe and must not wait behind a running turn.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, QThread, Signal, Slot

from localchat.core.chat.messages import ChatMessage, ErrorChunk, SamplingParams
from localchat.core.engine.client import EngineClient
from localchat.core.engine.protocol import LoadInfo, LoadOptions
from localchat.core.engine.session import load_options_for
from localchat.errors import LocalChatError, WorkerCrashed
from localchat.settings import Settings

log = logging.getLogger(__name__)


class EngineWorker(QObject):
    """Lives in the engine thread.

    Signals:
        workerStarted(int, dict): pid and isolation report of a (re)started worker process.
        loadProgress(float): 0..1 while a model loads.
        loaded(object): LoadInfo.
        loadFailed(str): why a load failed.
        chunk(object): a typed chunk of the running turn (carries its request id).
        turnCrashed(str, str, str, str): request id, message, partial text, partial reasoning.
    """

    workerStarted = Signal(int, dict)
    loadProgress = Signal(float)
    loaded = Signal(object)
    loadFailed = Signal(str)
    chunk = Signal(object)
    turnCrashed = Signal(str, str, str, str)

    def __init__(self, isolation: str) -> None:
        super().__init__()
        self.client = EngineClient(isolation=isolation)
        self._model: tuple[str, LoadOptions] | None = None

    def _ensure_started(self) -> None:
        if not self.client.alive:
            hello = self.client.start()
            self.workerStarted.emit(hello.pid, dict(hello.isolation))
            if self._model is not None:  # a restarted worker reloads the model it had
                self._do_load(*self._model)

    def _do_load(self, path: str, options: LoadOptions) -> LoadInfo:
        return self.client.load(path, options, progress=self.loadProgress.emit)

    @Slot(str, object)
    def load(self, path: str, settings: object) -> None:
        """Plan (hardware detection included) and load, here in the engine thread."""
        assert isinstance(settings, Settings)
        try:
            options = load_options_for(Path(path), n_ctx=settings.n_ctx, settings=settings)
            self._model = None
            self._ensure_started()
            info = self._do_load(path, options)
            self._model = (path, options)
            self.loaded.emit(info)
        except LocalChatError as exc:
            self.loadFailed.emit(str(exc))

    @Slot(str, list, object)
    def chat(self, request_id: str, messages: list[Any], sampling: object) -> None:
        assert isinstance(sampling, SamplingParams)
        try:
            self._ensure_started()
            for c in self.client.chat([ChatMessage(m["role"], m["content"]) for m in messages], sampling,
                                      request_id=request_id):
                self.chunk.emit(c)
        except WorkerCrashed as exc:
            self.turnCrashed.emit(request_id, str(exc), exc.partial_text, exc.partial_reasoning)
        except LocalChatError as exc:
            self.chunk.emit(ErrorChunk(request_id, "internal", str(exc)))

    @Slot()
    def shutdown(self) -> None:
        self.client.close()


class EngineBridge(QObject):
    """Owns the engine thread. Use its request signals; read results from ``worker``'s signals.

    Signals:
        requestLoad(str, object): model path and a Settings copy; planned and loaded in the engine thread.
        requestChat(str, list, object): request id, messages, SamplingParams.
    """

    requestLoad = Signal(str, object)
    requestChat = Signal(str, list, object)
    requestShutdown = Signal()

    def __init__(self, isolation: str = "auto", parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.engine_thread = QThread()
        self.engine_thread.setObjectName("engine")
        self.worker = EngineWorker(isolation)
        self.worker.moveToThread(self.engine_thread)
        self.requestLoad.connect(self.worker.load)
        self.requestChat.connect(self.worker.chat)
        self.requestShutdown.connect(self.worker.shutdown)
        self.engine_thread.start()

    def cancel(self) -> None:
        self.worker.client.cancel()

    def kill_worker(self) -> None:
        self.worker.client.kill()

    @property
    def worker_pid(self) -> int | None:
        return self.worker.client.pid

    def stop(self) -> None:
        self.worker.client.cancel()
        self.requestShutdown.emit()
        self.engine_thread.quit()
        if not self.engine_thread.wait(10_000):
            log.warning("engine thread did not stop in time")


