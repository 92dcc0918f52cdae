"""Typed user settings, saved atomically as JSON with a schema version.

A corrupt or unreadable file is moved aside (``settings.json.corrupt-<time>``) and replaced by defaults with a
logged warning: a bad file never stops the app from starting.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from localchat.errors import SettingsError

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
THEMES = ("system", "light", "dark")


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

    def validate(self) -> None:
        if not 0.0 <= self.temperature <= 5.0:
            raise SettingsError(f"temperature must be between 0 and 5, not {self.temperature}")
        if not 0.0 < self.top_p <= 1.0:
            raise SettingsError(f"top_p must be in (0, 1], not {self.top_p}")
        if self.max_tokens < 1:
            raise SettingsError(f"max_tokens must be at least 1, not {self.max_tokens}")
        if self.n_ctx < 256:
            raise SettingsError(f"context length must be at least 256 tokens, not {self.n_ctx}")
        if self.n_threads is not None and self.n_threads < 1:
            raise SettingsError(f"threads must be at least 1, not {self.n_threads}")
        if self.n_gpu_layers is not None and self.n_gpu_layers < -1:
            raise SettingsError(f"GPU layers must be -1 (all), 0 or more, not {self.n_gpu_layers}")
        if self.theme not in THEMES:
            raise SettingsError(f"theme must be one of {', '.join(THEMES)}, not {self.theme!r}")

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
            backup = self.path.with_name(f"{self.path.name}.corrupt-{time.strftime('%Y%m%d-%H%M%S')}")
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
        self.path.parent.mkdir(parents=True, exist_ok=True)
        data = json.dumps(settings.to_dict(), indent=2, sort_keys=True)
        fd, tmp = tempfile.mkstemp(prefix=".settings-", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
