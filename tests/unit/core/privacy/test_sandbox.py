"""The isolated worker really cannot reach anything: probed from inside, by Python and by libc.

Each probe is a fresh interpreter that calls ``isolate_worker`` first thing (as the worker does) and then tries the
host's listener on 127.0.0.1, the documentation address 192.0.2.1, DNS, and a way back into the host's network
namespace. Connection attempts are made only after the isolation reported success: nothing leaves the machine.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from netns import restricted_userns_prefix
from strict import skip_or_fail

from localchat.core.privacy.audit import AuditGuard
from localchat.core.privacy.sandbox import canary, isolate_worker, netns_id

ROOT = Path(__file__).resolve().parents[4]

PROBE = r"""
import ctypes, encodings.ascii, encodings.idna, errno, fcntl, json, os, socket, struct, sys, threading
host_ns = os.open("/proc/self/ns/net", os.O_RDONLY)  # opened before isolating: the strongest way back
libc = ctypes.CDLL(None, use_errno=True)
policy, host_port, methods = sys.argv[1], int(sys.argv[2]), sys.argv[3]
if methods == "thread-first":
    threading.Thread(target=lambda: threading.Event().wait(5), daemon=True).start()
if methods == "bare-netns":  # control: what the re-entry check must catch
    assert libc.unshare(0x40000000) == 0
    report = {"isolated": True, "mode": "bare-netns", "netns": os.stat("/proc/self/ns/net").st_ino}
else:
    from localchat.core.privacy.sandbox import isolate_worker
    kw = {"methods": tuple(methods.split(","))} if methods not in ("default", "thread-first") else {}
    report = isolate_worker(policy, **kw)
out = {"report": report, "uid": os.getuid()}
if libc.setns(host_ns, 0x40000000) == 0:
    out["reentry"] = "SUCCEEDED"
    report["isolated"] = False  # back in the host's namespace: probe nothing from here
else:
    out["reentry"] = errno.errorcode[ctypes.get_errno()]
if report["isolated"]:  # only probe where nothing can leave
    def py_connect(host, port):
        s = socket.socket(); s.settimeout(2)
        try:
            s.connect((host, port)); return "connected"
        except OSError as e:
            return e.errno
        finally:
            s.close()
    def c_connect(host, port):
        fd = libc.socket(socket.AF_INET, socket.SOCK_STREAM, 0)
        addr = struct.pack("=H", socket.AF_INET) + struct.pack("!H4s8x", port, socket.inet_aton(host))
        rc = libc.connect(fd, addr, len(addr))
        err = ctypes.get_errno()
        libc.close(fd)
        return "connected" if rc == 0 else err
    out["py_host_listener"] = py_connect("127.0.0.1", host_port)
    out["py_documentation_address"] = py_connect("192.0.2.1", 443)
    out["libc_host_listener"] = c_connect("127.0.0.1", host_port)
    out["libc_documentation_address"] = c_connect("192.0.2.1", 443)
    try:
        socket.getaddrinfo("example.com", 443)
        out["dns"] = "resolved"
    except socket.gaierror as e:
        out["dns"] = str(e)
print(json.dumps(out))
"""

BLOCKED = ("py_host_listener", "py_documentation_address", "libc_host_listener", "libc_documentation_address")


def run_probe(policy: str, host_port: int = 9, methods: str = "default", prefix: list[str] | None = None) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([*(prefix or []), sys.executable, "-c", PROBE, policy, str(host_port), methods],
                          capture_output=True, text=True, timeout=60, env=env)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.fixture
def host_listener():
    """A listener on the host's loopback; ``accepted`` shows what really arrived."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()
    accepted: list = []

    def serve() -> None:
        while True:
            try:
                accepted.append(srv.accept())
            except OSError:
                return

    threading.Thread(target=serve, daemon=True).start()
    yield srv.getsockname()[1], accepted
    srv.close()
    for conn, _ in accepted:
        conn.close()


def assert_cut_off(out: dict, accepted: list) -> None:
    report = out["report"]
    assert report["netns"] != report["netns_before"] == netns_id()
    assert [i["name"] for i in report["interfaces"]] == ["lo"] and report["interfaces"][0]["up"] is False
    assert [c["target"] for c in report["canary"]] == ["127.0.0.1:9", "192.0.2.1:80"]
    assert all(c["result"] == "ENETUNREACH" and c["blocked"] for c in report["canary"])
    assert report["reentry"] == {"result": "EPERM", "refused": True}
    assert out["reentry"] == "EPERM"
    for key in BLOCKED:
        assert out[key] == errno.ENETUNREACH, (key, out[key])
    assert out["dns"] != "resolved"
    assert len(accepted) == 1  # only the positive control ever arrived


def positive_control(port: int) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=2):
        pass


@pytest.mark.isolation
def test_isolated_worker_reaches_nothing(host_listener) -> None:
    port, accepted = host_listener
    positive_control(port)
    out = run_probe("auto", port)
    report = out["report"]
    if not report["isolated"]:
        skip_or_fail(f"this machine cannot isolate the worker: {report['reason']}; {report.get('cause')} — fix: "
                     f"{report['fix']}")
    # as root too: a user namespace, so the worker has no capability over the host's network
    assert report["mode"] == "userns+netns" and report["attempts"] == {}
    assert report["threads"] == 1 and report["duration_ms"] > 0
    assert_cut_off(out, accepted)


@pytest.mark.isolation
@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None,
                    reason="running the probe as another user needs root and setpriv (util-linux)")
def test_unprivileged_user_is_isolated(host_listener) -> None:
    port, accepted = host_listener
    positive_control(port)
    # uid 65534 with no capability but reading files (the interpreter lives under /root here)
    out = run_probe("auto", port, prefix=["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                                          "--inh-caps=-all,+dac_read_search", "--ambient-caps=+dac_read_search"])
    report = out["report"]
    if not report["isolated"]:
        skip_or_fail(f"unprivileged user namespaces are not available: {report['reason']}")
    assert out["uid"] == 65534 and "id_map" not in report  # its own id mapped into the new namespace
    assert report["mode"] == "userns+netns"
    assert_cut_off(out, accepted)


@pytest.mark.isolation
@pytest.mark.skipif(os.geteuid() != 0, reason="the network-namespace-only path is for root")
def test_root_network_namespace_alone_cannot_be_left(host_listener) -> None:
    port, accepted = host_listener
    positive_control(port)
    # control: a bare unshare(CLONE_NEWNET) as root can switch straight back — the check below would see it
    bare = run_probe("auto", port, methods="bare-netns")
    assert bare["reentry"] == "SUCCEEDED"
    out = run_probe("auto", port, methods="netns")
    report = out["report"]
    assert report["isolated"] and report["mode"] == "netns", report
    assert "CAP_SYS_ADMIN" in report["capabilities_dropped"] and "capability_problems" not in report
    assert_cut_off(out, accepted)


@pytest.mark.isolation
def test_refused_namespace_is_reported_with_the_fix() -> None:
    prefix = restricted_userns_prefix()
    if isinstance(prefix, str):
        skip_or_fail(prefix)
    out = run_probe("auto", methods="userns,netns", prefix=prefix)
    report = out["report"]
    assert report["isolated"] is False and report["mode"] == "none"
    assert report["attempts"] == {"userns": "ENOSPC", "netns": "EPERM"}
    assert report["reason"] == "the kernel refused a new network namespace (userns: ENOSPC, netns: EPERM)"
    assert "user.max_user_namespaces" in report["cause"] and "max_user_namespaces" in report["fix"]
    assert "canary" not in report and report["netns"] == report["netns_before"]
    assert "py_host_listener" not in out  # a worker that is not isolated is not probed


def test_threads_before_isolation_are_refused() -> None:
    out = run_probe("auto", methods="thread-first")
    report = out["report"]
    assert report["isolated"] is False and report["threads"] == 2 and "threads" in report["reason"]
    assert "canary" not in report


def test_off_policy_claims_nothing_and_sends_no_canary() -> None:
    out = run_probe("off")
    r = out["report"]
    assert r["isolated"] is False and "canary" not in r and r["netns"] == r["netns_before"]
    assert r["reason"] == "isolation turned off"


def test_canary_outside_isolation_never_tries_the_documentation_address() -> None:
    # in the host's namespace the loopback attempt is not blocked, so the second attempt must not happen; the guard
    # (offline) would refuse 192.0.2.1 before any packet, and records that nothing was even tried
    guard = AuditGuard(offline=True).install()
    try:
        results = canary()
    finally:
        guard.uninstall()
    assert len(results) == 1 and results[0]["target"] == "127.0.0.1:9" and results[0]["blocked"] is False
    assert [e.destination for e in guard.events if e.event == "socket.connect"] == ["127.0.0.1:9"]


def test_report_of_this_process_without_isolating() -> None:
    # policy off never touches the calling process
    before = netns_id()
    assert isolate_worker("off")["isolated"] is False
    assert netns_id() == before == os.stat("/proc/self/ns/net").st_ino
