"""Load options come from the planner; the user's GPU layers and context win."""

from __future__ import annotations

from pathlib import Path

import pytest
from model_shapes import write_r1_qwen14b_q4km

from localchat.core.engine.load_options import check_context, load_options_for, plan_load
from localchat.core.hardware.detect import GIB, GpuDevice, Machine
from localchat.core.hardware.sizing import this_machine
from localchat.errors import ModelLoadError
from localchat.settings import Settings


def gpu_machine(gib: float) -> Machine:
    return Machine("test CPU", 8, 16, 64 * GIB, 64 * GIB, (GpuDevice(0, "cuda", "GPU0", int(gib * GIB),
                                                                      int(gib * GIB)),))


def test_planner_backed_options_and_overrides(tmp_path: Path) -> None:
    path = write_r1_qwen14b_q4km(tmp_path / "r1.gguf", with_tokenizer=False)
    opts, plan = plan_load(path, n_ctx=8192, settings=Settings(), machine=gpu_machine(12))
    assert plan is not None and plan.verdict == "full_gpu"
    assert (opts.n_gpu_layers, opts.n_ctx, opts.flash_attn, opts.kv_type) == (49, 8192, True, "f16")
    # the user's layers win, and the plan says what they cost
    opts, plan = plan_load(path, n_ctx=8192, settings=Settings(n_gpu_layers=10), machine=gpu_machine(12))
    assert opts.n_gpu_layers == 10 and plan is not None
    assert any("39 fewer than the 49 that fit" in r for r in plan.reasons)
    opts, _ = plan_load(path, n_ctx=8192, settings=Settings(n_gpu_layers=-1), machine=gpu_machine(8))
    assert opts.n_gpu_layers == 49  # "all", as asked, even where the plan says it will not fit
    # the context is kept as asked; the plan says a shorter one would fit every layer
    opts, plan = plan_load(path, n_ctx=32768, settings=Settings(), machine=gpu_machine(12))
    assert opts.n_ctx == 32768 and plan is not None and plan.verdict == "partial"
    assert any("16384-token context every layer would fit" in r for r in plan.reasons)


def test_cpu_machine_loads_on_the_cpu(starter_model: Path) -> None:
    if this_machine().usable_gpus:
        pytest.skip("this llama.cpp build has a GPU backend")
    opts = load_options_for(starter_model, n_ctx=2048, settings=Settings(), gpu_layers_override=20)
    assert opts.n_gpu_layers == 0 and opts.n_ctx == 2048 and opts.tensor_split is None  # no GPU in this build


def cpu_machine(ram_gib: float) -> Machine:
    return Machine("test CPU", 8, 16, int(ram_gib * GIB), int(ram_gib * GIB), ())


def test_context_past_training_is_said_and_what_cannot_fit_is_refused(starter_model: Path) -> None:
    # the starter was trained for 8192 tokens; its KV cache takes 22.5 KiB a token (30 layers, 3 KV heads, f16)
    assert check_context(starter_model, 8192, cpu_machine(16)) is None
    warning = check_context(starter_model, 100_000, cpu_machine(16))
    assert warning is not None and "more than SmolLM2-135M-Instruct.Q4_1.gguf was trained for (8192 tokens)" in warning
    assert "2.1 GiB" in warning
    opts, plan = plan_load(starter_model, n_ctx=100_000, settings=Settings(), machine=cpu_machine(16))
    assert opts.n_ctx == 100_000 and plan is not None and plan.reasons[0] == warning
    with pytest.raises(ModelLoadError) as err:
        plan_load(starter_model, n_ctx=1_000_000_000, settings=Settings(), machine=cpu_machine(16))
    msg = str(err.value)
    assert msg.startswith("a 1000000000-token context needs 21457.7 GiB for its KV cache alone, more than the "
                          "16.0 GiB of free memory: use a context of 8192 tokens or less")
    with pytest.raises(ModelLoadError, match="use a context of 2304 tokens or less"):
        check_context(starter_model, 4096, Machine("test CPU", 8, 16, GIB, int(0.05 * GIB), ()))


def test_prompt_batches_as_llama_cpp_chooses_them_smaller_where_memory_is_tight(tmp_path: Path) -> None:
    path = write_r1_qwen14b_q4km(tmp_path / "r1.gguf", with_tokenizer=False)
    opts, plan = plan_load(path, n_ctx=4096, settings=Settings(), machine=gpu_machine(12))
    assert plan is not None and plan.verdict == "full_gpu"
    assert (opts.n_batch, opts.n_ubatch) == (2048, 512)  # llama.cpp's own defaults
    opts, plan = plan_load(path, n_ctx=4096, settings=Settings(), machine=cpu_machine(4))
    assert plan is not None and plan.verdict == "too_large"
    assert (opts.n_batch, opts.n_ubatch) == (512, 128)
    assert any(r.startswith("memory is tight: prompts are evaluated 128 tokens at a time") for r in plan.reasons)
