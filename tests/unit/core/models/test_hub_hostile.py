"""A Hub that hangs or answers nonsense: bounded waits, one-line errors, and search falling back to its cache.

Against the local Hub (tests/hubserver.py) with a short request timeout (``LOCALCHAT_HUB_TIMEOUT``), in-process for
the library and through ``python -m localchat`` for what a user sees. No wall-clock time is asserted.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hubserver import FakeHub, HubState

from localchat.core.models import hub as hub_mod
from localchat.core.models.hub import RemoteFile, group_gguf, repo_models, search
from localchat.errors import DownloadError

REPO = "test-org/Tiny-GGUF"
FILE = "tiny-Q4_K_M.gguf"


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("LOCALCHAT_HUB_TIMEOUT", "0.3")
    with FakeHub(HubState(repos={REPO: {FILE: b"GGUF" + b"\1" * 500, "README.md": b"# hi\n"}})) as h:
        yield h


def api_requests(h: FakeHub) -> list[str]:
    return [r for r in h.state.requests if " /api/" in r]


def test_a_hub_that_never_answers_times_out_after_bounded_tries(hub: FakeHub) -> None:
    hub.state.hang_api = 1000
    with pytest.raises(DownloadError, match=r"did not answer in time for test-org/Tiny-GGUF \(3 tries, 0.3 s each\)"):
        repo_models(REPO, endpoint=hub.url)
    assert len(api_requests(hub)) == hub_mod.HUB_ATTEMPTS == 3
    with pytest.raises(DownloadError, match="did not answer in time for tiny"):
        search("tiny", endpoint=hub.url)


def test_one_lost_answer_is_retried(hub: FakeHub) -> None:
    hub.state.hang_api = 1
    assert [m.name for m in repo_models(REPO, endpoint=hub.url)] == [FILE]
    assert len(api_requests(hub)) == 2


def test_timeout_is_configurable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LOCALCHAT_HUB_TIMEOUT", raising=False)
    assert hub_mod.hub_timeout() == hub_mod.HUB_TIMEOUT_S == 15.0
    monkeypatch.setattr(hub_mod, "HUB_TIMEOUT_S", 2.5)
    assert hub_mod.hub_timeout() == 2.5
    for bad in ("soon", "-1", "nan"):
        monkeypatch.setenv("LOCALCHAT_HUB_TIMEOUT", bad)
        assert hub_mod.hub_timeout() == 2.5


def test_an_html_page_with_status_200_is_a_clear_error(hub: FakeHub) -> None:
    hub.state.html_api = True
    for call in (lambda: repo_models(REPO, endpoint=hub.url), lambda: search("tiny", endpoint=hub.url)):
        with pytest.raises(DownloadError, match=r"cannot use \(an HTML page, text/html\): a proxy or captive portal"):
            call()
    assert len(api_requests(hub)) == 2  # a wrong answer is not retried


@pytest.mark.parametrize("fields, message", [
    ({"size": "big"}, "the size of tiny-Q4_K_M.gguf is 'big'"),
    ({"size": -5}, "the size of tiny-Q4_K_M.gguf is -5"),
    ({"size": 2**60}, "the size of tiny-Q4_K_M.gguf is 1152921504606846976"),
    ({"size": True}, "the size of tiny-Q4_K_M.gguf is True"),
    ({"size": None, "lfs": {"sha256": "0" * 64, "size": "x"}}, "the size of tiny-Q4_K_M.gguf is 'x'"),
    ({"lfs": "yes"}, "the LFS entry of tiny-Q4_K_M.gguf is 'yes'"),
    ({"lfs": {"sha256": "not-a-hash", "size": 5}}, "the sha256 of tiny-Q4_K_M.gguf is 'not-a-hash'"),
    ({"lfs": {"sha256": ["a"], "size": 5}}, "the sha256 of tiny-Q4_K_M.gguf is \\['a'\\]"),
])
def test_bad_file_fields_are_refused(hub: FakeHub, fields: dict[str, object], message: str) -> None:
    hub.state.sibling_fields[FILE] = fields
    with pytest.raises(DownloadError, match=message):
        repo_models(REPO, endpoint=hub.url)


def test_files_that_are_not_gguf_are_not_judged(hub: FakeHub) -> None:
    hub.state.sibling_fields["README.md"] = {"size": "big"}  # never read: only .gguf entries are used
    assert [m.name for m in repo_models(REPO, endpoint=hub.url)] == [FILE]


@pytest.mark.parametrize("body, message", [
    (b"[]", "the answer is list, not an object"),
    (b"null", "the answer is NoneType, not an object"),
    (b'{"siblings": "all of them"}', "its file list is 'all of them'"),
    (b'{"siblings": [42]}', "a file entry is 42"),
    (b'{"siblings": [{"rfilename": 7}]}', "a file name is 7"),
    (b'{"sha": "HEAD", "siblings": []}', "the commit is 'HEAD'"),
    (b'{"gated": {"x": 1}, "siblings": []}', "gated is {'x': 1}"),
    (b"[" * 200_000, "not JSON"),
    (b'{"siblings": [', "not JSON"),
    (b"\xff\xfe garbage", "not JSON"),
])
def test_malformed_listings_are_refused(hub: FakeHub, body: bytes, message: str) -> None:
    hub.state.api_body = body
    with pytest.raises(DownloadError, match=message.replace("(", r"\(").replace(")", r"\)")) as err:
        repo_models(REPO, endpoint=hub.url)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("fields, message", [
    ({"downloads": "lots"}, "the downloads of test-org/Tiny-GGUF is 'lots'"),
    ({"likes": -1}, "the likes of test-org/Tiny-GGUF is -1"),
    ({"id": 5, "modelId": 5}, "a repo name is 5"),
    ({"id": "../../etc", "modelId": "x"}, "a repo name is '../../etc'"),
    ({"gated": 3}, "gated of test-org/Tiny-GGUF is 3"),
])
def test_bad_search_fields_are_refused(hub: FakeHub, fields: dict[str, object], message: str) -> None:
    hub.state.search_fields[REPO] = fields
    with pytest.raises(DownloadError, match=message):
        search("tiny", endpoint=hub.url)


def test_search_results_are_checked_and_limited(hub: FakeHub) -> None:
    hub.state.api_body = json.dumps([{"id": f"o/r{i}", "downloads": i, "gated": "auto"} for i in range(50)]).encode()
    found = search("r", limit=5, endpoint=hub.url)
    assert [r["repo"] for r in found] == [f"o/r{i}" for i in range(5)]
    assert found[1] == {"repo": "o/r1", "license": None, "downloads": 1, "likes": None, "gated": True}


@pytest.mark.parametrize("repo", ["", "a/b/c", "../x", "a--b/c", "o/" + "n" * 97, "o/n?x=1", "o/n m"])
def test_impossible_repo_names_are_refused_before_asking(hub: FakeHub, repo: str) -> None:
    with pytest.raises(DownloadError, match="is not a Hugging Face repo name"):
        repo_models(repo, endpoint=hub.url)
    assert hub.state.requests == []


def test_split_sets_must_be_exactly_parts_1_to_n() -> None:
    def names(*paths: str) -> list[str]:
        return [m.name for m in group_gguf("r", [RemoteFile(p, 1, None) for p in paths])]

    assert names("a-00001-of-00002.gguf", "a-00002-of-00002.gguf") == ["a"]
    assert names("a-00001-of-00002.gguf", "a-00003-of-00002.gguf") == []  # part 3 of 2, part 2 missing
    assert names("a-00000-of-00000.gguf") == []
    assert names("a-00001-of-00002.gguf", "a-00002-of-00003.gguf") == []  # two different sets, both incomplete


def test_cached_results_must_have_the_shape_of_fresh_ones() -> None:
    ok = {"time": 1.7e9, "results": [{"repo": "o/r", "downloads": 3, "likes": None, "gated": False}]}
    assert hub_mod.cached_results(ok, files=False) == (1.7e9, ok["results"])
    for bad in (None, [], {"time": "x", "results": []}, {"time": float("nan"), "results": []},
                {"time": 1e20, "results": []}, {"time": 1.0, "results": "x"},
                {"time": 1.0, "results": [{"repo": 5}]}):
        assert hub_mod.cached_results(bad, files=False) is None, bad
    files = {"time": 1.0, "results": [{"name": "a.gguf", "quant": "Q4_0", "size": 5, "files": []}]}
    assert hub_mod.cached_results(files, files=True) is not None
    files["results"][0]["size"] = "big"  # type: ignore[index]
    assert hub_mod.cached_results(files, files=True) is None


# --- what a user sees -------------------------------------------------------------------------------------------


def localchat(home: Path, hub_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, LOCALCHAT_HOME=str(home), HF_ENDPOINT=hub_url, HF_HUB_OFFLINE="0",
               LOCALCHAT_HUB_TIMEOUT="0.5")
    env.pop("LOCALCHAT_USER_OFFLINE", None)
    return subprocess.run([sys.executable, "-m", "localchat", *args], capture_output=True, text=True, env=env,
                          timeout=120)


def one_line_error(r: subprocess.CompletedProcess[str], message: str) -> None:
    assert r.returncode == 1 and r.stdout == "", (r.stdout, r.stderr)
    assert "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("localchat: error: ") and message in lines[0], r.stderr


def test_cli_pull_from_a_hub_that_never_answers(isolated_home: Path, hub: FakeHub) -> None:
    hub.state.hang_api = 1000
    one_line_error(localchat(isolated_home, hub.url, "models", "pull", REPO), "did not answer in time")
    assert len(api_requests(hub)) == 3


@pytest.mark.parametrize("args", [("models", "pull", REPO), ("models", "search", "zzz-nothing"),
                                  ("models", "search", REPO, "--files"), ("models", "pull", REPO, "--json")])
def test_cli_html_answers_are_one_line(isolated_home: Path, hub: FakeHub, args: tuple[str, ...]) -> None:
    hub.state.html_api = True
    one_line_error(localchat(isolated_home, hub.url, *args), "an HTML page")


def test_cli_bad_sizes_are_one_line(isolated_home: Path, hub: FakeHub) -> None:
    hub.state.sibling_fields[FILE] = {"size": "big"}
    one_line_error(localchat(isolated_home, hub.url, "models", "pull", REPO), "the size of tiny-Q4_K_M.gguf is 'big'")
    hub.state.sibling_fields[FILE] = {"size": -5}
    one_line_error(localchat(isolated_home, hub.url, "models", "search", REPO, "--files"), "is -5")
    hub.state.sibling_fields.clear()
    hub.state.search_fields[REPO] = {"downloads": "lots"}
    one_line_error(localchat(isolated_home, hub.url, "models", "search", "tiny"), "'lots'")


def test_cli_search_falls_back_to_its_cache_on_a_broken_answer(isolated_home: Path, hub: FakeHub) -> None:
    fresh = json.loads(localchat(isolated_home, hub.url, "models", "search", "tiny", "--json").stdout)
    files = json.loads(localchat(isolated_home, hub.url, "models", "search", REPO, "--files", "--json").stdout)
    assert fresh["cached"] is False and fresh["results"][0]["repo"] == REPO and files["results"][0]["name"] == FILE
    for breakage in ("html", "hang", "bad size"):
        hub.state.html_api = breakage == "html"
        hub.state.hang_api = 1000 if breakage == "hang" else 0
        hub.state.sibling_fields[FILE] = {"size": "big"} if breakage == "bad size" else {}
        hub.state.search_fields[REPO] = {"likes": -1} if breakage == "bad size" else {}
        for args, before in ((("tiny",), fresh), ((REPO, "--files"), files)):
            r = localchat(isolated_home, hub.url, "models", "search", *args, "--json")
            assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
            d = json.loads(r.stdout)
            assert d["cached"] is True and d["results"] == before["results"], (breakage, d)
            assert "showing the results cached" in d["note"]
        text = localchat(isolated_home, hub.url, "models", "search", "tiny")
        assert text.returncode == 0 and REPO in text.stdout
        assert text.stderr.startswith("note: ") and "showing the results cached" in text.stderr, text.stderr


def test_cli_search_survives_a_damaged_cache(isolated_home: Path, hub: FakeHub) -> None:
    cache = isolated_home / "cache" / "hub-search.json"
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps({"search:tiny": {"time": "yesterday", "results": [{"repo": 5}]}}))
    hub.state.html_api = True
    one_line_error(localchat(isolated_home, hub.url, "models", "search", "tiny"), "an HTML page")
    cache.write_text("[1, 2")
    hub.state.html_api = False
    d = json.loads(localchat(isolated_home, hub.url, "models", "search", "tiny", "--json").stdout)
    assert d["results"][0]["repo"] == REPO and json.loads(cache.read_text())["search:tiny"]["results"]
