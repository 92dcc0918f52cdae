"""llama.cpp's RPC devices (helper machines) in the worker: register them the way llama.cpp's own ``--rpc`` does.

The endpoints are the worker's relay ports on its own loopback (``core/privacy/relay.py``); llama.cpp never sees a
helper's real address. ggml keeps registered devices for the life of the process, so each endpoint is registered
once per worker; a worker serves one fixed list of helpers (a new list means a new worker).

Runs only in the worker, called by ``runtime.py`` with llama-cpp-python's library handle (this module itself does
not import ``llama_cpp``).
"""

from __future__ import annotations

import ctypes
from typing import Any

from localchat.errors import ModelLoadError

_registered: dict[str, list[dict[str, Any]]] = {}


def _fn(lib: Any, name: str, restype: Any, argtypes: list[Any]) -> Any:
    f = getattr(lib, name)
    f.restype, f.argtypes = restype, argtypes
    return f


def add_rpc_servers(lib: Any, endpoints: list[str]) -> list[dict[str, Any]]:
    """Register each ``127.0.0.1:P`` endpoint's devices with ggml (llama.cpp then offloads to them by default).

    Args:
        lib: the ctypes handle of libllama (its dependencies, libggml and ggml-rpc, resolve through it).

    Returns:
        One entry per device: ``endpoint``, ``name``, ``free``/``total`` bytes as the helper reports them.

    Raises:
        ModelLoadError: this llama.cpp build has no RPC backend.
    """
    reg_by_name = _fn(lib, "ggml_backend_reg_by_name", ctypes.c_void_p, [ctypes.c_char_p])
    proc = _fn(lib, "ggml_backend_reg_get_proc_address", ctypes.c_void_p, [ctypes.c_void_p, ctypes.c_char_p])
    register = _fn(lib, "ggml_backend_register", None, [ctypes.c_void_p])
    reg_count = _fn(lib, "ggml_backend_reg_dev_count", ctypes.c_size_t, [ctypes.c_void_p])
    reg_dev = _fn(lib, "ggml_backend_reg_dev_get", ctypes.c_void_p, [ctypes.c_void_p, ctypes.c_size_t])
    dev_name = _fn(lib, "ggml_backend_dev_name", ctypes.c_char_p, [ctypes.c_void_p])
    dev_memory = _fn(lib, "ggml_backend_dev_memory", None,
                     [ctypes.c_void_p, ctypes.POINTER(ctypes.c_size_t), ctypes.POINTER(ctypes.c_size_t)])
    rpc = reg_by_name(b"RPC")
    if not rpc:
        raise ModelLoadError("this llama.cpp build has no RPC backend: reinstall with `make install` (it builds "
                             "llama-cpp-python with -DGGML_RPC=on)")
    address = proc(rpc, b"ggml_backend_rpc_add_server")
    if not address:
        raise ModelLoadError("this llama.cpp build's RPC backend has no ggml_backend_rpc_add_server")
    add_server = ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.c_char_p)(address)
    devices: list[dict[str, Any]] = []
    for endpoint in endpoints:
        if endpoint not in _registered:
            reg = add_server(endpoint.encode())  # connects (through the relay) and asks for the device count
            if not reg:
                raise ModelLoadError(f"the helper behind {endpoint} reports no device")
            register(reg)
            found = []
            for i in range(reg_count(reg)):
                dev = reg_dev(reg, i)
                free, total = ctypes.c_size_t(0), ctypes.c_size_t(0)
                dev_memory(dev, ctypes.byref(free), ctypes.byref(total))
                found.append({"endpoint": endpoint, "name": (dev_name(dev) or b"").decode(errors="replace"),
                              "free": free.value, "total": total.value})
            _registered[endpoint] = found
        devices.extend(_registered[endpoint])
    return devices
