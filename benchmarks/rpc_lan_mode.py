"""What does LAN mode cost? The starter model answering in the sandboxed worker on this CPU vs split over two
llama.cpp ``rpc-server`` helpers on 127.0.0.1 (reached through the worker's relay and the app), alternating.

Both sides use the same prompt, seed, sampling and context; each side has its own worker (loaded once); the order
alternates every run. Helpers on loopback measure the cost of llama.cpp's RPC backend plus localchat's relay (two
extra copies of every byte: worker socket → app → helper), not a real network. Also reported: bytes sent and received
per generated token through the relay, and load time.

    .venv/bin/python benchmarks/rpc_lan_mode.py [--runs 4] [--tokens 96] [--rpc-server .venv/llama-tools/bin/rpc-server]
"""

from __future__ import annotations

import argparse
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from localchat.core.chat.messages import ChatMessage, ContentChunk, SamplingParams, StatsChunk
from localchat.core.engine.client import EngineClient
from localchat.core.engine.protocol import LoadOptions
from localchat.core.models.starter import ensure_starter_model
from localchat.core.privacy.relay import Peer
from localchat.paths import machine_cache_dir

ROOT = Path(__file__).resolve().parents[1]
PROMPT = "Write a detailed essay about the history of lighthouses, their keepers and the technology they used."


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_helper(binary: Path) -> tuple[subprocess.Popen[bytes], Peer]:
    port = free_port()
    proc = subprocess.Popen([str(binary), "-H", "127.0.0.1", "-p", str(port), "-t", "1"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    want = f":{port:04X} "
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with open("/proc/net/tcp") as fh:
            if any(want in line and line.split()[3] == "0A" for line in fh):
                return proc, Peer("127.0.0.1", port)
        time.sleep(0.1)
    proc.kill()
    raise SystemExit("rpc-server did not start")


def turn(client: EngineClient, tokens: int) -> dict[str, float]:
    sent0 = received0 = 0
    report = client.relay_report()
    if report:
        sent0 = sum(p["bytes_sent"] for p in report["peers"])
        received0 = sum(p["bytes_received"] for p in report["peers"])
    stats = None
    for chunk in client.chat([ChatMessage("user", PROMPT)], SamplingParams(max_tokens=tokens, seed=1,
                                                                          temperature=0.0)):
        if isinstance(chunk, StatsChunk):
            stats = chunk.stats
        elif not isinstance(chunk, ContentChunk):
            pass
    assert stats is not None, "the turn ended without stats"
    out = {"tok_s": stats.decode_tokens_per_s, "ttft_s": stats.ttft_s, "tokens": float(stats.completion_tokens)}
    report = client.relay_report()
    if report and stats.completion_tokens:
        n = stats.prompt_tokens + stats.completion_tokens
        out["sent_per_token"] = (sum(p["bytes_sent"] for p in report["peers"]) - sent0) / n
        out["received_per_token"] = (sum(p["bytes_received"] for p in report["peers"]) - received0) / n
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=4)
    ap.add_argument("--tokens", type=int, default=96)
    ap.add_argument("--rpc-server", type=Path, default=ROOT / ".venv" / "llama-tools" / "bin" / "rpc-server")
    args = ap.parse_args()
    model = ensure_starter_model(machine_cache_dir(), fetch=False)
    helpers = [start_helper(args.rpc_server) for _ in range(2)]
    local = EngineClient(isolation="auto")
    lan = EngineClient(isolation="auto", peers=[p for _, p in helpers])
    results: dict[str, list[dict[str, float]]] = {"local CPU": [], "2 helpers (loopback)": []}
    try:
        t0 = time.perf_counter()
        local.load(model, LoadOptions(n_ctx=1024, n_threads=1))
        load_local = time.perf_counter() - t0
        lan.start()
        t0 = time.perf_counter()
        info = lan.load(model, LoadOptions(n_ctx=1024, n_threads=1, n_gpu_layers=-1, rpc_servers=lan.rpc_servers))
        load_lan = time.perf_counter() - t0
        print(f"load: local {load_local:.2f} s, LAN mode {load_lan:.2f} s ({info.offloaded_layers} layers on helpers)")
        for run in range(args.runs):
            order = [("local CPU", local), ("2 helpers (loopback)", lan)]
            for name, client in order if run % 2 == 0 else order[::-1]:
                results[name].append(turn(client, args.tokens))
        for name, rows in results.items():
            line = (f"{name:22s} decode {statistics.median(r['tok_s'] for r in rows):6.1f} tok/s (median of "
                    f"{len(rows)}; min {min(r['tok_s'] for r in rows):.1f}, max {max(r['tok_s'] for r in rows):.1f})  "
                    f"TTFT {statistics.median(r['ttft_s'] for r in rows):.3f} s")
            if "sent_per_token" in rows[0]:
                line += (f"  relay per token: sent {statistics.median(r['sent_per_token'] for r in rows):,.0f} B, "
                         f"received {statistics.median(r['received_per_token'] for r in rows):,.0f} B")
            print(line)
        report: Any = lan.relay_report()
        for p in report["peers"]:
            print(f"helper {p['peer']}: {p['connections']} connections, sent {p['bytes_sent']:,} B, received "
                  f"{p['bytes_received']:,} B")
    finally:
        local.close()
        lan.close()
        for proc, _ in helpers:
            proc.terminate()
            proc.wait(10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
