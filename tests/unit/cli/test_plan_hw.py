"""`localchat plan` and `localchat hw` as a user runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from model_shapes import write_r1_qwen14b_q4km


def localchat(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, LOCALCHAT_HOME=str(home))
    return subprocess.run([sys.executable, "-m", "localchat", *args], capture_output=True, text=True, env=env,
                          timeout=120)


@pytest.fixture(scope="module")
def r1_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_r1_qwen14b_q4km(tmp_path_factory.mktemp("m") / "r1.gguf", with_tokenizer=False)


def test_plan_json_fields(r1_path: Path, isolated_home: Path) -> None:
    proc = localchat("plan", str(r1_path), "--ctx", "8192", "--gpu-mem", "12GiB", "--json", home=isolated_home)
    assert proc.returncode == 0, proc.stderr
    d = json.loads(proc.stdout)
    for key in ("n_layers", "n_gpu_layers", "n_ctx", "weights_bytes", "kv_bytes", "compute_bytes", "gpu_bytes",
                "cpu_bytes", "tensor_split", "flash_attn", "kv_type", "verdict", "reasons"):
        assert key in d
    assert d["n_layers"] == 48 and d["n_gpu_layers"] == 49 and d["verdict"] == "full_gpu"
    assert isinstance(d["gpu_bytes"], list) and len(d["gpu_bytes"]) == 1
    assert all(isinstance(r, str) and r for r in d["reasons"])


def test_plan_text_and_starter_by_name(isolated_home: Path, starter_model: Path) -> None:
    proc = localchat("plan", "smollm2-135m", "--gpu-mem", "0", "--ram", "8GiB", home=isolated_home)
    assert proc.returncode != 0  # not registered in this fresh home yet
    assert "no model named" in proc.stderr
    localchat("models", "list", home=isolated_home)  # registers the starter
    proc = localchat("plan", "smollm2-135m", "--gpu-mem", "0", "--ram", "8GiB", home=isolated_home)
    assert proc.returncode == 0, proc.stderr
    assert "verdict: cpu" in proc.stdout and "KV cache" in proc.stdout


@pytest.mark.parametrize("gpu_mem", ["-1GiB", "lots", "1MiB", "99999TiB"])
def test_absurd_gpu_mem_rejected(r1_path: Path, isolated_home: Path, gpu_mem: str) -> None:
    proc = localchat("plan", str(r1_path), "--gpu-mem", gpu_mem, "--json", home=isolated_home)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert "error:" in proc.stderr


def test_not_a_model(tmp_path: Path, isolated_home: Path) -> None:
    bad = tmp_path / "notes.gguf"
    bad.write_text("hello\n")
    proc = localchat("plan", str(bad), "--json", home=isolated_home)
    assert proc.returncode == 1 and "not a GGUF model" in proc.stderr


def test_hw_json(isolated_home: Path) -> None:
    proc = localchat("hw", "--json", home=isolated_home)
    assert proc.returncode == 0, proc.stderr
    d = json.loads(proc.stdout)
    assert d["ram_total"] > 0 and d["physical_cores"] >= 1 and isinstance(d["gpus"], list)
    assert any(dev["type"] == "cpu" for dev in d["llama_devices"])


def test_plan_shows_the_measured_speed_once_the_model_has_run(r1_path: Path, isolated_home: Path) -> None:
    from localchat.core.hardware.speed_log import record_decode

    args = ("plan", str(r1_path), "--gpu-mem", "0", "--ram", "32GiB")
    assert json.loads(localchat(*args, "--json", home=isolated_home).stdout)["measured_decode_tokens_per_s"] is None
    for v in (4.0, 5.0, 6.0):
        record_decode(isolated_home / "data", r1_path, v, completion_tokens=64)
    d = json.loads(localchat(*args, "--json", home=isolated_home).stdout)
    assert d["measured_decode_tokens_per_s"] == {"value": 5.0, "turns": 3}
    assert d["predicted_decode_tokens_per_s"] is not None  # the prediction stays, for comparison
    assert "decode: 5.0 tok/s measured (median of its last 3 turns here)" in localchat(*args, home=isolated_home).stdout
