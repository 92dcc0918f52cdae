"""The audit guard on real sockets (only 127.0.0.1 and the documentation address 192.0.2.1, refused before use)."""

from __future__ import annotations

import socket

import pytest

from localchat.core.privacy.audit import AuditGuard, NetworkRefused, is_local_host
from localchat.core.privacy.lockdown import allow_hub_download, lock_environment


@pytest.fixture
def guard():
    g = AuditGuard(offline=True).install()
    yield g
    g.uninstall()


def test_refuses_and_records_non_local(guard: AuditGuard) -> None:
    with pytest.raises(NetworkRefused, match="offline"):
        socket.getaddrinfo("example.com", 443)
    with pytest.raises(NetworkRefused):
        socket.create_connection(("192.0.2.1", 80), timeout=1)
    refused = guard.refused()
    assert [e.destination for e in refused] == ["example.com:443", "192.0.2.1:80"]
    assert all("test_audit.py" in e.call_site for e in refused), [e.call_site for e in refused]


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


def test_allow_scope_is_labelled_and_ends(guard: AuditGuard) -> None:
    with guard.allow("192.0.2.1", label="download"), pytest.raises(OSError) as err:
        # allowed by the guard; the documentation address then fails or times out at the network level
        s = socket.socket()
        s.settimeout(0.2)
        try:
            s.connect(("192.0.2.1", 9))
        finally:
            s.close()
    assert not isinstance(err.value, NetworkRefused)
    assert any(e.verdict == "allowed-download" and e.label == "download" for e in guard.events)
    with pytest.raises(NetworkRefused):
        socket.create_connection(("192.0.2.1", 9), timeout=0.2)


def test_uninstalled_guard_records_nothing() -> None:
    g = AuditGuard().install()
    g.uninstall()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
    assert list(g.events) == []


def test_local_hosts() -> None:
    assert is_local_host("127.0.0.1") and is_local_host("::1") and is_local_host("localhost")
    assert not is_local_host("10.0.0.1") and not is_local_host("huggingface.co")


def test_lockdown_and_download_scope(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    import huggingface_hub.constants as hc

    monkeypatch.setattr(hc, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")  # the user did not ask for offline mode; localchat still locks down
    env = lock_environment()
    assert env["HF_HUB_OFFLINE"] == "1" and env["HF_HUB_DISABLE_TELEMETRY"] == "1"
    with allow_hub_download():
        assert os.environ["HF_HUB_OFFLINE"] == "0" and hc.HF_HUB_OFFLINE is False
    assert os.environ["HF_HUB_OFFLINE"] == "1" and hc.HF_HUB_OFFLINE is True


def test_user_offline_mode_refuses_downloads(monkeypatch: pytest.MonkeyPatch) -> None:
    from localchat.errors import DownloadError

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # set by the user before start
    lock_environment()
    with pytest.raises(DownloadError, match="offline mode is on"), allow_hub_download():
        pass
