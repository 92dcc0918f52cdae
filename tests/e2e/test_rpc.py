"""LAN mode for real: two llama.cpp ``rpc-server`` processes on 127.0.0.1 (host namespace) stand in for two helper
machines; the starter model is loaded split across them by the sandboxed worker, through its relay, and answers.

What is proven, each by the kernel's or the helpers' own view rather than localchat's word:
- the model's weights are on both helpers (llama.cpp's load log: a model buffer on each RPC device);
- ``strace -f``: every process in a new network namespace (the worker) connects only to its own relay ports, and
  every process in the app's namespace connects (AF_INET/6) only to the two listed helpers;
- the bytes the app reports per helper equal what the helper process itself received and sent (the sum of its
  ``recv``/``send`` calls over every connection, traced with ``strace``);
- a helper killed mid-answer gives a one-line error naming it, and the conversation (question and partial answer)
  is kept;
- the worker refuses RPC servers other than its relay ports.

Needs ``.venv/llama-tools/bin/rpc-server`` (``make rpc-server``) and llama-cpp-python built with ``-DGGML_RPC=on``
(``make install``); under ``LOCALCHAT_TEST_REQUIRE_ISOLATION=1`` their absence fails instead of skipping.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from strict import skip_or_fail

from localchat.core.chat.messages import ChatMessage, ContentChunk, SamplingParams
from localchat.core.engine.client import EngineClient
from localchat.core.engine.protocol import LoadOptions
from localchat.core.privacy.relay import Peer
from localchat.errors import LocalChatError, WorkerCrashed

pytestmark = [pytest.mark.isolation, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]
RPC_SERVER = Path(os.environ.get("LOCALCHAT_RPC_SERVER", ROOT / ".venv" / "llama-tools" / "bin" / "rpc-server"))


def _binding_has_rpc() -> bool:
    """Without importing llama_cpp here (the test process must never map llama.cpp)."""
    spec = importlib.util.find_spec("llama_cpp")
    if spec is None or not spec.submodule_search_locations:
        return False
    lib = Path(next(iter(spec.submodule_search_locations))) / "lib"
    return any(p.name.startswith("libggml-rpc.") for p in lib.iterdir()) if lib.is_dir() else False


@dataclass
class Helper:
    proc: subprocess.Popen[bytes]  # strace, when the helper is traced, else rpc-server itself
    port: int
    log: Path
    trace: Path | None
    server_pid: int
    host: str = "127.0.0.1"

    @property
    def peer(self) -> Peer:
        return Peer(self.host, self.port)

    def seen(self) -> tuple[int, int]:
        """(bytes received, bytes sent) by the helper process itself: the sum of its recv/send system calls, as
        the kernel returned them (``strace``), over every connection it served."""
        assert self.trace is not None
        received = sent = 0
        for line in self.trace.read_text(errors="replace").splitlines():
            m = re.search(r"\b(recvfrom|sendto)\(.*\)\s+=\s+(\d+)", line)
            if m:
                if m.group(1) == "recvfrom":
                    received += int(m.group(2))
                else:
                    sent += int(m.group(2))
        return received, sent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _listening(port: int, pid: int | str = "self") -> bool:
    """A TCP listener on ``port`` in the network namespace of ``pid`` (read from /proc: no connection made)."""
    want = f":{port:04X} "
    try:
        with open(f"/proc/{pid}/net/tcp") as fh:
            return any(want in line and line.split()[3] == "0A" for line in fh.readlines()[1:])
    except OSError:
        return False


def _start_helper(tmp_path: Path, name: str) -> Helper:
    port = _free_port()
    log = tmp_path / f"{name}.log"
    trace = tmp_path / f"{name}.strace" if shutil.which("strace") else None
    cmd = [str(RPC_SERVER), "-H", "127.0.0.1", "-p", str(port), "-t", "1"]
    if trace is not None:
        cmd = ["strace", "-f", "-qq", "-s", "0", "-e", "trace=recvfrom,sendto", "-o", str(trace), *cmd]
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while not _listening(port):  # read from /proc: a probing connect would be a client of its own
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"rpc-server did not start: {log.read_text(errors='replace')[-500:]}")
        time.sleep(0.1)
    server = proc.pid
    if trace is not None:
        children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
        server = int(children[0])
    return Helper(proc, port, log, trace, server)


def _require_rpc() -> None:
    """Skip (fail under LOCALCHAT_TEST_REQUIRE_ISOLATION) without llama.cpp's rpc-server or an RPC-enabled binding."""
    if not RPC_SERVER.is_file():
        skip_or_fail(f"no rpc-server at {RPC_SERVER} (make rpc-server builds it)")
    if not _binding_has_rpc():
        skip_or_fail("llama-cpp-python was built without the RPC backend (make install builds it with it)")


@pytest.fixture
def helpers(tmp_path: Path) -> Iterator[list[Helper]]:
    _require_rpc()
    started = [_start_helper(tmp_path, "helper-a"), _start_helper(tmp_path, "helper-b")]
    yield started
    for h in started:
        with contextlib.suppress(ProcessLookupError):
            os.kill(h.server_pid, signal.SIGTERM)
        if h.proc.poll() is None:
            h.proc.terminate()
            try:
                h.proc.wait(10)
            except subprocess.TimeoutExpired:
                h.proc.kill()
                h.proc.wait()


def _split(load_log: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for m in re.finditer(r"(\S+) model buffer size =\s*([\d.]+) MiB", load_log):
        out[m.group(1)] = out.get(m.group(1), 0.0) + float(m.group(2))
    return out


# -- the command, traced -----------------------------------------------------------------------------------------

_LINE = re.compile(r"^(\d+)\s+(.*)$")
_INET = re.compile(r"sin6?_port=htons\((\d+)\).*?(?:inet_addr\(\"([\d.]+)\"\)|inet_pton\(AF_INET6, \"([^\"]+)\")")


def _trace(text: str) -> tuple[list[tuple[int, str, int, str]], set[int]]:
    """(pid, address, port, result) of every AF_INET/6 connect and bind (address prefixed ``bind:``), and the pids
    that entered a new network namespace (or were cloned from one that had)."""
    isolated: set[int] = set()
    connects = []
    for raw in text.splitlines():
        m = _LINE.match(raw)
        if not m:
            continue
        pid, rest = int(m.group(1)), m.group(2)
        result = re.search(r"\)\s+=\s+(-?\d+)(.*)$", rest)
        if rest.startswith("unshare(") and "CLONE_NEWNET" in rest and result and result.group(1) == "0":
            isolated.add(pid)
        elif re.match(r"(clone3?|fork|vfork)\(", rest) or ("resumed>" in rest and "clone" in rest):
            if result and int(result.group(1)) > 0 and pid in isolated:
                isolated.add(int(result.group(1)))
        elif (rest.startswith("connect(") or rest.startswith("bind(")) and "AF_INET" in rest:
            a = _INET.search(rest)
            if a:
                outcome = "0" if result and result.group(1) == "0" else (result.group(2).split()[0] if result
                                                                          and result.group(2).split() else "?")
                kind = "" if rest.startswith("connect(") else "bind:"
                connects.append((pid, kind + (a.group(2) or a.group(3)), int(a.group(1)), outcome))
    return connects, isolated


def test_chat_splits_the_model_over_two_helpers_and_connects_only_to_them(helpers: list[Helper],
                                                                          tmp_path: Path,
                                                                          starter_model: Path) -> None:
    if shutil.which("strace") is None:
        skip_or_fail("strace is not installed (tests/system-deps.sh installs it as root)")
    log = tmp_path / "strace.log"
    rpc = ",".join(h.peer.endpoint for h in helpers)
    cmd = ["strace", "-f", "-qq", "--seccomp-bpf", "-o", str(log), "-e",
           "trace=connect,bind,unshare,clone,clone3,fork,vfork",
           sys.executable, "-m", "localchat", "chat", "--model", str(starter_model), "--rpc", rpc, "--json",
           "--max-tokens", "24", "--seed", "1", "What is the capital of France?"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "LOCALCHAT_HOME": str(tmp_path / "home")}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout)
    iso = out["isolation"]
    if not iso.get("isolated"):
        skip_or_fail(f"the worker was not isolated: {iso.get('reason')}")

    # it answered, with weights on both helpers (llama.cpp's own account of where each buffer went)
    assert out["text"].strip() and out["completion_tokens"] > 0
    relay_ports = iso["relay"]["listen"]
    assert len(relay_ports) == 2 and iso["relay"]["peers"] == [h.peer.endpoint for h in helpers]
    on_rpc = {dev: mib for dev, mib in out["split"].items() if dev.startswith("RPC")}
    assert len(on_rpc) == 2 and all(mib > 10 for mib in on_rpc.values()), out["split"]
    assert {re.search(r"\[(.*)\]", d).group(1) for d in on_rpc} == set(relay_ports)  # type: ignore[union-attr]

    # the claim, said exactly
    assert iso["scope"] == "only these peers"
    assert f"the app connects only to {rpc.replace(',', ', ')}" in iso["reason"]
    assert [i["name"] for i in iso["relay"]["interfaces"]] == ["lo"]
    assert iso["relay"]["beyond_loopback"]["result"] == "ENETUNREACH"

    # the app's counts, per helper
    helpers_seen = {p["peer"]: p for p in out["helpers"]["peers"]}
    assert set(helpers_seen) == {h.peer.endpoint for h in helpers}
    for p in helpers_seen.values():
        assert p["connections"] >= 2 and p["bytes_sent"] > 10 * 2**20 and p["bytes_received"] > 0
    assert out["helpers"]["refused"] == []

    # the kernel's view: who connected where
    connects, isolated = _trace(log.read_text(errors="replace"))
    assert isolated, "no process entered a new network namespace: the trace proves nothing"
    relay = {int(e.rsplit(":", 1)[1]) for e in relay_ports}
    helper_ports = {h.port for h in helpers}
    binds = [(pid in isolated, a, p) for pid, a, p, r in connects if a.startswith("bind:") and r == "0"]
    assert binds and all(inside and a == "bind:127.0.0.1" for inside, a, _ in binds), binds  # the relay only
    connects = [c for c in connects if not c[1].startswith("bind:")]
    worker_ok = [(a, p) for pid, a, p, r in connects if pid in isolated and r in ("0", "EINPROGRESS")]
    assert worker_ok and all(a == "127.0.0.1" and p in relay for a, p in worker_ok), worker_ok
    app = [(a, p, r) for pid, a, p, r in connects if pid not in isolated]
    assert app and all(a == "127.0.0.1" and p in helper_ports for a, p, _ in app), app
    assert {p for _, p, r in app if r in ("0", "EINPROGRESS")} == helper_ports


# -- in process: byte counts, a helper lost mid-answer, a refused server ------------------------------------------


def test_bytes_match_the_helpers_own_counters_and_a_lost_helper_is_one_line(helpers: list[Helper],
                                                                           tmp_path: Path,
                                                                           starter_model: Path) -> None:
    from localchat.core.chat.store import ConversationStore
    from localchat.core.chat.turn import Turn

    client = EngineClient(isolation="auto", peers=[h.peer for h in helpers])
    try:
        hello = client.start()
        if not hello.isolation.get("isolated"):
            skip_or_fail(f"the worker was not isolated: {hello.isolation.get('reason')}")
        # the worker reaches helpers only through its relay: another server is refused before llama.cpp sees it
        with pytest.raises(LocalChatError, match="not this worker's relay ports"):
            client.load(starter_model, LoadOptions(n_ctx=512, n_gpu_layers=-1, rpc_servers=["127.0.0.1:9"]))
        devices = client.rpc_devices()  # as llama.cpp's RPC backend reads them, through the worker and its relay
        assert [d["peer"] for d in devices] == [h.peer.endpoint for h in helpers]
        assert all(d["total"] >= d["free"] > 0 for d in devices)
        info = client.load(starter_model, LoadOptions(n_ctx=512, n_gpu_layers=-1, rpc_servers=client.rpc_servers))
        assert len([d for d in _split(info.load_log) if d.startswith("RPC")]) == 2
        chunks = list(client.chat([ChatMessage("user", "Say hello.")], SamplingParams(max_tokens=8, seed=1)))
        assert any(isinstance(c, ContentChunk) for c in chunks)

        # what each helper process itself received and sent (its recv/send calls, over every connection, the
        # version check included) vs what the app counted
        if any(h.trace is None for h in helpers):
            skip_or_fail("strace is not installed (tests/system-deps.sh installs it as root)")
        deadline = time.monotonic() + 20
        while True:
            report = {p["peer"]: p for p in client.relay_report()["peers"]}  # type: ignore[index]
            pairs = [((report[h.peer.endpoint]["bytes_sent"], report[h.peer.endpoint]["bytes_received"]), h.seen())
                     for h in helpers]
            if all(ours == theirs for ours, theirs in pairs) or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert all(ours == theirs for ours, theirs in pairs), f"(app sent, received) vs helper's: {pairs}"
        assert all(ours[0] > 10 * 2**20 for ours, _ in pairs)  # the weights went there

        # a helper dies mid-answer: one line naming it; the conversation keeps the question and the partial answer
        store = ConversationStore(tmp_path / "chats.db")
        conv = store.create("rpc")
        store.add_message(conv.id, "user", "Count from 1 to 300.")
        turn = Turn("t1", "starter", store=store, conversation_id=conv.id)
        victim, killed = helpers[1], False
        with pytest.raises(WorkerCrashed) as crashed:
            for chunk in client.chat([ChatMessage("user", "Count from 1 to 300, one number per line.")],
                                     SamplingParams(max_tokens=600, seed=1), request_id="t1"):
                turn.feed(chunk)
                if isinstance(chunk, ContentChunk) and not killed:
                    os.kill(victim.server_pid, signal.SIGKILL)
                    killed = True
                turn.checkpoint()
        message = str(crashed.value)
        assert "\n" not in message
        assert f"helper machine {victim.peer.endpoint} closed the connection" in message, message
        turn.finish(turn.crashed(message))
        kept = store.messages(conv.id)
        assert [m.role for m in kept] == ["user", "assistant"]
        assert kept[0].content == "Count from 1 to 300."
        assert kept[1].status == "error" and victim.peer.endpoint in kept[1].stats.get("error", "")
    finally:
        client.close()


def test_plan_reads_each_helpers_memory_and_the_split(helpers: list[Helper], tmp_path: Path,
                                                     starter_model: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "LOCALCHAT_HOME": str(tmp_path / "home")}
    rpc = ",".join(h.peer.endpoint for h in helpers)
    proc = subprocess.run([sys.executable, "-m", "localchat", "plan", str(starter_model), "--rpc", rpc, "--json"],
                          capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout)["helpers"]
    assert [d["peer"] for d in out["devices"]] == [h.peer.endpoint for h in helpers]
    layers = [d["layers"] for d in out["devices"]]
    assert sum(layers) == 31 and abs(layers[0] - layers[1]) <= 3  # two helpers on one machine: about half each
    assert all(d["free"] > 0 and d["connect_ms"] is not None for d in out["devices"])
    predicted = out["predicted_decode_tokens_per_s"]  # every layer on the helpers: the link is in the figure
    assert predicted["low"] < predicted["value"] < predicted["high"]
    assert any("round trips per helper" in b for b in predicted["basis"])


def test_an_unreachable_helper_is_refused_before_any_worker_starts(tmp_path: Path) -> None:
    port = _free_port()  # nothing listens there
    client = EngineClient(isolation="auto", peers=[Peer("127.0.0.1", port)])
    try:
        with pytest.raises(LocalChatError, match=rf"cannot reach helper 127\.0\.0\.1:{port}"):
            client.start()
        assert client.pid is None
    finally:
        client.close()


def test_cli_refuses_public_and_hostile_helpers_in_one_line(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "LOCALCHAT_HOME": str(tmp_path / "home")}
    for value, says in [("8.8.8.8:50052", "--rpc-allow-public"), ("evil.example:1", "IP address"),
                        ("127.0.0.1:99999", "port must be"), ("a" * 5000, "not a helper address")]:
        proc = subprocess.run([sys.executable, "-m", "localchat", "chat", "--rpc", value, "hi"],
                              capture_output=True, text=True, timeout=120, env=env)
        assert proc.returncode != 0
        lines = proc.stderr.strip().splitlines()
        assert says in lines[-1] and "Traceback" not in proc.stderr, proc.stderr


@contextlib.contextmanager
def _lan_helper(tmp_path: Path) -> Iterator[Helper]:
    """An rpc-server on a LAN address: inside a test namespace joined to the host by a veth pair (10.231.x.0/30).
    Skips (fails under LOCALCHAT_TEST_REQUIRE_ISOLATION) where that cannot be made."""
    from netns import netns_unavailable, veth_namespace

    _require_rpc()
    why = netns_unavailable()
    if why:
        skip_or_fail(why)
    with veth_namespace("rpc") as (name, _host_ip, peer_ip):
        log = tmp_path / "lan-helper.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(["ip", "netns", "exec", name, str(RPC_SERVER), "-H", peer_ip, "-p", "50052",
                                     "-t", "1"], stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 60
            while not _listening(50052, proc.pid):  # `ip netns exec` becomes rpc-server, in the test namespace
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"rpc-server did not start: {log.read_text(errors='replace')[-500:]}")
                time.sleep(0.1)
            yield Helper(proc, 50052, log, None, proc.pid, host=peer_ip)
        finally:
            proc.kill()
            proc.wait()


@pytest.mark.netns
def test_a_helper_on_a_lan_address_answers_through_the_offline_app(tmp_path: Path, starter_model: Path) -> None:
    with _lan_helper(tmp_path) as helper:
        peer = helper.peer.endpoint
        env = {**os.environ, "PYTHONPATH": str(ROOT), "LOCALCHAT_HOME": str(tmp_path / "home")}
        proc = subprocess.run([sys.executable, "-m", "localchat", "chat", "--model", str(starter_model), "--rpc", peer,
                               "--json", "--max-tokens", "12", "--seed", "1", "What is the capital of France?"],
                              capture_output=True, text=True, timeout=900, env=env)
        assert proc.returncode == 0, proc.stderr[-3000:] + helper.log.read_text(errors="replace")[-1000:]
        out = json.loads(proc.stdout)
        if not out["isolation"].get("isolated"):
            skip_or_fail(f"the worker was not isolated: {out['isolation'].get('reason')}")
        assert out["text"].strip()
        assert out["isolation"]["scope"] == "only these peers" and out["isolation"]["relay"]["peers"] == [peer]
        assert [d for d in out["split"] if d.startswith("RPC")] == [f"RPC0[{out['isolation']['relay']['listen'][0]}]"]
        stats = out["helpers"]["peers"][0]
        assert stats["peer"] == peer and stats["bytes_sent"] > 10 * 2**20 and out["helpers"]["refused"] == []


def test_netcheck_rpc_reports_only_these_peers(helpers: list[Helper], tmp_path: Path, starter_model: Path) -> None:
    """``netcheck --rpc``: a turn split over both helpers; the report says the worker has only its loopback and the
    app connected only to the two listed helpers, with bytes and connections per helper equal to the helpers' own."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "LOCALCHAT_HOME": str(tmp_path / "home")}
    rpc = ",".join(h.peer.endpoint for h in helpers)
    proc = subprocess.run([sys.executable, "-m", "localchat", "netcheck", "--model", str(starter_model), "--rpc", rpc,
                           "--json", "--export", str(tmp_path / "report")],
                          capture_output=True, text=True, timeout=900, env=env)
    out = json.loads(proc.stdout)
    if not out["worker"]["isolation"].get("isolated"):
        skip_or_fail(f"the worker was not isolated: {out['worker']['isolation'].get('reason')}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    lan = out["lan_mode"]
    assert lan["scope"] == "only these peers" and lan["peers"] == [h.peer.endpoint for h in helpers]
    assert lan["worker_interfaces"] == ["lo"] and lan["worker_only_loopback"]
    assert lan["beyond_loopback"] == "ENETUNREACH"
    assert lan["silent"] and out["silent"] and lan["unlisted_connections"] == 0 and lan["refused"] == []
    assert out["verdict"].startswith(f"Only these peers: the app connected only to {rpc.replace(',', ', ')}")
    for p in lan["helpers"]:  # the version check and llama.cpp's connections; the weights went there
        assert p["connections"] >= 2 and p["bytes_sent"] > 10 * 2**20 and p["bytes_received"] > 0
    if all(h.trace is not None for h in helpers):  # what each helper process itself saw, to the byte
        assert [(p["bytes_sent"], p["bytes_received"]) for p in lan["helpers"]] == [h.seen() for h in helpers]
    text = (tmp_path / "report" / "localchat-privacy-report.txt").read_text()
    assert "LAN mode: only these peers" in text and "refused attempts: none" in text
    for h in helpers:
        assert re.search(rf"helper {re.escape(h.peer.endpoint)}\s+\d+ connection\(s\), sent [\d,]+ B", text), text


@pytest.mark.netns
def test_netcheck_rpc_on_a_lan_address_tells_the_listed_helper_from_a_leak(tmp_path: Path,
                                                                          starter_model: Path) -> None:
    """On a real LAN address the socket monitor sees the app's connections as LAN: ``netcheck --rpc`` counts them as
    the listed helper's (exit 0), where the same sockets without the list would be a leak."""
    with _lan_helper(tmp_path) as helper:
        peer = helper.peer.endpoint
        env = {**os.environ, "PYTHONPATH": str(ROOT), "LOCALCHAT_HOME": str(tmp_path / "home")}
        proc = subprocess.run([sys.executable, "-m", "localchat", "netcheck", "--model", str(starter_model),
                               "--rpc", peer, "--json"], capture_output=True, text=True, timeout=900, env=env)
        out = json.loads(proc.stdout)
        if not out["worker"]["isolation"].get("isolated"):
            skip_or_fail(f"the worker was not isolated: {out['worker']['isolation'].get('reason')}")
        assert proc.returncode == 0, proc.stderr[-3000:]
        lan = out["lan_mode"]
        assert out["app"]["outbound_lan_connections"] >= 1  # seen by the monitor: LAN sockets of localchat…
        assert lan["connections_to_listed"] == out["app"]["outbound_lan_connections"]  # …each one to the helper
        assert lan["unlisted_connections"] == 0 and lan["silent"] and lan["worker_only_loopback"]
        assert all(e["remote"] == peer for e in out["app"]["socket_events"] if e["kind"] == "lan")
        assert lan["helpers"][0]["peer"] == peer and lan["helpers"][0]["bytes_sent"] > 10 * 2**20
        to_peer = [e["verdict"] for e in out["app"]["audit_events"] if peer.split(":")[0] in e["destination"]]
        assert to_peer and set(to_peer) == {"allowed-peer"}, out["app"]["audit_events"]  # the audit guard's view


def test_serve_answers_through_two_helpers_and_says_so(helpers: list[Helper], tmp_path: Path,
                                                        starter_model: Path) -> None:
    """``localchat serve --rpc``: the API's one worker loads the model split over the helpers and answers; the ready
    line names them and the worker's claim is "only these peers"."""
    import openai

    rpc = ",".join(h.peer.endpoint for h in helpers)
    key = "test-key-0123456789abcdef"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "LOCALCHAT_HOME": str(tmp_path / "home")}
    proc = subprocess.Popen([sys.executable, "-m", "localchat", "serve", "--port", "0", "--json", "--model",
                             str(starter_model), "--api-key", key, "--ctx", "1024", "--rpc", rpc],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line, "serve printed no ready line"
        ready = json.loads(line)
        if not ready["isolated"]:
            skip_or_fail("the worker was not isolated")
        assert ready["helpers"] == [h.peer.endpoint for h in helpers]
        client = openai.OpenAI(base_url=ready["url"], api_key=key, max_retries=0, timeout=300)
        question = [{"role": "user", "content": "What is the capital of France?"}]
        answer = client.chat.completions.create(model=Path(starter_model).stem, max_tokens=12, temperature=0,
                                                messages=question)  # type: ignore[arg-type]
        assert answer.choices[0].message.content and answer.usage and answer.usage.completion_tokens > 0
        client.close()
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.communicate(timeout=30)  # reads and closes both pipes
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0
