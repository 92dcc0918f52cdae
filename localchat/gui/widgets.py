"""Small widgets: the message input (Enter sends, Shift+Enter adds a line) and the settings dialog."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QKeyEvent
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QSpinBox,
    QWidget,
)

from localchat.errors import SettingsError
from localchat.settings import THEMES, Settings


class MessageInput(QPlainTextEdit):
    """Signals:
        submitted(): Enter was pressed (without Shift).
    """

    submitted = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setPlaceholderText("Message the model — Enter to send, Shift+Enter for a new line")
        self.setFixedHeight(76)
        self.setTabChangesFocus(True)

    def keyPressEvent(self, e: QKeyEvent) -> None:
        if e.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter) and not e.modifiers() & Qt.KeyboardModifier.ShiftModifier:
            self.submitted.emit()
            return
        super().keyPressEvent(e)


class SettingsDialog(QDialog):
    def __init__(self, settings: Settings, planner_hint: str = "", parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Settings")
        self.settings = settings
        form = QFormLayout(self)
        self.temperature = QDoubleSpinBox(decimals=2, minimum=0.0, maximum=2.0, singleStep=0.05,
                                          value=settings.temperature)
        self.top_p = QDoubleSpinBox(decimals=2, minimum=0.01, maximum=1.0, singleStep=0.05, value=settings.top_p)
        self.max_tokens = QSpinBox(minimum=1, maximum=131072, value=settings.max_tokens)
        self.n_ctx = QSpinBox(minimum=256, maximum=1_048_576, singleStep=1024, value=settings.n_ctx)
        self.threads = QSpinBox(minimum=0, maximum=512, value=settings.n_threads or 0)
        self.threads.setSpecialValueText("Automatic")
        self.gpu_layers = QSpinBox(minimum=-2, maximum=1000,
                                   value=-2 if settings.n_gpu_layers is None else settings.n_gpu_layers)
        self.gpu_layers.setSpecialValueText("Planner decides")
        self.models_dir = QLineEdit(settings.models_dir or "")
        self.models_dir.setPlaceholderText("default folder")
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse)
        row = QHBoxLayout()
        row.addWidget(self.models_dir)
        row.addWidget(browse)
        self.theme = QComboBox()
        self.theme.addItems(list(THEMES))
        self.theme.setCurrentText(settings.theme)
        self.require_isolation = QCheckBox("Refuse to load a model unless the worker is network-isolated")
        self.require_isolation.setChecked(settings.require_isolation)
        self.system_prompt = QPlainTextEdit(settings.system_prompt)
        self.system_prompt.setMaximumHeight(80)
        form.addRow("Temperature", self.temperature)
        form.addRow("Top-p", self.top_p)
        form.addRow("Max tokens", self.max_tokens)
        form.addRow("Context length", self.n_ctx)
        form.addRow("Threads", self.threads)
        form.addRow("GPU layers", self.gpu_layers)
        if planner_hint:
            hint = QLabel(planner_hint)
            hint.setWordWrap(True)
            form.addRow("", hint)
        form.addRow("Models folder", row)
        form.addRow("Theme", self.theme)
        form.addRow("Privacy", self.require_isolation)
        form.addRow("System prompt", self.system_prompt)
        self.error = QLabel("")
        self.error.setStyleSheet("color: #d1242f")
        form.addRow(self.error)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form.addRow(buttons)

    def _browse(self) -> None:
        d = QFileDialog.getExistingDirectory(self, "Models folder", self.models_dir.text())
        if d:
            self.models_dir.setText(d)

    def result_settings(self) -> Settings:
        s = Settings.from_dict(self.settings.to_dict())
        s.temperature = self.temperature.value()
        s.top_p = self.top_p.value()
        s.max_tokens = self.max_tokens.value()
        s.n_ctx = self.n_ctx.value()
        s.n_threads = self.threads.value() or None
        s.n_gpu_layers = None if self.gpu_layers.value() == -2 else self.gpu_layers.value()
        s.models_dir = self.models_dir.text().strip() or None
        s.theme = self.theme.currentText()
        s.require_isolation = self.require_isolation.isChecked()
        s.system_prompt = self.system_prompt.toPlainText()
        s.validate()
        return s

    def accept(self) -> None:
        try:
            self.chosen = self.result_settings()
        except SettingsError as exc:
            self.error.setText(str(exc))
            return
        super().accept()
