"""``localchat netcheck``: run the privacy checks and print the evidence report.

Starts an inference worker with isolation ``auto``, runs one short chat turn on a local model (so the evidence
covers inference, not just an idle worker) while the socket monitor and the audit guard watch, then prints the
report. It never downloads anything: without a local model it checks an idle worker and says so. Exit status: 0 when
the worker was kernel-isolated and nothing left the machine; 1 when the worker is not kernel-isolated (the reason
is printed first, on stderr); 2 when a connection beyond the machine (or an unexpected audit event) was seen.

LAN mode (``--rpc A,B``): the turn's model is split over those helper machines through the worker's relay
(docs/RPC.md), and the claim becomes "only these peers": the worker still has no interface but its loopback, and the
app connected only to the listed helpers (bytes and connections per helper, every refused request). A connection to
anything not listed is a leak (exit 2); the listed helpers are not.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from localchat.cli.chat import add_rpc_arguments
from localchat.context import AppContext

EXIT_LEAK = 2


def register(sub: Any) -> None:
    p = sub.add_parser("netcheck", help="prove the inference worker cannot reach the network; print the evidence")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--model", metavar="M", help="model for the test turn (default: the starter, if installed)")
    p.add_argument("--no-chat", action="store_true", help="check an idle worker only (no model is loaded)")
    p.add_argument("--export", metavar="DIR", help="also write the JSON and text report into DIR")
    add_rpc_arguments(p)
    p.set_defaults(func=run)


def _local_model(ctx: AppContext, args: argparse.Namespace) -> tuple[Path | None, str]:
    """The model for the test turn, found without any download, and a note saying what was checked."""
    from localchat.core.models import starter
    from localchat.paths import machine_cache_dir

    if args.no_chat:
        return None, "idle worker only (--no-chat): no model was loaded"
    if args.model:
        return ctx.library.resolve(args.model), f"a chat turn ran on {args.model} during the check"
    cached = machine_cache_dir() / starter.FILE_NAME
    if ctx.library.get(starter.STARTER_NAME) is not None or starter.bundled_starter() or cached.is_file():
        ctx.ensure_starter()  # registers the local file; nothing is fetched
        return ctx.library.resolve(starter.STARTER_NAME), "a chat turn ran on the starter model during the check"
    return None, "no local model to test with (nothing is downloaded for a check): idle worker only"


def run(ctx: AppContext, args: argparse.Namespace) -> int:
    from localchat.cli import emit_json
    from localchat.cli.chat import checked_peers, warn_if_not_isolated
    from localchat.core.chat.messages import ChatMessage, SamplingParams
    from localchat.core.engine.client import EngineClient
    from localchat.core.engine.protocol import LoadOptions
    from localchat.core.privacy.audit import AuditGuard
    from localchat.core.privacy.lockdown import lock_environment
    from localchat.core.privacy.monitor import SocketMonitor, own_processes
    from localchat.core.privacy.report import EvidenceReport

    lock_environment()
    peers = checked_peers(args)  # before anything starts: a public helper is refused in one line
    guard = AuditGuard.active() or AuditGuard(offline=True).install()  # the app's guard: its events since launch
    model, note = _local_model(ctx, args)
    client = EngineClient(isolation="auto", peers=peers)
    session = SocketMonitor.session()  # started by app.main with the process: its "since" is the launch
    monitor = session if session is not None else SocketMonitor(lambda: own_processes(client.pid))
    with client:
        assert client.hello is not None
        if session is not None:
            session.worker_pid = client.pid
        monitor.poll()
        if model is not None:
            # LAN mode: every layer offloaded, llama.cpp splits them over the helpers (through the relay)
            client.load(model, LoadOptions(n_ctx=512, n_gpu_layers=-1 if peers else 0,
                                           rpc_servers=client.rpc_servers or None))
            monitor.poll()
            for _ in client.chat([ChatMessage("user", "Say OK.")], SamplingParams(max_tokens=4, seed=1)):
                monitor.poll()
            client.unload()
        monitor.poll()
        isolation = client.hello.isolation
        report = EvidenceReport(isolation, guard, monitor, client.pid, [note], relay=client.relay_report())
        data = report.to_dict()  # while the worker runs: its namespace is re-read from the outside
        if args.export:
            report.export(Path(args.export), data=data)
    if not isolation.get("isolated"):
        warn_if_not_isolated(isolation)
    if args.json:
        emit_json(data)
    else:
        print(report.to_text(data), end="")
    if not data["silent"]:
        return EXIT_LEAK
    if peers and not data["lan_mode"]["worker_only_loopback"]:
        return 1  # the worker's relay claim needs nothing but its loopback
    return 0 if isolation.get("isolated") else 1
