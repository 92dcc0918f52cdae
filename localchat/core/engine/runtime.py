"""llama.cpp inside the worker process: load a model, run a chat turn as typed chunks, abort.

This is the only module that imports llama-cpp-python, and it is imported only by the worker, after the sandbox
has been applied. Everything here runs on the worker's main thread; ``abort`` may be called from any thread.
"""

from __future__ import annotations

import array
import codecs
import ctypes
import itertools
import logging
import os
import random
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import llama_cpp
import llama_cpp.llama_cpp as llama_lib

from localchat.core.chat.history import fit_history, is_r1_distill
from localchat.core.chat.messages import (
    ChatMessage,
    Chunk,
    ContentChunk,
    ErrorChunk,
    NoticeChunk,
    ReasoningChunk,
    SamplingParams,
    StatsChunk,
    TurnStats,
)
from localchat.core.chat.think import OPEN, ThinkSplitter
from localchat.core.engine.chat_template import ChatTemplate, ChatTemplateError
from localchat.core.engine.protocol import LoadInfo, LoadOptions
from localchat.core.models.gguf_info import read_gguf
from localchat.errors import ContextOverflow, ModelLoadError

log = logging.getLogger(__name__)

_OFFLOADED_RE = re.compile(r"offloaded (\d+)/(\d+) layers to GPU")
_KV_TYPES = {"f16": 1, "f32": 0, "q8_0": 8, "q4_0": 2}  # ggml_type ids
# Tokens that only tokenising with special=True turns into their id (llama.cpp's own partition rule).
_SPECIAL_ATTRS = llama_lib.LLAMA_TOKEN_ATTR_CONTROL | llama_lib.LLAMA_TOKEN_ATTR_UNKNOWN

# How a prompt is evaluated, cold or warm (see _schedule): llama.cpp's kernels (and their rounding) depend on the
# batch, so only the same batches at the same positions give the same KV cache and logits. The batches follow the
# messages: one segment per message, cut at the template's first special token after each message's text (ChatML's
# <|im_end|>), each segment in pieces of at most n_ubatch tokens from its start, the prompt's last token alone (the
# sampled logits always come from a batch of one). A segment's batches depend only on the text up to its end, so a
# cached segment is reused as is on the next turn, and the answer's own segment is evaluated right after the turn
# (``_prepare_next``) while the user reads it, not when the next question arrives.
Piece = tuple[int, int]  # [start, end) token positions evaluated in one llama_decode

# Used when a GGUF has no chat template (rare for instruct models): ChatML, the most common format.
_FALLBACK_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


class LogCapture:
    """Receives llama.cpp's log lines (instead of its default print to stderr)."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self._partial = ""
        self.capturing = False
        self._last_level = 1
        self._cb = llama_lib.llama_log_callback(self._on_log)  # keep a reference: C holds the pointer
        llama_lib.llama_log_set(self._cb, ctypes.c_void_p(0))

    def _on_log(self, level: int, text: bytes, _data: Any) -> None:
        # ggml levels: 1 info, 2 warn, 3 error, 4 debug, 5 continuation of the previous line
        if level == 5:
            level = self._last_level
        self._last_level = level
        if level == 4:  # debug: thousands of graph lines per load; never needed
            return
        s = self._partial + text.decode("utf-8", errors="replace")
        *done, self._partial = s.split("\n")
        for line in done:
            if self.capturing:
                self.lines.append(line)
            if level in (2, 3):  # warn / error
                log.warning("llama.cpp: %s", line)

    def start(self) -> None:
        self.lines = []
        self.capturing = True

    def stop(self) -> str:
        self.capturing = False
        return "\n".join(self.lines)


class LlamaRuntime:
    """One loaded model and its context."""

    def __init__(self) -> None:
        self.llm: llama_cpp.Llama | None = None
        self.info: LoadInfo | None = None
        self._template: ChatTemplate | None = None
        self._specials: dict[str, tuple[int, int]] = {}  # text -> (token id, attributes)
        self._special_re: re.Pattern[str] | None = None
        self._chunk = 512  # n_ubatch of the loaded context
        self._kv_pieces: list[Piece] = []  # the canonical batches the KV cache holds, from position 0 (see _schedule)
        self._next: list[ChatMessage] | None = None  # the history _prepare_next is evaluating
        self._prepping = False
        self._preempted = False  # an op arrived since this turn began: leave the worker free for it
        self._ctx_notice: str | None = None  # said once, on the first turn after a load
        self._native: _NativeDecoder | None = None
        self._abort = threading.Event()
        self._lock = threading.Lock()
        self._current: str | None = None
        self._cancelled: set[str] = set()  # a cancel may arrive before its turn starts
        # llama.cpp asks the abort callback before every graph node (~1000 per token for the starter): a Python
        # callback there costs about 5% of decode speed. libc's strlen() over [flag, NUL] answers the same
        # question natively (0 or 1 in the return register's low byte, which is what a bool return reads).
        self._abort_flag = ctypes.create_string_buffer(2)
        self._abort_cb, self._abort_data = _native_abort_check(self._abort_flag, self._should_abort)
        self.logs = LogCapture()

    # -- abort -------------------------------------------------------------------------------------------

    def _should_abort(self, _data: Any) -> bool:
        return self._abort.is_set()

    def abort(self, request_id: str | None = None) -> None:
        """Stop a turn (the running one when ``request_id`` is None); safe from any thread.

        llama.cpp checks the flag between graph nodes, so prompt processing stops too, not just decoding.
        """
        with self._lock:
            if request_id is not None and request_id != self._current:
                self._cancelled.add(request_id)
                return
            self._abort.set()
            self._abort_flag[0] = b"\x01"

    def _begin(self, request_id: str) -> None:
        with self._lock:
            self._current = request_id
            self._preempted = False
            if request_id in self._cancelled:
                self._cancelled.discard(request_id)
                self._abort.set()
                self._abort_flag[0] = b"\x01"
            else:
                self._abort.clear()
                self._abort_flag[0] = b"\x00"

    # -- load --------------------------------------------------------------------------------------------

    def load(self, path: str, opts: LoadOptions, progress: Callable[[float], None] | None = None) -> LoadInfo:
        read_gguf(path)  # refuse a non-GGUF / truncated file with a clear message; llama.cpp's are cryptic
        self.unload()
        progress_cb = llama_lib.llama_progress_callback(lambda p, _d: self._on_progress(progress, p))
        original = llama_lib.llama_model_default_params

        def params_with_progress() -> Any:
            params = original()
            params.progress_callback = progress_cb
            return params

        threads = opts.n_threads or _physical_cores()
        if opts.rpc_servers:  # helper machines, reached through the worker's relay (docs/RPC.md)
            from localchat.core.engine.rpc_devices import add_rpc_servers

            add_rpc_servers(llama_lib._lib, opts.rpc_servers)
        self.logs.start()
        t0 = time.perf_counter()
        llama_lib.llama_model_default_params = params_with_progress
        try:
            llm = llama_cpp.Llama(
                model_path=path,
                n_gpu_layers=opts.n_gpu_layers,
                tensor_split=opts.tensor_split,
                n_ctx=opts.n_ctx,
                n_batch=opts.n_batch,
                n_ubatch=opts.n_ubatch,
                n_threads=threads,
                n_threads_batch=threads,
                flash_attn=opts.flash_attn,
                type_k=_KV_TYPES.get(opts.kv_type, 1),
                type_v=_KV_TYPES.get(opts.kv_type, 1),
                use_mmap=opts.use_mmap,
                seed=opts.seed if opts.seed is not None else llama_lib.LLAMA_DEFAULT_SEED,
                verbose=True,  # verbose=False redirects fds 1/2 around native calls; we capture logs instead
            )
        except (ValueError, RuntimeError, OSError) as exc:
            load_log = self.logs.stop()
            reason = _load_failure_reason(load_log) or str(exc)
            raise ModelLoadError(f"llama.cpp could not load {os.path.basename(path)}: {reason}") from exc
        finally:
            llama_lib.llama_model_default_params = original
        load_s = time.perf_counter() - t0
        load_log = self.logs.stop()
        llama_lib.llama_set_abort_callback(llm._ctx.ctx, self._abort_cb, self._abort_data)

        meta = llm.metadata
        template = meta.get("tokenizer.chat_template")
        eos_id, bos_id = llm.token_eos(), llm.token_bos()
        try:
            self._template = ChatTemplate(
                template or _FALLBACK_TEMPLATE,
                eos_token=llm._model.token_get_text(eos_id) if eos_id >= 0 else "",
                bos_token=llm._model.token_get_text(bos_id) if bos_id >= 0 else "",
            )
        except ChatTemplateError as exc:
            llm.close()
            raise ModelLoadError(f"{os.path.basename(path)}: {exc}") from exc
        self._specials = _special_tokens(llm)
        longest_first = sorted(self._specials, key=len, reverse=True)
        self._special_re = re.compile(f"({'|'.join(map(re.escape, longest_first))})") if self._specials else None
        self._chunk = max(1, min(llm.n_batch, int(llama_lib.llama_n_ubatch(llm._ctx.ctx))))
        self._native = _NativeDecoder(llm, self._chunk)
        self._kv_pieces = []
        offload = _OFFLOADED_RE.findall(load_log)
        name = meta.get("general.name") or os.path.basename(path)
        n_layers = int(llama_lib.llama_model_n_layer(llm._model.model))
        n_ctx, n_train = llm.n_ctx(), llm._model.n_ctx_train()
        self._ctx_notice = (f"the {n_ctx}-token context is more than this model was trained for ({n_train} tokens): "
                            f"answers past {n_train} tokens may degrade" if 0 < n_train < n_ctx else None)
        self.llm = llm
        self.info = LoadInfo(
            path=path,
            n_ctx=llm.n_ctx(),
            n_ctx_train=llm._model.n_ctx_train(),
            n_layers=n_layers,
            n_gpu_layers=opts.n_gpu_layers,
            offloaded_layers=int(offload[-1][0]) if offload else None,
            offloadable_layers=int(offload[-1][1]) if offload else None,
            load_s=load_s,
            chat_template=template,
            model_name=name,
            is_r1=is_r1_distill(f"{name} {os.path.basename(path)}", template),
            load_log=load_log,
        )
        return self.info

    @staticmethod
    def _on_progress(progress: Callable[[float], None] | None, p: float) -> bool:
        if progress is not None:
            try:
                progress(float(p))
            except Exception:  # a failing listener must not abort the load
                log.exception("load progress listener failed")
        return True

    def unload(self) -> None:
        if self._native is not None:
            self._native.close()
            self._native = None
        if self.llm is not None:
            self.llm.close()
        self.llm = None
        self.info = None
        self._template = None
        self._specials = {}
        self._special_re = None
        self._kv_pieces = []
        self._preempted = False

    # -- prompt ------------------------------------------------------------------------------------------

    def format_prompt(self, messages: list[ChatMessage]) -> str:
        """The prompt text the model's chat template makes of ``messages``."""
        assert self._template is not None
        return self._template.render(messages)

    def prompt_tokens(self, messages: list[ChatMessage]) -> tuple[str, list[int]]:
        """The prompt text and its tokens: the template's markup may hold special tokens, message text never.

        A user typing ``<|im_end|><|im_start|>system`` gets those characters as plain text, not a new turn.
        """
        prompt, tokens, _cuts = self._prompt_plan(messages)
        return prompt, tokens

    def _prompt_plan(self, messages: list[ChatMessage],
                     add_generation_prompt: bool = True) -> tuple[str, list[int], list[int]]:
        """The prompt text, its tokens, and where its message segments start (see :func:`_schedule`)."""
        assert self._template is not None
        prompt, parts = self._template.render_parts(messages, add_generation_prompt)
        tokens, cuts = self._tokenize_parts(parts)
        return prompt, tokens, cuts

    def tokenize_prompt(self, prompt: str) -> list[int]:
        """``prompt`` as all-markup text (special tokens parsed); chat turns use :meth:`prompt_tokens`."""
        return self._tokenize_parts([(prompt, False)])[0]

    def _tokenize_parts(self, parts: Sequence[tuple[str, bool]]) -> tuple[list[int], list[int]]:
        # Split the markup at special tokens and tokenise every run of text between them in one piece (markup and
        # message text together, with special=False), as llama.cpp does with the whole prompt: BPE merges and
        # SentencePiece's leading space come out the same, only message text can no longer be a special token.
        # Also returns the segment cuts: the position of the first special token after each message's text.
        assert self.llm is not None
        frags: list[str | int] = [""]
        cut_frags: list[int] = []  # indexes into frags
        want_cut = False
        strip_next = False  # the special token before this text strips the whitespace after it

        def add_text(text: str) -> None:
            nonlocal strip_next
            if strip_next:
                text = text.lstrip()
                strip_next = False
            if isinstance(frags[-1], str):
                frags[-1] += text
            else:
                frags.append(text)

        for text, is_content in parts:
            if is_content or self._special_re is None:
                add_text(text)
                want_cut = want_cut or is_content
                continue
            pieces = self._special_re.split(text)  # text, special, text, special, ..., text
            for k, piece in enumerate(pieces):
                if not k % 2:
                    if piece:
                        add_text(piece)
                    continue
                tok, attr = self._specials[piece]
                if attr & llama_lib.LLAMA_TOKEN_ATTR_LSTRIP and isinstance(frags[-1], str):
                    frags[-1] = frags[-1].rstrip()
                if want_cut:
                    cut_frags.append(len(frags))
                    want_cut = False
                frags.append(tok)
                strip_next = bool(attr & llama_lib.LLAMA_TOKEN_ATTR_RSTRIP)
        tokens: list[int] = []
        starts: list[int] = []
        for f in frags:
            starts.append(len(tokens))
            if isinstance(f, int):
                tokens.append(f)
            elif f:
                tokens.extend(self.llm.tokenize(f.encode("utf-8"), add_bos=False, special=False))
        return tokens, [starts[i] for i in cut_frags]

    # -- chat --------------------------------------------------------------------------------------------

    def chat(self, request_id: str, messages: list[ChatMessage], sampling: SamplingParams) -> Iterator[Chunk]:
        """Run one turn. Yields content/reasoning/notice chunks, then exactly one stats or error chunk."""
        llm = self.llm
        if llm is None or self.info is None:
            yield ErrorChunk(request_id, "no_model", "no model is loaded")
            return
        self._begin(request_id)
        try:
            yield from self._chat(request_id, llm, self.info, messages, sampling)
        finally:
            with self._lock:
                self._current = None
                self._prepping = False
                self._next = None

    def _chat(self, request_id: str, llm: llama_cpp.Llama, info: LoadInfo, messages: list[ChatMessage],
              sampling: SamplingParams) -> Iterator[Chunk]:
        t_start = time.perf_counter()
        n_ctx = info.n_ctx
        plans: list[tuple[str, list[int], list[int]]] = []

        def count(ms: list[ChatMessage]) -> int:
            plans.append(self._prompt_plan(ms))
            return len(plans[-1][1])

        try:
            fitted, dropped, n_prompt = fit_history(messages, count, n_ctx)
            prompt, tokens, cuts = plans[-1]  # fit_history's last count is of the messages it returns
        except ContextOverflow as exc:
            yield ErrorChunk(request_id, "context_overflow", str(exc))
            return
        except ChatTemplateError as exc:
            yield ErrorChunk(request_id, "internal", str(exc))
            return
        if not tokens:
            yield ErrorChunk(request_id, "internal", "the model's chat template made an empty prompt")
            return
        if self._ctx_notice:
            yield NoticeChunk(request_id, self._ctx_notice)
            self._ctx_notice = None
        if dropped:
            yield NoticeChunk(request_id, f"{dropped} earlier message{'s' if dropped > 1 else ''} left out to fit "
                                          f"the {n_ctx}-token context")
        max_new = min(sampling.max_tokens, n_ctx - n_prompt)
        splitter = ThinkSplitter(in_think=prompt.rstrip().endswith(OPEN))
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        seed = sampling.seed if sampling.seed is not None else random.getrandbits(31)
        native = self._native
        assert native is not None

        n_out = 0
        t_first = t_last = 0.0
        finish = "length"
        sampler = None
        content: list[str] = []
        try:
            self._prefill(llm, tokens, _schedule(len(tokens), cuts, self._chunk))
            sampler = native.sampler(sampling, seed, llm.last_n_tokens_size)
            while True:
                if self._abort.is_set():
                    finish = "cancelled"
                    break
                tok = native.sample(sampler)
                now = time.perf_counter()
                if n_out == 0:
                    t_first = now
                t_last = now
                if native.is_eog(tok):
                    finish = "stop"
                    break
                n_out += 1
                text = decoder.decode(native.piece(tok))
                if text:
                    for chunk in _typed(request_id, splitter.feed(text)):
                        if isinstance(chunk, ContentChunk):
                            content.append(chunk.text)
                        yield chunk
                if n_out >= max_new:
                    finish = "length"
                    break
                if self._abort.is_set():
                    finish = "cancelled"
                    break
                native.decode(tok, llm.n_tokens)
                llm.input_ids[llm.n_tokens] = tok  # llama-cpp-python's record of the cache, for the next prefill
                llm.n_tokens += 1
        except RuntimeError as exc:
            if not self._abort.is_set():
                self._reset_state()
                yield ErrorChunk(request_id, _classify_runtime_error(str(exc)), f"llama.cpp failed: {exc}")
                return
            finish = "cancelled"
        finally:
            if sampler is not None:
                llama_lib.llama_sampler_free(sampler)
        if finish == "cancelled":
            # an aborted decode may leave half-written KV cells: start clean next turn
            self._reset_state()
        for chunk in _typed(request_id, splitter.feed(decoder.decode(b"", final=True)) + splitter.finish()):
            if isinstance(chunk, ContentChunk):
                content.append(chunk.text)
            yield chunk
        t_end = time.perf_counter()
        decode_tps = (n_out - 1) / (t_last - t_first) if n_out > 1 and t_last > t_first else 0.0
        yield StatsChunk(request_id, TurnStats(
            prompt_tokens=len(tokens),
            completion_tokens=n_out,
            ttft_s=(t_first - t_start) if n_out else 0.0,
            decode_tokens_per_s=decode_tps,
            total_s=t_end - t_start,
            finish_reason=finish,  # type: ignore[arg-type]
            dropped_messages=dropped,
        ))
        answer = "".join(content)
        if finish != "cancelled" and not dropped and answer.strip():
            # the app sends the answer back as the next turn's history without its reasoning (strip_reasoning):
            # evaluate that history's segments now, while the user reads, so the next question starts warm
            self._prepare_next(llm, [*fitted, ChatMessage("assistant", answer)])

    def _prefill(self, llm: llama_cpp.Llama, tokens: list[int], pieces: list[Piece]) -> None:
        """Evaluate the prompt in ``pieces`` (its canonical batches; the last is its last token alone).

        The pieces depend only on the prompt, never on what the cache held, so a warm turn computes exactly what a
        cold one does: it keeps the cached pieces that are the same batches of the same tokens and evaluates the
        rest as a cold turn would.
        """
        self._evaluate(llm, tokens, pieces[:-1])
        native = self._native
        assert native is not None
        n = len(tokens)
        native.decode(tokens[n - 1], n - 1)  # sampled logits always come from a batch of one
        llm.input_ids[n - 1] = tokens[n - 1]
        llm.n_tokens = n

    def _evaluate(self, llm: llama_cpp.Llama, tokens: list[int], pieces: list[Piece]) -> None:
        """Make the KV cache hold ``pieces`` of ``tokens``: reuse the cached ones, evaluate the others natively."""
        native = self._native
        assert native is not None
        common = 0
        limit = pieces[-1][1] if pieces else 0
        for cached, tok in zip(llm.input_ids[: min(llm.n_tokens, limit)].tolist(), tokens, strict=False):
            if cached != tok:
                break
            common += 1
        keep = 0
        for old, new in zip(self._kv_pieces, pieces, strict=False):
            if old != new or new[1] > common:
                break
            keep = new[1]
        if keep == 0 or not llm._ctx.kv_cache_seq_rm(-1, keep, -1):
            # a clean cache puts position i in cell i again, as a cold start does
            llm._ctx.kv_cache_clear()  # type: ignore[no-untyped-call]
            keep = 0
        llm.n_tokens = keep
        self._kv_pieces = [p for p in pieces if p[1] <= keep]
        for start, end in pieces[len(self._kv_pieces):]:
            native.prefill(tokens, start, end)
            llm.input_ids[start:end] = tokens[start:end]  # llama-cpp-python's record of the cache
            llm.n_tokens = end
            self._kv_pieces.append((start, end))

    def _prepare_next(self, llm: llama_cpp.Llama, history: list[ChatMessage]) -> None:
        """Evaluate the complete segments of ``history`` (this turn's messages and its answer) after the turn.

        Runs on the worker's thread after the turn's stats were sent; an op for anything but the continuation of
        this conversation stops it (:meth:`preempt`), and whatever it finished stays in the cache, reusable.
        """
        with self._lock:
            if self._preempted or self._abort.is_set():
                return
            self._prepping = True
            self._next = history
        try:
            try:
                _prompt, tokens, cuts = self._prompt_plan(history, add_generation_prompt=False)
            except ChatTemplateError:
                return
            pieces = _schedule(len(tokens), cuts, self._chunk, complete_only=True)
            if pieces and pieces[-1][1] <= (self.info.n_ctx if self.info else 0):
                self._evaluate(llm, tokens, pieces)
        except RuntimeError as exc:  # aborted (a new op), or llama.cpp failed: the next turn starts from the pieces
            if not self._abort.is_set():
                log.warning("evaluating the answer for the next turn failed: %s", exc)
            self._drop_partial(llm)
        finally:
            with self._lock:
                self._prepping = False
                self._next = None

    def preempt(self, msg: dict[str, Any]) -> None:
        """The worker received ``msg`` (any op but cancel): stop :meth:`_prepare_next` unless ``msg`` continues the
        conversation it is preparing (then its work is that turn's own). Safe from any thread."""
        with self._lock:
            nxt = self._next
            if nxt is not None and msg.get("op") == "chat" and _continues(msg.get("messages"), nxt):
                return
            self._preempted = True
            if self._prepping:
                self._abort.set()
                self._abort_flag[0] = b"\x01"

    def _drop_partial(self, llm: llama_cpp.Llama) -> None:
        """After a failed or aborted piece: keep the complete pieces, drop the cells the piece may have written."""
        keep = self._kv_pieces[-1][1] if self._kv_pieces else 0
        if keep == 0 or not llm._ctx.kv_cache_seq_rm(-1, keep, -1):
            self._reset_state()
            return
        llm.n_tokens = keep

    def _reset_state(self) -> None:
        assert self.llm is not None
        self.llm.reset()  # type: ignore[no-untyped-call]
        self.llm._ctx.kv_cache_clear()  # type: ignore[no-untyped-call]
        self._kv_pieces = []


def _native_abort_check(flag: ctypes.Array[ctypes.c_char],
                        fallback: Callable[[Any], bool]) -> tuple[Any, ctypes.c_void_p]:
    """(callback, data) for llama_set_abort_callback: libc's strlen over ``flag``, else the Python ``fallback``."""
    try:
        libc = ctypes.cdll.msvcrt if os.name == "nt" else ctypes.CDLL(None)
        address = ctypes.cast(libc.strlen, ctypes.c_void_p).value
    except (OSError, AttributeError):
        address = None
    if not address:
        return llama_lib.ggml_abort_callback(fallback), ctypes.c_void_p(0)
    return llama_lib.ggml_abort_callback(address), ctypes.cast(flag, ctypes.c_void_p)


def _schedule(n: int, cuts: Sequence[int], chunk: int, complete_only: bool = False) -> list[Piece]:
    """The canonical batches of ``n`` prompt tokens whose message segments start at ``cuts``.

    Each segment in pieces of at most ``chunk`` tokens from its start, then the last token alone. With
    ``complete_only`` (a history without its next question): only the segments that end at a cut, which the next
    prompt will contain unchanged.
    """
    if complete_only:
        bounds = [0, *sorted({c for c in cuts if 0 < c <= n})]
    else:
        bounds = [0, *sorted({c for c in cuts if 0 < c < n - 1}), max(n - 1, 0)]
    pieces = [(s, min(s + chunk, b)) for a, b in itertools.pairwise(bounds) for s in range(a, b, chunk)]
    return pieces if complete_only else [*pieces, (n - 1, n)]


def _continues(messages: Any, history: Sequence[ChatMessage]) -> bool:
    """Whether ``messages`` (a chat request's, as sent) start with ``history`` and go on."""
    if not isinstance(messages, list) or len(messages) <= len(history):
        return False
    try:
        return all(m["role"] == h.role and m["content"] == h.content for m, h in zip(messages, history, strict=False))
    except (TypeError, KeyError, IndexError):
        return False


class _NativeDecoder:
    """Prompt and decode on llama.cpp's own API, set up once per load: a prompt ``llama_batch`` of ``n_max`` tokens
    filled by memmove (no logits asked for), a one-token batch reused for every generated token, llama.cpp's
    sampler chain (made once per turn) and a reused buffer for each token's text. No logits are copied to Python;
    sampling reads them inside llama.cpp."""

    def __init__(self, llm: llama_cpp.Llama, n_max: int) -> None:
        self._ctx = llm._ctx.ctx
        self._vocab = llm._model.vocab
        self._n_vocab = int(llama_lib.llama_vocab_n_tokens(self._vocab))
        self._batch = llama_lib.llama_batch_init(1, 0, 1)
        self._batch.n_tokens = 1
        self._batch.n_seq_id[0] = 1
        self._batch.seq_id[0][0] = 0
        self._batch.logits[0] = 1
        self._n_max = n_max
        self._prompt = llama_lib.llama_batch_init(n_max, 0, 1)
        for i in range(n_max):  # once per load: every prompt token is in sequence 0 and asks for no logits
            self._prompt.n_seq_id[i] = 1
            self._prompt.seq_id[i][0] = 0
            self._prompt.logits[i] = 0
        self._buf = ctypes.create_string_buffer(64)

    def close(self) -> None:
        llama_lib.llama_batch_free(self._batch)
        llama_lib.llama_batch_free(self._prompt)

    def prefill(self, tokens: list[int], start: int, end: int) -> None:
        """Evaluate ``tokens[start:end]`` (at most ``n_max``) at positions ``start..end-1`` in one llama_decode."""
        n = end - start
        assert 0 < n <= self._n_max
        toks = array.array("i", tokens[start:end])
        pos = array.array("i", range(start, end))
        ctypes.memmove(self._prompt.token, toks.buffer_info()[0], n * toks.itemsize)
        ctypes.memmove(self._prompt.pos, pos.buffer_info()[0], n * pos.itemsize)
        self._prompt.n_tokens = n
        rc = llama_lib.llama_decode(self._ctx, self._prompt)
        if rc != 0:
            raise RuntimeError(f"llama_decode returned {rc}")

    def sampler(self, p: SamplingParams, seed: int, last_n: int) -> Any:
        """The chain llama-cpp-python's ``Llama.generate`` builds, so answers stay what they were; free it after."""
        lib = llama_lib
        chain = lib.llama_sampler_chain_init(lib.llama_sampler_chain_default_params())
        parts = [lib.llama_sampler_init_penalties(self._n_vocab, last_n, p.repeat_penalty, 0.0, 0.0)]
        if p.temperature == 0:
            parts.append(lib.llama_sampler_init_greedy())
        else:
            parts += [lib.llama_sampler_init_top_k(p.top_k), lib.llama_sampler_init_typical(1.0, 1),
                      lib.llama_sampler_init_top_p(p.top_p, 1), lib.llama_sampler_init_min_p(p.min_p, 1),
                      lib.llama_sampler_init_temp(p.temperature), lib.llama_sampler_init_dist(seed)]
        for part in parts:
            lib.llama_sampler_chain_add(chain, part)  # the chain owns and frees its parts
        return chain

    def sample(self, sampler: Any) -> int:
        return int(llama_lib.llama_sampler_sample(sampler, self._ctx, -1))  # also accepts the token

    def is_eog(self, tok: int) -> bool:
        return bool(llama_lib.llama_vocab_is_eog(self._vocab, tok))

    def decode(self, tok: int, pos: int) -> None:
        self._batch.token[0] = tok
        self._batch.pos[0] = pos
        rc = llama_lib.llama_decode(self._ctx, self._batch)
        if rc != 0:
            raise RuntimeError(f"llama_decode returned {rc}")  # llama-cpp-python's words: errors map as before

    def piece(self, tok: int) -> bytes:
        n = llama_lib.llama_token_to_piece(self._vocab, tok, self._buf, len(self._buf), 0, False)
        if n < 0:  # longer than the buffer: llama.cpp says how long
            self._buf = ctypes.create_string_buffer(-n)
            n = llama_lib.llama_token_to_piece(self._vocab, tok, self._buf, len(self._buf), 0, False)
        return ctypes.string_at(self._buf, n)


def _special_tokens(llm: llama_cpp.Llama) -> dict[str, tuple[int, int]]:
    """Text → (id, attributes) of the tokens llama.cpp matches in text only when asked to parse special tokens."""
    vocab = llm._model.vocab
    out: dict[str, tuple[int, int]] = {}
    for tok in range(int(llama_lib.llama_vocab_n_tokens(vocab))):
        attr = int(llama_lib.llama_vocab_get_attr(vocab, tok))
        if attr & _SPECIAL_ATTRS:
            text = llama_lib.llama_vocab_get_text(vocab, tok).decode("utf-8", errors="replace")
            if text:
                out.setdefault(text, (tok, attr))
    return out


def _typed(request_id: str, parts: Sequence[tuple[str, str]]) -> Iterator[Chunk]:
    for kind, text in parts:
        yield ReasoningChunk(request_id, text) if kind == "reasoning" else ContentChunk(request_id, text)


def _classify_runtime_error(msg: str) -> Any:
    low = msg.lower()
    if "memory" in low or "alloc" in low or "returned 1" in low:
        return "out_of_memory"
    return "internal"


def _load_failure_reason(load_log: str) -> str | None:
    for line in reversed(load_log.splitlines()):
        if "error" in line.lower() or "failed" in line.lower():
            return line.strip()
    return None


def _physical_cores() -> int:
    try:
        import psutil

        return int(psutil.cpu_count(logical=False) or os.cpu_count() or 1)
    except ImportError:
        return os.cpu_count() or 1
