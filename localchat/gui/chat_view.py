"""The conversation view: one widget per message in a scrolling column, streamed with a throttled re-render.

Finished messages are built once. While an answer streams, chunks only append to its text; a 50 ms timer
re-renders that one message, and within it only the segments (prose runs, code blocks) whose output changed, so a
fast stream never stalls the event loop however long the conversation is.

No remote content: every rich-text widget here loads no resource at all (``loadResource`` returns nothing) and
opens no link by itself. A click on an http(s) link in model output asks first, then hands the address to the
desktop's browser; nothing in the app fetches it.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

from PySide6.QtCore import QEvent, QSize, Qt, QTimer, QUrl, Signal, Slot
from PySide6.QtGui import QDesktopServices, QFontDatabase, QGuiApplication, QKeyEvent, QTextDocument, QTextOption
from PySide6.QtWidgets import (
    QFrame,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QMessageBox,
    QPlainTextEdit,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QStackedWidget,
    QTextBrowser,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from localchat.gui import icons
from localchat.gui.markdown_render import COPY_SCHEME, MarkdownRenderer, Segment, prose_css
from localchat.gui.theme import Theme, current
from localchat.gui.widgets import ElidedLabel, repolish

RENDER_INTERVAL_MS = 50
EAGER_MESSAGES = 6  # opening a chat builds its last messages (about a screenful) at once, older ones later
OLDER_SLICE_S = 0.012  # how long one round of building older messages may hold the GUI thread
COLUMN_WIDTH = 820  # the reading column; wider windows get margins, like every chat app
SUGGESTIONS = (
    ("Explain a concept", "Explain how public-key cryptography works, with a simple analogy."),
    ("Write some code", "Write a Python function that removes duplicates from a list while keeping order."),
    ("Summarize", "Summarize the main ideas of stoic philosophy in five bullet points."),
    ("Brainstorm", "Give me ten names for a cosy bookshop café."),
)


@dataclass
class DisplayMessage:
    role: str
    content: str = ""
    reasoning: str = ""
    status: str = "complete"  # complete / streaming / stopped / error
    stats: dict[str, Any] = field(default_factory=dict)
    db_id: int | None = None
    reasoning_open: bool = False
    thought_started: float | None = None
    thought_s: float | None = None
    notices: list[str] = field(default_factory=list)
    error: str = ""
    model: str = ""


def thought_label(m: DisplayMessage) -> str:
    if m.thought_s is None:
        if m.status == "streaming" and m.thought_started is not None:
            return f"Thinking… {int(time.monotonic() - m.thought_started)} s"
        return "Reasoning"
    s = m.thought_s
    return f"Thought for {s:.1f} s" if s < 10 else f"Thought for {math.floor(s + 0.5)} s"


def stats_text(stats: dict[str, Any]) -> str:
    if not stats.get("completion_tokens"):
        return ""
    parts = [f"{stats['completion_tokens']} tokens"]
    if stats.get("ttft_s") is not None:
        parts.append(f"{stats['ttft_s']:.2f} s to first token")
    if stats.get("decode_tokens_per_s"):
        parts.append(f"{stats['decode_tokens_per_s']:.1f} tok/s")
    if stats.get("finish_reason") == "length":
        parts.append("stopped at the token limit")
    return "  ·  ".join(parts)


# -- building blocks ---------------------------------------------------------------------------------------


class RichText(QTextBrowser):
    """Read-only, selectable rich text that is exactly as tall as its content and loads nothing.

    Signals:
        copyRequested(int): an ``lc-copy:N`` link (a nested code block's Copy) was clicked.
        linkRequested(QUrl): any other link was clicked.
    """

    copyRequested = Signal(int)
    linkRequested = Signal(QUrl)

    def __init__(self, parent: QWidget | None = None, *, css: str = "", wrap_anywhere: bool = False) -> None:
        super().__init__(parent)
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.setOpenLinks(False)
        self.setOpenExternalLinks(False)
        self.viewport().setAutoFillBackground(False)
        self.setStyleSheet("QTextBrowser { background: transparent; }")
        self.setFocusPolicy(Qt.FocusPolicy.ClickFocus)
        self.setTextInteractionFlags(Qt.TextInteractionFlag.TextBrowserInteraction)
        doc = self.document()
        doc.setDocumentMargin(0)
        if css:
            doc.setDefaultStyleSheet(css)
        if wrap_anywhere:
            doc.setDefaultTextOption(QTextOption(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop))
            opt = doc.defaultTextOption()
            opt.setWrapMode(QTextOption.WrapMode.WrapAtWordBoundaryOrAnywhere)
            doc.setDefaultTextOption(opt)
        self._source = ""
        self._plain = False
        doc.documentLayout().documentSizeChanged.connect(self._fit)
        self.anchorClicked.connect(self._on_anchor)
        self.setFixedHeight(1)

    def set_html(self, text: str) -> bool:
        if text == self._source and not self._plain:
            return False
        self._source, self._plain = text, False
        self.setHtml(text)
        return True

    def set_plain(self, text: str) -> bool:
        """Show plain text; text that extends what is shown is appended, not re-laid out (streamed reasoning)."""
        if text == self._source and self._plain:
            return False
        if self._plain and self._source and text.startswith(self._source):
            cursor = self.textCursor()
            cursor.movePosition(cursor.MoveOperation.End)
            cursor.insertText(text[len(self._source):])
        else:
            self.setPlainText(text)
        self._source, self._plain = text, True
        return True

    def loadResource(self, type_: int, name: QUrl | str) -> Any:
        return None  # nothing, local or remote, is ever fetched for model output

    def wheelEvent(self, e: Any) -> None:
        e.ignore()  # never scrolls itself: the conversation scrolls

    def resizeEvent(self, e: Any) -> None:
        super().resizeEvent(e)
        self._fit()

    @Slot()
    def _fit(self) -> None:
        h = max(1, math.ceil(self.document().size().height()))
        if h != self.height():
            self.setFixedHeight(h)

    @Slot(QUrl)
    def _on_anchor(self, url: QUrl) -> None:
        if url.scheme() == COPY_SCHEME:
            n = url.path()
            if n.isdigit():
                self.copyRequested.emit(int(n))
        else:
            self.linkRequested.emit(url)


class CodeBlock(QFrame):
    """A top-level code block: a header with the language and a Copy button over the highlighted code."""

    def __init__(self, renderer: MarkdownRenderer, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("codeBlock")
        self._renderer = renderer
        self.code = ""
        self.lang = ""
        lay = QVBoxLayout(self)
        lay.setContentsMargins(1, 1, 1, 1)
        lay.setSpacing(0)
        header = QWidget()
        header.setObjectName("codeHeader")
        header.setAttribute(Qt.WidgetAttribute.WA_StyledBackground)
        hl = QHBoxLayout(header)
        hl.setContentsMargins(12, 3, 6, 3)
        self.lang_label = QLabel()
        self.lang_label.setObjectName("codeLang")
        self.copy_button = QToolButton()
        self.copy_button.setObjectName("codeCopy")
        self.copy_button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.copy_button.setCursor(Qt.CursorShape.PointingHandCursor)
        self.copy_button.clicked.connect(self.copy)
        self._reset_copy()
        hl.addWidget(self.lang_label)
        hl.addStretch(1)
        hl.addWidget(self.copy_button)
        lay.addWidget(header)
        self.body = CodeText()
        lay.addWidget(self.body)

    def set_code(self, code: str, lang: str) -> None:
        if (code, lang) == (self.code, self.lang):
            return
        self.code, self.lang = code, lang
        self.lang_label.setText(lang or "code")
        self.body.set_html(f"<pre style='margin:0px'>{self._renderer.highlighter.html(code, lang)}</pre>")

    @Slot()
    def copy(self) -> None:
        QGuiApplication.clipboard().setText(self.code)
        t = current()
        self.copy_button.setText("Copied")
        self.copy_button.setIcon(icons.icon("check", t.ok_text, 14))
        QTimer.singleShot(1500, self._reset_copy)

    @Slot()
    def _reset_copy(self) -> None:
        self.copy_button.setText("Copy")
        self.copy_button.setIcon(icons.icon("copy", current().muted, 14))


class CodeText(RichText):
    """Highlighted code: monospace, no wrapping, scrolls sideways when a line is too long."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setLineWrapMode(QTextBrowser.LineWrapMode.NoWrap)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAsNeeded)
        font = QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont)
        font.setPointSizeF(max(9.0, font.pointSizeF()))
        self.document().setDefaultFont(font)
        self.document().setDocumentMargin(12)

    def wheelEvent(self, e: Any) -> None:
        if e.angleDelta().x() and not e.angleDelta().y():
            QTextBrowser.wheelEvent(self, e)
        else:
            e.ignore()

    @Slot()
    def _fit(self) -> None:
        doc = self.document()
        h = math.ceil(doc.size().height())
        if doc.idealWidth() > self.viewport().width() + 1:
            h += self.horizontalScrollBar().sizeHint().height()
        if h != self.height():
            self.setFixedHeight(max(1, h))


class MarkdownView(QWidget):
    """A message's content as segments; re-rendering replaces only the segments whose output changed.

    Signals:
        linkRequested(QUrl): a link in the content was clicked.
    """

    linkRequested = Signal(QUrl)

    def __init__(self, renderer: MarkdownRenderer, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._renderer = renderer
        self._css = prose_css(renderer.theme)
        self._lay = QVBoxLayout(self)
        self._lay.setContentsMargins(0, 0, 0, 0)
        self._lay.setSpacing(10)
        self._items: list[tuple[str, QWidget]] = []
        self._segments: list[Segment] = []
        self._text: str | None = None
        self._streaming = False
        self._stable_text = ""  # while streaming: the finished part, rendered once into _stable
        self._stable: list[Segment] = []

    def set_markdown(self, text: str, streaming: bool = False) -> None:
        """Render ``text``. While streaming, finished blocks are set aside and only the rest is re-parsed, so a
        re-render costs the same at token 3,000 as at token 30; the final render merges everything again."""
        if text == self._text and streaming == self._streaming:
            return
        self._text, self._streaming = text, streaming
        if not streaming or not text.startswith(self._stable_text):
            self._stable_text, self._stable = "", []
        if streaming:
            tail = text[len(self._stable_text):]
            stable, rest, cut = self._renderer.split_stable(tail)
            if cut:
                self._stable_text += tail[:cut]
                self._stable = self._stable + stable
            segments = self._stable + rest
        else:
            segments = self._renderer.segments(text)
        for i, seg in enumerate(segments):
            if i < len(self._items) and self._items[i][0] != seg.kind:
                self._drop_from(i)
            if i >= len(self._items):
                w: QWidget = CodeBlock(self._renderer) if seg.kind == "code" else self._prose()
                self._lay.addWidget(w)
                self._items.append((seg.kind, w))
            w = self._items[i][1]
            if isinstance(w, CodeBlock):
                w.set_code(seg.code, seg.lang)
            elif isinstance(w, RichText):
                w.set_html(seg.html)
        self._drop_from(len(segments))
        self._segments = segments

    def _prose(self) -> RichText:
        rt = RichText(css=self._css, wrap_anywhere=True)
        rt.copyRequested.connect(self._copy_nested)
        rt.linkRequested.connect(self.linkRequested)
        return rt

    def _drop_from(self, i: int) -> None:
        for _, w in self._items[i:]:
            self._lay.removeWidget(w)
            w.deleteLater()
        del self._items[i:]

    @Slot(int)
    def _copy_nested(self, n: int) -> None:
        sender = self.sender()
        for (_, w), seg in zip(self._items, self._segments, strict=False):
            if w is sender and n < len(seg.inline_code):
                QGuiApplication.clipboard().setText(seg.inline_code[n])

    def plain_text(self) -> str:
        out = []
        for _, w in self._items:
            out.append(w.code if isinstance(w, CodeBlock) else w.toPlainText() if isinstance(w, RichText) else "")
        return "\n".join(out)


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
    """An answer: avatar and model name, reasoning, content, errors, then actions and stats."""

    def __init__(self, view: ChatView, msg: DisplayMessage) -> None:
        super().__init__()
        self.view = view
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
        self.content = MarkdownView(view.renderer)
        self.content.linkRequested.connect(view.open_link)
        col.addWidget(self.content)
        self.notices = QLabel()
        self.notices.setObjectName("notice")
        self.notices.setWordWrap(True)
        col.addWidget(self.notices)
        self.error = ErrorBox()
        self.error.retry.connect(view.retryRequested)
        col.addWidget(self.error)
        foot = QHBoxLayout()
        foot.setSpacing(2)
        self.copy_button = _action("copy", "Copy answer")
        self.copy_button.clicked.connect(self._copy)
        self.regen_button = _action("refresh", "Regenerate")
        self.regen_button.clicked.connect(self._regenerate)
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

    @Slot()
    def _copy(self) -> None:
        QGuiApplication.clipboard().setText(self.msg.content)
        self.view.toast("Answer copied")

    @Slot()
    def _regenerate(self) -> None:
        self.view.regenerateRequested.emit(self.view.index_of(self))

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
    """A question, right-aligned in a bubble; Copy and Edit appear on hover. Edit opens it in place."""

    def __init__(self, view: ChatView, msg: DisplayMessage) -> None:
        super().__init__()
        self.view = view
        self.msg = msg
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

    def enterEvent(self, e: Any) -> None:
        self.actions_row.setVisible(self.editor is None and not self.view.busy)
        super().enterEvent(e)

    def leaveEvent(self, e: QEvent) -> None:
        self.actions_row.setVisible(False)
        super().leaveEvent(e)

    @Slot()
    def _copy(self) -> None:
        QGuiApplication.clipboard().setText(self.msg.content)
        self.view.toast("Message copied")

    @Slot()
    def start_edit(self) -> None:
        if self.editor is not None or self.view.busy:
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
            self.view.editSubmitted.emit(self.view.index_of(self), text)

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


# -- the view ----------------------------------------------------------------------------------------------


class EmptyState(QWidget):
    """What a new conversation shows: a greeting and a few starting points; with no model installed, a welcome that
    offers the catalogue and Import instead (nothing is ever downloaded without a click).

    Signals:
        suggestionPicked(str): a suggestion's prompt.
        browseModels(): "Browse models" was clicked.
        importModel(): "Import a .gguf file…" was clicked.
    """

    suggestionPicked = Signal(str)
    browseModels = Signal()
    importModel = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("emptyState")
        self.setAttribute(Qt.WidgetAttribute.WA_StyledBackground)
        lay = QVBoxLayout(self)
        lay.addStretch(3)
        self.logo = QLabel()
        self.logo.setAlignment(Qt.AlignmentFlag.AlignCenter)
        lay.addWidget(self.logo)
        lay.addSpacing(10)
        title = QLabel("How can I help?")
        title.setObjectName("emptyTitle")
        title.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.title = title
        lay.addWidget(title)
        self.subtitle = QLabel()
        self.subtitle.setObjectName("emptySubtitle")
        self.subtitle.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.subtitle.setWordWrap(True)
        lay.addWidget(self.subtitle)
        lay.addSpacing(22)
        grid = QGridLayout()
        grid.setSpacing(10)
        self.buttons: list[QPushButton] = []
        for i, (head, prompt) in enumerate(SUGGESTIONS):
            b = QPushButton()
            b.setObjectName("suggestion")
            b.setCursor(Qt.CursorShape.PointingHandCursor)
            b.setProperty("prompt", prompt)
            b.setToolTip(prompt)
            b.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
            b.setFixedHeight(64)
            card = QVBoxLayout(b)
            card.setContentsMargins(14, 9, 14, 9)
            card.setSpacing(2)
            for text, name in ((head, "suggestionTitle"), (prompt, "suggestionText")):
                label = ElidedLabel()
                label.set_full_text(text)
                label.setObjectName(name)
                label.setAttribute(Qt.WidgetAttribute.WA_TransparentForMouseEvents)
                card.addWidget(label)
            b.clicked.connect(self._picked)
            grid.addWidget(b, i // 2, i % 2)
            self.buttons.append(b)
        holder = QWidget()
        holder.setLayout(grid)
        self.holder = holder
        lay.addWidget(holder, 0, Qt.AlignmentFlag.AlignHCenter)
        self.welcome = QWidget()
        row = QHBoxLayout(self.welcome)
        row.setContentsMargins(0, 0, 0, 0)
        row.addStretch(1)
        self.browse_button = QPushButton("Browse models")
        self.browse_button.setObjectName("primary")
        self.browse_button.setToolTip("Distilled models with a fit badge for this machine; downloads start only "
                                      "when you click Download")
        self.browse_button.clicked.connect(self.browseModels)
        self.import_button = QPushButton("Import a .gguf file…")
        self.import_button.clicked.connect(self.importModel)
        for b in (self.browse_button, self.import_button):
            b.setCursor(Qt.CursorShape.PointingHandCursor)
            b.setMinimumHeight(36)
            row.addWidget(b)
        row.addStretch(1)
        lay.addWidget(self.welcome)
        lay.addStretch(4)
        self.set_model("")

    def resizeEvent(self, e: Any) -> None:
        self.holder.setFixedWidth(min(640, self.width() - 48))
        super().resizeEvent(e)

    def set_model(self, model: str, *, installed: bool = True) -> None:
        """``installed=False``: no model at all yet, so the welcome replaces the suggestions."""
        self.title.setText("How can I help?" if installed else "Welcome to localchat")
        self.holder.setVisible(installed)
        self.welcome.setVisible(not installed)
        if installed:
            self.subtitle.setText((f"You are chatting with {model}. " if model else "")
                                  + "Everything runs on this computer; nothing you type leaves it.")
        else:
            self.subtitle.setText("No model is installed yet. Pick a distilled model from the catalogue (each shows "
                                  "whether it fits this machine), or import a GGUF file you already have. Everything "
                                  "then runs on this computer; nothing you type leaves it.")

    def restyle(self) -> None:
        self.logo.setPixmap(icons.app_icon().pixmap(56, 56))

    @Slot()
    def _picked(self) -> None:
        b = self.sender()
        if isinstance(b, QPushButton):
            self.suggestionPicked.emit(str(b.property("prompt")))


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
            if isinstance(w, AssistantMessage):
                w.regen_button.setEnabled(not busy)
                w.error.button.setEnabled(not busy)

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
        w: AssistantMessage | UserMessage = UserMessage(self, m) if m.role == "user" else AssistantMessage(self, m)
        if isinstance(w, AssistantMessage):
            w.regen_button.setEnabled(not self.busy)
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
