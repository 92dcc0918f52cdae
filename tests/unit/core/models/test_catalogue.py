"""The catalogue of distilled checkpoints: the shipped data, offline use, refresh from a local Hub."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from hubserver import COMMIT, FakeHub, HubState

from localchat.core.models.catalogue import Catalogue, shipped_catalogue
from localchat.core.models.hub import SPLIT_RE, quant_of
from localchat.errors import DownloadError

R1_DISTILLS = {"DeepSeek-R1-Distill-Qwen-1.5B", "DeepSeek-R1-Distill-Qwen-7B", "DeepSeek-R1-Distill-Qwen-14B",
               "DeepSeek-R1-Distill-Qwen-32B", "DeepSeek-R1-Distill-Llama-8B", "DeepSeek-R1-Distill-Llama-70B"}


@pytest.fixture
def catalogue(isolated_home: Path) -> Catalogue:
    return Catalogue(isolated_home / "cache")


def test_shipped_catalogue_is_complete_and_consistent(catalogue: Catalogue) -> None:
    entries = catalogue.entries()
    assert {e.title for e in entries} >= R1_DISTILLS
    assert any(e.id == "r1-0528-qwen3-8b" for e in entries)  # a newer distill
    assert len({e.id for e in entries}) == len(entries)
    for e in entries:
        assert "/" in e.repo and e.license and e.description and e.quants, e.id
        assert 2048 <= e.context <= 131072 and 0 < e.sampling["temperature"] <= 1.5 and 0 < e.sampling["top_p"] <= 1
        assert set(e.shape) == {"n_layers", "n_embd", "n_kv_heads", "head_dim", "n_vocab"}, e.id
        for q in e.quants:
            assert q.size > 100_000_000
            for f in q.files:
                assert f.path.endswith(".gguf") and quant_of(f.path) == q.quant, f.path
            if len(q.files) > 1:  # a split quant lists every part, in order
                totals = {int(SPLIT_RE.match(f.path.rsplit("/", 1)[-1]).group("total")) for f in q.files}
                assert totals == {len(q.files)}
                assert [int(SPLIT_RE.match(f.path.rsplit("/", 1)[-1]).group("part")) for f in q.files] == \
                    list(range(1, len(q.files) + 1))
    assert all(e.reasoning for e in entries if e.title in R1_DISTILLS)


def test_split_quant_becomes_one_download(catalogue: Catalogue) -> None:
    e = catalogue.get("r1-distill-llama-70b")
    assert e is not None
    q8 = e.quant("q8_0")
    assert q8 is not None and len(q8.files) == 2
    m = e.remote(q8)
    assert m.name == "DeepSeek-R1-Distill-Llama-70B-Q8_0" and len(m.files) == 2 and m.size == q8.size
    assert m.revision is None and not m.verified_metadata  # exact sizes and hashes come from the Hub first


def test_works_offline_without_a_request(catalogue: Catalogue, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("LOCALCHAT_USER_OFFLINE", "1")
    assert catalogue.refreshed is None and len(catalogue.entries()) >= 8
    assert [e.id for e in catalogue.search("qwen 14b")] == ["r1-distill-qwen-14b"]
    assert catalogue.find("bartowski/DeepSeek-R1-Distill-Qwen-7B-GGUF", "DeepSeek-R1-Distill-Qwen-7B-Q6_K.gguf")
    with pytest.raises(DownloadError, match="offline mode is on"):
        catalogue.refresh(endpoint="http://127.0.0.1:9")


def fake_hub_for(entries: list, skip: set[str] = frozenset()) -> HubState:  # type: ignore[type-arg]
    """A Hub holding small stand-ins for the catalogue's files (same names, a few bytes each)."""
    repos: dict[str, dict[str, bytes]] = {}
    for e in entries:
        if e.repo in skip:
            continue
        files = repos.setdefault(e.repo, {"README.md": b"readme"})
        for q in e.quants:
            for f in q.files:
                files[f.path] = f"{f.path} bytes".encode()
    return HubState(repos=repos)


def test_refresh_stores_exact_sizes_hashes_and_commit(catalogue: Catalogue) -> None:
    entries = catalogue.entries()
    state = fake_hub_for(entries)
    with FakeHub(state) as hub:
        report = catalogue.refresh(endpoint=hub.url)
    assert report.failed == {} and len(report.repos_ok) == len(entries)
    assert report.updated_files == sum(len(q.files) for e in entries for q in e.quants)
    assert catalogue.cached.is_file() and catalogue.refreshed is not None
    e = catalogue.get("r1-distill-qwen-14b")
    assert e is not None and e.revision == COMMIT
    q = e.quant("Q4_K_M")
    assert q is not None and q.verified
    data = state.repos[e.repo][q.file]
    assert q.size == len(data) and q.sha256 == hashlib.sha256(data).hexdigest()
    m = e.remote(q)
    assert m.revision == COMMIT and m.verified_metadata  # a download can start at once, pinned to that commit
    split = catalogue.get("r1-distill-llama-70b").quant("Q8_0")  # type: ignore[union-attr]
    assert split is not None and split.verified and split.size == sum(f.size for f in split.files)
    # the shipped file is untouched: the refreshed copy lives in the cache folder
    assert '"sha256"' not in shipped_catalogue().read_text(encoding="utf-8")


def test_refresh_keeps_going_when_a_repo_fails(catalogue: Catalogue) -> None:
    entries = catalogue.entries()
    gone = "bartowski/DeepSeek-R1-Distill-Qwen-32B-GGUF"
    state = fake_hub_for(entries, skip={gone})
    del state.repos["bartowski/DeepSeek-R1-Distill-Qwen-7B-GGUF"]["DeepSeek-R1-Distill-Qwen-7B-Q6_K.gguf"]
    with FakeHub(state) as hub:
        report = catalogue.refresh(endpoint=hub.url)
    assert list(report.failed) == [gone] and "not found" in report.failed[gone]
    q32 = catalogue.get("r1-distill-qwen-32b").quant("Q4_K_M")  # type: ignore[union-attr]
    assert q32 is not None and not q32.verified and q32.size > 19e9  # kept what it had
    q6 = catalogue.get("r1-distill-qwen-7b").quant("Q6_K")  # type: ignore[union-attr]
    assert q6 is not None and q6.missing


def test_refresh_with_the_hub_unreachable_raises_and_keeps_the_shipped_copy(catalogue: Catalogue) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(DownloadError, match="cannot reach Hugging Face"):
        catalogue.refresh(endpoint=f"http://127.0.0.1:{port}")
    assert not catalogue.cached.exists() and catalogue.entries()


def test_a_corrupt_cached_copy_falls_back_to_the_shipped_one(catalogue: Catalogue) -> None:
    catalogue.cached.parent.mkdir(parents=True, exist_ok=True)
    catalogue.cached.write_text('{"models": [{"id": "broken"}]}', encoding="utf-8")
    assert {e.title for e in catalogue.entries()} >= R1_DISTILLS
    catalogue.cached.write_text("not json", encoding="utf-8")
    assert {e.title for e in catalogue.entries()} >= R1_DISTILLS


def test_library_extra_carries_the_recommendations(catalogue: Catalogue) -> None:
    e = catalogue.get("r1-distill-qwen-7b")
    assert e is not None
    extra = e.library_extra()
    assert extra["sampling"] == {"temperature": 0.6, "top_p": 0.95} and extra["recommended_context"] == e.context
    assert json.loads(json.dumps(e.to_dict()))["quants"][0]["files"][0]["path"].endswith(".gguf")


@pytest.mark.parametrize("damage", ["size big", "size -5", "size true", "a list", "repo a url", "id a number",
                                    "quants a list", "sha256 a number", "deep nesting", "n_layers 10^8",
                                    "n_layers 0"])
def test_a_cached_copy_with_wrong_types_falls_back_to_the_shipped_one(catalogue: Catalogue, damage: str) -> None:
    raw = json.loads(shipped_catalogue().read_text(encoding="utf-8"))
    m = raw["models"][0]
    q = next(iter(m["quants"].values()))
    part = q["files"][0] if "files" in q else q
    if damage.startswith("size"):
        part["size"] = {"size big": "big", "size -5": -5, "size true": True}[damage]
    elif damage == "a list":
        raw = [raw]
    elif damage == "repo a url":
        m["repo"] = "https://evil.example/x"
    elif damage == "id a number":
        m["id"] = 7
    elif damage == "quants a list":
        m["quants"] = [1, 2]
    elif damage == "sha256 a number":
        part["sha256"] = 12
    elif damage.startswith("n_layers"):
        m["n_layers"] = 10**8 if damage == "n_layers 10^8" else 0  # the planner sizes a tuple by it, divides by it
    catalogue.cached.parent.mkdir(parents=True, exist_ok=True)
    text = "[" * 100_000 if damage == "deep nesting" else json.dumps(raw)
    catalogue.cached.write_text(text, encoding="utf-8")
    entries = catalogue.entries()
    assert {e.title for e in entries} >= R1_DISTILLS
    assert all(q.size > 0 for e in entries for q in e.quants)  # the shipped sizes, not the damaged ones


def test_a_refresh_time_that_is_not_a_time_means_never_refreshed(catalogue: Catalogue) -> None:
    raw = json.loads(shipped_catalogue().read_text(encoding="utf-8"))
    catalogue.cached.parent.mkdir(parents=True, exist_ok=True)
    for when in ("yesterday", None, -1, 1e300, [1]):
        raw["refreshed"] = when
        catalogue.cached.write_text(json.dumps(raw), encoding="utf-8")
        assert catalogue.refreshed is None, when


def test_refresh_from_a_hub_answering_html_raises_one_line(catalogue: Catalogue) -> None:
    state = fake_hub_for(catalogue.entries())
    state.html_api = True
    with FakeHub(state) as hub, pytest.raises(DownloadError, match=r"cannot use \(an HTML page") as err:
        catalogue.refresh(endpoint=hub.url)
    assert not catalogue.cached.exists() and "\n" not in str(err.value)
    assert len(state.requests) == 1  # a captive portal answers every repo the same: asked once


def test_refresh_from_a_hub_with_bad_sizes_keeps_the_shipped_values(catalogue: Catalogue) -> None:
    entries = catalogue.entries()
    state = fake_hub_for(entries)
    e = catalogue.get("r1-distill-qwen-14b")
    assert e is not None
    for q in e.quants:
        state.sibling_fields[q.file] = {"size": "big"}
    with FakeHub(state) as hub:
        report = catalogue.refresh(endpoint=hub.url)
    assert list(report.failed) == [e.repo] and "the size of" in report.failed[e.repo]
    kept = catalogue.get("r1-distill-qwen-14b")
    assert kept is not None and kept.quants[0].size == e.quants[0].size and not kept.quants[0].verified


def test_refresh_stops_asking_a_hub_that_never_answers(catalogue: Catalogue, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOCALCHAT_HUB_TIMEOUT", "0.2")
    state = fake_hub_for(catalogue.entries())
    state.hang_api = 1000
    with FakeHub(state) as hub, pytest.raises(DownloadError, match="did not answer in time"):
        catalogue.refresh(endpoint=hub.url)
    assert len([r for r in state.requests if " /api/" in r]) == 3  # one repo's tries, not every repo's
    assert not catalogue.cached.exists()


def test_refresh_reports_the_rest_once_the_hub_goes_away(catalogue: Catalogue, monkeypatch: pytest.MonkeyPatch) -> None:
    from localchat.core.models import hub

    entries = catalogue.entries()
    asked: list[str] = []

    def repo_models(repo: str, endpoint: str | None = None) -> list:  # type: ignore[type-arg]
        asked.append(repo)
        if len(asked) > 1:
            raise hub.HubUnavailable("Hugging Face did not answer in time")
        return []

    monkeypatch.setattr(hub, "repo_models", repo_models)
    report = catalogue.refresh(endpoint="http://127.0.0.1:9")
    assert asked == [entries[0].repo, entries[1].repo]  # nobody asked after the Hub stopped answering
    assert report.repos_ok == [entries[0].repo] and set(report.failed) == {e.repo for e in entries[1:]}
    assert all("did not answer" in why for why in report.failed.values())
