"""Typed chat messages, sampling parameters and the chunks a streaming turn yields.

Backends yield chunks rather than raising mid-stream (as calibre's AI backends do): a turn is a sequence of
``ContentChunk`` / ``ReasoningChunk`` / ``NoticeChunk`` ending in exactly one ``StatsChunk`` or ``ErrorChunk``.
Every chunk carries the ``request_id`` of its turn so a consumer can drop chunks of a superseded request.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal, get_args

from localchat.errors import LocalChatError

Role = Literal["system", "user", "assistant"]
ROLES = ("system", "user", "assistant")
FinishReason = Literal["stop", "length", "cancelled"]
# Why a turn or a load failed: the one list (the worker sends these; the window, chat and the API map them)
ErrorKind = Literal["out_of_memory", "context_overflow", "load_failed", "invalid_file", "no_model", "internal"]
ERROR_KINDS: tuple[ErrorKind, ...] = get_args(ErrorKind)


def error_kind(value: object) -> ErrorKind:
    """``value`` as an error kind; anything unknown (another version's worker, a crafted frame) is ``internal``."""
    for kind in ERROR_KINDS:
        if value == kind:
            return kind
    return "internal"


TEMPERATURE_MAX = 5.0
SEED_MAX = 2**32 - 2  # llama.cpp takes a uint32 and reads 0xFFFFFFFF as "pick a random seed"
_SURROGATE = re.compile("[\ud800-\udfff]")


class InvalidRequest(LocalChatError, ValueError):
    """A message or a sampling value that no model could use; the message says which and why, in one line."""


def _number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InvalidRequest(f"{name} must be a finite number, not {value!r}")
    return float(value)


def _integer(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidRequest(f"{name} must be a whole number, not {value!r}")
    return value


def check_temperature(value: Any) -> float:
    v = _number("temperature", value)
    if not 0.0 <= v <= TEMPERATURE_MAX:
        raise InvalidRequest(f"temperature must be from 0 to {TEMPERATURE_MAX:g}, not {value!r}")
    return v


def check_top_p(value: Any) -> float:
    v = _number("top_p", value)
    if not 0.0 < v <= 1.0:
        raise InvalidRequest(f"top_p must be more than 0 and at most 1, not {value!r}")
    return v


def check_max_tokens(value: Any) -> int:
    v = _integer("max_tokens", value)
    if v < 1:
        raise InvalidRequest(f"max_tokens must be at least 1, not {value!r}")
    return v


def check_seed(value: Any) -> int | None:
    if value is None:
        return None
    v = _integer("seed", value)
    if not 0 <= v <= SEED_MAX:
        raise InvalidRequest(f"seed must be from 0 to {SEED_MAX}, not {value!r}")
    return v


def check_text(what: str, text: Any) -> str:
    """Text a model can be given: a string that encodes to UTF-8 (no lone surrogate from a broken decode)."""
    if not isinstance(text, str):
        raise InvalidRequest(f"{what} must be text, not {type(text).__name__}")
    bad = _SURROGATE.search(text)
    if bad is not None:
        raise InvalidRequest(f"{what} is not valid Unicode: a lone surrogate U+{ord(bad.group()):04X} at character "
                             f"{bad.start()} (was it read with the wrong encoding?)")
    return text


@dataclass(frozen=True)
class ChatMessage:
    role: Role
    content: str

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise InvalidRequest(f"message role must be one of {', '.join(ROLES)}, not {self.role!r}")
        check_text(f"the {self.role} message", self.content)

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

    def __post_init__(self) -> None:
        check_temperature(self.temperature)
        check_top_p(self.top_p)
        check_max_tokens(self.max_tokens)
        check_seed(self.seed)
        if _integer("top_k", self.top_k) < 0:
            raise InvalidRequest(f"top_k must be 0 (off) or more, not {self.top_k!r}")
        if not 0.0 <= _number("min_p", self.min_p) <= 1.0:
            raise InvalidRequest(f"min_p must be from 0 to 1, not {self.min_p!r}")
        if not 0.0 < _number("repeat_penalty", self.repeat_penalty) <= 10.0:
            raise InvalidRequest(f"repeat_penalty must be more than 0 and at most 10, not {self.repeat_penalty!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> SamplingParams:
        unknown = set(raw) - {f.name for f in fields(cls)}
        if unknown:
            raise InvalidRequest(f"unknown sampling setting{'s' if len(unknown) > 1 else ''}: "
                                 f"{', '.join(sorted(unknown))}")
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
