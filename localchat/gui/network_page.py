"""The Network page: what is proven about localchat's silence, the live evidence, and the limits.

The page shows the session's socket monitor, which ``app.main`` started before anything else (its counters and
"since" count from the process start; it polls on its own background thread). Without one (tests, embedding) the
page makes its own monitor, counted from when the page was built and labelled so. A timer on the GUI thread takes a
snapshot once a second on a short-lived background thread (psutil and /proc reads never run on the GUI thread; it
also polls a monitor that does not poll itself). The page renders the tables and the sparkline only while visible.
The main window calls :meth:`NetworkPage.set_worker` whenever the inference worker starts, restarts or stops.
"""

from __future__ import annotations

import html
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import QEvent, QPointF, Qt, QTimer, Slot
from PySide6.QtGui import QColor, QPainter, QPaintEvent, QPen, QShowEvent
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QFileDialog,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QScrollArea,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from localchat.context import AppContext
from localchat.core.privacy.audit import AuditGuard
from localchat.core.privacy.evidence import IsolationEvidence
from localchat.core.privacy.lockdown import lockdown_items
from localchat.core.privacy.monitor import MonitorSnapshot, SocketMonitor, all_connections, classify, own_processes
from localchat.core.privacy.processes import ProcessLog
from localchat.core.privacy.report import (
    LIMITS,
    EvidenceReport,
    check_yourself,
    clock,
    headline,
    human_bytes,
    isolation_text,
)
from localchat.gui import theme

COLUMNS = ("first seen", "process", "pid", "proto", "local", "remote", "state", "class")
PROCESS_COLUMNS = ("pid", "started", "ended", "network namespace", "isolation", "command")
POLL_MS = 1000
LOG_LINES = 12_000  # room for a full ring of socket events and one of audit events, and notes


def _rate(bps: float) -> str:
    return f"{human_bytes(bps)}/s"


def socket_class(row: dict[str, Any]) -> str:
    """The class column: a remote's class, and for a listening socket the reach of its own address."""
    if row["state"] != "LISTEN":
        return str(row["kind"])
    host = row["local"].rsplit(":", 1)[0].strip("[]")
    if host in ("0.0.0.0", "::", "*"):
        return "listening (all interfaces)"
    return f"listening ({classify(host)})"


def _showing(noun: str, kept: int, total: int) -> str:
    return f"; showing the last {kept:,} of {total:,} {noun}" if total > kept else ""


class Sparkline(QWidget):
    """Whole-machine bytes per second over the last two minutes, with the peak as scale."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.values: list[float] = []
        self.setMinimumHeight(56)
        self.setAccessibleName("Whole-machine network traffic, last two minutes")

    def set_values(self, values: list[float]) -> None:
        self.values = values
        self.update()

    def paintEvent(self, e: QPaintEvent) -> None:
        t = theme.current()
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        w, h = self.width(), self.height()
        p.fillRect(self.rect(), QColor(t.bg))
        p.setPen(QPen(QColor(t.border), 1))
        p.drawRect(0, 0, w - 1, h - 1)
        top = max(self.values, default=0.0)
        p.setPen(QColor(t.muted))
        p.drawText(6, 14, f"peak {_rate(top)}" if self.values else "collecting…")
        if len(self.values) >= 2:
            step = (w - 8) / (len(self.values) - 1)
            scale = top or 1.0
            pts = [QPointF(4 + i * step, h - 4 - (v / scale) * (h - 22)) for i, v in enumerate(self.values)]
            p.setPen(QPen(QColor(t.accent), 1.6))
            p.drawPolyline(pts)
        p.end()


class _Poll:
    """One monitor poll on a background thread; ``result`` is set when it is done."""

    def __init__(self, monitor: SocketMonitor, everyone: bool) -> None:
        self.result: tuple[MonitorSnapshot, list[dict[str, Any]] | None, str | None] | None = None
        self._args = (monitor, everyone)
        self.thread = threading.Thread(target=self._run, name="network-monitor", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        monitor, everyone = self._args
        others, why = None, None
        try:
            if not monitor.running:  # the session's monitor polls itself
                monitor.poll()
            if everyone:
                others, why = all_connections()
        except Exception as exc:  # shown in the event log; the next tick polls again
            monitor.note(f"a poll failed: {exc!r}")
        self.result = (monitor.snapshot(), others, why)


class NetworkPage(QWidget):
    def __init__(self, ctx: AppContext, parent: QWidget | None = None, monitor: SocketMonitor | None = None) -> None:
        super().__init__(parent)
        self.ctx = ctx
        self.worker_pid: int | None = None
        self.worker_isolation: dict[str, Any] | None = None
        # LAN mode: the running worker's relay counts (set by the LAN panel), so an exported report says "only
        # these peers" instead of counting the listed helpers as a leak
        self.relay_report: Callable[[], dict[str, Any] | None] = lambda: None
        # the poll thread must hold no reference to the page: the page would then be destroyed on that thread
        pid_box: list[int | None] = [None]
        self._pid_box = pid_box
        self.monitor = monitor or SocketMonitor.session() or SocketMonitor(lambda: own_processes(pid_box[0]))
        if self.monitor.processes is None:
            self.monitor.processes = ProcessLog.active()
        self.snapshot: MonitorSnapshot | None = None
        self._poll: _Poll | None = None
        self._logged = 0  # socket events already in the log, counted like events_total
        self._audit_logged = 0
        self._audit_guard: AuditGuard | None = None
        self._noted_errors: set[str] = set()

        inner = QWidget()
        self._layout = lay = QVBoxLayout(inner)
        lay.setSpacing(6)
        top = QHBoxLayout()
        heads = QVBoxLayout()
        self.headline = QLabel()
        self.headline.setWordWrap(True)
        self.headline.setObjectName("networkHeadline")
        self.headline.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.verdict = QLabel()
        self.verdict.setWordWrap(True)
        heads.addWidget(self.headline)
        heads.addWidget(self.verdict)
        top.addLayout(heads, 1)
        self.export_button = QPushButton("Export report…")
        self.export_button.setToolTip("Write the evidence as JSON and as text, for an auditor to keep")
        self.export_button.clicked.connect(self.export_report)
        top.addWidget(self.export_button, 0, Qt.AlignmentFlag.AlignTop)
        lay.addLayout(top)

        row = QHBoxLayout()
        box = QGroupBox("Evidence from the inference worker")
        self.evidence = QLabel()
        self.evidence.setWordWrap(True)
        self.evidence.setTextFormat(Qt.TextFormat.RichText)
        self.evidence.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        QVBoxLayout(box).addWidget(self.evidence)
        row.addWidget(box, 3)

        self.counters = counters = QGroupBox("Since launch")
        grid = QGridLayout(counters)
        self.internet_count = QLabel("0")
        self.lan_count = QLabel("0")
        self.refused_count = QLabel("0")
        self.unexpected_count = QLabel("0")
        for i, (label, value) in enumerate((("Outbound internet connections", self.internet_count),
                                            ("Outbound LAN connections", self.lan_count),
                                            ("Attempts refused by the audit guard", self.refused_count),
                                            ("Unexpected audit events", self.unexpected_count))):
            value.setStyleSheet("font-size: 13pt; font-weight: 600")
            value.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            grid.addWidget(QLabel(label), i, 0)
            grid.addWidget(value, i, 1)
        machine = QLabel("Network traffic of the <b>whole machine</b> — not attributable to a program")
        machine.setWordWrap(True)
        grid.addWidget(machine, 4, 0, 1, 2)
        self.spark = Sparkline()
        grid.addWidget(self.spark, 5, 0, 1, 2)
        self.interfaces = QLabel()
        self.interfaces.setWordWrap(True)
        self.interfaces.setObjectName("hint")
        grid.addWidget(self.interfaces, 6, 0, 1, 2)
        row.addWidget(counters, 2)
        lay.addLayout(row)

        table_box = QGroupBox("Sockets of localchat's processes (live)")
        tl = QVBoxLayout(table_box)
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(list(COLUMNS))
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setStretchLastSection(True)
        self.table.setMinimumHeight(130)
        self.table.setVisible(False)
        tl.addWidget(self.table)
        self.empty_hint = QLabel("No socket is open in localchat's processes right now.")
        self.empty_hint.setObjectName("hint")
        tl.addWidget(self.empty_hint)
        self.show_all = QCheckBox("Also list every program's connections (where permissions allow) — to see which "
                                  "program talks")
        self.show_all.toggled.connect(self.refresh)
        tl.addWidget(self.show_all)
        lay.addWidget(table_box)

        proc_box = QGroupBox("Processes localchat started this session")
        proc_layout = QVBoxLayout(proc_box)
        self.processes = QTableWidget(0, len(PROCESS_COLUMNS))
        self.processes.setHorizontalHeaderLabels(list(PROCESS_COLUMNS))
        self.processes.verticalHeader().setVisible(False)
        self.processes.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.processes.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.processes.setWordWrap(False)
        self.processes.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        pheader = self.processes.horizontalHeader()
        pheader.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        pheader.setSectionResizeMode(len(PROCESS_COLUMNS) - 1, QHeaderView.ResizeMode.Stretch)
        self.processes.setVisible(False)
        proc_layout.addWidget(self.processes)
        self.processes_hint = QLabel()
        self.processes_hint.setObjectName("hint")
        self.processes_hint.setWordWrap(True)
        proc_layout.addWidget(self.processes_hint)
        lay.addWidget(proc_box)

        log_box = QGroupBox("Event log")
        ll = QVBoxLayout(log_box)
        self.log_summary = QLabel()
        self.log_summary.setObjectName("hint")
        self.log_summary.setWordWrap(True)
        ll.addWidget(self.log_summary)
        self.log = QPlainTextEdit(readOnly=True)
        self.log.setMaximumBlockCount(LOG_LINES)
        self.log.setMinimumHeight(110)
        self.log.setMaximumHeight(220)
        ll.addWidget(self.log)
        lay.addWidget(log_box)

        lock = QGroupBox("Lockdown (set at start-up, values as they are now)")
        self.lockdown = QLabel()
        self.lockdown.setWordWrap(True)
        self.lockdown.setTextFormat(Qt.TextFormat.RichText)
        self.lockdown.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        QVBoxLayout(lock).addWidget(self.lockdown)
        lay.addWidget(lock)
        limits = QGroupBox("What this does not cover")
        lim = QLabel("<br>".join(f"• {html.escape(x)}" for x in LIMITS))
        lim.setWordWrap(True)
        lim.setTextFormat(Qt.TextFormat.RichText)
        QVBoxLayout(limits).addWidget(lim)
        lay.addWidget(limits)
        lay.addStretch(1)

        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(inner)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(scroll)

        # the monitor runs from launch, visible or not: its counters and event log are "since launch"
        self.timer = QTimer(self)
        self.timer.setInterval(POLL_MS)
        self.timer.timeout.connect(self._tick)
        self.timer.start()
        self._fill_lockdown()
        self._update_evidence()
        self._tick()

    def add_panel(self, panel: QWidget) -> None:
        """A panel under the headline (the local API switch), above the evidence."""
        self._layout.insertWidget(1, panel)

    # -- worker ------------------------------------------------------------------------------------------

    def set_worker(self, pid: int | None, isolation: dict[str, Any] | None) -> None:
        self.worker_pid, self.worker_isolation = pid, isolation
        self._pid_box[0] = pid
        self.monitor.worker_pid = pid  # the session's monitor labels the worker's sockets with it
        stamp = clock(time.time())
        if pid is None:
            self.log.appendPlainText(f"{stamp}  inference worker stopped")
        else:
            evidence = IsolationEvidence.from_report(isolation)
            state = evidence.state() if evidence else "monitored only"
            self.log.appendPlainText(f"{stamp}  inference worker started (pid {pid}, {state})")
            for c in evidence.canary if evidence else ():
                self.log.appendPlainText(f"{clock(c.time)}  canary {c.target} ({c.label}) → {c.result}"
                                         f"{'' if c.blocked else ' — NOT BLOCKED'}")
        self._update_evidence()

    def _update_evidence(self) -> None:
        iso = self.worker_isolation
        evidence = IsolationEvidence.from_report(iso)
        t = theme.current()
        self.headline.setText(headline(iso))
        color = t.ok_text if evidence and evidence.isolated else t.warn_text if evidence else t.muted
        self.headline.setStyleSheet(f"font-size: 14pt; font-weight: 600; color: {color}")
        if evidence is None:
            self.evidence.setText("The inference worker is not running. It starts with the first model you load; "
                                  "its evidence appears here.")
            return
        e = html.escape
        rows = [(row.label, f"<b>{e(row.text)}</b>" if row.alarm else e(row.text))
                for row in evidence.rows(self.worker_pid)]
        ns_now = (self.snapshot.namespaces.get(self.worker_pid) if self.snapshot and self.worker_pid else None)
        if ns_now:
            sent = sum(i["tx_bytes"] for i in ns_now["interfaces"])
            names = ", ".join(i["name"] for i in ns_now["interfaces"]) or "none"
            rows.append(("Now", f"still in namespace {ns_now['netns']}; interfaces {e(names)}; {sent} bytes sent; "
                                f"checked {clock(ns_now['checked'])}"))
        cmds = check_yourself(self.worker_pid, iso)
        if cmds:
            rows.append(("Check it yourself", "<br>".join(f"<code>{e(c)}</code> <span style='color:{t.muted}'>— "
                                                          f"{e(x)}</span>" for c, x in cmds)))
        cells = "".join(f"<tr><td style='padding:2px 14px 2px 0; color:{t.muted}; white-space:nowrap'>{k}</td>"
                        f"<td style='padding:2px 0'>{v}</td></tr>" for k, v in rows)
        self.evidence.setText(f"<table>{cells}</table>")

    def _fill_lockdown(self) -> None:
        t, e = theme.current(), html.escape
        cells = "".join(f"<tr><td width='32%' style='padding:2px 14px 2px 0'>{e(i['name'])}</td>"
                        f"<td width='20%' style='padding:2px 14px 2px 0'><b>{e(i['value'])}</b></td>"
                        f"<td width='48%' style='padding:2px 0; color:{t.muted}'>{e(i['effect'])}</td></tr>"
                        for i in lockdown_items())
        self.lockdown.setText(f"<table width='100%'>{cells}</table>")

    # -- polling -----------------------------------------------------------------------------------------

    @Slot()
    def _tick(self) -> None:
        """Take the finished background poll (if any) and start the next one."""
        poll = self._poll
        if poll is not None and poll.result is None:
            return  # still running: never two at once
        if poll is not None and poll.result is not None:
            self._render(*poll.result, draw=self.isVisible())
        self._poll = _Poll(self.monitor, self.show_all.isChecked() and self.isVisible())

    @Slot()
    def refresh(self) -> None:
        """Poll now, on this thread, and render (tests, the export, the "every program" switch)."""
        if self._poll is not None:
            self._poll.thread.join()
            self._poll = None  # its snapshot is older than the one taken now
        self.monitor.poll()
        others, why = all_connections() if self.show_all.isChecked() else (None, None)
        self._render(self.monitor.snapshot(), others, why, draw=True)

    def _render(self, snap: MonitorSnapshot, others: list[dict[str, Any]] | None, why: str | None, *,
                draw: bool) -> None:
        self.snapshot = snap
        new = snap.events_total - self._logged
        if new > len(snap.events):
            self.log.appendPlainText(f"{clock(time.time())}  {new - len(snap.events):,} socket events not shown "
                                     f"(the monitor keeps the last {len(snap.events):,}; all are counted)")
        for ev in snap.events[len(snap.events) - min(new, len(snap.events)):] if new > 0 else []:
            self.log.appendPlainText(f"{clock(ev.time)}  new {ev.proto} socket  {ev.process} (pid {ev.pid})  "
                                     f"{ev.local} → {ev.remote or '(not connected)'}  [{ev.kind}]")
        self._logged = snap.events_total
        for err in snap.errors:
            if err not in self._noted_errors:
                self._noted_errors.add(err)
                self.log.appendPlainText(f"{clock(time.time())}  monitor: {err}")
        guard = AuditGuard.active()
        if guard is not self._audit_guard:  # another guard became active
            self._audit_guard, self._audit_logged = guard, 0
        audit = guard.snapshot() if guard is not None else []
        counts = guard.counts() if guard is not None else {"total": 0, "refused": 0, "unexpected": 0}
        new = counts["total"] - self._audit_logged
        for a in audit[len(audit) - min(new, len(audit)):] if new > 0 else []:
            if a.verdict != "allowed-local":
                self.log.appendPlainText(f"{clock(a.time)}  audit {a.event} {a.destination}: {a.verdict}"
                                         f"{' (' + a.label + ')' if a.label else ''} — {a.call_site}")
        self._audit_logged = counts["total"]
        unexpected, refused = counts["unexpected"], counts["refused"]  # every event, not only the kept ones
        since = clock(snap.started)
        origin = "when localchat started" if snap.from_process_start else "when this page began watching"
        self.counters.setTitle(f"Since {since} ({origin})")
        self.log_summary.setText(
            f"{snap.events_total:,} socket events and {counts['total']:,} audit events since {since} ({origin})"
            + _showing("socket events", len(snap.events), snap.events_total)
            + _showing("audit events", len(audit), counts["total"]) + ".")
        self.internet_count.setText(str(snap.outbound_internet))
        self.lan_count.setText(str(snap.outbound_lan))
        self.refused_count.setText(str(refused))
        self.unexpected_count.setText(str(unexpected))
        t = theme.current()
        for label, n in ((self.internet_count, snap.outbound_internet), (self.lan_count, snap.outbound_lan),
                         (self.unexpected_count, unexpected)):
            label.setStyleSheet(f"font-size: 13pt; font-weight: 600; color: {t.error_text if n else t.ok_text}")
        non_local = snap.outbound_internet + snap.outbound_lan
        to_helpers, elsewhere = snap.beyond_this_machine(self.ctx.settings.helpers)
        if guard is None and not non_local:
            self.verdict.setText("The audit guard is not installed in this process; sockets are still monitored.")
        elif to_helpers and not elsewhere and not unexpected:  # LAN mode on a real LAN: the listed peers only
            self.verdict.setText(f"LAN mode: {to_helpers} connection(s) beyond this machine since {since}, every one "
                                 f"to a listed helper machine; none elsewhere.")
        elif non_local or unexpected:
            self.verdict.setText(f"Attention: {non_local} connection(s) beyond this machine and {unexpected} "
                                 f"unexpected audit event(s) since {since} — see the event log.")
        else:
            self.verdict.setText(f"No connection beyond this machine since {since} ({origin}): every socket of "
                                 "localchat's processes stayed on loopback.")
        if not draw:
            return  # the evidence, the table and the sparkline are only drawn for someone looking at them
        self._update_evidence()
        self.spark.set_values(snap.rates())
        rates = snap.interface_rates()
        self.interfaces.setText("   ".join(f"{name} ↑ {_rate(s)} ↓ {_rate(r)}" for name, (s, r) in sorted(rates.items())
                                           if name != "lo") or "no interface counters yet")
        data = [r.to_dict() for r in snap.rows]
        if others is not None:
            data += [{"time": 0, **o} for o in others if o["pid"] not in {r["pid"] for r in data}]
            if why:
                self.show_all.setToolTip(why)
        self.empty_hint.setVisible(not data)
        self.table.setVisible(bool(data))
        self.table.setRowCount(len(data))
        for i, r in enumerate(data):
            cells = (clock(r["time"]) if r["time"] else "", r["process"], r["pid"], r["proto"], r["local"],
                     r["remote"], r["state"], socket_class(r))
            for j, v in enumerate(cells):
                self.table.setItem(i, j, QTableWidgetItem(str(v)))
        self._render_processes(snap)

    def _render_processes(self, snap: MonitorSnapshot) -> None:
        procs = snap.processes
        if self.monitor.processes is None:
            self.processes_hint.setText("The process log is not running in this process (localchat starts it "
                                        "first thing; this page was opened without it).")
        else:
            running = sum(p["ended"] is None for p in procs)
            self.processes_hint.setText(
                f"{snap.processes_total} started since {clock(snap.started)}, {running} running"
                + _showing("processes", len(procs), snap.processes_total)
                + ". Every launch by Python code is recorded, and every descendant seen by the once-a-second poll; "
                  "the namespace is read from /proc while a process lives.")
        self.processes.setVisible(bool(procs))
        self.processes.setRowCount(len(procs))
        shown = min(len(procs), 8)  # as tall as its rows, up to eight; it scrolls beyond
        self.processes.setFixedHeight(self.processes.horizontalHeader().sizeHint().height()
                                      + sum(self.processes.rowHeight(r) for r in range(shown))
                                      + 2 * self.processes.frameWidth() + 2)
        t = theme.current()
        for i, p in enumerate(reversed(procs)):  # newest first
            pid = "?" if p["pid"] is None else str(p["pid"])
            if p["pid"] is not None and p["pid"] == self.worker_pid and not p["ended"]:
                pid += " (worker)"  # only the running one: an ended process may have had the same pid (reuse)
            cells = (pid, clock(p["started"]), clock(p["ended"]) if p["ended"] else "running",
                     "-" if p["netns"] is None else str(p["netns"]), isolation_text(p), p["command"])
            for j, v in enumerate(cells):
                item = QTableWidgetItem(v)
                if j == len(cells) - 1:
                    item.setToolTip(f"{v}\nstarted by {p.get('how')}"
                                    + (f" (parent pid {p['parent']})" if p.get("parent") else ""))
                if j == 4 and p["isolated"] is not None:
                    item.setForeground(QColor(t.ok_text if p["isolated"] else t.muted))
                self.processes.setItem(i, j, item)

    def showEvent(self, e: QShowEvent) -> None:
        super().showEvent(e)
        if self.snapshot is not None:
            self._render(self.snapshot, None, None, draw=True)
        self._fill_lockdown()

    def changeEvent(self, e: QEvent) -> None:
        super().changeEvent(e)
        if e.type() == QEvent.Type.PaletteChange:  # the theme changed: colours set from it are re-applied
            self._update_evidence()
            self._fill_lockdown()

    # -- report ------------------------------------------------------------------------------------------

    def report(self) -> EvidenceReport:
        return EvidenceReport(self.worker_isolation, AuditGuard.active(), self.monitor, self.worker_pid,
                              processes=self.monitor.processes, relay=self.relay_report())

    @Slot()
    def export_report(self, folder: str | None = None) -> tuple[Path, Path] | None:
        if not folder:
            folder = QFileDialog.getExistingDirectory(self, "Export privacy report")
            if not folder:
                return None
        self.refresh()
        paths = self.report().export(Path(folder))
        self.log.appendPlainText(f"{clock(time.time())}  report exported to {paths[0]} and {paths[1]}")
        return paths
