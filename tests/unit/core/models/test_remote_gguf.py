"""A Hub model's GGUF header read with HTTP Range requests from the local Hub stand-in: the same tensor table as
the file read locally, a bounded number of bytes fetched (of a sparse shape-exact 9 GB 14B file), split models
read as one, hostile or oversized headers refused in one line at bounded cost, offline mode respected."""

from __future__ import annotations

import os
import struct
from pathlib import Path

import pytest
from hubserver import FakeHub, HubState
from model_shapes import split_gguf, write_r1_qwen14b_q4km

from localchat.core.models.gguf_info import read_gguf
from localchat.core.models.hub import repo_models
from localchat.core.models.remote_gguf import BLOCK, HeaderTooLarge, read_remote_gguf
from localchat.errors import DownloadError, InvalidModelFile, LocalChatError

R1 = "DeepSeek-R1-Distill-Qwen-14B-Q4_K_M.gguf"


@pytest.fixture
def online(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOCALCHAT_USER_OFFLINE", "0")


@pytest.fixture(scope="module")
def r1_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_r1_qwen14b_q4km(tmp_path_factory.mktemp("r1") / R1)


def test_header_of_a_9gb_file_from_a_few_mb_of_range_requests(r1_file: Path, online) -> None:
    local = read_gguf(r1_file)
    state = HubState(disk_files={"org/R1-GGUF": {R1: r1_file}})
    with FakeHub(state) as hub:
        model = repo_models("org/R1-GGUF", endpoint=hub.url)[0]
        info, fetched = read_remote_gguf(model, endpoint=hub.url)
    assert model.size == r1_file.stat().st_size > 8e9
    assert info.tensors == local.tensors and info.n_params == local.n_params and info.n_layers == 48
    assert info.vocab_size == 152064 and info.file_size == model.size and info.architecture == "qwen2"
    # bounded: what was served is what the client counted, and no more than the header plus one block
    assert fetched == state.served_by_file[R1] == state.served < 8 * 2**20
    ranged = [r for r in state.requests if "/resolve/" in r]
    assert len(ranged) <= fetched // BLOCK + 2


def test_a_split_model_is_read_as_one(starter_model: Path, tmp_path: Path, online) -> None:
    (tmp_path / "m-Q4_1.gguf").write_bytes(starter_model.read_bytes())
    parts = split_gguf(tmp_path / "m-Q4_1.gguf", tmp_path, parts=3)
    whole = read_gguf(starter_model)
    state = HubState(repos={"org/split": {p.name: p.read_bytes() for p in parts}})
    with FakeHub(state) as hub:
        model = repo_models("org/split", endpoint=hub.url)[0]
        info, fetched = read_remote_gguf(model, endpoint=hub.url)
    assert len(model.files) == 3 and info.file_size == sum(p.stat().st_size for p in parts)
    assert sorted(t.name for t in info.tensors) == sorted(t.name for t in whole.tensors)
    assert info.n_params == whole.n_params and fetched < sum(p.stat().st_size for p in parts)
    # a user-started Hub action like a search: the offline lockdown is lifted for it only
    from huggingface_hub import constants

    assert os.environ["HF_HUB_OFFLINE"] == "1" and constants.HF_HUB_OFFLINE is True


def _gguf_with_strings(n_strings: int, pad_to: int) -> bytes:
    """A header whose vocabulary holds ``n_strings`` empty strings (8 bytes each), padded with zeros."""
    key = b"tokenizer.ggml.tokens"
    head = b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + struct.pack("<Q", len(key)) + key
    head += struct.pack("<IIQ", 9, 8, n_strings) + b"\0" * (8 * n_strings)
    return head + b"\0" * (pad_to - len(head))


def test_a_header_over_the_budget_is_refused_after_the_budget(online) -> None:
    state = HubState(repos={"org/big": {"big-Q4_0.gguf": _gguf_with_strings(1_000_000, 12_000_000)}})
    with FakeHub(state) as hub:
        model = repo_models("org/big", endpoint=hub.url)[0]
        with pytest.raises(HeaderTooLarge, match=r"larger than 4 MB") as exc:
            read_remote_gguf(model, endpoint=hub.url, budget=4 * 2**20)
    assert "\n" not in str(exc.value) and state.served_by_file["big-Q4_0.gguf"] <= 4 * 2**20


@pytest.mark.parametrize("body, message", [
    (b"GGUF" + struct.pack("<IQQ", 3, 1 << 40, 1 << 40) + b"\0" * 4096, "lists 1,099,511,627,776 tensors"),
    (b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + struct.pack("<Q", 1 << 62) + b"\0" * 4096, "corrupt GGUF header"),
    (b"<!DOCTYPE html><html>captive portal</html>" + b" " * 4096, "not a GGUF model"),
    (b"GGUF" + struct.pack("<IQQ", 3, 0, 0), "truncated"),
])
def test_hostile_headers_are_one_line_errors(body: bytes, message: str, online) -> None:
    state = HubState(repos={"org/bad": {"bad-Q4_0.gguf": body}})
    with FakeHub(state) as hub:
        model = repo_models("org/bad", endpoint=hub.url)[0]
        with pytest.raises(InvalidModelFile, match=message) as exc:
            read_remote_gguf(model, endpoint=hub.url)
    assert "\n" not in str(exc.value) and state.served <= len(body)


def test_gated_offline_and_no_range_support_are_said(r1_file: Path, monkeypatch: pytest.MonkeyPatch,
                                                      online) -> None:
    state = HubState(disk_files={"org/R1-GGUF": {R1: r1_file}, "org/gated": {R1: r1_file}},
                     gated={"org/gated": set()})
    with FakeHub(state) as hub:
        gated = repo_models("org/gated", endpoint=hub.url)[0]
        with pytest.raises(DownloadError, match="is gated"):
            read_remote_gguf(gated, endpoint=hub.url)
        model = repo_models("org/R1-GGUF", endpoint=hub.url)[0]
        state.ignore_range = True  # every answer is the whole 9 GB file from byte 0
        with pytest.raises(DownloadError, match="no HTTP Range support"):
            read_remote_gguf(model, endpoint=hub.url)
        served = state.served
        monkeypatch.setenv("LOCALCHAT_USER_OFFLINE", "1")
        requests = len(state.requests)
        with pytest.raises(DownloadError, match="offline"):
            read_remote_gguf(model, endpoint=hub.url)
        assert len(state.requests) == requests
    assert served < 64 * 2**20  # the client stopped reading after the block it wanted


def test_fit_and_speed_from_the_remote_table_equal_the_downloaded_files(r1_file: Path, online) -> None:
    from localchat.core.hardware.detect import GIB, GpuDevice, Machine
    from localchat.core.hardware.planner import ModelShape, plan_offload
    from localchat.core.hardware.speed import CpuProbe, machine_speed, predict_decode
    from localchat.core.models.remote_gguf import fit_remote

    card = Machine("Test CPU", 8, 16, 64 * GIB, 64 * GIB,
                   gpus=(GpuDevice(0, "cuda", "NVIDIA GeForce RTX 4070", 6 * GIB, 6 * GIB, False),))
    speed = machine_speed(card, threads=8, cpu_probe=CpuProbe("Test CPU", 8, 40e9, 2.0e9, 0.0))
    with FakeHub(HubState(disk_files={"org/R1-GGUF": {R1: r1_file}})) as hub:
        fit = fit_remote(repo_models("org/R1-GGUF", endpoint=hub.url)[0], card, speed, endpoint=hub.url)
    shape = ModelShape.from_gguf(read_gguf(r1_file))
    plan = plan_offload(shape, card, 8192)
    assert fit.plan == plan and fit.verdict == "partial" and 0 < plan.n_gpu_layers < 49
    assert fit.speed == predict_decode(shape, plan, speed) and fit.speed is not None
    assert "layers on the GPU" in fit.speed.label and fit.fetched < 8 * 2**20


@pytest.mark.slow
def test_a_stand_in_from_the_range_read_header_gives_llama_cpp_the_planned_compute_buffer(
        r1_file: Path, tmp_path: Path, online) -> None:
    """llama.cpp's own figure, from a dry run in the sandboxed worker on a sparse stand-in written from the header
    bytes read by Range requests, equals the plan's compute buffer (flash attention off and on)."""
    from localchat.core.engine.client import EngineClient
    from localchat.core.hardware.detect import GIB, Machine
    from localchat.core.hardware.planner import ModelShape, plan_offload
    from localchat.core.models.remote_gguf import write_stand_in

    with FakeHub(HubState(disk_files={"org/R1-GGUF": {R1: r1_file}})) as hub:
        model = repo_models("org/R1-GGUF", endpoint=hub.url)[0]
        headers: list[bytes] = []
        info, fetched = read_remote_gguf(model, endpoint=hub.url, headers=headers)
    assert len(headers[0]) == info.data_offset and headers[0] == r1_file.read_bytes()[:info.data_offset]
    assert fetched < 8 * 2**20
    stand_in = write_stand_in(model, headers, tmp_path)
    assert stand_in.stat().st_size == model.size and stand_in.stat().st_blocks * 512 < 16 * 2**20  # sparse
    shape = ModelShape.from_gguf(info)
    with EngineClient(isolation="auto") as worker:
        iso = worker.hello.isolation if worker.hello else {}
        assert not iso.get("isolated") or iso["netns"] != iso["parent_netns"]  # sandboxed where the kernel allows
        for flash_attn in (False, True):
            got = worker.dry_run(stand_in, 8192, 0, flash_attn)
            plan = plan_offload(shape, Machine("CPU", 2, 2, 512 * GIB, 512 * GIB), 8192, allow_ctx_reduction=False,
                                flash_attn=flash_attn)
            # llama.cpp rounds its log line to 0.01 MiB
            assert abs(got["compute_bytes"]["CPU"] - plan.compute_bytes) <= 0.01 * 2**20, (got, plan.compute_bytes)
        with pytest.raises(LocalChatError, match=r"llama\.cpp dry run failed"):
            worker.dry_run(tmp_path / "missing.gguf", 4096)
        assert worker.ping()  # the worker lives on after a refused dry run


def test_a_server_sending_tiny_ranges_gets_a_bounded_number_of_requests(r1_file: Path) -> None:
    """RangeFile against a server that answers every range with 16 bytes: refused after MAX_REQUESTS requests."""
    from localchat.core.models.remote_gguf import MAX_REQUESTS, RangeFile

    class Tiny:
        calls = 0

        def stream(self, method: str, url: str, headers: dict[str, str], **kw: object):  # type: ignore[no-untyped-def]
            import contextlib

            Tiny.calls += 1
            start = int(headers["Range"].split("=")[1].split("-")[0])

            class R:
                status_code = 206
                headers = {"Content-Range": f"bytes {start}-{start + 15}/{r1_file.stat().st_size}"}

                def iter_bytes(self):  # type: ignore[no-untyped-def]
                    with open(r1_file, "rb") as fh:
                        fh.seek(start)
                        yield fh.read(16)

            return contextlib.nullcontext(R())

    rf = RangeFile(Tiny(), "http://127.0.0.1:9/x", r1_file.stat().st_size, {}, what="org/x.gguf")
    from localchat.core.models.gguf_info import parse_gguf

    with pytest.raises(DownloadError, match="pieces too small"):
        parse_gguf(rf, r1_file.stat().st_size, "x.gguf")
    assert Tiny.calls == MAX_REQUESTS and rf.fetched == 16 * MAX_REQUESTS
