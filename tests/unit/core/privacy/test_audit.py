"""The audit guard on real sockets: only 127.0.0.1, addresses in a namespace the test creates, and the
documentation address 192.0.2.1 — which the guard refuses before any packet is sent."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from netns import namespace_host, netns_unavailable

from localchat.core.privacy.audit import AuditGuard, NetworkRefused, is_local_host, is_loopback

ROOT = Path(__file__).resolve().parents[4]
_why_not = netns_unavailable()
needs_netns = pytest.mark.skipif(_why_not is not None, reason=f"no test network namespace: {_why_not}")


@pytest.fixture
def guard():
    g = AuditGuard(offline=True).install()
    yield g
    g.uninstall()


def test_refuses_and_records_non_local(guard: AuditGuard) -> None:
    with pytest.raises(NetworkRefused, match="offline"):
        socket.getaddrinfo("example.com", 443)
    with pytest.raises(NetworkRefused):
        socket.create_connection(("192.0.2.1", 80), timeout=1)  # refused at its (numeric) lookup already
    with pytest.raises(NetworkRefused), socket.socket() as s:
        s.connect(("192.0.2.1", 80))
    with pytest.raises(NetworkRefused), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.sendto(b"x", ("192.0.2.1", 53))
    refused = guard.refused()
    assert [(e.event, e.destination) for e in refused] == [
        ("socket.getaddrinfo", "example.com:443"), ("socket.getaddrinfo", "192.0.2.1:80"),
        ("socket.connect", "192.0.2.1:80"),
        ("socket.sendto", "192.0.2.1:53")]
    assert all(e.call_site.startswith(__file__) for e in refused), [e.call_site for e in refused]
    assert all(not e.expected for e in refused) and guard.unexpected() == refused


def test_reverse_lookups_are_guarded_too(guard: AuditGuard) -> None:
    with pytest.raises(NetworkRefused):
        socket.gethostbyaddr("192.0.2.1")
    with pytest.raises(NetworkRefused):
        socket.gethostbyname("example.com")
    assert [e.destination for e in guard.refused()] == ["192.0.2.1 (reverse lookup)", "example.com"]


def test_loopback_and_unix_sockets_pass(guard: AuditGuard) -> None:
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()
    with socket.create_connection(srv.getsockname()):
        pass
    a, b = socket.socketpair()
    a.close()
    b.close()
    srv.close()
    assert guard.refused() == []
    assert {e.verdict for e in guard.events} == {"allowed-local"}
    assert [e.event for e in guard.events] == ["socket.bind", "socket.getaddrinfo", "socket.connect"]


def test_listening_beyond_loopback_is_logged_as_unexpected(guard: AuditGuard) -> None:
    with socket.socket() as s:
        s.bind(("0.0.0.0", 0))  # reachable from the network once listening: worth a look, not a refusal
    (event,) = guard.events
    assert event.verdict == "logged" and event.label == "listens beyond this machine" and not event.expected


def test_uninstalled_guard_records_nothing() -> None:
    g = AuditGuard().install()
    g.uninstall()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
    assert list(g.events) == []


def test_local_hosts() -> None:
    assert is_local_host("127.0.0.1") and is_local_host("::1") and is_local_host("localhost")
    assert is_local_host("::ffff:127.0.0.1") and is_local_host("0.0.0.0")
    assert not is_local_host("10.0.0.1") and not is_local_host("huggingface.co")
    assert is_loopback("127.0.0.2") and not is_loopback("0.0.0.0") and not is_loopback("::")


@needs_netns
def test_download_scope_admits_its_host_only_while_open(guard: AuditGuard) -> None:
    with namespace_host() as host:
        target = (host.peer_ip, host.port)
        with guard.allow(host.peer_ip, label="download"):
            with guard.allow(host.peer_ip, label="download"):  # overlapping scopes: two downloads at once
                pass
            with socket.create_connection(target, timeout=5) as s:  # the outer scope is still open
                assert s.recv(64).startswith(b"hello from the test namespace")
        with pytest.raises(NetworkRefused):
            socket.create_connection(target, timeout=5)
    allowed = [e for e in guard.events if e.verdict == "allowed-download"]
    assert allowed and all(e.label == "download" for e in allowed)
    assert guard.refused()[-1].destination == f"{host.peer_ip}:{host.port}"


NAMED_CLIENT = r"""
import json, socket, sys
from localchat.core.privacy.audit import AuditGuard, NetworkRefused
port = int(sys.argv[1])
guard = AuditGuard(offline=True).install()
out = {}
def attempt(name):
    try:
        with socket.create_connection((name, port), timeout=5) as s:
            return s.recv(64).decode().strip()
    except NetworkRefused as e:
        return f"refused: {e}"
with guard.allow("hub.lc-test"):
    out["hub"] = attempt("hub.lc-test")
    out["elsewhere"] = attempt("elsewhere.lc-test")
with guard.allow("huggingface.co"):
    out["hf_cdn"] = attempt("cdn-lfs.hf.co")  # where the Hub serves its files from
out["hub_after"] = attempt("hub.lc-test")
out["events"] = [e.to_dict() for e in guard.events]
print(json.dumps(out))
"""


@needs_netns
def test_download_scope_follows_a_name_to_its_address(tmp_path: Path) -> None:
    # the real path of a download: a name resolved (here by a hosts file), then a connect to the address it gave.
    # The client runs inside the test's own namespace, with a hosts file mounted only there: any lookup beyond the
    # hosts file would find no route.
    with namespace_host() as host:
        hosts = tmp_path / "hosts"
        hosts.write_text(f"127.0.0.1 localhost\n{host.peer_ip} hub.lc-test elsewhere.lc-test cdn-lfs.hf.co\n")
        script = tmp_path / "client.py"
        script.write_text(textwrap.dedent(NAMED_CLIENT))
        cmd = ["ip", "netns", "exec", host.name, "sh", "-c", f'mount --bind "{hosts}" /etc/hosts && exec "$@"', "sh",
               sys.executable, str(script), str(host.port)]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["hub"] == out["hf_cdn"] == "hello from the test namespace"
    assert out["elsewhere"].startswith("refused") and "elsewhere.lc-test" in out["elsewhere"]
    assert out["hub_after"].startswith("refused")
    connects = [e for e in out["events"] if e["event"] == "socket.connect"]
    assert [(e["verdict"], e["label"]) for e in connects] == [
        ("allowed-download", "download (hub.lc-test)"), ("allowed-download", "download (cdn-lfs.hf.co)")]
    assert all(e["destination"] == f"{host.peer_ip}:{host.port}" for e in connects)
