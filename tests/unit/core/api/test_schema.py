"""The API's request checks and response shapes, and its Host-header rule (no server, no worker)."""

from __future__ import annotations

import pytest

from localchat.core.api import schema
from localchat.core.api.app import host_allowed, host_name
from localchat.core.api.schema import ApiError, parse_completion
from localchat.core.api.server import BindRefused, check_bind, load_or_create_key
from localchat.core.chat.messages import ChatMessage, TurnStats

BASE = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


def test_a_request_is_read_into_typed_params() -> None:
    p = parse_completion({**BASE, "messages": [
        {"role": "developer", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
        {"role": "assistant", "content": None}, {"role": "user", "content": "c"}],
        "max_completion_tokens": 9, "max_tokens": 99, "temperature": 0, "top_p": 1, "seed": 7, "stop": "END",
        "stream": True, "stream_options": {"include_usage": True}, "user": "ignored", "n": 1}, 4096)
    assert p.messages == (ChatMessage("system", "Be brief."), ChatMessage("user", "ab"),
                          ChatMessage("assistant", ""), ChatMessage("user", "c"))
    assert (p.max_tokens, p.temperature, p.top_p, p.seed, p.stop, p.stream, p.include_usage) == (
        9, 0.0, 1.0, 7, ("END",), True, True)
    assert parse_completion(BASE, 4096).max_tokens is None


@pytest.mark.parametrize(("change", "param"), [
    ({"model": ""}, "model"), ({"messages": "hi"}, "messages"), ({"temperature": "hot"}, "temperature"),
    ({"temperature": True}, "temperature"), ({"top_p": 1.5}, "top_p"), ({"max_tokens": 5000}, "max_tokens"),
    ({"max_completion_tokens": 1.5}, "max_completion_tokens"), ({"seed": "x"}, "seed"), ({"stop": [1]}, "stop"),
    ({"tools": [{"type": "function"}]}, "tools"), ({"logprobs": True}, "logprobs"),
    ({"response_format": {"type": "json_object"}}, "response_format"),
    ({"stream_options": {"include_usage": True}}, "stream_options"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]}, "messages[0].content"),
    ({"messages": [{"role": "assistant", "content": "x"}]}, "messages"),
])
def test_bad_parameters_name_themselves(change: dict[str, object], param: str) -> None:
    with pytest.raises(ApiError) as err:
        parse_completion({**BASE, **change}, 4096)
    assert err.value.status == 400 and err.value.param == param
    assert set(err.value.body()["error"]) == {"message", "type", "code", "param"}


def test_reasoning_goes_in_reasoning_content_never_in_content() -> None:
    stats = TurnStats(10, 5, 0.1, 20.0, 0.4, "length")
    out = schema.completion("id", "r1", "42.", "Add 40 and 2.", stats)
    msg = out["choices"][0]["message"]
    assert msg == {"role": "assistant", "content": "42.", "reasoning_content": "Add 40 and 2."}
    assert out["choices"][0]["finish_reason"] == "length" and out["usage"]["total_tokens"] == 15
    assert "reasoning_content" not in schema.completion("id", "m", "x", "", stats)["choices"][0]["message"]


def test_host_header_rule() -> None:
    assert host_name("[::1]:8800") == "::1" and host_name("LocalHost.:80") == "localhost" and host_name("a:b") is None
    for ok in ("127.0.0.1:8800", "localhost", "[::1]:1", "app.localhost:9"):
        assert host_allowed(ok, allow_lan=False), ok
    for bad in (None, "", "evil.example", "localhost.evil.example", "127.0.0.1.nip.io", "0.0.0.0:80", "10.0.0.2"):
        assert not host_allowed(bad, allow_lan=False), bad
    assert host_allowed("10.0.0.2:8800", allow_lan=True) and not host_allowed("evil.example", allow_lan=True)


def test_bind_rule_and_key_file(tmp_path) -> None:  # type: ignore[no-untyped-def]
    check_bind("127.0.0.1", False)
    check_bind("::1", False)
    for host in ("0.0.0.0", "::", "192.168.1.2"):
        with pytest.raises(BindRefused, match="--allow-lan"):
            check_bind(host, False)
        check_bind(host, True)
    path = tmp_path / "config" / "api-key"
    key = load_or_create_key(path)
    assert len(key) > 30 and (path.stat().st_mode & 0o777) == 0o600 and load_or_create_key(path) == key
    path.chmod(0o644)
    assert load_or_create_key(path) == key and (path.stat().st_mode & 0o777) == 0o600
