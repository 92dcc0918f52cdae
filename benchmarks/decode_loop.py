"""Decode speed: raw llama-cpp-python vs localchat's native decode loop, side by side, runs alternating.

Four ways to stream the same answer (same model, prompt, seed, sampling, threads, context and token budget):

- ``raw chat``: ``Llama.create_chat_completion(stream=True)``, what most llama-cpp-python code does;
- ``raw generate``: ``Llama.generate`` with ``detokenize`` per token, the lowest-level high-level API;
- ``runtime``: localchat's ``LlamaRuntime.chat`` in this process (the native loop: one reused llama_batch,
  llama.cpp's sampler chain, a reused piece buffer), so the loop itself is compared without the pipe;
- ``worker``: the same through the worker process and its pipe, as the app and the CLI use it.

Decode tok/s is (tokens - 1) / (last token time - first token time) per run; medians, and ratios against
``raw generate``. Each round runs every variant once, in a rotating order, so machine noise spreads over all.
CPU time per token (all threads of the process that runs the model: this one, or the worker) is printed next to
it: on a machine shared with other work it moves less than wall-clock speed.

With ``--llama-bench PATH`` (````make llama-tools`` builds it from the installed binding's own llama.cpp) the rounds
also run llama.cpp's ``llama-bench`` — tg (``-n TOKENS``) for decode and pp (``-p PROMPT``) for prompt processing,
same threads, same flash-attention setting, one repetition per round — and prompt processing is measured for the
other paths too, cold (nothing of the prompt cached): raw ``Llama.eval`` of the prompt's tokens, and localchat's
prompt tokens / time to first token in process and through the worker (a different system line each run, so no
cached prefix is reused). Ratios are then against llama-bench.

    .venv/bin/python benchmarks/decode_loop.py [--runs 5] [--tokens 256] [--threads 2] [--model PATH]
    .venv/bin/python benchmarks/decode_loop.py --llama-bench .venv/llama-tools/bin/llama-bench --tokens 128
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from typing import Any

import llama_cpp
import psutil

from localchat.core.chat.messages import ChatMessage, ContentChunk, ReasoningChunk, SamplingParams, StatsChunk
from localchat.core.engine.client import EngineClient
from localchat.core.engine.protocol import LoadOptions
from localchat.core.engine.runtime import LlamaRuntime
from localchat.core.models.starter import ensure_starter_model
from localchat.paths import machine_cache_dir

PROMPT = "Write a detailed essay about the history of lighthouses, their keepers and the technology they used."
N_CTX = 2048

Result = tuple[float, int, float]  # tokens/s, tokens, CPU seconds per token


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


def cpu_of(pid: int | None) -> Callable[[], float]:
    """CPU seconds (user + system, all threads) used so far by ``pid`` (this process when None)."""
    if pid is None:
        return time.process_time
    proc = psutil.Process(pid)

    def read() -> float:
        t = proc.cpu_times()
        return float(t.user + t.system)
    return read


def with_cpu(run: Callable[[int], tuple[float, int]], cpu: Callable[[], float]) -> Callable[[int], Result]:
    def measured(seed: int) -> Result:
        c0 = cpu()
        tps, n = run(seed)
        return tps, n, (cpu() - c0) / max(n, 1)
    return measured


def llama_bench(path: str, model: str, threads: int, *, n_prompt: int = 0, n_gen: int = 0,
                gpu_layers: int = 0) -> Result:
    """One llama-bench repetition (after its own warm-up); CPU per token counts its load and warm-up too."""
    cmd = [path, "-m", model, "-t", str(threads), "-p", str(n_prompt), "-n", str(n_gen), "-r", "1", "-fa", "off",
           "-ngl", str(gpu_layers), "-o", "json"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=1800).stdout
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    (test,) = json.loads(out)
    n = n_prompt or n_gen
    cpu = (after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime) / max(n, 1)
    return float(test["avg_ts"]), n, cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--tokens", type=int, default=256)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--model", default=None)
    ap.add_argument("--llama-bench", default=None, metavar="PATH",
                    help="llama.cpp's llama-bench (make llama-tools): compare decode and prompt processing with it")
    ap.add_argument("--prompt", type=int, default=512, help="prompt tokens for prompt processing (with --llama-bench)")
    ap.add_argument("--gpu-layers", type=int, default=0, help="layers to offload, on every side (GPU builds)")
    args = ap.parse_args()
    model = args.model or str(ensure_starter_model(machine_cache_dir()))
    if args.llama_bench and not os.access(args.llama_bench, os.X_OK):
        sys.exit(f"no llama-bench at {args.llama_bench}: run `make llama-tools`")
    sampling = SamplingParams(max_tokens=args.tokens, temperature=0.8, top_p=0.95, top_k=40, min_p=0.05, seed=0)
    options = LoadOptions(n_ctx=N_CTX, n_threads=args.threads, n_gpu_layers=args.gpu_layers)
    messages = [ChatMessage("user", PROMPT)]

    raw = llama_cpp.Llama(model_path=model, n_ctx=N_CTX, n_threads=args.threads, n_threads_batch=args.threads,
                          n_batch=options.n_batch, n_ubatch=options.n_ubatch, n_gpu_layers=args.gpu_layers,
                          verbose=False)
    prompt_tokens = raw.tokenize(_chatml(raw).encode(), add_bos=False, special=True)
    runtime = LlamaRuntime()
    runtime.load(model, options)
    client = EngineClient(isolation="off")
    client.start()
    client.load(model, options)
    here, worker = cpu_of(None), cpu_of(client.pid)

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

    variants: dict[str, Callable[[int], Result]] = {
        "raw chat": with_cpu(raw_chat, here),
        "raw generate": with_cpu(raw_generate, here),
        "runtime": with_cpu(ours(lambda m, s: runtime.chat("bench", m, s)), here),
        "worker": with_cpu(ours(client.chat), worker),
    }
    pp: dict[str, Callable[[int], Result]] = {}
    if args.llama_bench:
        bench = args.llama_bench
        variants["llama-bench"] = lambda _seed: llama_bench(bench, model, args.threads, n_gen=args.tokens,
                                                            gpu_layers=args.gpu_layers)
        long_text = _prompt_of(runtime, args.prompt)

        def pp_messages(seed: int) -> list[ChatMessage]:
            # a different first line each run: nothing of the prompt is in the cache
            return [ChatMessage("system", f"Run {seed}."), ChatMessage("user", long_text)]

        def raw_eval(seed: int) -> Result:
            tokens = runtime.prompt_tokens(pp_messages(seed))[1]
            raw.reset()  # type: ignore[no-untyped-call]
            raw._ctx.kv_cache_clear()  # type: ignore[no-untyped-call]
            c0, t0 = time.process_time(), time.perf_counter()
            raw.eval(tokens)
            dt, cpu = time.perf_counter() - t0, time.process_time() - c0
            return len(tokens) / dt, len(tokens), cpu / len(tokens)

        def ttft(chat: Callable[..., Iterable[Any]], cpu: Callable[[], float]) -> Callable[[int], Result]:
            def run(seed: int) -> Result:
                c0 = cpu()
                stats = [c.stats for c in chat(pp_messages(seed), SamplingParams(max_tokens=1, seed=seed))
                         if isinstance(c, StatsChunk)]
                n = stats[0].prompt_tokens
                return n / stats[0].ttft_s, n, (cpu() - c0) / n
            return run

        pp = {
            "llama-bench": lambda _seed: llama_bench(bench, model, args.threads, n_prompt=args.prompt,
                                                     gpu_layers=args.gpu_layers),
            "raw eval": raw_eval,
            "runtime": ttft(lambda m, s: runtime.chat("pp", m, s), here),
            "worker": ttft(client.chat, worker),
        }

    for name, run in variants.items():  # warm-up: page in the weights, settle the caches
        print(f"warm-up {name}: {run(99)[0]:.1f} tok/s", file=sys.stderr, flush=True)
    results: dict[str, list[Result]] = {name: [] for name in variants}
    pp_results: dict[str, list[Result]] = {name: [] for name in pp}
    names, pp_names = list(variants), list(pp)
    load0 = os.getloadavg()
    for i in range(args.runs):
        for table, runs, order in ((variants, results, names), (pp, pp_results, pp_names)):
            for name in order[i % len(order):] + order[:i % len(order)] if order else []:
                r = table[name](1000 + i)
                print(f"round {i + 1} {name}: {r[0]:.1f} tok/s, {r[1]} tokens, {r[2] * 1000:.1f} ms CPU/token",
                      file=sys.stderr, flush=True)
                runs[name].append(r)
    load1 = os.getloadavg()
    client.close()
    runtime.unload()

    print(f"model {model}\n{args.runs} runs, {args.threads} threads, n_ctx {N_CTX}; load average "
          f"{load0[0]:.1f} at start, {load1[0]:.1f} at end ({os.cpu_count()} CPUs)\n")
    base_name = "llama-bench" if args.llama_bench else "raw generate"
    _table(f"decode, {args.tokens} tokens", results, base_name)
    if pp:
        print()
        _table(f"prompt processing, {args.prompt} tokens, cold", pp_results, "llama-bench")


def _table(title: str, results: dict[str, list[Result]], base_name: str) -> None:
    base = statistics.median(r[0] for r in results[base_name])
    print(f"{title}\n{'variant':<14}{'tok/s (median)':>16}{'min':>9}{'max':>9}{'tokens':>8}"
          f"{'CPU ms/token':>14}{'vs ' + base_name:>18}")
    for name, rs in results.items():
        tps = [r[0] for r in rs]
        print(f"{name:<14}{statistics.median(tps):>16.1f}{min(tps):>9.1f}{max(tps):>9.1f}"
              f"{statistics.median(r[1] for r in rs):>8.0f}{statistics.median(r[2] for r in rs) * 1000:>14.2f}"
              f"{statistics.median(tps) / base:>18.3f}")


def _prompt_of(runtime: LlamaRuntime, n_tokens: int) -> str:
    """A user message whose whole prompt (template included) is about ``n_tokens`` long."""
    words: list[str] = []
    while len(runtime.prompt_tokens([ChatMessage("system", "Run 0."),
                                     ChatMessage("user", " ".join(words))])[1]) < n_tokens:
        words.append(f"item{len(words)} is red.")
    return " ".join(words[:-1] if len(words) > 1 else words)


def _chatml(llm: llama_cpp.Llama) -> str:
    # the starter's own template for one user message with its default system line (what the others send)
    from localchat.core.engine.chat_template import ChatTemplate

    template = llm.metadata.get("tokenizer.chat_template") or ""
    return ChatTemplate(template).render([ChatMessage("user", PROMPT)])


if __name__ == "__main__":
    main()
