"""Process log: every process localchat started during the session, alive or ended, and whether it was isolated.

An audit hook records every launch made by Python code — ``subprocess.Popen``, ``os.posix_spawn``, ``os.system``,
``os.spawn*``, ``os.fork``/``forkpty``, ``pty.spawn`` — with its command and time, before the child exists. A poll
(the socket monitor's, about once a second) then finds the pid (from the ``Popen`` object while it lives, otherwise
by matching the command against the app's new children) and every descendant the app has, including those started
by native code or by a child; while a process lives it reads ``/proc/<pid>/ns/net`` against the app's own to say
whether it is isolated; when the process is gone it marks the end.

Honest limits: a process that lives less than a poll interval and whose ``Popen`` object is gone before the next
poll is listed with its command and start but no pid, and its namespace was never read; a process started by native
code and gone within a poll interval is not seen at all; "ended" is the first poll that found the process gone.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import threading
import time
import weakref
from collections import deque
from dataclasses import dataclass
from typing import Any

import psutil

from localchat.core.privacy.sandbox import netns_id

LAUNCH_EVENTS = frozenset(("subprocess.Popen", "os.posix_spawn", "os.system", "os.spawn", "os.fork", "os.forkpty",
                           "pty.spawn", "os.startfile"))
_SUBPROCESS_FILE = subprocess.__file__


def _children_files() -> bool:
    """Whether this kernel lists each thread's children in ``/proc/<pid>/task/<tid>/children`` (Linux 3.5+ with
    CONFIG_PROC_CHILDREN, which distributions enable)."""
    return os.path.exists(f"/proc/self/task/{threading.get_native_id()}/children")


_HAS_CHILDREN_FILES = sys.platform.startswith("linux") and _children_files()


def descendants(pid: int) -> list[psutil.Process]:
    """Every living descendant of ``pid``.

    On Linux read from ``/proc/<pid>/task/*/children``, walking down from ``pid``: the cost follows the app's own
    process tree. psutil's ``children(recursive=True)`` reads the stat file of every process on the machine (twice
    a second for the monitor and this log, hundreds of files on a desktop), which was most of the monitor's cost.
    Both see a snapshot that a child exiting or starting at that moment may miss; the next poll sees it.
    """
    if not _HAS_CHILDREN_FILES:
        return psutil.Process(pid).children(recursive=True)
    found: list[psutil.Process] = []
    todo, seen = [pid], {pid}
    while todo:
        parent = todo.pop()
        try:
            tids = os.listdir(f"/proc/{parent}/task")
        except OSError:  # gone since it was listed
            continue
        for tid in tids:
            try:
                with open(f"/proc/{parent}/task/{tid}/children", "rb") as f:
                    kids = [int(k) for k in f.read().split()]
            except (OSError, ValueError):  # the thread ended meanwhile
                continue
            for kid in kids:
                if kid in seen:
                    continue
                seen.add(kid)
                try:
                    found.append(psutil.Process(kid))
                except psutil.Error:  # ended since its parent listed it
                    continue
                todo.append(kid)
    return found


def process_start_time(pid: int | None = None) -> float:
    """When the process (this one by default) started, as the kernel recorded it."""
    return psutil.Process(pid or os.getpid()).create_time()


@dataclass
class ProcessRecord:
    """One process localchat started (directly, or through a child)."""

    command: str
    started: float
    how: str  # the launch event, or "seen running" for one started by native code or by a child
    pid: int | None = None
    parent: int | None = None
    ended: float | None = None
    netns: int | None = None  # the last one read while it lived
    isolated: bool | None = None  # None: its namespace could not be read while it lived
    argv: list[str] | None = None
    create_time: float | None = None  # tells a reused pid from this process
    _popen: weakref.ReferenceType[Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"pid": self.pid, "command": self.command, "netns": self.netns, "isolated": self.isolated,
                "started": self.started, "ended": self.ended, "how": self.how, "parent": self.parent}


def _command(argv: Any) -> str:
    if isinstance(argv, (str, bytes)):
        text = argv.decode(errors="replace") if isinstance(argv, bytes) else argv
    else:
        text = shlex.join(os.fsdecode(a) if isinstance(a, (bytes, os.PathLike)) else str(a) for a in argv)
    return text if len(text) <= 500 else text[:497] + "…"


def _argv(args: Any) -> list[str] | None:
    if isinstance(args, (list, tuple)):
        return [os.fsdecode(a) if isinstance(a, (bytes, os.PathLike)) else str(a) for a in args]
    return None


def _launch_hook(event: str, args: tuple[Any, ...]) -> None:
    # runs for every audit event in the process: the cheapest test first
    if event in LAUNCH_EVENTS:
        log = ProcessLog._active
        if log is not None and os.getpid() == log.pid:  # not in a forked child
            try:
                log._on_launch(event, args, sys._getframe(1))
            except Exception:  # recording must never stop the launch; the poll still finds the child
                pass


class ProcessLog:
    """The session's process record. Like the audit guard, one permanent hook forwards to the active log."""

    _active: ProcessLog | None = None
    _hooked = False
    _hook_lock = threading.Lock()

    def __init__(self, max_records: int = 5000) -> None:
        self.pid = os.getpid()
        self.records: deque[ProcessRecord] = deque(maxlen=max_records)
        self.total = 0  # every process recorded, also those the bounded list no longer holds
        self._pending: deque[ProcessRecord] = deque()  # filled by the hook: no lock, no I/O there
        self._lock = threading.Lock()
        try:
            self._own_cmdline: list[str] | None = psutil.Process(self.pid).cmdline()
        except psutil.Error:
            self._own_cmdline = None

    def install(self) -> ProcessLog:
        with ProcessLog._hook_lock:
            ProcessLog._active = self
            if not ProcessLog._hooked:
                sys.addaudithook(_launch_hook)
                ProcessLog._hooked = True
        return self

    def uninstall(self) -> None:
        with ProcessLog._hook_lock:
            if ProcessLog._active is self:
                ProcessLog._active = None

    @classmethod
    def active(cls) -> ProcessLog | None:
        return cls._active

    def _on_launch(self, event: str, args: tuple[Any, ...], caller: Any) -> None:
        popen = None
        if event == "subprocess.Popen":
            argv = args[1]
            candidate = caller.f_locals.get("self") if caller is not None else None
            if isinstance(candidate, subprocess.Popen):
                popen = weakref.ref(candidate)
        elif event == "os.posix_spawn":
            if caller is not None and caller.f_code.co_filename == _SUBPROCESS_FILE:
                return  # subprocess.Popen spawning: already recorded from its own event
            argv = args[1]
        elif event == "os.spawn":
            argv = args[2]
        elif event == "os.system":
            argv = ["sh", "-c", os.fsdecode(args[0])]  # what system(3) runs, as /proc shows it
        elif event in ("pty.spawn", "os.startfile"):
            argv = args[0]
        else:  # os.fork / os.forkpty: a copy of this program
            argv = list(sys.orig_argv)
        self._pending.append(ProcessRecord(_command(argv), time.time(), event, argv=_argv(argv), _popen=popen))

    # -- poll ----------------------------------------------------------------------------------------------

    def poll(self) -> None:
        """Give launches their pid, add descendants not seen before, read namespaces, mark processes gone."""
        now = time.time()
        with self._lock:
            try:
                children = descendants(self.pid)
            except psutil.Error:
                children = []
            # after listing the children: a launch is recorded before its child exists, so every child listed
            # has its launch (if any) among the records by now
            while self._pending:
                self._add(self._pending.popleft())
            known = {(r.pid, r.create_time) for r in self.records if r.pid is not None}
            for rec in self.records:  # pids from the Popen objects still alive
                if rec.pid is None and rec._popen is not None and (p := rec._popen()) is not None \
                        and getattr(p, "pid", None):
                    rec.pid, rec.parent = p.pid, self.pid
            for child in children:
                try:
                    key = (child.pid, child.create_time())
                except psutil.Error:
                    continue
                if key in known:
                    continue
                found = self._claim(child)
                if found is None:
                    if self._before_exec(child):
                        continue  # a launch of ours between fork and exec: claimed by pid or command next poll
                    found = self._seen(child)
                    if found is None:
                        continue
                    self._add(found)
                found.create_time = key[1]  # from now on a different process under this pid is not this one
                known.add(key)
            own = netns_id()
            for rec in self.records:
                if rec.ended is None:
                    self._check(rec, own, now)

    def _add(self, rec: ProcessRecord) -> None:
        self.records.append(rec)
        self.total += 1

    def _claim(self, child: psutil.Process) -> ProcessRecord | None:
        """The recorded launch this new child belongs to: same pid, or (its Popen gone) the same command."""
        try:
            ppid, cmdline = child.ppid(), child.cmdline()
        except psutil.Error:
            return None
        for rec in self.records:
            if rec.ended is None and rec.pid == child.pid and rec.create_time is None:
                return rec
        if ppid != self.pid:
            return None
        for rec in self.records:
            if rec.pid is None and rec.ended is None and rec.argv is not None and rec.argv == cmdline:
                rec.pid, rec.parent = child.pid, ppid
                return rec
        for rec in self.records:  # a fork may have exec'd something else since: the oldest unclaimed fork
            if rec.pid is None and rec.ended is None and rec.how in ("os.fork", "os.forkpty"):
                rec.pid, rec.parent = child.pid, ppid
                if cmdline and cmdline != rec.argv:
                    rec.command, rec.argv = f"{_command(cmdline)} (exec'd after the fork)", cmdline
                return rec
        return None

    def _before_exec(self, child: psutil.Process) -> bool:
        """Whether ``child`` is still this program's image (forked, not yet exec'd) while a launch of ours waits
        for its pid (with vfork, ``Popen`` learns the pid only once the child has exec'd). Recorded then, it would
        be listed twice (once as "seen running" with the app's own command); the wait lasts one poll at most, as
        a launch with neither pid nor living ``Popen`` is marked ended in the same poll."""
        if self._own_cmdline is None:
            return False
        try:
            if child.ppid() != self.pid or child.cmdline() != self._own_cmdline:
                return False
        except psutil.Error:
            return False
        return any(r.pid is None and r.ended is None and r.how not in ("os.fork", "os.forkpty") for r in self.records)

    def _seen(self, child: psutil.Process) -> ProcessRecord | None:
        """A descendant no launch of ours accounts for: started by a child, or by native code."""
        try:
            with child.oneshot():
                cmdline, started, ppid = child.cmdline(), child.create_time(), child.ppid()
                name = child.name()
        except psutil.Error:
            return None
        return ProcessRecord(_command(cmdline) if cmdline else f"[{name}]", started, "seen running", pid=child.pid,
                             parent=ppid, argv=cmdline)

    def _check(self, rec: ProcessRecord, own: int | None, now: float) -> None:
        if rec.pid is None:
            p = rec._popen() if rec._popen is not None else None
            if p is None or p.returncode is not None:
                rec.ended = now  # no pid and no live Popen: it ended (and was reaped) before the poll saw it
            return
        try:
            proc = psutil.Process(rec.pid)
            alive = (rec.create_time is None or abs(proc.create_time() - rec.create_time) < 0.01) and \
                proc.status() != psutil.STATUS_ZOMBIE
        except psutil.Error:
            alive = False
        ns = netns_id(rec.pid) if alive else None
        if ns is None:
            rec.ended = now
            return
        if rec.how in ("os.fork", "os.forkpty"):  # a fork seen before it exec'd: say what it became
            try:
                cmdline = proc.cmdline()
            except psutil.Error:
                cmdline = []
            if cmdline and cmdline != rec.argv:
                rec.command, rec.argv = f"{_command(cmdline)} (exec'd after the fork)", cmdline
        rec.netns = ns
        rec.isolated = own is not None and ns != own

    def snapshot(self) -> list[dict[str, Any]]:
        with self._lock:
            return [r.to_dict() for r in self.records]

    def counts(self) -> dict[str, int]:
        with self._lock:
            return {"total": self.total, "kept": len(self.records),
                    "running": sum(r.ended is None for r in self.records)}
