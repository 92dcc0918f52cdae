"""The app-side handle on one inference worker process.

The worker is a separate interpreter (spawned, never forked: the GUI process has threads and Qt state), so a
crash, abort or out-of-memory kill in llama.cpp takes down only the worker. Its death is reported as
:class:`WorkerCrashed` with the exit code or signal and whatever text had streamed; a new client can then be
started. ``cancel`` may be called from any thread; everything else belongs to one thread at a time.

LAN mode (``peers``): each worker gets a :class:`~localchat.core.privacy.relay.PeerRelay`, the app's half of the only
path from llama.cpp's RPC client to the listed helper machines; each helper is checked (reachable, same RPC protocol)
before the worker starts, because llama.cpp stops the whole worker when a helper fails.
"""

from __future__ import annotations

import logging
import os
import queue
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from localchat.core.chat.messages import (
    ChatMessage,
    Chunk,
    ContentChunk,
    ErrorChunk,
    ReasoningChunk,
    SamplingParams,
    StatsChunk,
)
from localchat.core.engine.protocol import (
    Channel,
    ChannelClosed,
    LoadInfo,
    LoadOptions,
    WorkerHello,
    event_to_chunk,
)
from localchat.core.privacy.relay import Peer, PeerRelay
from localchat.errors import InvalidModelFile, IsolationRequired, LocalChatError, ModelLoadError, WorkerCrashed

log = logging.getLogger(__name__)

_DEAD = {"ev": "__dead__"}


# `python -m` puts the current folder first on the import path: a `queue.py` or `llama_cpp/` there would run in the
# host's network namespace before the sandbox. -P (3.11+) leaves it out; on 3.10 the bootstrap drops it (site has
# already run by then and never looks at the current folder).
_BOOTSTRAP = ("import sys; del sys.path[0]; from localchat.core.engine.worker import main; "
              "raise SystemExit(main(sys.argv[1:]))")


def worker_command(isolation: str, relay_fd: int | None = None, peers: Sequence[Peer] = ()) -> list[str]:
    """How to start the worker: the same executable in worker mode when frozen (PyInstaller); from source with a
    safe import path (never the current folder). LAN mode: the relay's control descriptor and the helpers."""
    extra = ["--isolation", isolation]
    if relay_fd is not None:
        extra += ["--relay-fd", str(relay_fd)]
        for peer in peers:
            extra += ["--relay-peer", peer.endpoint]
    if getattr(sys, "frozen", False):
        return [sys.executable, "--worker", *extra]
    if sys.version_info >= (3, 11):
        return [sys.executable, "-P", "-m", "localchat.core.engine.worker", *extra]
    return [sys.executable, "-c", _BOOTSTRAP, *extra]


def worker_environment(base: dict[str, str] | None = None) -> dict[str, str]:
    """The worker never needs the network: pin every hub client offline."""
    env = dict(os.environ if base is None else base)
    env.update({"HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1", "HF_HUB_DISABLE_IMPLICIT_TOKEN": "1",
                "PYTHONUNBUFFERED": "1"})
    try:  # lets the worker's evidence compare its namespace with ours
        env["LOCALCHAT_PARENT_NETNS"] = str(os.stat("/proc/self/ns/net").st_ino)
    except OSError:
        pass
    return env


def describe_exit(code: int | None) -> str:
    if code is None:
        return "the inference worker stopped responding"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        hint = " (the system may have run out of memory)" if -code == signal.SIGKILL else ""
        return f"the inference worker was killed by {name}{hint}"
    return f"the inference worker exited with code {code}"


class EngineClient:
    """Start, drive and stop one worker.

    Args:
        isolation: the worker's sandbox policy: ``"off"``, ``"auto"`` or ``"require"``.
        on_stderr: receives each line the worker writes to stderr (logs); default: the debug log.
        peers: helper machines (LAN mode, llama.cpp RPC); off when empty.
    """

    def __init__(self, isolation: str = "auto", on_stderr: Callable[[str], None] | None = None,
                 peers: Sequence[Peer] = ()) -> None:
        self.isolation = isolation
        self.peers = list(peers)
        self.relay = PeerRelay(self.peers) if self.peers else None  # serves every worker of this client
        self._on_stderr = on_stderr
        self._proc: subprocess.Popen[bytes] | None = None
        self._chan: Channel | None = None
        self._events: queue.Queue[dict[str, Any]] = queue.Queue()
        self._current: str | None = None
        self.hello: WorkerHello | None = None
        self.info: LoadInfo | None = None

    # -- life cycle --------------------------------------------------------------------------------------

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout: float = 60.0) -> WorkerHello:
        if self.alive:
            assert self.hello is not None
            return self.hello
        self._discard_dead()
        self._events = queue.Queue()
        relay, relay_fd = self.relay, None
        env = worker_environment()
        if relay is not None:
            relay.check()  # PeerError (one line) before any worker exists
            relay_fd = relay.open_channel()
            # a lost helper makes llama.cpp abort by design: no gdb attached to the worker to print a backtrace
            env["GGML_NO_BACKTRACE"] = "1"
        try:
            proc = subprocess.Popen(worker_command(self.isolation, relay_fd, self.peers), stdin=subprocess.PIPE,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                                    close_fds=True, pass_fds=() if relay_fd is None else (relay_fd,))
        except BaseException:
            if relay is not None:
                relay.close()
            raise
        if relay is not None:
            relay.started()
        assert proc.stdin and proc.stdout and proc.stderr
        self._proc = proc
        self._chan = Channel(os.dup(proc.stdout.fileno()), os.dup(proc.stdin.fileno()))
        proc.stdin.close()
        proc.stdout.close()
        threading.Thread(target=self._read_events, args=(self._chan, self._events), name="worker-events",
                         daemon=True).start()
        threading.Thread(target=self._read_stderr, args=(proc.stderr,), name="worker-stderr", daemon=True).start()
        ev = self._next(timeout)
        if ev["ev"] != "hello":
            raise LocalChatError(f"unexpected first message from the worker: {ev}")
        self.hello = WorkerHello(pid=ev["pid"], isolation=ev["isolation"], python=ev["python"])
        if self.isolation == "require" and not self.hello.isolation.get("isolated"):
            self.close()
            raise IsolationRequired(
                "network isolation is required by your settings but could not be applied: "
                f"{self.hello.isolation.get('reason', 'unknown reason')}")
        if self.peers and len(self.rpc_servers) != len(self.peers):
            why = self.hello.isolation.get("relay", {}).get("error", "no relay port reported")
            self.close()
            raise LocalChatError(f"the inference worker could not open its relay to the helper machines: {why}")
        return self.hello

    @property
    def rpc_servers(self) -> list[str]:
        """LAN mode: what llama.cpp is told its RPC servers are (the worker's relay ports), in ``peers`` order."""
        relay = (self.hello.isolation.get("relay") or {}) if self.hello else {}
        return [str(e) for e in relay.get("listen") or []]

    def relay_report(self) -> dict[str, Any] | None:
        """LAN mode: per helper, connections and bytes sent/received (the app's counts), and refused requests."""
        if self.relay is None:
            return None
        report = self.relay.report()
        report["relay_ports"] = dict(zip(self.relay.endpoints, self.rpc_servers, strict=False))
        return report

    def _discard_dead(self) -> None:
        """Release the pipes of a worker that died, before starting its successor."""
        if self._chan is not None:
            self._chan.close()
        if self._proc is not None:
            self._proc.wait()
        self._proc = self._chan = None

    def close(self, timeout: float = 5.0) -> None:
        """Ask the worker to exit; kill it if it does not."""
        proc, chan = self._proc, self._chan
        if proc is None:
            return
        if chan is not None:
            try:
                chan.send({"op": "shutdown"})
            except ChannelClosed:
                pass
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if chan is not None:
            chan.close()
        if self.relay is not None:
            self.relay.close()
        self._proc = self._chan = None
        self.info = None

    def kill(self) -> None:
        """Hard-kill the worker (used by tests and by "force stop")."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()

    def __enter__(self) -> EngineClient:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- operations --------------------------------------------------------------------------------------

    def load(self, path: str | os.PathLike[str], options: LoadOptions | None = None,
             progress: Callable[[float], None] | None = None) -> LoadInfo:
        self.start()
        self._send({"op": "load", "path": str(path), "options": (options or LoadOptions()).to_dict()})
        while True:
            ev = self._next()
            if ev["ev"] == "load_progress":
                if progress is not None:
                    progress(float(ev["progress"]))
            elif ev["ev"] == "loaded":
                self.info = LoadInfo.from_dict(ev["info"])
                return self.info
            elif ev["ev"] == "error":
                error = InvalidModelFile if ev.get("kind") == "invalid_file" else ModelLoadError
                raise error(ev.get("message", "load failed"))

    def unload(self) -> None:
        if not self.alive:
            return
        self._send({"op": "unload"})
        while self._next()["ev"] != "unloaded":
            pass
        self.info = None

    def chat(self, messages: Sequence[ChatMessage], sampling: SamplingParams | None = None,
             request_id: str | None = None) -> Iterator[Chunk]:
        """Stream one turn. Ends after a ``StatsChunk`` or ``ErrorChunk``.

        Raises:
            WorkerCrashed: the worker died mid-turn; ``partial_text`` holds what had streamed.
        """
        rid = request_id or uuid.uuid4().hex
        self._current = rid  # before sending, so a cancel racing the request still names it
        self._send({"op": "chat", "id": rid, "messages": [m.to_dict() for m in messages],
                    "sampling": (sampling or SamplingParams()).to_dict()})
        text: list[str] = []
        reasoning: list[str] = []
        try:
            while True:
                try:
                    ev = self._next()
                except WorkerCrashed as exc:
                    exc.partial_text, exc.partial_reasoning = "".join(text), "".join(reasoning)
                    raise
                chunk = event_to_chunk(ev) if ev["ev"] in ("chunk", "stats", "error") else None
                if chunk is None or chunk.request_id != rid:
                    continue
                if isinstance(chunk, ContentChunk):
                    text.append(chunk.text)
                elif isinstance(chunk, ReasoningChunk):
                    reasoning.append(chunk.text)
                yield chunk
                if isinstance(chunk, (StatsChunk, ErrorChunk)):
                    return
        finally:
            self._current = None

    def cancel(self) -> None:
        """Stop the running turn (thread-safe); it still ends with a stats chunk, ``finish_reason="cancelled"``."""
        if self._chan is not None and self._current is not None:
            try:
                self._chan.send({"op": "cancel", "id": self._current})
            except ChannelClosed:
                pass

    def probe(self, timeout: float = 120.0) -> dict[str, Any]:
        """What llama.cpp in the (sandboxed) worker can offload to: ``ggml_probe.probe()``'s report, measured there.

        Raises:
            LocalChatError: the worker could not run the probe.
        """
        self.start()
        result: dict[str, Any] = self._ask({"op": "probe"}, "probed", "result", dict, "llama.cpp device probe failed",
                                           timeout)
        return result

    def dry_run(self, path: str | os.PathLike[str], n_ctx: int, n_gpu_layers: int = 0, flash_attn: bool | None = None,
                kv_type: str = "f16", timeout: float = 120.0) -> dict[str, Any]:
        """llama.cpp's own compute buffer per device for ``path`` at ``n_ctx`` on this machine, from a dry run in
        the (sandboxed) worker that allocates no weights (``ggml_probe.dry_run``; a sparse stand-in will do).

        Raises:
            LocalChatError: llama.cpp could not read the file or make the context.
        """
        self.start()
        result: dict[str, Any] = self._ask({"op": "dryrun", "path": str(path), "n_ctx": n_ctx,
                                            "n_gpu_layers": n_gpu_layers, "flash_attn": flash_attn,
                                            "kv_type": kv_type}, "dryran", "result", dict,
                                           "llama.cpp dry run failed", timeout)
        return result

    def rpc_devices(self, timeout: float = 120.0) -> list[dict[str, Any]]:
        """LAN mode: each helper's devices (``peer``, ``name``, ``free``/``total`` bytes) as llama.cpp's RPC backend
        reports them, asked through the sandboxed worker and its relay.

        Raises:
            LocalChatError: not in LAN mode, or the worker could not ask.
        """
        self.start()
        if not self.rpc_servers:
            raise LocalChatError("no helper machines: start the client with peers")
        devices = self._ask({"op": "rpc_devices", "servers": self.rpc_servers}, "rpc_devices", "devices", list,
                            "could not read the helpers' devices", timeout)
        peer_of = dict(zip(self.rpc_servers, (p.endpoint for p in self.peers), strict=False))
        return [{**d, "peer": peer_of.get(str(d.get("endpoint")), "?")} for d in devices if isinstance(d, dict)]

    def ping(self, timeout: float = 5.0) -> bool:
        self._send({"op": "ping"})
        return bool(self._next(timeout)["ev"] == "pong")

    # -- internals ---------------------------------------------------------------------------------------

    def _ask(self, request: dict[str, Any], reply: str, field: str, kind: type, failure: str, timeout: float) -> Any:
        """Send one request and wait for its reply event's ``field`` (of type ``kind``); an error event raises."""
        self._send(request)
        while True:
            ev = self._next(timeout)
            if ev["ev"] == reply and isinstance(ev.get(field), kind):
                return ev[field]
            if ev["ev"] == "error":
                raise LocalChatError(f"{failure}: {ev.get('message', 'unknown error')}")

    def _send(self, msg: dict[str, Any]) -> None:
        if self._chan is None or not self.alive:
            raise WorkerCrashed(describe_exit(self._proc.returncode if self._proc else None) +
                                "; start a new worker", exitcode=self._exitcode(), signal=self._signal())
        try:
            self._chan.send(msg)
        except ChannelClosed:
            self._raise_dead()

    def _next(self, timeout: float | None = None) -> dict[str, Any]:
        try:
            ev = self._events.get(timeout=timeout)
        except queue.Empty:
            raise WorkerCrashed(f"the inference worker did not answer within {timeout:.0f} s") from None
        if ev is _DEAD:
            self._raise_dead()
        return ev

    def _raise_dead(self) -> None:
        proc = self._proc
        code = None
        if proc is not None:
            try:
                code = proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                code = proc.wait()
        self.info = None
        message = describe_exit(code)
        lost = self._peer_lost()
        if lost:  # llama.cpp's RPC backend aborts the process when a helper goes away: say which one
            message = f"{lost}; llama.cpp's RPC backend cannot continue without it ({message})"
        raise WorkerCrashed(message, exitcode=code if code is None or code >= 0 else None,
                            signal=-code if code is not None and code < 0 else None)

    def _peer_lost(self) -> str | None:
        relay = self.relay
        if relay is None:
            return None
        for _ in range(20):  # the relay may learn of the helper's end a moment after the worker's
            lost = relay.lost()
            if lost:
                return lost
            if not relay.live():
                return None
            threading.Event().wait(0.05)
        return relay.lost()

    def _exitcode(self) -> int | None:
        rc = self._proc.returncode if self._proc else None
        return rc if rc is None or rc >= 0 else None

    def _signal(self) -> int | None:
        rc = self._proc.returncode if self._proc else None
        return -rc if rc is not None and rc < 0 else None

    @staticmethod
    def _read_events(chan: Channel, events: queue.Queue[dict[str, Any]]) -> None:
        try:
            while True:
                events.put(chan.recv())
        except (ChannelClosed, ValueError):
            events.put(_DEAD)

    def _read_stderr(self, stream: Any) -> None:
        for raw in iter(stream.readline, b""):
            line = raw.decode("utf-8", errors="replace").rstrip()
            if self._on_stderr is not None:
                self._on_stderr(line)
            else:
                log.debug("worker: %s", line)
        stream.close()
