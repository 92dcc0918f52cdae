"""Several localchat processes on one home at once (issue 11): real `python -m localchat` processes, a real local Hub
(tests/hubserver.py), real files; checked by what ends up in the library and on disk."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hubserver import FakeHub, HubState

from localchat.core.models.download import DownloadJob
from localchat.core.models.hub import repo_models
from localchat.core.models.library import Library

REPO = "test-org/SmolLM2-135M-Instruct-GGUF"
FILE = "SmolLM2-135M-Instruct-Q4_1.gguf"


def write_tiny_gguf(path: Path, name: str) -> Path:
    import gguf
    import numpy as np

    w = gguf.GGUFWriter(str(path), "llama")
    w.add_name(name)
    w.add_tensor("t", np.full(16, len(name), dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def localchat_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "localchat", *args]


def env_for(home: Path, **extra: str) -> dict[str, str]:
    e = dict(os.environ, LOCALCHAT_HOME=str(home), **extra)
    e.pop("LOCALCHAT_USER_OFFLINE", None)
    return e


@pytest.mark.slow
def test_twenty_imports_at_once_all_registered(isolated_home: Path, tmp_path: Path) -> None:
    sources = [write_tiny_gguf(tmp_path / f"model-{i}.gguf", f"model {i}") for i in range(20)]
    procs = [subprocess.Popen(localchat_cmd("models", "import", str(src), "--name", f"m{i}", "--json"),
                              env=env_for(isolated_home), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i, src in enumerate(sources)]
    results = [(p, *p.communicate(timeout=300)) for p in procs]
    for p, out, err in results:
        assert p.returncode == 0, err
        assert "Traceback" not in err
        json.loads(out)
    lib = Library(isolated_home / "data" / "library.json", isolated_home / "models")
    entries = {e.name: e for e in lib.entries()}
    assert sorted(entries) == sorted(f"m{i}" for i in range(20))
    for i, src in enumerate(sources):
        e = entries[f"m{i}"]
        assert Path(e.path).read_bytes() == src.read_bytes() and e.size == src.stat().st_size
    assert sorted(p.name for p in (isolated_home / "models").iterdir()) == sorted(s.name for s in sources)


@dataclass
class GatedHub(HubState):
    """The local Hub, holding every transfer once ``hold_after`` bytes have gone out until ``gate`` is set: a
    download that is certainly still running while the test starts or checks another process."""

    hold_after: int = 0
    gate: threading.Event = field(default_factory=threading.Event)

    @property  # type: ignore[override]
    def rate_bps(self) -> float | None:  # read by the server after each block it sends
        if self.served >= self.hold_after:
            self.gate.wait(120)
        return None

    @rate_bps.setter
    def rate_bps(self, value: float | None) -> None:
        pass


@pytest.mark.slow
@pytest.mark.parametrize("after_a_paused_pull", [False, True])
def test_two_pulls_at_once_install_the_real_file_once(isolated_home: Path, starter_model: Path,
                                                      after_a_paused_pull: bool) -> None:
    data = starter_model.read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    state = GatedHub(repos={REPO: {FILE: data}}, hold_after=1 << 62)
    with FakeHub(state) as hub:
        if after_a_paused_pull:  # the partial file an interrupted pull leaves behind
            model = repo_models(REPO, endpoint=hub.url)[0]
            [(_f, target)] = DownloadJob(model, isolated_home / "models", endpoint=hub.url).targets()
            target.parent.mkdir(parents=True)
            target.with_name(target.name + ".part").write_bytes(data[:5_000_000])
        kept = sum(p.stat().st_size for p in (isolated_home / "models").rglob("*.part"))
        assert kept > 0 or not after_a_paused_pull
        served_before = state.served
        state.hold_after = served_before + 2_000_000
        env = env_for(isolated_home, HF_ENDPOINT=hub.url, HF_HUB_OFFLINE="0")
        cmd = localchat_cmd("models", "pull", REPO, FILE, "--json")
        procs = [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for _ in range(2)]
        try:
            # one of them downloads and is held by the Hub; the other must give up on its own
            deadline = time.monotonic() + 120
            while all(p.poll() is None for p in procs) and time.monotonic() < deadline:
                time.sleep(0.05)
            loser = next((p for p in procs if p.poll() is not None), None)
            assert loser is not None, "neither pull stopped while the other was downloading"
            winner = procs[1 - procs.index(loser)]
            assert winner.poll() is None  # still downloading: the Hub holds it
            lout, lerr = loser.communicate(timeout=60)
        finally:
            state.gate.set()
        wout, werr = winner.communicate(timeout=300)
    assert loser.returncode == 1 and lout == "" and "Traceback" not in lerr
    assert f"is already being downloaded by process {winner.pid}" in lerr
    assert winner.returncode == 0, werr
    installed = Path(json.loads(wout)["model"]["path"])
    assert hashlib.sha256(installed.read_bytes()).hexdigest() == sha
    lib = Library(isolated_home / "data" / "library.json", isolated_home / "models")
    [entry] = [e for e in lib.entries() if e.source == f"huggingface:{REPO}"]
    assert (entry.path, entry.sha256, entry.size) == (str(installed), sha, len(data))
    assert sorted(p.name for p in installed.parent.iterdir()) == [FILE]  # no .part, lock or manifest left
    assert state.served - served_before == len(data) - kept  # the rest of the file crossed the wire once


@pytest.mark.slow
def test_a_pull_after_the_other_finished_reuses_the_file(isolated_home: Path, starter_model: Path) -> None:
    """Not a race: the second pull finds the verified file in place and registers it without downloading."""
    data = starter_model.read_bytes()
    state = HubState(repos={REPO: {FILE: data}})
    with FakeHub(state) as hub:
        env = env_for(isolated_home, HF_ENDPOINT=hub.url, HF_HUB_OFFLINE="0")
        cmd = localchat_cmd("models", "pull", REPO, FILE, "--json")
        first = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
        second = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0 and second.returncode == 0, (first.stderr, second.stderr)
    assert json.loads(second.stdout)["bytes_fetched"] == 0 and state.served == len(data)
