"""Decode speed: raw llama-cpp-python vs localchat's native decode loop, side by side, runs alternating.

Four ways to stream the same answer (same model, prompt, seed, sampling, threads, context and token budget):

- ``raw chat``: ``Llama.create_chat_completion(stream=True)``, what most llama-cpp-python code does;
- ``raw generate``: ``Llama.generate`` with ``detokenize`` per token, the lowest-level high-level API;
- ``runtime``: localchat's ``LlamaRuntime.chat`` in this process (the native loop: one reused llama_batch,
  llama.cpp's sampler chain, a reused piece buffer), so the loop itself is compared without the pipe;
- ``worker``: the same through the worker process and its pipe, as the app and the CLI use it.

Decode tok/s is (tokens - 1) / (last token time - first token time) per run; medians, and ratios against
``raw generate``. Each round runs every variant once, in a rotating order, so machine noise spreads over all.

    .venv/bin/python benchmarks/decode_loop.py [--runs 5] [--tokens 256] [--threads 2] [--model PATH]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable, Iterable
from typing import Any

import llama_cpp

from localchat.core.chat.messages import ChatMessage, ContentChunk, ReasoningChunk, SamplingParams
from localchat.core.engine.client import EngineClient
from localchat.core.engine.protocol import LoadOptions
from localchat.core.engine.runtime import LlamaRuntime
from localchat.core.models.starter import ensure_starter_model
from localchat.paths import machine_cache_dir

PROMPT = "Write a detailed essay about the history of lighthouses, their keepers and the technology they used."
N_CTX = 2048


def timed(stream: Iterable[Any], is_token: Callable[[Any], bool]) -> tuple[float, int]:
    first = last = 0.0
    n = 0
    for item in stream:
        if is_token(item):
            now = time.perf_counter()
            if n == 0:
                first = now
            last = now
            n += 1
    return ((n - 1) / (last - first) if n > 1 and last > first else 0.0), n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--tokens", type=int, default=256)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--model", default=None)
    args = ap.parse_args()
    model = args.model or str(ensure_starter_model(machine_cache_dir()))
    sampling = SamplingParams(max_tokens=args.tokens, temperature=0.8, top_p=0.95, top_k=40, min_p=0.05, seed=0)
    options = LoadOptions(n_ctx=N_CTX, n_threads=args.threads)
    messages = [ChatMessage("user", PROMPT)]

    raw = llama_cpp.Llama(model_path=model, n_ctx=N_CTX, n_threads=args.threads, n_threads_batch=args.threads,
                          verbose=False)
    prompt_tokens = raw.tokenize(_chatml(raw).encode(), add_bos=False, special=True)
    runtime = LlamaRuntime()
    runtime.load(model, options)
    client = EngineClient(isolation="off")
    client.start()
    client.load(model, options)

    def raw_chat(seed: int) -> tuple[float, int]:
        stream = raw.create_chat_completion([{"role": "user", "content": PROMPT}], stream=True,
                                            max_tokens=args.tokens, seed=seed, temperature=0.8, top_p=0.95,
                                            top_k=40, min_p=0.05)
        return timed(stream, lambda c: bool(c["choices"][0]["delta"].get("content")))

    def raw_generate(seed: int) -> tuple[float, int]:
        def tokens() -> Iterable[bytes]:
            raw.set_seed(seed)
            for n, tok in enumerate(raw.generate(prompt_tokens, top_k=40, top_p=0.95, min_p=0.05, temp=0.8)):
                if llama_cpp.llama_vocab_is_eog(raw._model.vocab, tok) or n >= args.tokens:
                    return
                yield raw.detokenize([tok])
        return timed(tokens(), lambda _b: True)

    def ours(chat: Callable[..., Iterable[Any]]) -> Callable[[int], tuple[float, int]]:
        def run(seed: int) -> tuple[float, int]:
            s = SamplingParams.from_dict({**sampling.to_dict(), "seed": seed})
            return timed(chat(messages, s), lambda c: isinstance(c, (ContentChunk, ReasoningChunk)))
        return run

    variants: dict[str, Callable[[int], tuple[float, int]]] = {
        "raw chat": raw_chat,
        "raw generate": raw_generate,
        "runtime": ours(lambda m, s: runtime.chat("bench", m, s)),
        "worker": ours(client.chat),
    }
    for name, run in variants.items():  # warm-up: page in the weights, settle the caches
        print(f"warm-up {name}: {run(99)[0]:.1f} tok/s", file=sys.stderr, flush=True)
    results: dict[str, list[float]] = {name: [] for name in variants}
    counts: dict[str, list[int]] = {name: [] for name in variants}
    names = list(variants)
    for i in range(args.runs):
        for name in names[i % len(names):] + names[:i % len(names)]:
            tps, n = variants[name](i)
            print(f"round {i + 1} {name}: {tps:.1f} tok/s, {n} tokens", file=sys.stderr, flush=True)
            results[name].append(tps)
            counts[name].append(n)
    client.close()
    runtime.unload()

    base = statistics.median(results["raw generate"])
    print(f"model {model}\n{args.runs} runs x {args.tokens} tokens, {args.threads} threads, n_ctx {N_CTX}\n")
    print(f"{'variant':<14}{'decode tok/s (median)':>24}{'min':>9}{'max':>9}{'tokens':>9}{'vs raw generate':>18}")
    for name in names:
        r = results[name]
        print(f"{name:<14}{statistics.median(r):>24.1f}{min(r):>9.1f}{max(r):>9.1f}"
              f"{statistics.median(counts[name]):>9.0f}{statistics.median(r) / base:>18.3f}")


def _chatml(llm: llama_cpp.Llama) -> str:
    # the starter's own template for one user message with its default system line (what the others send)
    from localchat.core.engine.chat_template import ChatTemplate

    template = llm.metadata.get("tokenizer.chat_template") or ""
    return ChatTemplate(template).render([ChatMessage("user", PROMPT)])


if __name__ == "__main__":
    main()
