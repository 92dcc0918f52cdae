"""The message protocol between the app and the inference worker.

Frames are a 4-byte big-endian length followed by a UTF-8 JSON object, over the worker's stdin/stdout pipes:
no socket at all, not even loopback, so the worker can live in a network namespace with no interfaces up.

Requests (app → worker) have an ``op``; events (worker → app) have an ``ev``. See ``worker.py`` for the ops.
"""

from __future__ import annotations

import json
import os
import struct
import threading
from dataclasses import asdict, dataclass, field
from typing import Any

from localchat.core.chat.messages import (
    Chunk,
    ContentChunk,
    ErrorChunk,
    NoticeChunk,
    ReasoningChunk,
    StatsChunk,
    TurnStats,
    error_kind,
)

_HEADER = struct.Struct(">I")
MAX_FRAME = 64 * 1024 * 1024


class ChannelClosed(EOFError):
    """The other end closed its side (or died)."""


class Channel:
    """Framed JSON over a pair of pipe file descriptors (the worker's stdin/stdout).

    Pipes rather than a socket: no socket of any family is involved (nothing for a network monitor to explain),
    and the same code works on Windows. ``send`` is thread-safe; ``recv`` belongs to one reader thread.
    """

    def __init__(self, rfd: int, wfd: int) -> None:
        self._r = os.fdopen(rfd, "rb", buffering=0)
        self._w = os.fdopen(wfd, "wb", buffering=0)
        self._send_lock = threading.Lock()

    def send(self, obj: dict[str, Any]) -> None:
        data = json.dumps(obj, separators=(",", ":")).encode("utf-8")
        with self._send_lock:
            try:
                self._w.write(_HEADER.pack(len(data)) + data)
            except (BrokenPipeError, ValueError, OSError) as exc:
                raise ChannelClosed(str(exc)) from exc

    def recv(self) -> dict[str, Any]:
        (n,) = _HEADER.unpack(self._read_exact(_HEADER.size))
        if n > MAX_FRAME:
            raise ChannelClosed(f"frame of {n} bytes exceeds the limit")
        obj = json.loads(self._read_exact(n).decode("utf-8"))
        if not isinstance(obj, dict):
            raise ChannelClosed("frame is not an object")
        return obj

    def _read_exact(self, n: int) -> bytes:
        buf = bytearray()
        while len(buf) < n:
            try:
                part = self._r.read(n - len(buf))
            except (ValueError, OSError) as exc:
                raise ChannelClosed(str(exc)) from exc
            if not part:
                raise ChannelClosed("pipe closed")
            buf += part
        return bytes(buf)

    def close(self) -> None:
        for f in (self._w, self._r):
            try:
                f.close()
            except OSError:
                pass


@dataclass(frozen=True)
class LoadOptions:
    """How to load a model. ``None`` lets llama.cpp / the planner choose."""

    n_ctx: int = 4096
    n_gpu_layers: int = 0
    n_threads: int | None = None
    n_batch: int = 2048  # llama.cpp's own defaults (llama-bench, llama-cli): prompt batches of n_batch tokens,
    n_ubatch: int = 512  # computed n_ubatch at a time; the compute buffer grows with n_ubatch
    flash_attn: bool = False
    kv_type: str = "f16"
    tensor_split: list[float] | None = None
    use_mmap: bool = True
    seed: int | None = None
    rpc_servers: list[str] | None = None  # the worker's relay ports for helper machines (core/privacy/relay.py)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class LoadInfo:
    """What the worker reports after a load: the facts as llama.cpp saw them."""

    path: str
    n_ctx: int
    n_ctx_train: int
    n_layers: int
    n_gpu_layers: int
    offloaded_layers: int | None  # from llama.cpp's own "offloaded N/M layers" log line
    offloadable_layers: int | None
    load_s: float
    chat_template: str | None
    model_name: str
    is_r1: bool
    load_log: str = field(repr=False, default="")

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> LoadInfo:
        return cls(**raw)


@dataclass(frozen=True)
class WorkerHello:
    """The worker's first message: who it is and what isolation it applied to itself."""

    pid: int
    isolation: dict[str, Any]
    python: str


def chunk_to_event(chunk: Chunk) -> dict[str, Any]:
    if isinstance(chunk, ContentChunk):
        return {"ev": "chunk", "id": chunk.request_id, "kind": "content", "text": chunk.text}
    if isinstance(chunk, ReasoningChunk):
        return {"ev": "chunk", "id": chunk.request_id, "kind": "reasoning", "text": chunk.text}
    if isinstance(chunk, NoticeChunk):
        return {"ev": "chunk", "id": chunk.request_id, "kind": "notice", "text": chunk.text}
    if isinstance(chunk, StatsChunk):
        return {"ev": "stats", "id": chunk.request_id, "stats": chunk.stats.to_dict()}
    return {"ev": "error", "id": chunk.request_id, "kind": chunk.kind, "message": chunk.message}


def event_to_chunk(ev: dict[str, Any]) -> Chunk:
    rid = str(ev.get("id", ""))
    if ev["ev"] == "chunk":
        kind = ev["kind"]
        if kind == "content":
            return ContentChunk(rid, ev["text"])
        if kind == "reasoning":
            return ReasoningChunk(rid, ev["text"])
        return NoticeChunk(rid, ev["text"])
    if ev["ev"] == "stats":
        return StatsChunk(rid, TurnStats(**ev["stats"]))
    return ErrorChunk(rid, error_kind(ev.get("kind")), str(ev.get("message", "unknown error")))
