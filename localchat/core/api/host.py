"""One model, many clients: the worker behind the API, and the short queue in front of it.

Every engine call (start, load, a turn) runs on one thread, so the :class:`EngineClient` is only ever used by one
thread at a time (``cancel`` excepted, which is thread-safe). A request first takes the one slot (waiting in a
bounded queue; beyond it: 503 with ``Retry-After``), then the turn owns the slot until its last chunk has been read
from the worker — also when the client hung up and the turn was cancelled — so the next request never races a
turn still draining.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from localchat.core.api.schema import ApiError
from localchat.core.chat.conversation import TurnRequest
from localchat.core.chat.messages import Chunk, StatsChunk
from localchat.core.chat.turn import stream_turn
from localchat.core.engine.client import EngineClient
from localchat.core.engine.protocol import LoadInfo, WorkerHello
from localchat.errors import IsolationRequired, LocalChatError, WorkerCrashed
from localchat.settings import Settings

log = logging.getLogger(__name__)
RETRY_AFTER_S = 2


def worker_down(message: str) -> ApiError:
    return ApiError(503, f"the inference worker is not available: {message}", "server_error", "worker_unavailable",
                    headers={"Retry-After": str(RETRY_AFTER_S)})


@dataclass(frozen=True)
class ModelRef:
    """A model clients may ask for by ``name``."""

    name: str
    path: Path


class ModelHost:
    """The worker and the model loaded in it.

    Args:
        models: the model ids clients may use, by name (library entries; never a path from a request).
        settings: sampling defaults and load settings (GPU layers, threads).
        n_ctx: the context length models are loaded with.
        max_queue: requests that may wait while one runs.
        engine: the worker client (a new ``EngineClient`` by default).
    """

    def __init__(self, models: Callable[[], dict[str, ModelRef]], settings: Settings, n_ctx: int,
                 isolation: str = "auto", max_queue: int = 4, engine: EngineClient | None = None) -> None:
        self.models = models
        self.settings = settings
        self.n_ctx = n_ctx
        self.max_queue = max_queue
        self.client = engine or EngineClient(isolation=isolation)
        self.model: str | None = None
        self._machine_for: int | None = None  # the worker pid the device probe was made in
        self._machine: Any = None
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="api-engine")
        self._slot: asyncio.Lock | None = None
        self._waiting = 0
        self._running: RunningTurn | None = None
        self.served = 0

    # -- engine thread -------------------------------------------------------------------------------------

    @property
    def info(self) -> LoadInfo | None:
        return self.client.info if self.client.alive else None

    @property
    def hello(self) -> WorkerHello | None:
        return self.client.hello

    def ref(self, name: str) -> ModelRef:
        """Raises: ApiError 404 for a name clients may not use."""
        ref = self.models().get(name)
        if ref is None:
            raise ApiError(404, f"The model '{name}' does not exist or is not installed; GET /v1/models lists "
                                "the ones that are", code="model_not_found", param="model")
        return ref

    def load(self, name: str) -> LoadInfo:
        """Make ``name`` the loaded model (engine thread; the first one is loaded before serving).

        Raises:
            ApiError: 404 unknown model, 503 worker down, 500 the model failed to load.
        """
        ref = self.ref(name)
        info = self.info
        if info is not None and self.model == name:
            return info
        from localchat.core.engine.load_options import plan_load
        from localchat.core.hardware.detect import SystemProbes, detect

        try:
            hello = self.client.start()
            if self._machine_for != hello.pid:  # llama.cpp's devices, probed inside the sandboxed worker
                self._machine = detect(SystemProbes(self.client.isolation, engine=self.client))
                self._machine_for = hello.pid
            self.model = None
            options, _plan = plan_load(ref.path, n_ctx=self.n_ctx, settings=self.settings, machine=self._machine,
                                       rpc_servers=self.client.rpc_servers or None)
            info = self.client.load(ref.path, options)
        except IsolationRequired:
            raise
        except WorkerCrashed as exc:
            raise worker_down(str(exc)) from exc
        except LocalChatError as exc:
            raise ApiError(500, f"the model '{name}' could not be loaded: {exc}", "server_error",
                           "model_load_failed") from exc
        self.model = name
        log.info("api: loaded %s", name)
        return info

    def close(self, *, keep_engine: bool = False) -> None:
        """Stop the running turn and the worker (unless ``keep_engine``: its owner closes it); the engine thread
        ends."""
        if self._running is not None:
            self._running.cancel()
        self._thread.shutdown(wait=True, cancel_futures=True)
        if not keep_engine:
            self.client.close()

    # -- the slot --------------------------------------------------------------------------------------------

    @property
    def queued(self) -> int:
        return self._waiting

    async def acquire(self) -> None:
        """Wait for the worker (FIFO).

        Raises:
            ApiError: 503 when ``max_queue`` requests are already waiting.
        """
        if self._slot is None:
            self._slot = asyncio.Lock()
        if self._slot.locked() and self._waiting >= self.max_queue:
            raise ApiError(503, f"the local model is busy ({self._waiting} requests waiting); retry shortly",
                           "server_error", "queue_full", headers={"Retry-After": str(RETRY_AFTER_S)})
        self._waiting += 1
        try:
            await self._slot.acquire()
        finally:
            self._waiting -= 1

    def release(self) -> None:
        assert self._slot is not None
        self._slot.release()

    async def run_engine(self, fn: Callable[[], Any]) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._thread, fn)

    def start_turn(self, request: TurnRequest) -> RunningTurn:
        """Run ``request`` on the engine thread; the turn now owns the slot and frees it when it has ended."""
        turn = RunningTurn(self, request, asyncio.get_running_loop())
        self._running = turn
        self._thread.submit(turn.run)
        return turn

    def cancel_running(self) -> None:
        if self._running is not None:
            self._running.cancel()

    # -- hooks for a worker shared with the window (core.api.shared) -------------------------------------------

    @contextmanager
    def exclusive(self, turn: RunningTurn) -> Iterator[bool]:
        """Hold the worker for ``turn`` (engine thread); yields False when the turn was withdrawn while waiting.
        Here the API's engine thread is the worker's only user: nothing to wait for."""
        yield True

    def cancel_turn(self, request_id: str) -> None:
        """Stop ``request_id`` if it runs (thread-safe)."""
        self.client.cancel()


_END = object()


class RunningTurn:
    """A turn on the engine thread, read from the event loop: ``await next()`` gives chunks, then ``None``."""

    def __init__(self, host: ModelHost, request: TurnRequest, loop: asyncio.AbstractEventLoop) -> None:
        self.host = host
        self.request = request
        self._loop = loop
        self._queue: asyncio.Queue[Any] = asyncio.Queue()
        self._cancelled = threading.Event()
        self._read_all = False
        self.ended = asyncio.Event()  # set once the worker finished the turn and the slot is free

    def run(self) -> None:
        told = False
        try:
            if self._cancelled.is_set():
                return
            rid = self.request.request_id
            with self.host.exclusive(self) as mine:
                if not mine or self._cancelled.is_set():
                    return
                log.info("api: turn %s started", rid)
                client = self.host.client  # read once the slot is ours: a shared worker's client may be replaced
                for chunk in stream_turn(client, self.request):
                    if self._cancelled.is_set() and not told:  # a cancel that came before the turn had begun
                        client.cancel()
                        told = True
                    if isinstance(chunk, StatsChunk):
                        log.info("api: turn %s %s %d tokens", rid, chunk.stats.finish_reason,
                                 chunk.stats.completion_tokens)
                    self._put(chunk)
        except ApiError as exc:  # the worker could not be had for this request (a shared worker's model changed)
            self._put(exc)
        except WorkerCrashed as exc:
            self.host.model = None
            self._put(worker_down(str(exc)))
        except Exception as exc:
            log.exception("api turn failed")
            self._put(ApiError(500, f"{type(exc).__name__}: {exc}", "server_error"))
        finally:
            self._put(_END)
            self._call(self._finished)

    def _finished(self) -> None:
        if self.host._running is self:
            self.host._running = None
        self.host.served += 1
        self.host.release()
        self.ended.set()

    def _put(self, item: Any) -> None:
        self._call(self._queue.put_nowait, item)

    def _call(self, fn: Callable[..., None], *args: Any) -> None:
        try:
            self._loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:  # the loop has closed (shutdown)
            pass

    def cancel(self) -> None:
        """Stop generating now; the turn still ends and frees the slot. Once ended, a no-op: the worker may be on
        the next request by then (called on the event loop, which is where the slot passes on)."""
        if self.ended.is_set() or self._read_all:
            return
        self._cancelled.set()
        self.host.cancel_turn(self.request.request_id)

    async def next(self) -> Chunk | None:
        """The next chunk, ``None`` at the end.

        Raises:
            ApiError: the worker died (503) or the turn failed.
        """
        item = await self._queue.get()
        if item is _END:
            self._read_all = True
            self._queue.put_nowait(_END)  # later calls see the end too
            return None
        if isinstance(item, ApiError):
            raise item
        chunk: Chunk = item
        return chunk
