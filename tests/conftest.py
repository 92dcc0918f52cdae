"""Shared fixtures: every test gets its own LOCALCHAT_HOME; the starter model is fetched once per machine."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from localchat.core.models.starter import ensure_starter_model
from localchat.paths import machine_cache_dir


@pytest.fixture(autouse=True)
def isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    # lock_environment() writes os.environ directly (as the app does): give every test a pristine environment
    saved = dict(os.environ)
    os.environ.pop("LOCALCHAT_USER_OFFLINE", None)
    home = tmp_path / "home"
    monkeypatch.setenv("LOCALCHAT_HOME", str(home))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    yield home
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture(scope="session")
def starter_model() -> Path:
    """The real SmolLM2-135M-Instruct GGUF (cached per machine by `make model`)."""
    return ensure_starter_model(machine_cache_dir())
