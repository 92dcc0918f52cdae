"""The PySide6 desktop app. Importing any part of it first applies :mod:`localchat.gui.qtfix`."""

from localchat.gui import qtfix as _qtfix

_qtfix.install()
