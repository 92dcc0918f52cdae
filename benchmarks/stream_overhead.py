"""What does the worker process cost? Raw llama-cpp-python in one process vs our worker → pipe → consumer.

Same model, prompt, seed, sampling, threads and token budget; runs alternate A/B so machine noise hits both.
Prints medians and the ratios (ours / raw) of decode tok/s and TTFT, then cancel latency (cancel() → the turn's
final chunk) during decoding and during prompt processing.

    .venv/bin/python benchmarks/stream_overhead.py [--runs 5] [--tokens 256] [--model PATH]
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time

from localchat.core.chat.messages import ChatMessage, ContentChunk, SamplingParams, StatsChunk
from localchat.core.engine.client import EngineClient
from localchat.core.engine.protocol import LoadOptions
from localchat.core.models.starter import ensure_starter_model
from localchat.paths import machine_cache_dir

PROMPT = "Write a detailed essay about the history of lighthouses, their keepers and the technology they used."


def timed(stream, is_token) -> tuple[float, float, int]:  # type: ignore[no-untyped-def]
    """(TTFT, decode tok/s, tokens) of a stream, counting the items ``is_token`` accepts. The clock starts when
    the stream is created (before its first item is requested)."""
    t0 = time.perf_counter()
    first = last = 0.0
    n = 0
    for item in stream:
        if is_token(item):
            now = time.perf_counter()
            if n == 0:
                first = now
            last = now
            n += 1
    return first - t0, (n - 1) / (last - first), n


def raw_run(llm, tokens: int, seed: int) -> tuple[float, float, int]:  # type: ignore[no-untyped-def]
    stream = llm.create_chat_completion([{"role": "user", "content": PROMPT}], stream=True, max_tokens=tokens,
                                        seed=seed, temperature=0.8, top_p=0.95, top_k=40, min_p=0.05)
    return timed(stream, lambda c: bool(c["choices"][0]["delta"].get("content")))


def ours_run(client: EngineClient, tokens: int, seed: int) -> tuple[float, float, int]:
    sampling = SamplingParams(max_tokens=tokens, seed=seed, temperature=0.8, top_p=0.95, top_k=40, min_p=0.05)
    return timed(client.chat([ChatMessage("user", PROMPT)], sampling), lambda c: isinstance(c, ContentChunk))


def cancel_latency(client: EngineClient, during_prompt: bool) -> float:
    prompt = ("Summarise: " + " ".join(f"item{i} is blue." for i in range(480))) if during_prompt else PROMPT
    fired = [0.0]

    def fire() -> None:
        fired[0] = time.perf_counter()
        client.cancel()

    timer = threading.Timer(0.08, fire) if during_prompt else None
    if timer:
        timer.start()
    end = 0.0
    for chunk in client.chat([ChatMessage("user", prompt)], SamplingParams(max_tokens=400, seed=1)):
        if not during_prompt and isinstance(chunk, ContentChunk) and not fired[0]:
            fire()
        if isinstance(chunk, StatsChunk):
            end = time.perf_counter()
            assert chunk.stats.finish_reason == "cancelled", chunk.stats
            if during_prompt:
                assert chunk.stats.completion_tokens == 0, "cancel landed after prompt processing"
    if not end or not fired[0]:
        raise RuntimeError("the turn ended without a cancelled stats chunk")
    return end - fired[0]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--tokens", type=int, default=256)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--model", default=None)
    args = ap.parse_args()
    model = args.model or str(ensure_starter_model(machine_cache_dir()))

    import llama_cpp  # the raw side lives in this process on purpose

    llm = llama_cpp.Llama(model, n_ctx=2048, n_threads=args.threads, n_threads_batch=args.threads, verbose=False)
    client = EngineClient(isolation="auto")
    client.start()
    client.load(model, LoadOptions(n_ctx=4096, n_threads=args.threads))
    raw_run(llm, 16, 0)  # warm-up both
    ours_run(client, 16, 0)

    raw, ours = [], []
    for i in range(args.runs):
        raw.append(raw_run(llm, args.tokens, 100 + i))
        ours.append(ours_run(client, args.tokens, 100 + i))
    med = statistics.median
    r_ttft, r_tps = med(r[0] for r in raw), med(r[1] for r in raw)
    o_ttft, o_tps = med(o[0] for o in ours), med(o[1] for o in ours)
    print(f"model: {model}")
    print(f"runs: {args.runs} alternating, {args.tokens} max tokens, {args.threads} threads")
    print(f"tokens per run  raw {[r[2] for r in raw]}  ours {[o[2] for o in ours]}")
    print(f"decode tok/s    raw {r_tps:8.1f}   ours {o_tps:8.1f}   ratio ours/raw {o_tps / r_tps:.3f}")
    print(f"TTFT ms         raw {r_ttft * 1e3:8.1f}   ours {o_ttft * 1e3:8.1f}   ratio ours/raw {o_ttft / r_ttft:.3f}")
    dec = [cancel_latency(client, False) for _ in range(3)]
    pro = [cancel_latency(client, True) for _ in range(3)]
    print(f"cancel latency ms  during decode: median {med(dec) * 1e3:.1f} (max {max(dec) * 1e3:.1f}); "
          f"during prompt: median {med(pro) * 1e3:.1f} (max {max(pro) * 1e3:.1f})")
    client.close()


if __name__ == "__main__":
    main()
