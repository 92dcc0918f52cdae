"""The Network page shows the worker's evidence, polls off the GUI thread, and exports a report an auditor can keep."""

from __future__ import annotations

import json
import socket
import threading
from pathlib import Path

from localchat.context import open_context
from localchat.core.engine.client import EngineClient
from localchat.core.privacy.audit import AuditGuard
from localchat.core.privacy.lockdown import lock_environment
from localchat.gui.network_page import NetworkPage


def _cells(table) -> list[list[str]]:  # type: ignore[no-untyped-def]
    return [[table.item(r, c).text() for c in range(table.columnCount())] for r in range(table.rowCount())]


def test_monitor_polls_off_the_gui_thread(qtbot, isolated_home: Path) -> None:
    page = NetworkPage(open_context(isolated_home))
    qtbot.addWidget(page)
    threads: list[str] = []
    poll = page.monitor.poll

    def recording_poll():  # type: ignore[no-untyped-def]
        threads.append(threading.current_thread().name)
        return poll()

    page.monitor.poll = recording_poll  # type: ignore[method-assign]
    qtbot.waitUntil(lambda: len(threads) >= 2, timeout=5000)  # the timer keeps polling, page visible or not
    assert set(threads) == {"network-monitor"}
    qtbot.waitUntil(lambda: page.snapshot is not None, timeout=5000)
    assert "not running" in page.headline.text()


def test_evidence_table_lockdown_and_export(qtbot, isolated_home: Path, tmp_path: Path) -> None:
    lock_environment()
    page = NetworkPage(open_context(isolated_home))
    qtbot.addWidget(page)
    lockdown = page.lockdown.text()
    assert "HF_HUB_OFFLINE</td>" in lockdown and "<b>blocked: cannot be imported</b>" in lockdown
    guard = AuditGuard().install()
    try:
        with EngineClient(isolation="auto") as client:
            assert client.hello is not None and client.pid is not None
            worker_pid = client.pid
            page.set_worker(client.pid, client.hello.isolation)
            srv = socket.socket()
            srv.bind(("127.0.0.1", 0))
            srv.listen()
            with socket.create_connection(srv.getsockname()):
                page.refresh()
                cells = _cells(page.table)
            srv.close()
            assert any(row[1] == "localchat" and row[7] == "loopback" and row[6] == "ESTABLISHED" for row in cells)
            iso = client.hello.isolation
            if iso["isolated"]:
                assert "kernel-isolated" in page.headline.text()
                evidence = page.evidence.text()
                assert "ENETUNREACH" in evidence and "Check it yourself" in evidence
                assert f"still in namespace {iso['netns']}" in evidence  # re-read from the outside
            else:
                assert "monitored only" in page.headline.text()
            assert page.internet_count.text() == "0" and page.lan_count.text() == "0"
            assert page.verdict.text().startswith("No connection beyond this machine")
            js, txt = page.export_report(str(tmp_path / "report"))
        data = json.loads(js.read_text())
        assert data["worker"]["pid"] == worker_pid and data["app"]["outbound_internet_connections"] == 0
        assert data["silent"] is True
        assert "What this does not cover" in txt.read_text()
        assert "inference worker started" in page.log.toPlainText()
        assert "new tcp socket  localchat" in page.log.toPlainText()
        page.set_worker(None, None)
        assert "stopped" in page.log.toPlainText() and "not running" in page.headline.text()
    finally:
        guard.uninstall()
