"""The conversation view: messages rendered as rich text, streamed with a throttled re-render.

A QTextBrowser shows the whole conversation. Finished messages keep their rendered HTML; only the streaming one
is re-rendered, at most every 50 ms, so a fast stream never stalls the event loop. Actions (copy, regenerate,
edit, show reasoning, copy code) are links handled here; the browser opens no link and loads no resource itself.
"""

from __future__ import annotations

import html
import time
from dataclasses import dataclass, field
from typing import Any

from PySide6.QtCore import QTimer, QUrl, Signal, Slot
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QTextBrowser, QWidget

from localchat.gui.markdown_render import MarkdownRenderer

RENDER_INTERVAL_MS = 50


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
    html_cache: str | None = None
    code_blocks: list[str] = field(default_factory=list)


class ChatView(QTextBrowser):
    """Signals:
        regenerateRequested(int): index of the assistant message to answer again.
        editRequested(int): index of the user message to edit and resend.
        retryRequested(): retry after an error.
    """

    regenerateRequested = Signal(int)
    editRequested = Signal(int)
    retryRequested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setOpenLinks(False)
        self.setOpenExternalLinks(False)
        self.anchorClicked.connect(self._on_anchor)
        self.messages: list[DisplayMessage] = []
        self.dark = False
        self._renderer = MarkdownRenderer(dark=False)
        self._dirty = False
        self._timer = QTimer(self)
        self._timer.setInterval(RENDER_INTERVAL_MS)
        self._timer.timeout.connect(self._flush)
        self.render_count = 0
        self.setPlaceholderText("Ask anything. Everything stays on this computer.")

    # -- no remote content -------------------------------------------------------------------------------

    def loadResource(self, type_: int, name: QUrl | str) -> Any:
        return None  # nothing, local or remote, is fetched for model output

    # -- content -----------------------------------------------------------------------------------------

    def set_dark(self, dark: bool) -> None:
        self.dark = dark
        self._renderer = MarkdownRenderer(dark=dark)
        for m in self.messages:
            m.html_cache = None
        self.render_now()

    def set_messages(self, messages: list[DisplayMessage]) -> None:
        self.messages = messages
        self.render_now()

    def begin_stream(self) -> DisplayMessage:
        m = DisplayMessage("assistant", status="streaming")
        self.messages.append(m)
        self._timer.start()
        self.render_now()
        return m

    def append_chunk(self, kind: str, text: str) -> None:
        if not self.messages or self.messages[-1].status != "streaming":
            return
        m = self.messages[-1]
        if kind == "reasoning":
            if m.thought_started is None:
                m.thought_started = time.monotonic()
                m.reasoning_open = True
            m.reasoning += text
        elif kind == "notice":
            m.notices.append(text)
        else:
            if m.thought_started is not None and m.thought_s is None:
                m.thought_s = time.monotonic() - m.thought_started
                m.reasoning_open = False  # collapse once the answer starts
            m.content += text
        self._dirty = True

    def finish_stream(self, status: str, stats: dict[str, Any] | None = None, error: str = "") -> None:
        if not self.messages or self.messages[-1].status != "streaming":
            return
        m = self.messages[-1]
        m.status = status
        m.stats = stats or {}
        if error:
            m.notices.append(error)
        if m.thought_started is not None and m.thought_s is None:
            m.thought_s = time.monotonic() - m.thought_started
        self._timer.stop()
        self.render_now()

    @Slot()
    def _flush(self) -> None:
        if self._dirty:
            self.render_now()

    def render_now(self) -> None:
        self._dirty = False
        self.render_count += 1
        bar = self.verticalScrollBar()
        at_bottom = bar.value() >= bar.maximum() - 4
        offset = 0
        parts = []
        for i, m in enumerate(self.messages):
            if m.html_cache is None or m.status == "streaming":
                rendered = self._renderer.render(m.content, block_offset=offset)
                m.code_blocks = rendered.code_blocks
                body = self._message_html(i, m, rendered.html)
                if m.status != "streaming":
                    m.html_cache = body
            else:
                body = m.html_cache
            offset += len(m.code_blocks)
            parts.append(body)
        self.setHtml(self._page("".join(parts)))
        if at_bottom:
            bar.setValue(bar.maximum())

    def _page(self, body: str) -> str:
        fg = "#e6e6e6" if self.dark else "#1f2328"
        return f'<html><body style="color:{fg}; font-size:11pt">{body}</body></html>'

    def _message_html(self, i: int, m: DisplayMessage, content_html: str) -> str:
        dark = self.dark
        user = m.role == "user"
        bubble = ("#2b3440" if dark else "#eaf2ff") if user else ("#23262b" if dark else "#ffffff")
        border = "#3b4452" if dark else "#d8dee4"
        muted = "#9aa4ae" if dark else "#656d76"
        who = "You" if user else "Assistant"
        head = f'<b>{who}</b>'
        s = m.stats
        if s.get("completion_tokens"):
            head += (f' <span style="color:{muted}; font-size:small">· {s["completion_tokens"]} tokens · '
                     f'TTFT {s.get("ttft_s", 0):.2f} s · {s.get("decode_tokens_per_s", 0):.1f} tok/s</span>')
        if m.status == "streaming":
            head += f' <span style="color:{muted}">· writing…</span>'
        elif m.status == "stopped":
            head += ' <span style="color:#d29922">· stopped</span>'
        elif m.status == "error":
            head += ' <span style="color:#f85149">· error</span>'
        out = [f'<table width="100%" cellspacing="0" cellpadding="10" style="margin:6px 0; background:{bubble}; '
               f'border:1px solid {border}"><tr><td>{head}']
        if m.reasoning:
            secs = m.thought_s
            label = ("Thinking…" if secs is None else f"Thought for {secs:.1f} s" if secs < 10
                     else f"Thought for {secs:.0f} s")
            arrow = "▾" if m.reasoning_open else "▸"
            out.append(f'<p style="margin:6px 0"><a href="toggle:{i}" style="color:{muted}; text-decoration:none">'
                       f'{arrow} {label}</a></p>')
            if m.reasoning_open:
                text = html.escape(m.reasoning.strip()).replace("\n", "<br>")
                out.append(f'<p style="color:{muted}; margin:4px 0 8px 12px; font-style:italic">{text}</p>')
        out.append(content_html if not user else f"<p>{html.escape(m.content).replace(chr(10), '<br>')}</p>")
        for n in m.notices:
            color = "#f85149" if m.status == "error" else muted
            out.append(f'<p style="color:{color}; font-size:small">{html.escape(n)}</p>')
        if m.status != "streaming":
            links = [f'<a href="copy-msg:{i}">Copy</a>']
            if user:
                links.append(f'<a href="edit:{i}">Edit</a>')
            else:
                links.append(f'<a href="regen:{i}">Regenerate</a>')
            if m.status == "error":
                links.append('<a href="retry:0">Retry</a>')
            out.append(f'<p style="font-size:small; margin-top:6px">{" · ".join(links)}</p>')
        out.append("</td></tr></table>")
        return "".join(out)

    # -- actions -----------------------------------------------------------------------------------------

    @Slot(QUrl)
    def _on_anchor(self, url: QUrl) -> None:
        action, _, arg = url.toString().partition(":")
        clipboard = QGuiApplication.clipboard()
        if action == "copy-code":
            blocks = [b for m in self.messages for b in m.code_blocks]
            if arg.isdigit() and int(arg) < len(blocks):
                clipboard.setText(blocks[int(arg)])
        elif action == "copy-msg" and arg.isdigit():
            clipboard.setText(self.messages[int(arg)].content)
        elif action == "toggle" and arg.isdigit():
            m = self.messages[int(arg)]
            m.reasoning_open = not m.reasoning_open
            m.html_cache = None
            self.render_now()
        elif action == "regen" and arg.isdigit():
            self.regenerateRequested.emit(int(arg))
        elif action == "edit" and arg.isdigit():
            self.editRequested.emit(int(arg))
        elif action == "retry":
            self.retryRequested.emit()
        # any other link (a URL in model output) is deliberately not opened: nothing leaves the machine
