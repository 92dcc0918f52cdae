"""run_task: the function runs off the GUI thread; its result or error comes back on it; a dead owner gets nothing."""

from __future__ import annotations

import threading
import time

from PySide6.QtCore import QObject

from localchat.gui.tasks import run_task, wait_all


def test_result_and_error_are_delivered_on_the_gui_thread(qtbot) -> None:
    owner = QObject()
    gui = threading.get_ident()
    ran_on: list[int] = []
    got: list[tuple[str, object, int]] = []

    def work() -> int:
        ran_on.append(threading.get_ident())
        return 42

    def fail() -> None:
        raise OSError("disk gone")

    t1 = run_task(owner, work, lambda v: got.append(("done", v, threading.get_ident())))
    t2 = run_task(owner, fail, on_error=lambda e: got.append(("error", str(e), threading.get_ident())))
    qtbot.waitUntil(lambda: t1.done and t2.done, timeout=5000)
    assert ran_on and ran_on[0] != gui
    assert sorted(got) == [("done", 42, gui), ("error", "disk gone", gui)]


def test_a_destroyed_owner_gets_no_callback(qtbot) -> None:
    owner = QObject()
    release = threading.Event()
    got: list[object] = []

    def slow() -> str:
        release.wait(5)
        return "late"

    run_task(owner, slow, got.append, got.append)
    owner.deleteLater()
    qtbot.waitUntil(lambda: _deleted(owner), timeout=5000)
    release.set()
    assert wait_all(5000)
    deadline = time.monotonic() + 0.3
    while time.monotonic() < deadline:
        qtbot.wait(20)
    assert got == []


def _deleted(obj: QObject) -> bool:
    try:
        obj.objectName()
    except RuntimeError:
        return True
    return False
