"""``localchat serve``: the private local API (OpenAI-compatible) on loopback, until SIGINT/SIGTERM."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from localchat.cli.chat import add_rpc_arguments
from localchat.context import AppContext


def register(sub: Any) -> None:
    p = sub.add_parser("serve", help="serve an OpenAI-compatible API on this machine only (127.0.0.1)")
    p.add_argument("--model", "-m", default=None, help="library name or .gguf path to load first (default: last used)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    p.add_argument("--port", type=int, default=8800, help="port (default: 8800; 0 picks a free one)")
    p.add_argument("--api-key", default=None,
                   help="the key clients must send (default: a random key kept in the config folder, mode 0600)")
    p.add_argument("--allow-lan", action="store_true",
                   help="allow a --host reachable from other machines (and IP-literal Host headers)")
    p.add_argument("--allow-origin", action="append", default=[], metavar="ORIGIN",
                   help="a web origin allowed to call the API from a browser, with CORS (repeatable)")
    p.add_argument("--ctx", type=int, default=None, help="context length in tokens")
    p.add_argument("--queue", type=int, default=4, help="requests that may wait while one runs (default: 4)")
    p.add_argument("--isolation", choices=("off", "auto", "require"), default=None,
                   help="worker network sandbox (default: auto, or require when set in settings)")
    p.add_argument("--json", action="store_true", help="print one JSON object when ready")
    add_rpc_arguments(p)
    p.set_defaults(func=run)


def run(ctx: AppContext, args: argparse.Namespace) -> int:
    from localchat.cli import EXIT_USAGE, fail
    from localchat.cli.chat import checked_peers, warn_if_not_isolated
    from localchat.core.api import KEY_FILE
    from localchat.core.api.host import ModelHost, ModelRef
    from localchat.core.api.schema import ApiError
    from localchat.core.api.server import ApiServer, ServerOptions, bind, check_bind, load_or_create_key
    from localchat.core.engine.client import EngineClient
    from localchat.core.models.starter import STARTER_NAME
    from localchat.core.privacy.audit import AuditGuard

    n_ctx = args.ctx or ctx.settings.n_ctx
    if n_ctx < 256:
        return fail(f"--ctx must be at least 256 tokens, not {n_ctx}", EXIT_USAGE)
    if not 0 <= args.port <= 65535:
        return fail(f"--port must be between 0 and 65535, not {args.port}", EXIT_USAGE)
    if args.queue < 0:
        return fail(f"--queue must be 0 or more, not {args.queue}", EXIT_USAGE)
    if args.api_key is not None and len(args.api_key) < 16:
        return fail("--api-key must be at least 16 characters long", EXIT_USAGE)
    check_bind(args.host, args.allow_lan)  # before anything starts: a refusal costs nothing
    key_file: Path | None = None
    if args.api_key is not None:
        key = args.api_key
    else:
        key_file = ctx.paths.config_dir / KEY_FILE
        key = load_or_create_key(key_file)

    name = args.model or ctx.settings.last_model or STARTER_NAME
    if name == STARTER_NAME and ctx.library.get(STARTER_NAME) is None:
        ctx.ensure_starter()
    first = ModelRef(name, ctx.library.resolve(name))
    if ctx.library.get(name) is None:  # a path from the command line: served under its file name
        first = ModelRef(first.path.stem, first.path)

    def models() -> dict[str, ModelRef]:
        # library names only: a request never names a path
        out = {e.name: ModelRef(e.name, e.file) for e in ctx.library.entries() if e.present}
        out.setdefault(first.name, first)
        return out

    isolation = args.isolation or ctx.isolation_policy
    peers = checked_peers(args)  # LAN mode: the one worker reaches these helpers through its relay only
    host = ModelHost(models, ctx.settings, n_ctx, isolation=isolation, max_queue=args.queue,
                     engine=EngineClient(isolation=isolation, peers=peers) if peers else None)
    sock = None
    try:
        try:
            info = host.load(first.name)
        except ApiError as exc:
            return fail(exc.message)
        assert host.hello is not None
        if not args.json:
            warn_if_not_isolated(host.hello.isolation)
        sock = bind(args.host, args.port)
        server = ApiServer(host, key, sock, ServerOptions(args.host, args.port, args.allow_lan,
                                                          tuple(args.allow_origin)))
        if args.allow_lan:
            sys.stderr.write(f"localchat: warning: serving beyond this machine on {args.host}; anyone on the "
                             "network who has the key can use the model\n")

        def ready() -> None:
            facts = {"url": server.url, "model": first.name, "api_key_file": str(key_file) if key_file else None,
                     "pid": os.getpid(), "worker_pid": host.client.pid, "n_ctx": info.n_ctx,
                     "isolated": bool(host.hello and host.hello.isolation.get("isolated")),
                     # app.main started these before any command; they stay on while serving
                     "audit_guard": guard.mode if (guard := AuditGuard.active()) else None,
                     "hf_hub_offline": os.environ.get("HF_HUB_OFFLINE"),
                     "helpers": [peer.endpoint for peer in peers]}
            if args.json:
                line = json.dumps(facts, sort_keys=True)
            else:
                where = f"key in {key_file}" if key_file else "key from --api-key"
                line = f"localchat API on {server.url} — model {first.name} — {where} — Ctrl+C stops"
            sys.stdout.write(line + "\n")
            sys.stdout.flush()

        server.run(ready)
    finally:
        host.close()
        if sock is not None:
            sock.close()
    return 0
