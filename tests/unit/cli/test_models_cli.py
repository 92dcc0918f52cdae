"""`localchat models …` as a user runs it, against a local Hub for search."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hubserver import FakeHub, HubState

REPO = "test-org/SmolLM2-135M-Instruct-GGUF"


def localchat(*args: str, home: Path, **env: str) -> subprocess.CompletedProcess[str]:
    e = dict(os.environ, LOCALCHAT_HOME=str(home), **env)
    return subprocess.run([sys.executable, "-m", "localchat", *args], capture_output=True, text=True, env=e,
                          timeout=120)


def test_list_info(isolated_home: Path, starter_model: Path) -> None:
    d = json.loads(localchat("models", "list", "--json", home=isolated_home).stdout)
    assert [m["name"] for m in d["models"]] == ["smollm2-135m"]
    info = localchat("models", "info", "smollm2-135m", "--json", home=isolated_home)
    assert info.returncode == 0, info.stderr
    i = json.loads(info.stdout)
    assert i["architecture"] == "llama" and i["n_layers"] == 30 and i["r1_distill"] is False


def test_import_copy_and_in_place_then_rm(isolated_home: Path, starter_model: Path, tmp_path: Path) -> None:
    src = tmp_path / "My-Model.Q4_1.gguf"
    src.write_bytes(starter_model.read_bytes())
    r = localchat("models", "import", str(src), "--json", home=isolated_home)
    assert r.returncode == 0, r.stderr
    m = json.loads(r.stdout)["model"]
    assert m["name"] == "my-model.q4_1" and Path(m["path"]).parent == isolated_home / "models"
    r2 = localchat("models", "import", str(src), "--name", "kept-here", "--in-place", "--json", home=isolated_home)
    assert json.loads(r2.stdout)["model"]["path"] == str(src)
    rm = json.loads(localchat("models", "rm", "my-model.q4_1", "--json", home=isolated_home).stdout)
    assert rm["deleted_files"] == [m["path"]] and not Path(m["path"]).exists()
    rm2 = json.loads(localchat("models", "rm", "kept-here", "--json", home=isolated_home).stdout)
    assert rm2["deleted_files"] == [] and src.exists()  # registered in place: the user's file stays


def test_import_bad_file_copies_nothing(isolated_home: Path, tmp_path: Path) -> None:
    bad = tmp_path / "notes.gguf"
    bad.write_text("not a model")
    r = localchat("models", "import", str(bad), "--json", home=isolated_home)
    assert r.returncode == 1 and r.stdout == "" and "not a GGUF model" in r.stderr
    assert not list((isolated_home / "models").glob("*")) if (isolated_home / "models").exists() else True


def test_rm_unknown(isolated_home: Path) -> None:
    r = localchat("models", "rm", "nope", home=isolated_home)
    assert r.returncode == 1 and "no model named 'nope'" in r.stderr


def test_search_then_offline_uses_cache_and_pull_refused(isolated_home: Path, starter_model: Path) -> None:
    state = HubState(repos={REPO: {"SmolLM2-135M-Instruct-Q4_1.gguf": b"GGUF" + b"\0" * 100}})
    with FakeHub(state) as hub:
        online = localchat("models", "search", "smollm2", "--json", home=isolated_home, HF_ENDPOINT=hub.url,
                           HF_HUB_OFFLINE="0")
        assert online.returncode == 0, online.stderr
        assert json.loads(online.stdout)["results"][0]["repo"] == REPO
        files = localchat("models", "search", REPO, "--files", "--json", home=isolated_home, HF_ENDPOINT=hub.url,
                          HF_HUB_OFFLINE="0")
        assert json.loads(files.stdout)["results"][0]["quant"] == "Q4_1"
        requests_before = len(state.requests)
        offline = localchat("models", "search", "smollm2", "--json", home=isolated_home, HF_ENDPOINT=hub.url,
                            HF_HUB_OFFLINE="1")
        assert offline.returncode == 0, offline.stderr
        d = json.loads(offline.stdout)
        assert d["cached"] is True and d["results"][0]["repo"] == REPO and "offline mode is on" in d["note"]
        pull = localchat("models", "pull", REPO, "--json", home=isolated_home, HF_ENDPOINT=hub.url,
                         HF_HUB_OFFLINE="1")
        assert pull.returncode == 1 and pull.stdout == "" and "offline mode is on" in pull.stderr
        never = localchat("models", "search", "other", "--json", home=isolated_home, HF_ENDPOINT=hub.url,
                          HF_HUB_OFFLINE="1")
        assert never.returncode == 1 and "offline" in never.stderr
        assert len(state.requests) == requests_before  # offline means not one request
        listing = localchat("models", "list", "--json", home=isolated_home, HF_HUB_OFFLINE="1")
        assert listing.returncode == 0


@pytest.mark.parametrize("args, message", [(["pull", REPO, "--quant", "Q9_9"], "say which file")])
def test_pull_needs_a_choice(isolated_home: Path, args: list[str], message: str) -> None:
    state = HubState(repos={REPO: {"a-Q4_0.gguf": b"x", "b-Q8_0.gguf": b"y"}})
    with FakeHub(state) as hub:
        r = localchat("models", *args, home=isolated_home, HF_ENDPOINT=hub.url, HF_HUB_OFFLINE="0")
    assert r.returncode == 2 and message in r.stderr
