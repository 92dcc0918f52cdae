"""Line icons drawn with QPainter on a 24-unit grid (Lucide-like strokes), tinted per theme.

Drawn in code rather than loaded from SVG so the app needs no QtSvg module and no icon theme from the desktop,
and every icon follows the palette. Built on first use (never at import time) and cached per name, colour, size.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from PySide6.QtCore import QPointF, QRectF, QSize, Qt
from PySide6.QtGui import QColor, QIcon, QPainter, QPainterPath, QPen, QPixmap

from localchat.gui.theme import resources_dir

Draw = Callable[[QPainter], None]
_cache: dict[tuple[str, str, int, float], QIcon] = {}


def _path(*points: tuple[float, float], close: bool = False) -> QPainterPath:
    p = QPainterPath(QPointF(*points[0]))
    for pt in points[1:]:
        p.lineTo(QPointF(*pt))
    if close:
        p.closeSubpath()
    return p


def _chat(p: QPainter) -> None:
    path = QPainterPath()
    path.addRoundedRect(QRectF(3, 4, 18, 13), 4, 4)
    p.drawPath(path)
    p.drawPath(_path((8, 17), (7, 21), (12.5, 17)))


def _models(p: QPainter) -> None:  # a cube
    p.drawPath(_path((12, 2.5), (20.5, 7), (20.5, 17), (12, 21.5), (3.5, 17), (3.5, 7), close=True))
    p.drawPath(_path((3.5, 7), (12, 11.5), (20.5, 7)))
    p.drawLine(QPointF(12, 11.5), QPointF(12, 21.5))


def _shield(p: QPainter) -> None:
    path = QPainterPath(QPointF(12, 2.5))
    path.lineTo(20, 5.5)
    path.lineTo(20, 11)
    path.cubicTo(20, 16, 16.5, 19.5, 12, 21.5)
    path.cubicTo(7.5, 19.5, 4, 16, 4, 11)
    path.lineTo(4, 5.5)
    path.closeSubpath()
    p.drawPath(path)


def _shield_check(p: QPainter) -> None:
    _shield(p)
    p.drawPath(_path((8.5, 12), (11, 14.5), (15.5, 9.5)))


def _settings(p: QPainter) -> None:  # a gear: eight teeth around a ring
    path = QPainterPath()
    teeth = 8
    for i in range(teeth * 4):
        a = (i / (teeth * 4)) * 2 * math.pi - math.pi / 2
        r = 9.5 if (i % 4) in (1, 2) else 7.2
        pt = QPointF(12 + r * math.cos(a), 12 + r * math.sin(a))
        if i == 0:
            path.moveTo(pt)
        else:
            path.lineTo(pt)
    path.closeSubpath()
    p.drawPath(path)
    p.drawEllipse(QPointF(12, 12), 3, 3)




def _new_chat(p: QPainter) -> None:
    path = QPainterPath(QPointF(12, 4))
    path.lineTo(7, 4)
    path.quadTo(3, 4, 3, 8)
    path.lineTo(3, 17)
    path.quadTo(3, 21, 7, 21)
    path.lineTo(16, 21)
    path.quadTo(20, 21, 20, 17)
    path.lineTo(20, 12)
    p.drawPath(path)
    p.drawPath(_path((18.5, 2.5), (21.5, 5.5), (13, 14), (9.5, 14.5), (10, 11), close=True))


def _search(p: QPainter) -> None:
    p.drawEllipse(QPointF(10.5, 10.5), 6.5, 6.5)
    p.drawLine(QPointF(15.5, 15.5), QPointF(20.5, 20.5))


def _copy(p: QPainter) -> None:
    p.drawRoundedRect(QRectF(8.5, 8.5, 12.5, 12.5), 2.5, 2.5)
    path = QPainterPath(QPointF(5, 15.5))
    path.quadTo(3, 15.5, 3, 13.5)
    path.lineTo(3, 5)
    path.quadTo(3, 3, 5, 3)
    path.lineTo(13.5, 3)
    path.quadTo(15.5, 3, 15.5, 5)
    p.drawPath(path)


def _check(p: QPainter) -> None:
    p.drawPath(_path((4.5, 12.5), (9.5, 17.5), (19.5, 6.5)))


def _refresh(p: QPainter) -> None:
    path = QPainterPath()
    path.arcMoveTo(QRectF(4, 4, 16, 16), 60)
    path.arcTo(QRectF(4, 4, 16, 16), 60, 300)
    p.drawPath(path)
    p.drawPath(_path((16, 3), (16.2, 7.4), (11.8, 7.6)))


def _edit(p: QPainter) -> None:
    p.drawPath(_path((16.5, 3.5), (20.5, 7.5), (8.5, 19.5), (3.5, 20.5), (4.5, 15.5), close=True))
    p.drawLine(QPointF(14, 6), QPointF(18, 10))


def _trash(p: QPainter) -> None:
    p.drawLine(QPointF(3.5, 6.5), QPointF(20.5, 6.5))
    p.drawPath(_path((9, 6.5), (9, 3.5), (15, 3.5), (15, 6.5)))
    p.drawPath(_path((5.5, 6.5), (6.5, 20.5), (17.5, 20.5), (18.5, 6.5)))
    p.drawLine(QPointF(10, 10.5), QPointF(10, 16.5))
    p.drawLine(QPointF(14, 10.5), QPointF(14, 16.5))


def _send(p: QPainter) -> None:  # arrow up
    p.drawLine(QPointF(12, 19.5), QPointF(12, 5))
    p.drawPath(_path((5.5, 11.5), (12, 5), (18.5, 11.5)))


def _stop(p: QPainter) -> None:
    color = p.pen().color()
    p.setPen(Qt.PenStyle.NoPen)
    p.setBrush(color)
    p.drawRoundedRect(QRectF(6.5, 6.5, 11, 11), 2, 2)


def _chevron_right(p: QPainter) -> None:
    p.drawPath(_path((9, 5.5), (15.5, 12), (9, 18.5)))


def _chevron_down(p: QPainter) -> None:
    p.drawPath(_path((5.5, 9), (12, 15.5), (18.5, 9)))


def _chevron_up(p: QPainter) -> None:
    p.drawPath(_path((5.5, 15), (12, 8.5), (18.5, 15)))


def _more(p: QPainter) -> None:
    color = p.pen().color()
    p.setPen(Qt.PenStyle.NoPen)
    p.setBrush(color)
    for x in (5, 12, 19):
        p.drawEllipse(QPointF(x, 12), 1.8, 1.8)


def _sliders(p: QPainter) -> None:
    for y, x in ((6, 15), (12, 8), (18, 13)):
        p.drawLine(QPointF(3.5, y), QPointF(20.5, y))
        p.save()
        p.setBrush(p.pen().color())
        p.drawEllipse(QPointF(x, y), 2.2, 2.2)
        p.restore()


def _export(p: QPainter) -> None:
    p.drawLine(QPointF(12, 3.5), QPointF(12, 15))
    p.drawPath(_path((7, 10), (12, 15), (17, 10)))
    p.drawPath(_path((4, 15), (4, 20.5), (20, 20.5), (20, 15)))


def _warning(p: QPainter) -> None:
    p.drawPath(_path((12, 3), (21.5, 20), (2.5, 20), close=True))
    p.drawLine(QPointF(12, 9.5), QPointF(12, 14))
    p.drawPoint(QPointF(12, 17))




def _sparkle(p: QPainter) -> None:
    path = QPainterPath(QPointF(12, 3))
    path.quadTo(13, 11, 21, 12)
    path.quadTo(13, 13, 12, 21)
    path.quadTo(11, 13, 3, 12)
    path.quadTo(11, 11, 12, 3)
    p.drawPath(path)








DRAWINGS: dict[str, Draw] = {
    "chat": _chat, "models": _models, "network": _shield, "shield-check": _shield_check, "settings": _settings,
    "new-chat": _new_chat, "search": _search, "copy": _copy, "check": _check, "refresh": _refresh, "edit": _edit,
    "trash": _trash, "send": _send, "stop": _stop, "chevron-right": _chevron_right, "chevron-down": _chevron_down,
    "chevron-up": _chevron_up, "more": _more, "sliders": _sliders, "export": _export, "warning": _warning,
    "sparkle": _sparkle,
}


def pixmap(name: str, color: str | QColor, size: int = 20, dpr: float = 2.0, stroke: float = 1.9) -> QPixmap:
    pm = QPixmap(int(size * dpr), int(size * dpr))
    pm.fill(Qt.GlobalColor.transparent)
    pm.setDevicePixelRatio(dpr)
    p = QPainter(pm)
    p.setRenderHint(QPainter.RenderHint.Antialiasing)
    p.scale(size / 24, size / 24)
    pen = QPen(QColor(color), stroke, Qt.PenStyle.SolidLine, Qt.PenCapStyle.RoundCap, Qt.PenJoinStyle.RoundJoin)
    p.setPen(pen)
    p.setBrush(Qt.BrushStyle.NoBrush)
    DRAWINGS[name](p)
    p.end()
    return pm


def icon(name: str, color: str | QColor, size: int = 20, active: str | QColor | None = None) -> QIcon:
    """A QIcon of ``name`` in ``color``; ``active`` (if given) is used for the checked/selected state."""
    key = (name, f"{QColor(color).name()}/{QColor(active).name() if active else ''}", size, 2.0)
    cached = _cache.get(key)
    if cached is not None:
        return cached
    ic = QIcon()
    ic.addPixmap(pixmap(name, color, size), QIcon.Mode.Normal, QIcon.State.Off)
    if active is not None:
        ic.addPixmap(pixmap(name, active, size), QIcon.Mode.Normal, QIcon.State.On)
        ic.addPixmap(pixmap(name, active, size), QIcon.Mode.Selected, QIcon.State.Off)
    _cache[key] = ic
    return ic


APP_ICON_SIZES = (16, 24, 32, 48, 64, 128, 256, 512)


def app_icon() -> QIcon:
    """The application icon from resources/icons (PNG renderings of localchat.svg, one per size)."""
    key = ("app", "", 0, 0.0)
    cached = _cache.get(key)
    if cached is None:
        cached = QIcon()
        folder = resources_dir() / "icons"
        for size in APP_ICON_SIZES:
            f = folder / f"localchat-{size}.png"
            if f.exists():
                cached.addFile(str(f), QSize(size, size))
        if cached.isNull():
            cached = QIcon(str(folder / "localchat.png"))
        _cache[key] = cached
    return cached
