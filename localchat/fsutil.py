"""Files several processes share (two windows, the window and a CLI command, two CLI commands at once).

:func:`atomic_write_text` makes a reader see the old or the new content, never a half-written file, and never lose
both on a crash or a full disk. :class:`FileLock` is a cross-process exclusive lock (``fcntl.flock`` on POSIX,
``msvcrt.locking`` on Windows); a read-modify-write of a shared file holds it. The lock records its holder's pid, so a
process that finds it taken can say who has it.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType

_PID_OFFSET = 16  # the pid is written past the locked byte (Windows refuses reads of a locked range)


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same folder, fsynced, then ``os.replace``.

    Raises OSError (disk full, read-only, …); the old file is then untouched and no temporary file is left.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}-", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    if sys.platform != "win32":  # the rename itself durable too
        with contextlib.suppress(OSError):
            dfd = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)


def aside_name(path: Path, reason: str = "corrupt", suffix: str = "") -> Path:
    """Where damaged ``path`` is kept: ``<name>.<reason>-<YYYYmmdd-HHMMSS><suffix>`` beside it, never over an earlier
    one (``-2``, ``-3`` … within the same second). The caller moves or writes it; nothing is touched here."""
    path = Path(path)
    base = f"{path.name}.{reason}-{time.strftime('%Y%m%d-%H%M%S')}"
    candidate, n = path.with_name(base + suffix), 2
    while candidate.exists() or Path(f"{candidate}-wal").exists():
        candidate, n = path.with_name(f"{base}-{n}{suffix}"), n + 1
    return candidate


class LockBusy(Exception):
    """The lock is held by another process (or another open of it in this one). ``pid`` is the holder, if known."""

    def __init__(self, path: Path, pid: int | None) -> None:
        super().__init__(f"{path} is locked" + (f" by process {pid}" if pid else ""))
        self.path = path
        self.pid = pid


class FileLock:
    """An exclusive lock on ``path``, between processes and between threads (each acquire opens the file anew).

    ``transient=True`` removes the lock file on release (POSIX), for locks that must leave no trace in a folder the
    user sees; acquiring then checks that the file it locked is still the one at ``path``, so a waiter that locked a
    file just unlinked tries again instead of sharing the lock with a newcomer.

    Use as a context manager (waits up to ``timeout`` seconds, then raises :class:`LockBusy`; ``timeout=0`` does not
    wait). Raises OSError when the lock file cannot be created (read-only folder).
    """

    def __init__(self, path: Path, *, timeout: float = 30.0, transient: bool = False) -> None:
        self.path = Path(path)
        self.timeout = timeout
        self.transient = transient and sys.platform != "win32"  # Windows cannot unlink an open file
        self._fd: int | None = None

    def acquire(self) -> None:
        if self._fd is not None:
            raise RuntimeError(f"{self.path} is already locked by this object")
        deadline = time.monotonic() + self.timeout
        wait = 0.005
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                got = _try_lock(fd)
                if got and self.transient and not _same_file(fd, self.path):
                    got = False  # locked a file its holder unlinked on release: take the new one
                    deadline = max(deadline, time.monotonic() + 0.1)
                elif got:
                    _write_pid(fd)
                    self._fd = fd
                    return
                pid = None if got else _read_pid(self.path)
            except BaseException:
                os.close(fd)
                raise
            os.close(fd)
            if time.monotonic() >= deadline:
                raise LockBusy(self.path, pid)
            time.sleep(wait)
            wait = min(wait * 2, 0.1)

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            if self.transient:
                with contextlib.suppress(OSError):
                    if _same_file(fd, self.path):
                        os.unlink(self.path)  # while still locked: a waiter sees it is gone and starts over
            _unlock(fd)
        finally:
            os.close(fd)

    def __enter__(self) -> FileLock:
        self.acquire()
        return self

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.release()


def _same_file(fd: int, path: Path) -> bool:
    try:
        st = os.stat(path)
    except OSError:
        return False
    mine = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (mine.st_dev, mine.st_ino)


def _write_pid(fd: int) -> None:
    with contextlib.suppress(OSError):
        os.lseek(fd, _PID_OFFSET, os.SEEK_SET)
        os.write(fd, f"{os.getpid():<12}".encode())


def _read_pid(path: Path) -> int | None:
    try:
        with open(path, "rb") as fh:
            fh.seek(_PID_OFFSET)
            return int(fh.read(12).decode().strip() or 0) or None
    except (OSError, ValueError):
        return None


if sys.platform == "win32":
    import msvcrt

    def _try_lock(fd: int) -> bool:
        os.lseek(fd, 0, os.SEEK_SET)
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True

    def _unlock(fd: int) -> None:
        os.lseek(fd, 0, os.SEEK_SET)
        with contextlib.suppress(OSError):
            msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)

else:
    import errno
    import fcntl

    def _try_lock(fd: int) -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                return False
            raise
        return True

    def _unlock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)
