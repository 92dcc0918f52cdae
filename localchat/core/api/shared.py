"""The API inside the window: the same server on the window's worker, one turn at a time across both.

:class:`EngineTurns` is the one door to a worker that several threads drive (the window's engine thread and the
API's): a turn or a load holds it from its first message to its last chunk, the others wait in arrival order, and a
cancel names the request it means — so the window's Stop never stops an API answer, nor a client that hangs up
the window's. :class:`SharedModelHost` serves the model the window has loaded and nothing else: the API never loads,
unloads or restarts the window's worker.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from localchat.core.api.host import RETRY_AFTER_S, ModelHost, ModelRef, RunningTurn
from localchat.core.api.schema import ApiError
from localchat.core.engine.client import EngineClient
from localchat.core.engine.protocol import LoadInfo
from localchat.errors import WorkerCrashed
from localchat.settings import Settings

MAX_WITHDRAWN = 64  # cancels of requests not (yet) waiting: kept briefly so a late starter still sees its cancel


class EngineTurns:
    """One user of ``client`` at a time, first come first served; cancels by request id (thread-safe)."""

    def __init__(self, client: EngineClient) -> None:
        self.client = client
        self._cond = threading.Condition()
        self._holder: str | None = None
        self._queue: list[str] = []
        self._withdrawn: OrderedDict[str, None] = OrderedDict()

    @property
    def holder(self) -> str | None:
        """The request (or load) using the worker now."""
        return self._holder

    @property
    def waiting(self) -> int:
        return len(self._queue)

    def acquire(self, owner: str, on_wait: Callable[[str], None] | None = None) -> bool:
        """Wait for the worker; ``on_wait(holder)`` once if it is busy. False if ``owner`` was cancelled first."""
        with self._cond:
            if owner in self._withdrawn:  # cancelled before it asked
                del self._withdrawn[owner]
                return False
            self._queue.append(owner)
            busy = self._holder
        try:
            if busy is not None and on_wait is not None:
                on_wait(busy)
            with self._cond:
                while self._holder is not None or self._queue[0] != owner:
                    if owner in self._withdrawn:
                        return False
                    self._cond.wait()
                if owner in self._withdrawn:
                    return False
                self._holder = owner
                return True
        finally:
            with self._cond:
                self._queue.remove(owner)
                self._withdrawn.pop(owner, None)
                self._cond.notify_all()  # the next in line may be at the head now

    def release(self, owner: str) -> None:
        with self._cond:
            if self._holder == owner:
                self._holder = None
                self._cond.notify_all()

    @contextmanager
    def hold(self, owner: str, on_wait: Callable[[str], None] | None = None) -> Iterator[bool]:
        got = self.acquire(owner, on_wait)
        try:
            yield got
        finally:
            if got:
                self.release(owner)

    def cancel(self, owner: str) -> None:
        """Stop ``owner``'s turn if it runs; withdraw it if it waits or has not asked yet."""
        with self._cond:
            if self._holder == owner:
                self.client.cancel()  # the client's running turn is owner's: only the holder streams
                return
            self._withdrawn[owner] = None
            while len(self._withdrawn) > MAX_WITHDRAWN:
                self._withdrawn.popitem(last=False)
            self._cond.notify_all()


def not_loaded() -> ApiError:
    return ApiError(503, "no model is loaded in the localchat window right now (loading, or none picked); the API "
                         "serves the window's model — retry when it has loaded", "server_error", "model_not_loaded",
                    headers={"Retry-After": str(RETRY_AFTER_S)})


def other_model(asked: str, loaded: str) -> ApiError:
    return ApiError(409, f"the localchat window has '{loaded}' loaded, and the API inside the window serves only that "
                         f"model; ask for '{loaded}', or pick '{asked}' in the window", "invalid_request_error",
                    "model_not_loaded", param="model")


class SharedModelHost(ModelHost):
    """The API's view of the window's worker.

    Args:
        turns: the door to the window's worker (its engine thread uses the same one).
        loaded: the window's loaded model as (name, file), ``None`` while none is loaded or one loads.
        installed: the library's model names (a request for one of them that is not loaded is 409, not 404).
        on_crash: called (engine thread) when the worker died during an API turn, so the window can say so; the
            window's next turn restarts it, as after a crash in its own turn.
    """

    def __init__(self, turns: EngineTurns, loaded: Callable[[], tuple[str, Path] | None],
                 installed: Callable[[], set[str]], settings: Settings, max_queue: int = 4,
                 on_crash: Callable[[], None] | None = None) -> None:
        self.turns = turns
        self.loaded = loaded
        self.installed = installed
        self.on_crash = on_crash
        super().__init__(self._listed, settings, settings.n_ctx, max_queue=max_queue, engine=turns.client)

    @property
    def client(self) -> EngineClient:
        """The window's worker client now: the window replaces it when the helper machines change (LAN mode)."""
        return self.turns.client

    @client.setter
    def client(self, value: EngineClient) -> None:
        if value is not self.turns.client:
            raise ValueError("the shared host uses the window's worker client; it cannot be given another")

    def _listed(self) -> dict[str, ModelRef]:
        """``GET /v1/models`` lists the one model that can answer now."""
        current = self.loaded()
        return {current[0]: ModelRef(*current)} if current is not None else {}

    def ref(self, name: str) -> ModelRef:
        current = self.loaded()
        if current is not None and current[0] == name:
            return ModelRef(*current)
        if name in self.installed():
            raise other_model(name, current[0]) if current is not None else not_loaded()
        return super().ref(name)  # 404

    def _check(self, name: str) -> LoadInfo:
        self.ref(name)
        info = self.client.info if self.client.alive else None
        if info is None or self.loaded() is None:
            raise not_loaded()
        return info

    def load(self, name: str) -> LoadInfo:
        """Never loads: the window's model, or 409 / 503."""
        info = self._check(name)
        self.model, self.n_ctx = name, info.n_ctx
        return info

    @contextmanager
    def exclusive(self, turn: RunningTurn) -> Iterator[bool]:
        with self.turns.hold(turn.request.request_id) as mine:
            if mine:
                self._check(self.model or "")  # the window may have switched models while this one waited
            try:
                yield mine
            except WorkerCrashed:
                if self.on_crash is not None:
                    self.on_crash()
                raise

    def cancel_turn(self, request_id: str) -> None:
        self.turns.cancel(request_id)

    def close(self, *, keep_engine: bool = True) -> None:
        """Stop the running turn and the API's engine thread; the worker stays the window's (always kept)."""
        self.cancel_running()
        self._thread.shutdown(wait=True, cancel_futures=True)
