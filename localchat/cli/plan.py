"""``localchat plan``: the offload plan for a model on this machine (or a simulated one), with its arithmetic."""

from __future__ import annotations

import argparse
import re
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
    p.add_argument("--threads", type=int, default=None,
                   help="CPU threads for the speed prediction (default: settings, else the physical cores)")
    p.add_argument("--gpu-bandwidth", default=None, metavar="GB/s[,GB/s…]",
                   help="memory bandwidth of each (simulated) GPU for the speed prediction, e.g. 1008 or 400,400")
    from localchat.cli.chat import add_rpc_arguments

    add_rpc_arguments(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run)


def run(ctx: AppContext, args: argparse.Namespace) -> int:
    from localchat.cli import emit_json, fail
    from localchat.core.hardware.detect import GIB
    from localchat.core.hardware.planner import ModelShape, plan_offload
    from localchat.core.hardware.sizing import machine_for
    from localchat.core.hardware.speed import fmt_tps
    from localchat.core.hardware.speed_log import measured_decode
    from localchat.core.models.gguf_info import read_gguf

    try:
        machine = machine_for(args.gpu_mem, args.ram, unified=args.unified, isolation=ctx.isolation_policy)
    except ValueError as exc:
        return fail(str(exc), 2)
    n_ctx = args.ctx or ctx.settings.n_ctx
    if n_ctx < 256:
        return fail(f"--ctx must be at least 256 tokens, not {n_ctx}", 2)
    model_path = ctx.library.resolve(args.model)
    info = read_gguf(model_path)
    if args.threads is not None and not 1 <= args.threads <= 1024:
        return fail(f"--threads must be between 1 and 1024, not {args.threads}", 2)
    try:
        bandwidths = _bandwidths(args.gpu_bandwidth)
    except ValueError as exc:
        return fail(str(exc), 2)
    shape = ModelShape.from_gguf(info)
    plan = plan_offload(shape, machine, n_ctx, allow_ctx_reduction=not args.no_ctx_reduction,
                        gpu_layers_override=args.gpu_layers)
    speeds = _machine_speed(machine, args.threads or ctx.settings.n_threads, bandwidths)
    speed = _predict(shape, plan, speeds)
    if speed is not None:
        plan.reasons.extend(f"speed: {b}" for b in speed.basis)
    measured = measured_decode(ctx.paths.data_dir, model_path)  # its last turns here, once it has run
    helpers = _helpers(ctx, args, shape, machine, speeds) if args.rpc else None
    if args.json:
        emit_json({**plan.to_dict(), "predicted_decode_tokens_per_s": speed.to_dict() if speed else None,
                   "measured_decode_tokens_per_s": {"value": measured.tokens_per_s, "turns": measured.turns}
                   if measured else None, "helpers": helpers})
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
    if speed is not None:
        print(f"decode: {speed.label} ({fmt_tps(speed.low)}–{fmt_tps(speed.high)}) at {speed.n_past} tokens of "
              f"context, ~{fmt_tps(speed.at_full_context)} tok/s at the full {speed.n_ctx}")
    if measured is not None:
        print(f"decode: {measured.label} (median of its last {measured.turns} turns here)")
    if plan.tensor_split:
        print(f"tensor split: {plan.tensor_split}")
    for r in plan.reasons:
        print(f"  - {r}")
    if helpers:
        print(f"LAN mode: llama.cpp splits the {shape.n_layers + 1} layers by the free memory each device reports "
              "(this plan above is for this machine alone):")
        for d in helpers["devices"]:
            print(f"  helper {d['peer']} ({d['name']}): {d['free'] / GIB:.2f} GiB free of {d['total'] / GIB:.2f} GiB"
                  f", {d['layers']} layers; link: connect {d['connect_ms']} ms, RPC hello {d['hello_ms']} ms")
        lan = helpers.get("predicted_decode_tokens_per_s")
        if lan:
            print(f"decode over the helpers: ~{fmt_tps(lan['value'])} tok/s ({fmt_tps(lan['low'])}–"
                  f"{fmt_tps(lan['high'])}) at {lan['n_past']} tokens of context")
            for b in lan["basis"]:
                print(f"  - speed: {b}")
    return 0


def _helpers(ctx: AppContext, args: argparse.Namespace, shape: Any, machine: Any, speed: Any) -> dict[str, Any]:
    """LAN mode: each helper's devices and free memory as llama.cpp reports them over RPC (asked through the
    sandboxed worker and its relay), the layers llama.cpp would give each, the link as measured once, and the
    decode speed that follows (``predict_lan_decode``)."""
    from localchat.cli.chat import checked_peers
    from localchat.core.engine.client import EngineClient
    from localchat.core.engine.load_options import layer_split
    from localchat.core.hardware.speed import predict_lan_decode

    with EngineClient(isolation=ctx.isolation_policy, peers=checked_peers(args)) as client:
        devices = client.rpc_devices()
        checks = {c["peer"]: c for c in (client.relay.checks if client.relay else [])}
    gpus = [g.free_bytes for g in machine.usable_gpus]
    layers = layer_split([d["free"] for d in devices] + gpus, shape.n_layers)
    for d, n in zip(devices, layers, strict=False):
        check = checks.get(d["peer"], {})
        d.update(layers=n, connect_ms=check.get("connect_ms"), hello_ms=check.get("hello_ms"))
    out: dict[str, Any] = {"devices": devices, "local_gpu_layers": layers[len(devices):],
                           "predicted_decode_tokens_per_s": None}
    if speed is not None and devices and not any(layers[len(devices):]):  # every layer on the helpers
        rtts = [float(d["hello_ms"] or 0.0) / 1000 for d in devices]
        out["predicted_decode_tokens_per_s"] = predict_lan_decode(shape, [d["layers"] for d in devices], rtts,
                                                                  speed).to_dict()
    return out


def _bandwidths(text: str | None) -> list[float] | None:
    """'1008' or '1008GB/s,400' → bytes/s per GPU."""
    if text is None:
        return None
    out = []
    for part in text.split(","):
        m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(?:GB/s|GB|G)?\s*", part, flags=re.I)
        if not m or not 1 <= float(m.group(1)) <= 100_000:
            raise ValueError(f"--gpu-bandwidth {text!r}: give GB/s per GPU between 1 and 100000, like 1008 or 400,400")
        out.append(float(m.group(1)) * 1e9)
    return out


def _machine_speed(machine: Any, threads: int | None, bandwidths: list[float] | None) -> Any:
    """This machine's measured/driver/assumed speeds for the prediction, or None (with a warning) when they cannot
    be had: the prediction is a nicety, it never stops the plan."""
    import logging

    from localchat.core.hardware.detect import SystemProbes
    from localchat.core.hardware.speed import cached_cpu_probe, machine_speed

    try:
        cpu_name, physical, _logical = SystemProbes().cpu()  # the CPU is this one, also for a simulated machine
        n = threads or physical
        return machine_speed(machine, threads=n, cpu_probe=cached_cpu_probe(cpu_name, n), gpu_bandwidths=bandwidths)
    except Exception:
        logging.getLogger(__name__).exception("speed prediction failed")
        return None


def _predict(shape: Any, plan: Any, speed: Any) -> Any:
    """The decode-speed prediction, or None (with a warning) when it cannot be made."""
    import logging

    from localchat.core.hardware.speed import predict_decode

    if speed is None:
        return None
    try:
        return predict_decode(shape, plan, speed)
    except Exception:
        logging.getLogger(__name__).exception("speed prediction failed")
        return None
