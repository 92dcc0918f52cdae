"""The process log records every child localchat starts, with its network namespace while it lives and when it ended.

Real processes only; each child waits on a pipe the test closes, so nothing depends on timing.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator

import psutil
import pytest

from localchat.core.privacy.processes import ProcessLog
from localchat.core.privacy.report import EvidenceReport
from localchat.core.privacy.sandbox import netns_id

WAIT_FOR_STDIN = "import sys; sys.stdin.read()"


@pytest.fixture
def log() -> Iterator[ProcessLog]:
    pl = ProcessLog().install()
    yield pl
    pl.uninstall()


def _mine(log: ProcessLog, pid: int) -> list[dict]:  # type: ignore[type-arg]
    return [r for r in log.snapshot() if r["pid"] == pid]


def test_records_a_child_with_its_namespace_and_its_end(log: ProcessLog) -> None:
    proc = subprocess.Popen([sys.executable, "-c", WAIT_FOR_STDIN], stdin=subprocess.PIPE)
    assert proc.stdin is not None
    log.poll()
    (rec,) = _mine(log, proc.pid)
    assert rec["how"] == "subprocess.Popen" and rec["command"] == f"{sys.executable} -c '{WAIT_FOR_STDIN}'"
    assert rec["netns"] == netns_id() and rec["isolated"] is False and rec["ended"] is None
    assert rec["parent"] == os.getpid()
    proc.stdin.close()
    proc.wait()
    log.poll()
    (rec,) = _mine(log, proc.pid)
    assert rec["ended"] is not None and rec["ended"] >= rec["started"]
    assert rec["netns"] == netns_id()  # what was read while it lived stays


def _unshare_works() -> bool:
    try:
        return subprocess.run(["unshare", "--user", "--map-root-user", "--net", "true"], capture_output=True,
                              timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.mark.skipif(not _unshare_works(), reason="this machine cannot create a user + network namespace")
def test_a_child_in_its_own_namespace_is_isolated(log: ProcessLog) -> None:
    # unshare execs python in place: the pid the Popen got is the isolated process
    proc = subprocess.Popen(["unshare", "--user", "--map-root-user", "--net", sys.executable, "-c",
                             "import sys; print('in', flush=True); sys.stdin.read()"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE)
    assert proc.stdin is not None and proc.stdout is not None
    assert proc.stdout.readline() == b"in\n"  # past the unshare
    log.poll()
    (rec,) = _mine(log, proc.pid)
    assert rec["isolated"] is True and rec["netns"] not in (None, netns_id())
    proc.stdin.close()
    proc.wait()
    proc.stdout.close()
    log.poll()
    assert _mine(log, proc.pid)[0]["ended"] is not None


def test_grandchildren_and_other_ways_of_starting_are_recorded(log: ProcessLog) -> None:
    # a child that starts its own child: the grandchild is found by the poll and attributed to its parent
    parent = subprocess.Popen([sys.executable, "-c", "import subprocess, sys\n"
                               f"g = subprocess.Popen([sys.executable, '-c', {WAIT_FOR_STDIN!r}], "
                               "stdin=subprocess.PIPE)\nprint(g.pid, flush=True)\nsys.stdin.read()\n"
                               "g.stdin.close(); g.wait()"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert parent.stdin is not None and parent.stdout is not None
    grandchild = int(parent.stdout.readline())
    # os.posix_spawn directly: its pid comes from matching the command against the app's new children
    r, w = os.pipe()
    spawned = os.posix_spawn(sys.executable, [sys.executable, "-c", WAIT_FOR_STDIN], os.environ,
                             file_actions=[(os.POSIX_SPAWN_DUP2, r, 0), (os.POSIX_SPAWN_CLOSE, w)])
    os.close(r)
    # subprocess using posix_spawn inside (no close_fds, absolute path): recorded once, not twice
    subprocess.run(["/bin/true"], close_fds=False, check=True)
    log.poll()
    (g,) = _mine(log, grandchild)
    assert g["how"] == "seen running" and g["parent"] == parent.pid and g["isolated"] is False
    (s,) = _mine(log, spawned)
    assert s["how"] == "os.posix_spawn" and s["netns"] == netns_id()
    short = [r for r in log.snapshot() if r["command"] == "/bin/true"]
    assert len(short) == 1 and short[0]["how"] == "subprocess.Popen" and short[0]["ended"] is not None
    os.close(w)
    os.waitpid(spawned, 0)
    parent.stdin.close()
    parent.wait()
    parent.stdout.close()
    log.poll()
    assert all(r["ended"] is not None for r in log.snapshot())
    assert log.counts() == {"total": 4, "kept": 4, "running": 0}


def test_report_lists_the_processes(log: ProcessLog) -> None:
    proc = subprocess.Popen([sys.executable, "-c", WAIT_FOR_STDIN], stdin=subprocess.PIPE)
    assert proc.stdin is not None
    try:
        report = EvidenceReport(None, None, None)  # netcheck's way: the session's log is found by itself
        data = report.to_dict()
        (rec,) = [r for r in data["processes"] if r["pid"] == proc.pid]
        assert set(rec) >= {"pid", "command", "netns", "isolated", "started", "ended"}
        text = report.to_text(data)
        assert "Processes localchat started this session: 1" in text
        assert f"pid {proc.pid}" in text and "app's namespace" in text and "running" in text
    finally:
        proc.stdin.close()
        proc.wait()


def test_a_fork_that_execs_is_recorded_with_what_it_became(log: ProcessLog) -> None:
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: becomes a python that waits on the pipe
        try:
            os.dup2(r, 0)
            os.close(w)
            os.execv(sys.executable, [sys.executable, "-c", WAIT_FOR_STDIN])
        finally:
            os._exit(127)
    os.close(r)
    try:
        # the child may not have exec'd yet at the first look: poll until the log shows what it became
        while True:
            log.poll()
            (rec,) = _mine(log, pid)
            if rec["command"] == f"{sys.executable} -c '{WAIT_FOR_STDIN}' (exec'd after the fork)":
                break
        assert rec["how"] == "os.fork" and rec["isolated"] is False and rec["parent"] == os.getpid()
    finally:
        os.close(w)
        os.waitpid(pid, 0)
    log.poll()
    assert _mine(log, pid)[0]["ended"] is not None



def test_descendants_from_the_kernels_children_files_equal_psutils_scan(monkeypatch: pytest.MonkeyPatch) -> None:
    """The cheap walk (our own tree only) finds what psutil's scan of every process finds: children of any thread,
    grandchildren; and without the children files it falls back to psutil."""
    import threading

    from localchat.core.privacy import processes

    # a child started from another thread is listed under that thread's task, a grandchild under the child
    started: list[subprocess.Popen[bytes]] = []
    t = threading.Thread(target=lambda: started.append(subprocess.Popen(
        [sys.executable, "-c", "import subprocess, sys; p = subprocess.Popen([sys.executable, '-c', "
                                f"{WAIT_FOR_STDIN!r}], stdin=subprocess.PIPE); print(p.pid, flush=True); "
                                "sys.stdin.read(); p.stdin.close(); p.wait()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE)))
    t.start()
    t.join()
    (child,) = started
    assert child.stdout is not None and child.stdin is not None
    grandchild = int(child.stdout.readline())
    try:
        walked = {p.pid for p in processes.descendants(os.getpid())}
        assert {child.pid, grandchild} <= walked
        assert walked == {p.pid for p in psutil.Process().children(recursive=True)}
        if sys.platform.startswith("linux"):
            assert processes._HAS_CHILDREN_FILES  # the kernel of every supported distribution has them
        monkeypatch.setattr(processes, "_HAS_CHILDREN_FILES", False)
        assert {p.pid for p in processes.descendants(os.getpid())} == walked
    finally:
        child.stdin.close()
        child.wait(30)
        child.stdout.close()


def test_a_launch_seen_between_fork_and_exec_is_listed_once() -> None:
    """Between fork and exec a child still runs this program's image, and with vfork its ``Popen`` has no pid yet:
    a poll at that moment must wait for the exec rather than record a second, "seen running" process with the app's
    own command (seen in the window's test: the poll thread ran inside that window every time)."""
    from localchat.core.privacy.processes import ProcessRecord

    log = ProcessLog()  # not installed: this test places the launch record itself
    child = subprocess.Popen([sys.executable, "-c", WAIT_FOR_STDIN], stdin=subprocess.PIPE)
    assert child.stdin is not None
    try:
        log._own_cmdline = psutil.Process(child.pid).cmdline()  # the child as the fork of this program it was
        launch = ProcessRecord("python -c …", time.time(), "subprocess.Popen", argv=["not", "yet", "exec'd"])
        log.records.append(launch)
        log.total = 1
        log.poll()  # (other tests' children of this process may be recorded: only this child is looked at)
        assert not [r for r in log.records if r.pid == child.pid] and launch.pid is None  # waited
        launch.ended = time.time()  # no launch waits for a pid any more: the same child is a descendant of its own
        log.poll()
        assert [r.how for r in log.records if r.pid == child.pid] == ["seen running"]
    finally:
        child.stdin.close()
        child.wait(30)
