"""The CI flag that turns isolation skips into failures (see tests/conftest.py)."""

from __future__ import annotations

import os

import pytest

REQUIRE_ISOLATION = os.environ.get("LOCALCHAT_TEST_REQUIRE_ISOLATION") == "1"


def skip_or_fail(reason: str) -> None:
    """Skip, or fail under the CI flag: for tests that find out at run time that isolation is unavailable."""
    if REQUIRE_ISOLATION:
        pytest.fail(f"LOCALCHAT_TEST_REQUIRE_ISOLATION=1: {reason}")
    pytest.skip(reason)
