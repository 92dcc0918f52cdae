"""Framing over real pipes."""

from __future__ import annotations

import os
import threading

import pytest

from localchat.core.chat.messages import ContentChunk, ErrorChunk, StatsChunk, TurnStats
from localchat.core.engine.protocol import Channel, ChannelClosed, chunk_to_event, event_to_chunk


def test_frames_roundtrip_and_eof() -> None:
    r1, w1 = os.pipe()
    a = Channel(os.open(os.devnull, os.O_RDONLY), w1)
    b = Channel(r1, os.open(os.devnull, os.O_WRONLY))
    big = {"text": "é" * 300_000}
    t = threading.Thread(target=lambda: (a.send({"n": 1}), a.send(big), a.close()))
    t.start()
    assert b.recv() == {"n": 1}
    assert b.recv() == big
    with pytest.raises(ChannelClosed):
        b.recv()
    t.join()
    b.close()


def test_chunks_roundtrip() -> None:
    stats = TurnStats(3, 4, 0.1, 50.0, 0.3, "stop")
    for chunk in (ContentChunk("r", "hi"), StatsChunk("r", stats), ErrorChunk("r", "out_of_memory", "boom")):
        assert event_to_chunk(chunk_to_event(chunk)) == chunk


def test_an_unknown_error_kind_from_a_frame_is_internal() -> None:
    for kind in ("crashed", "", None, 7, ["context_overflow"]):
        chunk = event_to_chunk({"ev": "error", "id": "r", "kind": kind, "message": "boom"})
        assert chunk == ErrorChunk("r", "internal", "boom")
    assert event_to_chunk({"ev": "error", "id": "r", "kind": "context_overflow", "message": "m"}).kind == \
        "context_overflow"
