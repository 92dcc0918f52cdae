"""``netcheck --rpc``'s verdict: a connection to a listed helper is expected; anything else is a leak."""

from __future__ import annotations

from typing import Any

from localchat.core.privacy.report import lan_findings, lan_text

PEERS = {"peers": [{"peer": "192.168.1.20:50052", "connections": 3, "bytes_sent": 40_000_000, "bytes_received": 900,
                    "open": 0, "errors": [], "lost": None}],
         "refused": [], "checks": []}
ISOLATION = {"isolated": True, "scope": "only these peers",
             "relay": {"interfaces": [{"name": "lo"}], "beyond_loopback": {"result": "ENETUNREACH"}}}


def _event(remote: str, kind: str = "lan") -> dict[str, Any]:
    return {"time": 0.0, "process": "localchat", "pid": 10, "proto": "tcp", "local": "192.168.1.10:40000",
            "remote": remote, "state": "ESTABLISHED", "kind": kind}


def _data(events: list[dict[str, Any]], *, lan: int, internet: int = 0, unexpected: int = 0) -> dict[str, Any]:
    return {"app": {"socket_events": events, "outbound_lan_connections": lan,
                    "outbound_internet_connections": internet, "audit_unexpected_total": unexpected},
            "worker": {"now": {"interfaces": [{"name": "lo"}]}}}


def test_connections_to_listed_helpers_are_only_these_peers() -> None:
    lan = lan_findings(_data([_event("192.168.1.20:50052")] * 3, lan=3), PEERS, ISOLATION)
    assert lan["silent"] and lan["connections_to_listed"] == 3 and lan["unlisted_connections"] == 0
    assert lan["worker_interfaces"] == ["lo"] and lan["worker_only_loopback"]
    assert lan["verdict"].startswith("Only these peers: the app connected only to 192.168.1.20:50052")
    text = "\n".join(lan_text(lan))
    assert "3 connection(s), sent 40,000,000 B, received 900 B" in text and "refused attempts: none" in text


def test_another_port_of_the_same_machine_or_the_internet_is_a_leak() -> None:
    events = [_event("192.168.1.20:50052"), _event("192.168.1.20:22"), _event("8.8.8.8:443", "internet")]
    lan = lan_findings(_data(events, lan=2, internet=1), PEERS, ISOLATION)
    assert not lan["silent"] and lan["unlisted_connections"] == 2
    assert lan["verdict"].startswith("ATTENTION: 2 connections to machines not listed")
    assert "NOT LISTED: localchat (pid 10) tcp 192.168.1.10:40000 → 8.8.8.8:443" in "\n".join(lan_text(lan))


def test_events_no_longer_held_count_as_unlisted_and_refusals_are_shown() -> None:
    refused = {**PEERS, "refused": [{"peer": "127.0.0.1:9", "reason": "not a listed helper"}]}
    lan = lan_findings(_data([_event("192.168.1.20:50052")], lan=5), refused, ISOLATION)
    assert not lan["silent"] and lan["unlisted_connections"] == 4  # never a false "only these peers"
    assert "refused: 127.0.0.1:9: not a listed helper" in "\n".join(lan_text(lan))


def test_unexpected_audit_events_or_more_than_loopback_in_the_worker_are_reported() -> None:
    data = _data([], lan=0, unexpected=1)
    data["worker"]["now"]["interfaces"] = [{"name": "lo"}, {"name": "eth0"}]
    lan = lan_findings(data, PEERS, ISOLATION)
    assert not lan["silent"] and not lan["worker_only_loopback"]
    assert "NOT only lo" in "\n".join(lan_text(lan))
