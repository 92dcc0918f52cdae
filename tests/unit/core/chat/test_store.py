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


def test_streaming_checkpoint_then_final_state(tmp_path: Path) -> None:
    s = ConversationStore(tmp_path / "c.db")
    c = s.create()
    s.add_message(c.id, "user", "q")
    row = s.add_message(c.id, "assistant", "par", status="stopped")
    s.update_message(row.id, content="partial answer", reasoning="thinking")
    assert (s.messages(c.id)[-1].content, s.messages(c.id)[-1].status) == ("partial answer", "stopped")
    s.update_message(row.id, content="partial answer, done", status="complete", stats={"completion_tokens": 4})
    last = s.messages(c.id)[-1]
    assert (last.content, last.reasoning, last.status, last.stats) == (
        "partial answer, done", "thinking", "complete", {"completion_tokens": 4})
    with pytest.raises(ValueError):
        s.update_message(row.id, status="weird")
    with pytest.raises(KeyError):
        s.update_message(9999, content="x")
    s.close()
    reopened = ConversationStore(tmp_path / "c.db")  # a checkpoint survives the app going away
    assert reopened.messages(c.id)[-1].content == "partial answer, done"


def test_search_treats_wildcards_literally(tmp_path: Path) -> None:
    s = ConversationStore(tmp_path / "c.db")
    a = s.create("Discount 100% off")
    b = s.create("snake_case names")
    s.create("plain")
    assert [c.id for c in s.conversations("100%")] == [a.id]
    assert [c.id for c in s.conversations("e_c")] == [b.id]
    assert s.conversations("%") == [s.get(a.id)]


def test_markdown_export_includes_the_system_prompt(tmp_path: Path) -> None:
    s = ConversationStore(tmp_path / "c.db")
    c = s.create("T", model="m", system_prompt="Be brief.\nUse lists.")
    s.add_message(c.id, "user", "hi")
    md = s.export_markdown(c.id)
    assert "> **System prompt:** Be brief.\n> Use lists." in md and "## User" in md
