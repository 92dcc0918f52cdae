"""Dialogs: application settings, and one conversation's model, system prompt and sampling."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt, Slot
from PySide6.QtGui import QIcon
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QFrame,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QMessageBox,
    QPlainTextEdit,
    QPushButton,
    QScrollArea,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from localchat.core.chat.messages import SamplingParams
from localchat.errors import SettingsError
from localchat.gui.tasks import run_task
from localchat.settings import THEMES, Settings

GPU_PLANNER = -2  # spin-box value standing for "let the planner decide" (None in Settings)
RPC_WARNING = ("llama.cpp's RPC, which helper machines run, is unauthenticated and unencrypted: anyone who can "
               "reach a helper's port can use it and read what it holds, and anyone on the path can read the model's "
               "activations (and so infer your conversation). Use helpers on a network you trust only, and let each "
               "helper's firewall admit only this computer. localchat connects only to the helpers you list and "
               "shows what went to each on the Network page.")


def _section(text: str) -> QLabel:
    label = QLabel(text)
    label.setObjectName("settingsSection")
    return label


def _hint(text: str) -> QLabel:
    """A note under a field; lines are broken by hand (a word-wrapped label in a form can overlap its rows)."""
    label = QLabel(text)
    label.setObjectName("hint")
    return label


def _buttons(dialog: QDialog) -> QDialogButtonBox:
    buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Save | QDialogButtonBox.StandardButton.Cancel)
    buttons.accepted.connect(dialog.accept)
    buttons.rejected.connect(dialog.reject)
    for b in buttons.buttons():
        b.setIcon(QIcon())  # no floppy-disk icons from the style
    save = buttons.button(QDialogButtonBox.StandardButton.Save)
    save.setObjectName("primary")
    save.setDefault(True)
    return buttons


class SettingsDialog(QDialog):
    """Sampling defaults, model loading, storage, appearance and privacy. ``chosen`` holds the result."""

    def __init__(self, settings: Settings, planner_hint: str = "", parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Settings")
        self.setMinimumWidth(560)
        self.settings = settings
        self.chosen: Settings | None = None
        outer = QVBoxLayout(self)
        outer.setContentsMargins(22, 18, 22, 16)
        body = QWidget()
        form = QFormLayout(body)
        form.setContentsMargins(0, 0, 8, 0)
        form.setHorizontalSpacing(18)
        form.setVerticalSpacing(9)
        form.setLabelAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        # the form scrolls on a small screen; the error line and the buttons stay in view
        self.form_scroll = QScrollArea()
        self.form_scroll.setWidgetResizable(True)
        self.form_scroll.setFrameShape(QFrame.Shape.NoFrame)
        self.form_scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.form_scroll.setWidget(body)
        outer.addWidget(self.form_scroll, 1)

        self.temperature = QDoubleSpinBox(decimals=2, minimum=0.0, maximum=2.0, singleStep=0.05,
                                          value=settings.temperature)
        self.top_p = QDoubleSpinBox(decimals=2, minimum=0.01, maximum=1.0, singleStep=0.05, value=settings.top_p)
        self.max_tokens = QSpinBox(minimum=1, maximum=131072, singleStep=256, value=settings.max_tokens)
        self.system_prompt = QPlainTextEdit(settings.system_prompt)
        self.system_prompt.setObjectName("field")
        self.system_prompt.setPlaceholderText("Optional instructions for every new chat")
        self.system_prompt.setFixedHeight(70)
        form.addRow(_section("Answers"))
        form.addRow("Temperature", self.temperature)
        form.addRow("Top-p", self.top_p)
        form.addRow("Max tokens", self.max_tokens)
        form.addRow("System prompt", self.system_prompt)
        form.addRow("", _hint("Defaults for new chats; each chat can override them (⋯ → Chat settings).\n"
                              "DeepSeek-R1 distills use their recommended temperature 0.6 and top-p 0.95\n"
                              "unless a chat sets its own."))

        self.n_ctx = QSpinBox(minimum=256, maximum=1_048_576, singleStep=1024, value=settings.n_ctx)
        self.n_ctx.setSuffix(" tokens")
        self.threads = QSpinBox(minimum=0, maximum=512, value=settings.n_threads or 0)
        self.threads.setSpecialValueText("Automatic")
        self.gpu_layers = QSpinBox(minimum=GPU_PLANNER, maximum=1000,
                                   value=GPU_PLANNER if settings.n_gpu_layers is None else settings.n_gpu_layers)
        self.gpu_layers.setSpecialValueText("Planner decides")
        self.gpu_layers.setToolTip("-1 offloads every layer, 0 keeps the model on the CPU")
        form.addRow(_section("Model loading"))
        form.addRow("Context length", self.n_ctx)
        form.addRow("CPU threads", self.threads)
        form.addRow("GPU layers", self.gpu_layers)
        if planner_hint:
            form.addRow("", _hint(planner_hint))

        self.models_dir = QLineEdit(settings.models_dir or "")
        self.models_dir.setPlaceholderText("Default folder")
        browse = QPushButton("Browse…")
        browse.setAutoDefault(False)
        browse.clicked.connect(self._browse)
        row = QHBoxLayout()
        row.addWidget(self.models_dir, 1)
        row.addWidget(browse)
        self.theme = QComboBox()
        self.theme.setObjectName("field")
        for name in THEMES:
            self.theme.addItem({"system": "Follow the system", "light": "Light", "dark": "Dark"}[name], name)
        self.theme.setCurrentIndex(max(0, self.theme.findData(settings.theme)))
        self.require_isolation = QCheckBox("Only run models in a network-isolated worker")
        self.require_isolation.setChecked(settings.require_isolation)
        form.addRow(_section("Storage and appearance"))
        form.addRow("Models folder", row)
        form.addRow("Theme", self.theme)
        form.addRow(_section("Privacy"))
        form.addRow("", self.require_isolation)
        form.addRow("", _hint("When the worker cannot be cut off from the network (for example without\n"
                              "user namespaces), models will not load rather than run monitored only."))

        form.addRow(_section("Helper machines (LAN mode)"))
        self._helper_rows(form, settings)

        self.error = QLabel("")
        self.error.setObjectName("formError")
        self.error.setWordWrap(True)
        outer.addWidget(self.error)
        outer.addWidget(_buttons(self))
        screen = self.screen().availableGeometry().height() if self.screen() is not None else 800
        self.resize(max(560, body.sizeHint().width() + 60), min(body.sizeHint().height() + 110, int(screen * 0.85)))

    def _helper_rows(self, form: QFormLayout, settings: Settings) -> None:
        """The list of helpers (llama.cpp rpc-server, HOST:PORT), add, test the connection, remove."""
        self._allow_public = settings.helpers_allow_public
        self.helpers = QListWidget()
        self.helpers.setObjectName("field")
        self.helpers.addItems(settings.helpers)
        self.helpers.setFixedHeight(60)
        row = QHBoxLayout()
        self.helper_input = QLineEdit()
        self.helper_input.setPlaceholderText("192.168.1.20:50052")
        self.helper_input.returnPressed.connect(self.add_helper)
        row.addWidget(self.helper_input, 1)
        for text, slot in (("Add", self.add_helper), ("Test connection", self.test_helpers),
                           ("Remove", self.remove_helper)):
            b = QPushButton(text)
            b.setAutoDefault(False)
            b.clicked.connect(slot)
            row.addWidget(b)
        self.helper_status = QLabel("")
        self.helper_status.setObjectName("hint")  # one line per helper: a word-wrapped label squeezes the form
        form.addRow("Helpers", self.helpers)
        form.addRow("", row)
        form.addRow("", self.helper_status)
        form.addRow("", _hint("Other computers on your network running llama.cpp's rpc-server (docs/RPC.md) take\n"
                              "part of the model. None: everything runs here. Unauthenticated and unencrypted:\n"
                              "trusted LAN only."))

    def _say(self, text: str) -> None:
        """A helper's status, each line cut to the dialog's width (the whole text in the tooltip)."""
        self.helper_status.setText("\n".join(line if len(line) <= 76 else line[:75] + "…"
                                             for line in text.splitlines()))
        self.helper_status.setToolTip(text)

    def helper_list(self) -> list[str]:
        return [self.helpers.item(i).text() for i in range(self.helpers.count())]

    @Slot()
    def add_helper(self) -> None:
        from localchat.core.privacy.relay import PeerError, parse_peer

        try:
            peer = parse_peer(self.helper_input.text(), allow_public=True)
        except PeerError as exc:
            self._say(str(exc))
            return
        if peer.endpoint in self.helper_list():
            self._say(f"{peer.endpoint} is listed already")
            return
        if peer.scope == "public" and not self._allow_public:
            answer = QMessageBox.question(
                self, "Not a LAN address",
                f"{peer.endpoint} is not on a local network. llama.cpp's RPC is unauthenticated and unencrypted, "
                "so anyone on the way could read and change what it carries. Use it only if it is your own "
                "machine over a link you trust. Add it anyway?",
                QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No, QMessageBox.StandardButton.No)
            if answer != QMessageBox.StandardButton.Yes:
                self._say(f"{peer.endpoint} not added")
                return
            self._allow_public = True
        if not self.helper_list():  # turning LAN mode on: say once what it exposes
            QMessageBox.warning(self, "Helper machines", RPC_WARNING)
        self.helpers.addItem(peer.endpoint)
        self.helper_input.clear()
        self._say(f"{peer.endpoint} added; used from the next model load after Save")

    @Slot()
    def remove_helper(self) -> None:
        row = self.helpers.currentRow()
        if row < 0:
            self._say("select a helper to remove")
            return
        item = self.helpers.takeItem(row)
        self._say(f"{item.text()} removed")

    @Slot()
    def test_helpers(self) -> None:
        """The relay's own version check (llama.cpp's HELLO), off the GUI thread; the selected helper, else all."""
        from localchat.core.privacy.relay import PeerRelay, parse_peers

        current = self.helpers.currentItem()
        endpoints = [current.text()] if current is not None else self.helper_list()
        if not endpoints:
            self._say("add a helper first")
            return
        peers = parse_peers(endpoints, allow_public=True)  # listed entries were checked when added
        self._say(f"testing {', '.join(endpoints)}…")
        self.testing = run_task(self, lambda: PeerRelay(peers).check(), self._tested, self._test_failed,
                                name="helper-check")

    def _tested(self, results: list[dict[str, Any]]) -> None:
        self._say("\n".join(f"{r['peer']}: rpc-server, RPC protocol {r['version']}, connected "
                                              f"in {r['connect_ms']:.1f} ms, answered in {r['hello_ms']:.1f} ms"
                                              for r in results))

    def _test_failed(self, exc: BaseException) -> None:
        self._say(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)

    @Slot()
    def _browse(self) -> None:
        d = QFileDialog.getExistingDirectory(self, "Models folder", self.models_dir.text())
        if d:
            self.models_dir.setText(d)

    def result_settings(self) -> Settings:
        s = Settings.from_dict(self.settings.to_dict())
        s.temperature = self.temperature.value()
        s.top_p = self.top_p.value()
        s.max_tokens = self.max_tokens.value()
        s.n_ctx = self.n_ctx.value()
        s.n_threads = self.threads.value() or None
        s.n_gpu_layers = None if self.gpu_layers.value() == GPU_PLANNER else self.gpu_layers.value()
        s.models_dir = self.models_dir.text().strip() or None
        s.theme = str(self.theme.currentData())
        s.require_isolation = self.require_isolation.isChecked()
        s.system_prompt = self.system_prompt.toPlainText()
        s.helpers = self.helper_list()
        s.helpers_allow_public = self._allow_public
        s.validate()
        return s

    def accept(self) -> None:
        try:
            self.chosen = self.result_settings()
        except SettingsError as exc:
            self.error.setText(str(exc))
            return
        super().accept()


class _Override(QWidget):
    """A value with a "use the default" checkbox: unchecked means the chat inherits the app setting."""

    def __init__(self, editor: QDoubleSpinBox | QSpinBox, overridden: bool, default_text: str) -> None:
        super().__init__()
        lay = QHBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        self.check = QCheckBox("Custom")
        self.check.setChecked(overridden)
        self.editor = editor
        self.default = QLabel(default_text)
        self.default.setObjectName("hint")
        lay.addWidget(self.check)
        lay.addWidget(editor, 1)
        lay.addWidget(self.default)
        self.check.toggled.connect(self._sync)
        self._sync(overridden)

    @Slot(bool)
    def _sync(self, on: bool) -> None:
        self.editor.setEnabled(on)
        self.default.setVisible(not on)

    def value(self) -> float | int | None:
        return self.editor.value() if self.check.isChecked() else None


class ConversationSettingsDialog(QDialog):
    """One chat's system prompt and sampling overrides. ``result_values()`` gives what to store."""

    def __init__(self, title: str, model: str | None, system_prompt: str, sampling: dict[str, Any],
                 defaults: SamplingParams, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Chat settings")
        self.setMinimumWidth(520)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(22, 18, 22, 16)
        head = QLabel(title)
        head.setObjectName("settingsSection")
        outer.addWidget(head)
        outer.addWidget(_hint(f"Model: {model or 'the one selected in the top bar'}. Choosing another model in the\n"
                              "top bar while this chat is open switches the chat to it."))
        form = QFormLayout()
        form.setHorizontalSpacing(18)
        form.setVerticalSpacing(9)
        outer.addLayout(form)
        self.system_prompt = QPlainTextEdit(system_prompt)
        self.system_prompt.setObjectName("field")
        self.system_prompt.setPlaceholderText("No system prompt")
        self.system_prompt.setFixedHeight(90)
        form.addRow("System prompt", self.system_prompt)
        self.temperature = _Override(
            QDoubleSpinBox(decimals=2, minimum=0.0, maximum=2.0, singleStep=0.05,
                           value=float(sampling.get("temperature", defaults.temperature))),
            "temperature" in sampling, f"default {defaults.temperature:g}")
        self.top_p = _Override(
            QDoubleSpinBox(decimals=2, minimum=0.01, maximum=1.0, singleStep=0.05,
                           value=float(sampling.get("top_p", defaults.top_p))),
            "top_p" in sampling, f"default {defaults.top_p:g}")
        self.max_tokens = _Override(
            QSpinBox(minimum=1, maximum=131072, singleStep=256,
                     value=int(sampling.get("max_tokens", defaults.max_tokens))),
            "max_tokens" in sampling, f"default {defaults.max_tokens}")
        form.addRow("Temperature", self.temperature)
        form.addRow("Top-p", self.top_p)
        form.addRow("Max tokens", self.max_tokens)
        outer.addWidget(_buttons(self))

    def result_values(self) -> tuple[str, dict[str, Any]]:
        sampling: dict[str, Any] = {}
        for key, w in (("temperature", self.temperature), ("top_p", self.top_p), ("max_tokens", self.max_tokens)):
            v = w.value()
            if v is not None:
                sampling[key] = v
        return self.system_prompt.toPlainText(), sampling
