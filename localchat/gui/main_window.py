"""The main window: conversations on the left, the chat (or Models / Network page) in the middle.

It composes the parts and routes engine events; the heavy lifting lives elsewhere: the engine runs in its own
thread and process (engine_bridge), rendering in chat_view, persistence in core.chat.store.
"""

from __future__ import annotations

import base64
import logging
import uuid
from pathlib import Path
from typing import Any

from PySide6.QtCore import QByteArray, Qt, QTimer, Slot
from PySide6.QtGui import QAction, QCloseEvent, QGuiApplication, QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QButtonGroup,
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QInputDialog,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QMainWindow,
    QMenu,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QSplitter,
    QStackedWidget,
    QToolBar,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from localchat.context import AppContext
from localchat.core.chat.history import default_sampling, fold_system_prompt, strip_reasoning
from localchat.core.chat.messages import (
    ChatMessage,
    ContentChunk,
    ErrorChunk,
    NoticeChunk,
    ReasoningChunk,
    SamplingParams,
    StatsChunk,
)
from localchat.core.chat.store import ConversationStore
from localchat.core.engine.protocol import LoadInfo
from localchat.errors import LocalChatError
from localchat.gui.chat_view import ChatView, DisplayMessage
from localchat.gui.engine_bridge import EngineBridge
from localchat.gui.models_page import ModelsPage
from localchat.gui.network_page import NetworkPage
from localchat.gui.theme import apply_theme
from localchat.gui.widgets import MessageInput, SettingsDialog
from localchat.settings import Settings

log = logging.getLogger(__name__)


class MainWindow(QMainWindow):
    def __init__(self, ctx: AppContext, isolation: str | None = None) -> None:
        super().__init__()
        self.ctx = ctx
        self.setWindowTitle("localchat")
        self.resize(1180, 780)
        self.store = ConversationStore(ctx.paths.database_file)
        self.bridge = EngineBridge(isolation or ("require" if ctx.settings.require_isolation else "auto"), self)
        w = self.bridge.worker
        w.workerStarted.connect(self._on_worker_started)
        w.loadProgress.connect(self._on_load_progress)
        w.loaded.connect(self._on_loaded)
        w.loadFailed.connect(self._on_load_failed)
        w.chunk.connect(self._on_chunk)
        w.turnCrashed.connect(self._on_crashed)
        self.conversation_id: int | None = None
        self.current_request: str | None = None
        self.load_info: LoadInfo | None = None
        self.model_name: str | None = None
        self._pending_send = False
        self._deleted: int | None = None
        self._build()
        self.dark = apply_theme(ctx.settings.theme)
        self.chat.set_dark(self.dark)
        hints = QGuiApplication.styleHints()
        if hints is not None:
            hints.colorSchemeChanged.connect(self._on_system_scheme_changed)
        self._restore_state()
        self.refresh_models()
        self.refresh_conversations()
        if ctx.settings.last_conversation and self.store.get(ctx.settings.last_conversation):
            self.open_conversation(ctx.settings.last_conversation)
        if self.store.recovered_from is not None:
            self.notice = (f"Your conversation database could not be read. It was kept as "
                           f"{self.store.recovered_from.name} and a new one was started.")
            QTimer.singleShot(0, lambda: QMessageBox.warning(self, "Conversation history", self.notice))

    # -- layout ------------------------------------------------------------------------------------------

    def _build(self) -> None:
        tb = QToolBar("Main")
        tb.setMovable(False)
        tb.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
        self.addToolBar(tb)
        self.nav = QButtonGroup(self)
        for i, name in enumerate(("Chat", "Models", "Network")):
            b = QToolButton()
            b.setText(name)
            b.setCheckable(True)
            b.setObjectName(f"nav-{name.lower()}")
            self.nav.addButton(b, i)
            tb.addWidget(b)
        self.nav.button(0).setChecked(True)
        self.nav.idClicked.connect(self._show_page)
        tb.addSeparator()
        tb.addWidget(QLabel(" Model "))
        self.model_picker = QComboBox()
        self.model_picker.setMinimumWidth(240)
        self.model_picker.activated.connect(self._on_model_picked)
        tb.addWidget(self.model_picker)
        self.progress = QProgressBar(maximum=100, textVisible=False)
        self.progress.setFixedWidth(120)
        self.progress.setVisible(False)
        tb.addWidget(self.progress)
        self.device_label = QLabel("")
        self.device_label.setObjectName("device")
        tb.addWidget(self.device_label)
        spacer = QWidget()
        spacer.setSizePolicy(spacer.sizePolicy().horizontalPolicy().Expanding, spacer.sizePolicy().verticalPolicy())
        tb.addWidget(spacer)
        self.privacy_label = QLabel("")
        tb.addWidget(self.privacy_label)
        settings_action = QAction("Settings", self)
        settings_action.setShortcut(QKeySequence("Ctrl+,"))
        settings_action.triggered.connect(self.open_settings)
        tb.addAction(settings_action)

        # sidebar
        side = QWidget()
        side.setObjectName("sidebar")
        sl = QVBoxLayout(side)
        sl.setContentsMargins(8, 8, 8, 8)
        self.new_button = QPushButton("+  New chat")
        self.new_button.clicked.connect(self.new_conversation)
        self.search = QLineEdit(placeholderText="Search conversations")
        self.search.textChanged.connect(self.refresh_conversations)
        self.conv_list = QListWidget()
        self.conv_list.itemClicked.connect(lambda it: self.open_conversation(it.data(Qt.ItemDataRole.UserRole)))
        self.conv_list.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.conv_list.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.conv_list.setTextElideMode(Qt.TextElideMode.ElideRight)
        self.conv_list.customContextMenuRequested.connect(self._conversation_menu)
        self.undo_button = QPushButton("Undo delete")
        self.undo_button.setVisible(False)
        self.undo_button.clicked.connect(self.undo_delete)
        for wdg in (self.new_button, self.search, self.conv_list, self.undo_button):
            sl.addWidget(wdg)

        # chat page
        chat_page = QWidget()
        cl = QVBoxLayout(chat_page)
        cl.setContentsMargins(12, 8, 12, 12)
        self.chat = ChatView()
        self.chat.regenerateRequested.connect(self.regenerate)
        self.chat.editRequested.connect(self.edit_message)
        self.chat.retryRequested.connect(self.retry)
        cl.addWidget(self.chat, 1)
        row = QHBoxLayout()
        self.input = MessageInput()
        self.input.submitted.connect(self.send)
        self.send_button = QPushButton("Send")
        self.send_button.setObjectName("send")
        self.send_button.clicked.connect(self._send_or_stop)
        self.send_button.setMinimumHeight(40)
        row.addWidget(self.input, 1)
        row.addWidget(self.send_button)
        cl.addLayout(row)

        self.pages = QStackedWidget()
        self.models_page = ModelsPage(self.ctx)
        self.network_page = NetworkPage(self.ctx)
        if hasattr(self.models_page, "libraryChanged"):
            self.models_page.libraryChanged.connect(self.refresh_models)
        for p in (chat_page, self.models_page, self.network_page):
            self.pages.addWidget(p)
        self.splitter = QSplitter()
        self.splitter.addWidget(side)
        self.splitter.addWidget(self.pages)
        self.splitter.setStretchFactor(1, 1)
        self.splitter.setSizes([260, 920])
        self.setCentralWidget(self.splitter)
        self.statusBar().showMessage("Ready — offline")

        QShortcut(QKeySequence("Ctrl+N"), self, self.new_conversation)
        QShortcut(QKeySequence("Escape"), self, self.stop)
        QShortcut(QKeySequence("Ctrl+F"), self, lambda: self.search.setFocus())

    @Slot(int)
    def _show_page(self, i: int) -> None:
        self.pages.setCurrentIndex(i)

    # -- models ------------------------------------------------------------------------------------------

    @Slot()
    def refresh_models(self) -> None:
        current = self.model_picker.currentData()
        self.model_picker.clear()
        for e in self.ctx.library.entries():
            self.model_picker.addItem(f"{e.name}  ({e.size / 1e9:.2f} GB)", e.name)
        want = current or self.ctx.settings.last_model
        idx = self.model_picker.findData(want) if want else -1
        if idx < 0 and self.model_picker.count():
            idx = 0
        if idx >= 0:
            self.model_picker.setCurrentIndex(idx)
            if self.model_picker.itemData(idx) != self.model_name:
                self.load_model(self.model_picker.itemData(idx))
        else:
            self.device_label.setText("  No model installed — open Models")

    @Slot(int)
    def _on_model_picked(self, idx: int) -> None:
        name = self.model_picker.itemData(idx)
        if name and name != self.model_name:
            self.load_model(name)

    def load_model(self, name: str) -> None:
        try:
            path = self.ctx.library.resolve(name)
        except LocalChatError as exc:
            self._on_load_failed(str(exc))
            return
        self.model_name = name
        self.load_info = None
        self.ctx.settings.last_model = name
        self.progress.setValue(0)
        self.progress.setVisible(True)
        self.device_label.setText("  Loading…")
        # planning detects the hardware (a subprocess): it runs in the engine thread, not before the first paint
        settings = Settings.from_dict(self.ctx.settings.to_dict())
        self.bridge.requestLoad.emit(str(path), settings)

    @Slot(float)
    def _on_load_progress(self, p: float) -> None:
        self.progress.setValue(int(p * 100))

    @Slot(object)
    def _on_loaded(self, info: object) -> None:
        assert isinstance(info, LoadInfo)
        self.load_info = info
        self.progress.setVisible(False)
        where = (f"GPU {info.offloaded_layers}/{info.offloadable_layers} layers" if info.offloaded_layers
                 else "CPU")
        self.device_label.setText(f"  {where} · {info.n_ctx} ctx · loaded in {info.load_s:.1f} s")
        if self._pending_send:
            self._pending_send = False
            self._start_turn()

    @Slot(str)
    def _on_load_failed(self, message: str) -> None:
        self.progress.setVisible(False)
        self.model_name = None
        self.device_label.setText("  Not loaded")
        self.statusBar().showMessage(message, 15000)
        if self._pending_send:
            self._pending_send = False
            self.chat.begin_stream()
            self.chat.finish_stream("error", error=f"The model could not be loaded: {message}")
            self._set_busy(False)

    @Slot(int, dict)
    def _on_worker_started(self, pid: int, isolation: dict[str, Any]) -> None:
        if isolation.get("isolated"):
            self.privacy_label.setText("✓ Worker network-isolated  ")
            self.privacy_label.setToolTip("The inference worker runs in its own network namespace with no "
                                          "interface up. See the Network page for the evidence.")
        else:
            self.privacy_label.setText("Worker monitored only  ")
            self.privacy_label.setToolTip(str(isolation.get("reason", "")))
        self.network_page.set_worker(pid, isolation)

    # -- conversations -----------------------------------------------------------------------------------

    @Slot()
    def refresh_conversations(self) -> None:
        self.conv_list.clear()
        for c in self.store.conversations(self.search.text().strip()):
            item = QListWidgetItem(c.title)
            item.setData(Qt.ItemDataRole.UserRole, c.id)
            item.setToolTip(c.title)
            self.conv_list.addItem(item)
            if c.id == self.conversation_id:
                item.setSelected(True)

    @Slot()
    def new_conversation(self) -> None:
        if self.current_request:
            return
        self.conversation_id = None
        self.chat.set_messages([])
        self.conv_list.clearSelection()
        self.input.setFocus()

    def open_conversation(self, cid: int) -> None:
        if self.current_request:
            return
        self.conversation_id = cid
        self.ctx.settings.last_conversation = cid
        self.chat.set_messages([DisplayMessage(m.role, m.content, m.reasoning, m.status, m.stats, m.id)
                                for m in self.store.messages(cid)])
        self.refresh_conversations()

    def _conversation_menu(self, pos: Any) -> None:
        item = self.conv_list.itemAt(pos)
        if item is None:
            return
        cid = item.data(Qt.ItemDataRole.UserRole)
        menu = QMenu(self)
        menu.addAction("Rename…", lambda: self.rename_conversation(cid))
        menu.addAction("Export as Markdown…", lambda: self.export_conversation(cid, "md"))
        menu.addAction("Export as JSON…", lambda: self.export_conversation(cid, "json"))
        menu.addSeparator()
        menu.addAction("Delete", lambda: self.delete_conversation(cid))
        menu.exec(self.conv_list.mapToGlobal(pos))

    def rename_conversation(self, cid: int, title: str | None = None) -> None:
        conv = self.store.get(cid)
        if conv is None:
            return
        if title is None:
            title, ok = QInputDialog.getText(self, "Rename conversation", "Title", text=conv.title)
            if not ok:
                return
        if title.strip():
            self.store.update(cid, title=title.strip())
            self.refresh_conversations()

    def delete_conversation(self, cid: int) -> None:
        self.store.delete(cid)
        self._deleted = cid
        self.undo_button.setVisible(True)
        self.statusBar().showMessage("Conversation deleted — Undo in the sidebar", 10000)
        if cid == self.conversation_id:
            self.new_conversation()
        self.refresh_conversations()

    @Slot()
    def undo_delete(self) -> None:
        if self._deleted is not None:
            self.store.undelete(self._deleted)
            self._deleted = None
        self.undo_button.setVisible(False)
        self.refresh_conversations()

    def export_conversation(self, cid: int, fmt: str, path: str | None = None) -> Path | None:
        import json

        if path is None:
            path, _ = QFileDialog.getSaveFileName(self, "Export conversation", f"conversation.{fmt}")
            if not path:
                return None
        data = (self.store.export_markdown(cid) if fmt == "md"
                else json.dumps(self.store.export_json(cid), indent=2, ensure_ascii=False))
        Path(path).write_text(data, encoding="utf-8")
        return Path(path)

    # -- chatting ----------------------------------------------------------------------------------------

    def _set_busy(self, busy: bool) -> None:
        self.send_button.setText("Stop" if busy else "Send")
        self.model_picker.setEnabled(not busy)

    @Slot()
    def _send_or_stop(self) -> None:
        if self.current_request:
            self.stop()
        else:
            self.send()

    @Slot()
    def send(self) -> None:
        text = self.input.toPlainText().strip()
        if not text or self.current_request:
            return
        if self.conversation_id is None:
            title = text.splitlines()[0][:48]
            conv = self.store.create(title=title, model=self.model_name, system_prompt=self.ctx.settings.system_prompt)
            self.conversation_id = conv.id
            self.ctx.settings.last_conversation = conv.id
            self.refresh_conversations()
        m = self.store.add_message(self.conversation_id, "user", text)
        self.chat.messages.append(DisplayMessage("user", text, db_id=m.id))
        self.input.clear()
        self._start_turn()

    def _start_turn(self) -> None:
        assert self.conversation_id is not None
        if self.model_name is None or self.load_info is None:
            self._pending_send = True
            self.chat.render_now()
            if self.model_name is None:
                name = self.model_picker.currentData()
                if name:
                    self.load_model(name)
                else:
                    self._pending_send = False
                    self.chat.begin_stream()
                    self.chat.finish_stream("error", error="No model is installed. Open the Models page.")
            return
        conv = self.store.get(self.conversation_id)
        history = [ChatMessage(m.role, m.content) for m in self.store.messages(self.conversation_id)  # type: ignore
                   if m.role in ("user", "assistant") and m.content]
        history = strip_reasoning(history)
        system = conv.system_prompt if conv else ""
        if system:
            history.insert(0, ChatMessage("system", system))
        s = self.ctx.settings
        sampling = SamplingParams(temperature=s.temperature, top_p=s.top_p, max_tokens=s.max_tokens)
        if self.load_info.is_r1:
            history = fold_system_prompt(history)
            sampling = default_sampling(True, sampling)
        self.current_request = uuid.uuid4().hex
        self.chat.begin_stream()
        self._set_busy(True)
        self.bridge.requestChat.emit(self.current_request, [m.to_dict() for m in history], sampling)

    @Slot(object)
    def _on_chunk(self, chunk: object) -> None:
        if getattr(chunk, "request_id", None) != self.current_request:
            return  # a superseded request
        if isinstance(chunk, ContentChunk):
            self.chat.append_chunk("content", chunk.text)
        elif isinstance(chunk, ReasoningChunk):
            self.chat.append_chunk("reasoning", chunk.text)
        elif isinstance(chunk, NoticeChunk):
            self.chat.append_chunk("notice", chunk.text)
        elif isinstance(chunk, StatsChunk):
            status = "stopped" if chunk.stats.finish_reason == "cancelled" else "complete"
            self._finish(status, chunk.stats.to_dict())
        elif isinstance(chunk, ErrorChunk):
            hint = {"context_overflow": "Shorten the message or raise the context length in Settings.",
                    "out_of_memory": "The model ran out of memory: lower the context length or GPU layers."}
            self._finish("error", {}, f"{chunk.message} {hint.get(chunk.kind, '')}".strip())

    @Slot(str, str, str, str)
    def _on_crashed(self, request_id: str, message: str, partial: str, partial_reasoning: str) -> None:
        if request_id != self.current_request:
            return
        self.load_info = None
        self.model_name = None  # the next question starts a new worker and reloads the model
        self.device_label.setText("  Worker stopped")
        self.network_page.set_worker(None, None)
        self._finish("error", {}, f"{message}. Your conversation is saved; ask again to restart the model.")

    def _finish(self, status: str, stats: dict[str, Any], error: str = "") -> None:
        m = self.chat.messages[-1] if self.chat.messages else None
        self.chat.finish_stream(status, stats, error)
        if m is not None and self.conversation_id is not None and (m.content or m.reasoning or status != "complete"):
            saved = self.store.add_message(self.conversation_id, "assistant", m.content, m.reasoning,
                                           status=status, stats=stats)
            m.db_id = saved.id
        self.current_request = None
        self._set_busy(False)

    @Slot()
    def stop(self) -> None:
        if self.current_request:
            self.bridge.cancel()

    @Slot(int)
    def regenerate(self, index: int) -> None:
        if self.current_request or self.conversation_id is None:
            return
        m = self.chat.messages[index]
        if m.db_id is not None:
            self.store.delete_messages_from(self.conversation_id, m.db_id)
        del self.chat.messages[index:]
        self._start_turn()

    @Slot(int)
    def edit_message(self, index: int) -> None:
        if self.current_request or self.conversation_id is None:
            return
        m = self.chat.messages[index]
        self.input.setPlainText(m.content)
        if m.db_id is not None:
            self.store.delete_messages_from(self.conversation_id, m.db_id)
        del self.chat.messages[index:]
        self.chat.render_now()
        self.input.setFocus()

    @Slot()
    def retry(self) -> None:
        if self.chat.messages and self.chat.messages[-1].role == "assistant":
            self.regenerate(len(self.chat.messages) - 1)

    # -- settings and state ------------------------------------------------------------------------------

    @Slot()
    def open_settings(self) -> None:
        hint = ""
        if self.load_info is not None:
            hint = f"Planner: {self.load_info.n_gpu_layers} GPU layers for the current model on this machine."
        dlg = SettingsDialog(self.ctx.settings, hint, self)
        if dlg.exec():
            old = self.ctx.settings
            self.ctx.settings = dlg.chosen
            self.ctx.save_settings()
            self.dark = apply_theme(self.ctx.settings.theme)
            self.chat.set_dark(self.dark)
            if self.model_name and (old.n_ctx, old.n_gpu_layers, old.n_threads) != (
                    dlg.chosen.n_ctx, dlg.chosen.n_gpu_layers, dlg.chosen.n_threads):
                self.load_model(self.model_name)

    @Slot(Qt.ColorScheme)
    def _on_system_scheme_changed(self, _scheme: Qt.ColorScheme) -> None:
        if self.ctx.settings.theme == "system":
            self.dark = apply_theme("system")
            self.chat.set_dark(self.dark)

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
        self.ctx.settings.window = {"geometry": base64.b64encode(bytes(self.saveGeometry().data())).decode(),
                                    "splitter": self.splitter.sizes()}
        self.ctx.save_settings()

    def closeEvent(self, e: QCloseEvent) -> None:
        self.shutdown()
        super().closeEvent(e)

    def shutdown(self) -> None:
        if getattr(self, "_shut", False):
            return
        self._shut = True
        w = self.bridge.worker
        for sig in (w.workerStarted, w.loadProgress, w.loaded, w.loadFailed, w.chunk, w.turnCrashed):
            sig.disconnect()  # late events from the engine thread must not reach a closed store
        if self.current_request and self.chat.messages:
            m = self.chat.messages[-1]
            if m.status == "streaming" and self.conversation_id is not None:
                self.store.add_message(self.conversation_id, "assistant", m.content, m.reasoning, status="stopped")
            self.bridge.cancel()
        self.save_state()
        self.models_page.shutdown()
        self.bridge.stop()
        if self._deleted is not None:
            self.store.purge_deleted()
        self.store.close()
