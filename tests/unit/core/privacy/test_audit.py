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

from localchat.core.privacy import audit
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


def _run_in_namespace(tmp_path: Path, host, script: str) -> dict:  # type: ignore[no-untyped-def]
    """Run ``script`` inside the test's namespace with a hosts file mounted only there: any lookup beyond the hosts
    file would find no route."""
    hosts = tmp_path / "hosts"
    hosts.write_text(f"127.0.0.1 localhost\n{host.peer_ip} hub.lc-test elsewhere.lc-test cdn-lfs.hf.co\n")
    path = tmp_path / "client.py"
    path.write_text(textwrap.dedent(script))
    cmd = ["ip", "netns", "exec", host.name, "sh", "-c", f'mount --bind "{hosts}" /etc/hosts && exec "$@"', "sh",
           sys.executable, str(path), str(host.port), host.peer_ip]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)  # type: ignore[no-any-return]


@needs_netns
def test_download_scope_follows_a_name_to_its_address(tmp_path: Path) -> None:
    # the real path of a download: a name resolved (here by a hosts file), then a connect to the address it gave
    with namespace_host() as host:
        out = _run_in_namespace(tmp_path, host, NAMED_CLIENT)
    assert out["hub"] == out["hf_cdn"] == "hello from the test namespace"
    assert out["elsewhere"].startswith("refused") and "elsewhere.lc-test" in out["elsewhere"]
    assert out["hub_after"].startswith("refused")
    connects = [e for e in out["events"] if e["event"] == "socket.connect"]
    assert [(e["verdict"], e["label"]) for e in connects] == [
        ("allowed-download", "download (hub.lc-test)"), ("allowed-download", "download (cdn-lfs.hf.co)")]
    assert all(e["destination"] == f"{host.peer_ip}:{host.port}" for e in connects)


ADDRESS_CLIENT = r"""
import json, socket, sys, threading
from localchat.core.privacy.audit import AuditGuard, NetworkRefused
port, peer = int(sys.argv[1]), sys.argv[2]
guard = AuditGuard(offline=True).install()
out = {}
def udp_connect(addr):  # a UDP connect sends nothing: safe to try against any address
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect((addr, 53))
        return "connected"
    except NetworkRefused as e:
        return f"refused: {e}"
    except OSError as e:
        return f"os error: {e}"
with guard.allow("hub.lc-test"):
    out["resolved"] = sorted({i[4][0] for i in socket.getaddrinfo("hub.lc-test", port, socket.AF_INET)})
    out["other"] = udp_connect("192.0.2.1")  # the thread that just made an allowed lookup: still refused
    result = {}
    t = threading.Thread(target=lambda: result.update(peer=udp_connect(peer)))  # where the name resolved to
    t.start(); t.join()
    out["peer_other_thread"] = result["peer"]
out["peer_after"] = udp_connect(peer)  # the scope ended: its addresses with it
out["events"] = [e.to_dict() for e in guard.events]
print(json.dumps(out))
"""


@needs_netns
def test_allowed_lookup_admits_only_the_addresses_it_resolved_to(tmp_path: Path) -> None:
    with namespace_host() as host:
        out = _run_in_namespace(tmp_path, host, ADDRESS_CLIENT)
    assert out["resolved"] == [host.peer_ip]
    assert out["other"].startswith("refused: localchat is offline: refused socket.connect to 192.0.2.1:53")
    assert out["peer_other_thread"] == "connected"  # the scope admits its addresses on any thread
    assert out["peer_after"].startswith("refused")
    connects = [(e["destination"], e["verdict"], e["label"]) for e in out["events"] if e["event"] == "socket.connect"]
    assert connects == [("192.0.2.1:53", "refused", "offline mode"),
                        (f"{host.peer_ip}:53", "allowed-download", "download (hub.lc-test)"),
                        (f"{host.peer_ip}:53", "refused", "offline mode")]


def test_a_failure_inside_the_guard_refuses_the_call(guard: AuditGuard, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object) -> bool:
        raise RuntimeError("injected failure")

    monkeypatch.setattr(audit, "is_local_host", broken)
    with pytest.raises(NetworkRefused, match="guard error: RuntimeError"):
        socket.getaddrinfo("127.0.0.1", 80)  # loopback: admitted by a working guard
    with pytest.raises(NetworkRefused, match="guard error"), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect(("127.0.0.1", 9))
    (lookup, connect) = guard.events
    assert lookup.verdict == connect.verdict == "refused"
    assert lookup.label == connect.label == "guard error: RuntimeError('injected failure')"
    assert connect.call_site.startswith(__file__) and not connect.expected
    monkeypatch.undo()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:  # the guard judges again once it works
        s.connect(("127.0.0.1", 9))
    assert guard.events[-1].verdict == "allowed-local"


def test_a_failure_recording_a_lookup_answer_refuses_it(guard: AuditGuard, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object) -> None:
        raise RuntimeError("injected failure")

    monkeypatch.setattr(guard, "note_resolution", broken)
    with pytest.raises(NetworkRefused, match="could not record what 'localhost' resolved to"):
        socket.getaddrinfo("localhost", 80)


def test_counts_go_on_past_the_ring_buffer() -> None:
    g = AuditGuard(offline=True, max_events=10).install()
    try:
        for _ in range(25):
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
        for _ in range(12):
            with pytest.raises(NetworkRefused), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.connect(("192.0.2.1", 53))  # UDP: refused before anything could be sent
    finally:
        g.uninstall()
    assert len(g.events) == 10 and g.total == 37
    assert g.counts() == {"total": 37, "refused": 12, "unexpected": 12, "kept": 10}
