"""``localchat models …``: the offline model manager."""

from __future__ import annotations

import argparse
from typing import Any

from localchat.context import AppContext


def register(sub: Any) -> None:
    p = sub.add_parser("models", help="installed models and downloads")
    msub = p.add_subparsers(dest="models_command", metavar="ACTION", required=True)
    lp = msub.add_parser("list", help="installed models")
    lp.add_argument("--json", action="store_true")
    lp.set_defaults(func=cmd_list)


def cmd_list(ctx: AppContext, args: argparse.Namespace) -> int:
    from localchat.cli import emit_json
    from localchat.core.models.starter import STARTER_NAME

    if ctx.library.get(STARTER_NAME) is None:
        ctx.ensure_starter()
    entries = ctx.library.entries()
    if args.json:
        emit_json({"models": [{"name": e.name, "path": e.path, "size": e.size, "source": e.source,
                               "sha256": e.sha256, "present": e.file.is_file()} for e in entries]})
        return 0
    if not entries:
        print("No models installed. Try: localchat models pull REPO")
        return 0
    width = max(len(e.name) for e in entries)
    for e in entries:
        state = "" if e.file.is_file() else "  (file missing)"
        print(f"{e.name:<{width}}  {e.size / 1e6:9.1f} MB  {e.source:<12}  {e.path}{state}")
    return 0
