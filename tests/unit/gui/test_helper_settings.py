"""Settings → Helper machines: add (LAN only unless confirmed; the RPC warning shown when LAN mode is turned on),
test the connection against a real ``rpc-server`` (the relay's version check, off the GUI thread), remove."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from e2e.test_rpc import Helper, helpers  # noqa: F401  (the fixture: two real rpc-server helpers)
from PySide6.QtWidgets import QMessageBox

from localchat.gui.dialogs import SettingsDialog
from localchat.settings import Settings


@pytest.fixture
def boxes(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[str]]:
    shown: dict[str, list[str]] = {"warning": [], "question": []}
    answers = [QMessageBox.StandardButton.No, QMessageBox.StandardButton.Yes]
    monkeypatch.setattr(QMessageBox, "warning", lambda _p, _t, text, *a: shown["warning"].append(text))

    def question(_p, _t, text, *a):  # type: ignore[no-untyped-def]
        shown["question"].append(text)
        return answers.pop(0)

    monkeypatch.setattr(QMessageBox, "question", question)
    return shown


def test_add_confirm_public_and_remove(qtbot, boxes: dict[str, list[str]]) -> None:
    dlg = SettingsDialog(Settings())
    qtbot.addWidget(dlg)
    assert dlg.helper_list() == [] and dlg.result_settings().helpers == []  # off by default
    for hostile, says in [("evil.example:1", "IP address"), ("x" * 5000, "not a helper address"),
                          ("10.0.0.1:70000", "port must be")]:
        dlg.helper_input.setText(hostile)
        dlg.add_helper()
        assert says in dlg.helper_status.text() and dlg.helper_list() == []
    assert boxes["warning"] == []

    dlg.helper_input.setText("192.168.1.20:50052")
    dlg.add_helper()
    assert dlg.helper_list() == ["192.168.1.20:50052"]
    assert len(boxes["warning"]) == 1 and "unauthenticated and unencrypted" in boxes["warning"][0]
    dlg.helper_input.setText("10.0.0.5:50052")
    dlg.add_helper()
    assert len(boxes["warning"]) == 1  # once, when LAN mode was turned on

    dlg.helper_input.setText("8.8.8.8:50052")
    dlg.add_helper()  # the user says No
    assert "8.8.8.8:50052" not in dlg.helper_list() and "not added" in dlg.helper_status.text()
    dlg.helper_input.setText("8.8.8.8:50052")
    dlg.add_helper()  # …then Yes
    chosen = dlg.result_settings()
    assert chosen.helpers == ["192.168.1.20:50052", "10.0.0.5:50052", "8.8.8.8:50052"]
    assert chosen.helpers_allow_public and len(boxes["question"]) == 2

    dlg.helpers.setCurrentRow(0)
    dlg.remove_helper()
    assert dlg.result_settings().helpers == ["10.0.0.5:50052", "8.8.8.8:50052"]


def test_test_connection_asks_a_real_rpc_server_and_names_an_unreachable_one(qtbot, boxes: dict[str, list[str]],
                                                                              helpers: list[Helper],  # noqa: F811
                                                                              tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"127.0.0.1:{s.getsockname()[1]}"  # nothing listens there once closed
    dlg = SettingsDialog(Settings(helpers=[helpers[0].peer.endpoint, dead]))
    qtbot.addWidget(dlg)
    dlg.helpers.setCurrentRow(0)
    dlg.test_helpers()
    qtbot.waitUntil(lambda: dlg.testing.done, timeout=30_000)
    assert f"{helpers[0].peer.endpoint}: rpc-server, RPC protocol" in dlg.helper_status.text()
    dlg.helpers.setCurrentRow(1)
    dlg.test_helpers()
    qtbot.waitUntil(lambda: dlg.testing.done, timeout=30_000)
    assert dlg.helper_status.text().startswith(f"cannot reach helper {dead}")
