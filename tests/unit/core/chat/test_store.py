"""The SQLite conversation store."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from localchat.core.chat.store import ConversationStore, HistoryInUse
from localchat.errors import LocalChatError


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


# -- another program holding the database (issue 11 item 3) ---------------------------------------------------

_HOLDER = r"""
import sqlite3, sys
db = sqlite3.connect(sys.argv[1], isolation_level=None)
mode = sys.argv[2]
if mode == "rollback-exclusive":  # an old-style tool: rollback journal, BEGIN EXCLUSIVE
    db.execute("PRAGMA journal_mode=DELETE")
    db.execute("BEGIN EXCLUSIVE")
elif mode == "locking-mode-exclusive":  # keeps its lock until it closes
    db.execute("PRAGMA locking_mode=EXCLUSIVE")
    db.execute("BEGIN EXCLUSIVE")
    db.execute("INSERT INTO conversations (title, created, updated) VALUES ('from the other program', 0, 0)")
    db.execute("COMMIT")
elif mode == "writer":  # WAL: holds the write lock, readers still read
    db.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
sys.stdin.readline()
if db.in_transaction:
    db.execute("COMMIT")
db.close()
"""


class _Holder:
    """A separate process holding a lock on the database until :meth:`release`."""

    def __init__(self, path: Path, mode: str) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", _HOLDER, str(path), mode], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None and self.proc.stdout.readline().strip() == "locked"

    def release(self) -> None:
        self.proc.communicate("\n", timeout=30)  # closes the pipes too


@pytest.mark.parametrize("mode", ["rollback-exclusive", "locking-mode-exclusive"])
def test_locked_database_is_in_use_not_corrupt(tmp_path: Path, mode: str) -> None:
    db = tmp_path / "c.db"
    s = ConversationStore(db)
    c = s.create("keep me")
    s.add_message(c.id, "user", "hello")
    s.close()
    holder = _Holder(db, mode)
    try:
        with pytest.raises(HistoryInUse, match=r"in use by another program .* nothing was changed"):
            ConversationStore(db, busy_timeout=0.2)
        assert isinstance(HistoryInUse("x"), LocalChatError)
        assert sorted(p.name for p in tmp_path.iterdir() if "corrupt" in p.name) == []
        assert db.exists()
    finally:
        holder.release()
    again = ConversationStore(db)  # the program is gone: the history is all there
    assert again.recovered_from is None
    assert [m.content for m in again.messages(c.id)] == ["hello"]
    assert "keep me" in [x.title for x in again.conversations()]


def test_write_while_another_program_holds_the_write_lock(tmp_path: Path) -> None:
    db = tmp_path / "c.db"
    s = ConversationStore(db, busy_timeout=0.2)
    c = s.create("mine")
    holder = _Holder(db, "writer")
    try:
        assert [x.title for x in s.conversations()] == ["mine"]  # WAL: reading goes on
        with pytest.raises(HistoryInUse, match="in use by another program"):
            s.add_message(c.id, "user", "waits, then gives up")
    finally:
        holder.release()
    s.add_message(c.id, "user", "works again")
    assert [m.content for m in s.messages(c.id)] == ["works again"]


def test_unopenable_database_is_an_error_not_corruption(tmp_path: Path) -> None:
    db = tmp_path / "c.db"
    ConversationStore(db).close()
    blocker = tmp_path / "file-not-folder"
    blocker.write_text("x")
    with pytest.raises(LocalChatError, match="cannot create the folder for the chat history"):
        ConversationStore(blocker / "c.db")
    if os.geteuid() != 0:  # root reads anything: the permission case needs an ordinary user
        db.chmod(0)
        try:
            with pytest.raises(LocalChatError, match="cannot open the chat history"):
                ConversationStore(db)
        finally:
            db.chmod(0o644)
    assert not [p for p in tmp_path.iterdir() if "corrupt" in p.name]


def test_two_windows_share_one_history(tmp_path: Path) -> None:
    """Two ConversationStore objects on one file (two windows on one home) both write and see each other's."""
    db = tmp_path / "c.db"
    a, b = ConversationStore(db), ConversationStore(db)
    ca = a.create("from window A")
    cb = b.create("from window B")
    a.add_message(cb.id, "user", "A writes into B's chat")
    b.add_message(ca.id, "user", "B writes into A's chat")
    for s in (a, b):
        assert {c.title for c in s.conversations()} == {"from window A", "from window B"}
        assert [m.content for m in s.messages(ca.id)] == ["B writes into A's chat"]
        assert [m.content for m in s.messages(cb.id)] == ["A writes into B's chat"]


_WRITER = r"""
import sys
from pathlib import Path
from localchat.core.chat.store import ConversationStore
s = ConversationStore(Path(sys.argv[1]))
c = s.create(sys.argv[2])
for i in range(int(sys.argv[3])):
    s.add_message(c.id, "user", f"{sys.argv[2]} {i}")
"""


def test_processes_writing_at_once_lose_nothing(tmp_path: Path) -> None:
    db = tmp_path / "c.db"
    ConversationStore(db).close()
    procs = [subprocess.Popen([sys.executable, "-c", _WRITER, str(db), f"w{i}", "40"]) for i in range(4)]
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0, 0]
    s = ConversationStore(db)
    convs = s.conversations()
    assert sorted(c.title for c in convs) == ["w0", "w1", "w2", "w3"]
    assert all(len(s.messages(c.id)) == 40 for c in convs)
