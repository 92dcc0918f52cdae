"""Typed user settings, saved atomically as JSON with a schema version.

A corrupt or unreadable file is moved aside (``settings.json.corrupt-<time>``) and replaced by defaults with a
logged warning: a bad file never stops the app from starting.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from localchat.core.chat.messages import (
    InvalidRequest,
    check_max_tokens,
    check_temperature,
    check_text,
    check_top_p,
)
from localchat.errors import SettingsError
from localchat.fsutil import aside_name, atomic_write_text

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
THEMES = ("system", "light", "dark")
MIN_CTX = 256
MAX_CTX = 1 << 24  # beyond any model's training context; what fits this machine is checked at load (session.py)
MAX_THREADS = 1024


def check_ctx(value: Any) -> int:
    """A context length in tokens, as a user may set it."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise SettingsError(f"context length must be a whole number of tokens, not {value!r}")
    if not MIN_CTX <= value <= MAX_CTX:
        raise SettingsError(f"context length must be from {MIN_CTX} to {MAX_CTX} tokens, not {value}")
    return value


def _whole(name: str, value: Any, low: int, high: int | None = None, optional: bool = True) -> None:
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise SettingsError(f"{name} must be a whole number, not {value!r}")
    if value < low or (high is not None and value > high):
        raise SettingsError(f"{name} must be from {low} to {high}, not {value}" if high is not None else
                            f"{name} must be at least {low}, not {value}")


def _text(name: str, value: Any, optional: bool) -> None:
    if value is None and optional:
        return
    if not isinstance(value, str):
        raise SettingsError(f"{name} must be text{' or null' if optional else ''}, not {value!r}")


@dataclass
class Settings:
    """Everything the user can change. ``None`` means "let localchat choose" (planner, CPU count)."""

    schema_version: int = SCHEMA_VERSION
    temperature: float = 0.7
    top_p: float = 0.95
    max_tokens: int = 1024
    n_ctx: int = 4096
    n_threads: int | None = None
    n_gpu_layers: int | None = None
    models_dir: str | None = None
    theme: str = "system"
    require_isolation: bool = False
    last_model: str | None = None
    last_conversation: int | None = None
    system_prompt: str = ""
    window: dict[str, Any] = field(default_factory=dict)
    # LAN mode (docs/RPC.md): helper machines running llama.cpp's rpc-server, "HOST:PORT"; none by default.
    # A public address is kept only once the user confirmed it (helpers_allow_public).
    helpers: list[str] = field(default_factory=list)
    helpers_allow_public: bool = False

    def validate(self) -> None:
        """Raises SettingsError naming the first value of the wrong type or out of range, in one line."""
        try:
            check_temperature(self.temperature)
            check_top_p(self.top_p)
            check_max_tokens(self.max_tokens)
            check_text("system_prompt", self.system_prompt)
        except InvalidRequest as exc:
            raise SettingsError(str(exc)) from None
        check_ctx(self.n_ctx)
        if self.n_threads is not None:
            _whole("threads", self.n_threads, 1, MAX_THREADS)
        if self.n_gpu_layers is not None and (isinstance(self.n_gpu_layers, bool)
                                              or not isinstance(self.n_gpu_layers, int) or self.n_gpu_layers < -1):
            raise SettingsError(f"GPU layers must be -1 (all), 0 or more, not {self.n_gpu_layers!r}")
        _whole("last_conversation", self.last_conversation, 0)
        _text("models_dir", self.models_dir, optional=True)
        if self.models_dir is not None and not self.models_dir.strip():
            raise SettingsError("models_dir must be a folder path or null, not an empty string")
        _text("last_model", self.last_model, optional=True)
        if self.theme not in THEMES:
            raise SettingsError(f"theme must be one of {', '.join(THEMES)}, not {self.theme!r}")
        if not isinstance(self.require_isolation, bool):
            raise SettingsError(f"require_isolation must be true or false, not {self.require_isolation!r}")
        if not isinstance(self.window, dict):
            raise SettingsError(f"window must be an object, not {self.window!r}")
        self.helper_peers()

    def helper_peers(self) -> list[Any]:
        """The helper machines as :class:`~localchat.core.privacy.relay.Peer` (LAN mode; empty: off).

        Raises:
            SettingsError: one line about the first bad entry (a public one unless ``helpers_allow_public``).
        """
        from localchat.core.privacy.relay import PeerError, parse_peers

        if not isinstance(self.helpers_allow_public, bool):
            raise SettingsError(f"helpers_allow_public must be true or false, not {self.helpers_allow_public!r}")
        if not isinstance(self.helpers, list) or not all(isinstance(h, str) for h in self.helpers):
            raise SettingsError(f"helpers must be a list of HOST:PORT texts, not {str(self.helpers)[:80]!r}")
        if not self.helpers:
            return []
        try:
            return parse_peers(self.helpers, allow_public=self.helpers_allow_public)
        except PeerError as exc:
            raise SettingsError(f"helper machines: {exc}") from None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Settings:
        names = {f.name for f in dataclasses.fields(cls)}
        known = {k: v for k, v in raw.items() if k in names}
        known["schema_version"] = SCHEMA_VERSION
        s = cls(**known)
        s.validate()
        return s


class SettingsFile:
    """Loads and saves :class:`Settings` at one path."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.recovered_from: Path | None = None  # set when a corrupt file was moved aside on load

    def load(self) -> Settings:
        if not self.path.exists():
            return Settings()
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
            if not isinstance(raw, dict):
                raise ValueError("top level is not an object")
            version = raw.get("schema_version", 0)
            if not isinstance(version, int) or version > SCHEMA_VERSION:
                raise ValueError(f"unknown schema version {version!r}")
            return Settings.from_dict(raw)
        except (OSError, ValueError, TypeError, SettingsError) as exc:
            backup = aside_name(self.path)
            try:
                os.replace(self.path, backup)
                self.recovered_from = backup
            except OSError:
                backup = self.path
            log.warning("settings file %s unreadable (%s); kept it as %s and started from defaults",
                        self.path, exc, backup)
            return Settings()

    def save(self, settings: Settings) -> None:
        settings.validate()
        atomic_write_text(self.path, json.dumps(settings.to_dict(), indent=2, sort_keys=True))
