"""Rules for what history is sent to the model on each turn."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

from localchat.core.chat.messages import ChatMessage, SamplingParams
from localchat.core.chat.think import split_complete
from localchat.errors import ContextOverflow

# Least room left for the answer before we drop history (or refuse).
MIN_ANSWER_TOKENS = 32


def strip_reasoning(messages: Sequence[ChatMessage]) -> list[ChatMessage]:
    """Assistant turns go back without their ``<think>`` part (R1 guidance: never feed reasoning back)."""
    out = []
    for m in messages:
        if m.role == "assistant" and "</think>" in m.content:
            _, content = split_complete(m.content, in_think="<think>" not in m.content)
            m = replace(m, content=content.lstrip())
        out.append(m)
    return out


def fit_history(messages: Sequence[ChatMessage], count_tokens: Callable[[list[ChatMessage]], int],
                n_ctx: int, min_answer: int = MIN_ANSWER_TOKENS) -> tuple[list[ChatMessage], int, int]:
    """Drop the oldest turns until the prompt leaves ``min_answer`` tokens of room.

    System messages and the last user message are never dropped. Returns ``(messages, dropped, prompt_tokens)``.

    Raises:
        ContextOverflow: even the last message alone does not fit.
    """
    msgs = list(messages)
    dropped = 0
    budget = n_ctx - min(min_answer, max(1, n_ctx // 4))
    while True:
        n = count_tokens(msgs)
        if n <= budget:
            return msgs, dropped, n
        droppable = [i for i, m in enumerate(msgs[:-1]) if m.role != "system"]
        if not droppable:
            raise ContextOverflow(
                f"the message is {n} tokens long with its system prompt; this model's context holds {n_ctx} "
                f"tokens and needs room to answer. Shorten the message or raise the context length.")
        del msgs[droppable[0]]
        dropped += 1
        # keep turns paired: a leading assistant reply without its question goes too
        while len(msgs) > 1 and msgs[0].role == "assistant":
            del msgs[0]
            dropped += 1


def is_r1_distill(name: str, chat_template: str | None) -> bool:
    """DeepSeek-R1 distills (and look-alikes) by name or by their template's think prefix."""
    low = name.lower()
    if "r1" in low and ("distill" in low or "deepseek" in low):
        return True
    return bool(chat_template and "<｜Assistant｜>" in chat_template and "<think>" in chat_template)


R1_TEMPERATURE = 0.6
R1_TOP_P = 0.95


def default_sampling(is_r1: bool, base: SamplingParams) -> SamplingParams:
    """The starting sampling for a model: R1 distills want temperature 0.6 and top-p 0.95.

    Callers apply this only where the user has not chosen a value themselves.
    """
    if not is_r1:
        return base
    return replace(base, temperature=R1_TEMPERATURE, top_p=R1_TOP_P)


def fold_system_prompt(messages: Sequence[ChatMessage]) -> list[ChatMessage]:
    """R1 distills are trained without a system prompt: fold it into the first user turn instead."""
    system = "\n\n".join(m.content for m in messages if m.role == "system" and m.content.strip())
    rest = [m for m in messages if m.role != "system"]
    if system and rest and rest[0].role == "user":
        rest[0] = replace(rest[0], content=f"{system}\n\n{rest[0].content}")
    return rest
