"""The planner against llama.cpp itself: KV and compute buffers llama.cpp really allocated (its own log lines).

Real loads on the CPU through the inference worker: the starter model, and a shape-exact DeepSeek-R1-Distill-Qwen-14B
Q4_K_M (real tensor table, sparse zero data) that llama.cpp maps in seconds, and a mixture-of-experts layer shape
(Qwen3-30B-A3B: 128 experts, 8 active). KV within 3%, compute within 25%; the
CPU repack buffer is checked against the planner's figure for the types the ggml probe measured on this machine;
llama.cpp's per-layer device log has the planner's layer count (blocks + output).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from model_shapes import write_qwen3moe_shape, write_r1_qwen14b_q4km

from localchat.core.engine.client import EngineClient
from localchat.core.engine.protocol import LoadOptions
from localchat.core.hardware.planner import MIB, ModelShape, compute_bytes, kv_bytes, pad_ctx
from localchat.core.hardware.sizing import this_machine
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


def check(client: EngineClient, path: Path, n_ctx: int, fa: bool, kv: str = "f16") -> None:
    info = client.load(path, LoadOptions(n_ctx=n_ctx, flash_attn=fa, kv_type=kv, n_threads=2))
    shape = ModelShape.from_gguf(read_gguf(path))
    assert info.n_ctx == pad_ctx(n_ctx)
    # llama.cpp's own layer count: n_layers blocks + the output layer, each assigned a device (here the CPU)
    assigned = re.findall(r"layer\s+(\d+) assigned to device (\S+),", info.load_log)
    assert len(assigned) == shape.n_layers + 1 and {d for _, d in assigned} == {"CPU"}
    assert info.offloaded_layers in (None, 0)  # a CPU-only build logs no "offloaded N/M layers"
    kv_real, comp_real = logged_mib(info.load_log, "KV"), logged_mib(info.load_log, "compute")
    kv_ours, comp_ours = kv_bytes(shape, n_ctx, kv) / MIB, compute_bytes(shape, n_ctx, fa) / MIB
    assert kv_ours == pytest.approx(kv_real, rel=0.03)
    assert comp_ours == pytest.approx(comp_real, rel=0.25)
    repack = re.findall(r"CPU_REPACK model buffer size =\s+([\d.]+) MiB", info.load_log)
    types = this_machine().cpu_repack_types
    if types is not None:  # measured by the ggml probe on this machine
        ours = shape.repacked_bytes(frozenset(types)) / MIB
        assert ours == pytest.approx(float(repack[-1]) if repack else 0.0, rel=0.01, abs=0.5)


@pytest.mark.parametrize("n_ctx, fa, kv", [(256, False, "f16"), (1000, False, "f16"), (2048, False, "f16"),
                                           (8192, False, "f16"), (8192, True, "f16"), (8192, True, "q8_0")])
def test_starter_model(client: EngineClient, starter_model: Path, n_ctx: int, fa: bool, kv: str) -> None:
    check(client, starter_model, n_ctx, fa, kv)


@pytest.fixture(scope="module")
def r1_14b(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_r1_qwen14b_q4km(tmp_path_factory.mktemp("shape") / "r1-14b-q4km.gguf")


@pytest.mark.parametrize("n_ctx, fa, kv", [(2048, False, "f16"), (8192, False, "f16"), (4096, True, "q8_0")])
def test_r1_distill_qwen_14b_shape(client: EngineClient, r1_14b: Path, n_ctx: int, fa: bool, kv: str) -> None:
    check(client, r1_14b, n_ctx, fa, kv)


@pytest.fixture(scope="module")
def moe(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_qwen3moe_shape(tmp_path_factory.mktemp("shape") / "qwen3moe.gguf")


@pytest.mark.parametrize("n_ctx, fa", [(2048, False), (8192, False)])
def test_mixture_of_experts_shape(client: EngineClient, moe: Path, n_ctx: int, fa: bool) -> None:
    check(client, moe, n_ctx, fa)
