"""What does the local API cost? A streamed turn through ``localchat serve`` (HTTP + SSE, the official ``openai``
client) vs the same turn through ``EngineClient`` directly, alternating in one run — and the API as the window runs
it (the switch on the Network page): the same server in this process, on the *same* worker as the direct side,
its turns taking the worker through ``EngineTurns`` as the window's engine thread does (the direct side too).

All sides run the same model, prompt, seeds, sampling, context and load plan (``serve`` in its own worker, same
isolation policy); only one side generates at a time, the order rotating each run. TTFT is measured from the call
to the first content piece, decode tok/s from the first to the last content piece.

    .venv/bin/python benchmarks/api_overhead.py [--runs 5] [--tokens 256] [--isolation auto] [--pause 2] [--threads N]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import openai
import psutil

from localchat.core.api.server import ApiServer, ServerOptions, bind
from localchat.core.api.shared import EngineTurns, SharedModelHost
from localchat.core.chat.messages import ChatMessage, ContentChunk, SamplingParams
from localchat.core.engine.client import EngineClient
from localchat.core.engine.load_options import plan_load
from localchat.core.models.starter import ensure_starter_model
from localchat.paths import machine_cache_dir
from localchat.settings import Settings

PROMPT = "Write a detailed essay about the history of lighthouses, their keepers and the technology they used."
KEY = "bench-key-" + "k" * 24
N_CTX = 2048


def timed(start: Callable[[], Iterable[Any]], is_token: Callable[[Any], bool],
          extra_cpu: Callable[[], float] = lambda: 0.0) -> tuple[float, float, int, float, float]:
    """The clock starts before the request is made: an HTTP stream's create() returns only with the headers.

    Also the CPU seconds the app side spent (this process — client, and for the window side the server too — plus
    ``extra_cpu``, the ``serve`` process): unlike wall time it hardly moves when other programs hold the cores.
    The last value is ``extra_cpu``'s share alone (the ``serve`` process without its client).
    """
    extra0 = extra_cpu()
    cpu0 = time.process_time() + extra0
    t0 = time.perf_counter()
    first = last = 0.0
    n = 0
    for item in start():
        if is_token(item):
            now = time.perf_counter()
            if n == 0:
                first = now
            last = now
            n += 1
    extra1 = extra_cpu()
    return first - t0, (n - 1) / (last - first), n, time.process_time() + extra1 - cpu0, extra1 - extra0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--tokens", type=int, default=256)
    ap.add_argument("--isolation", default="auto", choices=("off", "auto"))
    ap.add_argument("--threads", type=int, default=None,
                    help="llama.cpp threads on every side (default: the planner's, all physical cores)")
    ap.add_argument("--pause", type=float, default=2.0,
                    help="seconds between runs: after a turn each worker evaluates the answer for a next turn; "
                         "without a pause that work would run during the next side's turn on the other worker")
    args = ap.parse_args()
    model = ensure_starter_model(machine_cache_dir(), fetch=True)
    print(f"llama.cpp threads: {args.threads or 'planner default'}")
    print(f"load average at the start: {' '.join(f'{x:.2f}' for x in os.getloadavg())} ({os.cpu_count()} CPUs)")
    home = Path(tempfile.mkdtemp(prefix="lc-bench-api-"))
    env = dict(os.environ, LOCALCHAT_HOME=str(home))
    settings = Settings(n_ctx=N_CTX, n_threads=args.threads)
    (home / "config").mkdir(parents=True)  # serve reads its threads from the settings, as the app does
    (home / "config" / "settings.json").write_text(json.dumps({"n_threads": args.threads}), encoding="utf-8")
    server = subprocess.Popen([sys.executable, "-m", "localchat", "serve", "--port", "0", "--json", "--api-key", KEY,
                               "--ctx", str(N_CTX), "--isolation", args.isolation, "--model", "smollm2-135m"],
                              stdout=subprocess.PIPE, text=True, env=env)
    assert server.stdout is not None
    ready = json.loads(server.stdout.readline())
    api = openai.OpenAI(base_url=ready["url"], api_key=KEY, max_retries=0)
    direct = EngineClient(isolation=args.isolation)
    direct.start()
    options, _ = plan_load(model, n_ctx=N_CTX, settings=settings)
    direct.load(model, options)
    # the window's case: the server in this process over the direct side's worker, turns taken through EngineTurns
    turns = EngineTurns(direct)
    host = SharedModelHost(turns, lambda: ("smollm2-135m", model), lambda: {"smollm2-135m"},
                           settings)
    window_server = ApiServer(host, KEY, bind("127.0.0.1", 0), ServerOptions(port=0))
    up = threading.Event()
    threading.Thread(target=window_server.run, args=(up.set,), daemon=True).start()
    up.wait(30)
    window_api = openai.OpenAI(base_url=window_server.url, api_key=KEY, max_retries=0)
    ours: dict[str, list[float]] = {f"{side}_{m}": [] for side in ("api", "direct", "window")
                                    for m in ("ttft", "tps", "cpu", "server_cpu")}

    serve_proc = psutil.Process(server.pid)

    def serve_cpu() -> float:
        t = serve_proc.cpu_times()
        return float(t.user + t.system)

    def via_api(seed: int, api: openai.OpenAI = api,
                extra: Callable[[], float] = serve_cpu) -> tuple[float, float, int, float, float]:
        def start() -> Iterable[Any]:
            return api.chat.completions.create(
                model="smollm2-135m", messages=[{"role": "user", "content": PROMPT}], stream=True,
                max_tokens=args.tokens, seed=seed, temperature=0.8, top_p=0.95)

        return timed(start, lambda c: bool(c.choices and c.choices[0].delta.content), extra)

    def via_client(seed: int) -> tuple[float, float, int, float, float]:
        # the API's sampling for a plain request: app defaults (top-k 40, min-p 0.05) with the request's values
        sampling = SamplingParams(max_tokens=args.tokens, seed=seed, temperature=0.8, top_p=0.95)

        def start() -> Iterable[Any]:
            with turns.hold(f"direct-{seed}"):  # as the window's engine thread takes the worker
                yield from direct.chat([ChatMessage("user", PROMPT)], sampling)

        return timed(start, lambda c: isinstance(c, ContentChunk))

    def via_window(seed: int) -> tuple[float, float, int, float, float]:
        return via_api(seed, window_api, lambda: 0.0)

    try:
        via_api(0), via_client(0), via_window(0)  # warm all: page cache, KV cache of the prompt
        sides = [("api", via_api), ("direct", via_client), ("window", via_window)]
        for i in range(args.runs):
            order = sides[i % 3:] + sides[: i % 3]
            for name, run in order:
                time.sleep(args.pause)
                ttft, tps, n, cpu, serve_s = run(100 + i)
                ours[f"{name}_ttft"].append(ttft)
                ours[f"{name}_tps"].append(tps)
                ours[f"{name}_cpu"].append(cpu / n)
                ours[f"{name}_server_cpu"].append(serve_s / n)
                print(f"run {i} {name:6s}: TTFT {ttft * 1000:6.1f} ms, {tps:6.1f} tok/s ({n} tokens), app CPU "
                      f"{cpu / n * 1000:.2f} ms/token (serve process alone {serve_s / n * 1000:.2f})", flush=True)
    finally:
        api.close()
        window_api.close()
        window_server.stop()
        host.close()
        direct.close()
        server.send_signal(signal.SIGINT)
        server.wait(30)
        server.stdout.close()
    med = {k: statistics.median(v) for k, v in ours.items()}
    d_tps, d_ttft = med["direct_tps"], med["direct_ttft"]
    print(f"\nmedian of {args.runs}: | measure | EngineClient | serve API | ratio | window API | ratio |")
    print(f"| decode tok/s | {d_tps:.1f} | {med['api_tps']:.1f} | {med['api_tps'] / d_tps:.3f} | "
          f"{med['window_tps']:.1f} | {med['window_tps'] / d_tps:.3f} |")
    print(f"| TTFT ms | {d_ttft * 1000:.1f} | {med['api_ttft'] * 1000:.1f} | "
          f"{(med['api_ttft'] - d_ttft) * 1000:+.1f} ms | {med['window_ttft'] * 1000:.1f} | "
          f"{(med['window_ttft'] - d_ttft) * 1000:+.1f} ms |")
    print(f"| app-side CPU ms per token | {med['direct_cpu'] * 1000:.2f} | {med['api_cpu'] * 1000:.2f} | "
          f"{(med['api_cpu'] - med['direct_cpu']) * 1000:+.2f} | {med['window_cpu'] * 1000:.2f} | "
          f"{(med['window_cpu'] - med['direct_cpu']) * 1000:+.2f} |")
    print(f"| of which the serve process (server, no client) | - | {med['api_server_cpu'] * 1000:.2f} | | | |")
    print(f"load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
