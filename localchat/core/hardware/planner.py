"""The offload planner: how many layers go on which GPU, what context and KV type fit, and why.

Everything is computed from the model's own tensor table (per-layer weight bytes, where the output and embedding
tensors live), the KV cache arithmetic llama.cpp uses, a compute-buffer estimate per architecture family checked
against llama.cpp's own logged figures (docs/SIZING.md), a reserve per device, and *free* memory, not total.

Counting and placement follow llama.cpp (``llama_model::load_tensors``): ``n_gpu_layers`` counts repeating blocks,
+1 when the output layer is offloaded; the *last* ``n_gpu_layers`` blocks are offloaded; the input embedding stays on
the CPU; with several GPUs the offloaded layers are cut into consecutive runs by the cumulative ``tensor_split``
fractions (the first GPU takes the lowest offloaded blocks, the output layer goes with the last run). The planner
replays that assignment, so the bytes it checks per device are the bytes llama.cpp will put there.

Public API::

    shape = ModelShape.from_gguf(read_gguf(path))          # or ModelShape.from_catalogue(...)
    plan = plan_offload(shape, machine, n_ctx)             # -> OffloadPlan; plan.to_dict() is `plan --json`
    kv_bytes(shape, n_ctx, "f16"), compute_bytes(shape, n_ctx, flash_attn)
    parse_size("12GiB")                                    # ValueError with a clear message for absurd sizes
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
# Weight types llama.cpp's CPU backend repacks into its own CPU_REPACK buffer when the machine's probe could not say
# (measured on x86-64 with AVX2: Q4_0, Q4_K, Q2_K, IQ4_NL, MXFP4; the probe measures the real set per machine).
CPU_REPACKED_TYPES = frozenset({"Q4_0", "Q4_K", "Q2_K", "IQ4_NL", "MXFP4"})
N_UBATCH = 512
CTX_PAD = 256  # llama.cpp rounds the context up to a multiple of 256
RAM_RESERVE = 1 * GIB  # the OS, the app, the worker's Python
MIN_CTX = 4096  # never lower the context below this to fit more layers

# Architecture families, for the compute-buffer estimate and the stated assumptions.
DENSE = {"llama", "qwen2", "qwen3", "mistral", "mistral3", "phi3", "granite", "olmo", "olmo2", "starcoder2",
         "command-r", "cohere2", "exaone", "internlm2", "glm4", "stablelm", "smollm3", "gpt2", "falcon", "baichuan"}
MOE = {"qwen2moe", "qwen3moe", "mixtral", "deepseek", "deepseek2", "granitemoe", "olmoe", "dbrx", "gpt-oss",
       "llama4", "glm4moe", "ernie4_5-moe", "hunyuan-moe"}
GEMMA = {"gemma", "gemma2", "gemma3", "gemma3n"}
KNOWN_FAMILIES = DENSE | MOE | GEMMA


def pad_ctx(n_ctx: int) -> int:
    """The context llama.cpp really allocates: rounded up to a multiple of 256 (1000 → 1024)."""
    return max(CTX_PAD, -(-n_ctx // CTX_PAD) * CTX_PAD)


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
    n_ff: int  # FFN width active per token (MoE: expert width × experts used + shared experts)
    n_experts: int = 0
    n_experts_used: int = 0
    # bytes per weight type in the blocks' matrices (what llama.cpp may repack on the CPU), and in output.weight
    block_type_bytes: tuple[tuple[str, int], ...] = ()
    output_type: str = ""
    assumptions: tuple[str, ...] = ()
    expert_bytes: int = 0  # bytes of the blocks' routed-expert tensors (``*_exps``); a token reads the used share

    @property
    def weights_bytes(self) -> int:
        return sum(self.layer_bytes) + self.embd_bytes + self.output_bytes

    def repacked_bytes(self, repack_types: frozenset[str] | None = None) -> int:
        """CPU_REPACK bytes when every block runs on the CPU (scale by the share of CPU blocks)."""
        types = CPU_REPACKED_TYPES if repack_types is None else repack_types
        return sum(b for t, b in self.block_type_bytes if t in types)

    @classmethod
    def from_gguf(cls, info: GGUFInfo) -> ModelShape:
        assumptions = list(info.assumptions)
        arch = info.architecture
        n_layers = info.n_layers
        if not n_layers:
            blocks = {int(m.group(1)) for t in info.tensors if (m := re.match(r"blk\.(\d+)\.", t.name))}
            n_layers = len(blocks) or 1
            assumptions.append(f"no block count in the metadata: counted {n_layers} blocks in the tensor table")
        layer = [0] * n_layers
        embd = output = 0
        types: dict[str, int] = {}
        experts = 0
        for t in info.tensors:
            m = re.match(r"blk\.(\d+)\.", t.name)
            if m and int(m.group(1)) < n_layers:
                layer[int(m.group(1))] += t.n_bytes
                if "_exps." in t.name:
                    experts += t.n_bytes
                if len(t.shape) >= 2:
                    types[t.type_name] = types.get(t.type_name, 0) + t.n_bytes
            elif t.name == "token_embd.weight":
                embd += t.n_bytes
            else:
                output += t.n_bytes  # output.weight, output_norm, rope freqs, ...
        out_t = next((t for t in info.tensors if t.name == "output.weight"), None)
        embd_t = next((t for t in info.tensors if t.name == "token_embd.weight"), None)
        if out_t is None and embd_t is not None:
            output += embd_t.n_bytes  # tied embeddings: llama.cpp loads a second copy for the output layer
            assumptions.append("the output layer shares the token embeddings: llama.cpp keeps a second copy of them "
                               "on the output layer's device")
        n_embd = info.embedding_length or 4096
        n_heads = info.n_heads or 32
        if info.embedding_length is None or info.n_heads is None:
            assumptions.append(f"no embedding/head metadata: assumed {n_embd} wide with {n_heads} heads")
        if arch not in KNOWN_FAMILIES:
            assumptions.append(f"unknown architecture {arch!r}: KV cache and compute buffer estimated as for a "
                               f"llama-style transformer")
        meta = info.metadata

        def num(key: str) -> int | None:
            v = meta.get(f"{arch}.{key}")
            if isinstance(v, list):
                v = max(v) if v else None
            return int(v) if v is not None else None

        n_ff = num("feed_forward_length") or 4 * n_embd
        n_experts = info.n_experts or 0
        n_used = info.n_experts_used or 0
        head_k = info.head_dim_k or n_embd // n_heads
        head_v = info.head_dim_v or n_embd // n_heads
        n_kv = info.n_kv_heads or n_heads
        if n_experts > 1:
            used = n_used or 2
            expert_ff = num("expert_feed_forward_length") or n_ff
            shared = (num("expert_shared_feed_forward_length") or expert_ff) * (num("expert_shared_count") or 0)
            n_ff = expert_ff * used + shared
            assumptions.append(f"mixture of experts: {n_experts} experts, {used} active per token; every expert's "
                               f"weights must be resident, the compute buffer follows the active ones")
        lora = num("attention.kv_lora_rank")
        if lora:  # DeepSeek-2/3 multi-head latent attention: the cache holds the compressed latent
            rope = num("rope.dimension_count") or 64
            n_kv, head_k, head_v = 1, lora + rope, lora
            assumptions.append(f"latent attention (MLA): the KV cache holds a {lora}+{rope} latent per token and "
                               f"layer, an upper bound for llama.cpp's layout")
        if num("attention.sliding_window"):
            assumptions.append("sliding-window attention layers are counted at the full context: the KV estimate is "
                               "an upper bound")
        return cls(
            name=info.name, architecture=arch, n_layers=n_layers, layer_bytes=tuple(layer),
            embd_bytes=embd, output_bytes=output, n_ctx_train=info.context_length or 4096, n_embd=n_embd,
            n_heads=n_heads, n_kv_heads=n_kv, head_dim_k=head_k, head_dim_v=head_v,
            n_vocab=info.vocab_size or 32000, n_ff=n_ff, n_experts=n_experts, n_experts_used=n_used,
            block_type_bytes=tuple(sorted(types.items())), output_type=out_t.type_name if out_t else "",
            assumptions=tuple(assumptions), expert_bytes=experts,
        )

    @classmethod
    def from_catalogue(cls, *, name: str, file_size: int, n_layers: int, n_embd: int, n_kv_heads: int,
                       head_dim: int, n_vocab: int, n_ctx_train: int, params_b: float | None = None,
                       architecture: str = "llama", quant: str = "") -> ModelShape:
        """An approximate shape for a model that is not downloaded yet (no tensor table): the file's bytes are
        spread over the parameters, the embeddings and output take ``n_vocab × n_embd`` parameters each, and the
        rest is split evenly over the blocks."""
        n_heads = max(1, n_embd // head_dim)
        emb_params = n_vocab * n_embd
        if params_b:
            params = params_b * 1e9
            per_layer = max(1.0, (params - 2 * emb_params) / n_layers)
            attn = 2 * n_embd * n_heads * head_dim + 2 * n_embd * n_kv_heads * head_dim
            n_ff = max(n_embd, int((per_layer - attn) / (3 * n_embd)))
        else:
            n_ff = 3 * n_embd
            params = n_layers * (2 * n_embd * n_heads * head_dim + 2 * n_embd * n_kv_heads * head_dim
                                 + 3 * n_embd * n_ff) + 2 * emb_params
        bytes_per_param = file_size / params
        embd = int(emb_params * bytes_per_param)
        per_layer_bytes = max(1, (file_size - 2 * embd) // n_layers)
        repack_type = {"Q4_0": "Q4_0", "Q4_K_M": "Q4_K", "Q4_K_S": "Q4_K", "IQ4_NL": "IQ4_NL", "Q2_K": "Q2_K"}
        q = repack_type.get(quant.upper(), "")
        return cls(
            name=name, architecture=architecture, n_layers=n_layers, layer_bytes=(per_layer_bytes,) * n_layers,
            embd_bytes=embd, output_bytes=embd, n_ctx_train=n_ctx_train, n_embd=n_embd, n_heads=n_heads,
            n_kv_heads=n_kv_heads, head_dim_k=head_dim, head_dim_v=head_dim, n_vocab=n_vocab, n_ff=n_ff,
            block_type_bytes=((q, int(per_layer_bytes * n_layers * 0.7)),) if q else (),
            assumptions=("not downloaded yet: per-layer sizes are the file size spread evenly over the blocks",),
        )


@dataclass(frozen=True)
class DeviceBudget:
    name: str
    free_bytes: int
    total_bytes: int
    unified: bool = False

    @property
    def usable(self) -> int:
        return self.free_bytes - device_reserve(self.total_bytes)


@dataclass
class OffloadPlan:
    """``localchat plan --json``: exactly these fields (DESIGN.md)."""

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

    @property
    def summary(self) -> str:
        """One line for a badge tooltip or a status bar."""
        where = {"full_gpu": "all on the GPU", "partial": f"{self.n_gpu_layers}/{self.n_layers + 1} layers on the GPU",
                 "cpu": "on the CPU", "too_large": "does not fit"}[self.verdict]
        return f"{where}, {self.n_ctx // 1024}k context" if self.verdict != "too_large" else where


def kv_bytes(shape: ModelShape, n_ctx: int, kv_type: str = "f16", n_layers: int | None = None) -> int:
    """KV cache as llama.cpp allocates it: padded n_ctx × layers × kv_heads × (k dim + v dim) × type size."""
    layers = shape.n_layers if n_layers is None else n_layers
    return int(pad_ctx(n_ctx) * layers * shape.n_kv_heads * (shape.head_dim_k + shape.head_dim_v)
               * KV_TYPE_BYTES[kv_type])


def compute_bytes(shape: ModelShape, n_ctx: int, flash_attn: bool, n_ubatch: int = N_UBATCH) -> int:
    """llama.cpp's compute buffer: the largest of the graph's peaks, which its allocator reuses.

    One micro-batch of ``min(n_ubatch, n_ctx)`` tokens. Peaks, matched to llama.cpp's logged buffers
    (docs/SIZING.md): the logits (``n_vocab × ubatch`` f32) with the last hidden states; or, without flash attention,
    the attention scores and their f32 mask (``n_ctx × ubatch × (heads + 1) × 4``) plus the FFN activations (gate and
    up, ``ubatch × n_ff × 4`` each), which the allocator keeps in separate regions; with flash attention only an f16
    mask. MoE families use the active experts' FFN width, plus the router's scores.
    """
    ctx = pad_ctx(n_ctx)
    ub = min(n_ubatch, ctx)
    ffn = ub * shape.n_ff * 8
    if shape.n_experts > 1:
        ffn += ub * shape.n_experts * 4 * 2  # router logits and probabilities
    logits = shape.n_vocab * ub * 4 + ub * shape.n_embd * 8
    attn = ctx * ub * 2 if flash_attn else ctx * ub * (shape.n_heads + 1) * 4
    return max(logits, attn + ffn)


def device_reserve(total: int) -> int:
    """Room llama.cpp cannot use: driver context, fragmentation, the desktop. 5% of the card, at least 300 MiB."""
    return max(300 * MIB, total // 20)


_UNITS = {"B": 1, "K": 1024, "KB": 1000, "KIB": 1024, "M": MIB, "MB": 10**6, "MIB": MIB, "G": GIB, "GB": 10**9,
          "GIB": GIB, "T": 1024**4, "TB": 10**12, "TIB": 1024**4}


def parse_size(text: str) -> int:
    """'12GiB', '8GB', '24G', '16384MiB', '12' (GiB) → bytes. Absurd values are refused with a clear message."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B?|B)?\s*", text, flags=re.I)
    if not m:
        raise ValueError(f"cannot read {text!r} as a memory size: use a number and a unit, like 12GiB or 8GB")
    value = float(m.group(1))
    size = int(value * _UNITS[(m.group(2) or "GiB").upper()])
    if size < 256 * MIB:
        raise ValueError(f"{text!r} is under 256 MiB: no GPU or machine that can run a model has so little memory")
    if size > 4 * 1024**4:
        raise ValueError(f"{text!r} is over 4 TiB per device: that is not a real machine")
    return size


def _fmt(n: int) -> str:
    return f"{n / GIB:.2f} GiB" if n >= GIB else f"{n / MIB:.0f} MiB"


def assign_layers(n_layers: int, n_gpu_layers: int, split: list[float]) -> list[int]:
    """Device index for blocks 0..n_layers-1 and the output layer (index n_layers); -1 is the CPU.

    A replay of llama.cpp's ``get_layer_buft_list``: the last ``n_gpu_layers`` layers are offloaded and device d
    takes layer il when ``(il - i_gpu_start) / act`` falls below the d-th cumulative split fraction. float32
    arithmetic as in C, so the boundaries land where llama.cpp puts them.
    """
    import numpy as np

    f32 = np.float32
    start = max(n_layers - n_gpu_layers, 0)
    act = min(n_gpu_layers, n_layers + 1)
    total = f32(0)
    cum: list[Any] = []
    for s in split:
        total = f32(total + f32(s))
        cum.append(total)
    cum = [f32(c / total) for c in cum] if total > 0 else [f32(1)] * len(split)
    out = []
    for il in range(n_layers + 1):
        if il < start or il - start >= act:
            out.append(-1)
            continue
        x = f32(f32(il - start) / f32(act))
        dev = next((d for d, c in enumerate(cum) if c > x), len(cum) - 1)  # std::upper_bound
        out.append(dev)
    return out


@dataclass
class _Placement:
    n_gpu_layers: int
    split: list[float] | None
    per_device: list[int]  # bytes llama.cpp allocates on each GPU (weights + KV + compute)
    blocks_on: list[int]  # blocks per device
    output_on_gpu: bool

    @property
    def blocks(self) -> int:
        return sum(self.blocks_on)


def _device_bytes(shape: ModelShape, where: list[int], n_dev: int, per_kv: int, comp: int) -> tuple[list[int],
                                                                                                     list[int]]:
    used, blocks = [0] * n_dev, [0] * n_dev
    for il, d in enumerate(where):
        if d < 0:
            continue
        if il < shape.n_layers:
            used[d] += shape.layer_bytes[il] + per_kv
            blocks[d] += 1
        else:
            used[d] += shape.output_bytes
    return [u + comp if u else 0 for u in used], blocks


def _splits_to_try(shape: ModelShape, devices: list[DeviceBudget], gpu_layers: int, per_kv: int,
                   comp: int) -> list[list[float]]:
    """Candidate tensor_split fractions: llama.cpp's default (in proportion to free memory) and a greedy fill that
    gives each device as many consecutive layers as its room holds."""
    if len(devices) == 1:
        return [[1.0]]
    room = [max(0, d.usable - comp) for d in devices]
    out = [[round(r / sum(room), 4) for r in room]] if sum(room) else []
    start = max(shape.n_layers - gpu_layers, 0)
    sizes = [shape.layer_bytes[il] + per_kv for il in range(start, shape.n_layers)]
    if gpu_layers > shape.n_layers:
        sizes.append(shape.output_bytes)
    counts, i = [0] * len(devices), 0
    for d, r in enumerate(room):
        used = 0
        while i < len(sizes) and used + sizes[i] <= r:
            used += sizes[i]
            counts[d] += 1
            i += 1
    if i == len(sizes) and sum(counts) > 0:
        out.append([c / sum(counts) for c in counts])
    return out


def _place(shape: ModelShape, devices: list[DeviceBudget], n_ctx: int, kv_type: str, use_flash_attn: bool,
           max_layers: int | None) -> _Placement:
    """The most layers (≤ max_layers) whose llama.cpp placement fits every device's free memory less its reserve."""
    comp = compute_bytes(shape, n_ctx, use_flash_attn)
    per_kv = kv_bytes(shape, n_ctx, kv_type, 1)
    full = shape.n_layers + 1
    top = full if max_layers is None else max(0, min(max_layers, full))
    for gpu_layers in range(top, 0, -1):
        for split in _splits_to_try(shape, devices, gpu_layers, per_kv, comp):
            where = assign_layers(shape.n_layers, gpu_layers, split)
            used, blocks = _device_bytes(shape, where, len(devices), per_kv, comp)
            if all(u <= d.usable for u, d in zip(used, devices, strict=True)):
                return _Placement(gpu_layers, split if len(devices) > 1 else None, used, blocks, where[-1] >= 0)
    return _Placement(0, None, [0] * len(devices), [0] * len(devices), False)


def plan_offload(shape: ModelShape, machine: Machine, n_ctx: int, *, allow_ctx_reduction: bool = True,
                 gpu_layers_override: int | None = None, flash_attn: bool | None = None,
                 kv_type: str | None = None) -> OffloadPlan:
    """Choose n_gpu_layers, n_ctx, KV type, flash attention and tensor split for ``shape`` on ``machine``.

    Order of preference: every layer on the GPU at the asked context with an f16 KV cache; with a q8_0 KV cache
    (flash attention); at a lower context (halving, not below 4096) when ``allow_ctx_reduction``; else as many
    blocks as fit at the asked context (partial), else the CPU. ``gpu_layers_override`` (``-1`` = all) is placed as
    asked and the reasons say what it costs against the planner's own choice.
    """
    reasons: list[str] = list(shape.assumptions)
    devices = [DeviceBudget(g.name, g.free_bytes, g.total_bytes, g.unified) for g in machine.usable_gpus]
    unified = any(d.unified for d in devices)
    full = shape.n_layers + 1
    if n_ctx > shape.n_ctx_train:
        reasons.append(f"a {n_ctx}-token context is more than the model was trained for ({shape.n_ctx_train}); "
                       f"planning for {shape.n_ctx_train}")
        n_ctx = shape.n_ctx_train
    asked_ctx = pad_ctx(n_ctx)
    override = None if gpu_layers_override is None else (full if gpu_layers_override < 0 else gpu_layers_override)
    use_flash_attn = bool(devices) if flash_attn is None else flash_attn
    if kv_type and kv_type != "f16" and not use_flash_attn:
        reasons.append(f"a {kv_type} KV cache needs flash attention in llama.cpp: using f16")
        kv_type = "f16"
    kv_choices = [kv_type] if kv_type else (["f16", "q8_0"] if use_flash_attn else ["f16"])
    contexts = [asked_ctx]
    c = asked_ctx
    while c > MIN_CTX:
        c = max(MIN_CTX, c // 2)
        contexts.append(c)

    def best_full(ctxs: list[int]) -> tuple[int, str, _Placement] | None:
        for ctx in ctxs:
            for kv in kv_choices:
                placement = _place(shape, devices, ctx, kv, use_flash_attn, None)
                if placement.n_gpu_layers == full:
                    return ctx, kv, placement
        return None

    def best_at(ctx: int) -> tuple[int, str, _Placement]:
        options = [(ctx, kv, _place(shape, devices, ctx, kv, use_flash_attn, None)) for kv in kv_choices]
        return max(options, key=lambda o: o[2].n_gpu_layers)  # ties keep the first (f16)

    chosen: tuple[int, str, _Placement]
    auto: tuple[int, str, _Placement] | None = None
    if not devices:
        chosen = (asked_ctx, "f16", _Placement(0, None, [], [], False))
    else:
        if override is None:
            auto = best_full(contexts if allow_ctx_reduction else contexts[:1]) or best_at(asked_ctx)
            chosen = auto
        else:  # the user's layers and context win; the planner's own choice at that context is the yardstick
            auto = best_at(asked_ctx)
            chosen = (asked_ctx, auto[1], _place(shape, devices, asked_ctx, auto[1], use_flash_attn, override))
    ctx_used, kv_used, placed = chosen
    n_gpu_layers = placed.n_gpu_layers
    blocks = placed.blocks
    output_on = placed.output_on_gpu

    kv_total = kv_bytes(shape, ctx_used, kv_used)
    comp = compute_bytes(shape, ctx_used, use_flash_attn)
    cpu_blocks = shape.n_layers - blocks
    cpu_weights = sum(shape.layer_bytes[:cpu_blocks]) + shape.embd_bytes + (0 if output_on else shape.output_bytes)
    repack_types = frozenset(machine.cpu_repack_types) if machine.cpu_repack_types is not None else None
    repack = int(shape.repacked_bytes(repack_types) * cpu_blocks / shape.n_layers) if shape.n_layers else 0
    # The working set, measured (docs/SIZING.md): repacked weights live in an anonymous buffer of the same size while
    # their memory-mapped originals become reclaimable page cache, so each weight counts once. With layers on a GPU
    # the CPU keeps a smaller compute buffer for its own part of the graph.
    cpu_bytes = cpu_weights + kv_bytes(shape, ctx_used, kv_used, cpu_blocks) + (comp if not blocks else comp // 4)
    ram_budget = machine.ram_available - RAM_RESERVE
    if unified:
        ram_budget -= sum(placed.per_device)

    reasons.append(f"weights {_fmt(shape.weights_bytes)}: {shape.n_layers} blocks of "
                   f"{_fmt(min(shape.layer_bytes, default=0))}–{_fmt(max(shape.layer_bytes, default=0))}, output "
                   f"layer {_fmt(shape.output_bytes)}, input embeddings {_fmt(shape.embd_bytes)} (always on the CPU)")
    reasons.append(f"KV cache {_fmt(kv_total)} for {ctx_used} tokens ({kv_used}): {ctx_used} × {shape.n_layers} "
                   f"layers × {shape.n_kv_heads} KV heads × ({shape.head_dim_k} + {shape.head_dim_v}) × "
                   f"{KV_TYPE_BYTES[kv_used]:.3g} bytes")
    reasons.append(f"compute buffer about {_fmt(comp)} ({'with' if use_flash_attn else 'without'} flash attention)")
    gpu_names = ", ".join(f"{d.name} ({_fmt(d.free_bytes)} free of {_fmt(d.total_bytes)})" for d in devices)
    if not devices:
        reasons.append("no GPU this llama.cpp build can use: everything runs on the CPU")
    elif n_gpu_layers == full:
        reasons.append(f"all {shape.n_layers} blocks and the output layer fit on {gpu_names}, keeping a "
                       f"{_fmt(device_reserve(devices[0].total_bytes))} reserve")
    elif n_gpu_layers and override is not None:
        reasons.append(f"{blocks} of {shape.n_layers} blocks go on {gpu_names}; the other {cpu_blocks} run on the "
                       f"CPU, which is slower")
    elif n_gpu_layers:
        reasons.append(f"{blocks} of {shape.n_layers} blocks fit on {gpu_names} after a "
                       f"{_fmt(device_reserve(devices[0].total_bytes))} reserve; the other {cpu_blocks} run on the "
                       f"CPU, which is slower")
    else:
        reasons.append(f"not even one block fits on {gpu_names} beside the compute buffer: CPU only")
    if devices and override is None and ctx_used < asked_ctx:
        reasons.append(f"every layer fits on the GPU only with a {ctx_used}-token context; {asked_ctx} would push "
                       f"layers to the CPU (pass --ctx {asked_ctx} --no-ctx-reduction to keep it)")
    if devices and kv_used != "f16" and kv_type is None:
        reasons.append(f"the KV cache is stored as {kv_used} (with flash attention) so that "
                       f"{'every layer fits' if n_gpu_layers == full else 'more layers fit'} on the GPU")
    if devices and not allow_ctx_reduction and override is None and n_gpu_layers < full:
        smaller = best_full(contexts[1:])
        if smaller:
            reasons.append(f"with a {smaller[0]}-token context every layer would fit on the GPU")
    if override is not None and auto is not None:
        reasons.append(_override_cost(gpu_layers_override or 0, override, n_gpu_layers, auto[2].n_gpu_layers, full,
                                      placed, devices))
    if repack:
        reasons.append(f"on the CPU llama.cpp repacks {_fmt(repack)} of quantised weights into its own buffer; the "
                       f"memory-mapped originals stay in the page cache, so resident memory right after loading can "
                       f"reach {_fmt(cpu_bytes + repack)}, but the system can reclaim the originals")
    if len(devices) > 1 and placed.split:
        last = max(i for i, b in enumerate(placed.per_device) if b)
        reasons.append("tensor split as llama.cpp will cut it: " + ", ".join(
            f"{d.name}: {b} blocks" + (" + output" if output_on and i == last else "")
            for i, (d, b) in enumerate(zip(devices, placed.blocks_on, strict=True))))

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
    return OffloadPlan(
        n_layers=shape.n_layers, n_gpu_layers=n_gpu_layers, n_ctx=ctx_used, weights_bytes=shape.weights_bytes,
        kv_bytes=kv_total, compute_bytes=comp, gpu_bytes=list(placed.per_device), cpu_bytes=cpu_bytes,
        tensor_split=placed.split, flash_attn=use_flash_attn, kv_type=kv_used, verdict=verdict, reasons=reasons)


def _override_cost(asked: int, wanted: int, got: int, auto: int, full: int, placed: _Placement,
                   devices: list[DeviceBudget]) -> str:
    label = "all" if asked < 0 else str(asked)
    if got < min(wanted, full):
        return (f"you asked for {label} GPU layers; only {got} fit in "
                f"{_fmt(sum(d.free_bytes for d in devices))} of free GPU memory — llama.cpp would run out of memory "
                f"loading the rest")
    if got < auto:
        return (f"you asked for {label} GPU layers: {auto - got} fewer than the {auto} that fit, so "
                f"{auto - got} more blocks run on the CPU (slower) and {_fmt(sum(placed.per_device))} of GPU memory "
                f"is used")
    return f"you asked for {label} GPU layers: the same as the planner's choice"
