"""The PyInstaller build, as an installed user gets it: runs only when `make package` has built dist/localchat.

`.ci/run` builds it after `make test`, then runs this file (see docs/PACKAGING.md).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DIST = ROOT / "dist" / "localchat"
EXE = DIST / "localchat"

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not EXE.is_file(),
                                                   reason="no frozen build: run `make package` first")]


def run(exe: Path, *args: str, home: Path, **env: str) -> subprocess.CompletedProcess[str]:
    e = dict(os.environ, LOCALCHAT_HOME=str(home), QT_QPA_PLATFORM="offscreen", HF_HUB_OFFLINE="1", **env)
    e.pop("LOCALCHAT_STARTER_MODEL", None)
    return subprocess.run([str(exe), *args], capture_output=True, text=True, env=e, timeout=180)


def test_self_test_in_the_frozen_worker(tmp_path: Path) -> None:
    r = run(EXE, "--self-test", home=tmp_path / "home")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["ok"] and d["answer"].strip()
    assert "isolated" in d["isolation"]


def test_window_opens_offscreen(tmp_path: Path) -> None:
    r = run(EXE, home=tmp_path / "home", LOCALCHAT_SMOKE_QUIT_MS="1500")
    assert r.returncode == 0, r.stderr
    assert "window shown: localchat" in r.stdout


@pytest.fixture(scope="module")
def no_starter_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    copy = tmp_path_factory.mktemp("install") / "localchat"
    shutil.copytree(DIST, copy, symlinks=True)
    for p in copy.rglob("SmolLM2-135M-Instruct.Q4_1.gguf"):
        p.unlink()
    return copy / "localchat"


def test_no_starter_model_still_opens_and_says_what_to_do(no_starter_copy: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    empty_cache = str(tmp_path / "machine-cache")  # a machine that never had the starter
    listing = run(no_starter_copy, "models", "list", "--json", home=home, LOCALCHAT_MACHINE_CACHE=empty_cache)
    assert listing.returncode == 0 and json.loads(listing.stdout)["models"] == []
    assert "missing from this installation" in listing.stderr
    st = run(no_starter_copy, "--self-test", home=home, LOCALCHAT_MACHINE_CACHE=empty_cache)
    assert st.returncode == 1 and "reinstall localchat" in st.stderr
    win = run(no_starter_copy, home=home, LOCALCHAT_SMOKE_QUIT_MS="1500", LOCALCHAT_MACHINE_CACHE=empty_cache)
    assert win.returncode == 0 and "No model installed" in win.stdout


def test_missing_models_folder_and_read_only_install(tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / "models").mkdir(parents=True)
    (home / "models").rmdir()  # a home whose models folder vanished
    if os.geteuid() == 0 and shutil.which("mount"):
        ro = tmp_path / "ro"
        ro.mkdir()
        if subprocess.run(["mount", "--bind", "-o", "ro", str(DIST), str(ro)]).returncode == 0:
            try:
                r = run(ro / "localchat", "--self-test", home=home)
                assert r.returncode == 0, r.stderr
                assert json.loads(r.stdout)["ok"]
            finally:
                subprocess.run(["umount", str(ro)])
            return
    r = run(EXE, "--self-test", home=home)
    assert r.returncode == 0, r.stderr
