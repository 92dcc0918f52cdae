"""A chat turn in the window: send, stream into the view, keep in the store, stop, regenerate, edit, retry.

The turn's logic (request, history rules, gathering and saving the answer) is Qt-free in ``core.chat.conversation``
and ``core.chat.turn``; this controller wires it to the window's parts: the composer, the chat view, the engine
thread (``engine_bridge``) and the model state the window keeps.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QObject, Slot

from localchat.core.chat.conversation import conversation_turn
from localchat.core.chat.turn import Status, Turn, TurnOutcome
from localchat.gui.chat.display import DisplayMessage

if TYPE_CHECKING:
    from localchat.gui.main_window import MainWindow


class TurnController(QObject):
    """The window's one running turn (``current_request``), or a send waiting for the model (``pending_send``)."""

    def __init__(self, window: MainWindow) -> None:
        super().__init__(window)
        self.w = window
        self.current_request: str | None = None
        self.pending_send = False
        self._turn: Turn | None = None  # the answer streaming now (core: its text, checkpoints and saved row)

    @property
    def busy(self) -> bool:
        return bool(self.current_request) or self.pending_send

    def model_ready(self) -> None:
        """The model finished loading: a send that waited for it starts now."""
        if self.pending_send:
            self.pending_send = False
            self.start()

    def model_failed(self, message: str) -> None:
        """The model could not be loaded: a send that waited for it ends as an error in the conversation."""
        if self.pending_send:
            self.pending_send = False
            self.w.chat.begin_stream()
            self.finish("error", {}, f"The model could not be loaded: {message}")

    def set_busy(self, busy: bool) -> None:
        self.w.composer.set_busy(busy)
        self.w.chat.set_busy(busy)
        self.w.top.picker.setEnabled(not busy)

    @Slot()
    def send(self) -> None:
        text = self.w.composer.text().strip()
        if not text or self.current_request or self.pending_send:
            return
        if self.w.conversation_id is None:
            title = text.splitlines()[0][:60]
            conv = self.w.store.create(title=title, model=self.w.model_name,
                                       system_prompt=self.w.ctx.settings.system_prompt)
            self.w.conversation_id = conv.id
            self.w.ctx.settings.last_conversation = conv.id
            self.w.conversations.refresh()
            self.w.update_title()
        m = self.w.store.add_message(self.w.conversation_id, "user", text)
        self.w.chat.add_message(DisplayMessage("user", text, db_id=m.id))
        self.w.composer.clear()
        self.start()

    def start(self) -> None:
        assert self.w.conversation_id is not None
        if self.w.model_name is None or self.w.load_info is None:
            self.pending_send = True
            self.set_busy(True)
            if self.w.model_name is None:
                name = self.w.top.picker.currentData()
                if name:
                    self.w.load_model(name)
                else:
                    self.pending_send = False
                    self.w.chat.begin_stream()
                    self.finish("error", {}, "No model is installed yet. Open the Models page to download one "
                                              "or import a GGUF file.")
            return
        conv = self.w.store.get(self.w.conversation_id)
        request = conversation_turn(self.w.store.messages(self.w.conversation_id), conv.system_prompt if conv else "",
                                    conv.sampling if conv else {}, self.w.ctx.settings, self.w.load_info.is_r1)
        self.current_request = request.request_id
        self._turn = Turn(request.request_id, self.w.model_name, store=self.w.store,
                          conversation_id=self.w.conversation_id)
        self.w.chat.begin_stream(self.w.model_name)
        self.set_busy(True)
        self.w.bridge.requestChat.emit(request)

    def _current_turn(self) -> Turn:
        """The turn of ``current_request`` (made here for a stream begun without one: a failed load, a test)."""
        rid = self.current_request or ""
        if self._turn is None or self._turn.request_id != rid:
            m = self.w.chat.streaming
            self._turn = Turn(rid, m.model if m is not None else "", store=self.w.store,
                              conversation_id=self.w.conversation_id)
        return self._turn

    @property
    def stream_row(self) -> int | None:
        """The saved row of the streaming answer, once checkpointed."""
        return self._turn.row_id if self._turn is not None else None

    @Slot(object)
    def on_chunk(self, chunk: object) -> None:
        if self.current_request is None or getattr(chunk, "request_id", None) != self.current_request:
            return  # a superseded request
        turn = self._current_turn()
        update = turn.feed(chunk)  # type: ignore[arg-type]
        if update.outcome is not None:
            self.finish(update.outcome.status, update.outcome.stats, update.outcome.error)
            return
        if update.kind in ("content", "reasoning", "notice"):
            self.w.chat.append_chunk(update.kind, update.text)
        if turn.checkpoint_due():
            self.checkpoint()

    @Slot(str, str)
    def on_crashed(self, request_id: str, message: str) -> None:
        if request_id != self.current_request:
            return
        self.w.load_info = None
        self.w.model_name = None  # the next question starts a new worker and reloads the model
        self.w.top.set_status("Stopped — ask again to restart", message)
        outcome = self._current_turn().crashed(message)
        self.finish(outcome.status, outcome.stats, outcome.error)

    def checkpoint(self) -> None:
        """Save the streaming answer so far (status "stopped" until it completes)."""
        m = self.w.chat.streaming
        if m is None or self.w.conversation_id is None:
            return
        turn = self._current_turn()
        turn.checkpoint()
        if turn.row_id is not None:
            m.db_id = turn.row_id

    def finish(self, status: Status, stats: dict[str, Any], error: str = "") -> None:
        m = self.w.chat.streaming
        turn = self._current_turn() if m is not None else None
        self.w.chat.finish_stream(status, stats, error)
        if m is not None and turn is not None and self.w.conversation_id is not None:
            # the view's stats: the turn's, plus how long the model thought
            turn.finish(TurnOutcome(status, dict(m.stats), error))
            if turn.row_id is not None:
                m.db_id = turn.row_id
        self._turn = None
        self.current_request = None
        self.pending_send = False
        self.set_busy(False)
        self.w.conversations.refresh()

    def abandon(self) -> None:
        """Leaving a chat while it streams: stop the worker and keep the partial answer as stopped."""
        if self.current_request:
            self.w.bridge.cancel(self.current_request)
            self.finish("stopped", {"finish_reason": "cancelled"})
        self.pending_send = False

    @Slot()
    def stop(self) -> None:
        if self.current_request:
            self.w.bridge.cancel(self.current_request)
        elif self.pending_send:  # still waiting for the model to load: just do not send
            self.pending_send = False
            self.set_busy(False)

    def _cut_at(self, index: int) -> bool:
        """Drop message ``index`` and what follows, from the store and the view (False: nothing to cut now)."""
        if self.current_request or self.w.conversation_id is None or index >= len(self.w.chat.messages):
            return False
        m = self.w.chat.messages[index]
        if m.db_id is not None:
            self.w.store.delete_messages_from(self.w.conversation_id, m.db_id)
        self.w.chat.truncate(index)
        return True

    @Slot(int)
    def regenerate(self, index: int) -> None:
        if self._cut_at(index):
            self.start()

    @Slot(int, str)
    def edit_and_resend(self, index: int, text: str) -> None:
        if not self._cut_at(index) or self.w.conversation_id is None:
            return
        saved = self.w.store.add_message(self.w.conversation_id, "user", text)
        self.w.chat.add_message(DisplayMessage("user", text, db_id=saved.id))
        self.start()

    @Slot()
    def retry(self) -> None:
        if self.w.chat.messages and self.w.chat.messages[-1].role == "assistant":
            self.regenerate(len(self.w.chat.messages) - 1)
