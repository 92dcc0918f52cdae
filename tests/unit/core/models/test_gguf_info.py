"""GGUF header reading on the real starter model, generated shapes and broken files."""

from __future__ import annotations

import os
from pathlib import Path

import gguf
import numpy as np
import pytest
from model_shapes import write_qwen2_shape

from localchat.core.models.gguf_info import read_gguf
from localchat.errors import InvalidModelFile


def test_starter_model_metadata(starter_model: Path) -> None:
    info = read_gguf(starter_model)
    assert info.architecture == "llama"
    assert info.n_layers == 30 and info.context_length == 8192
    assert (info.n_heads, info.n_kv_heads, info.embedding_length) == (9, 3, 576)
    assert (info.head_dim_k, info.head_dim_v) == (64, 64)
    assert any("derived 64" in a for a in info.assumptions)
    assert info.file_type == "MOSTLY_Q4_1" and info.quantisation == "Q4_1"
    assert 130e6 < info.n_params < 140e6
    assert info.vocab_size == 49152
    assert info.chat_template and "<|im_start|>" in info.chat_template
    assert len(info.tensors) == 272
    # the tensor table accounts for the file: header + data, nothing missing
    assert 0 < info.file_size - info.tensor_bytes < 2_000_000
    emb = next(t for t in info.tensors if t.name == "token_embd.weight")
    assert emb.type_name == "Q8_0" and emb.shape == (576, 49152) and emb.n_bytes == 576 * 49152 // 32 * 34


def write_model(path: Path, *, head_dims: bool, arch: str = "qwen2") -> None:
    w = gguf.GGUFWriter(str(path), arch)
    w.add_block_count(2)
    w.add_context_length(4096)
    w.add_embedding_length(64)
    w.add_head_count(8)
    if head_dims:
        w.add_key_length(16)
        w.add_value_length(16)
    w.add_token_list([f"t{i}" for i in range(300)])
    for b in range(2):
        w.add_tensor(f"blk.{b}.attn_q.weight", np.zeros((64, 64), dtype=np.float16))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def test_generated_model_with_and_without_head_dims(tmp_path: Path) -> None:
    write_model(tmp_path / "a.gguf", head_dims=True)
    a = read_gguf(tmp_path / "a.gguf")
    assert (a.head_dim_k, a.n_kv_heads, a.architecture) == (16, 8, "qwen2")
    assert any("KV head count" in s for s in a.assumptions)  # no head_count_kv written
    write_model(tmp_path / "b.gguf", head_dims=False)
    b = read_gguf(tmp_path / "b.gguf")
    assert b.head_dim_k == 8 and any("derived 8" in s for s in b.assumptions)
    assert b.vocab_size == 300 and b.tensors[0].n_bytes == 64 * 64 * 2


def test_agrees_with_the_gguf_package_reader(starter_model: Path) -> None:
    """Our streaming reader and gguf.GGUFReader see the same tensor table and scalar metadata."""
    ours = read_gguf(starter_model)
    ref = gguf.GGUFReader(str(starter_model))
    assert len(ours.tensors) == len(ref.tensors)
    for t, r in zip(ours.tensors, ref.tensors, strict=True):
        assert (t.name, t.type_name, t.shape, t.n_bytes) == (r.name, r.tensor_type.name, tuple(int(d) for d in r.shape),
                                                             int(r.n_bytes))
        assert t.offset + ref.data_offset == r.data_offset
    for key in ("general.architecture", "llama.block_count", "llama.attention.head_count", "general.file_type"):
        assert ours.metadata[key] == ref.fields[key].contents()
    assert ours.tensor_types == {"Q4_1": ours.tensor_types["Q4_1"], "Q8_0": ours.tensor_types["Q8_0"],
                                 "F32": ours.tensor_types["F32"]}
    assert list(ours.tensor_types) == ["Q4_1", "Q8_0", "F32"]  # largest first
    assert not ours.is_moe and ours.n_experts is None


def test_r1_distill_shape_moe_and_missing_head_dims(tmp_path: Path) -> None:
    path = write_qwen2_shape(tmp_path / "moe.gguf", n_layers=4, n_embd=512, n_heads=8, n_kv=2, n_ff=1024, n_vocab=1000,
                             n_ctx_train=32768, name="moe", with_tokenizer=True, head_dims=False, n_experts=8)
    info = read_gguf(path)
    assert (info.n_layers, info.context_length, info.n_heads, info.n_kv_heads) == (4, 32768, 8, 2)
    assert (info.head_dim_k, info.head_dim_v) == (64, 64) and any("derived 64" in a for a in info.assumptions)
    assert (info.n_experts, info.n_experts_used, info.is_moe) == (8, 2, True)
    assert info.file_type == "MOSTLY_Q4_K_M" and set(info.tensor_types) == {"Q4_K", "Q6_K", "F32"}
    assert info.vocab_size == 1000 and "tokenizer.ggml.tokens" not in info.metadata  # big arrays are skipped


@pytest.mark.parametrize("kind", ["empty", "random", "text", "truncated_header", "truncated_data", "version",
                                  "old_version", "big_endian", "magic_only", "bad_tensor_type"])
def test_invalid_files(tmp_path: Path, starter_model: Path, kind: str) -> None:
    bad = tmp_path / "model.gguf"
    data = starter_model.read_bytes()[:4_000_000] if kind.startswith("truncated") else b""
    if kind == "random":
        bad.write_bytes(os.urandom(10_000))
    elif kind == "text":
        bad.write_text("just some notes, renamed to .gguf\n" * 10)
    elif kind == "truncated_header":
        bad.write_bytes(data[:50_000])  # inside the vocabulary array
    elif kind == "truncated_data":
        bad.write_bytes(data)
    elif kind == "version":
        bad.write_bytes(b"GGUF" + (9).to_bytes(4, "little") + b"\0" * 64)
    elif kind == "old_version":
        bad.write_bytes(b"GGUF" + (1).to_bytes(4, "little") + b"\0" * 64)
    elif kind == "big_endian":
        bad.write_bytes(b"GGUF" + (3).to_bytes(4, "big") + b"\0" * 64)
    elif kind == "magic_only":
        bad.write_bytes(b"GGUF")
    elif kind == "bad_tensor_type":
        # one tensor whose type id (200) no ggml version has
        def u(n: int, width: int) -> bytes:
            return n.to_bytes(width, "little")

        header = b"GGUF" + u(3, 4) + u(1, 8) + u(0, 8)  # version 3, one tensor, no keys
        tensor = u(1, 8) + b"w" + u(1, 4) + u(32, 8) + u(200, 4) + u(0, 8)  # name, 1 dim of 32, type 200, offset 0
        bad.write_bytes(header + tensor + b"\0" * 64)
    else:
        bad.write_bytes(b"")
    expected = {"empty": "empty", "random": "not a GGUF model", "text": "looks like text",
                "truncated_header": "truncated", "truncated_data": "truncated", "version": "version 9",
                "old_version": "version 1", "big_endian": "big-endian", "magic_only": "truncated",
                "bad_tensor_type": "type \\(200\\)"}[kind]
    with pytest.raises(InvalidModelFile, match=expected):
        read_gguf(bad)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InvalidModelFile, match="cannot read"):
        read_gguf(tmp_path / "nope.gguf")
