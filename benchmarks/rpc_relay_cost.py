"""What does localchat's relay cost llama.cpp's RPC backend? llama.cpp's own ``llama-bench`` on the starter with two
``rpc-server`` helpers on 127.0.0.1, connecting to them directly vs through the relay (both halves of
``core/privacy/relay.py`` in this process, the worker half listening on the host's loopback for the measurement),
alternating. Everything else is the same: helpers, model, threads, prompt and generation lengths.

    .venv/bin/python benchmarks/rpc_relay_cost.py [--runs 3] [--rpc-server …/rpc-server] [--llama-bench …/llama-bench]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
from pathlib import Path

from localchat.core.models.starter import ensure_starter_model
from localchat.core.privacy.relay import PeerRelay, WorkerRelay
from localchat.paths import machine_cache_dir

sys.path.insert(0, str(Path(__file__).resolve().parent))
from rpc_lan_mode import start_helper

TOOLS = Path(__file__).resolve().parents[1] / ".venv" / "llama-tools" / "bin"


def bench(llama_bench: Path, model: Path, servers: list[str]) -> dict[str, float]:
    out = subprocess.run([str(llama_bench), "-m", str(model), "--rpc", ",".join(servers), "-ngl", "99", "-t", "1",
                          "-p", "64", "-n", "64", "-r", "2", "-o", "json"], capture_output=True, text=True,
                         timeout=900)
    if out.returncode != 0:
        raise SystemExit(f"llama-bench failed: {out.stderr[-800:]}")
    rows = json.loads(out.stdout)
    return {("pp" if r["n_prompt"] else "tg"): float(r["avg_ts"]) for r in rows}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--rpc-server", type=Path, default=TOOLS / "rpc-server")
    ap.add_argument("--llama-bench", type=Path, default=TOOLS / "llama-bench")
    args = ap.parse_args()
    model = ensure_starter_model(machine_cache_dir(), fetch=False)
    helpers = [start_helper(args.rpc_server) for _ in range(2)]
    peers = [p for _, p in helpers]
    relay = PeerRelay(peers)
    fd = relay.open_channel()
    worker = WorkerRelay(socket.socket(fileno=os.dup(fd)), [p.endpoint for p in peers])
    relay.started()
    worker.start()
    sides = {"direct": [p.endpoint for p in peers], "through the relay": worker.endpoints}
    results: dict[str, list[dict[str, float]]] = {k: [] for k in sides}
    try:
        for run in range(args.runs):
            names = list(sides) if run % 2 == 0 else list(sides)[::-1]
            for name in names:
                results[name].append(bench(args.llama_bench, model, sides[name]))
        for name, rows in results.items():
            print(f"{name:18s} prompt {statistics.median(r['pp'] for r in rows):7.1f} tok/s   decode "
                  f"{statistics.median(r['tg'] for r in rows):6.1f} tok/s   (medians of {len(rows)}; decode "
                  f"{min(r['tg'] for r in rows):.1f}–{max(r['tg'] for r in rows):.1f})")
        for p in relay.report()["peers"]:
            print(f"relay, helper {p['peer']}: {p['connections']} connections, sent {p['bytes_sent']:,} B, "
                  f"received {p['bytes_received']:,} B")
    finally:
        worker.close()
        relay.close()
        for proc, _ in helpers:
            proc.terminate()
            proc.wait(10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
