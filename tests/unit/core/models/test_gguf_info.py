"""GGUF header reading on the real starter model, generated shapes and broken files."""

from __future__ import annotations

import os
from pathlib import Path

import gguf
import numpy as np
import pytest

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


@pytest.mark.parametrize("kind", ["empty", "random", "text", "truncated_header", "truncated_data", "version"])
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
    else:
        bad.write_bytes(b"")
    expected = {"empty": "empty", "random": "not a GGUF model", "text": "looks like text",
                "truncated_header": "truncated", "truncated_data": "truncated", "version": "version 9"}[kind]
    with pytest.raises(InvalidModelFile, match=expected):
        read_gguf(bad)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InvalidModelFile, match="cannot read"):
        read_gguf(tmp_path / "nope.gguf")
