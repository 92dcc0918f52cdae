"""llama.cpp's default layer split over offload devices (by free memory), reproduced for the LAN-mode plan."""

from __future__ import annotations

from localchat.core.engine.load_options import layer_split


def test_even_free_memory_splits_evenly_with_the_output_layer_last() -> None:
    # 30 repeating layers + output; layer il goes to the first device whose cumulative share exceeds il/31
    assert layer_split([8 << 30, 8 << 30], 30) == [16, 15]


def test_split_follows_free_memory() -> None:
    assert layer_split([4 << 30, 12 << 30], 30) == [8, 23]
    assert sum(layer_split([3, 5, 7, 11], 79)) == 80


def test_partial_offload_and_degenerate_inputs() -> None:
    assert layer_split([1, 1, 1], 30, n_gpu_layers=10) == [4, 3, 3]  # the last 10 layers, the rest on the CPU
    assert layer_split([1, 1], 30, n_gpu_layers=0) == [0, 0]
    assert layer_split([0, 0], 30) == [16, 15]  # nothing reported: even
    assert layer_split([], 30) == []
