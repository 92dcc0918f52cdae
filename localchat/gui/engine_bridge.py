"""Qt adapter over the engine client: the worker process is driven from a QThread and reports through signals.

Everything slow happens in the engine thread: starting the worker, planning the offload (llama.cpp's devices
are probed inside the sandboxed worker; the GGUF header is read), loading the model, streaming a turn. Signals are
connected to @Slot methods on the GUI side (queued across threads). Cancel and kill are the calls made directly
from the GUI thread: ``EngineClient.cancel`` is thread-safe and must not wait behind a running turn.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import QObject, QThread, Signal, Slot

from localchat.core.api.shared import EngineTurns
from localchat.core.chat.conversation import TurnRequest
from localchat.core.chat.messages import ErrorChunk, StatsChunk, TurnStats
from localchat.core.chat.turn import stream_turn
from localchat.core.engine.client import EngineClient
from localchat.core.engine.load_options import plan_load
from localchat.core.engine.protocol import LoadInfo, LoadOptions
from localchat.core.hardware.detect import SystemProbes, detect
from localchat.errors import LocalChatError, WorkerCrashed
from localchat.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoadRequest:
    """What the window asks for; the engine thread turns it into LoadOptions with the planner."""

    load_id: str
    name: str
    path: Path
    settings: Settings


class EngineDriver(QObject):
    """Drives the worker process from the engine thread (so "worker" means only that process).

    Signals:
        workerStarted(int, dict): pid and isolation report of a (re)started worker process.
        workerStopped(): the worker process is gone (crashed, killed, or shut down).
        loadProgress(str, float): load id, 0..1 while a model loads.
        loaded(str, object): load id, LoadInfo.
        loadFailed(str, str): load id, why.
        chunk(object): a typed chunk of the running turn (carries its request id).
        turnCrashed(str, str): request id, message; the worker died mid-turn.
        waiting(str, str): a turn or load id, and who has the worker: it waits (the API inside the window).

    Turns and loads go through ``turns`` (one at a time with the API's, when it serves); ``loaded_model`` is the
    library name and file of the model loaded now (``None`` while one loads), read by the API under that lock.
    """

    workerStarted = Signal(int, dict)
    workerStopped = Signal()
    loadProgress = Signal(str, float)
    loaded = Signal(str, object)
    loadFailed = Signal(str, str)
    chunk = Signal(object)
    turnCrashed = Signal(str, str)
    waiting = Signal(str, str)

    def __init__(self, isolation: str) -> None:
        super().__init__()
        self.client = EngineClient(isolation=isolation)
        self.turns = EngineTurns(self.client)
        self.loaded_model: tuple[str, Path] | None = None
        self.current: str | None = None  # the window's turn running or waiting now
        self._model: tuple[str, LoadOptions] | None = None
        self._load_id = ""

    def _wait(self, owner: str) -> Callable[[str], None]:
        return lambda holder: self.waiting.emit(owner, holder)

    def _ensure_started(self) -> None:
        if not self.client.alive:
            hello = self.client.start()
            self.workerStarted.emit(hello.pid, dict(hello.isolation))
            if self._model is not None:  # a restarted worker reloads the model it had
                self._do_load(*self._model)

    def _do_load(self, path: str, options: LoadOptions) -> LoadInfo:
        return self.client.load(path, options, progress=self._progress)

    def _progress(self, p: float) -> None:
        self.loadProgress.emit(self._load_id, p)

    @Slot(object)
    def load(self, request: object) -> None:
        assert isinstance(request, LoadRequest)
        self._load_id = request.load_id
        with self.turns.hold(f"load-{request.load_id}", self._wait(request.load_id)):
            self._load(request)

    def _use_helpers(self, settings: Settings) -> None:
        """LAN mode: a worker for the settings' helper machines (the same path as ``chat --rpc``); other helpers
        than the running worker's restart it with a new client, whose relay connects to those only."""
        peers = settings.helper_peers()
        if peers == self.client.peers:
            return
        was_running = self.client.alive
        self.client.close()
        if was_running:
            self.workerStopped.emit()  # the Network page shows no worker until the new one has started
        self.client = EngineClient(isolation=self.client.isolation, peers=peers)
        self.turns.client = self.client

    def _load(self, request: LoadRequest) -> None:
        try:
            self._model = None
            self.loaded_model = None
            self._use_helpers(request.settings)
            self._ensure_started()
            # llama.cpp's devices and free memory are probed inside the sandboxed worker; the plan is made here
            machine = detect(SystemProbes(self.client.isolation, engine=self.client))
            options, _plan = plan_load(request.path, n_ctx=request.settings.n_ctx, settings=request.settings,
                                       machine=machine, rpc_servers=self.client.rpc_servers or None)
            info = self._do_load(str(request.path), options)
            self._model = (str(request.path), options)
            self.loaded_model = (request.name, request.path)
            self.loaded.emit(request.load_id, info)
        except WorkerCrashed as exc:
            self.workerStopped.emit()
            self.loadFailed.emit(request.load_id, str(exc))
        except LocalChatError as exc:  # a bad helpers setting too (SettingsError)
            self.loadFailed.emit(request.load_id, str(exc))
        except Exception as exc:  # the planner or a bad file must not kill the engine thread
            log.exception("model load failed")
            self.loadFailed.emit(request.load_id, f"{type(exc).__name__}: {exc}")

    @Slot(object)
    def chat(self, request: object) -> None:
        assert isinstance(request, TurnRequest)
        self.current = request.request_id
        try:
            with self.turns.hold(request.request_id, self._wait(request.request_id)) as mine:
                if mine:
                    self._chat(request)
                else:  # stopped while it waited: it ends as a stopped turn with nothing said
                    self.chunk.emit(StatsChunk(request.request_id, TurnStats(0, 0, 0.0, 0.0, 0.0, "cancelled")))
        finally:
            self.current = None

    def _chat(self, request: TurnRequest) -> None:
        request_id = request.request_id
        try:
            self._ensure_started()
            for c in stream_turn(self.client, request):
                self.chunk.emit(c)
        except WorkerCrashed as exc:
            self._model = None  # the window reloads explicitly, so the user sees the load progress
            self.loaded_model = None
            self.workerStopped.emit()
            self.turnCrashed.emit(request_id, str(exc))
        except LocalChatError as exc:
            self.chunk.emit(ErrorChunk(request_id, "internal", str(exc)))


class EngineBridge(QObject):
    """Owns the engine thread. Use its request signals; read results from ``worker``'s signals.

    Signals:
        requestLoad(object): a LoadRequest, queued into the engine thread.
        requestChat(object): a TurnRequest (core.chat.conversation).
    """

    requestLoad = Signal(object)
    requestChat = Signal(object)

    def __init__(self, isolation: str = "auto", parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.engine_thread = QThread()
        self.engine_thread.setObjectName("engine")
        self.driver = EngineDriver(isolation)
        self.driver.moveToThread(self.engine_thread)
        self.requestLoad.connect(self.driver.load)
        self.requestChat.connect(self.driver.chat)
        self.engine_thread.start()

    def cancel(self, request_id: str | None = None) -> None:
        """Stop the window's turn (``request_id``, else the one in the engine thread) — never another user's."""
        rid = request_id or self.driver.current
        if rid is not None:
            self.driver.turns.cancel(rid)

    def kill_worker(self) -> None:
        self.driver.client.kill()

    @property
    def worker_pid(self) -> int | None:
        return self.driver.client.pid

    def stop(self) -> None:
        """Stop the thread, then close the worker; a load still running is cut short by killing the worker."""
        self.cancel()
        self.engine_thread.quit()  # takes effect when the running slot (if any) returns
        if not self.engine_thread.wait(3000):
            log.warning("engine thread busy at shutdown (a model loading?); killing the worker")
            self.driver.client.kill()
            if not self.engine_thread.wait(10_000):
                log.error("engine thread did not stop")
                return
        self.driver.client.close()  # the thread has finished: nothing else uses the client now
