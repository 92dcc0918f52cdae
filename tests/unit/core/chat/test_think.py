"""The streaming <think> splitter on crafted streams."""

from __future__ import annotations

import random

import pytest

from localchat.core.chat.think import ThinkSplitter, split_complete


def run(pieces: list[str], in_think: bool = False) -> tuple[str, str]:
    s = ThinkSplitter(in_think)
    out = [p for piece in pieces for p in s.feed(piece)] + s.finish()
    return ("".join(t for k, t in out if k == "reasoning"), "".join(t for k, t in out if k == "content"))


def test_no_tags_is_all_content() -> None:
    assert run(["Hello", " world", "!"]) == ("", "Hello world!")


def test_whole_block() -> None:
    assert run(["<think>plan it</think>The answer."]) == ("plan it", "The answer.")


@pytest.mark.parametrize("cut", [["<thi", "nk>abc</th", "ink>xyz"], ["<", "t", "h", "i", "n", "k", ">", "a", "<", "/",
                                                                      "think", ">", "b"]])
def test_tags_split_across_chunks(cut: list[str]) -> None:
    reasoning, content = run(cut)
    assert reasoning in ("abc", "a") and content in ("xyz", "b")


def test_every_split_point_gives_the_same_result() -> None:
    text = "  <think>\nStep 1: think.\nStep 2: more.\n</think>\n\nFinal: 42 <b>bold</b>"
    expected = split_complete(text)
    assert expected == ("\nStep 1: think.\nStep 2: more.\n", "\n\nFinal: 42 <b>bold</b>")
    rng = random.Random(5)
    for _ in range(200):
        cuts = sorted(rng.sample(range(1, len(text)), rng.randint(1, 12)))
        pieces = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)]
        assert run(pieces) == expected


def test_missing_opening_tag_r1_template() -> None:
    # R1 templates end the prompt with "<think>\n": the stream only holds the closing tag.
    assert run(["Let me see", " ... </thi", "nk>", "Paris."], in_think=True) == ("Let me see ... ", "Paris.")


def test_unterminated_think_stays_reasoning() -> None:
    assert run(["<think>still thinking", " when the stream ended </th"]) == (
        "still thinking when the stream ended </th", "")


def test_think_tag_later_in_content_is_content() -> None:
    assert run(["Use the ", "<think> tag to mark reasoning."]) == ("", "Use the <think> tag to mark reasoning.")


def test_lone_angle_bracket_is_not_held_back_forever() -> None:
    s = ThinkSplitter()
    assert s.feed("a < b") == [("content", "a < b")]
