"""Predicted decode speed: how many tokens per second a model will generate here, before it is downloaded.

Decode is memory-bound. To produce one token every device streams its share of the weights and of the KV cache once,
so, per token::

    seconds = Σ over devices (bytes it reads ÷ its effective bandwidth) + a fixed cost per token

On the CPU a compute floor applies as well: one thread dequantises and multiplies only so many weight bytes per
second, so with few threads (or a fast memory bus) a model is compute-bound and the CPU's time is the larger of the
two. The fixed cost is what a token costs besides the matrix work: sampling over the vocabulary (it scales with
``n_vocab``), the worker's loop and its pipe, and llama.cpp's per-layer thread synchronisation.

Where the figures come from, and each prediction's ``basis`` says which were measured and which assumed:

- CPU bandwidth: **measured** once per machine by :func:`probe_cpu` (numpy streaming reads over a buffer several
  times the last-level cache, on as many threads as llama.cpp will use, ≤ 0.5 s), cached in
  ``machine_cache_dir()/cpu_speed.json`` keyed by the CPU model and the thread count.
- CPU compute floor: the same probe **measures** one thread's in-cache SIMD throughput (float32 multiply-adds);
  llama.cpp's quantised dot products decode ``COMPUTE_BYTES_PER_FLOP`` weight bytes per such operation, a ratio
  calibrated against llama.cpp on the reference machine (benchmarks/speed_prediction.py, docs/SIZING.md).
- NVIDIA GPUs: the **driver's** figures through NVML (max memory clock × bus width × 2 for the double data rate),
  times an **assumed** efficiency.
- Apple silicon: the chip's published bandwidth from a **table** by chip name, times an assumed efficiency.
- other GPUs (Vulkan, ROCm without NVML figures, simulated ones): an **assumed** bandwidth, with wide bounds.

``low``/``high`` bound the prediction by the efficiency ranges and the fixed cost's spread; the KV cache's growth
over a conversation is stated separately (``at_full_context``).

Public API::

    speed = machine_speed(machine)                  # MachineSpeed: CPU probe (cached) + GPU bandwidths
    pred = predict_decode(shape, plan, speed)       # SpeedPrediction; pred.label, pred.to_dict()
"""

from __future__ import annotations

import json
import math
import re
import statistics
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from localchat.core.hardware.detect import GpuDevice, Machine
from localchat.core.hardware.planner import KV_TYPE_BYTES, ModelShape, OffloadPlan, assign_layers, pad_ctx
from localchat.fsutil import atomic_write_text

GB = 1e9
# Fractions of the bandwidth figure llama.cpp's decode reaches: (typical, low, high).
CPU_EFFICIENCY = (0.7, 0.55, 0.85)  # of the probe's streaming reads (calibrated: docs/SIZING.md)
NVIDIA_EFFICIENCY = (0.75, 0.6, 0.85)  # assumed: of the driver's peak figure
APPLE_EFFICIENCY = (0.7, 0.55, 0.85)  # assumed: of the published peak
OTHER_GPU_BYTES_PER_S = 250 * GB  # assumed when nothing says better (a mid-range discrete card)
OTHER_GPU_EFFICIENCY = (0.7, 0.3, 1.2)
# The CPU's compute floor, per thread, in units of the probe's in-cache float32 multiply-add rate (calibrated on the
# reference machine, docs/SIZING.md; the measured probe carries each machine's clock and SIMD width):
COMPUTE_BYTES_PER_FLOP = 10.0  # quantised weight bytes one thread decodes per probe operation
LAYER_FLOPS = 660_000.0  # per CPU layer and token: activation quantisation, norms, rope, softmax, small matmuls
SYNC_LAYER_S = 50e-6  # assumed: thread barriers per CPU layer when llama.cpp runs more than one thread
COMPUTE_SPREAD = (1.0, 0.8, 1.2)
# Fixed cost per token (measured on the reference machine): the worker's loop and pipe, detokenising, and sampling,
# which walks the whole vocabulary.
FIXED_S = 0.2e-3
PER_VOCAB_S = 1.0e-9
GPU_FIXED_S = 0.3e-3  # assumed: kernel launches and the device→host copy of the logits
GPU_LAYER_S = 10e-6  # assumed: per offloaded layer
FIXED_SPREAD = (1.0, 1.5, 0.75)
DEFAULT_N_PAST = 1024  # tokens already in the context when the prediction's "value" applies
PROBE_BUDGET_S = 0.5
CACHE_FILE = "cpu_speed.json"

# Published memory bandwidth of Apple silicon, GB/s (binned Max parts are lower: the table keeps the common one).
APPLE_BANDWIDTH_GBS: dict[str, float] = {
    "M1": 68.25, "M1 Pro": 200, "M1 Max": 400, "M1 Ultra": 800,
    "M2": 100, "M2 Pro": 200, "M2 Max": 400, "M2 Ultra": 800,
    "M3": 100, "M3 Pro": 150, "M3 Max": 400, "M3 Ultra": 819,
    "M4": 120, "M4 Pro": 273, "M4 Max": 546,
    "M5": 153,
}


@dataclass(frozen=True)
class Bandwidth:
    """One device's memory bandwidth: the figure, how sure we are of it, and where it came from."""

    device: str
    bytes_per_s: float  # measured (CPU) or peak (GPU) figure
    efficiency: tuple[float, float, float]  # typical, low, high fraction llama.cpp reaches
    source: str  # "measured", "driver", "table", "assumed"
    detail: str

    def effective(self, i: int = 0) -> float:
        return self.bytes_per_s * self.efficiency[i]


@dataclass(frozen=True)
class CpuProbe:
    """What :func:`probe_cpu` measured: streaming-read bandwidth on ``threads`` threads, one thread's SIMD rate."""

    cpu_name: str
    threads: int
    read_bytes_per_s: float
    thread_flops: float  # float32 multiply-adds per second on one thread, data in cache
    measured_at: float
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"cpu_name": self.cpu_name, "threads": self.threads, "read_bytes_per_s": self.read_bytes_per_s,
                "thread_flops": self.thread_flops, "measured_at": self.measured_at, "seconds": self.seconds}


@dataclass(frozen=True)
class MachineSpeed:
    """The figures the prediction needs for one machine: the CPU (bandwidth, threads, compute) and each usable GPU
    (in the order of ``machine.usable_gpus``)."""

    cpu: Bandwidth
    threads: int
    thread_bytes_per_s: float  # weight bytes one thread decodes per second (the compute floor)
    compute_detail: str
    thread_flops: float = 2.5e9  # the probe's per-thread rate (per-layer work scales with it)
    gpus: tuple[Bandwidth, ...] = ()


@dataclass(frozen=True)
class SpeedPrediction:
    """Predicted decode tokens/s (``value`` at ``n_past`` tokens of context) with its bounds and its basis."""

    value: float
    low: float
    high: float
    n_past: int
    at_full_context: float  # the typical figure once the whole context is filled
    n_ctx: int
    gpu_layers: int  # as llama.cpp counts them (blocks + output)
    total_layers: int
    bound: str  # "memory" or "compute" (the CPU's part), "gpu" when all on the GPU
    basis: tuple[str, ...]

    @property
    def label(self) -> str:
        """"~38 tok/s on the GPU", "~4 tok/s, 22 of 49 layers on the GPU", "~12 tok/s on the CPU"."""
        v = fmt_tps(self.value)
        if self.bound == "lan":
            return f"~{v} tok/s over the helper machines"
        if self.gpu_layers >= self.total_layers:
            return f"~{v} tok/s on the GPU"
        if self.gpu_layers:
            return f"~{v} tok/s, {self.gpu_layers} of {self.total_layers} layers on the GPU"
        return f"~{v} tok/s on the CPU"

    def to_dict(self) -> dict[str, Any]:
        """``plan --json``'s ``predicted_decode_tokens_per_s``."""
        return {"value": round(self.value, 2), "low": round(self.low, 2), "high": round(self.high, 2),
                "n_past": self.n_past, "at_full_context": round(self.at_full_context, 2), "n_ctx": self.n_ctx,
                "bound": self.bound, "basis": list(self.basis)}


def fmt_tps(v: float) -> str:
    return f"{v:.0f}" if v >= 10 else f"{v:.1f}" if v >= 1 else f"{v:.2f}"


# -- the CPU probe ----------------------------------------------------------------------------------------------------


def _llc_bytes() -> int:
    """The largest CPU cache the kernel lists (Linux sysfs); 32 MiB when it does not say."""
    best = 0
    for f in Path("/sys/devices/system/cpu/cpu0/cache").glob("index*/size"):
        try:
            text = f.read_text().strip().upper()
        except OSError:
            continue
        m = re.fullmatch(r"(\d+)([KMG]?)", text)
        if m:
            best = max(best, int(m.group(1)) * {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3}[m.group(2)])
    return best or 32 * 1024**2


def probe_cpu(cpu_name: str, threads: int, *, budget_s: float = PROBE_BUDGET_S) -> CpuProbe:
    """Measure streaming-read bandwidth over a buffer 3× the last-level cache (64–192 MiB) on ``threads`` threads
    (numpy reductions release the GIL), and one thread's in-cache float32 throughput; best of the passes that fit in
    ``budget_s``, so a moment of contention from other programs does not stick."""
    import numpy as np

    t0 = time.perf_counter()
    size = min(192 * 1024**2, max(64 * 1024**2, 3 * _llc_bytes()))
    buf = np.ones(size // 8, dtype=np.float64)  # written, so every page is real memory (not the shared zero page)
    parts = np.array_split(buf, max(1, threads))
    best_read = 0.0
    with ThreadPoolExecutor(max(1, threads)) as pool:
        pool.submit(np.add.reduce, parts[0][:1024]).result()  # start the threads outside the timed region
        for i in range(40):
            t = time.perf_counter()
            list(pool.map(np.add.reduce, parts))
            best_read = max(best_read, size / (time.perf_counter() - t))
            if i >= 2 and time.perf_counter() - t0 > budget_s * 0.7:
                break
    del buf, parts
    # one thread, data in L1/L2: a*b+c over 4096 float32 (48 KiB): the core's SIMD multiply-add rate
    a = np.ones(4096, dtype=np.float32)
    b = np.full(4096, 0.5, dtype=np.float32)
    c = np.empty_like(a)
    best_flops = 0.0
    for _ in range(10):
        t = time.perf_counter()
        for _ in range(200):
            np.multiply(a, b, out=c)
            np.add(c, a, out=c)
        best_flops = max(best_flops, 200 * 4096 / (time.perf_counter() - t))
    return CpuProbe(cpu_name, threads, best_read, best_flops, time.time(), time.perf_counter() - t0)


_probe_lock = threading.Lock()
_session_probes: dict[str, CpuProbe] = {}  # one probe per process at most
PROBE_RUNS = 3


def cached_cpu_probe(cpu_name: str, threads: int, cache_dir: Path | None = None, *,
                     probe: Callable[[str, int], CpuProbe] | None = None, refresh: bool = False) -> CpuProbe:
    """The CPU probe for ``cpu_name`` × ``threads``, kept per machine in ``cache_dir`` (default
    ``machine_cache_dir()``). The first ``PROBE_RUNS`` processes that ask each measure again and the cache keeps the
    median of what they saw, so one probe that ran while other programs were busy (or one unusually fast moment of
    a virtual machine whose neighbours share its memory bandwidth) does not stick; after that it is never measured
    again (≤ 0.5 s each time). Entries written before the median (best-of-runs, no ``samples``) count as one run.
    A damaged cache file is measured over."""
    from localchat.paths import machine_cache_dir

    path = (cache_dir or machine_cache_dir()) / CACHE_FILE
    key = f"{cpu_name}|{threads}"
    with _probe_lock:
        if key in _session_probes and not refresh:
            return _session_probes[key]
        data: dict[str, Any] = {}
        try:
            loaded = json.loads(path.read_text(encoding="utf-8"))
            data = loaded if isinstance(loaded, dict) else {}
        except (OSError, ValueError):
            pass
        cached: CpuProbe | None = None
        samples: list[tuple[float, float]] = []
        hit = data.get(key)
        if isinstance(hit, dict):
            try:
                cached = CpuProbe(str(hit["cpu_name"]), int(hit["threads"]), float(hit["read_bytes_per_s"]),
                                  float(hit["thread_flops"]), float(hit["measured_at"]), float(hit.get("seconds", 0)))
                raw = hit.get("samples")
                samples = ([(float(r), float(f)) for r, f in raw[-PROBE_RUNS:]] if isinstance(raw, list) else
                           [(cached.read_bytes_per_s, cached.thread_flops)])
                figures = [cached.read_bytes_per_s, cached.thread_flops, *(x for pair in samples for x in pair)]
                if not all(0 < x < math.inf for x in figures):
                    raise ValueError("not a speed")  # NaN, zero, negative: an edited file; measured over
            except (KeyError, TypeError, ValueError):
                cached, samples = None, []
        if cached is not None and len(samples) >= PROBE_RUNS and not refresh:
            _session_probes[key] = cached
            return cached
        fresh = (probe or probe_cpu)(cpu_name, threads)
        samples = [(fresh.read_bytes_per_s, fresh.thread_flops)] if refresh else \
            [*samples, (fresh.read_bytes_per_s, fresh.thread_flops)][-PROBE_RUNS:]
        result = CpuProbe(cpu_name, threads, statistics.median(r for r, _ in samples),
                          statistics.median(f for _, f in samples), fresh.measured_at, fresh.seconds)
        data[key] = {**result.to_dict(), "runs": len(samples), "samples": [list(x) for x in samples]}
        try:
            atomic_write_text(path, json.dumps(data, indent=1))
        except OSError:
            pass  # a read-only cache only costs another half second next time
        _session_probes[key] = result
        return result


# -- GPUs -------------------------------------------------------------------------------------------------------------


def nvml_memory_specs() -> list[dict[str, Any]]:
    """Per NVIDIA GPU: name, max memory clock (MHz) and memory bus width (bits) from the driver; [] without NVML."""
    try:
        import pynvml
    except ImportError:
        return []
    try:
        pynvml.nvmlInit()
    except Exception:  # no NVIDIA driver
        return []
    try:
        out = []
        for i in range(pynvml.nvmlDeviceGetCount()):
            h = pynvml.nvmlDeviceGetHandleByIndex(i)
            name = pynvml.nvmlDeviceGetName(h)
            out.append({"name": name.decode() if isinstance(name, bytes) else str(name),
                        "mem_clock_mhz": int(pynvml.nvmlDeviceGetMaxClockInfo(h, pynvml.NVML_CLOCK_MEM)),
                        "bus_width_bits": int(pynvml.nvmlDeviceGetMemoryBusWidth(h))})
        return out
    except Exception:  # an old driver without the call: the GPU gets the assumed figure
        return []
    finally:
        try:
            pynvml.nvmlShutdown()
        except Exception:
            pass


def nvidia_bandwidth(name: str, mem_clock_mhz: int, bus_width_bits: int) -> Bandwidth:
    """Peak = memory clock × 2 (double data rate, as NVML reports GDDR6/6X/HBM clocks) × bus width in bytes:
    an RTX 4090's 10501 MHz × 2 × 48 bytes = 1008 GB/s, an A100's 1215 MHz × 2 × 640 bytes = 1555 GB/s."""
    peak = mem_clock_mhz * 1e6 * 2 * bus_width_bits / 8
    return Bandwidth(name, peak, NVIDIA_EFFICIENCY, "driver",
                     f"{name}: {peak / GB:.0f} GB/s from the driver ({mem_clock_mhz} MHz memory clock × "
                     f"{bus_width_bits}-bit bus), assumed {NVIDIA_EFFICIENCY[0]:.0%} of it reached")


def apple_chip(name: str) -> str | None:
    """'Apple M2 Pro' → 'M2 Pro' (the table's key), None when it is not a chip the table knows."""
    m = re.search(r"\b(M\d+)(?:\s+(Pro|Max|Ultra))?\b", name)
    if not m:
        return None
    chip = f"{m.group(1)} {m.group(2)}" if m.group(2) else m.group(1)
    return chip if chip in APPLE_BANDWIDTH_GBS else None


def gpu_bandwidth(gpu: GpuDevice, machine: Machine, nvml: Sequence[dict[str, Any]] = ()) -> Bandwidth:
    """A usable GPU's bandwidth: NVML's figures (matched by name, else by order among CUDA devices), Apple's table,
    or an assumed figure."""
    if gpu.backend == "cuda" and nvml:
        spec = next((s for s in nvml if s.get("name") == gpu.name), None)
        if spec is None:
            cuda = [g for g in machine.usable_gpus if g.backend == "cuda"]
            i = cuda.index(gpu) if gpu in cuda else -1
            spec = nvml[i] if 0 <= i < len(nvml) else None
        if spec and spec.get("mem_clock_mhz") and spec.get("bus_width_bits"):
            return nvidia_bandwidth(gpu.name, int(spec["mem_clock_mhz"]), int(spec["bus_width_bits"]))
    if gpu.backend == "metal" or gpu.unified:
        chip = apple_chip(gpu.name) or apple_chip(machine.cpu_name)
        if chip:
            peak = APPLE_BANDWIDTH_GBS[chip] * GB
            return Bandwidth(gpu.name, peak, APPLE_EFFICIENCY, "table",
                             f"{gpu.name}: {peak / GB:.0f} GB/s, Apple's published figure for the {chip}, assumed "
                             f"{APPLE_EFFICIENCY[0]:.0%} of it reached")
    return Bandwidth(gpu.name, OTHER_GPU_BYTES_PER_S, OTHER_GPU_EFFICIENCY, "assumed",
                     f"{gpu.name}: bandwidth unknown, assumed {OTHER_GPU_BYTES_PER_S / GB:.0f} GB/s "
                     f"(the bounds are wide)")


def machine_speed(machine: Machine, *, threads: int | None = None, cache_dir: Path | None = None,
                  cpu_probe: CpuProbe | None = None, nvml: Sequence[dict[str, Any]] | None = None,
                  gpu_bandwidths: Sequence[float] | None = None) -> MachineSpeed:
    """The figures for ``machine``: the CPU probe (cached per machine unless given), NVML's memory figures (probed
    unless given) and the Apple table. ``threads`` defaults to what llama.cpp will use (the physical cores).
    ``gpu_bandwidths`` (bytes/s per usable GPU) overrides the GPUs' figures, e.g. for a simulated machine."""
    n = max(1, threads or machine.physical_cores)
    probe = cpu_probe or cached_cpu_probe(machine.cpu_name, n, cache_dir)
    cpu = Bandwidth("CPU", probe.read_bytes_per_s, CPU_EFFICIENCY, "measured",
                    f"CPU: {probe.read_bytes_per_s / GB:.1f} GB/s measured (streaming reads on {probe.threads} "
                    f"thread{'s' if probe.threads != 1 else ''}), {CPU_EFFICIENCY[0]:.0%} of it reached")
    per_thread = probe.thread_flops * COMPUTE_BYTES_PER_FLOP
    compute = (f"CPU compute floor: {n} thread{'s' if n != 1 else ''} × {per_thread / GB:.1f} GB/s of quantised "
               f"weights (one thread's SIMD rate measured, {COMPUTE_BYTES_PER_FLOP:g} byte per multiply-add "
               f"calibrated against llama.cpp)")
    gpus = machine.usable_gpus
    if gpu_bandwidths is not None:
        bws = tuple(Bandwidth(g.name, float(b), NVIDIA_EFFICIENCY, "assumed",
                              f"{g.name}: {b / GB:.0f} GB/s as given, assumed {NVIDIA_EFFICIENCY[0]:.0%} reached")
                    for g, b in zip(gpus, gpu_bandwidths, strict=False))
        bws += tuple(gpu_bandwidth(g, machine, ()) for g in gpus[len(bws):])
    else:
        specs = nvml if nvml is not None else (nvml_memory_specs() if any(g.backend == "cuda" for g in gpus) else [])
        bws = tuple(gpu_bandwidth(g, machine, specs) for g in gpus)
    return MachineSpeed(cpu, n, per_thread, compute, gpus=bws, thread_flops=probe.thread_flops)


# -- the prediction ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TokenBytes:
    """Bytes one decoded token reads: per device (CPU first, then each GPU), weights and KV separately."""

    cpu_weights: int
    cpu_kv: int
    gpu_weights: tuple[int, ...]
    gpu_kv: tuple[int, ...]
    gpu_blocks: tuple[int, ...]


def active_layer_bytes(shape: ModelShape, il: int) -> int:
    """Weight bytes block ``il`` reads per token: everything but the experts not routed to (MoE reads
    ``n_experts_used`` of ``n_experts``)."""
    if shape.n_experts > 1 and shape.expert_bytes:
        experts = shape.expert_bytes // shape.n_layers
        used = shape.n_experts_used or 2
        return shape.layer_bytes[il] - experts + experts * used // shape.n_experts
    return shape.layer_bytes[il]


def kv_bytes_per_layer(shape: ModelShape, n_past: int, kv_type: str) -> int:
    """KV bytes one layer's attention reads for one token with ``n_past`` tokens in the cache (K and V)."""
    return int(n_past * shape.n_kv_heads * (shape.head_dim_k + shape.head_dim_v) * KV_TYPE_BYTES[kv_type])


def token_bytes(shape: ModelShape, plan: OffloadPlan, n_past: int) -> TokenBytes:
    """Where one token's reads happen, following the plan's layer placement (llama.cpp's, see planner)."""
    n_dev = len(plan.gpu_bytes)
    split = plan.tensor_split or [1.0] * max(1, n_dev)
    where = assign_layers(shape.n_layers, plan.n_gpu_layers, split) if n_dev and plan.n_gpu_layers else \
        [-1] * (shape.n_layers + 1)
    per_kv = kv_bytes_per_layer(shape, n_past, plan.kv_type)
    cpu_w = shape.embd_bytes // max(1, shape.n_vocab)  # one row of the input embeddings
    cpu_kv = 0
    gw, gk, gb = [0] * n_dev, [0] * n_dev, [0] * n_dev
    for il, d in enumerate(where):
        w = active_layer_bytes(shape, il) if il < shape.n_layers else shape.output_bytes
        kv = per_kv if il < shape.n_layers else 0
        if d < 0:
            cpu_w += w
            cpu_kv += kv
        else:
            gw[d] += w
            gk[d] += kv
            gb[d] += 1
    return TokenBytes(cpu_w, cpu_kv, tuple(gw), tuple(gk), tuple(gb))


def seconds_per_token(shape: ModelShape, tb: TokenBytes, speed: MachineSpeed, i: int = 0) -> tuple[float, str]:
    """Seconds per token with the ``i``-th efficiency (0 typical, 1 low, 2 high) and which limit binds the CPU.

    CPU: the larger of the memory time (weights + KV ÷ effective bandwidth) and the compute time (weight bytes ÷ the
    threads' decode rate, plus each layer's fixed work), spread over the threads; plus barriers between threads.
    Each GPU: its bytes ÷ its effective bandwidth. Plus the fixed cost per token.
    """
    t = 0.0
    bound = "gpu"
    cpu_layers = shape.n_layers - sum(tb.gpu_blocks)
    if tb.cpu_weights + tb.cpu_kv > shape.embd_bytes // max(1, shape.n_vocab):
        t, bound = _cpu_seconds(tb.cpu_weights, tb.cpu_kv, cpu_layers, speed, i)
    for bw, w, kv in zip(speed.gpus, tb.gpu_weights, tb.gpu_kv, strict=False):
        if w:
            t += (w + kv) / bw.effective(i)
    fixed = FIXED_S + PER_VOCAB_S * shape.n_vocab
    if any(tb.gpu_blocks):
        fixed += GPU_FIXED_S + GPU_LAYER_S * sum(tb.gpu_blocks)
    return t + fixed * FIXED_SPREAD[i], bound


def _cpu_seconds(weights: int, kv: int, layers: int, speed: MachineSpeed, i: int) -> tuple[float, str]:
    """A CPU's time for its part of one token: the larger of memory time and compute time, plus thread barriers."""
    threads = max(1, speed.threads)
    t_mem = (weights + kv) / speed.cpu.effective(i)
    t_comp = (weights / speed.thread_bytes_per_s + layers * LAYER_FLOPS / speed.thread_flops) \
        / (threads * COMPUTE_SPREAD[i])
    return max(t_mem, t_comp) + (SYNC_LAYER_S * layers if threads > 1 else 0.0), \
        "compute" if t_comp > t_mem else "memory"


LAN_BYTES_PER_S = 117e6  # assumed: gigabit Ethernet's payload rate, when the link's throughput is not measured
RPC_ROUND_TRIPS = 3  # assumed, per helper and token: set the input, compute the graph, read the result


def predict_lan_decode(shape: ModelShape, helper_layers: Sequence[int], round_trip_s: Sequence[float],
                       speed: MachineSpeed, *, n_past: int = DEFAULT_N_PAST, kv_type: str = "f16",
                       link_bytes_per_s: float = LAN_BYTES_PER_S) -> SpeedPrediction:
    """LAN mode, every layer on the helper machines (llama.cpp's RPC backend, in the helpers' order): per token each
    helper reads its layers' weights and KV cache (its CPU assumed as fast as this one: llama.cpp's RPC reports
    memory, not speed), each link costs its measured round trip ``RPC_ROUND_TRIPS`` times, the hidden state goes
    to and from every helper and the logits come back from the last one; plus this machine's fixed cost."""
    total = shape.n_layers + 1  # the output layer goes with the last block, to the last helper
    per_kv = kv_bytes_per_layer(shape, n_past, kv_type)
    first, shares, last = 0, [], -1
    for n in helper_layers:
        blocks = range(first, min(first + n, shape.n_layers))
        weights = sum(active_layer_bytes(shape, il) for il in blocks)
        shares.append((weights, per_kv * len(blocks), len(blocks)))
        first += n
    if shares:
        last = max((k for k, s in enumerate(shares) if s[2]), default=len(shares) - 1)
        w, kv, n = shares[last]
        shares[last] = (w + shape.output_bytes, kv, n)
    link_bytes = 2 * 4 * shape.n_embd * len(shares) + 4 * shape.n_vocab  # f32 hidden state in and out; logits
    link_s = link_bytes / link_bytes_per_s + RPC_ROUND_TRIPS * sum(round_trip_s)

    def seconds(i: int) -> float:
        compute = sum(_cpu_seconds(w, kv, n, speed, i)[0] for w, kv, n in shares)
        return compute + link_s * (1.0, 1.5, 0.75)[i] + (FIXED_S + PER_VOCAB_S * shape.n_vocab) * FIXED_SPREAD[i]

    t, t_low, t_high = seconds(0), seconds(1), seconds(2)
    basis = (
        "LAN mode: per token " + "; ".join(f"helper {k + 1} reads {_mb(w)} of weights and {_mb(kv)} of KV cache "
                                           f"({n} blocks{' and the output layer' if k == last else ''})"
                                           for k, (w, kv, n) in enumerate(shares)),
        "the helpers' CPUs assumed as fast as this one (llama.cpp's RPC reports their memory, not their speed): "
        + speed.cpu.detail,
        f"the link: {RPC_ROUND_TRIPS} round trips per helper and token at the measured "
        + ", ".join(f"{1000 * r:.2f} ms" for r in round_trip_s)
        + f", and {_mb(link_bytes)} per token at {link_bytes_per_s / 1e6:.0f} MB/s (assumed: gigabit Ethernet)",
    )
    return SpeedPrediction(value=1 / t, low=1 / t_low, high=1 / t_high, n_past=n_past, at_full_context=1 / t,
                           n_ctx=n_past, gpu_layers=0, total_layers=total, bound="lan", basis=basis)


def predict_decode(shape: ModelShape, plan: OffloadPlan, speed: MachineSpeed, *,
                   n_past: int | None = None) -> SpeedPrediction:
    """Decode tokens/s for ``shape`` loaded as ``plan`` says on the machine ``speed`` describes, at ``n_past``
    tokens of context (default: 1024, or the context if smaller), with bounds and the basis in sentences."""
    past = min(plan.n_ctx, DEFAULT_N_PAST if n_past is None else max(0, n_past))
    tb = token_bytes(shape, plan, past)
    t, bound = seconds_per_token(shape, tb, speed, 0)
    t_low, _ = seconds_per_token(shape, tb, speed, 1)
    t_high, _ = seconds_per_token(shape, tb, speed, 2)
    full_tb = token_bytes(shape, plan, pad_ctx(plan.n_ctx))
    t_full, _ = seconds_per_token(shape, full_tb, speed, 0)
    total_layers = shape.n_layers + 1
    gpu_layers = min(plan.n_gpu_layers, total_layers) if plan.gpu_bytes else 0
    on_cpu = tb.cpu_weights > shape.embd_bytes // max(1, shape.n_vocab)
    reads = ([f"the CPU reads {_mb(tb.cpu_weights)} of weights and {_mb(tb.cpu_kv)} of KV cache"] if on_cpu else []) \
        + [f"{bw.device} reads {_mb(w)} of weights and {_mb(kv)} of KV cache"
           for bw, w, kv in zip(speed.gpus, tb.gpu_weights, tb.gpu_kv, strict=False) if w]
    basis = [f"per token at {past} tokens of context " + "; ".join(reads)]
    if on_cpu:
        basis += [speed.cpu.detail, speed.compute_detail,
                  f"the CPU part is {bound}-bound with {speed.threads} thread{'s' if speed.threads != 1 else ''}"]
    basis += [bw.detail for bw, w in zip(speed.gpus, tb.gpu_weights, strict=False) if w]
    basis.append(f"fixed cost {1000 * (FIXED_S + PER_VOCAB_S * shape.n_vocab):.2f} ms per token (sampling over "
                 f"{shape.n_vocab:,} tokens, the worker's loop; measured on the reference machine)"
                 + (f" + {1000 * (GPU_FIXED_S + GPU_LAYER_S * sum(tb.gpu_blocks)):.2f} ms of GPU launches "
                    f"(assumed)" if any(tb.gpu_blocks) else ""))
    if shape.n_experts > 1:
        basis.append(f"mixture of experts: {shape.n_experts_used or 2} of {shape.n_experts} experts read per token")
    basis.append(f"at a full {plan.n_ctx}-token context about {fmt_tps(1 / t_full)} tok/s (the KV cache read per "
                 f"token grows with the conversation)")
    return SpeedPrediction(value=1 / t, low=1 / t_low, high=1 / t_high, n_past=past, at_full_context=1 / t_full,
                           n_ctx=plan.n_ctx, gpu_layers=gpu_layers, total_layers=total_layers, bound=bound,
                           basis=tuple(basis))


def _mb(n: int) -> str:
    return f"{n / 1e9:.2f} GB" if n >= 1e9 else f"{n / 1e6:.1f} MB"
