"""Model output → segments for the chat view: prose as HTML for Qt's rich-text engine, code blocks apart.

Markdown by markdown-it-py (CommonMark + tables + strikethrough), code highlighted by pygments with inline colours.
Top-level fenced code becomes its own segment (the view gives it a header with the language and a Copy button);
code nested in a list or quote stays inside the prose, highlighted, with a Copy link.

No remote content, by construction: raw HTML in the output is escaped, an image becomes its alt text and address
as plain text, and only http(s)/mailto links are kept as links (the view asks before opening one in the browser);
any other scheme is shown as text, so model output cannot forge the view's own ``lc-copy:`` anchors.
"""

from __future__ import annotations

import html
import itertools
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from markdown_it import MarkdownIt
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexer import Lexer
from pygments.lexers import TextLexer, get_lexer_by_name
from pygments.styles.gh_dark import GhDarkStyle  # imported by class, not name: frozen builds find them
from pygments.styles.xcode import XcodeStyle
from pygments.util import ClassNotFound

from localchat.gui.theme import Theme

SAFE_SCHEMES = ("http://", "https://", "mailto:")
COPY_SCHEME = "lc-copy"
STABLE_MIN_CHARS = 1200  # while streaming, finished text is set aside in pieces of at least this size
CLOSED_BLOCKS = {"paragraph_open", "heading_open", "fence", "code_block", "hr", "table_open"}
_STYLES = {"xcode": XcodeStyle, "github-dark": GhDarkStyle}


@dataclass(frozen=True)
class Segment:
    """A prose run (``html``) or one top-level code block (``code``, ``lang``)."""

    kind: str  # "prose" | "code"
    html: str = ""
    code: str = ""
    lang: str = ""
    inline_code: tuple[str, ...] = field(default=(), compare=False)  # sources behind this prose's lc-copy links


def prose_css(theme: Theme) -> str:
    """Default stylesheet for a prose QTextDocument (Qt supports a CSS subset: no border-radius, no padding)."""
    return f"""
        p, li {{ line-height: 145%; }}
        p {{ margin-top: 0px; margin-bottom: 9px; }}
        ul, ol {{ margin-top: 0px; margin-bottom: 9px; margin-left: 0px; -qt-list-indent: 1; }}
        li {{ margin-bottom: 3px; }}
        h1 {{ font-size: 15pt; margin-top: 10px; margin-bottom: 8px; }}
        h2 {{ font-size: 13.5pt; margin-top: 10px; margin-bottom: 7px; }}
        h3 {{ font-size: 12pt; margin-top: 8px; margin-bottom: 6px; }}
        h4, h5, h6 {{ font-size: 10.5pt; margin-top: 8px; margin-bottom: 5px; }}
        code {{ background-color: {theme.inline_code_bg}; font-family: monospace; font-size: 9.5pt; }}
        pre {{ background-color: {theme.code_bg}; font-family: monospace; font-size: 9.5pt; margin-top: 4px;
               margin-bottom: 8px; }}
        a {{ color: {theme.link}; text-decoration: none; }}
        blockquote {{ color: {theme.muted}; margin-left: 14px; margin-top: 0px; margin-bottom: 9px; }}
        th {{ background-color: {theme.code_header}; font-weight: 600; text-align: left; }}
        hr {{ margin-top: 6px; margin-bottom: 10px; }}
    """


class Highlighter:
    """pygments → Qt-compatible HTML spans, cached: a streaming block re-highlights only while it changes."""

    def __init__(self, theme: Theme, capacity: int = 256) -> None:
        self._formatter = HtmlFormatter(noclasses=True, nowrap=True, style=_STYLES[theme.pygments])
        self._lexers: dict[str, Lexer] = {}
        self._cache: OrderedDict[tuple[str, str], str] = OrderedDict()
        self._capacity = capacity

    def _lexer(self, lang: str) -> Lexer:
        lexer = self._lexers.get(lang)
        if lexer is None:
            try:  # never guess_lexer: it tries every lexer and would stall a stream
                lexer = get_lexer_by_name(lang, stripnl=False) if lang else TextLexer(stripnl=False)
            except ClassNotFound:
                lexer = TextLexer(stripnl=False)
            self._lexers[lang] = lexer
        return lexer

    def html(self, code: str, lang: str) -> str:
        key = (lang, code)
        hit = self._cache.get(key)
        if hit is not None:
            self._cache.move_to_end(key)
            return hit
        out = highlight(code, self._lexer(lang.lower()), self._formatter).rstrip("\n")
        self._cache[key] = out
        if len(self._cache) > self._capacity:
            self._cache.popitem(last=False)
        return out


class MarkdownRenderer:
    def __init__(self, theme: Theme) -> None:
        self.theme = theme
        self.highlighter = Highlighter(theme)
        self._md = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False})
        self._md.enable(["table", "strikethrough"])
        # markdown-it binds rule functions to its renderer, so these rules close over this object instead
        self._md.add_render_rule("image", lambda _r, tokens, idx, _o, _e: self._image(tokens[idx]))
        self._md.add_render_rule("fence", lambda _r, tokens, idx, _o, env: self._nested_code(tokens[idx], env))
        self._md.add_render_rule("code_block", lambda _r, tokens, idx, _o, env: self._nested_code(tokens[idx], env))
        self._md.add_render_rule("link_open", lambda r, tokens, idx, o, env: self._link_open(r, tokens, idx, o, env))
        self._md.add_render_rule("link_close", lambda _r, tokens, idx, _o, _e: self._link_close(tokens, idx))
        self._md.add_render_rule("table_open", lambda _r, _t, _i, _o, _e: self._table_open())

    # -- public ------------------------------------------------------------------------------------------

    def segments(self, text: str) -> list[Segment]:
        """Split ``text`` into prose and top-level code segments, in order."""
        return self._to_segments(self._md.parse(text))

    def split_stable(self, text: str, min_chars: int = STABLE_MIN_CHARS) -> tuple[list[Segment], list[Segment], int]:
        """For a growing text: ``(stable, rest, cut)``, where ``text[:cut]`` is made of finished blocks that
        nothing appended later can change, rendered as ``stable``; ``rest`` renders ``text[cut:]``.

        One parse. A cut lies only after a block that cannot absorb what follows (a paragraph, heading, closed
        code block, rule or table; not a list or a quote, which can continue) and never inside the last block,
        which may still be growing. Below ``min_chars`` nothing is cut (``cut == 0``).
        """
        tokens = self._md.parse(text)
        starts = [i for i, t in enumerate(tokens) if t.level == 0 and t.nesting >= 0 and t.map is not None]
        cut_token, cut_line = 0, 0
        for a, b in itertools.pairwise(starts):
            if tokens[a].type in CLOSED_BLOCKS:
                cut_token, cut_line = b, (tokens[b].map or [0])[0]
        if cut_line == 0:
            return [], self._to_segments(tokens), 0
        cut = sum(len(line) for line in text.splitlines(keepends=True)[:cut_line])
        if cut < min_chars:
            return [], self._to_segments(tokens), 0
        return self._to_segments(tokens[:cut_token]), self._to_segments(tokens[cut_token:]), cut

    def _to_segments(self, tokens: list[Any]) -> list[Segment]:
        out: list[Segment] = []
        run: list[Any] = []

        def flush() -> None:
            if run:
                env: dict[str, Any] = {"codes": []}
                body = self._md.renderer.render(run, self._md.options, env)
                out.append(Segment("prose", html=body, inline_code=tuple(env["codes"])))
                run.clear()

        for tok in tokens:
            if tok.type in ("fence", "code_block") and tok.level == 0:
                flush()
                out.append(Segment("code", code=tok.content.rstrip("\n"), lang=_lang(tok)))
            else:
                run.append(tok)
        flush()
        return out

    def render_html(self, text: str) -> str:
        """Everything as one HTML string (exports, tests); code inline."""
        env: dict[str, Any] = {"codes": []}
        return str(self._md.renderer.render(self._md.parse(text), self._md.options, env))

    # -- rules -------------------------------------------------------------------------------------------

    def _image(self, tok: Any) -> str:
        alt = html.escape(tok.content or "image")
        src = html.escape(str(tok.attrGet("src") or ""))
        return (f'<span style="color:{self.theme.muted}">[image not loaded: {alt}]</span> '
                f'<span style="color:{self.theme.faint}; font-size:small">{src}</span>')

    def _nested_code(self, tok: Any, env: dict[str, Any]) -> str:
        code = tok.content.rstrip("\n")
        codes: list[str] = env.setdefault("codes", [])
        n = len(codes)
        codes.append(code)
        body = self.highlighter.html(code, _lang(tok))
        label = html.escape(_lang(tok) or "code")
        t = self.theme
        return (f'<table width="100%" cellspacing="0" cellpadding="8" style="background-color:{t.code_bg}; '
                f'border: 1px solid {t.code_border}; margin-top:4px; margin-bottom:8px">'
                f'<tr><td><span style="color:{t.muted}; font-size:small">{label}</span></td>'
                f'<td align="right"><a href="{COPY_SCHEME}:{n}" style="font-size:small">Copy</a></td></tr>'
                f'<tr><td colspan="2"><pre style="margin:0px">{body}</pre></td></tr></table>')

    def _link_open(self, renderer: Any, tokens: Any, idx: int, options: Any, env: Any) -> str:
        tok = tokens[idx]
        href = str(tok.attrGet("href") or "")
        if not href.lower().startswith(SAFE_SCHEMES):
            tok.meta["dropped"] = True
            return ""
        tok.attrs = {"href": href, "title": href}
        return str(renderer.renderToken(tokens, idx, options, env))

    @staticmethod
    def _link_close(tokens: Any, idx: int) -> str:
        for j in range(idx - 1, -1, -1):  # links do not nest: the nearest opening is this one's
            if tokens[j].type == "link_open":
                return "" if tokens[j].meta.get("dropped") else "</a>"
        return ""

    def _table_open(self) -> str:
        return (f'<table border="1" cellspacing="0" cellpadding="6" '
                f'style="border-collapse: collapse; border-color: {self.theme.code_border}; margin-bottom: 9px">')


COMMON_LANGUAGES = ("python", "bash", "javascript", "typescript", "json", "c", "cpp", "rust", "go", "java", "sql",
                    "html", "css", "yaml", "toml", "diff")


def warm_lexers(languages: tuple[str, ...] = COMMON_LANGUAGES) -> None:
    """Compile the common lexers' regular expressions ahead of use (pygments caches them per lexer class).

    The first code block in a language otherwise costs 20-90 ms of regex compilation on the GUI thread, in the
    middle of a stream. Run it in a background thread after the window is up.
    """
    for lang in languages:
        try:
            get_lexer_by_name(lang)
        except ClassNotFound:
            pass


def _lang(tok: Any) -> str:
    return str(tok.info or "").strip().split(" ")[0][:32]
