"""The real window, driven with pytest-qt: streaming, persistence, stop, regenerate, crashes, export, corruption."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QMessageBox

from localchat.context import open_context
from localchat.core.chat.messages import ContentChunk, ReasoningChunk, StatsChunk, TurnStats
from localchat.gui.main_window import MainWindow

pytestmark = pytest.mark.slow
TIMEOUT = 60_000


@pytest.fixture
def make_window(qtbot, isolated_home: Path, starter_model: Path):
    windows: list[MainWindow] = []

    def make(**settings) -> MainWindow:
        ctx = open_context(isolated_home)
        for k, v in settings.items():
            setattr(ctx.settings, k, v)
        ctx.ensure_starter()
        w = MainWindow(ctx, isolation="off")
        qtbot.addWidget(w)
        w.show()
        qtbot.waitUntil(lambda: w.load_info is not None, timeout=TIMEOUT)
        windows.append(w)
        return w

    yield make
    for w in windows:
        w.shutdown()


def ask(qtbot, w: MainWindow, text: str) -> None:
    w.input.setPlainText(text)
    qtbot.keyClick(w.input, Qt.Key.Key_Return)


def test_question_streams_and_persists(qtbot, make_window) -> None:
    w = make_window(temperature=0.0, max_tokens=48)
    ask(qtbot, w, "What is the capital of France? Answer in one sentence.")
    assert w.current_request is not None and w.send_button.text() == "Stop"
    qtbot.waitUntil(lambda: w.current_request is None, timeout=TIMEOUT)
    answer = w.chat.messages[-1]
    assert answer.role == "assistant" and "Paris" in answer.content and answer.status == "complete"
    assert answer.stats["completion_tokens"] > 0
    assert w.chat.render_count > 2  # rendered while streaming, not only at the end
    assert "Paris" in w.chat.toPlainText()
    cid = w.conversation_id
    w.close()
    # a new window on the same home shows the conversation again
    w2 = make_window()
    assert w2.conversation_id == cid
    assert [m.role for m in w2.chat.messages] == ["user", "assistant"]
    assert "Paris" in w2.chat.messages[1].content
    assert w2.conv_list.count() == 1


def test_stop_saves_partial_and_regenerate_works(qtbot, make_window) -> None:
    w = make_window(max_tokens=600, temperature=0.8)
    ask(qtbot, w, "Write a very long story about a lighthouse keeper.")
    qtbot.waitUntil(lambda: len(w.chat.messages[-1].content) > 40, timeout=TIMEOUT)
    qtbot.keyClick(w.chat, Qt.Key.Key_Escape)
    qtbot.waitUntil(lambda: w.current_request is None, timeout=TIMEOUT)
    stopped = w.chat.messages[-1]
    assert stopped.status == "stopped"
    saved = w.store.messages(w.conversation_id)[-1]
    assert saved.status == "stopped" and saved.content == stopped.content and saved.content
    assert saved.stats["finish_reason"] == "cancelled"
    w.regenerate(len(w.chat.messages) - 1)
    qtbot.waitUntil(lambda: len(w.chat.messages[-1].content) > 10, timeout=TIMEOUT)
    w.stop()
    qtbot.waitUntil(lambda: w.current_request is None, timeout=TIMEOUT)
    roles = [m.role for m in w.store.messages(w.conversation_id)]
    assert roles == ["user", "assistant"]  # the old answer was replaced, not duplicated


def test_killed_worker_shows_error_and_next_question_works(qtbot, make_window) -> None:
    w = make_window(max_tokens=600, temperature=0.8)
    ask(qtbot, w, "Write a very long story about the sea.")
    qtbot.waitUntil(lambda: len(w.chat.messages[-1].content) > 30, timeout=TIMEOUT)
    os.kill(w.bridge.worker_pid, signal.SIGKILL)
    qtbot.waitUntil(lambda: w.current_request is None, timeout=TIMEOUT)
    failed = w.chat.messages[-1]
    assert failed.status == "error" and "SIGKILL" in " ".join(failed.notices)
    assert w.store.messages(w.conversation_id)[-1].status == "error"
    assert w.store.messages(w.conversation_id)[-1].content == failed.content != ""
    assert w.send_button.isEnabled() and w.send_button.text() == "Send"
    w.ctx.settings.max_tokens = 16
    ask(qtbot, w, "Say hi.")
    qtbot.waitUntil(lambda: w.current_request is None and w.chat.messages[-1].status != "streaming",
                    timeout=TIMEOUT)
    assert w.chat.messages[-1].status == "complete" and w.chat.messages[-1].content


def test_reasoning_block_and_exports(qtbot, make_window, tmp_path: Path) -> None:
    w = make_window()
    conv = w.store.create("Crafted")
    w.open_conversation(conv.id)
    w.store.add_message(conv.id, "user", "Is 7 prime?")
    w.open_conversation(conv.id)
    w.current_request = "crafted"
    w.chat.begin_stream()
    w._on_chunk(ReasoningChunk("crafted", "Check divisors up to sqrt(7)."))
    assert w.chat.messages[-1].reasoning_open  # open while thinking
    w._on_chunk(ContentChunk("other-request", "IGNORED"))  # a superseded request's chunk is dropped
    w._on_chunk(ContentChunk("crafted", "Yes, **7** is prime.\n\n```python\nprint(7)\n```"))
    assert not w.chat.messages[-1].reasoning_open  # collapsed once the answer starts
    w._on_chunk(StatsChunk("crafted", TurnStats(10, 12, 0.1, 50.0, 0.5, "stop")))
    m = w.chat.messages[-1]
    assert m.reasoning == "Check divisors up to sqrt(7)." and "IGNORED" not in m.content
    text = w.chat.toPlainText()
    assert "Thought for" in text and "Check divisors" not in text and "print(7)" in text
    w.chat._on_anchor(__import__("PySide6.QtCore", fromlist=["QUrl"]).QUrl("toggle:1"))
    assert "Check divisors" in w.chat.toPlainText()
    md = w.export_conversation(conv.id, "md", str(tmp_path / "c.md"))
    js = w.export_conversation(conv.id, "json", str(tmp_path / "c.json"))
    data = json.loads(js.read_text())
    assert [x["role"] for x in data["messages"]] == ["user", "assistant"]
    assert data["messages"][1]["reasoning"] == m.reasoning and data["messages"][1]["content"] == m.content
    mdt = md.read_text()
    assert "Is 7 prime?" in mdt and "print(7)" in mdt and "<details><summary>Reasoning" in mdt


def test_no_remote_content_is_loaded(qtbot, make_window) -> None:
    w = make_window()
    w.chat.set_messages([])
    w.current_request = "r"
    w.chat.begin_stream()
    w._on_chunk(ContentChunk("r", "![tracker](https://example.com/pixel.png) and <img src='http://x/y.png'>"))
    w._on_chunk(StatsChunk("r", TurnStats(1, 1, 0.1, 1.0, 0.1, "stop")))
    html = w.chat.toHtml()
    assert "<img" not in html and "image not loaded" in w.chat.toPlainText()
    assert w.chat.loadResource(0, "https://example.com/pixel.png") is None


def test_corrupt_database_is_backed_up_and_reported(qtbot, make_window, isolated_home: Path, monkeypatch) -> None:
    shown: list[str] = []
    monkeypatch.setattr(QMessageBox, "warning", lambda *a, **k: shown.append(a[2]))
    db = isolated_home / "data" / "conversations.sqlite3"
    db.parent.mkdir(parents=True, exist_ok=True)
    db.write_bytes(b"this is not a database" * 100)
    w = make_window()
    qtbot.waitUntil(lambda: bool(shown), timeout=5000)
    assert "could not be read" in shown[0]
    backups = list(db.parent.glob("conversations.sqlite3.corrupt-*"))
    assert backups and backups[0].read_bytes().startswith(b"this is not a database")
    assert w.store.conversations() == []


def test_delete_with_undo_rename_and_search(qtbot, make_window) -> None:
    w = make_window()
    a = w.store.create("Alpha chat")
    w.store.add_message(a.id, "user", "about lighthouses")
    b = w.store.create("Beta chat")
    w.refresh_conversations()
    assert w.conv_list.count() == 2
    w.search.setText("lighthouse")
    assert w.conv_list.count() == 1
    w.search.setText("")
    w.rename_conversation(b.id, "Renamed")
    assert w.store.get(b.id).title == "Renamed"
    w.delete_conversation(a.id)
    assert w.conv_list.count() == 1 and w.undo_button.isVisible()
    w.undo_delete()
    assert w.conv_list.count() == 2
