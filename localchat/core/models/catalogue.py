"""The catalogue of distilled checkpoints: shipped as data (resources/catalogue.json), works offline.

"Refresh from Hugging Face" asks the Hub for each entry's file list, exact sizes and sha256 and keeps the result as
a cached copy in the cache folder, which then takes precedence over the shipped file.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def shipped_catalogue() -> Path:
    base = Path(getattr(sys, "_MEIPASS", Path(__file__).resolve().parents[3]))
    return base / "resources" / "catalogue.json"


@dataclass
class CatalogueQuant:
    quant: str
    file: str
    size: int
    sha256: str | None = None


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
    quants: list[CatalogueQuant] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "title": self.title, "repo": self.repo, "license": self.license,
                "description": self.description, "context": self.context, "sampling": self.sampling,
                "reasoning": self.reasoning,
                "quants": [{"quant": q.quant, "file": q.file, "size": q.size, "sha256": q.sha256} for q in self.quants]}


class Catalogue:
    def __init__(self, cache_dir: Path) -> None:
        self.cached = Path(cache_dir) / "catalogue.json"

    def _raw(self) -> dict[str, Any]:
        for path in (self.cached, shipped_catalogue()):
            try:
                data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
                return data
            except FileNotFoundError:
                continue
            except (OSError, ValueError) as exc:
                log.warning("catalogue %s unreadable (%s); trying the next copy", path, exc)
        return {"models": []}

    @property
    def refreshed(self) -> float | None:
        return float(self._raw().get("refreshed", 0)) or None

    def entries(self) -> list[CatalogueEntry]:
        out = []
        for m in self._raw().get("models", []):
            out.append(CatalogueEntry(
                id=m["id"], title=m["title"], repo=m["repo"], license=m.get("license", "?"),
                description=m.get("description", ""), context=int(m.get("context", 4096)),
                sampling=dict(m.get("sampling", {})), reasoning=bool(m.get("reasoning")),
                shape={k: int(m[k]) for k in ("n_layers", "n_embd", "n_kv_heads", "head_dim", "n_vocab") if k in m},
                quants=[CatalogueQuant(q, v["file"], int(v["size"]), v.get("sha256"))
                        for q, v in m.get("quants", {}).items()]))
        return out

    def get(self, entry_id: str) -> CatalogueEntry | None:
        return next((e for e in self.entries() if e.id == entry_id), None)

    def refresh(self, endpoint: str | None = None) -> int:
        """Update sizes and sha256 of every listed quant from the Hub; returns how many files were updated."""
        from localchat.core.models.hub import repo_models

        raw = self._raw()
        updated = 0
        for m in raw.get("models", []):
            remote = {r.name: r for r in repo_models(m["repo"], endpoint=endpoint)}
            for q in m.get("quants", {}).values():
                r = remote.get(q["file"])
                if r is not None and r.files:
                    q["size"], q["sha256"] = r.size, r.files[0].sha256
                    updated += 1
        raw["refreshed"] = time.time()
        self.cached.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.cached.parent, prefix=".catalogue-")
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(raw, fh, indent=1)
        os.replace(tmp, self.cached)
        return updated
