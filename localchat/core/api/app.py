"""The Starlette application: OpenAI's ``/v1/models`` and ``/v1/chat/completions``, ``/health``, and the guards.

Guards, in order, on every request: the Host header must name this machine (a loopback name or address; with
``allow_lan`` any IP literal too) — a DNS-rebinding page reaches us under its own name and is refused; a request
from a browser origin is refused unless that origin was allowed (only then are CORS headers sent); the API key
(``Authorization: Bearer …``, compared in constant time) on everything but ``/health``; a body size limit.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from localchat.core.api import schema
from localchat.core.api.host import ModelHost, RunningTurn, worker_down
from localchat.core.api.schema import ApiError, CompletionParams
from localchat.core.chat.conversation import CONVERSATION_SAMPLING_KEYS, TurnRequest, effective_sampling, model_history
from localchat.core.chat.messages import Chunk, ContentChunk, ErrorChunk, ReasoningChunk, StatsChunk, TurnStats
from localchat.core.privacy.audit import is_loopback

log = logging.getLogger(__name__)
T = TypeVar("T")
MAX_BODY = 4 * 1024 * 1024


@dataclass(frozen=True)
class Guard:
    api_key: str
    allow_lan: bool = False
    allowed_origins: frozenset[str] = frozenset()
    max_body: int = MAX_BODY


def host_name(header: str | None) -> str | None:
    """The host part of a Host header (``[::1]:8800`` → ``::1``), ``None`` when malformed."""
    if not header:
        return None
    h = header.strip()
    if h.startswith("["):
        end = h.find("]")
        return h[1:end] if end > 0 else None
    if h.count(":") == 1:
        h, _, port = h.partition(":")
        if not port.isdigit():
            return None
    elif ":" in h:
        return None
    return h.lower().rstrip(".") or None


def host_allowed(header: str | None, allow_lan: bool) -> bool:
    """Loopback names and addresses; with ``allow_lan`` also any IP literal (rebinding needs a name)."""
    name = host_name(header)
    if name is None:
        return False
    if is_loopback(name):
        return True
    if allow_lan:
        try:
            ipaddress.ip_address(name)
            return True
        except ValueError:
            return False
    return False


def error_response(err: ApiError) -> JSONResponse:
    return JSONResponse(err.body(), status_code=err.status, headers=err.headers)


class GuardMiddleware:
    def __init__(self, app: ASGIApp, guard: Guard) -> None:
        self.app = app
        self.guard = guard

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        g = self.guard
        headers = Headers(scope=scope)
        if not host_allowed(headers.get("host"), g.allow_lan):
            log.warning("api: refused a request for Host %r", headers.get("host"))
            await self._refuse(scope, receive, send, ApiError(
                403, "this server answers only requests addressed to this machine (Host header refused)",
                "invalid_request_error", "host_not_allowed"))
            return
        origin = headers.get("origin")
        cors = origin is not None and origin in g.allowed_origins
        if origin is not None and not cors:
            await self._refuse(scope, receive, send, ApiError(
                403, f"requests from the web origin {origin!r} are not allowed (start the server with "
                     "--allow-origin to allow one)", "invalid_request_error", "origin_not_allowed"))
            return
        extra: list[tuple[bytes, bytes]] = []
        if cors:
            assert origin is not None
            extra = [(b"access-control-allow-origin", origin.encode("latin-1")), (b"vary", b"Origin")]
            if scope["method"] == "OPTIONS":
                await Response(status_code=204, headers={
                    "Access-Control-Allow-Origin": origin, "Vary": "Origin",
                    "Access-Control-Allow-Methods": "GET, POST, OPTIONS",
                    "Access-Control-Allow-Headers": "Authorization, Content-Type",
                    "Access-Control-Max-Age": "600"})(scope, receive, send)
                return
        if scope["path"] != "/health" and not self._authorized(headers.get("authorization")):
            await self._refuse(scope, receive, send, ApiError(
                401, "Incorrect or missing API key: send 'Authorization: Bearer <key>' with the key localchat serve "
                     "printed", "invalid_request_error", "invalid_api_key",
                headers={"WWW-Authenticate": "Bearer"}), extra)
            return
        length = headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > g.max_body):
            await self._refuse(scope, receive, send, too_large(g.max_body), extra)
            return

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start" and extra:
                message = dict(message, headers=[*message.get("headers", []), *extra])
            await send(message)

        await self.app(scope, receive, send_with_cors)

    def _authorized(self, header: str | None) -> bool:
        scheme, _, token = (header or "").partition(" ")
        given = token.strip().encode() if scheme.lower() == "bearer" else b""
        # constant time, and always compared: a missing key takes as long as a wrong one
        return hmac.compare_digest(given, self.guard.api_key.encode()) and bool(given)

    @staticmethod
    async def _refuse(scope: Scope, receive: Receive, send: Send, err: ApiError,
                      extra: list[tuple[bytes, bytes]] | None = None) -> None:
        response = error_response(err)
        for k, v in extra or []:
            response.headers.append(k.decode(), v.decode())
        await response(scope, receive, send)


def too_large(limit: int) -> ApiError:
    return ApiError(413, f"the request body is larger than the limit of {limit // 1024} KiB",
                    "invalid_request_error", "request_too_large")


class ClientGone(Exception):
    """The client hung up while its request waited or ran."""


async def _disconnected(request: Request) -> None:
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


async def until_disconnect(request: Request, work: Coroutine[Any, Any, T]) -> T:
    """Run ``work``; if the client hangs up first, cancel it and raise :class:`ClientGone`."""
    task = asyncio.ensure_future(work)
    gone = asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait({task, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        gone.cancel()
    if task.done():
        return task.result()
    task.cancel()
    try:
        await task
    except (asyncio.CancelledError, ApiError, ClientGone):
        pass
    raise ClientGone()


class Api:
    def __init__(self, host: ModelHost, guard: Guard) -> None:
        self.host = host
        self.guard = guard

    async def models(self, request: Request) -> JSONResponse:
        data = [schema.model_object(name, _mtime(ref.path)) for name, ref in sorted(self.host.models().items())]
        return JSONResponse({"object": "list", "data": data})

    async def model(self, request: Request) -> JSONResponse:
        name = request.path_params["model"]
        return JSONResponse(schema.model_object(name, _mtime(self.host.ref(name).path)))

    async def health(self, request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok", "worker": "running" if self.host.client.alive else "down",
                             "queued": self.host.queued})

    async def chat_completions(self, request: Request) -> Response:
        body = await self._json(request)
        params = schema.parse_completion(body, max(self.host.n_ctx, 1))
        self.host.ref(params.model)  # an unknown model is a 404 before the request queues
        try:
            turn, first = await until_disconnect(request, self._begin(params))
        except ClientGone:
            return Response(status_code=499)  # nobody reads it; the turn was cancelled or never started
        if params.stream:
            return StreamingResponse(self._sse(params, turn, first), media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        try:
            content, reasoning, stats = await until_disconnect(request, self._gather(turn, first))
        except ClientGone:
            return Response(status_code=499)
        return JSONResponse(schema.completion(_completion_id(turn), params.model, content, reasoning, stats))

    async def _json(self, request: Request) -> Any:
        data = bytearray()
        async for part in request.stream():  # also bounds a chunked body, which has no Content-Length
            data += part
            if len(data) > self.guard.max_body:
                raise too_large(self.guard.max_body)
        try:
            return json.loads(bytes(data))
        except ValueError as exc:
            raise ApiError(400, f"the request body is not valid JSON: {exc}") from None

    async def _begin(self, params: CompletionParams) -> tuple[RunningTurn, Chunk | None]:
        """Queue, load the model asked for, start the turn and wait for its first chunk — so an error known before
        the answer starts (a prompt over the context) is an HTTP error, also for a stream."""
        host = self.host
        await host.acquire()
        turn: RunningTurn | None = None
        try:
            info = await host.run_engine(lambda: host.load(params.model))
            turn = host.start_turn(self._request(params, info.n_ctx, info.is_r1))
        finally:
            if turn is None:
                host.release()
        try:
            first = await turn.next()
            if isinstance(first, ErrorChunk):
                raise _engine_error(first)
            return turn, first
        except BaseException:
            turn.cancel()
            raise

    def _request(self, p: CompletionParams, n_ctx: int, is_r1: bool) -> TurnRequest:
        overrides = {"temperature": p.temperature, "top_p": p.top_p, "seed": p.seed,
                     "max_tokens": p.max_tokens or n_ctx}  # like OpenAI: by default, until the context is full
        sampling = effective_sampling(self.host.settings, overrides, is_r1, keys=(*CONVERSATION_SAMPLING_KEYS, "seed"))
        return TurnRequest(tuple(model_history(p.messages, is_r1)), sampling, request_id=uuid.uuid4().hex,
                           stop=p.stop, drop_history=False)

    async def _gather(self, turn: RunningTurn, first: Chunk | None) -> tuple[str, str, TurnStats | None]:
        content, reasoning, stats = [], [], None
        chunk = first
        try:
            while chunk is not None:
                if isinstance(chunk, ContentChunk):
                    content.append(chunk.text)
                elif isinstance(chunk, ReasoningChunk):
                    reasoning.append(chunk.text)
                elif isinstance(chunk, StatsChunk):
                    stats = chunk.stats
                elif isinstance(chunk, ErrorChunk):
                    raise _engine_error(chunk)
                chunk = await turn.next()
        finally:
            turn.cancel()  # a no-op once the turn has ended
        return "".join(content), "".join(reasoning), stats

    async def _sse(self, p: CompletionParams, turn: RunningTurn, first: Chunk | None) -> AsyncIterator[str]:
        cid, created, usage = _completion_id(turn), int(time.time()), p.include_usage

        def event(obj: dict[str, Any]) -> str:
            return f"data: {json.dumps(obj, separators=(',', ':'))}\n\n"

        stats: TurnStats | None = None
        try:
            yield event(schema.chunk(cid, p.model, created, {"role": "assistant", "content": ""}, None, usage))
            chunk = first
            while chunk is not None:
                if isinstance(chunk, ContentChunk):
                    yield event(schema.chunk(cid, p.model, created, {"content": chunk.text}, None, usage))
                elif isinstance(chunk, ReasoningChunk):
                    yield event(schema.chunk(cid, p.model, created, {"reasoning_content": chunk.text}, None, usage))
                elif isinstance(chunk, StatsChunk):
                    stats = chunk.stats
                elif isinstance(chunk, ErrorChunk):
                    yield event(_engine_error(chunk).body())
                    return
                try:
                    chunk = await turn.next()
                except ApiError as exc:  # the worker died mid-answer: said in the stream, as OpenAI does
                    yield event(exc.body())
                    return
            finish = schema.FINISH[stats.finish_reason] if stats else "stop"
            yield event(schema.chunk(cid, p.model, created, {}, finish, usage))
            if usage:
                yield event(schema.usage_chunk(cid, p.model, created, stats))
            yield "data: [DONE]\n\n"
        finally:
            turn.cancel()  # the client hung up (Starlette cancels this generator): stop the worker at once


def _completion_id(turn: RunningTurn) -> str:
    return f"chatcmpl-{turn.request.request_id}"


def _engine_error(chunk: ErrorChunk) -> ApiError:
    if chunk.kind == "context_overflow":
        return ApiError(400, chunk.message, "invalid_request_error", "context_length_exceeded", "messages")
    if chunk.kind == "no_model":
        return worker_down(chunk.message)
    return ApiError(500, chunk.message, "server_error", chunk.kind)


def _mtime(path: Any) -> int:
    try:
        return int(path.stat().st_mtime)
    except OSError:
        return 0


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return error_response(exc)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code)
    return JSONResponse(schema.error_body(str(exc.detail), "invalid_request_error", code),
                        status_code=exc.status_code)


def create_app(host: ModelHost, guard: Guard) -> ASGIApp:
    api = Api(host, guard)
    handlers: dict[Any, Callable[[Request, Exception], Awaitable[Response]]] = {
        ApiError: _api_error, HTTPException: _http_error}
    app = Starlette(routes=[
        Route("/v1/models", api.models, methods=["GET"]),
        Route("/v1/models/{model:path}", api.model, methods=["GET"]),
        Route("/v1/chat/completions", api.chat_completions, methods=["POST"]),
        Route("/health", api.health, methods=["GET"]),
    ], exception_handlers=handlers)
    return GuardMiddleware(app, guard)
