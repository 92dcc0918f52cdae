"""The local library: which models are installed, under which name, and where their file lives.

Stored as JSON in the data folder and shared by every localchat process (two windows, the window and the CLI, two
CLI commands at once): each change is a read-modify-write under a cross-process lock (``library.json.lock``) and an
atomic replace, so none is lost. Entries are validated one by one when read: a damaged one is set aside in
``library.rejected-<time>.json`` (with why) and the others stay. A model is either copied into the models folder or
registered in place (the starter model, an imported file the user wants to keep where it is); removing a model never
deletes a file outside the models folder.
"""

from __future__ import annotations

import json
import logging
import os
import re
import stat
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal

from localchat.errors import DownloadError, InvalidModelFile, LocalChatError, ModelNotFound
from localchat.fsutil import FileLock, LockBusy, aside_name, atomic_write_text

log = logging.getLogger(__name__)

_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,127}$")
LOCK_TIMEOUT = 30.0  # a library change takes milliseconds; longer means a stuck process
_MAX_LISTED = 5  # names listed in an error message before "and N more"


def slug(text: str) -> str:
    """A library name from a file or repo name: lower-case, safe characters only."""
    s = re.sub(r"\.gguf$", "", text, flags=re.I)
    s = re.sub(r"[^a-z0-9._-]+", "-", s.lower()).strip("-.")
    return s[:128] or "model"


def check_name(name: str) -> None:
    """Raise LocalChatError unless ``name`` can be a library name."""
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise LocalChatError(f"invalid model name {name!r}: use lower-case letters, digits, '.', '-', '_' "
                             f"(at most 128, starting with a letter or digit)")


def _listed(items: list[str]) -> str:
    more = len(items) - _MAX_LISTED
    return ", ".join(items[:_MAX_LISTED]) + (f" and {more} more" if more > 0 else "")


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
        """An entry from its JSON form; ValueError (saying which field) when it is not a valid entry."""
        if not isinstance(d, dict):
            raise ValueError(f"not an object but {type(d).__name__}")
        known = {f.name for f in fields(cls)}
        missing = [k for k in ("name", "path", "size") if k not in d]
        if missing:
            raise ValueError(f"no {', '.join(missing)}")
        e = cls(**{k: v for k, v in d.items() if k in known})  # a newer version's extra keys are ignored
        e.validate()
        return e

    def validate(self) -> None:
        """ValueError unless every field has the type and form the library relies on."""
        def bad(what: str, value: Any) -> ValueError:
            shown = repr(value)
            return ValueError(f"{what} {shown[:60] + '…' if len(shown) > 60 else shown}")

        if not isinstance(self.name, str) or not _NAME_RE.match(self.name):
            raise bad("invalid name", self.name)
        if not isinstance(self.path, str) or not self.path or "\0" in self.path or not os.path.isabs(self.path):
            raise bad("path is not an absolute file path:", self.path)
        if isinstance(self.size, bool) or not isinstance(self.size, int) or self.size < 0:
            raise bad("size is not a byte count:", self.size)
        if self.sha256 is not None and not isinstance(self.sha256, str):
            raise bad("sha256 is not text:", self.sha256)
        if not isinstance(self.source, str):
            raise bad("source is not text:", self.source)
        if not isinstance(self.in_place, bool):
            raise bad("in_place is not true/false:", self.in_place)
        if isinstance(self.added, bool) or not isinstance(self.added, (int, float)):
            raise bad("added is not a time:", self.added)
        if not isinstance(self.parts, list) or not all(
                isinstance(p, str) and p and "\0" not in p and os.path.isabs(p) for p in self.parts):
            raise bad("parts is not a list of absolute file paths:", self.parts)
        if self.parts and self.parts[0] != self.path:
            raise bad("parts does not start with path:", self.parts)
        if not isinstance(self.extra, dict):
            raise bad("extra is not an object:", self.extra)


class Library:
    """Installed models, persisted at ``library_file``.

    Reads need no lock (the file is replaced atomically); every change goes through :meth:`edit`. ``notices``
    collects one-line warnings (damaged entries set aside) for the window or the command line to show.
    """

    def __init__(self, library_file: Path, models_dir: Path) -> None:
        self.library_file = Path(library_file)
        self.models_dir = Path(models_dir)
        self.notices: list[str] = []

    @property
    def lock_file(self) -> Path:
        return self.library_file.with_name(self.library_file.name + ".lock")

    # -- reading ---------------------------------------------------------------------------------------------

    def _parse(self) -> tuple[dict[str, LibraryEntry], list[dict[str, Any]], str | None]:
        """(good entries, rejected entries with their reason, why the whole file is unusable or None).

        Raises OSError when the file exists and cannot be read (a permission, not damage: nothing is moved).
        """
        try:
            text = self.library_file.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {}, [], None
        except UnicodeDecodeError as exc:
            return {}, [], f"not UTF-8 text ({exc.reason})"
        try:
            raw = json.loads(text)
        except ValueError as exc:
            return {}, [], f"not JSON ({exc})"
        if not isinstance(raw, dict) or not isinstance(raw.get("models", []), list):
            return {}, [], "not a library object with a list of models"
        good: dict[str, LibraryEntry] = {}
        rejected: list[dict[str, Any]] = []
        for item in raw.get("models", []):
            try:
                e = LibraryEntry.from_dict(item)
                if e.name in good:
                    raise ValueError(f"a second entry named {e.name!r}")
            except (ValueError, TypeError) as exc:  # TypeError: a field name given twice, wrong shape
                rejected.append({"entry": item, "reason": str(exc)})
                continue
            good[e.name] = e
        return good, rejected, None

    def _read(self) -> dict[str, LibraryEntry]:
        """The valid entries; damage found is set aside (under the lock) and reported in ``notices``."""
        try:
            good, rejected, unusable = self._parse()
        except OSError as exc:
            log.warning("cannot read the model library %s: %s", self.library_file, exc)
            self._notice(f"cannot read the model library {self.library_file}: {exc.strerror or exc}")
            return {}
        if not rejected and unusable is None:
            return good
        try:
            with self._locked():
                return self._repair()
        except (LocalChatError, OSError) as exc:  # a read-only data folder: use the good entries, change nothing
            log.warning("cannot set the damaged library entries aside: %s", exc)
            return good

    def _repair(self) -> dict[str, LibraryEntry]:
        """Under the lock: parse again (another process may have repaired it already) and set damage aside."""
        good, rejected, unusable = self._parse()
        if unusable is not None:
            backup = aside_name(self.library_file)
            log.warning("library file unreadable (%s); kept as %s", unusable, backup)
            os.replace(self.library_file, backup)
            self._notice(f"the model library was unreadable ({unusable[:80]}); it was kept as {backup} and a new "
                         f"one started")
            return {}
        if rejected:
            aside = aside_name(self.library_file.with_name(self.library_file.stem), "rejected", ".json")
            atomic_write_text(aside, json.dumps({"library": str(self.library_file), "rejected": rejected},
                                                indent=2, default=repr))
            self._write(good)
            n = len(rejected)
            log.warning("library: %d damaged entr%s set aside in %s: %s", n, "y" if n == 1 else "ies", aside,
                        "; ".join(r["reason"] for r in rejected[:_MAX_LISTED]))
            self._notice(f"{n} damaged library entr{'y' if n == 1 else 'ies'} set aside in {aside} "
                         f"({rejected[0]['reason'][:100]}{'; …' if n > 1 else ''})")
        return good

    def _notice(self, text: str) -> None:
        if text not in self.notices:
            self.notices.append(text)

    def take_notices(self) -> list[str]:
        """The warnings collected so far (and forget them)."""
        out, self.notices = self.notices, []
        return out

    # -- writing ---------------------------------------------------------------------------------------------

    @contextmanager
    def _locked(self) -> Iterator[None]:
        try:
            self.library_file.parent.mkdir(parents=True, exist_ok=True)
            lock = FileLock(self.lock_file, timeout=LOCK_TIMEOUT)
            lock.acquire()
        except LockBusy as exc:
            who = f"process {exc.pid}" if exc.pid else "another process"
            raise LocalChatError(f"the model library {self.library_file} has been locked by {who} for more than "
                                 f"{LOCK_TIMEOUT:.0f} s; try again when it is done") from None
        except OSError as exc:
            raise LocalChatError(f"cannot lock the model library {self.library_file}: {exc.strerror or exc}") from exc
        try:
            yield
        finally:
            lock.release()

    def _write(self, entries: dict[str, LibraryEntry]) -> None:
        data = json.dumps({"version": 1, "models": [asdict(e) for e in sorted(entries.values(),
                                                                              key=lambda e: e.name)]},
                          indent=2)
        try:
            atomic_write_text(self.library_file, data)
        except OSError as exc:
            raise LocalChatError(f"cannot save the model library {self.library_file}: {exc.strerror or exc}; "
                                 f"nothing was changed") from exc

    @contextmanager
    def edit(self) -> Iterator[dict[str, LibraryEntry]]:
        """``with library.edit() as entries:`` change ``entries`` (name → entry); written when the block ends
        without an exception. Another process's change cannot slip in between the read and the write.

        Raises:
            LocalChatError: the library cannot be read, locked or written (disk full, read-only).
        """
        with self._locked():
            try:
                entries = self._repair()
            except OSError as exc:  # unreadable (a permission): refuse rather than write over what it holds
                raise LocalChatError(f"cannot read the model library {self.library_file}: "
                                     f"{exc.strerror or exc}") from exc
            yield entries
            self._write(entries)

    # -- the API ---------------------------------------------------------------------------------------------

    def entries(self) -> list[LibraryEntry]:
        return sorted(self._read().values(), key=lambda e: e.name)

    def get(self, name: str) -> LibraryEntry | None:
        return self._read().get(name)

    def register(self, entry: LibraryEntry, *,
                 exists: Literal["replace", "fail", "rename"] = "replace") -> LibraryEntry:
        """Add ``entry``; returns it as registered. ``exists`` says what to do when the name is taken: replace that
        entry, raise LocalChatError, or take the first free ``name-2``, ``name-3``… (an entry of the same file keeps
        its name and is replaced)."""
        check_name(entry.name)
        entry = replace(entry, path=os.path.abspath(entry.path), parts=[os.path.abspath(p) for p in entry.parts])
        try:
            entry.validate()
        except ValueError as exc:
            raise LocalChatError(f"cannot register {entry.name!r}: {exc}") from None
        with self.edit() as entries:
            if exists == "fail" and entry.name in entries:
                raise LocalChatError(f"a model named {entry.name!r} is already installed; pick another --name")
            if exists == "rename":
                base, n = entry.name, 2
                while (e := entries.get(entry.name)) is not None and e.path != entry.path:
                    entry = replace(entry, name=f"{base[:120]}-{n}")
                    n += 1
            entries[entry.name] = entry
        return entry

    def unregister(self, name: str) -> LibraryEntry:
        with self.edit() as entries:
            if name not in entries:
                raise ModelNotFound(f"no model named {name!r} in the library")
            return entries.pop(name)

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

    def owns(self, path: Path) -> bool:
        """Whether ``path`` lies inside the models folder (symlinked folders followed): the only place the library
        deletes files."""
        try:
            real_dir = os.path.realpath(self.models_dir)
            real = os.path.join(os.path.realpath(Path(path).parent), Path(path).name)
            return Path(path).is_absolute() and os.path.commonpath([real_dir, real]) == real_dir and real != real_dir
        except (OSError, ValueError):
            return False


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


def _require_regular(p: Path) -> None:
    """InvalidModelFile unless ``p`` is (a link to) a regular file: a FIFO would block the reader forever, a device
    never end, a link loop raise."""
    try:
        st = os.stat(p)
    except OSError as exc:
        raise InvalidModelFile(f"cannot read {p}: {exc.strerror or exc}") from None
    if not stat.S_ISREG(st.st_mode):
        kind = ("a folder" if stat.S_ISDIR(st.st_mode) else "a FIFO (named pipe)" if stat.S_ISFIFO(st.st_mode)
                else "a device" if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode)
                else "a socket" if stat.S_ISSOCK(st.st_mode) else "not a regular file")
        raise InvalidModelFile(f"{p} is {kind}, not a model file")


def _split_parts(first: Path) -> list[Path]:
    """All parts of a split model from its first part (``x-00001-of-00003.gguf``); a lone file is one part."""
    from localchat.core.models.hub import SPLIT_RE

    m = SPLIT_RE.match(first.name)
    if m is None:
        return [first]
    total, part = int(m.group("total")), int(m.group("part"))
    if not 1 <= part <= total:
        raise InvalidModelFile(f"{first.name} has an impossible split name (part {part} of {total})")
    if part != 1:
        raise InvalidModelFile(f"{first.name} is part {part} of a split model: import its first part "
                               f"({m.group('stem')}-00001-of-{total:05d}.gguf)")
    parts = [first.with_name(f"{m.group('stem')}-{i:05d}-of-{total:05d}.gguf") for i in range(1, total + 1)]
    missing = [p.name for p in parts if not os.path.lexists(p)]
    if missing:
        raise InvalidModelFile(f"{first.name} is split in {total} parts and {_listed(missing)} "
                               f"{'is' if len(missing) == 1 else 'are'} missing next to it")
    for p in parts[1:]:
        _require_regular(p)
    return parts


def import_file(library: Library, path: str | os.PathLike[str], models_dir: Path, *, name: str | None = None,
                in_place: bool = False) -> LibraryEntry:
    """Add a local .gguf (a split model by its first part: all parts come along).

    The name and the file are checked first (a bad name, a corrupt file, a FIFO or a folder is refused and nothing
    is copied), then the file is copied into the models folder under a temporary name, or registered where it is.
    The copy takes its final name and the entry is added in one step under the library lock; any failure removes
    the copy.

    Raises:
        InvalidModelFile: not a readable GGUF, not a regular file, or a split model with parts missing.
        LocalChatError: a bad or taken name, the file is already in the library, the copy failed.
        DownloadError: not enough disk space for the copy.
    """
    import shutil
    import tempfile

    from localchat.core.chat.history import is_r1_distill
    from localchat.core.models.gguf_info import read_gguf

    given = Path(path).expanduser()
    _require_regular(given)
    src = Path(os.path.realpath(given))
    name = slug(src.name) if name is None else name
    check_name(name)
    info = read_gguf(src)
    sources = _split_parts(src)
    current = {e.name: e for e in library.entries()}
    if name in current:
        raise LocalChatError(f"a model named {name!r} is already installed; pick another --name")

    def registered_as(entries: dict[str, LibraryEntry]) -> LibraryEntry | None:
        return next((e for e in entries.values() if os.path.realpath(e.path) == str(src)), None)

    if (already := registered_as(current)) is not None:
        raise LocalChatError(f"{src.name} is already in the library as {already.name!r}")
    targets = sources
    staged: list[tuple[Path, Path]] = []  # (temporary copy, final name)
    installed: list[Path] = []
    done = False
    try:
        if not in_place:
            dest = Path(os.path.abspath(models_dir))
            dest.mkdir(parents=True, exist_ok=True)
            targets = [dest / p.name for p in sources]
            clash = [t for t in targets if os.path.lexists(t)]
            if clash:
                raise LocalChatError(f"{clash[0]} already exists in the models folder")
            need = sum(p.stat().st_size for p in sources)
            if shutil.disk_usage(dest).free < need + 64 * 1024 * 1024:
                raise DownloadError(f"not enough disk space in {dest} to copy {src.name} ({need / 1e9:.2f} GB)")
            for s_, t in zip(sources, targets, strict=True):
                fd, tmp = tempfile.mkstemp(prefix=f".{t.name}.", suffix=".importing", dir=dest)
                os.close(fd)
                staged.append((Path(tmp), t))
                shutil.copyfile(s_, tmp)
        copies = [c for c, _ in staged] or targets
        entry = LibraryEntry(
            name=name, path=str(targets[0]), size=sum(c.stat().st_size for c in copies),
            source="import", in_place=in_place, parts=[str(t) for t in targets] if len(targets) > 1 else [],
            extra={"quant": info.quantisation, "architecture": info.architecture,
                   "context_length": info.context_length, "n_params": info.n_params,
                   "r1_distill": is_r1_distill(f"{name} {info.name}", info.chat_template)})
        with library.edit() as entries:  # another import may have taken the name or the file meanwhile
            if name in entries:
                raise LocalChatError(f"a model named {name!r} is already installed; pick another --name")
            if (already := registered_as(entries)) is not None:
                raise LocalChatError(f"{src.name} is already in the library as {already.name!r}")
            for copy, t in staged:
                if os.path.lexists(t):
                    raise LocalChatError(f"{t} already exists in the models folder")
                os.replace(copy, t)
                installed.append(t)
            entries[name] = entry
        done = True
        return entry
    except OSError as exc:
        raise LocalChatError(f"cannot copy {src.name} into {models_dir}: {exc.strerror or exc}") from exc
    finally:
        if not done:
            for p in [c for c, _ in staged] + installed:
                try:
                    p.unlink(missing_ok=True)
                except OSError as exc:
                    log.warning("could not remove the unfinished copy %s: %s", p, exc)


def remove_model(library: Library, name: str) -> tuple[LibraryEntry, list[Path]]:
    """Unregister ``name``; delete its files unless it was registered in place (or is the shared starter).

    Only files inside the models folder are ever deleted: an entry pointing elsewhere (a library edited by hand, a
    models folder moved in the settings) loses its registration and the files stay."""
    entry = library.unregister(name)
    deleted: list[Path] = []
    if not entry.in_place:
        for p in entry.files:
            if not library.owns(p):
                log.warning("kept %s: it is outside the models folder %s", p, library.models_dir)
                continue
            try:
                if p.is_file() or p.is_symlink():
                    p.unlink()
                    deleted.append(p)
            except OSError as exc:
                log.warning("could not delete %s: %s", p, exc)
        folder = entry.file.parent
        try:
            if deleted and folder.parent == library.models_dir and folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()  # the repo folder a download made, now empty
        except OSError:
            pass
    return entry, deleted
