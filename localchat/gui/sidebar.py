"""The conversation list: new chat, search over titles and messages, conversations grouped by date.

Right-click (or the ⋯ menu in the top bar) renames, exports, opens per-conversation settings or deletes; F2 renames
and Delete deletes the selected conversation. The window does the work; this widget only asks for it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from PySide6.QtCore import QPoint, QSize, Qt, Signal, Slot
from PySide6.QtGui import QAction, QKeyEvent
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QMenu,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from localchat.core.chat.store import Conversation
from localchat.gui import icons
from localchat.gui.theme import current

ID_ROLE = Qt.ItemDataRole.UserRole


def date_group(ts: float, today: dt.date) -> str:
    d = dt.datetime.fromtimestamp(ts).date()
    days = (today - d).days
    if days <= 0:
        return "Today"
    if days == 1:
        return "Yesterday"
    if days < 7:
        return "Previous 7 days"
    if days < 30:
        return "Previous 30 days"
    return d.strftime("%B %Y")


class ConversationList(QListWidget):
    """Signals:
        renameKey(int), deleteKey(int): F2 / Delete on a conversation.
    """

    renameKey = Signal(int)
    deleteKey = Signal(int)

    def keyPressEvent(self, e: QKeyEvent) -> None:
        item = self.currentItem()
        cid = item.data(ID_ROLE) if item is not None else None
        if cid is not None and e.key() == Qt.Key.Key_F2:
            self.renameKey.emit(cid)
        elif cid is not None and e.key() == Qt.Key.Key_Delete:
            self.deleteKey.emit(cid)
        else:
            super().keyPressEvent(e)


class Sidebar(QWidget):
    """Signals:
        newRequested(): start a new conversation.
        openRequested(int): open a conversation.
        searchChanged(str): the search text changed.
        renameRequested(int), deleteRequested(int), settingsRequested(int): conversation actions.
        exportRequested(int, str): export a conversation as "md" or "json".
    """

    newRequested = Signal()
    openRequested = Signal(int)
    searchChanged = Signal(str)
    renameRequested = Signal(int)
    deleteRequested = Signal(int)
    settingsRequested = Signal(int)
    exportRequested = Signal(int, str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("sidebar")
        self.setAttribute(Qt.WidgetAttribute.WA_StyledBackground)
        self.setMinimumWidth(200)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(10, 12, 10, 10)
        lay.setSpacing(10)
        head = QHBoxLayout()
        head.setContentsMargins(6, 0, 0, 0)
        title = QLabel("Chats")
        title.setObjectName("sidebarTitle")
        self.new_button = QToolButton()
        self.new_button.setObjectName("iconButton")
        self.new_button.setToolTip("New chat (Ctrl+N)")
        self.new_button.setIconSize(QSize(20, 20))
        self.new_button.setCursor(Qt.CursorShape.PointingHandCursor)
        self.new_button.clicked.connect(self.newRequested)
        head.addWidget(title)
        head.addStretch(1)
        head.addWidget(self.new_button)
        lay.addLayout(head)
        self.search = QLineEdit()
        self.search.setObjectName("search")
        self.search.setPlaceholderText("Search chats  (Ctrl+F)")
        self.search.setClearButtonEnabled(True)
        self._search_action = QAction(self.search)
        self.search.addAction(self._search_action, QLineEdit.ActionPosition.LeadingPosition)
        self.search.textChanged.connect(self.searchChanged)
        lay.addWidget(self.search)
        self.list = ConversationList()
        self.list.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.list.setTextElideMode(Qt.TextElideMode.ElideRight)
        self.list.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.list.setUniformItemSizes(False)
        self.list.itemClicked.connect(self._clicked)
        self.list.itemActivated.connect(self._clicked)
        self.list.customContextMenuRequested.connect(self._menu)
        self.list.renameKey.connect(self.renameRequested)
        self.list.deleteKey.connect(self.deleteRequested)
        self.empty = QLabel()
        self.empty.setObjectName("emptyList")
        self.empty.setWordWrap(True)
        self.empty.setAlignment(Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignTop)
        lay.addWidget(self.empty)
        lay.addWidget(self.list, 1)
        lay.addStretch(0)  # takes the room only while the list is hidden
        self.restyle()

    def restyle(self) -> None:
        t = current()
        self.new_button.setIcon(icons.icon("new-chat", t.text, 20))
        self._search_action.setIcon(icons.icon("search", t.faint, 16))

    @property
    def search_text(self) -> str:
        return self.search.text().strip()

    def set_conversations(self, conversations: Sequence[Conversation], selected: int | None) -> None:
        self.list.clear()
        today = dt.date.today()
        group = None
        for c in conversations:
            g = date_group(c.updated, today)
            if g != group:
                group = g
                header = QListWidgetItem(g)
                header.setFlags(Qt.ItemFlag.NoItemFlags)
                self.list.addItem(header)
            item = QListWidgetItem(c.title)
            item.setData(ID_ROLE, c.id)
            item.setToolTip(c.title)
            item.setSizeHint(QSize(0, 34))
            self.list.addItem(item)
            if c.id == selected:
                item.setSelected(True)
                self.list.setCurrentItem(item)
        self.list.setVisible(bool(conversations))
        if conversations:
            self.empty.hide()
        else:
            self.empty.setText("No chats match your search." if self.search_text else
                               "No chats yet.\nYour conversations are kept on this computer.")
            self.empty.show()

    def ids(self) -> list[int]:
        out = []
        for i in range(self.list.count()):
            cid = self.list.item(i).data(ID_ROLE)
            if cid is not None:
                out.append(int(cid))
        return out

    def select(self, cid: int | None) -> None:
        self.list.clearSelection()
        for i in range(self.list.count()):
            item = self.list.item(i)
            if cid is not None and item.data(ID_ROLE) == cid:
                item.setSelected(True)
                self.list.setCurrentItem(item)

    @Slot(QListWidgetItem)
    def _clicked(self, item: QListWidgetItem) -> None:
        cid = item.data(ID_ROLE)
        if cid is not None:
            self.openRequested.emit(int(cid))

    @Slot(QPoint)
    def _menu(self, pos: QPoint) -> None:
        item = self.list.itemAt(pos)
        cid = item.data(ID_ROLE) if item is not None else None
        if cid is None:
            return
        self.conversation_menu(int(cid), self).exec(self.list.mapToGlobal(pos))

    def conversation_menu(self, cid: int, parent: QWidget) -> QMenu:
        """The actions on one conversation (also used by the top bar's ⋯ button)."""
        t = current()
        menu = QMenu(parent)
        entries = (
            ("edit", "Rename…", self.renameRequested, ()),
            ("sliders", "Chat settings…", self.settingsRequested, ()),
            ("export", "Export as Markdown…", self.exportRequested, ("md",)),
            ("export", "Export as JSON…", self.exportRequested, ("json",)),
        )
        for icon_name, text, signal, extra in entries:
            action = menu.addAction(icons.icon(icon_name, t.muted, 16), text)
            action.triggered.connect(self._menu_action(signal, cid, extra))
        menu.addSeparator()
        delete = menu.addAction(icons.icon("trash", t.error_text, 16), "Delete")
        delete.triggered.connect(self._menu_action(self.deleteRequested, cid, ()))
        return menu

    @staticmethod
    def _menu_action(signal: object, cid: int, extra: tuple[str, ...]) -> object:
        # runs on the GUI thread (menu actions), so a closure over the arguments is safe here
        def fire() -> None:
            signal.emit(cid, *extra)  # type: ignore[attr-defined]

        return fire
