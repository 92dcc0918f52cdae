"""The command line (``localchat``, ``python -m localchat``).

Each sub-command lives in its own module with ``register(subparsers)``; handlers import what they need lazily,
so ``localchat --help`` stays fast. No sub-command opens the GUI. Commands with ``--json`` print exactly one JSON
object on stdout; errors go to stderr with a non-zero exit.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import sys
from typing import Any

from localchat import __version__
from localchat.errors import LocalChatError

COMMAND_MODULES = ("chat", "models", "plan", "hw", "netcheck", "serve")

EXIT_ERROR = 1
EXIT_USAGE = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="localchat", description="Private, offline chat with local GGUF models.")
    parser.add_argument("--home", help="keep config, data, models and logs under this folder (or LOCALCHAT_HOME)")
    parser.add_argument("--version", action="version", version=f"localchat {__version__}")
    parser.add_argument("--self-test", action="store_true",
                        help="headless smoke test: the starter model loads and answers; the worker's isolation is "
                             "reported, and required under the require policy")
    parser.add_argument("-v", "--verbose", action="store_true", help="log to stderr")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"localchat.cli.{name}").register(sub)
    return parser


def emit_json(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")
    sys.stdout.flush()


def fail(message: str, code: int = EXIT_ERROR) -> int:
    print(f"localchat: error: {message}", file=sys.stderr)
    return code


def run(argv: list[str]) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from localchat import logs
    from localchat.context import open_context

    if args.home:  # --home and LOCALCHAT_HOME are one setting: code that finds the home itself sees it too
        import os

        from localchat.paths import HOME_ENV

        os.environ[HOME_ENV] = args.home
    ctx = open_context(args.home)
    logs.configure(ctx.paths.log_file, stderr_level=logging.INFO if args.verbose else None)
    try:
        if args.self_test:
            from localchat.cli.selftest import self_test

            return self_test(ctx)
        if args.command is None:
            from localchat.gui.launch import launch

            return launch(ctx)
        return int(args.func(ctx, args))
    except LocalChatError as exc:
        return fail(str(exc))
    except KeyboardInterrupt:
        return 130
