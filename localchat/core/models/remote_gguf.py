"""A Hub model's GGUF header, read before downloading it: HTTP Range requests for the first few MB of each part.

    info, fetched = read_remote_gguf(model, endpoint=None)   # the whole model's GGUFInfo (every part's tensors)
    info.file_size                                  # the model's size from the repo listing
    fit = fit_remote(model, machine, speed)         # .plan (the offload plan), .speed (SpeedPrediction)

The header (metadata, vocabulary, tensor table) is a few MB at the start of a file of many GB; the bounded reader of
:mod:`~localchat.core.models.gguf_info` parses it from a file-like object that fetches only the byte ranges it asks
for, in blocks of ``BLOCK`` bytes, through huggingface_hub's HTTP session and headers (the same path a download
takes). The big arrays the reader skips (a vocabulary's scores) are seeked over, not fetched. Whatever a header
claims, at most ``HEADER_BUDGET`` bytes are fetched for one file (a real 150k-token vocabulary with its merges is
under 10 MB), each request has the Hub timeout and the whole read a deadline; a header that is hostile, truncated
or larger than the budget is a one-line :class:`~localchat.errors.InvalidModelFile` / ``DownloadError``.

This is a network access the user started (opening a Hub result): it runs inside :func:`~localchat.core.models.hub.
hub_scope` like a search or a download, and is refused in offline mode.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from localchat.core.models.gguf_info import GGUFInfo, parse_gguf
from localchat.core.models.hub import RemoteFile, RemoteModel, hub_error, hub_scope, hub_timeout, user_token
from localchat.errors import DownloadError

if TYPE_CHECKING:
    from localchat.core.hardware.detect import Machine
    from localchat.core.hardware.planner import OffloadPlan
    from localchat.core.hardware.speed import MachineSpeed, SpeedPrediction

BLOCK = 2 * 1024 * 1024  # bytes per Range request (a request ahead of the parser's 1 MB reads)
HEADER_BUDGET = 24 * 1024 * 1024  # at most this much of one file is fetched to read its header
_ERROR_BODY = 64 * 1024
MAX_REQUESTS = 64  # per file: a server answering each range with a few bytes does not get thousands of requests


class HeaderTooLarge(DownloadError):
    """The header needs more than the budget: not read (the fit stays an estimate from the file size)."""


class RangeFile:
    """``read``/``seek``/``tell`` over one file on the Hub, fetched by HTTP Range requests, at most ``budget``
    bytes in all. Counts what it fetched (``fetched``) and how many requests it made (``requests``)."""

    def __init__(self, session: Any, url: str, size: int, headers: dict[str, str], *, budget: int = HEADER_BUDGET,
                 block: int = BLOCK, timeout: float = 15.0, deadline: float | None = None, what: str = "") -> None:
        self.session, self.url, self.size, self.headers = session, url, size, headers
        self.budget, self.block, self.timeout = budget, block, timeout
        self.deadline = deadline if deadline is not None else time.monotonic() + 8 * timeout
        self.what = what or url
        self.pos = 0
        self.fetched = 0
        self.requests = 0
        self._start = 0
        self._buf = b""
        self.blocks: dict[int, bytes] = {}  # every block fetched, by offset (at most ``budget`` bytes in all)

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        self.pos = offset if whence == os.SEEK_SET else self.pos + offset if whence == os.SEEK_CUR else \
            self.size + offset
        return self.pos

    def tell(self) -> int:
        return self.pos

    def read(self, n: int = -1) -> bytes:
        if n < 0:
            n = self.size - self.pos
        n = max(0, min(n, self.size - self.pos))
        out = b""
        while n > 0:
            if not self._start <= self.pos < self._start + len(self._buf):
                self._fetch(self.pos, max(n, self.block))
            piece = self._buf[self.pos - self._start:self.pos - self._start + n]
            if not piece:
                break
            out += piece
            self.pos += len(piece)
            n -= len(piece)
        return out

    def _fetch(self, start: int, length: int) -> None:
        import httpx
        from huggingface_hub.utils._http import hf_raise_for_status

        length = min(length, self.size - start)
        if self.fetched + length > self.budget:
            length = self.budget - self.fetched
            if length <= 0:
                raise HeaderTooLarge(f"the GGUF header of {self.what} is larger than {self.budget // 2**20} MB "
                                     f"(no model's is): not read further")
        if time.monotonic() > self.deadline:
            raise DownloadError(f"reading the GGUF header of {self.what} took too long; try again later")
        if self.requests >= MAX_REQUESTS:
            raise DownloadError(f"the server answered {self.what} in pieces too small to read its GGUF header "
                                f"({MAX_REQUESTS} requests); try again later")
        end = start + length - 1
        headers = dict(self.headers, Range=f"bytes={start}-{end}")
        self.requests += 1
        with self.session.stream("GET", self.url, headers=headers, follow_redirects=True,
                                 timeout=httpx.Timeout(self.timeout)) as r:
            if r.status_code >= 400:
                body = _bounded(r, _ERROR_BODY)
                drop = ("content-encoding", "content-length", "transfer-encoding")
                error = httpx.Response(r.status_code, content=body, request=r.request,
                                       headers=[(k, v) for k, v in r.headers.multi_items() if k not in drop])
                hf_raise_for_status(error)
                raise DownloadError(f"Hugging Face answered HTTP {r.status_code} for {self.what}")
            if r.status_code != 206:
                if start != 0:
                    raise DownloadError(f"the server sent all of {self.what} instead of the part asked for (no HTTP "
                                        f"Range support): its header is not read, download it to see")
            elif not _content_range_ok(r.headers.get("Content-Range", ""), start, self.size):
                raise DownloadError(f"the server answered another byte range of {self.what} than the one asked for")
            # a server that ignores Range (200 from the start) is read only as far as asked, then left
            data = _bounded(r, length)
        self.fetched += len(data)
        if not data:
            raise DownloadError(f"the server sent nothing for bytes {start:,}… of {self.what}")
        self._start, self._buf = start, data
        self.blocks[start] = data

    def head(self, n: int) -> bytes:
        """The first ``n`` bytes of the file: the blocks already fetched, and the gaps the parser seeked over."""
        out = bytearray()
        while len(out) < n:
            at = len(out)
            block = next((b[at - s:] for s, b in self.blocks.items() if s <= at < s + len(b)), None)
            if block is None:
                self._fetch(at, max(n - at, 1))
                continue
            out += block[:n - at]
        return bytes(out)


def _bounded(r: Any, limit: int) -> bytes:
    chunks, total = [], 0
    for chunk in r.iter_bytes():
        take = chunk[:limit - total]
        chunks.append(take)
        total += len(take)
        if total >= limit:
            break
    return b"".join(chunks)


def _content_range_ok(value: str, start: int, size: int) -> bool:
    try:
        unit, rest = value.split(" ", 1)
        span, total = rest.split("/", 1)
        first = int(span.split("-", 1)[0])
    except ValueError:
        return False
    return unit == "bytes" and first == start and (total == "*" or total == str(size))


def read_remote_gguf(model: RemoteModel, endpoint: str | None = None, *, budget: int = HEADER_BUDGET,
                     headers: list[bytes] | None = None) -> tuple[GGUFInfo, int]:
    """The GGUF header of ``model`` on the Hub (every part's tensor table for a split model) and the bytes fetched.

    Raises:
        InvalidModelFile: the header is not a usable GGUF (the message says why).
        DownloadError: offline mode, no network, gated/missing file, a header over ``budget``, no Range support.

    With ``headers`` (a list), each part's whole header — the bytes before its tensor data, including the arrays
    the parser seeks over — is appended to it, within the same budget (for :func:`write_stand_in`).
    """
    if not model.files:
        raise DownloadError(f"{model.repo}/{model.name} has no files")
    fetched = 0
    infos: list[GGUFInfo] = []
    with hub_scope(endpoint):
        token = user_token()
        deadline = time.monotonic() + 8 * hub_timeout()
        for f in model.files:
            info, n, rf = _read_one(model, f, endpoint, token, budget, deadline)
            if headers is not None:
                before = rf.fetched
                headers.append(rf.head(info.data_offset))
                n += rf.fetched - before
            infos.append(info)
            fetched += n
    first = infos[0]
    tensors = tuple(t for i in infos for t in i.tensors)  # the parts' tables, in order: the whole model
    return replace(first, file_size=model.size, tensors=tensors,
                   n_params=sum(i.n_params for i in infos)), fetched


def _read_one(model: RemoteModel, f: RemoteFile, endpoint: str | None, token: str | None, budget: int,
              deadline: float) -> tuple[GGUFInfo, int, RangeFile]:
    import httpx
    from huggingface_hub import get_session, hf_hub_url
    from huggingface_hub.utils._headers import build_hf_headers

    what = f"{model.repo}/{f.path}"
    url = hf_hub_url(model.repo, f.path, revision=model.revision, endpoint=endpoint)
    headers = build_hf_headers(token=token or False)
    headers["Accept-Encoding"] = "identity"
    rf = RangeFile(get_session(), url, f.size, headers, budget=budget, timeout=hub_timeout(), deadline=deadline,
                   what=what)
    try:
        info = parse_gguf(rf, f.size, f.path.rsplit("/", 1)[-1])
    except DownloadError:
        raise
    except (httpx.HTTPError, OSError) as exc:
        raise hub_error(exc, what, token) or DownloadError(f"cannot read the header of {what}: {exc}") from exc
    except Exception as exc:
        mapped = hub_error(exc, what, token)  # huggingface_hub's HTTP errors (gated, missing)
        if mapped is None:
            raise
        raise mapped from exc
    return info, rf.fetched, rf


def write_stand_in(model: RemoteModel, headers: list[bytes], folder: Path) -> Path:
    """A sparse stand-in of ``model`` in ``folder``: each part's real header, then a hole to the part's full size
    (no disk used for the data). llama.cpp reads it as the real file when it allocates nothing (a dry run).
    Returns the first part."""
    if len(headers) != len(model.files):
        raise ValueError("one header per part")
    paths = []
    for f, head in zip(model.files, headers, strict=True):
        path = Path(folder) / f.path.rsplit("/", 1)[-1]
        with open(path, "wb") as out:
            out.write(head)
            out.truncate(f.size)
        paths.append(path)
    return paths[0]


@dataclass(frozen=True)
class RemoteFit:
    """The fit and predicted decode speed of a Hub model on a machine, from its real tensor table."""

    info: GGUFInfo
    plan: OffloadPlan
    speed: SpeedPrediction | None
    fetched: int  # bytes of header read from the Hub
    llama_compute: dict[str, int] | None = None  # llama.cpp's own compute buffer per device (the dry run)
    llama_error: str = ""  # why the dry run could not confirm the plan

    @property
    def llama_compute_bytes(self) -> int | None:
        return sum(self.llama_compute.values()) if self.llama_compute else None

    @property
    def verdict(self) -> str:
        return self.plan.verdict


def fit_remote(model: RemoteModel, machine: Machine, speed: MachineSpeed | None = None, *,
               endpoint: str | None = None, n_ctx: int = 8192, budget: int = HEADER_BUDGET,
               confirm_isolation: str | None = None) -> RemoteFit:
    """Read ``model``'s header from the Hub and plan it on ``machine`` at ``n_ctx`` (capped at its trained context),
    as a downloaded file would be planned; with ``speed``, the predicted decode speed too.

    With ``confirm_isolation`` (the worker's isolation policy), llama.cpp confirms the plan's compute buffer: a
    short-lived sandboxed worker dry-runs a sparse stand-in written from the header (``llama_compute``; a failure is
    said in ``llama_error`` and the plan stands).

    Raises: as :func:`read_remote_gguf`.
    """
    from localchat.core.hardware.planner import ModelShape, plan_offload
    from localchat.core.hardware.speed import predict_decode

    headers: list[bytes] | None = [] if confirm_isolation is not None else None
    info, fetched = read_remote_gguf(model, endpoint, budget=budget, headers=headers)
    shape = ModelShape.from_gguf(info)
    plan = plan_offload(shape, machine, min(n_ctx, info.context_length or n_ctx))
    fit = RemoteFit(info, plan, predict_decode(shape, plan, speed) if speed is not None else None, fetched)
    if headers is not None and confirm_isolation is not None:
        fit = _confirm(fit, model, headers, confirm_isolation)
    return fit


def _confirm(fit: RemoteFit, model: RemoteModel, headers: list[bytes], isolation: str) -> RemoteFit:
    import tempfile

    from localchat.core.engine.client import EngineClient
    from localchat.errors import LocalChatError

    p = fit.plan
    try:
        with tempfile.TemporaryDirectory(prefix="localchat-stand-in-") as tmp, EngineClient(isolation) as worker:
            got = worker.dry_run(write_stand_in(model, headers, Path(tmp)), p.n_ctx, p.n_gpu_layers, p.flash_attn,
                                 p.kv_type)
        compute = {str(k): int(v) for k, v in dict(got.get("compute_bytes") or {}).items()}
        return replace(fit, llama_compute=compute or None, llama_error="" if compute else "no figure reported")
    except (LocalChatError, OSError, ValueError, TypeError) as exc:
        return replace(fit, llama_error=str(exc) or type(exc).__name__)
