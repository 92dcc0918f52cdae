"""Start the desktop app: QApplication, icon, crash handling, the main window."""

from __future__ import annotations

import gc
import logging
import os
import sys

from localchat.context import AppContext

log = logging.getLogger("localchat.gui")


def freeze_startup_objects() -> None:
    """Exempt everything alive after start-up (Qt wrappers, modules, the window) from garbage collection.

    A full collection otherwise scans them all: a 40 ms pause in the middle of a stream on the reference machine.
    Later objects are collected as usual.
    """
    gc.freeze()


def launch(ctx: AppContext) -> int:
    """Open the main window and run the event loop; returns the exit code."""
    from PySide6.QtWidgets import QApplication

    from localchat.gui.crash import install_crash_handlers
    from localchat.gui.icons import app_icon
    from localchat.gui.main_window import MainWindow

    app = QApplication.instance() or QApplication(sys.argv[:1])
    assert isinstance(app, QApplication)
    app.setApplicationName("localchat")
    app.setApplicationDisplayName("localchat")
    app.setDesktopFileName("localchat")
    app.setWindowIcon(app_icon())
    reporter = install_crash_handlers(ctx.paths.log_file)
    try:
        ctx.ensure_starter()
    except Exception as exc:  # no starter model is not fatal: the window says what to do
        log.warning("starter model unavailable: %s", exc)
    window = MainWindow(ctx)
    reporter.savers.append(window.turn_controller.checkpoint)  # a crash dialog first saves the answer streaming, if any
    window.show()
    freeze_startup_objects()
    smoke_ms = os.environ.get("LOCALCHAT_SMOKE_QUIT_MS")  # packaging smoke test: open, paint, quit
    if smoke_ms and smoke_ms.isdigit():
        from PySide6.QtCore import QTimer

        QTimer.singleShot(int(smoke_ms), app.quit)
        print(f"window shown: {window.windowTitle()} — {window.status_text()}", flush=True)
    code = app.exec()
    window.shutdown()
    return int(code)
