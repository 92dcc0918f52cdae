"""The main window: navigation rail, conversations, the chat (or the Models / Network page), the top bar.

It builds the parts, keeps the shared state (the open conversation, the model loaded or loading) and routes events;
the work lives elsewhere: the engine runs in its own thread and process (engine_bridge), a turn is driven by
gui/chat/turns.py over the Qt-free core.chat.conversation and core.chat.turn, conversations are opened and edited by
gui/conversations.py, messages are rendered by gui/chat/, and rows are kept by core.chat.store.
"""

from __future__ import annotations

import base64
import logging
import uuid
from dataclasses import replace
from typing import Any

from PySide6.QtCore import QByteArray, Qt, QTimer, Slot
from PySide6.QtGui import QCloseEvent, QGuiApplication, QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QHBoxLayout,
    QMainWindow,
    QMessageBox,
    QSplitter,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from localchat.context import AppContext
from localchat.core.chat.store import ConversationStore
from localchat.core.engine.protocol import LoadInfo
from localchat.errors import LocalChatError
from localchat.gui import api_server, lan_panel
from localchat.gui import theme as theming
from localchat.gui.chat.markdown import warm_lexers
from localchat.gui.chat.turns import TurnController
from localchat.gui.chat.view import ChatView
from localchat.gui.chrome import PAGES, NavRail, TopBar
from localchat.gui.composer import Composer
from localchat.gui.conversations import ConversationController
from localchat.gui.dialogs import SettingsDialog
from localchat.gui.engine_bridge import EngineBridge, LoadRequest
from localchat.gui.models_page import ModelsPage
from localchat.gui.network_page import NetworkPage
from localchat.gui.sidebar import Sidebar
from localchat.gui.tasks import run_task
from localchat.gui.toast import Toast

log = logging.getLogger(__name__)
PAGE_TITLES = {"models": "Models", "network": "Network & privacy"}


class MainWindow(QMainWindow):
    def __init__(self, ctx: AppContext, isolation: str | None = None) -> None:
        super().__init__()
        self.ctx = ctx
        self.setWindowTitle("localchat")
        self.resize(1240, 800)
        self.setMinimumSize(760, 480)
        self.store = ConversationStore(ctx.paths.database_file)
        self.store.purge_deleted()  # deletions left from a previous session are final
        self.bridge = EngineBridge(isolation or ("require" if ctx.settings.require_isolation else "auto"), self)
        w = self.bridge.driver
        w.workerStarted.connect(self._on_worker_started)
        w.workerStopped.connect(self._on_worker_stopped)
        w.loadProgress.connect(self._on_load_progress)
        w.loaded.connect(self._on_loaded)
        w.loadFailed.connect(self._on_load_failed)
        self.turn_controller = TurnController(self)
        self.conversations = ConversationController(self)
        w.chunk.connect(self.turn_controller.on_chunk)
        w.turnCrashed.connect(self.turn_controller.on_crashed)
        self.conversation_id: int | None = None
        self.load_info: LoadInfo | None = None
        self.model_name: str | None = None  # the model loaded or being loaded
        self.notice: str | None = None
        self._load_id = ""
        self._shut = False
        self.theme = theming.apply_theme(ctx.settings.theme)
        self._build()
        self.api = api_server.install(self)  # the local API switch on the Network page (off)
        self.lan = lan_panel.install(self)  # LAN mode's "only these peers" (hidden without helper machines)
        hints = QGuiApplication.styleHints()
        if hints is not None:
            hints.colorSchemeChanged.connect(self._on_system_scheme_changed)
        self._restore_state()
        self.conversations.refresh()
        last = ctx.settings.last_conversation
        if last and self.store.get(last):
            self.conversations.open(last)  # first: its model is the one to load
        self.refresh_models()
        self.update_title()
        QTimer.singleShot(1000, self._warm_lexers)  # after the first paint: it competes for the GIL
        if self.store.recovered_from is not None:
            self.notice = (f"Your conversation history could not be read, so localchat started a new one. The old "
                           f"file was kept as {self.store.recovered_from.name} in {self.store.recovered_from.parent}.")
            QTimer.singleShot(0, self._show_recovery_notice)

    # -- layout ------------------------------------------------------------------------------------------

    def _build(self) -> None:
        central = QWidget()
        root = QHBoxLayout(central)
        root.setContentsMargins(0, 0, 0, 0)
        root.setSpacing(0)
        self.nav = NavRail()
        self.nav.pageRequested.connect(self.show_page)
        self.nav.settingsRequested.connect(self.open_settings)
        root.addWidget(self.nav)

        self.sidebar = Sidebar()
        chats = self.conversations
        self.sidebar.newRequested.connect(chats.new)
        self.sidebar.openRequested.connect(chats.open)
        self.sidebar.searchChanged.connect(chats.refresh)
        self.sidebar.renameRequested.connect(chats.rename)
        self.sidebar.deleteRequested.connect(chats.delete)
        self.sidebar.settingsRequested.connect(chats.settings)
        self.sidebar.exportRequested.connect(chats.export)

        right = QWidget()
        rl = QVBoxLayout(right)
        rl.setContentsMargins(0, 0, 0, 0)
        rl.setSpacing(0)
        self.top = TopBar()
        self.top.modelPicked.connect(self._on_model_picked)
        self.top.privacyClicked.connect(self._show_network)
        self.top.menuRequested.connect(chats.menu)
        rl.addWidget(self.top)

        chat_page = QWidget()
        chat_page.setObjectName("chatPane")
        chat_page.setAttribute(Qt.WidgetAttribute.WA_StyledBackground)
        cl = QVBoxLayout(chat_page)
        cl.setContentsMargins(0, 0, 0, 0)
        cl.setSpacing(0)
        self.chat = ChatView()
        turns = self.turn_controller
        self.chat.regenerateRequested.connect(turns.regenerate)
        self.chat.editSubmitted.connect(turns.edit_and_resend)
        self.chat.retryRequested.connect(turns.retry)
        self.chat.suggestionPicked.connect(self._use_suggestion)
        self.chat.empty.browseModels.connect(self._show_models)
        self.chat.empty.importModel.connect(self._import_model)
        self.chat.toastRequested.connect(self.show_toast)
        cl.addWidget(self.chat, 1)
        self.composer = Composer()
        self.composer.submitted.connect(turns.send)
        self.composer.stopRequested.connect(turns.stop)
        cl.addWidget(self.composer)
        self.input = self.composer.input

        self.pages = QStackedWidget()
        self.models_page = ModelsPage(self.ctx)
        self.models_page.libraryChanged.connect(self.refresh_models)
        self.network_page = NetworkPage(self.ctx)
        for page in (chat_page, self.models_page, self.network_page):
            self.pages.addWidget(self._padded(page) if page is not chat_page else page)
        rl.addWidget(self.pages, 1)

        self.splitter = QSplitter()
        self.splitter.setHandleWidth(1)
        self.splitter.setChildrenCollapsible(False)
        self.splitter.addWidget(self.sidebar)
        self.splitter.addWidget(right)
        self.splitter.setStretchFactor(1, 1)
        self.splitter.setSizes([270, 970])
        root.addWidget(self.splitter, 1)
        self.setCentralWidget(central)
        self.toast = Toast(central)

        for keys, slot in (("Ctrl+N", chats.new), ("Escape", turns.stop), ("Ctrl+F", self.focus_search),
                           ("Ctrl+,", self.open_settings), ("Ctrl+L", self.composer.focus)):
            QShortcut(QKeySequence(keys), self, slot)

    @staticmethod
    def _padded(page: QWidget) -> QWidget:
        holder = QWidget()
        lay = QVBoxLayout(holder)
        lay.setContentsMargins(24, 16, 24, 16)
        lay.addWidget(page)
        return holder

    @Slot(int)
    def show_page(self, i: int) -> None:
        self.pages.setCurrentIndex(i)
        self.nav.set_page(i)
        self.sidebar.setVisible(i == 0)
        self.top.menu_button.setVisible(i == 0)
        self.update_title()

    @Slot()
    def _show_network(self) -> None:
        self.show_page(2)

    @Slot()
    def _show_models(self) -> None:
        self.show_page(1)

    @Slot()
    def _import_model(self) -> None:
        self.show_page(1)
        self.models_page.import_dialog()

    @Slot()
    def focus_search(self) -> None:
        self.show_page(0)
        self.sidebar.search.setFocus()
        self.sidebar.search.selectAll()

    def update_title(self) -> None:
        key = PAGES[self.pages.currentIndex()][0]
        if key == "chat":
            conv = self.store.get(self.conversation_id) if self.conversation_id else None
            title = conv.title if conv else "New chat"
        else:
            title = PAGE_TITLES[key]
        self.top.title.set_full_text(title)
        self.top.menu_button.setEnabled(self.conversation_id is not None)
        self.setWindowTitle(f"{title} — localchat" if key == "chat" and self.conversation_id else "localchat")

    @Slot(str)
    def show_toast(self, text: str) -> None:
        self.toast.show_message(text)

    @Slot(str)
    def _use_suggestion(self, prompt: str) -> None:
        self.composer.set_text(prompt)
        self.composer.focus()

    def status_text(self) -> str:
        """One line on the model state (the frozen build's smoke test prints it)."""
        return self.top.device.text()

    # -- models ------------------------------------------------------------------------------------------

    @Slot()
    def refresh_models(self) -> None:
        entries = self.ctx.library.entries()
        names = [e.name for e in entries]
        want = self.model_name or self._conversation_model() or self.ctx.settings.last_model
        if want not in names:
            want = names[0] if names else None
        self.top.set_models([(e.name, e.size) for e in entries], want)
        self.chat.empty.set_model(want or "", installed=bool(names))
        if want is None:
            self.model_name = None
            self.load_info = None
            self.top.set_status("No model installed — open Models", "Download or import a GGUF model on the "
                                                                     "Models page.")
        elif want != self.model_name:
            self.load_model(want)

    def _conversation_model(self) -> str | None:
        conv = self.store.get(self.conversation_id) if self.conversation_id else None
        return conv.model if conv else None

    @Slot(str)
    def _on_model_picked(self, name: str) -> None:
        if self.conversation_id is not None:
            self.store.update(self.conversation_id, model=name)
        if name != self.model_name:
            self.load_model(name)

    def load_model(self, name: str) -> None:
        try:
            path = self.ctx.library.resolve(name)
        except LocalChatError as exc:
            self.model_name = None
            self._load_failed(str(exc))
            return
        self.model_name = name
        self.load_info = None
        self.ctx.settings.last_model = name
        self._load_id = uuid.uuid4().hex
        self.top.select_model(name)
        self.top.set_loading(0.0)
        self.chat.empty.set_model(name)
        self.bridge.requestLoad.emit(LoadRequest(self._load_id, name, path, replace(self.ctx.settings)))

    @Slot(str, float)
    def _on_load_progress(self, load_id: str, p: float) -> None:
        if load_id == self._load_id:
            self.top.set_loading(p)

    @Slot(str, object)
    def _on_loaded(self, load_id: str, info: object) -> None:
        if load_id != self._load_id:
            return  # a load the user has since replaced by another
        assert isinstance(info, LoadInfo)
        self.load_info = info
        self.top.set_loaded(info)
        self.turn_controller.model_ready()

    @Slot(str, str)
    def _on_load_failed(self, load_id: str, message: str) -> None:
        if load_id == self._load_id:
            self.model_name = None
            self._load_failed(message)

    def _load_failed(self, message: str) -> None:
        self.top.set_status("Not loaded", message)
        self.show_toast(f"The model could not be loaded: {message}")
        self.turn_controller.model_failed(message)

    @Slot(int, dict)
    def _on_worker_started(self, pid: int, isolation: dict[str, Any]) -> None:
        self.top.set_isolation(isolation)
        self.network_page.set_worker(pid, isolation)

    @Slot()
    def _on_worker_stopped(self) -> None:
        self.top.set_isolation(None)
        self.network_page.set_worker(None, None)

    # -- settings and state ------------------------------------------------------------------------------

    @Slot()
    def open_settings(self) -> None:
        hint = ""
        if self.load_info is not None:
            layers = self.load_info.n_gpu_layers
            hint = (f"For {self.model_name} on this machine the planner chose {layers} GPU layer"
                    f"{'' if layers == 1 else 's'}" + (" (CPU only)." if not layers else "."))
        dlg = SettingsDialog(self.ctx.settings, hint, self)
        if not dlg.exec() or dlg.chosen is None:
            return
        old, new = self.ctx.settings, dlg.chosen
        new.window = old.window
        self.ctx.settings = new
        self.ctx.library.models_dir = self.ctx.models_dir
        self.ctx.save_settings()
        if new.theme != old.theme:
            self.apply_theme()
        if new.models_dir != old.models_dir:
            self.refresh_models()
        if new.require_isolation != old.require_isolation:
            self.show_toast("The isolation setting applies when the app next starts.")
        if self.model_name and (old.n_ctx, old.n_gpu_layers, old.n_threads) != (new.n_ctx, new.n_gpu_layers,
                                                                               new.n_threads):
            self.load_model(self.model_name)

    def apply_theme(self) -> None:
        self.theme = theming.apply_theme(self.ctx.settings.theme)
        for part in (self.nav, self.sidebar, self.top, self.composer):
            part.restyle()
        self.chat.set_theme(self.theme)

    @Slot(Qt.ColorScheme)
    def _on_system_scheme_changed(self, _scheme: Qt.ColorScheme) -> None:
        if self.ctx.settings.theme == "system":
            self.apply_theme()

    @Slot()
    def _warm_lexers(self) -> None:
        run_task(self, warm_lexers, name="warm-lexers")

    @Slot()
    def _show_recovery_notice(self) -> None:
        if self.notice:
            QMessageBox.warning(self, "Conversation history", self.notice)

    def _restore_state(self) -> None:
        w = self.ctx.settings.window
        try:
            if w.get("geometry"):
                self.restoreGeometry(QByteArray(base64.b64decode(w["geometry"])))
            if w.get("splitter"):
                self.splitter.setSizes([int(x) for x in w["splitter"]])
        except (ValueError, TypeError):
            log.warning("could not restore the window layout; using defaults")

    def save_state(self) -> None:
        sizes = self.splitter.sizes()
        if not self.sidebar.isVisible():
            sizes = self.ctx.settings.window.get("splitter", sizes)
        self.ctx.settings.window = {"geometry": base64.b64encode(bytes(self.saveGeometry().data())).decode(),
                                    "splitter": sizes}
        self.ctx.save_settings()

    def closeEvent(self, e: QCloseEvent) -> None:
        self.shutdown()
        super().closeEvent(e)

    def shutdown(self) -> None:
        if self._shut:
            return
        self._shut = True
        w = self.bridge.driver
        for sig in (w.workerStarted, w.workerStopped, w.loadProgress, w.loaded, w.loadFailed, w.chunk,
                    w.turnCrashed):
            sig.disconnect()  # late events from the engine thread must not reach a closed store
        self.turn_controller.abandon()
        self.save_state()
        self.models_page.shutdown()
        self.api.stop()  # before the worker: its running request ends, the port is released
        self.api.wait()
        self.bridge.stop()
        self.store.purge_deleted()
        self.store.close()
