"""``localchat hw``: CPU, RAM, GPUs, and what the installed llama.cpp build can offload to."""

from __future__ import annotations

import argparse
from typing import Any

from localchat.context import AppContext
from localchat.core.privacy.evidence import IsolationEvidence


def register(sub: Any) -> None:
    p = sub.add_parser("hw", help="detected hardware and llama.cpp backends")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run)


def run(ctx: AppContext, args: argparse.Namespace) -> int:
    from localchat.cli import emit_json
    from localchat.core.hardware.detect import GIB, SystemProbes, detect

    m = detect(SystemProbes(ctx.isolation_policy))
    if args.json:
        emit_json(m.to_dict())
        return 0
    print(f"CPU: {m.cpu_name} ({m.physical_cores} cores, {m.logical_cores} threads)")
    print(f"RAM: {m.ram_total / GIB:.1f} GiB, {m.ram_available / GIB:.1f} GiB available")
    backends = ", ".join(f"{d.get('name', '?')} ({d.get('type', '?')})" for d in m.llama_devices)
    print(f"llama.cpp {m.llama_cpp_version or '?'} devices in this build: {backends or 'none found'}")
    if m.cpu_repack_types is not None:
        print(f"CPU weight repacking (extra RAM for these types): {', '.join(m.cpu_repack_types) or 'none'}")
    evidence = IsolationEvidence.from_report(m.probe_isolation)
    if evidence is not None and m.probe_isolation is not None:
        state = f"{evidence.state()} ({evidence.mode})" if evidence.isolated else f"NOT isolated: {evidence.reason}"
        print(f"llama.cpp probed in the sandboxed worker (pid {m.probe_isolation.get('pid')}): {state}")
    for g in m.gpus:
        state = "" if g.usable else "  (not usable by this build)"
        mem = (f"{g.free_bytes / GIB:.1f} GiB free of {g.total_bytes / GIB:.1f} GiB" if g.total_bytes
               else "memory unknown")
        driver = f", driver {g.driver}" if g.driver else ""
        print(f"GPU {g.index}: {g.name} [{g.backend}{driver}] {mem}{' (unified)' if g.unified else ''}{state}")
    for n in m.notes:
        print(f"note: {n}")
    return 0
