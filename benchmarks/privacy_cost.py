"""What the privacy machinery costs, measured side by side: the worker sandbox, worker start-up with and without
isolation, one socket-monitor poll, and the audit hook's overhead on unrelated audit events.

    .venv/bin/python benchmarks/privacy_cost.py [--runs N]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

from localchat.core.engine.client import EngineClient
from localchat.core.privacy.monitor import SocketMonitor, own_processes

SANDBOX = ("import json, sys; from localchat.core.privacy.sandbox import isolate_worker; "
           "print(json.dumps(isolate_worker(sys.argv[1])['duration_ms']))")
HOOK = """
import sys, time
if sys.argv[1] == "guard":
    from localchat.core.privacy.audit import AuditGuard
    AuditGuard().install()
import os
t = time.perf_counter()
for _ in range(20000):
    os.close(os.open("/dev/null", os.O_RDONLY))  # raises the "open" audit event: not ours, still dispatched
print((time.perf_counter() - t) / 20000 * 1e6)
"""


def med(xs: list[float]) -> float:
    return statistics.median(xs)


def run(code: str, arg: str) -> float:
    out = subprocess.run([sys.executable, "-c", code, arg], capture_output=True, text=True, check=True)
    return float(out.stdout)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=10)
    n = ap.parse_args().runs

    sandbox: dict[str, list[float]] = {"auto": [], "off": []}
    start: dict[str, list[float]] = {"auto": [], "off": []}
    hook: dict[str, list[float]] = {"none": [], "guard": []}
    isolated = None
    for _ in range(n):  # alternating A/B
        for policy in ("auto", "off"):
            sandbox[policy].append(run(SANDBOX, policy))
            t = time.perf_counter()
            with EngineClient(isolation=policy) as c:
                start[policy].append((time.perf_counter() - t) * 1000)
                if policy == "auto":
                    isolated = c.hello.isolation["isolated"] if c.hello else None
        for mode in ("none", "guard"):
            hook[mode].append(run(HOOK, mode))

    with EngineClient(isolation="auto") as c:
        monitor = SocketMonitor(lambda: own_processes(c.pid))
        monitor.poll()
        polls = []
        for _ in range(200):
            t = time.perf_counter()
            monitor.poll()
            polls.append((time.perf_counter() - t) * 1000)
    polls.sort()

    print(json.dumps({"isolated": isolated, "runs": n}))
    print(f"isolate_worker() inside a fresh process: auto {med(sandbox['auto']):.2f} ms "
          f"(max {max(sandbox['auto']):.2f}), off {med(sandbox['off']):.2f} ms")
    print(f"worker start to hello: auto {med(start['auto']):.0f} ms, off {med(start['off']):.0f} ms, "
          f"ratio {med(start['auto']) / med(start['off']):.3f}")
    print(f"monitor poll (app + isolated worker, 200 polls): median {med(polls):.2f} ms, "
          f"p95 {polls[int(len(polls) * 0.95)]:.2f} ms")
    print(f"an unrelated audit event (open): {med(hook['none']):.2f} µs without the guard, "
          f"{med(hook['guard']):.2f} µs with it (+{med(hook['guard']) - med(hook['none']):.2f} µs)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
