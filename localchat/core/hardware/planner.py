"""The offload planner: how many layers go on which GPU, what context and KV type fit, and why.

Everything is computed from the model's own tensor table (per-layer weight bytes, where the output and embedding
tensors live), the KV cache arithmetic llama.cpp uses, a compute-buffer estimate per architecture family checked
against llama.cpp's own logged figures (docs/SIZING.md), a reserve per device, and *free* memory, not total.

Counting follows llama.cpp: ``n_gpu_layers`` counts repeating blocks, +1 when the output layer is offloaded; the
last blocks are the ones offloaded; the input embedding stays on the CPU.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from localchat.core.hardware.detect import GIB, Machine
from localchat.core.models.gguf_info import GGUFInfo

MIB = 1024**2
Verdict = Literal["full_gpu", "partial", "cpu", "too_large"]
KV_TYPE_BYTES = {"f16": 2.0, "q8_0": 34 / 32, "q4_0": 18 / 32}
# On x86 llama.cpp repacks these weight types into an extra CPU buffer (the mmap stays too): count them twice.
CPU_REPACKED_TYPES = {"Q4_0", "Q4_K", "IQ4_NL"}
N_UBATCH = 512
RAM_RESERVE = 1 * GIB  # the OS, the app, the worker's Python


@dataclass(frozen=True)
class ModelShape:
    """The numbers the planner needs, from a GGUF tensor table (exact) or catalogue figures (approximate)."""

    name: str
    architecture: str
    n_layers: int
    layer_bytes: tuple[int, ...]
    embd_bytes: int
    output_bytes: int
    n_ctx_train: int
    n_embd: int
    n_heads: int
    n_kv_heads: int
    head_dim_k: int
    head_dim_v: int
    n_vocab: int
    n_ff: int
    n_experts_used: int = 0
    repacked_bytes: int = 0  # CPU weights llama.cpp would repack (extra RAM), when all layers run on CPU
    assumptions: tuple[str, ...] = ()

    @property
    def weights_bytes(self) -> int:
        return sum(self.layer_bytes) + self.embd_bytes + self.output_bytes

    @classmethod
    def from_gguf(cls, info: GGUFInfo) -> ModelShape:
        assumptions = list(info.assumptions)
        n_layers = info.n_layers
        if not n_layers:
            blocks = {int(m.group(1)) for t in info.tensors if (m := re.match(r"blk\.(\d+)\.", t.name))}
            n_layers = len(blocks) or 1
            assumptions.append(f"no block count in the metadata: counted {n_layers} blocks in the tensor table")
        layer = [0] * n_layers
        embd = output = repacked = 0
        tied = not any(t.name == "output.weight" for t in info.tensors)
        for t in info.tensors:
            m = re.match(r"blk\.(\d+)\.", t.name)
            if m and int(m.group(1)) < n_layers:
                layer[int(m.group(1))] += t.n_bytes
            elif t.name == "token_embd.weight":
                embd += t.n_bytes
            else:
                output += t.n_bytes  # output.weight, output_norm, rope freqs, ...
            if t.type_name in CPU_REPACKED_TYPES and m:
                repacked += t.n_bytes
        embd_t = next((t for t in info.tensors if t.name == "token_embd.weight"), None)
        if tied and embd_t is not None:
            output += embd_t.n_bytes  # tied embeddings: the GPU needs its own copy for the output layer
            assumptions.append("output layer tied to the token embeddings: a copy counts on the output device")
        n_embd = info.embedding_length or 4096
        n_heads = info.n_heads or 32
        if info.embedding_length is None or info.n_heads is None:
            assumptions.append(f"missing embedding/head metadata: assumed {n_embd} and {n_heads} heads")
        if info.architecture not in KNOWN_FAMILIES:
            assumptions.append(f"unknown architecture {info.architecture!r}: compute buffer estimated as for llama")
        ff = info.metadata.get(f"{info.architecture}.feed_forward_length")
        n_ff = int(max(ff) if isinstance(ff, list) else ff) if ff else 4 * n_embd
        if info.n_experts:
            assumptions.append(f"mixture of experts ({info.n_experts} experts, {info.n_experts_used} active): "
                               f"all experts' weights must be resident; compute scaled by the active ones")
        return cls(
            name=info.name, architecture=info.architecture, n_layers=n_layers, layer_bytes=tuple(layer),
            embd_bytes=embd, output_bytes=output, n_ctx_train=info.context_length or 4096, n_embd=n_embd,
            n_heads=n_heads, n_kv_heads=info.n_kv_heads or n_heads,
            head_dim_k=info.head_dim_k or n_embd // n_heads, head_dim_v=info.head_dim_v or n_embd // n_heads,
            n_vocab=info.vocab_size or 32000, n_ff=n_ff, n_experts_used=info.n_experts_used or 0,
            repacked_bytes=repacked, assumptions=tuple(assumptions),
        )


KNOWN_FAMILIES = {"llama", "qwen2", "qwen3", "qwen2moe", "qwen3moe", "mistral", "gemma", "gemma2", "gemma3", "phi3",
                  "deepseek2", "granite", "olmo", "olmo2", "starcoder2", "command-r", "exaone", "internlm2", "glm4"}


@dataclass(frozen=True)
class DeviceBudget:
    name: str
    free_bytes: int
    total_bytes: int
    unified: bool = False


@dataclass
class OffloadPlan:
    n_layers: int
    n_gpu_layers: int
    n_ctx: int
    weights_bytes: int
    kv_bytes: int
    compute_bytes: int
    gpu_bytes: list[int]
    cpu_bytes: int
    tensor_split: list[float] | None
    flash_attn: bool
    kv_type: str
    verdict: Verdict
    reasons: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def kv_bytes(shape: ModelShape, n_ctx: int, kv_type: str = "f16", n_layers: int | None = None) -> int:
    """KV cache: n_ctx × layers × kv_heads × (k dim + v dim) × type size (what llama.cpp allocates)."""
    layers = shape.n_layers if n_layers is None else n_layers
    return int(n_ctx * layers * shape.n_kv_heads * (shape.head_dim_k + shape.head_dim_v) * KV_TYPE_BYTES[kv_type])


def compute_bytes(shape: ModelShape, n_ctx: int, flash_attn: bool, n_ubatch: int = N_UBATCH) -> int:
    """llama.cpp's compute buffer: the largest of the graph's peaks, which its allocator reuses.

    Peaks: the logits (n_vocab × n_ubatch f32) with the last hidden states; without flash attention the attention
    scores and mask (n_ctx × n_ubatch × (heads + 1) f32), with it only an f16 mask; plus the FFN activations.
    """
    ffn = n_ubatch * shape.n_ff * 8 * max(1, shape.n_experts_used)
    logits = shape.n_vocab * n_ubatch * 4 + n_ubatch * shape.n_embd * 8
    attn = n_ctx * n_ubatch * 2 if flash_attn else n_ctx * n_ubatch * (shape.n_heads + 1) * 4
    return max(logits, attn + ffn)


def device_reserve(total: int) -> int:
    """Room llama.cpp cannot use: driver context, fragmentation, the desktop. 5% of the card, at least 300 MiB."""
    return max(300 * MIB, total // 20)


def parse_size(text: str) -> int:
    """'12GiB', '8GB', '24G', '16384MiB' → bytes. Absurd values are refused with a clear message."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B?|B)?\s*", text, flags=re.I)
    if not m:
        raise ValueError(f"cannot read {text!r} as a memory size: use a number and a unit, like 12GiB or 8GB")
    value = float(m.group(1))
    unit = (m.group(2) or "GiB").upper()
    mult = {"B": 1, "K": 1024, "KB": 1000, "KIB": 1024, "M": MIB, "MB": 10**6, "MIB": MIB, "G": GIB, "GB": 10**9,
            "GIB": GIB, "T": 1024**4, "TB": 10**12, "TIB": 1024**4}[unit]
    size = int(value * mult)
    if size < 256 * MIB:
        raise ValueError(f"{text!r} is under 256 MiB: no GPU or machine that can run a model has so little memory")
    if size > 4 * 1024**4:
        raise ValueError(f"{text!r} is over 4 TiB per device: that is not a real machine")
    return size


def _fmt(n: int) -> str:
    return f"{n / GIB:.2f} GiB" if n >= GIB else f"{n / MIB:.0f} MiB"


def _place(shape: ModelShape, devices: list[DeviceBudget], n_ctx: int, kv_type: str, fa: bool,
           max_layers: int | None) -> tuple[int, list[int], list[int], int]:
    """Fill devices in order with blocks from the last one down (as llama.cpp offloads them); the output layer
    joins only once every block is on a GPU. Returns (blocks, blocks per device, bytes per device, output_on)."""
    comp = compute_bytes(shape, n_ctx, fa)
    per_kv = kv_bytes(shape, n_ctx, kv_type, 1)
    want = shape.n_layers + 1 if max_layers is None else max(0, min(max_layers, shape.n_layers + 1))
    budgets = [d.free_bytes - device_reserve(d.total_bytes) - comp for d in devices]
    counts, used = [0] * len(devices), [0] * len(devices)
    # Several GPUs share the blocks in proportion to their room, as llama.cpp's default split does; a second pass
    # lets a device with spare room take what another could not.
    room = [max(0, b) for b in budgets]
    shares = [round(min(want, shape.n_layers) * r / sum(room)) if sum(room) else 0 for r in room]
    if len(devices) == 1:
        shares = [shape.n_layers]
    top = shape.n_layers - 1
    for cap in (shares, [shape.n_layers] * len(devices)):
        for d_i in range(len(devices)):
            while top >= 0 and shape.n_layers - 1 - top < want and counts[d_i] < cap[d_i] and \
                    used[d_i] + shape.layer_bytes[top] + per_kv <= budgets[d_i]:
                used[d_i] += shape.layer_bytes[top] + per_kv
                counts[d_i] += 1
                top -= 1
    blocks = sum(counts)
    output_on = 0
    if want > shape.n_layers and blocks == shape.n_layers:
        for d_i in reversed(range(len(devices))):  # llama.cpp puts it after the last block
            if counts[d_i] and used[d_i] + shape.output_bytes <= budgets[d_i]:
                used[d_i] += shape.output_bytes
                output_on = 1
                break
    return blocks, counts, [u + comp if c else 0 for u, c in zip(used, counts, strict=True)], output_on


def plan_offload(shape: ModelShape, machine: Machine, n_ctx: int, *, allow_ctx_reduction: bool = True,
                 gpu_layers_override: int | None = None, flash_attn: bool | None = None,
                 kv_type: str | None = None) -> OffloadPlan:
    """Choose n_gpu_layers, n_ctx, KV type, flash attention and tensor split for ``shape`` on ``machine``."""
    reasons: list[str] = list(shape.assumptions)
    gpus = list(machine.usable_gpus)
    devices = [DeviceBudget(g.name, g.free_bytes, g.total_bytes, g.unified) for g in gpus]
    unified = any(d.unified for d in devices)
    if n_ctx > shape.n_ctx_train:
        reasons.append(f"context {n_ctx} is above what the model was trained for ({shape.n_ctx_train}); "
                       f"using {shape.n_ctx_train}")
        n_ctx = shape.n_ctx_train
    fa = bool(devices) if flash_attn is None else flash_attn
    kv_choices = [kv_type] if kv_type else (["f16", "q8_0"] if fa else ["f16"])
    if kv_type and kv_type != "f16" and not fa:
        reasons.append(f"a {kv_type} KV cache needs flash attention in llama.cpp: using f16")
        kv_choices = ["f16"]
    contexts = [n_ctx]
    if allow_ctx_reduction and gpu_layers_override is None:
        c = n_ctx
        while c > 4096:
            c = max(4096, c // 2)
            contexts.append(c)

    full = shape.n_layers + 1
    chosen: tuple[int, str, tuple[int, list[int], list[int], int]] | None = None
    if devices and gpu_layers_override is None:
        for c in contexts:
            for kv in kv_choices:
                placed = _place(shape, devices, c, kv, fa, None)
                if placed[0] + placed[3] == full:
                    chosen = (c, kv, placed)
                    break
            if chosen:
                break
        if chosen and chosen[0] < n_ctx:
            reasons.append(f"all layers fit on the GPU only with a {chosen[0]}-token context; {n_ctx} would "
                           f"push layers to the CPU (pass --ctx to choose)")
        if chosen and chosen[1] != "f16":
            reasons.append(f"the KV cache is stored as {chosen[1]} (with flash attention) so every layer fits")
        if chosen is None:
            best = max(((_place(shape, devices, n_ctx, kv, fa, None), kv) for kv in kv_choices),
                       key=lambda p: p[0][0] + p[0][3])
            chosen = (n_ctx, best[1], best[0])
    elif devices:
        chosen = (n_ctx, kv_choices[0], _place(shape, devices, n_ctx, kv_choices[0], fa, gpu_layers_override))
    ctx_used, kv_used, placed = chosen if chosen else (n_ctx, "f16", (0, [], [], 0))
    blocks, counts, gpu_used, output_on = placed
    n_gpu_layers = blocks + output_on

    kv_total = kv_bytes(shape, ctx_used, kv_used)
    comp = compute_bytes(shape, ctx_used, fa)
    cpu_blocks = shape.n_layers - blocks
    cpu_weights = sum(shape.layer_bytes[:cpu_blocks]) + shape.embd_bytes + (0 if output_on else shape.output_bytes)
    repack = int(shape.repacked_bytes * cpu_blocks / shape.n_layers) if shape.n_layers else 0
    # Working set, measured (docs/SIZING.md): repacked weights live in an anonymous buffer of the same size while
    # their memory-mapped originals become reclaimable page cache, so they count once.
    cpu_bytes = cpu_weights + kv_bytes(shape, ctx_used, kv_used, cpu_blocks) + (comp if not blocks else comp // 4)
    ram_budget = machine.ram_available - RAM_RESERVE
    if unified:
        ram_budget -= sum(gpu_used)

    gpu_names = ", ".join(f"{d.name} ({_fmt(d.free_bytes)} free of {_fmt(d.total_bytes)})" for d in devices)
    reasons.append(f"weights {_fmt(shape.weights_bytes)}: {shape.n_layers} blocks of about "
                   f"{_fmt(max(shape.layer_bytes) if shape.layer_bytes else 0)}, output layer "
                   f"{_fmt(shape.output_bytes)}, input embeddings {_fmt(shape.embd_bytes)} (always on the CPU)")
    reasons.append(f"KV cache {_fmt(kv_total)} for {ctx_used} tokens ({kv_used}): {ctx_used} × {shape.n_layers} "
                   f"layers × {shape.n_kv_heads} KV heads × ({shape.head_dim_k}+{shape.head_dim_v}) dims × "
                   f"{KV_TYPE_BYTES[kv_used]:.2f} bytes")
    reasons.append(f"compute buffer about {_fmt(comp)} ({'with' if fa else 'without'} flash attention)")
    if gpu_layers_override is not None:
        reasons.append(f"you asked for {gpu_layers_override} GPU layers; {n_gpu_layers} fit" +
                       ("" if n_gpu_layers >= min(gpu_layers_override, full) else
                        f" — the rest would not fit in {_fmt(sum(d.free_bytes for d in devices))} of free GPU memory"))
    if not devices:
        reasons.append("no GPU this llama.cpp build can use: everything runs on the CPU")
    elif n_gpu_layers == full:
        reasons.append(f"all {shape.n_layers} blocks and the output layer fit on {gpu_names}")
    elif n_gpu_layers:
        reasons.append(f"{blocks} of {shape.n_layers} blocks fit on {gpu_names} after a "
                       f"{_fmt(device_reserve(devices[0].total_bytes))} reserve; the other {cpu_blocks} run on the "
                       f"CPU (slower)")
    else:
        reasons.append(f"not even one block fits on {gpu_names} beside the compute buffer: CPU only")
    if repack:
        reasons.append(f"on the CPU llama.cpp repacks {_fmt(repack)} of quantised weights into its own buffer; the "
                       f"memory-mapped originals stay in the page cache (resident memory right after loading can "
                       f"reach {_fmt(cpu_bytes + repack)}) but the system can reclaim them")

    if cpu_bytes > ram_budget:
        verdict: Verdict = "too_large"
        reasons.append(f"too large: the CPU side needs {_fmt(cpu_bytes)} but only {_fmt(max(0, ram_budget))} of "
                       f"RAM is available after a {_fmt(RAM_RESERVE)} reserve" +
                       (" (unified memory: the GPU share comes out of the same RAM)" if unified else ""))
    elif n_gpu_layers == full:
        verdict = "full_gpu"
    elif n_gpu_layers:
        verdict = "partial"
    else:
        verdict = "cpu"
    split = None
    if len(devices) > 1 and blocks:
        split = [round(c / blocks, 4) for c in counts]
    return OffloadPlan(
        n_layers=shape.n_layers, n_gpu_layers=n_gpu_layers, n_ctx=ctx_used, weights_bytes=shape.weights_bytes,
        kv_bytes=kv_total, compute_bytes=comp,
        gpu_bytes=[u + device_reserve(d.total_bytes) if u else 0 for u, d in zip(gpu_used, devices, strict=True)],
        cpu_bytes=cpu_bytes, tensor_split=split, flash_attn=fa, kv_type=kv_used, verdict=verdict, reasons=reasons)
