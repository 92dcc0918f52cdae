"""Streaming ``<think>…</think>`` splitter.

Reasoning models (DeepSeek-R1 distills, QwQ, …) wrap their chain of thought in ``<think>`` tags. Tags can be split
across chunks (``"<thi"`` + ``"nk>"``), and R1 chat templates put the opening ``<think>`` in the prompt, so the
stream holds only ``</think>``. The splitter buffers just the bytes that could still become a tag.
"""

from __future__ import annotations

from typing import Literal

OPEN = "<think>"
CLOSE = "</think>"

Kind = Literal["content", "reasoning"]


def _partial_suffix(text: str, tag: str) -> int:
    """Length of the longest suffix of ``text`` that is a proper prefix of ``tag``."""
    for n in range(min(len(tag) - 1, len(text)), 0, -1):
        if text.endswith(tag[:n]):
            return n
    return 0


class ThinkSplitter:
    """Feed text pieces, get ``(kind, text)`` pieces back.

    Args:
        in_think: start inside a reasoning block (the prompt ended with ``<think>``).
    """

    def __init__(self, in_think: bool = False) -> None:
        self.in_think = in_think
        self._buf = ""
        self._seen_any = False  # an opening tag is honoured only before any content (leading whitespace ok)

    def feed(self, text: str) -> list[tuple[Kind, str]]:
        out: list[tuple[Kind, str]] = []
        buf = self._buf + text
        self._buf = ""
        while buf:
            if self.in_think:
                i = buf.find(CLOSE)
                if i >= 0:
                    self._emit(out, "reasoning", buf[:i])
                    buf = buf[i + len(CLOSE):]
                    self.in_think = False
                    self._seen_any = True
                    continue
                keep = _partial_suffix(buf, CLOSE)
                self._emit(out, "reasoning", buf[: len(buf) - keep])
                self._buf = buf[len(buf) - keep:]
                break
            if not self._seen_any:
                stripped = buf.lstrip()
                if stripped.startswith(OPEN):
                    buf = stripped[len(OPEN):]
                    self.in_think = True
                    self._seen_any = True
                    continue
                if OPEN.startswith(stripped):  # could still become "<think>" (or is only whitespace)
                    self._buf = buf
                    break
                # A model without an opening tag that still closes one (R1 template quirk) is handled by
                # the caller passing in_think=True; here the text is plain content.
                self._seen_any = True
            self._emit(out, "content", buf)
            buf = ""
        return out

    def finish(self) -> list[tuple[Kind, str]]:
        """Flush what is buffered at the end of the stream (an unterminated think stays reasoning)."""
        out: list[tuple[Kind, str]] = []
        if self._buf:
            self._emit(out, "reasoning" if self.in_think else "content", self._buf)
            self._buf = ""
        return out

    @staticmethod
    def _emit(out: list[tuple[Kind, str]], kind: Kind, text: str) -> None:
        if not text:
            return
        if out and out[-1][0] == kind:
            out[-1] = (kind, out[-1][1] + text)
        else:
            out.append((kind, text))


def split_complete(text: str, in_think: bool = False) -> tuple[str, str]:
    """Split a whole answer into ``(reasoning, content)``."""
    s = ThinkSplitter(in_think)
    parts = s.feed(text) + s.finish()
    reasoning = "".join(t for k, t in parts if k == "reasoning")
    content = "".join(t for k, t in parts if k == "content")
    return reasoning, content
