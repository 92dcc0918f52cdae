"""The planner against llama.cpp itself: KV and compute buffers llama.cpp really allocated (its own log lines).

Real loads on the CPU: the starter model, and a shape-exact DeepSeek-R1-Distill-Qwen-14B Q4_K_M (real tensor table,
sparse zero data) that llama.cpp maps in seconds. KV within 3%, compute within 25%.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from model_shapes import write_r1_qwen14b_q4km

from localchat.core.engine.client import EngineClient
from localchat.core.engine.protocol import LoadOptions
from localchat.core.hardware.planner import MIB, ModelShape, compute_bytes, kv_bytes
from localchat.core.models.gguf_info import read_gguf

pytestmark = pytest.mark.slow


def logged_mib(log: str, what: str) -> float:
    m = re.findall(rf"CPU {what} buffer size =\s+([\d.]+) MiB", log)
    assert m, f"llama.cpp did not log its {what} buffer"
    return float(m[-1])


@pytest.fixture(scope="module")
def client():
    with EngineClient(isolation="off") as c:
        yield c


def check(client: EngineClient, path: Path, n_ctx: int, fa: bool) -> tuple[float, float]:
    info = client.load(path, LoadOptions(n_ctx=n_ctx, flash_attn=fa, n_threads=2))
    shape = ModelShape.from_gguf(read_gguf(path))
    kv_real, comp_real = logged_mib(info.load_log, "KV"), logged_mib(info.load_log, "compute")
    kv_ours, comp_ours = kv_bytes(shape, n_ctx) / MIB, compute_bytes(shape, n_ctx, fa) / MIB
    assert kv_ours == pytest.approx(kv_real, rel=0.03)
    assert comp_ours == pytest.approx(comp_real, rel=0.25)
    return kv_real, comp_real


@pytest.mark.parametrize("n_ctx, fa", [(512, False), (2048, False), (8192, False), (8192, True)])
def test_starter_model(client: EngineClient, starter_model: Path, n_ctx: int, fa: bool) -> None:
    check(client, starter_model, n_ctx, fa)


@pytest.fixture(scope="module")
def r1_14b(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_r1_qwen14b_q4km(tmp_path_factory.mktemp("shape") / "r1-14b-q4km.gguf")


@pytest.mark.parametrize("n_ctx, fa", [(2048, False), (8192, True)])
def test_r1_distill_qwen_14b_shape(client: EngineClient, r1_14b: Path, n_ctx: int, fa: bool) -> None:
    check(client, r1_14b, n_ctx, fa)
