"""``localchat hw``: placeholder until its issue lands (see DESIGN.md for the contract)."""

from __future__ import annotations

import argparse
from typing import Any

from localchat.context import AppContext


def register(sub: Any) -> None:
    p = sub.add_parser("hw", help="(not available yet)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run)


def run(ctx: AppContext, args: argparse.Namespace) -> int:
    from localchat.cli import fail

    return fail("'hw' is not available in this build yet")
