"""The "Helper machines" setting (LAN mode): off by default, LAN addresses only unless confirmed, bad values in one
line, and a damaged entry in the file never stops the app from starting."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from localchat.errors import SettingsError
from localchat.settings import Settings, SettingsFile


def test_off_by_default_and_lan_helpers_round_trip(tmp_path: Path) -> None:
    assert Settings().helpers == [] and Settings().helper_peers() == []
    f = SettingsFile(tmp_path / "settings.json")
    s = Settings(helpers=["192.168.1.20:50052", "[fd00::2]:50052"])
    f.save(s)
    loaded = f.load()
    assert loaded.helpers == s.helpers
    assert [p.endpoint for p in loaded.helper_peers()] == ["192.168.1.20:50052", "[fd00::2]:50052"]


@pytest.mark.parametrize(("helpers", "says"), [
    (["8.8.8.8:50052"], "not a LAN address"),
    (["helper.local:50052"], "IP address"),
    (["192.168.1.20:50052", "192.168.1.20:50052"], "listed twice"),
    (["192.168.1.20:0"], "port must be"),
    (["x" * 10_000], "not a helper address"),
    ("192.168.1.20:50052", "list of HOST:PORT"),
    ([1], "list of HOST:PORT"),
    ([f"10.0.0.{i}:1" for i in range(17)], "at most 16"),
])
def test_bad_helpers_are_refused_in_one_line(helpers: object, says: str) -> None:
    with pytest.raises(SettingsError) as err:
        Settings(helpers=helpers).validate()  # type: ignore[arg-type]
    assert says in str(err.value) and "\n" not in str(err.value) and len(str(err.value)) < 300


def test_a_public_helper_is_kept_only_when_confirmed(tmp_path: Path) -> None:
    Settings(helpers=["8.8.8.8:50052"], helpers_allow_public=True).validate()
    path = tmp_path / "settings.json"
    path.write_text(json.dumps({"schema_version": 1, "helpers": ["8.8.8.8:50052"]}))
    f = SettingsFile(path)
    assert f.load().helpers == [] and f.recovered_from is not None  # set aside, defaults: nothing is lost
