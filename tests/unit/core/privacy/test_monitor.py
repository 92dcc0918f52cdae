"""The socket monitor counts every socket however long the run, and the session's watch starts with the process."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from collections import deque
from pathlib import Path

from localchat.core.privacy.monitor import SocketMonitor
from localchat.core.privacy.report import EvidenceReport

ROOT = Path(__file__).resolve().parents[4]


def _listeners(n: int) -> list[socket.socket]:
    out = []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        s.listen()
        out.append(s)
    return out


def test_counter_keeps_counting_past_the_ring_buffer() -> None:
    monitor = SocketMonitor(lambda: {os.getpid(): "localchat"}, events=deque(maxlen=5))
    monitor.poll()
    before = monitor.events_total
    first = _listeners(12)
    monitor.poll()
    for s in first:
        s.close()
    second = _listeners(12)  # new sockets after the first ones closed: new events
    monitor.poll()
    for s in second:
        s.close()
    snap = monitor.snapshot()
    assert snap.events_total - before == 24 and len(snap.events) == 5
    assert all(e.kind == "none" and e.state == "LISTEN" for e in snap.events)
    data = EvidenceReport(None, None, snap).to_dict()
    assert data["app"]["socket_events_total"] == snap.events_total and len(data["app"]["socket_events"]) == 5
    text = EvidenceReport(None, None, snap).to_text(data)
    assert f"Socket events: {snap.events_total} (showing the last 5 of {snap.events_total})" in text
    assert "Outbound internet connections since " in text and "(when monitoring began, after launch): 0" in text


WATCHED = r"""
import json, subprocess, sys, threading
import psutil
import localchat.app

seen = {}

def run(argv):  # stands in for the command line: what is already running when arguments are looked at
    from localchat.core.privacy.audit import AuditGuard
    from localchat.core.privacy.monitor import SocketMonitor
    from localchat.core.privacy.processes import ProcessLog
    from localchat.core.privacy.report import EvidenceReport
    monitor = SocketMonitor.session()
    snap = monitor.snapshot()
    seen.update(argv=argv, since=snap.started, process_start=psutil.Process().create_time(),
                from_process_start=snap.from_process_start, polling=monitor.running,
                threads=[t.name for t in threading.enumerate()],
                guard=AuditGuard.active() is not None and AuditGuard.active().offline,
                processes=ProcessLog.active() is monitor.processes is not None)
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    monitor.poll()
    report = EvidenceReport(None, AuditGuard.active(), monitor)
    data = report.to_dict()
    seen.update(child=child.pid, report_processes=data["processes"], text=report.to_text(data),
                monitored_since=data["app"]["monitored_since"])
    child.stdin.close()
    child.wait()
    return 0

import localchat.cli
localchat.cli.run = run
code = localchat.app.main(["netcheck", "--json"])
print(json.dumps(seen))
sys.exit(code)
"""


def test_watch_starts_before_the_command_line_and_since_is_process_start(tmp_path: Path) -> None:
    script = tmp_path / "watched.py"
    script.write_text(textwrap.dedent(WATCHED))
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr
    seen = json.loads(proc.stdout)
    assert seen["argv"] == ["netcheck", "--json"]
    assert seen["since"] == seen["process_start"] == seen["monitored_since"]
    assert seen["from_process_start"] and seen["polling"] and "network-monitor" in seen["threads"]
    assert seen["guard"] is True and seen["processes"] is True
    (child,) = [p for p in seen["report_processes"] if p["pid"] == seen["child"]]
    assert child["isolated"] is False and child["ended"] is None
    assert "when localchat started" in seen["text"] and f"pid {seen['child']}" in seen["text"]
    assert "Outbound internet connections since launch: 0" in seen["text"]
