"""The catalogue of distilled checkpoints: shipped as data (``resources/catalogue.json``), works offline.

"Refresh from Hugging Face" asks the Hub (through huggingface_hub) for each entry's file list, exact sizes, sha256
and commit, and keeps the result as a cached copy in the cache folder, which then takes precedence over the shipped
file. Without a refresh, sizes are the publishers' at the time of writing and a download fetches the exact values
(and the hashes it verifies against) from the Hub before it starts.

A quant is one file or, for a split model, all its parts::

    "quants": {"Q4_K_M": {"file": "X-Q4_K_M.gguf", "size": 4683073888},
               "Q8_0": {"files": [{"file": "X-Q8_0/X-Q8_0-00001-of-00002.gguf", "size": …}, …]}}
"""

from __future__ import annotations

import json
import logging
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from localchat.core.models.hub import RemoteFile, RemoteModel
from localchat.errors import DownloadError
from localchat.fsutil import atomic_write_text

log = logging.getLogger(__name__)
SHAPE_KEYS = ("n_layers", "n_embd", "n_kv_heads", "head_dim", "n_vocab")


def shipped_catalogue() -> Path:
    base = Path(getattr(sys, "_MEIPASS", Path(__file__).resolve().parents[3]))
    return base / "resources" / "catalogue.json"


@dataclass
class CatalogueQuant:
    """One quantisation of a catalogue model: a single file or all parts of a split one."""

    quant: str
    files: list[RemoteFile]
    missing: bool = False  # the last refresh did not find it on the Hub

    @property
    def file(self) -> str:
        return self.files[0].path

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)

    @property
    def sha256(self) -> str | None:
        return self.files[0].sha256

    @property
    def verified(self) -> bool:
        return all(f.sha256 for f in self.files)


@dataclass
class CatalogueEntry:
    id: str
    title: str
    repo: str
    license: str
    description: str
    context: int
    sampling: dict[str, float]
    reasoning: bool
    shape: dict[str, int]
    family: str = ""
    params_b: float | None = None
    revision: str | None = None  # the commit of the last refresh
    quants: list[CatalogueQuant] = field(default_factory=list)

    def quant(self, name: str) -> CatalogueQuant | None:
        return next((q for q in self.quants if q.quant.upper() == name.upper()), None)

    def remote(self, quant: CatalogueQuant) -> RemoteModel:
        """The download for ``quant``; pinned to the refreshed commit when the refresh gave every hash."""
        name = quant.file.rsplit("/", 1)[-1]
        if len(quant.files) > 1:
            from localchat.core.models.hub import SPLIT_RE

            m = SPLIT_RE.match(quant.file)
            name = (m.group("stem") if m else quant.file).rsplit("/", 1)[-1]
        revision = self.revision if quant.verified else None
        return RemoteModel(self.repo, name, quant.quant, [RemoteFile(f.path, f.size, f.sha256) for f in quant.files],
                           revision)

    def library_extra(self) -> dict[str, Any]:
        """What a model downloaded from this entry remembers of it (recommended sampling and context)."""
        return {"catalogue_id": self.id, "sampling": dict(self.sampling), "recommended_context": self.context,
                "reasoning": self.reasoning}

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "title": self.title, "repo": self.repo, "license": self.license,
                "description": self.description, "context": self.context, "sampling": self.sampling,
                "reasoning": self.reasoning, "family": self.family, "params_b": self.params_b,
                "revision": self.revision,
                "quants": [{"quant": q.quant, "size": q.size, "missing": q.missing,
                            "files": [f.to_dict() for f in q.files]} for q in self.quants]}


def _text(v: Any, what: str) -> str:
    if not isinstance(v, str) or not v:
        raise ValueError(f"{what} is {v!r}, not text")
    return v


def _whole(v: Any, what: str, hi: int = 1 << 50, lo: int = 0) -> int:  # n_layers <= 512: the planner sizes by it
    if type(v) is not int or not lo <= v <= hi:
        raise ValueError(f"{what} is {v!r}, not a size")
    return v


def _quant(name: str, raw: dict[str, Any]) -> CatalogueQuant:
    parts = raw.get("files", [raw])
    if not isinstance(parts, list) or not parts:
        raise ValueError(f"quant {name} has no files")
    files = []
    for p in parts:
        sha = p.get("sha256")
        if sha is not None and not (isinstance(sha, str) and len(sha) == 64):
            raise ValueError(f"{p.get('file')!r} has a sha256 of {sha!r}")
        files.append(RemoteFile(_text(p["file"], "a file"), _whole(p["size"], f"the size of {p['file']}"), sha))
    return CatalogueQuant(name, files, bool(raw.get("missing")))


def _entry(m: dict[str, Any]) -> CatalogueEntry:
    """One catalogue entry; ValueError/KeyError/TypeError when a field is missing or of the wrong type."""
    from localchat.core.models.hub import REPO_RE

    if not REPO_RE.match(_text(m["repo"], "repo")):
        raise ValueError(f"repo {m['repo']!r} is not a Hugging Face repo id")
    _text(m["id"], "id")
    _text(m["title"], "title")
    if not isinstance(m.get("quants", {}), dict) or not isinstance(m.get("sampling", {}), dict):
        raise ValueError(f"{m['id']}: quants and sampling must be objects")
    return CatalogueEntry(
        id=m["id"], title=m["title"], repo=m["repo"], license=m.get("license", "?"),
        description=m.get("description", ""), context=int(m.get("context", 4096)),
        sampling={k: float(v) for k, v in m.get("sampling", {}).items()}, reasoning=bool(m.get("reasoning")),
        shape={k: _whole(m[k], k, 512 if k == "n_layers" else 1 << 32, lo=1) for k in SHAPE_KEYS if k in m},
        family=m.get("family", ""),
        params_b=float(m["params_b"]) if "params_b" in m else None, revision=m.get("revision"),
        quants=[_quant(q, v) for q, v in m.get("quants", {}).items()])


@dataclass
class RefreshReport:
    updated_files: int
    repos_ok: list[str]
    failed: dict[str, str]  # repo -> why


class Catalogue:
    """The catalogue: the cached copy (after a refresh) or the shipped one."""

    def __init__(self, cache_dir: Path) -> None:
        self.cached = Path(cache_dir) / "catalogue.json"

    def _raw(self) -> dict[str, Any]:
        for path in (self.cached, shipped_catalogue()):
            try:
                data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
                [_entry(m) for m in data.get("models", [])]  # a copy that does not parse is skipped whole
                return data
            except FileNotFoundError:
                continue
            except (OSError, ValueError, KeyError, TypeError, AttributeError, RecursionError) as exc:
                log.warning("catalogue %s unreadable (%s); trying the next copy", path, exc)
        return {"models": []}

    @property
    def refreshed(self) -> float | None:
        """When the catalogue was last refreshed from the Hub (None: the shipped copy)."""
        when = self._raw().get("refreshed", 0)
        return float(when) if isinstance(when, (int, float)) and 0 < when < 1e11 else None

    def entries(self) -> list[CatalogueEntry]:
        return [_entry(m) for m in self._raw().get("models", [])]

    def get(self, entry_id: str) -> CatalogueEntry | None:
        return next((e for e in self.entries() if e.id == entry_id), None)

    def find(self, repo: str, file: str) -> tuple[CatalogueEntry, CatalogueQuant] | None:
        """The entry and quant a Hub file belongs to, if the catalogue lists it."""
        for e in self.entries():
            if e.repo.lower() == repo.lower():
                for q in e.quants:
                    if any(f.path == file or f.path.rsplit("/", 1)[-1] == file for f in q.files):
                        return e, q
        return None

    def search(self, query: str) -> list[CatalogueEntry]:
        """Entries whose id, title, repo, family or description contain every word of ``query`` (offline)."""
        words = query.lower().split()
        return [e for e in self.entries()
                if all(w in f"{e.id} {e.title} {e.repo} {e.family} {e.description}".lower() for w in words)]

    def refresh(self, endpoint: str | None = None) -> RefreshReport:
        """Update every entry's files, sizes, sha256 and commit from the Hub into the cached copy.

        A repo that fails (renamed, gated, a malformed listing) keeps what the catalogue had and is reported; when
        every repo fails for the same reason, or the Hub cannot be asked at all (offline mode, no network, no answer
        in time, a captive portal's page) that error is raised, and the repos after such a failure are not asked.
        """
        from localchat.core.models.hub import HubUnavailable, repo_models

        raw = self._raw()
        updated = 0
        ok: list[str] = []
        failed: dict[str, str] = {}
        errors: list[DownloadError] = []
        unavailable: HubUnavailable | None = None
        for m in raw.get("models", []):
            if unavailable is not None:  # no answer in time, or not the Hub answering: asking on costs minutes
                failed[m["repo"]] = str(unavailable)
                continue
            try:
                remote = repo_models(m["repo"], endpoint=endpoint)
            except HubUnavailable as exc:
                if not ok:
                    raise
                failed[m["repo"]] = str(exc)
                unavailable = exc
                continue
            except DownloadError as exc:
                failed[m["repo"]] = str(exc)
                errors.append(exc)
                continue
            ok.append(m["repo"])
            by_path = {f.path: (r, f) for r in remote for f in r.files}
            for q in m.get("quants", {}).values():
                parts = q.get("files", [q])
                found = [by_path.get(p["file"]) for p in parts]
                q["missing"] = any(x is None for x in found)
                for p, hit in zip(parts, found, strict=True):
                    if hit is not None:
                        r, f = hit
                        p["size"], p["sha256"] = f.size, f.sha256
                        m["revision"] = r.revision
                        updated += 1
                if "files" in q:
                    q["size"] = sum(int(p["size"]) for p in parts)
        if not ok and errors and len({str(e) for e in errors}) == 1:
            raise errors[0]
        raw["refreshed"] = time.time()
        atomic_write_text(self.cached, json.dumps(raw, indent=1))
        return RefreshReport(updated, ok, failed)
