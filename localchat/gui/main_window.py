"""The main window: navigation rail, conversations, the chat (or the Models / Network page), the top bar.

It composes the parts and routes events between them; the work lives elsewhere: the engine runs in its own thread
and process (engine_bridge), rendering in gui/chat, persistence in core.chat.store, and the logic of a chat turn
(sampling, history rules, gathering and saving the answer) in core.chat.conversation and core.chat.turn.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

from PySide6.QtCore import QByteArray, QPoint, Qt, QTimer, Slot
from PySide6.QtGui import QCloseEvent, QGuiApplication, QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QFileDialog,
    QHBoxLayout,
    QInputDialog,
    QMainWindow,
    QMessageBox,
    QSplitter,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from localchat.context import AppContext
from localchat.core.chat.conversation import conversation_turn, effective_sampling
from localchat.core.chat.conversation import history_for as history_for  # the rules' old home, kept importable
from localchat.core.chat.store import ConversationStore, Message
from localchat.core.chat.turn import Status, Turn, TurnOutcome
from localchat.core.engine.protocol import LoadInfo
from localchat.errors import LocalChatError
from localchat.gui import api_server
from localchat.gui import theme as theming
from localchat.gui.chat.display import DisplayMessage
from localchat.gui.chat.view import ChatView
from localchat.gui.chrome import PAGES, NavRail, TopBar
from localchat.gui.composer import Composer
from localchat.gui.dialogs import ConversationSettingsDialog, SettingsDialog
from localchat.gui.engine_bridge import EngineBridge, LoadRequest
from localchat.gui.chat.markdown import warm_lexers
from localchat.gui.models_page import ModelsPage
from localchat.gui.network_page import NetworkPage
from localchat.gui.sidebar import Sidebar
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
        w = self.bridge.worker
        w.workerStarted.connect(self._on_worker_started)
        w.workerStopped.connect(self._on_worker_stopped)
        w.loadProgress.connect(self._on_load_progress)
        w.loaded.connect(self._on_loaded)
        w.loadFailed.connect(self._on_load_failed)
        w.chunk.connect(self._on_chunk)
        w.turnCrashed.connect(self._on_crashed)
        self.conversation_id: int | None = None
        self.current_request: str | None = None
        self.load_info: LoadInfo | None = None
        self.model_name: str | None = None  # the model loaded or being loaded
        self.notice: str | None = None
        self._load_id = ""
        self._pending_send = False
        self._deleted: list[int] = []
        self._turn: Turn | None = None  # the answer streaming now (core: its text, checkpoints and saved row)
        self._shut = False
        self.theme = theming.apply_theme(ctx.settings.theme)
        self._build()
        self.api = api_server.install(self)  # the local API switch on the Network page (off)
        hints = QGuiApplication.styleHints()
        if hints is not None:
            hints.colorSchemeChanged.connect(self._on_system_scheme_changed)
        self._restore_state()
        self.refresh_conversations()
        last = ctx.settings.last_conversation
        if last and self.store.get(last):
            self.open_conversation(last)  # first: its model is the one to load
        self.refresh_models()
        self._update_title()
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
        self.sidebar.newRequested.connect(self.new_conversation)
        self.sidebar.openRequested.connect(self.open_conversation)
        self.sidebar.searchChanged.connect(self.refresh_conversations)
        self.sidebar.renameRequested.connect(self.rename_conversation)
        self.sidebar.deleteRequested.connect(self.delete_conversation)
        self.sidebar.settingsRequested.connect(self.conversation_settings)
        self.sidebar.exportRequested.connect(self.export_conversation)

        right = QWidget()
        rl = QVBoxLayout(right)
        rl.setContentsMargins(0, 0, 0, 0)
        rl.setSpacing(0)
        self.top = TopBar()
        self.top.modelPicked.connect(self._on_model_picked)
        self.top.privacyClicked.connect(self._show_network)
        self.top.menuRequested.connect(self._conversation_menu)
        rl.addWidget(self.top)

        chat_page = QWidget()
        chat_page.setObjectName("chatPane")
        chat_page.setAttribute(Qt.WidgetAttribute.WA_StyledBackground)
        cl = QVBoxLayout(chat_page)
        cl.setContentsMargins(0, 0, 0, 0)
        cl.setSpacing(0)
        self.chat = ChatView()
        self.chat.regenerateRequested.connect(self.regenerate)
        self.chat.editSubmitted.connect(self.edit_and_resend)
        self.chat.retryRequested.connect(self.retry)
        self.chat.suggestionPicked.connect(self._use_suggestion)
        self.chat.empty.browseModels.connect(self._show_models)
        self.chat.empty.importModel.connect(self._import_model)
        self.chat.toastRequested.connect(self._toast)
        cl.addWidget(self.chat, 1)
        self.composer = Composer()
        self.composer.submitted.connect(self.send)
        self.composer.stopRequested.connect(self.stop)
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

        for keys, slot in (("Ctrl+N", self.new_conversation), ("Escape", self.stop), ("Ctrl+F", self.focus_search),
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
        self._update_title()

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

    def _update_title(self) -> None:
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
    def _toast(self, text: str) -> None:
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
        if self._pending_send:
            self._pending_send = False
            self._start_turn()

    @Slot(str, str)
    def _on_load_failed(self, load_id: str, message: str) -> None:
        if load_id == self._load_id:
            self.model_name = None
            self._load_failed(message)

    def _load_failed(self, message: str) -> None:
        self.top.set_status("Not loaded", message)
        self._toast(f"The model could not be loaded: {message}")
        if self._pending_send:
            self._pending_send = False
            self.chat.begin_stream()
            self._finish("error", {}, f"The model could not be loaded: {message}")

    @Slot(int, dict)
    def _on_worker_started(self, pid: int, isolation: dict[str, Any]) -> None:
        self.top.set_isolation(isolation)
        self.network_page.set_worker(pid, isolation)

    @Slot()
    def _on_worker_stopped(self) -> None:
        self.top.set_isolation(None)
        self.network_page.set_worker(None, None)

    # -- conversations -----------------------------------------------------------------------------------

    @Slot()
    def refresh_conversations(self) -> None:
        self.sidebar.set_conversations(self.store.conversations(self.sidebar.search_text), self.conversation_id)

    @Slot()
    def new_conversation(self) -> None:
        self._abandon_stream()
        self.show_page(0)
        self.conversation_id = None
        self.ctx.settings.last_conversation = None
        self.chat.set_messages([])
        self.sidebar.select(None)
        self._update_title()
        self.composer.focus()

    @Slot(int)
    def open_conversation(self, cid: int) -> None:
        conv = self.store.get(cid)
        if conv is None:
            return
        if cid == self.conversation_id and (self.current_request or self._pending_send):
            self.show_page(0)  # already open and answering: nothing to reload
            return
        self._abandon_stream()
        self.conversation_id = cid
        self.ctx.settings.last_conversation = cid
        self.chat.set_messages([_display(m) for m in self.store.messages(cid)])
        self.sidebar.select(cid)
        self._update_title()
        if conv.model and conv.model != self.model_name and self.ctx.library.get(conv.model) is not None:
            self.load_model(conv.model)

    @Slot()
    def _conversation_menu(self) -> None:
        if self.conversation_id is None:
            return
        menu = self.sidebar.conversation_menu(self.conversation_id, self)
        b = self.top.menu_button
        menu.exec(b.mapToGlobal(QPoint(b.width() - menu.sizeHint().width(), b.height())))

    @Slot(int)
    def rename_conversation(self, cid: int, title: str | None = None) -> None:
        conv = self.store.get(cid)
        if conv is None:
            return
        if title is None:
            title, ok = QInputDialog.getText(self, "Rename chat", "Title", text=conv.title)
            if not ok:
                return
        if title.strip():
            self.store.update(cid, title=title.strip())
            self.refresh_conversations()
            self._update_title()

    @Slot(int)
    def delete_conversation(self, cid: int) -> None:
        conv = self.store.get(cid)
        if conv is None:
            return
        if cid == self.conversation_id:
            self.new_conversation()
        self.store.delete(cid)
        self._deleted.append(cid)
        self.refresh_conversations()
        self.toast.show_message(f"Deleted “{_short(conv.title)}”", "Undo", self.undo_delete, ms=8000)

    @Slot()
    def undo_delete(self) -> None:
        if self._deleted:
            cid = self._deleted.pop()
            self.store.undelete(cid)
            self.refresh_conversations()

    @Slot(int, str)
    def export_conversation(self, cid: int, fmt: str, path: str | None = None) -> Path | None:
        conv = self.store.get(cid)
        if conv is None:
            return None
        if path is None:
            suggested = str(Path.home() / f"{_filename(conv.title)}.{fmt}")
            kind = "Markdown (*.md)" if fmt == "md" else "JSON (*.json)"
            path, _ = QFileDialog.getSaveFileName(self, "Export chat", suggested, kind)
            if not path:
                return None
        data = (self.store.export_markdown(cid) if fmt == "md"
                else json.dumps(self.store.export_json(cid), indent=2, ensure_ascii=False))
        try:
            Path(path).write_text(data, encoding="utf-8")
        except OSError as exc:
            QMessageBox.warning(self, "Export chat", f"Could not write {path}: {exc.strerror or exc}")
            return None
        self._toast(f"Exported to {Path(path).name}")
        return Path(path)

    @Slot(int)
    def conversation_settings(self, cid: int) -> None:
        conv = self.store.get(cid)
        if conv is None:
            return
        s = self.ctx.settings
        defaults = effective_sampling(s, {}, bool(self.load_info and self.load_info.is_r1))
        dlg = ConversationSettingsDialog(conv.title, conv.model, conv.system_prompt, conv.sampling, defaults, self)
        if dlg.exec():
            system_prompt, sampling = dlg.result_values()
            self.store.update(cid, system_prompt=system_prompt, sampling=sampling)

    # -- chatting ----------------------------------------------------------------------------------------

    def _set_busy(self, busy: bool) -> None:
        self.composer.set_busy(busy)
        self.chat.set_busy(busy)
        self.top.picker.setEnabled(not busy)

    @Slot()
    def send(self) -> None:
        text = self.composer.text().strip()
        if not text or self.current_request or self._pending_send:
            return
        if self.conversation_id is None:
            title = text.splitlines()[0][:60]
            conv = self.store.create(title=title, model=self.model_name, system_prompt=self.ctx.settings.system_prompt)
            self.conversation_id = conv.id
            self.ctx.settings.last_conversation = conv.id
            self.refresh_conversations()
            self._update_title()
        m = self.store.add_message(self.conversation_id, "user", text)
        self.chat.add_message(DisplayMessage("user", text, db_id=m.id))
        self.composer.clear()
        self._start_turn()

    def _start_turn(self) -> None:
        assert self.conversation_id is not None
        if self.model_name is None or self.load_info is None:
            self._pending_send = True
            self._set_busy(True)
            if self.model_name is None:
                name = self.top.picker.currentData()
                if name:
                    self.load_model(name)
                else:
                    self._pending_send = False
                    self.chat.begin_stream()
                    self._finish("error", {}, "No model is installed yet. Open the Models page to download one "
                                              "or import a GGUF file.")
            return
        conv = self.store.get(self.conversation_id)
        request = conversation_turn(self.store.messages(self.conversation_id), conv.system_prompt if conv else "",
                                    conv.sampling if conv else {}, self.ctx.settings, self.load_info.is_r1)
        self.current_request = request.request_id
        self._turn = Turn(request.request_id, self.model_name, store=self.store,
                          conversation_id=self.conversation_id)
        self.chat.begin_stream(self.model_name)
        self._set_busy(True)
        self.bridge.requestChat.emit(request)

    def _current_turn(self) -> Turn:
        """The turn of ``current_request`` (made here for a stream begun without one: a failed load, a test)."""
        rid = self.current_request or ""
        if self._turn is None or self._turn.request_id != rid:
            m = self.chat.streaming
            self._turn = Turn(rid, m.model if m is not None else "", store=self.store,
                              conversation_id=self.conversation_id)
        return self._turn

    @property
    def _stream_row(self) -> int | None:
        """The saved row of the streaming answer, once checkpointed."""
        return self._turn.row_id if self._turn is not None else None

    @Slot(object)
    def _on_chunk(self, chunk: object) -> None:
        if self.current_request is None or getattr(chunk, "request_id", None) != self.current_request:
            return  # a superseded request
        turn = self._current_turn()
        update = turn.feed(chunk)  # type: ignore[arg-type]
        if update.outcome is not None:
            self._finish(update.outcome.status, update.outcome.stats, update.outcome.error)
            return
        if update.kind in ("content", "reasoning", "notice"):
            self.chat.append_chunk(update.kind, update.text)
        if turn.checkpoint_due():
            self.checkpoint()

    @Slot(str, str)
    def _on_crashed(self, request_id: str, message: str) -> None:
        if request_id != self.current_request:
            return
        self.load_info = None
        self.model_name = None  # the next question starts a new worker and reloads the model
        self.top.set_status("Stopped — ask again to restart", message)
        outcome = self._current_turn().crashed(message)
        self._finish(outcome.status, outcome.stats, outcome.error)

    def checkpoint(self) -> None:
        """Save the streaming answer so far (status "stopped" until it completes)."""
        m = self.chat.streaming
        if m is None or self.conversation_id is None:
            return
        turn = self._current_turn()
        turn.checkpoint()
        if turn.row_id is not None:
            m.db_id = turn.row_id

    def _finish(self, status: Status, stats: dict[str, Any], error: str = "") -> None:
        m = self.chat.streaming
        turn = self._current_turn() if m is not None else None
        self.chat.finish_stream(status, stats, error)
        if m is not None and turn is not None and self.conversation_id is not None:
            # the view's stats: the turn's, plus how long the model thought
            turn.finish(TurnOutcome(status, dict(m.stats), error))
            if turn.row_id is not None:
                m.db_id = turn.row_id
        self._turn = None
        self.current_request = None
        self._pending_send = False
        self._set_busy(False)
        self.refresh_conversations()

    def _abandon_stream(self) -> None:
        """Leaving a chat while it streams: stop the worker and keep the partial answer as stopped."""
        if self.current_request:
            self.bridge.cancel(self.current_request)
            self._finish("stopped", {"finish_reason": "cancelled"})
        self._pending_send = False

    @Slot()
    def stop(self) -> None:
        if self.current_request:
            self.bridge.cancel(self.current_request)
        elif self._pending_send:  # still waiting for the model to load: just do not send
            self._pending_send = False
            self._set_busy(False)

    @Slot(int)
    def regenerate(self, index: int) -> None:
        if self.current_request or self.conversation_id is None or index >= len(self.chat.messages):
            return
        m = self.chat.messages[index]
        if m.db_id is not None:
            self.store.delete_messages_from(self.conversation_id, m.db_id)
        self.chat.truncate(index)
        self._start_turn()

    @Slot(int, str)
    def edit_and_resend(self, index: int, text: str) -> None:
        if self.current_request or self.conversation_id is None or index >= len(self.chat.messages):
            return
        m = self.chat.messages[index]
        if m.db_id is not None:
            self.store.delete_messages_from(self.conversation_id, m.db_id)
        self.chat.truncate(index)
        saved = self.store.add_message(self.conversation_id, "user", text)
        self.chat.add_message(DisplayMessage("user", text, db_id=saved.id))
        self._start_turn()

    @Slot()
    def retry(self) -> None:
        if self.chat.messages and self.chat.messages[-1].role == "assistant":
            self.regenerate(len(self.chat.messages) - 1)

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
            self._toast("The isolation setting applies when the app next starts.")
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
        threading.Thread(target=warm_lexers, name="warm-lexers", daemon=True).start()

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
        w = self.bridge.worker
        for sig in (w.workerStarted, w.workerStopped, w.loadProgress, w.loaded, w.loadFailed, w.chunk,
                    w.turnCrashed):
            sig.disconnect()  # late events from the engine thread must not reach a closed store
        self._abandon_stream()
        self.save_state()
        self.models_page.shutdown()
        self.api.stop()  # before the worker: its running request ends, the port is released
        self.api.wait()
        self.bridge.stop()
        self.store.purge_deleted()
        self.store.close()


def _display(m: Message) -> DisplayMessage:
    return DisplayMessage(m.role, m.content, m.reasoning, m.status, m.stats, m.id, model=str(m.stats.get("model", "")),
                          thought_s=m.stats.get("thought_s"), error=str(m.stats.get("error", "")))


def _short(title: str, n: int = 40) -> str:
    return title if len(title) <= n else title[: n - 1] + "…"


def _filename(title: str) -> str:
    safe = "".join(c if c.isalnum() or c in " -_" else "_" for c in title).strip()
    return (safe or "chat")[:60]
