"""The Network page shows the worker's evidence, polls off the GUI thread, and exports a report an auditor can keep."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from collections import deque
from collections.abc import Iterator
from pathlib import Path

import pytest
from strict import skip_or_fail

from localchat.context import open_context
from localchat.core.engine.client import EngineClient
from localchat.core.privacy.audit import AuditGuard
from localchat.core.privacy.lockdown import lock_environment
from localchat.core.privacy.monitor import SocketMonitor
from localchat.core.privacy.processes import ProcessLog, process_start_time
from localchat.core.privacy.report import clock
from localchat.gui.network_page import NetworkPage


@pytest.fixture
def guard() -> Iterator[AuditGuard]:
    g = AuditGuard(offline=True).install()
    yield g
    g.uninstall()


@pytest.fixture
def process_log() -> Iterator[ProcessLog]:
    log = ProcessLog().install()
    yield log
    log.uninstall()


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


@pytest.mark.isolation
def test_evidence_table_lockdown_and_export(qtbot, isolated_home: Path, tmp_path: Path,
                                           process_log: ProcessLog) -> None:
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
            (worker_row,) = [r for r in _cells(page.processes) if r[0] == f"{worker_pid} (worker)"]
            assert worker_row[2] == "running" and "localchat.core.engine.worker" in worker_row[5]
            if not iso["isolated"]:  # "monitored only" is its own test below
                skip_or_fail(f"worker isolation unavailable here: {iso['reason']}")
            assert worker_row[4] == "isolated (own namespace)"
            assert "kernel-isolated" in page.headline.text()
            evidence = page.evidence.text()
            assert "ENETUNREACH" in evidence and "Check it yourself" in evidence
            assert f"still in namespace {iso['netns']}" in evidence  # re-read from the outside
            assert page.internet_count.text() == "0" and page.lan_count.text() == "0"
            assert page.verdict.text().startswith("No connection beyond this machine")
            js, txt = page.export_report(str(tmp_path / "report"))
        data = json.loads(js.read_text())
        assert data["worker"]["pid"] == worker_pid and data["app"]["outbound_internet_connections"] == 0
        assert [p["isolated"] for p in data["processes"] if p["pid"] == worker_pid] == [iso["isolated"]]
        assert data["silent"] is True
        assert "What this does not cover" in txt.read_text()
        assert "inference worker started" in page.log.toPlainText()
        assert "new tcp socket  localchat" in page.log.toPlainText()
        page.set_worker(None, None)
        assert "stopped" in page.log.toPlainText() and "not running" in page.headline.text()
    finally:
        guard.uninstall()


def _listeners(n: int) -> list[socket.socket]:
    out = []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        s.listen()
        out.append(s)
    return out


def test_since_is_process_start_and_the_log_goes_on_past_the_ring(qtbot, isolated_home: Path,
                                                                  guard: AuditGuard) -> None:
    # the session's monitor as app.main starts it, with a ring of 5 to pass it quickly
    monitor = SocketMonitor(lambda: {os.getpid(): "localchat"}, started=process_start_time(),
                            events=deque(maxlen=5), from_process_start=True)
    page = NetworkPage(open_context(isolated_home), monitor=monitor)
    qtbot.addWidget(page)
    page.refresh()  # sockets other tests left in this process are logged first, so they cannot crowd the ring below
    for _ in range(4):  # 16 sockets, 4 per poll: each poll's sockets are still logged once the ring is full
        socks = _listeners(4)
        page.refresh()
        for s in socks:
            assert f"127.0.0.1:{s.getsockname()[1]} → (not connected)" in page.log.toPlainText()
            s.close()
    burst = _listeners(8)  # more new sockets in one poll than the ring holds: the log says what it skipped
    page.refresh()
    for s in burst:
        s.close()
    since = clock(process_start_time())
    assert page.verdict.text().startswith(f"No connection beyond this machine since {since} (when localchat "
                                          "started)")
    assert page.counters.title() == f"Since {since} (when localchat started)"
    total = monitor.events_total
    assert total >= 24 and f"{total:,} socket events" in page.log_summary.text()
    assert f"showing the last 5 of {total:,} socket events" in page.log_summary.text()
    assert "socket events not shown (the monitor keeps the last 5; all are counted)" in page.log.toPlainText()


def test_page_built_late_says_so(qtbot, isolated_home: Path, guard: AuditGuard) -> None:
    page = NetworkPage(open_context(isolated_home), monitor=SocketMonitor(lambda: {os.getpid(): "localchat"}))
    qtbot.addWidget(page)
    page.refresh()
    assert "(when this page began watching)" in page.verdict.text()
    assert not page.processes.isVisible() and "process log is not running" in page.processes_hint.text()


def test_process_table_lists_every_child_with_its_end(qtbot, isolated_home: Path, process_log: ProcessLog) -> None:
    page = NetworkPage(open_context(isolated_home), monitor=SocketMonitor(lambda: {os.getpid(): "localchat"}))
    qtbot.addWidget(page)
    page.resize(1100, 1400)
    done = subprocess.run([sys.executable, "-c", "pass"], check=True)
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    assert child.stdin is not None and done.returncode == 0
    page.refresh()
    rows = _cells(page.processes)
    (row,) = [r for r in rows if r[0] == str(child.pid)]
    assert row[2] == "running" and row[4] == "app's namespace" and row[3] != "-"
    assert row[5] == f"{sys.executable} -c 'import sys; sys.stdin.read()'"
    assert rows[-1][5] == f"{sys.executable} -c pass" and rows[-1][2] != "running"  # newest first
    assert "2 started since" in page.processes_hint.text()
    if os.environ.get("LOCALCHAT_SHOT"):
        page.show()
        qtbot.waitExposed(page)
        page.grab().save(os.environ["LOCALCHAT_SHOT"])
    child.stdin.close()
    child.wait()
    page.refresh()
    (row,) = [r for r in _cells(page.processes) if r[0] == str(child.pid)]
    assert row[2] != "running" and row[4] == "app's namespace"


def test_worker_without_isolation_is_shown_as_monitored_only(qtbot, isolated_home: Path,
                                                            process_log: ProcessLog) -> None:
    page = NetworkPage(open_context(isolated_home))
    qtbot.addWidget(page)
    with EngineClient(isolation="off") as client:
        assert client.hello is not None and client.pid is not None
        page.set_worker(client.pid, client.hello.isolation)
        page.refresh()
        assert "monitored only" in page.headline.text() and "kernel-isolated" not in page.headline.text()
        (row,) = [r for r in _cells(page.processes) if r[0] == f"{client.pid} (worker)"]
        assert row[4] == "app's namespace"
