"""The empty conversation: a greeting and starting points, or, with no model installed, the welcome."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtWidgets import QGridLayout, QHBoxLayout, QLabel, QPushButton, QSizePolicy, QVBoxLayout, QWidget

from localchat.gui import icons
from localchat.gui.elided_label import ElidedLabel

SUGGESTIONS = (
    ("Explain a concept", "Explain how public-key cryptography works, with a simple analogy."),
    ("Write some code", "Write a Python function that removes duplicates from a list while keeping order."),
    ("Summarize", "Summarize the main ideas of stoic philosophy in five bullet points."),
    ("Brainstorm", "Give me ten names for a cosy bookshop café."),
)


class EmptyState(QWidget):
    """What a new conversation shows: a greeting and a few starting points; with no model installed, a welcome that
    offers the catalogue and Import instead (nothing is ever downloaded without a click).

    Signals:
        suggestionPicked(str): a suggestion's prompt.
        browseModels(): "Browse models" was clicked.
        importModel(): "Import a .gguf file…" was clicked.
    """

    suggestionPicked = Signal(str)
    browseModels = Signal()
    importModel = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("emptyState")
        self.setAttribute(Qt.WidgetAttribute.WA_StyledBackground)
        lay = QVBoxLayout(self)
        lay.addStretch(3)
        self.logo = QLabel()
        self.logo.setAlignment(Qt.AlignmentFlag.AlignCenter)
        lay.addWidget(self.logo)
        lay.addSpacing(10)
        title = QLabel("How can I help?")
        title.setObjectName("emptyTitle")
        title.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.title = title
        lay.addWidget(title)
        self.subtitle = QLabel()
        self.subtitle.setObjectName("emptySubtitle")
        self.subtitle.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.subtitle.setWordWrap(True)
        lay.addWidget(self.subtitle)
        lay.addSpacing(22)
        grid = QGridLayout()
        grid.setSpacing(10)
        self.buttons: list[QPushButton] = []
        for i, (head, prompt) in enumerate(SUGGESTIONS):
            b = QPushButton()
            b.setObjectName("suggestion")
            b.setCursor(Qt.CursorShape.PointingHandCursor)
            b.setProperty("prompt", prompt)
            b.setToolTip(prompt)
            b.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
            b.setFixedHeight(64)
            card = QVBoxLayout(b)
            card.setContentsMargins(14, 9, 14, 9)
            card.setSpacing(2)
            for text, name in ((head, "suggestionTitle"), (prompt, "suggestionText")):
                label = ElidedLabel()
                label.set_full_text(text)
                label.setObjectName(name)
                label.setAttribute(Qt.WidgetAttribute.WA_TransparentForMouseEvents)
                card.addWidget(label)
            b.clicked.connect(self._picked)
            grid.addWidget(b, i // 2, i % 2)
            self.buttons.append(b)
        holder = QWidget()
        holder.setLayout(grid)
        self.holder = holder
        lay.addWidget(holder, 0, Qt.AlignmentFlag.AlignHCenter)
        self.welcome = QWidget()
        row = QHBoxLayout(self.welcome)
        row.setContentsMargins(0, 0, 0, 0)
        row.addStretch(1)
        self.browse_button = QPushButton("Browse models")
        self.browse_button.setObjectName("primary")
        self.browse_button.setToolTip("Distilled models with a fit badge for this machine; downloads start only "
                                      "when you click Download")
        self.browse_button.clicked.connect(self.browseModels)
        self.import_button = QPushButton("Import a .gguf file…")
        self.import_button.clicked.connect(self.importModel)
        for b in (self.browse_button, self.import_button):
            b.setCursor(Qt.CursorShape.PointingHandCursor)
            b.setMinimumHeight(36)
            row.addWidget(b)
        row.addStretch(1)
        lay.addWidget(self.welcome)
        lay.addStretch(4)
        self.set_model("")

    def resizeEvent(self, e: Any) -> None:
        self.holder.setFixedWidth(min(640, self.width() - 48))
        super().resizeEvent(e)

    def set_model(self, model: str, *, installed: bool = True) -> None:
        """``installed=False``: no model at all yet, so the welcome replaces the suggestions."""
        self.title.setText("How can I help?" if installed else "Welcome to localchat")
        self.holder.setVisible(installed)
        self.welcome.setVisible(not installed)
        if installed:
            self.subtitle.setText((f"You are chatting with {model}. " if model else "")
                                  + "Everything runs on this computer; nothing you type leaves it.")
        else:
            self.subtitle.setText("No model is installed yet. Pick a distilled model from the catalogue (each shows "
                                  "whether it fits this machine), or import a GGUF file you already have. Everything "
                                  "then runs on this computer; nothing you type leaves it.")

    def restyle(self) -> None:
        self.logo.setPixmap(icons.app_icon().pixmap(56, 56))

    @Slot()
    def _picked(self) -> None:
        b = self.sender()
        if isinstance(b, QPushButton):
            self.suggestionPicked.emit(str(b.property("prompt")))

