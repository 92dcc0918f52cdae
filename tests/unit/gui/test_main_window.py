"""The real window driven with pytest-qt, on the real worker and the real starter model.

One window (and one worker) serves the module; tests that need a fresh start (restart, corrupt database) open
their own. Streaming, stop, regenerate, edit-and-resend, a killed worker, crafted reasoning, exports, no remote
content, deleting with undo.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from PySide6.QtCore import Qt, QUrl
from PySide6.QtGui import QDesktopServices, QGuiApplication
from PySide6.QtWidgets import QMessageBox

from localchat.context import open_context
from localchat.core.chat.messages import ContentChunk, ErrorChunk, ReasoningChunk, StatsChunk, TurnStats
from localchat.core.models.library import LibraryEntry
from localchat.gui.chat.messages import AssistantMessage, UserMessage
from localchat.gui.chat.rich_text import CodeBlock, RichText
from localchat.gui.main_window import MainWindow

pytestmark = pytest.mark.slow
TIMEOUT = 60_000
LONG = "Write a very long story about a lighthouse keeper and a storm at sea."


def open_window(home: Path, **settings: object) -> MainWindow:
    ctx = open_context(home)
    for k, v in settings.items():
        setattr(ctx.settings, k, v)
    ctx.ensure_starter()
    w = MainWindow(ctx, isolation="off")  # isolation is tested in tests/e2e; "off" keeps this fast
    w.show()
    return w


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("gui") / "home"


@pytest.fixture(scope="module")
def win(qapp, home: Path, starter_model: Path) -> Iterator[MainWindow]:  # qapp: a QApplication first
    w = open_window(home, temperature=0.0, max_tokens=48)
    yield w
    w.shutdown()
    w.deleteLater()


@pytest.fixture
def w(qtbot, win: MainWindow) -> MainWindow:
    qtbot.waitUntil(lambda: win.load_info is not None and win.turn_controller.current_request is None, timeout=TIMEOUT)
    win.conversations.new()
    win.activateWindow()  # shortcuts (Esc) go to the active window; an earlier test may have opened another
    qtbot.waitUntil(win.isActiveWindow, timeout=5000)
    win.ctx.settings.temperature, win.ctx.settings.max_tokens = 0.0, 48
    return win


def ask(qtbot, w: MainWindow, text: str) -> None:
    w.input.setPlainText(text)
    qtbot.keyClick(w.input, Qt.Key.Key_Return)


def wait_done(qtbot, w: MainWindow) -> None:
    qtbot.waitUntil(lambda: not w.turn_controller.busy, timeout=TIMEOUT)


def crafted_turn(w: MainWindow, rid: str = "crafted") -> None:
    w.turn_controller.current_request = rid
    w.chat.begin_stream("crafted-model")


def test_question_streams_then_persists_across_a_restart(qtbot, w: MainWindow, home: Path) -> None:
    w.ctx.settings.max_tokens = 80
    ask(qtbot, w, "Which city is the capital of France? Explain its history in detail.")
    assert w.turn_controller.current_request is not None and w.composer.busy and w.composer.button_text == "Stop"
    qtbot.waitUntil(lambda: bool(w.chat.messages[-1].content), timeout=TIMEOUT)
    assert w.chat.messages[-1].status == "streaming"  # tokens arrive before the answer completes
    wait_done(qtbot, w)
    answer = w.chat.messages[-1]
    assert answer.role == "assistant" and "Paris" in answer.content and answer.status == "complete"
    assert answer.stats["completion_tokens"] > 0 and answer.stats["decode_tokens_per_s"] > 0
    assert w.chat.render_count > 2  # re-rendered while streaming, not only at the end
    assert "Paris" in w.chat.plain_text() and "tok/s" in w.chat.plain_text()
    cid = w.conversation_id
    assert w.sidebar.ids()[0] == cid and w.top.title.full_text().startswith("Which city is the capital")
    w.save_state()  # what closing the window does; the restarted window reads it
    w2 = open_window(home)
    try:
        qtbot.waitUntil(lambda: w2.load_info is not None, timeout=TIMEOUT)
        assert w2.conversation_id == cid
        assert [m.role for m in w2.chat.messages] == ["user", "assistant"]
        assert w2.chat.messages[1].content == answer.content and w2.chat.messages[1].status == "complete"
        assert "Paris" in w2.chat.plain_text()
    finally:
        w2.shutdown()


def test_stop_saves_partial_marked_stopped_and_regenerate_replaces_it(qtbot, w: MainWindow) -> None:
    w.ctx.settings.max_tokens, w.ctx.settings.temperature = 600, 0.8
    ask(qtbot, w, LONG)
    qtbot.waitUntil(lambda: len(w.chat.messages[-1].content) > 40, timeout=TIMEOUT)
    w.conversations.open(w.conversation_id)  # clicking the chat that is answering changes nothing
    assert w.turn_controller.current_request is not None and w.chat.streaming is w.chat.messages[-1]
    qtbot.keyClick(w.chat, Qt.Key.Key_Escape)
    wait_done(qtbot, w)
    stopped = w.chat.messages[-1]
    assert stopped.status == "stopped" and stopped.content
    saved = w.store.messages(w.conversation_id)[-1]
    assert saved.status == "stopped" and saved.content == stopped.content
    assert saved.stats["finish_reason"] == "cancelled"
    assert "Stopped" in w.chat._widgets[-1].tag.text()
    w.turn_controller.regenerate(len(w.chat.messages) - 1)
    qtbot.waitUntil(lambda: len(w.chat.messages[-1].content) > 10, timeout=TIMEOUT)
    w.turn_controller.stop()
    wait_done(qtbot, w)
    assert [m.role for m in w.store.messages(w.conversation_id)] == ["user", "assistant"]  # replaced, not added


def test_killed_worker_error_in_chat_then_next_question_works(qtbot, w: MainWindow) -> None:
    w.ctx.settings.max_tokens, w.ctx.settings.temperature = 600, 0.8
    ask(qtbot, w, LONG)
    old_pid = w.bridge.worker_pid
    # wait for a checkpoint: the partial answer is on disk while it streams
    qtbot.waitUntil(lambda: w.turn_controller.stream_row is not None, timeout=TIMEOUT)
    assert w.store.messages(w.conversation_id)[-1].status == "stopped"
    w.bridge.kill_worker()
    wait_done(qtbot, w)
    failed = w.chat.messages[-1]
    assert failed.status == "error" and "SIGKILL" in failed.error and failed.content
    row = w.store.messages(w.conversation_id)[-1]
    assert row.status == "error" and row.content == failed.content and "SIGKILL" in row.stats["error"]
    widget = w.chat._widgets[-1]
    assert isinstance(widget, AssistantMessage) and not widget.error.isHidden() and widget.error.button.isEnabled()
    assert not w.composer.busy and w.top.picker.isEnabled()
    w.ctx.settings.max_tokens = 16
    ask(qtbot, w, "Say hi.")
    wait_done(qtbot, w)
    assert w.chat.messages[-1].status == "complete" and w.chat.messages[-1].content
    assert w.bridge.worker_pid not in (None, old_pid)  # a new worker answered


def test_edit_and_resend_truncates_and_answers_again(qtbot, w: MainWindow) -> None:
    ask(qtbot, w, "Name a colour.")
    wait_done(qtbot, w)
    ask(qtbot, w, "Name a fruit.")
    wait_done(qtbot, w)
    first = w.chat._widgets[0]
    assert isinstance(first, UserMessage)
    first.start_edit()
    qtbot.keyClick(first.edit_field, Qt.Key.Key_Escape)  # Esc cancels the edit (not the window's Stop)
    assert first.editor is None and not first.bubble.isHidden()
    first.start_edit()
    first.edit_field.setPlainText("Name an animal.")
    qtbot.keyClick(first.edit_field, Qt.Key.Key_Return)
    wait_done(qtbot, w)
    rows = w.store.messages(w.conversation_id)
    assert (rows[0].role, rows[0].content) == ("user", "Name an animal.")
    assert [m.role for m in rows] == ["user", "assistant"] and rows[1].content
    assert [m.content for m in w.chat.messages] == [m.content for m in rows]


def test_crafted_reasoning_stream_renders_and_exports_match(qtbot, w: MainWindow, tmp_path: Path,
                                                            monkeypatch) -> None:
    conv = w.store.create("Crafted")
    w.store.add_message(conv.id, "user", "Is 7 prime?")
    w.conversations.open(conv.id)
    crafted_turn(w)
    w.turn_controller.on_chunk(ReasoningChunk("crafted", "Check divisors up to sqrt(7): 2 does not divide it."))
    m = w.chat.messages[-1]
    assert m.reasoning_open  # open while thinking
    qtbot.waitUntil(lambda: "Thinking" in w.chat._widgets[-1].reasoning.toggle.text(), timeout=2000)
    w.turn_controller.on_chunk(ContentChunk("superseded", "IGNORED"))  # a superseded request's chunk is dropped
    w.turn_controller.on_chunk(ContentChunk("crafted", "Yes, **7** is prime.\n\n```python\nprint(7)\n```\n"))
    assert not m.reasoning_open  # collapsed once the answer starts
    w.turn_controller.on_chunk(StatsChunk("crafted", TurnStats(10, 12, 0.1, 50.0, 0.5, "stop")))
    assert m.status == "complete" and "IGNORED" not in m.content
    text = w.chat.plain_text()
    assert "Thought for" in text and "Check divisors" not in text and "print(7)" in text
    widget = w.chat._widgets[-1]
    assert isinstance(widget, AssistantMessage)
    code = widget.content.findChild(CodeBlock)
    assert code is not None and code.lang_label.text() == "python"
    code.copy_button.click()
    assert QGuiApplication.clipboard().text() == "print(7)"
    widget.reasoning.toggle.click()
    assert "Check divisors" in w.chat.plain_text()
    md = w.conversations.export(conv.id, "md", str(tmp_path / "c.md"))
    js = w.conversations.export(conv.id, "json", str(tmp_path / "c.json"))
    assert md is not None and js is not None
    data = json.loads(js.read_text())
    rows = w.store.messages(conv.id)
    assert [(x["role"], x["content"], x["reasoning"]) for x in data["messages"]] == [
        (r.role, r.content, r.reasoning) for r in rows]
    assert data["messages"][1]["reasoning"] == m.reasoning and data["messages"][1]["content"] == m.content
    warned: list[str] = []
    monkeypatch.setattr(QMessageBox, "warning", lambda *a, **k: warned.append(a[2]))
    assert w.conversations.export(conv.id, "md", str(tmp_path)) is None  # a folder: refused, said, nothing lost
    assert "Could not write" in warned[0] and md.read_text()
    mdt = md.read_text()
    assert mdt.startswith("# Crafted") and "Is 7 prime?" in mdt and "```python\nprint(7)\n```" in mdt
    assert "<details><summary>Reasoning</summary>" in mdt and m.reasoning in mdt


def test_engine_error_shows_retry(qtbot, w: MainWindow) -> None:
    conv = w.store.create("Overflow")
    w.store.add_message(conv.id, "user", "x " * 10)
    w.conversations.open(conv.id)
    crafted_turn(w)
    w.turn_controller.on_chunk(ErrorChunk("crafted", "context_overflow", "The message is 9000 tokens long."))
    m = w.chat.messages[-1]
    assert m.status == "error" and "raise the context length" in m.error
    widget = w.chat._widgets[-1]
    assert isinstance(widget, AssistantMessage) and not widget.error.isHidden()
    assert w.store.messages(conv.id)[-1].status == "error"
    widget.error.button.click()  # Retry: the failed answer is replaced by a real one
    wait_done(qtbot, w)
    rows = w.store.messages(conv.id)
    assert [(r.role, r.status) for r in rows] == [("user", "complete"), ("assistant", "complete")]


def test_no_remote_content_and_links_only_on_confirmed_click(qtbot, w: MainWindow, monkeypatch) -> None:
    conv = w.store.create("Remote")
    w.conversations.open(conv.id)
    crafted_turn(w)
    w.turn_controller.on_chunk(ContentChunk(
        "crafted", "![tracker](https://example.com/pixel.png) <img src='http://x/y.png'> "
                   "[safe](https://example.org/page) [forged](lc-copy:0)"))
    w.turn_controller.on_chunk(StatsChunk("crafted", TurnStats(1, 1, 0.1, 1.0, 0.1, "stop")))
    browsers = w.chat.findChildren(RichText)
    html = "".join(b.toHtml() for b in browsers)
    assert "<img" not in html and "image not loaded" in w.chat.plain_text()
    assert 'href="lc-copy:0"' not in html and "forged" in w.chat.plain_text()
    assert all(b.loadResource(2, QUrl("https://example.com/pixel.png")) is None for b in browsers)
    opened: list[str] = []
    monkeypatch.setattr(QDesktopServices, "openUrl", lambda url: opened.append(url.toString()))
    answers = [QMessageBox.StandardButton.No, QMessageBox.StandardButton.Yes]
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: answers.pop(0))
    w.chat.open_link(QUrl("https://example.org/page"))
    assert opened == []  # declined
    w.chat.open_link(QUrl("https://example.org/page"))
    w.chat.open_link(QUrl("file:///etc/passwd"))  # never offered
    assert opened == ["https://example.org/page"]


def test_conversations_rename_search_delete_with_undo(qtbot, w: MainWindow) -> None:
    a = w.store.create("Alpha chat")
    w.store.add_message(a.id, "user", "about zanzibarite crystals")
    b = w.store.create("Beta chat")
    w.conversations.refresh()
    w.sidebar.search.setText("zanzibarite")
    assert w.sidebar.ids() == [a.id]
    w.sidebar.search.setText("100%")  # LIKE wildcards are literal
    assert w.sidebar.ids() == []
    w.sidebar.search.setText("")
    w.conversations.rename(b.id, "Renamed")
    assert w.store.get(b.id).title == "Renamed"
    w.conversations.open(a.id)
    w.conversations.delete(a.id)
    assert a.id not in w.sidebar.ids() and w.conversation_id is None and w.toast.isVisible()
    assert w.toast.button.text() == "Undo"
    w.toast.button.click()
    assert a.id in w.sidebar.ids()


def test_theme_switch_rebuilds_the_conversation(qtbot, w: MainWindow) -> None:
    conv = w.store.create("Theme")
    w.store.add_message(conv.id, "user", "hello")
    w.store.add_message(conv.id, "assistant", "```python\nx = 1\n```")
    w.conversations.open(conv.id)
    w.ctx.settings.theme = "dark"
    w.apply_theme()
    try:
        assert w.theme.dark and "#1d1e21" in QGuiApplication.instance().styleSheet()
        assert w.chat.findChild(CodeBlock).code == "x = 1"
    finally:
        w.ctx.settings.theme = "light"
        w.apply_theme()


def test_each_chat_keeps_its_model_and_settings(qtbot, w: MainWindow, starter_model: Path) -> None:
    w.ctx.library.register(LibraryEntry("twin", str(starter_model), starter_model.stat().st_size, in_place=True))
    w.refresh_models()  # what the Models page's libraryChanged triggers
    assert w.top.picker.findData("twin") >= 0
    a = w.store.create("On twin", model="twin", sampling={"max_tokens": 8})
    w.store.add_message(a.id, "user", "Say one word.")
    b = w.store.create("On starter", model="smollm2-135m")
    w.conversations.open(a.id)
    assert w.model_name == "twin" and w.top.picker.currentData() == "twin"
    qtbot.waitUntil(lambda: w.load_info is not None, timeout=TIMEOUT)
    w.turn_controller.start()  # answer the stored question
    wait_done(qtbot, w)
    assert w.chat.messages[-1].stats["completion_tokens"] <= 8  # the chat's own max_tokens
    assert w.chat.messages[-1].model == "twin"
    w.conversations.open(b.id)
    assert w.model_name == "smollm2-135m"
    w.top.picker.setCurrentIndex(w.top.picker.findData("twin"))
    w.top.picker.activated.emit(w.top.picker.currentIndex())  # the user picks another model for this chat
    assert w.store.get(b.id).model == "twin" and w.model_name == "twin"
    w.ctx.library.unregister("twin")
    w.refresh_models()  # a removed model: the picker falls back to what is installed
    assert w.model_name == "smollm2-135m" and w.top.picker.findData("twin") < 0
    qtbot.waitUntil(lambda: w.load_info is not None, timeout=TIMEOUT)


def test_long_conversation_opens_with_its_last_messages_then_the_rest(qtbot, w: MainWindow) -> None:
    conv = w.store.create("Long")
    for i in range(15):
        w.store.add_message(conv.id, "user", f"question {i}")
        w.store.add_message(conv.id, "assistant", f"answer {i}\n\n```python\nx = {i}\n```")
    w.conversations.open(conv.id)
    assert 0 < len(w.chat._widgets) < 30  # the newest at once...
    qtbot.waitUntil(lambda: len(w.chat._widgets) == 30, timeout=5000)  # ...the older ones between events
    assert [x.msg.content for x in w.chat._widgets] == [m.content for m in w.chat.messages]
    assert w.chat.index_of(w.chat._widgets[3]) == 3 and "question 0" in w.chat.plain_text()


def test_corrupt_database_backed_up_and_reported(qtbot, isolated_home: Path, monkeypatch) -> None:
    shown: list[str] = []
    monkeypatch.setattr(QMessageBox, "warning", lambda *a, **k: shown.append(a[2]))
    db = isolated_home / "data" / "conversations.sqlite3"
    db.parent.mkdir(parents=True, exist_ok=True)
    db.write_bytes(b"this is not a database" * 100)
    w = MainWindow(open_context(isolated_home), isolation="off")  # no model registered: no worker needed
    qtbot.addWidget(w)
    try:
        qtbot.waitUntil(lambda: bool(shown), timeout=5000)
        assert "could not be read" in shown[0] and "corrupt" in shown[0]
        backups = list(db.parent.glob("conversations.sqlite3.corrupt-*"))
        assert backups and backups[0].read_bytes().startswith(b"this is not a database")
        assert w.store.conversations() == []
        assert "No model installed" in w.status_text()
    finally:
        w.shutdown()
