"""The Network page of the main window (placeholder until its issue lands).

Contract with the main window: ``NetworkPage(ctx: AppContext, parent: QWidget | None = None)``, a QWidget.
"""

from __future__ import annotations

from PySide6.QtWidgets import QLabel, QVBoxLayout, QWidget

from localchat.context import AppContext


class NetworkPage(QWidget):
    def __init__(self, ctx: AppContext, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.ctx = ctx
        layout = QVBoxLayout(self)
        layout.addWidget(QLabel("Network: coming soon"))
