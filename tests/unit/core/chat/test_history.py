"""History rules: reasoning stripped, oldest turns dropped to fit, R1 defaults."""

from __future__ import annotations

import pytest

from localchat.core.chat.history import (
    default_sampling,
    fit_history,
    fold_system_prompt,
    is_r1_distill,
    strip_reasoning,
)
from localchat.core.chat.messages import ChatMessage, SamplingParams
from localchat.errors import ContextOverflow


def words(ms: list[ChatMessage]) -> int:
    return sum(len(m.content.split()) + 4 for m in ms)


def test_reasoning_is_stripped_from_history() -> None:
    msgs = [ChatMessage("user", "q"), ChatMessage("assistant", "<think>secret plan</think>\n\nAnswer"),
            ChatMessage("assistant", "only closing</think>Second")]
    out = strip_reasoning(msgs)
    assert [m.content for m in out] == ["q", "Answer", "Second"]


def test_fit_drops_oldest_pairs_keeps_system_and_last() -> None:
    msgs = [ChatMessage("system", "be brief")]
    for i in range(5):
        msgs += [ChatMessage("user", f"question {i} " + "x " * 20), ChatMessage("assistant", "answer " * 20)]
    msgs.append(ChatMessage("user", "last one"))
    fitted, dropped, n = fit_history(msgs, words, n_ctx=150, min_answer=32)
    assert fitted[0].role == "system" and fitted[-1].content == "last one"
    assert fitted[1].role == "user"  # never starts with an orphan answer
    assert dropped >= 2 and n <= 150 - 32
    assert n == words(fitted)


def test_fit_refuses_a_message_that_can_never_fit() -> None:
    with pytest.raises(ContextOverflow, match="context holds 64 tokens"):
        fit_history([ChatMessage("user", "x " * 200)], words, n_ctx=64)


def test_r1_detection_and_defaults() -> None:
    assert is_r1_distill("DeepSeek-R1-Distill-Qwen-14B", None)
    assert is_r1_distill("model", "{{'<｜Assistant｜>'}}<think>\n")
    assert not is_r1_distill("SmolLM2 135M", "<|im_start|>")
    base = SamplingParams(temperature=1.0, top_p=0.5)
    assert default_sampling(True, base).temperature == 0.6 and default_sampling(True, base).top_p == 0.95
    assert default_sampling(False, base) == base


def test_r1_system_prompt_folded_into_first_user_turn() -> None:
    out = fold_system_prompt([ChatMessage("system", "Be terse."), ChatMessage("user", "Hi")])
    assert out == [ChatMessage("user", "Be terse.\n\nHi")]
