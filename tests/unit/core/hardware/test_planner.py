"""The planner on shape-exact models and simulated machines."""

from __future__ import annotations

from pathlib import Path

import pytest
from model_shapes import write_qwen2_shape, write_r1_qwen14b_q4km

from localchat.core.hardware.detect import GIB, GpuDevice, Machine
from localchat.core.hardware.planner import (
    ModelShape,
    assign_layers,
    compute_bytes,
    device_reserve,
    kv_bytes,
    pad_ctx,
    parse_size,
    plan_offload,
)
from localchat.core.hardware.sizing import fit_catalogue_quant, fit_gguf, machine_for
from localchat.core.models.catalogue import Catalogue
from localchat.core.models.gguf_info import read_gguf


@pytest.fixture(scope="module")
def r1_14b(tmp_path_factory: pytest.TempPathFactory) -> ModelShape:
    path = write_r1_qwen14b_q4km(tmp_path_factory.mktemp("shapes") / "r1-14b.gguf", with_tokenizer=False)
    return ModelShape.from_gguf(read_gguf(path))


@pytest.fixture(scope="module")
def llama70b(tmp_path_factory: pytest.TempPathFactory) -> ModelShape:
    path = write_qwen2_shape(tmp_path_factory.mktemp("shapes") / "70b.gguf", n_layers=80, n_embd=8192, n_heads=64,
                             n_kv=8, n_ff=28672, n_vocab=128256, n_ctx_train=131072, name="R1-Distill-Llama-70B",
                             with_tokenizer=False)
    return ModelShape.from_gguf(read_gguf(path))


def gpus(*gib: float, unified: bool = False) -> tuple[GpuDevice, ...]:
    return tuple(GpuDevice(i, "metal" if unified else "cuda", f"GPU{i}", int(g * GIB), int(g * GIB), unified)
                 for i, g in enumerate(gib))


def machine(*gpu_gib: float, ram_gib: float = 64, unified: bool = False) -> Machine:
    return Machine("test CPU", 8, 16, int(ram_gib * GIB), int(ram_gib * GIB), gpus(*gpu_gib, unified=unified))


def test_shape_is_per_layer_from_the_tensor_table(r1_14b: ModelShape) -> None:
    assert r1_14b.n_layers == 48 and len(set(r1_14b.layer_bytes)) == 2  # Q6_K "more bits" layers are bigger
    assert max(r1_14b.layer_bytes) > min(r1_14b.layer_bytes)
    assert 8.3 * GIB < r1_14b.weights_bytes < 8.4 * GIB
    assert r1_14b.output_bytes > r1_14b.embd_bytes  # output is Q6_K, embeddings Q4_K


def test_kv_arithmetic(r1_14b: ModelShape) -> None:
    assert kv_bytes(r1_14b, 8192) == 8192 * 48 * 8 * (128 + 128) * 2
    assert kv_bytes(r1_14b, 8192, "q8_0") == pytest.approx(kv_bytes(r1_14b, 8192) * 34 / 64, rel=1e-6)


def test_kv_context_is_padded_like_llama_cpp(r1_14b: ModelShape) -> None:
    assert (pad_ctx(1000), pad_ctx(4096), pad_ctx(1), pad_ctx(4097)) == (1024, 4096, 256, 4352)
    assert kv_bytes(r1_14b, 1000) == kv_bytes(r1_14b, 1024)
    # a context below the micro-batch shrinks it too (llama.cpp: n_ubatch = min(n_ubatch, n_ctx))
    assert compute_bytes(r1_14b, 256, True) < compute_bytes(r1_14b, 512, True)


def test_12gib_card_all_layers_at_8k(r1_14b: ModelShape) -> None:
    p = plan_offload(r1_14b, machine(12), 8192)
    assert p.verdict == "full_gpu" and p.n_gpu_layers == 49 and p.n_ctx == 8192 and p.kv_type == "f16"
    assert p.gpu_bytes[0] <= 12 * GIB - device_reserve(12 * GIB)
    assert p.gpu_bytes[0] == r1_14b.weights_bytes - r1_14b.embd_bytes + p.kv_bytes + p.compute_bytes
    assert any("fit on GPU0" in r for r in p.reasons)


def test_8gib_card_partial_with_a_sensible_count(r1_14b: ModelShape) -> None:
    p = plan_offload(r1_14b, machine(8), 8192, allow_ctx_reduction=False)
    assert p.verdict == "partial"
    assert 30 <= p.n_gpu_layers <= 47
    assert p.gpu_bytes[0] <= 8 * GIB
    assert any("run on the CPU" in r for r in p.reasons)
    # one more block would not have fitted
    more = plan_offload(r1_14b, machine(8), 8192, allow_ctx_reduction=False, gpu_layers_override=p.n_gpu_layers + 1,
                        kv_type=p.kv_type)
    assert more.n_gpu_layers == p.n_gpu_layers
    assert any("only" in r and "fit in" in r for r in more.reasons)


def test_24gib_full_at_32k(r1_14b: ModelShape) -> None:
    p = plan_offload(r1_14b, machine(24), 32768)
    assert (p.verdict, p.n_gpu_layers, p.n_ctx, p.kv_type) == ("full_gpu", 49, 32768, "f16")


def test_two_24gib_cards_split(r1_14b: ModelShape) -> None:
    p = plan_offload(r1_14b, machine(24, 24), 32768)
    assert p.verdict == "full_gpu" and p.tensor_split == [0.5, 0.5]
    assert all(0 < b <= 24 * GIB for b in p.gpu_bytes)
    # 49 layers cut at 0.5 as llama.cpp does: blocks 0-24 on the first card, 25-47 and the output on the second
    assert any("GPU0: 25 blocks, GPU1: 23 blocks + output" in r for r in p.reasons)


def test_uneven_cards_split_by_room(r1_14b: ModelShape) -> None:
    p = plan_offload(r1_14b, machine(24, 8), 131072, allow_ctx_reduction=False)
    assert p.verdict == "full_gpu" and p.tensor_split is not None and p.tensor_split[0] > p.tensor_split[1]
    for used, total in zip(p.gpu_bytes, (24, 8), strict=True):
        assert 0 < used <= total * GIB - device_reserve(total * GIB)


def test_layer_assignment_replays_llama_cpp() -> None:
    # 48 blocks, all + output on one GPU: blocks 0..47 and the output (index 48) on device 0
    assert assign_layers(48, 49, [1.0]) == [0] * 49
    # 10 GPU layers: the last 10 blocks; output stays on the CPU
    where = assign_layers(48, 10, [1.0])
    assert where[:38] == [-1] * 38 and where[38:48] == [0] * 10 and where[48] == -1
    # two GPUs, even split: the first takes the lower half, the output goes with the last run
    where = assign_layers(48, 49, [0.5, 0.5])
    assert where[:25] == [0] * 25 and where[25:] == [1] * 24
    # counts as proportions give exactly those counts
    where = assign_layers(48, 49, [38 / 49, 11 / 49])
    assert where.count(0) == 38 and where.count(1) == 11


def test_apple_16gb_unified(r1_14b: ModelShape) -> None:
    m = machine_for(None, "16GB", unified=True)
    assert m.gpus[0].unified and m.gpus[0].total_bytes == 16 * 10**9 * 2 // 3
    p = plan_offload(r1_14b, m, 8192)
    assert p.verdict == "full_gpu"
    assert p.kv_type == "q8_0"  # f16 KV at 8k does not fit Metal's working set beside the weights
    assert p.gpu_bytes[0] <= m.gpus[0].total_bytes


def test_cpu_only_16gb(r1_14b: ModelShape) -> None:
    p = plan_offload(r1_14b, machine(ram_gib=16), 4096)
    assert p.verdict == "cpu" and p.n_gpu_layers == 0 and p.gpu_bytes == [] and p.tensor_split is None
    assert any("repacks" in r for r in p.reasons)
    assert p.cpu_bytes == r1_14b.weights_bytes + p.kv_bytes + p.compute_bytes


def test_repack_uses_the_types_measured_on_the_machine(r1_14b: ModelShape) -> None:
    plain = Machine("test CPU", 8, 16, 64 * GIB, 64 * GIB, cpu_repack_types=())
    assert not any("repacks" in r for r in plan_offload(r1_14b, plain, 4096).reasons)
    q4k = Machine("test CPU", 8, 16, 64 * GIB, 64 * GIB, cpu_repack_types=("Q4_K",))
    text = " ".join(plan_offload(r1_14b, q4k, 4096).reasons)
    assert "repacks 5.97 GiB" in text  # 6108.75 MiB, what llama.cpp logged as CPU_REPACK for this shape


def test_override_wins_and_says_what_it_costs(r1_14b: ModelShape) -> None:
    fewer = plan_offload(r1_14b, machine(12), 8192, gpu_layers_override=20)
    assert fewer.n_gpu_layers == 20 and fewer.verdict == "partial"
    assert any("29 fewer than the 49 that fit" in r for r in fewer.reasons)
    everything = plan_offload(r1_14b, machine(8), 8192, gpu_layers_override=-1)
    assert everything.n_gpu_layers < 49
    assert any("you asked for all GPU layers; only" in r for r in everything.reasons)
    kept = plan_offload(r1_14b, machine(12), 32768, allow_ctx_reduction=False)
    assert any("with a 16384-token context every layer would fit" in r for r in kept.reasons)


def test_fits_nowhere(llama70b: ModelShape) -> None:
    p = plan_offload(llama70b, machine(12, ram_gib=16), 8192)
    assert p.verdict == "too_large"
    assert any(r.startswith("too large") and "RAM" in r for r in p.reasons)


def test_context_lowered_before_layers_dropped(r1_14b: ModelShape) -> None:
    p = plan_offload(r1_14b, machine(12), 32768)
    assert p.verdict == "full_gpu" and p.n_ctx < 32768
    assert any("-token context" in r for r in p.reasons)
    kept = plan_offload(r1_14b, machine(12), 32768, allow_ctx_reduction=False)
    assert kept.n_ctx == 32768 and kept.verdict == "partial"


def test_compute_estimate_grows_with_context_without_flash_attention(r1_14b: ModelShape) -> None:
    assert compute_bytes(r1_14b, 32768, False) > compute_bytes(r1_14b, 2048, False)
    assert compute_bytes(r1_14b, 32768, True) < compute_bytes(r1_14b, 32768, False)


def test_odd_metadata_still_plans_with_assumptions(tmp_path: Path) -> None:
    path = write_qwen2_shape(tmp_path / "odd.gguf", n_layers=4, n_embd=512, n_heads=8, n_kv=2, n_ff=1024,
                             n_vocab=1000, n_ctx_train=2048, name="odd", with_tokenizer=False, head_dims=False,
                             arch="mysterynet", n_experts=8)
    shape = ModelShape.from_gguf(read_gguf(path))
    p = plan_offload(shape, machine(4), 4096)
    text = " ".join(p.reasons)
    assert "derived 64" in text and "unknown architecture" in text and "mixture of experts" in text
    assert "more than the model was trained for" in text and p.n_ctx == 2048
    assert p.verdict == "full_gpu"


def test_fit_badges(tmp_path: Path, r1_14b: ModelShape) -> None:
    entry = next(e for e in Catalogue(tmp_path).entries() if e.id == "r1-distill-qwen-14b")
    q4 = next(q for q in entry.quants if q.quant == "Q4_K_M")
    approx = ModelShape.from_catalogue(name="x", file_size=q4.size, n_layers=48, n_embd=5120, n_kv_heads=8,
                                       head_dim=128, n_vocab=152064, n_ctx_train=131072, params_b=14.8)
    assert approx.weights_bytes == pytest.approx(r1_14b.weights_bytes, rel=0.08)
    assert fit_catalogue_quant(entry, q4, machine=machine(12)).verdict == "full_gpu"
    assert fit_catalogue_quant(entry, q4, machine=machine(8)).verdict == "partial"
    assert fit_catalogue_quant(entry, q4, machine=machine(ram_gib=32)).verdict == "cpu"
    assert fit_catalogue_quant(entry, q4, machine=machine(ram_gib=6)).summary == "does not fit"
    path = write_qwen2_shape(tmp_path / "small.gguf", n_layers=4, n_embd=512, n_heads=8, n_kv=2, n_ff=1024,
                             n_vocab=1000, n_ctx_train=4096, name="small", with_tokenizer=False)
    fit = fit_gguf(path, machine=machine(4))
    assert fit.verdict == "full_gpu" and fit.summary == "all on the GPU, 4k context"


@pytest.mark.parametrize("text, value", [("12GiB", 12 * GIB), ("8GB", 8 * 10**9), ("24G", 24 * GIB),
                                         ("16384MiB", 16 * GIB), ("1.5 GiB", int(1.5 * GIB)), ("12", 12 * GIB)])
def test_parse_size(text: str, value: int) -> None:
    assert parse_size(text) == value


@pytest.mark.parametrize("text", ["-4GiB", "twelve", "12XB", "1MiB", "999TiB", ""])
def test_absurd_sizes_rejected(text: str) -> None:
    with pytest.raises(ValueError):
        parse_size(text)
