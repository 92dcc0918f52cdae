"""Conversations and messages in SQLite (WAL), owned by one object that serialises access.

A corrupt database file is moved aside (``conversations.sqlite3.corrupt-<time>``) and a fresh one created; the
caller can tell the user through :attr:`ConversationStore.recovered_from`. Only damage counts as corrupt: a database
another program keeps locked past the busy timeout raises :class:`HistoryInUse` and is left as it is, and any other
error opening it (permissions, I/O) raises LocalChatError. Two windows on one home share the file safely (WAL, each
write waits up to the busy timeout for the other's). Messages are saved as they complete;
a stopped or failed answer is saved with its partial text and a status. A streaming answer can be checkpointed
(:meth:`ConversationStore.update_message`) under status ``stopped``, so even a killed app keeps what had streamed.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from localchat.errors import LocalChatError
from localchat.fsutil import aside_name

log = logging.getLogger(__name__)

BUSY_TIMEOUT = 5.0  # seconds a statement waits for another connection's lock
_BUSY, _LOCKED, _CORRUPT, _NOTADB = 5, 6, 11, 26  # SQLite's primary result codes (stable C API values)


class HistoryInUse(LocalChatError):
    """Another program holds a lock on the chat history for longer than the busy timeout."""


def _error_kind(exc: sqlite3.Error) -> str:
    """``busy`` (locked by someone else), ``corrupt`` (damaged or not a database) or ``other``."""
    code = getattr(exc, "sqlite_errorcode", None)  # Python 3.11+
    if code is not None:
        primary = code & 0xFF
        if primary in (_BUSY, _LOCKED):
            return "busy"
        if primary in (_CORRUPT, _NOTADB):
            return "corrupt"
        return "other"
    text = str(exc).lower()
    if "locked" in text or "busy" in text:
        return "busy"
    if "malformed" in text or "not a database" in text:
        return "corrupt"
    return "other"

SCHEMA = """
CREATE TABLE IF NOT EXISTS conversations (
    id INTEGER PRIMARY KEY, title TEXT NOT NULL, created REAL NOT NULL, updated REAL NOT NULL,
    model TEXT, system_prompt TEXT NOT NULL DEFAULT '', sampling TEXT NOT NULL DEFAULT '{}',
    deleted INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY, conversation_id INTEGER NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
    role TEXT NOT NULL, content TEXT NOT NULL, reasoning TEXT NOT NULL DEFAULT '',
    status TEXT NOT NULL DEFAULT 'complete', stats TEXT NOT NULL DEFAULT '{}', created REAL NOT NULL);
CREATE INDEX IF NOT EXISTS messages_by_conversation ON messages(conversation_id, id);
"""
STATUSES = ("complete", "stopped", "error")


@dataclass
class Message:
    id: int
    conversation_id: int
    role: str
    content: str
    reasoning: str = ""
    status: str = "complete"
    stats: dict[str, Any] = field(default_factory=dict)
    created: float = 0.0


@dataclass
class Conversation:
    id: int
    title: str
    created: float
    updated: float
    model: str | None = None
    system_prompt: str = ""
    sampling: dict[str, Any] = field(default_factory=dict)


class ConversationStore:
    """Raises :class:`HistoryInUse` (opening, or any call) while another program keeps the database locked for more
    than ``busy_timeout`` seconds, LocalChatError when it cannot be opened at all."""

    def __init__(self, path: Path, *, busy_timeout: float = BUSY_TIMEOUT) -> None:
        self.path = Path(path)
        self.busy_timeout = busy_timeout
        self.recovered_from: Path | None = None
        self._lock = threading.RLock()
        self._db = self._open()

    def _in_use(self) -> HistoryInUse:
        return HistoryInUse(f"the chat history {self.path} is in use by another program (it kept the database "
                            f"locked for more than {self.busy_timeout:g} s); close that program and try again — "
                            f"nothing was changed")

    @contextmanager
    def _using(self) -> Iterator[sqlite3.Connection]:
        """The connection, one thread at a time; a lock held elsewhere past the timeout becomes HistoryInUse."""
        with self._lock:
            try:
                yield self._db
            except sqlite3.OperationalError as exc:
                if _error_kind(exc) == "busy":
                    raise self._in_use() from exc
                raise

    def _open(self) -> sqlite3.Connection:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise LocalChatError(f"cannot create the folder for the chat history {self.path}: "
                                 f"{exc.strerror or exc}") from exc
        db: sqlite3.Connection | None = None
        try:
            db = self._connect()
            ok = db.execute("PRAGMA quick_check").fetchone()
            if not ok or ok[0] != "ok":
                raise sqlite3.DatabaseError(f"integrity check failed: {ok}")
            return db
        except sqlite3.DatabaseError as exc:
            if db is not None:
                db.close()
            kind = "corrupt" if str(exc).startswith("integrity check failed") else _error_kind(exc)
            if kind == "busy":
                raise self._in_use() from exc
            if kind != "corrupt":  # permissions, I/O, a full disk: not a reason to set the history aside
                raise LocalChatError(f"cannot open the chat history {self.path}: {exc}") from exc
            backup = aside_name(self.path)
            log.warning("conversation database %s is unreadable (%s); kept it as %s and started a new one",
                        self.path, exc, backup)
            for suffix in ("", "-wal", "-shm"):
                src = Path(f"{self.path}{suffix}")
                if src.exists():
                    os.replace(src, Path(f"{backup}{suffix}"))
            self.recovered_from = backup
            return self._connect()

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=self.busy_timeout)
        try:
            self._setup(db)
        except BaseException:
            db.close()
            raise
        return db

    @staticmethod
    def _setup(db: sqlite3.Connection) -> None:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")  # WAL: durable across app crashes, cheap enough for the GUI thread
        db.execute("PRAGMA foreign_keys=ON")
        db.executescript(SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- conversations -----------------------------------------------------------------------------------

    def create(self, title: str = "New chat", model: str | None = None, system_prompt: str = "",
               sampling: dict[str, Any] | None = None) -> Conversation:
        now = time.time()
        with self._using():
            cur = self._db.execute(
                "INSERT INTO conversations (title, created, updated, model, system_prompt, sampling) "
                "VALUES (?, ?, ?, ?, ?, ?)", (title, now, now, model, system_prompt, json.dumps(sampling or {})))
            cid = cur.lastrowid
        assert cid is not None
        return Conversation(cid, title, now, now, model, system_prompt, sampling or {})

    def conversations(self, search: str = "") -> list[Conversation]:
        q = "SELECT id, title, created, updated, model, system_prompt, sampling FROM conversations WHERE deleted = 0"
        args: tuple[Any, ...] = ()
        if search:
            like = "%" + search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            q += (" AND (title LIKE ? ESCAPE '\\' OR id IN "
                  "(SELECT conversation_id FROM messages WHERE content LIKE ? ESCAPE '\\'))")
            args = (like, like)
        with self._using():
            rows = self._db.execute(q + " ORDER BY updated DESC", args).fetchall()
        return [Conversation(r[0], r[1], r[2], r[3], r[4], r[5], json.loads(r[6] or "{}")) for r in rows]

    def get(self, cid: int) -> Conversation | None:
        with self._using():
            r = self._db.execute("SELECT id, title, created, updated, model, system_prompt, sampling "
                                 "FROM conversations WHERE id = ? AND deleted = 0", (cid,)).fetchone()
        return Conversation(r[0], r[1], r[2], r[3], r[4], r[5], json.loads(r[6] or "{}")) if r else None

    def update(self, cid: int, **fields: Any) -> None:
        allowed = {"title", "model", "system_prompt", "sampling"}
        if not set(fields) <= allowed:
            raise ValueError(f"unknown conversation fields: {set(fields) - allowed}")
        if "sampling" in fields:
            fields["sampling"] = json.dumps(fields["sampling"])
        sets = ", ".join(f"{k} = ?" for k in fields)
        with self._using():
            self._db.execute(f"UPDATE conversations SET {sets}, updated = ? WHERE id = ?",
                             (*fields.values(), time.time(), cid))

    def delete(self, cid: int) -> None:
        """Soft delete, so the window can offer undo; :meth:`purge_deleted` removes for good."""
        with self._using():
            self._db.execute("UPDATE conversations SET deleted = 1 WHERE id = ?", (cid,))

    def undelete(self, cid: int) -> None:
        with self._using():
            self._db.execute("UPDATE conversations SET deleted = 0 WHERE id = ?", (cid,))

    def purge_deleted(self) -> None:
        with self._using():
            self._db.execute("DELETE FROM conversations WHERE deleted = 1")

    # -- messages ----------------------------------------------------------------------------------------

    def add_message(self, cid: int, role: str, content: str, reasoning: str = "", status: str = "complete",
                    stats: dict[str, Any] | None = None) -> Message:
        if status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}")
        now = time.time()
        with self._using():
            cur = self._db.execute(
                "INSERT INTO messages (conversation_id, role, content, reasoning, status, stats, created) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)", (cid, role, content, reasoning, status, json.dumps(stats or {}), now))
            self._db.execute("UPDATE conversations SET updated = ? WHERE id = ?", (now, cid))
            mid = cur.lastrowid
        assert mid is not None
        return Message(mid, cid, role, content, reasoning, status, stats or {}, now)

    def update_message(self, mid: int, *, content: str | None = None, reasoning: str | None = None,
                       status: str | None = None, stats: dict[str, Any] | None = None) -> None:
        """Change a saved message in place (a streaming answer's checkpoints, then its final state)."""
        if status is not None and status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}")
        fields: dict[str, Any] = {"content": content, "reasoning": reasoning, "status": status,
                                  "stats": None if stats is None else json.dumps(stats)}
        fields = {k: v for k, v in fields.items() if v is not None}
        if not fields:
            return
        sets = ", ".join(f"{k} = ?" for k in fields)
        with self._using():
            cur = self._db.execute(f"UPDATE messages SET {sets} WHERE id = ?", (*fields.values(), mid))
            if cur.rowcount != 1:
                raise KeyError(mid)
            self._db.execute("UPDATE conversations SET updated = ? WHERE id = "
                             "(SELECT conversation_id FROM messages WHERE id = ?)", (time.time(), mid))

    def messages(self, cid: int) -> list[Message]:
        with self._using():
            rows = self._db.execute("SELECT id, conversation_id, role, content, reasoning, status, stats, created "
                                    "FROM messages WHERE conversation_id = ? ORDER BY id", (cid,)).fetchall()
        return [Message(r[0], r[1], r[2], r[3], r[4], r[5], json.loads(r[6] or "{}"), r[7]) for r in rows]

    def delete_messages_from(self, cid: int, message_id: int) -> None:
        """Remove a message and everything after it (regenerate, edit-and-resend)."""
        with self._using():
            self._db.execute("DELETE FROM messages WHERE conversation_id = ? AND id >= ?", (cid, message_id))

    # -- export ------------------------------------------------------------------------------------------

    def export_json(self, cid: int) -> dict[str, Any]:
        conv = self.get(cid)
        if conv is None:
            raise KeyError(cid)
        return {"title": conv.title, "model": conv.model, "system_prompt": conv.system_prompt,
                "sampling": conv.sampling, "created": conv.created,
                "messages": [{"role": m.role, "content": m.content, "reasoning": m.reasoning, "status": m.status,
                              "stats": m.stats, "created": m.created} for m in self.messages(cid)]}

    def export_markdown(self, cid: int) -> str:
        data = self.export_json(cid)
        out = [f"# {data['title']}", ""]
        if data["model"]:
            out += [f"*Model: {data['model']}*", ""]
        if data["system_prompt"].strip():
            out += ["> **System prompt:** " + data["system_prompt"].strip().replace("\n", "\n> "), ""]
        for m in data["messages"]:
            out.append(f"## {m['role'].capitalize()}" + ("" if m["status"] == "complete" else f" ({m['status']})"))
            out.append("")
            if m["reasoning"]:
                out += ["<details><summary>Reasoning</summary>", "", m["reasoning"].strip(), "", "</details>", ""]
            out += [m["content"].strip(), ""]
        return "\n".join(out)
