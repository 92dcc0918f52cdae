"""The Network page's "LAN mode: only these peers" panel (docs/RPC.md).

Shown only while helper machines are set (Settings → Helper machines). One row per helper: its address, the bytes
the app sent to it and received from it, the connections it relayed and any request the relay refused, read once a
second from the relay's own counters (``EngineClient.relay_report``: the app counts every byte it copies). The
panel also notices a changed helper list and reloads the window's model, so the worker restarts with the new peers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QTimer, Slot
from PySide6.QtWidgets import (
    QAbstractItemView,
    QGroupBox,
    QHeaderView,
    QLabel,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from localchat.core.privacy.monitor import MonitorSnapshot
from localchat.core.privacy.report import human_bytes
from localchat.gui import theme

if TYPE_CHECKING:
    from localchat.gui.main_window import MainWindow

COLUMNS = ("Helper machine", "Sent", "Received", "Connections", "Refused", "State")


def helper_rows(helpers: list[str], report: dict[str, Any] | None) -> list[dict[str, Any]]:
    """One row per listed helper, from the relay's report (zeros until the worker uses them); a refused request
    for an address not listed gets a row of its own, so nothing refused is hidden."""
    peers = {p["peer"]: p for p in (report or {}).get("peers", [])}
    refused: dict[str, int] = {}
    for r in (report or {}).get("refused", []):
        refused[str(r.get("peer"))] = refused.get(str(r.get("peer")), 0) + 1
    rows = []
    for endpoint in helpers:
        p = peers.get(endpoint, {})
        state = "lost: " + p["lost"] if p.get("lost") else ("in use" if p.get("open") else
                                                             ("used" if p.get("connections") else "not used yet"))
        rows.append({"peer": endpoint, "bytes_sent": p.get("bytes_sent", 0),
                     "bytes_received": p.get("bytes_received", 0), "connections": p.get("connections", 0),
                     "refused": refused.pop(endpoint, 0), "state": state})
    for endpoint, n in refused.items():
        rows.append({"peer": endpoint, "bytes_sent": 0, "bytes_received": 0, "connections": 0, "refused": n,
                     "state": "not listed: refused, never connected"})
    return rows


def beyond_this_machine(snap: MonitorSnapshot | None, helpers: list[str]) -> tuple[int, int] | None:
    """Of the connections beyond this machine the Network page counts (the socket monitor), how many went to a
    listed helper and how many elsewhere; events the monitor no longer holds count as elsewhere (never hidden)."""
    return None if snap is None else snap.beyond_this_machine(helpers)


class LanPanel(QGroupBox):
    """The helpers, what went to each, and what was refused; hidden while no helper is set."""

    def __init__(self, window: MainWindow, parent: QWidget | None = None) -> None:
        super().__init__("LAN mode: only these peers", parent)
        self.window_ = window
        self._applied = list(window.ctx.settings.helpers)
        lay = QVBoxLayout(self)
        self.claim = QLabel()
        self.claim.setWordWrap(True)
        lay.addWidget(self.claim)
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        self.table.verticalHeader().setVisible(False)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setStretchLastSection(True)
        lay.addWidget(self.table)
        hint = QLabel("Counted by localchat as it relays each connection of the sandboxed worker (which has only its "
                      "loopback) to the helpers listed in Settings, and to nothing else. llama.cpp's RPC is "
                      "unauthenticated and unencrypted: use helpers on a network you trust only.")
        hint.setObjectName("hint")
        hint.setWordWrap(True)
        lay.addWidget(hint)
        self.rows: list[dict[str, Any]] = []
        self.timer = QTimer(self)
        self.timer.setInterval(1000)
        self.timer.timeout.connect(self.refresh)
        self.timer.start()
        self.refresh()

    @Slot()
    def refresh(self) -> None:
        w = self.window_
        helpers = list(w.ctx.settings.helpers)
        if helpers != self._applied:  # new helpers: the worker restarts with them when the model reloads
            if not w.model_name:  # nothing loaded (or a load failed): the next load takes them
                self._applied = helpers
            elif w.load_info is not None and not w.turn_controller.busy:
                self._applied = helpers
                w.load_model(w.model_name)
            # else a load or an answer is running: reload once it is done (a later tick)
        self.setVisible(bool(helpers))
        if not helpers:
            return
        client = w.bridge.driver.client
        report = client.relay_report() if [p.endpoint for p in client.peers] == helpers else None
        self.rows = helper_rows(helpers, report)
        t = theme.current()
        if report is None:
            self.claim.setText(f"Helpers set: {', '.join(helpers)} — used from the next model load.")
            self.claim.setStyleSheet(f"color: {t.muted}")
        else:
            refused = len(report.get("refused", []))
            text = (f"The app connects only to {', '.join(helpers)}"
                    + (f"; {refused} request(s) for anything else refused." if refused else "."))
            # the page's own count of connections beyond this machine includes the helpers on a real LAN
            split = beyond_this_machine(w.network_page.snapshot, helpers)
            elsewhere = split[1] if split else 0
            if split and split[0]:
                text += (f" Of the {sum(split)} connection(s) beyond this machine counted below, {split[0]} went to "
                         "these helpers" + (f" and {elsewhere} ELSEWHERE — see the event log." if elsewhere else
                                            ", none elsewhere."))
            elif elsewhere:
                text += f" {elsewhere} connection(s) beyond this machine went ELSEWHERE — see the event log."
            self.claim.setText(text)
            color = t.error_text if elsewhere else t.warn_text if refused else t.ok_text
            self.claim.setStyleSheet(f"font-weight: 600; color: {color}")
        self.table.setRowCount(len(self.rows))
        for i, r in enumerate(self.rows):
            cells = (r["peer"], human_bytes(r["bytes_sent"]), human_bytes(r["bytes_received"]),
                     str(r["connections"]), str(r["refused"]), r["state"])
            for j, text in enumerate(cells):
                item = self.table.item(i, j)
                if item is None:
                    self.table.setItem(i, j, QTableWidgetItem(text))
                elif item.text() != text:
                    item.setText(text)
        self.table.setFixedHeight(self.table.horizontalHeader().height() + 4
                                  + sum(self.table.rowHeight(i) for i in range(len(self.rows))))


def install(window: MainWindow) -> LanPanel:
    """Put the panel on the window's Network page (hidden until helper machines are set)."""
    panel = LanPanel(window)
    window.network_page.add_panel(panel)
    window.network_page.relay_report = lambda: window.bridge.driver.client.relay_report()
    return panel
