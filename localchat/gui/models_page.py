"""The Models page: installed models, the catalogue of distilled checkpoints with a fit badge for this machine,
downloads with progress / pause / cancel, import by file dialog or drag-and-drop, delete with confirmation.

Downloads and the fit computation (hardware detection runs a subprocess) happen off the GUI thread.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, Qt, QThread, Signal, Slot
from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import (
    QAbstractItemView,
    QFileDialog,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from localchat.context import AppContext
from localchat.core.models.catalogue import Catalogue, CatalogueEntry, CatalogueQuant
from localchat.core.models.download import DownloadJob, DownloadProgress, DownloadStopped, pull
from localchat.core.models.hub import RemoteFile, RemoteModel
from localchat.core.models.library import import_file, remove_model
from localchat.errors import LocalChatError

log = logging.getLogger(__name__)
BADGES = {"full_gpu": ("Runs on GPU", "#1a7f37"), "partial": ("GPU + CPU", "#9a6700"),
          "cpu": ("CPU only", "#0969da"), "too_large": ("Too large", "#cf222e")}


class DownloadRunner(QObject):
    """Runs one DownloadJob in its own thread.

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

    def __init__(self, ctx: AppContext, model: RemoteModel, endpoint: str | None = None) -> None:
        super().__init__()
        self.ctx = ctx
        self.model = model
        self.job = DownloadJob(model, ctx.models_dir, endpoint=endpoint, progress=self.progress.emit)

    @Slot()
    def run(self) -> None:
        try:
            entry = pull(self.model, self.ctx.library, self.ctx.models_dir, job=self.job)
            self.finished.emit(entry)
        except DownloadStopped as exc:
            self.stopped.emit(exc.paused)
        except LocalChatError as exc:
            self.failed.emit(str(exc))


class DownloadRow(QWidget):
    """One download's progress line. Lives in the GUI thread: the runner's signals reach its slots queued.

    Signals:
        done(str, str, bool): key, message, whether it failed.
    """

    done = Signal(str, str, bool)

    def __init__(self, key: str, title: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.key = key
        lay = QHBoxLayout(self)
        lay.setContentsMargins(0, 2, 0, 2)
        self.label = QLabel(title)
        self.bar = QProgressBar(maximum=1000)
        self.status = QLabel("starting…")
        self.pause = QPushButton("Pause")
        self.cancel = QPushButton("Cancel")
        for w in (self.label, self.bar, self.status, self.pause, self.cancel):
            lay.addWidget(w)
        lay.setStretch(1, 1)

    @Slot(object)
    def on_progress(self, p: DownloadProgress) -> None:
        self.bar.setValue(int(1000 * p.done_bytes / max(1, p.total_bytes)))
        eta = f", {p.eta_s:.0f} s left" if p.eta_s is not None else ""
        self.status.setText(f"{p.done_bytes / 1e6:.0f}/{p.total_bytes / 1e6:.0f} MB, {p.speed_bps / 1e6:.1f} MB/s{eta}")

    @Slot(object)
    def on_finished(self, entry: Any) -> None:
        self.done.emit(self.key, f"installed as {entry.name}", False)

    @Slot(str)
    def on_failed(self, message: str) -> None:
        self.done.emit(self.key, message, True)

    @Slot(bool)
    def on_stopped(self, paused: bool) -> None:
        self.done.emit(self.key, "paused — download again to resume" if paused else "cancelled", False)


class ModelsPage(QWidget):
    """Signals:
        libraryChanged: the installed models changed (the main window refreshes its model picker).
        fitsReady(dict): fit verdicts computed off the GUI thread.
    """

    libraryChanged = Signal()
    fitsReady = Signal(dict)

    def __init__(self, ctx: AppContext, parent: QWidget | None = None, endpoint: str | None = None) -> None:
        super().__init__(parent)
        self.ctx = ctx
        self.endpoint = endpoint
        self.catalogue = Catalogue(ctx.paths.cache_dir)
        self.downloads: dict[str, tuple[QThread, DownloadRunner, DownloadRow]] = {}
        self.fits: dict[str, str] = {}
        self._fits_started = False
        self.setAcceptDrops(True)
        lay = QVBoxLayout(self)

        inst = QGroupBox("Installed")
        il = QVBoxLayout(inst)
        self.installed = QTableWidget(0, 5)
        self.installed.setHorizontalHeaderLabels(["name", "size", "quant", "source", "file"])
        self._style_table(self.installed)
        il.addWidget(self.installed)
        row = QHBoxLayout()
        self.import_button = QPushButton("Import .gguf…")
        self.import_button.clicked.connect(self.import_dialog)
        self.delete_button = QPushButton("Delete…")
        self.delete_button.clicked.connect(self.delete_selected)
        hint = QLabel("or drop .gguf files here")
        hint.setStyleSheet("color: gray")
        for w in (self.import_button, self.delete_button, hint):
            row.addWidget(w)
        row.addStretch(1)
        il.addLayout(row)
        lay.addWidget(inst, 2)

        cat = QGroupBox("Catalogue of distilled models")
        cl = QVBoxLayout(cat)
        self.table = QTableWidget(0, 6)
        self.table.setHorizontalHeaderLabels(["model", "quant", "size", "on this machine", "license", ""])
        self._style_table(self.table)
        self.table.horizontalHeader().setStretchLastSection(False)
        self.table.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        cl.addWidget(self.table)
        crow = QHBoxLayout()
        self.refresh_button = QPushButton("Refresh from Hugging Face")
        self.refresh_button.setToolTip("Fetches exact sizes and sha256 from the Hub: a network request you start")
        self.refresh_button.clicked.connect(self.refresh_catalogue)
        self.note = QLabel("Works offline. Downloads are the only thing that ever uses the network.")
        self.note.setStyleSheet("color: gray")
        crow.addWidget(self.refresh_button)
        crow.addWidget(self.note, 1)
        cl.addLayout(crow)
        lay.addWidget(cat, 3)

        self.dl_box = QGroupBox("Downloads")
        self.dl_layout = QVBoxLayout(self.dl_box)
        self.dl_box.setVisible(False)
        lay.addWidget(self.dl_box)

        self.fitsReady.connect(self._on_fits)
        self.refresh()

    @staticmethod
    def _style_table(t: QTableWidget) -> None:
        t.verticalHeader().setVisible(False)
        t.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        t.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        t.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        t.horizontalHeader().setStretchLastSection(True)

    # -- listing -----------------------------------------------------------------------------------------

    def showEvent(self, e: Any) -> None:
        if not self._fits_started:
            self._fits_started = True
            threading.Thread(target=self._compute_fits, name="fit-badges", daemon=True).start()
        super().showEvent(e)

    def _compute_fits(self) -> None:
        from localchat.core.hardware.sizing import fit_verdict, this_machine

        out: dict[str, str] = {}
        try:
            machine = this_machine()
            for e in self.catalogue.entries():
                for q in e.quants:
                    out[f"{e.id}:{q.quant}"] = fit_verdict(
                        q.size, e.shape.get("n_layers", 32), min(e.context, 8192), machine,
                        n_embd=e.shape.get("n_embd", 4096), n_kv_heads=e.shape.get("n_kv_heads", 8),
                        head_dim=e.shape.get("head_dim", 128), n_vocab=e.shape.get("n_vocab", 32000))
        except Exception:  # badges are a nicety: never take the page down
            log.exception("fit badges failed")
        self.fitsReady.emit(out)

    @Slot(dict)
    def _on_fits(self, fits: dict[str, str]) -> None:
        self.fits = fits
        self.refresh()

    def refresh(self) -> None:
        entries = self.ctx.library.entries()
        self.installed.setRowCount(len(entries))
        for i, e in enumerate(entries):
            for j, v in enumerate((e.name, f"{e.size / 1e9:.2f} GB", str(e.extra.get("quant", "")), e.source,
                                   e.path + ("" if e.file.is_file() else "  (missing)"))):
                item = QTableWidgetItem(v)
                item.setData(Qt.ItemDataRole.UserRole, e.name)
                self.installed.setItem(i, j, item)
        rows = [(e, q) for e in self.catalogue.entries() for q in e.quants]
        self.table.setRowCount(len(rows))
        installed_files = {Path(e.path).name for e in entries}
        for i, (ce, q) in enumerate(rows):
            title = QTableWidgetItem(ce.title)
            title.setToolTip(ce.description)
            self.table.setItem(i, 0, title)
            self.table.setItem(i, 1, QTableWidgetItem(q.quant))
            self.table.setItem(i, 2, QTableWidgetItem(f"{q.size / 1e9:.1f} GB"))
            text, color = BADGES.get(self.fits.get(f"{ce.id}:{q.quant}") or "", ("checking…", "gray"))
            badge = QTableWidgetItem(text)
            badge.setData(Qt.ItemDataRole.ForegroundRole, _color(color))
            self.table.setItem(i, 3, badge)
            self.table.setItem(i, 4, QTableWidgetItem(ce.license))
            if q.file in installed_files:
                self.table.removeCellWidget(i, 5)
                self.table.setItem(i, 5, QTableWidgetItem("installed"))
            elif f"{ce.repo}/{q.file}" not in self.downloads:
                b = QPushButton("Download")
                b.clicked.connect(lambda _=False, ce=ce, q=q: self.start_download(ce, q))
                self.table.setCellWidget(i, 5, b)

    # -- downloads ---------------------------------------------------------------------------------------

    def start_download(self, entry: CatalogueEntry, quant: CatalogueQuant) -> DownloadRunner:
        model = RemoteModel(entry.repo, quant.file, quant.quant, [RemoteFile(quant.file, quant.size, quant.sha256)])
        return self.start_remote(model, f"{entry.title} {quant.quant}")

    def start_remote(self, model: RemoteModel, title: str) -> DownloadRunner:
        key = f"{model.repo}/{model.name}"
        thread = QThread(self)
        runner = DownloadRunner(self.ctx, model, self.endpoint)
        runner.moveToThread(thread)
        row = DownloadRow(key, title)
        self.dl_layout.addWidget(row)
        self.dl_box.setVisible(True)
        row.pause.clicked.connect(runner.job.pause)
        row.cancel.clicked.connect(runner.job.cancel)
        # runner (download thread) -> row slots (GUI thread): queued, never a lambda in the emitting thread
        runner.progress.connect(row.on_progress)
        runner.finished.connect(row.on_finished)
        runner.failed.connect(row.on_failed)
        runner.stopped.connect(row.on_stopped)
        row.done.connect(self._on_done)
        thread.started.connect(runner.run)
        self.downloads[key] = (thread, runner, row)
        thread.start()
        self.refresh()
        return runner

    @Slot(str, str, bool)
    def _on_done(self, key: str, message: str, error: bool) -> None:
        thread, _runner, row = self.downloads.pop(key)
        thread.quit()
        thread.wait()
        row.status.setText(message)
        row.status.setStyleSheet("color: #cf222e" if error else "")
        row.pause.setEnabled(False)
        row.cancel.setEnabled(False)
        self.refresh()
        self.libraryChanged.emit()

    def shutdown(self) -> None:
        for thread, runner, _row in list(self.downloads.values()):
            runner.job.pause()  # keep the partial file: it resumes next time
            thread.quit()
            thread.wait(5000)

    # -- import / delete ---------------------------------------------------------------------------------

    @Slot()
    def import_dialog(self) -> None:
        paths, _ = QFileDialog.getOpenFileNames(self, "Import GGUF models", str(Path.home()), "GGUF models (*.gguf)")
        for p in paths:
            self.import_path(p)

    def import_path(self, path: str) -> bool:
        try:
            entry = import_file(self.ctx.library, path, self.ctx.models_dir)
        except (LocalChatError, OSError) as exc:
            QMessageBox.warning(self, "Import failed", f"{Path(path).name}: {exc}")
            return False
        self.note.setText(f"Imported {entry.name}")
        self.refresh()
        self.libraryChanged.emit()
        return True

    def delete_selected(self, confirm: bool = True) -> None:
        rows = {i.row() for i in self.installed.selectedItems()}
        for r in rows:
            item = self.installed.item(r, 0)
            name = item.data(Qt.ItemDataRole.UserRole) if item is not None else None
            entry = self.ctx.library.get(name) if name else None
            if entry is None:
                continue
            what = "remove it from the library (your file stays)" if entry.in_place else "delete its file"
            if confirm and QMessageBox.question(self, "Delete model", f"Delete {name}? This will {what}.") \
                    != QMessageBox.StandardButton.Yes:
                continue
            remove_model(self.ctx.library, entry.name)
        self.refresh()
        self.libraryChanged.emit()

    def dragEnterEvent(self, e: QDragEnterEvent) -> None:
        if e.mimeData().hasUrls() and any(u.toLocalFile().lower().endswith(".gguf") for u in e.mimeData().urls()):
            e.acceptProposedAction()

    def dropEvent(self, e: QDropEvent) -> None:
        for u in e.mimeData().urls():
            if u.toLocalFile().lower().endswith(".gguf"):
                self.import_path(u.toLocalFile())

    @Slot()
    def refresh_catalogue(self) -> None:
        try:
            n = self.catalogue.refresh(endpoint=self.endpoint)
            self.note.setText(f"Catalogue refreshed from Hugging Face: {n} files updated with exact sizes and sha256")
        except LocalChatError as exc:
            self.note.setText(str(exc))
        self.refresh()


def _color(hex_color: str) -> Any:
    from PySide6.QtGui import QBrush, QColor

    return QBrush(QColor(hex_color))
