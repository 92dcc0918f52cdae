"""The real window with the isolation policy ``auto`` (the default a user gets): the worker that loads the model is
kernel-isolated, the top bar and the Network page say so, and llama.cpp never maps into the window's process."""

from __future__ import annotations

from pathlib import Path

import pytest
from strict import skip_or_fail

from localchat.context import open_context
from localchat.gui.main_window import MainWindow

pytestmark = [pytest.mark.slow, pytest.mark.isolation]


def test_window_loads_the_model_in_a_kernel_isolated_worker(qtbot, isolated_home: Path, starter_model: Path) -> None:
    ctx = open_context(isolated_home)
    ctx.ensure_starter()
    w = MainWindow(ctx, isolation="auto")
    qtbot.addWidget(w)
    w.show()
    try:
        qtbot.waitUntil(lambda: w.load_info is not None, timeout=60_000)
        iso = w.network_page.worker_isolation
        assert iso is not None
        if not iso["isolated"]:
            skip_or_fail(f"worker isolation unavailable here: {iso['reason']}")
        assert w.top.privacy.text() == "Network-isolated"
        assert "kernel-isolated" in w.network_page.headline.text()
        with open("/proc/self/maps", encoding="utf-8") as fh:
            assert not [line for line in fh if "libllama" in line or "libggml" in line]
    finally:
        w.shutdown()
