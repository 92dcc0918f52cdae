"""The local API inside the window: a switch on the Network page that serves the window's model on loopback.

The server is the one ``localchat serve`` runs (core.api), on the window's own worker through the engine thread's
:class:`~localchat.core.api.shared.EngineTurns`: one turn at a time across the window and the API, in arrival order
(a window turn that has to wait says so). It serves only the model the window has loaded (another installed model:
409), never loads one itself. It listens on 127.0.0.1 only, with the same key file as ``localchat serve``.

Off at every start (not saved): an open port is something to choose each session. Binding, serving and shutting down
run on a thread of their own; the GUI thread only flips state from queued signals.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, Qt, QTimer, Signal, Slot
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import (
    QCheckBox,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QWidget,
)

from localchat.context import AppContext
from localchat.core.api import DEFAULT_HOST, DEFAULT_PORT, KEY_FILE
from localchat.errors import LocalChatError
from localchat.gui import theme
from localchat.gui.engine_bridge import EngineDriver

if TYPE_CHECKING:
    from localchat.core.api.server import ApiServer
    from localchat.core.api.shared import SharedModelHost
    from localchat.gui.main_window import MainWindow

log = logging.getLogger(__name__)
STATES = ("off", "starting", "serving", "stopping", "error")


class ApiSwitch(QObject):
    """Runs the server on its own thread. ``state`` is one of STATES; ``url`` and ``key`` are set while serving.

    Signals:
        stateChanged(str, str): the new state and a one-line detail (the URL, or what went wrong).
        windowWaiting(str, str): the window's turn or load (id) waits for the worker, held by the second.
        workerDied(): the worker died during an API turn; the window's next turn restarts it.
    """

    stateChanged = Signal(str, str)
    windowWaiting = Signal(str, str)
    workerDied = Signal()  # during an API turn (queued from the API's engine thread)
    _report = Signal(str, str)  # from the server thread, queued to the GUI thread

    def __init__(self, ctx: AppContext, driver: EngineDriver, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.ctx = ctx
        self.driver = driver
        self.state = "off"
        self.detail = ""
        self.url = ""
        self.key = ""
        self.served_before = 0  # requests answered by earlier runs this session
        self.host: SharedModelHost | None = None
        self._server: ApiServer | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.panel: ApiPanel | None = None
        self._report.connect(self._on_report, Qt.ConnectionType.QueuedConnection)
        driver.waiting.connect(self._on_waiting, Qt.ConnectionType.QueuedConnection)

    @Slot(str, str)
    def _on_waiting(self, owner: str, holder: str) -> None:
        self.windowWaiting.emit(owner, holder)
        if self.panel is not None:
            self.panel.update_count()

    @property
    def served(self) -> int:
        return self.served_before + (self.host.served if self.host is not None else 0)

    @property
    def waiting(self) -> int:
        """API requests queued behind the one running, plus the window's turn if it waits."""
        return (self.host.queued if self.host is not None else 0) + self.driver.turns.waiting

    def start(self, port: int = DEFAULT_PORT) -> None:
        t = self._thread
        if t is not None and t.is_alive():
            if self.state not in ("off", "error"):
                return  # starting, serving or stopping: that server stays
            # it reported its end and is returning: the switch turned on again at once must not be ignored
            t.join(5)
            if t.is_alive():
                self._set("error", "the previous server has not stopped yet; try again in a moment")
                return
        self._stop.clear()
        self._set("starting", f"starting on {DEFAULT_HOST}:{port}…")
        self._thread = threading.Thread(target=self._run, args=(port,), name="api-server", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Ask the server to stop (returns at once; the state goes to ``off`` when the port is released)."""
        if self._thread is None or not self._thread.is_alive():
            return
        self._stop.set()
        self._set("stopping", "stopping…")
        server = self._server
        if server is not None:
            server.stop()

    def wait(self, timeout: float = 10.0) -> bool:
        """Block until the server thread has ended (shutdown, tests)."""
        t = self._thread
        if t is not None:
            t.join(timeout)
        return t is None or not t.is_alive()

    def _run(self, port: int) -> None:
        # imported here, on the server's thread: uvicorn and starlette cost the window's start-up nothing while off
        from localchat.core.api.server import ApiServer, ServerOptions, bind, load_or_create_key
        from localchat.core.api.shared import SharedModelHost

        host: SharedModelHost | None = None
        try:
            try:
                self.key = load_or_create_key(self.ctx.paths.config_dir / KEY_FILE)
                sock = bind(DEFAULT_HOST, port)
            except LocalChatError as exc:
                hint = " — another program (or localchat serve) uses it; pick another port" \
                    if "in use" in str(exc) else ""
                self._report.emit("error", f"{exc}{hint}")
                return
            try:
                w = self.driver
                host = SharedModelHost(w.turns, lambda: w.loaded_model, self._installed, self.ctx.settings,
                                       on_crash=self.workerDied.emit)
                server = ApiServer(host, self.key, sock, ServerOptions(DEFAULT_HOST, port))
                self.host, self._server = host, server
                if self._stop.is_set():
                    return
                server.run(lambda: self._report.emit("serving", server.url))
            finally:
                if host is not None:
                    host.close()
                sock.close()  # the port is free once "off" is reported
        except Exception as exc:  # a failure of the server must not take the window with it
            log.exception("the API server failed")
            self._report.emit("error", f"the API server stopped: {type(exc).__name__}: {exc}")
            return
        finally:
            if host is not None:
                self.served_before += host.served
            self.host, self._server = None, None
        self._report.emit("off", "")

    def _installed(self) -> set[str]:
        return {e.name for e in self.ctx.library.entries() if e.present}

    @Slot(str, str)
    def _on_report(self, state: str, detail: str) -> None:
        if state == "serving":
            self.url = detail
        elif state in ("off", "error"):
            self.url = ""
        self._set(state, detail)

    def _set(self, state: str, detail: str) -> None:
        self.state, self.detail = state, detail
        log.info("api switch: %s %s", state, detail)
        self.stateChanged.emit(state, detail)


class ApiPanel(QGroupBox):
    """The switch, the state, URL and key with copy buttons, and the request count."""

    def __init__(self, switch: ApiSwitch, parent: QWidget | None = None) -> None:
        super().__init__("Local API — OpenAI-compatible, for programs on this computer", parent)
        self.switch = switch
        grid = QGridLayout(self)
        grid.setColumnStretch(1, 1)
        top = QHBoxLayout()
        self.toggle = QCheckBox("Serve the loaded model on this computer")
        self.toggle.setToolTip("Listens on 127.0.0.1 only; every request needs the key. Off at every start.")
        self.toggle.toggled.connect(self._toggled)
        top.addWidget(self.toggle)
        top.addStretch(1)
        top.addWidget(QLabel("Port"))
        self.port = QSpinBox()
        self.port.setRange(0, 65535)
        self.port.setValue(DEFAULT_PORT)
        self.port.setSpecialValueText("any free")
        self.port.setToolTip("0 picks a free port")
        top.addWidget(self.port)
        grid.addLayout(top, 0, 0, 1, 3)

        self.status = QLabel()
        self.status.setWordWrap(True)
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        grid.addWidget(self.status, 1, 0, 1, 3)
        self.url = self._field(grid, 2, "Base URL", "Copy the base URL (…/v1) for a client's settings")
        self.key = self._field(grid, 3, "API key", "Copy the key (send it as 'Authorization: Bearer <key>')")
        self.key.setEchoMode(QLineEdit.EchoMode.Password)
        self.count = QLabel()
        grid.addWidget(self.count, 4, 0, 1, 3)
        hint = QLabel("Serves the model loaded in this window and no other (a request for another one is refused); "
                      "the chat here and API requests take turns on the one model. The listening socket and each "
                      "connection appear under “Sockets of localchat's processes” below, as loopback.")
        hint.setObjectName("hint")
        hint.setWordWrap(True)
        grid.addWidget(hint, 5, 0, 1, 3)

        self.timer = QTimer(self)
        self.timer.setInterval(500)
        self.timer.timeout.connect(self.update_count)
        switch.stateChanged.connect(self._on_state)
        self._on_state(switch.state, switch.detail)

    def _field(self, grid: QGridLayout, row: int, label: str, tip: str) -> QLineEdit:
        grid.addWidget(QLabel(label), row, 0)
        edit = QLineEdit(readOnly=True)
        grid.addWidget(edit, row, 1)
        button = QPushButton("Copy")
        button.setToolTip(tip)
        button.clicked.connect(lambda: QGuiApplication.clipboard().setText(edit.text()))
        grid.addWidget(button, row, 2)
        edit.setProperty("copy_button", button)
        return edit

    def copy_button(self, edit: QLineEdit) -> QPushButton:
        button = edit.property("copy_button")
        assert isinstance(button, QPushButton)
        return button

    @Slot(bool)
    def _toggled(self, on: bool) -> None:
        if on and self.switch.state in ("off", "error"):
            self.switch.start(self.port.value())
        elif not on and self.switch.state in ("starting", "serving"):
            self.switch.stop()

    @Slot(str, str)
    def _on_state(self, state: str, detail: str) -> None:
        t = theme.current()
        text, color = {
            "off": ("Off — nothing listens.", t.muted),
            "starting": (f"Starting — {detail}", t.warn_text),
            "serving": (f"Serving on {detail} (loopback only)", t.ok_text),
            "stopping": ("Stopping — ending the running request and closing the port…", t.warn_text),
            "error": (f"Error — {detail}", t.error_text),
        }[state]
        self.status.setText(text)
        self.status.setStyleSheet(f"font-weight: 600; color: {color}")
        serving = state == "serving"
        self.url.setText(self.switch.url if serving else "")
        self.key.setText(self.switch.key if serving else "")
        for edit in (self.url, self.key):
            self.copy_button(edit).setEnabled(serving)
        self.port.setEnabled(state in ("off", "error"))
        self.toggle.blockSignals(True)  # the box follows the state (an error turns it off)
        self.toggle.setChecked(state in ("starting", "serving"))
        self.toggle.blockSignals(False)
        self.toggle.setEnabled(state != "stopping")
        if serving:
            self.timer.start()
        else:
            self.timer.stop()
        self.update_count()

    @Slot()
    def update_count(self) -> None:
        s = self.switch
        model = s.driver.loaded_model
        waiting = s.waiting
        self.count.setText(f"Requests answered this session: {s.served}"
                           + (f" · waiting for the model: {waiting}" if waiting else "")
                           + (f" · model: {model[0]}" if model and s.state == "serving" else ""))


def install(window: MainWindow) -> ApiSwitch:
    """Put the switch on the window's Network page; a window turn that waits for an API turn says so."""
    switch = ApiSwitch(window.ctx, window.bridge.driver, window)
    switch.panel = ApiPanel(switch)
    window.network_page.add_panel(switch.panel)

    def on_waiting(owner: str, holder: str) -> None:
        if owner == window.turn_controller.current_request:
            window.show_toast("Waiting for the API request running now to finish — your message is next.")
        elif owner == window._load_id:
            window.show_toast("The model loads as soon as the API request running now has finished.")

    switch.windowWaiting.connect(on_waiting)  # both on the GUI thread
    switch.workerDied.connect(window._on_worker_stopped, Qt.ConnectionType.QueuedConnection)
    return switch
