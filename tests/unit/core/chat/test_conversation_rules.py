"""What the window sends: sampling from app defaults, the model family and the chat; history without reasoning."""

from __future__ import annotations

from localchat.core.chat.conversation import effective_sampling, history_for
from localchat.core.chat.messages import ChatMessage
from localchat.core.chat.store import Message
from localchat.settings import Settings


def test_sampling_layers_defaults_r1_recommendation_and_chat_overrides() -> None:
    s = Settings(temperature=0.9, top_p=0.8, max_tokens=300)
    plain = effective_sampling(s, {}, is_r1=False)
    assert (plain.temperature, plain.top_p, plain.max_tokens) == (0.9, 0.8, 300)
    r1 = effective_sampling(s, {}, is_r1=True)
    assert (r1.temperature, r1.top_p, r1.max_tokens) == (0.6, 0.95, 300)
    chat = effective_sampling(s, {"temperature": 0.2, "max_tokens": 64, "bogus": 1}, is_r1=True)
    assert (chat.temperature, chat.top_p, chat.max_tokens) == (0.2, 0.95, 64)


def _m(i: int, role: str, content: str, reasoning: str = "") -> Message:
    return Message(i, 1, role, content, reasoning)


def test_history_drops_reasoning_and_folds_the_system_prompt_for_r1() -> None:
    rows = [_m(1, "user", "Is 7 prime?"), _m(2, "assistant", "Yes.", reasoning="check 2..sqrt(7)"),
            _m(3, "assistant", "", reasoning="only thinking"), _m(4, "user", "And 9?")]
    h = history_for(rows, "Be brief.", is_r1=False)
    assert h == [ChatMessage("system", "Be brief."), ChatMessage("user", "Is 7 prime?"),
                 ChatMessage("assistant", "Yes."), ChatMessage("user", "And 9?")]
    r1 = history_for(rows, "Be brief.", is_r1=True)
    assert r1[0] == ChatMessage("user", "Be brief.\n\nIs 7 prime?") and all(m.role != "system" for m in r1)
    leaked = history_for([_m(1, "user", "q"), _m(2, "assistant", "<think>hmm</think>answer")], "", is_r1=True)
    assert leaked[-1] == ChatMessage("assistant", "answer")
