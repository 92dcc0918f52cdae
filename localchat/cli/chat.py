"""``localchat chat``: one turn, streamed to the terminal (or one JSON object with ``--json``)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from localchat.context import AppContext
from localchat.core.privacy.evidence import IsolationEvidence


def _checked(parse: Callable[[str], Any], check: str) -> Callable[[str], Any]:
    """An argparse type: parse, then the same range check the settings and the engine apply (one-line errors)."""

    def convert(text: str) -> Any:
        from localchat.core.chat import messages
        from localchat.errors import LocalChatError
        from localchat.settings import check_ctx

        try:
            value = parse(text)
        except ValueError:
            kind = "whole number" if parse is int else "number"
            raise argparse.ArgumentTypeError(f"not a {kind}: {text!r}") from None
        try:
            return check_ctx(value) if check == "check_ctx" else getattr(messages, check)(value)
        except LocalChatError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    convert.__name__ = parse.__name__  # argparse names the type in its "invalid int value" message
    return convert


def _gpu_layers(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < -1:
        raise argparse.ArgumentTypeError(f"must be -1 (all), 0 or more, not {value}")
    return value


def _prompt(text: str) -> str:
    from localchat.core.chat.messages import check_text
    from localchat.errors import LocalChatError

    try:
        return check_text("the prompt", text)
    except LocalChatError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _peers(text: str) -> Any:
    """``--rpc``: HOST:PORT[,HOST:PORT…] of helper machines (IP addresses; LAN-only is checked in ``run``)."""
    from localchat.core.privacy.relay import PeerError, parse_peers

    try:
        return parse_peers(text, allow_public=True)
    except PeerError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_rpc_arguments(p: argparse.ArgumentParser) -> None:
    """``--rpc`` and ``--rpc-allow-public`` (shared by the commands that load a model)."""
    p.add_argument("--rpc", type=_peers, default=None, metavar="HOST:PORT[,HOST:PORT…]",
                   help="LAN mode: also use these helper machines running llama.cpp's rpc-server (unauthenticated "
                        "and unencrypted: trusted LAN only; see docs/RPC.md)")
    p.add_argument("--rpc-allow-public", action="store_true",
                   help="allow --rpc helpers outside loopback/private/link-local addresses")


def checked_peers(args: argparse.Namespace) -> list[Any]:
    """The ``--rpc`` helpers, refusing public addresses unless ``--rpc-allow-public``.

    Raises:
        PeerError: one line naming the first public helper.
    """
    from localchat.core.privacy.relay import PeerError

    peers = list(args.rpc or [])
    if not args.rpc_allow_public:
        for peer in peers:
            if peer.scope == "public":
                raise PeerError(f"--rpc {peer.endpoint} is not a LAN address; llama.cpp's RPC is unauthenticated "
                                "and unencrypted, so helpers must be on your own network (to use it anyway, add "
                                "--rpc-allow-public)")
    return peers


def helper_lines(client: Any) -> list[str]:
    """LAN mode, for the terminal: what went to each helper (the app's counts) and any refused request."""
    report = client.relay_report()
    if not report:
        return []
    lines = []
    for p in report["peers"]:
        lines.append(f"[helper {p['peer']}: {p['connections']} connection(s), sent {p['bytes_sent']:,} B, received "
                     f"{p['bytes_received']:,} B]")
    for r in report["refused"]:
        lines.append(f"[relay refused {r['peer']}: {r['reason']}]")
    return lines


def device_split(load_log: str) -> dict[str, float]:
    """MiB of model weights per device, from llama.cpp's own load log ("RPC0[127.0.0.1:P] model buffer size = …")."""
    import re

    out: dict[str, float] = {}
    for m in re.finditer(r"(\S+) model buffer size =\s*([\d.]+) MiB", load_log):
        out[m.group(1)] = out.get(m.group(1), 0.0) + float(m.group(2))
    return out


def register(sub: Any) -> None:
    p = sub.add_parser("chat", help="ask the model one question")
    p.add_argument("--model", "-m", default=None, help="library name or .gguf path (default: last used)")
    p.add_argument("--max-tokens", type=_checked(int, "check_max_tokens"), default=None)
    p.add_argument("--temperature", type=_checked(float, "check_temperature"), default=None)
    p.add_argument("--top-p", type=_checked(float, "check_top_p"), default=None)
    p.add_argument("--seed", type=_checked(int, "check_seed"), default=None)
    p.add_argument("--ctx", type=_checked(int, "check_ctx"), default=None, help="context length in tokens")
    p.add_argument("--gpu-layers", type=_gpu_layers, default=None,
                   help="override the planner's GPU layer count (-1: all)")
    p.add_argument("--system", default=None, help="system prompt")
    p.add_argument("--isolation", choices=("off", "auto", "require"), default=None,
                   help="worker network sandbox (default: auto, or require when set in settings)")
    add_rpc_arguments(p)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("prompt", type=_prompt, help="the question ('-' reads standard input)")
    p.set_defaults(func=run)


def warn_if_not_isolated(isolation: dict[str, Any]) -> None:
    """One line on stderr when the worker runs without the kernel sandbox: what, why, and how to fix it."""
    evidence = IsolationEvidence.from_report(isolation)
    if evidence is not None and evidence.isolated:
        return
    why = evidence.reason if evidence else "no isolation report"
    cause = f" ({evidence.cause})" if evidence and evidence.cause else ""
    fix = f"; fix: {evidence.fix}" if evidence and evidence.fix else ""
    sys.stderr.write(f"localchat: warning: the inference worker is NOT network-isolated, only monitored: "
                     f"{why}{cause}{fix}\n")
    sys.stderr.flush()


def run(ctx: AppContext, args: argparse.Namespace) -> int:
    from localchat.cli import emit_json, fail
    from localchat.core.chat.conversation import question_turn
    from localchat.core.chat.messages import ContentChunk, ErrorChunk, NoticeChunk, ReasoningChunk, TurnResult
    from localchat.core.chat.turn import stream_turn
    from localchat.core.engine.client import EngineClient
    from localchat.core.engine.load_options import plan_load
    from localchat.core.hardware.detect import SystemProbes, detect
    from localchat.core.models.starter import STARTER_NAME

    prompt = sys.stdin.read() if args.prompt == "-" else args.prompt
    s = ctx.settings
    name = args.model or s.last_model or STARTER_NAME
    if name == STARTER_NAME and ctx.library.get(STARTER_NAME) is None:
        ctx.ensure_starter()
    path = ctx.library.resolve(name)
    n_ctx = args.ctx or s.n_ctx
    if n_ctx < 256:
        return fail(f"--ctx must be at least 256 tokens, not {n_ctx}", 2)
    isolation = args.isolation or ctx.isolation_policy
    peers = checked_peers(args)

    with EngineClient(isolation=isolation, peers=peers) as client:
        assert client.hello is not None
        if not args.json:
            warn_if_not_isolated(client.hello.isolation)
            if peers:
                sys.stderr.write(f"localchat: inference worker: {client.hello.isolation.get('reason')}\n")
        # llama.cpp's devices are probed in this same sandboxed worker, then planned for here
        machine = detect(SystemProbes(isolation, engine=client))
        options, _plan = plan_load(path, n_ctx=n_ctx, settings=s, gpu_layers_override=args.gpu_layers,
                                   machine=machine, rpc_servers=client.rpc_servers or None)
        info = client.load(path, options)
        # the same sampling and history rules as the window (core.chat.conversation)
        system = args.system if args.system is not None else s.system_prompt
        request = question_turn(prompt, system, s, info.is_r1, {
            "temperature": args.temperature, "top_p": args.top_p, "max_tokens": args.max_tokens, "seed": args.seed})

        result = TurnResult()
        in_reasoning = False
        for chunk in stream_turn(client, request):
            result.add(chunk)
            if args.json:
                continue
            if isinstance(chunk, ReasoningChunk):
                if not in_reasoning:
                    sys.stderr.write("[thinking] ")
                    in_reasoning = True
                sys.stderr.write(chunk.text)
                sys.stderr.flush()
            elif isinstance(chunk, ContentChunk):
                if in_reasoning:
                    sys.stderr.write("\n[/thinking]\n")
                    in_reasoning = False
                sys.stdout.write(chunk.text)
                sys.stdout.flush()
            elif isinstance(chunk, NoticeChunk):
                sys.stderr.write(f"[note] {chunk.text}\n")
        if result.error is not None:
            assert isinstance(result.error, ErrorChunk)
            return fail(result.error.message)
        helpers = client.relay_report()
        assert result.stats is not None
        st = result.stats
        if args.json:
            emit_json({
                "model": name,
                "text": result.text,
                "reasoning": result.reasoning,
                "prompt_tokens": st.prompt_tokens,
                "completion_tokens": st.completion_tokens,
                "ttft_s": round(st.ttft_s, 4),
                "decode_tokens_per_s": round(st.decode_tokens_per_s, 2),
                "load_s": round(info.load_s, 4),
                "n_gpu_layers": info.offloaded_layers if info.offloaded_layers is not None else info.n_gpu_layers,
                "n_ctx": info.n_ctx,
                "finish_reason": st.finish_reason,
                "notices": result.notices,
                "isolation": client.hello.isolation,
                "helpers": helpers,
                "split": device_split(info.load_log) if peers else None,
            })
        else:
            sys.stdout.write("\n")
            sys.stderr.write(f"[{st.completion_tokens} tokens, TTFT {st.ttft_s:.2f} s, "
                             f"{st.decode_tokens_per_s:.1f} tok/s]\n")
            for line in helper_lines(client):
                sys.stderr.write(line + "\n")
    return 0
