"""One widget per message. Widgets emit signals for what the user asks (copy, regenerate, edit, retry, open a
link); the view connects them, so a message never reaches into its view."""

from __future__ import annotations

import math
from typing import Any

from PySide6.QtCore import QEvent, QSize, Qt, QUrl, Signal, Slot
from PySide6.QtGui import QGuiApplication, QKeyEvent, QTextDocument
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QSizePolicy,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from localchat.gui import icons
from localchat.gui.chat.display import DisplayMessage, stats_text, thought_label
from localchat.gui.chat.markdown import MarkdownRenderer
from localchat.gui.chat.rich_text import MarkdownView, RichText
from localchat.gui.theme import current, repolish


def _action(name: str, tip: str) -> QToolButton:
    b = QToolButton()
    b.setObjectName("action")
    b.setIcon(icons.icon(name, current().muted, 16))
    b.setIconSize(QSize(16, 16))
    b.setToolTip(tip)
    b.setAccessibleName(tip)
    b.setCursor(Qt.CursorShape.PointingHandCursor)
    return b


class ReasoningBlock(QFrame):
    """The collapsible chain of thought: "Thinking… 4 s" while it streams, then "Thought for 12 s".

    Signals:
        toggled(bool): the user opened or closed it.
    """

    toggled = Signal(bool)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("reasoning")
        lay = QVBoxLayout(self)
        lay.setContentsMargins(6, 2, 12, 4)
        lay.setSpacing(0)
        self.toggle = QToolButton()
        self.toggle.setObjectName("reasoningToggle")
        self.toggle.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.toggle.setCursor(Qt.CursorShape.PointingHandCursor)
        self.toggle.setIconSize(QSize(14, 14))
        self.toggle.clicked.connect(self._clicked)
        self.body = RichText(wrap_anywhere=True)
        self.body.setObjectName("reasoningText")
        self.body.setContentsMargins(0, 0, 0, 0)
        body_wrap = QWidget()
        bl = QVBoxLayout(body_wrap)
        bl.setContentsMargins(30, 0, 0, 8)
        bl.addWidget(self.body)
        self.body_wrap = body_wrap
        lay.addWidget(self.toggle, 0, Qt.AlignmentFlag.AlignLeft)
        lay.addWidget(body_wrap)
        self.is_open = False

    def set_state(self, label: str, text: str, is_open: bool) -> None:
        self.toggle.setText(label)
        self.toggle.setIcon(icons.icon("chevron-down" if is_open else "chevron-right", current().muted, 14))
        self.is_open = is_open
        self.body_wrap.setVisible(is_open)
        if is_open:
            self.body.set_plain(text.strip())

    @Slot()
    def _clicked(self) -> None:
        self.toggled.emit(not self.is_open)


class ErrorBox(QFrame):
    """An engine error in the conversation, with Retry.

    Signals:
        retry(): the user wants the answer again.
    """

    retry = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("errorBox")
        lay = QHBoxLayout(self)
        lay.setContentsMargins(12, 10, 10, 10)
        lay.setSpacing(10)
        self.icon = QLabel()
        self.icon.setPixmap(icons.pixmap("warning", current().error_text, 18))
        self.icon.setAlignment(Qt.AlignmentFlag.AlignTop)
        self.text = QLabel()
        self.text.setObjectName("errorText")
        self.text.setWordWrap(True)
        self.text.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.button = QPushButton("Retry")
        self.button.setIcon(icons.icon("refresh", current().text, 14))
        self.button.setCursor(Qt.CursorShape.PointingHandCursor)
        self.button.clicked.connect(self.retry)
        lay.addWidget(self.icon)
        lay.addWidget(self.text, 1)
        lay.addWidget(self.button, 0, Qt.AlignmentFlag.AlignVCenter)


# -- messages ----------------------------------------------------------------------------------------------


class AssistantMessage(QWidget):
    """An answer: avatar and model name, reasoning, content, errors, then actions and stats.

    Signals:
        copied(str): the answer was copied; the text is a confirmation to show.
        regenerateRequested(): answer this again.
        retryRequested(): retry after the error shown here.
        linkRequested(QUrl): a link in the answer was clicked.
    """

    copied = Signal(str)
    regenerateRequested = Signal()
    retryRequested = Signal()
    linkRequested = Signal(QUrl)

    def __init__(self, renderer: MarkdownRenderer, msg: DisplayMessage) -> None:
        super().__init__()
        self.msg = msg
        self._streamed = False
        t = current()
        outer = QHBoxLayout(self)
        outer.setContentsMargins(0, 4, 0, 4)
        outer.setSpacing(12)
        avatar = QLabel()
        avatar.setObjectName("avatar")
        avatar.setFixedSize(28, 28)
        avatar.setAlignment(Qt.AlignmentFlag.AlignCenter)
        avatar.setPixmap(icons.pixmap("sparkle", t.accent_text, 16))
        outer.addWidget(avatar, 0, Qt.AlignmentFlag.AlignTop)
        col = QVBoxLayout()
        col.setSpacing(8)
        col.setContentsMargins(0, 3, 0, 0)
        outer.addLayout(col, 1)
        head = QHBoxLayout()
        head.setSpacing(8)
        self.name = QLabel()
        self.name.setObjectName("assistantName")
        self.state = QLabel()
        self.state.setObjectName("stats")
        self.tag = QLabel()
        head.addWidget(self.name)
        head.addWidget(self.state)
        head.addWidget(self.tag)
        head.addStretch(1)
        col.addLayout(head)
        self.reasoning = ReasoningBlock()
        self.reasoning.toggled.connect(self._toggle_reasoning)
        col.addWidget(self.reasoning)
        self.content = MarkdownView(renderer)
        self.content.linkRequested.connect(self.linkRequested)
        col.addWidget(self.content)
        self.notices = QLabel()
        self.notices.setObjectName("notice")
        self.notices.setWordWrap(True)
        col.addWidget(self.notices)
        self.error = ErrorBox()
        self.error.retry.connect(self.retryRequested)
        col.addWidget(self.error)
        foot = QHBoxLayout()
        foot.setSpacing(2)
        self.copy_button = _action("copy", "Copy answer")
        self.copy_button.clicked.connect(self._copy)
        self.regen_button = _action("refresh", "Regenerate")
        self.regen_button.clicked.connect(self.regenerateRequested)
        self.stats = QLabel()
        self.stats.setObjectName("stats")
        foot.addWidget(self.copy_button)
        foot.addWidget(self.regen_button)
        foot.addSpacing(8)
        foot.addWidget(self.stats)
        foot.addStretch(1)
        self.footer = QWidget()
        self.footer.setLayout(foot)
        foot.setContentsMargins(0, 0, 0, 0)
        col.addWidget(self.footer)
        self.refresh()

    def refresh(self) -> None:
        m = self.msg
        streaming = m.status == "streaming"
        self.name.setText(m.model or m.stats.get("model") or "Assistant")
        self.state.setText("writing…" if streaming and not m.content and not m.reasoning else "")
        self.state.setVisible(streaming)
        if m.status in ("stopped", "error"):
            self.tag.setObjectName("tagStopped" if m.status == "stopped" else "tagError")
            self.tag.setText("Stopped" if m.status == "stopped" else "Error")
            repolish(self.tag)
        self.tag.setVisible(m.status in ("stopped", "error"))
        self.reasoning.setVisible(bool(m.reasoning.strip()))
        if m.reasoning.strip():
            self.reasoning.set_state(thought_label(m), m.reasoning, m.reasoning_open)
        self.content.setVisible(bool(m.content))
        self._streamed = self._streamed or streaming
        # an answer streamed here keeps its pieces when it completes: merging them would re-render it all at once
        self.content.set_markdown(m.content, streaming=self._streamed)
        self.notices.setText("\n".join(m.notices))
        self.notices.setVisible(bool(m.notices))
        self.error.setVisible(bool(m.error))
        self.error.text.setText(m.error)
        self.footer.setVisible(not streaming)
        self.copy_button.setVisible(bool(m.content))
        self.stats.setText(stats_text(m.stats))

    @Slot(bool)
    def _toggle_reasoning(self, is_open: bool) -> None:
        self.msg.reasoning_open = is_open
        self.refresh()

    def set_busy(self, busy: bool) -> None:
        self.regen_button.setEnabled(not busy)
        self.error.button.setEnabled(not busy)

    @Slot()
    def _copy(self) -> None:
        QGuiApplication.clipboard().setText(self.msg.content)
        self.copied.emit("Answer copied")

    def plain_text(self) -> str:
        parts = [self.name.text()]
        if self.reasoning.isVisible() or self.msg.reasoning.strip():
            parts.append(self.reasoning.toggle.text())
            if self.msg.reasoning_open:
                parts.append(self.reasoning.body.toPlainText())
        parts.append(self.content.plain_text())
        parts += self.msg.notices
        if self.msg.error:
            parts.append(self.msg.error)
        parts.append(self.stats.text())
        return "\n".join(p for p in parts if p)


class UserMessage(QWidget):
    """A question, right-aligned in a bubble; Copy and Edit appear on hover. Edit opens it in place.

    Signals:
        copied(str): the question was copied; the text is a confirmation to show.
        editSubmitted(str): the edited text, to resend from here.
    """

    copied = Signal(str)
    editSubmitted = Signal(str)

    def __init__(self, msg: DisplayMessage) -> None:
        super().__init__()
        self.msg = msg
        self.busy = False  # while a turn runs, no edit (the view says so through set_busy)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 4, 0, 0)
        outer.setSpacing(2)
        self._outer = outer
        row = QHBoxLayout()
        row.addStretch(1)
        self.bubble = QFrame()
        self.bubble.setObjectName("userBubble")
        bl = QVBoxLayout(self.bubble)
        bl.setContentsMargins(14, 9, 14, 9)
        self.text = RichText(wrap_anywhere=True)
        self.text.setObjectName("userText")
        self.text.setSizePolicy(QSizePolicy.Policy.Fixed, QSizePolicy.Policy.Fixed)
        self.text.set_plain(msg.content)
        bl.addWidget(self.text)
        row.addWidget(self.bubble)
        outer.addLayout(row)
        self.editor: QFrame | None = None
        foot = QHBoxLayout()
        foot.setSpacing(2)
        foot.addStretch(1)
        self.copy_button = _action("copy", "Copy message")
        self.copy_button.clicked.connect(self._copy)
        self.edit_button = _action("edit", "Edit and resend")
        self.edit_button.clicked.connect(self.start_edit)
        foot.addWidget(self.copy_button)
        foot.addWidget(self.edit_button)
        self.actions_row = QWidget()
        self.actions_row.setLayout(foot)
        foot.setContentsMargins(0, 0, 0, 0)
        policy = self.actions_row.sizePolicy()
        policy.setRetainSizeWhenHidden(True)
        self.actions_row.setSizePolicy(policy)
        self.actions_row.setVisible(False)
        outer.addWidget(self.actions_row)

    def refresh(self) -> None:
        self.text.set_plain(self.msg.content)
        self._fit_bubble()

    def resizeEvent(self, e: Any) -> None:
        super().resizeEvent(e)
        self._fit_bubble()

    def _fit_bubble(self) -> None:
        limit = max(120, int(self.width() * 0.78) - 28)
        doc = QTextDocument()
        doc.setDefaultFont(self.text.font())
        doc.setDocumentMargin(0)
        doc.setPlainText(self.msg.content)
        natural = math.ceil(doc.idealWidth()) + 2
        width = min(natural, limit)
        if self.text.width() != width:
            self.text.setFixedWidth(width)

    def set_busy(self, busy: bool) -> None:
        self.busy = busy

    def enterEvent(self, e: Any) -> None:
        self.actions_row.setVisible(self.editor is None and not self.busy)
        super().enterEvent(e)

    def leaveEvent(self, e: QEvent) -> None:
        self.actions_row.setVisible(False)
        super().leaveEvent(e)

    @Slot()
    def _copy(self) -> None:
        QGuiApplication.clipboard().setText(self.msg.content)
        self.copied.emit("Message copied")

    @Slot()
    def start_edit(self) -> None:
        if self.editor is not None or self.busy:
            return
        box = QFrame()
        box.setObjectName("editBox")
        lay = QVBoxLayout(box)
        lay.setContentsMargins(12, 10, 10, 10)
        edit = EditField(self.msg.content)
        edit.submitted.connect(self._submit_edit)
        edit.cancelled.connect(self.cancel_edit)
        lay.addWidget(edit)
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        cancel = QPushButton("Cancel")
        cancel.clicked.connect(self.cancel_edit)
        send = QPushButton("Send")
        send.setObjectName("primary")
        send.clicked.connect(self._submit_edit)
        buttons.addWidget(cancel)
        buttons.addWidget(send)
        lay.addLayout(buttons)
        self.editor = box
        self.edit_field = edit
        self.bubble.setVisible(False)
        self.actions_row.setVisible(False)
        self._outer.insertWidget(0, box)
        edit.setFocus()
        edit.selectAll()

    @Slot()
    def cancel_edit(self) -> None:
        if self.editor is not None:
            self.editor.deleteLater()
            self.editor = None
            self.bubble.setVisible(True)

    @Slot()
    def _submit_edit(self) -> None:
        text = self.edit_field.toPlainText().strip()
        if text:
            self.editSubmitted.emit(text)

    def plain_text(self) -> str:
        return self.msg.content


class EditField(QPlainTextEdit):
    """Signals:
        submitted(): Enter (without Shift).
        cancelled(): Escape.
    """

    submitted = Signal()
    cancelled = Signal()

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setStyleSheet("QPlainTextEdit { background: transparent; }")
        lines = max(2, min(10, text.count("\n") + 2))
        self.setFixedHeight(lines * self.fontMetrics().lineSpacing() + 12)

    def event(self, e: QEvent) -> bool:
        if e.type() == QEvent.Type.ShortcutOverride and isinstance(e, QKeyEvent) and e.key() == Qt.Key.Key_Escape:
            e.accept()  # Esc cancels the edit here instead of triggering the window's Stop shortcut
            return True
        return super().event(e)

    def keyPressEvent(self, e: QKeyEvent) -> None:
        if e.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter) and not e.modifiers() & Qt.KeyboardModifier.ShiftModifier:
            self.submitted.emit()
            return
        if e.key() == Qt.Key.Key_Escape:
            self.cancelled.emit()
            return
        super().keyPressEvent(e)


