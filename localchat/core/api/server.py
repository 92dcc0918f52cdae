"""Binding and running the local API: where it may listen, its key, and uvicorn on a socket we bound ourselves.

The socket is bound here (not by uvicorn) so that a refused or busy address is a clear error before anything
starts, and port 0 gives a free port whose number we know. Loopback only, unless the caller says ``allow_lan``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

import uvicorn

from localchat.core.api import DEFAULT_HOST, DEFAULT_PORT
from localchat.core.api.app import Guard, create_app
from localchat.core.api.host import ModelHost
from localchat.core.privacy.audit import is_loopback
from localchat.errors import LocalChatError

log = logging.getLogger(__name__)


class BindRefused(LocalChatError):
    """A listening address beyond this machine without ``allow_lan``, or one that cannot be bound."""


def check_bind(host: str, allow_lan: bool) -> None:
    """Raises: BindRefused for a non-loopback address unless ``allow_lan``."""
    if not is_loopback(host) and not allow_lan:
        raise BindRefused(f"refusing to listen on {host!r}: it is reachable from other machines. The API listens on "
                          "loopback (127.0.0.1) by default; add --allow-lan to really serve your network")


def load_or_create_key(path: Path) -> str:
    """The API key kept at ``path`` (mode 0600), made on first use."""
    try:
        st = path.lstat()
    except FileNotFoundError:
        key = "lc-" + secrets.token_urlsafe(32)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as f:
            f.write(key + "\n")
        return key
    if not stat.S_ISREG(st.st_mode):
        raise LocalChatError(f"{path} is not a regular file; remove it and localchat makes a new key")
    if st.st_mode & 0o077:
        log.warning("api key file %s was readable by others; made it 0600", path)
        os.chmod(path, 0o600)
    key = path.read_text(encoding="ascii").strip()
    if len(key) < 16:
        raise LocalChatError(f"the API key in {path} is too short (at least 16 characters); remove the file and "
                             "localchat makes a new one")
    return key


def bind(host: str, port: int) -> socket.socket:
    """Raises: BindRefused when the address cannot be bound (in use, not ours)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family, kind, proto, _, address = infos[0]
        sock = socket.socket(family, kind, proto)
    except OSError as exc:
        raise BindRefused(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    try:
        if os.name != "nt":  # a restarted server may take its port back at once
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise BindRefused(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    return sock


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://{f'[{host}]' if ':' in host else host}:{port}/v1"


@dataclass(frozen=True)
class ServerOptions:
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    allow_lan: bool = False
    allowed_origins: tuple[str, ...] = ()


class _Uvicorn(uvicorn.Server):
    """uvicorn re-raises a caught SIGINT/SIGTERM after shutting down; we stop the worker and exit cleanly instead."""

    def __init__(self, config: uvicorn.Config, on_exit: Callable[[], None]) -> None:
        super().__init__(config)
        self._on_exit = on_exit
        self.exit_signal: int | None = None

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self.exit_signal = sig
        if self.should_exit:
            self.force_exit = True
        self.should_exit = True
        self._on_exit()  # an answer streaming now ends at once rather than holding the shutdown


class ApiServer:
    """The app on a bound socket. ``run`` blocks (main thread: SIGINT/SIGTERM stop it); ``stop`` from any thread.

    The model host is not closed here: its owner decides (the CLI closes it, the window keeps its own worker).
    """

    def __init__(self, host: ModelHost, api_key: str, sock: socket.socket, options: ServerOptions) -> None:
        self.host = host
        self.sock = sock
        self.url = url_of(sock)
        guard = Guard(api_key, allow_lan=options.allow_lan, allowed_origins=frozenset(options.allowed_origins))
        config = uvicorn.Config(create_app(host, guard), http="h11", ws="none", lifespan="off", log_config=None,
                                access_log=False, server_header=False, timeout_graceful_shutdown=3,
                                limit_concurrency=64)
        self._server = _Uvicorn(config, host.cancel_running)

    def run(self, on_ready: Callable[[], None] | None = None) -> None:
        asyncio.run(self._serve(on_ready))

    async def _serve(self, on_ready: Callable[[], None] | None) -> None:
        task = asyncio.ensure_future(self._server.serve(sockets=[self.sock]))
        while not self._server.started and not task.done():
            await asyncio.sleep(0.01)
        if self._server.started and on_ready is not None:
            on_ready()
        await task

    def stop(self) -> None:
        self._server.should_exit = True
        self.host.cancel_running()

    def close(self) -> None:
        self.sock.close()
