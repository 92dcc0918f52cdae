"""Opens the desktop window. Placeholder until the GUI issue lands."""

from __future__ import annotations

from localchat.context import AppContext


def launch(ctx: AppContext) -> int:
    from localchat.cli import fail

    return fail("the desktop window is not built yet; use 'localchat chat --model smollm2-135m \"question\"'")
