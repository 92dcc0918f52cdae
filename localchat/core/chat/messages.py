"""Typed chat messages, sampling parameters and the chunks a streaming turn yields.

Backends yield chunks rather than raising mid-stream (as calibre's AI backends do): a turn is a sequence of
``ContentChunk`` / ``ReasoningChunk`` / ``NoticeChunk`` ending in exactly one ``StatsChunk`` or ``ErrorChunk``.
Every chunk carries the ``request_id`` of its turn so a consumer can drop chunks of a superseded request.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Role = Literal["system", "user", "assistant"]
FinishReason = Literal["stop", "length", "cancelled"]
ErrorKind = Literal["crashed", "out_of_memory", "context_overflow", "load_failed", "no_model", "internal"]


@dataclass(frozen=True)
class ChatMessage:
    role: Role
    content: str

    def to_dict(self) -> dict[str, str]:
        return {"role": self.role, "content": self.content}


@dataclass(frozen=True)
class SamplingParams:
    temperature: float = 0.7
    top_p: float = 0.95
    top_k: int = 40
    min_p: float = 0.05
    repeat_penalty: float = 1.0
    max_tokens: int = 512
    seed: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> SamplingParams:
        return cls(**raw)


@dataclass(frozen=True)
class TurnStats:
    prompt_tokens: int
    completion_tokens: int
    ttft_s: float
    decode_tokens_per_s: float
    total_s: float
    finish_reason: FinishReason
    dropped_messages: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ContentChunk:
    request_id: str
    text: str


@dataclass(frozen=True)
class ReasoningChunk:
    request_id: str
    text: str


@dataclass(frozen=True)
class NoticeChunk:
    """Something the user should know about this turn (e.g. old messages dropped to fit the context)."""

    request_id: str
    text: str


@dataclass(frozen=True)
class StatsChunk:
    request_id: str
    stats: TurnStats


@dataclass(frozen=True)
class ErrorChunk:
    request_id: str
    kind: ErrorKind
    message: str


Chunk = ContentChunk | ReasoningChunk | NoticeChunk | StatsChunk | ErrorChunk


@dataclass
class TurnResult:
    """A whole turn gathered from its chunks (the CLI and tests use this)."""

    text: str = ""
    reasoning: str = ""
    notices: list[str] = field(default_factory=list)
    stats: TurnStats | None = None
    error: ErrorChunk | None = None

    def add(self, chunk: Chunk) -> None:
        if isinstance(chunk, ContentChunk):
            self.text += chunk.text
        elif isinstance(chunk, ReasoningChunk):
            self.reasoning += chunk.text
        elif isinstance(chunk, NoticeChunk):
            self.notices.append(chunk.text)
        elif isinstance(chunk, StatsChunk):
            self.stats = chunk.stats
        else:
            self.error = chunk
