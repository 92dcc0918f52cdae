"""Choosing how to load a model: the offload planner's plan, with the user's overrides winning.

``plan_load`` returns the LoadOptions and the OffloadPlan behind them (for the window or the CLI to show next to
llama.cpp's own "offloaded N/M layers", ``LoadInfo.offloaded_layers``); ``load_options_for`` returns just the options.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

from localchat.core.engine.protocol import LoadOptions
from localchat.core.hardware.detect import Machine
from localchat.core.hardware.planner import ModelShape, OffloadPlan, compute_bytes, kv_bytes
from localchat.errors import LocalChatError, ModelLoadError
from localchat.settings import Settings

log = logging.getLogger(__name__)
FRESH_S = 5.0  # a plan for a load uses free GPU memory measured at most this long ago
N_BATCH, N_UBATCH = 2048, 512  # llama.cpp's own tools' prompt batch and micro-batch
TIGHT_UBATCH = 128  # where the plan says the model does not fit: a compute buffer about a quarter the size


def plan_load(path: Path, *, n_ctx: int, settings: Settings, gpu_layers_override: int | None = None,
              machine: Machine | None = None,
              rpc_servers: list[str] | None = None) -> tuple[LoadOptions, OffloadPlan | None]:
    """LoadOptions for ``path`` from the planner (GPU layers, KV type, flash attention, tensor split), and the plan.

    The user's choices win: a GPU-layer override (argument, else ``settings.n_gpu_layers``; ``-1`` = all) is loaded
    as asked and the plan's ``reasons`` say what it costs; the context is kept as asked (the plan says when a
    shorter one would put every layer on the GPU; only ``localchat plan`` proposes it). The plan is ``None`` when
    the planner failed, which never stops a load: the model then loads on the CPU. A context longer than the
    model's training context is loaded as asked, with a warning first in the plan's reasons.

    With ``rpc_servers`` (helper machines through the worker's relay, LAN mode) every layer is offloaded unless the
    user said otherwise, and llama.cpp splits them over the helpers (and local GPUs) by the free memory each
    reports; the planner does not know the helpers yet, so its plan describes this machine alone.

    Raises:
        InvalidModelFile: ``path`` is not a readable GGUF.
        ModelLoadError: the context's KV cache alone cannot fit the free memory (see :func:`check_context`).
    """
    from localchat.core.hardware.sizing import plan_for_file, this_machine

    override = gpu_layers_override if gpu_layers_override is not None else settings.n_gpu_layers
    machine = machine or this_machine(max_age_s=FRESH_S)
    warning = check_context(path, n_ctx, machine)
    try:
        plan = plan_for_file(path, n_ctx, machine, gpu_layers_override=override, allow_ctx_reduction=False)
    except LocalChatError:
        raise
    except Exception:  # the planner must never stop a model from loading
        log.exception("offload planner failed; loading on the CPU")
        fallback = LoadOptions(n_ctx=n_ctx, n_gpu_layers=max(override or 0, 0), n_threads=settings.n_threads)
        return (with_helpers(fallback, rpc_servers, override, None) if rpc_servers else fallback), None
    if warning:
        plan.reasons.insert(0, warning)
    for reason in plan.reasons:
        log.info("plan: %s", reason)
    if plan.verdict == "too_large":
        log.warning("plan: %s may not fit this machine; loading anyway as asked", path.name)
    if not machine.usable_gpus:
        layers = 0
    elif override is None:
        layers = plan.n_gpu_layers
    else:
        layers = plan.n_layers + 1 if override < 0 else override
    n_batch, n_ubatch = N_BATCH, N_UBATCH
    if plan.verdict == "too_large":
        # the compute buffer grows with the micro-batch; a smaller one costs some prompt speed, not answers
        from localchat.core.models.gguf_info import read_gguf

        n_batch, n_ubatch = 4 * TIGHT_UBATCH, TIGHT_UBATCH
        shape = ModelShape.from_gguf(read_gguf(path))
        plan.reasons.append(f"memory is tight: prompts are evaluated {n_ubatch} tokens at a time (compute buffer "
                            f"{_gib(compute_bytes(shape, n_ctx, plan.flash_attn, n_ubatch))} instead of "
                            f"{_gib(plan.compute_bytes)})")
    options = LoadOptions(n_ctx=n_ctx, n_gpu_layers=layers, n_threads=settings.n_threads,
                          n_batch=n_batch, n_ubatch=n_ubatch,
                          flash_attn=plan.flash_attn, kv_type=plan.kv_type if plan.flash_attn else "f16",
                          tensor_split=plan.tensor_split if layers else None)
    if rpc_servers:
        options = with_helpers(options, rpc_servers, override, plan.n_layers)
        plan.reasons.append(f"LAN mode: layers split by llama.cpp over {len(rpc_servers)} helper machine(s) by the "
                            "free memory each reports")
    return options, plan


def with_helpers(options: LoadOptions, rpc_servers: list[str], override: int | None,
                 n_layers: int | None) -> LoadOptions:
    """``options`` for a load split over helper machines: all layers offloaded (unless overridden), llama.cpp's
    own split by free memory, and the KV cache in f16 (what every backend supports)."""
    if override is None or override < 0:
        layers = n_layers + 1 if n_layers else -1
    else:
        layers = override
    return replace(options, n_gpu_layers=layers, rpc_servers=list(rpc_servers), tensor_split=None,
                   flash_attn=False, kv_type="f16")


def check_context(path: Path, n_ctx: int, machine: Machine) -> str | None:
    """Refuse a context whose KV cache cannot fit this machine's free memory; say when it exceeds the training one.

    Without this, llama.cpp allocates the whole cache before it fails (a billion tokens: gigabytes, then an
    error), and a context past the model's training length loads silently and answers worse beyond it.

    Returns:
        A one-line warning when ``n_ctx`` is more than the model was trained for, else None.

    Raises:
        InvalidModelFile: ``path`` is not a readable GGUF.
        ModelLoadError: the KV cache alone needs more than the free RAM and GPU memory.
    """
    from localchat.core.models.gguf_info import read_gguf

    path = Path(path)
    info = read_gguf(path)
    shape = ModelShape.from_gguf(info)
    trained = info.context_length
    need = kv_bytes(shape, n_ctx)  # f16, all layers: what llama.cpp allocates by default
    free = machine.ram_available + sum(max(0, g.free_bytes) for g in machine.usable_gpus)
    if need > free:
        fits = _fitting_ctx(shape, free)
        hint = f"use a context of {min(fits, trained)} tokens or less" if trained else f"use at most {fits} tokens"
        raise ModelLoadError(f"a {n_ctx}-token context needs {_gib(need)} for its KV cache alone, more than the "
                             f"{_gib(free)} of free memory: {hint}" +
                             (f" ({path.name} was trained for {trained})" if trained else ""))
    if trained and n_ctx > trained:
        warning = (f"a {n_ctx}-token context is more than {path.name} was trained for ({trained} tokens): answers "
                   f"past {trained} tokens may degrade, and the cache takes {_gib(need)}")
        log.warning("%s", warning)
        return warning
    return None


def _fitting_ctx(shape: ModelShape, free: int) -> int:
    per_token = max(1, kv_bytes(shape, 256) // 256)
    return max(256, free // per_token // 256 * 256)


def _gib(n: int) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"


def load_options_for(path: Path, *, n_ctx: int, settings: Settings,
                     gpu_layers_override: int | None = None) -> LoadOptions:
    """LoadOptions for ``path`` (see :func:`plan_load`)."""
    return plan_load(path, n_ctx=n_ctx, settings=settings, gpu_layers_override=gpu_layers_override)[0]


def _f32(x: float) -> float:
    import struct

    return float(struct.unpack("f", struct.pack("f", x))[0])


def layer_split(free: list[int], n_layers: int, n_gpu_layers: int | None = None) -> list[int]:
    """How llama.cpp assigns a model's layers to its offload devices by default (``tensor_split`` unset): by each
    device's free memory, as cumulative split points (``llama_model::load_tensors``, float32 like it).

    Args:
        free: free bytes of each device, in llama.cpp's order (RPC helpers first, then local GPUs).
        n_layers: the model's repeating layers; the output layer is one more.
        n_gpu_layers: layers to offload (default: all, output included).

    Returns:
        Layers per device (the output layer counted with the device it lands on); what is left stays on the CPU.
    """
    if not free:
        return []
    total = n_layers + 1
    offload = total if n_gpu_layers is None or n_gpu_layers < 0 else min(n_gpu_layers, total)
    sums, acc = [], 0.0
    for f in free:
        acc = _f32(acc + _f32(float(f)))
        sums.append(acc)
    splits = [_f32(s / acc) if acc else _f32((i + 1) / len(free)) for i, s in enumerate(sums)]
    start = max(total - offload, 0)
    counts = [0] * len(free)
    for il in range(start, total):
        point = _f32((il - start) / offload)
        counts[min(sum(1 for s in splits if s <= point), len(free) - 1)] += 1
    return counts
