"""Ask the installed llama.cpp build which devices it can offload to (ggml's backend device registry), and which
quantised weight types its CPU backend repacks on this machine.

Runs only inside the inference worker, after its network sandbox is in place (the worker's ``probe`` op; the app
asks through ``EngineClient.probe``), so llama.cpp's native libraries are never loaded into the app process nor
into any process that still has the network. Returns one JSON-able object::

    {"llama_cpp_version": "0.3.36", "supports_gpu_offload": false,
     "devices": [{"name": "CPU", "description": "...", "type": "cpu", "free_bytes": ..., "total_bytes": ...}],
     "cpu_repack_types": ["IQ4_NL", "MXFP4", "Q2_K", "Q4_0", "Q4_K"]}

The repack set is measured, not assumed: a tiny model with one matrix of each candidate type (sparse zero data,
written to a temporary folder) is loaded on the CPU and llama.cpp's ``repack tensor … with …`` log lines are read.
On x86 with AVX2 the CPU backend keeps a second, repacked copy of those weights (docs/SIZING.md).
"""

from __future__ import annotations

import ctypes
import functools
import re
import tempfile
from pathlib import Path
from typing import Any

# enum ggml_backend_dev_type
_DEV_TYPES = {0: "cpu", 1: "gpu", 2: "igpu", 3: "accel"}
_CANDIDATES = ("Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "IQ4_NL", "IQ4_XS",
               "MXFP4")


def _lib_dir() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("llama_cpp")
    if spec is None or spec.origin is None:
        raise RuntimeError("llama-cpp-python is not installed")
    return Path(spec.origin).parent / "lib"


def devices() -> list[dict[str, Any]]:
    lib_dir = _lib_dir()
    candidates = sorted(lib_dir.glob("libggml.*")) + sorted(lib_dir.glob("ggml.dll"))
    if not candidates:
        raise RuntimeError(f"no ggml library in {lib_dir}")
    ggml = ctypes.CDLL(str(candidates[0]))
    ggml.ggml_backend_dev_count.restype = ctypes.c_size_t
    ggml.ggml_backend_dev_get.restype = ctypes.c_void_p
    ggml.ggml_backend_dev_get.argtypes = [ctypes.c_size_t]
    for fn in ("ggml_backend_dev_name", "ggml_backend_dev_description"):
        getattr(ggml, fn).restype = ctypes.c_char_p
        getattr(ggml, fn).argtypes = [ctypes.c_void_p]
    ggml.ggml_backend_dev_type.restype = ctypes.c_int
    ggml.ggml_backend_dev_type.argtypes = [ctypes.c_void_p]
    ggml.ggml_backend_dev_memory.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_size_t),
                                             ctypes.POINTER(ctypes.c_size_t)]
    ggml.ggml_backend_dev_memory.restype = None
    out = []
    for i in range(ggml.ggml_backend_dev_count()):
        dev = ggml.ggml_backend_dev_get(i)
        free, total = ctypes.c_size_t(0), ctypes.c_size_t(0)
        ggml.ggml_backend_dev_memory(dev, ctypes.byref(free), ctypes.byref(total))
        out.append({
            "name": (ggml.ggml_backend_dev_name(dev) or b"").decode(),
            "description": (ggml.ggml_backend_dev_description(dev) or b"").decode(),
            "type": _DEV_TYPES.get(ggml.ggml_backend_dev_type(dev), "unknown"),
            "free_bytes": free.value,
            "total_bytes": total.value,
        })
    return out


def write_type_probe_model(path: Path, types: tuple[str, ...] = _CANDIDATES) -> dict[str, str]:
    """A tiny llama-shaped GGUF whose block matrices cycle through ``types`` (sparse zero data).
    Returns {tensor name: type name}."""
    import gguf
    import numpy as np

    q = gguf.GGMLQuantizationType
    known = [q[t] for t in types if t in q.__members__ and q[t] in gguf.GGML_QUANT_SIZES]
    n_embd, n_ff, vocab = 256, 512, 256
    mats = [("attn_q", (n_embd, n_embd)), ("attn_k", (n_embd, n_embd)), ("attn_v", (n_embd, n_embd)),
            ("attn_output", (n_embd, n_embd)), ("ffn_gate", (n_ff, n_embd)), ("ffn_up", (n_ff, n_embd)),
            ("ffn_down", (n_embd, n_ff))]
    n_layers = -(-len(known) // len(mats))
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_block_count(n_layers)
    w.add_context_length(512)
    w.add_embedding_length(n_embd)
    w.add_feed_forward_length(n_ff)
    w.add_head_count(4)
    w.add_head_count_kv(4)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("qwen2")
    w.add_token_list([f"t{i}" for i in range(vocab)])
    w.add_token_types([1] * vocab)
    w.add_token_merges(["t 1"])
    w.add_eos_token_id(vocab - 1)
    w.add_bos_token_id(vocab - 2)
    tensors: list[tuple[str, tuple[int, ...], Any]] = [("token_embd.weight", (vocab, n_embd), q.F16)]
    placed: dict[str, str] = {}
    k = 0
    for i in range(n_layers):
        tensors += [(f"blk.{i}.attn_norm.weight", (n_embd,), q.F32), (f"blk.{i}.ffn_norm.weight", (n_embd,), q.F32)]
        for m, shape in mats:
            t = known[k % len(known)]
            k += 1
            tensors.append((f"blk.{i}.{m}.weight", shape, t))
            placed[f"blk.{i}.{m}.weight"] = t.name
    tensors += [("output_norm.weight", (n_embd,), q.F32), ("output.weight", (vocab, n_embd), q.F16)]
    total = 0
    for name, dims, qt in tensors:
        block, size = gguf.GGML_QUANT_SIZES[qt]
        nb = int(np.prod(dims)) // block * size
        w.add_tensor_info(name, (*dims[:-1], dims[-1] // block * size), np.dtype(np.uint8), nb, raw_dtype=qt)
        total += nb + (-nb % 32)
    w.write_header_to_file(path)
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    w.close()
    size = path.stat().st_size
    with open(path, "r+b") as fh:
        fh.truncate(size + (-size % 32) + total)  # sparse zeros
    return placed


@functools.cache
def cpu_repack_types() -> list[str]:
    """Load the type-probe model on the CPU and read which tensors llama.cpp repacked (once per worker: it cannot
    change while the process lives; device memory is re-read on every probe)."""
    import llama_cpp

    lines: list[str] = []

    @llama_cpp.llama_log_callback  # type: ignore[untyped-decorator]
    def on_log(_level: int, text: bytes, _data: Any) -> None:
        lines.append(text.decode("utf-8", "replace"))

    llama_cpp.llama_log_set(on_log, ctypes.c_void_p(0))
    with tempfile.TemporaryDirectory(prefix="localchat-probe-") as tmp:
        path = Path(tmp) / "types.gguf"
        placed = write_type_probe_model(path)
        params = llama_cpp.llama_model_default_params()
        params.n_gpu_layers = 0
        params.use_mmap = True
        model = llama_cpp.llama_model_load_from_file(str(path).encode(), params)
        if not model:
            raise RuntimeError("the type-probe model did not load")
        llama_cpp.llama_model_free(model)
    repacked = set(re.findall(r"repack tensor (\S+) with", "".join(lines)))
    return sorted({placed[n] for n in repacked if n in placed})


def probe() -> dict[str, Any]:
    import llama_cpp  # loads libllama and registers the backends compiled into this build

    out: dict[str, Any] = {"llama_cpp_version": getattr(llama_cpp, "__version__", "?"),
                           "supports_gpu_offload": bool(llama_cpp.llama_supports_gpu_offload()),
                           "devices": devices()}
    try:
        out["cpu_repack_types"] = cpu_repack_types()
    except Exception as exc:  # the planner falls back to its default set
        out["cpu_repack_types"] = None
        out["cpu_repack_error"] = f"{type(exc).__name__}: {exc}"
    return out


_KV_TYPES = {"f16": 1, "q8_0": 8, "q4_0": 2}  # enum ggml_type


def dry_run(path: str, n_ctx: int, n_gpu_layers: int = 0, flash_attn: bool | None = None, kv_type: str = "f16",
            n_batch: int = 512, n_ubatch: int = 512) -> dict[str, Any]:
    """llama.cpp's own compute-buffer figure for ``path`` on this machine's devices, without loading the weights.

    ``no_alloc`` model params with no file mapping place the tensors and allocate nothing; creating the context
    then reserves the compute graph and logs ``<device> compute buffer size = N MiB``. Works on a sparse stand-in
    (the real header, the data a hole): 0.2–0.7 s and < 100 MB for a 14B model (docs/SIZING.md). Runs in the worker.

    Returns ``{"compute_bytes": {"CPU": bytes, ...}, "seconds": s}``; raises RuntimeError when llama.cpp refuses.
    """
    import time

    import llama_cpp

    lines: list[str] = []

    @llama_cpp.llama_log_callback  # type: ignore[untyped-decorator]
    def on_log(_level: int, text: bytes, _data: Any) -> None:
        lines.append(text.decode("utf-8", "replace"))

    llama_cpp.llama_log_set(on_log, ctypes.c_void_p(0))
    t = time.perf_counter()
    mp = llama_cpp.llama_model_default_params()
    mp.no_alloc = True
    mp.load_mode = llama_cpp.LLAMA_LOAD_MODE_NONE
    mp.n_gpu_layers = n_gpu_layers
    model = llama_cpp.llama_model_load_from_file(str(path).encode(), mp)
    if not model:
        raise RuntimeError(f"llama.cpp could not read {Path(path).name} for a dry run")
    try:
        cp = llama_cpp.llama_context_default_params()
        cp.n_ctx, cp.n_batch, cp.n_ubatch = n_ctx, n_batch, n_ubatch
        if flash_attn is not None:
            cp.flash_attn_type = (llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED if flash_attn
                                  else llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED)
        cp.type_k = cp.type_v = _KV_TYPES.get(kv_type, 1)
        ctx = llama_cpp.llama_init_from_model(model, cp)
        if not ctx:
            raise RuntimeError(f"llama.cpp could not make a {n_ctx}-token context for {Path(path).name}")
        llama_cpp.llama_free(ctx)
    finally:
        llama_cpp.llama_model_free(model)
    found: dict[str, int] = {}
    for dev, mib in re.findall(r"(\S+) compute buffer size =\s*([\d.]+) MiB", "".join(lines)):
        found[dev] = int(float(mib) * 2**20)  # the last reservation per device is the one kept
    if not found:
        raise RuntimeError("llama.cpp reported no compute buffer")
    return {"compute_bytes": found, "seconds": time.perf_counter() - t}
