"""Proof of silence, end to end: positive controls first, then a full chat session that must stay silent, then the
command line, then the fallback where the kernel refuses isolation.

Targets are only 127.0.0.1 and the address inside a network namespace this test creates over a veth pair.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import psutil
import pytest
from netns import namespace_host, netns_unavailable, restricted_userns_prefix
from strict import skip_or_fail

from localchat.core.chat.messages import ChatMessage, SamplingParams, TurnResult
from localchat.core.engine.client import EngineClient
from localchat.core.engine.protocol import LoadOptions
from localchat.core.privacy.audit import AuditGuard, NetworkRefused
from localchat.core.privacy.lockdown import lock_environment
from localchat.core.privacy.monitor import SocketMonitor, classify, own_processes
from localchat.core.privacy.report import EvidenceReport

pytestmark = [pytest.mark.netns, pytest.mark.isolation]

ROOT = Path(__file__).resolve().parents[2]
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
    assert [classify(a) for a in ("127.0.0.1", "::1", "10.231.5.2", "192.168.1.4", "fe80::1", "100.64.0.1",
                                  "::ffff:127.0.0.1", "8.8.8.8", "2001:4860::1", "", "0.0.0.0")] == [
        "loopback", "loopback", "lan", "lan", "lan", "lan", "loopback", "internet", "internet", "none", "none"]


# -- positive controls: the instruments see what they claim to see --------------------------------------------


def test_positive_control_loopback_seen_by_monitor_and_audit(guard: AuditGuard, loopback_listener: int) -> None:
    monitor = SocketMonitor(lambda: own_processes())
    with socket.create_connection(("127.0.0.1", loopback_listener)) as s:
        rows = monitor.poll()
        local = "{}:{}".format(*s.getsockname())
        mine = [r for r in rows if r.remote.endswith(f":{loopback_listener}") and r.local == local]
        assert mine and mine[0].kind == "loopback" and mine[0].state == "ESTABLISHED"
        assert mine[0] in monitor.snapshot().events  # logged with its first-seen time
    assert any(e.event == "socket.connect" and e.destination == f"127.0.0.1:{loopback_listener}" and
               e.verdict == "allowed-local" for e in guard.events)
    assert monitor.outbound_internet == 0 and monitor.outbound_lan == 0


@pytest.mark.skipif(_why_not is not None, reason=f"no test network namespace: {_why_not}")
def test_positive_control_outbound_seen_and_refusal_recorded(guard: AuditGuard) -> None:
    # this process only: the test's listener is our child too, and the monitor would read its namespace as well
    monitor = SocketMonitor(lambda: {os.getpid(): "localchat"})
    with namespace_host() as host:
        # offline mode: refused before a packet is sent, and recorded
        with pytest.raises(NetworkRefused):
            socket.create_connection((host.peer_ip, host.port), timeout=2)
        refused = guard.refused()
        assert refused and host.peer_ip in refused[-1].destination and refused[-1].label == "offline mode"
        # a deliberate, allowed connection across the veth is seen by the monitor as outbound and by the audit log
        with guard.allow(host.peer_ip, label="test download"), \
                socket.create_connection((host.peer_ip, host.port), timeout=5) as s:
            assert s.recv(64).startswith(b"hello from the test namespace")
            rows = monitor.poll()
        out = [r for r in rows if r.remote == f"{host.peer_ip}:{host.port}"]
        assert out and out[0].kind == "lan" and out[0].process == "localchat"
        assert monitor.outbound_lan == 1 and monitor.non_loopback_events() == out
        assert any(e.verdict == "allowed-download" and e.label == "test download" for e in guard.events)
        report = EvidenceReport(None, guard, monitor).to_dict()
    assert report["silent"] is False and report["verdict"].startswith("ATTENTION: 1 internet or LAN sockets")
    unexpected = [(e["event"], e["verdict"]) for e in report["app"]["audit_unexpected"]]
    assert unexpected == [("socket.getaddrinfo", "refused")]  # the refusal; the allowed download is expected


HOLDER = r"""
import socket, sys
from localchat.core.privacy.sandbox import isolate_worker
report = isolate_worker("auto")
if not report["isolated"]:
    print("not-isolated", report["reason"], flush=True); sys.exit(0)
tcp = socket.socket(); tcp.bind(("0.0.0.0", 0)); tcp.listen()
udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); udp.bind(("0.0.0.0", 0))
print("ready", tcp.getsockname()[1], udp.getsockname()[1], flush=True)
sys.stdin.read()
"""


def test_positive_control_sockets_inside_the_worker_namespace_are_seen() -> None:
    # psutil reads the tables of its own namespace; the monitor must read the isolated process's own
    proc = subprocess.Popen([sys.executable, "-c", HOLDER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().split()
        if line[0] == "not-isolated":
            skip_or_fail(f"this machine cannot isolate a process: {' '.join(line[1:])}")
        tcp_port, udp_port = line[1], line[2]
        assert psutil.Process(proc.pid).net_connections(kind="inet") == []  # what psutil alone would report
        monitor = SocketMonitor(lambda: {proc.pid: "probe"})
        rows = {(r.proto, r.local, r.state) for r in monitor.poll()}
        assert rows == {("tcp", f"0.0.0.0:{tcp_port}", "LISTEN"), ("udp", f"0.0.0.0:{udp_port}", "")}
        snap = monitor.snapshot()
        assert {e.process for e in snap.events} == {"probe (own namespace)"}
        assert [i["name"] for i in snap.namespaces[proc.pid]["interfaces"]] == ["lo"]
        assert snap.outbound_internet == snap.outbound_lan == 0
    finally:
        proc.stdin.close()  # type: ignore[union-attr]
        proc.wait(10)
        proc.stdout.close()  # type: ignore[union-attr]


# -- the real thing ----------------------------------------------------------------------------------------


def test_full_chat_session_is_silent(guard: AuditGuard, starter_model: Path) -> None:
    lock_environment()
    client = EngineClient(isolation="auto")
    monitor = SocketMonitor(lambda: own_processes(client.pid))
    with client:
        assert client.hello is not None
        if not client.hello.isolation["isolated"]:
            skip_or_fail(f"worker isolation unavailable here: {client.hello.isolation['reason']}")
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
        assert client.pid in monitor.snapshot().namespaces  # the worker was read in its own namespace
        report = EvidenceReport(client.hello.isolation, guard, monitor, client.pid)
        data = report.to_dict()
        text = report.to_text(data)
    assert monitor.non_loopback_events() == []
    assert guard.unexpected() == [] and list(guard.events) == []  # the app made no Python network call at all
    assert report.silent and data["silent"]
    assert data["app"]["outbound_internet_connections"] == 0 and data["app"]["outbound_lan_connections"] == 0
    assert data["headline"] == "Inference worker: no network interfaces, only a loopback that is down — " \
                               "kernel-isolated"
    now = data["worker"]["now"]  # re-read from the outside while the worker ran
    assert now["own_namespace"] and now["sockets"] == [] and [i["name"] for i in now["interfaces"]] == ["lo"]
    assert now["interfaces"][0]["tx_bytes"] == 0
    # this monitor began after the test process started: the report must not claim "since launch"
    assert "ENETUNREACH" in text and "(when monitoring began, after launch): 0" in text
    assert "since launch" not in text
    assert "No connection beyond this machine: 0 internet or LAN sockets" in text
    assert "0 unexpected audit events" in text


def _cli(args: list[str], home: Path, prefix: list[str] | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "LOCALCHAT_HOME": str(home)}
    return subprocess.run([*(prefix or []), sys.executable, "-m", "localchat", *args], capture_output=True, text=True,
                          timeout=300, env=env)


def test_netcheck_prints_one_json_object(tmp_path: Path, starter_model: Path) -> None:
    proc = _cli(["netcheck", "--json", "--export", str(tmp_path / "report")], tmp_path / "home")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    iso = data["worker"]["isolation"]
    if not iso["isolated"]:
        skip_or_fail(f"worker isolation unavailable here: {iso['reason']}")
    assert data["silent"] is True and data["notes"] == ["a chat turn ran on the starter model during the check"]
    assert [c["result"] for c in iso["canary"]] == ["ENETUNREACH", "ENETUNREACH"]
    assert iso["netns"] != iso["parent_netns"] and data["worker"]["now"]["sockets"] == []
    assert data["lockdown"]["HF_HUB_OFFLINE"] == "1" and data["lockdown"]["Update checks"] == "none"
    assert data["lockdown"]["Qt network modules"] == "blocked: cannot be imported"
    saved = json.loads((tmp_path / "report" / "localchat-privacy-report.json").read_text())
    assert saved["headline"] == data["headline"]
    text = _cli(["netcheck", "--no-chat"], tmp_path / "home")
    assert text.returncode == 0 and text.stdout.splitlines()[2] == data["headline"]
    assert "Outbound internet connections since launch: 0" in text.stdout  # netcheck watches from its first line
    assert data["processes"] and any(p["isolated"] is True and "worker" in p["command"] for p in data["processes"])
    assert "What this does not cover:" in text.stdout


def test_refused_isolation_is_reported_exactly_and_require_refuses(tmp_path: Path, starter_model: Path) -> None:
    prefix = restricted_userns_prefix()
    if isinstance(prefix, str):
        skip_or_fail(prefix)
    proc = _cli(["netcheck", "--json", "--no-chat"], tmp_path / "home", prefix)
    assert proc.returncode == 1, proc.stderr  # not kernel-isolated: never a success
    assert proc.stderr.startswith("localchat: warning: the inference worker is NOT network-isolated, only monitored: "
                                  "the kernel refused a new network namespace (userns: ENOSPC, netns: EPERM)")
    assert "sudo sysctl -w user.max_user_namespaces=15000" in proc.stderr.splitlines()[0]
    data = json.loads(proc.stdout)
    iso = data["worker"]["isolation"]
    assert iso["isolated"] is False and iso["attempts"] == {"userns": "ENOSPC", "netns": "EPERM"}
    assert data["headline"] == ("Inference worker: monitored only — the kernel refused a new network namespace "
                                "(userns: ENOSPC, netns: EPERM)")
    assert iso["cause"].startswith("no user namespace may be created (user.max_user_namespaces=0")
    assert data["worker"]["check_yourself"] == []  # nothing to check: nothing is claimed
    assert iso["fix"] == "sudo sysctl -w user.max_user_namespaces=15000"
    assert "canary" not in iso and data["silent"] is True  # nothing was sent, and nothing claimed
    chat = _cli(["chat", "--model", str(starter_model), "--isolation", "require", "hi"], tmp_path / "home", prefix)
    assert chat.returncode == 1 and chat.stdout == ""
    assert "network isolation is required by your settings but could not be applied" in chat.stderr
    # auto: the turn runs, and stderr says first, in one line, that it is not isolated, why and how to fix it
    auto = _cli(["chat", "--model", str(starter_model), "--max-tokens", "4", "hi"], tmp_path / "home", prefix)
    assert auto.returncode == 0, auto.stderr
    warning = auto.stderr.splitlines()[0]
    assert warning.startswith("localchat: warning: the inference worker is NOT network-isolated, only monitored: ")
    assert "max_user_namespaces" in warning
    # the self-test reports it on its own line, and fails under the require policy without loading llama.cpp
    st = subprocess.run([*prefix, sys.executable, "-m", "localchat", "--self-test"], capture_output=True, text=True,
                        timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT), "LOCALCHAT_HOME": str(tmp_path / "h"),
                                          "LOCALCHAT_STARTER_MODEL": str(starter_model),
                                          "LOCALCHAT_ISOLATION": "require"})
    assert st.returncode == 1 and "isolation: NOT isolated, monitored only" in st.stderr
    assert json.loads(st.stdout)["ok"] is False and "answer" not in json.loads(st.stdout)
