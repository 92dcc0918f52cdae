"""The Network page: what is proven about localchat's silence, the live evidence, and the limits.

Polls the socket monitor once a second while visible (a few /proc reads for our own two processes: cheap enough
for the GUI thread). The main window calls :meth:`NetworkPage.set_worker` whenever the inference worker starts,
restarts or stops.
"""

from __future__ import annotations

import itertools
import time
from pathlib import Path
from typing import Any

from PySide6.QtCore import QPointF, Qt, QTimer, Slot
from PySide6.QtGui import QColor, QPainter, QPaintEvent, QPen, QShowEvent
from PySide6.QtWidgets import (
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
from localchat.core.privacy.lockdown import LOCKDOWN_ENV
from localchat.core.privacy.monitor import SocketMonitor, all_connections, own_processes
from localchat.core.privacy.report import LIMITS, EvidenceReport, headline

COLUMNS = ("first seen", "process", "pid", "proto", "local", "remote", "state", "class")


class Sparkline(QWidget):
    """Bytes per second over the last two minutes."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.values: list[float] = []
        self.setMinimumHeight(48)

    def set_values(self, values: list[float]) -> None:
        self.values = values
        self.update()

    def paintEvent(self, e: QPaintEvent) -> None:
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        w, h = self.width(), self.height()
        p.fillRect(self.rect(), self.palette().base())
        if len(self.values) >= 2:
            top = max(self.values) or 1.0
            step = w / (len(self.values) - 1)
            pts = [QPointF(i * step, h - 4 - (v / top) * (h - 8)) for i, v in enumerate(self.values)]
            p.setPen(QPen(QColor("#2f81f7"), 1.6))
            p.drawPolyline(pts)
        p.end()


class NetworkPage(QWidget):
    def __init__(self, ctx: AppContext, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.ctx = ctx
        self.worker_pid: int | None = None
        self.worker_isolation: dict[str, Any] | None = None
        self.monitor = SocketMonitor(lambda: own_processes(self.worker_pid))
        self._logged = 0
        self._audit_logged = 0

        inner = QWidget()
        lay = QVBoxLayout(inner)
        self.headline = QLabel()
        self.headline.setWordWrap(True)
        self.headline.setObjectName("headline")
        self.headline.setStyleSheet("font-size: 15pt; font-weight: 600; padding: 6px 0")
        lay.addWidget(self.headline)

        self.evidence = QLabel()
        self.evidence.setWordWrap(True)
        self.evidence.setTextFormat(Qt.TextFormat.RichText)
        box = QGroupBox("Evidence")
        QVBoxLayout(box).addWidget(self.evidence)
        lay.addWidget(box)

        counters = QGroupBox("Since launch")
        grid = QGridLayout(counters)
        self.internet_count = QLabel("0")
        self.lan_count = QLabel("0")
        self.refused_count = QLabel("0")
        for row, (label, value) in enumerate((("Outbound internet connections", self.internet_count),
                                              ("Outbound LAN connections", self.lan_count),
                                              ("Attempts refused by the audit guard", self.refused_count))):
            value.setStyleSheet("font-size: 13pt; font-weight: 600")
            grid.addWidget(QLabel(label), row, 0)
            grid.addWidget(value, row, 1)
        self.spark = Sparkline()
        grid.addWidget(QLabel("Network traffic of the whole machine (not attributable to a program)"), 3, 0, 1, 2)
        grid.addWidget(self.spark, 4, 0, 1, 2)
        lay.addWidget(counters)

        table_box = QGroupBox("Sockets of localchat's processes (live)")
        tl = QVBoxLayout(table_box)
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(list(COLUMNS))
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.verticalHeader().setVisible(False)
        self.table.setMinimumHeight(120)
        tl.addWidget(self.table)
        self.show_all = QCheckBox("Also show every program's connections (where permissions allow)")
        self.show_all.toggled.connect(self.refresh)
        tl.addWidget(self.show_all)
        lay.addWidget(table_box)

        log_box = QGroupBox("Event log")
        ll = QVBoxLayout(log_box)
        self.log = QPlainTextEdit(readOnly=True)
        self.log.setMaximumBlockCount(2000)
        self.log.setMinimumHeight(100)
        ll.addWidget(self.log)
        lay.addWidget(log_box)

        lock = QGroupBox("Lockdown (set at start-up)")
        QVBoxLayout(lock).addWidget(QLabel("\n".join(f"{k} = {v}" for k, v in LOCKDOWN_ENV.items())))
        lay.addWidget(lock)
        limits = QGroupBox("What this does not cover")
        lim = QLabel("\n".join(f"• {x}" for x in LIMITS))
        lim.setWordWrap(True)
        QVBoxLayout(limits).addWidget(lim)
        lay.addWidget(limits)

        buttons = QHBoxLayout()
        self.export_button = QPushButton("Export report…")
        self.export_button.clicked.connect(self.export_report)
        buttons.addStretch(1)
        buttons.addWidget(self.export_button)
        lay.addLayout(buttons)

        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(inner)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(scroll)

        self.timer = QTimer(self)
        self.timer.setInterval(1000)
        self.timer.timeout.connect(self.refresh)
        self._update_evidence()

    # -- worker ------------------------------------------------------------------------------------------

    def set_worker(self, pid: int | None, isolation: dict[str, Any] | None) -> None:
        self.worker_pid, self.worker_isolation = pid, isolation
        stamp = time.strftime("%H:%M:%S")
        if pid is None:
            self.log.appendPlainText(f"{stamp}  inference worker stopped")
        else:
            state = "kernel-isolated" if isolation and isolation.get("isolated") else "monitored only"
            self.log.appendPlainText(f"{stamp}  inference worker started (pid {pid}, {state})")
            for c in (isolation or {}).get("canary", []):
                self.log.appendPlainText(f"{stamp}  canary {c['target']} ({c['label']}) → {c['result']}")
        self._update_evidence()

    def _update_evidence(self) -> None:
        iso = self.worker_isolation
        self.headline.setText(headline(iso))
        color = "#1a7f37" if iso and iso.get("isolated") else "#9a6700"
        self.headline.setStyleSheet(f"font-size: 15pt; font-weight: 600; padding: 6px 0; color: {color}")
        if not iso:
            self.evidence.setText("Start a chat to launch the inference worker; its evidence appears here.")
            return
        rows = [f"<b>Worker pid</b> {self.worker_pid} · <b>mode</b> {iso.get('mode')} · "
                f"<b>network namespace</b> {iso.get('netns')} (app: {iso.get('parent_netns')})"]
        ifs = ", ".join(f"{i['name']} ({'up' if i['up'] else 'down'})" for i in iso.get("interfaces", []))
        rows.append(f"<b>Worker interfaces</b> {ifs or 'none'}")
        if iso.get("canary"):
            for c in iso["canary"]:
                t = time.strftime("%H:%M:%S", time.localtime(c["time"]))
                mark = "blocked" if c["blocked"] else "NOT BLOCKED"
                rows.append(f"<b>Canary</b> {c['target']} ({c['label']}) → {c['result']}, {mark}, at {t}")
        else:
            rows.append("No canary: the worker is not isolated, so it sends none — no packet of ours leaves the "
                        f"machine. Reason: {iso.get('reason')}")
        self.evidence.setText("<br>".join(rows))

    # -- polling -----------------------------------------------------------------------------------------

    def showEvent(self, e: QShowEvent) -> None:
        self.refresh()
        self.timer.start()
        super().showEvent(e)

    def hideEvent(self, e: Any) -> None:
        self.timer.stop()
        super().hideEvent(e)

    @Slot()
    def refresh(self) -> None:
        rows = self.monitor.poll()
        data = [r.to_dict() for r in rows]
        if self.show_all.isChecked():
            others, why = all_connections()
            data += [{"time": 0, **o, "proto": "tcp"} for o in others]
            if why:
                self.log.appendPlainText(why)
        self.table.setRowCount(len(data))
        for i, r in enumerate(data):
            first = time.strftime("%H:%M:%S", time.localtime(r["time"])) if r["time"] else ""
            for j, v in enumerate((first, r["process"], r["pid"], r["proto"], r["local"], r["remote"], r["state"],
                                   r["kind"])):
                self.table.setItem(i, j, QTableWidgetItem(str(v)))
        events = list(self.monitor.events)
        for e in events[self._logged:]:
            self.log.appendPlainText(f"{time.strftime('%H:%M:%S', time.localtime(e.time))}  new {e.proto} socket "
                                     f"{e.process} {e.local} → {e.remote or '(none)'} [{e.kind}]")
        self._logged = len(events)
        guard = AuditGuard.active()
        if guard is not None:
            audit = list(guard.events)
            for a in audit[self._audit_logged:]:
                if a.verdict != "allowed-local":
                    self.log.appendPlainText(f"{time.strftime('%H:%M:%S', time.localtime(a.time))}  audit "
                                             f"{a.event} {a.destination} {a.verdict} {a.label} ({a.call_site})")
            self._audit_logged = len(audit)
            self.refused_count.setText(str(len(guard.refused())))
        self.internet_count.setText(str(self.monitor.outbound_internet))
        self.lan_count.setText(str(self.monitor.outbound_lan))
        s = list(self.monitor.samples)
        rates = [max(0.0, (b.bytes_sent + b.bytes_recv - a.bytes_sent - a.bytes_recv) / max(1e-3, b.time - a.time))
                 for a, b in itertools.pairwise(s)]
        self.spark.set_values(rates)

    def report(self) -> EvidenceReport:
        from localchat.core.privacy.lockdown import LOCKDOWN_ENV as env

        return EvidenceReport(self.worker_isolation, dict(env), AuditGuard.active(), self.monitor, self.worker_pid)

    @Slot()
    def export_report(self, folder: str | None = None) -> tuple[Path, Path] | None:
        if folder is None:
            folder = QFileDialog.getExistingDirectory(self, "Export privacy report")
            if not folder:
                return None
        paths = self.report().export(Path(folder))
        self.log.appendPlainText(f"{time.strftime('%H:%M:%S')}  report exported to {paths[0]} and {paths[1]}")
        return paths
