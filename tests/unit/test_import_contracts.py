"""The layer contracts hold, and the Qt contract really catches a violation (proved on a copy of the tree)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint(cwd: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(cwd))
    return subprocess.run([str(LINT_IMPORTS), "--no-cache"], cwd=cwd, capture_output=True, text=True, env=env,
                          timeout=300)


def test_contracts_kept() -> None:
    proc = lint(ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "core imports no Qt KEPT" in proc.stdout


def test_contract_fails_when_core_imports_pyside6(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "localchat", tmp_path / "localchat", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    (tmp_path / "localchat" / "core" / "chat" / "sneaky.py").write_text("from PySide6 import QtCore\n")
    proc = lint(tmp_path)
    assert proc.returncode != 0
    assert "core imports no Qt BROKEN" in proc.stdout
    assert "localchat.core.chat.sneaky -> PySide6" in proc.stdout
