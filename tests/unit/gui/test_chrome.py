"""The top bar's one line on where the model runs: the GPU, part GPU, the CPU, or the helper machines (LAN mode)."""

from __future__ import annotations

from localchat.core.engine.protocol import LoadInfo
from localchat.gui.chrome import device_text


def _info(offloaded: int | None, n_ctx: int = 4096) -> LoadInfo:
    return LoadInfo(path="/m.gguf", n_ctx=n_ctx, n_ctx_train=8192, n_layers=30, n_gpu_layers=offloaded or 0,
                    offloaded_layers=offloaded, offloadable_layers=31, load_s=1.0, chat_template=None,
                    model_name="m", is_r1=False)


def test_where_the_layers_run() -> None:
    assert device_text(_info(31)) == "GPU · 31/31 layers  ·  4k context"
    assert device_text(_info(12)) == "GPU 12/31 layers + CPU  ·  4k context"
    assert device_text(_info(0, 3000)) == "CPU  ·  3000 context"
    assert device_text(_info(31), helpers=True) == "Helpers · 31/31 layers  ·  4k context"
    assert device_text(_info(20), helpers=True) == "Helpers 20/31 layers + CPU  ·  4k context"
