"""GGUF metadata without loading weights.

API::

    from localchat.core.models.gguf_info import read_gguf
    info = read_gguf("DeepSeek-R1-Distill-Qwen-14B-Q4_K_M.gguf")   # -> GGUFInfo (frozen dataclass)
    info.architecture, info.name, info.n_params        # "qwen2", "DeepSeek R1 Distill Qwen 14B", 14_770_033_664
    info.file_type, info.quantisation                  # "MOSTLY_Q4_K_M", "Q4_K" (the type holding most weight bytes)
    info.tensor_types                                  # {"Q4_K": bytes, "Q6_K": bytes, "F32": bytes}, largest first
    info.context_length, info.n_layers                 # trained context, block_count
    info.n_heads, info.n_kv_heads, info.head_dim_k, info.head_dim_v
    info.n_experts, info.n_experts_used                # None for dense models
    info.chat_template, info.vocab_size
    info.tensors                                       # TensorInfo(name, type_name, shape, n_bytes, offset), ...
    info.assumptions                                   # sentences for values derived because a key was missing
    info.metadata                                      # every key/value except the big arrays (vocabulary)

Shapes are in GGUF order (``ne0`` first: ``token_embd.weight`` is ``(n_embd, n_vocab)``); ``offset`` is relative to
the start of the tensor data. When ``{arch}.attention.key_length`` / ``value_length`` are missing (the R1 Qwen
distills) the head dimension is derived as ``embedding_length / head_count`` and said so in ``assumptions``; a
missing KV head count is taken as the head count.

``read_gguf`` parses the header (key/value metadata and the tensor table) with a streaming reader that skips the big
arrays (a 150k-token vocabulary) instead of materialising them: a few milliseconds where ``gguf.GGUFReader`` takes
seconds. The ``gguf`` package supplies the type tables (quantisation block sizes, file types), and the tests check
the result against ``gguf.GGUFReader`` tensor by tensor. Anything that is not a readable GGUF (missing, empty,
random bytes, text, truncated header or data, unknown or big-endian version, unknown tensor type) raises
:class:`~localchat.errors.InvalidModelFile` with a sentence a user can act on.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import gguf

from localchat.errors import InvalidModelFile

SUPPORTED_VERSIONS = (2, 3)
_MAX_STRING = 64 * 1024 * 1024  # a longer "string" means a corrupt header, not a model
_MAX_COUNT = 1 << 28

# GGUFValueType id -> struct format for scalars
_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9
# small arrays (per-layer head counts, languages) are kept; big ones (the vocabulary, merges, scores) are skipped
_KEEP_ARRAY_MAX = 64
_KEEP_NUMERIC_ARRAY_MAX = 1024


@dataclass(frozen=True)
class TensorInfo:
    name: str
    type_name: str  # "Q4_K", "F16", ...
    shape: tuple[int, ...]
    n_bytes: int
    offset: int


@dataclass(frozen=True)
class GGUFInfo:
    """What a GGUF header says about a model."""

    path: str
    file_size: int
    version: int
    architecture: str
    name: str
    n_params: int
    file_type: str | None  # "MOSTLY_Q4_K_M", ...
    quantisation: str  # the dominant weight type, e.g. "Q4_K"
    context_length: int | None
    n_layers: int | None
    embedding_length: int | None
    n_heads: int | None
    n_kv_heads: int | None
    head_dim_k: int | None
    head_dim_v: int | None
    n_experts: int | None
    n_experts_used: int | None
    chat_template: str | None
    vocab_size: int | None
    tensors: tuple[TensorInfo, ...] = field(repr=False)
    metadata: dict[str, Any] = field(repr=False)
    assumptions: tuple[str, ...] = ()  # values derived because a key was missing

    @property
    def tensor_bytes(self) -> int:
        return sum(t.n_bytes for t in self.tensors)

    @property
    def tensor_types(self) -> dict[str, int]:
        """Bytes per tensor type, largest first: the per-tensor quantisation mix (Q4_K_M is Q4_K + Q6_K + F32)."""
        out: dict[str, int] = {}
        for t in self.tensors:
            out[t.type_name] = out.get(t.type_name, 0) + t.n_bytes
        return dict(sorted(out.items(), key=lambda kv: -kv[1]))

    @property
    def is_moe(self) -> bool:
        return bool(self.n_experts and self.n_experts > 1)

    @property
    def split_count(self) -> int:
        return int(self.metadata.get("split.count", 1) or 1)


class _Reader:
    def __init__(self, fh: BinaryIO, size: int, name: str) -> None:
        self.fh, self.size, self.name = fh, size, name

    def read(self, n: int) -> bytes:
        b = self.fh.read(n)
        if len(b) != n:
            raise InvalidModelFile(f"{self.name} is truncated: its GGUF header ends early "
                                   f"(a partial download?). Download or copy it again.")
        return b

    def scalar(self, vtype: int) -> Any:
        fmt = _SCALARS.get(vtype)
        if fmt is None:
            raise InvalidModelFile(f"{self.name} has an unknown GGUF value type {vtype}: corrupt header")
        return struct.unpack(fmt, self.read(struct.calcsize(fmt)))[0]

    def u64(self) -> int:
        return int(struct.unpack("<Q", self.read(8))[0])

    def string(self) -> str:
        n = self.u64()
        if n > _MAX_STRING:
            raise InvalidModelFile(f"{self.name} has a corrupt GGUF header (a {n}-byte string)")
        return self.read(n).decode("utf-8", errors="replace")

    def skip_string(self) -> None:
        n = self.u64()
        if n > _MAX_STRING:
            raise InvalidModelFile(f"{self.name} has a corrupt GGUF header (a {n}-byte string)")
        self.fh.seek(n, os.SEEK_CUR)

    def value(self, vtype: int) -> Any:
        if vtype == _STRING:
            return self.string()
        if vtype == _ARRAY:
            etype = self.scalar(4)
            count = self.u64()
            if count > _MAX_COUNT:
                raise InvalidModelFile(f"{self.name} has a corrupt GGUF header (an array of {count} items)")
            if count <= _KEEP_ARRAY_MAX or (etype in _SCALARS and count <= _KEEP_NUMERIC_ARRAY_MAX):
                return [self.value(etype) for _ in range(count)]
            if etype == _STRING:
                for _ in range(count):
                    self.skip_string()
            elif etype in _SCALARS:
                self.fh.seek(count * struct.calcsize(_SCALARS[etype]), os.SEEK_CUR)
            else:
                for _ in range(count):
                    self.value(etype)
            if self.fh.tell() > self.size:
                raise InvalidModelFile(f"{self.name} is truncated inside its GGUF header")
            return _SkippedArray(count)
        return self.scalar(vtype)


@dataclass(frozen=True)
class _SkippedArray:
    length: int


def read_gguf(path: str | os.PathLike[str]) -> GGUFInfo:
    """Parse the header of a GGUF file.

    Raises:
        InvalidModelFile: not a readable GGUF model; the message says why.
    """
    p = Path(path)
    name = p.name
    try:
        size = p.stat().st_size
        fh = open(p, "rb")  # noqa: SIM115 - closed below
    except OSError as exc:
        raise InvalidModelFile(f"cannot read {name}: {exc.strerror or exc}") from exc
    with fh:
        if size == 0:
            raise InvalidModelFile(f"{name} is empty (0 bytes): not a GGUF model")
        r = _Reader(fh, size, name)
        magic = fh.read(4)
        if magic != b"GGUF":
            hint = " It looks like text." if _looks_like_text(magic + fh.read(60)) else ""
            raise InvalidModelFile(f"{name} is not a GGUF model (it does not start with the GGUF signature).{hint}")
        version = r.scalar(4)
        if version not in SUPPORTED_VERSIONS and int.from_bytes(version.to_bytes(4, "little"), "big") in (2, 3):
            raise InvalidModelFile(f"{name} is a big-endian GGUF (made for s390x-type machines); localchat reads "
                                   f"little-endian GGUF files. Download the ordinary build of this model.")
        if version not in SUPPORTED_VERSIONS:
            raise InvalidModelFile(f"{name} uses GGUF version {version}; localchat reads versions 2 and 3. "
                                   f"Convert it with a current llama.cpp, or download a newer file.")
        n_tensors, n_kv = r.u64(), r.u64()
        if n_tensors > _MAX_COUNT or n_kv > _MAX_COUNT:
            raise InvalidModelFile(f"{name} has a corrupt GGUF header ({n_tensors} tensors, {n_kv} keys)")
        meta: dict[str, Any] = {}
        for _ in range(n_kv):
            key = r.string()
            meta[key] = r.value(r.scalar(4))
        raw_tensors = []
        for _ in range(n_tensors):
            tname = r.string()
            n_dims = r.scalar(4)
            if n_dims > 8:
                raise InvalidModelFile(f"{name} has a corrupt tensor table ({n_dims} dimensions)")
            shape = tuple(r.u64() for _ in range(n_dims))
            ttype = r.scalar(4)
            offset = r.u64()
            raw_tensors.append((tname, shape, ttype, offset))
        header_end = fh.tell()
    alignment = int(meta.get("general.alignment", 32) or 32)
    data_start = (header_end + alignment - 1) // alignment * alignment
    tensors = tuple(_tensor(name, t) for t in raw_tensors)
    data_end = max((data_start + t.offset + t.n_bytes for t in tensors), default=data_start)
    if data_end > size:
        raise InvalidModelFile(f"{name} is truncated: it holds {size:,} bytes but its tensors need {data_end:,}. "
                               f"Download or copy it again.")
    return _info(p, size, version, meta, tensors)


def _tensor(file_name: str, raw: tuple[str, tuple[int, ...], int, int]) -> TensorInfo:
    tname, shape, ttype, offset = raw
    try:
        qtype = gguf.GGMLQuantizationType(ttype)
        block, type_size = gguf.GGML_QUANT_SIZES[qtype]
    except (ValueError, KeyError) as exc:
        raise InvalidModelFile(f"{file_name}: tensor {tname} has a type ({ttype}) this version does not know") from exc
    n = 1
    for d in shape:
        n *= d
    return TensorInfo(tname, qtype.name, shape, n // block * type_size, offset)


def _info(p: Path, size: int, version: int, meta: dict[str, Any], tensors: tuple[TensorInfo, ...]) -> GGUFInfo:
    arch = str(meta.get("general.architecture", "unknown"))
    assumptions: list[str] = []

    def key(suffix: str) -> Any:
        v = meta.get(f"{arch}.{suffix}")
        return None if isinstance(v, _SkippedArray) else v

    def as_int(v: Any) -> int | None:
        if isinstance(v, list):  # per-layer values (e.g. OpenELM, some hybrids): take the largest
            v = max(v) if v else None
        return int(v) if v is not None else None

    n_layers = as_int(key("block_count"))
    n_embd = as_int(key("embedding_length"))
    n_heads = as_int(key("attention.head_count"))
    n_kv = as_int(key("attention.head_count_kv"))
    if n_kv is None and n_heads is not None:
        n_kv = n_heads
        assumptions.append("no KV head count in the file: assumed equal to the attention head count")
    k_dim = as_int(key("attention.key_length"))
    v_dim = as_int(key("attention.value_length"))
    if (k_dim is None or v_dim is None) and n_embd and n_heads:
        derived = n_embd // n_heads
        k_dim = k_dim or derived
        v_dim = v_dim or derived
        assumptions.append(f"no head dimension in the file: derived {derived} = embedding {n_embd} / heads {n_heads}")
    weights = [t for t in tensors if len(t.shape) >= 2]
    by_type: dict[str, int] = {}
    for t in weights:
        by_type[t.type_name] = by_type.get(t.type_name, 0) + t.n_bytes
    quant = max(by_type, key=lambda k: by_type[k]) if by_type else "unknown"
    ft = meta.get("general.file_type")
    try:
        file_type = gguf.LlamaFileType(int(ft)).name if ft is not None else None
    except ValueError:
        file_type = f"type {ft}"
    n_params = 0
    for t in tensors:
        n = 1
        for d in t.shape:
            n *= d
        n_params += n
    tokens = meta.get("tokenizer.ggml.tokens")
    vocab = tokens.length if isinstance(tokens, _SkippedArray) else (len(tokens) if isinstance(tokens, list) else None)
    template = meta.get("tokenizer.chat_template")
    return GGUFInfo(
        path=str(p), file_size=size, version=version, architecture=arch,
        name=str(meta.get("general.name") or p.stem), n_params=n_params, file_type=file_type, quantisation=quant,
        context_length=as_int(key("context_length")), n_layers=n_layers, embedding_length=n_embd,
        n_heads=n_heads, n_kv_heads=n_kv, head_dim_k=k_dim, head_dim_v=v_dim,
        n_experts=as_int(key("expert_count")), n_experts_used=as_int(key("expert_used_count")),
        chat_template=template if isinstance(template, str) else None, vocab_size=vocab or as_int(key("vocab_size")),
        tensors=tensors, metadata={k: v for k, v in meta.items() if not isinstance(v, _SkippedArray)},
        assumptions=tuple(assumptions),
    )


def _looks_like_text(head: bytes) -> bool:
    return bool(head) and all(32 <= b < 127 or b in (9, 10, 13) for b in head)
