"""``localchat --self-test``: the headless smoke test frozen builds run (starter model loads and answers)."""

from __future__ import annotations

import time

from localchat.context import AppContext


def self_test(ctx: AppContext) -> int:
    from localchat.cli import emit_json, fail
    from localchat.core.chat.messages import ChatMessage, SamplingParams, TurnResult
    from localchat.core.engine.client import EngineClient
    from localchat.core.models.starter import STARTER_NAME

    t0 = time.perf_counter()
    ctx.ensure_starter()
    path = ctx.library.resolve(STARTER_NAME)
    with EngineClient(isolation="auto") as client:
        assert client.hello is not None
        info = client.load(path)
        result = TurnResult()
        for chunk in client.chat([ChatMessage("user", "Say hello in one word.")],
                                 SamplingParams(max_tokens=16, seed=7, temperature=0.0)):
            result.add(chunk)
        isolation = client.hello.isolation
        worker_pid = client.pid
    ok = result.error is None and result.stats is not None and result.stats.completion_tokens > 0
    emit_json({"ok": ok, "model": STARTER_NAME, "answer": result.text, "load_s": round(info.load_s, 3),
               "worker_pid": worker_pid, "isolation": isolation, "total_s": round(time.perf_counter() - t0, 3)})
    return 0 if ok else fail("self-test failed: " + (result.error.message if result.error else "no answer"))
