"""``localchat netcheck``: run the privacy checks and print the evidence report."""

from __future__ import annotations

import argparse
from typing import Any

from localchat.context import AppContext


def register(sub: Any) -> None:
    p = sub.add_parser("netcheck", help="prove the inference worker cannot reach the network; print the evidence")
    p.add_argument("--json", action="store_true")
    p.add_argument("--export", metavar="DIR", help="also write the JSON and text report into DIR")
    p.set_defaults(func=run)


def run(ctx: AppContext, args: argparse.Namespace) -> int:
    from pathlib import Path

    from localchat.cli import emit_json
    from localchat.core.chat.messages import ChatMessage, SamplingParams
    from localchat.core.engine.client import EngineClient
    from localchat.core.models.starter import STARTER_NAME
    from localchat.core.privacy.audit import AuditGuard
    from localchat.core.privacy.lockdown import lock_environment
    from localchat.core.privacy.monitor import SocketMonitor, own_processes
    from localchat.core.privacy.report import EvidenceReport

    lockdown = lock_environment()
    guard = AuditGuard(offline=True).install()
    client = EngineClient(isolation="require" if ctx.settings.require_isolation else "auto")
    monitor = SocketMonitor(lambda: own_processes(client.pid))
    notes: list[str] = []
    with client:
        monitor.poll()
        if ctx.library.get(STARTER_NAME) is None:
            ctx.ensure_starter()
        # a real turn, so the evidence covers inference, not just an idle worker
        client.load(ctx.library.resolve(STARTER_NAME))
        monitor.poll()
        for _ in client.chat([ChatMessage("user", "Say OK.")], SamplingParams(max_tokens=4, seed=1)):
            monitor.poll()
        notes.append("a chat turn ran on the starter model during the check")
        assert client.hello is not None
        report = EvidenceReport(client.hello.isolation, lockdown, guard, monitor, client.pid, notes)
        data = report.to_dict()
        text = report.to_text()
        if args.export:
            report.export(Path(args.export))
    guard.uninstall()
    if args.json:
        data["silent"] = report.silent
        emit_json(data)
    else:
        print(text, end="")
    return 0
