"""The Qt-free conversation core: turn requests, stop sequences, cancelling, saving — against the real worker."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from localchat.core.chat.conversation import (
    TurnRequest,
    conversation_turn,
    effective_sampling,
    history_for,
    model_history,
    question_turn,
)
from localchat.core.chat.messages import (
    ChatMessage,
    ContentChunk,
    ErrorChunk,
    NoticeChunk,
    ReasoningChunk,
    SamplingParams,
    StatsChunk,
    TurnStats,
)
from localchat.core.chat.store import ConversationStore, Message
from localchat.core.chat.turn import StopMatcher, Turn, TurnOutcome, run_turn, stream_turn
from localchat.core.engine.client import EngineClient
from localchat.core.engine.protocol import LoadOptions
from localchat.settings import Settings

GREEDY = SamplingParams(max_tokens=40, temperature=0.0, seed=3)
FRANCE = (ChatMessage("user", "What is the capital of France? Answer in one sentence."),)
STORY = (ChatMessage("user", "Write a long story about a lighthouse keeper and the sea."),)


# -- rules (no worker) --------------------------------------------------------------------------------------


def test_sampling_layers_and_the_seed_only_where_asked() -> None:
    s = Settings(temperature=0.9, top_p=0.8, max_tokens=300)
    assert effective_sampling(s, {"seed": 5}, is_r1=False).seed is None  # a chat's settings carry no seed
    q = question_turn("hi", "", s, is_r1=True, overrides={"seed": 5, "temperature": None, "max_tokens": 9})
    assert (q.sampling.seed, q.sampling.temperature, q.sampling.top_p, q.sampling.max_tokens) == (5, 0.6, 0.95, 9)


def test_histories_fold_and_strip_the_same_way_for_every_caller() -> None:
    q = question_turn("Is 7 prime?", "Be brief.", Settings(), is_r1=True)
    assert q.messages == (ChatMessage("user", "Be brief.\n\nIs 7 prime?"),)
    api = model_history([ChatMessage("system", "Be brief."), ChatMessage("user", "q"),
                         ChatMessage("assistant", "<think>secret</think>\n\nA"), ChatMessage("user", "q2")], True)
    assert api == [ChatMessage("user", "Be brief.\n\nq"), ChatMessage("assistant", "A"), ChatMessage("user", "q2")]
    rows = [Message(1, 1, "user", "q"), Message(2, 1, "assistant", "", reasoning="only thought"),
            Message(3, 1, "user", "q2")]
    assert history_for(rows, "", False) == [ChatMessage("user", "q"), ChatMessage("user", "q2")]
    turn = conversation_turn(rows, "S", {"temperature": 0.1}, Settings(), is_r1=False)
    assert turn.messages[0] == ChatMessage("system", "S") and turn.sampling.temperature == 0.1
    assert turn.request_id != conversation_turn(rows, "S", {}, Settings(), is_r1=False).request_id


def test_stop_matcher_cuts_across_pieces_and_holds_back_only_a_possible_start() -> None:
    m = StopMatcher(["END", "\n\n"])
    assert m.feed("Hello E") == "Hello "  # "E" could start "END"
    assert m.feed("x") == "Ex"
    assert m.feed("ample\n") == "ample"
    assert m.feed("\nmore") == "" and m.hit
    assert m.feed("ignored") == "" and m.flush() == ""
    n = StopMatcher(["END"])
    assert n.feed("abcEN") == "abc" and n.flush() == "EN" and not n.hit


def test_turn_gathers_checkpoints_and_saves(tmp_path: Path) -> None:
    store = ConversationStore(tmp_path / "c.sqlite3")
    conv = store.create("t")
    store.add_message(conv.id, "user", "Is 7 prime?")
    now = [0.0]
    turn = Turn("r", "m", store=store, conversation_id=conv.id, checkpoint_s=2.0, clock=lambda: now[0])
    assert turn.feed(ContentChunk("other", "x")).kind == "ignored"  # a superseded request
    assert turn.feed(ReasoningChunk("r", "think")).kind == "reasoning"
    assert not turn.checkpoint_due()
    now[0] = 2.5
    assert turn.checkpoint_due()
    turn.checkpoint()
    row = store.messages(conv.id)[-1]
    assert (row.reasoning, row.status, row.stats) == ("think", "stopped", {"model": "m"}) and turn.row_id == row.id
    turn.feed(ContentChunk("r", "Yes."))
    update = turn.feed(StatsChunk("r", TurnStats(3, 2, 0.1, 9.0, 0.2, "stop")))
    assert update.kind == "end" and update.outcome is not None and update.outcome.status == "complete"
    turn.finish(update.outcome)
    rows = store.messages(conv.id)
    assert len(rows) == 2 and (rows[1].content, rows[1].status) == ("Yes.", "complete")
    assert rows[1].stats["model"] == "m" and rows[1].stats["completion_tokens"] == 2
    failed = Turn("e", "m", store=store, conversation_id=conv.id)
    out = failed.feed(ErrorChunk("e", "context_overflow", "Too long."))
    assert out.outcome is not None and "raise the context length" in out.outcome.error
    failed.finish(out.outcome)
    assert store.messages(conv.id)[-1].status == "error"  # an error is kept even without text
    crashed = Turn("c").crashed("the inference worker was killed by SIGKILL")
    assert crashed == TurnOutcome("error", {}, crashed.error) and "SIGKILL" in crashed.error
    store.close()


# -- with the real worker and the starter model --------------------------------------------------------------

@pytest.fixture(scope="module")
def client(starter_model: Path) -> Iterator[EngineClient]:
    c = EngineClient(isolation="off")
    c.start()
    c.load(starter_model, LoadOptions(n_ctx=512))
    yield c
    c.close()


@pytest.mark.slow
def test_run_turn_answers_with_stats(client: EngineClient) -> None:
    seen: list[str] = []
    turn = run_turn(client, TurnRequest(FRANCE, GREEDY), on_update=lambda u: seen.append(u.kind))
    assert "paris" in turn.content.lower() and turn.error is None
    assert turn.stats is not None and turn.stats.completion_tokens > 0 and turn.outcome is not None
    assert seen[0] == "content" and seen[-1] == "end"


@pytest.mark.slow
def test_stop_sequence_ends_the_answer_before_it(client: EngineClient) -> None:
    whole = run_turn(client, TurnRequest(FRANCE, GREEDY))
    full = whole.content
    words = full.split()
    assert len(words) >= 3, full
    stop = words[2]
    cut = run_turn(client, TurnRequest(FRANCE, GREEDY, stop=(stop, "never-there")))
    assert cut.content == full[: full.index(stop)]  # greedy: the same text, up to the stop sequence
    assert cut.stats is not None and cut.stats.finish_reason == "stop"


@pytest.mark.slow
def test_closing_the_stream_cancels_the_turn_and_frees_the_engine(client: EngineClient) -> None:
    long = TurnRequest(STORY, SamplingParams(max_tokens=400, temperature=0.8, seed=1))
    stream = stream_turn(client, long)
    first = [next(stream) for _ in range(3)]
    assert all(isinstance(c, ContentChunk) for c in first)
    stream.close()  # a client that hung up: the worker is cancelled and the turn read to its end
    assert client._current is None
    nxt = run_turn(client, TurnRequest(FRANCE, GREEDY))
    assert nxt.stats is not None and nxt.stats.finish_reason in ("stop", "length") and nxt.content


@pytest.mark.slow
def test_history_that_does_not_fit_is_an_error_when_it_may_not_be_dropped(client: EngineClient) -> None:
    history: list[ChatMessage] = []
    for i in range(8):
        history += [ChatMessage("user", f"Tell me fact {i} about the moon. " + "moon " * 40),
                    ChatMessage("assistant", "The moon is far away. " * 8)]
    history.append(ChatMessage("user", "And the sun?"))
    sampling = SamplingParams(max_tokens=8, seed=2)
    refused = list(stream_turn(client, TurnRequest(tuple(history), sampling, drop_history=False)))
    assert len(refused) == 1 and isinstance(refused[0], ErrorChunk) and refused[0].kind == "context_overflow"
    assert "left out" in refused[0].message
    kept = list(stream_turn(client, TurnRequest(tuple(history), sampling)))  # the window's way: drop, say so
    assert isinstance(kept[0], NoticeChunk) and isinstance(kept[-1], StatsChunk)
    assert kept[-1].stats.dropped_messages >= 2
