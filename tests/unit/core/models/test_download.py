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
from hubserver import COMMIT, FakeHub, HubState

from localchat.core.models.download import DownloadJob, DownloadStopped, pending_downloads, pull
from localchat.core.models.hub import RemoteFile, RemoteModel, repo_models
from localchat.core.models.library import Library
from localchat.errors import DownloadError, InvalidModelFile, LocalChatError

REPO = "test-org/SmolLM2-135M-Instruct-GGUF"
FILE = "SmolLM2-135M-Instruct-Q4_1.gguf"


@pytest.fixture(scope="module")
def starter_bytes(starter_model: Path) -> bytes:
    return starter_model.read_bytes()


@pytest.fixture
def hub(starter_bytes: bytes):
    state = HubState(repos={REPO: {FILE: starter_bytes, "README.md": b"# readme\n"},
                            "test-org/gated-model": {"g-Q4_1.gguf": starter_bytes}},
                     gated={"test-org/gated-model": {"hf_granted"}}, tokens={"hf_granted", "hf_pending"})
    with FakeHub(state) as h:
        yield h


@pytest.fixture
def library(isolated_home: Path) -> Library:
    return Library(isolated_home / "data" / "library.json", isolated_home / "models")


def models_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


def test_full_pull_verified_and_registered(hub: FakeHub, library: Library, isolated_home: Path,
                                           starter_bytes: bytes) -> None:
    models = repo_models(REPO, endpoint=hub.url)
    assert len(models) == 1 and models[0].files[0].sha256 == hashlib.sha256(starter_bytes).hexdigest()
    seen = []
    entry = pull(models[0], library, isolated_home / "models", endpoint=hub.url, progress=seen.append)
    assert Path(entry.path).read_bytes() == starter_bytes
    assert library.get(entry.name) is not None and entry.source == f"huggingface:{REPO}"
    assert entry.extra["revision"] == COMMIT and entry.extra["architecture"] == "llama"
    assert entry.extra["r1_distill"] is False
    assert seen and seen[-1].done_bytes == len(starter_bytes) and seen[-1].model_done == len(starter_bytes)
    assert max(p.speed_bps for p in seen) > 0
    assert models_files(isolated_home / "models") == [Path(entry.path)]  # no .part, no manifest left
    # the download asked for the commit it listed, and sent no telemetry or anything else
    assert f"GET /{REPO}/resolve/{COMMIT}/{FILE}" in hub.state.requests
    assert all("/api/models/" in r or "/resolve/" in r for r in hub.state.requests)
    assert pending_downloads(isolated_home / "models") == []


def test_wrong_bytes_fail_the_hash_and_register_nothing(hub: FakeHub, library: Library, isolated_home: Path) -> None:
    hub.state.corrupt.add(FILE)
    model = repo_models(REPO, endpoint=hub.url)[0]
    with pytest.raises(DownloadError, match=r"corrupt: its hash .* does not match the Hub's"):
        pull(model, library, isolated_home / "models", endpoint=hub.url)
    assert library.entries() == []
    assert not [p for p in models_files(isolated_home / "models") if p.suffix in (".gguf", ".part")]


def test_missing_file_is_404(hub: FakeHub, library: Library, isolated_home: Path) -> None:
    ghost = RemoteModel(REPO, "ghost.gguf", "Q4_0", [RemoteFile("ghost.gguf", 10, "0" * 64)], COMMIT)
    with pytest.raises(DownloadError, match=r"ghost.gguf was not found on Hugging Face \(404\)"):
        pull(ghost, library, isolated_home / "models", endpoint=hub.url)
    assert library.entries() == []


@pytest.mark.parametrize("token, message", [
    (None, r"is gated: accept its terms on Hugging Face and log in \(`hf auth login`\)"),
    ("hf_pending", "is gated and your Hugging Face account has no access yet"),
])
def test_gated_download_refused_clearly(hub: FakeHub, library: Library, isolated_home: Path,
                                        monkeypatch: pytest.MonkeyPatch, token: str | None, message: str) -> None:
    if token:
        monkeypatch.setenv("HF_TOKEN", token)
    model = repo_models("test-org/gated-model", endpoint=hub.url)[0]
    assert model.gated
    with pytest.raises(DownloadError, match=message):
        pull(model, library, isolated_home / "models", endpoint=hub.url)
    assert library.entries() == []
    statuses = [r for r in hub.state.requests if "/resolve/" in r]
    assert statuses  # it did ask (401 without a token, 403 with one not granted)


def test_gated_download_with_a_granted_login(hub: FakeHub, library: Library, isolated_home: Path,
                                             monkeypatch: pytest.MonkeyPatch, starter_bytes: bytes) -> None:
    monkeypatch.setenv("HF_TOKEN", "hf_granted")
    model = repo_models("test-org/gated-model", endpoint=hub.url)[0]
    entry = pull(model, library, isolated_home / "models", endpoint=hub.url)
    assert Path(entry.path).read_bytes() == starter_bytes
    assert set(hub.state.auth_seen) == {"hf_granted"}


def test_server_disappearing_mid_transfer_keeps_the_partial(library: Library, isolated_home: Path,
                                                            starter_bytes: bytes) -> None:
    state = HubState(repos={REPO: {FILE: starter_bytes}}, rate_bps=30e6)
    with FakeHub(state) as hub:
        model = repo_models(REPO, endpoint=hub.url)[0]
        job = DownloadJob(model, isolated_home / "models", endpoint=hub.url, retries=2, retry_wait=0.05,
                          progress=lambda p: hub.stop() if p.done_bytes > 10_000_000 else None)
        with pytest.raises(DownloadError, match=r"connection lost while downloading .* resume from"):
            pull(model, library, isolated_home / "models", job=job)
    part = next((isolated_home / "models").rglob("*.part"))
    on_disk = part.stat().st_size
    assert 10_000_000 < on_disk < len(starter_bytes)
    assert library.entries() == []
    assert [p.done_bytes for p in pending_downloads(isolated_home / "models")] == [on_disk]
    # the Hub is back (another server, another port): the download resumes from the partial file
    state2 = HubState(repos={REPO: {FILE: starter_bytes}})
    with FakeHub(state2) as hub2:
        entry = pull(model, library, isolated_home / "models", endpoint=hub2.url)
    assert Path(entry.path).read_bytes() == starter_bytes
    assert state2.served_by_file[FILE] == len(starter_bytes) - on_disk


def test_connection_dropping_repeatedly_still_completes(hub: FakeHub, library: Library, isolated_home: Path,
                                                         starter_bytes: bytes) -> None:
    hub.state.die_after = 30_000_000  # every response is cut after 30 MB: each retry resumes further on
    model = repo_models(REPO, endpoint=hub.url)[0]
    job = DownloadJob(model, isolated_home / "models", endpoint=hub.url, retry_wait=0.01)
    entry = pull(model, library, isolated_home / "models", job=job)
    assert Path(entry.path).read_bytes() == starter_bytes
    ranges = [r for r in hub.state.requests if r.startswith("GET") and "/resolve/" in r]
    assert len(ranges) == 4 and hub.state.served == len(starter_bytes)


def test_server_ignoring_range_restarts_cleanly(hub: FakeHub, library: Library, isolated_home: Path,
                                                starter_bytes: bytes) -> None:
    model = repo_models(REPO, endpoint=hub.url)[0]
    job = DownloadJob(model, isolated_home / "models", endpoint=hub.url,
                      progress=lambda p: job.pause() if p.done_bytes > 5_000_000 else None)
    with pytest.raises(DownloadStopped):
        job.run()
    hub.state.ignore_range = True
    entry = pull(model, library, isolated_home / "models", endpoint=hub.url)
    assert Path(entry.path).read_bytes() == starter_bytes


@pytest.mark.parametrize("name", ["../../evil.gguf", "/etc/evil.gguf", "sub/../../evil.gguf", "..\\evil.gguf",
                                  "C:evil.gguf", ".hidden.gguf"])
def test_unsafe_file_names_refused(hub: FakeHub, library: Library, isolated_home: Path, name: str) -> None:
    evil = RemoteModel(REPO, name, "Q4_0", [RemoteFile(name, 10, "0" * 64)], COMMIT)
    with pytest.raises(DownloadError, match="outside the models folder"):
        pull(evil, library, isolated_home / "models", endpoint=hub.url)
    assert not (isolated_home / "evil.gguf").exists() and hub.state.requests == []


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
    [pending] = pending_downloads(isolated_home / "models")
    assert pending.model.name == FILE and pending.done_bytes == kept
    job2 = DownloadJob(model, isolated_home / "models", endpoint=hub.url,
                       progress=lambda p: job2.cancel() if p.done_bytes > kept + 1_000_000 else None)
    with pytest.raises(DownloadStopped) as stop2:
        job2.run()
    assert not stop2.value.paused and models_files(isolated_home / "models") == []
    assert pending_downloads(isolated_home / "models") == []


def test_a_new_version_on_the_hub_discards_the_old_partial(hub: FakeHub, library: Library, isolated_home: Path,
                                                           starter_bytes: bytes) -> None:
    model = repo_models(REPO, endpoint=hub.url)[0]
    job = DownloadJob(model, isolated_home / "models", endpoint=hub.url,
                      progress=lambda p: job.pause() if p.done_bytes > 5_000_000 else None)
    with pytest.raises(DownloadStopped):
        job.run()
    new_bytes = starter_bytes[:-4096] + b"\0" * 4096  # the publisher re-uploaded the file
    hub.state.repos[REPO][FILE] = new_bytes
    model2 = repo_models(REPO, endpoint=hub.url)[0]
    served = hub.state.served
    entry = pull(model2, library, isolated_home / "models", endpoint=hub.url)
    assert Path(entry.path).read_bytes() == new_bytes and hub.state.served - served == len(new_bytes)


def test_catalogue_listing_without_hashes_gets_them_from_the_hub_first(hub: FakeHub, library: Library,
                                                                        isolated_home: Path,
                                                                        starter_bytes: bytes) -> None:
    """A catalogue entry has approximate sizes and no sha256: the download fetches the exact ones and verifies."""
    approx = RemoteModel(REPO, FILE, "Q4_1", [RemoteFile(FILE, 98_000_000, None)])
    entry = pull(approx, library, isolated_home / "models", endpoint=hub.url)
    assert entry.sha256 == hashlib.sha256(starter_bytes).hexdigest() and entry.size == len(starter_bytes)
    hub.state.corrupt.add(FILE)
    library.unregister(entry.name)
    Path(entry.path).unlink()
    with pytest.raises(DownloadError, match="corrupt"):
        pull(approx, library, isolated_home / "models", endpoint=hub.url)
    gone = RemoteModel(REPO, "renamed.gguf", "Q4_1", [RemoteFile("renamed.gguf", 1, None)])
    with pytest.raises(DownloadError, match=r"no longer has renamed.gguf"):
        pull(gone, library, isolated_home / "models", endpoint=hub.url)


def test_file_without_lfs_is_verified_by_its_git_blob_id(hub: FakeHub, library: Library, isolated_home: Path,
                                                         starter_bytes: bytes) -> None:
    hub.state.no_lfs.add(FILE)
    model = repo_models(REPO, endpoint=hub.url)[0]
    assert model.files[0].sha256 is None and model.files[0].blob_id
    entry = pull(model, library, isolated_home / "models", endpoint=hub.url)
    assert Path(entry.path).read_bytes() == starter_bytes
    library.unregister(entry.name)
    Path(entry.path).unlink()
    hub.state.corrupt.add(FILE)
    with pytest.raises(DownloadError, match="corrupt"):
        pull(model, library, isolated_home / "models", endpoint=hub.url)


def test_verified_file_that_is_not_a_model_is_not_registered(library: Library, isolated_home: Path) -> None:
    state = HubState(repos={"test-org/notes": {"notes-Q4_0.gguf": b"these are my notes, not a model\n" * 100}})
    with FakeHub(state) as hub:
        model = repo_models("test-org/notes", endpoint=hub.url)[0]
        with pytest.raises(InvalidModelFile, match="matches the Hub, but it is not a model"):
            pull(model, library, isolated_home / "models", endpoint=hub.url)
    assert library.entries() == [] and models_files(isolated_home / "models") == []


def test_same_file_pulled_twice_is_not_downloaded_again(hub: FakeHub, library: Library, isolated_home: Path,
                                                        starter_bytes: bytes) -> None:
    model = repo_models(REPO, endpoint=hub.url)[0]
    first = pull(model, library, isolated_home / "models", endpoint=hub.url)
    served = hub.state.served
    again = pull(model, library, isolated_home / "models", endpoint=hub.url)
    assert again.name == first.name and hub.state.served == served and len(library.entries()) == 1


def test_disk_full(hub: FakeHub, library: Library, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import localchat.core.models.download as dl

    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    mnt = tmp_path / "small"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=80m", "tmpfs", str(mnt)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here (no CAP_SYS_ADMIN in this container)")
    try:
        model = repo_models(REPO, endpoint=hub.url)[0]
        with pytest.raises(DownloadError, match=r"not enough disk space: 0.10 GB needed"):
            pull(model, library, mnt, endpoint=hub.url)
        assert hub.state.served == 0  # refused before a byte was fetched
        # a disk that fills up during the transfer (another program wrote to it after the check)
        filler = mnt / "filler"
        job = DownloadJob(model, mnt, endpoint=hub.url,
                          progress=lambda p: filler.write_bytes(b"\0" * 60_000_000) if not filler.exists() else None)
        with monkeypatch.context() as m, \
                pytest.raises(DownloadError, match=r"the disk is full after .* it resumes where it stopped"):
            m.setattr(dl, "DISK_MARGIN", -(1 << 40))  # as if the space check had passed
            pull(model, library, mnt, job=job)
        assert library.entries() == []
        kept = next(mnt.rglob("*.part")).stat().st_size
        filler.unlink()
        # room again (the 98 MB file still does not fit in 80 MB): the check says how much is needed now
        with pytest.raises(DownloadError, match="not enough disk space"):
            pull(model, library, mnt, endpoint=hub.url)
        assert next(mnt.rglob("*.part")).stat().st_size == kept  # the partial file survives for later
    finally:
        subprocess.run(["umount", "-l", str(mnt)])


def test_offline_mode_refuses_pull(hub: FakeHub, library: Library, isolated_home: Path,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOCALCHAT_USER_OFFLINE", "1")
    model = RemoteModel(REPO, FILE, "Q4_1", [RemoteFile(FILE, 10, None)])
    with pytest.raises(DownloadError, match="offline mode is on"):
        pull(model, library, isolated_home / "models", endpoint=hub.url)
    assert hub.state.requests == []


@pytest.mark.slow
def test_pull_killed_then_resumed_is_byte_identical(hub: FakeHub, isolated_home: Path, starter_bytes: bytes) -> None:
    """`localchat models pull` as a process, SIGKILLed mid-transfer at a random point, then run again."""
    import random

    hub.state.rate_bps = 25e6  # ~4 s for the whole file: room to kill it part-way
    kill_at = random.randrange(5_000_000, len(starter_bytes) - 20_000_000)
    env = dict(os.environ, LOCALCHAT_HOME=str(isolated_home), HF_ENDPOINT=hub.url, HF_HUB_OFFLINE="0")
    env.pop("LOCALCHAT_USER_OFFLINE", None)
    cmd = [sys.executable, "-m", "localchat", "models", "pull", REPO, FILE, "--json"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while hub.state.served < kill_at and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    part = next((isolated_home / "models").rglob("*.part"))
    on_disk = part.stat().st_size
    assert 0 < on_disk < len(starter_bytes)
    listing = subprocess.run([sys.executable, "-m", "localchat", "models", "list", "--json"], env=env,
                             capture_output=True, text=True, timeout=120)
    assert json.loads(listing.stdout)["unfinished_downloads"][0]["done_bytes"] == on_disk
    hub.state.rate_bps = None
    served_before = hub.state.served
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert Path(out["model"]["path"]).read_bytes() == starter_bytes
    # only the missing bytes crossed the wire the second time
    assert hub.state.served - served_before == len(starter_bytes) - on_disk == out["bytes_fetched"]


@pytest.mark.slow
def test_three_part_split_model_downloads_and_loads(starter_model: Path, tmp_path: Path, library: Library,
                                                    isolated_home: Path) -> None:
    """llama.cpp's split format (written with the gguf package), served as three files, pulled as one model, loaded
    by llama.cpp through the engine from its first part, and answering."""
    from model_shapes import split_gguf

    from localchat.core.chat.messages import ChatMessage, SamplingParams, TurnResult
    from localchat.core.engine.client import EngineClient
    from localchat.core.engine.protocol import LoadOptions
    from localchat.core.models.library import remove_model

    src = tmp_path / "split-src"
    src.mkdir()
    parts = split_gguf(starter_model, src)
    assert [p.name[-20:] for p in parts] == [f"-0000{i}-of-00003.gguf" for i in (1, 2, 3)]
    # in a sub-folder of the repo, as publishers lay out large quants
    state = HubState(repos={"test-org/split": {f"Q4_1/{p.name}": p.read_bytes() for p in parts}})
    with FakeHub(state) as hub:
        models = repo_models("test-org/split", endpoint=hub.url)
        assert len(models) == 1 and len(models[0].files) == 3 and models[0].quant == "Q4_1"
        seen = []
        entry = pull(models[0], library, isolated_home / "models", endpoint=hub.url, progress=seen.append)
    assert {p.parts for p in seen} == {3} and seen[-1].model_done == seen[-1].model_total == entry.size
    assert len(entry.parts) == 3 and entry.size == sum(p.stat().st_size for p in parts)
    assert [Path(p).read_bytes() for p in entry.parts] == [p.read_bytes() for p in parts]
    with EngineClient(isolation="off") as c:
        c.load(entry.path, LoadOptions(n_ctx=512))
        result = TurnResult()
        for chunk in c.chat([ChatMessage("user", "What is the capital of France? Answer in one sentence.")],
                            SamplingParams(max_tokens=16, temperature=0.0)):
            result.add(chunk)
    assert "Paris" in result.text
    _, deleted = remove_model(library, entry.name)
    assert len(deleted) == 3 and not any(Path(p).exists() for p in entry.parts)


# -- one download per file, verification of the installed bytes (issue 11 items 1 and 12) ----------------------

def test_a_second_download_of_the_same_file_is_refused_while_the_first_runs(hub: FakeHub, library: Library,
                                                                          isolated_home: Path,
                                                                          starter_bytes: bytes) -> None:
    model = repo_models(REPO, endpoint=hub.url)[0]
    refused: list[Exception] = []

    def second_job(p: object) -> None:
        if refused:
            return
        for attempt in (lambda: DownloadJob(model, isolated_home / "models", endpoint=hub.url).run(),
                        lambda: DownloadJob(model, isolated_home / "models", endpoint=hub.url).discard()):
            try:
                attempt()
            except DownloadError as exc:
                refused.append(exc)

    entry = pull(model, library, isolated_home / "models", endpoint=hub.url, progress=second_job)
    assert [str(e) for e in refused] == [f"{FILE} is already being downloaded by this process; wait for that "
                                         f"download to finish, or stop it first"] * 2
    assert Path(entry.path).read_bytes() == starter_bytes and hub.state.served == len(starter_bytes)
    assert models_files(isolated_home / "models") == [Path(entry.path)]  # the lock file went with the lock


def test_what_is_installed_is_what_was_hashed(hub: FakeHub, library: Library, isolated_home: Path) -> None:
    """Bytes that reach the .part file from elsewhere (before: another process's stream) fail the check: the file on
    disk is hashed, not the bytes this process received."""
    model = repo_models(REPO, endpoint=hub.url)[0]
    part = next(iter([t for _f, t in DownloadJob(model, isolated_home / "models").targets()]))
    part = part.with_name(part.name + ".part")

    def interfere(p: object) -> None:
        if getattr(p, "done_bytes", 0) == len(hub.state.repos[REPO][FILE]) and part.exists():
            with open(part, "ab") as fh:
                fh.write(b"another writer")

    with pytest.raises(DownloadError, match=r"is corrupt: its hash .* does not match the Hub's"):
        pull(model, library, isolated_home / "models", endpoint=hub.url, progress=interfere)
    assert library.entries() == []
    assert not [p for p in models_files(isolated_home / "models") if p.suffix in (".gguf", ".part")]


def test_a_file_without_a_checksum_is_refused_before_downloading(hub: FakeHub, library: Library,
                                                                 isolated_home: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    import hubserver

    hub.state.no_lfs.add(FILE)
    monkeypatch.setattr(hubserver, "git_blob_id", lambda data: None)  # the Hub lists it with neither hash
    model = repo_models(REPO, endpoint=hub.url)[0]
    assert model.files[0].sha256 is None and model.files[0].blob_id is None
    with pytest.raises(DownloadError, match=f"the Hub gives no checksum for {FILE}; refusing to download"):
        pull(model, library, isolated_home / "models", endpoint=hub.url)
    assert hub.state.served == 0 and not [r for r in hub.state.requests if "/resolve/" in r]
    assert library.entries() == []


def test_a_bad_name_is_refused_before_downloading(hub: FakeHub, library: Library, isolated_home: Path) -> None:
    model = repo_models(REPO, endpoint=hub.url)[0]
    with pytest.raises(LocalChatError, match="invalid model name 'Bad Name'"):
        pull(model, library, isolated_home / "models", endpoint=hub.url, name="Bad Name")
    assert hub.state.served == 0 and models_files(isolated_home / "models") == []


def test_pulls_of_the_same_name_get_their_own_entries(hub: FakeHub, library: Library, isolated_home: Path) -> None:
    from localchat.core.models.library import LibraryEntry

    library.register(LibraryEntry(name="mine", path="/elsewhere/mine.gguf", size=1))
    model = repo_models(REPO, endpoint=hub.url)[0]
    entry = pull(model, library, isolated_home / "models", endpoint=hub.url, name="mine")
    assert entry.name == "mine-2" and library.get("mine").path == "/elsewhere/mine.gguf"  # type: ignore[union-attr]
    assert pull(model, library, isolated_home / "models", endpoint=hub.url, name="mine").name == "mine-2"


def test_a_download_that_would_not_fit_is_refused_before_any_request(hub: FakeHub, library: Library,
                                                                    isolated_home: Path, starter_bytes: bytes) -> None:
    from localchat.core.models.download import bytes_to_fetch, check_disk_space, disk_margin, model_folder

    model = repo_models(REPO, endpoint=hub.url)[0]
    requests = len(hub.state.requests)
    asked: list[Path] = []

    def full_disk(folder: Path) -> int:
        asked.append(folder)
        return 50_000_000  # half the model

    job = DownloadJob(model, isolated_home / "models", endpoint=hub.url, free_space=full_disk)
    with pytest.raises(DownloadError, match=r"^not enough disk space: 0\.10 GB needed \(plus 68 MB to spare\), "
                                            r"0\.05 GB free in .*; free some space") as exc:
        pull(model, library, isolated_home / "models", job=job)
    assert "\n" not in str(exc.value) and asked == [model_folder(isolated_home / "models", REPO)]
    assert len(hub.state.requests) == requests and hub.state.served == 0 and library.entries() == []
    # exactly enough (the size plus the margin) is enough; a partial file counts as fetched
    need = len(starter_bytes) + disk_margin(len(starter_bytes))
    check_disk_space(model, isolated_home / "models", lambda _f: need)
    part = model_folder(isolated_home / "models", REPO) / (FILE + ".part")
    part.parent.mkdir(parents=True)
    part.write_bytes(starter_bytes[:40_000_000])
    assert bytes_to_fetch(model, isolated_home / "models") == len(starter_bytes) - 40_000_000
    check_disk_space(model, isolated_home / "models", lambda _f: 130_000_000)  # fits with what is already there
    with pytest.raises(DownloadError, match="cannot tell the free space"):
        check_disk_space(model, isolated_home / "models", lambda _f: (_ for _ in ()).throw(PermissionError(13, "no")))
