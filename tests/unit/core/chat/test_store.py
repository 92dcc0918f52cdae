"""The SQLite conversation store."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from localchat.core.chat.store import ConversationStore


def test_roundtrip_and_wal(tmp_path: Path) -> None:
    s = ConversationStore(tmp_path / "c.db")
    c = s.create("First", model="m", system_prompt="be brief", sampling={"temperature": 0.2})
    s.add_message(c.id, "user", "hello")
    s.add_message(c.id, "assistant", "hi there", reasoning="greet back", stats={"completion_tokens": 3})
    s.add_message(c.id, "assistant", "partial", status="stopped")
    s.close()
    s2 = ConversationStore(tmp_path / "c.db")
    assert s2._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    msgs = s2.messages(c.id)
    assert [(m.role, m.content, m.status) for m in msgs] == [("user", "hello", "complete"),
                                                             ("assistant", "hi there", "complete"),
                                                             ("assistant", "partial", "stopped")]
    assert msgs[1].reasoning == "greet back" and msgs[1].stats == {"completion_tokens": 3}
    conv = s2.get(c.id)
    assert conv is not None and conv.sampling == {"temperature": 0.2} and conv.system_prompt == "be brief"


def test_search_delete_undo_purge(tmp_path: Path) -> None:
    s = ConversationStore(tmp_path / "c.db")
    a = s.create("About boats")
    b = s.create("Other")
    s.add_message(b.id, "user", "tell me about LIGHTHOUSES")
    assert [c.title for c in s.conversations("lighthouse")] == ["Other"]
    assert [c.title for c in s.conversations("boats")] == ["About boats"]
    s.delete(a.id)
    assert [c.id for c in s.conversations()] == [b.id]
    s.undelete(a.id)
    assert len(s.conversations()) == 2
    s.delete(a.id)
    s.purge_deleted()
    s.undelete(a.id)
    assert s.get(a.id) is None


def test_truncate_for_regenerate(tmp_path: Path) -> None:
    s = ConversationStore(tmp_path / "c.db")
    c = s.create()
    ids = [s.add_message(c.id, r, t).id for r, t in (("user", "q1"), ("assistant", "a1"), ("user", "q2"),
                                                      ("assistant", "a2"))]
    s.delete_messages_from(c.id, ids[2])
    assert [m.content for m in s.messages(c.id)] == ["q1", "a1"]


def test_corrupt_file_moved_aside(tmp_path: Path) -> None:
    db = tmp_path / "c.db"
    db.write_bytes(b"garbage" * 1000)
    s = ConversationStore(db)
    assert s.recovered_from is not None and s.recovered_from.read_bytes().startswith(b"garbage")
    assert s.conversations() == []
    s.create("works again")
    assert len(s.conversations()) == 1


def test_bad_status_rejected(tmp_path: Path) -> None:
    s = ConversationStore(tmp_path / "c.db")
    c = s.create()
    with pytest.raises(ValueError):
        s.add_message(c.id, "assistant", "x", status="weird")
    with pytest.raises(sqlite3.IntegrityError):
        s.add_message(9999, "user", "orphan")
