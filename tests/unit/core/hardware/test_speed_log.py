"""The measured decode speed: every finished turn records it (real worker, starter model); the record is bounded,
and a corrupt or unwritable record is no error."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from localchat.core.chat.conversation import TurnRequest
from localchat.core.chat.messages import ChatMessage, SamplingParams
from localchat.core.chat.turn import run_turn
from localchat.core.engine.client import EngineClient
from localchat.core.engine.protocol import LoadOptions
from localchat.core.hardware.speed_log import FILE_NAME, KEEP, measured_decode, record_decode
from localchat.paths import Paths

GREEDY = SamplingParams(max_tokens=24, temperature=0.0, seed=3)
STORY = (ChatMessage("user", "Write a story about a lighthouse keeper."),)


def test_record_keeps_the_last_turns_and_ignores_short_ones(tmp_path: Path) -> None:
    for v in (10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0):
        record_decode(tmp_path, "/models/m-Q4_K_M.gguf", v, completion_tokens=50, n_gpu_layers=3)
    record_decode(tmp_path, "m-Q4_K_M.gguf", 999.0, completion_tokens=2)  # too short to say anything
    record_decode(tmp_path, "m-Q4_K_M.gguf", 0.0, completion_tokens=50)
    m = measured_decode(tmp_path, "m-Q4_K_M.gguf")
    assert m is not None and m.turns == KEEP and m.tokens_per_s == 50.0 and m.n_gpu_layers == 3
    assert m.label == "50 tok/s measured" and measured_decode(tmp_path, "other.gguf") is None


def test_a_corrupt_or_unwritable_record_is_no_error(tmp_path: Path) -> None:
    (tmp_path / FILE_NAME).write_text("{not json", encoding="utf-8")
    assert measured_decode(tmp_path, "m.gguf") is None
    record_decode(tmp_path, "m.gguf", 5.0, completion_tokens=20)
    assert measured_decode(tmp_path, "m.gguf").label == "5.0 tok/s measured"  # type: ignore[union-attr]
    blocked = tmp_path / "file-not-dir"
    blocked.write_text("x")
    record_decode(blocked, "m.gguf", 5.0, completion_tokens=20)  # no exception


@pytest.fixture(scope="module")
def client(starter_model: Path) -> Iterator[EngineClient]:
    c = EngineClient(isolation="off")
    c.start()
    c.load(starter_model, LoadOptions(n_ctx=512))
    yield c
    c.close()


@pytest.mark.slow
def test_each_finished_turn_records_its_decode_speed_for_the_loaded_file(client: EngineClient,
                                                                         starter_model: Path) -> None:
    data_dir = Paths.default().data_dir  # the test's LOCALCHAT_HOME
    assert measured_decode(data_dir, starter_model.name) is None
    turns = [run_turn(client, TurnRequest(STORY, GREEDY)) for _ in range(2)]
    m = measured_decode(data_dir, starter_model.name)
    assert m is not None and m.turns == 2
    speeds = sorted(t.stats.decode_tokens_per_s for t in turns if t.stats is not None)
    assert m.tokens_per_s == pytest.approx(sum(speeds) / 2, rel=1e-3)  # the median of two
    assert m.n_gpu_layers == client.info.n_gpu_layers  # type: ignore[union-attr]


@pytest.mark.slow
def test_localchat_chat_records_into_the_home_given_by_flag(starter_model: Path, tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    home = tmp_path / "flag-home"
    env = {k: v for k, v in os.environ.items() if k != "LOCALCHAT_HOME"}
    proc = subprocess.run([sys.executable, "-m", "localchat", "--home", str(home), "chat", "--model",
                           str(starter_model), "--max-tokens", "24", "--seed", "1", "Tell me a story."],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    m = measured_decode(home / "data", starter_model.name)
    assert m is not None and m.turns == 1 and m.tokens_per_s > 0
