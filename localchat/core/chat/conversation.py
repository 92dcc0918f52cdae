"""What one chat turn sends to the model: sampling presets and the history rules, as one typed request.

The window, ``localchat chat`` and the local API all start a turn here, so an R1 distill gets the same treatment
everywhere: temperature 0.6 / top-p 0.95 unless chosen otherwise, its reasoning never fed back, the system prompt
folded into the first question. Streaming the turn and keeping its answer is :mod:`localchat.core.chat.turn`.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from localchat.core.chat.history import default_sampling, fold_system_prompt, strip_reasoning
from localchat.core.chat.messages import ChatMessage, SamplingParams
from localchat.core.chat.store import Message
from localchat.settings import Settings

# what a conversation's own settings may override (the conversation settings dialog writes these)
CONVERSATION_SAMPLING_KEYS = ("temperature", "top_p", "max_tokens")


def _new_id() -> str:
    return uuid.uuid4().hex


@dataclass(frozen=True)
class TurnRequest:
    """One turn for the worker.

    Attributes:
        stop: stop sequences, applied app-side: the answer ends before the first one and the turn is cancelled.
        drop_history: the worker may leave the oldest messages out to fit the context (the window and the CLI); the
            API turns that into a ``context_overflow`` error instead, as clients expect.
    """

    messages: tuple[ChatMessage, ...]
    sampling: SamplingParams
    request_id: str = field(default_factory=_new_id)
    stop: tuple[str, ...] = ()
    drop_history: bool = True


def effective_sampling(settings: Settings, overrides: Mapping[str, Any], is_r1: bool,
                       keys: Sequence[str] = CONVERSATION_SAMPLING_KEYS) -> SamplingParams:
    """App defaults, then the model family's recommendation (R1 distills), then the caller's overrides.

    Overrides are honoured for ``keys`` only (others are ignored) and only when not ``None``.
    """
    base = SamplingParams(temperature=settings.temperature, top_p=settings.top_p, max_tokens=settings.max_tokens)
    base = default_sampling(is_r1, base)
    known = {k: v for k, v in overrides.items() if k in keys and v is not None}
    return replace(base, **known)


def model_history(turns: Sequence[ChatMessage], is_r1: bool, system_prompt: str = "") -> list[ChatMessage]:
    """The messages as the model gets them: assistant turns without their reasoning, ``system_prompt`` (if any)
    first, and for R1 distills (trained without a system prompt) every system message folded into the first
    question."""
    history = strip_reasoning(turns)
    if system_prompt.strip():
        history.insert(0, ChatMessage("system", system_prompt))
    return fold_system_prompt(history) if is_r1 else history


def history_for(messages: Sequence[Message], system_prompt: str, is_r1: bool) -> list[ChatMessage]:
    """What a saved conversation sends: its user and assistant text (empty turns left out), then
    :func:`model_history`."""
    turns = [ChatMessage("user" if m.role == "user" else "assistant", m.content) for m in messages
             if m.role in ("user", "assistant") and m.content.strip()]
    return model_history(turns, is_r1, system_prompt)


def conversation_turn(messages: Sequence[Message], system_prompt: str, overrides: Mapping[str, Any],
                      settings: Settings, is_r1: bool) -> TurnRequest:
    """The next turn of a saved conversation (the window's)."""
    return TurnRequest(tuple(history_for(messages, system_prompt, is_r1)),
                       effective_sampling(settings, overrides, is_r1))


def question_turn(prompt: str, system_prompt: str, settings: Settings, is_r1: bool,
                  overrides: Mapping[str, Any] | None = None) -> TurnRequest:
    """A single question (``localchat chat``); ``overrides`` may also set the seed."""
    sampling = effective_sampling(settings, overrides or {}, is_r1,
                                  keys=(*CONVERSATION_SAMPLING_KEYS, "seed"))
    return TurnRequest(tuple(model_history([ChatMessage("user", prompt)], is_r1, system_prompt)), sampling)
