"""Light and dark themes: one palette of named colours per theme, a Fusion QPalette, and resources/theme.qss.

``system`` follows the desktop's colour scheme (Qt's style hints); the window re-applies the theme when the system
scheme changes. Widgets that paint or build HTML themselves read the same colours from :func:`current`.
"""

from __future__ import annotations

import string
import sys
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QFont, QGuiApplication, QPalette
from PySide6.QtWidgets import QApplication, QWidget


def resources_dir() -> Path:
    """resources/ next to the package in a source tree, or inside a PyInstaller bundle."""
    base = Path(getattr(sys, "_MEIPASS", Path(__file__).resolve().parents[2]))
    return base / "resources"


@dataclass(frozen=True)
class Theme:
    name: str
    dark: bool
    bg: str
    surface: str
    rail: str
    border: str
    text: str
    muted: str
    faint: str
    accent: str
    accent_hover: str
    accent_soft: str
    accent_text: str
    hover: str
    selection: str
    user_bubble: str
    input_bg: str
    input_border: str
    button_bg: str
    disabled_bg: str
    menu_bg: str
    chip_bg: str
    ok_bg: str
    ok_text: str
    warn_bg: str
    warn_text: str
    error_bg: str
    error_border: str
    error_text: str
    code_bg: str
    code_header: str
    code_border: str
    inline_code_bg: str
    reasoning_bg: str
    link: str
    scroll: str
    tooltip_bg: str
    tooltip_text: str
    toast_action: str
    pygments: str


LIGHT = Theme(
    name="light", dark=False, bg="#ffffff", surface="#f7f7f8", rail="#efeff2", border="#e5e6ea", text="#1f2329",
    muted="#5f6672", faint="#9298a3", accent="#2563eb", accent_hover="#1d4ed8", accent_soft="#e3ebfd",
    accent_text="#1d4ed8", hover="#ececf0", selection="#e3e6ec", user_bubble="#eef1f6", input_bg="#ffffff",
    input_border="#d6d9df", button_bg="#ffffff", disabled_bg="#c7cbd3", menu_bg="#ffffff", chip_bg="#f0f1f4",
    ok_bg="#e6f4ea", ok_text="#17692f", warn_bg="#fdf2dc", warn_text="#8a5300", error_bg="#fdf0f0",
    error_border="#f3c7c7", error_text="#b42318", code_bg="#f8f9fb", code_header="#f0f2f5", code_border="#e3e6eb",
    inline_code_bg="#eff1f4", reasoning_bg="#f8f8fa", link="#1f5fd6", scroll="#cfd2d8", tooltip_bg="#2b2f36",
    tooltip_text="#f3f4f6", toast_action="#8db4ff", pygments="xcode",
)

DARK = Theme(
    name="dark", dark=True, bg="#1d1e21", surface="#17181b", rail="#111214", border="#2b2d32", text="#e7e8eb",
    muted="#a2a7b0", faint="#6c717b", accent="#3b82f6", accent_hover="#5b95f7", accent_soft="#1f2c47",
    accent_text="#a9c7ff", hover="#27292e", selection="#2c2f36", user_bubble="#2a2d34", input_bg="#25272b",
    input_border="#373a41", button_bg="#2a2c31", disabled_bg="#3a3d44", menu_bg="#25272b", chip_bg="#2a2c31",
    ok_bg="#15301f", ok_text="#7fd69a", warn_bg="#3a2c12", warn_text="#f1c36b", error_bg="#2f1b1d",
    error_border="#5b2a2f", error_text="#f7a7a7", code_bg="#141517", code_header="#1f2124", code_border="#2d3035",
    inline_code_bg="#2c2f35", reasoning_bg="#222327", link="#7fb0ff", scroll="#3d4047", tooltip_bg="#e7e8eb",
    tooltip_text="#1d1e21", toast_action="#1f5fd6", pygments="github-dark",
)

_current = LIGHT


def current() -> Theme:
    return _current


def system_is_dark() -> bool:
    hints = QGuiApplication.styleHints()
    return bool(hints is not None and hints.colorScheme() == Qt.ColorScheme.Dark)


def resolve(setting: str) -> Theme:
    """The theme a setting (``system`` / ``light`` / ``dark``) stands for right now."""
    dark = system_is_dark() if setting == "system" else setting == "dark"
    return DARK if dark else LIGHT


@cache
def _template() -> string.Template:
    return string.Template((resources_dir() / "theme.qss").read_text(encoding="utf-8"))


def stylesheet(theme: Theme) -> str:
    ui = resources_dir() / "icons" / "ui"
    return _template().safe_substitute(asdict(theme), chevron=(ui / f"chevron-down-{theme.name}.png").as_posix(),
                                       chevron_up=(ui / f"chevron-up-{theme.name}.png").as_posix())


def palette(theme: Theme) -> QPalette:
    pal = QPalette()
    roles = {
        QPalette.ColorRole.Window: theme.bg, QPalette.ColorRole.WindowText: theme.text,
        QPalette.ColorRole.Base: theme.input_bg, QPalette.ColorRole.AlternateBase: theme.surface,
        QPalette.ColorRole.Text: theme.text, QPalette.ColorRole.Button: theme.button_bg,
        QPalette.ColorRole.ButtonText: theme.text, QPalette.ColorRole.Highlight: theme.accent,
        QPalette.ColorRole.HighlightedText: "#ffffff", QPalette.ColorRole.Link: theme.link,
        QPalette.ColorRole.ToolTipBase: theme.tooltip_bg, QPalette.ColorRole.ToolTipText: theme.tooltip_text,
        QPalette.ColorRole.PlaceholderText: theme.faint, QPalette.ColorRole.Mid: theme.border,
        QPalette.ColorRole.Midlight: theme.border, QPalette.ColorRole.Light: theme.surface,
        QPalette.ColorRole.Dark: theme.input_border, QPalette.ColorRole.Shadow: theme.input_border,
        QPalette.ColorRole.BrightText: theme.error_text,
    }
    for role, color in roles.items():
        pal.setColor(role, QColor(color))
    for role in (QPalette.ColorRole.WindowText, QPalette.ColorRole.Text, QPalette.ColorRole.ButtonText):
        pal.setColor(QPalette.ColorGroup.Disabled, role, QColor(theme.faint))
    return pal


def apply_theme(setting: str) -> Theme:
    """Apply ``light`` / ``dark`` / ``system`` to the application; returns the theme now in use."""
    global _current
    theme = resolve(setting)
    _current = theme
    app = QApplication.instance()
    if isinstance(app, QApplication):
        if app.style().name().lower() != "fusion":
            app.setStyle("Fusion")
        font = app.font()
        if font.pointSizeF() < 10:
            font.setPointSizeF(10)
            font.setHintingPreference(QFont.HintingPreference.PreferNoHinting)
            app.setFont(font)
        app.setPalette(palette(theme))
        app.setStyleSheet(stylesheet(theme))
    return theme


def repolish(w: QWidget) -> None:
    """Re-apply the stylesheet after an object name or dynamic property that it selects on has changed."""
    w.style().unpolish(w)
    w.style().polish(w)
