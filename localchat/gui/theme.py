"""Light and dark palettes; "system" follows the desktop's colour scheme."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QGuiApplication, QPalette
from PySide6.QtWidgets import QApplication

LIGHT_QSS = """
#sidebar { background: #f6f8fa; border-right: 1px solid #d8dee4; }
QListWidget { border: none; background: transparent; font-size: 10.5pt; }
QListWidget::item { padding: 7px 6px; border-radius: 6px; }
QListWidget::item:selected { background: #dbe9ff; color: #0b3d91; }
QPushButton#send { background: #2563eb; color: white; border: none; border-radius: 8px; padding: 0 18px;
                   font-weight: 600; }
QPushButton#send:hover { background: #1d4ed8; }
QPlainTextEdit, QLineEdit { border: 1px solid #d0d7de; border-radius: 8px; padding: 6px; background: white; }
QTextBrowser { border: none; background: #fbfbfc; }
QToolButton:checked { background: #dbe9ff; border-radius: 6px; }
QToolButton { padding: 4px 10px; }
"""

DARK_QSS = """
#sidebar { background: #16181c; border-right: 1px solid #2a2f36; }
QListWidget { border: none; background: transparent; font-size: 10.5pt; color: #d6dde4; }
QListWidget::item { padding: 7px 6px; border-radius: 6px; }
QListWidget::item:selected { background: #263449; color: #e6edf3; }
QPushButton#send { background: #2f6feb; color: white; border: none; border-radius: 8px; padding: 0 18px;
                   font-weight: 600; }
QPushButton#send:hover { background: #3b7bff; }
QPlainTextEdit, QLineEdit { border: 1px solid #30363d; border-radius: 8px; padding: 6px; background: #0d1117;
                            color: #e6edf3; }
QTextBrowser { border: none; background: #1b1e23; }
QToolButton:checked { background: #263449; border-radius: 6px; }
QToolButton { padding: 4px 10px; }
"""


def system_is_dark() -> bool:
    hints = QGuiApplication.styleHints()
    return bool(hints is not None and hints.colorScheme() == Qt.ColorScheme.Dark)


def apply_theme(theme: str) -> bool:
    """Apply ``light`` / ``dark`` / ``system``; returns whether the result is dark."""
    app = QApplication.instance()
    dark = system_is_dark() if theme == "system" else theme == "dark"
    if not isinstance(app, QApplication):
        return dark
    app.setStyle("Fusion")
    pal = QPalette()
    if dark:
        for role, color in ((QPalette.ColorRole.Window, "#1b1e23"), (QPalette.ColorRole.WindowText, "#e6edf3"),
                            (QPalette.ColorRole.Base, "#0d1117"), (QPalette.ColorRole.AlternateBase, "#161b22"),
                            (QPalette.ColorRole.Text, "#e6edf3"), (QPalette.ColorRole.Button, "#21262d"),
                            (QPalette.ColorRole.ButtonText, "#e6edf3"), (QPalette.ColorRole.Highlight, "#2f6feb"),
                            (QPalette.ColorRole.HighlightedText, "#ffffff"), (QPalette.ColorRole.Link, "#58a6ff"),
                            (QPalette.ColorRole.ToolTipBase, "#21262d"), (QPalette.ColorRole.ToolTipText, "#e6edf3"),
                            (QPalette.ColorRole.PlaceholderText, "#7d8590")):
            pal.setColor(role, QColor(color))
    else:
        pal = app.style().standardPalette()
        pal.setColor(QPalette.ColorRole.Link, QColor("#0969da"))
    app.setPalette(pal)
    app.setStyleSheet(DARK_QSS if dark else LIGHT_QSS)
    return dark
