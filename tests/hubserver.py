"""A local stand-in for the part of the Hugging Face Hub protocol huggingface_hub uses, on 127.0.0.1 only.

Serves model info (siblings with sizes and LFS sha256), search, and ``resolve`` downloads with Range support and
the headers huggingface_hub expects. Behaviours for tests: gated / missing repos, wrong bytes, a throttle, dying
mid-transfer; it counts the bytes it served so a test can prove a resume did not start from zero.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlparse

COMMIT = "0123456789abcdef0123456789abcdef01234567"


@dataclass
class HubState:
    repos: dict[str, dict[str, bytes]] = field(default_factory=dict)
    gated: set[str] = field(default_factory=set)
    corrupt: set[str] = field(default_factory=set)  # file paths served with flipped bytes (hash stays the true one)
    rate_bps: float | None = None
    die_after: int | None = None  # close the connection after this many bytes of one response
    served: int = 0
    requests: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


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

    def _error(self, code: int, error_code: str, message: str) -> None:
        self._json(code, {"error": message}, {"X-Error-Code": error_code, "X-Error-Message": message})

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        st = self.server.state
        url = urlparse(self.path)
        path = unquote(url.path)
        with st.lock:
            st.requests.append(f"{self.command} {self.path}")
        if path == "/api/models":
            q = parse_qs(url.query).get("search", [""])[0].lower()
            self._json(200, [{"id": r, "downloads": 10, "likes": 1, "tags": ["gguf"]} for r in st.repos
                             if q in r.lower()])
            return
        m = re.match(r"^/api/models/([^/]+/[^/]+)(?:/revision/[^/]+)?$", path)
        if m:
            repo = m.group(1)
            if repo in st.gated:
                self._error(401, "GatedRepo", "Access to this repo is restricted")
            elif repo not in st.repos:
                self._error(404, "RepoNotFound", "Repository not found")
            else:
                siblings = [{"rfilename": name, "size": len(data),
                             "lfs": {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data),
                                     "pointerSize": 134}} for name, data in st.repos[repo].items()]
                self._json(200, {"id": repo, "modelId": repo, "sha": COMMIT, "private": False, "gated": False,
                                 "tags": ["gguf"], "siblings": siblings, "downloads": 10, "likes": 1})
            return
        m = re.match(r"^/([^/]+/[^/]+)/resolve/([^/]+)/(.+)$", path)
        if not m:
            self._error(404, "EntryNotFound", "not found")
            return
        repo, _rev, fname = m.groups()
        if repo in st.gated:
            self._error(403, "GatedRepo", "Access to this repo is restricted")
            return
        data = st.repos.get(repo, {}).get(fname)
        if data is None:
            self._error(404, "EntryNotFound" if repo in st.repos else "RepoNotFound", "Entry not found")
            return
        if fname in st.corrupt:
            data = bytes(b ^ 0xFF for b in data[:64]) + data[64:]
        start, end = 0, len(data) - 1
        rng = self.headers.get("Range")
        if rng:
            rm = re.match(r"bytes=(\d+)-(\d*)", rng)
            if rm:
                start = int(rm.group(1))
                end = int(rm.group(2)) if rm.group(2) else end
        if start >= len(data) and len(data):
            self.send_response(416)
            self.send_header("Content-Range", f"bytes */{len(data)}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        chunk = data[start:end + 1]
        etag = hashlib.sha256(data).hexdigest()
        self.send_response(206 if rng else 200)
        self.send_header("Content-Length", str(len(chunk)))
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("ETag", f'"{etag}"')
        self.send_header("X-Linked-Etag", f'"{etag}"')
        self.send_header("X-Linked-Size", str(len(data)))
        self.send_header("X-Repo-Commit", COMMIT)
        if rng:
            self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
        self.end_headers()
        if self.command == "HEAD":
            return
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
                if st.rate_bps:
                    ahead = sent / st.rate_bps - (time.monotonic() - t0)
                    if ahead > 0:
                        time.sleep(ahead)
        except (BrokenPipeError, ConnectionResetError):
            return


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, state: HubState) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.state = state


class FakeHub:
    def __init__(self, state: HubState | None = None) -> None:
        self.state = state or HubState()
        self._server = _Server(self.state)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> FakeHub:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
