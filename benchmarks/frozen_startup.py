"""Start-up of the frozen app (dist/localchat, built by `make package`) next to the source tree.

Three things a user waits for: `--version` (the bare process start), the window shown (offscreen, first paint after
`show()`), and `--self-test` (starter model loaded in the worker, one short answer). Runs alternate frozen/source so
machine noise hits both; prints medians and the ratio frozen / source.

    .venv/bin/python benchmarks/frozen_startup.py [--runs 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FROZEN = [str(ROOT / "dist" / "localchat" / "localchat")]
SOURCE = [sys.executable, "-m", "localchat"]


def environment(home: Path) -> dict[str, str]:
    return dict(os.environ, LOCALCHAT_HOME=str(home), LOCALCHAT_MACHINE_CACHE=str(home / "machine-cache"),
                QT_QPA_PLATFORM="offscreen", HF_HUB_OFFLINE="1", LOCALCHAT_SMOKE_QUIT_MS="2000")


def until_window(cmd: list[str], home: Path) -> float:
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=environment(home))
    assert proc.stdout is not None
    shown = float("nan")
    for line in proc.stdout:
        if line.startswith("window shown"):
            shown = time.perf_counter() - t0
    proc.wait()
    return shown


def wall(cmd: list[str], arg: str, home: Path) -> float:
    t0 = time.perf_counter()
    subprocess.run([*cmd, arg], capture_output=True, env=environment(home), check=True)
    return time.perf_counter() - t0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    if not Path(FROZEN[0]).is_file():
        print("no frozen build: run `make package` first", file=sys.stderr)
        return 1
    results: dict[str, dict[str, list[float]]] = {k: {"--version": [], "window shown": [], "--self-test": []}
                                                  for k in ("frozen", "source")}
    with tempfile.TemporaryDirectory() as tmp:
        homes = {k: Path(tmp) / k for k in results}
        for label, cmd in (("frozen", FROZEN), ("source", SOURCE)):
            wall(cmd, "--self-test", homes[label])  # registers the starter, warms the page cache
        for _ in range(args.runs):
            for label, cmd in (("frozen", FROZEN), ("source", SOURCE)):
                r = results[label]
                r["--version"].append(wall(cmd, "--version", homes[label]))
                r["window shown"].append(until_window(cmd, homes[label]))
                r["--self-test"].append(wall(cmd, "--self-test", homes[label]))
    print(f"median of {args.runs} runs, seconds")
    print(f"{'':14}{'frozen':>9}{'source':>9}{'ratio':>8}")
    for what in results["frozen"]:
        f, s = (statistics.median(results[k][what]) for k in ("frozen", "source"))
        print(f"{what:14}{f:9.2f}{s:9.2f}{f / s:8.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
