"""The window's conversations: the list, opening, new, rename, delete (with Undo), export and per-chat settings.

The conversation open in the chat is ``MainWindow.conversation_id``; the rows live in ``core.chat.store``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, QPoint, Slot
from PySide6.QtWidgets import QFileDialog, QInputDialog, QMessageBox

from localchat.core.chat.conversation import effective_sampling
from localchat.core.chat.store import Message
from localchat.gui.chat.display import DisplayMessage
from localchat.gui.dialogs import ConversationSettingsDialog

if TYPE_CHECKING:
    from localchat.gui.main_window import MainWindow


class ConversationController(QObject):
    """What the sidebar and the top bar ask of conversations, done on the store and shown in the window."""

    def __init__(self, window: MainWindow) -> None:
        super().__init__(window)
        self.w = window
        self._deleted: list[int] = []  # deleted this session, newest last (Undo); purged at the next start

    @Slot()
    def refresh(self) -> None:
        self.w.sidebar.set_conversations(self.w.store.conversations(self.w.sidebar.search_text), self.w.conversation_id)

    @Slot()
    def new(self) -> None:
        self.w.turn_controller.abandon()
        self.w.show_page(0)
        self.w.conversation_id = None
        self.w.ctx.settings.last_conversation = None
        self.w.chat.set_messages([])
        self.w.sidebar.select(None)
        self.w.update_title()
        self.w.composer.focus()

    @Slot(int)
    def open(self, cid: int) -> None:
        conv = self.w.store.get(cid)
        if conv is None:
            return
        if cid == self.w.conversation_id and self.w.turn_controller.busy:
            self.w.show_page(0)  # already open and answering: nothing to reload
            return
        self.w.turn_controller.abandon()
        self.w.conversation_id = cid
        self.w.ctx.settings.last_conversation = cid
        self.w.chat.set_messages([_display(m) for m in self.w.store.messages(cid)])
        self.w.sidebar.select(cid)
        self.w.update_title()
        if conv.model and conv.model != self.w.model_name and self.w.ctx.library.get(conv.model) is not None:
            self.w.load_model(conv.model)

    @Slot()
    def menu(self) -> None:
        if self.w.conversation_id is None:
            return
        menu = self.w.sidebar.conversation_menu(self.w.conversation_id, self.w)
        b = self.w.top.menu_button
        menu.exec(b.mapToGlobal(QPoint(b.width() - menu.sizeHint().width(), b.height())))

    @Slot(int)
    def rename(self, cid: int, title: str | None = None) -> None:
        conv = self.w.store.get(cid)
        if conv is None:
            return
        if title is None:
            title, ok = QInputDialog.getText(self.w, "Rename chat", "Title", text=conv.title)
            if not ok:
                return
        if title.strip():
            self.w.store.update(cid, title=title.strip())
            self.refresh()
            self.w.update_title()

    @Slot(int)
    def delete(self, cid: int) -> None:
        conv = self.w.store.get(cid)
        if conv is None:
            return
        if cid == self.w.conversation_id:
            self.new()
        self.w.store.delete(cid)
        self._deleted.append(cid)
        self.refresh()
        self.w.toast.show_message(f"Deleted “{_short(conv.title)}”", "Undo", self.undo_delete, ms=8000)

    @Slot()
    def undo_delete(self) -> None:
        if self._deleted:
            cid = self._deleted.pop()
            self.w.store.undelete(cid)
            self.refresh()

    @Slot(int, str)
    def export(self, cid: int, fmt: str, path: str | None = None) -> Path | None:
        conv = self.w.store.get(cid)
        if conv is None:
            return None
        if path is None:
            suggested = str(Path.home() / f"{_filename(conv.title)}.{fmt}")
            kind = "Markdown (*.md)" if fmt == "md" else "JSON (*.json)"
            path, _ = QFileDialog.getSaveFileName(self.w, "Export chat", suggested, kind)
            if not path:
                return None
        data = (self.w.store.export_markdown(cid) if fmt == "md"
                else json.dumps(self.w.store.export_json(cid), indent=2, ensure_ascii=False))
        try:
            Path(path).write_text(data, encoding="utf-8")
        except OSError as exc:
            QMessageBox.warning(self.w, "Export chat", f"Could not write {path}: {exc.strerror or exc}")
            return None
        self.w.show_toast(f"Exported to {Path(path).name}")
        return Path(path)

    @Slot(int)
    def settings(self, cid: int) -> None:
        conv = self.w.store.get(cid)
        if conv is None:
            return
        s = self.w.ctx.settings
        defaults = effective_sampling(s, {}, bool(self.w.load_info and self.w.load_info.is_r1))
        dlg = ConversationSettingsDialog(conv.title, conv.model, conv.system_prompt, conv.sampling, defaults, self.w)
        if dlg.exec():
            system_prompt, sampling = dlg.result_values()
            self.w.store.update(cid, system_prompt=system_prompt, sampling=sampling)


def _display(m: Message) -> DisplayMessage:
    return DisplayMessage(m.role, m.content, m.reasoning, m.status, m.stats, m.id, model=str(m.stats.get("model", "")),
                          thought_s=m.stats.get("thought_s"), error=str(m.stats.get("error", "")))


def _short(title: str, n: int = 40) -> str:
    return title if len(title) <= n else title[: n - 1] + "…"


def _filename(title: str) -> str:
    safe = "".join(c if c.isalnum() or c in " -_" else "_" for c in title).strip()
    return (safe or "chat")[:60]
