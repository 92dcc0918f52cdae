"""Ask the installed llama.cpp build which devices it can offload to (ggml's backend device registry).

Runs as a short-lived subprocess (``python -m localchat.core.hardware.ggml_probe``, or ``localchat --ggml-probe``
when frozen) so that llama.cpp's native libraries are never loaded into the app process. Prints one JSON object.
"""

from __future__ import annotations

import ctypes
import json
import sys
from pathlib import Path
from typing import Any

# enum ggml_backend_dev_type
_DEV_TYPES = {0: "cpu", 1: "gpu", 2: "igpu", 3: "accel"}


def _lib_dir() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("llama_cpp")
    if spec is None or spec.origin is None:
        raise RuntimeError("llama-cpp-python is not installed")
    return Path(spec.origin).parent / "lib"


def probe() -> dict[str, Any]:
    import llama_cpp  # loads libllama and registers the backends compiled into this build

    lib_dir = _lib_dir()
    candidates = sorted(lib_dir.glob("libggml.*")) + sorted(lib_dir.glob("ggml.dll"))
    if not candidates:
        raise RuntimeError(f"no ggml library in {lib_dir}")
    ggml = ctypes.CDLL(str(candidates[0]))
    ggml.ggml_backend_dev_count.restype = ctypes.c_size_t
    ggml.ggml_backend_dev_get.restype = ctypes.c_void_p
    ggml.ggml_backend_dev_get.argtypes = [ctypes.c_size_t]
    for fn in ("ggml_backend_dev_name", "ggml_backend_dev_description"):
        getattr(ggml, fn).restype = ctypes.c_char_p
        getattr(ggml, fn).argtypes = [ctypes.c_void_p]
    ggml.ggml_backend_dev_type.restype = ctypes.c_int
    ggml.ggml_backend_dev_type.argtypes = [ctypes.c_void_p]
    ggml.ggml_backend_dev_memory.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_size_t),
                                             ctypes.POINTER(ctypes.c_size_t)]
    ggml.ggml_backend_dev_memory.restype = None
    devices = []
    for i in range(ggml.ggml_backend_dev_count()):
        dev = ggml.ggml_backend_dev_get(i)
        free, total = ctypes.c_size_t(0), ctypes.c_size_t(0)
        ggml.ggml_backend_dev_memory(dev, ctypes.byref(free), ctypes.byref(total))
        devices.append({
            "name": (ggml.ggml_backend_dev_name(dev) or b"").decode(),
            "description": (ggml.ggml_backend_dev_description(dev) or b"").decode(),
            "type": _DEV_TYPES.get(ggml.ggml_backend_dev_type(dev), "unknown"),
            "free_bytes": free.value,
            "total_bytes": total.value,
        })
    return {"llama_cpp_version": getattr(llama_cpp, "__version__", "?"),
            "supports_gpu_offload": bool(llama_cpp.llama_supports_gpu_offload()), "devices": devices}


def main() -> int:
    try:
        out = probe()
    except Exception as exc:  # reported, not raised: the app shows it and carries on
        out = {"error": f"{type(exc).__name__}: {exc}", "devices": []}
    sys.stdout.write(json.dumps(out) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
