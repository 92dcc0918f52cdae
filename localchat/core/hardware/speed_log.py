"""Measured decode speed per model file: once a model has really run here, its last turns' tok/s replace the
prediction on the Models page (labelled "measured").

A small JSON in the data dir (``decode_speed.json``), keyed by the model's file name (the first part of a split
model), keeping the last ``KEEP`` turns; the figure shown is their median. Writes are atomic (a temporary file
renamed over the old one); two processes finishing a turn at the same instant may lose one turn's figure, which
the next turn makes up.

    record_decode(paths.data_dir, entry.file, stats.decode_tokens_per_s, n_gpu_layers=info.n_gpu_layers)
    measured_decode(paths.data_dir, "model-Q4_K_M.gguf")   # MeasuredSpeed | None
"""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from localchat.fsutil import atomic_write_text

FILE_NAME = "decode_speed.json"
KEEP = 5
MIN_TOKENS = 8  # a turn shorter than this says little about the decode speed


@dataclass(frozen=True)
class MeasuredSpeed:
    tokens_per_s: float  # median of the kept turns
    turns: int
    n_gpu_layers: int | None
    updated: float

    @property
    def label(self) -> str:
        v = self.tokens_per_s
        return f"{v:.0f} tok/s measured" if v >= 10 else f"{v:.1f} tok/s measured"


def _load(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _dir(data_dir: Path | None) -> Path:
    if data_dir is not None:
        return Path(data_dir)
    from localchat.paths import Paths

    return Paths.default().data_dir  # LOCALCHAT_HOME, else the per-user data folder


def record_decode(data_dir: Path | None, model_file: str | Path, tokens_per_s: float, *,
                  completion_tokens: int = MIN_TOKENS,
                  n_gpu_layers: int | None = None) -> None:
    """Add one finished turn's decode speed for ``model_file``. Turns shorter than ``MIN_TOKENS`` tokens and
    non-positive speeds are ignored; an unwritable data dir is not an error (the figure is a nicety). ``data_dir``
    None is the default home's (what ``core.chat.turn`` records into after every finished turn)."""
    if completion_tokens < MIN_TOKENS or not tokens_per_s > 0:
        return
    path = _dir(data_dir) / FILE_NAME
    data = _load(path)
    key = Path(model_file).name
    old = data.get(key) if isinstance(data.get(key), dict) else {}
    assert isinstance(old, dict)
    recent = [float(v) for v in old.get("recent", []) if isinstance(v, (int, float))][-(KEEP - 1):]
    data[key] = {"recent": [*recent, round(float(tokens_per_s), 3)], "n_gpu_layers": n_gpu_layers,
                 "updated": time.time()}
    try:
        atomic_write_text(path, json.dumps(data, indent=1))
    except OSError:
        pass


def measured_decode(data_dir: Path | None, model_file: str | Path) -> MeasuredSpeed | None:
    """The measured decode speed of ``model_file`` here (median of its last turns), None when it never ran."""
    entry = _load(_dir(data_dir) / FILE_NAME).get(Path(model_file).name)
    if not isinstance(entry, dict):
        return None
    recent = [float(v) for v in entry.get("recent", []) if isinstance(v, (int, float)) and v > 0]
    if not recent:
        return None
    layers = entry.get("n_gpu_layers")
    return MeasuredSpeed(statistics.median(recent), len(recent), layers if isinstance(layers, int) else None,
                         float(entry.get("updated") or 0))
