"""Emitting signals from Python never costs ``True`` a reference (PySide6 6.12.0 did, and aborted the app)."""

from __future__ import annotations

import sys

from PySide6.QtCore import QObject, Signal

import localchat.gui  # noqa: F401 - applies the fix
from localchat.gui import qtfix


class _Emitter(QObject):
    text = Signal(str)
    flag = Signal(bool)


def test_thousands_of_emits_keep_true_alive() -> None:
    e = _Emitter()
    got: list[str] = []
    e.text.connect(got.append)
    before = sys.getrefcount(True)
    for i in range(3000):
        assert e.text.emit(str(i)) is True
        e.flag.emit(i % 2 == 0)
    assert abs(sys.getrefcount(True) - before) < 50  # (6.12.0 unpatched: -6000, then a fatal error)
    assert len(got) == 3000 and not qtfix.emit_leaks_true()
    assert qtfix.install() is False  # idempotent: already wrapped or not needed
