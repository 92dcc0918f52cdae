"""Running one chat turn and keeping its answer, without Qt.

:func:`stream_turn` drives an engine (the worker's :class:`~localchat.core.engine.client.EngineClient`) through one
:class:`~localchat.core.chat.conversation.TurnRequest` and adds what the worker does not do itself: stop sequences,
and refusing to leave history out when the caller says so. Closing the stream early cancels the turn and waits
for its end, so the engine is free for the next one.

:class:`Turn` gathers the chunks of one answer: the text so far, the outcome, and — given a conversation store —
the saved row, checkpointed while it streams so that even a killed app keeps the answer.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal, Protocol

from localchat.core.chat.conversation import TurnRequest
from localchat.core.chat.messages import (
    ChatMessage,
    Chunk,
    ContentChunk,
    ErrorChunk,
    NoticeChunk,
    ReasoningChunk,
    SamplingParams,
    StatsChunk,
    TurnStats,
)
from localchat.core.chat.store import ConversationStore

CHECKPOINT_S = 2.0  # a streaming answer is saved this often
ERROR_HINTS = {
    "context_overflow": "Shorten the message, start a new chat, or raise the context length in Settings.",
    "out_of_memory": "The model ran out of memory: lower the context length or the GPU layers in Settings.",
}

Status = Literal["complete", "stopped", "error"]


class ChatEngine(Protocol):
    """What a turn needs from the engine (``EngineClient``)."""

    def chat(self, messages: Sequence[ChatMessage], sampling: SamplingParams | None = None,
             request_id: str | None = None) -> Iterator[Chunk]: ...

    def cancel(self) -> None: ...


# -- streaming ---------------------------------------------------------------------------------------------


class StopMatcher:
    """Cuts streamed text before the first stop sequence; holds back only what could still become one."""

    def __init__(self, stops: Sequence[str]) -> None:
        self.stops = [s for s in stops if s]
        self._buf = ""
        self.hit = False

    def feed(self, text: str) -> str:
        """The text that is safe to show now ('' once a stop sequence was seen)."""
        if self.hit:
            return ""
        buf = self._buf + text
        cut = min((i for i in (buf.find(s) for s in self.stops) if i >= 0), default=-1)
        if cut >= 0:
            self.hit, self._buf = True, ""
            return buf[:cut]
        keep = max((_partial_suffix(buf, s) for s in self.stops), default=0)
        self._buf = buf[len(buf) - keep:] if keep else ""
        return buf[: len(buf) - keep]

    def flush(self) -> str:
        out, self._buf = self._buf, ""
        return "" if self.hit else out


def _partial_suffix(text: str, tag: str) -> int:
    for n in range(min(len(tag) - 1, len(text)), 0, -1):
        if text.endswith(tag[:n]):
            return n
    return 0


def stream_turn(engine: ChatEngine, request: TurnRequest) -> Iterator[Chunk]:
    """The chunks of one turn: content / reasoning / notices, then exactly one ``StatsChunk`` or ``ErrorChunk``.

    A stop sequence ends the answer before it (``finish_reason="stop"``; the worker is cancelled at once). With
    ``drop_history=False`` the worker's "earlier messages left out" notice becomes a ``context_overflow`` error.

    Raises:
        WorkerCrashed: the worker died mid-turn (from the engine).
    """
    rid = request.request_id
    stops = StopMatcher(request.stop) if request.stop else None
    chunks = engine.chat(list(request.messages), request.sampling, request_id=rid)
    ended = False
    try:
        for chunk in chunks:
            if isinstance(chunk, NoticeChunk) and not request.drop_history:
                engine.cancel()
                _drain(chunks)
                ended = True
                yield ErrorChunk(rid, "context_overflow",
                                 f"the messages do not fit this model's context ({chunk.text} otherwise); send "
                                 "fewer or shorter messages, or load the model with a longer context")
                return
            if isinstance(chunk, ContentChunk) and stops is not None:
                if stops.hit:
                    continue
                text = stops.feed(chunk.text)
                if stops.hit:
                    engine.cancel()
                if text:
                    yield ContentChunk(rid, text)
                continue
            if isinstance(chunk, (StatsChunk, ErrorChunk)):
                ended = True
                if isinstance(chunk, StatsChunk):
                    _record_speed(engine, chunk.stats)
                if isinstance(chunk, StatsChunk) and stops is not None:
                    if tail := stops.flush():
                        yield ContentChunk(rid, tail)
                    if stops.hit:
                        chunk = StatsChunk(rid, replace(chunk.stats, finish_reason="stop"))
            yield chunk
    finally:
        if not ended:  # the consumer went away (a closed stream, a client that hung up): stop the worker now
            engine.cancel()
            _drain(chunks)


def _record_speed(engine: ChatEngine, stats: TurnStats) -> None:
    """Keep the turn's decode speed for the loaded file, so the Models page and ``plan`` show it as measured."""
    from localchat.core.hardware.speed_log import record_decode

    info = getattr(engine, "info", None)  # EngineClient's LoadInfo; test doubles may have none
    path, layers = getattr(info, "path", None), getattr(info, "n_gpu_layers", None)
    if isinstance(path, str) and path:
        record_decode(None, path, stats.decode_tokens_per_s, completion_tokens=stats.completion_tokens,
                      n_gpu_layers=layers if isinstance(layers, int) else None)


def _drain(chunks: Iterator[Chunk]) -> None:
    """Read a cancelled turn to its end (its stats chunk arrives promptly), so the engine is free again."""
    try:
        for _ in chunks:
            pass
    except Exception:  # a worker that died while we drained: the next turn restarts it
        pass


# -- one answer --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TurnOutcome:
    status: Status
    stats: dict[str, Any] = field(default_factory=dict)
    error: str = ""


@dataclass(frozen=True)
class TurnUpdate:
    """What one chunk changed: text to show (``kind`` content / reasoning / notice), or the end of the turn."""

    kind: Literal["content", "reasoning", "notice", "end", "ignored"]
    text: str = ""
    outcome: TurnOutcome | None = None


def error_text(kind: str, message: str) -> str:
    """An engine error as the user reads it, with what to do about it."""
    return f"{message} {ERROR_HINTS.get(kind, '')}".strip()


def crash_text(message: str) -> str:
    return (f"The model stopped unexpectedly: {message}. Your conversation is saved; Retry or ask again to "
            "restart it.")


class Turn:
    """One answer as it streams.

    Args:
        request_id: chunks of other requests are ignored.
        model: recorded with the saved answer.
        store, conversation_id: where the answer is saved (optional: the API keeps nothing).
        clock: for checkpoints (tests pass their own).
    """

    def __init__(self, request_id: str, model: str = "", *, store: ConversationStore | None = None,
                 conversation_id: int | None = None, checkpoint_s: float = CHECKPOINT_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.request_id = request_id
        self.model = model
        self.store = store
        self.conversation_id = conversation_id
        self.checkpoint_s = checkpoint_s
        self._clock = clock
        self._last_checkpoint = clock()
        self.content = ""
        self.reasoning = ""
        self.notices: list[str] = []
        self.stats: TurnStats | None = None
        self.error: ErrorChunk | None = None
        self.outcome: TurnOutcome | None = None
        self.row_id: int | None = None

    def feed(self, chunk: Chunk) -> TurnUpdate:
        if chunk.request_id != self.request_id or self.outcome is not None:
            return TurnUpdate("ignored")  # a superseded request, or after the end
        if isinstance(chunk, ContentChunk):
            self.content += chunk.text
            return TurnUpdate("content", chunk.text)
        if isinstance(chunk, ReasoningChunk):
            self.reasoning += chunk.text
            return TurnUpdate("reasoning", chunk.text)
        if isinstance(chunk, NoticeChunk):
            self.notices.append(chunk.text)
            return TurnUpdate("notice", chunk.text)
        if isinstance(chunk, StatsChunk):
            self.stats = chunk.stats
            status: Status = "stopped" if chunk.stats.finish_reason == "cancelled" else "complete"
            return TurnUpdate("end", outcome=TurnOutcome(status, chunk.stats.to_dict()))
        self.error = chunk
        return TurnUpdate("end", outcome=TurnOutcome("error", {}, error_text(chunk.kind, chunk.message)))

    def crashed(self, message: str) -> TurnOutcome:
        """The worker died mid-turn."""
        return TurnOutcome("error", {}, crash_text(message))

    # -- saving --------------------------------------------------------------------------------------------

    def checkpoint_due(self) -> bool:
        return self._clock() - self._last_checkpoint >= self.checkpoint_s

    def checkpoint(self) -> None:
        """Save the answer so far, marked "stopped" until it completes."""
        if self.store is None or self.conversation_id is None or not (self.content or self.reasoning):
            return
        self._last_checkpoint = self._clock()
        if self.row_id is None:
            self.row_id = self.store.add_message(self.conversation_id, "assistant", self.content, self.reasoning,
                                                 status="stopped", stats={"model": self.model}).id
        else:
            self.store.update_message(self.row_id, content=self.content, reasoning=self.reasoning)

    def finish(self, outcome: TurnOutcome) -> None:
        """Record the end: ``outcome.stats`` are saved with the model (and the error, if any)."""
        self.outcome = outcome
        if self.store is None or self.conversation_id is None:
            return
        if not (self.content or self.reasoning or outcome.status != "complete"):
            return
        saved = dict(outcome.stats, model=self.model)
        if outcome.error:
            saved["error"] = outcome.error
        if self.row_id is not None:
            self.store.update_message(self.row_id, content=self.content, reasoning=self.reasoning,
                                      status=outcome.status, stats=saved)
        else:
            self.row_id = self.store.add_message(self.conversation_id, "assistant", self.content, self.reasoning,
                                                 status=outcome.status, stats=saved).id


def run_turn(engine: ChatEngine, request: TurnRequest, on_update: Callable[[TurnUpdate], None] | None = None,
             model: str = "") -> Turn:
    """Stream one turn to its end and return it gathered (``localchat chat``, tests, the API without streaming)."""
    turn = Turn(request.request_id, model)
    for chunk in stream_turn(engine, request):
        update = turn.feed(chunk)
        if update.outcome is not None:
            turn.finish(update.outcome)
        if on_update is not None:
            on_update(update)
    return turn
