"""A local stand-in for the part of the Hugging Face Hub protocol huggingface_hub uses, on 127.0.0.1 only.

What huggingface_hub (1.x) asks for, and what this server answers:

- ``GET /api/models?search=…&filter=gguf&limit=…`` (``HfApi.list_models``): a JSON list of repos.
- ``GET /api/models/{repo}[/revision/{rev}]?blobs=true`` (``HfApi.model_info(files_metadata=True)``): ``sha`` (the
  commit), ``gated``, ``siblings`` with ``rfilename``, ``size``, ``blobId`` and, for LFS files, ``lfs.sha256``.
- ``GET|HEAD /{repo}/resolve/{rev}/{path}``: the bytes, honouring ``Range: bytes=N-`` and ``bytes=N-M`` (206 +
  ``Content-Range``), with
  ``ETag``, ``X-Repo-Commit``, ``X-Linked-Etag`` and ``X-Linked-Size`` (what ``hf_hub_download`` reads from its HEAD).
- errors as the Hub sends them, with ``X-Error-Code`` (``RepoNotFound``, ``GatedRepo``, ``EntryNotFound``,
  ``RevisionNotFound``) so ``hf_raise_for_status`` raises the same exception types: a missing or private repo is
  401 RepoNotFound without a token; a gated repo's files are 401 GatedRepo without a token, 403 GatedRepo with a token
  that has not been granted access; an unknown token is 401 "Invalid credentials in Authorization header".

Files too big to hold in memory (a sparse shape-exact 14B GGUF) are served from disk (``disk_files``), listed with
a stand-in sha256 (the hash of their name: hashing 9 GB of holes per listing would cost minutes).

Behaviours for tests: wrong bytes, a throttle, dying mid-transfer, ignoring Range; it counts the bytes it served (per
file too) so a test can prove a resume did not start from zero, and logs every request. Hostile API answers: accepting
a request and never answering (``hang_api``), an HTML page with status 200 instead of JSON (``html_api``, a captive
portal), fields replaced in a file's listing entry or a search result (``sibling_fields``, ``search_fields``), or any
raw body for the API (``api_body``).
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlparse

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def git_blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class HubState:
    repos: dict[str, dict[str, bytes]] = field(default_factory=dict)
    disk_files: dict[str, dict[str, Path]] = field(default_factory=dict)  # repo -> name -> file served from disk
    gated: dict[str, set[str]] = field(default_factory=dict)  # repo -> tokens granted access
    private: dict[str, set[str]] = field(default_factory=dict)  # repo -> tokens that can see it
    tokens: set[str] = field(default_factory=set)  # valid tokens (others: 401 invalid credentials)
    no_lfs: set[str] = field(default_factory=set)  # file paths stored in git, not LFS (no sha256; blobId only)
    corrupt: set[str] = field(default_factory=set)  # file paths served with flipped bytes (hash stays the true one)
    rate_bps: float | None = None
    die_after: int | None = None  # close the connection after this many bytes of one response
    ignore_range: bool = False
    hang_api: int = 0  # the next N /api/ requests are accepted and never answered
    html_api: bool = False  # /api/ answers are a captive portal's HTML page, status 200
    api_body: bytes | None = None  # /api/ answers are these bytes (status 200, application/json)
    sibling_fields: dict[str, dict[str, object]] = field(default_factory=dict)  # file path -> fields replaced
    search_fields: dict[str, dict[str, object]] = field(default_factory=dict)  # repo -> fields replaced
    served: int = 0
    served_by_file: dict[str, int] = field(default_factory=dict)
    requests: list[str] = field(default_factory=list)
    auth_seen: list[str | None] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def sha256(self, repo: str, path: str) -> str:
        return hashlib.sha256(self.repos[repo][path]).hexdigest()

    def has_repo(self, repo: str) -> bool:
        return repo in self.repos or repo in self.disk_files

    def names(self) -> list[str]:
        return list(dict.fromkeys([*self.repos, *self.disk_files]))


def disk_sha256(path: Path) -> str:
    """The stand-in hash a disk-backed file is listed with."""
    return hashlib.sha256(path.name.encode()).hexdigest()


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:  # keep test output clean
        pass

    def _json(self, code: int, obj: object, headers: dict[str, str] | None = None) -> None:
        body = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _error(self, code: int, error_code: str | None, message: str) -> None:
        headers = {"X-Error-Message": message}
        if error_code:
            headers["X-Error-Code"] = error_code
        self._json(code, {"error": message}, headers)

    def _token(self) -> str | None:
        auth = self.headers.get("Authorization", "")
        return auth.removeprefix("Bearer ").strip() or None if auth.startswith("Bearer ") else None

    def _access(self, repo: str, for_files: bool) -> bool:
        """Answer an error and return False when the caller may not see ``repo`` (or its files)."""
        st = self.server.state
        token = self._token()
        if token is not None and token not in st.tokens:
            self._error(401, None, "Invalid credentials in Authorization header")
            return False
        if not st.has_repo(repo) or (repo in st.private and token not in st.private[repo]):
            if token is None:
                self._error(401, "RepoNotFound", "Repository not found")
            else:
                self._error(404, "RepoNotFound", "Repository not found")
            return False
        if for_files and repo in st.gated and token not in st.gated[repo]:
            if token is None:
                self._error(401, "GatedRepo", f"Access to model {repo} is restricted. You must have access to it "
                                              "and be authenticated to access it. Please log in.")
            else:
                self._error(403, "GatedRepo", f"Access to model {repo} is restricted and you are not in the "
                                              "authorized list.")
            return False
        return True

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        st = self.server.state
        url = urlparse(self.path)
        path = unquote(url.path)
        with st.lock:
            st.requests.append(f"{self.command} {self.path}")
            st.auth_seen.append(self._token())
            hang = path.startswith("/api/") and st.hang_api > 0
            if hang:
                st.hang_api -= 1
        if hang:
            self.server.stopped.wait()  # accepted, read, never answered
            self.close_connection = True
            return
        if path.startswith("/api/") and (st.html_api or st.api_body is not None):
            html = b"<!DOCTYPE html><html><head><title>Sign in to the network</title></head><body>Accept the terms " \
                   b"to continue</body></html>"
            body = html if st.html_api else st.api_body or b""
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8" if st.html_api else "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        if path == "/api/models":
            qs = parse_qs(url.query)
            q = qs.get("search", [""])[0].lower()
            limit = int(qs.get("limit", ["1000"])[0])
            found = [{"id": r, "modelId": r, "downloads": 10, "likes": 1, "tags": ["gguf"],
                      "gated": "manual" if r in st.gated else False, "private": False, **st.search_fields.get(r, {})}
                     for r in st.names() if q in r.lower() and r not in st.private]
            self._json(200, found[:limit])
            return
        m = re.match(r"^/api/models/([^/]+/[^/]+)(?:/revision/([^/]+))?$", path)
        if m:
            repo, rev = m.groups()
            if not self._access(repo, for_files=False):
                return
            if rev not in (None, "main", COMMIT):
                self._error(404, "RevisionNotFound", f"Invalid rev id: {rev}")
                return
            siblings = []
            for name, disk in st.disk_files.get(repo, {}).items():
                size = disk.stat().st_size
                siblings.append({"rfilename": name, "size": size, "blobId": "0" * 40,
                                 "lfs": {"sha256": disk_sha256(disk), "size": size, "pointerSize": 134}})
            for name, data in st.repos.get(repo, {}).items():
                s: dict[str, object] = {"rfilename": name, "size": len(data), "blobId": git_blob_id(data)}
                if name not in st.no_lfs:
                    s["lfs"] = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data), "pointerSize": 134}
                s.update(st.sibling_fields.get(name, {}))
                siblings.append(s)
            self._json(200, {"id": repo, "modelId": repo, "sha": COMMIT, "private": repo in st.private,
                             "gated": "manual" if repo in st.gated else False, "disabled": False,
                             "tags": ["gguf"], "siblings": siblings, "downloads": 10, "likes": 1})
            return
        m = re.match(r"^/([^/]+/[^/]+)/resolve/([^/]+)/(.+)$", path)
        if not m:
            self._error(404, None, "not found")
            return
        repo, rev, fname = m.groups()
        if not self._access(repo, for_files=True):
            return
        if rev not in ("main", COMMIT):
            self._error(404, "RevisionNotFound", f"Invalid rev id: {rev}")
            return
        disk = st.disk_files.get(repo, {}).get(fname)
        if disk is not None:
            self._send_from_disk(fname, disk)
            return
        data = st.repos.get(repo, {}).get(fname)
        if data is None:
            self._error(404, "EntryNotFound", f"{fname} does not exist on \"{rev}\"")
            return
        true_sha = hashlib.sha256(data).hexdigest()
        if fname in st.corrupt:
            data = bytes(b ^ 0xFF for b in data[:64]) + data[64:]
        got = self._range(len(data))
        if got is None:
            return
        start, end, ranged = got
        rng = ranged
        chunk = data[start:end + 1]
        etag = true_sha if fname not in st.no_lfs else git_blob_id(data)
        self.send_response(206 if rng else 200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(chunk)))
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("ETag", f'"{etag}"')
        self.send_header("X-Repo-Commit", COMMIT)
        if fname not in st.no_lfs:
            self.send_header("X-Linked-Etag", f'"{etag}"')
            self.send_header("X-Linked-Size", str(len(data)))
        if rng:
            self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
        self.end_headers()
        if self.command == "HEAD":
            return
        self._send_body(fname, chunk)

    def _range(self, size: int) -> tuple[int, int, bool] | None:
        """(start, end inclusive, ranged) of the answer; None after answering 416."""
        start, end = 0, size - 1
        rng = None if self.server.state.ignore_range else self.headers.get("Range")
        if rng:
            rm = re.match(r"bytes=(\d+)-(\d*)", rng)
            if rm:
                start = int(rm.group(1))
                end = min(int(rm.group(2)), size - 1) if rm.group(2) else end
        if start >= size and size:
            self.send_response(416)
            self.send_header("Content-Range", f"bytes */{size}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return None
        return start, end, bool(rng)

    def _send_from_disk(self, fname: str, disk: Path) -> None:
        size = disk.stat().st_size
        got = self._range(size)
        if got is None:
            return
        start, end, ranged = got
        etag = disk_sha256(disk)
        self.send_response(206 if ranged else 200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(end + 1 - start))
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("ETag", f'"{etag}"')
        self.send_header("X-Repo-Commit", COMMIT)
        self.send_header("X-Linked-Etag", f'"{etag}"')
        self.send_header("X-Linked-Size", str(size))
        if ranged:
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.end_headers()
        if self.command == "HEAD":
            return
        st = self.server.state
        try:
            with open(disk, "rb") as fh:
                fh.seek(start)
                left = end + 1 - start
                while left > 0 and not self.server.stopping:
                    block = fh.read(min(left, 64 * 1024))
                    if not block:
                        break
                    self.wfile.write(block)
                    left -= len(block)
                    with st.lock:
                        st.served += len(block)
                        st.served_by_file[fname] = st.served_by_file.get(fname, 0) + len(block)
        except (BrokenPipeError, ConnectionResetError, OSError):
            self.close_connection = True

    def _send_body(self, fname: str, chunk: bytes) -> None:
        st = self.server.state
        sent = 0
        step = 64 * 1024
        t0 = time.monotonic()
        try:
            while sent < len(chunk):
                if st.die_after is not None and sent >= st.die_after:
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                block = chunk[sent:sent + step]
                self.wfile.write(block)
                sent += len(block)
                with st.lock:
                    st.served += len(block)
                    st.served_by_file[fname] = st.served_by_file.get(fname, 0) + len(block)
                if st.rate_bps:
                    ahead = sent / st.rate_bps - (time.monotonic() - t0)
                    if ahead > 0:
                        time.sleep(ahead)
                if self.server.stopping:
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
        except (BrokenPipeError, ConnectionResetError, OSError):
            return


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, state: HubState, port: int = 0) -> None:
        self.allow_reuse_address = True
        super().__init__(("127.0.0.1", port), _Handler)
        self.state = state
        self.stopping = False
        self.stopped = threading.Event()  # releases requests held by hang_api


class FakeHub:
    """``with FakeHub(state) as hub:`` serves on ``hub.url`` until the block ends (or :meth:`stop`)."""

    def __init__(self, state: HubState | None = None, port: int = 0) -> None:
        self.state = state or HubState()
        self._server = _Server(self.state, port)
        self.port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._stopped = False

    def __enter__(self) -> FakeHub:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop listening and cut every transfer in progress (the server disappears)."""
        if self._stopped:
            return
        self._stopped = True
        self._server.stopping = True
        self._server.stopped.set()
        self._server.shutdown()
        self._server.server_close()
