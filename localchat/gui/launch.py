"""Start the desktop app: QApplication, icon, crash handling, the main window."""

from __future__ import annotations

import logging
import os
import sys
import threading
import traceback
from pathlib import Path
from types import TracebackType

from localchat.context import AppContext

log = logging.getLogger("localchat.gui")


def resources_dir() -> Path:
    base = Path(getattr(sys, "_MEIPASS", Path(__file__).resolve().parents[2]))
    return base / "resources"


def install_crash_handlers(ctx: AppContext) -> object:
    """Uncaught exceptions (any thread) are logged and shown with the log tail; Qt messages go to the log.

    Returns the reporter object, which must stay referenced for the life of the app.
    """
    from PySide6.QtCore import QObject, QtMsgType, Signal, Slot, qInstallMessageHandler
    from PySide6.QtWidgets import QMessageBox

    from localchat.logs import tail

    qt_log = logging.getLogger("qt")
    levels = {QtMsgType.QtDebugMsg: logging.DEBUG, QtMsgType.QtInfoMsg: logging.INFO,
              QtMsgType.QtWarningMsg: logging.WARNING, QtMsgType.QtCriticalMsg: logging.ERROR,
              QtMsgType.QtFatalMsg: logging.CRITICAL}

    def qt_handler(mode: QtMsgType, _context: object, message: str) -> None:
        qt_log.log(levels.get(mode, logging.INFO), message)

    qInstallMessageHandler(qt_handler)

    class CrashReporter(QObject):
        """Created on the GUI thread; ``report`` may be emitted from any thread (queued to the dialog)."""

        report = Signal(str)

        def __init__(self) -> None:
            super().__init__()
            self.report.connect(self.show_dialog)

        @Slot(str)
        def show_dialog(self, text: str) -> None:
            box = QMessageBox(QMessageBox.Icon.Critical, "localchat hit an error",
                              f"{text}\n\nYour conversations are saved. The app keeps running.")
            box.setDetailedText(tail(ctx.paths.log_file))
            box.exec()

    reporter = CrashReporter()

    def show(exc_type: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
        log.error("uncaught exception", exc_info=(exc_type, exc, tb))
        reporter.report.emit("".join(traceback.format_exception_only(exc_type, exc)).strip())

    sys.excepthook = show
    threading.excepthook = lambda a: show(a.exc_type, a.exc_value or Exception(), a.exc_traceback)
    return reporter


def launch(ctx: AppContext) -> int:
    from PySide6.QtGui import QIcon
    from PySide6.QtWidgets import QApplication

    from localchat.gui.main_window import MainWindow

    app = QApplication.instance() or QApplication(sys.argv[:1])
    assert isinstance(app, QApplication)
    app.setApplicationName("localchat")
    app.setDesktopFileName("localchat")
    app.setWindowIcon(QIcon(str(resources_dir() / "icons" / "localchat.png")))  # PNG: no QtSvg needed
    reporter = install_crash_handlers(ctx)  # noqa: F841 - kept alive while the app runs
    try:
        ctx.ensure_starter()
    except Exception as exc:  # no starter model is not fatal: the window says what to do
        log.warning("starter model unavailable: %s", exc)
    window = MainWindow(ctx)
    window.show()
    smoke_ms = os.environ.get("LOCALCHAT_SMOKE_QUIT_MS")  # packaging smoke test: open, paint, quit
    if smoke_ms and smoke_ms.isdigit():
        from PySide6.QtCore import QTimer

        QTimer.singleShot(int(smoke_ms), app.quit)
        print(f"window shown: {window.windowTitle()} — {window.device_label.text().strip()}", flush=True)
    code = app.exec()
    window.shutdown()
    return int(code)
