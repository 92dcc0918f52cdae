"""The Network page of the main window (placeholder until its issue lands).

Contract with the main window: ``NetworkPage(ctx: AppContext, parent: QWidget | None = None)``, a QWidget.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtWidgets import QLabel, QVBoxLayout, QWidget

from localchat.context import AppContext


class NetworkPage(QWidget):
    """Placeholder page.

    The main window calls :meth:`set_worker` whenever the inference worker starts, restarts or stops.
    """

    def __init__(self, ctx: AppContext, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.ctx = ctx
        layout = QVBoxLayout(self)
        layout.addWidget(QLabel("Network: coming soon"))

    def set_worker(self, pid: int | None, isolation: dict[str, Any] | None) -> None:
        self.worker_pid, self.worker_isolation = pid, isolation
