"""The planner's compute buffer against llama.cpp's own figure from a dry run (no weights allocated).

llama.cpp can load a model with ``no_alloc`` model params and no file mapping (``LLAMA_LOAD_MODE_NONE``): it reads
the header, places the tensors, allocates nothing, and creating a context then reserves the compute graph and logs
``<device> compute buffer size = N MiB`` — the figure a real load allocates, for this machine's devices. On a sparse
stand-in (the header written, the data a hole) this costs well under a second and < 100 MB of RAM for a 14B model.

This benchmark runs that dry run in this process (a benchmark, not the app: the app only runs llama.cpp in its
sandboxed worker) for the starter model and shape-exact sparse files, with flash attention off and on, at a few
contexts, and prints llama.cpp's figure next to ``plan_offload``'s ``compute_bytes`` for a CPU-only machine.

    .venv/bin/python benchmarks/dry_run_compute.py [--ctx 4096,8192,32768]
"""

from __future__ import annotations

import argparse
import ctypes
import re
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import llama_cpp
from model_shapes import write_qwen2_shape, write_r1_qwen14b_q4km

from localchat.core.hardware.detect import GIB, Machine
from localchat.core.hardware.planner import ModelShape, plan_offload
from localchat.core.models.gguf_info import read_gguf
from localchat.core.models.starter import ensure_starter_model
from localchat.paths import machine_cache_dir

_LOG: list[str] = []


@llama_cpp.llama_log_callback
def _on_log(level: int, text: bytes, user: ctypes.c_void_p) -> None:
    _LOG.append(text.decode(errors="replace"))


def dry_run(path: Path, n_ctx: int, flash_attn: bool) -> tuple[float, float]:
    """llama.cpp's CPU compute buffer (MiB) for ``path`` at ``n_ctx``, and the seconds the dry run took."""
    _LOG.clear()
    t = time.perf_counter()
    mp = llama_cpp.llama_model_default_params()
    mp.no_alloc = True
    mp.load_mode = llama_cpp.LLAMA_LOAD_MODE_NONE
    mp.n_gpu_layers = 0
    model = llama_cpp.llama_model_load_from_file(str(path).encode(), mp)
    if not model:
        raise SystemExit(f"llama.cpp could not read {path}")
    cp = llama_cpp.llama_context_default_params()
    cp.n_ctx, cp.n_batch, cp.n_ubatch = n_ctx, 512, 512
    cp.flash_attn_type = llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED if flash_attn else \
        llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED
    ctx = llama_cpp.llama_init_from_model(model, cp)
    took = time.perf_counter() - t
    if ctx:
        llama_cpp.llama_free(ctx)
    llama_cpp.llama_model_free(model)
    sizes = [float(m.group(1)) for m in re.finditer(r"CPU compute buffer size =\s*([\d.]+) MiB", "".join(_LOG))]
    if not sizes:
        raise SystemExit(f"no compute buffer line in llama.cpp's log for {path.name}")
    return sizes[-1], took


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--ctx", default="4096,8192,32768")
    args = ap.parse_args()
    contexts = [int(c) for c in args.ctx.split(",")]
    llama_cpp.llama_log_set(_on_log, ctypes.c_void_p())
    llama_cpp.llama_backend_init()
    work = Path(tempfile.mkdtemp(prefix="lc-dry-"))
    models = {
        "SmolLM2-135M Q4_1 (starter)": ensure_starter_model(machine_cache_dir()),
        "Qwen2.5-1.5B Q4_K_M shape": write_qwen2_shape(work / "q1.5b.gguf", n_layers=28, n_embd=1536, n_heads=12,
                                                       n_kv=2, n_ff=8960, n_vocab=151936, n_ctx_train=32768,
                                                       name="Qwen2.5-1.5B"),
        "R1-Distill-Qwen-14B Q4_K_M shape": write_r1_qwen14b_q4km(work / "r1-14b.gguf"),
    }
    cpu = Machine("CPU", 2, 2, 512 * GIB, 512 * GIB)  # room for every context: the plan keeps the asked one
    print(f"{'model':<34} {'n_ctx':>6} {'FA':>3} {'llama.cpp MiB':>14} {'planned MiB':>12} {'diff':>7} "
          f"{'dry run s':>9}")
    for label, path in models.items():
        shape = ModelShape.from_gguf(read_gguf(path))
        for n_ctx in contexts:
            if n_ctx > (shape.n_ctx_train or n_ctx):
                continue
            for fa in (False, True):
                got, took = dry_run(path, n_ctx, fa)
                plan = plan_offload(shape, cpu, n_ctx, allow_ctx_reduction=False, flash_attn=fa)
                planned = plan.compute_bytes / 2**20
                print(f"{label:<34} {n_ctx:>6} {'on' if fa else 'off':>3} {got:>14.2f} {planned:>12.2f} "
                      f"{(planned - got) / got * 100:>+6.1f}% {took:>9.2f}")
    print(f"max RSS of this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
