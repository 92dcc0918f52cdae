"""The PyInstaller build, as an installed user gets it: runs only when `make package` has built dist/localchat.

`.ci/run` builds it after `make test`, then runs this file (docs/PACKAGING.md says why it belongs in CI). Every run
uses a fresh home and an empty per-machine cache, so the model that answers is the one inside the build.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from strict import skip_or_fail

ROOT = Path(__file__).resolve().parents[2]
DIST = ROOT / "dist" / "localchat"
EXE = DIST / "localchat"
INTERNAL = DIST / "_internal"
STARTER_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
# Wayland's client libraries come with a Wayland desktop (PyInstaller bundles them when the build machine has them);
# without them Qt falls back to xcb.
FROM_THE_DESKTOP = ("libwayland-",)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the frozen build is smoke-tested on Linux"),
    pytest.mark.skipif(not EXE.is_file(), reason="no frozen build in dist/localchat: run `make package` first"),
]


def run(exe: Path, *args: str, home: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """Start the frozen app like a user would: headless, offline, with its own home and no machine-wide starter."""
    e = dict(os.environ, LOCALCHAT_HOME=str(home), QT_QPA_PLATFORM="offscreen", HF_HUB_OFFLINE="1",
             LOCALCHAT_MACHINE_CACHE=str(home.parent / "machine-cache"))
    e.update(env)
    for leak in ("LOCALCHAT_STARTER_MODEL", "PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV"):
        e.pop(leak, None)
    return subprocess.run([str(exe), *args], capture_output=True, text=True, env=e, timeout=180)


def link_copy(dest: Path) -> Path:
    """A second installation of the build (hard links: instant, no extra disk); returns its executable."""
    shutil.copytree(DIST, dest, symlinks=True, copy_function=os.link)
    return dest / "localchat"


def test_version_comes_from_pyproject(tmp_path: Path) -> None:
    version = importlib.metadata.version("localchat")  # the editable install's, i.e. pyproject's
    r = run(EXE, "--version", home=tmp_path / "home")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"localchat {version}"


def test_llama_cpp_libraries_are_where_llama_cpp_looks() -> None:
    libs = {p.name for p in (INTERNAL / "llama_cpp" / "lib").iterdir()}
    assert "libllama.so" in libs
    assert {"libggml.so", "libggml-base.so"} <= libs, libs


def test_only_the_qt_the_app_uses() -> None:
    qt = INTERNAL / "PySide6"
    modules = {p.name.split(".")[0] for p in qt.glob("Qt*.so")}
    assert modules == {"QtCore", "QtGui", "QtWidgets"}, modules
    libs = {p.name.split(".")[0] for p in (qt / "Qt" / "lib").iterdir()}
    # (libQt6Svg stays: the Adwaita window decorations on GNOME Wayland draw with it)
    for unused in ("libQt6Network", "libQt6WebEngineCore", "libQt6Qml", "libQt6Quick", "libQt6Pdf"):
        assert unused not in libs
    platforms = {p.name for p in (qt / "Qt" / "plugins" / "platforms").iterdir()}
    assert {"libqxcb.so", "libqoffscreen.so", "libqwayland.so"} <= platforms, platforms
    assert "libqvnc.so" not in platforms  # would pull QtNetwork back in
    assert not list(qt.rglob("*.qm")), "Qt translations are trimmed"
    assert not list(INTERNAL.rglob("libgtk-3*")) and not list(INTERNAL.rglob("libcairo*"))


def test_no_dangling_links() -> None:
    assert [str(p) for p in DIST.rglob("*") if p.is_symlink() and not p.exists()] == []


def test_every_bundled_library_resolves() -> None:
    """The "Shared library ... not found" class of bug, checked for every ELF file in the build at once."""
    if not shutil.which("ldd"):
        pytest.skip("no ldd")
    elves = [p for p in INTERNAL.rglob("*.so*") if p.is_file() and not p.is_symlink()]
    lib_dirs = sorted({str(p.parent) for p in elves})
    env = dict(os.environ, LD_LIBRARY_PATH=":".join(lib_dirs))
    missing = {}
    for elf in [EXE, *elves]:
        out = subprocess.run(["ldd", str(elf)], capture_output=True, text=True, env=env).stdout
        gone = [line.split()[0] for line in out.splitlines()
                if "not found" in line and not line.split()[0].startswith(FROM_THE_DESKTOP)]
        if gone:
            missing[str(elf.relative_to(DIST))] = gone
    assert not missing, missing


# isolation: skip_or_fail inside (the module's skip when there is no build is not an isolation skip)
def test_self_test_answers_from_the_bundled_starter_in_the_frozen_worker(tmp_path: Path) -> None:
    home = tmp_path / "home"
    r = run(EXE, "--self-test", home=home)
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["ok"] and d["answer"].strip()
    assert d["isolation"]["pid"] == d["worker_pid"]
    assert r.stderr.count("isolation: ") == 1  # its own line
    if d["isolation"]["isolated"] is not True:
        skip_or_fail(f"the frozen worker was not isolated here: {d['isolation'].get('reason')}")
    assert d["isolated"] is True and "isolation: kernel-isolated" in r.stderr
    assert [c["result"] for c in d["isolation"]["canary"]] == ["ENETUNREACH", "ENETUNREACH"]
    required = run(EXE, "--self-test", home=home, LOCALCHAT_ISOLATION="require")  # the policy holds frozen too
    assert required.returncode == 0 and json.loads(required.stdout)["policy"] == "require", required.stderr
    listing = run(EXE, "models", "list", "--json", home=home)
    (starter,) = json.loads(listing.stdout)["models"]
    assert starter["path"] == str(INTERNAL / "resources" / "models" / STARTER_FILE)  # sys._MEIPASS/resources/models
    assert not (home.parent / "machine-cache" / STARTER_FILE).exists()  # nothing fetched or copied


def test_window_opens_offscreen(tmp_path: Path) -> None:
    r = run(EXE, home=tmp_path / "home", LOCALCHAT_SMOKE_QUIT_MS="1500")
    assert r.returncode == 0, r.stderr
    assert "window shown: localchat" in r.stdout


@pytest.mark.xvfb
def test_window_opens_on_x11_through_the_bundled_xcb_plugin(tmp_path: Path) -> None:
    if not shutil.which("xvfb-run"):
        pytest.skip("xvfb-run not installed (tests/system-deps.sh installs it)")
    e = dict(os.environ, LOCALCHAT_HOME=str(tmp_path / "home"), QT_QPA_PLATFORM="xcb", HF_HUB_OFFLINE="1",
             LOCALCHAT_MACHINE_CACHE=str(tmp_path / "machine-cache"), LOCALCHAT_SMOKE_QUIT_MS="1500")
    r = subprocess.run(["xvfb-run", "-a", "-s", "-screen 0 1280x800x24", str(EXE)], capture_output=True, text=True,
                       env=e, timeout=180)
    # (QT_DEBUG_PLUGINS=1 would show the plugin path, but makes PySide6 6.12 segfault at exit, frozen or not)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "window shown: localchat" in r.stdout


@pytest.fixture(scope="module")
def no_starter_install(tmp_path_factory: pytest.TempPathFactory) -> Path:
    exe = link_copy(tmp_path_factory.mktemp("install") / "localchat")
    (exe.parent / "_internal" / "resources" / "models" / STARTER_FILE).unlink()
    return exe


def test_no_starter_model_still_opens_and_says_what_to_do(no_starter_install: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    listing = run(no_starter_install, "models", "list", "--json", home=home)
    assert listing.returncode == 0 and json.loads(listing.stdout)["models"] == []
    assert "missing from this installation" in listing.stderr
    st = run(no_starter_install, "--self-test", home=home)
    assert st.returncode == 1 and "reinstall localchat" in st.stderr
    win = run(no_starter_install, home=home, LOCALCHAT_SMOKE_QUIT_MS="1500")
    assert win.returncode == 0, win.stderr
    assert "No model installed" in win.stdout


def test_missing_models_folder(tmp_path: Path) -> None:
    home = tmp_path / "home"
    assert run(EXE, "models", "list", "--json", home=home).returncode == 0
    shutil.rmtree(home / "models")  # the user deleted it (or it lived on a disk that is gone)
    r = run(EXE, "--self-test", home=home)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["ok"]
    assert (home / "models").is_dir()


def test_moved_install_finds_its_starter_again(tmp_path: Path) -> None:
    home = tmp_path / "home"
    old = link_copy(tmp_path / "old" / "localchat")
    assert run(old, "models", "list", "--json", home=home).returncode == 0  # registered under the old folder
    shutil.rmtree(tmp_path / "old")  # upgraded / moved: the old folder is gone
    win = run(EXE, home=home, LOCALCHAT_SMOKE_QUIT_MS="1500")  # the user opens the new one
    assert win.returncode == 0, win.stderr
    r = run(EXE, "models", "list", "--json", home=home)
    (starter,) = json.loads(r.stdout)["models"]
    assert starter["present"] and starter["path"].startswith(str(DIST))


def test_read_only_install(tmp_path: Path) -> None:
    if os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip("a read-only bind mount needs root")
    ro = tmp_path / "ro"
    ro.mkdir()
    if subprocess.run(["mount", "--bind", "-o", "ro", str(DIST), str(ro)], capture_output=True).returncode != 0:
        pytest.skip("bind mounts not permitted here")
    try:
        assert subprocess.run(["touch", str(ro / "probe")], capture_output=True).returncode != 0  # really read-only
        home = tmp_path / "home"
        r = run(ro / "localchat", "--self-test", home=home)
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)["ok"]
        win = run(ro / "localchat", home=home, LOCALCHAT_SMOKE_QUIT_MS="1500")
        assert win.returncode == 0 and "window shown: localchat" in win.stdout, win.stderr
    finally:
        subprocess.run(["umount", str(ro)])


def test_deb_installs_the_app_a_launcher_a_desktop_entry_and_icons() -> None:
    debs = sorted((ROOT / "dist").glob("localchat_*.deb"))
    if not debs or not shutil.which("dpkg-deb"):
        pytest.skip("no .deb built (dpkg-deb missing when `make package` ran)")
    listing = subprocess.run(["dpkg-deb", "-c", str(debs[-1])], capture_output=True, text=True, check=True).stdout
    paths = {line.split()[5].removeprefix(".") for line in listing.splitlines()}
    assert {"/opt/localchat/localchat", "/usr/bin/localchat", "/usr/share/applications/localchat.desktop",
            "/usr/share/icons/hicolor/256x256/apps/localchat.png",
            "/opt/localchat/_internal/resources/models/" + STARTER_FILE} <= paths
    control = subprocess.run(["dpkg-deb", "-f", str(debs[-1])], capture_output=True, text=True, check=True).stdout
    assert f"Version: {importlib.metadata.version('localchat')}" in control
    if shutil.which("desktop-file-validate"):
        r = subprocess.run(["desktop-file-validate", str(ROOT / "packaging" / "linux" / "localchat.desktop")],
                           capture_output=True, text=True)
        assert r.returncode == 0, r.stdout + r.stderr
