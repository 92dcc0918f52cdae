"""The Models page: installed models, the catalogue of distilled checkpoints with a fit badge for this machine,
Hugging Face search, downloads with progress / pause / resume / cancel, import by file dialog or drag-and-drop,
delete with confirmation, GGUF metadata.

Nothing here touches the network unless the user clicks Search, Refresh or Download. Every slow action — hardware
detection for the fit badges, Hub requests, header reads, copying an imported file — runs as a task (gui/tasks.py)
whose result or error comes back on the GUI thread; a download runs in its own QThread (it reports progress and can
be paused) and reaches the page through queued signals on its slots. Downloads that were paused, interrupted or
left by a closed app are found again at start-up (their manifests) and offered for resuming; they never resume by
themselves.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, Qt, QThread, Signal, Slot
from PySide6.QtGui import QBrush, QColor, QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import (
    QAbstractItemView,
    QFileDialog,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from localchat.context import AppContext
from localchat.core.models.catalogue import Catalogue, CatalogueEntry, CatalogueQuant, RefreshReport
from localchat.core.models.download import (
    DownloadJob,
    DownloadProgress,
    DownloadStopped,
    FreeSpace,
    PendingDownload,
    bytes_to_fetch,
    check_disk_space,
    disk_margin,
    free_bytes,
    pending_downloads,
    pull,
)
from localchat.core.models.hub import RemoteModel
from localchat.core.models.library import LibraryEntry, import_file, remove_model
from localchat.errors import DownloadError, LocalChatError
from localchat.gui import theme
from localchat.gui.tasks import Task, run_task, wait_all

log = logging.getLogger(__name__)
BADGES = {"full_gpu": "Runs on GPU", "partial": "GPU + CPU", "cpu": "CPU only", "too_large": "Too large"}


def _badge_color(verdict: str) -> str:
    t = theme.current()
    return {"full_gpu": t.ok_text, "partial": t.warn_text, "cpu": t.accent, "too_large": t.error_text}.get(
        verdict, t.muted)


def _gb(n: int) -> str:
    return f"{n / 1e9:.1f} GB" if n >= 1e9 else f"{n / 1e6:.0f} MB"


class DownloadRunner(QObject):
    """Runs one DownloadJob (then registers the model) in its own thread.

    Signals:
        progress(object): DownloadProgress.
        finished(object): the LibraryEntry registered.
        failed(str): why it failed.
        stopped(bool): True when paused (resumable), False when cancelled.
    """

    progress = Signal(object)
    finished = Signal(object)
    failed = Signal(str)
    stopped = Signal(bool)

    def __init__(self, ctx: AppContext, model: RemoteModel, endpoint: str | None = None,
                 extra: dict[str, Any] | None = None, free_space: FreeSpace = free_bytes) -> None:
        super().__init__()
        self.ctx = ctx
        self.model = model
        self.extra = extra
        self.job = DownloadJob(model, ctx.models_dir, endpoint=endpoint, progress=self.progress.emit,
                               free_space=free_space)

    @Slot()
    def run(self) -> None:
        try:
            entry = pull(self.model, self.ctx.library, self.ctx.models_dir, job=self.job, extra=self.extra)
            self.finished.emit(entry)
        except DownloadStopped as exc:
            self.stopped.emit(exc.paused)
        except LocalChatError as exc:
            self.failed.emit(str(exc))
        except Exception as exc:
            log.exception("download failed")
            self.failed.emit(f"unexpected error: {exc!r}")


class DownloadRow(QWidget):
    """One download's line: title, progress bar, bytes / speed / ETA, Pause↔Resume, Cancel (Dismiss when over).

    Lives in the GUI thread: the runner's signals reach its slots queued.

    Signals:
        done(str, str, str): key, message, state ("installed", "failed", "paused", "cancelled").
        pauseRequested(str): key.
        resumeRequested(str): key.
        cancelRequested(str): key.
    """

    done = Signal(str, str, str)
    pauseRequested = Signal(str)
    resumeRequested = Signal(str)
    cancelRequested = Signal(str)

    def __init__(self, key: str, title: str, model: RemoteModel, extra: dict[str, Any] | None = None,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.key = key
        self.model = model
        self.extra = extra  # what the library entry will remember (catalogue recommendations)
        self.state = "running"
        lay = QHBoxLayout(self)
        lay.setContentsMargins(0, 2, 0, 2)
        self.label = QLabel(title)
        self.label.setMinimumWidth(220)
        self.bar = QProgressBar(maximum=1000)
        self.bar.setTextVisible(True)
        self.bar.setFormat("%p%")
        self.status = QLabel("starting…")
        self.status.setObjectName("hint")
        self.status.setMinimumWidth(260)
        self.pause = QPushButton("Pause")
        self.pause.clicked.connect(self._pause_or_resume)
        self.cancel = QPushButton("Cancel")
        self.cancel.clicked.connect(self._cancel)
        for w in (self.label, self.bar, self.status, self.pause, self.cancel):
            lay.addWidget(w)
        lay.setStretch(1, 1)

    def set_fraction(self, done: int, total: int) -> None:
        self.bar.setValue(int(1000 * done / max(1, total)))

    @Slot()
    def _pause_or_resume(self) -> None:
        if self.state == "paused" or self.state == "failed":
            self.resumeRequested.emit(self.key)
        else:
            self.pause.setEnabled(False)
            self.status.setText("pausing…")
            self.pauseRequested.emit(self.key)

    @Slot()
    def _cancel(self) -> None:
        self.cancelRequested.emit(self.key)

    def show_state(self, state: str, message: str) -> None:
        self.state = state
        self.status.setText(message)
        self.status.setObjectName("formError" if state == "failed" else "hint")
        self.status.style().unpolish(self.status)
        self.status.style().polish(self.status)
        over = state in ("installed", "cancelled")
        self.pause.setVisible(not over)
        self.pause.setEnabled(True)
        self.pause.setText("Resume" if state in ("paused", "failed") else "Pause")
        # nothing running: the button removes the partial files
        self.cancel.setText("Dismiss" if over else "Discard" if state in ("paused", "failed") else "Cancel")

    @Slot(object)
    def on_progress(self, p: DownloadProgress) -> None:
        done, total = (p.model_done, p.model_total) if p.model_total else (p.done_bytes, p.total_bytes)
        self.set_fraction(done, total)
        eta = f", {_duration(p.eta_s)} left" if p.eta_s is not None else ""
        part = f" (part {p.part}/{p.parts})" if p.parts > 1 else ""
        self.status.setText(f"{done / 1e6:,.0f} / {total / 1e6:,.0f} MB, {p.speed_bps / 1e6:.1f} MB/s{eta}{part}")

    @Slot(object)
    def on_finished(self, entry: Any) -> None:
        self.set_fraction(1, 1)
        self.done.emit(self.key, f"installed as {entry.name} (sha256 verified)", "installed")

    @Slot(str)
    def on_failed(self, message: str) -> None:
        self.done.emit(self.key, message, "failed")

    @Slot(bool)
    def on_stopped(self, paused: bool) -> None:
        if paused:
            self.done.emit(self.key, "paused — resumes where it stopped, also after a restart", "paused")
        else:
            self.done.emit(self.key, "cancelled; partial files removed", "cancelled")


def _confirmation(fit: Any) -> str:
    """llama.cpp's own figure next to the plan's, as the confirmation of the arithmetic."""
    planned = fit.plan.compute_bytes / 2**20
    if fit.llama_compute_bytes is not None:
        return (f"; llama.cpp's dry run here: compute buffer {fit.llama_compute_bytes / 2**20:,.0f} MiB (planned "
                f"{planned:,.0f} MiB)")
    return f"; llama.cpp could not confirm the compute buffer ({fit.llama_error})" if fit.llama_error else ""


def _idle_note() -> str:
    import os

    from localchat.core.privacy.lockdown import USER_OFFLINE_ENV

    if os.environ.get(USER_OFFLINE_ENV) == "1":
        return ("Offline mode is on (HF_HUB_OFFLINE=1 when localchat started): the catalogue and the search results "
                "kept from earlier searches are shown; Hugging Face is not contacted.")
    return ("Works offline. Search, opening a Hub quant, Refresh and Download are the only things that use the "
            "network, and only when you click them.")


def _kept(query: str, cache_dir: Path, files: bool, endpoint: str | None) -> tuple[list[dict[str, Any]], str]:
    """A search or a repo's files, kept for offline use (the same cache as ``localchat models search``): the results
    and, when the Hub could not be asked, a note saying the results are the cached ones. Raises when nothing is
    cached."""
    from localchat.core.models.hub import search_kept

    results, when, error = search_kept(query, cache_dir, files=files, endpoint=endpoint)
    if error is None:
        return results, ""
    if when is None:
        raise error
    return results, f"{error} — showing the results kept from {time.strftime('%Y-%m-%d %H:%M', time.localtime(when))}"


def _duration(s: float) -> str:
    s = int(s)
    return f"{s // 3600} h {s % 3600 // 60:02d} min" if s >= 3600 else f"{s // 60} min {s % 60:02d} s" \
        if s >= 60 else f"{s} s"


class ModelsPage(QWidget):
    """Signals:
        libraryChanged: the installed models changed (the main window refreshes its model picker).
        fitsReady(object): fit verdicts computed off the GUI thread: (``{"id:quant": verdict}``, RAM total,
            ``{"id:quant": SpeedPrediction}``).
    """

    libraryChanged = Signal()
    fitsReady = Signal(object)

    def __init__(self, ctx: AppContext, parent: QWidget | None = None, endpoint: str | None = None,
                 free_space: FreeSpace = free_bytes) -> None:
        super().__init__(parent)
        self.ctx = ctx
        self.endpoint = endpoint
        self.free_space = free_space  # the disk probe (tests inject a full disk)
        self._free_now: int | None = None
        self.catalogue = Catalogue(ctx.paths.cache_dir)
        self.runners: dict[str, tuple[QThread, DownloadRunner]] = {}
        self.rows: dict[str, DownloadRow] = {}
        self.tasks: list[Task] = []
        self.fits: dict[str, str] = {}
        self.speeds: dict[str, Any] = {}  # "id:quant" -> SpeedPrediction (predicted decode tok/s here)
        self.ram_total: int | None = None
        self.mode = "catalogue"  # or "search", "files"
        self.search_results: list[dict[str, Any]] = []
        self.repo_files: list[RemoteModel] = []
        self.repo_shown = ""
        # "repo/name" -> RemoteFit from the model's GGUF header on the Hub, or why it could not be read
        self.exact: dict[str, Any] = {}
        self.machine: Any = None  # this machine and its speed figures, once the fit badges have them
        self.machine_speed: Any = None
        self._listed: tuple[str, str] = ("", "")
        self._fits_started = False
        self.setAcceptDrops(True)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)

        inst = QGroupBox("Installed")
        il = QVBoxLayout(inst)
        self.installed = QTableWidget(0, 7)
        self.installed.setHorizontalHeaderLabels(["name", "size", "quant", "kind", "speed here", "source", "file"])
        self._style_table(self.installed)
        self.installed.itemSelectionChanged.connect(self._update_buttons)
        self.installed.itemDoubleClicked.connect(self.show_details)
        il.addWidget(self.installed)
        row = QHBoxLayout()
        self.import_button = QPushButton("Import .gguf…")
        self.import_button.clicked.connect(self.import_dialog)
        self.details_button = QPushButton("Details…")
        self.details_button.clicked.connect(self.show_details)
        self.delete_button = QPushButton("Delete…")
        self.delete_button.clicked.connect(self.delete_selected)
        self.drop_hint = QLabel("or drop .gguf files on this page")
        self.drop_hint.setObjectName("hint")
        for w in (self.import_button, self.details_button, self.delete_button, self.drop_hint):
            row.addWidget(w)
        row.addStretch(1)
        il.addLayout(row)
        lay.addWidget(inst, 1)  # a few installed models; the listings below get the room

        self.dl_box = QGroupBox("Downloads")
        self.dl_layout = QVBoxLayout(self.dl_box)
        self.dl_box.setVisible(False)
        lay.addWidget(self.dl_box)

        get = QGroupBox("Get models")
        gl = QVBoxLayout(get)
        srow = QHBoxLayout()
        self.search_field = QLineEdit()
        self.search_field.setPlaceholderText("Search Hugging Face for GGUF models, e.g. “R1 distill 14B”")
        self.search_field.returnPressed.connect(self.search_hub)
        self.search_button = QPushButton("Search Hugging Face")
        self.search_button.clicked.connect(self.search_hub)
        self.back_button = QPushButton("← Catalogue")
        self.back_button.clicked.connect(self.show_catalogue)
        self.refresh_button = QPushButton("Refresh from Hugging Face")
        self.refresh_button.setToolTip("Fetches exact sizes and sha256 of the catalogue's files from the Hub: "
                                       "a network request you start")
        self.refresh_button.clicked.connect(self.refresh_catalogue)
        for sw in (self.search_field, self.search_button, self.back_button, self.refresh_button):
            srow.addWidget(sw)
        srow.setStretch(0, 1)
        gl.addLayout(srow)
        wrow = QHBoxLayout()
        self.where = QLabel()
        self.where.setObjectName("settingsSection")
        self.disk_label = QLabel()  # free space where downloads go, next to the Download buttons' column
        self.disk_label.setObjectName("hint")
        wrow.addWidget(self.where, 1)
        wrow.addWidget(self.disk_label)
        gl.addLayout(wrow)
        self.table = QTableWidget(0, 6)
        self._style_table(self.table)
        self.table.horizontalHeader().setStretchLastSection(False)
        self.table.itemSelectionChanged.connect(self._show_row_details)
        gl.addWidget(self.table)
        self.details = QLabel()
        self.details.setObjectName("hint")
        self.details.setWordWrap(True)
        gl.addWidget(self.details)
        self.note = QLabel(_idle_note())
        self.note.setObjectName("hint")
        self.note.setWordWrap(True)
        gl.addWidget(self.note)
        lay.addWidget(get, 2)

        self.fitsReady.connect(self._on_fits)
        for p in pending_downloads(ctx.models_dir):
            self._add_pending(p)
        self.refresh()

    def _set_note(self, text: str, error: bool = False) -> None:
        self.note.setText(text)
        if self.note.objectName() != ("formError" if error else "hint"):
            self.note.setObjectName("formError" if error else "hint")
            self.note.style().unpolish(self.note)
            self.note.style().polish(self.note)

    def free_disk(self) -> int | None:
        """Bytes free where downloads go (None when the disk cannot be asked)."""
        try:
            return self.free_space(self.ctx.models_dir)
        except OSError:
            return None

    @staticmethod
    def _style_table(t: QTableWidget) -> None:
        t.verticalHeader().setVisible(False)
        t.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        t.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        t.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        t.setAlternatingRowColors(True)
        t.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        t.horizontalHeader().setStretchLastSection(True)

    # -- background work ---------------------------------------------------------------------------------

    def _background(self, kind: str, fn: Callable[[], Any]) -> None:
        def failed(exc: BaseException) -> None:
            if isinstance(exc, (LocalChatError, OSError)):
                self._on_task_failed(kind, str(exc))
            else:  # a bug: logged, and said, never swallowed
                log.error("%s failed", kind, exc_info=exc)
                self._on_task_failed(kind, f"unexpected error: {exc!r}")

        self.tasks.append(run_task(self, fn, lambda result: self._on_task_done(kind, result), failed, name=kind))

    def _finish_task(self, kind: str) -> None:
        for task in self.tasks:
            if task.name == kind:
                self.tasks.remove(task)
                break
        self._update_buttons()

    def busy(self, kind: str) -> bool:
        return any(task.name == kind for task in self.tasks)

    @Slot(str, object)
    def _on_task_done(self, kind: str, result: Any) -> None:
        self._finish_task(kind)
        if kind in ("search", "files"):
            results, cached_note = result
            n = len(results)
            if kind == "search":
                self.search_results = results
                text = f"{n} GGUF repos on Hugging Face. Pick one and click Files… to see its models by quantisation."
            else:
                self.repo_files = [RemoteModel.from_dict(r) for r in results]
                text = (f"{n} model{'s' if n != 1 else ''} in {self.repo_shown}, sizes and sha256 from the Hub (split "
                        f"models are downloaded as one). Select one for its exact fit and speed here: its GGUF header "
                        f"is read from the Hub, a few MB.")
            self.mode = kind
            self._set_note(cached_note or text, error=bool(cached_note))
        elif kind == "refresh":
            report: RefreshReport = result
            failed = f"; not reachable: {', '.join(report.failed)}" if report.failed else ""
            self.note.setText(f"Catalogue refreshed from Hugging Face: {report.updated_files} files now have exact "
                              f"sizes and sha256{failed}.")
        elif kind.startswith("header:"):
            self.exact[kind[7:]] = result
        elif kind.startswith("import:"):
            entry: LibraryEntry = result
            self.note.setText(f"Imported {entry.name}")
            self.libraryChanged.emit()
        self.refresh()

    @Slot(str, str)
    def _on_task_failed(self, kind: str, message: str) -> None:
        self._finish_task(kind)
        if kind.startswith("import:"):
            QMessageBox.warning(self, "Import failed", f"{Path(kind[7:]).name}: {message}")
        elif kind.startswith("header:"):
            self.exact[kind[7:]] = message  # shown in the row's details; the estimate stays
        else:
            self.note.setText(message)
        self.refresh()

    # -- fit badges --------------------------------------------------------------------------------------

    def showEvent(self, e: Any) -> None:
        if not self._fits_started:
            self._fits_started = True
            run_task(self, self._compute_fits, name="fit-badges")
        super().showEvent(e)

    def _compute_fits(self) -> None:
        from localchat.core.hardware.sizing import fit_catalogue_quant, fit_gguf, this_machine, this_machine_speed

        out: dict[str, str] = {}
        speeds: dict[str, Any] = {}
        ram: int | None = None
        machine = speed = None
        try:
            machine = this_machine(isolation=self.ctx.isolation_policy)  # llama.cpp probed in the sandboxed worker
            ram = machine.ram_total
            try:  # the CPU probe (cached per machine) and NVML: the speed column is a nicety on a nicety
                speed = this_machine_speed(machine, self.ctx.settings.n_threads)
            except Exception:
                log.exception("decode speed figures failed")
                speed = None
            for e in self.catalogue.entries():
                for q in e.quants:
                    fit = fit_catalogue_quant(e, q, machine=machine, speed=speed)
                    out[f"{e.id}:{q.quant}"] = fit.verdict
                    if fit.speed is not None:
                        speeds[f"{e.id}:{q.quant}"] = fit.speed
            for entry in self.ctx.library.entries():  # installed: exact, from the file's own tensor table
                if not entry.present:
                    continue
                try:
                    got = fit_gguf(entry.file, n_ctx=self.ctx.settings.n_ctx, machine=machine, speed=speed)
                except LocalChatError:
                    continue
                out[f"file:{entry.name}"] = got.verdict
                if got.speed is not None:
                    speeds[f"file:{entry.name}"] = got.speed
        except Exception:  # badges are a nicety: never take the page down
            log.exception("fit badges failed")
        known = ram is not None
        self.fitsReady.emit((out, ram, speeds, machine if known else None, speed if known else None))

    @Slot(object)
    def _on_fits(self, result: tuple[Any, ...]) -> None:
        self.fits, self.ram_total = result[0], result[1]
        self.speeds = result[2] if len(result) > 2 else {}
        if len(result) > 4:
            self.machine, self.machine_speed = result[3], result[4]
        self.refresh()

    def _speed_cell(self, key: str, verdict: str, files: list[str]) -> QTableWidgetItem:
        """A model's speed here: measured when it has run (its last turns), else predicted."""
        from localchat.core.hardware.speed import fmt_tps
        from localchat.core.hardware.speed_log import measured_decode

        measured = measured_decode(self.ctx.paths.data_dir, files[0]) if files else None
        pred = self.speeds.get(key)
        if measured is not None:
            item = QTableWidgetItem(measured.label)
            item.setToolTip(f"Measured on this machine: the median decode speed of its last {measured.turns} "
                            f"turn{'s' if measured.turns != 1 else ''}" +
                            (f" (predicted {pred.label})" if pred is not None else ""))
            item.setForeground(QBrush(QColor(_badge_color("full_gpu"))))
            return item
        if pred is None:
            return QTableWidgetItem("checking…" if not self.fits else "")
        if verdict == "too_large":
            item = QTableWidgetItem("—")
        else:
            item = QTableWidgetItem(pred.label)
        item.setToolTip(f"Predicted decode speed {fmt_tps(pred.low)}–{fmt_tps(pred.high)} tok/s at "
                        f"{pred.n_past:,} tokens of context (docs/SIZING.md):\n• " + "\n• ".join(pred.basis))
        return item

    # -- listing -----------------------------------------------------------------------------------------

    def refresh(self) -> None:
        entries = self.ctx.library.entries()
        self.installed.setRowCount(len(entries))
        for i, e in enumerate(entries):
            kind = "R1 distill" if e.extra.get("r1_distill") else "chat"
            values = (e.name, _gb(e.size), str(e.extra.get("quant", "")), kind, "",
                      e.source.replace("huggingface:", "🤗 "), e.path + ("" if e.present else "  (missing)"))
            for j, v in enumerate(values):
                item = self._speed_cell(f"file:{e.name}", self.fits.get(f"file:{e.name}", ""),
                                        [Path(e.files[0]).name] if e.files else []) if j == 4 else QTableWidgetItem(v)
                item.setData(Qt.ItemDataRole.UserRole, e.name)
                if j == 6:
                    item.setToolTip("\n".join(str(p) for p in e.files))
                self.installed.setItem(i, j, item)
        installed_files = {Path(p).name for e in entries for p in e.files}
        free = self._free_now = self.free_disk()  # once per listing, for every Download button
        self.disk_label.setText("" if free is None else f"{_gb(free)} free for downloads")
        self.disk_label.setToolTip(f"Free space on the disk of the models folder, {self.ctx.models_dir}")
        same = self._listed == (self.mode, self.repo_shown)  # the same listing again: keep its selected row
        self._listed = (self.mode, self.repo_shown)
        selected = sorted({i.row() for i in self.table.selectedItems()}) if same else []
        self.table.blockSignals(True)  # rebuilding the table is not a new selection
        if self.mode == "search":
            self._fill_search()
        elif self.mode == "files":
            self._fill_files(installed_files)
        else:
            self._fill_catalogue(installed_files)
        if selected and selected[0] < self.table.rowCount():
            self.table.selectRow(selected[0])
        self.table.blockSignals(False)
        if selected:
            self._show_row_details()
        self._update_buttons()

    def _set_columns(self, labels: list[str]) -> None:
        self.table.setRowCount(0)
        self.table.clear()
        self.table.setColumnCount(len(labels))
        self.table.setHorizontalHeaderLabels(labels)
        self.table.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)

    def _download_cell(self, row: int, model: RemoteModel, slot: Callable[[], Any]) -> None:
        """The Download button, saying what the download needs of the free disk space (and when it cannot fit)."""
        need = bytes_to_fetch(model, self.ctx.models_dir)
        free = self._free_now
        if free is None:
            self._action_cell(row, "Download", slot, f"needs {_gb(need)}")
        elif need + disk_margin(need) > free:
            self._action_cell(row, "No room", slot, f"needs {_gb(need)}, only {_gb(free)} free on the disk of "
                                                    f"{self.ctx.models_dir}: free some space first")
        else:
            self._action_cell(row, "Download", slot, f"needs {_gb(need)} of the {_gb(free)} free")

    def _action_cell(self, row: int, text: str, slot: Callable[[], Any], tooltip: str = "") -> None:
        b = QPushButton(text)
        b.setToolTip(tooltip)
        b.clicked.connect(lambda _checked=False: slot())
        self.table.setCellWidget(row, self.table.columnCount() - 1, b)

    def _fill_catalogue(self, installed_files: set[str]) -> None:
        when = self.catalogue.refreshed
        self.where.setText("Catalogue of distilled models" + (
            f" · refreshed {time.strftime('%Y-%m-%d %H:%M', time.localtime(when))}" if when else ""))
        self._set_columns(["model", "quant", "size", "on this machine", "speed here", "license", ""])
        rows = [(e, q) for e in self.catalogue.entries() for q in e.quants]
        self.table.setRowCount(len(rows))
        downloading = {r.model.repo + "/" + r.model.files[0].path for r in self.rows.values()
                       if r.state in ("running", "paused", "failed")}
        for i, (ce, q) in enumerate(rows):
            title = QTableWidgetItem(ce.title)
            title.setData(Qt.ItemDataRole.UserRole, (ce.id, q.quant))
            self.table.setItem(i, 0, title)
            self.table.setItem(i, 1, QTableWidgetItem(q.quant))
            parts = f" ({len(q.files)} parts)" if len(q.files) > 1 else ""
            self.table.setItem(i, 2, QTableWidgetItem(_gb(q.size) + parts))
            verdict = self.fits.get(f"{ce.id}:{q.quant}") or ""
            badge = QTableWidgetItem(BADGES.get(verdict, "checking…" if not self.fits else "?"))
            badge.setForeground(QBrush(QColor(_badge_color(verdict))))
            badge.setToolTip("From the offload planner for this machine's GPUs and RAM at an 8k context "
                             "(docs/SIZING.md)")
            self.table.setItem(i, 3, badge)
            installed = all(Path(f.path).name in installed_files for f in q.files)
            self.table.setItem(i, 4, self._speed_cell(f"{ce.id}:{q.quant}", verdict,
                                                      [Path(f.path).name for f in q.files] if installed else []))
            self.table.setItem(i, 5, QTableWidgetItem(ce.license))
            if installed:
                self.table.setItem(i, 6, QTableWidgetItem("installed"))
            elif f"{ce.repo}/{q.file}" in downloading:
                self.table.setItem(i, 6, QTableWidgetItem("in Downloads"))
            else:
                self._download_cell(i, ce.remote(q), partial(self.start_download, ce, q))

    def _fill_search(self) -> None:
        self.where.setText(f"Hugging Face: “{self.search_field.text().strip()}”")
        self._set_columns(["repo", "author", "downloads", "likes", "licence", "access", ""])
        self.table.setRowCount(len(self.search_results))
        for i, r in enumerate(self.search_results):
            item = QTableWidgetItem(r["repo"])
            item.setData(Qt.ItemDataRole.UserRole, r["repo"])
            self.table.setItem(i, 0, item)
            self.table.setItem(i, 1, QTableWidgetItem(r["repo"].split("/")[0] if "/" in r["repo"] else ""))
            self.table.setItem(i, 2, QTableWidgetItem(f"{r.get('downloads') or 0:,}"))
            self.table.setItem(i, 3, QTableWidgetItem(f"{r.get('likes') or 0:,}"))
            self.table.setItem(i, 4, QTableWidgetItem(r.get("license") or "?"))
            self.table.setItem(i, 5, QTableWidgetItem("gated: needs a login" if r.get("gated") else "public"))
            self._action_cell(i, "Files…", partial(self.list_files, r["repo"]))

    def _fill_files(self, installed_files: set[str]) -> None:
        self.where.setText(f"{self.repo_shown} on Hugging Face")
        self._set_columns(["model", "quant", "size", "on this machine", "speed here", ""])
        self.table.setRowCount(len(self.repo_files))
        for i, m in enumerate(self.repo_files):
            item = QTableWidgetItem(m.name + (f"  ({len(m.files)} parts)" if len(m.files) > 1 else ""))
            item.setData(Qt.ItemDataRole.UserRole, m.name)
            self.table.setItem(i, 0, item)
            self.table.setItem(i, 1, QTableWidgetItem(m.quant))
            self.table.setItem(i, 2, QTableWidgetItem(_gb(m.size)))
            fit_cell, speed_cell = self._exact_cells(m)
            self.table.setItem(i, 3, fit_cell)
            self.table.setItem(i, 4, speed_cell)
            if all(Path(f.path).name in installed_files for f in m.files):
                self.table.setItem(i, 5, QTableWidgetItem("installed"))
            elif f"{m.repo}/{m.name}" in self.rows and self.rows[f"{m.repo}/{m.name}"].state != "cancelled":
                self.table.setItem(i, 5, QTableWidgetItem("in Downloads"))
            else:
                self._download_cell(i, m, partial(self.start_remote, m, m.name))

    def _exact_cells(self, m: RemoteModel) -> tuple[QTableWidgetItem, QTableWidgetItem]:
        """A Hub quant's fit and speed: exact once its header was read (selecting the row reads it), else an
        estimate from the file size."""
        from localchat.core.hardware.speed import fmt_tps
        from localchat.core.models.remote_gguf import RemoteFit

        key = f"{m.repo}/{m.name}"
        got = self.exact.get(key)
        if isinstance(got, RemoteFit):
            fit = QTableWidgetItem(f"{BADGES.get(got.verdict, got.verdict)} · exact")
            fit.setForeground(QBrush(QColor(_badge_color(got.verdict))))
            fit.setToolTip(f"Exact, from the file's tensor table ({got.fetched / 1e6:.1f} MB of header read from "
                           f"Hugging Face): {got.plan.summary}\n• " + "\n• ".join(got.plan.reasons))
            p = got.speed
            speed = QTableWidgetItem("—" if p is None or got.verdict == "too_large" else p.label)
            if p is not None:
                speed.setToolTip(f"Predicted decode speed {fmt_tps(p.low)}–{fmt_tps(p.high)} tok/s at {p.n_past:,} "
                                 f"tokens of context (docs/SIZING.md):\n• " + "\n• ".join(p.basis))
            return fit, speed
        if self.busy(f"header:{key}"):
            return QTableWidgetItem("reading header…"), QTableWidgetItem("")
        estimate = ("?" if self.ram_total is None else
                    "fits in RAM?" if m.size * 1.2 < self.ram_total else "larger than RAM")
        fit = QTableWidgetItem(estimate)
        fit.setToolTip("An estimate from the file size. Select the row: localchat reads the file's GGUF header "
                       "from Hugging Face (a few MB) for the exact fit and speed on this machine.")
        return fit, QTableWidgetItem("" if isinstance(got, str) else "select to check")

    def read_header(self, model: RemoteModel) -> None:
        """Read ``model``'s GGUF header from the Hub off the GUI thread and plan it on this machine (a network
        request the user started by opening the quant)."""
        from localchat.core.models.remote_gguf import fit_remote

        key = f"{model.repo}/{model.name}"
        if self.busy(f"header:{key}"):
            return
        endpoint, ctx = self.endpoint, self.ctx
        machine, speed = self.machine, self.machine_speed

        def work() -> Any:
            from localchat.core.hardware.sizing import this_machine, this_machine_speed

            m = machine or this_machine(isolation=ctx.isolation_policy)
            s = speed
            if s is None:
                try:
                    s = this_machine_speed(m, ctx.settings.n_threads)
                except Exception:  # the speed is a nicety: the fit still shows
                    log.exception("decode speed figures failed")
            return fit_remote(model, m, s, endpoint=endpoint, confirm_isolation=ctx.isolation_policy)

        self.exact.pop(key, None)
        self._background(f"header:{key}", work)
        self.refresh()

    def _selected_remote(self) -> RemoteModel | None:
        rows = {i.row() for i in self.table.selectedItems()}
        if self.mode != "files" or not rows or min(rows) >= len(self.repo_files):
            return None
        return self.repo_files[min(rows)]

    def _show_remote_details(self, m: RemoteModel) -> None:
        from localchat.core.hardware.speed import fmt_tps
        from localchat.core.models.remote_gguf import RemoteFit

        key = f"{m.repo}/{m.name}"
        got = self.exact.get(key)
        parts = f" in {len(m.files)} parts" if len(m.files) > 1 else ""
        if isinstance(got, RemoteFit):
            i = got.info
            self.details.setText(
                f"{i.name}: {i.architecture}, {i.n_params / 1e9:.2f} B parameters, {i.quantisation}, {i.n_layers} "
                f"layers, trained context {i.context_length or '?'}; {_gb(m.size)}{parts}. Here: "
                f"{got.plan.summary}" + (f"; decode ~{fmt_tps(got.speed.value)} tok/s predicted "
                                         f"({fmt_tps(got.speed.low)}–{fmt_tps(got.speed.high)})"
                                         if got.speed is not None and got.verdict != "too_large" else "") +
                f". From its GGUF header ({got.fetched / 1e6:.1f} MB read from Hugging Face)" + _confirmation(got)
                + ".")
        elif isinstance(got, str):
            self.details.setText(f"{m.name}: exact fit not available ({got}); the estimate uses the file size.")
        elif key not in self.exact and not self.busy(f"header:{key}"):
            self.read_header(m)
            self.details.setText(f"Reading the GGUF header of {m.name} from Hugging Face (a few MB)…")
        else:
            self.details.setText(f"Reading the GGUF header of {m.name} from Hugging Face (a few MB)…")

    @Slot()
    def _show_row_details(self) -> None:
        remote = self._selected_remote()
        if remote is not None:
            self._show_remote_details(remote)
            return
        rows = {i.row() for i in self.table.selectedItems()}
        if self.mode != "catalogue" or not rows:
            self.details.setText("")
            return
        item = self.table.item(min(rows), 0)
        entry_id, quant = item.data(Qt.ItemDataRole.UserRole) if item is not None else (None, None)
        ce = self.catalogue.get(entry_id) if entry_id else None
        if ce is None:
            return
        sampling = ", ".join(f"{k} {v:g}" for k, v in ce.sampling.items())
        self.details.setText(f"{ce.description} Recommended: {sampling}, context {ce.context:,}. {ce.repo} · "
                             f"{quant} · {ce.license}")

    @Slot()
    def _update_buttons(self) -> None:
        selected = bool(self.installed.selectedItems())
        self.details_button.setEnabled(selected)
        self.delete_button.setEnabled(selected)
        self.back_button.setVisible(self.mode != "catalogue")
        self.refresh_button.setVisible(self.mode == "catalogue")
        self.refresh_button.setEnabled(not self.busy("refresh"))
        self.search_button.setEnabled(not self.busy("search") and not self.busy("files"))

    # -- Hub: search, files, refresh ---------------------------------------------------------------------

    @Slot()
    def search_hub(self) -> None:
        query = self.search_field.text().strip()
        if not query or self.busy("search"):
            return
        self.note.setText(f"Searching Hugging Face for “{query}”…")
        endpoint, cache_dir = self.endpoint, self.ctx.paths.cache_dir
        self._background("search", lambda: _kept(query, cache_dir, False, endpoint))
        self._update_buttons()

    def list_files(self, repo: str) -> None:
        if self.busy("files"):
            return
        self.repo_shown = repo
        self.exact = {k: v for k, v in self.exact.items() if not isinstance(v, str)}  # listing again retries those
        self.note.setText(f"Listing the GGUF files of {repo}…")
        endpoint, cache_dir = self.endpoint, self.ctx.paths.cache_dir
        self._background("files", lambda: _kept(repo, cache_dir, True, endpoint))
        self._update_buttons()

    @Slot()
    def show_catalogue(self) -> None:
        self.mode = "catalogue"
        self._set_note(_idle_note())
        self.refresh()

    @Slot()
    def refresh_catalogue(self) -> None:
        if self.busy("refresh"):
            return
        self.note.setText("Asking Hugging Face for the catalogue's exact file sizes and sha256…")
        catalogue, endpoint = self.catalogue, self.endpoint
        self._background("refresh", lambda: catalogue.refresh(endpoint=endpoint))
        self._update_buttons()

    # -- downloads ---------------------------------------------------------------------------------------

    def start_download(self, entry: CatalogueEntry, quant: CatalogueQuant) -> DownloadRunner | None:
        return self.start_remote(entry.remote(quant), f"{entry.title} {quant.quant}", entry.library_extra())

    def start_remote(self, model: RemoteModel, title: str,
                     extra: dict[str, Any] | None = None) -> DownloadRunner | None:
        """Start (or resume) downloading ``model``; None, with the reason in the note, when it would not fit."""
        try:
            check_disk_space(model, self.ctx.models_dir, self.free_space)
        except DownloadError as exc:
            self._set_note(f"{title} not downloaded: {exc}", error=True)
            self.refresh()
            return None
        key = f"{model.repo}/{model.name}"
        row = self.rows.get(key)
        if row is None or row.state in ("installed", "cancelled"):
            if row is not None:
                self._remove_row(key)
            row = self._new_row(key, title, model, extra)
        runner = self._run(row, model, extra)
        self.refresh()
        return runner

    def _run(self, row: DownloadRow, model: RemoteModel, extra: dict[str, Any] | None) -> DownloadRunner:
        thread = QThread(self)
        runner = DownloadRunner(self.ctx, model, self.endpoint, extra, self.free_space)
        runner.moveToThread(thread)
        # runner (download thread) -> row slots (GUI thread): queued, never a lambda in the emitting thread
        runner.progress.connect(row.on_progress)
        runner.finished.connect(row.on_finished)
        runner.failed.connect(row.on_failed)
        runner.stopped.connect(row.on_stopped)
        thread.started.connect(runner.run)
        self.runners[row.key] = (thread, runner)
        row.show_state("running", "starting…")
        thread.start()
        return runner

    def _new_row(self, key: str, title: str, model: RemoteModel, extra: dict[str, Any] | None) -> DownloadRow:
        row = DownloadRow(key, title, model, extra)
        row.done.connect(self._on_download_done)
        row.pauseRequested.connect(self._on_pause_requested)
        row.resumeRequested.connect(self.resume)
        row.cancelRequested.connect(self._on_cancel_requested)
        self.rows[key] = row
        self.dl_layout.addWidget(row)
        self.dl_box.setVisible(True)
        return row

    def _add_pending(self, p: PendingDownload) -> None:
        """A download left unfinished (paused, interrupted, app closed): shown paused, resumed only on request."""
        key = f"{p.model.repo}/{p.model.name}"
        found = self.catalogue.find(p.model.repo, p.model.files[0].path)
        title = f"{found[0].title} {found[1].quant}" if found else p.model.name
        row = self._new_row(key, title, p.model, found[0].library_extra() if found else None)
        row.set_fraction(p.done_bytes, p.model.size)
        row.show_state("paused", f"unfinished: {p.done_bytes / 1e6:,.0f} / {p.model.size / 1e6:,.0f} MB — "
                                 f"Resume continues from there")

    @Slot(str)
    def resume(self, key: str) -> None:
        row = self.rows.get(key)
        if row is None or key in self.runners:
            return
        try:
            check_disk_space(row.model, self.ctx.models_dir, self.free_space)
        except DownloadError as exc:
            row.show_state("failed", str(exc))
            return
        self._run(row, row.model, row.extra)
        self.refresh()

    @Slot(str)
    def _on_pause_requested(self, key: str) -> None:
        if key in self.runners:
            self.runners[key][1].job.pause()

    @Slot(str)
    def _on_cancel_requested(self, key: str) -> None:
        row = self.rows.get(key)
        if row is None:
            return
        if key in self.runners:
            self.runners[key][1].job.cancel()
        elif row.state in ("installed", "cancelled"):
            self._remove_row(key)
        else:  # paused or failed, nothing running: Discard removes the partial files
            try:
                DownloadJob(row.model, self.ctx.models_dir, endpoint=self.endpoint).discard()
            except DownloadError as exc:  # another process is downloading it right now
                row.show_state(row.state, str(exc))
                return
            self._remove_row(key)
            self.refresh()

    def _remove_row(self, key: str) -> None:
        row = self.rows.pop(key, None)
        if row is not None:
            self.dl_layout.removeWidget(row)
            row.deleteLater()
        self.dl_box.setVisible(bool(self.rows))

    @Slot(str, str, str)
    def _on_download_done(self, key: str, message: str, state: str) -> None:
        thread, runner = self.runners.pop(key)
        thread.quit()
        thread.wait()
        row = self.rows[key]
        row.model = runner.job.model  # with the Hub's exact metadata, for a later resume
        row.show_state(state, message)
        self.refresh()
        if state == "installed":
            self.libraryChanged.emit()

    def shutdown(self) -> None:
        """Pause running downloads (their partial files resume next time) and wait for background work."""
        for thread, runner in list(self.runners.values()):
            runner.job.pause()
            thread.quit()
            thread.wait(10_000)
        wait_all(10_000)

    # -- import / delete / details -----------------------------------------------------------------------

    @Slot()
    def import_dialog(self) -> None:
        paths, _ = QFileDialog.getOpenFileNames(self, "Import GGUF models", str(Path.home()), "GGUF models (*.gguf)")
        for p in paths:
            self.import_path(p)

    def import_path(self, path: str) -> None:
        """Validate and copy ``path`` into the models folder off the GUI thread (a model can be tens of GB);
        ``libraryChanged`` when done, a warning when refused."""
        library, models_dir = self.ctx.library, self.ctx.models_dir
        self.note.setText(f"Importing {Path(path).name}…")
        self._background(f"import:{path}", lambda: import_file(library, path, models_dir))

    def selected_entry(self) -> LibraryEntry | None:
        rows = {i.row() for i in self.installed.selectedItems()}
        if not rows:
            return None
        item = self.installed.item(min(rows), 0)
        return self.ctx.library.get(item.data(Qt.ItemDataRole.UserRole)) if item is not None else None

    @Slot()
    def delete_selected(self, confirm: bool = True) -> None:
        entry = self.selected_entry()
        if entry is None:
            return
        if entry.in_place:
            what = "remove it from the library; your file stays where it is"
        else:
            what = f"delete its {'files' if len(entry.files) > 1 else 'file'} ({_gb(entry.size)})"
        if confirm and QMessageBox.question(self, "Delete model", f"Delete {entry.name}? This will {what}.") \
                != QMessageBox.StandardButton.Yes:
            return
        try:
            remove_model(self.ctx.library, entry.name)
        except (LocalChatError, OSError) as exc:
            QMessageBox.warning(self, "Delete failed", str(exc))
        self.refresh()
        self.libraryChanged.emit()

    def details_text(self, entry: LibraryEntry) -> str:
        from localchat.core.chat.history import is_r1_distill
        from localchat.core.models.gguf_info import read_gguf

        try:
            info = read_gguf(entry.file)
        except LocalChatError as exc:
            return f"{entry.name}\n\n{exc}"
        lines = [f"{entry.name} — {info.name or info.architecture}",
                 f"architecture {info.architecture}, {info.n_params / 1e9:.2f} B parameters, {info.quantisation} "
                 f"({info.file_type or '?'})",
                 f"trained context {info.context_length or '?'}, {info.n_layers} layers, {info.n_heads} heads "
                 f"({info.n_kv_heads} KV)",
                 f"{_gb(entry.size)} in {len(entry.files)} file(s): {entry.path}",
                 f"source {entry.source}" + (f", sha256 {entry.sha256[:16]}…" if entry.sha256 else ""),
                 "DeepSeek-R1 distill: reasoning shown separately" if is_r1_distill(f"{entry.name} {info.name}",
                                                                                    info.chat_template)
                 else "chat model"]
        if entry.extra.get("sampling"):
            lines.append(f"recommended sampling {entry.extra['sampling']}, context "
                         f"{entry.extra.get('recommended_context')}")
        lines += list(info.assumptions)
        return "\n".join(lines)

    @Slot()
    def show_details(self) -> None:
        entry = self.selected_entry()
        if entry is not None:
            QMessageBox.information(self, entry.name, self.details_text(entry))

    def dragEnterEvent(self, e: QDragEnterEvent) -> None:
        if e.mimeData().hasUrls() and any(u.toLocalFile().lower().endswith(".gguf") for u in e.mimeData().urls()):
            e.acceptProposedAction()

    def dropEvent(self, e: QDropEvent) -> None:
        paths = [u.toLocalFile() for u in e.mimeData().urls() if u.toLocalFile().lower().endswith(".gguf")]
        for p in paths:
            self.import_path(p)
        if paths:
            e.acceptProposedAction()
