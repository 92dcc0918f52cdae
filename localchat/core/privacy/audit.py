"""Audit guard: a PEP 578 audit hook in the app process that logs, and in offline mode refuses, network use.

Every ``socket.connect``, ``sendto``, ``sendmsg`` and ``bind`` and every name lookup (``getaddrinfo``,
``gethostbyname``, ``gethostbyaddr``, ``getnameinfo``) made by Python code is recorded with destination, time and
call site. In offline mode (the default) non-loopback destinations are refused: the hook raises
:class:`NetworkRefused` before the call reaches the kernel, so the call fails and nothing is sent, and the refusal is
recorded. A download the user started opens a scope (:meth:`AuditGuard.allow`) that admits only its host (with its
subdomains, and for the Hugging Face Hub its download host ``hf.co``), labelled "download". A lookup the scope allows
records the addresses it resolved to (the guard wraps ``socket.getaddrinfo``, ``gethostbyname`` and
``gethostbyname_ex`` to see their answers); only those addresses, and loopback, may then be connected to, from any
thread, until the scope ends. LAN mode admits exactly the helper machines' ``(address, port)`` pairs
(:meth:`AuditGuard.allow_endpoints`, verdict "allowed-peer") while its relay runs. When the guard itself fails it
refuses the call and records why (fail closed).

Every event is counted (:attr:`AuditGuard.total`, :attr:`AuditGuard.verdicts`) however long the run; only the last
``max_events`` are kept with their details.

Honest limit: native code (a C library opening its own sockets) bypasses audit hooks entirely. That is why the
inference worker, where native code runs, is kernel-isolated instead, and why the socket monitor watches the
processes from the outside.
"""

from __future__ import annotations

import functools
import ipaddress
import os
import socket
import sys
import threading
import time
from collections import Counter, deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from types import FrameType
from typing import Any

LOOKUPS = ("socket.getaddrinfo", "socket.gethostbyname", "socket.gethostbyaddr", "socket.getnameinfo")
SENDS = ("socket.connect", "socket.sendto", "socket.sendmsg")
EVENTS = frozenset((*LOOKUPS, *SENDS, "socket.bind"))
# a download scope for the Hub's host also admits the host its files are served from
HOST_FAMILIES = {"huggingface.co": ("huggingface.co", "hf.co")}
LOCAL_FAMILIES = (socket.AF_UNIX, getattr(socket, "AF_NETLINK", -1))  # IPC and the kernel: not the network
EXPECTED_VERDICTS = ("allowed-local", "allowed-download", "allowed-peer")


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

    @property
    def expected(self) -> bool:
        """Local traffic or a download the user started; anything else deserves a look."""
        return self.verdict in EXPECTED_VERDICTS


def is_local_host(host: str) -> bool:
    """A loopback address or name, or the unspecified address (which ``connect`` treats as this machine)."""
    if host in ("localhost", "", "localhost.localdomain"):
        return True
    try:
        ip = ipaddress.ip_address(host.split("%")[0])
    except ValueError:
        return host.endswith(".localhost")
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return ip.is_loopback or ip.is_unspecified


def is_loopback(host: str) -> bool:
    """A loopback address or name (a socket bound here is reachable only from this machine)."""
    return is_local_host(host) and host not in ("", "0.0.0.0", "::")


_PLUMBING = (os.path.dirname(socket.__file__) + os.sep, __file__)
_PACKAGE = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))) + os.sep


def normalize_ip(host: str) -> str:
    """One spelling per address (``::ffff:10.0.0.1`` → ``10.0.0.1``, scope ids dropped); non-addresses unchanged."""
    try:
        ip = ipaddress.ip_address(host.split("%")[0])
    except ValueError:
        return host.lower().rstrip(".")
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return str(ip)


def _call_site(frame: FrameType | None) -> str:
    """The innermost caller outside the standard library's socket plumbing, and the localchat frame behind it."""
    outer = local = None
    while frame is not None:
        name = frame.f_code.co_filename
        if outer is None and not name.startswith(_PLUMBING):
            outer = frame
        if outer is not None and name.startswith(_PACKAGE) and name != __file__:
            local = frame
            break
        frame = frame.f_back
    if outer is None:
        return "?"

    def where(f: FrameType) -> str:
        return f"{f.f_code.co_filename}:{f.f_lineno} in {f.f_code.co_name}"

    return where(outer) if local is None or local is outer else f"{where(outer)} (via {where(local)})"


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
        self.total = 0  # every event recorded, also those the ring buffer no longer holds
        self.verdicts: Counter[str] = Counter()
        self.installed_at: float | None = None
        self._allowed: Counter[str] = Counter()
        self._labels: dict[str, str] = {}
        self._addresses: dict[str, dict[str, str]] = {}  # scope host → address its lookups gave → name looked up
        self._endpoints: Counter[tuple[str, int]] = Counter()  # exact (address, port) admitted by allow_endpoints
        self._endpoint_labels: dict[tuple[str, int], str] = {}
        self._lock = threading.Lock()
        self._local = threading.local()

    def install(self) -> AuditGuard:
        with AuditGuard._hook_lock:
            AuditGuard._active = self
            self.installed_at = time.time()
            if not AuditGuard._hooked:
                _wrap_resolvers()
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

    @property
    def mode(self) -> str:
        return "offline: non-loopback destinations refused" if self.offline else "logging only"

    @contextmanager
    def allow(self, host: str, label: str = "download") -> Iterator[None]:
        """Admit ``host`` (a download the user started), and the addresses its lookups give, for the duration of
        the block; scopes may overlap."""
        host = host.lower().rstrip(".")
        with self._lock:
            self._allowed[host] += 1
            self._labels[host] = label
            self._addresses.setdefault(host, {})
        try:
            yield
        finally:
            with self._lock:
                self._allowed[host] -= 1
                if self._allowed[host] <= 0:
                    del self._allowed[host]
                    self._labels.pop(host, None)
                    self._addresses.pop(host, None)

    @contextmanager
    def allow_endpoints(self, endpoints: list[tuple[str, int]], label: str) -> Iterator[None]:
        """Admit connects to exactly these (IP address, port) pairs — the helper machines of LAN mode — for the
        duration of the block; no lookup, no other port of the same host."""
        keys = [(normalize_ip(h), int(p)) for h, p in endpoints]
        with self._lock:
            for key in keys:
                self._endpoints[key] += 1
                self._endpoint_labels[key] = label
        try:
            yield
        finally:
            with self._lock:
                for key in keys:
                    self._endpoints[key] -= 1
                    if self._endpoints[key] <= 0:
                        del self._endpoints[key]
                        self._endpoint_labels.pop(key, None)

    def _endpoint_scope(self, host: str, port: Any) -> str | None:
        with self._lock:
            return self._endpoint_labels.get((normalize_ip(host), port if isinstance(port, int) else -1))

    def _scope_key(self, host: str) -> str | None:
        """The open scope (its host) that admits ``host`` by name, or None."""
        host = host.lower().rstrip(".")
        with self._lock:
            for allowed in self._labels:
                for family in HOST_FAMILIES.get(allowed, (allowed,)):
                    if host == family or host.endswith("." + family):
                        return allowed
        return None

    def _scope_for(self, host: str) -> str | None:
        """The label of the open scope that admits ``host`` by name, or None."""
        key = self._scope_key(host)
        with self._lock:
            return None if key is None else self._labels.get(key)

    def _resolved_scope(self, address: str) -> tuple[str, str] | None:
        """(label, name looked up) when an allowed lookup in an open scope gave ``address``, else None."""
        address = normalize_ip(address)
        with self._lock:
            for key, seen in self._addresses.items():
                if address in seen and key in self._labels:
                    return self._labels[key], seen[address]
        return None

    def note_resolution(self, host: Any, addresses: list[str]) -> None:
        """Remember what a lookup of ``host`` gave, when a scope admits ``host`` (called by the resolver wrappers)."""
        name = host.decode() if isinstance(host, bytes) else str(host or "")
        key = self._scope_key(name)
        if key is None:
            return
        with self._lock:
            seen = self._addresses.get(key)
            if seen is not None:  # the scope may have ended meanwhile
                for a in addresses:
                    seen.setdefault(normalize_ip(a), name)

    def snapshot(self) -> list[AuditEvent]:
        return list(self.events)

    def refused(self) -> list[AuditEvent]:
        return [e for e in self.snapshot() if e.verdict == "refused"]

    def unexpected(self) -> list[AuditEvent]:
        """Events other than local traffic and downloads the user started."""
        return [e for e in self.snapshot() if not e.expected]

    def non_local(self) -> list[AuditEvent]:
        return [e for e in self.snapshot() if e.verdict != "allowed-local"]

    def counts(self) -> dict[str, int]:
        """Totals since install, however many events the ring buffer dropped: ``total``, ``refused``,
        ``unexpected``, ``kept``."""
        with self._lock:
            total, verdicts = self.total, dict(self.verdicts)
            kept = len(self.events)
        unexpected = sum(n for v, n in verdicts.items() if v not in EXPECTED_VERDICTS)
        return {"total": total, "refused": verdicts.get("refused", 0), "unexpected": unexpected, "kept": kept}

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
            try:
                record = self._judge(event, args)
            except Exception as exc:  # fail closed: a guard that cannot judge a call refuses it, and says why
                record = AuditEvent(time.time(), event, _safe_repr(args), "?", "refused", f"guard error: {exc!r}",
                                    "")
            if record is None:
                return
            if not record.call_site:
                try:
                    caller: FrameType | None = sys._getframe(2)  # past this method and the dispatcher
                    site = _call_site(caller)
                except Exception:  # no Python frame behind the call, or a frame that cannot be read
                    site = "?"
                record = replace(record, call_site=site)
            with self._lock:
                self.events.append(record)
                self.total += 1
                self.verdicts[record.verdict] += 1
        finally:
            self._local.busy = False
        if record.verdict == "refused":
            raise NetworkRefused(f"localchat is offline: refused {event} to {record.destination}"
                                 + (f" ({record.label})" if record.label.startswith("guard error") else ""))

    def _judge(self, event: str, args: tuple[Any, ...]) -> AuditEvent | None:
        now = time.time()
        if event in LOOKUPS:
            host, dest = _lookup_target(event, args)
            if is_local_host(host):
                verdict, label = "allowed-local", ""
            elif (scope := self._scope_for(host)) is not None:
                verdict, label = "allowed-download", scope
            elif self.offline:
                verdict, label = "refused", "offline mode"
            else:
                verdict, label = "logged", ""
            return AuditEvent(now, event, dest, "dns", verdict, label, "")
        sock, addr = args[0], args[-1]
        fam = getattr(sock, "family", None)
        if fam in LOCAL_FAMILIES:
            return None
        if fam not in (socket.AF_INET, socket.AF_INET6) or not isinstance(addr, tuple):
            family = getattr(fam, "name", str(fam))
            verdict = "refused" if self.offline and event != "socket.bind" else "logged"
            return AuditEvent(now, event, repr(addr)[:200], family, verdict, "not an IP socket", "")
        host = str(addr[0])
        dest = f"[{host}]:{addr[1]}" if ":" in host else f"{host}:{addr[1]}"
        family = "ipv6" if fam == socket.AF_INET6 else "ipv4"
        if event == "socket.bind":
            if is_loopback(host):
                return AuditEvent(now, event, dest, family, "allowed-local", "", "")
            return AuditEvent(now, event, dest, family, "logged", "listens beyond this machine", "")
        if is_local_host(host):
            verdict, label = "allowed-local", ""
        elif event == "socket.connect" and (peer := self._endpoint_scope(host, addr[1])) is not None:
            verdict, label = "allowed-peer", peer
        elif (scope := self._scope_for(host)) is not None:  # the scope's own name, or an address it was opened for
            verdict, label = "allowed-download", scope
        elif (resolved := self._resolved_scope(host)) is not None:
            verdict, label = "allowed-download", f"{resolved[0]} ({resolved[1]})"
        elif self.offline:
            verdict, label = "refused", "offline mode"
        else:
            verdict, label = "logged", ""
        return AuditEvent(now, event, dest, family, verdict, label, "")


def _safe_repr(args: tuple[Any, ...]) -> str:
    try:
        return repr(args)[:200]
    except Exception:
        return "?"


def _addresses_of(name: str, result: Any) -> list[str]:
    """The addresses in a resolver's answer."""
    if name == "getaddrinfo":
        return [str(info[4][0]) for info in result]
    if name == "gethostbyname":
        return [str(result)]
    return [str(a) for a in result[2]]  # gethostbyname_ex: (name, aliases, addresses)


def _wrap_resolvers() -> None:
    """Wrap the socket module's resolvers so the active guard learns what an allowed lookup resolved to.

    The audit event comes before the lookup and cannot see its answer. Code holding a resolver taken before the
    guard was installed is not wrapped: its connects are then refused, never admitted (fail closed).
    """
    for name in ("getaddrinfo", "gethostbyname", "gethostbyname_ex"):
        original = getattr(socket, name)
        if getattr(original, "_localchat_wrapped", False):
            continue

        def wrapper(host: Any, *args: Any, _original: Any = original, _name: str = name, **kwargs: Any) -> Any:
            result = _original(host, *args, **kwargs)
            guard = AuditGuard._active
            if guard is not None:
                try:
                    guard.note_resolution(host, _addresses_of(_name, result))
                except Exception as exc:  # the answer cannot be admitted: say so here, not at a later connect
                    raise NetworkRefused(f"localchat could not record what {host!r} resolved to: {exc!r}") from exc
            return result

        functools.update_wrapper(wrapper, original)
        wrapper._localchat_wrapped = True  # type: ignore[attr-defined]
        setattr(socket, name, wrapper)


def _lookup_target(event: str, args: tuple[Any, ...]) -> tuple[str, str]:
    if event == "socket.getaddrinfo":
        host, port = args[0], args[1]
        h = host.decode() if isinstance(host, bytes) else "" if host is None else str(host)
        return h, f"{h}:{port}"
    if event == "socket.getnameinfo":
        sockaddr = args[0]
        h = str(sockaddr[0]) if isinstance(sockaddr, tuple) and sockaddr else str(sockaddr)
        return h, f"{h} (reverse lookup)"
    h = str(args[0])
    return h, h if event == "socket.gethostbyname" else f"{h} (reverse lookup)"
