"""The conversation view, as a small package.

- ``display.py``: what one message shows (``DisplayMessage``) and its labels; no widgets.
- ``rich_text.py``: read-only Markdown widgets (prose, code blocks with Copy) that load nothing.
- ``messages.py``: one widget per message; they emit signals and never reach into the view.
- ``welcome.py``: the empty conversation (suggestions, or the no-model welcome).
- ``view.py``: ``ChatView``, the scrolling column that builds, streams and re-renders messages.
"""
