"""Environment lockdown, applied by every entry point before heavy imports.

Hub clients are pinned offline and silent, pip (used once, to fetch the starter model) checks for no update of
itself, and Qt's network module cannot be imported in the app process, so no Qt network-information backend (nor any
other Qt network code) can load. A download the user started lifts ``HF_HUB_OFFLINE`` only for its own duration
(:func:`allow_hub_download`). :func:`lockdown_items` lists every measure with its current value, for the Network
panel and the report.
"""

from __future__ import annotations

import importlib.abc
import os
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from types import ModuleType

LOCKDOWN_ENV: dict[str, str] = {
    "HF_HUB_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "HF_HUB_DISABLE_IMPLICIT_TOKEN": "1",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "DO_NOT_TRACK": "1",
    "PIP_DISABLE_PIP_VERSION_CHECK": "1",
}
ENV_EFFECT = {
    "HF_HUB_OFFLINE": "huggingface_hub makes no request (lifted only inside a download you start)",
    "HF_HUB_DISABLE_TELEMETRY": "huggingface_hub sends no usage telemetry",
    "HF_HUB_DISABLE_IMPLICIT_TOKEN": "no stored Hugging Face token is sent unless a request asks for it",
    "HF_HUB_DISABLE_PROGRESS_BARS": "no console progress bars (the app shows its own)",
    "DO_NOT_TRACK": "the common opt-out for libraries that honour it",
    "PIP_DISABLE_PIP_VERSION_CHECK": "pip, which fetches the starter model once, does not check for its own updates",
}
# Qt modules that talk to the network; the app needs none of them
BLOCKED_MODULES = ("PySide6.QtNetwork", "PySide6.QtNetworkAuth", "PySide6.QtWebSockets", "PySide6.QtWebEngineCore",
                   "PySide6.QtWebEngineWidgets", "PySide6.QtWebView", "PySide6.QtHttpServer")
# huggingface_hub copies these variables into module constants when it is imported
HUB_CONSTANTS = {"HF_HUB_OFFLINE": True, "HF_HUB_DISABLE_TELEMETRY": True, "HF_HUB_DISABLE_IMPLICIT_TOKEN": True}
USER_OFFLINE_ENV = "LOCALCHAT_USER_OFFLINE"


class BlockedModuleFinder(importlib.abc.MetaPathFinder):
    """Refuses to import the modules in ``BLOCKED_MODULES``."""

    def find_spec(self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None) -> None:
        if fullname in BLOCKED_MODULES:
            raise ImportError(f"{fullname} is blocked by localchat's network lockdown (the app needs no Qt network "
                              "code, so none can load)", name=fullname)
        return None


def _hub_constants() -> ModuleType | None:
    return sys.modules.get("huggingface_hub.constants")


def lock_environment() -> dict[str, str]:
    """Set the lockdown variables and block Qt's network modules; returns the variables with their values.

    A user who started localchat with ``HF_HUB_OFFLINE=1`` meant it: that is remembered, and downloads are then
    refused too (see :func:`allow_hub_download`).
    """
    if USER_OFFLINE_ENV not in os.environ:
        user = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")
        os.environ[USER_OFFLINE_ENV] = "1" if user else "0"
    os.environ.update(LOCKDOWN_ENV)
    constants = _hub_constants()  # imported before us: its copies of the variables are already taken
    if constants is not None:
        for name, value in HUB_CONSTANTS.items():
            if hasattr(constants, name):
                setattr(constants, name, value)
    if not any(isinstance(f, BlockedModuleFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, BlockedModuleFinder())
    return {k: os.environ[k] for k in LOCKDOWN_ENV}


def _qt_network_state() -> str:
    loaded = [m for m in BLOCKED_MODULES if m in sys.modules]
    blocked = any(isinstance(f, BlockedModuleFinder) for f in sys.meta_path)
    if loaded:
        return f"LOADED ({', '.join(loaded)}) — imported before the lockdown"
    return "blocked: cannot be imported" if blocked else "not imported (not blocked)"


def _native_qt_network() -> str:
    """Whether Qt's network library is mapped into this process (Linux reads /proc/self/maps)."""
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as fh:
            return "LOADED" if any("libQt6Network" in line for line in fh) else "not loaded"
    except OSError:
        return "unknown on this system"


def lockdown_items() -> list[dict[str, str]]:
    """Every lockdown measure with its value now: ``name``, ``value``, ``effect``."""
    items = [{"name": k, "value": os.environ.get(k, "(unset)"), "effect": ENV_EFFECT[k]} for k in LOCKDOWN_ENV]
    constants = _hub_constants()
    items.append({"name": "huggingface_hub.constants.HF_HUB_OFFLINE",
                  "value": str(getattr(constants, "HF_HUB_OFFLINE", None)) if constants else "not imported",
                  "effect": "the copy huggingface_hub took at import; flipped with the variable"})
    user = os.environ.get(USER_OFFLINE_ENV) == "1"
    items += [
        {"name": "Offline mode chosen by you (HF_HUB_OFFLINE=1 at start)", "value": "yes" if user else "no",
         "effect": "downloads and Hub searches refused too" if user else "downloads only when you start one"},
        {"name": "Qt network modules", "value": _qt_network_state(),
         "effect": "no Qt network-information backend or other Qt network code in the app"},
        {"name": "libQt6Network in the app process", "value": _native_qt_network(),
         "effect": "checked in the process's memory map"},
        {"name": "Update checks", "value": "none",
         "effect": "localchat has no updater; your package manager or installer updates it"},
        {"name": "Remote content in answers", "value": "never loaded",
         "effect": "images are shown as text; links open in your browser only after you confirm"},
        {"name": "Inference worker environment", "value": "HF_HUB_OFFLINE=1, telemetry off",
         "effect": "set for the worker whatever the app's state"},
    ]
    return items


_scope_lock = threading.Lock()
_scope_depth = 0
_scope_saved: dict[str, str | None] = {}


@contextmanager
def allow_hub_download() -> Iterator[None]:
    """Lift ``HF_HUB_OFFLINE`` (the variable and huggingface_hub's copy of it) for a download the user started.

    Scopes may overlap (two downloads at once): the first lifts, the last restores.

    Raises:
        DownloadError: the user runs localchat with ``HF_HUB_OFFLINE=1``: no download, ever.
    """
    global _scope_depth
    from localchat.errors import DownloadError

    if os.environ.get(USER_OFFLINE_ENV) == "1":
        raise DownloadError("offline mode is on (HF_HUB_OFFLINE=1 was set when localchat started): downloads and "
                            "Hub searches are disabled. Installed models and cached search results still work.")
    with _scope_lock:
        if _scope_depth == 0:
            _scope_saved["env"] = os.environ.get("HF_HUB_OFFLINE")
            os.environ["HF_HUB_OFFLINE"] = "0"
            _sync_hub_constant()
        _scope_depth += 1
    try:
        yield
    finally:
        with _scope_lock:
            _scope_depth -= 1
            if _scope_depth == 0:
                if _scope_saved["env"] is None:
                    os.environ.pop("HF_HUB_OFFLINE", None)
                else:
                    os.environ["HF_HUB_OFFLINE"] = _scope_saved["env"]
                _sync_hub_constant()  # also when huggingface_hub was first imported inside the scope


def _sync_hub_constant() -> None:
    """huggingface_hub's copy of ``HF_HUB_OFFLINE``, read as it reads the variable at import."""
    constants = _hub_constants()
    if constants is not None:
        value = os.environ.get("HF_HUB_OFFLINE", "").upper() in ("1", "ON", "YES", "TRUE")
        setattr(constants, "HF_HUB_OFFLINE", value)  # noqa: B010 - typed module attribute
