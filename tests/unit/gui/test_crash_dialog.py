"""An uncaught exception is logged and shown with the log tail, from the GUI thread, and the app keeps running."""

from __future__ import annotations

import logging
import sys
import threading
from pathlib import Path

from PySide6.QtWidgets import QMessageBox

from localchat import logs
from localchat.context import open_context
from localchat.gui.launch import install_crash_handlers


def test_uncaught_exception_dialog_with_log_tail(qtbot, isolated_home: Path, monkeypatch) -> None:
    ctx = open_context(isolated_home)
    logs.configure(ctx.paths.log_file)
    shown: list[tuple[str, str]] = []
    monkeypatch.setattr(QMessageBox, "exec", lambda self: shown.append((self.text(), self.detailedText())))
    monkeypatch.setattr(sys, "excepthook", sys.excepthook)
    monkeypatch.setattr(threading, "excepthook", threading.excepthook)
    reporter = install_crash_handlers(ctx)
    logging.getLogger("test").warning("something happened just before")
    try:
        raise RuntimeError("boom in a slot")
    except RuntimeError as exc:
        sys.excepthook(type(exc), exc, exc.__traceback__)
    qtbot.waitUntil(lambda: bool(shown), timeout=5000)
    text, details = shown[0]
    assert "RuntimeError: boom in a slot" in text and "conversations are saved" in text
    assert "something happened just before" in details and "uncaught exception" in details
    assert reporter is not None
    logs.configure(None)
