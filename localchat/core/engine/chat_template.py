"""A model's chat template, rendered in a sandbox with a budget, and split into markup and message text.

A GGUF file carries its chat template as Jinja source: it is code from the model's author, so it runs in Jinja's
immutable sandbox, with a capped ``range``, capped integer arguments and operator results, an output cap and a
deadline (a line tracer on the template's own frames, so a loop over anything stops). Breaking any of these raises
:class:`ChatTemplateError` naming the model's chat template.

``render_parts`` also says which characters of the prompt are message text: the template is rendered a second
time with a sentinel in place of each message's content, and the markup between sentinels is the template's own.
The runtime tokenises only that markup with special tokens enabled, so a user cannot type ``<|im_end|>`` into a
message and start a turn of their own.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime
from types import FrameType
from typing import Any

import jinja2
import jinja2.ext
import jinja2.nodes
import jinja2.parser
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import Namespace

from localchat.core.chat.messages import ChatMessage
from localchat.errors import LocalChatError

log = logging.getLogger(__name__)

MAX_RANGE = 100_000  # one range() call (Jinja's own sandbox limit)
MAX_STEPS = 250_000  # range() items per render, all loops together
MAX_INT_ARG = 1_000_000  # integer arguments to functions and filters (widths, repeat counts)
MAX_OUTPUT = 4 * 1024 * 1024  # characters, plus room for the messages themselves (see ChatTemplate.render)
TIME_BUDGET_S = 2.0  # templates render in well under a millisecond; this is a backstop

_TRACE_FILE = "<template>"  # co_filename of code Jinja compiles from a string


class ChatTemplateError(LocalChatError):
    """The model's chat template failed, ran too long or produced too much."""


class _Budget:
    def __init__(self, max_output: int, time_budget_s: float) -> None:
        self.deadline = time.monotonic() + time_budget_s
        self.time_budget_s = time_budget_s
        self.steps = 0
        self.max_output = max_output

    def step(self) -> None:
        self.steps += 1
        if self.steps > MAX_STEPS:
            raise ChatTemplateError(f"the model's chat template runs too long: more than {MAX_STEPS} loop steps")
        if not self.steps & 0x3FF:
            self.check_time()

    def check_time(self) -> None:
        if time.monotonic() > self.deadline:
            raise ChatTemplateError(f"the model's chat template runs too long: more than {self.time_budget_s:g} s")

    def check_size(self, value: Any) -> None:
        if isinstance(value, (str, bytes, list, tuple, dict)) and len(value) > self.max_output:
            raise ChatTemplateError(f"the model's chat template builds a value of {len(value)} items, more than "
                                    f"{self.max_output}")
        if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 4096:
            raise ChatTemplateError("the model's chat template computes an integer of more than 4096 bits")


class _Range(Sequence[int]):
    """``range`` for templates: indexable and sized like the real one, but every item it yields costs a step."""

    def __init__(self, r: range, budget: _Budget) -> None:
        self._r = r
        self._budget = budget

    def __len__(self) -> int:
        return len(self._r)

    def __getitem__(self, i: Any) -> Any:
        item = self._r[i]
        return _Range(item, self._budget) if isinstance(item, range) else item

    def __iter__(self) -> Iterator[int]:
        for i in self._r:
            self._budget.step()
            yield i

    def __reversed__(self) -> Iterator[int]:
        for i in reversed(self._r):
            self._budget.step()
            yield i

    def __repr__(self) -> str:
        return repr(self._r)


def _namespace_class(budget: _Budget) -> type[Namespace]:
    """``namespace()`` whose attributes cannot grow past the output cap (a loop doubling a string otherwise)."""

    class _Namespace(Namespace):
        def __setitem__(self, name: str, value: Any) -> None:
            budget.check_size(value)
            super().__setitem__(name, value)

    return _Namespace


def _range_function(budget: _Budget) -> Callable[..., _Range]:
    def template_range(*args: int) -> _Range:
        r = range(*args)
        if len(r) > MAX_RANGE:
            raise ChatTemplateError(f"the model's chat template asks for a range of {len(r)} items "
                                    f"(limit {MAX_RANGE})")
        return _Range(r, budget)

    return template_range


def _check_args(args: Sequence[Any], kwargs: Mapping[str, Any]) -> None:
    for a in (*args, *kwargs.values()):
        if isinstance(a, int) and not isinstance(a, bool) and abs(a) > MAX_INT_ARG:
            raise ChatTemplateError(f"the model's chat template passes {a} to a function (limit {MAX_INT_ARG})")


class _Environment(ImmutableSandboxedEnvironment):
    intercepted_binops = frozenset({"*", "**", "+", "//", "%"})
    budget: _Budget | None = None  # set for the duration of one render (renders run on one thread)

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        budget = self.budget
        if budget is not None:
            budget.check_time()
            if operator == "**" and isinstance(left, int) and isinstance(right, int) and abs(right) > 4096:
                raise ChatTemplateError("the model's chat template raises a number to a power above 4096")
            if operator == "*":
                n = right if isinstance(left, (str, list, tuple)) else left
                seq = left if isinstance(left, (str, list, tuple)) else right
                if isinstance(seq, (str, list, tuple)) and isinstance(n, int) and len(seq) * n > budget.max_output:
                    raise ChatTemplateError("the model's chat template repeats a value past the output limit")
        result = super().call_binop(context, operator, left, right)
        if budget is not None:
            budget.check_size(result)
        return result

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        budget = __self.budget
        if budget is not None:
            budget.check_time()
            _check_args(args, kwargs)
        result = super().call(__context, __obj, *args, **kwargs)
        if budget is not None:
            budget.check_size(result)
        return result


class _IgnoreGenerationTags(jinja2.ext.Extension):
    """Hugging Face's ``{% generation %}`` marks assistant text for training masks: render its body as is."""

    tags = {"generation"}

    def parse(self, parser: jinja2.parser.Parser) -> list[jinja2.nodes.Node]:
        parser.stream.skip(1)
        return parser.parse_statements(("name:endgeneration",), drop_needle=True)


def _tojson(x: Any, ensure_ascii: bool = False, indent: int | None = None,
            separators: tuple[str, str] | None = None, sort_keys: bool = False) -> str:
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def _raise_exception(message: str) -> None:
    raise ChatTemplateError(f"the model's chat template refused these messages: {message}")


def _strftime_now(fmt: str) -> str:
    return datetime.now().strftime(fmt)


def _guard_filter(f: Callable[..., Any], env: _Environment) -> Callable[..., Any]:
    skip = 2 if hasattr(f, "jinja_pass_arg") else 1  # the context/environment, then the filtered value

    def guarded(*args: Any, **kwargs: Any) -> Any:
        budget = env.budget
        if budget is None:  # Jinja folding a constant expression at compile time: leave it to the render
            raise jinja2.nodes.Impossible()
        budget.check_time()
        _check_args(args[skip:], kwargs)
        out = f(*args, **kwargs)
        budget.check_size(out)
        return out

    guarded.__dict__.update(getattr(f, "__dict__", {}))  # keeps Jinja's pass_context / pass_eval_ctx marks
    return guarded


class ChatTemplate:
    """One model's chat template, compiled once.

    Raises:
        ChatTemplateError: the template does not compile.
    """

    def __init__(self, source: str, *, bos_token: str = "", eos_token: str = "",
                 max_output: int = MAX_OUTPUT, time_budget_s: float = TIME_BUDGET_S) -> None:
        self.source = source
        self.bos_token = bos_token
        self.eos_token = eos_token
        self.max_output = max_output
        self.time_budget_s = time_budget_s
        env = _Environment(loader=jinja2.BaseLoader(), trim_blocks=True, lstrip_blocks=True,
                           extensions=[_IgnoreGenerationTags, jinja2.ext.loopcontrols])
        env.filters["tojson"] = _tojson
        env.filters = {name: _guard_filter(f, env) for name, f in env.filters.items()}
        self._env = env
        try:
            self._template = env.from_string(source)
        except jinja2.TemplateError as exc:
            raise ChatTemplateError(f"the model's chat template does not compile: {exc}") from exc

    def render(self, messages: Sequence[ChatMessage], add_generation_prompt: bool = True) -> str:
        """The prompt text for ``messages``."""
        return self._render([m.to_dict() for m in messages], add_generation_prompt,
                            sum(len(m.content) for m in messages))

    def render_parts(self, messages: Sequence[ChatMessage],
                     add_generation_prompt: bool = True) -> tuple[str, list[tuple[str, bool]]]:
        """The prompt text, and the same text as ``(piece, is_message_text)`` pieces in order."""
        prompt = self.render(messages, add_generation_prompt)
        nonce = secrets.token_hex(8)
        sentinels = [f"\ue000{nonce}:{i}\ue001" for i in range(len(messages))]
        marked = self._render([{"role": m.role, "content": s} for m, s in zip(messages, sentinels, strict=True)],
                              add_generation_prompt, sum(len(m.content) for m in messages))
        pattern = re.compile(f"\ue000{nonce}:(\\d+)\ue001")
        markup = pattern.split(marked)  # markup, index, markup, index, ..., markup
        contents = [messages[int(i)].content for i in markup[1::2]]
        parts = _interleave(markup[0::2], contents)
        if "".join(p for p, _ in parts) != prompt:
            # the template edits contents (trims them, drops a think block): find each edit in the real prompt
            parts = _align(prompt, markup[0::2], contents)
        return prompt, [(p, c) for p, c in parts if p]

    def _render(self, messages: list[dict[str, str]], add_generation_prompt: bool, content_chars: int) -> str:
        budget = _Budget(self.max_output + 4 * content_chars, self.time_budget_s)
        env = self._env
        env.budget = budget
        out: list[str] = []
        size = 0
        previous = sys.gettrace()
        sys.settrace(_tracer(budget))
        try:
            for piece in self._template.generate(
                    messages=messages, bos_token=self.bos_token, eos_token=self.eos_token,
                    add_generation_prompt=add_generation_prompt, raise_exception=_raise_exception,
                    strftime_now=_strftime_now, range=_range_function(budget),
                    namespace=_namespace_class(budget), tools=None, functions=None, tool_choice=None,
                    function_call=None):
                size += len(piece)
                if size > budget.max_output:
                    raise ChatTemplateError(f"the model's chat template produces more than {budget.max_output} "
                                            f"characters")
                out.append(piece)
        except ChatTemplateError:
            raise
        except RecursionError as exc:
            raise ChatTemplateError("the model's chat template recurses too deeply") from exc
        except MemoryError as exc:
            raise ChatTemplateError("the model's chat template ran out of memory") from exc
        except Exception as exc:  # jinja2 errors, and whatever the template's code raised
            raise ChatTemplateError(f"the model's chat template failed: {type(exc).__name__}: {exc}") from exc
        finally:
            sys.settrace(previous)
            env.budget = None
        return "".join(out)


def _tracer(budget: _Budget) -> Callable[[FrameType, str, Any], Any]:
    """A trace function that checks the deadline on each line of the template's own code, and nowhere else."""

    def local(frame: FrameType, event: str, arg: Any) -> Any:
        if event == "line":
            budget.check_time()
        return local

    def calls(frame: FrameType, event: str, arg: Any) -> Any:
        if frame.f_code.co_filename == _TRACE_FILE:
            budget.check_time()
            return local
        return None

    return calls


def _interleave(markup: list[str], contents: list[str]) -> list[tuple[str, bool]]:
    parts: list[tuple[str, bool]] = []
    for i, m in enumerate(markup):
        parts.append((m, False))
        if i < len(contents):
            parts.append((contents[i], True))
    return parts


def _edits(content: str) -> list[str]:
    """What templates commonly do to a message's content, most faithful first."""
    after_think = content.split("</think>")[-1]
    seen: list[str] = []
    for c in (content, content.strip(), content.lstrip(), content.rstrip(), after_think.strip(), after_think,
              after_think.lstrip(), ""):
        if c not in seen:
            seen.append(c)
    return seen


def _align(prompt: str, markup: list[str], contents: list[str]) -> list[tuple[str, bool]]:
    """Pieces of ``prompt`` when the template edited contents: each content is the first edit that makes the
    rest of the markup line up. An edit we cannot recognise keeps the content unedited (safe: still plain text)."""
    parts: list[tuple[str, bool]] = []
    pos = 0
    for i, m in enumerate(markup):
        if not prompt.startswith(m, pos):
            return _unrecognised(markup, contents)
        parts.append((m, False))
        pos += len(m)
        if i == len(contents):
            break
        following = markup[i + 1]
        for edit in _edits(contents[i]):
            if prompt.startswith(edit + following, pos):
                parts.append((edit, True))
                pos += len(edit)
                break
        else:
            return _unrecognised(markup, contents)
    return parts if pos == len(prompt) else _unrecognised(markup, contents)


def _unrecognised(markup: list[str], contents: list[str]) -> list[tuple[str, bool]]:
    log.warning("the chat template changes message text in a way not recognised; the model gets it unchanged")
    return _interleave(markup, contents)
