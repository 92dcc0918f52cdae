"""Predicted decode speed against llama.cpp's measured decode on this CPU.

For each model (the starter, SmolLM2-135M Q4_1, and shape-exact Qwen2.5-1.5B / 3B / 7B Q4_K_M files written sparse
with tests/model_shapes.py — zero weights decode at the real speed, the bytes are still read) and each thread count,
the model is loaded through localchat's EngineClient (the sandboxed worker, as the app does) on the CPU, a few turns
are decoded, and the best turn's decode tok/s (the one least disturbed by other programs) is set against
``predict_decode`` at the same context fill. Prints the probe's figures, a table and the error of each row.

Each row gives two predictions: the app's (from the cached CPU probe, which keeps the best figures its first runs
saw) and one from the same probe made in this sitting, just before the row is measured — on a virtual machine whose
neighbours take memory bandwidth the two differ, and only the second separates the model's error from the probe's.

    .venv/bin/python benchmarks/speed_prediction.py [--models starter,1.5b,3b] [--threads 1,2] [--turns 3]
        [--tokens 48] [--json]

Other programs running at the same time make llama.cpp slower (its threads spin while they wait for each other):
the load average is printed before and after, and a row measured on a busy machine is marked.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from localchat.core.chat.messages import ChatMessage, ErrorChunk, SamplingParams, StatsChunk
from localchat.core.engine.client import EngineClient
from localchat.core.engine.protocol import LoadOptions
from localchat.core.hardware.detect import Machine, SystemProbes
from localchat.core.hardware.planner import ModelShape, plan_offload
from localchat.core.hardware.speed import cached_cpu_probe, machine_speed, predict_decode, probe_cpu
from localchat.core.models.gguf_info import read_gguf
from localchat.core.models.starter import ensure_starter_model
from localchat.paths import machine_cache_dir

PROMPT = "Tell me a long story about a lighthouse keeper and the storms she saw."
N_CTX = 2048
# Qwen2.5 shapes (layers, width, heads, KV heads, FFN, vocab): the R1 distills' smaller siblings
SHAPES = {
    "1.5b": (28, 1536, 12, 2, 8960, 151936, "Qwen2.5-1.5B Q4_K_M shape"),
    "3b": (36, 2048, 16, 2, 11008, 151936, "Qwen2.5-3B Q4_K_M shape"),
    "7b": (28, 3584, 28, 4, 18944, 152064, "Qwen2.5-7B Q4_K_M shape"),
}


def _byte_tokens() -> list[str]:
    """GPT-2's byte-to-character table: with these 256 tokens first, any prompt tokenises (byte by byte)."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars, extra = {}, 0
    for b in range(256):
        if b in keep:
            chars[b] = chr(b)
        else:
            chars[b] = chr(256 + extra)
            extra += 1
    return [chars[b] for b in range(256)]


def write_shape(path: Path, key: str) -> Path:
    """tests/model_shapes.py's Qwen2 writer, with byte tokens in the vocabulary so that a prompt tokenises (its
    placeholder vocabulary tokenises any text to nothing, and llama.cpp then has no logits to sample from)."""
    import gguf
    from model_shapes import write_qwen2_shape

    layers, embd, heads, kv, ff, vocab, name = SHAPES[key]
    original = gguf.GGUFWriter.add_token_list

    def with_bytes(self: Any, tokens: Any) -> None:
        tokens = list(tokens)
        tokens[:256] = _byte_tokens()
        original(self, tokens)

    gguf.GGUFWriter.add_token_list = with_bytes  # type: ignore[method-assign]
    try:
        return write_qwen2_shape(path, n_layers=layers, n_embd=embd, n_heads=heads, n_kv=kv, n_ff=ff, n_vocab=vocab,
                                 n_ctx_train=32768, name=name)
    finally:
        gguf.GGUFWriter.add_token_list = original  # type: ignore[method-assign]


def _turn(client: EngineClient, tokens: int, seed: int) -> tuple[float, int, int, float]:
    """One turn: (decode tok/s by the wall clock, prompt tokens, completion tokens, worker CPU seconds)."""
    import psutil

    proc = psutil.Process(client.pid)
    cpu0 = sum(proc.cpu_times()[:2])
    sampling = SamplingParams(max_tokens=tokens, seed=seed, temperature=0.8, top_p=0.95, top_k=40, min_p=0.05)
    for chunk in client.chat([ChatMessage("user", PROMPT)], sampling):
        if isinstance(chunk, ErrorChunk):
            raise RuntimeError(chunk.message)
        if isinstance(chunk, StatsChunk):
            st = chunk.stats
            return st.decode_tokens_per_s, st.prompt_tokens, st.completion_tokens, sum(proc.cpu_times()[:2]) - cpu0
    raise RuntimeError("the turn ended without its statistics")


def measure(client: EngineClient, path: Path, threads: int, turns: int, tokens: int) -> dict[str, Any]:
    """Wall-clock decode tok/s per turn (best and median), and the worker's CPU seconds per decoded token from a
    short and a long turn with the same seed (the same prompt work): robust to other programs on one thread."""
    client.load(path, LoadOptions(n_ctx=N_CTX, n_threads=threads))
    walls, cpu_tps = [], []
    n_past = 0
    for seed in range(turns):
        tps, prompt, done, cpu_long = _turn(client, tokens, seed)
        _tps, _p, done_short, cpu_short = _turn(client, 4, seed)
        if done > 1:
            walls.append(tps)
            n_past = prompt + done // 2
        if done - done_short >= 8 and cpu_long > cpu_short:
            cpu_tps.append(threads * (done - done_short) / (cpu_long - cpu_short))
    return {"best": max(walls), "median": statistics.median(walls), "n_past": n_past,
            "cpu_time_tps": max(cpu_tps) if cpu_tps else None}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="starter,1.5b,3b")
    ap.add_argument("--threads", default=None, help="thread counts, e.g. 1,2 (default: 1 and the physical cores)")
    ap.add_argument("--turns", type=int, default=3)
    ap.add_argument("--tokens", type=int, default=48)
    ap.add_argument("--nice", type=int, default=0,
                    help="run the worker at this niceness, e.g. -10 (root) to measure on a machine others use")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    probes = SystemProbes("off")
    cpu_name, physical, logical = probes.cpu()
    ram_total, ram_avail = probes.ram()
    machine = Machine(cpu_name, physical, logical, ram_total, ram_avail)
    thread_counts = [int(t) for t in args.threads.split(",")] if args.threads else sorted({1, physical})
    load_before = os.getloadavg()
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="speed-") as tmp:
        paths: dict[str, Path] = {}
        for key in args.models.split(","):
            paths[key] = ensure_starter_model(machine_cache_dir()) if key == "starter" else \
                write_shape(Path(tmp) / f"{key}.gguf", key)
        with EngineClient(isolation="auto") as client:
            if args.nice:
                try:  # a higher priority than other programs' (the benchmark's own worker only)
                    os.setpriority(os.PRIO_PROCESS, client.pid or 0, args.nice)
                    for tid in os.listdir(f"/proc/{client.pid}/task"):
                        os.setpriority(os.PRIO_PROCESS, int(tid), args.nice)
                except (OSError, ValueError) as exc:
                    print(f"cannot raise the worker's priority: {exc}", file=sys.stderr)
            for path in paths.values():
                shape = ModelShape.from_gguf(read_gguf(path))
                plan = plan_offload(shape, machine, N_CTX)
                for threads in thread_counts:
                    probe = cached_cpu_probe(cpu_name, threads)  # what the app uses: the best figures it kept
                    speed = machine_speed(machine, threads=threads, cpu_probe=probe)
                    now = probe_cpu(cpu_name, threads)  # the same probe, made now (the cache is not touched)
                    speed_now = machine_speed(machine, threads=threads, cpu_probe=now)
                    load = os.getloadavg()[0]
                    m = measure(client, path, threads, args.turns, args.tokens)
                    best, n_past = m["best"], m["n_past"]
                    pred = predict_decode(shape, plan, speed, n_past=n_past)
                    pred_now = predict_decode(shape, plan, speed_now, n_past=n_past)
                    rows.append({
                        "model": shape.name, "threads": threads, "predicted": round(pred.value, 2),
                        "low": round(pred.low, 2), "high": round(pred.high, 2), "bound": pred.bound,
                        "measured_best": round(best, 2),
                        "measured_median": round(m["median"], 2),
                        "cpu_time_tps": round(m["cpu_time_tps"], 2) if m["cpu_time_tps"] else None,
                        "error_pct": round(100 * (pred.value - best) / best, 1), "n_past": n_past,
                        "error_vs_cpu_time_pct": round(100 * (pred.value - m["cpu_time_tps"]) / m["cpu_time_tps"], 1)
                        if m["cpu_time_tps"] else None,
                        "load_avg": round(load, 2), "busy": load > 0.5 * logical,
                        "read_gbs": round(probe.read_bytes_per_s / 1e9, 2),
                        "thread_gflops": round(probe.thread_flops / 1e9, 2),
                        "weights_gb": round(shape.weights_bytes / 1e9, 3),
                        "predicted_probe_now": round(pred_now.value, 2),
                        "error_probe_now_pct": round(100 * (pred_now.value - best) / best, 1),
                        "read_gbs_now": round(now.read_bytes_per_s / 1e9, 2),
                        "thread_gflops_now": round(now.thread_flops / 1e9, 2),
                    })
                    if not args.json:
                        r = rows[-1]
                        busy = f"  [busy machine: load {r['load_avg']}]" if r["busy"] else ""
                        print(f"{r['model']:<30} {threads} thr  predicted {r['predicted']:7.2f} "
                              f"({r['low']:.2f}–{r['high']:.2f}, {r['bound']})  measured {r['measured_best']:7.2f} "
                              f"(median {r['measured_median']:.2f})  error {r['error_pct']:+5.1f} %  |  by CPU time "
                              f"{r['cpu_time_tps']}  error {r['error_vs_cpu_time_pct']} %  |  probe made now "
                              f"({r['read_gbs_now']} GB/s, {r['thread_gflops_now']} G/s): predicted "
                              f"{r['predicted_probe_now']:.2f}, error {r['error_probe_now_pct']:+.1f} %{busy}",
                              flush=True)
    summary = {"cpu": cpu_name, "physical_cores": physical, "load_before": load_before, "load_after": os.getloadavg(),
               "time": time.strftime("%Y-%m-%d %H:%M"), "rows": rows,
               "mean_abs_error_pct": round(statistics.mean(abs(r["error_pct"]) for r in rows), 1) if rows else None}
    if args.json:
        print(json.dumps(summary, indent=1))
    else:
        print(f"CPU {cpu_name}, {physical} cores; probe: {rows[0]['read_gbs'] if rows else '?'} GB/s streaming reads, "
              f"{rows[0]['thread_gflops'] if rows else '?'} G multiply-adds/s per thread; load average "
              f"{load_before[0]:.1f} before, {os.getloadavg()[0]:.1f} after; mean |error| "
              f"{summary['mean_abs_error_pct']} %")
    return 0


if __name__ == "__main__":
    sys.exit(main())
