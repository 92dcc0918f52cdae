"""Hostile GGUF headers: every one is refused with one clear line, cheaply, whatever it claims.

The files are built byte by byte (``gguf.GGUFWriter`` will not write most of them); the large ones are sparse, so
100 MB of zeros takes a few KB of disk. The cost budget (< 200 MB while judging any file of up to 100 MB) is measured
in a subprocess with tracemalloc; no wall-clock time is asserted, only a generous subprocess timeout.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from localchat.core.models.gguf_info import read_gguf
from localchat.errors import InvalidModelFile

MB = 1024 * 1024
F32, Q4_0 = 0, 2
T_U32, T_I32, T_F32, T_STRING, T_ARRAY = 4, 5, 6, 8, 9


def u32(n: int) -> bytes:
    return struct.pack("<I", n)


def u64(n: int) -> bytes:
    return struct.pack("<Q", n)


def gstr(text: str | bytes) -> bytes:
    b = text.encode() if isinstance(text, str) else text
    return u64(len(b)) + b


def kv(key: str, vtype: int, payload: bytes) -> bytes:
    return gstr(key) + u32(vtype) + payload


def kv_u32(key: str, n: int) -> bytes:
    return kv(key, T_U32, u32(n))


def kv_str(key: str, text: str) -> bytes:
    return kv(key, T_STRING, gstr(text))


def kv_array(key: str, etype: int, items: list[bytes]) -> bytes:
    return kv(key, T_ARRAY, u32(etype) + u64(len(items)) + b"".join(items))


def tensor(name: str | bytes, dims: tuple[int, ...], ttype: int = F32, offset: int = 0) -> bytes:
    return gstr(name) + u32(len(dims)) + b"".join(struct.pack("<q", d) for d in dims) + u32(ttype) + u64(offset)


def gguf_bytes(kvs: list[bytes], tensors: list[bytes], data: int = 0, n_tensors: int | None = None,
               n_kv: int | None = None) -> bytes:
    head = b"GGUF" + u32(3) + u64(len(tensors) if n_tensors is None else n_tensors)
    head += u64(len(kvs) if n_kv is None else n_kv) + b"".join(kvs) + b"".join(tensors)
    return head + b"\0" * (-len(head) % 32 + data)


def model(*extra: bytes, block_count: bytes | None = None, arch: str = "llama") -> bytes:
    """A minimal valid model (one block, one 32-float tensor) with ``extra`` keys added."""
    kvs = [kv_str("general.architecture", arch), block_count or kv_u32(f"{arch}.block_count", 1),
           kv_u32(f"{arch}.context_length", 4096), *extra]
    return gguf_bytes(kvs, [tensor("blk.0.attn_norm.weight", (32,))], data=128)


def write(path: Path, head: bytes, size: int | None = None) -> Path:
    """``head`` then zeros up to ``size`` (a sparse file: the zeros take no disk)."""
    with open(path, "wb") as fh:
        fh.write(head)
        if size is not None and size > len(head):
            fh.truncate(size)
    return path


def nested_arrays(depth: int) -> bytes:
    inner = u32(T_U32) + u64(0)
    for _ in range(depth):
        inner = u32(T_ARRAY) + u64(1) + inner
    return kv("x.nested", T_ARRAY, inner)


# name -> (file name, contents, sparse size or None, what the message must say)
HOSTILE: dict[str, tuple[str, Callable[[], bytes], int | None, str]] = {
    # counts no file of this size could hold
    "2^22 tensors, sparse 100 MB": ("m.gguf", lambda: gguf_bytes([], [], n_tensors=1 << 22), 100 * MB,
                                    "not a usable GGUF: its header lists 4,194,304 tensors"),
    "100k zero tensors, sparse 100 MB": ("m.gguf", lambda: gguf_bytes([], [], n_tensors=100_000), 100 * MB,
                                         "appears twice"),
    "65536 zero keys, sparse 100 MB": ("m.gguf", lambda: gguf_bytes([], [], n_kv=1 << 16), 100 * MB, "empty key"),
    "2^40 tensors and keys, 10 KB": ("m.gguf", lambda: gguf_bytes([], [], n_tensors=1 << 40, n_kv=1 << 40), 10_000,
                                     "not a usable GGUF"),
    "100k tensors in 10 KB": ("m.gguf", lambda: gguf_bytes([], [], n_tensors=100_000), 10_000,
                              "more than its 10,000 bytes can hold"),
    "12M empty strings, sparse 100 MB": ("m.gguf", lambda: gguf_bytes(
        [kv("tokenizer.ggml.tokens", T_ARRAY, u32(T_STRING) + u64(12_000_000))], []), 100 * MB,
        "more than 2,097,152 strings"),
    "2^60-string array": ("m.gguf", lambda: gguf_bytes(
        [kv("tokenizer.ggml.tokens", T_ARRAY, u32(T_STRING) + u64(1 << 60))], []), 10_000, "does not fit"),
    "2^61-float array": ("m.gguf", lambda: gguf_bytes([kv("x.scores", T_ARRAY, u32(T_F32) + u64(1 << 61))], []),
                         10_000, "does not fit"),
    "5000 nested arrays": ("m.gguf", lambda: gguf_bytes([nested_arrays(5000)], []), None, "array of arrays"),
    "huge key name": ("m.gguf", lambda: gguf_bytes([u64(1 << 40)], [], n_kv=1), 10_000, "key name"),
    "duplicate key": ("m.gguf", lambda: model(kv_u32("llama.context_length", 8)), None,
                      "the key 'llama.context_length' appears twice"),
    # metadata of the wrong type or out of range
    "block_count 10^8": ("m.gguf", lambda: model(block_count=kv(
        "llama.block_count", 10, u64(10**8))), None, "block_count is 100,000,000 but the file holds 1 tensors"),
    "block_count 2 with 1 tensor": ("m.gguf", lambda: model(block_count=kv_u32("llama.block_count", 2)), None,
                                    "block_count is 2 but the file holds 1 tensors"),
    "block_count 'lots'": ("m.gguf", lambda: model(block_count=kv_str("llama.block_count", "lots")), None,
                           "llama.block_count is 'lots', not a whole number"),
    "block_count -3": ("m.gguf", lambda: model(block_count=kv("llama.block_count", T_I32, struct.pack("<i", -3))),
                       None, "block_count is -3"),
    "context_length 'big'": ("m.gguf", lambda: gguf_bytes(
        [kv_str("general.architecture", "llama"), kv_u32("llama.block_count", 1), kv_str("llama.context_length",
                                                                                          "big")],
        [tensor("blk.0.attn_norm.weight", (32,))], 128), None, "llama.context_length is 'big', not a whole number"),
    "head_count per layer of text": ("m.gguf", lambda: model(kv_array(
        "llama.attention.head_count", T_STRING, [gstr("a"), gstr("b")])), None, "not whole numbers"),
    "feed_forward_length 1.5": ("m.gguf", lambda: model(kv("llama.feed_forward_length", T_F32,
                                                           struct.pack("<f", 1.5))), None, "not a whole number"),
    "file_type array": ("m.gguf", lambda: model(kv_array("general.file_type", T_U32, [u32(1), u32(2)])), None,
                        "general.file_type is [1, 2], not a whole number"),
    "architecture a number": ("m.gguf", lambda: gguf_bytes([kv_u32("general.architecture", 7)],
                                                           [tensor("w", (32,))], 128), None, "not text"),
    "alignment 'abc'": ("m.gguf", lambda: model(kv_str("general.alignment", "abc")), None,
                        "general.alignment is not a 32-bit"),
    "alignment NaN": ("m.gguf", lambda: model(kv("general.alignment", T_F32, struct.pack("<f", float("nan")))),
                      None, "general.alignment is not a 32-bit"),
    "alignment 3": ("m.gguf", lambda: model(kv_u32("general.alignment", 3)), None, "not a power of two"),
    "alignment 0": ("m.gguf", lambda: model(kv_u32("general.alignment", 0)), None, "not a power of two"),
    "split.count 'x'": ("m.gguf", lambda: model(kv_str("split.count", "x")), None, "split.count is 'x'"),
    "split.count 0": ("m.gguf", lambda: model(kv("split.count", 2, struct.pack("<H", 0))), None, "split.count is 0"),
    "split name of 00000": ("m-00001-of-00000.gguf", lambda: model(), None, "part 1 of 0, which cannot be"),
    "split name part 3 of 2": ("m-00003-of-00002.gguf", lambda: model(), None, "part 3 of 2"),
    "split name against header": ("m-00001-of-00003.gguf", lambda: model(
        kv("split.no", 2, struct.pack("<H", 0)), kv("split.count", 2, struct.pack("<H", 2)),
        kv("split.tensors.count", T_I32, struct.pack("<i", 1))), None, "header says part 1 of 2"),
    # tensor tables llama.cpp refuses
    "tensor name of 100 bytes": ("m.gguf", lambda: gguf_bytes([], [tensor("n" * 100, (32,))], 128), None,
                                 "tensor name of 100 bytes"),
    "5 dimensions": ("m.gguf", lambda: gguf_bytes([], [tensor("w", (1, 1, 1, 1, 32))], 128), None,
                     "5 dimensions"),
    "negative dimension": ("m.gguf", lambda: gguf_bytes([], [tensor("w", (32, -1))], 128), None,
                           "negative dimension"),
    "2^64 elements": ("m.gguf", lambda: gguf_bytes([], [tensor("w", (1 << 62, 1 << 62))], 128), None,
                      "more elements than"),
    "rows not whole blocks": ("m.gguf", lambda: gguf_bytes([], [tensor("w", (33,), Q4_0)], 128), None,
                              "not whole 32-element blocks"),
    "overlapping tensors": ("m.gguf", lambda: gguf_bytes([], [tensor("a", (32,)), tensor("b", (32,))], 256), None,
                            "tensor b starts at byte 0 of the data where 128 was expected"),
    "tensor beyond the file": ("m.gguf", lambda: gguf_bytes([], [tensor("w", (1 << 31, 1 << 20))], 128), None,
                               "truncated: it holds"),
}


def make(tmp_path: Path, case: str) -> Path:
    fname, contents, size, _ = HOSTILE[case]
    d = tmp_path / case.replace(" ", "_").replace("'", "").replace("^", "")
    d.mkdir()
    return write(d / fname, contents(), size)


def test_the_minimal_model_is_valid(tmp_path: Path) -> None:
    info = read_gguf(write(tmp_path / "ok.gguf", model()))
    assert (info.n_layers, info.context_length, len(info.tensors)) == (1, 4096, 1)
    split = read_gguf(write(tmp_path / "ok-00001-of-00002.gguf", model(
        kv("split.no", 2, struct.pack("<H", 0)), kv("split.count", 2, struct.pack("<H", 2)),
        kv("split.tensors.count", T_I32, struct.pack("<i", 9)), block_count=kv_u32("llama.block_count", 4))))
    assert split.split_count == 2 and split.n_layers == 4  # the other blocks are in the second part


@pytest.mark.parametrize("case", list(HOSTILE))
def test_hostile_header_is_one_clear_line(tmp_path: Path, case: str) -> None:
    path = make(tmp_path, case)
    with pytest.raises(InvalidModelFile) as err:
        read_gguf(path)
    msg = str(err.value)
    assert HOSTILE[case][3] in msg, msg
    assert msg.startswith(path.name) and "\n" not in msg and len(msg) < 300


# run in a fresh interpreter: tracemalloc's peak per file, and the process's peak RSS
_MEASURE = """
import json, resource, sys, time, tracemalloc
from localchat.core.models.gguf_info import read_gguf
from localchat.errors import InvalidModelFile
out = {}
for path in sys.argv[1:]:
    tracemalloc.start()
    t0 = time.perf_counter()
    try:
        read_gguf(path)
        verdict = "read"
    except InvalidModelFile as exc:
        verdict = str(exc)
    out[path] = {"verdict": verdict, "peak": tracemalloc.get_traced_memory()[1], "s": time.perf_counter() - t0}
    tracemalloc.stop()
out["maxrss_kb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps(out))
"""


def many_tensors(n: int) -> bytes:
    """A well-formed model at the tensor cap: ``n`` one-block F32 tensors, each right after the previous one."""
    entries = [tensor(f"blk.{i // 8}.t{i % 8}", (32,), F32, 128 * i) for i in range(n)]
    return gguf_bytes([kv_str("general.architecture", "llama"), kv_u32("llama.block_count", 512)], entries,
                      data=128 * n)


def test_hostile_files_cost_little_memory(tmp_path: Path) -> None:
    paths = [make(tmp_path, case) for case in HOSTILE]
    biggest = write(tmp_path / "at-the-cap.gguf", many_tensors(1 << 17))  # real data: 20 MB, read in full
    r = subprocess.run([sys.executable, "-c", _MEASURE, *map(str, paths), str(biggest)], capture_output=True,
                       text=True, timeout=300, env=dict(os.environ))
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    for p in paths:
        assert out[str(p)]["verdict"] != "read", p
        assert out[str(p)]["peak"] < 200 * MB, (p, out[str(p)])
    assert out[str(biggest)]["verdict"] == "read" and out[str(biggest)]["peak"] < 200 * MB, out[str(biggest)]
    # the process's max RSS (out["maxrss_kb"]) is not asserted: tracemalloc's own bookkeeping doubles it


@pytest.mark.parametrize("argv, case", [
    (["models", "info"], "block_count 'lots'"),
    (["models", "info"], "2^22 tensors, sparse 100 MB"),
    (["models", "info"], "5000 nested arrays"),
    (["models", "info"], "split.count 'x'"),
    (["models", "info"], "alignment NaN"),
    (["models", "info"], "file_type array"),
    (["plan"], "block_count 10^8"),
    (["plan"], "context_length 'big'"),
    (["models", "import"], "split name of 00000"),
])
def test_cli_says_one_line_and_no_traceback(tmp_path: Path, isolated_home: Path, argv: list[str], case: str) -> None:
    path = make(tmp_path, case)
    r = subprocess.run([sys.executable, "-m", "localchat", *argv, str(path)], capture_output=True, text=True,
                       timeout=120, env=dict(os.environ, LOCALCHAT_HOME=str(isolated_home)))
    assert r.returncode == 1 and r.stdout == "", (r.stdout, r.stderr)
    assert "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("localchat: error: ") and HOSTILE[case][3] in lines[0], r.stderr
