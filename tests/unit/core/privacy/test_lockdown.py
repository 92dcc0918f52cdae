"""Environment lockdown: the Hub pinned offline (variable and huggingface_hub's copy), Qt's network modules blocked,
every measure listed with its value."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import threading

import pytest

from localchat.core.privacy.lockdown import LOCKDOWN_ENV, allow_hub_download, lock_environment, lockdown_items


def test_lockdown_and_download_scope(monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub.constants as hc

    monkeypatch.setattr(hc, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(hc, "HF_HUB_DISABLE_TELEMETRY", False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")  # the user did not ask for offline mode; localchat still locks down
    env = lock_environment()
    assert env["HF_HUB_OFFLINE"] == "1" and env["HF_HUB_DISABLE_TELEMETRY"] == "1"
    assert env["PIP_DISABLE_PIP_VERSION_CHECK"] == "1"
    # huggingface_hub was imported before the lockdown: its copies are corrected too
    assert hc.HF_HUB_OFFLINE is True and hc.HF_HUB_DISABLE_TELEMETRY is True
    with allow_hub_download():
        assert os.environ["HF_HUB_OFFLINE"] == "0" and hc.HF_HUB_OFFLINE is False
    assert os.environ["HF_HUB_OFFLINE"] == "1" and hc.HF_HUB_OFFLINE is True


def test_overlapping_downloads_restore_once_the_last_ends(monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub.constants as hc

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    lock_environment()
    first_in, second_done = threading.Event(), threading.Event()
    seen: list[bool] = []

    def first() -> None:
        with allow_hub_download():
            first_in.set()
            second_done.wait(5)
            seen.append(hc.HF_HUB_OFFLINE)  # the other download ended: this one is still online

    t = threading.Thread(target=first)
    t.start()
    first_in.wait(5)
    with allow_hub_download():
        pass
    second_done.set()
    t.join(5)
    assert seen == [False]
    assert os.environ["HF_HUB_OFFLINE"] == "1" and hc.HF_HUB_OFFLINE is True


def test_user_offline_mode_refuses_downloads(monkeypatch: pytest.MonkeyPatch) -> None:
    from localchat.errors import DownloadError

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # set by the user before start
    lock_environment()
    with pytest.raises(DownloadError, match="offline mode is on"), allow_hub_download():
        pass
    items = {i["name"]: i["value"] for i in lockdown_items()}
    assert items["Offline mode chosen by you (HF_HUB_OFFLINE=1 at start)"] == "yes"


def test_qt_network_cannot_be_imported_after_lockdown() -> None:
    # a fresh interpreter: this test process may already hold Qt modules
    code = ("from localchat.core.privacy.lockdown import lock_environment, lockdown_items; lock_environment()\n"
            "import PySide6.QtWidgets\n"
            "try:\n    import PySide6.QtNetwork\nexcept ImportError as e:\n    print('blocked:', e)\n"
            "items = {i['name']: i['value'] for i in lockdown_items()}\n"
            "print(items['Qt network modules']); print(items['libQt6Network in the app process'])\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith("blocked: PySide6.QtNetwork is blocked by localchat's network lockdown")
    assert lines[1:] == ["blocked: cannot be imported", "not loaded"]


def test_lockdown_items_list_every_variable_with_its_value() -> None:
    lock_environment()
    items = lockdown_items()
    values = {i["name"]: i["value"] for i in items}
    for name, value in LOCKDOWN_ENV.items():
        assert values[name] == value
    assert values["Update checks"] == "none"
    assert all(i["effect"] for i in items)
    with pytest.raises(ImportError, match="blocked"):
        importlib.import_module("PySide6.QtNetwork")
