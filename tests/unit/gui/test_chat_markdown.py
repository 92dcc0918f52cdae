"""Model output → segments: prose HTML for Qt, code blocks apart, nothing remote, no forged actions."""

from __future__ import annotations

from localchat.gui.chat.markdown import MarkdownRenderer
from localchat.gui.theme import DARK, LIGHT


def test_top_level_code_is_its_own_segment_and_nested_code_keeps_a_copy_link() -> None:
    r = MarkdownRenderer(LIGHT)
    segs = r.segments("Intro **bold**\n\n```python\nprint(1)\n```\n\n1. step\n   ```bash\n   ls -l\n   ```\n\nEnd")
    assert [s.kind for s in segs] == ["prose", "code", "prose"]
    assert "<strong>bold</strong>" in segs[0].html
    assert (segs[1].code, segs[1].lang) == ("print(1)", "python")
    assert segs[2].inline_code == ("ls -l",) and 'href="lc-copy:0"' in segs[2].html and "End" in segs[2].html


def test_an_unterminated_fence_streams_as_code() -> None:
    segs = MarkdownRenderer(LIGHT).segments("Here:\n\n```js\nconst a = 1;\nconst b")
    assert segs[-1].kind == "code" and segs[-1].code == "const a = 1;\nconst b" and segs[-1].lang == "js"


def test_nothing_remote_and_only_web_links() -> None:
    r = MarkdownRenderer(DARK)
    html = r.render_html("![t](https://e.com/p.png) <img src='http://x/y'> <script>x</script> "
                         "[web](https://example.org) [mail](mailto:a@b.c) [forged](lc-copy:3) [js](javascript:x) "
                         "[file](file:///etc/passwd)")
    assert "<img" not in html and "<script" not in html and "image not loaded: t" in html
    assert 'href="https://example.org"' in html and 'href="mailto:a@b.c"' in html
    for bad in ("lc-copy:3", "javascript:", "file:"):
        assert f'href="{bad}' not in html
    assert "forged" in html and "file" in html  # the text stays, the link goes
    assert html.count("<a ") == html.count("</a>") == 2


def test_highlighting_is_cached_and_unknown_languages_are_plain() -> None:
    r = MarkdownRenderer(LIGHT)
    a = r.highlighter.html("def f():\n    return 1", "python")
    assert "<span" in a and r.highlighter.html("def f():\n    return 1", "python") is a
    assert r.highlighter.html("<b>x</b>", "no-such-language") == "&lt;b&gt;x&lt;/b&gt;"


STREAM = ("# Title\n\nFirst paragraph with **bold** text that runs on for a while. " * 12 + "\n\n"
          "```python\nprint('a')\n```\n\n- item one\n- item two\n\n  still item two\n\nA closing paragraph. " * 8)


def _render(segments) -> list[tuple[str, str]]:  # type: ignore[no-untyped-def]
    return [(s.kind, s.code if s.kind == "code" else s.html) for s in segments]


def test_streaming_split_renders_like_a_full_parse_and_never_cuts_into_a_list() -> None:
    r = MarkdownRenderer(LIGHT)
    cuts = 0
    for end in range(200, len(STREAM), 97):  # every prefix a stream passes through
        text = STREAM[:end]
        stable, rest, cut = r.split_stable(text, min_chars=300)
        if cut:
            cuts += 1
            assert text[:cut].endswith("\n") and len(text[:cut]) >= 300
            assert _render(stable) == _render(r.segments(text[:cut]))
            assert _render(rest) == _render(r.segments(text[cut:]))
            before = text[:cut].rstrip("\n").splitlines()[-1]
            assert not before.lstrip().startswith(("- ", "still item"))  # lists may continue: never cut after one
        # the pieces carry the same code blocks and the same words as one parse of the whole
        whole = r.segments(text)
        assert [s.code for s in stable + rest if s.kind == "code"] == [s.code for s in whole if s.kind == "code"]
    assert cuts > 10
    stable, rest, cut = r.split_stable("short text\n\nmore", min_chars=300)
    assert (stable, cut) == ([], 0) and len(rest) == 1
