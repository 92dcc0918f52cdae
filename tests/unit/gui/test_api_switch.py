"""The local API switch on the Network page, driven in the real window with the real worker and starter model.

The server runs inside the app on the window's own worker; the client is the official ``openai`` package over real
loopback sockets. The window and the API take turns on the worker: both transcripts must come out whole and equal
to what each gets alone (greedy sampling), and a Stop in the window never stops an API answer.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import psutil
import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QGuiApplication

from localchat.context import open_context
from localchat.core.api import KEY_FILE
from localchat.core.api.server import bind
from localchat.core.privacy.audit import AuditGuard, NetworkRefused
from localchat.gui.main_window import MainWindow

pytestmark = pytest.mark.slow
TIMEOUT = 240_000  # a deadlock guard, not a speed check: this machine is shared and often saturated
WINDOW_Q = "Which city is the capital of France?"
API_Q = [{"role": "user", "content": "Name three colours of the rainbow."}]
LONG_Q = [{"role": "user", "content": "Write a very long story about a lighthouse keeper and a storm at sea."}]
TOKENS = 32


@pytest.fixture(scope="module")
def guard() -> Iterator[AuditGuard]:
    g = AuditGuard(offline=True).install()  # as in the app: serving must not need (or open) anything beyond loopback
    yield g
    g.uninstall()


@pytest.fixture(scope="module")
def win(qapp, guard: AuditGuard, tmp_path_factory: pytest.TempPathFactory, starter_model: Path) -> Iterator[MainWindow]:
    ctx = open_context(tmp_path_factory.mktemp("api") / "home")
    ctx.settings.temperature, ctx.settings.max_tokens = 0.0, TOKENS
    ctx.ensure_starter()
    w = MainWindow(ctx, isolation="off")  # isolation is tested in tests/e2e; "off" keeps this fast
    w.show()
    yield w
    w.shutdown()
    w.deleteLater()


@pytest.fixture
def w(qtbot, win: MainWindow) -> MainWindow:
    qtbot.waitUntil(lambda: win.load_info is not None and win.turn_controller.current_request is None, timeout=TIMEOUT)
    win.conversations.new()
    return win


@pytest.fixture
def serving(qtbot, w: MainWindow) -> Iterator[MainWindow]:
    """The switch on (any free port), the server ready."""
    panel = w.api.panel
    assert panel is not None
    if w.api.state != "serving":
        panel.port.setValue(0)
        panel.toggle.setChecked(True)
        qtbot.waitUntil(lambda: w.api.state == "serving", timeout=TIMEOUT)
    yield w


def client(w: MainWindow, key: str | None = None) -> openai.OpenAI:
    return openai.OpenAI(base_url=w.api.url, api_key=key or w.api.key, max_retries=0, timeout=120)


def model_name(w: MainWindow) -> str:
    assert w.model_name is not None
    return w.model_name


def stream(w: MainWindow, messages: list[dict[str, str]], started: threading.Event | None = None,
           max_tokens: int = TOKENS) -> dict[str, Any]:
    """A streamed completion; ``started`` is set at its first content chunk (the API turn holds the worker)."""
    out: dict[str, Any] = {"text": "", "finish": None}
    with client(w) as c:
        chunks = c.chat.completions.create(model=model_name(w), messages=messages, stream=True,  # type: ignore[arg-type]
                                           max_tokens=max_tokens, temperature=0, seed=1)
        for ch in chunks:
            if ch.choices and ch.choices[0].delta.content:
                out["text"] += ch.choices[0].delta.content
                if started is not None:
                    started.set()
            if ch.choices and ch.choices[0].finish_reason:
                out["finish"] = ch.choices[0].finish_reason
    return out


def in_thread(fn: Any, *args: Any, **kwargs: Any) -> tuple[threading.Thread, dict[str, Any]]:
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["result"] = fn(*args, **kwargs)
        except BaseException as exc:  # reported by the test
            box["error"] = exc

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, box


def ask(qtbot, w: MainWindow, text: str) -> None:
    w.input.setPlainText(text)
    qtbot.keyClick(w.input, Qt.Key.Key_Return)


def window_answer(w: MainWindow) -> tuple[str, str]:
    """The last answer of the open conversation as saved: (content, status)."""
    assert w.conversation_id is not None
    m = w.store.messages(w.conversation_id)[-1]
    assert m.role == "assistant"
    return m.content, m.status


def wait_window(qtbot, w: MainWindow) -> None:
    qtbot.waitUntil(lambda: not w.turn_controller.busy, timeout=TIMEOUT)


@pytest.fixture(scope="module")
def baselines(win: MainWindow, qapp) -> dict[str, str]:
    return {}


def alone(qtbot, w: MainWindow, baselines: dict[str, str]) -> tuple[str, str]:
    """What the window and the API answer each on its own (greedy: the same every time)."""
    if not baselines:
        w.conversations.new()
        ask(qtbot, w, WINDOW_Q)
        wait_window(qtbot, w)
        baselines["window"], status = window_answer(w)
        assert status == "complete" and baselines["window"]
        t, box = in_thread(stream, w, API_Q)
        qtbot.waitUntil(lambda: not t.is_alive(), timeout=TIMEOUT)
        assert "error" not in box, box
        baselines["api"] = box["result"]["text"]
        assert baselines["api"]
        w.conversations.new()
    return baselines["window"], baselines["api"]


def test_off_by_default_and_starts_off_the_gui_thread(qtbot, w: MainWindow) -> None:
    panel = w.api.panel
    assert panel is not None and panel.parent() is not None
    assert w.api.state == "off" and not panel.toggle.isChecked() and panel.status.text().startswith("Off")
    assert not panel.copy_button(panel.url).isEnabled()
    panel.port.setValue(0)
    panel.toggle.setChecked(True)
    assert w.api.state == "starting"  # the bind and the server run on their own thread; the GUI goes on
    qtbot.waitUntil(lambda: w.api.state == "serving", timeout=TIMEOUT)
    assert panel.status.text().startswith("Serving on http://127.0.0.1:")
    assert w.api.url.startswith("http://127.0.0.1:") and w.api.url.endswith("/v1")
    key_file = w.ctx.paths.config_dir / KEY_FILE
    assert w.api.key == key_file.read_text().strip() and key_file.stat().st_mode & 0o077 == 0  # serve's key
    panel.copy_button(panel.url).click()
    assert QGuiApplication.clipboard().text() == w.api.url
    panel.copy_button(panel.key).click()
    assert QGuiApplication.clipboard().text() == w.api.key


def test_streamed_answer_count_and_sockets_on_the_network_page(qtbot, serving: MainWindow) -> None:
    w = serving
    panel = w.api.panel
    assert panel is not None
    before = w.api.served
    with client(w) as c:
        assert [m.id for m in c.models.list()] == [model_name(w)]  # only the model the window has loaded
        chunks = c.chat.completions.create(model=model_name(w), messages=API_Q, stream=True,  # type: ignore[arg-type]
                                           max_tokens=TOKENS, temperature=0,
                                           stream_options={"include_usage": True})
        port = int(w.api.url.rsplit(":", 1)[1].split("/")[0])
        page = w.network_page
        text, usage, rows = "", None, None
        for ch in chunks:
            if ch.choices and ch.choices[0].delta.content:
                text += ch.choices[0].delta.content
                if rows is None:  # mid-answer: the client's connection is open; both ends are in this process
                    page.refresh()
                    rows = [[page.table.item(r, k).text() for k in range(page.table.columnCount())]
                            for r in range(page.table.rowCount())]
            usage = ch.usage or usage
        assert text.strip() and usage is not None and 0 < usage.completion_tokens <= TOKENS
        qtbot.waitUntil(lambda: w.api.served == before + 1, timeout=TIMEOUT)
        qtbot.waitUntil(lambda: f"Requests answered this session: {before + 1}" in panel.count.text(), timeout=5000)
        assert rows is not None
        local = f"127.0.0.1:{port}"
        listening = [r for r in rows if r[4] == local and r[6] == "LISTEN"]
        assert listening and listening[0][7] == "listening (loopback)", rows
        accepted = [r for r in rows if r[4] == local and r[5].startswith("127.0.0.1:")]  # the server's end
        connecting = [r for r in rows if r[5] == local]  # the client's end
        assert accepted and connecting and all(r[7] == "loopback" for r in accepted + connecting), rows
        assert page.internet_count.text() == "0" and page.lan_count.text() == "0"
    with pytest.raises(NetworkRefused):  # the audit guard still refuses anything beyond loopback while serving
        socket.create_connection(("192.0.2.1", 80), timeout=1)


def test_wrong_or_missing_key_is_401_and_another_model_409(qtbot, serving: MainWindow,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    w = serving
    with client(w, key="lc-wrong-key-0123456789") as c, pytest.raises(openai.AuthenticationError):
        c.models.list()
    r = httpx.get(w.api.url + "/models", timeout=30)
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
    assert w.api.host is not None
    monkeypatch.setattr(w.api.host, "installed", lambda: {model_name(w), "another-model"})
    with client(w) as c:
        with pytest.raises(openai.ConflictError) as exc:
            c.chat.completions.create(model="another-model", messages=API_Q, max_tokens=4)  # type: ignore[arg-type]
        assert f"has '{model_name(w)}' loaded" in str(exc.value)
        with pytest.raises(openai.NotFoundError):
            c.chat.completions.create(model="not-installed", messages=API_Q, max_tokens=4)  # type: ignore[arg-type]
    assert w.model_name and w.load_info is not None  # nothing was loaded behind the window's back


def test_window_turn_waits_for_an_api_turn_and_both_come_out_whole(qtbot, serving: MainWindow,
                                                                   baselines: dict[str, str]) -> None:
    w = serving
    window_alone, api_alone = alone(qtbot, w, baselines)
    waited: list[str] = []
    w.api.windowWaiting.connect(lambda owner, holder: waited.append(owner))
    started = threading.Event()
    t, box = in_thread(stream, w, API_Q, started)
    qtbot.waitUntil(started.is_set, timeout=TIMEOUT)  # the API turn has the worker
    ask(qtbot, w, WINDOW_Q)
    rid = w.turn_controller.current_request
    wait_window(qtbot, w)
    qtbot.waitUntil(lambda: not t.is_alive(), timeout=TIMEOUT)
    assert "error" not in box, box
    assert box["result"]["text"] == api_alone and box["result"]["finish"] in ("stop", "length")
    assert window_answer(w) == (window_alone, "complete")
    assert waited == [rid]  # the window's turn queued behind the API's, and said so
    assert w.toast.label.text().startswith("Waiting for the API request")


def test_api_turn_waits_for_a_window_turn_and_both_come_out_whole(qtbot, serving: MainWindow,
                                                                  baselines: dict[str, str]) -> None:
    w = serving
    window_alone, api_alone = alone(qtbot, w, baselines)
    chunks: list[str] = []
    w.bridge.driver.chunk.connect(lambda c: chunks.append(type(c).__name__))
    ask(qtbot, w, WINDOW_Q)
    qtbot.waitUntil(lambda: "ContentChunk" in chunks, timeout=TIMEOUT)  # the window's turn has the worker
    t, box = in_thread(stream, w, API_Q)
    wait_window(qtbot, w)
    qtbot.waitUntil(lambda: not t.is_alive(), timeout=TIMEOUT)
    assert "error" not in box, box
    assert box["result"]["text"] == api_alone
    assert window_answer(w) == (window_alone, "complete")


def test_stop_in_the_window_does_not_stop_the_api_turn(qtbot, serving: MainWindow,
                                                       baselines: dict[str, str]) -> None:
    w = serving
    _, api_alone = alone(qtbot, w, baselines)
    waited: list[str] = []
    w.api.windowWaiting.connect(lambda owner, holder: waited.append(owner))
    started = threading.Event()
    t, box = in_thread(stream, w, API_Q, started)
    qtbot.waitUntil(started.is_set, timeout=TIMEOUT)
    ask(qtbot, w, WINDOW_Q)
    rid = w.turn_controller.current_request
    qtbot.waitUntil(lambda: rid in waited, timeout=TIMEOUT)  # queued behind the API turn
    w.turn_controller.stop()  # withdraws the window's turn only
    wait_window(qtbot, w)
    qtbot.waitUntil(lambda: not t.is_alive(), timeout=TIMEOUT)
    assert "error" not in box, box
    assert box["result"]["text"] == api_alone and box["result"]["finish"] != "cancelled"
    content, status = window_answer(w)
    assert status == "stopped" and content == ""


def test_worker_killed_during_an_api_turn(qtbot, serving: MainWindow, baselines: dict[str, str]) -> None:
    w = serving
    window_alone, api_alone = alone(qtbot, w, baselines)
    started = threading.Event()
    t, box = in_thread(stream, w, LONG_Q, started, 400)
    qtbot.waitUntil(started.is_set, timeout=TIMEOUT)
    w.bridge.kill_worker()
    qtbot.waitUntil(lambda: not t.is_alive(), timeout=TIMEOUT)
    assert isinstance(box.get("error"), openai.APIError) and "worker" in str(box["error"]), box  # said in the stream
    qtbot.waitUntil(lambda: w.network_page.worker_pid is None, timeout=TIMEOUT)  # the window knows it is gone
    with client(w) as c, pytest.raises(openai.APIStatusError) as down:
        c.chat.completions.create(model=model_name(w), messages=API_Q, max_tokens=4)  # type: ignore[arg-type]
    assert down.value.status_code == 503  # the API does not restart the window's worker
    ask(qtbot, w, WINDOW_Q)  # the window's next turn does, with its model
    wait_window(qtbot, w)
    assert window_answer(w) == (window_alone, "complete") and w.network_page.worker_pid is not None
    t, box = in_thread(stream, w, API_Q)
    qtbot.waitUntil(lambda: not t.is_alive(), timeout=TIMEOUT)
    assert box.get("result", {}).get("text") == api_alone, box


def test_port_in_use_is_a_one_line_error(qtbot, w: MainWindow) -> None:
    panel = w.api.panel
    assert panel is not None
    if w.api.state == "serving":
        panel.toggle.setChecked(False)
        qtbot.waitUntil(lambda: w.api.state == "off", timeout=TIMEOUT)
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    try:
        panel.port.setValue(busy.getsockname()[1])
        panel.toggle.setChecked(True)
        qtbot.waitUntil(lambda: w.api.state == "error", timeout=TIMEOUT)
        assert "in use" in w.api.detail and "\n" not in w.api.detail
        assert panel.status.text().startswith("Error — cannot listen on 127.0.0.1:")
        assert not panel.toggle.isChecked() and panel.port.isEnabled()
    finally:
        busy.close()


def test_on_again_while_the_last_server_thread_is_still_returning(qtbot, w: MainWindow) -> None:
    """The server reports "off" as its last act, so the switch can be turned on again before that thread has
    returned; the new start waits the moment it takes instead of being ignored (a CI run stuck there)."""
    panel = w.api.panel
    assert panel is not None
    if w.api.state == "serving":
        panel.toggle.setChecked(False)
        qtbot.waitUntil(lambda: w.api.state == "off", timeout=TIMEOUT)
    returning = threading.Thread(target=threading.Event().wait, args=(0.5,))  # stands for the ending thread
    returning.start()
    w.api._thread = returning
    panel.port.setValue(0)
    panel.toggle.setChecked(True)
    qtbot.waitUntil(lambda: w.api.state == "serving", timeout=TIMEOUT)
    assert not returning.is_alive() and panel.toggle.isChecked()
    panel.toggle.setChecked(False)
    qtbot.waitUntil(lambda: w.api.state == "off", timeout=TIMEOUT)


def test_off_releases_the_port(qtbot, serving: MainWindow) -> None:
    w = serving
    port = int(w.api.url.rsplit(":", 1)[1].split("/")[0])
    with client(w) as c:
        c.models.list()
        w.api.panel.toggle.setChecked(False)  # type: ignore[union-attr]
        assert w.api.state == "stopping"
        qtbot.waitUntil(lambda: w.api.state == "off", timeout=TIMEOUT)
    assert w.api.url == "" and w.api.panel.url.text() == ""  # type: ignore[union-attr]
    listening = [c for c in psutil.Process().net_connections(kind="inet")
                 if c.laddr and c.laddr.port == port and c.status == psutil.CONN_LISTEN]
    assert listening == []
    bind("127.0.0.1", port).close()  # the port can be taken again at once
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/health", timeout=5)
    assert w.load_info is not None  # the window's model stays loaded
