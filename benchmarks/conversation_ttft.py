"""Time to first token across one conversation: turn 10 against turn 1, through the worker, as the app runs turns.

Each run is a new conversation of short turns (a different system line each run, so nothing of an earlier run is
cached) with the starter model: ten questions, answers of at most ``--tokens`` tokens, each turn's history built as
the app builds it (the answers go back as assistant messages). TTFT is measured here, from the request to the
first answer chunk, so it includes the pipe and any wait for the worker; the worker's CPU time over the same
interval (all its threads) is printed too: on a machine shared with other work it says what the turn cost when the
wall clock says mostly how long the CPU was elsewhere.

After a turn the worker evaluates the answer for the next turn (runtime._prepare_next);
``--pause`` is the time before the next question (a user reading and typing). Runs alternate between pause 0 (the
next question at once: the worker is still busy with the answer) and ``--pause``.

    .venv/bin/python benchmarks/conversation_ttft.py [--runs 5] [--turns 10] [--tokens 48] [--pause 2] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import psutil

from localchat.core.chat.messages import ChatMessage, ContentChunk, ReasoningChunk, SamplingParams, StatsChunk
from localchat.core.engine.client import EngineClient
from localchat.core.engine.protocol import LoadOptions
from localchat.core.models.starter import ensure_starter_model
from localchat.paths import machine_cache_dir

QUESTIONS = [
    "What is a lighthouse?", "Who kept them?", "How did the lamps work?", "What fuel did they burn?",
    "What is a Fresnel lens?", "How far could the light be seen?", "Why did they blink?",
    "Are there keepers today?", "Which is the oldest lighthouse?", "Name one famous keeper.",
    "What replaced the lamps?", "Where can I visit one?",
]


def conversation(client: EngineClient, run: int, turns: int, tokens: int,
                 pause: float) -> list[tuple[float, float, int]]:
    """(client TTFT, worker CPU seconds to the first token, prompt tokens) of each turn of one new conversation."""
    assert client.pid is not None
    worker = psutil.Process(client.pid)

    def cpu() -> float:
        t = worker.cpu_times()
        return float(t.user + t.system)

    history = [ChatMessage("system", f"You are a helpful assistant. Conversation {run}.")]
    out = []
    for t in range(turns):
        history.append(ChatMessage("user", QUESTIONS[t % len(QUESTIONS)]))
        sampling = SamplingParams(max_tokens=tokens, seed=run * 100 + t, temperature=0.7)
        answer: list[str] = []
        first = first_cpu = 0.0
        c0, t0 = cpu(), time.perf_counter()
        stats = None
        for chunk in client.chat(history, sampling):
            if isinstance(chunk, (ContentChunk, ReasoningChunk)) and not first:
                first, first_cpu = time.perf_counter() - t0, cpu() - c0
            if isinstance(chunk, ContentChunk):
                answer.append(chunk.text)
            if isinstance(chunk, StatsChunk):
                stats = chunk.stats
        assert stats is not None, "the turn failed"
        out.append((first, first_cpu, stats.prompt_tokens))
        history.append(ChatMessage("assistant", "".join(answer)))
        time.sleep(pause)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--turns", type=int, default=10)
    ap.add_argument("--tokens", type=int, default=48)
    ap.add_argument("--pause", type=float, default=2.0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--model", default=None)
    ap.add_argument("--gpu-layers", type=int, default=0, help="layers to offload (GPU builds)")
    args = ap.parse_args()
    model = args.model or str(ensure_starter_model(machine_cache_dir()))
    client = EngineClient(isolation="off")
    client.start()
    client.load(model, LoadOptions(n_ctx=4096, n_threads=args.threads, n_gpu_layers=args.gpu_layers))
    conversation(client, 0, 2, args.tokens, 0.0)  # warm-up: page in the weights
    pauses = [0.0, args.pause]
    results: dict[float, list[list[tuple[float, float, int]]]] = {p: [] for p in pauses}
    load0 = os.getloadavg()
    for i in range(args.runs):
        for pause in pauses if i % 2 == 0 else pauses[::-1]:
            turns = conversation(client, 1 + i * len(pauses) + pauses.index(pause), args.turns, args.tokens, pause)
            results[pause].append(turns)
            print(f"run {i + 1} pause {pause:g} s: TTFT " + " ".join(f"{c * 1000:.0f}" for c, _w, _n in turns) +
                  " ms; worker CPU " + " ".join(f"{w * 1000:.0f}" for _c, w, _n in turns) + " ms",
                  file=sys.stderr, flush=True)
    load1 = os.getloadavg()
    client.close()

    last = args.turns - 1
    print(f"model {model}\n{args.runs} conversations per pause, {args.turns} turns of at most {args.tokens} tokens, "
          f"{args.threads} threads; load average {load0[0]:.1f} at start, {load1[0]:.1f} at end "
          f"({os.cpu_count()} CPUs)\n")
    print(f"{'pause':>7}{'prompt t1':>11}{'prompt t' + str(args.turns):>12}{'TTFT t1 ms':>12}"
          f"{'TTFT t' + str(args.turns) + ' ms':>14}{'ratio':>8}{'CPU t1 ms':>11}"
          f"{'CPU t' + str(args.turns) + ' ms':>13}{'CPU ratio':>11}")
    for pause, convs in results.items():
        t1 = statistics.median(c[0][0] for c in convs)
        tn = statistics.median(c[last][0] for c in convs)
        w1 = statistics.median(c[0][1] for c in convs)
        wn = statistics.median(c[last][1] for c in convs)
        ratio = statistics.median(c[last][0] / c[0][0] for c in convs)
        cpu_ratio = statistics.median(c[last][1] / c[0][1] for c in convs if c[0][1] > 0)
        print(f"{pause:>6g}s{convs[0][0][2]:>11}{convs[0][last][2]:>12}{t1 * 1000:>12.0f}{tn * 1000:>14.0f}"
              f"{ratio:>8.2f}{w1 * 1000:>11.0f}{wn * 1000:>13.0f}{cpu_ratio:>11.2f}")


if __name__ == "__main__":
    main()
