"""``localchat models …``: the offline model manager (list, info, search, pull, import, rm)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from localchat.context import AppContext


def register(sub: Any) -> None:
    p = sub.add_parser("models", help="installed models and downloads")
    msub = p.add_subparsers(dest="models_command", metavar="ACTION", required=True)
    lp = msub.add_parser("list", help="installed models")
    lp.set_defaults(func=cmd_list)
    ip = msub.add_parser("info", help="a model's GGUF metadata")
    ip.add_argument("name", help="library name or .gguf path")
    ip.set_defaults(func=cmd_info)
    sp = msub.add_parser("search", help="search Hugging Face for GGUF repos (last results kept for offline use)")
    sp.add_argument("query")
    sp.add_argument("--files", action="store_true", help="list the GGUF files of the repo named by QUERY")
    sp.set_defaults(func=cmd_search)
    pp = msub.add_parser("pull", help="download a GGUF model from Hugging Face (resumes, verifies sha256)")
    pp.add_argument("repo")
    pp.add_argument("file", nargs="?", help="the .gguf file (or split model stem) to fetch")
    pp.add_argument("--quant", help="pick the file by quantisation, e.g. Q4_K_M")
    pp.set_defaults(func=cmd_pull)
    mp = msub.add_parser("import", help="add a local .gguf file to the library")
    mp.add_argument("path")
    mp.add_argument("--name", help="library name (default: from the file name)")
    mp.add_argument("--in-place", action="store_true", help="register the file where it is instead of copying it")
    mp.set_defaults(func=cmd_import)
    rp = msub.add_parser("rm", help="remove a model from the library (and its file, unless registered in place)")
    rp.add_argument("name")
    rp.set_defaults(func=cmd_rm)
    for sp_ in (lp, ip, sp, pp, mp, rp):
        sp_.add_argument("--json", action="store_true")


def _entry_dict(e: Any) -> dict[str, Any]:
    return {"name": e.name, "path": e.path, "size": e.size, "source": e.source, "sha256": e.sha256,
            "in_place": e.in_place, "parts": e.parts, "present": e.file.is_file(), **e.extra}


def cmd_list(ctx: AppContext, args: argparse.Namespace) -> int:
    from localchat.cli import emit_json
    from localchat.core.models.starter import STARTER_NAME

    if ctx.library.get(STARTER_NAME) is None:
        try:
            ctx.ensure_starter()
        except Exception as exc:  # offline machine without the cached starter: list what there is
            print(f"note: starter model unavailable: {exc}", file=sys.stderr)
    entries = ctx.library.entries()
    if args.json:
        emit_json({"models": [_entry_dict(e) for e in entries]})
        return 0
    if not entries:
        print("No models installed. Try: localchat models pull REPO --quant Q4_K_M")
        return 0
    width = max(len(e.name) for e in entries)
    for e in entries:
        state = "" if e.file.is_file() else "  (file missing)"
        print(f"{e.name:<{width}}  {e.size / 1e9:7.2f} GB  {e.source:<40}  {e.path}{state}")
    return 0


def cmd_info(ctx: AppContext, args: argparse.Namespace) -> int:
    from localchat.cli import emit_json
    from localchat.core.chat.history import is_r1_distill
    from localchat.core.models.gguf_info import read_gguf

    path = ctx.library.resolve(args.name)
    info = read_gguf(path)
    entry = ctx.library.get(args.name)
    out = {"name": args.name, "path": str(path), "architecture": info.architecture, "model_name": info.name,
           "n_params": info.n_params, "file_type": info.file_type, "quantisation": info.quantisation,
           "context_length": info.context_length, "n_layers": info.n_layers, "n_heads": info.n_heads,
           "n_kv_heads": info.n_kv_heads, "head_dim": info.head_dim_k, "n_experts": info.n_experts,
           "file_size": info.file_size, "has_chat_template": info.chat_template is not None,
           "r1_distill": is_r1_distill(f"{args.name} {info.name}", info.chat_template),
           "assumptions": list(info.assumptions), "library": _entry_dict(entry) if entry else None}
    if args.json:
        emit_json(out)
        return 0
    for k, v in out.items():
        if k != "library":
            print(f"{k:>18}: {v}")
    return 0


def _search_cache(ctx: AppContext) -> Any:
    return ctx.paths.cache_dir / "hub-search.json"


def cmd_search(ctx: AppContext, args: argparse.Namespace) -> int:

    from localchat.cli import emit_json
    from localchat.core.models import hub
    from localchat.errors import DownloadError

    cache_file = _search_cache(ctx)
    key = f"{'files' if args.files else 'search'}:{args.query}"
    try:
        cache = json.loads(cache_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        cache = {}
    note = None
    try:
        if args.files:
            results = [m.to_dict() for m in hub.repo_models(args.query)]
        else:
            results = hub.search(args.query)
        cache[key] = {"time": time.time(), "results": results}
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        cache_file.write_text(json.dumps(cache), encoding="utf-8")
    except DownloadError as exc:
        if key not in cache:
            raise
        results = cache[key]["results"]
        note = f"{exc} — showing results cached {time.strftime('%Y-%m-%d %H:%M', time.localtime(cache[key]['time']))}"
    if args.json:
        emit_json({"query": args.query, "results": results, "cached": note is not None, "note": note})
        return 0
    if note:
        print(f"note: {note}", file=sys.stderr)
    for r in results:
        if args.files:
            print(f"{r['quant']:<10} {r['size'] / 1e9:7.2f} GB  {r['name']}  ({len(r['files'])} file(s))")
        else:
            print(f"{r['repo']}  ↓{r.get('downloads') or 0}")
    return 0


class _Bar:
    def __init__(self) -> None:
        self.last = 0.0

    def __call__(self, p: Any) -> None:
        now = time.monotonic()
        if now - self.last < 0.1 and p.done_bytes < p.total_bytes:
            return
        self.last = now
        frac = p.done_bytes / p.total_bytes if p.total_bytes else 1.0
        bar = "#" * int(frac * 30)
        eta = f"{p.eta_s:4.0f}s" if p.eta_s is not None else "   ?"
        sys.stderr.write(f"\r[{bar:<30}] {frac * 100:5.1f}%  {p.done_bytes / 1e6:8.1f}/{p.total_bytes / 1e6:.1f} MB  "
                         f"{p.speed_bps / 1e6:6.1f} MB/s  ETA {eta}  part {p.part}/{p.parts}")
        sys.stderr.flush()


def cmd_pull(ctx: AppContext, args: argparse.Namespace) -> int:
    from localchat.cli import emit_json, fail
    from localchat.core.models import hub
    from localchat.core.models.download import pull

    models = hub.repo_models(args.repo)
    if not models:
        return fail(f"{args.repo} has no .gguf files")
    if args.file:
        chosen = [m for m in models if args.file in (m.name, m.name.removesuffix(".gguf"))
                  or any(f.path == args.file for f in m.files)]
    elif args.quant:
        chosen = [m for m in models if m.quant.upper() == args.quant.upper()]
    else:
        chosen = models if len(models) == 1 else []
    if len(chosen) != 1:
        listing = ", ".join(f"{m.name} ({m.quant})" for m in models)
        return fail(f"say which file to pull (FILE or --quant): {listing}", 2)
    model = chosen[0]
    if not args.json:
        print(f"Pulling {model.name} from {args.repo} ({model.size / 1e9:.2f} GB, {len(model.files)} file(s))",
              file=sys.stderr)
    entry = pull(model, ctx.library, ctx.models_dir, progress=None if args.json else _Bar())
    if args.json:
        emit_json({"model": _entry_dict(entry)})
    else:
        print(f"\nInstalled as {entry.name}: {entry.path} (sha256 verified)", file=sys.stderr)
    return 0


def cmd_import(ctx: AppContext, args: argparse.Namespace) -> int:
    from localchat.cli import emit_json
    from localchat.core.models.library import import_file

    entry = import_file(ctx.library, args.path, ctx.models_dir, name=args.name, in_place=args.in_place)
    if args.json:
        emit_json({"model": _entry_dict(entry)})
    else:
        print(f"Imported as {entry.name}: {entry.path}")
    return 0


def cmd_rm(ctx: AppContext, args: argparse.Namespace) -> int:
    from localchat.cli import emit_json
    from localchat.core.models.library import remove_model

    entry, deleted = remove_model(ctx.library, args.name)
    if args.json:
        emit_json({"removed": entry.name, "deleted_files": [str(p) for p in deleted]})
    else:
        print(f"Removed {entry.name}" + (f"; deleted {len(deleted)} file(s)" if deleted else "; file kept"))
    return 0
