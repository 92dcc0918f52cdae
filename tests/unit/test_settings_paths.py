"""Settings survive corruption; LOCALCHAT_HOME keeps everything under one folder."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest

from localchat.context import open_context
from localchat.errors import SettingsError
from localchat.paths import Paths
from localchat.settings import SCHEMA_VERSION, Settings, SettingsFile


def test_roundtrip_atomic(tmp_path: Path) -> None:
    sf = SettingsFile(tmp_path / "settings.json")
    s = Settings(temperature=0.3, n_ctx=8192, theme="dark")
    sf.save(s)
    assert sf.load() == s
    assert json.loads(sf.path.read_text())["schema_version"] == SCHEMA_VERSION
    assert [p.name for p in tmp_path.iterdir()] == ["settings.json"]  # no temp files left behind


@pytest.mark.parametrize("content", ["{not json", "[1, 2]", '{"schema_version": 99}', '{"temperature": -4}',
                                     '{"theme": 3}', '{"models_dir": 5}', '{"n_ctx": Infinity}', '{"n_ctx": 1e300}',
                                     '{"n_threads": NaN}', '{"system_prompt": 5}', '{"temperature": NaN}',
                                     '{"max_tokens": "512"}', '{"n_ctx": 1000000000}', '{"window": []}',
                                     '{"require_isolation": "yes"}', '{"last_model": 3}'])
def test_corrupt_file_is_backed_up_and_defaults_used(tmp_path: Path, content: str,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "settings.json"
    path.write_text(content)
    sf = SettingsFile(path)
    with caplog.at_level(logging.WARNING):
        s = sf.load()
    assert s == Settings()
    assert sf.recovered_from is not None and sf.recovered_from.read_text() == content
    assert not path.exists()
    assert "started from defaults" in caplog.text


def test_unknown_keys_are_ignored(tmp_path: Path) -> None:
    path = tmp_path / "settings.json"
    path.write_text(json.dumps({"schema_version": 1, "temperature": 0.2, "from_the_future": True}))
    assert SettingsFile(path).load().temperature == 0.2


def test_invalid_values_are_refused_on_save(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="top_p"):
        SettingsFile(tmp_path / "s.json").save(Settings(top_p=0))


BAD_VALUES = [
    ({"models_dir": 5}, "models_dir must be text or null, not 5"),
    ({"models_dir": ""}, "models_dir must be a folder path"),
    ({"n_ctx": float("inf")}, "context length must be a whole number of tokens, not inf"),
    ({"n_ctx": 1e300}, "context length must be a whole number of tokens"),
    ({"n_ctx": 0}, "context length must be from 256"),
    ({"n_ctx": 10**9}, "context length must be from 256 to 16777216 tokens, not 1000000000"),
    ({"n_threads": float("nan")}, "threads must be a whole number, not nan"),
    ({"n_threads": 0}, "threads must be from 1"),
    ({"system_prompt": 5}, "system_prompt must be text, not int"),
    ({"system_prompt": "\udcff"}, "system_prompt is not valid Unicode"),
    ({"temperature": float("nan")}, "temperature must be a finite number"),
    ({"max_tokens": 0}, "max_tokens must be at least 1"),
    ({"n_gpu_layers": 1.5}, "GPU layers must be -1"),
    ({"require_isolation": 1}, "require_isolation must be true or false"),
    ({"last_conversation": "7"}, "last_conversation must be a whole number"),
]


@pytest.mark.parametrize(("values", "message"), BAD_VALUES, ids=[str(v) for v, _ in BAD_VALUES])
def test_values_that_would_break_later_are_refused_in_one_line(values: dict[str, object], message: str) -> None:
    with pytest.raises(SettingsError, match=message.replace("(", r"\(")) as err:
        Settings.from_dict(values)
    assert "\n" not in str(err.value)


def test_localchat_home_isolates_everything(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "h"
    monkeypatch.setenv("LOCALCHAT_HOME", str(home))
    p = Paths.default().ensure()
    for d in (p.config_dir, p.data_dir, p.models_dir, p.cache_dir, p.log_dir):
        assert d.is_dir() and home.resolve() in d.parents
    ctx = open_context()
    ctx.settings.temperature = 0.1
    ctx.save_settings()
    assert (home / "config" / "settings.json").is_file()
    assert sorted(os.listdir(home)) == ["cache", "config", "data", "logs", "models"]
