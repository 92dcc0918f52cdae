"""Work-around for a PySide6 reference-count bug: ``SignalInstance.emit`` returns ``True`` without a reference.

PySide6 6.12.0 (6.11.3 is fine) drops one reference to ``True`` on every ``signal.emit(...)`` made from Python. On
CPython before 3.12, where ``True`` is not immortal, about a thousand emits — one streamed answer, one model
download's progress — bring its count to zero and the interpreter aborts ("bool_dealloc: deallocating True or
False"). The bug is detected, not assumed from a version number: when one emit costs ``True`` a reference, ``emit``
is wrapped to give it back. On a fixed PySide6 nothing is patched.
"""

from __future__ import annotations

import ctypes
import logging
import sys
from typing import Any

log = logging.getLogger(__name__)
_PROBES = 3


def emit_leaks_true() -> bool:
    """Whether ``SignalInstance.emit`` drops a reference to ``True`` in this PySide6."""
    from PySide6.QtCore import QObject, Signal

    class _Probe(QObject):
        ping = Signal()

    probe = _Probe()
    before = sys.getrefcount(True)
    for _ in range(_PROBES):
        probe.ping.emit()
    leaked = before - sys.getrefcount(True) >= _PROBES
    probe.deleteLater()
    return leaked


def install() -> bool:
    """Wrap ``SignalInstance.emit`` when it leaks; returns whether it did. Idempotent."""
    from PySide6 import __version__ as pyside_version
    from PySide6.QtCore import SignalInstance

    if getattr(SignalInstance.emit, "_localchat_fix", False) or not emit_leaks_true():
        return False  # already wrapped, or a PySide6 without the bug (or an immortal True, Python 3.12+)
    original = SignalInstance.emit
    incref = ctypes.pythonapi.Py_IncRef
    incref.argtypes = [ctypes.py_object]
    incref.restype = None

    def emit(self: Any, *args: Any) -> Any:
        result = original(self, *args)
        incref(True)  # the reference PySide6 forgot to return with its result
        return result

    emit._localchat_fix = True  # type: ignore[attr-defined]
    SignalInstance.emit = emit  # type: ignore[method-assign]
    log.info("PySide6 %s: SignalInstance.emit leaks a reference to True; compensating", pyside_version)
    return True
