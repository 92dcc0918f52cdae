"""Hugging Face, through huggingface_hub only: search GGUF repos, list a repo's GGUF files grouped by quant.

Split models (``name-00001-of-00003.gguf``) are grouped as one model with all their parts. Every call here is a
network call the user asked for and runs inside :func:`hub_scope` (privacy lockdown lifted for it, audit label
"download").

The two metadata requests (a repo's file list, a search) go through huggingface_hub's own HTTP session, headers and
error mapping, but with what its ``HfApi`` lacks: a connect/read timeout (``HUB_TIMEOUT_S``, or
``LOCALCHAT_HUB_TIMEOUT`` seconds), a bounded number of tries, a cap on the answer's size and time, and every field
used checked for type and range. A Hub that never answers, an HTML page sent with status 200 (a captive portal, a
proxy), or sizes like ``"big"`` or ``-5`` all become one-line :class:`~localchat.errors.DownloadError` messages.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from localchat.errors import DownloadError

SPLIT_RE = re.compile(r"^(?P<stem>.+)-(?P<part>\d{5})-of-(?P<total>\d{5})\.gguf$", re.I)
QUANT_RE = re.compile(r"(?:^|[-_.])(I?Q\d(?:_[A-Z0-9]+)*|F16|BF16|F32)(?=[-_.]|$)", re.I)
# the Hub's repo id rules: [owner/]name of letters, digits, "-", "_", "."; no "--" or ".."; at most 96 characters
REPO_RE = re.compile(r"^(?!.*(?:--|\.\.))[\w.-]{1,96}(?:/[\w.-]{1,96})?$", re.ASCII)

HUB_TIMEOUT_S = 15.0  # connect and between-bytes read timeout of one metadata request (LOCALCHAT_HUB_TIMEOUT)
HUB_ATTEMPTS = 3  # tries of a metadata request that timed out, broke off or met a 5xx/429
_MAX_ANSWER_BYTES = 64 * 1024 * 1024  # the file list of a repo with thousands of files is a few MB
_MAX_FILE_SIZE = 1 << 50  # 1 PiB: a larger "size" is not a size
_MAX_FILES = 100_000
_HEX40 = re.compile(r"^[0-9a-fA-F]{40}$")
_HEX64 = re.compile(r"^[0-9a-fA-F]{64}$")


class HubUnavailable(DownloadError):
    """The Hub as a whole cannot be asked now: offline mode, no network, no answer in time, or something else
    answering in its place (a captive portal's HTML). Asking about another repo would fail the same way."""


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

    Vision projectors (``mmproj``) are not chat models and are left out. A split set with a part missing (or parts
    that are not exactly 1..N of N) is left out too (it could never load).
    """
    singles: list[RemoteModel] = []
    splits: dict[tuple[str, int], RemoteModel] = {}
    parts: dict[tuple[str, int], set[int]] = {}
    for f in siblings:
        if not f.path.lower().endswith(".gguf") or "mmproj" in f.path.lower().rsplit("/", 1)[-1]:
            continue
        m = SPLIT_RE.match(f.path)
        if m:
            key = (m.group("stem"), int(m.group("total")))
            model = splits.setdefault(key, RemoteModel(repo, key[0].rsplit("/", 1)[-1], quant_of(f.path),
                                                       revision=revision, gated=gated))
            model.files.append(f)
            parts.setdefault(key, set()).add(int(m.group("part")))
        else:
            singles.append(RemoteModel(repo, f.path.rsplit("/", 1)[-1], quant_of(f.path), [f], revision, gated))
    complete = []
    for key, model in splits.items():
        model.files.sort(key=lambda f: f.path)
        if key[1] > 0 and parts[key] == set(range(1, key[1] + 1)) and len(model.files) == key[1]:
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


def hub_timeout() -> float:
    """Seconds a metadata request may wait to connect, and between bytes of the answer."""
    try:
        t = float(os.environ.get("LOCALCHAT_HUB_TIMEOUT", "") or HUB_TIMEOUT_S)
    except ValueError:
        return HUB_TIMEOUT_S
    return t if 0 < t < 3600 else HUB_TIMEOUT_S


def check_repo(repo: str) -> None:
    """Refuse what cannot be a Hub repo id before asking the Hub (it would be pasted into a URL)."""
    if not REPO_RE.match(repo):
        raise DownloadError(f"{repo!r} is not a Hugging Face repo name (owner/name: letters, digits, '-', '_', '.')")


def repo_models(repo: str, endpoint: str | None = None, revision: str | None = None) -> list[RemoteModel]:
    """The GGUF models of ``repo`` with sizes and sha256 (from the Hub's LFS metadata), pinned to its commit."""
    from urllib.parse import quote

    check_repo(repo)
    path = f"/api/models/{repo}" + (f"/revision/{quote(revision, safe='')}" if revision else "")
    with hub_scope(endpoint):
        token = user_token()
        data = _get_json(endpoint, path, {"blobs": True}, token, repo)
    try:
        files, commit, gated = _listing(data)
    except _Malformed as exc:
        raise _broken(repo, str(exc)) from None
    return group_gguf(repo, files, commit or revision, gated)


def search(query: str, limit: int = 20, endpoint: str | None = None) -> list[dict[str, Any]]:
    """GGUF repos on the Hub matching ``query``, most downloaded first."""
    params = {"search": query, "filter": "gguf", "limit": limit, "sort": "downloads"}
    with hub_scope(endpoint):
        token = user_token()
        data = _get_json(endpoint, "/api/models", params, token, query)
    try:
        return _search_results(data, limit)
    except _Malformed as exc:
        raise _broken(query, str(exc)) from None


def cached_results(entry: Any, files: bool) -> tuple[float, list[dict[str, Any]]] | None:
    """``(time, results)`` of a kept search (``{"time", "results"}``, as ``models search`` stores it) when it has
    the shape a fresh one has; None for anything else (an old format, a hand-edited or damaged cache)."""
    if not isinstance(entry, dict):
        return None
    when, results = entry.get("time"), entry.get("results")
    if not isinstance(when, (int, float)) or isinstance(when, bool) or not 0 <= when < 1e11:
        return None
    if not isinstance(results, list):
        return None
    try:
        if files:
            for r in results:
                if not (isinstance(r, dict) and isinstance(r.get("name"), str) and isinstance(r.get("quant"), str)
                        and isinstance(r.get("files"), list)):
                    return None
                _count(r.get("size"), "size")
        else:
            _search_results([{**r, "id": r.get("repo")} if isinstance(r, dict) else r for r in results], len(results))
    except (_Malformed, KeyError, TypeError):
        return None
    return float(when), results


SEARCH_CACHE = "hub-search.json"  # in the cache dir: the last answer per query, for offline use


def search_kept(query: str, cache_dir: Path, *, files: bool = False, limit: int = 20,
                endpoint: str | None = None) -> tuple[list[dict[str, Any]], float | None, DownloadError | None]:
    """A search (or, with ``files``, the repo ``query``'s GGUF models as dicts), kept in the cache dir for offline
    use: ``(results, None, None)`` when the Hub answered; when it could not be asked (offline mode, no network, an
    answer that is not the Hub's), ``(cached results, their time, the error)``, or ``([], None, error)`` when
    nothing is kept for that query. ``localchat models search`` and the Models page share it."""
    import sys

    cache_file = Path(cache_dir) / SEARCH_CACHE
    key = f"{'files' if files else 'search'}:{query}"
    try:
        cache = json.loads(cache_file.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        cache = {}
    if not isinstance(cache, dict):
        cache = {}
    try:
        results = [m.to_dict() for m in repo_models(query, endpoint=endpoint)] if files else \
            search(query, limit=limit, endpoint=endpoint)
    except DownloadError as exc:
        cached = cached_results(cache.get(key), files=files)
        return (cached[1], cached[0], exc) if cached is not None else ([], None, exc)
    cache[key] = {"time": time.time(), "results": results}
    tmp = cache_file.with_name(cache_file.name + ".tmp")
    try:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(cache), encoding="utf-8")
        tmp.replace(cache_file)
    except OSError as exc:  # a read-only or full cache folder costs the offline copy, not the answer
        print(f"note: search results not kept for offline use ({exc.strerror or exc})", file=sys.stderr)
    return results, None, None


class _Malformed(Exception):
    """A Hub answer that is JSON but not the shape the Hub sends; the message names the field."""


def _broken(what: str, why: str) -> DownloadError:
    return DownloadError(f"Hugging Face sent an answer for {what} that localchat cannot use ({why}): a proxy or "
                         f"captive portal in the way? Try again later")


def _brief(v: Any) -> str:
    text = repr(v)
    return text if len(text) <= 40 else text[:37] + "…"


def _count(v: Any, what: str, maximum: int = _MAX_FILE_SIZE) -> int:
    if type(v) is not int or not 0 <= v <= maximum:
        raise _Malformed(f"{what} is {_brief(v)}")
    return v


def _flag(v: Any, what: str) -> bool:
    """``gated`` is false, or the kind of gating ("auto", "manual")."""
    if v is None or isinstance(v, bool):
        return bool(v)
    if isinstance(v, str) and len(v) < 64:
        return v.lower() not in ("", "false")
    raise _Malformed(f"{what} is {_brief(v)}")


def _listing(data: Any) -> tuple[list[RemoteFile], str | None, bool]:
    """The GGUF files of a ``/api/models/{repo}?blobs=true`` answer, its commit and whether it is gated."""
    if not isinstance(data, dict):
        raise _Malformed(f"the answer is {type(data).__name__}, not an object")
    siblings = data.get("siblings")
    if siblings is None:
        siblings = []
    if not isinstance(siblings, list) or len(siblings) > _MAX_FILES:
        raise _Malformed(f"its file list is {_brief(siblings) if not isinstance(siblings, list) else 'too long'}")
    commit = data.get("sha")
    if commit is not None and not (isinstance(commit, str) and _HEX40.match(commit)):
        raise _Malformed(f"the commit is {_brief(commit)}")
    files = []
    for s in siblings:
        if not isinstance(s, dict):
            raise _Malformed(f"a file entry is {_brief(s)}")
        name = s.get("rfilename")
        if not isinstance(name, str) or not name or len(name) > 1024 or "\0" in name:
            raise _Malformed(f"a file name is {_brief(name)}")
        if not name.lower().endswith(".gguf"):
            continue  # only GGUF files are used: the rest of the repo is not read
        lfs = s.get("lfs")
        if lfs is not None and not isinstance(lfs, dict):
            raise _Malformed(f"the LFS entry of {name} is {_brief(lfs)}")
        size = s.get("size")
        if size is None and lfs is not None:
            size = lfs.get("size")
        size = 0 if size is None else _count(size, f"the size of {name}")
        sha = lfs.get("sha256") if lfs is not None else None
        if sha is not None and not (isinstance(sha, str) and _HEX64.match(sha)):
            raise _Malformed(f"the sha256 of {name} is {_brief(sha)}")
        blob = s.get("blobId") if lfs is None else None
        if blob is not None and not (isinstance(blob, str) and _HEX40.match(blob)):
            raise _Malformed(f"the git blob id of {name} is {_brief(blob)}")
        files.append(RemoteFile(name, size, sha.lower() if sha else None, blob.lower() if blob else None))
    return files, commit.lower() if commit else None, _flag(data.get("gated"), "gated")


def _search_results(data: Any, limit: int) -> list[dict[str, Any]]:
    if not isinstance(data, list):
        raise _Malformed(f"the answer is {type(data).__name__}, not a list")
    out = []
    for m in data[:max(0, limit)]:
        if not isinstance(m, dict):
            raise _Malformed(f"a result is {_brief(m)}")
        repo = m.get("id", m.get("modelId"))
        if not isinstance(repo, str) or not REPO_RE.match(repo):
            raise _Malformed(f"a repo name is {_brief(repo)}")
        downloads, likes = m.get("downloads"), m.get("likes")
        tags = m.get("tags")
        licence = next((t[8:] for t in tags[:1000] if isinstance(t, str) and t.startswith("license:")
                        and 8 < len(t) <= 72 and t.isprintable()), None) if isinstance(tags, list) else None
        if licence is None and isinstance(m.get("license"), str) and 0 < len(m["license"]) <= 64 \
                and m["license"].isprintable():
            licence = m["license"]  # a kept result (the cache stores the field itself)
        out.append({"repo": repo, "license": licence,
                    "downloads": None if downloads is None else _count(downloads, f"the downloads of {repo}"),
                    "likes": None if likes is None else _count(likes, f"the likes of {repo}"),
                    "gated": _flag(m.get("gated"), f"gated of {repo}")})
    return out


def _get_json(endpoint: str | None, path: str, params: dict[str, Any], token: str | None, what: str) -> Any:
    """GET a Hub API path through huggingface_hub's session, with timeouts and bounded retries; the decoded JSON.

    Raises:
        DownloadError: no usable answer (what was wrong, in one line).
    """
    import httpx
    from huggingface_hub import constants, get_session
    from huggingface_hub.utils._headers import build_hf_headers
    from huggingface_hub.utils._http import hf_raise_for_status

    url = (endpoint or constants.ENDPOINT).rstrip("/") + path
    headers = build_hf_headers(token=token or False)  # the lockdown turns implicit tokens off: pass it explicitly
    timeout = hub_timeout()
    for attempt in range(1, HUB_ATTEMPTS + 1):
        try:
            status, resp_headers, body, request = _fetch(get_session(), url, params, headers, timeout)
        except httpx.TimeoutException as exc:
            if attempt < HUB_ATTEMPTS:
                time.sleep(min(timeout, 1.0) * attempt)
                continue
            raise HubUnavailable(f"Hugging Face did not answer in time for {what} ({HUB_ATTEMPTS} tries, "
                                 f"{timeout:g} s each); check your connection and try again later") from exc
        except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError) as exc:  # cut off mid-answer
            if attempt < HUB_ATTEMPTS:
                time.sleep(min(timeout, 1.0) * attempt)
                continue
            raise hub_error(exc, what, token) or DownloadError(str(exc)) from exc
        except Exception as exc:
            mapped = hub_error(exc, what, token)
            if mapped is None:
                raise
            raise mapped from exc
        if (status >= 500 or status == 429) and attempt < HUB_ATTEMPTS:
            time.sleep(min(timeout, 1.0) * attempt)
            continue
        if status >= 400:
            # the body was read here (bounded); huggingface_hub maps status and X-Error-Code to its exceptions
            drop = ("content-encoding", "content-length", "transfer-encoding")
            error = httpx.Response(status, headers=[(k, v) for k, v in resp_headers.multi_items() if k not in drop],
                                   content=body, request=request)
            try:
                hf_raise_for_status(error)
            except Exception as exc:
                raise hub_error(exc, what, token) or DownloadError(_short(exc)) from exc
            raise DownloadError(f"Hugging Face answered with an error for {what} (HTTP {status}); try again later")
        try:
            return json.loads(body)
        except (ValueError, RecursionError):
            looks = "an HTML page" if body.lstrip()[:1] == b"<" else "not JSON"
            kind = resp_headers.get("content-type", "no type").split(";")[0][:40]
            raise HubUnavailable(str(_broken(what, f"{looks}, {kind}"))) from None
    raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises


def _fetch(session: Any, url: str, params: dict[str, Any], headers: dict[str, str],
           timeout: float) -> tuple[int, Any, bytes, Any]:
    """One GET: status, headers, body (at most _MAX_ANSWER_BYTES, within 4 x timeout in all), request."""
    import httpx

    deadline = time.monotonic() + 4 * timeout
    with session.stream("GET", url, params=params, headers=headers, follow_redirects=True,
                        timeout=httpx.Timeout(timeout)) as r:
        chunks, total = [], 0
        for chunk in r.iter_bytes():
            total += len(chunk)
            if total > _MAX_ANSWER_BYTES:
                raise DownloadError(f"Hugging Face's answer is over {_MAX_ANSWER_BYTES // 2**20} MB, which no "
                                    f"listing is: a proxy or captive portal in the way? Try again later")
            if time.monotonic() > deadline:
                raise httpx.ReadTimeout("the answer trickled in too slowly", request=r.request)
            chunks.append(chunk)
        return r.status_code, r.headers, b"".join(chunks), r.request


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
        return HubUnavailable("localchat is offline: Hugging Face is only contacted for a download you start")
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
        error = HubUnavailable if isinstance(status, int) and status >= 500 else DownloadError
        return error(f"Hugging Face answered with an error for {what} (HTTP {status}); try again later")
    if isinstance(exc, httpx.TimeoutException):
        return HubUnavailable(f"Hugging Face did not answer in time for {what}; check your connection and try again")
    if isinstance(exc, (httpx.TransportError, OSError)):
        return HubUnavailable(f"cannot reach Hugging Face ({_short(exc)}); check your connection and try again")
    return None


def _short(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) < 160 else text[:157] + "…"

