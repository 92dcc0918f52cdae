"""Shared fixtures: every test gets its own LOCALCHAT_HOME; the starter model is fetched once per machine.

Privacy regressions must fail, not hide: with ``LOCALCHAT_TEST_REQUIRE_ISOLATION=1`` (set by ``.ci/run``, which runs
as root where namespaces can be made) a skip of any test marked ``isolation`` or ``netns`` is turned into a failure,
whatever caused it (a skipif marker, a missing tool, or a worker that was not kernel-isolated).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from strict import REQUIRE_ISOLATION

from localchat.core.models.starter import ensure_starter_model
from localchat.paths import machine_cache_dir

_STRICT_MARKERS = ("isolation", "netns")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if REQUIRE_ISOLATION and report.skipped and any(item.get_closest_marker(m) for m in _STRICT_MARKERS):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = (f"LOCALCHAT_TEST_REQUIRE_ISOLATION=1: this isolation test may not skip here: {reason}")


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
    return ensure_starter_model(machine_cache_dir(), fetch=True)
