"""EngineTurns: one user of the worker at a time, in arrival order, and a cancel reaches only the request it names.
(The window and the API on the real worker: tests/unit/gui/test_api_switch.py.)"""

from __future__ import annotations

import threading
from typing import Any

from localchat.core.api.shared import MAX_WITHDRAWN, EngineTurns


class FakeClient:
    def __init__(self) -> None:
        self.cancels = 0

    def cancel(self) -> None:
        self.cancels += 1


def turns() -> tuple[EngineTurns, FakeClient]:
    c = FakeClient()
    return EngineTurns(c), c  # type: ignore[arg-type]


def waiter(t: EngineTurns, owner: str, log: list[Any]) -> tuple[threading.Thread, threading.Event]:
    """A thread that waits for the worker, logs (owner, got), holds it until released by the event."""
    done = threading.Event()

    def run() -> None:
        got = t.acquire(owner)
        log.append((owner, got))
        if got:
            done.wait(30)
            t.release(owner)

    th = threading.Thread(target=run, daemon=True)
    th.start()
    return th, done


def wait_queued(t: EngineTurns, n: int) -> None:
    for _ in range(3000):
        if t.waiting == n:
            return
        threading.Event().wait(0.01)
    raise AssertionError(f"{n} waiters expected, {t.waiting} waiting")


def test_one_at_a_time_first_come_first_served() -> None:
    t, _ = turns()
    waits: list[str] = []
    assert t.acquire("api-1", on_wait=waits.append) and t.holder == "api-1" and waits == []
    log: list[Any] = []
    a, a_done = waiter(t, "window-1", log)
    wait_queued(t, 1)
    b, b_done = waiter(t, "api-2", log)
    wait_queued(t, 2)
    assert log == []  # both wait while api-1 holds the worker
    t.release("api-1")
    a_done.set()
    a.join(30)
    b_done.set()
    b.join(30)
    assert log == [("window-1", True), ("api-2", True)] and t.holder is None and t.waiting == 0


def test_cancel_names_its_request_only() -> None:
    t, client = turns()
    assert t.acquire("api-1")
    log: list[Any] = []
    th, _ = waiter(t, "window-1", log)
    wait_queued(t, 1)
    t.cancel("window-1")  # the window's Stop while it waits: withdrawn, the API's turn goes on
    th.join(30)
    assert log == [("window-1", False)] and client.cancels == 0 and t.holder == "api-1"
    t.cancel("api-1")  # the holder's cancel reaches the worker
    assert client.cancels == 1
    t.release("api-1")
    t.release("api-1")  # a second release is harmless
    assert t.holder is None


def test_a_cancel_before_the_request_asks_is_kept_briefly() -> None:
    t, client = turns()
    t.cancel("early")
    assert not t.acquire("early") and client.cancels == 0
    assert t.acquire("early")  # only once
    t.release("early")
    for i in range(MAX_WITHDRAWN + 10):  # cancels of requests that never come stay bounded
        t.cancel(f"gone-{i}")
    assert len(t._withdrawn) == MAX_WITHDRAWN


def test_hold_releases_on_error_and_reports_who_had_it() -> None:
    t, _ = turns()
    seen: list[str] = []
    assert t.acquire("load-1")
    log: list[Any] = []

    def run() -> None:
        try:
            with t.hold("window-2", on_wait=seen.append) as got:
                log.append(got)
                raise ValueError("boom")
        except ValueError:
            log.append("raised")

    th = threading.Thread(target=run, daemon=True)
    th.start()
    wait_queued(t, 1)
    t.release("load-1")
    th.join(30)
    assert seen == ["load-1"] and log == [True, "raised"] and t.holder is None
