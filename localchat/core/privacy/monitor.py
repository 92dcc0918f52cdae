"""Socket monitor: what sockets do localchat's own processes hold, and where do they point.

Polls the app process, its children and the inference worker with psutil (``/proc/<pid>/net/*``, so a worker in
its own network namespace is read in *its* namespace), classifies each remote as loopback / LAN / internet, keeps an
event log of every new socket with its first-seen time, and counts outbound internet connections since launch.
System-wide per-interface byte counters are kept too, labelled for what they are: the whole machine, not
attributable to any process.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import psutil

PROTO = {(socket.AF_INET, socket.SOCK_STREAM): "tcp", (socket.AF_INET6, socket.SOCK_STREAM): "tcp6",
         (socket.AF_INET, socket.SOCK_DGRAM): "udp", (socket.AF_INET6, socket.SOCK_DGRAM): "udp6"}


def classify(ip: str) -> str:
    """``loopback``, ``lan`` (private, link-local, CGNAT, unique-local) or ``internet``; ``none`` when unset."""
    if not ip:
        return "none"
    try:
        addr = ipaddress.ip_address(ip.split("%")[0])
    except ValueError:
        return "internet"
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped:
        addr = addr.ipv4_mapped
    if addr.is_unspecified:
        return "none"
    if addr.is_loopback:
        return "loopback"
    if addr.is_private or addr.is_link_local or addr in ipaddress.ip_network("100.64.0.0/10"):
        return "lan"
    return "internet"


@dataclass(frozen=True)
class SocketRow:
    time: float  # first seen
    process: str
    pid: int
    proto: str
    local: str
    remote: str
    state: str
    kind: str  # loopback / lan / internet / none (listening or unconnected)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def key(self) -> tuple[int, str, str, str]:
        return self.pid, self.proto, self.local, self.remote


def _fmt(addr: Any) -> str:
    if not addr:
        return ""
    host, port = addr[0], addr[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@dataclass
class InterfaceSample:
    time: float
    bytes_sent: int
    bytes_recv: int


@dataclass
class SocketMonitor:
    """Polls sockets of the processes ``pids()`` names (pid → label, e.g. ``{1234: "app", 1240: "worker"}``)."""

    pids: Callable[[], dict[int, str]]
    started: float = field(default_factory=time.time)
    events: deque[SocketRow] = field(default_factory=lambda: deque(maxlen=5000))
    outbound_internet: int = 0
    outbound_lan: int = 0
    samples: deque[InterfaceSample] = field(default_factory=lambda: deque(maxlen=120))
    errors: list[str] = field(default_factory=list)
    _seen: dict[tuple[int, str, str, str], SocketRow] = field(default_factory=dict)

    def poll(self) -> list[SocketRow]:
        now = time.time()
        rows: list[SocketRow] = []
        for pid, label in self.pids().items():
            try:
                conns = psutil.Process(pid).net_connections(kind="inet")
            except (psutil.NoSuchProcess, psutil.ZombieProcess):
                continue
            except psutil.AccessDenied:
                self._note(f"not allowed to read the sockets of {label} (pid {pid})")
                continue
            for c in conns:
                remote_ip = c.raddr[0] if c.raddr else ""
                key = (pid, PROTO.get((c.family, c.type), "?"), _fmt(c.laddr), _fmt(c.raddr))
                seen = self._seen.get(key)
                row = SocketRow(seen.time if seen else now, label, pid, key[1], key[2], key[3], c.status or "",
                                classify(remote_ip))
                if seen is None:
                    self._seen[key] = row
                    self.events.append(row)
                    if row.kind == "internet":
                        self.outbound_internet += 1
                    elif row.kind == "lan":
                        self.outbound_lan += 1
                rows.append(row)
        self.sample_interfaces(now)
        return rows

    def sample_interfaces(self, now: float | None = None) -> None:
        totals = psutil.net_io_counters(pernic=True)
        sent = sum(v.bytes_sent for k, v in totals.items() if k != "lo")
        recv = sum(v.bytes_recv for k, v in totals.items() if k != "lo")
        self.samples.append(InterfaceSample(now or time.time(), sent, recv))

    def non_loopback_events(self) -> list[SocketRow]:
        return [e for e in self.events if e.kind in ("lan", "internet")]

    def _note(self, msg: str) -> None:
        if msg not in self.errors:
            self.errors.append(msg)


def own_processes(worker_pid: int | None = None) -> dict[int, str]:
    """This process, its children, and the worker (which is one of them when this process started it)."""
    me = psutil.Process(os.getpid())
    out = {me.pid: "localchat"}
    try:
        for child in me.children(recursive=True):
            out[child.pid] = "inference worker" if child.pid == worker_pid else child.name()
    except psutil.Error:
        pass
    if worker_pid is not None:
        out[worker_pid] = "inference worker"
    return out


def namespace_sockets(pid: int) -> list[dict[str, str]]:
    """Every TCP/UDP socket in the network namespace of ``pid`` (read from its /proc/<pid>/net tables)."""
    rows = []
    for proto in ("tcp", "tcp6", "udp", "udp6"):
        try:
            with open(f"/proc/{pid}/net/{proto}", encoding="ascii") as fh:
                lines = fh.readlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            rows.append({"proto": proto, "local": _hexaddr(parts[1]), "remote": _hexaddr(parts[2]),
                         "state": parts[3]})
    return rows


def namespace_interfaces(pid: int) -> list[dict[str, Any]]:
    try:
        with open(f"/proc/{pid}/net/dev", encoding="ascii") as fh:
            lines = fh.readlines()[2:]
    except OSError:
        return []
    out = []
    for line in lines:
        name, data = line.split(":", 1)
        f = data.split()
        out.append({"name": name.strip(), "rx_bytes": int(f[0]), "tx_bytes": int(f[8])})
    return out


def _hexaddr(text: str) -> str:
    host, port = text.split(":")
    raw = bytes.fromhex(host)
    if len(raw) == 4:
        ip = socket.inet_ntop(socket.AF_INET, raw[::-1])
    else:
        ip = socket.inet_ntop(socket.AF_INET6, b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4)))
    return f"{ip}:{int(port, 16)}"


def all_connections() -> tuple[list[dict[str, Any]], str | None]:
    """Every process's inet connections, where permissions allow (which program talks to whom)."""
    try:
        conns = psutil.net_connections(kind="inet")
    except psutil.AccessDenied:
        return [], "reading other programs' connections needs administrator rights"
    out = []
    for c in conns:
        if not c.raddr:
            continue
        try:
            name = psutil.Process(c.pid).name() if c.pid else "?"
        except psutil.Error:
            name = "?"
        out.append({"process": name, "pid": c.pid, "local": _fmt(c.laddr), "remote": _fmt(c.raddr),
                    "state": c.status, "kind": classify(c.raddr[0])})
    return out, None
