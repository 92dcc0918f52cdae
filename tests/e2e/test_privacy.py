"""Proof of silence, end to end: positive controls first, then a full chat session that must stay silent.

Targets are only 127.0.0.1 and the address inside a network namespace this test creates over a veth pair.
"""

from __future__ import annotations

import socket
import threading
from pathlib import Path

import pytest
from netns import namespace_host, netns_unavailable

from localchat.core.chat.messages import ChatMessage, SamplingParams, TurnResult
from localchat.core.engine.client import EngineClient
from localchat.core.engine.protocol import LoadOptions
from localchat.core.privacy.audit import AuditGuard, NetworkRefused
from localchat.core.privacy.lockdown import lock_environment
from localchat.core.privacy.monitor import SocketMonitor, classify, own_processes
from localchat.core.privacy.report import EvidenceReport

pytestmark = pytest.mark.netns

_why_not = netns_unavailable()


@pytest.fixture
def guard():
    g = AuditGuard(offline=True).install()
    yield g
    g.uninstall()


@pytest.fixture
def loopback_listener():
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()
    conns: list[socket.socket] = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                c, _ = srv.accept()
            except OSError:
                return
            conns.append(c)

    threading.Thread(target=serve, daemon=True).start()
    yield srv.getsockname()[1]
    stop.set()
    srv.close()
    for c in conns:
        c.close()


def test_classification() -> None:
    assert [classify(a) for a in ("127.0.0.1", "::1", "10.231.5.2", "192.168.1.4", "fe80::1", "8.8.8.8", "")] == [
        "loopback", "loopback", "lan", "lan", "lan", "internet", "none"]


def test_positive_control_loopback_seen_by_monitor_and_audit(guard: AuditGuard, loopback_listener: int) -> None:
    monitor = SocketMonitor(lambda: own_processes())
    with socket.create_connection(("127.0.0.1", loopback_listener)) as s:
        rows = monitor.poll()
        local = "{}:{}".format(*s.getsockname())
        mine = [r for r in rows if r.remote.endswith(f":{loopback_listener}") and r.local == local]
        assert mine and mine[0].kind == "loopback" and mine[0].state == "ESTABLISHED"
    assert any(e.event == "socket.connect" and e.destination == f"127.0.0.1:{loopback_listener}" and
               e.verdict == "allowed-local" for e in guard.events)
    assert monitor.outbound_internet == 0 and monitor.outbound_lan == 0


@pytest.mark.skipif(_why_not is not None, reason=f"no test network namespace: {_why_not}")
def test_positive_control_outbound_seen_and_refusal_recorded(guard: AuditGuard) -> None:
    monitor = SocketMonitor(lambda: own_processes())
    with namespace_host() as host:
        # offline mode: refused before a packet is sent, and recorded
        with pytest.raises(NetworkRefused):
            socket.create_connection((host.peer_ip, host.port), timeout=2)
        refused = guard.refused()
        assert refused and host.peer_ip in refused[-1].destination
        # a deliberate, allowed connection across the veth is seen by the monitor as outbound and by the audit log
        with guard.allow(host.peer_ip, label="test download"), \
                socket.create_connection((host.peer_ip, host.port), timeout=5) as s:
            assert s.recv(64).startswith(b"hello from the test namespace")
            rows = monitor.poll()
        out = [r for r in rows if r.remote == f"{host.peer_ip}:{host.port}"]
        assert out and out[0].kind == "lan"
        assert monitor.outbound_lan == 1 and monitor.non_loopback_events()
        assert any(e.verdict == "allowed-download" and e.label == "test download" for e in guard.events)


def test_full_chat_session_is_silent(guard: AuditGuard, starter_model: Path) -> None:
    lockdown = lock_environment()
    client = EngineClient(isolation="auto")
    monitor = SocketMonitor(lambda: own_processes(client.pid))
    with client:
        assert client.hello is not None
        if not client.hello.isolation["isolated"]:
            pytest.skip(f"worker isolation unavailable here: {client.hello.isolation['reason']}")
        monitor.poll()
        client.load(starter_model, LoadOptions(n_ctx=1024))
        history: list[ChatMessage] = []
        for q in ("Hello!", "What is 2 + 2?", "Name a colour."):
            history.append(ChatMessage("user", q))
            result = TurnResult()
            for chunk in client.chat(history, SamplingParams(max_tokens=16, seed=3)):
                result.add(chunk)
                monitor.poll()
            assert result.error is None and result.text
            history.append(ChatMessage("assistant", result.text))
        client.unload()
        monitor.poll()
        report = EvidenceReport(client.hello.isolation, lockdown, guard, monitor, client.pid)
        data = report.to_dict()
    assert monitor.non_loopback_events() == []
    assert [e for e in guard.events if e.verdict != "allowed-local"] == []
    assert report.silent
    assert data["app"]["outbound_internet_connections"] == 0
    assert "kernel-isolated" in data["headline"]
    # the worker's own namespace holds no socket at all and only a down loopback
    assert data["worker"]["namespace_now"]["sockets"] == []
    assert [i["name"] for i in data["worker"]["namespace_now"]["interfaces"]] == ["lo"]
    text = report.to_text()
    assert "ENETUNREACH" in text and "Outbound internet connections since launch: 0" in text
