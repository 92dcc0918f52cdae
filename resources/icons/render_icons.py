"""Render resources/icons/localchat.svg to PNGs (one per size) and the small UI images the stylesheet uses.

Run after changing the SVG or the chevron:  .venv/bin/python resources/icons/render_icons.py
(needs QtSvg, which the development install has; the app itself only loads the PNGs).
"""

from __future__ import annotations

import sys
from pathlib import Path

from PySide6.QtCore import QRectF, Qt
from PySide6.QtGui import QGuiApplication, QImage, QPainter
from PySide6.QtSvg import QSvgRenderer

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
SIZES = (16, 24, 32, 48, 64, 128, 256, 512)


def main() -> int:
    app = QGuiApplication.instance() or QGuiApplication(sys.argv[:1])
    renderer = QSvgRenderer(str(HERE / "localchat.svg"))
    for size in SIZES:
        img = QImage(size, size, QImage.Format.Format_ARGB32)
        img.fill(Qt.GlobalColor.transparent)
        p = QPainter(img)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
        renderer.render(p, QRectF(0, 0, size, size))
        p.end()
        img.save(str(HERE / f"localchat-{size}.png"))
    (HERE / "localchat.png").write_bytes((HERE / "localchat-256.png").read_bytes())  # packaging uses this name

    sys.path.insert(0, str(ROOT))
    from localchat.gui import icons
    from localchat.gui.theme import DARK, LIGHT

    for theme in (LIGHT, DARK):
        for name in ("chevron-down", "chevron-up"):
            icons.pixmap(name, theme.muted, 12, dpr=2.0, stroke=2.4).save(str(HERE / "ui" / f"{name}-{theme.name}.png"))
    del app
    print(f"rendered {len(SIZES)} app icon sizes and the UI images into {HERE}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
