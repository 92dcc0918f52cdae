"""The isolated worker really cannot reach anything: probed from inside, by Python and by libc."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading

import pytest

from localchat.core.privacy.sandbox import isolate_worker, netns_id

PROBE = r"""
import ctypes, ctypes.util, json, socket, struct, sys
from localchat.core.privacy.sandbox import isolate_worker
report = isolate_worker(sys.argv[1])
out = {"report": report}
if report["isolated"]:  # only probe where nothing can leave
    host_port = int(sys.argv[2])
    def py_connect(host, port):
        s = socket.socket(); s.settimeout(2)
        try:
            s.connect((host, port)); return "connected"
        except OSError as e:
            return e.errno
        finally:
            s.close()
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    def c_connect(host, port):
        fd = libc.socket(socket.AF_INET, socket.SOCK_STREAM, 0)
        addr = struct.pack("!HH4s8x", socket.AF_INET, port, socket.inet_aton(host))
        addr = struct.pack("=H", socket.AF_INET) + addr[2:]
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


def run_probe(policy: str, host_port: int) -> dict:
    proc = subprocess.run([sys.executable, "-c", PROBE, policy, str(host_port)], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.fixture
def host_listener():
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()
    accepted = []
    t = threading.Thread(target=lambda: accepted.append(srv.accept()), daemon=True)
    t.start()
    yield srv.getsockname()[1], accepted
    for conn, _ in accepted:
        conn.close()
    srv.close()


def test_isolated_worker_reaches_nothing(host_listener) -> None:
    port, accepted = host_listener
    # positive control: the listener is reachable from a normal process
    with socket.create_connection(("127.0.0.1", port), timeout=2):
        pass
    out = run_probe("auto", port)
    report = out["report"]
    if not report["isolated"]:
        pytest.skip(f"this machine cannot isolate the worker: {report['reason']}")
    assert report["netns"] != report["netns_before"]
    assert [i["name"] for i in report["interfaces"]] == ["lo"] and not report["interfaces"][0]["up"]
    assert all(c["result"] == "ENETUNREACH" for c in report["canary"])
    import errno

    for key in ("py_host_listener", "py_documentation_address", "libc_host_listener", "libc_documentation_address"):
        assert out[key] == errno.ENETUNREACH, (key, out[key])
    assert out["dns"] != "resolved"
    assert len(accepted) == 1  # only the positive control ever arrived


def test_off_policy_claims_nothing_and_sends_no_canary() -> None:
    out = run_probe("off", 9)
    r = out["report"]
    assert r["isolated"] is False and "canary" not in r and r["netns"] == r["netns_before"]


def test_report_of_this_process_without_isolating() -> None:
    # policy off never touches the calling process
    before = netns_id()
    assert isolate_worker("off")["isolated"] is False
    assert netns_id() == before == os.stat("/proc/self/ns/net").st_ino
