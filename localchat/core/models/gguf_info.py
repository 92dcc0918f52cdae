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

A hostile header costs little: every count is bounded by what the rest of the file can hold and by caps no model
comes near (131,072 tensors, 65,536 keys, 2M metadata strings), kept values have a memory budget, and the checks
llama.cpp's own loader makes are made here too (unique names, at most 4 dimensions, tensors packed in order,
``general.alignment`` a power of two, no arrays of arrays, at most 512 blocks), so such a file is refused as
"not a usable GGUF: …" instead of failing later in llama.cpp. The metadata the app uses is type-checked: a block
count, context length, head count… must be a whole number in range, and the block count cannot exceed the tensor
count (each block holds at least one tensor). Any file up to 100 MB is judged in well under 2 s and 200 MB.
"""

from __future__ import annotations

import math
import os
import struct
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import gguf

from localchat.errors import InvalidModelFile

SUPPORTED_VERSIONS = (2, 3)

# What llama.cpp itself accepts (ggml/src/gguf.cpp, src/llama-hparams.h): a file outside these limits cannot load.
_GGML_MAX_NAME = 64  # a tensor name is shorter than this
_GGML_MAX_DIMS = 4
_LLAMA_MAX_LAYERS = 512  # llama.cpp aborts (GGML_ASSERT) on a larger block count
_MAX_SPLITS = 65535  # split.count is a uint16 in gguf-split

# Bounds that keep judging a hostile file cheap. Real models have a few hundred to ~30k tensors (MoE with
# unmerged experts), well under 100 keys, and a vocabulary plus merges under a million strings.
_MAX_TENSORS = 1 << 17
_MAX_KV = 1 << 16
_MAX_STRINGS = 1 << 21  # strings in all metadata arrays together (each costs a Python step to skip)
_MAX_STRING = 64 * 1024 * 1024  # a longer "string" means a corrupt header, not a model
_MAX_KEY = 64 * 1024
_MAX_KEY_BYTES = 4 * 1024 * 1024  # all key names together
_KEEP_STRING_MAX = 1024 * 1024  # longer string values (no chat template is this long) are skipped, not kept
_KEEP_BYTES = 16 * 1024 * 1024  # kept string values together
_KEEP_ELEMENTS = 1 << 18  # kept array elements together
# smallest possible entries: key length + 1-byte key + type + 1-byte value; name length + n_dims + type + offset
_MIN_KV_BYTES = 8 + 1 + 4 + 1
_MIN_TENSOR_BYTES = 8 + 4 + 4 + 8

# GGUFValueType id -> struct format for scalars
_SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
_SIZES = {t: struct.calcsize("<" + f) for t, f in _SCALARS.items()}
_STRING, _ARRAY, _UINT32 = 8, 9, 4
# small arrays (per-layer head counts, languages) are kept; big ones (the vocabulary, merges, scores) are skipped
_KEEP_ARRAY_MAX = 64
_KEEP_NUMERIC_ARRAY_MAX = 1024
_U32, _U64 = struct.Struct("<I"), struct.Struct("<Q")
_TYPE_OFFSET = struct.Struct("<IQ")
_DIMS = [struct.Struct(f"<{n}q") for n in range(_GGML_MAX_DIMS + 1)]
_MAX_TENSOR_ENTRY = 8 + _GGML_MAX_NAME + 4 + 8 * _GGML_MAX_DIMS + 12
# ggml type id -> (name, elements per block, bytes per block)
_GGML_TYPES = {int(t): (t.name, b, s) for t, (b, s) in gguf.GGML_QUANT_SIZES.items()}

# {arch}.{suffix} keys read as counts/sizes here or by the planner: whole numbers (or per-layer lists of them)
_ARCH_INT_KEYS = ("block_count", "context_length", "embedding_length", "feed_forward_length",
                  "attention.head_count", "attention.head_count_kv", "attention.key_length",
                  "attention.value_length", "expert_count", "expert_used_count", "vocab_size",
                  "expert_feed_forward_length", "expert_shared_feed_forward_length", "expert_shared_count",
                  "attention.kv_lora_rank", "rope.dimension_count", "attention.sliding_window")
_U32_MAX = (1 << 32) - 1


class ByteSource(Protocol):
    """What the header reader needs of a file: an open file, or a file on the Hub read by Range requests."""

    def read(self, n: int = -1, /) -> bytes: ...

    def seek(self, offset: int, whence: int = 0, /) -> int: ...


class TensorInfo(NamedTuple):  # a tuple: cheap to make 262,144 of
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
    data_offset: int = 0  # where the tensor data starts: the header is the bytes before it

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
        count = self.metadata.get("split.count", 1)  # checked by read_gguf: a whole number 1..65535
        return count if isinstance(count, int) and count > 0 else 1


class _Reader:
    """Buffered little-endian reads with every length checked against what is left of the file."""

    CHUNK = 1 << 20

    def __init__(self, fh: ByteSource, size: int, name: str) -> None:
        self.fh, self.size, self.name = fh, size, name
        self.buf = b""
        self.pos = 0  # in buf
        self.base = 0  # file offset of buf[0]; the file is positioned at base + len(buf)
        self.strings = 0
        self.key_bytes = 0
        self.kept_bytes = 0
        self.kept_elements = 0

    def tell(self) -> int:
        return self.base + self.pos

    def remaining(self) -> int:
        return self.size - self.tell()

    def truncated(self) -> InvalidModelFile:
        return InvalidModelFile(f"{self.name} is truncated: its GGUF header ends early (a partial download?). "
                                f"Download or copy it again.")

    def unusable(self, why: str) -> InvalidModelFile:
        return InvalidModelFile(f"{self.name} is not a usable GGUF: {why}")

    def _fill(self, n: int) -> None:
        if self.pos + n <= len(self.buf):
            return
        rest = self.buf[self.pos:]
        more = self.fh.read(max(n - len(rest), self.CHUNK))
        self.base += self.pos
        self.buf, self.pos = rest + more, 0
        if len(self.buf) < n:
            raise self.truncated()

    def read(self, n: int) -> bytes:
        self._fill(n)
        b = self.buf[self.pos:self.pos + n]
        self.pos += n
        return b

    def skip(self, n: int) -> None:
        if n > self.remaining():
            raise self.truncated()
        if self.pos + n <= len(self.buf):
            self.pos += n
            return
        target = self.tell() + n
        self.fh.seek(target)
        self.buf, self.pos, self.base = b"", 0, target

    def u32(self) -> int:
        self._fill(4)
        v: int = _U32.unpack_from(self.buf, self.pos)[0]
        self.pos += 4
        return v

    def u64(self) -> int:
        self._fill(8)
        v: int = _U64.unpack_from(self.buf, self.pos)[0]
        self.pos += 8
        return v

    def scalar(self, vtype: int) -> Any:
        fmt = _SCALARS.get(vtype)
        if fmt is None:
            raise InvalidModelFile(f"{self.name} has an unknown GGUF value type {vtype}: corrupt header")
        n = _SIZES[vtype]
        self._fill(n)
        v = struct.unpack_from("<" + fmt, self.buf, self.pos)[0]
        self.pos += n
        return v

    def length(self, limit: int, what: str) -> int:
        n = self.u64()
        if n > limit:
            raise InvalidModelFile(f"{self.name} has a corrupt GGUF header (a {n}-byte {what})")
        if n > self.remaining():
            raise self.truncated()
        return n

    def key(self) -> str:
        n = self.length(_MAX_KEY, "key name")
        self.key_bytes += n
        if self.key_bytes > _MAX_KEY_BYTES:
            raise self.unusable(f"its key names take more than {_MAX_KEY_BYTES:,} bytes")
        return self.read(n).decode("utf-8", errors="replace")

    def skip_strings(self, count: int) -> None:
        """Skip ``count`` strings: a vocabulary is hundreds of thousands, so this loop works on the buffer."""
        unpack = _U64.unpack_from
        while count:
            self._fill(8)
            buf, pos, end = self.buf, self.pos, len(self.buf) - 8
            while count and pos <= end:
                n = unpack(buf, pos)[0]
                if n > _MAX_STRING:
                    raise InvalidModelFile(f"{self.name} has a corrupt GGUF header (a {n}-byte string)")
                pos += 8 + n
                count -= 1
            if pos > len(buf):  # the last string runs past the buffer
                self.pos = len(buf)
                self.skip(pos - len(buf))
            else:
                self.pos = pos

    def value(self, vtype: int) -> Any:
        """One metadata value; big arrays and very long strings are skipped (their length is kept)."""
        if vtype == _STRING:
            n = self.length(_MAX_STRING, "string")
            if n > _KEEP_STRING_MAX or self.kept_bytes + n > _KEEP_BYTES:
                self.skip(n)
                return _SkippedArray(n, is_string=True)
            self.kept_bytes += n
            return self.read(n).decode("utf-8", errors="replace")
        if vtype != _ARRAY:
            return self.scalar(vtype)
        etype, count = self.u32(), self.u64()
        if etype == _ARRAY:
            raise self.unusable("it has an array of arrays, which llama.cpp cannot read either")
        if etype != _STRING and etype not in _SCALARS:
            raise InvalidModelFile(f"{self.name} has an unknown GGUF value type {etype}: corrupt header")
        item = 8 if etype == _STRING else _SIZES[etype]  # a string is at least its length
        if count * item > self.remaining():
            raise InvalidModelFile(f"{self.name} is truncated or corrupt: an array of {count:,} items does not fit "
                                   f"in the {self.remaining():,} bytes left of the file")
        if etype == _STRING:
            self.strings += count
            if self.strings > _MAX_STRINGS:
                raise self.unusable(f"its metadata holds more than {_MAX_STRINGS:,} strings")
            if count <= _KEEP_ARRAY_MAX and self.kept_elements + count <= _KEEP_ELEMENTS:
                self.kept_elements += count
                return [self.value(_STRING) for _ in range(count)]
            self.skip_strings(count)
            return _SkippedArray(count)
        if count <= _KEEP_NUMERIC_ARRAY_MAX and self.kept_elements + count <= _KEEP_ELEMENTS:
            self.kept_elements += count
            return list(struct.unpack(f"<{count}{_SCALARS[etype]}", self.read(count * item)))
        self.skip(count * item)
        return _SkippedArray(count)


@dataclass(frozen=True)
class _SkippedArray:
    """A value not kept: a big array (``length`` items) or a very long string (``length`` bytes)."""

    length: int
    is_string: bool = False


def read_gguf(path: str | os.PathLike[str]) -> GGUFInfo:
    """Parse the header of a GGUF file.

    Every count is bounded by what the file's size can hold and by llama.cpp's own limits, so a hostile header is
    refused in well under a second and a few MB, whatever it claims.

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
        return parse_gguf(fh, size, p)


def parse_gguf(fh: ByteSource, size: int, path: str | os.PathLike[str]) -> GGUFInfo:
    """:func:`read_gguf` on any seekable reader of ``size`` bytes (a file, or a file on the Hub read by HTTP Range
    requests); ``path`` names it in messages and in the result. Same bounds, same errors."""
    p = Path(path)
    name = p.name
    if size == 0:
        raise InvalidModelFile(f"{name} is empty (0 bytes): not a GGUF model")
    magic = fh.read(4)
    if magic != b"GGUF":
        hint = " It looks like text." if _looks_like_text(magic + fh.read(60)) else ""
        raise InvalidModelFile(f"{name} is not a GGUF model (it does not start with the GGUF signature).{hint}")
    r = _Reader(fh, size, name)
    r.base = 4
    version = r.u32()
    if version not in SUPPORTED_VERSIONS and int.from_bytes(version.to_bytes(4, "little"), "big") in (2, 3):
        raise InvalidModelFile(f"{name} is a big-endian GGUF (made for s390x-type machines); localchat reads "
                               f"little-endian GGUF files. Download the ordinary build of this model.")
    if version not in SUPPORTED_VERSIONS:
        raise InvalidModelFile(f"{name} uses GGUF version {version}; localchat reads versions 2 and 3. "
                               f"Convert it with a current llama.cpp, or download a newer file.")
    n_tensors, n_kv = r.u64(), r.u64()
    if n_tensors > _MAX_TENSORS or n_kv > _MAX_KV:
        raise r.unusable(f"its header lists {n_tensors:,} tensors and {n_kv:,} keys (no model has more than "
                         f"{_MAX_TENSORS:,} / {_MAX_KV:,})")
    if n_tensors * _MIN_TENSOR_BYTES + n_kv * _MIN_KV_BYTES > r.remaining():
        raise InvalidModelFile(f"{name} is truncated or corrupt: its header lists {n_tensors:,} tensors and "
                               f"{n_kv:,} keys, more than its {size:,} bytes can hold")
    meta: dict[str, Any] = {}
    for _ in range(n_kv):
        key = r.key()
        if not key or key in meta:
            raise r.unusable("its metadata has an empty key" if not key else f"the key {key!r} appears twice")
        vtype = r.u32()
        if key == "general.alignment" and vtype != _UINT32:
            raise r.unusable("general.alignment is not a 32-bit unsigned number")
        meta[key] = r.value(vtype)
    alignment = meta.get("general.alignment", 32)
    if not isinstance(alignment, int) or alignment <= 0 or alignment & (alignment - 1):
        raise r.unusable(f"general.alignment is {alignment}, not a power of two")
    tensors, n_params, data_size = _tensor_table(r, n_tensors, alignment)
    header_end = r.tell()
    data_start = (header_end + alignment - 1) // alignment * alignment
    data_end = data_start + data_size
    if data_end > size:
        raise InvalidModelFile(f"{name} is truncated: it holds {size:,} bytes but its tensors need {data_end:,}. "
                               f"Download or copy it again.")
    return replace(_info(p, size, version, meta, tensors, n_params, r), data_offset=data_start)


def _tensor_table(r: _Reader, n_tensors: int, alignment: int) -> tuple[tuple[TensorInfo, ...], int, int]:
    """The tensor infos, checked as llama.cpp checks them: names short and unique, at most 4 non-negative
    dimensions, a known type whose block divides the rows, each tensor right after the previous one."""
    tensors: list[TensorInfo] = []
    seen: set[str] = set()
    n_params = expected = end = 0
    unpack_u64, unpack_u32, unpack_type_offset = _U64.unpack_from, _U32.unpack_from, _TYPE_OFFSET.unpack_from
    types, dims, add_name, add_tensor = _GGML_TYPES, _DIMS, seen.add, tensors.append
    buf, pos = r.buf, r.pos
    for _ in range(n_tensors):
        # plain unpacks on the buffer, refilled only when an entry might not fit: this loop is what a file with
        # _MAX_TENSORS tensors costs
        if len(buf) - pos < _MAX_TENSOR_ENTRY:
            r.pos = pos
            r._fill(min(_MAX_TENSOR_ENTRY, r.remaining()))
            buf, pos = r.buf, r.pos
        if pos + 8 > len(buf):
            raise r.truncated()
        n = unpack_u64(buf, pos)[0]
        if n >= _GGML_MAX_NAME:
            r.pos = pos + 8
            if n > r.remaining():
                raise r.truncated()
            raise r.unusable(f"a tensor name of {n:,} bytes (llama.cpp allows {_GGML_MAX_NAME - 1})")
        pos += 8
        if pos + n + 4 > len(buf):
            raise r.truncated()
        tname = buf[pos:pos + n].decode("utf-8", errors="replace")
        if tname in seen:
            raise r.unusable(f"the tensor name {tname!r} appears twice")
        add_name(tname)
        n_dims = unpack_u32(buf, pos + n)[0]
        pos += n + 4
        if n_dims > _GGML_MAX_DIMS:
            raise InvalidModelFile(f"{r.name} has a corrupt tensor table ({n_dims} dimensions)")
        if pos + 8 * n_dims + 12 > len(buf):
            raise r.truncated()
        shape: tuple[int, ...] = dims[n_dims].unpack_from(buf, pos)
        ttype, offset = unpack_type_offset(buf, pos + 8 * n_dims)
        pos += 8 * n_dims + 12
        if shape and min(shape) < 0:
            raise r.unusable(f"tensor {tname} has a negative dimension")
        count = math.prod(shape)
        if count >= 1 << 63:
            raise r.unusable(f"tensor {tname} has more elements than a 64-bit count holds")
        t = types.get(ttype)
        if t is None:
            raise InvalidModelFile(f"{r.name}: tensor {tname} has a type ({ttype}) this version does not know")
        type_name, block, type_size = t
        if (shape[0] if shape else 1) % block:
            raise r.unusable(f"tensor {tname} ({type_name}) has rows that are not whole {block}-element blocks")
        if offset != expected:
            raise r.unusable(f"tensor {tname} starts at byte {offset:,} of the data where {expected:,} was expected "
                             f"(a corrupt tensor table)")
        n_bytes = count // block * type_size
        end = offset + n_bytes
        expected = end + (-end % alignment)
        n_params += count
        add_tensor(TensorInfo(tname, type_name, shape, n_bytes, offset))
    r.pos = pos
    return tuple(tensors), n_params, end


def _info(p: Path, size: int, version: int, meta: dict[str, Any], tensors: tuple[TensorInfo, ...], n_params: int,
          r: _Reader) -> GGUFInfo:
    arch = meta.get("general.architecture", "unknown")
    if not isinstance(arch, str):
        raise r.unusable("general.architecture is not text")
    assumptions: list[str] = []

    def whole(key: str, v: Any, lo: int = 0, hi: int = _U32_MAX, per_layer: bool = False) -> int | None:
        """A whole number in [lo, hi] (a per-layer list: its largest), None when absent; otherwise refused."""
        if v is None or (per_layer and isinstance(v, _SkippedArray)):
            return None
        if per_layer and isinstance(v, list):
            if not all(type(x) is int for x in v):
                raise r.unusable(f"{key} holds {_short(v)}, not whole numbers")
            v = max(v) if v else None
            if v is None:
                return None
        if type(v) is not int:
            raise r.unusable(f"{key} is {_short(v)}, not a whole number")
        if not lo <= v <= hi:
            raise r.unusable(f"{key} is {v:,}, outside {lo:,}…{hi:,}")
        return v

    ints = {s: whole(f"{arch}.{s}", meta.get(f"{arch}.{s}"), per_layer=True) for s in _ARCH_INT_KEYS}
    split_count = whole("split.count", meta.get("split.count"), 1, _MAX_SPLITS) or 1
    split_no = whole("split.no", meta.get("split.no"), 0, split_count - 1)
    split_tensors = whole("split.tensors.count", meta.get("split.tensors.count"), len(tensors))
    _check_split_name(p.name, split_count, split_no, r)
    # every block holds at least one tensor: more blocks than tensors is a corrupt (or hostile) header
    limit = min(_LLAMA_MAX_LAYERS, (split_tensors or _LLAMA_MAX_LAYERS) if split_count > 1 else len(tensors))
    n_layers = ints["block_count"]
    if n_layers is not None and n_layers > limit:
        raise r.unusable(f"{arch}.block_count is {n_layers:,} but the file holds {len(tensors):,} tensors"
                         + (f" (llama.cpp loads at most {_LLAMA_MAX_LAYERS} blocks)" if n_layers > _LLAMA_MAX_LAYERS
                            else ""))
    n_embd = ints["embedding_length"]
    n_heads = ints["attention.head_count"]
    n_kv = ints["attention.head_count_kv"]
    if n_kv is None and n_heads is not None:
        n_kv = n_heads
        assumptions.append("no KV head count in the file: assumed equal to the attention head count")
    k_dim = ints["attention.key_length"]
    v_dim = ints["attention.value_length"]
    if (k_dim is None or v_dim is None) and n_embd and n_heads:
        derived = n_embd // n_heads
        k_dim = k_dim or derived
        v_dim = v_dim or derived
        assumptions.append(f"no head dimension in the file: derived {derived} = embedding {n_embd} / heads {n_heads}")
    by_type: dict[str, int] = {}
    for t in tensors:
        if len(t.shape) >= 2:
            by_type[t.type_name] = by_type.get(t.type_name, 0) + t.n_bytes
    quant = max(by_type, key=lambda k: by_type[k]) if by_type else "unknown"
    ft = whole("general.file_type", meta.get("general.file_type"))
    try:
        file_type = gguf.LlamaFileType(ft).name if ft is not None else None
    except ValueError:
        file_type = f"type {ft}"
    tokens = meta.get("tokenizer.ggml.tokens")
    vocab = None
    if isinstance(tokens, _SkippedArray) and not tokens.is_string:
        vocab = tokens.length
    elif isinstance(tokens, list):
        vocab = len(tokens)
    template = meta.get("tokenizer.chat_template")
    model_name = meta.get("general.name")
    return GGUFInfo(
        path=str(p), file_size=size, version=version, architecture=arch,
        name=model_name if isinstance(model_name, str) and model_name else p.stem, n_params=n_params,
        file_type=file_type, quantisation=quant,
        context_length=ints["context_length"], n_layers=n_layers, embedding_length=n_embd,
        n_heads=n_heads, n_kv_heads=n_kv, head_dim_k=k_dim, head_dim_v=v_dim,
        n_experts=ints["expert_count"], n_experts_used=ints["expert_used_count"],
        chat_template=template if isinstance(template, str) else None, vocab_size=vocab or ints["vocab_size"],
        tensors=tensors, metadata={k: v for k, v in meta.items() if not isinstance(v, _SkippedArray)},
        assumptions=tuple(assumptions),
    )


def _check_split_name(file_name: str, split_count: int, split_no: int | None, r: _Reader) -> None:
    """A ``-0000N-of-0000M`` name must be a possible part, and agree with the header when it says."""
    from localchat.core.models.hub import SPLIT_RE

    m = SPLIT_RE.match(file_name)
    if m is None:
        return
    part, total = int(m.group("part")), int(m.group("total"))
    if total == 0 or not 1 <= part <= total:
        raise r.unusable(f"its name says part {part} of {total}, which cannot be")
    if split_no is not None and (split_count != total or split_no != part - 1):
        raise r.unusable(f"its name says part {part} of {total} but its header says part {split_no + 1} of "
                         f"{split_count}")


def _short(v: Any) -> str:
    if isinstance(v, _SkippedArray):
        return f"a {v.length:,}-byte text" if v.is_string else f"an array of {v.length:,} items"
    text = repr(v)
    return text if len(text) <= 40 else text[:37] + "…"


def _looks_like_text(head: bytes) -> bool:
    return bool(head) and all(32 <= b < 127 or b in (9, 10, 13) for b in head)
