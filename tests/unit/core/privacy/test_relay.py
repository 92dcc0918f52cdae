"""LAN mode's relay, with real sockets and a real isolated process (no llama.cpp here: see tests/e2e/test_rpc.py).

A child interpreter isolates itself as the worker does, then runs the worker half of the relay on its own loopback;
the test is the app, running the other half, and a small TCP server on the host's loopback stands in for a helper
machine. It must be reached only through the app, only when listed, with every byte counted.
"""

from __future__ import annotations

import array
import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from strict import skip_or_fail

from localchat.core.privacy.audit import AuditGuard, NetworkRefused
from localchat.core.privacy.relay import (
    MAX_PEERS,
    Peer,
    PeerError,
    PeerRelay,
    WorkerRelay,
    parse_peer,
    parse_peers,
    probe_peer,
    start_worker_relay,
)

ROOT = Path(__file__).resolve().parents[4]


class Helper:
    """A stand-in helper machine on the host's loopback: answers llama.cpp's HELLO (protocol 7.0.0), then echoes;
    counts what it received and sent, and how many connections it accepted."""

    def __init__(self, major: int = 7) -> None:
        self.major = major
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.received = self.sent = self.accepted = 0
        self.conns: list[socket.socket] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._serve, daemon=True).start()

    @property
    def peer(self) -> Peer:
        return Peer("127.0.0.1", self.port)

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            with self._lock:
                self.accepted += 1
                self.conns.append(conn)
            threading.Thread(target=self._client, args=(conn,), daemon=True).start()

    def _client(self, conn: socket.socket) -> None:
        try:
            first = conn.recv(1)
            if not first:
                return
            with self._lock:
                self.received += 1
            if first == b"\x0e":  # HELLO: | cmd | u64 size=24 | 24 bytes caps |
                rest = b""
                while len(rest) < 32:
                    rest += conn.recv(32 - len(rest))
                reply = (28).to_bytes(8, "little") + bytes([self.major, 0, 0, 0]) + bytes(24)
                conn.sendall(reply)
                with self._lock:
                    self.received += len(rest)
                    self.sent += len(reply)
                return
            conn.sendall(first)
            with self._lock:
                self.sent += 1
            while data := conn.recv(65536):
                conn.sendall(data)
                with self._lock:
                    self.received += len(data)
                    self.sent += len(data)
        except OSError:
            pass
        finally:
            conn.close()

    def close(self) -> None:
        self.server.close()
        for c in self.conns:
            c.close()


@pytest.fixture
def helper() -> Iterator[Helper]:
    h = Helper()
    yield h
    h.close()


# -- addresses -------------------------------------------------------------------------------------------------


def test_lan_and_loopback_addresses_are_accepted() -> None:
    assert parse_peers("192.168.1.20:50052,10.0.0.5:1,127.0.0.1:50052,[fd00::1]:50052,[fe80::1]:9") == [
        Peer("192.168.1.20", 50052), Peer("10.0.0.5", 1), Peer("127.0.0.1", 50052), Peer("fd00::1", 50052),
        Peer("fe80::1", 9)]
    assert Peer("fd00::1", 50052).endpoint == "[fd00::1]:50052"
    assert parse_peer("[::ffff:192.168.0.9]:7").endpoint == "192.168.0.9:7"
    assert [p.scope for p in parse_peers("127.0.0.1:1,172.16.0.1:1,169.254.1.1:1")] == ["loopback", "LAN", "LAN"]


@pytest.mark.parametrize(("text", "says"), [
    ("8.8.8.8:50052", "not a LAN address"),
    ("[2001:4860::1]:50052", "not a LAN address"),
    ("gpu-box.local:50052", "IP address, not a name"),
    ("192.168.1.20", "expected HOST:PORT"),
    ("192.168.1.20:0", "port must be"),
    ("192.168.1.20:65536", "port must be"),
    ("192.168.1.20:-1", "port must be"),
    ("192.168.1.20:5e3", "port must be"),
    ("0.0.0.0:50052", "not the address of a machine"),
    ("224.0.0.1:50052", "not the address of a machine"),
    ("", "expected HOST:PORT"),
    ("192.168.1.2:5 6", "port must be"),
    ("192.168.1.2:5\x07", "not a helper address"),
    ("x" * 10_000, "not a helper address"),
    ("\x00:1", "not a helper address"),
    ("[fe80::1%eth0]:1", "scope ids are not supported"),
    ("192.168.1.20:1,192.168.1.20:1", "listed twice"),
    (",".join(f"10.0.0.{i}:1" for i in range(MAX_PEERS + 1)), f"at most {MAX_PEERS}"),
    (",", "expected HOST:PORT"),
])
def test_bad_and_hostile_addresses_get_one_line(text: str, says: str) -> None:
    with pytest.raises(PeerError) as err:
        parse_peers(text)
    message = str(err.value)
    assert says in message
    assert "\n" not in message and len(message) < 300


def test_public_address_only_when_confirmed() -> None:
    assert parse_peers("8.8.8.8:50052", allow_public=True)[0].scope == "public"


# -- the HELLO check ---------------------------------------------------------------------------------------------


def test_probe_reads_the_rpc_version_and_refuses_what_cannot_be_used(helper: Helper) -> None:
    assert probe_peer(helper.peer)["version"] == "7.0.0"
    old = Helper(major=6)
    try:
        with pytest.raises(PeerError, match=r"protocol 6\.0\.0.*make rpc-server"):
            probe_peer(old.peer)
    finally:
        old.close()
    closed = socket.create_server(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    with pytest.raises(PeerError, match=rf"cannot reach helper 127\.0\.0\.1:{port}: .*rpc-server running"):
        probe_peer(Peer("127.0.0.1", port))


def test_the_audit_guard_admits_exactly_the_listed_endpoints() -> None:
    guard = AuditGuard(offline=True).install()
    peer = Peer("192.0.2.7", 50052)  # a documentation address: refused by the guard before any packet
    relay = PeerRelay([peer])
    try:
        relay.open_channel()
        with socket.socket() as s:  # judged only: nothing is sent to the documentation address
            assert guard._judge("socket.connect", (s, ("192.0.2.7", 50052))).verdict == "allowed-peer"
        with socket.socket() as s, pytest.raises(NetworkRefused):
            s.connect(("192.0.2.7", 50053))  # same host, another port
        assert any(e.verdict == "refused" and e.destination == "192.0.2.7:50053" for e in guard.snapshot())
        relay.close()
        with socket.socket() as s, pytest.raises(NetworkRefused):
            s.connect(("192.0.2.7", 50052))  # the relay ended: not admitted any more
        assert not any(e.verdict == "allowed-peer" for e in guard.snapshot())
    finally:
        relay.close()
        guard.uninstall()


# -- the relay across namespaces -------------------------------------------------------------------------------

CHILD = r"""
import json, os, socket, sys
from localchat.core.privacy.sandbox import isolate_worker
from localchat.core.privacy.relay import start_worker_relay
report = isolate_worker("auto")
fd, peers, other = int(sys.argv[1]), sys.argv[2].split(","), int(sys.argv[3])
if not report["isolated"]:
    print(json.dumps({"report": report})); sys.exit(0)
relay = start_worker_relay(report, socket.socket(fileno=fd), peers)
out = {"report": report, "endpoints": relay.endpoints}
# llama.cpp's side: connect to the relay port, talk, read the echo
host, port = relay.endpoints[0].rsplit(":", 1)
with socket.create_connection((host, int(port)), timeout=10) as s:
    payload = b"x" * 300_000
    s.sendall(payload)
    got = b""
    while len(got) < len(payload):
        part = s.recv(65536)
        if not part:
            break
        got += part
    out["echoed"] = len(got)
# a worker asking the app for a helper that is not on the list: refused, its socket closed
a, b = socket.socketpair()
relay.request(a, f"127.0.0.1:{other}")
a.close()
b.settimeout(10)
out["refused_read"] = b.recv(10).decode()
# the host's listener is not reachable from here, directly
def attempt(addr):
    s = socket.socket(); s.settimeout(2)
    try:
        s.connect(addr); return "CONNECTED"
    except OSError as e:
        return e.errno
    finally:
        s.close()
out["direct_host_port"] = attempt(("127.0.0.1", other))
out["direct_doc"] = attempt(("192.0.2.1", 80))
out["interfaces"] = open("/proc/self/net/dev").read()
print(json.dumps(out))
"""


@pytest.mark.isolation
def test_relay_reaches_only_the_listed_helper_and_counts_every_byte(helper: Helper) -> None:
    other = Helper()  # listening on the host's loopback, but not on the list
    relay = PeerRelay([helper.peer])
    try:
        relay.check()
        fd = relay.open_channel()
        proc = subprocess.run([sys.executable, "-P", "-c", CHILD, str(fd), helper.peer.endpoint, str(other.port)],
                              pass_fds=(fd,), capture_output=True, text=True, timeout=120, cwd=ROOT,
                              env={**os.environ, "LOCALCHAT_PARENT_NETNS": str(os.stat("/proc/self/ns/net").st_ino)})
        relay.started()
        assert proc.returncode == 0, proc.stderr
        out = json.loads(proc.stdout)
        if not out["report"]["isolated"]:
            skip_or_fail(f"the child could not isolate itself: {out['report'].get('reason')}")
        report = out["report"]
        assert report["scope"] == "only these peers"
        assert report["relay"]["peers"] == [helper.peer.endpoint]
        assert [i["name"] for i in report["relay"]["interfaces"]] == ["lo"]
        assert report["relay"]["interfaces"][0]["up"] is True
        assert report["relay"]["beyond_loopback"]["result"] == "ENETUNREACH"
        assert f"the app connects only to {helper.peer.endpoint}" in report["reason"]
        assert out["echoed"] == 300_000
        assert out["refused_read"] == ""  # closed by the app
        assert out["direct_host_port"] == 111  # ECONNREFUSED: its own loopback has nothing there
        assert out["direct_doc"] == 101  # ENETUNREACH

        # the app's counts equal what the helper itself received and sent (probe included)
        for _ in range(100):
            stats = relay.report()["peers"][0]
            if stats["open"] == 0:
                break
            threading.Event().wait(0.05)
        assert stats["bytes_sent"] == helper.received == 33 + 300_000
        assert stats["bytes_received"] == helper.sent == 36 + 300_000
        assert stats["connections"] == helper.accepted == 2
        assert stats["lost"] is None
        refused = relay.report()["refused"]
        assert [(r["peer"], r["reason"]) for r in refused] == [(f"127.0.0.1:{other.port}",
                                                                "not on the list of helper machines")]
        assert other.accepted == 0
    finally:
        relay.close()
        other.close()


def test_malformed_control_requests_are_refused_and_the_relay_goes_on(helper: Helper) -> None:
    relay = PeerRelay([helper.peer])
    try:
        fd = relay.open_channel()
        worker_end = socket.socket(fileno=os.dup(fd))
        relay.started()
        r, w = os.pipe()
        worker_end.sendmsg([b'{"peer": "127.0.0.1:%d"}' % helper.port],
                           [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [r]))])  # a pipe, not a socket
        worker_end.send(b"garbage without a descriptor")
        a, b = socket.socketpair()
        WorkerRelay(worker_end, [helper.peer.endpoint]).request(a, helper.peer.endpoint)  # a good one after
        a.close()
        b.sendall(b"hello")
        b.settimeout(10)
        got = b""
        while len(got) < 5 and (part := b.recv(5)):
            got += part
        assert got == b"hello"  # the good request after the bad ones was relayed
        b.close()
        for _ in range(100):
            if len(relay.report()["refused"]) >= 2:
                break
            threading.Event().wait(0.05)
        reasons = [r["reason"] for r in relay.report()["refused"]]
        assert reasons == ["malformed request (not a socket)", "malformed request (0 descriptors)"]
        os.close(r)
        os.close(w)
        worker_end.close()
    finally:
        relay.close()


def test_no_only_these_peers_claim_without_isolation() -> None:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    isolation = {"isolated": False, "mode": "none", "reason": "isolation turned off"}
    relay = start_worker_relay(isolation, a, ["127.0.0.1:50052"])
    try:
        assert isolation["relay"]["listen"] == relay.endpoints and len(relay.endpoints) == 1
        assert "scope" not in isolation and isolation["reason"] == "isolation turned off"
    finally:
        relay.close()
        a.close()
        b.close()


@pytest.mark.netns
def test_a_lan_helper_is_reached_through_the_offline_audit_guard_and_nothing_else() -> None:
    # a real LAN address (a veth into a test namespace), with the app's guard in offline mode as in the app
    from netns import namespace_host, netns_unavailable

    why = netns_unavailable()
    if why:
        skip_or_fail(why)
    with namespace_host(port=50052) as ns:
        guard = AuditGuard(offline=True).install()
        relay = PeerRelay([Peer(ns.peer_ip, ns.port)])
        try:
            fd = relay.open_channel()
            worker_end = socket.socket(fileno=os.dup(fd))
            relay.started()
            a, b = socket.socketpair()
            WorkerRelay(worker_end, [f"{ns.peer_ip}:{ns.port}"]).request(a, f"{ns.peer_ip}:{ns.port}")
            a.close()
            b.settimeout(10)
            got = b""
            while part := b.recv(100):
                got += part
            assert got == b"hello from the test namespace\n"
            b.close()
            worker_end.close()
            with socket.socket() as s, pytest.raises(NetworkRefused):
                s.connect((ns.peer_ip, ns.port + 1))  # the same machine, another port
            events = [(e.event, e.destination, e.verdict) for e in guard.snapshot()]
            assert ("socket.connect", f"{ns.peer_ip}:{ns.port}", "allowed-peer") in events
            assert ("socket.connect", f"{ns.peer_ip}:{ns.port + 1}", "refused") in events
            assert not any(ev == "socket.getaddrinfo" for ev, _, _ in events)  # by address, no lookup
            for _ in range(100):
                stats = relay.report()["peers"][0]
                if stats["open"] == 0:
                    break
                threading.Event().wait(0.05)
            assert stats["connections"] == 1 and stats["bytes_received"] == len(got)
            assert stats["lost"].startswith(f"helper machine {ns.peer_ip}:{ns.port} closed the connection")  # it did
        finally:
            relay.close()
            guard.uninstall()
