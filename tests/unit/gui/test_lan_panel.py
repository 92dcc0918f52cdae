"""The Network page's "LAN mode: only these peers" panel, in the real window with two real ``rpc-server`` helpers
on 127.0.0.1 (the fixture of tests/e2e/test_rpc.py): helpers set in the settings, a question asked, the answer
shown, and each helper's bytes and connections on the panel equal to the relay's own counts."""

from __future__ import annotations

from pathlib import Path

import pytest
from e2e.test_rpc import Helper, helpers  # noqa: F401  (the fixture: two real rpc-server helpers)
from PySide6.QtCore import Qt
from strict import skip_or_fail

from localchat.context import open_context
from localchat.gui.lan_panel import helper_rows
from localchat.gui.main_window import MainWindow

pytestmark = [pytest.mark.slow, pytest.mark.isolation]
TIMEOUT = 120_000


def _cells(table) -> list[list[str]]:  # type: ignore[no-untyped-def]
    return [[table.item(r, c).text() for c in range(table.columnCount())] for r in range(table.rowCount())]


def test_window_answers_through_two_helpers_and_the_panel_counts_them(qtbot, isolated_home: Path,
                                                                      starter_model: Path,
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
        endpoints = [h.peer.endpoint for h in helpers]
        ctx.settings.helpers = endpoints  # what Settings → Helper machines saves
        ctx.settings.validate()
        qtbot.waitUntil(lambda: w.lan.isVisibleTo(w.network_page), timeout=5000)
        # the changed list reloads the model in a worker whose relay reaches those helpers only
        qtbot.waitUntil(lambda: w.load_info is not None and w.bridge.worker.client.peers != [], timeout=TIMEOUT)
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

        w.lan.refresh()
        report = {p["peer"]: p for p in w.bridge.worker.client.relay_report()["peers"]}  # type: ignore[index]
        rows = {r["peer"]: r for r in w.lan.rows}
        assert list(rows) == endpoints
        for e in endpoints:
            assert rows[e]["bytes_sent"] > 10 * 2**20 and rows[e]["bytes_received"] > 0  # the weights went there
            assert rows[e]["connections"] >= 2 and rows[e]["refused"] == 0
            assert rows[e]["bytes_sent"] <= report[e]["bytes_sent"]  # read from the relay's counters
        cells = _cells(w.lan.table)
        assert [c[0] for c in cells] == endpoints and all(c[1].endswith("MB") for c in cells)
        assert w.lan.claim.text().startswith(f"The app connects only to {', '.join(endpoints)}")

        ctx.settings.helpers = []  # removed in Settings: the panel goes, and the model reloads on this machine only
        qtbot.waitUntil(lambda: not w.lan.isVisibleTo(w.network_page), timeout=5000)
        qtbot.waitUntil(lambda: w.load_info is not None and w.bridge.worker.client.peers == [], timeout=TIMEOUT)
        assert w.bridge.worker.client.relay_report() is None
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
