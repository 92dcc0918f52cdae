"""Settings dialogs turn their fields into valid settings; bad values are refused in the dialog, nothing is lost."""

from __future__ import annotations

from localchat.core.chat.messages import SamplingParams
from localchat.gui.dialogs import GPU_PLANNER, ConversationSettingsDialog, SettingsDialog
from localchat.settings import Settings


def test_settings_dialog_round_trip_and_special_values(qtbot) -> None:
    s = Settings(temperature=0.3, n_gpu_layers=12, n_threads=4, theme="dark", require_isolation=True,
                 window={"geometry": "keep"})
    dlg = SettingsDialog(s)
    qtbot.addWidget(dlg)
    assert dlg.result_settings() == s  # unchanged fields come back as they were
    dlg.gpu_layers.setValue(GPU_PLANNER)
    dlg.threads.setValue(0)
    dlg.models_dir.setText("  ")
    dlg.theme.setCurrentIndex(dlg.theme.findData("system"))
    dlg.accept()
    assert dlg.chosen is not None
    c = dlg.chosen
    assert (c.n_gpu_layers, c.n_threads, c.models_dir, c.theme) == (None, None, None, "system")
    assert c.window == {"geometry": "keep"} and c.require_isolation


def test_settings_dialog_refuses_invalid_values_and_keeps_the_input(qtbot) -> None:
    dlg = SettingsDialog(Settings())
    qtbot.addWidget(dlg)
    dlg.top_p.setMinimum(0.0)  # the spin boxes bound their ranges; validation is the last line
    dlg.top_p.setValue(0.0)
    dlg.system_prompt.setPlainText("my long prompt")
    dlg.accept()
    assert dlg.chosen is None and "top_p" in dlg.error.text() and dlg.result() == 0
    assert dlg.system_prompt.toPlainText() == "my long prompt"


def test_chat_settings_store_only_overridden_values(qtbot) -> None:
    dlg = ConversationSettingsDialog("T", "m", "Be brief.", {"temperature": 0.2}, SamplingParams(max_tokens=512))
    qtbot.addWidget(dlg)
    assert dlg.result_values() == ("Be brief.", {"temperature": 0.2})
    dlg.max_tokens.check.setChecked(True)
    dlg.max_tokens.editor.setValue(64)
    dlg.temperature.check.setChecked(False)
    assert dlg.result_values() == ("Be brief.", {"max_tokens": 64})
