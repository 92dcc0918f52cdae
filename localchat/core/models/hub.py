"""Hugging Face, through huggingface_hub only: search GGUF repos, list a repo's GGUF files grouped by quant.

Split models (``name-00001-of-00003.gguf``) are grouped as one model with all their parts. Every call here is a
network call the user asked for; callers wrap them in a download scope (privacy lockdown + audit guard).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

from localchat.errors import DownloadError

SPLIT_RE = re.compile(r"^(?P<stem>.+)-(?P<part>\d{5})-of-(?P<total>\d{5})\.gguf$", re.I)
QUANT_RE = re.compile(r"(?:^|[-_.])(I?Q\d(?:_[A-Z0-9]+)*|F16|BF16|F32)(?=[-_.]|$)", re.I)


@dataclass
class RemoteFile:
    path: str
    size: int
    sha256: str | None


@dataclass
class RemoteModel:
    """One downloadable model in a repo: a single .gguf or all parts of a split one."""

    repo: str
    name: str  # file name, or the stem of a split model
    quant: str
    files: list[RemoteFile] = field(default_factory=list)

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)

    def to_dict(self) -> dict[str, Any]:
        return {"repo": self.repo, "name": self.name, "quant": self.quant, "size": self.size,
                "files": [{"path": f.path, "size": f.size, "sha256": f.sha256} for f in self.files]}


def quant_of(filename: str) -> str:
    base = filename.rsplit("/", 1)[-1]
    base = SPLIT_RE.sub(lambda m: m.group("stem") + ".gguf", base)
    m = QUANT_RE.findall(base.removesuffix(".gguf"))
    return m[-1].upper() if m else "unknown"


def group_gguf(repo: str, siblings: list[RemoteFile]) -> list[RemoteModel]:
    singles: list[RemoteModel] = []
    splits: dict[str, RemoteModel] = {}
    for f in siblings:
        if not f.path.lower().endswith(".gguf") or "mmproj" in f.path.lower():
            continue
        m = SPLIT_RE.match(f.path)
        if m:
            key = m.group("stem")
            model = splits.setdefault(key, RemoteModel(repo, key.rsplit("/", 1)[-1], quant_of(f.path)))
            model.files.append(f)
        else:
            singles.append(RemoteModel(repo, f.path.rsplit("/", 1)[-1], quant_of(f.path), [f]))
    for model in splits.values():
        model.files.sort(key=lambda f: f.path)
    return sorted(singles + list(splits.values()), key=lambda r: (r.quant, r.name))


@contextmanager
def hub_scope(endpoint: str | None = None) -> Iterator[None]:
    """Lift the offline lockdown for one user-started Hub action, and let the audit guard admit only its host,
    labelled "download"."""
    from huggingface_hub import constants

    from localchat.core.privacy.audit import AuditGuard
    from localchat.core.privacy.lockdown import allow_hub_download

    host = urlparse(endpoint or constants.ENDPOINT).hostname or ""
    guard = AuditGuard.active()
    with allow_hub_download():
        if guard is None:
            yield
        else:
            with guard.allow(host, label="download"):
                yield


def _api(endpoint: str | None = None) -> Any:
    from huggingface_hub import HfApi

    return HfApi(endpoint=endpoint)


def repo_models(repo: str, endpoint: str | None = None) -> list[RemoteModel]:
    """The GGUF models of ``repo`` with sizes and sha256 (from the Hub's LFS metadata)."""
    with hub_scope(endpoint):
        info = _call(lambda: _api(endpoint).model_info(repo, files_metadata=True), repo)
    files = []
    for s in info.siblings or []:
        lfs = getattr(s, "lfs", None)
        sha = getattr(lfs, "sha256", None) if lfs is not None else None
        size = getattr(s, "size", None) or (getattr(lfs, "size", None) if lfs is not None else None) or 0
        files.append(RemoteFile(s.rfilename, int(size), sha))
    return group_gguf(repo, files)


def search(query: str, limit: int = 20, endpoint: str | None = None) -> list[dict[str, Any]]:
    with hub_scope(endpoint):
        models = _call(lambda: list(_api(endpoint).list_models(search=query, filter="gguf", limit=limit)), query)
    return [{"repo": m.id, "downloads": getattr(m, "downloads", None), "likes": getattr(m, "likes", None)}
            for m in models]


def hub_error(exc: BaseException, what: str) -> DownloadError | None:
    """A clear DownloadError for a huggingface_hub / network failure, or None if ``exc`` is something else."""
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
    )

    if isinstance(exc, GatedRepoError):
        return DownloadError(f"{what} is gated: accept its terms on Hugging Face and log in "
                             f"(`hf auth login`), then try again")
    if isinstance(exc, RepositoryNotFoundError):
        return DownloadError(f"{what} was not found on Hugging Face (or it is private and you are not logged in)")
    if isinstance(exc, OfflineModeIsEnabled):
        return DownloadError("localchat is offline: Hugging Face is only contacted for a download you start")
    if isinstance(exc, HfHubHTTPError):
        status = getattr(getattr(exc, "response", None), "status_code", None)
        if status == 404:
            return DownloadError(f"{what} was not found on Hugging Face")
        if status in (401, 403):
            return DownloadError(f"{what} needs access: it is gated or private. Log in (`hf auth login`) with an "
                                 f"account that has access, then try again")
        return DownloadError(f"Hugging Face answered with an error for {what}: {exc}")
    if isinstance(exc, OSError) or type(exc).__module__.startswith("httpx"):
        return DownloadError(f"cannot reach Hugging Face ({exc}); check your connection")
    return None


def _call(fn: Any, what: str) -> Any:
    try:
        return fn()
    except Exception as exc:
        mapped = hub_error(exc, what)
        if mapped is None:
            raise
        raise mapped from exc
