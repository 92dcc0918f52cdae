"""``localchat serve`` end to end: a real server subprocess on a free loopback port, the real worker and starter
model, and the official ``openai`` client. Traffic goes to 127.0.0.1 only."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import openai
import psutil
import pytest

pytestmark = pytest.mark.slow

KEY = "test-key-" + "x" * 24
FRANCE = [{"role": "user", "content": "What is the capital of France? Answer in one sentence."}]
STORY = [{"role": "user", "content": "Write a very long story about a lighthouse keeper and the sea."}]


@dataclass
class Server:
    proc: subprocess.Popen[str]
    ready: dict[str, object]
    log: list[str] = field(default_factory=list)
    clients: list[openai.OpenAI] = field(default_factory=list)

    @property
    def url(self) -> str:
        return str(self.ready["url"])

    def client(self, key: str = KEY) -> openai.OpenAI:
        c = openai.OpenAI(base_url=self.url, api_key=key, max_retries=0, timeout=120)
        self.clients.append(c)
        return c

    def stop(self, sig: int = signal.SIGINT) -> int:
        for c in self.clients:
            c.close()
        self.proc.send_signal(sig)
        code = self.proc.wait(30)
        for pipe in (self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()
        return code


def start_server(home: Path, *args: str) -> Server:
    env = dict(os.environ, LOCALCHAT_HOME=str(home))
    proc = subprocess.Popen([sys.executable, "-m", "localchat", "-v", "serve", "--port", "0", "--json",
                             "--isolation", "auto", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    assert proc.stdout is not None and proc.stderr is not None
    log: list[str] = []
    stderr = proc.stderr
    threading.Thread(target=lambda: log.extend(iter(stderr.readline, "")), daemon=True).start()
    line = proc.stdout.readline()  # the one ready line
    if not line:
        proc.wait(30)
        raise AssertionError(f"server did not start: {''.join(log)}")
    return Server(proc, json.loads(line), log)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, starter_model: Path) -> Iterator[Server]:
    home = tmp_path_factory.mktemp("api") / "home"
    s = start_server(home, "--api-key", KEY, "--ctx", "1024", "--queue", "4")
    yield s
    if s.proc.poll() is None:
        s.stop()


def test_ready_line_and_models_list(server: Server) -> None:
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+/v1", server.url) and server.ready["model"] == "smollm2-135m"
    # the audit guard and the lockdown stay on while serving
    assert str(server.ready["audit_guard"]).startswith("offline") and server.ready["hf_hub_offline"] == "1"
    ids = [m.id for m in server.client().models.list()]
    assert "smollm2-135m" in ids
    assert server.client().models.retrieve("smollm2-135m").owned_by == "localchat"


def test_completion_with_usage(server: Server) -> None:
    r = server.client().chat.completions.create(model="smollm2-135m", messages=FRANCE, temperature=0, seed=1,
                                                max_completion_tokens=40)
    assert "paris" in (r.choices[0].message.content or "").lower()
    assert r.choices[0].finish_reason in ("stop", "length") and r.usage is not None
    assert r.usage.prompt_tokens > 5 and 0 < r.usage.completion_tokens <= 40
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens


def test_streamed_completion_with_usage_matches_the_unstreamed_one(server: Server) -> None:
    c = server.client()
    whole = c.chat.completions.create(model="smollm2-135m", messages=FRANCE, temperature=0, max_tokens=30)
    pieces, usage, finish = [], None, None
    for ch in c.chat.completions.create(model="smollm2-135m", messages=FRANCE, temperature=0, max_tokens=30,
                                        stream=True, stream_options={"include_usage": True}):
        if ch.usage is not None:
            usage = ch.usage
        for choice in ch.choices:
            pieces.append(choice.delta.content or "")
            finish = choice.finish_reason or finish
    assert len([p for p in pieces if p]) > 1  # streamed, not one piece at the end
    assert "".join(pieces) == whole.choices[0].message.content  # greedy: the same answer
    assert usage is not None and usage.completion_tokens == whole.usage.completion_tokens  # type: ignore[union-attr]
    assert finish == whole.choices[0].finish_reason


def test_stop_sequence(server: Server) -> None:
    c = server.client()
    full = c.chat.completions.create(model="smollm2-135m", messages=FRANCE, temperature=0, max_tokens=30)
    text = full.choices[0].message.content or ""
    stop = text.split()[2]
    cut = c.chat.completions.create(model="smollm2-135m", messages=FRANCE, temperature=0, max_tokens=30, stop=[stop])
    assert cut.choices[0].message.content == text[: text.index(stop)] and cut.choices[0].finish_reason == "stop"


def test_wrong_key_and_no_key_are_401(server: Server) -> None:
    with pytest.raises(openai.AuthenticationError) as wrong:
        server.client("not-the-key-0123456789").models.list()
    assert wrong.value.status_code == 401 and wrong.value.code == "invalid_api_key"
    for headers in ({}, {"Authorization": f"Basic {KEY}"}, {"Authorization": "Bearer"}):
        r = httpx.post(f"{server.url}/chat/completions", json={"model": "smollm2-135m", "messages": FRANCE},
                       headers=headers)
        assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
    assert httpx.get(server.url.removesuffix("/v1") + "/health").json()["status"] == "ok"  # no key needed


def test_foreign_host_and_origin_are_refused(server: Server) -> None:
    auth = {"Authorization": f"Bearer {KEY}"}
    port = server.url.split(":")[2].split("/")[0]
    for host in ("evil.example", f"attacker.example:{port}", f"localhost.evil.example:{port}", "192.168.1.5"):
        r = httpx.get(f"{server.url}/models", headers={**auth, "Host": host})
        assert r.status_code == 403 and r.json()["error"]["code"] == "host_not_allowed", host
    for host in (f"localhost:{port}", f"127.0.0.1:{port}"):
        assert httpx.get(f"{server.url}/models", headers={**auth, "Host": host}).status_code == 200
    r = httpx.get(f"{server.url}/models", headers={**auth, "Origin": "https://evil.example"})
    assert r.status_code == 403 and r.json()["error"]["code"] == "origin_not_allowed"
    assert not any(k.lower().startswith("access-control-") for k in r.headers)
    assert not any(k.lower().startswith("access-control-") for k in httpx.get(f"{server.url}/models",
                                                                               headers=auth).headers)


def test_bad_parameters_are_400_in_openai_shape(server: Server) -> None:
    c = server.client()
    for kwargs, param in (({"temperature": 5}, "temperature"), ({"top_p": 0}, "top_p"),
                          ({"max_tokens": 0}, "max_tokens"), ({"n": 2}, "n"), ({"stop": ["a"] * 5}, "stop"),
                          ({"messages": []}, "messages"),
                          ({"messages": [{"role": "tool", "content": "x"}]}, "messages[0].role")):
        args = {"model": "smollm2-135m", "messages": FRANCE, **kwargs}
        with pytest.raises(openai.BadRequestError) as err:
            c.chat.completions.create(**args)  # type: ignore[call-overload]
        body = err.value.body
        assert err.value.status_code == 400 and isinstance(body, dict), kwargs
        assert body["type"] == "invalid_request_error" and body["param"] == param and body["message"], kwargs
    r = httpx.post(f"{server.url}/chat/completions", content=b"{not json", headers={"Authorization": f"Bearer {KEY}"})
    assert r.status_code == 400 and set(r.json()["error"]) >= {"message", "type", "code"}
    with pytest.raises(openai.NotFoundError) as missing:
        c.chat.completions.create(model="no-such-model", messages=FRANCE)
    assert missing.value.status_code == 404 and missing.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError) as long:
        c.chat.completions.create(model="smollm2-135m", messages=[{"role": "user", "content": "word " * 1500}])
    assert long.value.code == "context_length_exceeded" and "1024" in str(long.value)
    with pytest.raises(openai.BadRequestError) as long_stream:  # known before the stream starts: an HTTP error
        list(c.chat.completions.create(model="smollm2-135m", messages=[{"role": "user", "content": "word " * 1500}],
                                       stream=True))
    assert long_stream.value.code == "context_length_exceeded"
    big = httpx.post(f"{server.url}/chat/completions", content=b" " * (5 * 1024 * 1024),
                     headers={"Authorization": f"Bearer {KEY}"})
    assert big.status_code == 413 and big.json()["error"]["code"] == "request_too_large"


def test_two_concurrent_clients_are_both_answered(server: Server) -> None:
    answers: dict[int, str] = {}

    def ask(i: int) -> None:
        r = server.client().chat.completions.create(
            model="smollm2-135m", messages=[{"role": "user", "content": f"Count from {i} to {i + 5}."}],
            max_tokens=24, seed=i)
        answers[i] = r.choices[0].message.content or ""

    threads = [threading.Thread(target=ask, args=(i,)) for i in (1, 10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(180)
    assert sorted(answers) == [1, 10] and all(answers.values())


def log_settled(server: Server, quiet: float = 0.5) -> None:
    """Wait until the stderr reader has caught up: no new line for ``quiet`` seconds (earlier turns are over)."""
    deadline, n = time.monotonic() + 30, -1
    while n != len(server.log) and time.monotonic() < deadline:
        n = len(server.log)
        time.sleep(quiet)


def turn_log(server: Server) -> list[tuple[str, str, int]]:
    """The server's "api: turn <id> <finish> <n> tokens" lines, in order."""
    found = [re.search(r"api: turn (\w+) (\w+) (\d+) tokens", line) for line in list(server.log)]
    return [(m[1], m[2], int(m[3])) for m in found if m]


def test_a_client_that_hangs_up_cancels_its_turn_at_once(server: Server) -> None:
    # Turns are found by their request id (the completion id), not by position: the log reader thread may still be
    # catching up on an earlier test's turns when this one starts.
    with httpx.stream("POST", f"{server.url}/chat/completions", headers={"Authorization": f"Bearer {KEY}"},
                      json={"model": "smollm2-135m", "messages": STORY, "max_tokens": 900, "temperature": 0.8,
                            "seed": 3, "stream": True}, timeout=120) as r:
        assert r.status_code == 200
        lines = r.iter_lines()
        got = [next(lines) for _ in range(12)]  # the answer is streaming
        assert any('"content":' in line for line in got)
        hung_up = json.loads(got[0].removeprefix("data: "))["id"].removeprefix("chatcmpl-")
    # closed mid-answer; the next request is answered, and the log shows in which order
    r2 = server.client().chat.completions.create(model="smollm2-135m", messages=FRANCE, temperature=0, max_tokens=8)
    assert r2.choices[0].message.content
    answered = r2.id.removeprefix("chatcmpl-")

    def ids() -> list[str]:
        return [t[0] for t in turn_log(server)]

    deadline = time.monotonic() + 30
    while not {hung_up, answered} <= set(ids()) and time.monotonic() < deadline:
        time.sleep(0.05)
    log = {t[0]: t for t in turn_log(server)}
    assert hung_up in log and answered in log, server.log[-20:]
    first, second = log[hung_up], log[answered]
    assert first[1] == "cancelled" and first[2] < 900, first  # stopped where the client left, not at max_tokens
    assert second[1] in ("stop", "length") and second[2] <= 8, second
    assert ids().index(hung_up) < ids().index(answered)  # the next one ran only after it


def test_worker_killed_mid_request_is_503_then_it_restarts(server: Server) -> None:
    server_proc = psutil.Process(server.proc.pid)
    result: dict[str, object] = {}

    def ask() -> None:
        try:
            server.client().chat.completions.create(model="smollm2-135m", messages=STORY, max_tokens=900)
        except openai.APIStatusError as exc:
            result["error"] = exc

    def started() -> int:
        return sum(1 for line in list(server.log) if re.search(r"api: turn \w+ started", line))

    log_settled(server)  # else a line of an earlier turn, read late, would look like this one starting
    before = started()
    t = threading.Thread(target=ask)
    t.start()
    deadline = time.monotonic() + 60
    while started() == before:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    workers = [p for p in server_proc.children() if "engine.worker" in " ".join(p.cmdline())]
    assert len(workers) == 1
    workers[0].kill()
    t.join(60)
    err = result.get("error")
    assert isinstance(err, openai.APIStatusError) and err.status_code == 503
    assert err.code == "worker_unavailable" and "SIGKILL" in str(err)
    r = server.client().chat.completions.create(model="smollm2-135m", messages=FRANCE, temperature=0, max_tokens=8)
    assert r.choices[0].message.content  # a new worker, the model loaded again


def test_bind_to_all_interfaces_needs_allow_lan(isolated_home: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "localchat", "serve", "--host", "0.0.0.0", "--port", "0"],
                          capture_output=True, text=True, env=dict(os.environ, LOCALCHAT_HOME=str(isolated_home)),
                          timeout=60)
    assert proc.returncode != 0 and proc.stdout == ""
    assert "refusing to listen on '0.0.0.0'" in proc.stderr and "--allow-lan" in proc.stderr


def test_generated_key_full_queue_and_sigterm(isolated_home: Path, starter_model: Path) -> None:
    s = start_server(isolated_home, "--ctx", "512", "--queue", "0")
    key_file = Path(str(s.ready["api_key_file"]))
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    key = key_file.read_text().strip()
    assert s.client(key).models.list().data
    # one turn runs, none may wait (--queue 0): a second request is told to come back
    with s.client(key).chat.completions.create(model="smollm2-135m", messages=STORY, max_tokens=400,
                                               stream=True) as running:
        next(iter(running))
        busy = httpx.post(f"{s.url}/chat/completions", headers={"Authorization": f"Bearer {key}"},
                          json={"model": "smollm2-135m", "messages": FRANCE, "max_tokens": 4})
        assert busy.status_code == 503 and busy.json()["error"]["code"] == "queue_full"
        assert busy.headers["retry-after"].isdigit()
    worker = psutil.Process(int(str(s.ready["worker_pid"])))
    port = int(s.url.split(":")[2].split("/")[0])
    assert s.stop(signal.SIGTERM) == 0
    assert not worker.is_running() or worker.status() == psutil.STATUS_ZOMBIE
    with socket.socket() as probe:  # the port is free again (as for any restarted server: TIME_WAIT allowed)
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(("127.0.0.1", port))
        probe.listen()
    again = start_server(isolated_home, "--ctx", "512")  # same key file, same key
    try:
        assert again.ready["api_key_file"] == str(key_file) and again.client(key).models.list().data
    finally:
        assert again.stop() == 0


def test_new_dependencies_make_no_network_call_at_import() -> None:
    code = (
        "from localchat.core.privacy.audit import AuditGuard\n"
        "g = AuditGuard(offline=True).install()\n"
        "import uvicorn, starlette, starlette.applications, starlette.responses, uvicorn.protocols.http.h11_impl\n"
        "import localchat.core.api.server, localchat.cli.serve\n"
        "g.uninstall()\n"
        "import json; print(json.dumps([e.to_dict() for e in g.snapshot()]))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == []
