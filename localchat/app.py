"""Composition root: lock the environment down, parse arguments, then start the GUI or one command.

``localchat --worker …`` (used by frozen builds) turns this same executable into the inference worker before
anything else is imported.
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--worker"]:
        from localchat.core.engine.worker import main as worker_main

        return worker_main(argv[1:])
    if argv[:1] == ["--ggml-probe"]:  # frozen builds: the llama.cpp device probe runs as this executable
        from localchat.core.hardware.ggml_probe import main as probe_main

        return probe_main()

    from localchat.core.privacy.audit import AuditGuard
    from localchat.core.privacy.lockdown import lock_environment

    lock_environment()
    AuditGuard(offline=True).install()  # Python-level network use is logged, and refused unless local
    from localchat.cli import run

    return run(argv)


if __name__ == "__main__":
    raise SystemExit(main())
