"""Model output → HTML for Qt's rich-text engine: Markdown (markdown-it-py), code highlighted (pygments).

No remote content: images are rendered as their alt text plus the address as plain text, raw HTML is escaped,
and links are only shown (the chat view opens nothing by itself). Code blocks get a "Copy" link whose target the
chat view resolves to the block's source.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from typing import Any

from markdown_it import MarkdownIt
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import TextLexer, get_lexer_by_name, guess_lexer
from pygments.util import ClassNotFound


@dataclass
class Rendered:
    html: str
    code_blocks: list[str] = field(default_factory=list)


def _lexer(lang: str, code: str) -> Any:
    try:
        return get_lexer_by_name(lang) if lang else guess_lexer(code)
    except ClassNotFound:
        return TextLexer()


class MarkdownRenderer:
    def __init__(self, dark: bool) -> None:
        self.dark = dark
        self._formatter = HtmlFormatter(noclasses=True, nowrap=True, style="monokai" if dark else "friendly")
        self._md = MarkdownIt("commonmark", {"html": False, "linkify": False}).enable("table").enable("strikethrough")
        # markdown-it binds rule functions to its renderer, so the rules close over this object instead
        self._md.add_render_rule("image", lambda _r, tokens, idx, options, env: self._image(tokens, idx))
        self._md.add_render_rule("fence", lambda _r, tokens, idx, options, env: self._fence(tokens, idx))
        self._md.add_render_rule("code_block", lambda _r, tokens, idx, options, env: self._fence(tokens, idx))
        self._blocks: list[str] = []
        self._offset = 0

    def render(self, text: str, block_offset: int = 0) -> Rendered:
        self._blocks = []
        self._offset = block_offset
        body = self._md.render(text)
        return Rendered(body, list(self._blocks))

    def _image(self, tokens: Any, idx: int) -> str:
        tok = tokens[idx]
        alt = html.escape(tok.content or "image")
        src = html.escape(str(tok.attrGet("src") or ""))
        return f'<span style="color:#888">[image not loaded: {alt} — {src}]</span>'

    def _fence(self, tokens: Any, idx: int) -> str:
        tok = tokens[idx]
        code = tok.content
        lang = (tok.info or "").strip().split(" ")[0]
        n = self._offset + len(self._blocks)
        self._blocks.append(code)
        bg = "#272822" if self.dark else "#f6f8fa"
        border = "#3a3a3a" if self.dark else "#d0d7de"
        label = html.escape(lang or "code")
        body = highlight(code, _lexer(lang, code), self._formatter)
        return (f'<table width="100%" cellspacing="0" cellpadding="6" style="background:{bg};'
                f'border:1px solid {border}; margin:6px 0"><tr><td style="color:#888;font-size:small">{label}</td>'
                f'<td align="right" style="font-size:small"><a href="copy-code:{n}">Copy</a></td></tr>'
                f'<tr><td colspan="2"><pre style="margin:0;font-family:monospace">{body}</pre></td></tr></table>')
