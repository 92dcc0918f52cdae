"""Read-only rich text for model output: prose runs and code blocks, rendered from Markdown.

No remote content: every widget here loads no resource at all (``loadResource`` returns nothing) and opens no link
by itself; links are handed to whoever listens to ``linkRequested``.
"""

from __future__ import annotations

import math
from typing import Any

from PySide6.QtCore import Qt, QTimer, QUrl, Signal, Slot
from PySide6.QtGui import QFontDatabase, QGuiApplication, QTextOption
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QSizePolicy, QTextBrowser, QToolButton, QVBoxLayout, QWidget

from localchat.gui import icons
from localchat.gui.chat.markdown import COPY_SCHEME, MarkdownRenderer, Segment, prose_css
from localchat.gui.theme import current


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
