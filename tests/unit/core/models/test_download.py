"""Downloads through huggingface_hub against a local Hub on 127.0.0.1: verify, resume, fail cleanly."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hubserver import FakeHub, HubState

from localchat.core.models.download import DownloadJob, DownloadStopped, pull
from localchat.core.models.hub import RemoteFile, RemoteModel, group_gguf, quant_of, repo_models
from localchat.core.models.library import Library
from localchat.errors import DownloadError

REPO = "test-org/SmolLM2-135M-Instruct-GGUF"
FILE = "SmolLM2-135M-Instruct-Q4_1.gguf"


@pytest.fixture(scope="module")
def starter_bytes(starter_model: Path) -> bytes:
    return starter_model.read_bytes()


@pytest.fixture
def hub(starter_bytes: bytes):
    state = HubState(repos={REPO: {FILE: starter_bytes, "README.md": b"# readme\n"},
                            "test-org/tiny": {"tiny-Q8_0.gguf": starter_bytes[:1000]}},
                     gated={"test-org/gated-model"})
    with FakeHub(state) as h:
        yield h


@pytest.fixture
def library(isolated_home: Path) -> Library:
    return Library(isolated_home / "data" / "library.json", isolated_home / "models")


def test_grouping_and_quant_names() -> None:
    files = [RemoteFile(n, 10, None) for n in ("a-Q4_K_M.gguf", "big-Q8_0-00002-of-00003.gguf",
                                               "big-Q8_0-00001-of-00003.gguf", "big-Q8_0-00003-of-00003.gguf",
                                               "mmproj-f16.gguf", "README.md")]
    models = group_gguf("r", files)
    assert [(m.name, m.quant, len(m.files)) for m in models] == [("a-Q4_K_M.gguf", "Q4_K_M", 1),
                                                                  ("big-Q8_0", "Q8_0", 3)]
    assert [f.path for f in models[1].files] == [f"big-Q8_0-0000{i}-of-00003.gguf" for i in (1, 2, 3)]
    assert quant_of("DeepSeek-R1-Distill-Qwen-14B-IQ3_M.gguf") == "IQ3_M"


def test_full_pull_verified_and_registered(hub: FakeHub, library: Library, isolated_home: Path,
                                           starter_bytes: bytes) -> None:
    models = repo_models(REPO, endpoint=hub.url)
    assert len(models) == 1 and models[0].files[0].sha256 == hashlib.sha256(starter_bytes).hexdigest()
    seen = []
    entry = pull(models[0], library, isolated_home / "models", endpoint=hub.url, progress=seen.append)
    assert Path(entry.path).read_bytes() == starter_bytes
    assert library.get(entry.name) is not None and entry.source == f"huggingface:{REPO}"
    assert seen and seen[-1].done_bytes == len(starter_bytes) and seen[-1].speed_bps > 0
    assert not list(Path(entry.path).parent.glob("*.part"))


def test_wrong_bytes_fail_the_hash_and_register_nothing(hub: FakeHub, library: Library, isolated_home: Path) -> None:
    hub.state.corrupt.add(FILE)
    model = repo_models(REPO, endpoint=hub.url)[0]
    with pytest.raises(DownloadError, match="sha256"):
        pull(model, library, isolated_home / "models", endpoint=hub.url)
    assert library.entries() == []
    assert not [p for p in (isolated_home / "models").rglob("*") if p.is_file()]


@pytest.mark.parametrize("repo, message", [("test-org/missing", "not found"), ("test-org/gated-model", "gated")])
def test_missing_and_gated_repos(hub: FakeHub, repo: str, message: str) -> None:
    with pytest.raises(DownloadError, match=message):
        repo_models(repo, endpoint=hub.url)


def test_missing_file_is_404(hub: FakeHub, library: Library, isolated_home: Path) -> None:
    ghost = RemoteModel(REPO, "ghost.gguf", "Q4_0", [RemoteFile("ghost.gguf", 10, None)])
    with pytest.raises(DownloadError, match="not found"):
        pull(ghost, library, isolated_home / "models", endpoint=hub.url)


def test_gated_download_is_refused_clearly(hub: FakeHub, library: Library, isolated_home: Path) -> None:
    gated = RemoteModel("test-org/gated-model", "x.gguf", "Q4_0", [RemoteFile("x.gguf", 10, None)])
    with pytest.raises(DownloadError, match="is gated: accept its terms"):
        pull(gated, library, isolated_home / "models", endpoint=hub.url)


def test_server_disappearing_mid_transfer_keeps_the_partial(hub: FakeHub, library: Library,
                                                            isolated_home: Path, starter_bytes: bytes) -> None:
    hub.state.die_after = 5_000_000
    model = repo_models(REPO, endpoint=hub.url)[0]
    with pytest.raises(DownloadError, match="resume"):
        pull(model, library, isolated_home / "models", endpoint=hub.url)
    part = next((isolated_home / "models").rglob("*.part"))
    assert 0 < part.stat().st_size < len(starter_bytes)
    assert library.entries() == []
    hub.state.die_after = None
    on_disk = part.stat().st_size
    served_before = hub.state.served
    entry = pull(model, library, isolated_home / "models", endpoint=hub.url)
    assert Path(entry.path).read_bytes() == starter_bytes
    assert hub.state.served - served_before == len(starter_bytes) - on_disk


def test_unsafe_file_names_refused(hub: FakeHub, library: Library, isolated_home: Path) -> None:
    evil = RemoteModel(REPO, "../../evil.gguf", "Q4_0", [RemoteFile("../../evil.gguf", 10, None)])
    with pytest.raises(DownloadError, match="outside the models folder"):
        pull(evil, library, isolated_home / "models", endpoint=hub.url)
    assert not (isolated_home / "evil.gguf").exists()


def test_pause_keeps_cancel_removes(hub: FakeHub, library: Library, isolated_home: Path) -> None:
    hub.state.rate_bps = 20e6
    model = repo_models(REPO, endpoint=hub.url)[0]
    job = DownloadJob(model, isolated_home / "models", endpoint=hub.url,
                      progress=lambda p: job.pause() if p.done_bytes > 2_000_000 else None)
    with pytest.raises(DownloadStopped) as stop:
        job.run()
    assert stop.value.paused
    part = next((isolated_home / "models").rglob("*.part"))
    kept = part.stat().st_size
    assert kept > 2_000_000
    job2 = DownloadJob(model, isolated_home / "models", endpoint=hub.url,
                       progress=lambda p: job2.cancel() if p.done_bytes > kept + 1_000_000 else None)
    with pytest.raises(DownloadStopped) as stop2:
        job2.run()
    assert not stop2.value.paused and not part.exists()


def test_disk_full(hub: FakeHub, library: Library, tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    mnt = tmp_path / "small"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=80m", "tmpfs", str(mnt)]).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        model = repo_models(REPO, endpoint=hub.url)[0]
        with pytest.raises(DownloadError, match="not enough disk space"):
            pull(model, library, mnt, endpoint=hub.url)
        # a size the Hub understated: the disk fills up during the transfer
        liar = RemoteModel(REPO, FILE, "Q4_1", [RemoteFile(FILE, 10_000_000, None)])
        with pytest.raises(DownloadError, match="disk is full"):
            pull(liar, library, mnt, endpoint=hub.url)
        assert library.entries() == []
    finally:
        subprocess.run(["umount", str(mnt)])


def test_offline_mode_refuses_pull(hub: FakeHub, library: Library, isolated_home: Path,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOCALCHAT_USER_OFFLINE", "1")
    model = RemoteModel(REPO, FILE, "Q4_1", [RemoteFile(FILE, 10, None)])
    with pytest.raises(DownloadError, match="offline mode is on"):
        pull(model, library, isolated_home / "models", endpoint=hub.url)
    assert hub.state.requests == []


def test_pull_killed_then_resumed_is_byte_identical(hub: FakeHub, isolated_home: Path, starter_bytes: bytes) -> None:
    hub.state.rate_bps = 25e6  # ~4 s for the whole file: room to kill it part-way
    env = dict(os.environ, LOCALCHAT_HOME=str(isolated_home), HF_ENDPOINT=hub.url, LOCALCHAT_USER_OFFLINE="0")
    env.pop("HF_HUB_OFFLINE", None)
    cmd = [sys.executable, "-m", "localchat", "models", "pull", REPO, FILE, "--json"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 30
    while hub.state.served < 20_000_000 and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    part = next((isolated_home / "models").rglob("*.part"))
    on_disk = part.stat().st_size
    assert 0 < on_disk < len(starter_bytes)
    hub.state.rate_bps = None
    served_before = hub.state.served
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    entry = json.loads(done.stdout)["model"]
    assert Path(entry["path"]).read_bytes() == starter_bytes
    # only the missing bytes crossed the wire the second time
    assert hub.state.served - served_before == len(starter_bytes) - on_disk


@pytest.mark.slow
def test_three_part_split_model_downloads_and_loads(starter_model: Path, tmp_path: Path, library: Library,
                                                    isolated_home: Path) -> None:
    from model_shapes import split_gguf

    from localchat.core.chat.messages import ChatMessage, SamplingParams, TurnResult
    from localchat.core.engine.client import EngineClient
    from localchat.core.engine.protocol import LoadOptions
    from localchat.core.models.library import remove_model

    src = tmp_path / "split-src"
    src.mkdir()
    parts = split_gguf(starter_model, src)
    assert len(parts) == 3
    state = HubState(repos={"test-org/split": {p.name: p.read_bytes() for p in parts}})
    with FakeHub(state) as hub:
        models = repo_models("test-org/split", endpoint=hub.url)
        assert len(models) == 1 and len(models[0].files) == 3 and models[0].quant == "Q4_1"
        entry = pull(models[0], library, isolated_home / "models", endpoint=hub.url)
    assert len(entry.parts) == 3 and entry.size == sum(p.stat().st_size for p in parts)
    with EngineClient(isolation="off") as c:
        c.load(entry.path, LoadOptions(n_ctx=512))
        result = TurnResult()
        for chunk in c.chat([ChatMessage("user", "What is the capital of France? Answer in one sentence.")],
                            SamplingParams(max_tokens=16, temperature=0.0)):
            result.add(chunk)
    assert "Paris" in result.text
    _, deleted = remove_model(library, entry.name)
    assert len(deleted) == 3 and not any(Path(p).exists() for p in entry.parts)
