"""The inference worker with the real starter model: answers, cancels, crashes, bad files, long prompts."""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

import pytest

from localchat.core.chat.messages import (
    ChatMessage,
    ContentChunk,
    ErrorChunk,
    NoticeChunk,
    SamplingParams,
    StatsChunk,
    TurnResult,
)
from localchat.core.engine.client import EngineClient
from localchat.core.engine.protocol import LoadOptions
from localchat.errors import InvalidModelFile, WorkerCrashed

pytestmark = pytest.mark.slow

LONG_ANSWER = SamplingParams(max_tokens=400, seed=11, temperature=0.8)
QUESTION = [ChatMessage("user", "Write a long story about a lighthouse keeper and the sea.")]


@pytest.fixture(scope="module")
def client(starter_model: Path):
    c = EngineClient(isolation="off")
    c.start()
    c.load(starter_model, LoadOptions(n_ctx=4096))
    yield c
    c.close()


def run_turn(client: EngineClient, messages, sampling=None) -> TurnResult:
    result = TurnResult()
    for chunk in client.chat(messages, sampling or SamplingParams(max_tokens=48, seed=1)):
        result.add(chunk)
    return result


def test_answers_a_question(client: EngineClient) -> None:
    result = run_turn(client, [ChatMessage("user", "What is the capital of France? Answer in one sentence.")],
                      SamplingParams(max_tokens=48, temperature=0.0))
    assert result.error is None
    assert "paris" in result.text.lower()
    st = result.stats
    assert st is not None
    assert st.prompt_tokens > 5
    assert 0 < st.completion_tokens <= 48
    assert st.ttft_s > 0 and st.decode_tokens_per_s > 0
    assert st.finish_reason in ("stop", "length")


def test_same_seed_same_answer(client: EngineClient) -> None:
    q = [ChatMessage("user", "Name three colours.")]
    assert run_turn(client, q).text == run_turn(client, q).text


def test_same_seed_same_text_cold_warm_and_after_another_turn(starter_model: Path) -> None:
    # longer than one prompt chunk, so the warm turns really reuse part of the KV cache
    q = [ChatMessage("user", "Summarise: " + " ".join(f"item{i} is red." for i in range(50)))]
    sampling = SamplingParams(max_tokens=32, seed=3, temperature=0.9)
    with EngineClient(isolation="off") as c:
        c.load(starter_model, LoadOptions(n_ctx=2048))
        cold = run_turn(c, q, sampling)
        warm = run_turn(c, q, sampling)
        run_turn(c, [ChatMessage("user", "Name three colours.")], sampling)
        after_other = run_turn(c, q, sampling)
    assert cold.error is None and cold.text.strip()
    assert cold.stats is not None and cold.stats.prompt_tokens > 300
    assert warm.text == cold.text
    assert after_other.text == cold.text


def test_follow_up_same_text_warm_cold_and_regenerated(starter_model: Path) -> None:
    # the second turn reuses the first's cache (its answer evaluated after the turn); a cold worker agrees
    sampling = SamplingParams(max_tokens=24, seed=4, temperature=0.9)
    q1 = [ChatMessage("user", "Name three colours.")]
    with EngineClient(isolation="off") as c:
        c.load(starter_model, LoadOptions(n_ctx=2048))
        first = run_turn(c, q1, sampling)
        assert first.error is None and first.text.strip()
        follow_up = [*q1, ChatMessage("assistant", first.text), ChatMessage("user", "And three animals?")]
        warm = run_turn(c, follow_up, sampling)
        regenerated = run_turn(c, follow_up, sampling)
        run_turn(c, [ChatMessage("user", "Say hi.")], sampling)
        after_other = run_turn(c, follow_up, sampling)
    with EngineClient(isolation="off") as c:
        c.load(starter_model, LoadOptions(n_ctx=2048))
        cold = run_turn(c, follow_up, sampling)
    assert cold.error is None and cold.text.strip()
    assert warm.text == cold.text
    assert regenerated.text == cold.text
    assert after_other.text == cold.text


def test_load_reports_what_llama_cpp_did(client: EngineClient, starter_model: Path) -> None:
    info = client.info
    assert info is not None
    assert info.n_ctx == 4096 and info.n_layers == 30 and info.n_ctx_train == 8192
    assert info.chat_template and "<|im_start|>" in info.chat_template
    assert not info.is_r1
    assert "llama_model_loader" in info.load_log or "print_info" in info.load_log


def test_context_past_training_is_noted_once(starter_model: Path) -> None:
    with EngineClient(isolation="off") as c:
        c.load(starter_model, LoadOptions(n_ctx=8448))  # the starter was trained for 8192
        first = run_turn(c, [ChatMessage("user", "Say hi.")])
        second = run_turn(c, [ChatMessage("user", "Say hi.")])
    assert first.notices == ["the 8448-token context is more than this model was trained for (8192 tokens): "
                             "answers past 8192 tokens may degrade"]
    assert second.notices == [] and second.error is None


def test_load_progress_is_reported(starter_model: Path) -> None:
    seen: list[float] = []
    with EngineClient(isolation="off") as c:
        c.load(starter_model, LoadOptions(n_ctx=512), progress=seen.append)
    assert seen and seen[-1] == pytest.approx(1.0)
    assert seen == sorted(seen)


def test_cancel_mid_stream_then_next_turn_works(client: EngineClient) -> None:
    result = TurnResult()
    for chunk in client.chat(QUESTION, LONG_ANSWER):
        result.add(chunk)
        if isinstance(chunk, ContentChunk) and len(result.text) > 20:
            client.cancel()
    assert result.stats is not None and result.stats.finish_reason == "cancelled"
    # The worker stops within a few tokens of the cancel, far short of the 400 asked for.
    assert result.stats.completion_tokens < 100
    again = run_turn(client, [ChatMessage("user", "Say hi.")])
    assert again.error is None and again.text.strip()


def test_cancel_during_prompt_processing(client: EngineClient) -> None:
    # ~3000 prompt tokens: llama.cpp is still inside llama_decode when the cancel lands.
    long_prompt = "Summarise this: " + " ".join(f"item{i} is blue." for i in range(480))
    timer = threading.Timer(0.05, client.cancel)
    result = TurnResult()
    timer.start()
    try:
        for chunk in client.chat([ChatMessage("user", long_prompt)], LONG_ANSWER):
            result.add(chunk)
    finally:
        timer.cancel()
    assert result.stats is not None
    assert result.stats.finish_reason == "cancelled"
    assert result.stats.completion_tokens == 0
    assert result.stats.prompt_tokens > 1500
    again = run_turn(client, [ChatMessage("user", "What is 2 + 2?")])
    assert again.error is None and again.text.strip()


def test_cancel_before_the_turn_starts(client: EngineClient) -> None:
    gen = client.chat(QUESTION, LONG_ANSWER, request_id="early")
    client._current = "early"  # the request is not sent until the generator first runs
    client.cancel()
    result = TurnResult()
    for chunk in gen:
        result.add(chunk)
    assert result.stats is not None and result.stats.finish_reason == "cancelled"


def test_kill_mid_stream_reports_crash_and_keeps_partial(starter_model: Path) -> None:
    c = EngineClient(isolation="off")
    c.start()
    c.load(starter_model, LoadOptions(n_ctx=1024))
    received = ""
    with pytest.raises(WorkerCrashed) as err:
        for chunk in c.chat(QUESTION, LONG_ANSWER):
            if isinstance(chunk, ContentChunk):
                received += chunk.text
                if len(received) > 30:
                    assert c.pid is not None
                    os.kill(c.pid, signal.SIGKILL)
    assert err.value.signal == signal.SIGKILL
    assert err.value.partial_text == received
    assert "SIGKILL" in str(err.value)
    assert not c.alive
    with pytest.raises(WorkerCrashed):
        list(c.chat(QUESTION))
    c.close()
    # a new worker works
    with EngineClient(isolation="off") as fresh:
        fresh.load(starter_model, LoadOptions(n_ctx=512))
        assert run_turn(fresh, [ChatMessage("user", "Say hi.")]).text.strip()


def test_context_overflow_is_refused_not_crashed(starter_model: Path) -> None:
    with EngineClient(isolation="off") as c:
        c.load(starter_model, LoadOptions(n_ctx=256))
        chunks = list(c.chat([ChatMessage("user", "word " * 600)], SamplingParams(max_tokens=16)))
        assert isinstance(chunks[-1], ErrorChunk) and chunks[-1].kind == "context_overflow"
        assert "256" in chunks[-1].message
        # old turns are dropped (with a notice) to make room for a new question
        history = []
        for i in range(6):
            history += [ChatMessage("user", f"Tell me fact {i} about the moon. " + "moon " * 40),
                        ChatMessage("assistant", "The moon is far away. " * 8)]
        history.append(ChatMessage("user", "And the sun?"))
        result = TurnResult()
        for chunk in c.chat(history, SamplingParams(max_tokens=16, seed=2)):
            result.add(chunk)
        assert result.error is None
        assert result.notices and "left out" in result.notices[0]
        assert result.stats is not None and result.stats.dropped_messages >= 2
        assert result.stats.prompt_tokens < 256


@pytest.mark.parametrize("content", [b"", os.urandom(4096), b"This is a text file, not a model.\n" * 20,
                                     "truncated"], ids=["empty", "random", "text", "truncated"])
def test_invalid_model_files_give_a_clear_error(tmp_path: Path, starter_model: Path, content) -> None:
    bad = tmp_path / "bad.gguf"
    if content == "truncated":
        with open(starter_model, "rb") as src:
            bad.write_bytes(src.read(1_000_000))
    else:
        bad.write_bytes(content)
    with EngineClient(isolation="off") as c:
        with pytest.raises(InvalidModelFile) as err:
            c.load(bad)
        assert "bad.gguf" in str(err.value)
        # the worker survived and still loads a good model
        c.load(starter_model, LoadOptions(n_ctx=512))
        assert c.ping()


def test_chat_without_a_model_is_an_error_chunk() -> None:
    with EngineClient(isolation="off") as c:
        chunks = list(c.chat([ChatMessage("user", "hi")]))
    assert len(chunks) == 1 and isinstance(chunks[0], ErrorChunk) and chunks[0].kind == "no_model"


def test_chunks_of_a_turn_all_carry_its_request_id(client: EngineClient) -> None:
    chunks = list(client.chat([ChatMessage("user", "Hi")], SamplingParams(max_tokens=8), request_id="r-42"))
    assert {c.request_id for c in chunks} == {"r-42"}
    assert isinstance(chunks[-1], StatsChunk)
    assert not any(isinstance(c, NoticeChunk) for c in chunks)
