"""OpenAI's chat-completions shapes: reading a request (strictly: a bad parameter is a 400 naming it) and writing
responses, stream chunks and errors."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

from localchat.core.chat.messages import ChatMessage, Role, TurnStats

MAX_STOP = 4
# accepted and ignored: they change nothing a local model needs, and common clients send them
IGNORED = frozenset({"user", "store", "metadata", "parallel_tool_calls", "service_tier", "frequency_penalty",
                     "presence_penalty", "logit_bias", "top_logprobs", "prediction", "modalities", "audio",
                     "reasoning_effort", "stream_options", "safety_identifier", "prompt_cache_key"})
UNSUPPORTED = frozenset({"tools", "tool_choice", "functions", "function_call", "web_search_options"})
ROLES: dict[str, Role] = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}


class ApiError(Exception):
    """An error answered in OpenAI's shape: ``{"error": {"message", "type", "code", "param"}}``."""

    def __init__(self, status: int, message: str, type_: str = "invalid_request_error", code: str | None = None,
                 param: str | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type_
        self.code = code
        self.param = param
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return error_body(self.message, self.type, self.code, self.param)


def error_body(message: str, type_: str, code: str | None = None, param: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "code": code, "param": param}}


def bad(param: str, message: str) -> ApiError:
    return ApiError(400, message, code="invalid_value" if param else None, param=param or None)


@dataclass(frozen=True)
class CompletionParams:
    """A chat-completions request, checked. ``None`` leaves the choice to the model's defaults."""

    model: str
    messages: tuple[ChatMessage, ...]
    stream: bool = False
    include_usage: bool = False
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    seed: int | None = None
    stop: tuple[str, ...] = ()


def _number(body: dict[str, Any], key: str, lo: float, hi: float, *, lo_open: bool = False) -> float | None:
    v = body.get(key)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise bad(key, f"'{key}' must be a number, not {v!r}")
    if v < lo or v > hi or (lo_open and v == lo):
        raise bad(key, f"'{key}' must be {'>' if lo_open else '>='} {lo:g} and <= {hi:g}, not {v!r}")
    return float(v)


def _integer(body: dict[str, Any], key: str, lo: int, hi: int) -> int | None:
    v = body.get(key)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int):
        raise bad(key, f"'{key}' must be an integer, not {v!r}")
    if not lo <= v <= hi:
        raise bad(key, f"'{key}' must be between {lo} and {hi}, not {v}")
    return v


def _content(raw: Any, i: int) -> str:
    if raw is None:
        return ""
    if isinstance(raw, str):
        return raw
    if isinstance(raw, list):
        parts = []
        for part in raw:
            if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                kind = part.get("type") if isinstance(part, dict) else type(part).__name__
                raise bad(f"messages[{i}].content", f"only text content is supported (got a {kind!r} part)")
            parts.append(part["text"])
        return "".join(parts)
    raise bad(f"messages[{i}].content", "'content' must be a string or a list of text parts")


def parse_messages(raw: Any) -> tuple[ChatMessage, ...]:
    if not isinstance(raw, list) or not raw:
        raise bad("messages", "'messages' must be a non-empty list")
    out = []
    for i, m in enumerate(raw):
        if not isinstance(m, dict):
            raise bad(f"messages[{i}]", "each message must be an object with 'role' and 'content'")
        role = ROLES.get(str(m.get("role")))
        if role is None:
            raise bad(f"messages[{i}].role", f"unsupported role {m.get('role')!r} (system, developer, user, "
                                             "assistant)")
        out.append(ChatMessage(role, _content(m.get("content"), i)))
    if out[-1].role == "assistant":
        raise bad("messages", "the last message must not be the assistant's (continuing an answer is not "
                              "supported)")
    return tuple(out)


def parse_completion(body: Any, max_tokens_limit: int) -> CompletionParams:
    """Check a request body.

    Raises:
        ApiError: 400 naming the first bad parameter.
    """
    if not isinstance(body, dict):
        raise bad("", "the request body must be a JSON object")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise bad("model", "'model' is required (a model id from GET /v1/models)")
    for key in sorted(UNSUPPORTED & body.keys()):
        if body[key] not in (None, [], "none"):
            raise bad(key, f"'{key}' is not supported by localchat's local API")
    _integer(body, "n", 1, 1)  # one choice only
    if body.get("logprobs"):
        raise bad("logprobs", "'logprobs' is not supported by localchat's local API")
    rf = body.get("response_format")
    if rf is not None and not (isinstance(rf, dict) and rf.get("type") == "text"):
        raise bad("response_format", "only response_format {\"type\": \"text\"} is supported")
    stream = body.get("stream", False)
    if not isinstance(stream, bool) and stream is not None:
        raise bad("stream", "'stream' must be true or false")
    opts = body.get("stream_options")
    if opts is not None and not isinstance(opts, dict):
        raise bad("stream_options", "'stream_options' must be an object")
    include_usage = bool(opts and opts.get("include_usage"))
    if opts and not stream:
        raise bad("stream_options", "'stream_options' is only allowed when 'stream' is true")
    max_tokens = _integer(body, "max_completion_tokens", 1, max_tokens_limit)
    legacy = _integer(body, "max_tokens", 1, max_tokens_limit)
    stop_raw = body.get("stop")
    if stop_raw is None:
        stop: tuple[str, ...] = ()
    elif isinstance(stop_raw, str):
        stop = (stop_raw,)
    elif isinstance(stop_raw, list) and all(isinstance(s, str) for s in stop_raw) and len(stop_raw) <= MAX_STOP:
        stop = tuple(stop_raw)
    else:
        raise bad("stop", f"'stop' must be a string or a list of up to {MAX_STOP} strings")
    return CompletionParams(
        model=model,
        messages=parse_messages(body.get("messages")),
        stream=bool(stream),
        include_usage=include_usage,
        max_tokens=max_tokens if max_tokens is not None else legacy,
        temperature=_number(body, "temperature", 0.0, 2.0),
        top_p=_number(body, "top_p", 0.0, 1.0, lo_open=True),
        seed=_integer(body, "seed", -(2**63), 2**63 - 1),
        stop=tuple(s for s in stop if s),
    )


# -- responses ----------------------------------------------------------------------------------------------


FINISH = {"stop": "stop", "length": "length", "cancelled": "stop"}


def usage(stats: TurnStats | None) -> dict[str, int]:
    p = stats.prompt_tokens if stats else 0
    c = stats.completion_tokens if stats else 0
    return {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}


def completion(cid: str, model: str, content: str, reasoning: str, stats: TurnStats | None) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if reasoning:
        message["reasoning_content"] = reasoning  # DeepSeek's field: reasoning never goes into content
    return {
        "id": cid, "object": "chat.completion", "created": int(time.time()), "model": model,
        "choices": [{"index": 0, "message": message, "logprobs": None,
                     "finish_reason": FINISH[stats.finish_reason] if stats else "stop"}],
        "usage": usage(stats), "system_fingerprint": None,
    }


def chunk(cid: str, model: str, created: int, delta: dict[str, Any], finish_reason: str | None = None,
          with_usage: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
                           "system_fingerprint": None,
                           "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}]}
    if with_usage:
        out["usage"] = None
    return out


def usage_chunk(cid: str, model: str, created: int, stats: TurnStats | None) -> dict[str, Any]:
    return {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
            "system_fingerprint": None, "choices": [], "usage": usage(stats)}


def model_object(name: str, created: int) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": created, "owned_by": "localchat"}
