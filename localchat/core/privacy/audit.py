"""Audit guard: a PEP 578 audit hook in the app process that logs, and in offline mode refuses, network use.

Every ``socket.connect``, ``socket.getaddrinfo``, ``socket.sendto`` and ``socket.bind`` made by Python code is
recorded with destination, time and call site. In offline mode (the default) non-loopback destinations are
refused (the hook raises, so the call fails) and the refusal is recorded; a download the user started opens a
scope (:meth:`AuditGuard.allow`) that admits only its own host, labelled "download".

Honest limit: native code (a C library opening its own sockets) bypasses audit hooks entirely. That is why the
inference worker, where native code runs, is kernel-isolated instead, and why the socket monitor watches the
process from the outside.
"""

from __future__ import annotations

import ipaddress
import socket
import sys
import threading
import time
import traceback
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any

EVENTS = ("socket.connect", "socket.getaddrinfo", "socket.sendto", "socket.bind")


class NetworkRefused(PermissionError):
    """Raised into the caller when the guard refuses a network destination."""


@dataclass(frozen=True)
class AuditEvent:
    time: float
    event: str
    destination: str
    family: str
    verdict: str  # "allowed-local", "allowed-download", "refused", "logged"
    label: str
    call_site: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def is_local_host(host: str) -> bool:
    if host in ("localhost", "", "localhost.localdomain"):
        return True
    try:
        ip = ipaddress.ip_address(host.split("%")[0])
    except ValueError:
        return False
    return ip.is_loopback or ip.is_unspecified


_SKIP_FILES = {__file__, socket.__file__}


def _call_site() -> str:
    for frame in reversed(traceback.extract_stack()[:-3]):
        if frame.filename not in _SKIP_FILES and not frame.filename.endswith(("/ssl.py", "/selectors.py")):
            return f"{frame.filename}:{frame.lineno} in {frame.name}"
    return "?"


class AuditGuard:
    """Records (and in offline mode refuses) network use by Python code in this process.

    Audit hooks cannot be removed once added, so the process has one hook that forwards to the active guard;
    :meth:`install` makes a guard the active one, :meth:`uninstall` stops its recording.
    """

    _active: AuditGuard | None = None
    _hooked = False
    _hook_lock = threading.Lock()

    def __init__(self, offline: bool = True, max_events: int = 5000) -> None:
        self.offline = offline
        self.events: deque[AuditEvent] = deque(maxlen=max_events)
        self._allowed_hosts: dict[str, str] = {}
        self._lock = threading.Lock()
        self._local = threading.local()

    def install(self) -> AuditGuard:
        with AuditGuard._hook_lock:
            AuditGuard._active = self
            if not AuditGuard._hooked:
                sys.addaudithook(AuditGuard._dispatch)
                AuditGuard._hooked = True
        return self

    @classmethod
    def active(cls) -> AuditGuard | None:
        return cls._active

    def uninstall(self) -> None:
        with AuditGuard._hook_lock:
            if AuditGuard._active is self:
                AuditGuard._active = None

    @contextmanager
    def allow(self, host: str, label: str = "download") -> Iterator[None]:
        """Admit ``host`` (a download the user started) for the duration of the block."""
        with self._lock:
            self._allowed_hosts[host] = label
        try:
            yield
        finally:
            with self._lock:
                self._allowed_hosts.pop(host, None)

    def refused(self) -> list[AuditEvent]:
        return [e for e in self.events if e.verdict == "refused"]

    def non_local(self) -> list[AuditEvent]:
        return [e for e in self.events if e.verdict != "allowed-local"]

    @staticmethod
    def _dispatch(event: str, args: tuple[Any, ...]) -> None:
        guard = AuditGuard._active
        if guard is not None and event in EVENTS:
            guard._on_event(event, args)

    def _on_event(self, event: str, args: tuple[Any, ...]) -> None:
        if getattr(self._local, "busy", False):
            return
        self._local.busy = True
        try:
            host, dest, family = self._destination(event, args)
            if host is None:
                return  # AF_UNIX and friends: not network
            if is_local_host(host):
                verdict, label = "allowed-local", ""
            elif host in self._allowed_hosts:
                verdict, label = "allowed-download", self._allowed_hosts[host]
            elif event == "socket.bind":
                verdict, label = "logged", "bind"
            elif self.offline:
                verdict, label = "refused", "offline mode"
            else:
                verdict, label = "logged", ""
            self.events.append(AuditEvent(time.time(), event, dest, family, verdict, label, _call_site()))
            if verdict == "refused":
                raise NetworkRefused(f"localchat is offline: refused {event} to {dest}")
        finally:
            self._local.busy = False

    @staticmethod
    def _destination(event: str, args: tuple[Any, ...]) -> tuple[str | None, str, str]:
        if event == "socket.getaddrinfo":
            host, port = args[0], args[1]
            h = host.decode() if isinstance(host, bytes) else str(host) if host is not None else ""
            return h, f"{h}:{port}", "dns"
        sock, addr = args[0], args[-1]
        fam = getattr(sock, "family", None)
        if fam not in (socket.AF_INET, socket.AF_INET6) or not isinstance(addr, tuple):
            return None, "", ""
        h = str(addr[0])
        return h, f"{h}:{addr[1]}", "ipv6" if fam == socket.AF_INET6 else "ipv4"
