"""A machine with no model at all: the window opens on a welcome that offers the catalogue and Import, and nothing
is fetched, started or connected on the way."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtCore import Qt

from localchat.context import open_context
from localchat.core.privacy.audit import AuditGuard
from localchat.errors import DownloadError
from localchat.gui.main_window import MainWindow


def test_no_model_opens_the_welcome_without_fetching(qtbot, isolated_home: Path, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOCALCHAT_MACHINE_CACHE", str(tmp_path / "empty-machine-cache"))
    monkeypatch.setenv("LOCALCHAT_STARTER_MODEL", "")
    ctx = open_context(isolated_home)
    with pytest.raises(DownloadError, match="not on this machine"):
        ctx.ensure_starter()  # what launch() tries: no pip, no download
    assert not (tmp_path / "empty-machine-cache").exists() or not any((tmp_path / "empty-machine-cache").iterdir())
    guard = AuditGuard(offline=True).install()
    w = MainWindow(ctx, isolation="auto")
    qtbot.addWidget(w)
    w.show()
    try:
        empty = w.chat.empty
        qtbot.waitUntil(lambda: empty.isVisible(), timeout=5000)
        assert empty.title.text() == "Welcome to localchat" and empty.welcome.isVisible()
        assert not empty.holder.isVisible()  # no suggestions to send to a model that is not there
        assert not w.bridge.driver.client.alive  # no model: no worker, no llama.cpp
        qtbot.mouseClick(empty.browse_button, Qt.MouseButton.LeftButton)
        assert w.pages.currentIndex() == 1
        assert list(guard.events) == []  # no Python network call was even attempted
    finally:
        w.shutdown()
        guard.uninstall()
