"""Crash handling: an uncaught exception in any thread is logged and shown with the log tail; the app keeps running.

``sys.excepthook`` and ``threading.excepthook`` may run on any thread, so they only emit a signal; the dialog opens
on the GUI thread (queued). Before it opens, registered savers run (the window checkpoints a streaming answer), so
a crash never loses the conversation. Qt's own messages go to the log file through ``qInstallMessageHandler``.
"""

from __future__ import annotations

import logging
import sys
import threading
import traceback
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

from PySide6.QtCore import QObject, Qt, QtMsgType, QUrl, Signal, Slot, qInstallMessageHandler
from PySide6.QtGui import QDesktopServices, QFontDatabase, QGuiApplication
from PySide6.QtWidgets import (
    QDialog,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from localchat.gui import icons
from localchat.gui.theme import current
from localchat.logs import tail

log = logging.getLogger("localchat.gui")
qt_log = logging.getLogger("qt")
_QT_LEVELS = {QtMsgType.QtDebugMsg: logging.DEBUG, QtMsgType.QtInfoMsg: logging.INFO,
              QtMsgType.QtWarningMsg: logging.WARNING, QtMsgType.QtCriticalMsg: logging.ERROR,
              QtMsgType.QtFatalMsg: logging.CRITICAL}


def _qt_message(mode: QtMsgType, _context: object, message: str) -> None:
    qt_log.log(_QT_LEVELS.get(mode, logging.INFO), message)


class CrashDialog(QDialog):
    """What went wrong, that nothing was lost, and the end of the log to copy into a bug report."""

    def __init__(self, summary: str, log_file: Path, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("localchat hit an error")
        self.setMinimumSize(620, 420)
        self.log_file = log_file
        lay = QVBoxLayout(self)
        lay.setContentsMargins(20, 18, 20, 14)
        lay.setSpacing(10)
        head = QHBoxLayout()
        icon = QLabel()
        icon.setPixmap(icons.pixmap("warning", current().error_text, 28))
        head.addWidget(icon)
        title = QLabel("Something went wrong inside localchat")
        title.setObjectName("settingsSection")
        head.addWidget(title, 1)
        lay.addLayout(head)
        self.summary = QLabel(f"{summary}\n\nYour conversations are saved. The app keeps running; if something "
                              "looks wrong, restart it.")
        self.summary.setWordWrap(True)
        self.summary.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        lay.addWidget(self.summary)
        self.details = QPlainTextEdit(tail(log_file))
        self.details.setReadOnly(True)
        self.details.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        self.details.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
        lay.addWidget(QLabel(f"The end of the log ({log_file}):"))
        lay.addWidget(self.details, 1)
        buttons = QHBoxLayout()
        copy = QPushButton("Copy details")
        copy.clicked.connect(self.copy_details)
        folder = QPushButton("Open log folder")
        folder.clicked.connect(self.open_folder)
        close = QPushButton("Close")
        close.setObjectName("primary")
        close.setDefault(True)
        close.clicked.connect(self.accept)
        buttons.addWidget(copy)
        buttons.addWidget(folder)
        buttons.addStretch(1)
        buttons.addWidget(close)
        lay.addLayout(buttons)
        self.details.moveCursor(self.details.textCursor().MoveOperation.End)

    def detailedText(self) -> str:
        return self.details.toPlainText()

    def text(self) -> str:
        return self.summary.text()

    @Slot()
    def copy_details(self) -> None:
        QGuiApplication.clipboard().setText(f"{self.summary.text()}\n\n{self.details.toPlainText()}")

    @Slot()
    def open_folder(self) -> None:
        QDesktopServices.openUrl(QUrl.fromLocalFile(str(self.log_file.parent)))


class CrashReporter(QObject):
    """Created on the GUI thread; ``report`` may be emitted from any thread (queued to the dialog).

    Signals:
        report(str): a one-line summary of an uncaught exception.
    """

    report = Signal(str)

    def __init__(self, log_file: Path) -> None:
        super().__init__()
        self.log_file = log_file
        self.savers: list[Callable[[], None]] = []
        self._showing = False
        self.report.connect(self.show_dialog)

    @Slot(str)
    def show_dialog(self, text: str) -> None:
        for save in list(self.savers):
            try:
                save()
            except Exception:  # a saver failing must not hide the original error
                log.exception("saving state after an uncaught exception failed")
        if self._showing:  # one dialog at a time: a repeating error must not stack dialogs
            return
        self._showing = True
        try:
            CrashDialog(text, self.log_file).exec()
        finally:
            self._showing = False

    def excepthook(self, exc_type: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
        if issubclass(exc_type, KeyboardInterrupt):
            sys.__excepthook__(exc_type, exc, tb)
            return
        log.error("uncaught exception", exc_info=(exc_type, exc, tb))
        self.report.emit("".join(traceback.format_exception_only(exc_type, exc)).strip())

    def thread_excepthook(self, args: threading.ExceptHookArgs) -> None:
        self.excepthook(args.exc_type, args.exc_value or args.exc_type(), args.exc_traceback)


def install_crash_handlers(log_file: Path) -> CrashReporter:
    """Route uncaught exceptions (any thread) to a dialog and Qt messages to the log.

    Returns the reporter, which must stay referenced for the life of the app.
    """
    qInstallMessageHandler(_qt_message)
    reporter = CrashReporter(log_file)
    sys.excepthook = reporter.excepthook
    threading.excepthook = reporter.thread_excepthook
    return reporter
