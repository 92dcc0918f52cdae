"""The Network page's "LAN mode: only these peers" panel, in the real window with two real ``rpc-server`` helpers
on 127.0.0.1 (the fixture of tests/e2e/test_rpc.py): helpers set in the settings, a question asked, the answer
shown, and each helper's bytes and connections on the panel equal to the relay's own counts."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import openai
import pytest
from e2e.test_rpc import RPC_SERVER, Helper, _binding_has_rpc, _lan_helper, helpers  # noqa: F401  (two helpers)
from PySide6.QtCore import Qt
from strict import skip_or_fail

from localchat.context import open_context
from localchat.core.privacy.audit import AuditGuard
from localchat.core.privacy.monitor import MonitorSnapshot, SocketRow
from localchat.gui.lan_panel import beyond_this_machine, helper_rows
from localchat.gui.main_window import MainWindow

pytestmark = [pytest.mark.slow, pytest.mark.isolation]
TIMEOUT = 120_000


def _cells(table) -> list[list[str]]:  # type: ignore[no-untyped-def]
    return [[table.item(r, c).text() for c in range(table.columnCount())] for r in range(table.rowCount())]


def test_window_answers_through_two_helpers_and_the_panel_counts_them(qtbot, isolated_home: Path,
                                                                      starter_model: Path, tmp_path: Path,
                                                                      helpers: list[Helper]) -> None:  # noqa: F811
    ctx = open_context(isolated_home)
    ctx.ensure_starter()
    ctx.settings.max_tokens, ctx.settings.temperature = 16, 0.0
    w = MainWindow(ctx, isolation="auto")
    qtbot.addWidget(w)
    w.show()
    try:
        qtbot.waitUntil(lambda: w.load_info is not None, timeout=TIMEOUT)
        assert not w.lan.isVisibleTo(w.network_page)  # no helpers: no panel
        panel = w.api.panel  # the local API on, serving the window's worker: it must follow the worker's restart
        assert panel is not None
        panel.port.setValue(0)
        panel.toggle.setChecked(True)
        qtbot.waitUntil(lambda: w.api.state == "serving", timeout=TIMEOUT)
        endpoints = [h.peer.endpoint for h in helpers]
        ctx.settings.helpers = endpoints  # what Settings → Helper machines saves
        ctx.settings.validate()
        qtbot.waitUntil(lambda: w.lan.isVisibleTo(w.network_page), timeout=5000)
        # the changed list reloads the model in a worker whose relay reaches those helpers only
        qtbot.waitUntil(lambda: w.load_info is not None and w.bridge.driver.client.peers != [], timeout=TIMEOUT)
        iso = w.network_page.worker_isolation
        assert iso is not None
        if not iso.get("isolated"):
            skip_or_fail(f"the worker was not isolated: {iso.get('reason')}")
        assert iso["scope"] == "only these peers"
        assert w.load_info.offloaded_layers or w.load_info.n_gpu_layers  # layers went to the helpers

        w.conversations.new()
        w.input.setPlainText("What is the capital of France?")
        qtbot.keyClick(w.input, Qt.Key.Key_Return)
        qtbot.waitUntil(lambda: not w.turn_controller.busy, timeout=TIMEOUT)
        answer = w.chat.messages[-1]
        assert answer.role == "assistant" and answer.content.strip() and answer.status == "complete"

        api: dict[str, Any] = {}

        def ask_api() -> None:
            try:
                with openai.OpenAI(base_url=w.api.url, api_key=w.api.key, max_retries=0, timeout=120) as c:
                    r = c.chat.completions.create(model=w.model_name or "", max_tokens=8, temperature=0,
                                                  messages=[{"role": "user", "content": "Say hello."}])
                api["text"] = r.choices[0].message.content
            except Exception as exc:  # reported below
                api["error"] = exc

        t = threading.Thread(target=ask_api, daemon=True)
        t.start()
        qtbot.waitUntil(lambda: not t.is_alive(), timeout=TIMEOUT)
        assert api.get("text"), api  # answered on the new worker, through the helpers (was: 503, old client)

        w.lan.refresh()
        report = {p["peer"]: p for p in w.bridge.driver.client.relay_report()["peers"]}  # type: ignore[index]
        rows = {r["peer"]: r for r in w.lan.rows}
        assert list(rows) == endpoints
        for e in endpoints:
            assert rows[e]["bytes_sent"] > 10 * 2**20 and rows[e]["bytes_received"] > 0  # the weights went there
            assert rows[e]["connections"] >= 2 and rows[e]["refused"] == 0
            assert rows[e]["bytes_sent"] <= report[e]["bytes_sent"]  # read from the relay's counters
        cells = _cells(w.lan.table)
        assert [c[0] for c in cells] == endpoints and all(c[1].endswith("MB") for c in cells)
        assert w.lan.claim.text().startswith(f"The app connects only to {', '.join(endpoints)}")
        # the exported report makes the same claim, with the same counts
        paths = w.network_page.export_report(str(tmp_path / "report"))
        assert paths is not None
        data = json.loads(paths[0].read_text())
        assert data["silent"] and data["verdict"].startswith(f"Only these peers: the app connected only to "
                                                             f"{', '.join(endpoints)}")
        assert [p["peer"] for p in data["lan_mode"]["helpers"]] == endpoints
        assert "LAN mode: only these peers" in paths[1].read_text()

        ctx.settings.helpers = []  # removed in Settings: the panel goes, and the model reloads on this machine only
        qtbot.waitUntil(lambda: not w.lan.isVisibleTo(w.network_page), timeout=5000)
        qtbot.waitUntil(lambda: w.load_info is not None and w.bridge.driver.client.peers == [], timeout=TIMEOUT)
        assert w.bridge.driver.client.relay_report() is None
        assert w.network_page.worker_isolation is not None
        assert w.network_page.worker_isolation.get("scope") != "only these peers"
    finally:
        w.shutdown()


def test_rows_show_every_listed_helper_and_any_refused_address() -> None:
    report = {"peers": [{"peer": "192.168.1.20:50052", "connections": 3, "bytes_sent": 5, "bytes_received": 7,
                         "open": 1, "lost": None}],
              "refused": [{"peer": "127.0.0.1:9", "reason": "not a listed helper"}]}
    rows = helper_rows(["192.168.1.20:50052", "192.168.1.21:50052"], report)
    assert [(r["peer"], r["connections"], r["refused"], r["state"]) for r in rows] == [
        ("192.168.1.20:50052", 3, 0, "in use"), ("192.168.1.21:50052", 0, 0, "not used yet"),
        ("127.0.0.1:9", 0, 1, "not listed: refused, never connected")]


def _row(remote: str, kind: str) -> SocketRow:
    return SocketRow(0.0, "localchat", 1, "tcp", "10.0.0.1:40000", remote, "ESTABLISHED", kind)


def test_connections_beyond_this_machine_are_told_apart() -> None:
    events = [_row("192.168.1.20:50052", "lan"), _row("192.168.1.20:22", "lan"), _row("127.0.0.1:9", "loopback")]
    snap = MonitorSnapshot(0.0, [], events, 0, 2, [], {}, [], 0.0)
    assert beyond_this_machine(snap, ["192.168.1.20:50052"]) == (1, 1)  # another port of a helper is elsewhere
    cut = MonitorSnapshot(0.0, [], events[:1], 0, 5, [], {}, [], 0.0)  # events the monitor no longer holds
    assert beyond_this_machine(cut, ["192.168.1.20:50052"]) == (1, 4)
    assert beyond_this_machine(None, []) is None


@pytest.mark.netns
def test_a_helper_on_a_lan_address_is_told_apart_from_a_leak_on_the_page(qtbot, isolated_home: Path,
                                                                          starter_model: Path, tmp_path: Path) -> None:
    """On a real LAN address the page counts the relay's connections as beyond this machine; the panel says they
    went to the listed helper."""
    guard = AuditGuard.active() or AuditGuard(offline=True).install()  # as app.main runs it
    try:
        with _lan_helper(tmp_path) as helper:
            peer = helper.peer.endpoint
            ctx = open_context(isolated_home)
            ctx.ensure_starter()
            ctx.settings.helpers, ctx.settings.max_tokens = [peer], 8
            w = MainWindow(ctx, isolation="auto")
            qtbot.addWidget(w)
            w.show()
            try:
                qtbot.waitUntil(lambda: w.load_info is not None, timeout=TIMEOUT)
                iso = w.network_page.worker_isolation or {}
                if not iso.get("isolated"):
                    skip_or_fail(f"the worker was not isolated: {iso.get('reason')}")
                w.show_page(2)
                qtbot.waitUntil(lambda: (beyond_this_machine(w.network_page.snapshot, [peer]) or (0, 0))[0] > 0,
                                timeout=30_000)
                w.lan.refresh()
                snap = w.network_page.snapshot
                assert snap is not None
                listed, _ = beyond_this_machine(snap, [peer])  # type: ignore[misc]
                assert f"{listed} went to these helpers" in w.lan.claim.text()
                # the page also watches this test's own rpc-server (a child of this process, so "localchat's" to
                # the monitor; on a real LAN it is another machine): its sockets are the only other LAN ones
                others = [e for e in snap.non_loopback_events() if e.remote != peer]
                assert all(e.pid == helper.server_pid and e.process.startswith("rpc-server") for e in others), others
                assert w.lan.rows[0]["peer"] == peer and w.lan.rows[0]["bytes_sent"] > 10 * 2**20
                # the exported report counts the helper's connections as listed, not as a leak; the test's own
                # rpc-server (watched as one of "localchat's" processes here) is the only thing it calls unlisted
                paths = w.network_page.export_report(str(tmp_path / "report"))
                assert paths is not None
                lan = json.loads(paths[0].read_text())["lan_mode"]
                assert lan["connections_to_listed"] > 0
                assert all(e["pid"] == helper.server_pid for e in lan["unlisted"]), lan["unlisted"]
            finally:
                w.shutdown()
    finally:
        guard.uninstall()
