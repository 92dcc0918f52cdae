"""The inference worker process.

Start-up order matters: (1) take over stdin/stdout as the message channel and point fd 1 at stderr so native
prints cannot corrupt frames, (2) apply the sandbox while the process is still single-threaded and has imported
nothing heavy, (3) only then import llama-cpp-python. A reader thread handles ``cancel`` at once; every other op
runs in order on the main thread.

Ops: ``load`` {path, options} → ``load_progress``*, ``loaded`` | ``error``;
``chat`` {id, messages, sampling} → ``chunk``*, then ``stats`` | ``error``;
``probe`` → ``probed`` {result} (the devices llama.cpp can offload to and the CPU repack types: the app plans
on this, so llama.cpp's libraries are never loaded outside this sandboxed process);
``dryrun`` {path, n_ctx, n_gpu_layers, flash_attn, kv_type} → ``dryran`` {result} (llama.cpp's compute buffer per
device from a load that allocates nothing; a sparse stand-in of a file not downloaded yet will do);
``cancel`` {id}; ``unload`` → ``unloaded``; ``ping`` → ``pong``; ``shutdown``.

LAN mode (``--relay-fd N --relay-peer HOST:PORT``…): after isolating, the worker brings its loopback up and listens
on ``127.0.0.1:P`` per helper machine, handing each connection to the app (``core/privacy/relay.py``); ``load``
accepts as ``rpc_servers`` only those relay ports, and ``rpc_devices`` {servers} → ``rpc_devices`` {devices} reports
each helper's devices with their free and total memory, as llama.cpp's RPC backend reads them.
"""

from __future__ import annotations

import argparse
import logging
import os
import queue
import sys
import threading
from typing import Any

from localchat.core.engine.protocol import Channel, ChannelClosed

log = logging.getLogger("localchat.worker")

ISOLATION_POLICIES = ("off", "auto", "require")


def apply_sandbox(policy: str) -> dict[str, Any]:
    """The hook where the worker isolates itself, before anything heavy is imported."""
    from localchat.core.privacy.sandbox import isolate_worker

    try:
        return isolate_worker(policy)
    except Exception as exc:  # never let a sandbox bug hide: report it as not isolated
        return {"isolated": False, "mode": "none", "reason": f"sandbox failed: {exc}", "policy": policy}


def start_relay(isolation: dict[str, Any], control_fd: int, peers: list[str]) -> list[str]:
    """LAN mode: the relay to the app for ``peers``, started after isolation; its part of the report is added to
    ``isolation``. Returns the relay's endpoints (empty when it could not start: the report says why)."""
    import socket

    from localchat.core.privacy.relay import start_worker_relay

    try:
        relay = start_worker_relay(isolation, socket.socket(fileno=control_fd), peers)
    except Exception as exc:  # reported, never hidden: the app refuses to load with helpers then
        isolation["relay"] = {"peers": peers, "listen": [], "error": f"{type(exc).__name__}: {exc}"}
        return []
    return relay.endpoints


def _take_stdio_channel() -> Channel:
    rfd, wfd = os.dup(0), os.dup(1)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return Channel(rfd, wfd)


def serve(chan: Channel, isolation: dict[str, Any], relay_endpoints: list[str] | None = None) -> int:
    chan.send({"ev": "hello", "pid": os.getpid(), "isolation": isolation, "python": sys.version.split()[0]})
    if isolation.get("policy") == "require" and not isolation.get("isolated"):
        return 3

    from localchat.core.chat.messages import ChatMessage, SamplingParams
    from localchat.core.engine.protocol import LoadOptions, chunk_to_event
    from localchat.core.engine.runtime import LlamaRuntime, LogCapture
    from localchat.errors import InvalidModelFile, LocalChatError

    runtime = LlamaRuntime()
    ops: queue.Queue[dict[str, Any] | None] = queue.Queue()

    def reader() -> None:
        try:
            while True:
                msg = chan.recv()
                if msg.get("op") == "cancel":
                    runtime.abort(str(msg.get("id")) if msg.get("id") else None)
                else:
                    runtime.preempt(msg)  # stops evaluating the last answer for the next turn, unless msg is it
                    ops.put(msg)
        except ChannelClosed:
            runtime.abort()
            ops.put(None)

    threading.Thread(target=reader, name="channel-reader", daemon=True).start()

    while True:
        msg = ops.get()
        if msg is None or msg.get("op") == "shutdown":
            runtime.unload()
            return 0
        op = msg.get("op")
        try:
            if op == "load":
                def progress(p: float) -> None:
                    chan.send({"ev": "load_progress", "progress": p})

                options = LoadOptions(**msg.get("options", {}))
                stray = set(options.rpc_servers or ()) - set(relay_endpoints or ())
                if stray:  # llama.cpp reaches helpers only through this worker's relay
                    raise LocalChatError(f"RPC servers {sorted(stray)} are not this worker's relay ports "
                                         f"{relay_endpoints or []}")
                info = runtime.load(msg["path"], options, progress)
                chan.send({"ev": "loaded", "info": info.__dict__})
            elif op == "chat":
                messages = [ChatMessage(m["role"], m["content"]) for m in msg["messages"]]
                sampling = SamplingParams.from_dict(msg.get("sampling", {}))
                for chunk in runtime.chat(str(msg["id"]), messages, sampling):
                    chan.send(chunk_to_event(chunk))
            elif op == "probe":
                from localchat.core.hardware.ggml_probe import probe

                try:
                    result = probe()
                finally:
                    runtime.logs = LogCapture()  # the probe installed its own log callback: take llama.cpp's back
                chan.send({"ev": "probed", "result": result})
            elif op == "dryrun":
                from localchat.core.hardware.ggml_probe import dry_run

                try:
                    result = dry_run(str(msg["path"]), int(msg["n_ctx"]), int(msg.get("n_gpu_layers") or 0),
                                     msg.get("flash_attn"), str(msg.get("kv_type") or "f16"))
                finally:
                    runtime.logs = LogCapture()  # the dry run installed its own log callback: take llama.cpp's back
                chan.send({"ev": "dryran", "result": result})
            elif op == "rpc_devices":  # LAN mode: the helpers' devices and free memory, as llama.cpp reports them
                from localchat.core.engine import runtime as llama_runtime
                from localchat.core.engine.rpc_devices import add_rpc_servers

                servers = [str(e) for e in msg.get("servers") or []]
                stray = set(servers) - set(relay_endpoints or ())
                if stray:
                    raise LocalChatError(f"RPC servers {sorted(stray)} are not this worker's relay ports "
                                         f"{relay_endpoints or []}")
                devices = add_rpc_servers(vars(llama_runtime)["llama_lib"]._lib, servers)  # the runtime's handle
                chan.send({"ev": "rpc_devices", "devices": devices})
            elif op == "unload":
                runtime.unload()
                chan.send({"ev": "unloaded"})
            elif op == "ping":
                chan.send({"ev": "pong"})
            else:
                chan.send({"ev": "error", "id": msg.get("id", ""), "kind": "internal", "message": f"unknown op {op!r}"})
        except LocalChatError as exc:
            kind = "load_failed" if op == "load" else "internal"
            if isinstance(exc, InvalidModelFile):
                kind = "invalid_file"
            chan.send({"ev": "error", "id": msg.get("id", ""), "kind": kind, "message": str(exc)})
        except ChannelClosed:
            return 0
        except Exception as exc:
            log.exception("worker op %s failed", op)
            chan.send({"ev": "error", "id": msg.get("id", ""), "kind": "internal",
                       "message": f"{type(exc).__name__}: {exc}"})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="localchat-worker")
    parser.add_argument("--isolation", choices=ISOLATION_POLICIES, default="auto")
    parser.add_argument("--relay-fd", type=int, default=None, help="LAN mode: the control socket from the app")
    parser.add_argument("--relay-peer", action="append", default=[], help="LAN mode: a helper machine HOST:PORT")
    args = parser.parse_args(argv)
    chan = _take_stdio_channel()
    isolation = apply_sandbox(args.isolation)
    relay_endpoints = None
    if args.relay_fd is not None:
        relay_endpoints = start_relay(isolation, args.relay_fd, args.relay_peer)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s worker[%(process)d] %(levelname)s %(name)s: %(message)s")
    try:
        return serve(chan, isolation, relay_endpoints)
    except ChannelClosed:
        return 0
    finally:
        chan.close()


if __name__ == "__main__":
    raise SystemExit(main())
