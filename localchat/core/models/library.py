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
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from localchat.errors import InvalidModelFile, LocalChatError, ModelNotFound

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

    @property
    def files(self) -> list[Path]:
        """Every file of the model (all parts of a split one)."""
        return [Path(p) for p in (self.parts or [self.path])]

    @property
    def present(self) -> bool:
        return all(p.is_file() for p in self.files)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "present": self.present}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LibraryEntry:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})  # a newer version's extra keys are ignored


class Library:
    """Installed models, persisted at ``library_file``."""

    def __init__(self, library_file: Path, models_dir: Path) -> None:
        self.library_file = Path(library_file)
        self.models_dir = Path(models_dir)

    def _read(self) -> dict[str, LibraryEntry]:
        try:
            raw = json.loads(self.library_file.read_text(encoding="utf-8"))
            return {e["name"]: LibraryEntry.from_dict(e) for e in raw.get("models", [])}
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


def _split_parts(first: Path) -> list[Path]:
    """All parts of a split model from its first part (``x-00001-of-00003.gguf``); a lone file is one part."""
    from localchat.core.models.hub import SPLIT_RE

    m = SPLIT_RE.match(first.name)
    if m is None:
        return [first]
    total = int(m.group("total"))
    if int(m.group("part")) != 1:
        raise InvalidModelFile(f"{first.name} is part {int(m.group('part'))} of a split model: import its first part "
                               f"({m.group('stem')}-00001-of-{total:05d}.gguf)")
    parts = [first.with_name(f"{m.group('stem')}-{i:05d}-of-{total:05d}.gguf") for i in range(1, total + 1)]
    missing = [p.name for p in parts if not p.is_file()]
    if missing:
        raise InvalidModelFile(f"{first.name} is split in {total} parts and {', '.join(missing)} "
                               f"{'is' if len(missing) == 1 else 'are'} missing next to it")
    return parts


def import_file(library: Library, path: str | os.PathLike[str], models_dir: Path, *, name: str | None = None,
                in_place: bool = False) -> LibraryEntry:
    """Add a local .gguf (a split model by its first part: all parts come along).

    It is validated first (a corrupt file is refused and nothing is copied), then copied into the models folder
    (atomically, via a temporary name) or registered where it is.

    Raises:
        InvalidModelFile: not a readable GGUF, or a split model with parts missing.
        LocalChatError: the name is taken, or the file is already in the library.
        DownloadError: not enough disk space for the copy.
    """
    import shutil

    from localchat.core.chat.history import is_r1_distill
    from localchat.core.models.gguf_info import read_gguf

    src = Path(path).expanduser().resolve()
    info = read_gguf(src)
    sources = _split_parts(src)
    name = name or slug(src.name)
    if library.get(name) is not None:
        raise LocalChatError(f"a model named {name!r} is already installed; pick another --name")
    already = next((e for e in library.entries() if Path(e.path).resolve() == src), None)
    if already is not None:
        raise LocalChatError(f"{src.name} is already in the library as {already.name!r}")
    targets = sources
    if not in_place:
        models_dir.mkdir(parents=True, exist_ok=True)
        targets = [models_dir / p.name for p in sources]
        clash = [t for t in targets if t.exists()]
        if clash:
            raise LocalChatError(f"{clash[0]} already exists in the models folder")
        need = sum(p.stat().st_size for p in sources)
        if shutil.disk_usage(models_dir).free < need + 64 * 1024 * 1024:
            from localchat.errors import DownloadError

            raise DownloadError(f"not enough disk space in {models_dir} to copy {src.name} ({need / 1e9:.2f} GB)")
        done: list[Path] = []
        try:
            for s_, t in zip(sources, targets, strict=True):
                tmp = t.with_name(t.name + ".importing")
                shutil.copyfile(s_, tmp)
                os.replace(tmp, t)
                done.append(t)
        except BaseException:
            for t in targets:
                t.with_name(t.name + ".importing").unlink(missing_ok=True)
            for t in done:
                t.unlink(missing_ok=True)
            raise
    return library.register(LibraryEntry(
        name=name, path=str(targets[0]), size=sum(t.stat().st_size for t in targets), source="import",
        in_place=in_place, parts=[str(t) for t in targets] if len(targets) > 1 else [],
        extra={"quant": info.quantisation, "architecture": info.architecture, "context_length": info.context_length,
               "n_params": info.n_params, "r1_distill": is_r1_distill(f"{name} {info.name}", info.chat_template)}))


def remove_model(library: Library, name: str) -> tuple[LibraryEntry, list[Path]]:
    """Unregister ``name``; delete its files unless it was registered in place (or is the shared starter)."""
    entry = library.unregister(name)
    deleted: list[Path] = []
    if not entry.in_place:
        for p in entry.files:
            if p.is_file():
                p.unlink()
                deleted.append(p)
        folder = entry.file.parent
        if deleted and folder.parent == library.models_dir and folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()  # the repo folder a download made, now empty
    return entry, deleted
