"""An uncaught exception is logged and shown with the log tail, on the GUI thread, and the app keeps running."""

from __future__ import annotations

import logging
import sys
import threading
from pathlib import Path

from localchat import logs
from localchat.context import open_context
from localchat.gui.crash import CrashDialog, install_crash_handlers


def test_uncaught_exceptions_show_the_log_tail_and_save_first(qtbot, isolated_home: Path, monkeypatch) -> None:
    ctx = open_context(isolated_home)
    logs.configure(ctx.paths.log_file)
    shown: list[tuple[str, str]] = []
    monkeypatch.setattr(CrashDialog, "exec", lambda self: shown.append((self.text(), self.detailedText())))
    monkeypatch.setattr(sys, "excepthook", sys.excepthook)
    monkeypatch.setattr(threading, "excepthook", threading.excepthook)
    try:
        reporter = install_crash_handlers(ctx.paths.log_file)
        saved: list[int] = []
        reporter.savers.append(lambda: saved.append(len(shown)))
        logging.getLogger("test").warning("something happened just before")
        try:
            raise RuntimeError("boom in a slot")
        except RuntimeError as exc:
            sys.excepthook(type(exc), exc, exc.__traceback__)
        qtbot.waitUntil(lambda: bool(shown), timeout=5000)
        text, details = shown[0]
        assert "RuntimeError: boom in a slot" in text and "conversations are saved" in text
        assert "something happened just before" in details and "uncaught exception" in details
        assert saved == [0]  # the savers ran before the dialog opened

        t = threading.Thread(target=lambda: 1 / 0)  # from another thread: queued to the GUI thread
        t.start()
        t.join()
        qtbot.waitUntil(lambda: len(shown) == 2, timeout=5000)
        assert "ZeroDivisionError" in shown[1][0]
        assert "ZeroDivisionError" in ctx.paths.log_file.read_text()
    finally:
        logs.configure(None)
