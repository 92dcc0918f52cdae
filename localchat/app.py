"""Composition root: start watching, lock the environment down, parse arguments, then start the GUI or one command.

``localchat --worker …`` (used by frozen builds) turns this same executable into the inference worker before
anything else is imported. Everything else starts with :func:`start_watch`: the audit guard, the process log and the
socket monitor run from the first instruction, before arguments are parsed, any command runs or the window opens.
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--worker"]:
        from localchat.core.engine.worker import main as worker_main

        return worker_main(argv[1:])
    from localchat.core.privacy.monitor import start_watch

    # Python-level network use is logged, and refused unless local; children and sockets are recorded from here on
    start_watch()
    from localchat.core.privacy.lockdown import lock_environment

    lock_environment()
    from localchat.cli import run

    return run(argv)


if __name__ == "__main__":
    raise SystemExit(main())
