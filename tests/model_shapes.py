"""Shape-exact GGUF files for planner tests: the real tensor table, sparse data (nothing big is written).

``write_r1_qwen14b_q4km(path)`` reproduces DeepSeek-R1-Distill-Qwen-14B at Q4_K_M (Qwen2.5-14B: 48 blocks,
5120 wide, 40 heads / 8 KV heads of 128, FFN 13824, vocab 152064) with llama.cpp's Q4_K_M type choices
(Q6_K for attn_v / ffn_down in the "more bits" layers and for the output). ``vocab`` tokens and a merge list are
written so llama.cpp itself can load the file through mmap.
"""

from __future__ import annotations

from pathlib import Path

import gguf
import numpy as np

Q = gguf.GGMLQuantizationType


def _nbytes(shape: tuple[int, ...], qtype: gguf.GGMLQuantizationType) -> int:
    block, size = gguf.GGML_QUANT_SIZES[qtype]
    n = int(np.prod(shape))
    return n // block * size


def _more_bits(i: int, n: int) -> bool:
    return i < n // 8 or i >= 7 * n // 8 or (i - n // 8) % 3 == 2


def write_qwen2_shape(path: Path, *, n_layers: int, n_embd: int, n_heads: int, n_kv: int, n_ff: int, n_vocab: int,
                      n_ctx_train: int, name: str, with_tokenizer: bool = True, n_experts: int = 0,
                      head_dims: bool = True, arch: str = "qwen2") -> Path:
    head = n_embd // n_heads
    w = gguf.GGUFWriter(str(path), arch)
    w.add_name(name)
    w.add_block_count(n_layers)
    w.add_vocab_size(n_vocab)
    w.add_context_length(n_ctx_train)
    w.add_embedding_length(n_embd)
    w.add_feed_forward_length(n_ff)
    w.add_head_count(n_heads)
    w.add_head_count_kv(n_kv)
    if head_dims:
        w.add_key_length(head)
        w.add_value_length(head)
    if n_experts:
        w.add_expert_count(n_experts)
        w.add_expert_used_count(2)
    w.add_rope_freq_base(1_000_000.0)
    w.add_layer_norm_rms_eps(1e-6)
    w.add_file_type(gguf.LlamaFileType.MOSTLY_Q4_K_M)
    if with_tokenizer:
        w.add_tokenizer_model("gpt2")
        w.add_tokenizer_pre("qwen2")
        w.add_token_list([f"t{i}" for i in range(n_vocab)])
        w.add_token_types([1] * n_vocab)
        w.add_token_merges(["t 1", "t 2"])
        w.add_eos_token_id(n_vocab - 1)
        w.add_bos_token_id(n_vocab - 2)
    tensors: list[tuple[str, tuple[int, ...], gguf.GGMLQuantizationType]] = [
        ("token_embd.weight", (n_vocab, n_embd), Q.Q4_K)]
    kv = n_kv * head
    for i in range(n_layers):
        more = _more_bits(i, n_layers)
        tensors += [
            (f"blk.{i}.attn_norm.weight", (n_embd,), Q.F32),
            (f"blk.{i}.attn_q.weight", (n_embd, n_embd), Q.Q4_K),
            (f"blk.{i}.attn_q.bias", (n_embd,), Q.F32),
            (f"blk.{i}.attn_k.weight", (kv, n_embd), Q.Q4_K),
            (f"blk.{i}.attn_k.bias", (kv,), Q.F32),
            (f"blk.{i}.attn_v.weight", (kv, n_embd), Q.Q6_K if more else Q.Q4_K),
            (f"blk.{i}.attn_v.bias", (kv,), Q.F32),
            (f"blk.{i}.attn_output.weight", (n_embd, n_embd), Q.Q4_K),
            (f"blk.{i}.ffn_norm.weight", (n_embd,), Q.F32),
            (f"blk.{i}.ffn_gate.weight", (n_ff, n_embd), Q.Q4_K),
            (f"blk.{i}.ffn_up.weight", (n_ff, n_embd), Q.Q4_K),
            (f"blk.{i}.ffn_down.weight", (n_embd, n_ff), Q.Q6_K if more else Q.Q4_K),
        ]
    tensors += [("output_norm.weight", (n_embd,), Q.F32), ("output.weight", (n_vocab, n_embd), Q.Q6_K)]
    total = 0
    for tname, shape, qtype in tensors:
        nb = _nbytes(shape, qtype)
        # numpy order (rows, cols); quantised tensors are described by their byte shape (rows, bytes per row)
        if qtype == Q.F32:
            w.add_tensor_info(tname, shape, np.dtype(np.float32), nb, raw_dtype=qtype)
        else:
            block, size = gguf.GGML_QUANT_SIZES[qtype]
            byte_shape = (*shape[:-1], shape[-1] // block * size)
            w.add_tensor_info(tname, byte_shape, np.dtype(np.uint8), nb, raw_dtype=qtype)
        total += nb + (-nb % 32)
    w.write_header_to_file(path)
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    w.close()
    size = path.stat().st_size
    data_start = size + (-size % 32)
    with open(path, "r+b") as fh:
        fh.truncate(data_start + total)  # sparse: the data reads as zeros and takes no disk
    return path


def write_r1_qwen14b_q4km(path: Path, with_tokenizer: bool = True) -> Path:
    return write_qwen2_shape(path, n_layers=48, n_embd=5120, n_heads=40, n_kv=8, n_ff=13824, n_vocab=152064,
                             n_ctx_train=131072, name="DeepSeek-R1-Distill-Qwen-14B", with_tokenizer=with_tokenizer)


def split_gguf(src: Path, out_dir: Path, parts: int = 3) -> list[Path]:
    """Re-write a real GGUF as ``parts`` split files (llama.cpp's ``-0000N-of-0000M.gguf`` format)."""
    r = gguf.GGUFReader(str(src))
    arch = str(r.fields["general.architecture"].contents())
    stem = src.name.removesuffix(".gguf")
    per = -(-len(r.tensors) // parts)
    w = gguf.GGUFWriter(str(out_dir / f"{stem}.gguf"), arch, split_max_tensors=per)
    for key, f in r.fields.items():
        if key.startswith("GGUF.") or key.startswith("split.") or key == "general.architecture":
            continue
        vtype = f.types[0]
        if vtype == gguf.GGUFValueType.ARRAY:
            w.add_key_value(key, f.contents(), vtype, sub_type=f.types[-1])
        else:
            w.add_key_value(key, f.contents(), vtype)
    for t in r.tensors:
        w.add_tensor(t.name, t.data, raw_dtype=t.tensor_type)  # data is already in its byte shape
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return sorted(out_dir.glob(f"{stem}-*-of-*.gguf"))


def write_qwen3moe_shape(path: Path, *, n_layers: int = 4, n_embd: int = 2048, n_heads: int = 32, n_kv: int = 4,
                         head_dim: int = 128, n_experts: int = 128, n_used: int = 8, n_ff_exp: int = 768,
                         n_vocab: int = 151936, name: str = "Qwen3-30B-A3B shape") -> Path:
    """A mixture-of-experts shape (Qwen3-30B-A3B's layer, fewer layers) that llama.cpp loads: Q4_K experts."""
    w = gguf.GGUFWriter(str(path), "qwen3moe")
    w.add_name(name)
    w.add_block_count(n_layers)
    w.add_context_length(40960)
    w.add_embedding_length(n_embd)
    w.add_feed_forward_length(6144)
    w.add_expert_feed_forward_length(n_ff_exp)
    w.add_head_count(n_heads)
    w.add_head_count_kv(n_kv)
    w.add_key_length(head_dim)
    w.add_value_length(head_dim)
    w.add_expert_count(n_experts)
    w.add_expert_used_count(n_used)
    w.add_rope_freq_base(1_000_000.0)
    w.add_layer_norm_rms_eps(1e-6)
    w.add_file_type(gguf.LlamaFileType.MOSTLY_Q4_K_M)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("qwen2")
    w.add_token_list([f"t{i}" for i in range(n_vocab)])
    w.add_token_types([1] * n_vocab)
    w.add_token_merges(["t 1", "t 2"])
    w.add_eos_token_id(n_vocab - 1)
    w.add_bos_token_id(n_vocab - 2)
    q, kv = n_heads * head_dim, n_kv * head_dim
    tensors: list[tuple[str, tuple[int, ...], gguf.GGMLQuantizationType]] = [
        ("token_embd.weight", (n_vocab, n_embd), Q.Q4_K)]
    for i in range(n_layers):
        tensors += [
            (f"blk.{i}.attn_norm.weight", (n_embd,), Q.F32),
            (f"blk.{i}.attn_q.weight", (q, n_embd), Q.Q4_K),
            (f"blk.{i}.attn_k.weight", (kv, n_embd), Q.Q4_K),
            (f"blk.{i}.attn_v.weight", (kv, n_embd), Q.Q6_K),
            (f"blk.{i}.attn_q_norm.weight", (head_dim,), Q.F32),
            (f"blk.{i}.attn_k_norm.weight", (head_dim,), Q.F32),
            (f"blk.{i}.attn_output.weight", (n_embd, q), Q.Q4_K),
            (f"blk.{i}.ffn_norm.weight", (n_embd,), Q.F32),
            (f"blk.{i}.ffn_gate_inp.weight", (n_experts, n_embd), Q.F32),
            (f"blk.{i}.ffn_gate_exps.weight", (n_experts, n_ff_exp, n_embd), Q.Q4_K),
            (f"blk.{i}.ffn_up_exps.weight", (n_experts, n_ff_exp, n_embd), Q.Q4_K),
            (f"blk.{i}.ffn_down_exps.weight", (n_experts, n_embd, n_ff_exp), Q.Q6_K),
        ]
    tensors += [("output_norm.weight", (n_embd,), Q.F32), ("output.weight", (n_vocab, n_embd), Q.Q6_K)]
    return _write_sparse(w, path, tensors)


def _write_sparse(w: gguf.GGUFWriter, path: Path,
                  tensors: list[tuple[str, tuple[int, ...], gguf.GGMLQuantizationType]]) -> Path:
    total = 0
    for tname, shape, qtype in tensors:
        nb = _nbytes(shape, qtype)
        if qtype == Q.F32:
            w.add_tensor_info(tname, shape, np.dtype(np.float32), nb, raw_dtype=qtype)
        else:
            block, size = gguf.GGML_QUANT_SIZES[qtype]
            w.add_tensor_info(tname, (*shape[:-1], shape[-1] // block * size), np.dtype(np.uint8), nb,
                              raw_dtype=qtype)
        total += nb + (-nb % 32)
    w.write_header_to_file(path)
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    w.close()
    size = path.stat().st_size
    with open(path, "r+b") as fh:
        fh.truncate(size + (-size % 32) + total)  # sparse: the data reads as zeros and takes no disk
    return path
