"""Where localchat keeps its files.

platformdirs gives the per-user locations; ``LOCALCHAT_HOME`` (or ``--home``) puts config, data, models, cache
and logs under one folder, which every test and benchmark uses so nothing touches the real user's folders.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import platformdirs

APP_NAME = "localchat"
HOME_ENV = "LOCALCHAT_HOME"


@dataclass(frozen=True)
class Paths:
    """The folders localchat writes to. Create them with :meth:`ensure`."""

    config_dir: Path
    data_dir: Path
    models_dir: Path
    cache_dir: Path
    log_dir: Path

    @property
    def settings_file(self) -> Path:
        return self.config_dir / "settings.json"

    @property
    def library_file(self) -> Path:
        return self.data_dir / "library.json"

    @property
    def database_file(self) -> Path:
        return self.data_dir / "conversations.sqlite3"

    @property
    def log_file(self) -> Path:
        return self.log_dir / "localchat.log"

    def ensure(self) -> Paths:
        for d in (self.config_dir, self.data_dir, self.models_dir, self.cache_dir, self.log_dir):
            d.mkdir(parents=True, exist_ok=True)
        return self

    @classmethod
    def under(cls, home: Path) -> Paths:
        home = Path(home).expanduser().resolve()
        return cls(home / "config", home / "data", home / "models", home / "cache", home / "logs")

    @classmethod
    def default(cls) -> Paths:
        home = os.environ.get(HOME_ENV)
        if home:
            return cls.under(Path(home))
        data = Path(platformdirs.user_data_dir(APP_NAME, appauthor=False))
        return cls(
            config_dir=Path(platformdirs.user_config_dir(APP_NAME, appauthor=False)),
            data_dir=data,
            models_dir=data / "models",
            cache_dir=Path(platformdirs.user_cache_dir(APP_NAME, appauthor=False)),
            log_dir=Path(platformdirs.user_log_dir(APP_NAME, appauthor=False)),
        )


def machine_cache_dir() -> Path:
    """A per-machine cache shared by every home (the starter model is fetched once per machine)."""
    override = os.environ.get("LOCALCHAT_MACHINE_CACHE")
    if override:
        return Path(override)
    return Path(platformdirs.user_cache_dir(APP_NAME, appauthor=False)) / "shared"
