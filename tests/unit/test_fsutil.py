"""The shared file helpers: an atomic write leaves the old or the new file, and a damaged file is set aside
beside itself without ever replacing an earlier one."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from localchat.fsutil import aside_name, atomic_write_text


def test_atomic_write_replaces_whole_and_leaves_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "state.json"
    atomic_write_text(target, "old")
    atomic_write_text(target, "new")
    assert target.read_text() == "new"
    assert sorted(p.name for p in target.parent.iterdir()) == ["state.json"]


def test_a_failed_write_keeps_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "state.json"
    atomic_write_text(target, "old")

    def full(*_a: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError):
        atomic_write_text(target, "new")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]


def test_aside_names_never_collide(tmp_path: Path) -> None:
    target = tmp_path / "history.db"
    seen = set()
    for _ in range(3):
        name = aside_name(target)
        assert name.parent == tmp_path and name.name.startswith("history.db.corrupt-")
        name.write_text("x")
        seen.add(name)
    assert len(seen) == 3
    rejected = aside_name(tmp_path / "library", "rejected", ".json")
    assert rejected.name.startswith("library.rejected-") and rejected.suffix == ".json"
