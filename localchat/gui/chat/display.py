"""What one message in the view shows: its text, state and timing, and the labels derived from them."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any


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
