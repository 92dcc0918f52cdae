"""Conversations and messages in SQLite (WAL), owned by one object that serialises access.

A corrupt database file is moved aside (``conversations.sqlite3.corrupt-<time>``) and a fresh one created; the
caller can tell the user through :attr:`ConversationStore.recovered_from`. Messages are saved as they complete;
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

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
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.recovered_from: Path | None = None
        self._lock = threading.RLock()
        self._db = self._open()

    def _open(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            db = self._connect()
            ok = db.execute("PRAGMA quick_check").fetchone()
            if not ok or ok[0] != "ok":
                raise sqlite3.DatabaseError(f"integrity check failed: {ok}")
            return db
        except sqlite3.DatabaseError as exc:
            backup = self.path.with_name(f"{self.path.name}.corrupt-{time.strftime('%Y%m%d-%H%M%S')}")
            log.warning("conversation database %s is unreadable (%s); kept it as %s and started a new one",
                        self.path, exc, backup)
            for suffix in ("", "-wal", "-shm"):
                src = Path(f"{self.path}{suffix}")
                if src.exists():
                    os.replace(src, Path(f"{backup}{suffix}"))
            self.recovered_from = backup
            return self._connect()

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")  # WAL: durable across app crashes, cheap enough for the GUI thread
        db.execute("PRAGMA foreign_keys=ON")
        db.executescript(SCHEMA)
        return db

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- conversations -----------------------------------------------------------------------------------

    def create(self, title: str = "New chat", model: str | None = None, system_prompt: str = "",
               sampling: dict[str, Any] | None = None) -> Conversation:
        now = time.time()
        with self._lock:
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
        with self._lock:
            rows = self._db.execute(q + " ORDER BY updated DESC", args).fetchall()
        return [Conversation(r[0], r[1], r[2], r[3], r[4], r[5], json.loads(r[6] or "{}")) for r in rows]

    def get(self, cid: int) -> Conversation | None:
        with self._lock:
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
        with self._lock:
            self._db.execute(f"UPDATE conversations SET {sets}, updated = ? WHERE id = ?",
                             (*fields.values(), time.time(), cid))

    def delete(self, cid: int) -> None:
        """Soft delete, so the window can offer undo; :meth:`purge_deleted` removes for good."""
        with self._lock:
            self._db.execute("UPDATE conversations SET deleted = 1 WHERE id = ?", (cid,))

    def undelete(self, cid: int) -> None:
        with self._lock:
            self._db.execute("UPDATE conversations SET deleted = 0 WHERE id = ?", (cid,))

    def purge_deleted(self) -> None:
        with self._lock:
            self._db.execute("DELETE FROM conversations WHERE deleted = 1")

    # -- messages ----------------------------------------------------------------------------------------

    def add_message(self, cid: int, role: str, content: str, reasoning: str = "", status: str = "complete",
                    stats: dict[str, Any] | None = None) -> Message:
        if status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}")
        now = time.time()
        with self._lock:
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
        with self._lock:
            cur = self._db.execute(f"UPDATE messages SET {sets} WHERE id = ?", (*fields.values(), mid))
            if cur.rowcount != 1:
                raise KeyError(mid)
            self._db.execute("UPDATE conversations SET updated = ? WHERE id = "
                             "(SELECT conversation_id FROM messages WHERE id = ?)", (time.time(), mid))

    def messages(self, cid: int) -> list[Message]:
        with self._lock:
            rows = self._db.execute("SELECT id, conversation_id, role, content, reasoning, status, stats, created "
                                    "FROM messages WHERE conversation_id = ? ORDER BY id", (cid,)).fetchall()
        return [Message(r[0], r[1], r[2], r[3], r[4], r[5], json.loads(r[6] or "{}"), r[7]) for r in rows]

    def delete_messages_from(self, cid: int, message_id: int) -> None:
        """Remove a message and everything after it (regenerate, edit-and-resend)."""
        with self._lock:
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
