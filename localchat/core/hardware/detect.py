"""What machine is this: CPU, RAM, GPUs, and what the installed llama.cpp build can offload to.

Each source of facts is a probe behind the :class:`Probes` interface, so tests inject results (there is no GPU on
the build machines) and a failing probe becomes a note, never a crash.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from dataclasses import asdict, dataclass
from typing import Any, Protocol

GIB = 1024**3


@dataclass(frozen=True)
class GpuDevice:
    index: int
    backend: str  # "cuda", "metal", "vulkan", "rocm", ... or "none" when this build cannot use it
    name: str
    total_bytes: int
    free_bytes: int
    unified: bool = False  # Apple silicon: GPU memory is system RAM
    driver: str | None = None
    usable: bool = True  # the installed llama.cpp build has a backend for it


@dataclass(frozen=True)
class Machine:
    cpu_name: str
    physical_cores: int
    logical_cores: int
    ram_total: int
    ram_available: int
    gpus: tuple[GpuDevice, ...] = ()
    llama_devices: tuple[dict[str, Any], ...] = ()  # ggml's own device list for this build
    notes: tuple[str, ...] = ()

    @property
    def usable_gpus(self) -> tuple[GpuDevice, ...]:
        return tuple(g for g in self.gpus if g.usable)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Probes(Protocol):
    def cpu(self) -> tuple[str, int, int]: ...
    def ram(self) -> tuple[int, int]: ...
    def ggml(self) -> dict[str, Any]: ...
    def nvml(self) -> list[dict[str, Any]]: ...
    def apple(self) -> dict[str, Any] | None: ...


CUDA_INSTALL = 'make reinstall-llama LLAMA_CMAKE_ARGS="-DGGML_CUDA=on"'
METAL_INSTALL = 'make reinstall-llama LLAMA_CMAKE_ARGS="-DGGML_METAL=on"'


class SystemProbes:
    """The real probes."""

    def cpu(self) -> tuple[str, int, int]:
        import psutil

        name = platform.processor() or platform.machine()
        try:
            with open("/proc/cpuinfo", encoding="utf-8") as fh:
                for line in fh:
                    if line.startswith("model name"):
                        name = line.split(":", 1)[1].strip()
                        break
        except OSError:
            pass
        if sys.platform == "darwin":
            name = _sysctl("machdep.cpu.brand_string") or name
        logical = os.cpu_count() or 1
        return name, int(psutil.cpu_count(logical=False) or logical), logical

    def ram(self) -> tuple[int, int]:
        import psutil

        vm = psutil.virtual_memory()
        return int(vm.total), int(vm.available)

    def ggml(self) -> dict[str, Any]:
        if getattr(sys, "frozen", False):
            cmd = [sys.executable, "--ggml-probe"]
        else:
            cmd = [sys.executable, "-m", "localchat.core.hardware.ggml_probe"]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
            result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
            return result
        except (OSError, subprocess.TimeoutExpired, ValueError, IndexError) as exc:
            return {"error": f"llama.cpp device probe failed: {exc}", "devices": []}

    def nvml(self) -> list[dict[str, Any]]:
        try:
            import pynvml
        except ImportError:
            return []
        try:
            pynvml.nvmlInit()
        except Exception:  # no NVIDIA driver: the usual case on most machines
            return []
        try:
            driver = pynvml.nvmlSystemGetDriverVersion()
            out = []
            for i in range(pynvml.nvmlDeviceGetCount()):
                h = pynvml.nvmlDeviceGetHandleByIndex(i)
                mem = pynvml.nvmlDeviceGetMemoryInfo(h)
                name = pynvml.nvmlDeviceGetName(h)
                out.append({"name": name.decode() if isinstance(name, bytes) else str(name),
                            "total_bytes": int(mem.total), "free_bytes": int(mem.free),
                            "driver": driver.decode() if isinstance(driver, bytes) else str(driver)})
            return out
        finally:
            pynvml.nvmlShutdown()

    def apple(self) -> dict[str, Any] | None:
        if sys.platform != "darwin" or platform.machine() != "arm64":
            return None
        mem = _sysctl("hw.memsize")
        return {"name": _sysctl("machdep.cpu.brand_string") or "Apple silicon",
                "memsize": int(mem) if mem and mem.isdigit() else 0}


def _sysctl(key: str) -> str | None:
    try:
        return subprocess.run(["sysctl", "-n", key], capture_output=True, text=True, timeout=5).stdout.strip() or None
    except (OSError, subprocess.TimeoutExpired):
        return None


def metal_working_set(memsize: int) -> int:
    """Metal's recommendedMaxWorkingSetSize: about 2/3 of RAM up to 36 GB, 3/4 above (what macOS reports)."""
    return memsize * 3 // 4 if memsize > 36 * 10**9 else memsize * 2 // 3


def detect(probes: Probes | None = None) -> Machine:
    p = probes or SystemProbes()
    notes: list[str] = []
    cpu_name, physical, logical = p.cpu()
    ram_total, ram_available = p.ram()
    ggml = p.ggml()
    if ggml.get("error"):
        notes.append(str(ggml["error"]))
    llama_devices = tuple(ggml.get("devices", []))
    build_gpus = [d for d in llama_devices if d.get("type") in ("gpu", "igpu")]
    gpus: list[GpuDevice] = []
    for i, d in enumerate(build_gpus):
        desc = str(d.get("description") or d.get("name"))
        backend = _backend_of(str(d.get("name", "")))
        gpus.append(GpuDevice(i, backend, desc, int(d.get("total_bytes", 0)), int(d.get("free_bytes", 0)),
                              unified=backend == "metal"))
    nv = p.nvml()
    if nv:
        if any(g.backend == "cuda" for g in gpus):
            # NVML knows the driver; ggml knows what this build uses. Merge by order.
            merged = []
            for g in gpus:
                extra = nv[g.index] if g.backend == "cuda" and g.index < len(nv) else None
                merged.append(GpuDevice(g.index, g.backend, extra["name"] if extra else g.name, g.total_bytes,
                                        g.free_bytes, g.unified, extra["driver"] if extra else None))
            gpus = merged
        else:
            for _j, d in enumerate(nv):
                gpus.append(GpuDevice(len(gpus), "none", d["name"], d["total_bytes"], d["free_bytes"],
                                      driver=d.get("driver"), usable=False))
            notes.append(f"NVIDIA GPU found ({nv[0]['name']}) but the installed llama-cpp-python has no CUDA "
                         f"backend, so it would run on the CPU. Install a CUDA build: {CUDA_INSTALL}")
    apple = p.apple()
    if apple is not None:
        if not any(g.backend == "metal" for g in gpus):
            notes.append("Apple silicon found but this llama-cpp-python build has no Metal backend. "
                         f"Reinstall it: {METAL_INSTALL}")
        else:
            ws = metal_working_set(int(apple.get("memsize", 0)) or ram_total)
            gpus = [GpuDevice(g.index, g.backend, g.name, ws, min(g.free_bytes or ws, ws), True, g.driver)
                    if g.backend == "metal" else g for g in gpus]
            notes.append(f"Unified memory: Metal may use about {ws / GIB:.1f} GiB of the "
                         f"{(apple.get('memsize') or ram_total) / GIB:.0f} GiB RAM (its working-set limit).")
    if not gpus:
        notes.append("No GPU that this llama.cpp build can use: models run on the CPU.")
    return Machine(cpu_name, physical, logical, ram_total, ram_available, tuple(gpus), llama_devices, tuple(notes))


def _backend_of(dev_name: str) -> str:
    low = dev_name.lower()
    for key, backend in (("cuda", "cuda"), ("metal", "metal"), ("mtl", "metal"), ("vulkan", "vulkan"),
                         ("rocm", "rocm"), ("hip", "rocm"), ("sycl", "sycl"), ("opencl", "opencl")):
        if key in low:
            return backend
    return low or "gpu"
