"""What machine is this: CPU, RAM, GPUs, and what the installed llama.cpp build can offload to.

Each source of facts is a probe behind the :class:`Probes` interface, so tests inject results (there is no GPU on
the build machines) and a failing probe becomes a note, never a crash.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from localchat.core.engine.client import EngineClient

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
    # weight types llama.cpp's CPU backend repacks here (measured by the ggml probe); None = not measured
    cpu_repack_types: tuple[str, ...] | None = None
    llama_cpp_version: str | None = None
    # the sandbox report of the worker in which llama.cpp was probed (None: not probed, e.g. a simulated machine)
    probe_isolation: dict[str, Any] | None = None

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
    def pci_gpus(self) -> list[dict[str, Any]]: ...


CUDA_INSTALL = 'make reinstall-llama LLAMA_CMAKE_ARGS="-DGGML_CUDA=on"'
METAL_INSTALL = 'make reinstall-llama LLAMA_CMAKE_ARGS="-DGGML_METAL=on"'
VULKAN_INSTALL = 'make reinstall-llama LLAMA_CMAKE_ARGS="-DGGML_VULKAN=on"'
HIP_INSTALL = 'make reinstall-llama LLAMA_CMAKE_ARGS="-DGGML_HIP=on"'
_PCI_VENDORS = {"0x10de": "nvidia", "0x1002": "amd", "0x1022": "amd", "0x8086": "intel"}


class SystemProbes:
    """The real probes.

    Args:
        isolation: sandbox policy of the worker that runs llama.cpp's device probe when no ``engine`` is given.
        engine: a started (or startable) worker to ask; the caller keeps it. Otherwise a short-lived worker is
            started and closed. Either way llama.cpp is only ever loaded inside the sandboxed worker.
    """

    def __init__(self, isolation: str = "auto", engine: EngineClient | None = None) -> None:
        self.isolation = isolation
        self.engine = engine

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
        from localchat.core.engine.client import EngineClient
        from localchat.errors import LocalChatError

        engine = self.engine or EngineClient(isolation=self.isolation)
        try:
            hello = engine.start()
            result = dict(engine.probe())
            result["isolation"] = dict(hello.isolation)
            return result
        except (LocalChatError, OSError) as exc:
            return {"error": f"llama.cpp device probe failed: {exc}", "devices": []}
        finally:
            if self.engine is None:
                engine.close()

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


    def pci_gpus(self) -> list[dict[str, Any]]:
        """Display controllers the kernel sees (Linux sysfs), whatever llama.cpp can do with them."""
        out = []
        for card in sorted(Path("/sys/class/drm").glob("card[0-9]*")):
            if "-" in card.name:  # connectors (card0-HDMI-A-1), not devices
                continue
            try:
                vendor = (card / "device" / "vendor").read_text().strip().lower()
                device = (card / "device" / "device").read_text().strip().lower()
                pci_class = (card / "device" / "class").read_text().strip().lower()
            except OSError:
                continue
            if not pci_class.startswith("0x03") or vendor not in _PCI_VENDORS:
                continue
            out.append({"vendor": _PCI_VENDORS[vendor], "name": f"{_PCI_VENDORS[vendor].upper()} GPU "
                        f"(PCI {vendor[2:]}:{device[2:]})"})
        return out


def _sysctl(key: str) -> str | None:
    try:
        return subprocess.run(["sysctl", "-n", key], capture_output=True, text=True, timeout=5).stdout.strip() or None
    except (OSError, subprocess.TimeoutExpired):
        return None


def metal_working_set(memsize: int) -> int:
    """Metal's recommendedMaxWorkingSetSize: about 2/3 of RAM up to 36 GB, 3/4 above (what macOS reports)."""
    return memsize * 3 // 4 if memsize > 36 * 10**9 else memsize * 2 // 3


def detect(probes: Probes | None = None) -> Machine:
    """What this machine has and what the installed llama.cpp build can use of it. Never raises: a probe that
    fails becomes a note."""
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
                              unified=backend == "metal" or d.get("type") == "igpu"))
    nv = _safe(p.nvml, [], notes, "NVML")
    if nv:
        if any(g.backend == "cuda" for g in gpus):
            # ggml knows what this build uses (and its free memory); NVML adds the driver and the marketing name.
            # CUDA orders devices fastest first, NVML by PCI bus: match by name, then by order.
            unmatched = list(nv)
            merged = []
            for g in gpus:
                extra = None
                if g.backend == "cuda":
                    extra = next((d for d in unmatched if d["name"] == g.name), None) or \
                        (unmatched[0] if unmatched else None)
                    if extra is not None:
                        unmatched.remove(extra)
                merged.append(GpuDevice(g.index, g.backend, extra["name"] if extra else g.name, g.total_bytes,
                                        g.free_bytes, g.unified, extra.get("driver") if extra else None))
            gpus = merged
        else:
            for d in nv:
                gpus.append(GpuDevice(len(gpus), "none", d["name"], d["total_bytes"], d["free_bytes"],
                                      driver=d.get("driver"), usable=False))
            notes.append(f"NVIDIA GPU found ({nv[0]['name']}, driver {nv[0].get('driver', '?')}) but the installed "
                         f"llama-cpp-python has no CUDA backend, so models would run on the CPU. Install a CUDA "
                         f"build (needs the CUDA toolkit; compiles for several minutes): {CUDA_INSTALL}")
    apple = _safe(p.apple, None, notes, "sysctl")
    if apple is not None:
        memsize = int(apple.get("memsize", 0)) or ram_total
        if not any(g.backend == "metal" for g in gpus):
            notes.append(f"Apple silicon found but this llama-cpp-python build has no Metal backend. Reinstall it: "
                         f"{METAL_INSTALL}")
        else:
            # ggml-metal reports recommendedMaxWorkingSetSize as total and what is left of it as free: trust those
            # when they are below the RAM size (a raised iogpu.wired_limit_mb shows there), else Metal's default share
            def working_set(g: GpuDevice) -> GpuDevice:
                total = g.total_bytes if 0 < g.total_bytes < memsize else metal_working_set(memsize)
                free = min(g.free_bytes, total) if g.free_bytes else total
                return GpuDevice(g.index, g.backend, g.name, total, free, True, g.driver)

            gpus = [working_set(g) if g.backend == "metal" else g for g in gpus]
            ws = next(g.total_bytes for g in gpus if g.backend == "metal")
            notes.append(f"Unified memory: Metal may use about {ws / GIB:.1f} GiB of the {memsize / GIB:.0f} GiB "
                         f"RAM (its working-set limit); the rest stays with the system.")
    pci = _safe(p.pci_gpus, [], notes, "PCI")
    for vendor, install in (("amd", f"{VULKAN_INSTALL} (or ROCm: {HIP_INSTALL})"), ("intel", VULKAN_INSTALL)):
        found = [d for d in pci if d.get("vendor") == vendor]
        if found and not any(g.backend in ("vulkan", "rocm", "sycl", "opencl") for g in gpus):
            for d in found:
                gpus.append(GpuDevice(len(gpus), "none", str(d.get("name")), 0, 0, usable=False))
            notes.append(f"{found[0].get('name')} found but the installed llama-cpp-python has no backend for it "
                         f"(Vulkan{' or ROCm' if vendor == 'amd' else ''}), so models run on the CPU. To use it: "
                         f"{install}")
    if not any(g.usable for g in gpus):
        notes.append("No GPU that this llama.cpp build can use: models run on the CPU.")
    repack = ggml.get("cpu_repack_types")
    return Machine(cpu_name, physical, logical, ram_total, ram_available, tuple(gpus), llama_devices, tuple(notes),
                   cpu_repack_types=tuple(repack) if isinstance(repack, list) else None,
                   llama_cpp_version=ggml.get("llama_cpp_version"),
                   probe_isolation=ggml.get("isolation") if isinstance(ggml.get("isolation"), dict) else None)


def _safe(fn: Any, default: Any, notes: list[str], what: str) -> Any:
    try:
        return fn()
    except Exception as exc:  # a probe must never stop detection
        notes.append(f"{what} probe failed: {type(exc).__name__}: {exc}")
        return default


def _backend_of(dev_name: str) -> str:
    low = dev_name.lower()
    for key, backend in (("cuda", "cuda"), ("metal", "metal"), ("mtl", "metal"), ("vulkan", "vulkan"),
                         ("rocm", "rocm"), ("hip", "rocm"), ("sycl", "sycl"), ("opencl", "opencl")):
        if key in low:
            return backend
    return low or "gpu"
