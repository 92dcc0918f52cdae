"""The Models page: import (dialog path and drop), delete, download from a local Hub with progress."""

from __future__ import annotations

from pathlib import Path

import pytest
from hubserver import FakeHub, HubState
from PySide6.QtWidgets import QMessageBox

from localchat.context import open_context
from localchat.core.models.hub import RemoteFile, RemoteModel
from localchat.gui.models_page import ModelsPage


@pytest.fixture
def page(qtbot, isolated_home: Path):
    p = ModelsPage(open_context(isolated_home))
    qtbot.addWidget(p)
    yield p
    p.shutdown()


def test_catalogue_listed_offline(page: ModelsPage) -> None:
    titles = {page.table.item(r, 0).text() for r in range(page.table.rowCount())}
    assert {"DeepSeek-R1-Distill-Qwen-14B", "DeepSeek-R1-Distill-Llama-70B"} <= titles


def test_fit_badges_computed_in_background(qtbot, page: ModelsPage) -> None:
    page.show()
    qtbot.waitUntil(lambda: bool(page.fits), timeout=30_000)
    badges = {page.table.item(r, 3).text() for r in range(page.table.rowCount())}
    assert "checking…" not in badges and badges <= {"Runs on GPU", "GPU + CPU", "CPU only", "Too large"}


def test_import_and_delete(qtbot, page: ModelsPage, starter_model: Path, tmp_path: Path, monkeypatch) -> None:
    src = tmp_path / "mine.gguf"
    src.write_bytes(starter_model.read_bytes())
    with qtbot.waitSignal(page.libraryChanged):
        assert page.import_path(str(src))
    assert page.installed.rowCount() == 1 and page.installed.item(0, 0).text() == "mine"
    warnings: list[str] = []
    monkeypatch.setattr(QMessageBox, "warning", lambda *a, **k: warnings.append(a[2]))
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"nope")
    assert not page.import_path(str(bad))
    assert "not a GGUF model" in warnings[0] and page.installed.rowCount() == 1
    page.installed.selectRow(0)
    page.delete_selected(confirm=False)
    assert page.installed.rowCount() == 0 and not (page.ctx.models_dir / "mine.gguf").exists()


def test_download_with_progress(qtbot, isolated_home: Path, starter_model: Path) -> None:
    data = starter_model.read_bytes()
    state = HubState(repos={"org/repo": {"m-Q4_1.gguf": data}}, rate_bps=60e6)
    with FakeHub(state) as hub:
        page = ModelsPage(open_context(isolated_home), endpoint=hub.url)
        qtbot.addWidget(page)
        import hashlib

        model = RemoteModel("org/repo", "m-Q4_1.gguf", "Q4_1",
                            [RemoteFile("m-Q4_1.gguf", len(data), hashlib.sha256(data).hexdigest())])
        with qtbot.waitSignal(page.libraryChanged, timeout=60_000):
            page.start_remote(model, "test model")
        row = page.dl_layout.itemAt(0).widget()
        assert row.bar.value() == 1000 and "installed as" in row.status.text()
        assert page.ctx.library.get("m-q4_1") is not None
        page.shutdown()
