"""Detection with injected probe results (no GPU on the build machines), and the real probe of this build."""

from __future__ import annotations

from typing import Any

from localchat.core.hardware.detect import CUDA_INSTALL, GIB, HIP_INSTALL, VULKAN_INSTALL, SystemProbes, detect


class FakeProbes:
    def __init__(self, ggml_devices: list[dict[str, Any]], nvml: list[dict[str, Any]] | None = None,
                 apple: dict[str, Any] | None = None, ggml_error: str | None = None,
                 pci: list[dict[str, Any]] | None = None) -> None:
        self._ggml = {"devices": ggml_devices, **({"error": ggml_error} if ggml_error else {})}
        self._nvml = nvml or []
        self._apple = apple
        self._pci = pci or []

    def cpu(self) -> tuple[str, int, int]:
        return "Test CPU", 8, 16

    def ram(self) -> tuple[int, int]:
        return 32 * GIB, 28 * GIB

    def ggml(self) -> dict[str, Any]:
        return self._ggml

    def nvml(self) -> list[dict[str, Any]]:
        return self._nvml

    def apple(self) -> dict[str, Any] | None:
        return self._apple

    def pci_gpus(self) -> list[dict[str, Any]]:
        return self._pci


CPU_DEV = {"name": "CPU", "description": "Test CPU", "type": "cpu", "free_bytes": 0, "total_bytes": 0}
NV = [{"name": "NVIDIA GeForce RTX 4070 Ti", "total_bytes": 12 * GIB, "free_bytes": 11 * GIB, "driver": "560.35"}]


def test_cuda_build_with_nvml_detail() -> None:
    cuda = {"name": "CUDA0", "description": "NVIDIA GeForce RTX 4070 Ti", "type": "gpu",
            "free_bytes": 11 * GIB, "total_bytes": 12 * GIB}
    m = detect(FakeProbes([CPU_DEV, cuda], NV))
    assert len(m.usable_gpus) == 1
    g = m.gpus[0]
    assert (g.backend, g.driver, g.free_bytes, g.usable) == ("cuda", "560.35", 11 * GIB, True)


def test_gpu_present_but_build_has_no_backend() -> None:
    m = detect(FakeProbes([CPU_DEV], NV))
    assert m.usable_gpus == ()
    assert m.gpus[0].name == "NVIDIA GeForce RTX 4070 Ti" and not m.gpus[0].usable
    assert any(CUDA_INSTALL in n for n in m.notes)


def test_apple_unified_memory_working_set() -> None:
    metal = {"name": "MTL0", "description": "Apple M2", "type": "gpu", "free_bytes": 16 * 10**9,
             "total_bytes": 16 * 10**9}
    m = detect(FakeProbes([CPU_DEV, metal], apple={"name": "Apple M2", "memsize": 16 * 10**9}))
    g = m.gpus[0]
    assert g.unified and g.backend == "metal" and g.total_bytes == 16 * 10**9 * 2 // 3
    assert any("working-set" in n for n in m.notes)
    reported = dict(metal, total_bytes=12 * GIB, free_bytes=11 * GIB)  # a raised wired limit, as ggml-metal reports
    g = detect(FakeProbes([CPU_DEV, reported], apple={"name": "Apple M2", "memsize": 16 * 10**9})).gpus[0]
    assert (g.total_bytes, g.free_bytes) == (12 * GIB, 11 * GIB)
    no_metal = detect(FakeProbes([CPU_DEV], apple={"name": "Apple M2", "memsize": 16 * 10**9}))
    assert any("no Metal backend" in n for n in no_metal.notes)


def test_failed_probe_is_a_note_not_a_crash() -> None:
    m = detect(FakeProbes([], ggml_error="llama.cpp device probe failed: boom"))
    assert any("boom" in n for n in m.notes) and m.gpus == ()


def test_real_probe_of_this_build() -> None:
    m = detect(SystemProbes())
    assert m.ram_total > 0 and m.physical_cores >= 1
    assert any(d["type"] == "cpu" for d in m.llama_devices)  # ggml's own registry answered


def test_amd_gpu_without_a_backend_gets_the_vulkan_command() -> None:
    m = detect(FakeProbes([CPU_DEV], pci=[{"vendor": "amd", "name": "AMD GPU (PCI 1002:73bf)"}]))
    assert m.usable_gpus == () and m.gpus[0].backend == "none"
    note = next(n for n in m.notes if "AMD GPU" in n)
    assert VULKAN_INSTALL in note and HIP_INSTALL in note
    vulkan = {"name": "Vulkan0", "description": "AMD Radeon RX 6800", "type": "gpu", "free_bytes": 15 * GIB,
              "total_bytes": 16 * GIB}
    ok = detect(FakeProbes([CPU_DEV, vulkan], pci=[{"vendor": "amd", "name": "AMD GPU (PCI 1002:73bf)"}]))
    assert [g.backend for g in ok.gpus] == ["vulkan"] and not any("AMD GPU" in n for n in ok.notes)


def test_nvml_matched_by_name_not_order() -> None:
    cuda = [{"name": "CUDA0", "description": "NVIDIA GeForce RTX 4090", "type": "gpu", "free_bytes": 23 * GIB,
             "total_bytes": 24 * GIB},
            {"name": "CUDA1", "description": "NVIDIA GeForce RTX 3060", "type": "gpu", "free_bytes": 11 * GIB,
             "total_bytes": 12 * GIB}]
    nv = [{"name": "NVIDIA GeForce RTX 3060", "total_bytes": 12 * GIB, "free_bytes": 11 * GIB, "driver": "560.35"},
          {"name": "NVIDIA GeForce RTX 4090", "total_bytes": 24 * GIB, "free_bytes": 23 * GIB, "driver": "560.35"}]
    m = detect(FakeProbes([CPU_DEV, *cuda], nv))
    assert [(g.name, g.free_bytes) for g in m.gpus] == [("NVIDIA GeForce RTX 4090", 23 * GIB),
                                                         ("NVIDIA GeForce RTX 3060", 11 * GIB)]
    assert all(g.driver == "560.35" for g in m.gpus)


def test_a_probe_that_raises_is_a_note() -> None:
    class Broken(FakeProbes):
        def nvml(self) -> list[dict[str, Any]]:
            raise RuntimeError("driver mismatch")

    m = detect(Broken([CPU_DEV]))
    assert any("NVML probe failed" in n and "driver mismatch" in n for n in m.notes)


def test_repack_types_measured_by_the_probe_of_this_build() -> None:
    probe = SystemProbes().ggml()
    assert isinstance(probe.get("cpu_repack_types"), list), probe.get("cpu_repack_error")
    m = detect(FakeProbes([CPU_DEV]))
    assert m.cpu_repack_types is None  # not measured: the planner uses its default set
