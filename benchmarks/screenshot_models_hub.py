"""Screenshot of the Models page with a Hugging Face result opened: search, Files…, a quant selected and its exact
fit and speed read from its GGUF header — against the local Hub stand-in (tests/hubserver.py) serving a sparse
shape-exact DeepSeek-R1-Distill-Qwen-14B Q4_K_M (8.98 GB, no weights), so no real Hub is contacted.

    xvfb-run -a -s "-screen 0 1400x900x24" env QT_QPA_PLATFORM=xcb .venv/bin/python \
        benchmarks/screenshot_models_hub.py docs/screenshots

Writes ``models-hub-<theme>.png`` (light and dark) and prints how many header bytes were read.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from hubserver import FakeHub, HubState
from model_shapes import split_gguf, write_r1_qwen14b_q4km
from PySide6.QtCore import QEventLoop, QTimer
from PySide6.QtWidgets import QApplication, QPushButton

from localchat.context import open_context
from localchat.core.models import starter
from localchat.gui.main_window import MainWindow
from localchat.paths import machine_cache_dir

REPO = "bartowski/DeepSeek-R1-Distill-Qwen-14B-GGUF"
NAME = "DeepSeek-R1-Distill-Qwen-14B-Q4_K_M.gguf"


def wait(ms: int) -> None:
    loop = QEventLoop()
    QTimer.singleShot(ms, loop.quit)
    loop.exec()


def wait_for(cond, timeout_ms: int = 120_000) -> None:  # type: ignore[no-untyped-def]
    waited = 0
    while not cond() and waited < timeout_ms:
        wait(50)
        waited += 50
    if not cond():
        raise SystemExit("timed out")


def hub_state(work: Path) -> HubState:
    r1 = write_r1_qwen14b_q4km(work / NAME)
    small = work / "split"
    small.mkdir()
    smol = starter.ensure_starter_model(machine_cache_dir())
    (small / "SmolLM2-135M-Instruct-Q4_1.gguf").write_bytes(smol.read_bytes())
    parts = split_gguf(small / "SmolLM2-135M-Instruct-Q4_1.gguf", small, parts=2)
    return HubState(disk_files={REPO: {NAME: r1}},
                    repos={"unsloth/DeepSeek-R1-Distill-Qwen-14B-GGUF": {p.name: p.read_bytes() for p in parts},
                           "lmstudio-community/DeepSeek-R1-Distill-Qwen-14B-GGUF": {"x-Q8_0.gguf": b"GGUF"}},
                    gated={"unsloth/DeepSeek-R1-Distill-Qwen-14B-GGUF": set()})


def main() -> int:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/screenshots")
    out.mkdir(parents=True, exist_ok=True)
    os.environ["LOCALCHAT_USER_OFFLINE"] = "0"  # the user did not start localchat offline: Search is allowed
    app = QApplication.instance() or QApplication([])
    state = hub_state(Path(tempfile.mkdtemp(prefix="lc-hub-")))
    with FakeHub(state) as hub:
        for theme in ("light", "dark"):
            ctx = open_context(Path(tempfile.mkdtemp(prefix="lc-shot-")))
            ctx.settings.theme = theme
            ctx.ensure_starter()
            w = MainWindow(ctx)
            w.resize(1280, 820)
            w.show()
            wait_for(lambda w=w: w.load_info is not None)
            page = w.models_page
            page.endpoint = hub.url
            w.show_page(1)
            wait_for(lambda page=page: bool(page.fits))
            page.search_field.setText("R1-Distill-Qwen-14B")  # the stand-in matches substrings
            page.search_button.click()
            wait_for(lambda page=page: page.mode == "search")
            row = [page.table.item(r, 0).text() for r in range(page.table.rowCount())].index(REPO)
            files = page.table.cellWidget(row, page.table.columnCount() - 1)
            assert isinstance(files, QPushButton)
            files.click()
            wait_for(lambda page=page: page.mode == "files")
            page.table.selectRow(0)
            wait_for(lambda page=page: "From its GGUF header" in page.details.text())
            wait(300)
            w.grab().save(str(out / f"models-hub-{theme}.png"))
            w.shutdown()
            w.deleteLater()
            app.processEvents()
    print(f"screenshots in {out}; header bytes served for the 14B: {state.served_by_file.get(NAME, 0):,}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
