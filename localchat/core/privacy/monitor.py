"""Socket monitor: which sockets do localchat's own processes hold, and where do they point.

Polls the app process, its children and the inference worker. A process in the app's network namespace is read
with psutil; a process in a namespace of its own (the isolated worker) is read from *its* tables,
``/proc/<pid>/net/{tcp,tcp6,udp,udp6,raw,raw6}`` and ``/proc/<pid>/net/dev`` — psutil reads the tables of the
namespace it runs in, so it would see none of the worker's sockets. Each remote address is classified loopback /
LAN / internet; every new socket goes into an event log with its first-seen time, and outbound internet (and LAN)
connections since launch are counted — every one, however long the run: the event log keeps the last 5,000 with
their details, :attr:`SocketMonitor.events_total` counts them all. System-wide per-interface byte counters are
sampled too, labelled for what they are: the whole machine, not attributable to any process.

:meth:`SocketMonitor.poll` is thread-safe and meant to run off the GUI thread; :meth:`SocketMonitor.snapshot` gives
an immutable view for display and reports. :meth:`SocketMonitor.start` polls on a background thread.

:func:`start_watch` is the first thing ``localchat`` does (``app.main``): it installs the audit guard and the process
log and starts the session's socket monitor, whose "since" is the process's own start time.
"""

from __future__ import annotations

import ipaddress
import itertools
import os
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Collection
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

import psutil

from localchat.core.privacy.audit import AuditGuard
from localchat.core.privacy.processes import ProcessLog, descendants, process_start_time
from localchat.core.privacy.sandbox import netns_id, read_net_dev

PROTO = {(socket.AF_INET, socket.SOCK_STREAM): "tcp", (socket.AF_INET6, socket.SOCK_STREAM): "tcp6",
         (socket.AF_INET, socket.SOCK_DGRAM): "udp", (socket.AF_INET6, socket.SOCK_DGRAM): "udp6"}
NAMESPACE_TABLES = ("tcp", "tcp6", "udp", "udp6", "raw", "raw6")
TCP_STATES = {"01": "ESTABLISHED", "02": "SYN_SENT", "03": "SYN_RECV", "04": "FIN_WAIT1", "05": "FIN_WAIT2",
              "06": "TIME_WAIT", "07": "CLOSE", "08": "CLOSE_WAIT", "09": "LAST_ACK", "0A": "LISTEN",
              "0B": "CLOSING", "0C": "NEW_SYN_RECV"}
_CGNAT = ipaddress.ip_network("100.64.0.0/10")


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
    if addr.is_private or addr.is_link_local or addr in _CGNAT:
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


@dataclass(frozen=True)
class InterfaceSample:
    """Whole-machine byte counters, per interface, at one moment."""

    time: float
    counters: dict[str, tuple[int, int]]  # name → (bytes sent, bytes received)

    def total(self) -> int:
        return sum(s + r for name, (s, r) in self.counters.items() if name != "lo")


@dataclass(frozen=True)
class MonitorSnapshot:
    """What the monitor knows after a poll: current sockets, the event log, counters and samples."""

    time: float
    rows: list[SocketRow]
    events: list[SocketRow]
    outbound_internet: int
    outbound_lan: int
    samples: list[InterfaceSample]
    namespaces: dict[int, dict[str, Any]]
    errors: list[str]
    started: float
    events_total: int = 0  # every socket event since ``started``; ``events`` holds the last ones only
    processes: list[dict[str, Any]] = field(default_factory=list)  # the process log, when the monitor has one
    processes_total: int = 0
    from_process_start: bool = False  # the monitor started with the process (``started`` is the process start)

    def rates(self) -> list[float]:
        """Whole-machine bytes per second (all interfaces but loopback) between consecutive samples."""
        s = self.samples
        return [max(0.0, (b.total() - a.total()) / max(1e-3, b.time - a.time)) for a, b in itertools.pairwise(s)]

    def interface_rates(self) -> dict[str, tuple[float, float]]:
        """Per interface: bytes per second sent and received over the last interval."""
        if len(self.samples) < 2:
            return {}
        a, b = self.samples[-2], self.samples[-1]
        dt = max(1e-3, b.time - a.time)
        return {name: (max(0.0, (sent - a.counters.get(name, (sent, recv))[0]) / dt),
                       max(0.0, (recv - a.counters.get(name, (sent, recv))[1]) / dt))
                for name, (sent, recv) in b.counters.items()}

    def non_loopback_events(self) -> list[SocketRow]:
        return [e for e in self.events if e.kind in ("lan", "internet")]

    def beyond_this_machine(self, peers: Collection[str] = ()) -> tuple[int, int]:
        """Connections beyond this machine: (to a listed LAN-mode helper, elsewhere). Events the monitor no longer
        holds count as elsewhere: a count is never made to look cleaner than what was seen."""
        listed = sum(1 for e in self.non_loopback_events() if e.remote in peers)
        return listed, self.outbound_internet + self.outbound_lan - listed


def _fmt(addr: Any) -> str:
    if not addr:
        return ""
    host, port = addr[0], addr[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _connections(proc: psutil.Process) -> list[Any]:
    fn = getattr(proc, "net_connections", None) or proc.connections  # psutil < 6 names it connections()
    return list(fn(kind="inet"))


@dataclass
class SocketMonitor:
    """Polls sockets of the processes ``pids()`` names (pid → label, e.g. ``{1234: "localchat", 1240: "worker"}``)."""

    pids: Callable[[], dict[int, str]]
    started: float = field(default_factory=time.time)
    events: deque[SocketRow] = field(default_factory=lambda: deque(maxlen=5000))
    processes: ProcessLog | None = None  # polled with the sockets; its records go into the snapshot
    from_process_start: bool = False  # ``started`` is the process's start: watched from the first instruction
    worker_pid: int | None = None  # labels the worker in :func:`own_processes` for the session monitor
    events_total: int = 0
    outbound_internet: int = 0
    outbound_lan: int = 0
    samples: deque[InterfaceSample] = field(default_factory=lambda: deque(maxlen=121))
    errors: list[str] = field(default_factory=list)
    namespaces: dict[int, dict[str, Any]] = field(default_factory=dict)
    _seen: dict[tuple[int, str, str, str], SocketRow] = field(default_factory=dict)
    _rows: list[SocketRow] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event | None = None
    _thread: threading.Thread | None = None

    _session: ClassVar[SocketMonitor | None] = None

    @classmethod
    def session(cls) -> SocketMonitor | None:
        """The monitor :func:`start_watch` started with the process, if it did."""
        return cls._session

    def start(self, interval: float = 1.0) -> SocketMonitor:
        """Poll every ``interval`` seconds on a background thread until :meth:`stop`."""
        if self._thread is None or not self._thread.is_alive():
            stop = self._stop = threading.Event()
            self._thread = threading.Thread(target=self._run, args=(stop, interval), name="network-monitor",
                                            daemon=True)
            self._thread.start()
        return self

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stop(self) -> None:
        if self._stop is not None:
            self._stop.set()

    def _run(self, stop: threading.Event, interval: float) -> None:
        while True:
            try:
                self.poll()
            except Exception as exc:  # noted in the event log and the report; the next poll tries again
                self.note(f"a poll failed: {exc!r}")
            if stop.wait(interval):
                return

    def poll(self) -> list[SocketRow]:
        """Read every watched process's sockets now; returns the current rows (also kept for :meth:`snapshot`)."""
        if self.processes is not None:
            self.processes.poll()
        with self._lock:
            now = time.time()
            own_ns = netns_id()
            rows: list[SocketRow] = []
            pids = self.pids()
            for pid, label in pids.items():
                ns = netns_id(pid)
                if ns is not None and own_ns is not None and ns != own_ns:
                    rows += self._poll_namespace(pid, label, ns, now)
                else:
                    if pid in self.namespaces and self.namespaces[pid].get("netns") != ns:
                        self.note(f"{label} (pid {pid}) is no longer in its own network namespace")
                    rows += self._poll_psutil(pid, label, now)
            self._rows = rows
            live = {r.key for r in rows}  # a socket closed and opened again later is a new event
            self._seen = {k: v for k, v in self._seen.items() if k in live}
            self.namespaces = {pid: v for pid, v in self.namespaces.items() if pid in pids}
            self._sample_interfaces(now)
            return rows

    def _poll_psutil(self, pid: int, label: str, now: float) -> list[SocketRow]:
        try:
            conns = _connections(psutil.Process(pid))
        except (psutil.NoSuchProcess, psutil.ZombieProcess):
            return []
        except psutil.AccessDenied:
            self.note(f"not allowed to read the sockets of {label} (pid {pid})")
            return []
        return [self._row(pid, label, PROTO.get((c.family, c.type), "?"), _fmt(c.laddr), _fmt(c.raddr),
                          "" if c.status in ("NONE", None) else c.status, c.raddr[0] if c.raddr else "", now)
                for c in conns]

    def _poll_namespace(self, pid: int, label: str, ns: int, now: float) -> list[SocketRow]:
        """Every socket in the namespace ``pid`` has to itself, and its interfaces."""
        self.namespaces[pid] = {"netns": ns, "checked": now, "interfaces": read_net_dev(f"/proc/{pid}/net/dev")}
        return [self._row(pid, f"{label} (own namespace)", s["proto"], s["local"], s["remote"], s["state"],
                          _host(s["remote"]), now) for s in namespace_sockets(pid)]

    def _row(self, pid: int, label: str, proto: str, local: str, remote: str, state: str, remote_ip: str,
             now: float) -> SocketRow:
        key = (pid, proto, local, remote)
        seen = self._seen.get(key)
        row = SocketRow(seen.time if seen else now, label, pid, proto, local, remote, state, classify(remote_ip))
        if seen is None:
            self._seen[key] = row
            self.events.append(row)
            self.events_total += 1
            if row.kind == "internet":
                self.outbound_internet += 1
            elif row.kind == "lan":
                self.outbound_lan += 1
        return row

    def _sample_interfaces(self, now: float) -> None:
        try:
            totals = psutil.net_io_counters(pernic=True)
        except (OSError, RuntimeError) as exc:
            self.note(f"interface counters unavailable: {exc}")
            return
        self.samples.append(InterfaceSample(now, {k: (v.bytes_sent, v.bytes_recv) for k, v in totals.items()}))

    def snapshot(self) -> MonitorSnapshot:
        with self._lock:
            return MonitorSnapshot(time.time(), list(self._rows), list(self.events), self.outbound_internet,
                                   self.outbound_lan, list(self.samples),
                                   {pid: dict(v) for pid, v in self.namespaces.items()}, list(self.errors),
                                   self.started, self.events_total,
                                   self.processes.snapshot() if self.processes is not None else [],
                                   self.processes.total if self.processes is not None else 0, self.from_process_start)

    def non_loopback_events(self) -> list[SocketRow]:
        return self.snapshot().non_loopback_events()

    def note(self, msg: str) -> None:
        """Record a problem once (shown in the event log and the report)."""
        if msg not in self.errors:
            self.errors.append(msg)


@dataclass(frozen=True)
class Watch:
    """What :func:`start_watch` started."""

    guard: AuditGuard
    processes: ProcessLog
    monitor: SocketMonitor


def start_watch(interval: float = 1.0) -> Watch:
    """Watch this process from now on: the audit guard (offline), the process log, the socket monitor polling in the
    background with "since" = this process's start. Called first by ``app.main``; a second call returns the same."""
    monitor = SocketMonitor.session()
    if monitor is not None and monitor.processes is not None:
        guard = AuditGuard.active() or AuditGuard(offline=True).install()
        return Watch(guard, monitor.processes, monitor.start(interval))
    guard = AuditGuard.active() or AuditGuard(offline=True).install()
    processes = ProcessLog.active() or ProcessLog().install()
    holder: list[SocketMonitor] = []
    monitor = SocketMonitor(lambda: own_processes(holder[0].worker_pid), started=process_start_time(),
                            processes=processes, from_process_start=True)
    holder.append(monitor)
    SocketMonitor._session = monitor
    return Watch(guard, processes, monitor.start(interval))


def own_processes(worker_pid: int | None = None) -> dict[int, str]:
    """This process, its children, and the worker (which is one of them when this process started it)."""
    me = psutil.Process(os.getpid())
    out = {me.pid: "localchat"}
    try:
        for child in descendants(me.pid):
            out[child.pid] = "inference worker" if child.pid == worker_pid else child.name()
    except psutil.Error:
        pass
    if worker_pid is not None:
        out[worker_pid] = "inference worker"
    return out


def _sockstat(pid: int) -> dict[str, int] | None:
    """Sockets per table in the namespace of ``pid``, from its cheap counters (``/proc/<pid>/net/sockstat{,6}``).

    The tables themselves cost about a millisecond each to read (the kernel walks hash tables shared by every
    namespace), so a table whose counter is zero is not read at all.
    """
    stats: dict[str, dict[str, int]] = {}
    try:
        for name in ("sockstat", "sockstat6"):
            with open(f"/proc/{pid}/net/{name}", encoding="ascii") as fh:
                for line in fh:
                    label, _, rest = line.partition(":")
                    fields = rest.split()
                    stats[label.strip().lower()] = dict(zip(fields[::2], map(int, fields[1::2]), strict=False))
    except (OSError, ValueError):
        return None

    def inuse(table: str) -> int:
        return stats.get(table, {}).get("inuse", 0)

    tw = stats.get("tcp", {}).get("tw", 0)  # time-wait sockets of both families are counted under TCP
    return {"tcp": inuse("tcp") + tw, "tcp6": inuse("tcp6") + tw, "udp": inuse("udp"), "udp6": inuse("udp6"),
            "raw": inuse("raw"), "raw6": inuse("raw6")}


def namespace_sockets(pid: int) -> list[dict[str, str]]:
    """Every TCP, UDP and raw socket in the network namespace of ``pid`` (its /proc/<pid>/net tables)."""
    rows = []
    counts = _sockstat(pid)
    for proto in NAMESPACE_TABLES:
        if counts is not None and counts[proto] == 0:
            continue
        try:
            with open(f"/proc/{pid}/net/{proto}", encoding="ascii") as fh:
                lines = fh.readlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            remote = _hexaddr(parts[2])
            if classify(_host(remote)) == "none":  # 0.0.0.0:0, [::]:0: not connected
                remote = ""
            state = TCP_STATES.get(parts[3], parts[3]) if proto.startswith("tcp") else ""
            rows.append({"proto": proto, "local": _hexaddr(parts[1]), "remote": remote, "state": state})
    return rows


def namespace_interfaces(pid: int) -> list[dict[str, Any]]:
    """Interfaces and byte counters in the network namespace of ``pid``."""
    return read_net_dev(f"/proc/{pid}/net/dev")


def _host(addr: str) -> str:
    """The address part of ``host:port`` or ``[v6]:port``."""
    return addr.rsplit(":", 1)[0].strip("[]") if addr else ""


def _hexaddr(text: str) -> str:
    host, port = text.split(":")
    raw = bytes.fromhex(host)
    if len(raw) == 4:
        return f"{socket.inet_ntop(socket.AF_INET, raw[::-1])}:{int(port, 16)}"
    ip = socket.inet_ntop(socket.AF_INET6, b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4)))
    return f"[{ip}]:{int(port, 16)}"


def all_connections() -> tuple[list[dict[str, Any]], str | None]:
    """Every process's inet connections with a remote end, where permissions allow (which program talks to whom)."""
    try:
        conns = psutil.net_connections(kind="inet")
    except psutil.AccessDenied:
        return [], "reading other programs' connections needs administrator rights"
    names: dict[int, str] = {}
    out = []
    for c in conns:
        if not c.raddr:
            continue
        if c.pid and c.pid not in names:
            try:
                names[c.pid] = psutil.Process(c.pid).name()
            except psutil.Error:
                names[c.pid] = "?"
        out.append({"process": names.get(c.pid, "?") if c.pid else "?", "pid": c.pid or 0,
                    "proto": PROTO.get((c.family, c.type), "?"), "local": _fmt(c.laddr), "remote": _fmt(c.raddr),
                    "state": "" if c.status == "NONE" else c.status, "kind": classify(c.raddr[0])})
    if getattr(os, "geteuid", lambda: 0)() != 0:
        return out, "other users' programs are listed without a name (that needs administrator rights)"
    return out, None
