"""The Models page: catalogue offline, import (dialog path and drop), delete, Hub search and downloads from a local
Hub with progress, pause/resume (also after a restart of the page), cancel."""

from __future__ import annotations

from pathlib import Path

import pytest
from hubserver import FakeHub, HubState
from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
from PySide6.QtGui import QDropEvent
from PySide6.QtWidgets import QMessageBox, QPushButton

from localchat.context import open_context
from localchat.core.models.hub import repo_models
from localchat.gui.models_page import ModelsPage

REPO = "org/repo"
FILE = "m-Q4_1.gguf"


@pytest.fixture
def page(qtbot, isolated_home: Path):
    p = ModelsPage(open_context(isolated_home))
    qtbot.addWidget(p)
    yield p
    p.shutdown()


@pytest.fixture
def online(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOCALCHAT_USER_OFFLINE", "0")


def column(table, col: int) -> list[str]:  # type: ignore[no-untyped-def]
    return [table.item(r, col).text() if table.item(r, col) else "" for r in range(table.rowCount())]


def test_catalogue_listed_offline(page: ModelsPage) -> None:
    titles = set(column(page.table, 0))
    assert {"DeepSeek-R1-Distill-Qwen-14B", "DeepSeek-R1-Distill-Llama-70B", "DeepSeek-R1-0528-Qwen3-8B"} <= titles
    assert any("(2 parts)" in s for s in column(page.table, 2))  # the split 70B Q8_0 is one download
    page.table.selectRow(column(page.table, 0).index("DeepSeek-R1-Distill-Qwen-14B"))
    assert "temperature 0.6" in page.details.text() and "context 16,384" in page.details.text()


@pytest.mark.qt_log_ignore("does not support propagateSizeHints")  # the offscreen platform, on any show()
def test_fit_badges_computed_in_background(qtbot, page: ModelsPage) -> None:
    page.show()
    qtbot.waitUntil(lambda: bool(page.fits), timeout=60_000)
    badges = set(column(page.table, 3))
    assert "checking…" not in badges and badges <= {"Runs on GPU", "GPU + CPU", "CPU only", "Too large"}
    assert page.ram_total and page.ram_total > 0


def test_import_and_delete(qtbot, page: ModelsPage, starter_model: Path, tmp_path: Path, monkeypatch) -> None:
    src = tmp_path / "mine.gguf"
    src.write_bytes(starter_model.read_bytes())
    with qtbot.waitSignal(page.libraryChanged, timeout=30_000):
        page.import_path(str(src))
    assert page.installed.rowCount() == 1 and page.installed.item(0, 0).text() == "mine"
    warnings: list[str] = []
    monkeypatch.setattr(QMessageBox, "warning", lambda *a, **k: warnings.append(a[2]))
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"nope")
    page.import_path(str(bad))
    qtbot.waitUntil(lambda: bool(warnings), timeout=30_000)
    assert "bad.gguf" in warnings[0] and "not a GGUF model" in warnings[0] and page.installed.rowCount() == 1
    page.installed.selectRow(0)
    assert "llama" in page.details_text(page.selected_entry())  # type: ignore[arg-type]
    asked: list[str] = []
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: asked.append(a[2]) or QMessageBox.StandardButton.No)
    page.delete_selected()
    assert "delete its file" in asked[0] and page.installed.rowCount() == 1  # "No" keeps it
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: QMessageBox.StandardButton.Yes)
    with qtbot.waitSignal(page.libraryChanged):
        page.delete_selected()
    assert page.installed.rowCount() == 0 and not (page.ctx.models_dir / "mine.gguf").exists()


def test_drop_imports(qtbot, page: ModelsPage, starter_model: Path, tmp_path: Path) -> None:
    src = tmp_path / "dropped.gguf"
    src.write_bytes(starter_model.read_bytes())
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(src)), QUrl.fromLocalFile(str(tmp_path / "notes.txt"))])
    event = QDropEvent(QPointF(10, 10), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                       Qt.KeyboardModifier.NoModifier)
    with qtbot.waitSignal(page.libraryChanged, timeout=30_000):
        page.dropEvent(event)
    assert column(page.installed, 0) == ["dropped"]


def test_download_pause_resume_with_progress(qtbot, isolated_home: Path, starter_model: Path, online) -> None:
    data = starter_model.read_bytes()
    state = HubState(repos={REPO: {FILE: data}}, rate_bps=40e6)
    with FakeHub(state) as hub:
        page = ModelsPage(open_context(isolated_home), endpoint=hub.url)
        qtbot.addWidget(page)
        model = repo_models(REPO, endpoint=hub.url)[0]
        page.start_remote(model, "test model")
        row = page.rows[f"{REPO}/{FILE}"]
        qtbot.waitUntil(lambda: row.bar.value() > 100, timeout=30_000)
        assert "MB/s" in row.status.text()
        row.pause.click()
        qtbot.waitUntil(lambda: row.state == "paused", timeout=30_000)
        assert row.pause.text() == "Resume" and 100 < row.bar.value() < 1000
        served = state.served
        state.rate_bps = None
        with qtbot.waitSignal(page.libraryChanged, timeout=60_000):
            row.pause.click()  # Resume
        assert row.bar.value() == 1000 and "installed as m-q4_1" in row.status.text()
        assert state.served - served < len(data)  # resumed, not restarted
        assert page.ctx.library.get("m-q4_1") is not None and column(page.installed, 0) == ["m-q4_1"]
        row.cancel.click()  # "Dismiss"
        assert not page.rows and page.dl_box.isHidden()
        page.shutdown()


def test_unfinished_download_offered_after_a_restart_and_cancel_removes_it(qtbot, isolated_home: Path,
                                                                           starter_model: Path, online) -> None:
    data = starter_model.read_bytes()
    state = HubState(repos={REPO: {FILE: data}}, rate_bps=40e6)
    with FakeHub(state) as hub:
        first = ModelsPage(open_context(isolated_home), endpoint=hub.url)
        qtbot.addWidget(first)
        first.start_remote(repo_models(REPO, endpoint=hub.url)[0], "test model")
        qtbot.waitUntil(lambda: first.rows[f"{REPO}/{FILE}"].bar.value() > 100, timeout=30_000)
        first.shutdown()  # the app closes mid-download
        # a new window: the download is offered, paused; it does not start by itself
        requests = len(state.requests)
        second = ModelsPage(open_context(isolated_home), endpoint=hub.url)
        qtbot.addWidget(second)
        row = second.rows[f"{REPO}/{FILE}"]
        assert row.state == "paused" and row.pause.text() == "Resume" and 0 < row.bar.value() < 1000
        assert "unfinished" in row.status.text() and len(state.requests) == requests
        row.cancel.click()
        assert not second.rows and not list(second.ctx.models_dir.rglob("*.part"))
        assert not list(second.ctx.models_dir.rglob("*.download.json"))
        second.shutdown()


def test_search_hub_then_download_a_listed_file(qtbot, isolated_home: Path, starter_model: Path, online) -> None:
    state = HubState(repos={REPO: {FILE: starter_model.read_bytes(), "m-Q8_0.gguf": b"GGUF" + b"\0" * 64},
                            "org/other": {"o-Q4_0.gguf": b"GGUF"}})
    with FakeHub(state) as hub:
        page = ModelsPage(open_context(isolated_home), endpoint=hub.url)
        qtbot.addWidget(page)
        page.search_field.setText("repo")
        page.search_button.click()
        qtbot.waitUntil(lambda: page.mode == "search", timeout=30_000)
        assert column(page.table, 0) == [REPO] and not page.back_button.isHidden()
        files_button = page.table.cellWidget(0, page.table.columnCount() - 1)
        assert isinstance(files_button, QPushButton)
        files_button.click()
        qtbot.waitUntil(lambda: page.mode == "files", timeout=30_000)
        assert column(page.table, 1) == ["Q4_1", "Q8_0"]
        download = page.table.cellWidget(0, page.table.columnCount() - 1)
        with qtbot.waitSignal(page.libraryChanged, timeout=60_000):
            download.click()
        assert page.table.item(0, page.table.columnCount() - 1).text() == "installed"
        page.back_button.click()
        assert page.mode == "catalogue" and "DeepSeek-R1-Distill-Qwen-14B" in column(page.table, 0)
        page.shutdown()


def test_hub_errors_and_offline_mode_are_shown_not_raised(qtbot, page: ModelsPage,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOCALCHAT_USER_OFFLINE", "1")  # the user started localchat with HF_HUB_OFFLINE=1
    page.search_field.setText("anything")
    page.search_hub()  # refused before any request
    qtbot.waitUntil(lambda: "offline mode is on" in page.note.text(), timeout=30_000)
    page.refresh_catalogue()
    qtbot.waitUntil(lambda: not page.busy("refresh"), timeout=30_000)
    assert "offline mode is on" in page.note.text() and page.mode == "catalogue"


def test_refresh_catalogue_from_the_hub(qtbot, isolated_home: Path, online) -> None:
    page = ModelsPage(open_context(isolated_home))
    qtbot.addWidget(page)
    e = page.catalogue.get("r1-distill-qwen-1.5b")
    assert e is not None
    state = HubState(repos={e.repo: {q.file: b"GGUF stand-in " + q.quant.encode() for q in e.quants}})
    with FakeHub(state) as hub:
        page.endpoint = hub.url
        page.refresh_catalogue()
        qtbot.waitUntil(lambda: "refreshed" in page.note.text(), timeout=60_000)
    assert "2 files now have exact sizes and sha256" in page.note.text() and "not reachable" in page.note.text()
    assert "refreshed" in page.where.text()
    sizes = {r for r, t in zip(column(page.table, 2), column(page.table, 0), strict=True)
             if t == "DeepSeek-R1-Distill-Qwen-1.5B"}
    assert sizes == {"0 MB"}  # the stand-ins' exact sizes (a few bytes) replaced the shipped ones
    page.shutdown()


def test_speed_column_predicted_then_measured(page: ModelsPage) -> None:
    from localchat.core.hardware.speed import SpeedPrediction
    from localchat.core.hardware.speed_log import measured_decode, record_decode

    entry = page.catalogue.entries()[0]
    quant = entry.quants[0]
    key = f"{entry.id}:{quant.quant}"
    pred = SpeedPrediction(value=4.2, low=3.5, high=5.0, n_past=1024, at_full_context=3.9, n_ctx=8192, gpu_layers=22,
                           total_layers=49, bound="memory", basis=("CPU: 20.0 GB/s measured", "GPU: assumed"))
    page._on_fits(({key: "partial"}, 16 * 2**30, {key: pred}))
    row = [page.table.item(r, 0).data(Qt.ItemDataRole.UserRole) for r in range(page.table.rowCount())].index(
        (entry.id, quant.quant))
    assert page.table.horizontalHeaderItem(4).text() == "speed here"
    cell = page.table.item(row, 4)
    assert cell.text() == "~4.2 tok/s, 22 of 49 layers on the GPU"
    assert "3.5–5.0 tok/s" in cell.toolTip() and "measured" in cell.toolTip() and "assumed" in cell.toolTip()
    assert page.table.item(row, 3).text() == "GPU + CPU"
    # once the model has run here, its last turns' median replaces the prediction
    name = Path(quant.files[0].path).name
    for tps in (30.0, 40.0, 35.0):
        record_decode(page.ctx.paths.data_dir, name, tps, completion_tokens=64)
    record_decode(page.ctx.paths.data_dir, name, 999.0, completion_tokens=2)  # too short a turn: ignored
    assert measured_decode(page.ctx.paths.data_dir, name).tokens_per_s == 35.0  # type: ignore[union-attr]
    item = page._speed_cell(key, "partial", [name])
    assert item.text() == "35 tok/s measured" and "last 3 turns" in item.toolTip()
