"""The Models page of the main window (placeholder until its issue lands).

Contract with the main window: ``ModelsPage(ctx: AppContext, parent: QWidget | None = None)``, a QWidget.
"""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QLabel, QVBoxLayout, QWidget

from localchat.context import AppContext


class ModelsPage(QWidget):
    """Placeholder page.

    Signals:
        libraryChanged: the installed models changed (the main window refreshes its model picker).
    """

    libraryChanged = Signal()

    def __init__(self, ctx: AppContext, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.ctx = ctx
        layout = QVBoxLayout(self)
        layout.addWidget(QLabel("Models: coming soon"))
