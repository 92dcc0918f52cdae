"""What every entry point (GUI, CLI, self-test) opens first: folders, settings, the model library."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from localchat.core.models.library import Library
from localchat.paths import Paths, machine_cache_dir
from localchat.settings import Settings, SettingsFile


@dataclass
class AppContext:
    paths: Paths
    settings_file: SettingsFile
    settings: Settings
    library: Library

    @property
    def models_dir(self) -> Path:
        return Path(self.settings.models_dir) if self.settings.models_dir else self.paths.models_dir

    def save_settings(self) -> None:
        self.settings_file.save(self.settings)

    @property
    def isolation_policy(self) -> str:
        """The worker sandbox policy the settings ask for (``require`` or ``auto``)."""
        return "require" if self.settings.require_isolation else "auto"

    def ensure_starter(self) -> None:
        """Register the starter model in this home when it is on this machine (bundled, or cached by
        ``make model`` / ``localchat models pull starter``). Never fetches anything.

        Raises:
            DownloadError: the starter model is not on this machine (the message says how to get it).
        """
        from localchat.core.models.library import ensure_starter_registered

        ensure_starter_registered(self.library, machine_cache_dir())


def open_context(home: str | Path | None = None) -> AppContext:
    paths = (Paths.under(Path(home)) if home else Paths.default()).ensure()
    sf = SettingsFile(paths.settings_file)
    settings = sf.load()
    models_dir = Path(settings.models_dir) if settings.models_dir else paths.models_dir
    return AppContext(paths, sf, settings, Library(paths.library_file, models_dir))
