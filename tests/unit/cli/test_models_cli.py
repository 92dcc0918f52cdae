"""`localchat models …` as a user runs it (a subprocess), against a local Hub for search and pull."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hubserver import FakeHub, HubState

REPO = "test-org/SmolLM2-135M-Instruct-GGUF"
CAT_REPO = "bartowski/DeepSeek-R1-Distill-Qwen-1.5B-GGUF"
CAT_FILE = "DeepSeek-R1-Distill-Qwen-1.5B-Q4_K_M.gguf"


def localchat(*args: str, home: Path, **env: str) -> subprocess.CompletedProcess[str]:
    e = dict(os.environ, LOCALCHAT_HOME=str(home), **env)
    e.pop("LOCALCHAT_USER_OFFLINE", None)
    return subprocess.run([sys.executable, "-m", "localchat", *args], capture_output=True, text=True, env=e,
                          timeout=180)


def one_json(r: subprocess.CompletedProcess[str]) -> dict:  # type: ignore[type-arg]
    assert r.returncode == 0, r.stderr
    d: dict = json.loads(r.stdout)  # type: ignore[type-arg]  # exactly one object: json.loads refuses trailing text
    return d


def test_list_info(isolated_home: Path, starter_model: Path) -> None:
    d = one_json(localchat("models", "list", "--json", home=isolated_home))
    assert [m["name"] for m in d["models"]] == ["smollm2-135m"] and d["unfinished_downloads"] == []
    assert d["models"][0]["present"] is True and d["models"][0]["quant"] == "Q4_1"
    i = one_json(localchat("models", "info", "smollm2-135m", "--json", home=isolated_home))
    assert i["architecture"] == "llama" and i["n_layers"] == 30 and i["r1_distill"] is False
    assert i["library"]["source"] == "starter"
    text = localchat("models", "list", home=isolated_home)
    assert "smollm2-135m" in text.stdout and "starter" in text.stdout


def test_catalogue_list_and_info_offline(isolated_home: Path) -> None:
    d = one_json(localchat("models", "list", "--catalogue", "--json", home=isolated_home, HF_HUB_OFFLINE="1"))
    ids = {c["id"] for c in d["catalogue"]}
    assert {"r1-distill-qwen-1.5b", "r1-distill-qwen-14b", "r1-distill-llama-70b"} <= ids and d["refreshed"] is None
    info = one_json(localchat("models", "info", "r1-distill-qwen-14b", "--json", home=isolated_home,
                              HF_HUB_OFFLINE="1"))
    assert info["catalogue"]["repo"] == "bartowski/DeepSeek-R1-Distill-Qwen-14B-GGUF"
    text = localchat("models", "list", "--catalogue", home=isolated_home, HF_HUB_OFFLINE="1")
    assert "DeepSeek-R1-Distill-Llama-70B" in text.stdout and "(2 parts)" in text.stdout


def test_import_copy_and_in_place_then_rm(isolated_home: Path, starter_model: Path, tmp_path: Path) -> None:
    src = tmp_path / "My-Model.Q4_1.gguf"
    src.write_bytes(starter_model.read_bytes())
    m = one_json(localchat("models", "import", str(src), "--json", home=isolated_home))["model"]
    assert m["name"] == "my-model.q4_1" and Path(m["path"]).parent == isolated_home / "models"
    r2 = one_json(localchat("models", "import", str(src), "--name", "kept-here", "--in-place", "--json",
                            home=isolated_home))
    assert r2["model"]["path"] == str(src)
    rm = one_json(localchat("models", "rm", "my-model.q4_1", "--json", home=isolated_home))
    assert rm["deleted_files"] == [m["path"]] and not Path(m["path"]).exists()
    rm2 = one_json(localchat("models", "rm", "kept-here", "--json", home=isolated_home))
    assert rm2["deleted_files"] == [] and src.exists()  # registered in place: the user's file stays


def test_import_bad_file_copies_nothing(isolated_home: Path, tmp_path: Path) -> None:
    bad = tmp_path / "notes.gguf"
    bad.write_text("not a model")
    r = localchat("models", "import", str(bad), "--json", home=isolated_home)
    assert r.returncode == 1 and r.stdout == "" and "not a GGUF model" in r.stderr
    models = isolated_home / "models"
    assert not models.exists() or not any(models.iterdir())


def test_rm_and_info_unknown(isolated_home: Path) -> None:
    r = localchat("models", "rm", "nope", "--json", home=isolated_home)
    assert r.returncode == 1 and r.stdout == "" and "no model named 'nope'" in r.stderr
    r = localchat("models", "info", "nope", "--json", home=isolated_home)
    assert r.returncode == 1 and r.stdout == "" and "no model named 'nope'" in r.stderr


def test_pull_with_progress_bar_then_list_and_info(isolated_home: Path, starter_model: Path) -> None:
    data = starter_model.read_bytes()
    state = HubState(repos={REPO: {"SmolLM2-135M-Instruct-Q4_1.gguf": data, "SmolLM2-135M-Instruct-Q8_0.gguf": data}},
                     rate_bps=150e6)
    with FakeHub(state) as hub:
        r = localchat("models", "pull", REPO, "--quant", "q4_1", home=isolated_home, HF_ENDPOINT=hub.url,
                      HF_HUB_OFFLINE="0")
    assert r.returncode == 0, r.stderr
    assert "Pulling SmolLM2-135M-Instruct-Q4_1.gguf" in r.stderr and "100.0%" in r.stderr and "MB/s" in r.stderr
    assert "Installed as smollm2-135m-instruct-q4_1" in r.stderr and "sha256 verified" in r.stderr
    d = one_json(localchat("models", "list", "--json", home=isolated_home))
    pulled = next(m for m in d["models"] if m["name"] == "smollm2-135m-instruct-q4_1")
    assert pulled["source"] == f"huggingface:{REPO}" and pulled["sha256"] and pulled["present"]
    i = one_json(localchat("models", "info", "smollm2-135m-instruct-q4_1", "--json", home=isolated_home))
    assert i["path"] == pulled["path"] and i["n_layers"] == 30


def test_pull_by_catalogue_id_keeps_its_recommendations(isolated_home: Path, starter_model: Path) -> None:
    """`pull r1-distill-qwen-1.5b` resolves the repo and the first quant from the catalogue (the Hub here serves the
    starter's bytes under that file name)."""
    state = HubState(repos={CAT_REPO: {CAT_FILE: starter_model.read_bytes()}})
    with FakeHub(state) as hub:
        d = one_json(localchat("models", "pull", "r1-distill-qwen-1.5b", "--json", home=isolated_home,
                               HF_ENDPOINT=hub.url, HF_HUB_OFFLINE="0"))
    m = d["model"]
    assert m["catalogue_id"] == "r1-distill-qwen-1.5b" and m["sampling"] == {"temperature": 0.6, "top_p": 0.95}
    assert m["r1_distill"] is True and m["name"] == "deepseek-r1-distill-qwen-1.5b-q4_k_m"  # recognised by its repo
    assert d["bytes_fetched"] == starter_model.stat().st_size


@pytest.mark.parametrize("repo, env, message", [
    ("test-org/missing", {}, "not found on Hugging Face"),
    ("test-org/gated", {}, "is gated: accept its terms"),
    ("test-org/gated", {"HF_TOKEN": "hf_someone"}, "no access yet"),
    ("nonsense", {}, "neither a Hugging Face repo"),
])
def test_pull_errors_are_clear(isolated_home: Path, repo: str, env: dict[str, str], message: str) -> None:
    state = HubState(repos={"test-org/gated": {"g-Q4_0.gguf": b"GGUF" + b"\0" * 100}},
                     gated={"test-org/gated": set()}, tokens={"hf_someone"})
    with FakeHub(state) as hub:
        r = localchat("models", "pull", repo, "--json", home=isolated_home, HF_ENDPOINT=hub.url, HF_HUB_OFFLINE="0",
                      **env)
    assert r.returncode != 0 and r.stdout == "" and message in r.stderr
    assert not list((isolated_home / "models").rglob("*.gguf")) if (isolated_home / "models").exists() else True


def test_search_then_offline_uses_cache_and_pull_refused(isolated_home: Path, starter_model: Path) -> None:
    state = HubState(repos={REPO: {"SmolLM2-135M-Instruct-Q4_1.gguf": b"GGUF" + b"\0" * 100}})
    with FakeHub(state) as hub:
        online = one_json(localchat("models", "search", "smollm2", "--json", home=isolated_home, HF_ENDPOINT=hub.url,
                                    HF_HUB_OFFLINE="0"))
        assert online["results"][0]["repo"] == REPO and online["cached"] is False
        files = one_json(localchat("models", "search", REPO, "--files", "--json", home=isolated_home,
                                   HF_ENDPOINT=hub.url, HF_HUB_OFFLINE="0"))
        assert files["results"][0]["quant"] == "Q4_1" and files["results"][0]["files"][0]["sha256"]
        requests_before = len(state.requests)
        d = one_json(localchat("models", "search", "smollm2", "--json", home=isolated_home, HF_ENDPOINT=hub.url,
                               HF_HUB_OFFLINE="1"))
        assert d["cached"] is True and d["results"][0]["repo"] == REPO and "offline mode is on" in d["note"]
        f2 = one_json(localchat("models", "search", REPO, "--files", "--json", home=isolated_home,
                                HF_ENDPOINT=hub.url, HF_HUB_OFFLINE="1"))
        assert f2["cached"] is True and f2["results"] == files["results"]
        # the catalogue answers offline too
        cat = one_json(localchat("models", "search", "qwen 14b", "--json", home=isolated_home, HF_ENDPOINT=hub.url,
                                 HF_HUB_OFFLINE="1"))
        assert [c["id"] for c in cat["catalogue"]] == ["r1-distill-qwen-14b"] and cat["results"] == []
        pull = localchat("models", "pull", REPO, "--json", home=isolated_home, HF_ENDPOINT=hub.url,
                         HF_HUB_OFFLINE="1")
        assert pull.returncode == 1 and pull.stdout == "" and "offline mode is on" in pull.stderr
        never = localchat("models", "search", "zzz-unknown", "--json", home=isolated_home, HF_ENDPOINT=hub.url,
                          HF_HUB_OFFLINE="1")
        assert never.returncode == 1 and never.stdout == "" and "offline" in never.stderr
        assert len(state.requests) == requests_before  # offline means not one request
        listing = one_json(localchat("models", "list", "--json", home=isolated_home, HF_HUB_OFFLINE="1"))
        assert listing["models"]
        info = one_json(localchat("models", "info", "smollm2-135m", "--json", home=isolated_home, HF_HUB_OFFLINE="1"))
        assert info["architecture"] == "llama"


def test_pull_needs_a_choice(isolated_home: Path) -> None:
    state = HubState(repos={REPO: {"a-Q4_0.gguf": b"x", "b-Q8_0.gguf": b"y"}})
    with FakeHub(state) as hub:
        r = localchat("models", "pull", REPO, "--quant", "Q9_9", "--json", home=isolated_home, HF_ENDPOINT=hub.url,
                      HF_HUB_OFFLINE="0")
        r2 = localchat("models", "pull", REPO, home=isolated_home, HF_ENDPOINT=hub.url, HF_HUB_OFFLINE="0")
    assert r.returncode == 2 and r.stdout == "" and "no quant 'Q9_9'" in r.stderr and "a-Q4_0.gguf (Q4_0" in r.stderr
    assert r2.returncode == 2 and "say which file to pull" in r2.stderr


# -- bad input never prints a traceback (issue 11 items 4, 5, 12) --------------------------------------------

def no_traceback(r: subprocess.CompletedProcess[str], code: int = 1) -> str:
    assert r.returncode == code, (r.returncode, r.stderr)
    assert "Traceback" not in r.stderr and r.stdout == ""
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("localchat: error: "), r.stderr
    return lines[0]


def test_import_refuses_bad_names_and_odd_files_without_leaving_copies(isolated_home: Path, starter_model: Path,
                                                                       tmp_path: Path) -> None:
    src = tmp_path / "model.gguf"
    src.write_bytes(starter_model.read_bytes())
    assert "invalid model name 'Bad Name'" in no_traceback(
        localchat("models", "import", str(src), "--name", "Bad Name", "--json", home=isolated_home))
    models = isolated_home / "models"
    assert not models.exists() or not any(models.iterdir())  # nothing copied, nothing left
    fifo = tmp_path / "pipe.gguf"
    os.mkfifo(fifo)
    assert "is a FIFO (named pipe), not a model file" in no_traceback(
        localchat("models", "import", str(fifo), "--json", home=isolated_home))  # returns: it never opens it
    loop = tmp_path / "loop.gguf"
    loop.symlink_to(loop)
    assert "Too many levels of symbolic links" in no_traceback(
        localchat("models", "import", str(loop), "--json", home=isolated_home))
    big = tmp_path / "big-00001-of-99999.gguf"
    big.write_bytes(starter_model.read_bytes())
    line = no_traceback(localchat("models", "import", str(big), "--json", home=isolated_home))
    assert len(line) < 500
    assert not models.exists() or not any(models.iterdir())


def test_damaged_library_is_reported_in_one_line_and_the_rest_works(isolated_home: Path, starter_model: Path,
                                                                    tmp_path: Path) -> None:
    lib = isolated_home / "data" / "library.json"
    lib.parent.mkdir(parents=True)
    lib.write_text("[]")
    r = localchat("models", "list", "--json", home=isolated_home)
    assert r.returncode == 0 and "Traceback" not in r.stderr and "unreadable" in r.stderr
    assert isinstance(json.loads(r.stdout)["models"], list)
    for n in "abc":
        (tmp_path / n).write_text(n)
    lib.write_text(json.dumps({"version": 1, "models": [
        {"name": "ok", "path": str(starter_model), "size": 5, "in_place": True},
        {"name": "p5", "path": 5, "size": 1}, {"name": "big", "path": str(starter_model), "size": "big"},
        {"name": "ex", "path": str(starter_model), "size": 1, "extra": [1]},
        {"name": "abc", "path": str(tmp_path / "a"), "size": 1, "parts": "abc"}, {"size": 1}]}))
    r = localchat("models", "list", home=isolated_home)
    assert r.returncode == 0 and "Traceback" not in r.stderr and "ok" in r.stdout
    warnings = [line for line in r.stderr.splitlines() if "damaged" in line]
    assert len(warnings) == 1 and "5 damaged library entries set aside in" in warnings[0]
    rm = subprocess.run([sys.executable, "-m", "localchat", "models", "rm", "abc"], capture_output=True, text=True,
                        cwd=tmp_path, env=dict(os.environ, LOCALCHAT_HOME=str(isolated_home)), timeout=180)
    assert "no model named 'abc'" in no_traceback(rm)
    assert all((tmp_path / n).read_text() == n for n in "abc")
    assert [m["name"] for m in one_json(localchat("models", "list", "--json", home=isolated_home))["models"]
            if m["name"] == "ok"] == ["ok"]


def test_rm_keeps_a_file_outside_the_models_folder(isolated_home: Path, tmp_path: Path) -> None:
    outside = tmp_path / "precious.gguf"
    outside.write_bytes(b"mine")
    lib = isolated_home / "data" / "library.json"
    lib.parent.mkdir(parents=True)
    lib.write_text(json.dumps({"version": 1, "models": [{"name": "x", "path": str(outside), "size": 4}]}))
    r = one_json(localchat("models", "rm", "x", "--json", home=isolated_home))
    assert r == {"removed": "x", "deleted_files": [], "kept_files": [str(outside)]} and outside.exists()


def test_pull_refuses_a_bad_name_before_asking_the_hub(isolated_home: Path) -> None:
    state = HubState(repos={REPO: {"a-Q4_0.gguf": b"x"}})
    with FakeHub(state) as hub:
        r = localchat("models", "pull", REPO, "--name", "Bad Name", "--json", home=isolated_home,
                      HF_ENDPOINT=hub.url, HF_HUB_OFFLINE="0")
    assert "invalid model name" in no_traceback(r, 2) and state.requests == []


def test_fit_reads_the_header_of_a_hub_model_before_downloading(isolated_home: Path, tmp_path: Path) -> None:
    import struct

    from model_shapes import write_r1_qwen14b_q4km

    name = "DeepSeek-R1-Distill-Qwen-14B-Q4_K_M.gguf"
    r1 = write_r1_qwen14b_q4km(tmp_path / name)
    state = HubState(disk_files={"org/R1-14B-GGUF": {name: r1}},
                     repos={"org/bad": {"bad-Q4_0.gguf": b"GGUF" + struct.pack("<IQQ", 3, 1 << 40, 1) + bytes(64)}})
    with FakeHub(state) as hub:
        env = {"HF_ENDPOINT": hub.url, "HF_HUB_OFFLINE": "0"}
        d = one_json(localchat("models", "fit", "org/R1-14B-GGUF", "--json", home=isolated_home, **env))
        assert d["name"] == name and d["n_layers"] == 48 and d["verdict"] in ("full_gpu", "partial", "cpu",
                                                                                "too_large")
        assert d["size"] == r1.stat().st_size and 0 < d["header_bytes_read"] < 8 * 2**20
        assert d["predicted_decode_tokens_per_s"] is None or d["predicted_decode_tokens_per_s"]["value"] > 0
        assert d["llama_cpp_error"] is None and abs(sum(d["llama_cpp_compute_bytes"].values())
                                                    - d["compute_bytes"]) <= 0.02 * 2**20
        text = localchat("models", "fit", "org/R1-14B-GGUF", "--ctx", "4096", home=isolated_home, **env)
        assert text.returncode == 0 and "14.77 B parameters" in text.stdout and "here: " in text.stdout
        assert "llama.cpp's dry run here: compute buffer" in text.stdout
        bad = localchat("models", "fit", "org/bad", home=isolated_home, **env)
        assert bad.returncode != 0 and "not a usable GGUF" in bad.stderr and "Traceback" not in bad.stderr
        assert len(bad.stderr.strip().splitlines()) == 1
        assert not list((isolated_home / "models").rglob("*.gguf*"))  # nothing downloaded
    offline = localchat("models", "fit", "org/R1-14B-GGUF", home=isolated_home, HF_ENDPOINT=hub.url,
                        HF_HUB_OFFLINE="1")
    assert offline.returncode != 0 and "offline mode is on" in offline.stderr
