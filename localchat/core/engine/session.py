"""Choosing how to load a model: the offload planner's plan, with the user's overrides winning."""

from __future__ import annotations

import logging
from pathlib import Path

from localchat.core.engine.protocol import LoadOptions
from localchat.errors import LocalChatError
from localchat.settings import Settings

log = logging.getLogger(__name__)


def load_options_for(path: Path, *, n_ctx: int, settings: Settings,
                     gpu_layers_override: int | None = None) -> LoadOptions:
    """LoadOptions for ``path`` from the planner (GPU layers, KV type, flash attention, tensor split).

    A GPU-layer override (argument, else settings) wins; the planner still says what it costs, in the log.
    The user's context length is kept as asked: only ``localchat plan`` proposes a shorter one.
    """
    from localchat.core.hardware.sizing import plan_for_file, this_machine

    override = gpu_layers_override if gpu_layers_override is not None else settings.n_gpu_layers
    machine = this_machine()
    try:
        plan = plan_for_file(path, n_ctx, machine, gpu_layers_override=override)
    except LocalChatError:
        raise
    except Exception:  # the planner must never stop a model from loading
        log.exception("offload planner failed; loading on the CPU")
        return LoadOptions(n_ctx=n_ctx, n_gpu_layers=override or 0, n_threads=settings.n_threads)
    for reason in plan.reasons:
        log.info("plan: %s", reason)
    layers = plan.n_gpu_layers if override is None else override
    if not machine.usable_gpus:
        layers = 0
    return LoadOptions(n_ctx=n_ctx, n_gpu_layers=layers, n_threads=settings.n_threads,
                       flash_attn=plan.flash_attn, kv_type=plan.kv_type if plan.flash_attn else "f16",
                       tensor_split=plan.tensor_split)
