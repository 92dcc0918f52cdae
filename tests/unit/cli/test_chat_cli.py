"""`localchat chat` end to end, as a subprocess with its own home."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from strict import skip_or_fail

pytestmark = pytest.mark.slow


def localchat(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, LOCALCHAT_HOME=str(home))
    return subprocess.run([sys.executable, "-m", "localchat", *args], capture_output=True, text=True, env=env,
                          timeout=120)


def test_chat_json_fields(isolated_home: Path, starter_model: Path) -> None:
    proc = localchat("chat", "--model", "smollm2-135m", "--json", "--seed", "4", "--max-tokens", "48",
                     "--temperature", "0", "What is the capital of France? Answer in one sentence.", home=isolated_home)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)  # exactly one JSON object
    for key in ("text", "reasoning", "prompt_tokens", "completion_tokens", "ttft_s", "decode_tokens_per_s",
                "load_s", "n_gpu_layers", "isolation"):
        assert key in out
    assert "paris" in out["text"].lower()
    assert out["reasoning"] == ""
    assert out["prompt_tokens"] > 5 and 0 < out["completion_tokens"] <= 48
    assert out["ttft_s"] > 0 and out["decode_tokens_per_s"] > 0 and out["load_s"] > 0
    assert out["n_gpu_layers"] == 0
    assert isinstance(out["isolation"], dict) and "isolated" in out["isolation"]


def test_chat_by_path_streams_to_terminal(isolated_home: Path, starter_model: Path) -> None:
    proc = localchat("chat", "--model", str(starter_model), "--max-tokens", "8", "Hi", home=isolated_home)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip()
    assert "tok/s" in proc.stderr


def test_unknown_model_is_a_clear_error(isolated_home: Path) -> None:
    proc = localchat("chat", "--model", "no-such-model", "--json", "hi", home=isolated_home)
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert "no model named 'no-such-model'" in proc.stderr


def test_prompt_longer_than_context(isolated_home: Path, starter_model: Path) -> None:
    proc = localchat("chat", "--model", "smollm2-135m", "--ctx", "256", "--json", "word " * 600, home=isolated_home)
    assert proc.returncode == 1
    assert "context holds 256 tokens" in proc.stderr


def test_models_list_json(isolated_home: Path, starter_model: Path) -> None:
    proc = localchat("models", "list", "--json", home=isolated_home)
    assert proc.returncode == 0, proc.stderr
    names = [m["name"] for m in json.loads(proc.stdout)["models"]]
    assert "smollm2-135m" in names


@pytest.mark.isolation
def test_netcheck_json(isolated_home: Path, starter_model: Path) -> None:
    proc = localchat("netcheck", "--json", "--export", str(isolated_home / "report"), home=isolated_home)
    d = json.loads(proc.stdout)
    iso = d["worker"]["isolation"]
    if not iso["isolated"]:  # the not-isolated outcome is produced for real in tests/e2e/test_privacy.py
        assert proc.returncode == 1
        skip_or_fail(f"worker isolation unavailable here: {iso['reason']}")
    assert proc.returncode == 0, proc.stderr
    assert d["app"]["outbound_internet_connections"] == 0
    assert d["lockdown"]["HF_HUB_OFFLINE"] == "1"
    assert "kernel-isolated" in d["headline"] and d["silent"] is True
    assert {c["result"] for c in iso["canary"]} == {"ENETUNREACH"}
    assert (isolated_home / "report" / "localchat-privacy-report.json").is_file()
    assert "What this does not cover" in (isolated_home / "report" / "localchat-privacy-report.txt").read_text()
