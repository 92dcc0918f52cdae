"""``localchat --self-test``: the headless smoke test frozen builds run: the starter model loads and answers, and the
worker's isolation is reported on a line of its own (stderr). Under the ``require`` policy (settings, or
``LOCALCHAT_ISOLATION=require`` as the frozen-build checks set it) a worker that is not kernel-isolated fails the
test before llama.cpp is loaded."""

from __future__ import annotations

import os
import sys
import time
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
    ok = result.error is None and result.stats is not None and result.stats.completion_tokens > 0
    emit_json({"ok": ok, "answered": ok, "isolated": bool(isolation.get("isolated")), "policy": policy,
               "model": STARTER_NAME, "answer": result.text, "load_s": round(info.load_s, 3),
               "worker_pid": worker_pid, "isolation": isolation, "total_s": round(time.perf_counter() - t0, 3)})
    return 0 if ok else fail("self-test failed: " + (result.error.message if result.error else "no answer"))
