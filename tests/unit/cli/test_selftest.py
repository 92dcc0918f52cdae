"""``localchat --self-test`` (what the frozen build's smoke test runs): the starter answers directly and through the
local API on a loopback port of its own, and says so in its JSON."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.slow
def test_self_test_answers_directly_and_through_the_local_api(tmp_path: Path, starter_model: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "LOCALCHAT_HOME": str(tmp_path),
           "LOCALCHAT_STARTER_MODEL": str(starter_model), "LOCALCHAT_ISOLATION": "auto"}
    run = subprocess.run([sys.executable, "-m", "localchat", "--self-test"], capture_output=True, text=True,
                         timeout=300, env=env)
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    assert report["ok"] and report["answered"] and report["api"] is True
    assert "Traceback" not in run.stderr
    assert not any(p.name.startswith("api-key") for p in tmp_path.rglob("*"))  # the check's key is never written
