"""The Models page against the local Hub stand-in: free disk space and refused downloads, unfinished downloads
offered with Resume/Discard, a split quant found by search and downloaded from the window as one model."""

from __future__ import annotations

from pathlib import Path

import pytest
from hubserver import FakeHub, HubState
from model_shapes import split_gguf
from PySide6.QtWidgets import QPushButton

from localchat.context import open_context
from localchat.core.models.download import model_folder
from localchat.core.models.hub import repo_models
from localchat.fsutil import FileLock
from localchat.gui.models_page import ModelsPage

REPO = "org/repo"
FILE = "m-Q4_1.gguf"


@pytest.fixture
def online(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOCALCHAT_USER_OFFLINE", "0")


def column(table, col: int) -> list[str]:  # type: ignore[no-untyped-def]
    return [table.item(r, col).text() if table.item(r, col) else "" for r in range(table.rowCount())]


def action(page: ModelsPage, row: int) -> QPushButton:
    b = page.table.cellWidget(row, page.table.columnCount() - 1)
    assert isinstance(b, QPushButton)
    return b


def test_free_space_shown_and_a_download_that_would_not_fit_refused_before_it_starts(
        qtbot, isolated_home: Path, starter_model: Path, online) -> None:
    state = HubState(repos={REPO: {FILE: starter_model.read_bytes()}})
    free = {"bytes": 50_000_000}  # half the model
    with FakeHub(state) as hub:
        page = ModelsPage(open_context(isolated_home), endpoint=hub.url, free_space=lambda _f: free["bytes"])
        qtbot.addWidget(page)
        assert page.disk_label.text() == "50 MB free for downloads"
        page.list_files(REPO)
        qtbot.waitUntil(lambda: page.mode == "files", timeout=30_000)
        b = action(page, 0)
        assert b.text() == "No room" and "needs 98 MB, only 50 MB free" in b.toolTip()
        requests = len(state.requests)
        b.click()
        assert "not downloaded: not enough disk space: 0.10 GB needed" in page.note.text()
        assert "\n" not in page.note.text() and page.note.objectName() == "formError"
        assert not page.rows and len(state.requests) == requests and state.served == 0
        # catalogue rows say the same (their sizes from the catalogue)
        page.show_catalogue()
        assert {action(page, r).text() for r in range(page.table.rowCount())} == {"No room"}
        free["bytes"] = 10**12
        page.refresh()
        assert page.disk_label.text() == "1000.0 GB free for downloads"
        assert {action(page, r).text() for r in range(page.table.rowCount())} == {"Download"}
        assert "of the 1000.0 GB free" in action(page, 0).toolTip()
        page.shutdown()


def test_unfinished_download_resume_refused_when_full_and_discard_while_busy_is_said(
        qtbot, isolated_home: Path, starter_model: Path, online) -> None:
    data = starter_model.read_bytes()
    state = HubState(repos={REPO: {FILE: data}}, rate_bps=40e6)
    with FakeHub(state) as hub:
        first = ModelsPage(open_context(isolated_home), endpoint=hub.url)
        qtbot.addWidget(first)
        first.start_remote(repo_models(REPO, endpoint=hub.url)[0], "test model")
        qtbot.waitUntil(lambda: first.rows[f"{REPO}/{FILE}"].bar.value() > 100, timeout=30_000)
        first.shutdown()  # the app closes mid-download
        free = {"bytes": 1_000}
        second = ModelsPage(open_context(isolated_home), endpoint=hub.url, free_space=lambda _f: free["bytes"])
        qtbot.addWidget(second)
        row = second.rows[f"{REPO}/{FILE}"]
        assert row.state == "paused" and row.pause.text() == "Resume" and row.cancel.text() == "Discard"
        requests = len(state.requests)
        row.pause.click()  # Resume: the rest does not fit
        assert row.state == "failed" and "not enough disk space" in row.status.text()
        assert len(state.requests) == requests and f"{REPO}/{FILE}" not in second.runners
        # Discard while another process holds the download's lock: said on the row, nothing removed, no traceback
        folder = model_folder(second.ctx.models_dir, REPO)
        with FileLock(folder / f".{FILE}.lock", timeout=0, transient=True):
            row.cancel.click()
        assert "already being downloaded" in row.status.text() and (folder / f"{FILE}.part").exists()
        assert f"{REPO}/{FILE}" in second.rows
        row.cancel.click()  # Discard, now free
        assert not second.rows and not (folder / f"{FILE}.part").exists()
        second.shutdown()


def test_search_open_and_download_a_split_quant_as_one_model(qtbot, isolated_home: Path, starter_model: Path,
                                                             tmp_path: Path, online) -> None:
    from localchat.core.engine.client import EngineClient
    from localchat.core.engine.protocol import LoadOptions

    src = tmp_path / "src"
    src.mkdir()
    (src / "m-Q4_1.gguf").write_bytes(starter_model.read_bytes())
    parts = split_gguf(src / "m-Q4_1.gguf", src, parts=3)
    assert [p.name for p in parts] == [f"m-Q4_1-0000{i}-of-00003.gguf" for i in (1, 2, 3)]
    state = HubState(repos={"org/split-GGUF": {p.name: p.read_bytes() for p in parts},
                            "org/other": {"o-Q8_0.gguf": b"GGUF"}})
    with FakeHub(state) as hub:
        page = ModelsPage(open_context(isolated_home), endpoint=hub.url)
        qtbot.addWidget(page)
        page.search_field.setText("split")
        page.search_button.click()
        qtbot.waitUntil(lambda: page.mode == "search", timeout=30_000)
        assert column(page.table, 0) == ["org/split-GGUF"]
        action(page, 0).click()  # open the result
        qtbot.waitUntil(lambda: page.mode == "files", timeout=30_000)
        assert column(page.table, 0) == ["m-Q4_1  (3 parts)"] and column(page.table, 1) == ["Q4_1"]
        with qtbot.waitSignal(page.libraryChanged, timeout=120_000):
            action(page, 0).click()
        assert column(page.table, page.table.columnCount() - 1)[0] == "installed"
        entries = page.ctx.library.entries()
        assert len(entries) == 1 and len(entries[0].files) == 3 and entries[0].extra["quant"] == "Q4_1"
        assert [Path(f).name for f in entries[0].files] == [p.name for p in parts]
        assert column(page.installed, 0) == [entries[0].name]
        page.shutdown()
    # it loads as one model (llama.cpp finds the other parts next to the first)
    with EngineClient(isolation="off") as client:
        info = client.load(entries[0].file, LoadOptions(n_ctx=256))
        assert info.n_layers == 30


def test_opening_a_hub_quant_reads_its_header_for_the_exact_fit_and_speed(qtbot, isolated_home: Path,
                                                                          tmp_path: Path, online) -> None:
    from model_shapes import write_r1_qwen14b_q4km

    from localchat.gui.models_page import BADGES

    name = "DeepSeek-R1-Distill-Qwen-14B-Q4_K_M.gguf"
    r1 = write_r1_qwen14b_q4km(tmp_path / name)
    state = HubState(disk_files={"org/R1-14B-GGUF": {name: r1}})
    with FakeHub(state) as hub:
        page = ModelsPage(open_context(isolated_home), endpoint=hub.url)
        qtbot.addWidget(page)
        page.list_files("org/R1-14B-GGUF")
        qtbot.waitUntil(lambda: page.mode == "files", timeout=30_000)
        assert column(page.table, 4) == ["select to check"]
        assert not [r for r in state.requests if "/resolve/" in r]  # listing reads no file
        page.table.selectRow(0)  # opening the quant reads its header
        qtbot.waitUntil(lambda: f"org/R1-14B-GGUF/{name}" in page.exact, timeout=120_000)
        qtbot.waitUntil(lambda: "From its GGUF header" in page.details.text(), timeout=10_000)
        badge = column(page.table, 3)[0]
        assert badge.endswith(" · exact") and badge.removesuffix(" · exact") in BADGES.values()
        assert "tok/s" in column(page.table, 4)[0] and "Exact, from the file's tensor table" in \
            page.table.item(0, 3).toolTip()
        assert "14.77 B parameters" in page.details.text() and "48 layers" in page.details.text()
        fit = page.exact[f"org/R1-14B-GGUF/{name}"]
        # llama.cpp confirms the plan: its dry run in a sandboxed worker, on a stand-in written from the header
        assert fit.llama_compute_bytes is not None, fit.llama_error
        assert abs(fit.llama_compute_bytes - fit.plan.compute_bytes) <= 0.01 * 2**20 * len(fit.llama_compute)
        assert "llama.cpp's dry run here: compute buffer" in page.details.text()
        assert state.served_by_file[name] < 8 * 2**20 < r1.stat().st_size  # a few MB of a 9 GB file
        reads = len([r for r in state.requests if "/resolve/" in r])
        page.refresh()  # known now: not read again
        assert len([r for r in state.requests if "/resolve/" in r]) == reads
        page.shutdown()


def test_a_hostile_hub_header_is_said_in_the_details(qtbot, isolated_home: Path, online) -> None:
    import struct

    state = HubState(repos={"org/bad": {"bad-Q4_0.gguf": b"GGUF" + struct.pack("<IQQ", 3, 1 << 40, 1) + bytes(64)}})
    with FakeHub(state) as hub:
        page = ModelsPage(open_context(isolated_home), endpoint=hub.url)
        qtbot.addWidget(page)
        page.list_files("org/bad")
        qtbot.waitUntil(lambda: page.mode == "files", timeout=30_000)
        page.table.selectRow(0)
        qtbot.waitUntil(lambda: "exact fit not available" in page.details.text(), timeout=120_000)
        assert "not a usable GGUF" in page.details.text() and "\n" not in page.details.text()
        assert action(page, 0).text() in ("Download", "No room")  # the estimate and the button stay
        page.shutdown()


def test_offline_the_page_says_so_and_shows_kept_results(qtbot, isolated_home: Path, starter_model: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOCALCHAT_USER_OFFLINE", "0")
    state = HubState(repos={REPO: {FILE: starter_model.read_bytes()}})
    with FakeHub(state) as hub:
        page = ModelsPage(open_context(isolated_home), endpoint=hub.url)
        qtbot.addWidget(page)
        page.search_field.setText("repo")
        page.search_hub()
        qtbot.waitUntil(lambda: page.mode == "search", timeout=30_000)
        page.list_files(REPO)
        qtbot.waitUntil(lambda: page.mode == "files", timeout=30_000)
        page.shutdown()
        requests = len(state.requests)
        monkeypatch.setenv("LOCALCHAT_USER_OFFLINE", "1")  # the next start is offline
        page = ModelsPage(open_context(isolated_home), endpoint=hub.url)
        qtbot.addWidget(page)
        assert "Offline mode is on" in page.note.text()
        page.search_field.setText("repo")
        page.search_hub()
        qtbot.waitUntil(lambda: page.mode == "search", timeout=30_000)
        assert column(page.table, 0) == [REPO] and "showing the results kept from" in page.note.text()
        assert "offline mode is on" in page.note.text()
        page.list_files(REPO)
        qtbot.waitUntil(lambda: page.mode == "files", timeout=30_000)
        assert column(page.table, 1) == ["Q4_1"] and "kept from" in page.note.text()
        page.search_field.setText("never searched")
        page.search_hub()
        qtbot.waitUntil(lambda: not page.busy("search"), timeout=30_000)
        assert "offline mode is on" in page.note.text() and page.mode == "files"
        assert len(state.requests) == requests  # nothing asked of the Hub
        page.show_catalogue()
        assert "Offline mode is on" in page.note.text()
        page.shutdown()


@pytest.mark.qt_log_ignore("does not support propagateSizeHints")  # the offscreen platform, on any show()
def test_installed_models_show_their_speed_here_predicted_then_measured(qtbot, isolated_home: Path,
                                                                        starter_model: Path) -> None:
    from localchat.core.hardware.speed_log import record_decode

    ctx = open_context(isolated_home)
    ctx.ensure_starter()
    page = ModelsPage(ctx)
    qtbot.addWidget(page)
    assert page.installed.horizontalHeaderItem(4).text() == "speed here"
    page.show()  # the fit badges (and the installed models' predictions, from their own tensor tables) start
    qtbot.waitUntil(lambda: bool(page.fits), timeout=120_000)
    assert "file:smollm2-135m" in page.fits and "tok/s" in page.installed.item(0, 4).text()
    assert "Predicted decode speed" in page.installed.item(0, 4).toolTip()
    for tps in (80.0, 90.0, 85.0):  # what core.chat.turn records after each finished turn
        record_decode(ctx.paths.data_dir, starter_model, tps, completion_tokens=48)
    page.refresh()
    assert page.installed.item(0, 4).text() == "85 tok/s measured"
    assert "(predicted ~" in page.installed.item(0, 4).toolTip()
    page.shutdown()
