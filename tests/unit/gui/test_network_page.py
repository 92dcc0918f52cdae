"""The Network page shows the worker's evidence and exports a report an auditor can keep."""

from __future__ import annotations

import json
import socket
from pathlib import Path

from localchat.context import open_context
from localchat.core.engine.client import EngineClient
from localchat.core.privacy.audit import AuditGuard
from localchat.gui.network_page import NetworkPage


def test_evidence_table_and_export(qtbot, isolated_home: Path, tmp_path: Path) -> None:
    page = NetworkPage(open_context(isolated_home))
    qtbot.addWidget(page)
    assert "not running" in page.headline.text()
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
                cells = [[page.table.item(r, c).text() for c in range(page.table.columnCount())]
                         for r in range(page.table.rowCount())]
            srv.close()
            assert any(row[7] == "loopback" for row in cells)
            iso = client.hello.isolation
            if iso["isolated"]:
                assert "kernel-isolated" in page.headline.text()
                assert "ENETUNREACH" in page.evidence.text()
            else:
                assert "monitored only" in page.headline.text()
            assert page.internet_count.text() == "0"
            js, txt = page.export_report(str(tmp_path / "report"))
        data = json.loads(js.read_text())
        assert data["worker"]["pid"] == worker_pid and data["app"]["outbound_internet_connections"] == 0
        assert "What this does not cover" in txt.read_text()
        assert "inference worker started" in page.log.toPlainText()
        page.set_worker(None, None)
        assert "stopped" in page.log.toPlainText()
    finally:
        guard.uninstall()
