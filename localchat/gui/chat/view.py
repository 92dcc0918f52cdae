"""The conversation view: one widget per message in a scrolling column, streamed with a throttled re-render.

Finished messages are built once. While an answer streams, chunks only append to its text; a 50 ms timer
re-renders that one message, and within it only the segments (prose runs, code blocks) whose output changed, so a
fast stream never stalls the event loop however long the conversation is.

No remote content: every rich-text widget here loads no resource at all (``loadResource`` returns nothing) and
opens no link by itself. A click on an http(s) link in model output asks first, then hands the address to the
desktop's browser; nothing in the app fetches it.
"""

from __future__ import annotations

import time
from typing import Any

from PySide6.QtCore import Qt, QTimer, QUrl, Signal, Slot
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import QFrame, QMessageBox, QScrollArea, QStackedWidget, QVBoxLayout, QWidget

from localchat.gui.chat.display import DisplayMessage
from localchat.gui.chat.markdown import MarkdownRenderer
from localchat.gui.chat.messages import AssistantMessage, UserMessage
from localchat.gui.chat.welcome import EmptyState
from localchat.gui.theme import Theme, current

RENDER_INTERVAL_MS = 50
EAGER_MESSAGES = 6  # opening a chat builds its last messages (about a screenful) at once, older ones later
OLDER_SLICE_S = 0.012  # how long one round of building older messages may hold the GUI thread
COLUMN_WIDTH = 820  # the reading column; wider windows get margins, like every chat app


class Column(QWidget):
    """The scrolling content: messages in a centred reading column."""

    def __init__(self) -> None:
        super().__init__()
        self.setObjectName("chatColumn")
        self.setAttribute(Qt.WidgetAttribute.WA_StyledBackground)
        self.lay = QVBoxLayout(self)
        self.lay.setSpacing(18)
        self.lay.addStretch(1)

    def resizeEvent(self, e: Any) -> None:
        side = max(24, (self.width() - COLUMN_WIDTH) // 2)
        self.lay.setContentsMargins(side, 20, side, 24)
        super().resizeEvent(e)


class ChatView(QStackedWidget):
    """The conversation (or, when it is empty, the welcome page).

    Signals:
        regenerateRequested(int): index of an assistant message to answer again.
        editSubmitted(int, str): index of a user message and its new text, to resend from there.
        retryRequested(): retry after an error.
        suggestionPicked(str): a prompt from the welcome page.
        toastRequested(str): a short confirmation to show.
    """

    regenerateRequested = Signal(int)
    editSubmitted = Signal(int, str)
    retryRequested = Signal()
    suggestionPicked = Signal(str)
    toastRequested = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.messages: list[DisplayMessage] = []
        self._widgets: list[AssistantMessage | UserMessage] = []
        self.renderer = MarkdownRenderer(current())
        self.busy = False
        self.render_count = 0
        self._dirty = False
        self._stick = True
        self._older = 0  # messages[:_older] have no widget yet (see set_messages)
        self.empty = EmptyState()
        self.empty.suggestionPicked.connect(self.suggestionPicked)
        self.area = QScrollArea()
        self.area.setObjectName("chatArea")
        self.area.setWidgetResizable(True)
        self.area.setFrameShape(QFrame.Shape.NoFrame)
        self.area.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.column = Column()
        self.area.setWidget(self.column)
        self.addWidget(self.empty)
        self.addWidget(self.area)
        bar = self.area.verticalScrollBar()
        bar.valueChanged.connect(self._on_scrolled)
        bar.rangeChanged.connect(self._on_range)
        self._timer = QTimer(self)
        self._timer.setInterval(RENDER_INTERVAL_MS)
        self._timer.timeout.connect(self._flush)
        self.empty.restyle()

    # -- content -----------------------------------------------------------------------------------------

    def set_theme(self, theme: Theme) -> None:
        self.renderer = MarkdownRenderer(theme)
        self.empty.restyle()
        self.set_messages(self.messages)

    def set_messages(self, messages: list[DisplayMessage]) -> None:
        self._clear()
        self.messages = messages
        self._older = max(0, len(messages) - EAGER_MESSAGES)
        for m in messages[self._older:]:
            self._append_widget(m)
        self._stick = True
        self._update_page()
        self._scroll_to_end()
        if self._older:
            QTimer.singleShot(0, self._build_older)

    @Slot()
    def _build_older(self) -> None:
        """Build a few more of the older messages above the visible ones (the view stays at the bottom)."""
        deadline = time.monotonic() + OLDER_SLICE_S
        while self._older and time.monotonic() < deadline:
            self._older -= 1
            w = self._make_widget(self.messages[self._older])
            self.column.lay.insertWidget(0, w)
            self._widgets.insert(0, w)
        if self._older:
            QTimer.singleShot(0, self._build_older)

    def _build_all_older(self) -> None:
        while self._older:
            self._build_older()

    def add_message(self, m: DisplayMessage) -> None:
        self.messages.append(m)
        self._append_widget(m)
        self._stick = True
        self._update_page()

    def truncate(self, index: int) -> None:
        """Drop message ``index`` and everything after it."""
        self._build_all_older()
        for w in self._widgets[index:]:
            self.column.lay.removeWidget(w)
            w.deleteLater()
        del self._widgets[index:]
        del self.messages[index:]
        self._update_page()

    def index_of(self, widget: QWidget) -> int:
        return self._older + self._widgets.index(widget)  # type: ignore[arg-type]

    def begin_stream(self, model: str = "") -> DisplayMessage:
        m = DisplayMessage("assistant", status="streaming", model=model)
        self.add_message(m)
        self._timer.start()
        return m

    @property
    def streaming(self) -> DisplayMessage | None:
        if self.messages and self.messages[-1].status == "streaming":
            return self.messages[-1]
        return None

    def append_chunk(self, kind: str, text: str) -> None:
        m = self.streaming
        if m is None:
            return
        if kind == "reasoning":
            if m.thought_started is None:
                m.thought_started = time.monotonic()
                m.reasoning_open = True
            m.reasoning += text
        elif kind == "notice":
            m.notices.append(text)
        else:
            if m.thought_started is not None and m.thought_s is None and text.strip():
                m.thought_s = time.monotonic() - m.thought_started
                m.reasoning_open = False  # collapse once the answer starts
            m.content += text
        self._dirty = True

    def finish_stream(self, status: str, stats: dict[str, Any] | None = None, error: str = "") -> None:
        m = self.streaming
        if m is None:
            return
        m.status = status
        m.stats = dict(stats or {})
        m.error = error
        if m.thought_started is not None and m.thought_s is None:
            m.thought_s = time.monotonic() - m.thought_started
        if m.thought_s is not None:
            m.stats["thought_s"] = round(m.thought_s, 2)
        self._timer.stop()
        self._dirty = False
        self._widgets[-1].refresh()
        self.render_count += 1

    @Slot()
    def _flush(self) -> None:
        m = self.streaming
        if m is None:
            return
        if self._dirty or (m.thought_started is not None and m.thought_s is None):
            self._dirty = False
            self._widgets[-1].refresh()
            self.render_count += 1

    def plain_text(self) -> str:
        """The conversation as the user reads it (tests and accessibility)."""
        self._build_all_older()
        return "\n\n".join(w.plain_text() for w in self._widgets)

    def set_busy(self, busy: bool) -> None:
        self.busy = busy
        for w in self._widgets:
            w.set_busy(busy)

    def toast(self, text: str) -> None:
        self.toastRequested.emit(text)

    # -- links -------------------------------------------------------------------------------------------

    @Slot(QUrl)
    def open_link(self, url: QUrl) -> None:
        """Links open only on an explicit click, after the user has seen the full address."""
        if url.scheme() not in ("http", "https", "mailto"):
            return
        answer = QMessageBox.question(
            self, "Open link", "Open this address in your web browser?\n\n" + url.toString()
            + "\n\nlocalchat itself never fetches it.")
        if answer == QMessageBox.StandardButton.Yes:
            QDesktopServices.openUrl(url)

    # -- internals ---------------------------------------------------------------------------------------

    def _make_widget(self, m: DisplayMessage) -> AssistantMessage | UserMessage:
        w: AssistantMessage | UserMessage
        if m.role == "user":
            w = UserMessage(m)
            w.editSubmitted.connect(lambda text, w=w: self.editSubmitted.emit(self.index_of(w), text))
        else:
            w = AssistantMessage(self.renderer, m)
            w.regenerateRequested.connect(lambda w=w: self.regenerateRequested.emit(self.index_of(w)))
            w.retryRequested.connect(self.retryRequested)
            w.linkRequested.connect(self.open_link)
        w.copied.connect(self.toastRequested)
        w.set_busy(self.busy)
        return w

    def _append_widget(self, m: DisplayMessage) -> None:
        w = self._make_widget(m)
        self.column.lay.insertWidget(self.column.lay.count() - 1, w)
        self._widgets.append(w)

    def _clear(self) -> None:
        self._timer.stop()
        self._older = 0
        for w in self._widgets:
            self.column.lay.removeWidget(w)
            w.deleteLater()
        self._widgets = []

    def _update_page(self) -> None:
        self.setCurrentWidget(self.area if self.messages else self.empty)

    def _scroll_to_end(self) -> None:
        bar = self.area.verticalScrollBar()
        bar.setValue(bar.maximum())

    @Slot(int)
    def _on_scrolled(self, value: int) -> None:
        bar = self.area.verticalScrollBar()
        self._stick = value >= bar.maximum() - 24

    @Slot(int, int)
    def _on_range(self, _lo: int, hi: int) -> None:
        if self._stick:
            self.area.verticalScrollBar().setValue(hi)
