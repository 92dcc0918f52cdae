"""Hub search and repo listing through huggingface_hub, against the local Hub server (tests/hubserver.py)."""

from __future__ import annotations

import hashlib
import socket
from pathlib import Path

import pytest
from hubserver import COMMIT, FakeHub, HubState, git_blob_id

from localchat.core.models.hub import (
    RemoteFile,
    RemoteModel,
    group_gguf,
    pick_model,
    quant_of,
    repo_models,
    search,
)
from localchat.errors import DownloadError

REPO = "test-org/Tiny-GGUF"
DATA = {"tiny-Q4_K_M.gguf": b"GGUF" + bytes(range(256)) * 40, "tiny-Q8_0.gguf": b"GGUF" + b"\1" * 5000,
        "big-Q8_0-00001-of-00002.gguf": b"GGUF" + b"\2" * 3000, "big-Q8_0-00002-of-00002.gguf": b"\3" * 2000,
        "mmproj-tiny-f16.gguf": b"GGUF" + b"\4" * 100, "README.md": b"# tiny\n"}


@pytest.fixture
def hub():
    state = HubState(repos={REPO: dict(DATA), "test-org/other-GGUF": {"o-Q4_0.gguf": b"GGUF0"},
                            "test-org/gated-GGUF": {"g-Q4_0.gguf": b"GGUFg"},
                            "test-org/private-GGUF": {"p-Q4_0.gguf": b"GGUFp"}},
                     gated={"test-org/gated-GGUF": {"hf_granted"}}, private={"test-org/private-GGUF": {"hf_granted"}},
                     tokens={"hf_granted", "hf_someone"})
    with FakeHub(state) as h:
        yield h


def test_quant_names() -> None:
    assert quant_of("DeepSeek-R1-Distill-Qwen-14B-IQ3_M.gguf") == "IQ3_M"
    assert quant_of("DeepSeek-R1-Distill-Qwen-14B-Q4_K_M.gguf") == "Q4_K_M"
    assert quant_of("x.Q8_0.gguf") == "Q8_0"
    assert quant_of("sub/Model-BF16-00001-of-00003.gguf") == "BF16"
    assert quant_of("model.gguf") == "unknown"


def test_grouping_splits_as_one_model_and_skips_projectors() -> None:
    files = [RemoteFile(n, 10, None) for n in ("a-Q4_K_M.gguf", "big-Q8_0-00002-of-00003.gguf",
                                               "big-Q8_0-00001-of-00003.gguf", "big-Q8_0-00003-of-00003.gguf",
                                               "mmproj-f16.gguf", "README.md", "half-Q6_K-00001-of-00002.gguf")]
    models = group_gguf("r", files, revision=COMMIT)
    assert [(m.name, m.quant, len(m.files)) for m in models] == [("a-Q4_K_M.gguf", "Q4_K_M", 1),
                                                                  ("big-Q8_0", "Q8_0", 3)]
    assert [f.path for f in models[1].files] == [f"big-Q8_0-0000{i}-of-00003.gguf" for i in (1, 2, 3)]
    assert models[1].size == 30 and models[1].revision == COMMIT  # the incomplete Q6_K set is left out


def test_pick_model_by_file_quant_or_the_only_one() -> None:
    a = RemoteModel("r", "a-Q4_K_M.gguf", "Q4_K_M", [RemoteFile("a-Q4_K_M.gguf", 1, None)])
    b = RemoteModel("r", "b-Q8_0", "Q8_0", [RemoteFile("sub/b-Q8_0-00001-of-00001.gguf", 1, None)])
    assert pick_model([a, b], quant="q8_0") is b
    assert pick_model([a, b], file="a-Q4_K_M") is a
    assert pick_model([a, b], file="b-Q8_0-00001-of-00001.gguf") is b
    assert pick_model([a]) is a
    with pytest.raises(DownloadError, match="say which file"):
        pick_model([a, b])
    with pytest.raises(DownloadError, match="no quant 'Q2_K'"):
        pick_model([a, b], quant="Q2_K")
    with pytest.raises(DownloadError, match=r"no .gguf"):
        pick_model([], quant="Q2_K")


def test_repo_listing_has_sizes_hashes_and_commit(hub: FakeHub) -> None:
    models = repo_models(REPO, endpoint=hub.url)
    by_name = {m.name: m for m in models}
    assert set(by_name) == {"tiny-Q4_K_M.gguf", "tiny-Q8_0.gguf", "big-Q8_0"}
    q4 = by_name["tiny-Q4_K_M.gguf"]
    assert q4.files[0].size == len(DATA["tiny-Q4_K_M.gguf"])
    assert q4.files[0].sha256 == hashlib.sha256(DATA["tiny-Q4_K_M.gguf"]).hexdigest()
    assert q4.revision == COMMIT and q4.verified_metadata and not q4.gated
    assert by_name["big-Q8_0"].size == len(DATA["big-Q8_0-00001-of-00002.gguf"]) + 2000
    assert any("blobs=true" in r for r in hub.state.requests)  # files_metadata asked for


def test_file_without_lfs_carries_its_git_blob_id(hub: FakeHub) -> None:
    hub.state.no_lfs.add("tiny-Q8_0.gguf")
    m = next(m for m in repo_models(REPO, endpoint=hub.url) if m.name == "tiny-Q8_0.gguf")
    assert m.files[0].sha256 is None and m.files[0].blob_id == git_blob_id(DATA["tiny-Q8_0.gguf"])


def test_search(hub: FakeHub) -> None:
    found = search("gguf", endpoint=hub.url)
    assert {r["repo"] for r in found} == {REPO, "test-org/other-GGUF", "test-org/gated-GGUF"}  # not the private one
    assert next(r for r in found if r["repo"] == "test-org/gated-GGUF")["gated"] is True
    assert [r["repo"] for r in search("tiny", endpoint=hub.url)] == [REPO]
    assert "filter=gguf" in next(r for r in hub.state.requests if r.startswith("GET /api/models?"))


@pytest.mark.parametrize("repo, token, message", [
    ("test-org/missing", None, "not found on Hugging Face; if it is private, log in"),
    ("test-org/private-GGUF", None, "not found on Hugging Face; if it is private, log in"),
    ("test-org/private-GGUF", "hf_someone", "not found on Hugging Face (or your account cannot see it)"),
    ("test-org/missing", "hf_revoked", "token was refused"),
])
def test_missing_private_and_bad_token(hub: FakeHub, monkeypatch: pytest.MonkeyPatch, repo: str, token: str | None,
                                       message: str) -> None:
    if token:
        monkeypatch.setenv("HF_TOKEN", token)
    with pytest.raises(DownloadError, match=message.replace("(", r"\(").replace(")", r"\)")):
        repo_models(repo, endpoint=hub.url)


def test_login_token_is_sent_though_implicit_tokens_are_off(hub: FakeHub, monkeypatch: pytest.MonkeyPatch) -> None:
    from localchat.core.privacy.lockdown import lock_environment

    lock_environment()  # as the app does: HF_HUB_DISABLE_IMPLICIT_TOKEN=1
    monkeypatch.setenv("LOCALCHAT_USER_OFFLINE", "0")
    repo_models(REPO, endpoint=hub.url)
    assert hub.state.auth_seen[-1] is None  # nobody logged in: nothing sent
    monkeypatch.setenv("HF_TOKEN", "hf_granted")
    models = repo_models("test-org/private-GGUF", endpoint=hub.url)
    assert hub.state.auth_seen[-1] == "hf_granted" and models[0].name == "p-Q4_0.gguf"


def test_gated_repo_lists_and_says_so(hub: FakeHub) -> None:
    models = repo_models("test-org/gated-GGUF", endpoint=hub.url)
    assert models[0].gated  # listing is public; the files need a login (see test_download)


def test_no_network_is_a_clear_error() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(DownloadError, match="cannot reach Hugging Face"):
        repo_models(REPO, endpoint=f"http://127.0.0.1:{port}")


def test_offline_mode_sends_nothing(hub: FakeHub, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOCALCHAT_USER_OFFLINE", "1")
    for call in (lambda: repo_models(REPO, endpoint=hub.url), lambda: search("tiny", endpoint=hub.url)):
        with pytest.raises(DownloadError, match="offline mode is on"):
            call()
    assert hub.state.requests == []


def test_hub_scope_admits_only_the_hub_labelled_download(monkeypatch: pytest.MonkeyPatch) -> None:
    """Inside a user-started Hub action the audit guard admits the Hub's hosts (and the hosts its files are served
    from) under the label "download"; nothing else, and nothing once the action is over. No request is made."""
    from huggingface_hub import constants

    from localchat.core.models.hub import hub_scope
    from localchat.core.privacy.audit import AuditGuard

    monkeypatch.setenv("LOCALCHAT_USER_OFFLINE", "0")
    guard = AuditGuard(offline=True).install()
    try:
        with hub_scope("https://huggingface.co"):
            assert guard._scope_for("huggingface.co") == "download"
            assert guard._scope_for("cas-bridge.xethub.hf.co") == "download"
            assert guard._scope_for("example.com") is None
            assert constants.HF_HUB_OFFLINE is False and constants.HF_HUB_DISABLE_TELEMETRY is True
        assert guard._scope_for("huggingface.co") is None
    finally:
        guard.uninstall()


def test_the_local_hub_speaks_what_hf_hub_download_expects(hub: FakeHub, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """The server is a faithful stand-in: huggingface_hub's own downloader (HEAD for ETag / X-Repo-Commit /
    X-Linked-Size, then GET) works against it unchanged."""
    from huggingface_hub import hf_hub_download

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    p = hf_hub_download(REPO, "tiny-Q4_K_M.gguf", cache_dir=tmp_path, endpoint=hub.url)
    assert Path(p).read_bytes() == DATA["tiny-Q4_K_M.gguf"] and COMMIT in p


def test_search_results_carry_the_licence_from_the_tags_and_odd_tags_are_ignored(
        hub: FakeHub, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from localchat.core.models.hub import search_kept

    monkeypatch.setenv("LOCALCHAT_USER_OFFLINE", "0")
    hub.state.search_fields[REPO] = {"tags": ["gguf", "license:apache-2.0", "region:us"]}
    hub.state.search_fields["test-org/other-GGUF"] = {"tags": [7, None, "license:" + "x" * 5000, {"a": 1}] * 5000}
    results = {r["repo"]: r for r in search("test-org", endpoint=hub.url)}
    assert results[REPO]["license"] == "apache-2.0" and results["test-org/other-GGUF"]["license"] is None
    kept, when, error = search_kept("test-org", tmp_path, endpoint=hub.url)
    assert error is None and when is None and {r["repo"]: r["license"] for r in kept}[REPO] == "apache-2.0"
    monkeypatch.setenv("LOCALCHAT_USER_OFFLINE", "1")
    kept, when, error = search_kept("test-org", tmp_path, endpoint=hub.url)  # offline: the kept copy, licence too
    assert error is not None and when is not None and {r["repo"]: r["license"] for r in kept}[REPO] == "apache-2.0"
