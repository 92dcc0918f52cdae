"""Choosing how to load a model: user overrides first, then the offload planner's suggestion."""

from __future__ import annotations

from pathlib import Path

from localchat.core.engine.protocol import LoadOptions
from localchat.settings import Settings


def load_options_for(path: Path, *, n_ctx: int, settings: Settings,
                     gpu_layers_override: int | None = None) -> LoadOptions:
    """LoadOptions for ``path``. Until the planner lands: the user's override, else CPU only."""
    layers = gpu_layers_override if gpu_layers_override is not None else settings.n_gpu_layers
    return LoadOptions(n_ctx=n_ctx, n_gpu_layers=layers if layers is not None else 0, n_threads=settings.n_threads)
