"""Model downloads through huggingface_hub's HTTP machinery: resumable, verified, cancellable.

Bytes go to ``<file>.part`` next to the final file, and a small manifest (``.<model>.download.json``) records what
is being fetched (repo, commit, sizes, hashes). A later run — after a pause, a closed lid, a killed process, a dropped
connection or a full disk, also after an app restart — asks for the rest with an HTTP Range request instead of
starting over; a partial file from another version of the file (the manifest's hash differs) is discarded.

One download per file at a time, across processes: each file is locked (``.<file>.lock``, gone when released) for the
whole run, and a second download of it is refused with the holder's pid. A file the Hub gives no checksum for is
refused before any byte is fetched. Once complete, the ``.part`` file itself is hashed (sha256 from the Hub's LFS
metadata, or the git blob id) and it is exactly that file that takes the final name, atomically, before the model is
registered; a mismatch removes it. Downloads are the app's only network activity and happen only when the user starts
one: they run inside :func:`~localchat.core.models.hub.hub_scope`, labelled "download" for the audit log.
"""

from __future__ import annotations

import collections
import errno
import hashlib
import json
import logging
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Protocol

from localchat.core.models.hub import RemoteFile, RemoteModel, hub_error, hub_scope, repo_models, user_token
from localchat.core.models.library import Library, LibraryEntry, check_name, slug
from localchat.errors import DownloadError, InvalidModelFile
from localchat.fsutil import FileLock, LockBusy, atomic_write_text

log = logging.getLogger(__name__)
CHUNK = 1 << 20
DISK_MARGIN = 64 * 1024 * 1024
MANIFEST_SUFFIX = ".download.json"


FreeSpace = Callable[[Path], int]  # bytes free on the disk holding a folder (tests inject a full disk)


def free_bytes(folder: Path) -> int:
    """Bytes free on the disk that holds ``folder`` (or, when it does not exist yet, its nearest existing parent)."""
    p = Path(folder).absolute()
    while not p.exists() and p.parent != p:
        p = p.parent
    return shutil.disk_usage(p).free


def disk_margin(size: int) -> int:
    """Room kept free beyond the bytes still to fetch: 64 MB and 1 % (the listing's sizes are exact; the margin
    is for the manifest, the library and what other programs write meanwhile)."""
    return DISK_MARGIN + size // 100


def bytes_to_fetch(model: RemoteModel, dest_dir: Path) -> int:
    """What a download of ``model`` into ``dest_dir`` still has to fetch (partial and finished parts count)."""
    folder = model_folder(dest_dir, model.repo)
    left = 0
    for f in model.files:
        try:
            target = folder / safe_relpath(f.path).name
        except DownloadError:
            continue
        left += 0 if target.exists() and target.stat().st_size == f.size else max(0, f.size - _part_size(target))
    return left


def check_disk_space(model: RemoteModel, dest_dir: Path, free_space: FreeSpace = free_bytes) -> None:
    """Refuse a download that would not fit, before it starts.

    Raises:
        DownloadError: one line with what is needed and what is free.
    """
    missing = bytes_to_fetch(model, dest_dir)
    try:
        free = free_space(model_folder(dest_dir, model.repo))
    except OSError as exc:
        raise DownloadError(f"cannot tell the free space in {dest_dir}: {exc.strerror or exc}") from exc
    if missing + disk_margin(missing) > free:
        raise DownloadError(f"not enough disk space: {missing / 1e9:.2f} GB needed (plus "
                            f"{max(0, disk_margin(missing)) / 1e6:,.0f} MB to spare), {free / 1e9:.2f} GB free in "
                            f"{dest_dir}; free some space or choose another models folder in Settings")


class _Hasher(Protocol):
    def update(self, data: bytes, /) -> None: ...

    def hexdigest(self) -> str: ...


class DownloadStopped(DownloadError):
    """The user paused (partial file kept for resuming) or cancelled (partial files removed)."""

    def __init__(self, message: str, paused: bool) -> None:
        super().__init__(message)
        self.paused = paused


@dataclass(frozen=True)
class DownloadProgress:
    """One progress report. ``done_bytes``/``total_bytes`` are for the current file, ``model_done``/``model_total``
    for all parts; ``speed_bps`` is measured over the last few seconds; ``resumed_from`` is what the file had on disk
    when this run started."""

    file: str
    part: int
    parts: int
    done_bytes: int
    total_bytes: int
    speed_bps: float
    eta_s: float | None
    resumed_from: int
    model_done: int = 0
    model_total: int = 0


@dataclass(frozen=True)
class PendingDownload:
    """A download that was started and not finished (paused, interrupted, killed): it resumes where it stopped."""

    model: RemoteModel
    folder: Path
    done_bytes: int

    @property
    def fraction(self) -> float:
        return self.done_bytes / self.model.size if self.model.size else 0.0


def safe_relpath(path: str) -> PurePosixPath:
    """A repo file path that stays inside the models folder, or DownloadError."""
    p = PurePosixPath(path)
    if (p.is_absolute() or ".." in p.parts or not p.parts or "\\" in path or ":" in path or "\0" in path
            or p.name.startswith(".")):
        raise DownloadError(f"refusing the file name {path!r}: it would be written outside the models folder")
    return p


def model_folder(dest_dir: Path, repo: str) -> Path:
    return Path(dest_dir) / slug(repo.replace("/", "--"))


def _manifest_path(folder: Path, model: RemoteModel) -> Path:
    return folder / f".{slug(model.name)}{MANIFEST_SUFFIX}"


def _part(target: Path) -> Path:
    return target.with_name(target.name + ".part")


def _part_size(target: Path) -> int:
    part = _part(target)
    return part.stat().st_size if part.exists() else 0


def _lock_path(target: Path) -> Path:
    return target.with_name(f".{target.name}.lock")


def _listed(items: list[str], n: int = 5) -> str:
    return ", ".join(items[:n]) + (f" and {len(items) - n} more" if len(items) > n else "")


class DownloadJob:
    """Download every file of ``model`` into ``dest_dir/<repo>/``.

    ``run`` blocks; ``pause``/``cancel`` are thread-safe and take effect within one network read. ``progress`` is
    called from the thread running ``run``. A dropped connection is retried ``retries`` times (waiting
    ``retry_wait`` · 2ⁿ seconds) as long as a retry makes progress.
    """

    def __init__(self, model: RemoteModel, dest_dir: Path, *, endpoint: str | None = None,
                 progress: Callable[[DownloadProgress], None] | None = None, token: str | None = None,
                 retries: int = 3, retry_wait: float = 1.0, free_space: FreeSpace = free_bytes) -> None:
        from huggingface_hub import constants

        self.model = model
        self.endpoint = endpoint or constants.ENDPOINT
        self.dest_dir = Path(dest_dir)
        self.folder = model_folder(dest_dir, model.repo)
        self.free_space = free_space
        self.progress = progress
        self.token = token
        self.retries = retries
        self.retry_wait = retry_wait
        self.bytes_fetched = 0  # what this run actually transferred (resume proof)
        self._stop: str | None = None
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._speed: collections.deque[tuple[float, int]] = collections.deque()
        self._model_before = 0  # bytes of the parts finished before the current one

    # -- control (any thread) ------------------------------------------------------------------------------

    def pause(self) -> None:
        with self._lock:
            self._stop = self._stop or "pause"
        self._wake.set()

    def cancel(self) -> None:
        with self._lock:
            self._stop = "cancel"
        self._wake.set()

    def _check_stop(self, done: int) -> None:
        with self._lock:
            stop = self._stop
        if stop == "cancel":
            raise DownloadStopped("download cancelled; the partial files were removed", False)
        if stop == "pause":
            raise DownloadStopped(f"download paused at {done / 1e6:.1f} MB; it resumes from there", True)

    # -- files ---------------------------------------------------------------------------------------------

    def targets(self) -> list[tuple[RemoteFile, Path]]:
        return [(f, self.folder / safe_relpath(f.path).name) for f in self.model.files]

    @property
    def manifest(self) -> Path:
        return _manifest_path(self.folder, self.model)

    @contextmanager
    def _exclusive(self) -> Iterator[None]:
        """Hold every file's download lock, or raise DownloadError naming the process that has one."""
        with ExitStack() as stack:
            for _f, target in self.targets():
                try:
                    self.folder.mkdir(parents=True, exist_ok=True)
                    stack.enter_context(FileLock(_lock_path(target), timeout=0, transient=True))
                except LockBusy as busy:
                    who = ("this process" if busy.pid == os.getpid() else f"process {busy.pid}" if busy.pid
                           else "another process")
                    raise DownloadError(f"{target.name} is already being downloaded by {who}; wait for that "
                                        f"download to finish, or stop it first") from None
                except OSError as exc:
                    raise DownloadError(f"cannot lock {target} for the download: {exc.strerror or exc}") from exc
            yield

    def discard(self) -> None:
        """Remove this model's partial files, the parts already complete but not registered, and the manifest.

        Raises DownloadError (and removes nothing) while another job or process is downloading the model."""
        with self._exclusive():
            self._discard()

    def _discard(self) -> None:
        for _f, target in self.targets():
            _part(target).unlink(missing_ok=True)
            if self.manifest.exists():
                target.unlink(missing_ok=True)
        self.manifest.unlink(missing_ok=True)

    def _read_manifest(self) -> dict[str, Any]:
        try:
            data: dict[str, Any] = json.loads(self.manifest.read_text(encoding="utf-8"))
            return data
        except (OSError, ValueError):
            return {}

    def _write_manifest(self, verified: list[str]) -> None:
        atomic_write_text(self.manifest, json.dumps({"model": self.model.to_dict(), "verified": verified,
                                                     "updated": time.time()}))

    # -- the download --------------------------------------------------------------------------------------

    def run(self) -> list[Path]:
        """Fetch, verify and put in place every file of the model; returns their paths (first part first).

        Raises:
            DownloadStopped: paused or cancelled.
            DownloadError: offline mode, gated/private/missing repo or file, no network, disk full, bad name,
                hash mismatch; the message says what to do.
        """
        self.targets()  # refuse unsafe names before any request
        if self.model.size:  # the listing's sizes (a catalogue entry's are close): refuse before any request
            check_disk_space(self.model, self.dest_dir, self.free_space)
        with hub_scope(self.endpoint):
            if not self.model.verified_metadata:
                self.model = self._exact_metadata()
        self.targets()
        unverifiable = [f.path for f in self.model.files if not (f.sha256 or f.blob_id)]
        if unverifiable:
            raise DownloadError(f"the Hub gives no checksum for {_listed(unverifiable)}; refusing to download a "
                                f"file that cannot be verified")
        with self._exclusive():
            try:
                paths = self._run()
            except DownloadStopped as stop:
                if not stop.paused:
                    self._discard()
                raise
            self.manifest.unlink(missing_ok=True)
        return paths

    def _run(self) -> list[Path]:
        with hub_scope(self.endpoint):
            token = self.token or user_token()
            targets = self.targets()
            verified = self._reconcile(targets)
            check_disk_space(self.model, self.dest_dir, self.free_space)  # again: exact sizes, parts reconciled
            self._write_manifest(sorted(verified))
            for i, (f, target) in enumerate(targets):
                self._model_before = sum(x.size for x, _ in targets[:i])
                if target.name not in verified:
                    self._check_stop(_part_size(target))
                    self._fetch_with_retries(f, target, i, len(targets), token)
                    verified.add(target.name)
                    self._write_manifest(sorted(verified))
        return [t for _, t in targets]

    def _exact_metadata(self) -> RemoteModel:
        """Sizes, hashes and commit from the Hub for a model listed without them (a catalogue entry)."""
        wanted = {f.path for f in self.model.files}
        for m in repo_models(self.model.repo, endpoint=self.endpoint):
            if {f.path for f in m.files} == wanted or m.name == self.model.name:
                return m
        raise DownloadError(f"{self.model.repo} no longer has {self.model.name} on Hugging Face; refresh the "
                            f"catalogue or pick another file")

    def _reconcile(self, targets: list[tuple[RemoteFile, Path]]) -> set[str]:
        """Which files are already complete and verified; drop partial files of another version of the file."""
        old = self._read_manifest()
        old_files = {f["path"]: f for f in old.get("model", {}).get("files", [])}
        old_verified = set(old.get("verified", []))
        verified: set[str] = set()
        for f, target in targets:
            before = old_files.get(f.path)
            same = before is not None and before.get("sha256") == f.sha256 and before.get("size") == f.size
            if before is not None and not same:
                log.info("discarding partial %s: the Hub has another version of it now", target.name)
                _part(target).unlink(missing_ok=True)
                if target.name in old_verified:
                    target.unlink(missing_ok=True)
            if _part_size(target) > f.size:
                _part(target).unlink()
            if target.exists():
                if same and target.name in old_verified and target.stat().st_size == f.size:
                    verified.add(target.name)
                elif target.stat().st_size == f.size and _digest_ok(f, _file_hasher(f, target, f.size)):
                    verified.add(target.name)  # e.g. a copy the user placed there: hashed, not trusted blindly
                else:
                    raise DownloadError(f"{target} already exists and is not this file; move it away first")
        return verified

    def _fetch_with_retries(self, f: RemoteFile, target: Path, index: int, parts: int, token: str | None) -> None:
        failures = 0
        while True:
            before = _part_size(target)
            try:
                self._fetch(f, target, index, parts, token)
                return
            except _Retryable as exc:
                made_progress = _part_size(target) > before
                failures = 0 if made_progress else failures + 1
                if failures > self.retries:
                    raise DownloadError(f"connection lost while downloading {f.path} ({exc}); download again to "
                                        f"resume from {_part_size(target) / 1e6:.1f} MB") from exc.__cause__
                wait = self.retry_wait * (2 ** max(0, failures - 1))
                log.info("download of %s interrupted (%s); retrying in %.1f s", f.path, exc, wait)
                self._wake.wait(wait)
                self._check_stop(_part_size(target))

    def _fetch(self, f: RemoteFile, target: Path, index: int, parts: int, token: str | None) -> None:
        import httpx
        from huggingface_hub import get_session, hf_hub_url
        from huggingface_hub.errors import HfHubHTTPError
        from huggingface_hub.utils._headers import build_hf_headers
        from huggingface_hub.utils._http import hf_raise_for_status

        part = _part(target)
        start = _part_size(target)
        done = start
        if start < f.size or f.size == 0:
            url = hf_hub_url(self.model.repo, f.path, revision=self.model.revision, endpoint=self.endpoint)
            headers = build_hf_headers(token=token or False)
            headers["Accept-Encoding"] = "identity"
            if start:
                headers["Range"] = f"bytes={start}-"
            try:
                with get_session().stream("GET", url, headers=headers, follow_redirects=True,
                                          timeout=httpx.Timeout(30.0)) as r:
                    if r.status_code >= 400:
                        r.read()
                        hf_raise_for_status(r)
                    if start and (r.status_code != 206 or not _range_starts_at(r, start)):
                        start = done = 0  # the server ignored (or misread) the Range: start over
                    total = _announced_total(r, start)
                    if total is not None and total != f.size:
                        raise DownloadError(f"{f.path} on the Hub is {total} bytes, not the {f.size} it was listed "
                                            f"with; list the repo's files again")
                    with open(part, "ab" if start else "wb") as out:
                        last = time.monotonic()
                        self._report(f, index, parts, done, start, last)
                        for block in r.iter_bytes():
                            out.write(block)
                            done += len(block)
                            self.bytes_fetched += len(block)
                            if done > f.size:
                                break
                            now = time.monotonic()
                            if now - last >= 0.2 or done == f.size:
                                last = now
                                self._report(f, index, parts, done, start, now)
                            self._check_stop(done)
            except (DownloadError, DownloadStopped):
                raise
            except HfHubHTTPError as exc:  # an HTTP answer: 401/403/404/5xx
                if exc.response is not None and exc.response.status_code >= 500:
                    raise _Retryable(f"HTTP {exc.response.status_code}") from exc
                raise hub_error(exc, f"{self.model.repo}/{f.path}", token) or DownloadError(str(exc)) from exc
            except OSError as exc:
                if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                    raise DownloadError(f"the disk is full after {done / 1e6:.1f} MB of {f.path}; free some space "
                                        f"and download again: it resumes where it stopped") from exc
                mapped = hub_error(exc, f"{self.model.repo}/{f.path}", token) if exc.errno is None else None
                raise mapped or DownloadError(f"cannot write {part}: {exc.strerror or exc}") from exc
            except httpx.TransportError as exc:  # refused, reset, timed out, cut short
                raise _Retryable(str(exc) or type(exc).__name__) from exc
        if done > f.size:
            part.unlink(missing_ok=True)
            raise DownloadError(f"the server sent more than the {f.size} bytes of {f.path}; the partial file was "
                                f"removed, try again")
        if done < f.size:
            raise _Retryable(f"the server sent {done} of {f.size} bytes")
        self._install(f, part, target)

    @staticmethod
    def _install(f: RemoteFile, part: Path, target: Path) -> None:
        """Hash the finished ``.part`` file as it is on disk and give exactly that file the final name."""
        try:
            with open(part, "rb") as fh:
                before = os.fstat(fh.fileno())
                h = _hasher(f)
                while block := fh.read(CHUNK):
                    h.update(block)
            ok = before.st_size == f.size and _digest_ok(f, h)
            if not ok:
                part.unlink(missing_ok=True)
                expected = f.sha256 or f.blob_id or ""
                raise DownloadError(f"{f.path} is corrupt: its hash {h.hexdigest()[:12]}… does not match the Hub's "
                                    f"{expected[:12]}…; the file was removed and nothing was registered")
            os.replace(part, target)
            after = os.stat(target)
        except OSError as exc:
            raise DownloadError(f"cannot put {target.name} in place: {exc.strerror or exc}; download again") from exc
        same = (after.st_dev, after.st_ino, after.st_size, after.st_mtime_ns) == (
            before.st_dev, before.st_ino, before.st_size, before.st_mtime_ns)
        if not same:  # only possible if something outside localchat wrote there meanwhile
            target.unlink(missing_ok=True)
            raise DownloadError(f"{target} changed while it was being verified; the file was removed, download again")

    def _report(self, f: RemoteFile, index: int, parts: int, done: int, start: int, now: float) -> None:
        self._speed.append((now, self.bytes_fetched))
        while len(self._speed) > 2 and now - self._speed[0][0] > 5.0:
            self._speed.popleft()
        t_first, b_first = self._speed[0]
        speed = (self.bytes_fetched - b_first) / (now - t_first) if now > t_first else 0.0
        model_done = self._model_before + done
        eta = (self.model.size - model_done) / speed if speed > 0 else None
        if self.progress is not None:
            self.progress(DownloadProgress(f.path, index + 1, parts, done, f.size, speed, eta, start, model_done,
                                           self.model.size))


class _Retryable(Exception):
    """A transfer that broke off in a way a new request may fix (connection, timeout, short body, 5xx)."""


def _range_starts_at(r: Any, start: int) -> bool:
    cr = r.headers.get("Content-Range", "")
    try:
        return int(cr.split()[1].split("-")[0]) == start
    except (IndexError, ValueError):
        return False


def _announced_total(r: Any, start: int) -> int | None:
    """The whole file's size as the response states it (Content-Range total, else start + Content-Length)."""
    cr = r.headers.get("Content-Range", "")
    if "/" in cr and cr.rsplit("/", 1)[1].isdigit():
        return int(cr.rsplit("/", 1)[1])
    cl = r.headers.get("Content-Length")
    return start + int(cl) if cl and cl.isdigit() else None


def _hasher(f: RemoteFile) -> _Hasher:
    """The hash the Hub gives for ``f``: sha256, or the git blob id of a file kept without LFS."""
    if f.sha256 or not f.blob_id:
        return hashlib.sha256()
    return hashlib.sha1(f"blob {f.size}\0".encode(), usedforsecurity=False)


def _file_hasher(f: RemoteFile, path: Path, length: int) -> _Hasher:
    """:func:`_hasher` fed with the first ``length`` bytes of ``path``."""
    h = _hasher(f)
    left = length
    if left:
        with open(path, "rb") as fh:
            while left > 0 and (block := fh.read(min(CHUNK, left))):
                h.update(block)
                left -= len(block)
    return h


def _digest_ok(f: RemoteFile, h: _Hasher) -> bool:
    expected = f.sha256 or f.blob_id
    if not expected:
        raise DownloadError(f"the Hub gave no checksum for {f.path}; refusing to install a file that cannot be "
                            f"verified")
    return h.hexdigest() == expected.lower()


def pending_downloads(models_dir: Path) -> list[PendingDownload]:
    """Downloads started and not finished under ``models_dir`` (from their manifests), to offer resuming."""
    out = []
    for manifest in sorted(Path(models_dir).glob(f"*/.*{MANIFEST_SUFFIX}")):
        try:
            data = json.loads(manifest.read_text(encoding="utf-8"))
            model = RemoteModel.from_dict(data["model"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
        done = 0
        for f in model.files:
            try:
                target = manifest.parent / safe_relpath(f.path).name
            except DownloadError:
                continue
            done += f.size if target.name in data.get("verified", []) and target.exists() else _part_size(target)
        out.append(PendingDownload(model, manifest.parent, done))
    return out


def pull(model: RemoteModel, library: Library, dest_dir: Path, *, endpoint: str | None = None,
         progress: Callable[[DownloadProgress], None] | None = None, job: DownloadJob | None = None,
         name: str | None = None, extra: dict[str, Any] | None = None) -> LibraryEntry:
    """Download, verify and register ``model``. The file must also read as GGUF before it is registered."""
    from localchat.core.chat.history import is_r1_distill
    from localchat.core.models.gguf_info import read_gguf

    if name is not None:
        check_name(name)  # before the download, not after it
    job = job or DownloadJob(model, dest_dir, endpoint=endpoint, progress=progress)
    paths = job.run()
    model = job.model  # with the Hub's exact metadata
    try:
        info = read_gguf(paths[0])
    except InvalidModelFile as exc:
        for p in paths:
            p.unlink(missing_ok=True)
        raise InvalidModelFile(f"{model.repo}/{model.name} downloaded and matches the Hub, but it is not a model "
                               f"localchat can read ({exc}); the file was removed and nothing was registered") from exc
    return library.register(LibraryEntry(  # the size and hash verified on the installed files
        name=name or slug(model.name), path=str(paths[0]), size=sum(f.size for f in model.files),
        sha256=model.files[0].sha256, source=f"huggingface:{model.repo}", parts=[str(p) for p in paths],
        extra={"quant": model.quant, "architecture": info.architecture, "revision": model.revision,
               "context_length": info.context_length, "n_params": info.n_params,
               "r1_distill": is_r1_distill(f"{model.repo} {info.name}", info.chat_template), **(extra or {})}),
        exists="rename")
