"""``localchat --self-test``: the headless smoke test frozen builds run: the starter model loads and answers, directly
and through the local API on a loopback port, and the worker's isolation is reported on a line of its own (stderr).
Under the ``require`` policy (settings, or ``LOCALCHAT_ISOLATION=require`` as the frozen-build checks set it) a
worker that is not kernel-isolated fails the test before llama.cpp is loaded."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

from localchat.context import AppContext
from localchat.core.privacy.evidence import IsolationEvidence


def _isolation_line(iso: dict[str, Any]) -> str:
    evidence = IsolationEvidence.from_report(iso)
    if evidence is not None and evidence.isolated:
        return f"isolation: {evidence.state()} ({evidence.mode}): {evidence.reason}"
    return f"isolation: NOT isolated, monitored only: {evidence.reason if evidence else 'no isolation report'}"


def self_test(ctx: AppContext) -> int:
    from localchat.cli import emit_json, fail
    from localchat.core.chat.messages import ChatMessage, SamplingParams, TurnResult
    from localchat.core.engine.client import EngineClient
    from localchat.core.models.starter import STARTER_NAME
    from localchat.errors import IsolationRequired

    t0 = time.perf_counter()
    policy = os.environ.get("LOCALCHAT_ISOLATION") or ctx.isolation_policy
    if policy not in ("off", "auto", "require"):
        return fail(f"LOCALCHAT_ISOLATION must be off, auto or require, not {policy!r}", 2)
    ctx.ensure_starter()
    path = ctx.library.resolve(STARTER_NAME)
    client = EngineClient(isolation=policy)
    try:
        hello = client.start()
    except IsolationRequired as exc:  # the worker refused to load llama.cpp: report, then fail
        iso = dict(client.hello.isolation) if client.hello else {}
        print(_isolation_line(iso), file=sys.stderr, flush=True)
        emit_json({"ok": False, "answered": False, "isolated": False, "policy": policy, "model": STARTER_NAME,
                   "isolation": iso, "total_s": round(time.perf_counter() - t0, 3)})
        return fail(f"self-test failed: {exc}")
    isolation = dict(hello.isolation)
    print(_isolation_line(isolation), file=sys.stderr, flush=True)
    with client:
        info = client.load(path)
        result = TurnResult()
        for chunk in client.chat([ChatMessage("user", "Say hello in one word.")],
                                 SamplingParams(max_tokens=16, seed=7, temperature=0.0)):
            result.add(chunk)
        worker_pid = client.pid
        answered = result.error is None and result.stats is not None and result.stats.completion_tokens > 0
        api_error = _api_check(ctx, client, path) if answered else "not tried: the model did not answer"
    ok = answered and api_error is None
    emit_json({"ok": ok, "answered": answered, "api": api_error is None, "isolated": bool(isolation.get("isolated")),
               "policy": policy, "model": STARTER_NAME, "answer": result.text, "load_s": round(info.load_s, 3),
               "worker_pid": worker_pid, "isolation": isolation, "total_s": round(time.perf_counter() - t0, 3)})
    if not answered:
        return fail("self-test failed: " + (result.error.message if result.error else "no answer"))
    return 0 if ok else fail(f"self-test failed: the local API: {api_error}")


def _api_check(ctx: AppContext, client: Any, path: Path) -> str | None:
    """The local API as ``localchat serve`` runs it (uvicorn, starlette, the key check), on a loopback port of its
    own, asked one question with the starter model already loaded: a frozen build that lost a module uvicorn loads
    by name fails here. None when it answered, else why not."""
    import json
    import secrets
    import threading
    import urllib.request

    from localchat.core.api.host import ModelHost, ModelRef
    from localchat.core.api.server import ApiServer, ServerOptions, bind
    from localchat.core.models.starter import STARTER_NAME

    key = "lc-selftest-" + secrets.token_urlsafe(16)  # never written anywhere: this server lives a second
    host = ModelHost(lambda: {STARTER_NAME: ModelRef(STARTER_NAME, path)}, ctx.settings, 2048, engine=client)
    sock = bind("127.0.0.1", 0)
    try:
        host.load(STARTER_NAME)
        server = ApiServer(host, key, sock, ServerOptions("127.0.0.1", 0))
        ready = threading.Event()
        thread = threading.Thread(target=server.run, args=(ready.set,), name="selftest-api", daemon=True)
        thread.start()
        if not ready.wait(30):
            return "the server did not start"
        body = json.dumps({"model": STARTER_NAME, "max_tokens": 8, "temperature": 0,
                           "messages": [{"role": "user", "content": "Say hello in one word."}]}).encode()
        request = urllib.request.Request(f"{server.url}/chat/completions", body, method="POST", headers={
            "Authorization": f"Bearer {key}", "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                answer = json.loads(response.read())
            text = answer["choices"][0]["message"]["content"]
            return None if isinstance(text, str) and answer["usage"]["completion_tokens"] > 0 else "empty answer"
        except Exception as exc:  # one line: this is the self-test's verdict, not a crash
            return f"{type(exc).__name__}: {exc}"
        finally:
            server.stop()
            thread.join(10)
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    finally:
        sock.close()
        host.close(keep_engine=True)  # the client is the self-test's
