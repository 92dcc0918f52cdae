"""Model downloads through huggingface_hub's HTTP machinery: resumable, verifiable, cancellable.

Bytes go to ``<file>.part`` next to the final file; a later run (also after an app restart or a killed process)
asks for the rest with an HTTP Range request instead of starting over. When all bytes are in, the sha256 from the
Hub's LFS metadata is checked *before* the file takes its final name and the model is registered; a mismatch
removes the partial file. Downloads are the app's only network activity and happen only when the user starts one:
they run inside the privacy download scope, labelled "download" for the audit log.
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from localchat.core.models.hub import RemoteFile, RemoteModel, hub_error, hub_scope
from localchat.core.models.library import Library, LibraryEntry, slug
from localchat.errors import DownloadError

CHUNK = 1 << 20
DISK_MARGIN = 64 * 1024 * 1024


class DownloadStopped(DownloadError):
    """The user paused (partial file kept for resuming) or cancelled (partial file removed)."""

    def __init__(self, message: str, paused: bool) -> None:
        super().__init__(message)
        self.paused = paused


@dataclass(frozen=True)
class DownloadProgress:
    file: str
    part: int
    parts: int
    done_bytes: int
    total_bytes: int
    speed_bps: float
    eta_s: float | None
    resumed_from: int


def safe_relpath(path: str) -> PurePosixPath:
    p = PurePosixPath(path)
    if p.is_absolute() or ".." in p.parts or not p.parts or "\\" in path or ":" in path:
        raise DownloadError(f"refusing the file name {path!r}: it would be written outside the models folder")
    return p


class DownloadJob:
    """Download every file of ``model`` into ``dest_dir/<repo>/``. ``run`` blocks; ``pause``/``cancel`` are
    thread-safe and take effect within one chunk."""

    def __init__(self, model: RemoteModel, dest_dir: Path, *, endpoint: str | None = None,
                 progress: Callable[[DownloadProgress], None] | None = None, token: str | None = None) -> None:
        from huggingface_hub import constants

        self.model = model
        self.endpoint = endpoint or constants.ENDPOINT
        self.folder = Path(dest_dir) / slug(model.repo.replace("/", "--"))
        self.progress = progress
        self.token = token
        self._stop: str | None = None
        self._lock = threading.Lock()
        self.bytes_fetched = 0  # what this run actually transferred (resume proof)

    def pause(self) -> None:
        with self._lock:
            self._stop = "pause"

    def cancel(self) -> None:
        with self._lock:
            self._stop = "cancel"

    def targets(self) -> list[tuple[RemoteFile, Path]]:
        return [(f, self.folder / safe_relpath(f.path).name) for f in self.model.files]

    def run(self) -> list[Path]:
        targets = self.targets()
        missing = sum(f.size - _part_size(t) for f, t in targets if not t.exists())
        self.folder.mkdir(parents=True, exist_ok=True)
        free = shutil.disk_usage(self.folder).free
        if missing + DISK_MARGIN > free:
            raise DownloadError(f"not enough disk space: {missing / 1e9:.2f} GB needed, {free / 1e9:.2f} GB free "
                                f"in {self.folder}")
        with hub_scope(self.endpoint):
            for i, (f, target) in enumerate(targets):
                if target.exists() and target.stat().st_size == f.size:
                    continue
                self._fetch(f, target, i, len(targets))
        return [t for _, t in targets]

    def _fetch(self, f: RemoteFile, target: Path, index: int, parts: int) -> None:
        import httpx
        from huggingface_hub import get_session, hf_hub_url
        from huggingface_hub.utils._headers import build_hf_headers
        from huggingface_hub.utils._http import hf_raise_for_status

        part = target.with_name(target.name + ".part")
        start = _part_size(target)
        if start > f.size:
            part.unlink()
            start = 0
        url = hf_hub_url(self.model.repo, f.path, endpoint=self.endpoint)
        headers = build_hf_headers(token=self.token)
        headers["Accept-Encoding"] = "identity"
        if start:
            headers["Range"] = f"bytes={start}-"
        t0 = last = time.monotonic()
        done = start
        try:
            with get_session().stream("GET", url, headers=headers, follow_redirects=True, timeout=30) as r:
                if r.status_code >= 400:
                    r.read()
                    hf_raise_for_status(r)
                if start and r.status_code != 206:
                    start = done = 0  # the server ignored the Range: start over
                # hash while writing (the bytes already on disk first, on a resume): no second pass over the file
                hasher = _sha256_of(part, start) if start else hashlib.sha256()
                with open(part, "ab" if start else "wb") as out:
                    for block in r.iter_bytes(CHUNK):
                        with self._lock:
                            stop = self._stop
                        if stop:
                            out.close()
                            if stop == "cancel":
                                part.unlink(missing_ok=True)
                                raise DownloadStopped("download cancelled; the partial file was removed", False)
                            raise DownloadStopped(f"download paused at {done / 1e6:.1f} MB; it resumes from there",
                                                  True)
                        out.write(block)
                        hasher.update(block)
                        done += len(block)
                        self.bytes_fetched += len(block)
                        now = time.monotonic()
                        if self.progress and (now - last > 0.2 or done == f.size):
                            last = now
                            speed = (done - start) / max(now - t0, 1e-6)
                            eta = (f.size - done) / speed if speed > 0 else None
                            self.progress(DownloadProgress(f.path, index + 1, parts, done, f.size, speed, eta, start))
        except DownloadStopped:
            raise
        except Exception as exc:
            from huggingface_hub.errors import HfHubHTTPError

            if isinstance(exc, HfHubHTTPError):  # an HTTP answer: 401/403/404/5xx
                raise hub_error(exc, f"{self.model.repo}/{f.path}") or DownloadError(str(exc)) from exc
            if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
                raise DownloadError(f"the disk is full after {done / 1e6:.1f} MB of {f.path}; free some space "
                                    f"and download again: it resumes where it stopped") from exc
            if isinstance(exc, (OSError, httpx.HTTPError)):
                raise DownloadError(f"connection lost while downloading {f.path} ({exc}); download again to "
                                    f"resume from {done / 1e6:.1f} MB") from exc
            raise
        if done != f.size:
            raise DownloadError(f"the server sent {done} bytes of {f.path} but it has {f.size}; download again "
                                f"to resume")
        if f.sha256:
            digest = hasher.hexdigest()
            if digest != f.sha256:
                part.unlink(missing_ok=True)
                raise DownloadError(f"{f.path} is corrupt: sha256 {digest[:12]}… does not match the Hub's "
                                    f"{f.sha256[:12]}…; the file was removed and nothing was registered")
        os.replace(part, target)


def _part_size(target: Path) -> int:
    part = target.with_name(target.name + ".part")
    return part.stat().st_size if part.exists() else 0


def _sha256_of(path: Path, length: int) -> hashlib._Hash:
    """A sha256 object fed with the first ``length`` bytes of ``path`` (the part kept from an earlier run)."""
    h = hashlib.sha256()
    left = length
    with open(path, "rb") as fh:
        while left > 0 and (block := fh.read(min(CHUNK, left))):
            h.update(block)
            left -= len(block)
    return h


def pull(model: RemoteModel, library: Library, dest_dir: Path, *, endpoint: str | None = None,
         progress: Callable[[DownloadProgress], None] | None = None, job: DownloadJob | None = None) -> LibraryEntry:
    """Download, verify and register ``model``. The file must also read as GGUF before it is registered."""
    from localchat.core.chat.history import is_r1_distill
    from localchat.core.models.gguf_info import read_gguf

    job = job or DownloadJob(model, dest_dir, endpoint=endpoint, progress=progress)
    paths = job.run()
    info = read_gguf(paths[0])
    name = slug(model.name.removesuffix(".gguf"))
    return library.register(LibraryEntry(
        name=name, path=str(paths[0]), size=sum(p.stat().st_size for p in paths),
        sha256=model.files[0].sha256, source=f"huggingface:{model.repo}", parts=[str(p) for p in paths],
        extra={"quant": model.quant, "architecture": info.architecture,
               "r1_distill": is_r1_distill(f"{model.repo} {info.name}", info.chat_template)}))
