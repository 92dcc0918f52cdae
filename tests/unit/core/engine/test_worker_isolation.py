"""The real worker with isolation ``auto``: kernel-isolated here, llama.cpp's device probe runs inside it (never in
this process), and code in the current folder never runs in it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from strict import skip_or_fail

from localchat.core.engine.client import EngineClient

pytestmark = [pytest.mark.slow, pytest.mark.isolation]


def _maps_native(pid: int | str = "self") -> list[str]:
    with open(f"/proc/{pid}/maps", encoding="utf-8") as fh:
        return sorted({line.split()[-1] for line in fh if "libllama" in line or "libggml" in line})


def test_auto_worker_is_kernel_isolated_and_probes_llama_cpp_inside() -> None:
    with EngineClient(isolation="auto") as client:
        assert client.hello is not None
        iso = client.hello.isolation
        if not iso["isolated"]:
            skip_or_fail(f"worker isolation unavailable here: {iso['reason']}")
        assert iso["netns"] != iso["parent_netns"] and all(c["blocked"] for c in iso["canary"])
        result = client.probe()
        assert any(d["type"] == "cpu" for d in result["devices"]) and isinstance(result["cpu_repack_types"], list)
        assert client.pid is not None and _maps_native(client.pid)  # mapped there, in the sandbox
        assert os.stat(f"/proc/{client.pid}/ns/net").st_ino != os.stat("/proc/self/ns/net").st_ino
        assert client.ping()  # the worker serves on after a probe
    assert _maps_native() == []  # and never here


def test_code_in_the_current_folder_never_runs_in_the_worker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                             starter_model: Path) -> None:
    marker = tmp_path / "ran"
    for name in ("queue.py", "argparse.py", "llama_cpp/__init__.py"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(f"open({str(marker)!r}, 'a').write({name!r} + '\\n')\n")
    monkeypatch.chdir(tmp_path)
    with EngineClient(isolation="auto") as client:
        assert client.probe()["devices"]
        client.load(starter_model)
    assert not marker.exists(), marker.read_text()
