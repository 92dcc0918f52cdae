"""Worker sandbox: the inference worker cuts itself off from the network before importing anything heavy.

Linux: a new network namespace (with a new user namespace when not root), so the process has only a loopback
interface that is down. Nothing can leave, through Python or native code, and the pipes to the app (inherited
file descriptors) keep working. Where that is refused (e.g. Ubuntu 24.04 restricts unprivileged user namespaces
through AppArmor) the report says so, with the fix, and claims nothing more than "monitored only".

macOS would use a sandbox-exec profile denying remote IP; Windows has no equivalent here: both report
"not isolated" with the reason, honestly.

Evidence gathered inside the isolated worker: its network-namespace id vs the app's, its interface list, and a
canary: connect attempts to 192.0.2.1 (TEST-NET-1, reserved for documentation, routed nowhere) and to the host's
loopback, whose failures (errno) are recorded with a timestamp. A worker that is not isolated sends no canary, so
no packet of ours ever leaves the machine.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import socket
import sys
import time
from typing import Any

CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000
PARENT_NETNS_ENV = "LOCALCHAT_PARENT_NETNS"
CANARY_TARGETS = (("192.0.2.1", 80, "TEST-NET-1 (documentation address)"), ("127.0.0.1", 9, "host loopback"))
USERNS_SYSCTL = "/proc/sys/kernel/apparmor_restrict_unprivileged_userns"


def netns_id(pid: int | str = "self") -> int | None:
    """The inode of a process's network namespace: equal ids mean the same network stack."""
    try:
        return os.stat(f"/proc/{pid}/ns/net").st_ino
    except OSError:
        return None


def interfaces() -> list[dict[str, Any]]:
    """Interfaces visible in this process's network namespace, with counters and up/down state."""
    out: list[dict[str, Any]] = []
    try:
        with open("/proc/self/net/dev", encoding="utf-8") as fh:
            lines = fh.readlines()[2:]
    except OSError:
        return out
    for line in lines:
        name, data = line.split(":", 1)
        fields = data.split()
        out.append({"name": name.strip(), "rx_bytes": int(fields[0]), "tx_bytes": int(fields[8]),
                    "up": _is_up(name.strip())})
    return out


def _is_up(name: str) -> bool:
    # SIOCGIFFLAGS on a throwaway UDP socket: reads this namespace's view, sends nothing
    import fcntl
    import struct

    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            res = fcntl.ioctl(s.fileno(), 0x8913, struct.pack("256s", name.encode()[:15]))
        return bool(struct.unpack("H", res[16:18])[0] & 0x1)
    except OSError:
        return False


def canary() -> list[dict[str, Any]]:
    results = []
    for host, port, label in CANARY_TARGETS:
        t = time.time()
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.settimeout(1.0)
        try:
            s.connect((host, port))
            outcome, code = "CONNECTED", 0
        except OSError as exc:
            code = exc.errno or 0
            outcome = errno.errorcode.get(code, str(exc))
        finally:
            s.close()
        results.append({"target": f"{host}:{port}", "label": label, "time": t, "result": outcome,
                        "errno": code, "blocked": outcome != "CONNECTED"})
    return results


def _unshare(flags: int) -> int:
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    if libc.unshare(flags) != 0:
        return ctypes.get_errno()
    return 0


def _write(path: str, text: str) -> None:
    with open(path, "w", encoding="ascii") as fh:
        fh.write(text)


def _linux_isolate() -> tuple[bool, str, str]:
    """Returns (isolated, mode, reason)."""
    if os.geteuid() == 0:
        err = _unshare(CLONE_NEWNET)
        if err == 0:
            return True, "netns", "new network namespace (root)"
    uid, gid = os.getuid(), os.getgid()
    err = _unshare(CLONE_NEWUSER | CLONE_NEWNET)
    if err == 0:
        try:
            _write("/proc/self/setgroups", "deny")
            _write("/proc/self/uid_map", f"{uid} {uid} 1")
            _write("/proc/self/gid_map", f"{gid} {gid} 1")
        except OSError:
            pass  # the maps only matter for file ownership; the network namespace is already in force
        return True, "userns+netns", "new user and network namespace"
    reason = f"the kernel refused a new network namespace ({errno.errorcode.get(err, err)})"
    try:
        with open(USERNS_SYSCTL, encoding="ascii") as fh:
            if fh.read().strip() == "1":
                reason += ("; AppArmor restricts unprivileged user namespaces "
                           "(kernel.apparmor_restrict_unprivileged_userns=1). Fix: allow it for localchat with an "
                           "AppArmor profile granting 'userns', or run: sudo sysctl "
                           "kernel.apparmor_restrict_unprivileged_userns=0")
    except OSError:
        pass
    return False, "none", reason


def isolate_worker(policy: str) -> dict[str, Any]:
    """Isolate the calling (single-threaded, freshly started) process from the network.

    Args:
        policy: ``"off"`` (do nothing), ``"auto"`` (isolate where possible) or ``"require"``.

    Returns:
        A JSON-able report: ``isolated``, ``mode``, ``reason``, ``policy``, and the evidence fields.
    """
    report: dict[str, Any] = {"policy": policy, "platform": sys.platform, "pid": os.getpid(),
                              "netns_before": netns_id(), "parent_netns": _int_env(PARENT_NETNS_ENV)}
    if policy == "off":
        isolated, mode, reason = False, "none", "isolation turned off"
    elif sys.platform.startswith("linux"):
        isolated, mode, reason = _linux_isolate()
    elif sys.platform == "darwin":
        isolated, mode, reason = False, "none", "macOS sandbox-exec profile not applied in this build: monitored only"
    else:
        isolated, mode, reason = False, "none", f"no network sandbox on {sys.platform}: monitored only"
    report.update({"isolated": isolated, "mode": mode, "reason": reason, "time": time.time(),
                   "netns": netns_id(), "interfaces": interfaces()})
    if isolated:
        report["canary"] = canary()
        # isolation is only claimed when the evidence agrees
        if not all(c["blocked"] for c in report["canary"]) or any(i["up"] for i in report["interfaces"]):
            report["isolated"] = False
            report["reason"] = "namespace created but the canary or an interface contradicts it: monitored only"
    return report


def _int_env(name: str) -> int | None:
    v = os.environ.get(name)
    return int(v) if v and v.isdigit() else None
