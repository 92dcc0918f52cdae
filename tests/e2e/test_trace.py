"""Where llama.cpp's native code runs, traced by the kernel: ``strace -f`` follows every process a command starts.

Each process's network namespace is followed through the trace: a process is in a new one once it called
``unshare(…CLONE_NEWNET…) = 0``, or when it was cloned from one that was. Any ``openat`` of libllama/libggml that
succeeds in a process still in the app's namespace fails the test — for ``chat``, ``plan`` and ``hw``. A positive
control checks the trace did see the libraries being opened (inside the sandbox), so an empty trace cannot pass.

A bare machine (fresh HOME, no cached starter) runs ``models list`` without starting any program or opening any
socket.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from strict import skip_or_fail

pytestmark = [pytest.mark.isolation, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]
NATIVE = re.compile(r"/lib(llama|ggml)[^/\"]*\.so")
_LINE = re.compile(r"^(\d+)\s+(.*)$")
_CLONES = ("clone", "clone3", "fork", "vfork")


@dataclass
class Trace:
    """What matters in an ``strace -f`` log: per process, when it left the app's network namespace; who started
    whom, and when; which native libraries each process opened, and when."""

    unshared_at: dict[int, int] = field(default_factory=dict)
    parent: dict[int, tuple[int, int]] = field(default_factory=dict)  # child -> (parent, line of the clone call)
    opens: list[tuple[int, int, str]] = field(default_factory=list)  # (pid, line, path) that succeeded
    execs: list[tuple[int, str]] = field(default_factory=list)
    sockets: list[tuple[int, str]] = field(default_factory=list)

    def isolated(self, pid: int, at: int) -> bool:
        """Was ``pid`` in a new network namespace at trace line ``at``?"""
        if pid in self.unshared_at and self.unshared_at[pid] < at:
            return True
        if pid in self.parent:
            ppid, cloned_at = self.parent[pid]
            return self.isolated(ppid, cloned_at)
        return False

    def native_outside_sandbox(self) -> list[tuple[int, str]]:
        return [(pid, path) for pid, line, path in self.opens if not self.isolated(pid, line)]


def parse(text: str) -> Trace:
    t = Trace()
    pending: dict[tuple[int, str], int] = {}  # an unfinished clone: where it started
    for n, raw in enumerate(text.splitlines()):
        m = _LINE.match(raw)
        if not m:
            continue
        pid, rest = int(m.group(1)), m.group(2)
        call = re.match(r"(\w+)\(", rest)
        resumed = re.match(r"<\.\.\. (\w+) resumed>", rest)
        name = call.group(1) if call else resumed.group(1) if resumed else ""
        result = re.search(r"\)\s+=\s+(-?\d+)", rest)
        if name in _CLONES:
            if call and "<unfinished" in rest:
                pending[(pid, name)] = n
            elif result and int(result.group(1)) > 0:
                start = pending.pop((pid, name), n) if resumed else n
                t.parent[int(result.group(1))] = (pid, start)
        elif name == "unshare" and "CLONE_NEWNET" in rest and result and result.group(1) == "0":
            t.unshared_at.setdefault(pid, n)
        elif name in ("openat", "open") and call and result and int(result.group(1)) >= 0:
            lib = NATIVE.search(rest)
            if lib:
                t.opens.append((pid, n, lib.group(0)))
        elif name == "execve" and call:
            t.execs.append((pid, rest[:200]))
        elif name == "socket" and call:
            t.sockets.append((pid, rest[:200]))
    return t


def traced(args: list[str], home: Path, tmp_path: Path, extra_env: dict[str, str] | None = None,
           syscalls: str = "openat,open,unshare,clone,clone3,fork,vfork,execve",
           ) -> tuple[subprocess.CompletedProcess[str], Trace]:
    if shutil.which("strace") is None:
        skip_or_fail("strace is not installed (tests/system-deps.sh installs it as root)")
    log = tmp_path / "strace.log"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "LOCALCHAT_HOME": str(home), **(extra_env or {})}
    cmd = ["strace", "-f", "-qq", "--seccomp-bpf", "-o", str(log), "-e", f"trace={syscalls}",
           sys.executable, "-m", "localchat", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    if "ptrace" in proc.stderr and "Operation not permitted" in proc.stderr:
        skip_or_fail(f"strace cannot trace here: {proc.stderr.strip()[:200]}")
    return proc, parse(log.read_text(errors="replace"))


def _require_isolation_possible(trace: Trace) -> None:
    if not trace.unshared_at:
        skip_or_fail("no process could enter a new network namespace on this machine: nothing to prove")


@pytest.mark.parametrize("command", ["chat", "plan", "hw"])
def test_llama_cpp_is_only_opened_inside_a_new_network_namespace(command: str, tmp_path: Path,
                                                                   starter_model: Path) -> None:
    args = {"chat": ["chat", "--model", str(starter_model), "--max-tokens", "4", "--seed", "1", "Say hi."],
            "plan": ["plan", str(starter_model), "--json"],
            "hw": ["hw", "--json"]}[command]
    proc, trace = traced(args, tmp_path / "home", tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    _require_isolation_possible(trace)
    assert trace.opens, "the trace saw no libllama/libggml open at all: it proves nothing"
    assert trace.native_outside_sandbox() == []
    if command == "hw":  # the probe's evidence is the worker's own
        iso = json.loads(proc.stdout)["probe_isolation"]
        assert iso["isolated"] is True and iso["netns"] != iso["parent_netns"]


def test_require_policy_never_maps_llama_cpp_outside_a_namespace(tmp_path: Path, starter_model: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "config").mkdir()
    proc, trace = traced(["plan", str(starter_model), "--json"], home, tmp_path)
    assert proc.returncode == 0
    _require_isolation_possible(trace)
    settings = json.loads((home / "config" / "settings.json").read_text()) \
        if (home / "config" / "settings.json").exists() else {}
    settings["require_isolation"] = True
    (home / "config" / "settings.json").write_text(json.dumps(settings))
    proc, trace = traced(["chat", "--model", str(starter_model), "--max-tokens", "2", "hi"], home, tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert trace.opens and trace.native_outside_sandbox() == []


def test_parser_catches_a_library_opened_in_the_host_namespace() -> None:
    # the negative control of the analysis itself: a child forked before the unshare stays in the host namespace
    log = "\n".join([
        '100 clone3({flags=CLONE_VM|CLONE_VFORK}, 88 <unfinished ...>',
        '200 execve("/usr/bin/python3", ["python3"], 0x0) = 0',
        '100 <... clone3 resumed>) = 200',
        '200 unshare(CLONE_NEWUSER|CLONE_NEWNET) = 0',
        '200 openat(AT_FDCWD, "/x/llama_cpp/lib/libllama.so", O_RDONLY|O_CLOEXEC) = 3',
        '100 clone(child_stack=NULL, flags=SIGCHLD) = 300',
        '300 openat(AT_FDCWD, "/x/llama_cpp/lib/libggml-base.so", O_RDONLY|O_CLOEXEC) = 3',
        '200 clone3({flags=CLONE_THREAD}, 88) = 201',
        '201 openat(AT_FDCWD, "/x/llama_cpp/lib/libggml-cpu.so", O_RDONLY|O_CLOEXEC) = 4',
        '100 openat(AT_FDCWD, "/x/llama_cpp/lib/libggml.so", O_RDONLY|O_CLOEXEC) = -1 ENOENT (No such file)',
        '100 unshare(CLONE_NEWNET) = -1 EPERM (Operation not permitted)',
    ])
    t = parse(log)
    assert t.native_outside_sandbox() == [(300, "/libggml-base.so")]
    assert t.isolated(200, 5) and t.isolated(201, 9) and not t.isolated(100, 11)


def test_models_list_on_a_bare_machine_starts_nothing_and_opens_no_socket(tmp_path: Path) -> None:
    bare = tmp_path / "bare"
    env = {"HOME": str(bare), "XDG_CACHE_HOME": str(bare / ".cache"), "XDG_DATA_HOME": str(bare / ".local/share"),
           "XDG_CONFIG_HOME": str(bare / ".config"), "LOCALCHAT_STARTER_MODEL": ""}
    proc, trace = traced(["models", "list", "--json"], tmp_path / "home", tmp_path, env,
                         syscalls="execve,clone,clone3,fork,vfork,socket,connect")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["models"] == []
    assert len(trace.execs) == 1, trace.execs  # python itself, nothing else (no pip, no probe, no worker)
    assert trace.sockets == [], trace.sockets
    assert "not on this machine" in proc.stderr and "models pull starter" in proc.stderr
