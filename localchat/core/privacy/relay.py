"""LAN mode: llama.cpp's RPC client in the sandboxed worker reaches the user's helper machines, and nothing else.

The worker keeps its own network namespace, which has no interface but loopback. In LAN mode the worker brings that
loopback up and listens on ``127.0.0.1:P`` (inside its namespace only, one port per helper machine); llama.cpp is
told that its RPC servers are those ports. Each connection llama.cpp opens there is accepted by the worker and the
accepted socket itself is handed to the app over a unix ``SOCK_SEQPACKET`` socket pair inherited at start
(``SCM_RIGHTS`` passes descriptors across network namespaces), with the helper it is meant for. The app, outside,
connects to that helper only if it is on the user's list, copies the bytes both ways and counts them per helper; a
request for anything else is refused and counted. So the evidence is "only these peers": the worker has nothing but
its loopback, and the app connects only to the listed ``host:port`` peers (admitted by the audit guard for exactly
those addresses while the relay runs).

Peers are IP addresses (a name would need a lookup): loopback and private/link-local (LAN) addresses, public ones only
when the caller says the user confirmed them. llama.cpp's RPC protocol is unauthenticated and unencrypted: trusted
LAN only (docs/RPC.md).

Everything here is stdlib; the worker side runs before llama.cpp is imported.
"""

from __future__ import annotations

import array
import contextlib
import errno
import fcntl
import ipaddress
import json
import os
import socket
import stat
import struct
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from localchat.errors import LocalChatError

MAX_PEERS = 16  # GGML_RPC_MAX_SERVERS
MAX_OPEN = 64  # concurrent relayed connections per helper (llama.cpp keeps one per server; bounds a runaway worker)
RPC_PROTO_MAJOR = 7  # the vendored llama.cpp's RPC_PROTO_MAJOR_VERSION: a helper must speak the same
_RPC_CMD_HELLO = 14
_CAPS_SIZE = 24
_CONTROL_MAX = 256  # bytes of one control message (a peer endpoint as JSON)
_CHUNK = 256 * 1024
SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1


class PeerError(LocalChatError):
    """A helper machine cannot be used: bad address, not allowed, unreachable, or not a llama.cpp RPC server."""


# -- peers -------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Peer:
    """A helper machine: an IP address and the port its ``rpc-server`` listens on."""

    host: str
    port: int

    @property
    def endpoint(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @property
    def scope(self) -> str:
        """``loopback``, ``LAN`` (private, link-local, unique-local) or ``public``."""
        ip = ipaddress.ip_address(self.host)
        if ip.is_loopback:
            return "loopback"
        if ip.is_private or ip.is_link_local:
            return "LAN"
        return "public"

    def __str__(self) -> str:
        return self.endpoint


def parse_peer(text: str, *, allow_public: bool = False) -> Peer:
    """``HOST:PORT`` (IPv4, or ``[IPv6]:PORT``) as a :class:`Peer`.

    Raises:
        PeerError: one line saying what is wrong with ``text``.
    """
    raw = text.strip()
    shown = repr(raw[:60] + ("…" if len(raw) > 60 else ""))
    if not raw or len(raw) > 64 or not raw.isprintable():
        raise PeerError(f"not a helper address: {shown} (expected HOST:PORT, e.g. 192.168.1.20:50052)")
    if raw.startswith("["):
        host, sep, port_text = raw[1:].partition("]:")
    else:
        host, sep, port_text = raw.rpartition(":")
    if not sep or not host:
        raise PeerError(f"not a helper address: {shown} (expected HOST:PORT, e.g. 192.168.1.20:50052)")
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        raise PeerError(f"{shown}: give the helper machine's IP address, not a name (a name would need a "
                        "lookup)") from None
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise PeerError(f"{shown}: the port must be a number from 1 to 65535")
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    if ip.is_unspecified or ip.is_multicast or ip.is_reserved:
        raise PeerError(f"{shown}: not the address of a machine")
    if isinstance(ip, ipaddress.IPv6Address) and ip.scope_id:
        raise PeerError(f"{shown}: IPv6 scope ids are not supported; use another address of the helper")
    peer = Peer(str(ip), int(port_text))
    if peer.scope == "public" and not allow_public:
        raise PeerError(f"{peer.endpoint} is not a LAN address; llama.cpp's RPC is unauthenticated and "
                        "unencrypted, so helpers must be on your own network (to use it anyway, confirm with "
                        "--rpc-allow-public)")
    return peer


def parse_peers(text: str | Sequence[str], *, allow_public: bool = False) -> list[Peer]:
    """A comma-separated list (or a list) of ``HOST:PORT``; duplicates refused, at most :data:`MAX_PEERS`.

    Raises:
        PeerError: one line about the first bad entry.
    """
    items = text.split(",") if isinstance(text, str) else list(text)
    if len(items) > MAX_PEERS:
        raise PeerError(f"at most {MAX_PEERS} helper machines (llama.cpp's limit), not {len(items)}")
    peers: list[Peer] = []
    for item in items:
        peer = parse_peer(item, allow_public=allow_public)
        if peer in peers:
            raise PeerError(f"{peer.endpoint} is listed twice")
        peers.append(peer)
    if not peers:
        raise PeerError("no helper machine given (expected HOST:PORT[,HOST:PORT…])")
    return peers


def probe_peer(peer: Peer, timeout: float = 5.0) -> dict[str, Any]:
    """Connect to a helper and ask its llama.cpp RPC server for its protocol version (the ``HELLO`` command).

    Done by the app before the worker uses a helper: llama.cpp stops the whole worker when a server cannot be
    reached or speaks another version, so those are found here first and said in one line.

    Raises:
        PeerError: unreachable, not an RPC server, or an incompatible version.
    """
    t0 = time.perf_counter()
    try:
        with _connect(peer, timeout) as s:
            connect_ms = (time.perf_counter() - t0) * 1000
            s.sendall(bytes([_RPC_CMD_HELLO]) + struct.pack("<Q", _CAPS_SIZE) + bytes(_CAPS_SIZE))
            size = struct.unpack("<Q", _recv_exact(s, 8))[0]
            if size != 4 + _CAPS_SIZE:
                raise PeerError(f"helper {peer.endpoint} answered, but not as a llama.cpp rpc-server of this "
                                "version (see docs/RPC.md)")
            major, minor, patch = _recv_exact(s, size)[:3]
            hello_ms = (time.perf_counter() - t0) * 1000 - connect_ms
    except PeerError:
        raise
    except OSError as exc:
        why = exc.strerror or str(exc) or type(exc).__name__
        if isinstance(exc, TimeoutError):
            why = f"no answer within {timeout:.0f} s"
        raise PeerError(f"cannot reach helper {peer.endpoint}: {why} (is rpc-server running there? see "
                        "docs/RPC.md)") from None
    if major != RPC_PROTO_MAJOR:
        raise PeerError(f"helper {peer.endpoint} runs RPC protocol {major}.{minor}.{patch}, this localchat needs "
                        f"{RPC_PROTO_MAJOR}.x: build its rpc-server from this localchat (make rpc-server)")
    return {"peer": peer.endpoint, "version": f"{major}.{minor}.{patch}", "connect_ms": round(connect_ms, 2),
            "hello_ms": round(hello_ms, 2)}


def _connect(peer: Peer, timeout: float) -> socket.socket:
    """A TCP connection to ``peer`` by address: no lookup (``create_connection`` would ask ``getaddrinfo``, which the
    audit guard refuses for a LAN address in offline mode)."""
    s = socket.socket(socket.AF_INET6 if ":" in peer.host else socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.settimeout(timeout)
        s.connect((peer.host, peer.port))
    except BaseException:
        s.close()
        raise
    return s


def _recv_exact(s: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        part = s.recv(n - len(buf))
        if not part:
            raise ConnectionResetError(errno.ECONNRESET, "the helper closed the connection")
        buf += part
    return bytes(buf)


# -- worker side -------------------------------------------------------------------------------------------------


def bring_loopback_up() -> bool:
    """Set ``lo`` up in this process's network namespace (the worker holds CAP_NET_ADMIN over its own one).

    Returns:
        True when it was down and is now up.
    """
    ifreq = struct.pack("16sH14x", b"lo", 0)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        flags = struct.unpack("16sH14x", fcntl.ioctl(s.fileno(), SIOCGIFFLAGS, ifreq))[1]
        if flags & IFF_UP:
            return False
        fcntl.ioctl(s.fileno(), SIOCSIFFLAGS, struct.pack("16sH14x", b"lo", flags | IFF_UP))
    return True


class WorkerRelay:
    """In the worker: one listener on ``127.0.0.1`` per helper; each accepted connection goes to the app.

    Args:
        control: this process's end of the control socket pair (``SOCK_SEQPACKET``).
        peers: the helpers' endpoints, in the app's order (the app checks each request against its own list).
    """

    def __init__(self, control: socket.socket, peers: Sequence[str]) -> None:
        self.control = control
        self.peers = list(peers)
        self.listeners: list[socket.socket] = []
        self._send_lock = threading.Lock()

    @property
    def endpoints(self) -> list[str]:
        """What llama.cpp is given as its RPC servers, one per helper, in order."""
        return [f"127.0.0.1:{s.getsockname()[1]}" for s in self.listeners]

    def start(self) -> dict[str, Any]:
        """Bring loopback up, listen, and serve each listener on a thread. Returns the report's ``relay`` part."""
        raised = bring_loopback_up()
        for _ in self.peers:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            s.listen(8)
            self.listeners.append(s)
        for s, peer in zip(self.listeners, self.peers, strict=True):
            threading.Thread(target=self._serve, args=(s, peer), name=f"relay {peer}", daemon=True).start()
        return {"peers": self.peers, "listen": self.endpoints, "loopback": "brought up" if raised else "up"}

    def _serve(self, listener: socket.socket, peer: str) -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            try:
                self.request(conn, peer)
            except OSError:
                conn.close()
                return  # the app went away: nothing can be relayed any more
            conn.close()  # the app holds its own copy now

    def request(self, conn: socket.socket, peer: str) -> None:
        """Hand ``conn`` to the app for ``peer`` (the app decides whether ``peer`` may be reached)."""
        msg = json.dumps({"peer": peer}).encode()
        with self._send_lock:
            self.control.sendmsg([msg], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [conn.fileno()]))])

    def close(self) -> None:
        for s in self.listeners:
            s.close()


def start_worker_relay(isolation: dict[str, Any], control: socket.socket, peers: Sequence[str]) -> WorkerRelay:
    """In the worker, after the sandbox: start the relay and turn the report's claim into "only these peers".

    The sandbox's own evidence (taken with loopback down) stands; with loopback now up, the worker checks again that
    nothing but loopback exists (its interface list, and TEST-NET-1 still unreachable). Isolation stays claimed
    only if that holds, and the reason then says exactly what the worker can reach.
    """
    from localchat.core.privacy.sandbox import DOC_CANARY, _connect_attempt, interfaces

    relay = WorkerRelay(control, peers)
    info = relay.start()
    if isolation.get("isolated") and isolation.get("mode") != "macos-sandbox":
        info["interfaces"] = interfaces()
        info["beyond_loopback"] = _connect_attempt(*DOC_CANARY)
        names = [i["name"] for i in info["interfaces"]]
        if names != ["lo"] or not info["beyond_loopback"]["blocked"]:
            isolation.update(isolated=False, reason="LAN mode: with loopback up the worker could reach more than "
                                                    f"loopback ({names}, {info['beyond_loopback']['result']}): "
                                                    "monitored only")
        else:
            isolation["reason"] = (f"{isolation.get('reason')}; LAN mode: only loopback, up for the relay "
                                   f"({', '.join(relay.endpoints)}), through which the app connects only to "
                                   f"{', '.join(relay.peers)}")
    isolation["relay"] = info
    if isolation.get("isolated"):  # the claim is made only where the evidence holds
        isolation["scope"] = "only these peers"
    return relay


# -- app side ----------------------------------------------------------------------------------------------------


@dataclass
class PeerStats:
    """What went to and came from one helper machine (counted by the app)."""

    endpoint: str
    connections: int = 0
    bytes_sent: int = 0
    bytes_received: int = 0
    open: int = 0
    errors: list[str] = field(default_factory=list)
    lost: str | None = None  # set when the helper dropped a connection the worker was still using

    def to_dict(self) -> dict[str, Any]:
        return {"peer": self.endpoint, "connections": self.connections, "bytes_sent": self.bytes_sent,
                "bytes_received": self.bytes_received, "open": self.open, "errors": list(self.errors[-5:]),
                "lost": self.lost}


class PeerRelay:
    """In the app: the only way the worker's llama.cpp reaches a helper machine.

    One relay serves a client's successive workers (:meth:`open_channel` per worker); its counts add up over all
    of them.

    Args:
        peers: the helpers the user listed; nothing else is ever connected to.
        connect_timeout: for each connection to a helper.
    """

    def __init__(self, peers: Sequence[Peer], connect_timeout: float = 10.0) -> None:
        if not peers:
            raise PeerError("no helper machine given")
        self.peers = list(peers)
        self.connect_timeout = connect_timeout
        self._by_endpoint = {p.endpoint: p for p in self.peers}
        self.stats = {p.endpoint: PeerStats(p.endpoint) for p in self.peers}
        self.checks: list[dict[str, Any]] = []
        self.refused: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._sockets: set[socket.socket] = set()
        self._mine: socket.socket | None = None
        self._theirs: socket.socket | None = None
        self._scope: contextlib.ExitStack | None = None

    @property
    def endpoints(self) -> list[str]:
        return [p.endpoint for p in self.peers]

    def check(self, timeout: float = 5.0) -> list[dict[str, Any]]:
        """Ask each helper for its RPC protocol version (:func:`probe_peer`); counted like any connection.

        Raises:
            PeerError: the first helper that cannot be used, in one line.
        """
        results = []
        with self._admitted():
            for peer in self.peers:
                result = probe_peer(peer, timeout)
                with self._lock:
                    st = self.stats[peer.endpoint]
                    st.connections += 1
                    st.bytes_sent += 1 + 8 + _CAPS_SIZE
                    st.bytes_received += 8 + 4 + _CAPS_SIZE
                results.append(result)
        self.checks = results
        return results

    def open_channel(self) -> int:
        """A new control pair for a new worker, served from now on; returns the worker's descriptor (inherit it,
        then call :meth:`started`). Admits exactly the listed peers in the audit guard until :meth:`close`."""
        self._end_channel()
        self._closed.clear()
        if self._scope is None:
            self._scope = contextlib.ExitStack()
            self._scope.enter_context(self._admitted())
        self._mine, self._theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        threading.Thread(target=self._serve, args=(self._mine,), name="peer-relay", daemon=True).start()
        return self._theirs.fileno()

    def started(self) -> None:
        """The worker holds its end now: drop ours, so the worker's exit ends the channel."""
        if self._theirs is not None:
            self._theirs.close()
            self._theirs = None

    def report(self) -> dict[str, Any]:
        """Per helper: connections, bytes sent/received; and every refused request."""
        with self._lock:
            return {"mode": "only these peers", "peers": [s.to_dict() for s in self.stats.values()],
                    "refused": list(self.refused), "checks": list(self.checks)}

    def lost(self) -> str | None:
        """A one-line account of a helper that dropped a live connection, if one did."""
        with self._lock:
            for s in self.stats.values():
                if s.lost:
                    return s.lost
        return None

    def live(self) -> bool:
        """Whether a relayed connection is still open."""
        with self._lock:
            return any(s.open for s in self.stats.values())

    def close(self) -> None:
        """End the channel, every relayed connection, and the audit guard's admission of the peers."""
        self._closed.set()
        self._end_channel()
        with self._lock:
            live = list(self._sockets)
        for s in live:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
        if self._scope is not None:
            self._scope.close()
            self._scope = None

    def _end_channel(self) -> None:
        for s in (self._mine, self._theirs):
            if s is not None:
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                s.close()
        self._mine = self._theirs = None

    @contextlib.contextmanager
    def _admitted(self) -> Iterator[None]:
        from localchat.core.privacy.audit import AuditGuard

        guard = AuditGuard.active()
        if guard is None:
            yield
            return
        with guard.allow_endpoints([(p.host, p.port) for p in self.peers], "helper machine (--rpc)"):
            yield

    # -- internals -------------------------------------------------------------------------------------------

    def _serve(self, control: socket.socket) -> None:
        fd_size = array.array("i").itemsize
        while True:
            try:
                msg, ancdata, flags, _ = control.recvmsg(_CONTROL_MAX, socket.CMSG_SPACE(4 * fd_size))
            except OSError:
                return
            fds: list[int] = []
            for level, kind, data in ancdata:
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    arr = array.array("i")
                    arr.frombytes(data[: len(data) - len(data) % fd_size])
                    fds.extend(arr)
            if not msg and not fds:
                return  # the worker closed its end
            try:
                self._handle(msg, fds, flags)
            except Exception as exc:  # a bad request never ends the relay for the good ones
                for fd in fds:
                    with contextlib.suppress(OSError):
                        os.close(fd)
                self._refuse("?", f"relay error: {exc!r}")

    def _handle(self, msg: bytes, fds: list[int], flags: int) -> None:
        try:
            peer_text = str(json.loads(msg.decode("utf-8"))["peer"])[:80]
        except (ValueError, KeyError, TypeError, UnicodeDecodeError):
            peer_text = repr(msg[:40])
        problem = None
        if flags & (socket.MSG_TRUNC | socket.MSG_CTRUNC):
            problem = "malformed request (truncated)"
        elif len(fds) != 1:
            problem = f"malformed request ({len(fds)} descriptors)"
        elif not stat.S_ISSOCK(os.fstat(fds[0]).st_mode):
            problem = "malformed request (not a socket)"
        elif peer_text not in self._by_endpoint:
            problem = "not on the list of helper machines"
        elif self.stats[peer_text].open >= MAX_OPEN:
            problem = f"more than {MAX_OPEN} open connections to one helper"
        if problem is not None:
            for fd in fds:
                os.close(fd)
            self._refuse(peer_text, problem)
            return
        inner = socket.socket(fileno=fds[0])
        if inner.type != socket.SOCK_STREAM:
            inner.close()
            self._refuse(peer_text, "malformed request (not a stream socket)")
            return
        peer = self._by_endpoint[peer_text]
        threading.Thread(target=self._connect_and_pump, args=(inner, peer), name=f"relay {peer}",
                         daemon=True).start()

    def _refuse(self, peer: str, why: str) -> None:
        with self._lock:
            self.refused.append({"time": time.time(), "peer": peer, "reason": why})
            del self.refused[:-100]

    def _connect_and_pump(self, inner: socket.socket, peer: Peer) -> None:
        st = self.stats[peer.endpoint]
        try:
            outer = _connect(peer, self.connect_timeout)
        except OSError as exc:
            with self._lock:
                st.errors.append(f"connect: {exc.strerror or exc}")
                st.lost = f"cannot reach helper {peer.endpoint}: {exc.strerror or exc}"
            inner.close()
            return
        outer.settimeout(None)
        for s in (outer, inner):  # RPC is request/response in small frames: Nagle would hold each reply back
            with contextlib.suppress(OSError):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self._lock:
            st.connections += 1
            st.open += 1
            self._sockets.update((inner, outer))
        ended: list[str] = []  # which side ended first: "worker" or "peer"
        up = threading.Thread(target=self._pump, args=(inner, outer, st, "bytes_sent", ended, "worker"),
                              name=f"relay {peer} up", daemon=True)
        up.start()
        self._pump(outer, inner, st, "bytes_received", ended, "peer")
        up.join()
        with self._lock:
            st.open -= 1
            self._sockets.difference_update((inner, outer))
            if ended[:1] == ["peer"] and not self._closed.is_set():
                st.lost = (f"helper machine {peer.endpoint} closed the connection while the model was using it "
                           "(its rpc-server stopped, or the network dropped)")
        inner.close()
        outer.close()

    def _pump(self, src: socket.socket, dst: socket.socket, st: PeerStats, counter: str, ended: list[str],
              side: str) -> None:
        """Copy ``src`` (the ``side`` end) to ``dst`` until one of them ends; note which side ended first."""
        other = "peer" if side == "worker" else "worker"
        buf = bytearray(_CHUNK)
        view = memoryview(buf)
        who = side
        while True:
            try:
                n = src.recv_into(buf)
            except OSError as exc:
                self._note(st, f"{side}: {exc.strerror or exc}")
                break
            if n == 0:
                break
            try:
                dst.sendall(view[:n])
            except OSError as exc:
                self._note(st, f"{other}: {exc.strerror or exc}")
                who = other
                break
            with self._lock:
                setattr(st, counter, getattr(st, counter) + n)
        with self._lock:
            ended.append(who)
        # one side ended: end the other, so both halves finish and llama.cpp sees the close
        for s in (dst, src):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)

    def _note(self, st: PeerStats, error: str) -> None:
        with self._lock:
            st.errors.append(error)
            del st.errors[:-20]
