"""The local library: which models are installed, under which name, and where their file lives.

Stored as JSON (atomic replace) in the data folder. A model is either copied into the models folder or
registered in place (the starter model, an imported file the user wants to keep where it is).
"""

from __future__ import annotations

import json
import logging
import os
import re
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from localchat.errors import LocalChatError, ModelNotFound

log = logging.getLogger(__name__)

_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,127}$")


def slug(text: str) -> str:
    """A library name from a file or repo name: lower-case, safe characters only."""
    s = re.sub(r"\.gguf$", "", text, flags=re.I)
    s = re.sub(r"[^a-z0-9._-]+", "-", s.lower()).strip("-.")
    return s[:128] or "model"


@dataclass
class LibraryEntry:
    name: str
    path: str
    size: int
    sha256: str | None = None
    source: str = "import"  # "starter", "import", "huggingface:<repo>"
    in_place: bool = False  # registered where it is; rm never deletes the file
    added: float = field(default_factory=time.time)
    parts: list[str] = field(default_factory=list)  # all files of a split model, first one is ``path``
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def file(self) -> Path:
        return Path(self.path)


class Library:
    """Installed models, persisted at ``library_file``."""

    def __init__(self, library_file: Path, models_dir: Path) -> None:
        self.library_file = Path(library_file)
        self.models_dir = Path(models_dir)

    def _read(self) -> dict[str, LibraryEntry]:
        try:
            raw = json.loads(self.library_file.read_text(encoding="utf-8"))
            return {e["name"]: LibraryEntry(**e) for e in raw.get("models", [])}
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, TypeError, KeyError) as exc:
            backup = self.library_file.with_name(f"{self.library_file.name}.corrupt-{int(time.time())}")
            log.warning("library file unreadable (%s); kept as %s", exc, backup)
            try:
                os.replace(self.library_file, backup)
            except OSError:
                pass
            return {}

    def _write(self, entries: dict[str, LibraryEntry]) -> None:
        self.library_file.parent.mkdir(parents=True, exist_ok=True)
        data = json.dumps({"version": 1, "models": [asdict(e) for e in sorted(entries.values(),
                                                                              key=lambda e: e.name)]},
                          indent=2)
        fd, tmp = tempfile.mkstemp(prefix=".library-", dir=self.library_file.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.library_file)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def entries(self) -> list[LibraryEntry]:
        return sorted(self._read().values(), key=lambda e: e.name)

    def get(self, name: str) -> LibraryEntry | None:
        return self._read().get(name)

    def register(self, entry: LibraryEntry) -> LibraryEntry:
        if not _NAME_RE.match(entry.name):
            raise LocalChatError(f"invalid model name {entry.name!r}: use lower-case letters, digits, '.', '-', '_'")
        entries = self._read()
        entries[entry.name] = entry
        self._write(entries)
        return entry

    def unregister(self, name: str) -> LibraryEntry:
        entries = self._read()
        if name not in entries:
            raise ModelNotFound(f"no model named {name!r} in the library")
        entry = entries.pop(name)
        self._write(entries)
        return entry

    def resolve(self, name_or_path: str) -> Path:
        """``M`` from the command line: a library name or a path to a ``.gguf`` file."""
        entry = self.get(name_or_path)
        if entry is not None:
            if not entry.file.is_file():
                raise ModelNotFound(f"model {name_or_path!r} is in the library but its file {entry.path} is missing")
            return entry.file
        p = Path(name_or_path).expanduser()
        if p.is_file():
            return p
        known = ", ".join(e.name for e in self.entries()) or "none installed"
        raise ModelNotFound(f"no model named {name_or_path!r} and no such file (library: {known})")


def ensure_starter_registered(library: Library, cache_dir: Path) -> LibraryEntry:
    """Make ``smollm2-135m`` available in this home, fetching it once per machine if needed."""
    from localchat.core.models import starter

    existing = library.get(starter.STARTER_NAME)
    if existing is not None and existing.file.is_file():
        return existing
    path = starter.ensure_starter_model(cache_dir)
    return library.register(LibraryEntry(name=starter.STARTER_NAME, path=str(path), size=path.stat().st_size,
                                         sha256=starter.SHA256, source="starter", in_place=True,
                                         extra={"quant": "Q4_1", "architecture": "llama"}))


def import_file(library: Library, path: str | os.PathLike[str], models_dir: Path, *, name: str | None = None,
                in_place: bool = False) -> LibraryEntry:
    """Add a local .gguf: validated first (a corrupt file is refused and nothing is copied), then copied into the
    models folder (atomically, via a temporary name) or registered where it is."""
    import shutil

    from localchat.core.chat.history import is_r1_distill
    from localchat.core.models.gguf_info import read_gguf

    src = Path(path).expanduser().resolve()
    info = read_gguf(src)
    name = name or slug(src.name)
    if library.get(name) is not None:
        raise LocalChatError(f"a model named {name!r} is already installed; pick another --name")
    target = src
    if not in_place:
        models_dir.mkdir(parents=True, exist_ok=True)
        target = models_dir / src.name
        if target.exists():
            raise LocalChatError(f"{target} already exists in the models folder")
        if shutil.disk_usage(models_dir).free < src.stat().st_size + 64 * 1024 * 1024:
            from localchat.errors import DownloadError

            raise DownloadError(f"not enough disk space in {models_dir} to copy {src.name}")
        tmp = target.with_name(target.name + ".importing")
        try:
            shutil.copyfile(src, tmp)
            os.replace(tmp, target)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    return library.register(LibraryEntry(
        name=name, path=str(target), size=target.stat().st_size, source="import", in_place=in_place,
        extra={"quant": info.quantisation, "architecture": info.architecture,
               "r1_distill": is_r1_distill(f"{name} {info.name}", info.chat_template)}))


def remove_model(library: Library, name: str) -> tuple[LibraryEntry, list[Path]]:
    """Unregister ``name``; delete its files unless it was registered in place (or is the shared starter)."""
    entry = library.unregister(name)
    deleted: list[Path] = []
    if not entry.in_place:
        for p in [Path(x) for x in (entry.parts or [entry.path])]:
            if p.is_file():
                p.unlink()
                deleted.append(p)
    return entry, deleted
