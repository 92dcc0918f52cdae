"""Where the user types: a rounded box that grows with the text, Enter sends, Shift+Enter adds a line.

The round button sends; while an answer streams it becomes Stop (Esc does the same from anywhere in the window).
"""

from __future__ import annotations

import math
from typing import Any

from PySide6.QtCore import QSize, Qt, Signal, Slot
from PySide6.QtGui import QFocusEvent, QKeyEvent
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QPlainTextEdit, QToolButton, QVBoxLayout, QWidget

from localchat.gui import icons
from localchat.gui.chat.view import COLUMN_WIDTH
from localchat.gui.theme import current, repolish

MAX_LINES = 8


class MessageInput(QPlainTextEdit):
    """Signals:
        submitted(): Enter was pressed (without Shift).
        focusChanged(bool): the input gained or lost focus.
    """

    submitted = Signal()
    focusChanged = Signal(bool)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setPlaceholderText("Message the model…")
        self.setTabChangesFocus(True)
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.document().setDocumentMargin(2)
        self.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAsNeeded)
        self.document().documentLayout().documentSizeChanged.connect(self._fit)
        self._fit()

    @Slot()
    def _fit(self) -> None:
        line = self.fontMetrics().lineSpacing()
        lines = max(1, min(MAX_LINES, math.ceil(self.document().size().height())))  # plain text: size in lines
        h = lines * line + 2 * int(self.document().documentMargin()) + 6
        if h != self.height():
            self.setFixedHeight(h)

    def keyPressEvent(self, e: QKeyEvent) -> None:
        if e.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter) and not e.modifiers() & Qt.KeyboardModifier.ShiftModifier:
            self.submitted.emit()
            return
        super().keyPressEvent(e)

    def focusInEvent(self, e: QFocusEvent) -> None:
        super().focusInEvent(e)
        self.focusChanged.emit(True)

    def focusOutEvent(self, e: QFocusEvent) -> None:
        super().focusOutEvent(e)
        self.focusChanged.emit(False)


class Composer(QWidget):
    """The input box under the conversation, centred in the same column.

    Signals:
        submitted(): the user asked to send (Enter or the send button).
        stopRequested(): the user asked to stop the running answer.
    """

    submitted = Signal()
    stopRequested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.busy = False
        outer = QHBoxLayout(self)
        self._outer = outer
        self.box = QFrame()
        self.box.setObjectName("composer")
        outer.addWidget(self.box)
        lay = QVBoxLayout(self.box)
        lay.setContentsMargins(14, 10, 10, 8)
        lay.setSpacing(4)
        self.input = MessageInput()
        self.input.submitted.connect(self.submitted)
        self.input.focusChanged.connect(self._focus_changed)
        self.input.textChanged.connect(self._update_button)
        lay.addWidget(self.input)
        row = QHBoxLayout()
        row.setSpacing(8)
        self.hint = QLabel("Enter to send  ·  Shift+Enter for a new line")
        self.hint.setObjectName("composerHint")
        self.button = QToolButton()
        self.button.setObjectName("sendButton")
        self.button.setFixedSize(32, 32)
        self.button.setIconSize(QSize(18, 18))
        self.button.setCursor(Qt.CursorShape.PointingHandCursor)
        self.button.clicked.connect(self._clicked)
        row.addWidget(self.hint)
        row.addStretch(1)
        row.addWidget(self.button)
        lay.addLayout(row)
        self.restyle()

    def restyle(self) -> None:
        t = current()
        if self.busy:
            self.button.setIcon(icons.icon("stop", t.bg, 18))
            self.button.setToolTip("Stop (Esc)")
        else:
            self.button.setIcon(icons.icon("send", "#ffffff", 18))
            self.button.setToolTip("Send (Enter)")
        self.button.setAccessibleName(self.button_text)
        self.button.setProperty("busy", "true" if self.busy else "false")
        repolish(self.button)
        self._update_button()

    def set_busy(self, busy: bool) -> None:
        self.busy = busy
        self.restyle()

    @property
    def button_text(self) -> str:
        return "Stop" if self.busy else "Send"

    def text(self) -> str:
        return self.input.toPlainText()

    def set_text(self, text: str) -> None:
        self.input.setPlainText(text)
        cursor = self.input.textCursor()
        cursor.movePosition(cursor.MoveOperation.End)
        self.input.setTextCursor(cursor)

    def clear(self) -> None:
        self.input.clear()

    def focus(self) -> None:
        self.input.setFocus()

    def resizeEvent(self, e: Any) -> None:
        side = max(24, (self.width() - COLUMN_WIDTH) // 2)
        self._outer.setContentsMargins(side, 4, side, 16)
        super().resizeEvent(e)

    @Slot()
    def _clicked(self) -> None:
        if self.busy:
            self.stopRequested.emit()
        else:
            self.submitted.emit()

    @Slot()
    def _update_button(self) -> None:
        self.button.setEnabled(self.busy or bool(self.input.toPlainText().strip()))

    @Slot(bool)
    def _focus_changed(self, focused: bool) -> None:
        self.box.setProperty("focused", "true" if focused else "false")
        repolish(self.box)
