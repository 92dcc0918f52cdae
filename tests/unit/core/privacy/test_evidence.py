"""The isolation evidence, typed once at the process boundary and rendered by every surface from the same rows."""

from __future__ import annotations

from localchat.core.privacy.evidence import LAN_SCOPE, IsolationEvidence
from localchat.core.privacy.report import headline
from localchat.core.privacy.sandbox import isolate_worker

ISOLATED = {
    "isolated": True, "policy": "auto", "mode": "userns+netns", "reason": "own network namespace", "netns": 7,
    "parent_netns": 3, "interfaces": [{"name": "lo", "up": False}],
    "reentry": {"result": "refused (EPERM)"},
    "canary": [{"target": "1.1.1.1:443", "label": "internet", "result": "ENETUNREACH", "blocked": True, "time": 1.0},
               {"target": "10.0.0.1:80", "label": "LAN", "result": "connected", "blocked": False, "time": 2.0}],
}


def test_rows_carry_every_fact_and_flag_a_canary_that_got_through() -> None:
    ev = IsolationEvidence.from_report(ISOLATED)
    assert ev is not None and ev.isolated and ev.state() == "kernel-isolated"
    rows = {r.label: r for r in ev.rows(pid=42)}
    assert rows["Worker"].text.startswith("pid 42 · policy auto · mode userns+netns")
    assert rows["Network namespace"].text == "7 (app: 3)"
    assert rows["Interfaces inside"].text == "lo (down)"
    assert rows["Re-entering the app's namespace"].text == "refused (EPERM)"
    canaries = [r for r in ev.rows() if r.label == "Canary"]
    assert [c.alarm for c in canaries] == [False, True] and "NOT BLOCKED" in canaries[1].text
    assert headline(ISOLATED) == ev.headline() and "kernel-isolated" in ev.headline()


def test_lan_mode_says_only_these_peers_everywhere() -> None:
    beyond = {"target": "192.0.2.1:9", "label": "TEST-NET-1", "result": "ENETUNREACH", "blocked": True, "time": 3.0}
    ev = IsolationEvidence.from_report({**ISOLATED, "scope": LAN_SCOPE, "relay": {
        "peers": ["192.168.1.20:50052", "192.168.1.21:50052"], "interfaces": [{"name": "lo", "up": True}],
        "beyond_loopback": beyond}})
    assert ev is not None and ev.lan_mode and ev.state() == "kernel-isolated, LAN mode"
    assert "connects only to these peers: 192.168.1.20:50052, 192.168.1.21:50052" in ev.headline()
    rows = {r.label: r.text for r in ev.rows()}
    assert rows["Helper machines"] == "192.168.1.20:50052, 192.168.1.21:50052"
    assert rows["Interfaces inside"] == "lo (up)"  # as the relay left it, not as the sandbox first saw it
    assert ev.canary[-1].target == "192.0.2.1:9" and ev.canary[-1].blocked


def test_a_crafted_or_broken_report_is_never_believed_nor_raises() -> None:
    assert IsolationEvidence.from_report(None) is None
    assert IsolationEvidence.from_report("isolated") is None  # type: ignore[arg-type]
    for crafted in ({"isolated": "yes"}, {"isolated": 1}, {}, {"isolated": False, "reason": 7, "interfaces": "lo",
                                                              "canary": [None, 3], "relay": "x", "reentry": []}):
        ev = IsolationEvidence.from_report(crafted)
        assert ev is not None and not ev.isolated and ev.state() == "monitored only"
        assert ev.headline().startswith("Inference worker: monitored only")
        assert ev.rows()[0].label == "Worker"
    huge = IsolationEvidence.from_report({"reason": "x" * 10_000, "canary": [{"blocked": True}] * 10_000})
    assert huge is not None and len(huge.reason) == 500 and len(huge.canary) == 64


def test_the_real_report_of_an_unisolated_worker_reads_as_monitored_only() -> None:
    ev = IsolationEvidence.from_report(isolate_worker("off"))
    assert ev is not None and not ev.isolated and ev.policy == "off"
