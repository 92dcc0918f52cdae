"""The window's frame: the navigation rail on the left and the top bar (title, model picker, where it runs,
the worker's isolation state)."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QSize, Qt, Signal, Slot
from PySide6.QtWidgets import (
    QButtonGroup,
    QComboBox,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from localchat.core.engine.protocol import LoadInfo
from localchat.core.privacy.evidence import IsolationEvidence
from localchat.gui import icons
from localchat.gui.elided_label import ElidedLabel
from localchat.gui.theme import current, repolish

PAGES = (("chat", "Chat"), ("models", "Models"), ("network", "Network"))


class NavRail(QWidget):
    """Signals:
        pageRequested(int): index into PAGES.
        settingsRequested(): the gear at the bottom.
    """

    pageRequested = Signal(int)
    settingsRequested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("navRail")
        self.setAttribute(Qt.WidgetAttribute.WA_StyledBackground)
        self.setFixedWidth(76)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 14, 0, 12)
        lay.setSpacing(6)
        self.logo = QLabel()
        self.logo.setAlignment(Qt.AlignmentFlag.AlignCenter)
        lay.addWidget(self.logo)
        lay.addSpacing(12)
        self.group = QButtonGroup(self)
        self.group.setExclusive(True)
        self.buttons: list[QToolButton] = []
        for i, (key, text) in enumerate(PAGES):
            b = self._button(text, f"nav-{key}")
            b.setCheckable(True)
            self.group.addButton(b, i)
            lay.addWidget(b)
            self.buttons.append(b)
        self.buttons[0].setChecked(True)
        self.group.idClicked.connect(self.pageRequested)
        lay.addStretch(1)
        self.settings_button = self._button("Settings", "nav-settings")
        self.settings_button.clicked.connect(self.settingsRequested)
        lay.addWidget(self.settings_button)
        self.restyle()

    @staticmethod
    def _button(text: str, name: str) -> QToolButton:
        b = QToolButton()
        b.setText(text)
        b.setObjectName(name)
        b.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextUnderIcon)
        b.setIconSize(QSize(22, 22))
        b.setCursor(Qt.CursorShape.PointingHandCursor)
        b.setSizePolicy(b.sizePolicy().horizontalPolicy().Expanding, b.sizePolicy().verticalPolicy())
        return b

    def restyle(self) -> None:
        from localchat.gui.icons import app_icon

        t = current()
        self.logo.setPixmap(app_icon().pixmap(34, 34))
        for b, (key, _) in zip(self.buttons, PAGES, strict=True):
            b.setIcon(icons.icon(key, t.muted, 22, active=t.accent_text))
        self.settings_button.setIcon(icons.icon("settings", t.muted, 22))

    def set_page(self, i: int) -> None:
        self.buttons[i].setChecked(True)


class TopBar(QWidget):
    """Title on the left; the model picker with its load progress and where it runs in the middle; the worker's
    isolation state and the conversation menu on the right.

    Signals:
        modelPicked(str): a model chosen in the picker.
        privacyClicked(): the isolation chip was clicked (the window shows the Network page).
        menuRequested(): the ⋯ button was clicked.
    """

    modelPicked = Signal(str)
    privacyClicked = Signal()
    menuRequested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("topBar")
        self.setAttribute(Qt.WidgetAttribute.WA_StyledBackground)
        self.setFixedHeight(56)
        lay = QHBoxLayout(self)
        lay.setContentsMargins(18, 0, 12, 0)
        lay.setSpacing(10)
        self.title = ElidedLabel()
        self.title.setObjectName("pageTitle")
        self.title.setMinimumWidth(60)
        lay.addWidget(self.title, 1)

        picker_box = QVBoxLayout()
        picker_box.setSpacing(2)
        picker_box.setContentsMargins(0, 6, 0, 0)
        self.picker = QComboBox()
        self.picker.setObjectName("modelPicker")
        self.picker.setMinimumWidth(200)
        self.picker.setMaximumWidth(420)
        self.picker.setToolTip("The model answering in this chat")
        self.picker.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)
        self.picker.activated.connect(self._picked)
        self.load_bar = QProgressBar()
        self.load_bar.setObjectName("loadBar")
        self.load_bar.setRange(0, 100)
        self.load_bar.setTextVisible(False)
        policy = self.load_bar.sizePolicy()
        policy.setRetainSizeWhenHidden(True)
        self.load_bar.setSizePolicy(policy)
        self.load_bar.setVisible(False)
        picker_box.addWidget(self.picker)
        picker_box.addWidget(self.load_bar)
        lay.addLayout(picker_box)
        self.device = QLabel()
        self.device.setObjectName("chip")
        self.device.setFixedHeight(24)
        lay.addWidget(self.device, 0, Qt.AlignmentFlag.AlignVCenter)
        lay.addStretch(1)
        self.privacy = QToolButton()
        self.privacy.setObjectName("privacyChip")
        self.privacy.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.privacy.setCursor(Qt.CursorShape.PointingHandCursor)
        self.privacy.setIconSize(QSize(15, 15))
        self.privacy.clicked.connect(self.privacyClicked)
        lay.addWidget(self.privacy)
        self.menu_button = QToolButton()
        self.menu_button.setObjectName("iconButton")
        self.menu_button.setToolTip("This chat: rename, settings, export, delete")
        self.menu_button.setIconSize(QSize(20, 20))
        self.menu_button.setCursor(Qt.CursorShape.PointingHandCursor)
        self.menu_button.clicked.connect(self.menuRequested)
        lay.addWidget(self.menu_button)
        self._isolation: dict[str, Any] | None = None
        self.restyle()

    def restyle(self) -> None:
        self.menu_button.setIcon(icons.icon("more", current().muted, 20))
        self.set_isolation(self._isolation)

    @Slot(int)
    def _picked(self, idx: int) -> None:
        name = self.picker.itemData(idx)
        if name:
            self.modelPicked.emit(str(name))

    # -- state -------------------------------------------------------------------------------------------

    def set_models(self, entries: list[tuple[str, int]], selected: str | None) -> None:
        self.picker.blockSignals(True)
        self.picker.clear()
        for name, size in entries:
            self.picker.addItem(f"{name}   ·   {size / 1e9:.2f} GB", name)
        if not entries:
            self.picker.addItem("No model installed", None)
        idx = self.picker.findData(selected) if selected else -1
        self.picker.setCurrentIndex(max(idx, 0))
        self.picker.blockSignals(False)

    def select_model(self, name: str | None) -> None:
        idx = self.picker.findData(name) if name else -1
        if idx >= 0:
            self.picker.setCurrentIndex(idx)

    def set_loading(self, progress: float | None) -> None:
        """``None`` hides the bar; 0..1 shows it."""
        self.load_bar.setVisible(progress is not None)
        if progress is not None:
            self.load_bar.setValue(int(progress * 100))
            self.device.setText(f"Loading… {int(progress * 100)}%" if progress > 0 else "Preparing…")
            self.device.setToolTip("")

    def set_loaded(self, info: LoadInfo) -> None:
        self.set_loading(None)
        evidence = IsolationEvidence.from_report(self._isolation)
        helpers = evidence is not None and evidence.lan_mode
        self.device.setText(device_text(info, helpers))
        self.device.setToolTip(f"{info.model_name}\n{info.path}\nlayers: {info.n_layers}, offloaded to "
                               f"{'the helper machines' if helpers else 'the GPU'}: "
                               f"{info.offloaded_layers or 0}\ncontext: {info.n_ctx} tokens (trained on "
                               f"{info.n_ctx_train})\nloaded in {info.load_s:.1f} s")

    def set_status(self, text: str, tooltip: str = "") -> None:
        self.set_loading(None)
        self.device.setText(text)
        self.device.setToolTip(tooltip)

    def set_isolation(self, isolation: dict[str, Any] | None) -> None:
        self._isolation = isolation
        evidence = IsolationEvidence.from_report(isolation)
        t = current()
        if evidence is None:
            name, text, tip, color = ("chip", "Worker idle", "The inference worker starts with the first model.",
                                      t.muted)
        elif evidence.lan_mode:
            name, text, color = "chipOk", "LAN mode: only these peers", t.ok_text
            tip = ("The inference worker has only its loopback, up for the relay; the app connects only to the "
                   f"helper machines {', '.join(evidence.peers)}. Click for the evidence and the bytes per peer.")
        elif evidence.isolated:
            name, text, color = "chipOk", "Network-isolated", t.ok_text
            tip = ("The inference worker runs in its own network namespace with no interface up. "
                   "Click for the evidence.")
        else:
            name, text, color = "chipWarn", "Monitored only", t.warn_text
            tip = f"The worker could not be isolated: {evidence.reason}. Click for details."
        self.privacy.setObjectName(name)
        self.privacy.setText(text)
        self.privacy.setToolTip(tip)
        self.privacy.setIcon(icons.icon("shield-check" if name == "chipOk" else "network", color, 15))
        repolish(self.privacy)


def device_text(info: LoadInfo, helpers: bool = False) -> str:
    """Where the model runs; with ``helpers`` (LAN mode) offloaded layers go to the helper machines' devices."""
    ctx = f"{info.n_ctx // 1024}k context" if info.n_ctx % 1024 == 0 else f"{info.n_ctx} context"
    layers = info.offloaded_layers if info.offloaded_layers is not None else info.n_gpu_layers
    device = "Helpers" if helpers else "GPU"
    if layers:
        total = info.offloadable_layers or info.n_layers
        where = device if total and layers >= total else f"{device} {layers}/{total} layers + CPU"
        if where == device:
            where = f"{device} · {layers}/{total} layers"
    else:
        where = "CPU"
    return f"{where}  ·  {ctx}"
