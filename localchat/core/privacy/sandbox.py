"""Worker sandbox: the inference worker cuts itself off from the network before importing anything heavy.

Linux: a new user + network namespace (``unshare(CLONE_NEWUSER | CLONE_NEWNET)`` through libc; Python 3.11 has no
``os.unshare``), also when running as root, because a root process that only unshares its network namespace keeps
the capability to ``setns`` straight back into the host's. The worker is then left with one loopback interface that
is down: nothing can leave, through Python or native code, while its pipes to the app (inherited file descriptors)
keep working. Where the kernel refuses a user namespace, root falls back to a network namespace alone and drops the
capabilities that could undo it (``CAP_SYS_ADMIN``, ``CAP_NET_ADMIN``, …). Where everything is refused (e.g. Ubuntu
24.04 restricts unprivileged user namespaces through AppArmor) the report says so, with the reason and the fix, and
claims nothing more than "monitored only".

macOS: ``sandbox_init(3)`` applies the system's ``no-internet`` profile (TCP/IP denied; what ``sandbox-exec`` does
before it executes a program) to the running worker, so no re-exec is needed. Windows: not sandboxed, and the report
says so.

Evidence gathered inside the worker: its network-namespace id vs the app's, its interface list, an attempt to
re-enter the app's namespace, and a canary: connect attempts to the host's loopback and then to 192.0.2.1 (TEST-NET-1,
reserved for documentation), whose failures (errno) are recorded with a timestamp. The canary runs only where the
isolation has already been applied and checked (and the documentation address only after the loopback attempt was
blocked), so no packet of ours ever leaves the machine; a worker that is not isolated sends no canary at all.
Isolation is claimed only when every piece of evidence agrees. Everything here is stdlib + ctypes and takes a few
milliseconds.
"""

from __future__ import annotations

import errno
import functools
import os
import socket
import sys
import time
from typing import Any

CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000
PARENT_NETNS_ENV = "LOCALCHAT_PARENT_NETNS"
LOOPBACK_CANARY = ("127.0.0.1", 9, "host loopback")
DOC_CANARY = ("192.0.2.1", 80, "TEST-NET-1 (documentation address)")
USERNS_APPARMOR_SYSCTL = "/proc/sys/kernel/apparmor_restrict_unprivileged_userns"
USERNS_CLONE_SYSCTL = "/proc/sys/kernel/unprivileged_userns_clone"
MAX_USERNS_SYSCTL = "/proc/sys/user/max_user_namespaces"
# capabilities a root worker in a bare network namespace must not keep: setns/unshare/mount, moving interfaces,
# tracing other processes, loading modules, BPF
DROPPED_CAPS = {"CAP_SYS_ADMIN": 21, "CAP_NET_ADMIN": 12, "CAP_SYS_PTRACE": 19, "CAP_SYS_MODULE": 16, "CAP_BPF": 39}
METHODS = ("userns", "netns")


def netns_id(pid: int | str = "self") -> int | None:
    """The inode of a process's network namespace: equal ids mean the same network stack."""
    try:
        return os.stat(f"/proc/{pid}/ns/net").st_ino
    except OSError:
        return None


def read_net_dev(path: str) -> list[dict[str, Any]]:
    """Interfaces with their byte counters from a ``/proc/<pid>/net/dev`` table (that process's namespace)."""
    try:
        with open(path, encoding="ascii") as fh:
            lines = fh.readlines()[2:]
    except OSError:
        return []
    out: list[dict[str, Any]] = []
    for line in lines:
        name, data = line.split(":", 1)
        fields = data.split()
        out.append({"name": name.strip(), "rx_bytes": int(fields[0]), "tx_bytes": int(fields[8])})
    return out


def interfaces() -> list[dict[str, Any]]:
    """Interfaces visible to this process, with counters and up/down state."""
    if sys.platform.startswith("linux"):
        out = read_net_dev("/proc/self/net/dev")
    else:
        try:
            out = [{"name": name} for _, name in socket.if_nameindex()]
        except OSError:
            out = []
    for item in out:
        item["up"] = _is_up(item["name"])
    return out


def _is_up(name: str) -> bool | None:
    # SIOCGIFFLAGS on a throwaway UDP socket: reads this namespace's view of the interface, sends nothing
    if not sys.platform.startswith("linux"):
        return None
    import fcntl
    import struct

    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            res = fcntl.ioctl(s.fileno(), 0x8913, struct.pack("256s", name.encode()[:15]))
        return bool(struct.unpack("H", res[16:18])[0] & 0x1)
    except OSError:
        return None


def _connect_attempt(host: str, port: int, label: str) -> dict[str, Any]:
    t = time.time()
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(1.0)
    try:
        s.connect((host, port))
        outcome, code = "CONNECTED", 0
    except TimeoutError:
        outcome, code = "TIMEOUT", errno.ETIMEDOUT
    except OSError as exc:
        code = exc.errno or 0
        outcome = errno.errorcode.get(code, str(exc))
    finally:
        s.close()
    # blocked means refused by this machine before anything was sent: no route (netns) or denied (macOS sandbox)
    blocked = code in (errno.ENETUNREACH, errno.EPERM, errno.EACCES, errno.EHOSTUNREACH, errno.EADDRNOTAVAIL)
    return {"target": f"{host}:{port}", "label": label, "time": t, "result": outcome, "errno": code,
            "blocked": blocked}


def canary() -> list[dict[str, Any]]:
    """Connect attempts from inside the isolated worker; call only once isolation has been applied and checked.

    The loopback attempt comes first and gates the second: if the host's loopback were reachable, the isolation is
    not what it claims, and the documentation address is not tried at all.
    """
    results = [_connect_attempt(*LOOPBACK_CANARY)]
    if results[0]["blocked"]:
        results.append(_connect_attempt(*DOC_CANARY))
    return results


# -- Linux -------------------------------------------------------------------------------------------------------


@functools.cache
def _libc() -> Any:
    import ctypes

    return ctypes.CDLL(None, use_errno=True)  # the interpreter's own libc: no library search, no subprocess


def _errname(code: int) -> str:
    return errno.errorcode.get(code, str(code))


def _unshare(flags: int) -> int:
    import ctypes

    if _libc().unshare(flags) != 0:
        return ctypes.get_errno()
    return 0


def _write(path: str, text: str) -> None:
    # one write(2) that raises here (a buffered file would report the kernel's refusal only at close, or never)
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, text.encode("ascii"))
    finally:
        os.close(fd)


def _drop_capabilities() -> list[str]:
    """Remove DROPPED_CAPS from this process's bounding, effective, permitted and inheritable sets; no new privs."""
    import ctypes

    class Header(ctypes.Structure):
        _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]

    class Data(ctypes.Structure):
        _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]

    libc = _libc()
    problems = []
    for name, cap in DROPPED_CAPS.items():
        if libc.prctl(24, cap, 0, 0, 0) != 0 and ctypes.get_errno() != errno.EINVAL:  # PR_CAPBSET_DROP
            problems.append(f"bounding set {name}: {_errname(ctypes.get_errno())}")
    header, data = Header(0x20080522, 0), (Data * 2)()  # _LINUX_CAPABILITY_VERSION_3
    if libc.capget(ctypes.byref(header), data) != 0:
        problems.append(f"capget: {_errname(ctypes.get_errno())}")
    else:
        for cap in DROPPED_CAPS.values():
            mask = ~(1 << (cap % 32)) & 0xFFFFFFFF
            d = data[cap // 32]
            d.effective &= mask
            d.permitted &= mask
            d.inheritable &= mask
        if libc.capset(ctypes.byref(header), data) != 0:
            problems.append(f"capset: {_errname(ctypes.get_errno())}")
    if libc.prctl(38, 1, 0, 0, 0) != 0:  # PR_SET_NO_NEW_PRIVS: no exec can give them back
        problems.append(f"no_new_privs: {_errname(ctypes.get_errno())}")
    return problems


def _read_sysctl(path: str) -> str | None:
    try:
        with open(path, encoding="ascii") as fh:
            return fh.read().strip()
    except OSError:
        return None


def _diagnose(attempts: dict[str, str]) -> tuple[str, str]:
    """Why the kernel refused a namespace, and how to allow it: (cause, fix)."""
    codes = set(attempts.values())
    if _read_sysctl(USERNS_APPARMOR_SYSCTL) == "1":
        return ("AppArmor restricts unprivileged user namespaces (kernel.apparmor_restrict_unprivileged_userns=1, "
                "the Ubuntu 24.04 default)",
                "give localchat an AppArmor profile that allows 'userns' (see docs/PRIVACY.md), or allow it for "
                "every program: sudo sysctl -w kernel.apparmor_restrict_unprivileged_userns=0")
    if _read_sysctl(USERNS_CLONE_SYSCTL) == "0":
        return ("unprivileged user namespaces are turned off (kernel.unprivileged_userns_clone=0)",
                "sudo sysctl -w kernel.unprivileged_userns_clone=1")
    if "ENOSPC" in codes or _read_sysctl(MAX_USERNS_SYSCTL) == "0":
        return (f"no user namespace may be created (user.max_user_namespaces={_read_sysctl(MAX_USERNS_SYSCTL)} "
                "or its limit is reached)", "sudo sysctl -w user.max_user_namespaces=15000")
    if "EINVAL" in codes:
        return ("this kernel has no user-namespace support (CONFIG_USER_NS)",
                "use a kernel built with CONFIG_USER_NS=y and CONFIG_NET_NS=y")
    if os.path.exists("/.dockerenv") or os.path.exists("/run/.containerenv"):
        return ("localchat runs in a container whose security profile forbids unshare",
                "run localchat outside the container, or start the container with a seccomp profile that allows "
                "unshare (e.g. --security-opt seccomp=unconfined)")
    return "a security policy forbids it", "allow unprivileged user namespaces for localchat"


def _threads() -> int:
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return 0


def _linux_isolate(methods: tuple[str, ...]) -> dict[str, Any]:
    """Unshare, then check. Returns the isolation fields of the report."""
    out: dict[str, Any] = {"threads": _threads(), "attempts": {}}
    if out["threads"] > 1:
        # a namespace applies to the calling thread only: a worker that already runs threads cannot be isolated
        out.update(isolated=False, mode="none", fix="apply the sandbox before any thread starts (a localchat bug)",
                   reason=f"the worker already runs {out['threads']} threads")
        return out
    try:
        host_ns = os.open("/proc/self/ns/net", os.O_RDONLY)  # kept to prove, afterwards, that there is no way back
    except OSError:
        host_ns = -1
    uid, gid = os.getuid(), os.getgid()  # before unshare: afterwards they read as the overflow id until mapped
    mode = "none"
    try:
        for method in methods:
            if method == "netns" and os.geteuid() != 0:
                continue
            flags = CLONE_NEWUSER | CLONE_NEWNET if method == "userns" else CLONE_NEWNET
            err = _unshare(flags)
            if err:
                out["attempts"][method] = _errname(err)
                continue
            if method == "userns":
                mode = "userns+netns"
                try:  # keep our own ids (file ownership); the network namespace is in force either way
                    _write("/proc/self/setgroups", "deny")
                    _write("/proc/self/uid_map", f"{uid} {uid} 1")
                    _write("/proc/self/gid_map", f"{gid} {gid} 1")
                except OSError as exc:
                    out["id_map"] = f"not written: {exc}"
            else:
                mode = "netns"
                out["capabilities_dropped"] = list(DROPPED_CAPS)
                problems = _drop_capabilities()
                if problems:
                    out["capability_problems"] = problems
            break
        if mode == "none":
            cause, fix = _diagnose(out["attempts"])
            tried = ", ".join(f"{m}: {e}" for m, e in out["attempts"].items())
            out.update(isolated=False, mode="none", reason=f"the kernel refused a new network namespace ({tried})",
                       cause=cause, fix=fix)
            return out
        out["reentry"] = _reentry_attempt(host_ns)
    finally:
        if host_ns >= 0:
            os.close(host_ns)
    out.update(isolated=True, mode=mode, fix=None,
               reason="new user and network namespace" if mode == "userns+netns"
               else "new network namespace (root, capabilities to leave it dropped)")
    return out


def _reentry_attempt(host_ns: int) -> dict[str, Any]:
    """Try to switch back into the app's network namespace through a descriptor opened before isolating."""
    import ctypes

    if host_ns < 0:
        return {"result": "not tried (no descriptor of the host namespace)", "refused": None}
    if _libc().setns(host_ns, CLONE_NEWNET) == 0:
        return {"result": "SUCCEEDED", "refused": False}
    return {"result": _errname(ctypes.get_errno()), "refused": True}


# -- macOS -------------------------------------------------------------------------------------------------------


def _macos_isolate() -> dict[str, Any]:
    import ctypes

    try:
        lib = ctypes.CDLL("/usr/lib/libSystem.B.dylib", use_errno=True)
        # `extern const char kSBXProfileNoInternet[]`: the symbol is the string itself
        symbol = ctypes.c_char.in_dll(lib, "kSBXProfileNoInternet")
        profile = ctypes.cast(ctypes.addressof(symbol), ctypes.c_char_p).value
        error = ctypes.c_char_p()
        rc = lib.sandbox_init(profile, 1, ctypes.byref(error))  # SANDBOX_NAMED
    except (OSError, AttributeError, ValueError) as exc:
        return {"isolated": False, "mode": "none", "reason": f"sandbox_init(3) is not available: {exc}",
                "fix": None}
    if rc != 0:
        msg = error.value.decode(errors="replace") if error.value else f"error {rc}"
        return {"isolated": False, "mode": "none", "reason": f"the macOS sandbox refused the profile: {msg}",
                "fix": None}
    return {"isolated": True, "mode": "macos-sandbox", "fix": None,
            "reason": f"macOS sandbox profile '{(profile or b'').decode()}': TCP/IP denied"}


# -- entry point -------------------------------------------------------------------------------------------------


def isolate_worker(policy: str, *, methods: tuple[str, ...] = METHODS) -> dict[str, Any]:
    """Isolate the calling (single-threaded, freshly started) process from the network.

    Args:
        policy: ``"off"`` (do nothing), ``"auto"`` (isolate where possible) or ``"require"`` (the same here; the
            worker refuses to serve, and the client raises ``IsolationRequired``, when it could not be applied).
        methods: Linux only, tried in order: ``"userns"`` (user + network namespace) and ``"netns"`` (network
            namespace alone, root only). Tests pass one to exercise a specific path.

    Returns:
        A JSON-able report: ``isolated``, ``mode``, ``reason`` (with ``cause`` when the kernel refused), ``fix`` and
        the evidence (``netns`` vs
        ``parent_netns``, ``interfaces``, ``reentry``, ``canary``).
    """
    t0 = time.perf_counter()
    report: dict[str, Any] = {"policy": policy, "platform": sys.platform, "pid": os.getpid(),
                              "netns_before": netns_id(), "parent_netns": _int_env(PARENT_NETNS_ENV)}
    if report["parent_netns"] is None:
        report["parent_netns"] = report["netns_before"]
    if policy == "off":
        report.update(isolated=False, mode="none", reason="isolation turned off", fix=None)
    elif sys.platform.startswith("linux"):
        report.update(_linux_isolate(methods))
    elif sys.platform == "darwin":
        report.update(_macos_isolate())
    else:
        report.update(isolated=False, mode="none", fix=None,
                      reason=f"Windows has no network sandbox localchat can apply ({sys.platform}): monitored only")
    report.update(time=time.time(), netns=netns_id(), interfaces=interfaces())
    if report["isolated"]:
        contradiction = _contradiction(report)
        if contradiction is None:
            report["canary"] = canary()
            if not all(c["blocked"] for c in report["canary"]):
                contradiction = "a canary connection was not blocked"
        if contradiction is not None:  # isolation is only claimed when the evidence agrees
            report.update(isolated=False, reason=f"isolation applied but {contradiction}: monitored only")
    report["duration_ms"] = round((time.perf_counter() - t0) * 1000, 2)
    return report


def _contradiction(report: dict[str, Any]) -> str | None:
    """What in the evidence gathered so far contradicts the isolation, or None."""
    if not sys.platform.startswith("linux"):
        return None
    if report["netns"] is None or report["netns"] in (report["netns_before"], report["parent_netns"]):
        return "the worker's network namespace is still the app's"
    if any(i["up"] for i in report["interfaces"]) or [i["name"] for i in report["interfaces"]] != ["lo"]:
        return "an interface other than a down loopback is present"
    if report.get("reentry", {}).get("refused") is False:
        return "the worker could re-enter the app's network namespace"
    return None


def _int_env(name: str) -> int | None:
    v = os.environ.get(name)
    return int(v) if v and v.isdigit() else None
