"""Logging set-up: one rotating file under the log folder, plus stderr for the CLI."""

from __future__ import annotations

import logging
import logging.handlers
from pathlib import Path

FORMAT = "%(asctime)s %(levelname)s %(process)d %(name)s: %(message)s"


def configure(log_file: Path | None, *, level: int = logging.INFO, stderr_level: int | None = None) -> None:
    root = logging.getLogger()
    root.setLevel(level)
    for h in list(root.handlers):
        if getattr(h, "_localchat", False):
            root.removeHandler(h)
            h.close()
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        fh = logging.handlers.RotatingFileHandler(log_file, maxBytes=2_000_000, backupCount=3, encoding="utf-8")
        fh.setFormatter(logging.Formatter(FORMAT))
        fh._localchat = True  # type: ignore[attr-defined]
        root.addHandler(fh)
    if stderr_level is not None:
        sh = logging.StreamHandler()
        sh.setLevel(stderr_level)
        sh.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
        sh._localchat = True  # type: ignore[attr-defined]
        root.addHandler(sh)


def tail(log_file: Path, lines: int = 60) -> str:
    """The last ``lines`` lines of the log, for crash dialogs and error reports."""
    try:
        with open(log_file, encoding="utf-8", errors="replace") as fh:
            return "".join(fh.readlines()[-lines:])
    except OSError:
        return ""
