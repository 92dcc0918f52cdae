"""Hugging Face, through huggingface_hub only: search GGUF repos, list a repo's GGUF files grouped by quant.

Split models (``name-00001-of-00003.gguf``) are grouped as one model with all their parts. Every call here is a
network call the user asked for and runs inside :func:`hub_scope` (privacy lockdown lifted for it, audit label
"download").
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import urlparse

from localchat.errors import DownloadError

SPLIT_RE = re.compile(r"^(?P<stem>.+)-(?P<part>\d{5})-of-(?P<total>\d{5})\.gguf$", re.I)
QUANT_RE = re.compile(r"(?:^|[-_.])(I?Q\d(?:_[A-Z0-9]+)*|F16|BF16|F32)(?=[-_.]|$)", re.I)
T = TypeVar("T")


@dataclass
class RemoteFile:
    """One file in a Hub repo. ``sha256`` is the LFS hash; ``blob_id`` the git object id (used to verify the rare
    GGUF stored without LFS)."""

    path: str
    size: int
    sha256: str | None
    blob_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "size": self.size, "sha256": self.sha256, "blob_id": self.blob_id}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RemoteFile:
        return cls(str(d["path"]), int(d["size"]), d.get("sha256"), d.get("blob_id"))


@dataclass
class RemoteModel:
    """One downloadable model in a repo: a single .gguf or all parts of a split one.

    ``revision`` is the commit the file list was read at (downloads ask for exactly that commit, so a repo updated
    in between cannot mix two versions); ``None`` means the listing did not come from the Hub (a catalogue entry)
    and the exact sizes and hashes are fetched before downloading.
    """

    repo: str
    name: str  # file name, or the stem of a split model
    quant: str
    files: list[RemoteFile] = field(default_factory=list)
    revision: str | None = None
    gated: bool = False

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)

    @property
    def verified_metadata(self) -> bool:
        """Every file has a hash from the Hub and the listing is pinned to a commit."""
        return self.revision is not None and all(f.sha256 or f.blob_id for f in self.files)

    def to_dict(self) -> dict[str, Any]:
        return {"repo": self.repo, "name": self.name, "quant": self.quant, "size": self.size,
                "revision": self.revision, "gated": self.gated, "files": [f.to_dict() for f in self.files]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RemoteModel:
        return cls(str(d["repo"]), str(d["name"]), str(d.get("quant", "unknown")),
                   [RemoteFile.from_dict(f) for f in d.get("files", [])], d.get("revision"), bool(d.get("gated")))


def quant_of(filename: str) -> str:
    """The quantisation named in a GGUF file name (``…-Q4_K_M.gguf`` → ``Q4_K_M``), or ``unknown``."""
    base = filename.rsplit("/", 1)[-1]
    base = SPLIT_RE.sub(lambda m: m.group("stem") + ".gguf", base)
    m = QUANT_RE.findall(base.removesuffix(".gguf"))
    return m[-1].upper() if m else "unknown"


def group_gguf(repo: str, siblings: list[RemoteFile], revision: str | None = None,
               gated: bool = False) -> list[RemoteModel]:
    """Group a repo's files into models: each single ``.gguf``, and each complete split set as one model.

    Vision projectors (``mmproj``) are not chat models and are left out. A split set with a part missing is left out
    too (it could never load).
    """
    singles: list[RemoteModel] = []
    splits: dict[str, RemoteModel] = {}
    totals: dict[str, int] = {}
    for f in siblings:
        if not f.path.lower().endswith(".gguf") or "mmproj" in f.path.lower().rsplit("/", 1)[-1]:
            continue
        m = SPLIT_RE.match(f.path)
        if m:
            key = m.group("stem")
            model = splits.setdefault(key, RemoteModel(repo, key.rsplit("/", 1)[-1], quant_of(f.path),
                                                       revision=revision, gated=gated))
            model.files.append(f)
            totals[key] = int(m.group("total"))
        else:
            singles.append(RemoteModel(repo, f.path.rsplit("/", 1)[-1], quant_of(f.path), [f], revision, gated))
    complete = []
    for key, model in splits.items():
        model.files.sort(key=lambda f: f.path)
        if len(model.files) == totals[key]:
            complete.append(model)
    return sorted(singles + complete, key=lambda r: (r.quant, r.name))


def pick_model(models: list[RemoteModel], file: str | None = None, quant: str | None = None) -> RemoteModel:
    """The one model a user meant by a file name (or split stem) or a quant; a clear error when it is ambiguous."""
    if file:
        chosen = [m for m in models if file in (m.name, m.name.removesuffix(".gguf"))
                  or any(f.path == file or f.path.rsplit("/", 1)[-1] == file for f in m.files)]
    elif quant:
        chosen = [m for m in models if m.quant.upper() == quant.upper()]
    else:
        chosen = models if len(models) == 1 else []
    if len(chosen) == 1:
        return chosen[0]
    listing = ", ".join(f"{m.name} ({m.quant}, {m.size / 1e9:.2f} GB)" for m in models) or "none"
    if not models:
        raise DownloadError("that repo has no .gguf model files")
    if len(chosen) > 1:
        raise DownloadError(f"more than one file matches; name the file: {listing}")
    wanted = f"file {file!r}" if file else f"quant {quant!r}" if quant else "a file"
    raise DownloadError(f"say which file to pull (no {wanted} there; FILE or --quant): {listing}")


@contextmanager
def hub_scope(endpoint: str | None = None) -> Iterator[None]:
    """Lift the offline lockdown for one user-started Hub action, and let the audit guard admit only its host,
    labelled "download".

    Raises:
        DownloadError: the user chose offline mode (``HF_HUB_OFFLINE=1`` at start).
    """
    from huggingface_hub import constants

    from localchat.core.privacy.audit import AuditGuard
    from localchat.core.privacy.lockdown import allow_hub_download

    # whatever imported huggingface_hub first: a download never carries telemetry (its user agent would otherwise
    # fetch an "agent harness" registry from the Hub and describe this environment)
    constants.HF_HUB_DISABLE_TELEMETRY = True
    host = urlparse(endpoint or constants.ENDPOINT).hostname or ""
    guard = AuditGuard.active()
    with allow_hub_download():
        if guard is None:
            yield
        else:
            with guard.allow(host, label="download"):
                yield


def user_token() -> str | None:
    """The token of the usual huggingface_hub login (``hf auth login`` or ``HF_TOKEN``), or None.

    The lockdown turns huggingface_hub's implicit token off, so a request the user started passes it explicitly.
    Call inside :func:`hub_scope` (reading it may refresh an OAuth token over the network).
    """
    from huggingface_hub import get_token

    try:
        return get_token()
    except Exception:  # a broken login must not stop public downloads; gated ones then say "log in"
        return None


def _api(endpoint: str | None, token: str | None) -> Any:
    from huggingface_hub import HfApi

    return HfApi(endpoint=endpoint, token=token or False)


def repo_models(repo: str, endpoint: str | None = None, revision: str | None = None) -> list[RemoteModel]:
    """The GGUF models of ``repo`` with sizes and sha256 (from the Hub's LFS metadata), pinned to its commit."""
    with hub_scope(endpoint):
        token = user_token()
        info = _call(lambda: _api(endpoint, token).model_info(repo, revision=revision, files_metadata=True), repo,
                     token)
    files = []
    for s in info.siblings or []:
        lfs = getattr(s, "lfs", None)
        sha = getattr(lfs, "sha256", None) if lfs is not None else None
        size = getattr(s, "size", None) or (getattr(lfs, "size", None) if lfs is not None else None) or 0
        files.append(RemoteFile(s.rfilename, int(size), sha, None if lfs is not None else getattr(s, "blob_id", None)))
    return group_gguf(repo, files, getattr(info, "sha", None) or revision, bool(getattr(info, "gated", False)))


def search(query: str, limit: int = 20, endpoint: str | None = None) -> list[dict[str, Any]]:
    """GGUF repos on the Hub matching ``query``, most downloaded first."""
    with hub_scope(endpoint):
        token = user_token()
        models = _call(lambda: list(_api(endpoint, token).list_models(search=query, filter="gguf", limit=limit,
                                                                       sort="downloads")), query, token)
    return [{"repo": m.id, "downloads": getattr(m, "downloads", None), "likes": getattr(m, "likes", None),
             "gated": bool(getattr(m, "gated", False))} for m in models]


def hub_error(exc: BaseException, what: str, token: str | None = None) -> DownloadError | None:
    """A clear DownloadError for a huggingface_hub / network failure, or None if ``exc`` is something else."""
    import httpx
    from huggingface_hub.errors import (
        EntryNotFoundError,
        GatedRepoError,
        HfHubHTTPError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    status = getattr(getattr(exc, "response", None), "status_code", None)
    if isinstance(exc, GatedRepoError):
        if token and status == 403:
            return DownloadError(f"{what} is gated and your Hugging Face account has no access yet: accept its "
                                 f"terms on the model's page on Hugging Face, then try again")
        return DownloadError(f"{what} is gated: accept its terms on Hugging Face and log in (`hf auth login`), "
                             f"then try again")
    if isinstance(exc, RepositoryNotFoundError):
        if status == 401 and token and "Invalid credentials" in str(exc):
            return DownloadError("your Hugging Face token was refused (expired or revoked?): log in again with "
                                 "`hf auth login`")
        if token:
            return DownloadError(f"{what} was not found on Hugging Face (or your account cannot see it)")
        return DownloadError(f"{what} was not found on Hugging Face; if it is private, log in (`hf auth login`) "
                             f"with an account that has access")
    if isinstance(exc, (EntryNotFoundError, RevisionNotFoundError)):
        return DownloadError(f"{what} was not found on Hugging Face (404): the file may have been renamed or "
                             f"removed; list the repo's files again")
    if isinstance(exc, OfflineModeIsEnabled):
        return DownloadError("localchat is offline: Hugging Face is only contacted for a download you start")
    if isinstance(exc, HfHubHTTPError):
        if status == 404:
            return DownloadError(f"{what} was not found on Hugging Face (404)")
        if status == 401:
            if token:
                return DownloadError("your Hugging Face token was refused (expired or revoked?): log in again with "
                                     "`hf auth login`")
            return DownloadError(f"{what} needs a Hugging Face login: it is gated or private. Log in "
                                 f"(`hf auth login`) with an account that has access, then try again")
        if status == 403:
            return DownloadError(f"{what} is not accessible to your Hugging Face account (403): it is gated or "
                                 f"private; request access on its page, then try again")
        if status == 416:
            return DownloadError(f"the server refused to resume {what} (416); delete the partial file and try again")
        return DownloadError(f"Hugging Face answered with an error for {what} (HTTP {status}); try again later")
    if isinstance(exc, httpx.TimeoutException):
        return DownloadError(f"Hugging Face did not answer in time for {what}; check your connection and try again")
    if isinstance(exc, (httpx.TransportError, OSError)):
        return DownloadError(f"cannot reach Hugging Face ({_short(exc)}); check your connection and try again")
    return None


def _short(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) < 160 else text[:157] + "…"


def _call(fn: Callable[[], T], what: str, token: str | None = None) -> T:
    try:
        return fn()
    except Exception as exc:
        mapped = hub_error(exc, what, token)
        if mapped is None:
            raise
        raise mapped from exc
