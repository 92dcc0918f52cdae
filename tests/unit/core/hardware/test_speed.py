"""The decode-speed prediction's pieces against hand computations (no timing: the figures are injected)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from model_shapes import write_qwen3moe_shape, write_r1_qwen14b_q4km

from localchat.core.hardware import speed as sp
from localchat.core.hardware.detect import GIB, GpuDevice, Machine
from localchat.core.hardware.planner import ModelShape, plan_offload
from localchat.core.hardware.speed import (
    Bandwidth,
    CpuProbe,
    MachineSpeed,
    apple_chip,
    cached_cpu_probe,
    gpu_bandwidth,
    kv_bytes_per_layer,
    machine_speed,
    nvidia_bandwidth,
    predict_decode,
    seconds_per_token,
    token_bytes,
)
from localchat.core.models.gguf_info import read_gguf

GB = 1e9


def shape(n_layers: int = 4, layer: int = 100_000_000, output: int = 50_000_000, vocab: int = 32000) -> ModelShape:
    return ModelShape(name="toy", architecture="llama", n_layers=n_layers, layer_bytes=(layer,) * n_layers,
                      embd_bytes=vocab * 1000, output_bytes=output, n_ctx_train=8192, n_embd=1000, n_heads=8,
                      n_kv_heads=2, head_dim_k=64, head_dim_v=64, n_vocab=vocab, n_ff=4000)


def cpu_machine(cores: int = 4) -> Machine:
    return Machine("Test CPU", cores, cores, 64 * GIB, 64 * GIB)


def gpu_machine(free: int, name: str = "NVIDIA GeForce RTX 4090", backend: str = "cuda",
                unified: bool = False) -> Machine:
    return Machine("Test CPU", 8, 16, 64 * GIB, 64 * GIB, gpus=(GpuDevice(0, backend, name, free, free, unified),))


PROBE = CpuProbe("Test CPU", 4, 40 * GB, 2.0e9, 0.0)


def test_nvidia_bandwidth_from_clock_and_bus() -> None:
    # RTX 4090: 10501 MHz × 2 (DDR) × 384 bits / 8 = 1008 GB/s; A100: 1215 × 2 × 5120 / 8 = 1555 GB/s
    assert nvidia_bandwidth("4090", 10501, 384).bytes_per_s == pytest.approx(1008.1e9, rel=1e-4)
    a100 = nvidia_bandwidth("A100", 1215, 5120)
    assert a100.bytes_per_s == pytest.approx(1555.2e9, rel=1e-4) and a100.source == "driver"
    assert "from the driver" in a100.detail and "assumed 75%" in a100.detail


def test_gpu_bandwidth_sources() -> None:
    m = gpu_machine(24 * GIB)
    nv = [{"name": "NVIDIA GeForce RTX 4090", "mem_clock_mhz": 10501, "bus_width_bits": 384}]
    assert gpu_bandwidth(m.gpus[0], m, nv).source == "driver"
    # matched by order when the names differ (CUDA's name vs NVML's)
    assert gpu_bandwidth(m.gpus[0], m, [{**nv[0], "name": "other"}]).bytes_per_s == pytest.approx(1008.1e9, rel=1e-4)
    assert gpu_bandwidth(m.gpus[0], m, []).source == "assumed"
    mac = gpu_machine(10 * GIB, name="Apple M2 Pro", backend="metal", unified=True)
    bw = gpu_bandwidth(mac.gpus[0], mac, [])
    assert bw.source == "table" and bw.bytes_per_s == 200e9 and "M2 Pro" in bw.detail
    assert apple_chip("Apple M3 Max") == "M3 Max" and apple_chip("Apple M1") == "M1" and apple_chip("Intel") is None


def test_token_bytes_cpu_only_by_hand() -> None:
    s = shape()
    plan = plan_offload(s, cpu_machine(), 4096)
    tb = token_bytes(s, plan, 1000)
    # every block and the output layer, plus one row of the input embeddings (embd_bytes / vocab)
    assert tb.cpu_weights == 4 * 100_000_000 + 50_000_000 + 1000
    # KV per layer and token: 1000 tokens × 2 KV heads × (64 + 64) × 2 bytes (f16), four layers
    assert kv_bytes_per_layer(s, 1000, "f16") == 1000 * 2 * 128 * 2
    assert tb.cpu_kv == 4 * 512_000 and tb.gpu_weights == ()


def test_seconds_per_token_by_hand(monkeypatch: pytest.MonkeyPatch) -> None:
    s = shape()
    plan = plan_offload(s, cpu_machine(), 4096)
    speed = machine_speed(cpu_machine(), threads=4, cpu_probe=PROBE)
    tb = token_bytes(s, plan, 1000)
    t_mem = (tb.cpu_weights + tb.cpu_kv) / (40e9 * sp.CPU_EFFICIENCY[0])
    t_comp = (tb.cpu_weights / (2e9 * sp.COMPUTE_BYTES_PER_FLOP) + 4 * sp.LAYER_FLOPS / 2e9) / 4
    fixed = sp.FIXED_S + sp.PER_VOCAB_S * 32000
    t, bound = seconds_per_token(s, tb, speed)
    assert t == pytest.approx(max(t_mem, t_comp) + 4 * sp.SYNC_LAYER_S + fixed)
    assert bound == ("memory" if t_mem > t_comp else "compute")
    # one thread: no barriers, and the compute time is not shared
    one = machine_speed(cpu_machine(), threads=1, cpu_probe=PROBE)
    t1, _ = seconds_per_token(s, tb, one)
    assert t1 == pytest.approx(max(t_mem, t_comp * 4) + fixed)


def test_compute_floor_binds_with_few_threads() -> None:
    s = shape()
    plan = plan_offload(s, cpu_machine(), 4096)
    slow = CpuProbe("Test CPU", 1, 100 * GB, 0.5e9, 0.0)  # a fast memory bus, a slow core
    p1 = predict_decode(s, plan, machine_speed(cpu_machine(1), threads=1, cpu_probe=slow))
    p8 = predict_decode(s, plan, machine_speed(cpu_machine(8), threads=8, cpu_probe=slow))
    assert p1.bound == "compute" and p8.value > 2 * p1.value
    assert any("compute-bound with 1 thread" in b for b in p1.basis)


def test_prediction_bounds_and_label_cpu() -> None:
    s = shape()
    plan = plan_offload(s, cpu_machine(), 4096)
    pred = predict_decode(s, plan, machine_speed(cpu_machine(), threads=4, cpu_probe=PROBE))
    assert pred.low < pred.value < pred.high
    assert pred.at_full_context < pred.value  # more KV to read at a full context
    assert pred.label.startswith("~") and pred.label.endswith("tok/s on the CPU")
    d = pred.to_dict()
    assert set(d) == {"value", "low", "high", "n_past", "at_full_context", "n_ctx", "bound", "basis"}
    assert d["n_past"] == 1024 and any("measured" in b for b in d["basis"])


def test_full_gpu_prediction_by_hand(tmp_path: Path) -> None:
    s = ModelShape.from_gguf(read_gguf(write_r1_qwen14b_q4km(tmp_path / "r1.gguf", with_tokenizer=False)))
    m = gpu_machine(24 * GIB)
    plan = plan_offload(s, m, 8192)
    assert plan.verdict == "full_gpu"
    nv = [{"name": "NVIDIA GeForce RTX 4090", "mem_clock_mhz": 10501, "bus_width_bits": 384}]
    speed = machine_speed(m, cpu_probe=PROBE, nvml=nv)
    pred = predict_decode(s, plan, speed, n_past=1000)
    gpu_read = sum(s.layer_bytes) + s.output_bytes + s.n_layers * kv_bytes_per_layer(s, 1000, plan.kv_type)
    t = gpu_read / (1008.1e9 * sp.NVIDIA_EFFICIENCY[0]) + sp.FIXED_S + sp.PER_VOCAB_S * s.n_vocab \
        + sp.GPU_FIXED_S + sp.GPU_LAYER_S * s.n_layers
    assert pred.value == pytest.approx(1 / t, rel=1e-3)
    assert 40 < pred.value < 120  # a 14B Q4_K_M on a 4090: ~60-70 tok/s is what people measure
    assert pred.label == f"~{pred.value:.0f} tok/s on the GPU" and pred.bound == "gpu"
    assert any("from the driver" in b for b in pred.basis)


def test_partial_offload_label_and_split(tmp_path: Path) -> None:
    s = ModelShape.from_gguf(read_gguf(write_r1_qwen14b_q4km(tmp_path / "r1.gguf", with_tokenizer=False)))
    m = gpu_machine(6 * GIB)
    plan = plan_offload(s, m, 8192)
    assert plan.verdict == "partial"
    pred = predict_decode(s, plan, machine_speed(m, cpu_probe=PROBE, nvml=[]))
    tb = token_bytes(s, plan, pred.n_past)
    blocks = tb.gpu_blocks[0]
    assert blocks == plan.n_gpu_layers  # the output layer stays on the CPU
    assert tb.gpu_weights[0] == sum(s.layer_bytes[s.n_layers - blocks:])
    assert pred.label.endswith(f"tok/s, {plan.n_gpu_layers} of {s.n_layers + 1} layers on the GPU")
    assert any("assumed" in b for b in pred.basis)  # no NVML figures: the GPU's bandwidth is assumed


def test_moe_reads_only_the_active_experts(tmp_path: Path) -> None:
    s = ModelShape.from_gguf(read_gguf(write_qwen3moe_shape(tmp_path / "moe.gguf")))
    assert s.expert_bytes > 0.9 * sum(s.layer_bytes)
    tb = token_bytes(s, plan_offload(s, cpu_machine(), 2048), 0)
    experts = s.expert_bytes // s.n_layers
    per_layer = s.layer_bytes[0] - experts + experts * 8 // 128
    assert tb.cpu_weights == s.n_layers * per_layer + s.output_bytes + s.embd_bytes // s.n_vocab


def test_cpu_probe_cached_median_of_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sp, "_session_probes", {})
    figures = iter([10 * GB, 30 * GB, 20 * GB, 99 * GB])
    calls: list[int] = []

    def fake(name: str, threads: int) -> CpuProbe:
        calls.append(threads)
        return CpuProbe(name, threads, next(figures), 1e9, 0.0)

    for _ in range(4):
        sp._session_probes.clear()  # a new process each time
        got = cached_cpu_probe("Test CPU", 2, tmp_path, probe=fake)
    # the median of the first three (not the best: one fast moment of a shared machine must not stick), then cached
    assert len(calls) == 3 and got.read_bytes_per_s == 20 * GB
    data = json.loads((tmp_path / sp.CACHE_FILE).read_text())
    assert data["Test CPU|2"]["runs"] == 3 and len(data["Test CPU|2"]["samples"]) == 3
    (tmp_path / sp.CACHE_FILE).write_text("{damaged")
    sp._session_probes.clear()
    assert cached_cpu_probe("Test CPU", 2, tmp_path, probe=fake).read_bytes_per_s == 99 * GB


def test_cpu_probe_cache_written_as_best_of_runs_is_measured_again(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """An entry from before the median (three runs, best figures, no samples) counts as one run, not three."""
    monkeypatch.setattr(sp, "_session_probes", {})
    old = {**CpuProbe("Test CPU", 1, 32 * GB, 3e9, 0.0).to_dict(), "runs": 3}
    (tmp_path / sp.CACHE_FILE).write_text(json.dumps({"Test CPU|1": old}))
    figures = iter([20 * GB, 24 * GB])
    for _ in range(2):
        sp._session_probes.clear()
        got = cached_cpu_probe("Test CPU", 1, tmp_path,
                               probe=lambda name, threads: CpuProbe(name, threads, next(figures), 2e9, 0.0))
    assert got.read_bytes_per_s == 24 * GB and got.thread_flops == 2e9  # median of 32, 20, 24 and of 3, 2, 2 G
    sp._session_probes.clear()
    assert cached_cpu_probe("Test CPU", 1, tmp_path, probe=lambda *_: pytest.fail("measured again")) == got
    # an edited cache (NaN, zero, samples that are not pairs) is measured over, not believed
    for bad in ({**old, "read_bytes_per_s": float("nan")}, {**old, "samples": [[0, 1e9]] * 3},
                {**old, "samples": [["x"]]}):
        (tmp_path / sp.CACHE_FILE).write_text(json.dumps({"Test CPU|1": bad}))
        sp._session_probes.clear()
        fresh = cached_cpu_probe("Test CPU", 1, tmp_path, probe=lambda name, threads: CpuProbe(name, threads, 5 * GB,
                                                                                               1e9, 0.0))
        assert fresh.read_bytes_per_s == 5 * GB


def test_real_probe_measures_something() -> None:
    p = sp.probe_cpu("this", 1, budget_s=0.3)
    assert p.read_bytes_per_s > 1e8 and p.thread_flops > 1e6 and p.seconds > 0


def test_simulated_gpu_bandwidth_given() -> None:
    m = gpu_machine(24 * GIB, name="simulated GPU 0")
    speed = machine_speed(m, cpu_probe=PROBE, gpu_bandwidths=[500e9])
    assert speed.gpus[0].bytes_per_s == 500e9 and isinstance(speed.gpus[0], Bandwidth)
    assert isinstance(speed, MachineSpeed) and speed.threads == 8


def test_lan_decode_by_hand() -> None:
    """LAN mode: each helper's layers read at this CPU's speed (assumed), the link's round trips and bytes added."""
    s = shape()  # 4 layers of 100 MB, a 50 MB output layer, n_embd 1000, 32000-token vocabulary
    speed = machine_speed(cpu_machine(), threads=1, cpu_probe=PROBE)
    rtt = [0.001, 0.002]
    pred = sp.predict_lan_decode(s, [2, 2], rtt, speed, n_past=1000)
    kv = kv_bytes_per_layer(s, 1000, "f16")

    def cpu(w: int, layers: int) -> float:
        t_mem = (w + kv * layers) / (40e9 * sp.CPU_EFFICIENCY[0])
        t_comp = w / (2e9 * sp.COMPUTE_BYTES_PER_FLOP) + layers * sp.LAYER_FLOPS / 2e9
        return max(t_mem, t_comp)

    link = (2 * 4 * 1000 * 2 + 4 * 32000) / sp.LAN_BYTES_PER_S + sp.RPC_ROUND_TRIPS * sum(rtt)
    expected = cpu(200_000_000, 2) + cpu(250_000_000, 2) + link + sp.FIXED_S + sp.PER_VOCAB_S * 32000
    assert 1 / pred.value == pytest.approx(expected)
    assert pred.low < pred.value < pred.high and pred.label.endswith("tok/s over the helper machines")
    assert any("assumed as fast as this one" in b for b in pred.basis)
    # a slower link costs speed; nothing else changes
    far = sp.predict_lan_decode(s, [2, 2], [0.02, 0.02], speed, n_past=1000)
    assert far.value < pred.value
