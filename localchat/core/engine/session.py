"""Choosing how to load a model: the offload planner's plan, with the user's overrides winning.

``plan_load`` returns the LoadOptions and the OffloadPlan behind them (for the window or the CLI to show next to
llama.cpp's own "offloaded N/M layers", ``LoadInfo.offloaded_layers``); ``load_options_for`` returns just the options.
"""

from __future__ import annotations

import logging
from pathlib import Path

from localchat.core.engine.protocol import LoadOptions
from localchat.core.hardware.detect import Machine
from localchat.core.hardware.planner import OffloadPlan
from localchat.errors import LocalChatError
from localchat.settings import Settings

log = logging.getLogger(__name__)
FRESH_S = 5.0  # a plan for a load uses free GPU memory measured at most this long ago


def plan_load(path: Path, *, n_ctx: int, settings: Settings, gpu_layers_override: int | None = None,
              machine: Machine | None = None) -> tuple[LoadOptions, OffloadPlan | None]:
    """LoadOptions for ``path`` from the planner (GPU layers, KV type, flash attention, tensor split), and the plan.

    The user's choices win: a GPU-layer override (argument, else ``settings.n_gpu_layers``; ``-1`` = all) is loaded
    as asked and the plan's ``reasons`` say what it costs; the context is kept as asked (the plan says when a
    shorter one would put every layer on the GPU; only ``localchat plan`` proposes it). The plan is ``None`` when
    the planner failed, which never stops a load: the model then loads on the CPU.

    Raises:
        InvalidModelFile: ``path`` is not a readable GGUF.
    """
    from localchat.core.hardware.sizing import plan_for_file, this_machine

    override = gpu_layers_override if gpu_layers_override is not None else settings.n_gpu_layers
    try:
        machine = machine or this_machine(max_age_s=FRESH_S)
        plan = plan_for_file(path, n_ctx, machine, gpu_layers_override=override, allow_ctx_reduction=False)
    except LocalChatError:
        raise
    except Exception:  # the planner must never stop a model from loading
        log.exception("offload planner failed; loading on the CPU")
        return LoadOptions(n_ctx=n_ctx, n_gpu_layers=max(override or 0, 0), n_threads=settings.n_threads), None
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
    options = LoadOptions(n_ctx=n_ctx, n_gpu_layers=layers, n_threads=settings.n_threads,
                          flash_attn=plan.flash_attn, kv_type=plan.kv_type if plan.flash_attn else "f16",
                          tensor_split=plan.tensor_split if layers else None)
    return options, plan


def load_options_for(path: Path, *, n_ctx: int, settings: Settings,
                     gpu_layers_override: int | None = None) -> LoadOptions:
    """LoadOptions for ``path`` (see :func:`plan_load`)."""
    return plan_load(path, n_ctx=n_ctx, settings=settings, gpu_layers_override=gpu_layers_override)[0]
