"""Between the planner and the rest of the app: detection cached per process, simulated machines, plans for a
file, and fit badges for the model manager.

Fit badges (Models page)::

    fit = fit_catalogue_quant(entry, quant)              # a catalogue entry × quant, not downloaded: approximate
    fit = fit_gguf(path)                                 # a file on disk: exact tensor table
    fit.verdict   # "full_gpu" | "partial" | "cpu" | "too_large"
    fit.summary   # "all on the GPU, 8k context" / "30/49 layers on the GPU, 8k context" / "does not fit"
    fit.plan      # the OffloadPlan (reasons for a tooltip)
    fit.speed     # with speed=this_machine_speed(): the SpeedPrediction, .label "~38 tok/s on the GPU"

Both take ``n_ctx`` (default: the entry's context capped at 8192, or 4096 for a file) and ``machine`` (default: this
machine, detected once per process). They never raise for odd metadata; a file that is not a GGUF raises
``InvalidModelFile``.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path

from localchat.core.hardware.detect import GpuDevice, Machine, SystemProbes, detect, metal_working_set
from localchat.core.hardware.planner import ModelShape, OffloadPlan, Verdict, parse_size, plan_offload
from localchat.core.hardware.speed import MachineSpeed, SpeedPrediction, machine_speed, predict_decode
from localchat.core.models.catalogue import CatalogueEntry, CatalogueQuant
from localchat.core.models.gguf_info import read_gguf

_lock = threading.Lock()
_cached: dict[str, tuple[float, Machine]] = {}
_speeds: dict[tuple[object, ...], MachineSpeed] = {}


def this_machine(max_age_s: float | None = None, *, isolation: str = "auto") -> Machine:
    """This machine, detected once per process and isolation policy (llama.cpp's devices are probed in a short-lived
    sandboxed worker under ``isolation``).

    ``max_age_s`` asks for a detection at most that old: loading a model passes a few seconds, so the plan uses
    the GPU's *current* free memory, while badges and the CLI reuse the first detection.
    """
    with _lock:
        hit = _cached.get(isolation)
        if hit is None or (max_age_s is not None and time.monotonic() - hit[0] > max_age_s):
            hit = _cached[isolation] = (time.monotonic(), detect(SystemProbes(isolation)))
        return hit[1]


def machine_for(gpu_mem: str | None, ram: str | None, *, unified: bool = False, isolation: str = "auto") -> Machine:
    """This machine, or a simulated one (``--gpu-mem 12GiB[,…]`` free per GPU, ``0`` for none; ``--ram 16GiB``
    available RAM; ``unified`` for Apple silicon, where the GPU gets Metal's working-set share of the RAM).

    Raises:
        ValueError: an unreadable or absurd size, with a message fit to show as-is.
    """
    if gpu_mem is None and ram is None and not unified:
        return this_machine(isolation=isolation)
    real = this_machine(isolation=isolation) if gpu_mem is None or ram is None else None
    ram_bytes = parse_size(ram) if ram is not None else (real.ram_available if real else 0)
    gpus: tuple[GpuDevice, ...]
    if unified and (gpu_mem is None or gpu_mem.strip().lower() == "auto"):
        total = parse_size(ram) if ram else (real.ram_total if real else 0)
        ws = metal_working_set(total)
        gpus = (GpuDevice(0, "metal", "simulated Apple GPU (unified)", ws, ws, unified=True),)
    elif gpu_mem is None:
        assert real is not None
        gpus = real.gpus
    elif gpu_mem.strip().lower() in ("0", "none", "cpu"):
        gpus = ()
    else:
        parts = gpu_mem.split(",")
        if any(not s.strip() for s in parts):
            raise ValueError(f"--gpu-mem {gpu_mem!r} has an empty size: use sizes separated by commas, like "
                             f"24GiB,24GiB")
        if len(parts) > 16:
            raise ValueError("--gpu-mem takes 1 to 16 sizes separated by commas, like 24GiB,24GiB")
        sizes = [parse_size(s) for s in parts]
        backend = "metal" if unified else "cuda"
        gpus = tuple(GpuDevice(i, backend, f"simulated GPU {i}", s, s, unified=unified) for i, s in enumerate(sizes))
        if unified and ram is not None and sum(sizes) > ram_bytes:
            raise ValueError("--gpu-mem is more than --ram on a unified-memory machine: the GPU shares the RAM")
    return Machine(cpu_name="simulated" if real is None else real.cpu_name,
                   physical_cores=real.physical_cores if real else 8, logical_cores=real.logical_cores if real else 16,
                   ram_total=ram_bytes, ram_available=ram_bytes, gpus=gpus, notes=("simulated machine",),
                   cpu_repack_types=real.cpu_repack_types if real else None)


def this_machine_speed(machine: Machine | None = None, threads: int | None = None, *,
                       isolation: str = "auto") -> MachineSpeed:
    """The decode-speed figures of ``machine`` (default: this machine), once per process: the CPU probe is cached per
    machine on disk (≤ 0.5 s the first time), NVML is asked once."""
    m = machine or this_machine(isolation=isolation)
    key = (m.cpu_name, m.physical_cores, tuple((g.name, g.backend) for g in m.usable_gpus), threads)
    with _lock:
        hit = _speeds.get(key)
    if hit is None:
        hit = machine_speed(m, threads=threads)
        with _lock:
            _speeds[key] = hit
    return hit


def plan_for_file(path: str | Path, n_ctx: int, machine: Machine | None = None,
                  gpu_layers_override: int | None = None, *, allow_ctx_reduction: bool = True) -> OffloadPlan:
    shape = ModelShape.from_gguf(read_gguf(path))
    return plan_offload(shape, machine or this_machine(), n_ctx, gpu_layers_override=gpu_layers_override,
                        allow_ctx_reduction=allow_ctx_reduction)


@dataclass(frozen=True)
class Fit:
    """A fit badge: the verdict on this machine, a one-line summary and the plan behind it."""

    verdict: Verdict
    summary: str
    plan: OffloadPlan
    speed: SpeedPrediction | None = None  # predicted decode tok/s, when a MachineSpeed was given


def fit_gguf(path: str | Path, *, n_ctx: int = 4096, machine: Machine | None = None,
             speed: MachineSpeed | None = None) -> Fit:
    """Fit of a GGUF file on disk (exact: its own tensor table); with ``speed``, the predicted decode speed too."""
    shape = ModelShape.from_gguf(read_gguf(path))
    plan = plan_offload(shape, machine or this_machine(), n_ctx)
    return Fit(plan.verdict, plan.summary, plan, predict_decode(shape, plan, speed) if speed else None)


def fit_catalogue_quant(entry: CatalogueEntry, quant: CatalogueQuant, *, n_ctx: int | None = None,
                        machine: Machine | None = None, speed: MachineSpeed | None = None) -> Fit:
    """Fit of a catalogue entry × quant that is not downloaded yet (approximate: the file size spread over the shape
    the catalogue lists; ``entry.params_b`` splits the bytes between blocks and embeddings when present); with
    ``speed``, the predicted decode speed too."""
    s = entry.shape
    params_b = getattr(entry, "params_b", None) or s.get("params_b")
    shape = ModelShape.from_catalogue(
        name=f"{entry.title} {quant.quant}", file_size=quant.size, n_layers=int(s.get("n_layers", 32)),
        n_embd=int(s.get("n_embd", 4096)), n_kv_heads=int(s.get("n_kv_heads", 8)),
        head_dim=int(s.get("head_dim", 128)), n_vocab=int(s.get("n_vocab", 32000)), n_ctx_train=entry.context,
        params_b=float(params_b) if params_b else None, architecture=str(getattr(entry, "family", None) or "llama"),
        quant=quant.quant)
    plan = plan_offload(shape, machine or this_machine(), n_ctx or min(entry.context, 8192))
    return Fit(plan.verdict, plan.summary, plan, predict_decode(shape, plan, speed) if speed else None)
