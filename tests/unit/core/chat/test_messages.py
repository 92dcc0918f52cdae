"""Sampling values and messages no model could use are refused at construction, in one line."""

from __future__ import annotations

import math

import pytest

from localchat.core.chat.messages import SEED_MAX, ChatMessage, InvalidRequest, SamplingParams
from localchat.errors import LocalChatError

BAD_SAMPLING = [
    ({"max_tokens": 0}, "max_tokens must be at least 1"),
    ({"max_tokens": -5}, "max_tokens must be at least 1"),
    ({"max_tokens": 2.5}, "max_tokens must be a whole number"),
    ({"max_tokens": True}, "max_tokens must be a whole number"),
    ({"temperature": math.nan}, "temperature must be a finite number"),
    ({"temperature": -1.0}, "temperature must be from 0 to 5"),
    ({"temperature": math.inf}, "temperature must be a finite number"),
    ({"temperature": "0.7"}, "temperature must be a finite number"),
    ({"top_p": math.nan}, "top_p must be a finite number"),
    ({"top_p": 0.0}, "top_p must be more than 0"),
    ({"top_p": 1.5}, "top_p must be more than 0"),
    ({"top_k": -1}, "top_k must be 0"),
    ({"min_p": 2.0}, "min_p must be from 0 to 1"),
    ({"repeat_penalty": 0.0}, "repeat_penalty must be more than 0"),
    ({"seed": -1}, "seed must be from 0"),
    ({"seed": SEED_MAX + 1}, "seed must be from 0"),
]


@pytest.mark.parametrize(("values", "message"), BAD_SAMPLING, ids=[str(v) for v, _ in BAD_SAMPLING])
def test_bad_sampling_values_are_refused(values: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidRequest, match=message) as err:
        SamplingParams(**values)  # type: ignore[arg-type]
    assert "\n" not in str(err.value)
    assert isinstance(err.value, LocalChatError) and isinstance(err.value, ValueError)
    with pytest.raises(InvalidRequest):  # the worker builds them from the wire
        SamplingParams.from_dict({**SamplingParams().to_dict(), **values})


def test_edge_values_are_accepted() -> None:
    p = SamplingParams(temperature=0, top_p=1.0, top_k=0, min_p=0.0, max_tokens=1, seed=SEED_MAX)
    assert SamplingParams.from_dict(p.to_dict()) == p
    SamplingParams(temperature=5.0, seed=0)


def test_unknown_sampling_keys_are_named() -> None:
    with pytest.raises(InvalidRequest, match="unknown sampling setting: top_a"):
        SamplingParams.from_dict({"top_a": 0.1})


def test_lone_surrogate_is_a_clear_error() -> None:
    text = b"caf\xe9 au lait".decode("utf-8", errors="surrogateescape")  # latin-1 bytes read as UTF-8
    with pytest.raises(InvalidRequest, match=r"the user message is not valid Unicode: a lone surrogate U\+DCE9 "
                                             r"at character 3"):
        ChatMessage("user", text)
    ChatMessage("user", "emoji 😀 and accents café are fine")


def test_message_roles_and_types() -> None:
    with pytest.raises(InvalidRequest, match="role must be one of"):
        ChatMessage("tool", "x")  # type: ignore[arg-type]
    with pytest.raises(InvalidRequest, match="must be text, not int"):
        ChatMessage("user", 5)  # type: ignore[arg-type]
