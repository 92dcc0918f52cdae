"""Model output → segments: prose HTML for Qt, code blocks apart, nothing remote, no forged actions."""

from __future__ import annotations

from localchat.gui.markdown_render import MarkdownRenderer
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
