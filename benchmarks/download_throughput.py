"""Download throughput: localchat's DownloadJob (huggingface_hub's HTTP session, sha256 check, resumable .part)
against a plain urllib download of the same file from the same local Hub server, alternating, in one run.

    .venv/bin/python benchmarks/download_throughput.py [--runs 5]
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from hubserver import FakeHub, HubState

from localchat.core.models.download import DownloadJob
from localchat.core.models.hub import RemoteFile, RemoteModel
from localchat.core.models.starter import ensure_starter_model
from localchat.paths import machine_cache_dir


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    import os

    os.environ["LOCALCHAT_USER_OFFLINE"] = "0"
    data = ensure_starter_model(machine_cache_dir()).read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    state = HubState(repos={"bench/model": {"m.gguf": data}})
    ours, plain, session = [], [], []
    with FakeHub(state) as hub:
        model = RemoteModel("bench/model", "m.gguf", "Q4_1", [RemoteFile("m.gguf", len(data), sha)])
        for _ in range(args.runs):
            d = Path(tempfile.mkdtemp(prefix="lc-dl-"))
            t = time.perf_counter()
            DownloadJob(model, d, endpoint=hub.url).run()
            ours.append(len(data) / (time.perf_counter() - t))
            shutil.rmtree(d)
            d = Path(tempfile.mkdtemp(prefix="lc-dl-"))
            t = time.perf_counter()
            with urllib.request.urlopen(f"{hub.url}/bench/model/resolve/main/m.gguf") as r, \
                    open(d / "m.gguf", "wb") as out:
                shutil.copyfileobj(r, out, 1 << 20)
            plain.append(len(data) / (time.perf_counter() - t))
            shutil.rmtree(d)
            from huggingface_hub import get_session

            t = time.perf_counter()
            with get_session().stream("GET", f"{hub.url}/bench/model/resolve/main/m.gguf") as r:
                for _ in r.iter_bytes(1 << 20):
                    pass
            session.append(len(data) / (time.perf_counter() - t))
    o, p = statistics.median(ours), statistics.median(plain)
    print(f"file: {len(data) / 1e6:.1f} MB from a local Hub server on 127.0.0.1, {args.runs} runs alternating")
    print(f"localchat (incl. sha256 check)  {o / 1e6:7.1f} MB/s")
    print(f"plain urllib (no check)        {p / 1e6:7.1f} MB/s")
    print(f"huggingface_hub's HTTP session alone (httpx, bytes discarded)  "
          f"{statistics.median(session) / 1e6:7.1f} MB/s")
    print(f"ratio localchat/plain: {o / p:.3f}")


if __name__ == "__main__":
    main()
