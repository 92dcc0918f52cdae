"""``localchat plan``: the offload plan for a model on this machine (or a simulated one), with its arithmetic."""

from __future__ import annotations

import argparse
from typing import Any

from localchat.context import AppContext


def register(sub: Any) -> None:
    p = sub.add_parser("plan", help="how a model would be split between GPU and CPU, and why")
    p.add_argument("model", metavar="M", help="library name or path to a .gguf")
    p.add_argument("--ctx", type=int, default=None, help="context length wanted (default: settings)")
    p.add_argument("--gpu-mem", default=None, metavar="SIZE[,SIZE…]",
                   help="simulate GPUs with this much free memory each, e.g. 12GiB or 24GiB,24GiB")
    p.add_argument("--ram", default=None, metavar="SIZE", help="simulate this much available RAM")
    p.add_argument("--unified", action="store_true", help="simulated GPU shares RAM (Apple silicon)")
    p.add_argument("--gpu-layers", type=int, default=None, help="what forcing this many GPU layers costs (-1 = all)")
    p.add_argument("--no-ctx-reduction", action="store_true", help="never lower the context to fit the GPU")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run)


def run(ctx: AppContext, args: argparse.Namespace) -> int:
    from localchat.cli import emit_json, fail
    from localchat.core.hardware.detect import GIB
    from localchat.core.hardware.planner import ModelShape, plan_offload
    from localchat.core.hardware.sizing import machine_for
    from localchat.core.models.gguf_info import read_gguf

    try:
        machine = machine_for(args.gpu_mem, args.ram, unified=args.unified, isolation=ctx.isolation_policy)
    except ValueError as exc:
        return fail(str(exc), 2)
    n_ctx = args.ctx or ctx.settings.n_ctx
    if n_ctx < 256:
        return fail(f"--ctx must be at least 256 tokens, not {n_ctx}", 2)
    info = read_gguf(ctx.library.resolve(args.model))
    plan = plan_offload(ModelShape.from_gguf(info), machine, n_ctx, allow_ctx_reduction=not args.no_ctx_reduction,
                        gpu_layers_override=args.gpu_layers)
    if args.json:
        emit_json(plan.to_dict())
        return 0
    gpus = machine.usable_gpus
    print(f"{info.name} ({info.quantisation}, {info.file_size / GIB:.2f} GiB, {info.architecture}) on "
          f"{', '.join(g.name for g in gpus) or 'CPU only'}"
          f"{' (simulated)' if 'simulated machine' in machine.notes else ''}")
    print(f"verdict: {plan.verdict}   GPU layers: {plan.n_gpu_layers}/{plan.n_layers + 1}   context: {plan.n_ctx}   "
          f"KV: {plan.kv_type}   flash attention: {'on' if plan.flash_attn else 'off'}")
    for g, used in zip(gpus, plan.gpu_bytes, strict=False):
        print(f"GPU {g.name}: {used / GIB:.2f} GiB of {g.free_bytes / GIB:.2f} GiB free")
    print(f"RAM: {plan.cpu_bytes / GIB:.2f} GiB of {machine.ram_available / GIB:.2f} GiB available")
    if plan.tensor_split:
        print(f"tensor split: {plan.tensor_split}")
    for r in plan.reasons:
        print(f"  - {r}")
    return 0
