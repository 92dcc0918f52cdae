"""Environment lockdown, applied by every entry point before heavy imports.

Hub clients are pinned offline and silent; a download the user started lifts ``HF_HUB_OFFLINE`` only for its own
duration (see ``allow_hub_download``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

LOCKDOWN_ENV: dict[str, str] = {
    "HF_HUB_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "HF_HUB_DISABLE_IMPLICIT_TOKEN": "1",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "DO_NOT_TRACK": "1",
    # Qt: no network-information backend polling the OS network stack.
    "QT_NETWORK_INFORMATION_BACKEND": "dummy",
}


USER_OFFLINE_ENV = "LOCALCHAT_USER_OFFLINE"


def lock_environment() -> dict[str, str]:
    """Set the lockdown variables; returns them with their values (shown in the Network panel).

    A user who started localchat with ``HF_HUB_OFFLINE=1`` meant it: that is remembered, and downloads are then
    refused too (see :func:`allow_hub_download`).
    """
    if USER_OFFLINE_ENV not in os.environ:
        user = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")
        os.environ[USER_OFFLINE_ENV] = "1" if user else "0"
    os.environ.update(LOCKDOWN_ENV)
    return {k: os.environ[k] for k in LOCKDOWN_ENV}


@contextmanager
def allow_hub_download() -> Iterator[None]:
    """Lift ``HF_HUB_OFFLINE`` for a download the user started, then restore it.

    Raises:
        DownloadError: the user runs localchat with ``HF_HUB_OFFLINE=1``: no download, ever.
    """
    import sys

    from localchat.errors import DownloadError

    if os.environ.get(USER_OFFLINE_ENV) == "1":
        raise DownloadError("offline mode is on (HF_HUB_OFFLINE=1 was set when localchat started): downloads and "
                            "Hub searches are disabled. Installed models and cached search results still work.")

    before = os.environ.get("HF_HUB_OFFLINE")
    os.environ["HF_HUB_OFFLINE"] = "0"
    # huggingface_hub reads the variable once, at import: flip its constant too while the download runs
    constants = sys.modules.get("huggingface_hub.constants")
    const_before = getattr(constants, "HF_HUB_OFFLINE", None)
    if constants is not None:
        setattr(constants, "HF_HUB_OFFLINE", False)  # noqa: B010 - typed module attribute
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("HF_HUB_OFFLINE", None)
        else:
            os.environ["HF_HUB_OFFLINE"] = before
        if constants is not None:
            setattr(constants, "HF_HUB_OFFLINE", const_before)  # noqa: B010
