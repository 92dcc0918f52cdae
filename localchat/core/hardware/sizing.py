"""Glue between the planner and the rest of the app: simulated machines, cached detection, fit badges."""

from __future__ import annotations

import functools
from pathlib import Path

from localchat.core.hardware.detect import GpuDevice, Machine, detect, metal_working_set
from localchat.core.hardware.planner import ModelShape, OffloadPlan, Verdict, parse_size, plan_offload
from localchat.core.models.gguf_info import read_gguf


@functools.lru_cache(maxsize=1)
def this_machine() -> Machine:
    """Detection runs a subprocess: do it once per process."""
    return detect()


def machine_for(gpu_mem: str | None, ram: str | None, *, unified: bool = False) -> Machine:
    """This machine, or a simulated one (``--gpu-mem 12GiB[,…]``, ``--ram 16GiB``)."""
    if gpu_mem is None and ram is None and not unified:
        return this_machine()
    if unified and gpu_mem is None:
        gpu_mem = "auto"  # Metal's working-set share of the (simulated) RAM
    real = this_machine() if gpu_mem is None or ram is None else None
    gpus: tuple[GpuDevice, ...]
    if gpu_mem is None:
        assert real is not None
        gpus = real.gpus
    elif unified and gpu_mem.strip().lower() == "auto":
        total = parse_size(ram) if ram else (real.ram_total if real else 0)
        ws = metal_working_set(total)
        gpus = (GpuDevice(0, "metal", "simulated Apple GPU (unified)", ws, ws, unified=True),)
    elif gpu_mem.strip().lower() in ("0", "none"):
        gpus = ()
    else:
        sizes = [parse_size(s) for s in gpu_mem.split(",") if s.strip()]
        if not sizes or len(sizes) > 16:
            raise ValueError("--gpu-mem takes 1 to 16 sizes separated by commas, like 24GiB,24GiB")
        backend = "metal" if unified else "cuda"
        gpus = tuple(GpuDevice(i, backend, f"simulated GPU {i}", s, s, unified=unified) for i, s in enumerate(sizes))
    ram_bytes = parse_size(ram) if ram is not None else (real.ram_available if real else 0)
    return Machine(cpu_name="simulated" if real is None else real.cpu_name,
                   physical_cores=real.physical_cores if real else 8, logical_cores=real.logical_cores if real else 16,
                   ram_total=ram_bytes, ram_available=ram_bytes, gpus=gpus,
                   notes=("simulated machine",))


def plan_for_file(path: str | Path, n_ctx: int, machine: Machine | None = None,
                  gpu_layers_override: int | None = None) -> OffloadPlan:
    shape = ModelShape.from_gguf(read_gguf(path))
    return plan_offload(shape, machine or this_machine(), n_ctx, gpu_layers_override=gpu_layers_override)


def fit_verdict(file_size: int, n_layers: int, n_ctx: int = 4096, machine: Machine | None = None,
                *, n_embd: int = 4096, n_kv_heads: int = 8, head_dim: int = 128, n_vocab: int = 152064,
                n_ctx_train: int = 32768) -> Verdict:
    """Fit badge for a catalogue entry × quant that is not downloaded yet (no tensor table: size split evenly).

    The shape figures default to a typical GQA model; the catalogue passes what it knows.
    """
    embd = n_vocab * n_embd * 9 // 16  # ~4.5 bits per weight
    per_layer = max(1, (file_size - 2 * embd) // max(1, n_layers))
    shape = ModelShape(name="catalogue", architecture="llama", n_layers=n_layers, layer_bytes=(per_layer,) * n_layers,
                       embd_bytes=embd, output_bytes=embd, n_ctx_train=n_ctx_train, n_embd=n_embd,
                       n_heads=n_embd // head_dim, n_kv_heads=n_kv_heads, head_dim_k=head_dim, head_dim_v=head_dim,
                       n_vocab=n_vocab, n_ff=n_embd * 3)
    return plan_offload(shape, machine or this_machine(), n_ctx).verdict
