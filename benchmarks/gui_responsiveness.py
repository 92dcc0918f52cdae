"""Does the window stay responsive? Longest event-loop stall while a 300-token answer streams, and cold start.

(a) Stall: a 5 ms QTimer runs on the GUI thread while the real worker streams a 300-token answer through the real
window (chat view, markdown re-render every 50 ms). The longest gap between ticks, beyond the 5 ms interval, is
the longest stall. The same is measured with the window idle, side by side, as the baseline.
(a') The same measure while a crafted answer — 1,200 tokens of reasoning, then 3,000 of prose, lists and code — streams
at 500 tokens/s into a conversation that already holds 40 messages: a far longer and faster stream than the
starter model produces, through the same chunk path, to show the re-render cost does not grow with the answer.
(b) Cold start: a fresh interpreter starts the app on a new home with the starter registered (so a model starts
loading at once, in the engine thread); time from process spawn to the first paint
event of the main window.

    xvfb-run -a .venv/bin/python benchmarks/gui_responsiveness.py     (or QT_QPA_PLATFORM=offscreen)
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHILD = r"""
import sys, time
from PySide6.QtCore import QEvent, QObject, QTimer
from PySide6.QtWidgets import QApplication
app = QApplication([])
from localchat.context import open_context
from localchat.gui.main_window import MainWindow
ctx = open_context(sys.argv[1])
ctx.ensure_starter()  # the real first start: a model is registered and starts loading
w = MainWindow(ctx)
class Painted(QObject):
    def eventFilter(self, obj, ev):
        if ev.type() == QEvent.Type.Paint:
            print(time.time(), flush=True)
            QTimer.singleShot(0, app.quit)
            obj.removeEventFilter(self)
        return False
f = Painted()
w.installEventFilter(f)
w.show()
app.exec()
w.shutdown()
"""


def cold_start(runs: int = 5) -> list[float]:
    out = []
    for _ in range(runs):
        home = tempfile.mkdtemp(prefix="lc-cold-")
        t0 = time.time()
        proc = subprocess.run([sys.executable, "-c", CHILD, home], capture_output=True, text=True, timeout=120)
        painted = float(proc.stdout.strip().splitlines()[0])
        out.append(painted - t0)
    return out


SYNTHETIC_BLOCK = (
    "## Step {n}\n\nThis paragraph explains the step in plain words, with **bold**, *italic* and `inline code`, "
    "long enough to wrap over several lines of the reading column so that layout has real work to do.\n\n"
    "- first point of the step\n- second point, a little longer than the first one\n- third point\n\n"
    "```python\ndef step_{n}(values: list[int]) -> int:\n    total = 0\n    for v in values:\n"
    "        if v % 2 == 0:\n            total += v * v\n    return total\n```\n\n"
)


def synthetic_tokens(n_tokens: int) -> list[str]:
    words: list[str] = []
    i = 0
    while len(words) < n_tokens:
        words += [w + " " for w in SYNTHETIC_BLOCK.format(n=i).split(" ")]
        i += 1
    return words[:n_tokens]


def open_long_conversation(w) -> float:  # type: ignore[no-untyped-def]
    """Open a conversation of 40 messages (each with a code block); returns how long the GUI thread was busy."""
    conv = w.store.create("Synthetic")
    for i in range(20):
        w.store.add_message(conv.id, "user", f"Question {i}: explain step {i}.")
        w.store.add_message(conv.id, "assistant", SYNTHETIC_BLOCK.format(n=i))
    t0 = time.perf_counter()
    w.conversations.open(conv.id)
    return time.perf_counter() - t0


def feed_synthetic(w, loop, n_tokens: int = 3000, rate: float = 500.0) -> int:  # type: ignore[no-untyped-def]
    """Stream a crafted answer through the window's own chunk path at ``rate`` tokens/s."""
    from PySide6.QtCore import QTimer

    from localchat.core.chat.messages import ContentChunk, ReasoningChunk, StatsChunk, TurnStats

    tokens = synthetic_tokens(n_tokens)
    rid = w.turn_controller.current_request = "synthetic"
    w.chat.begin_stream("synthetic")
    thoughts = [(ReasoningChunk, t + " ") for t in ("Let me think about the next step first. " * 150).split(" ")]
    stream = thoughts + [(ContentChunk, t) for t in tokens]
    start = time.monotonic()
    sent = 0
    while sent < len(stream):
        due = min(len(stream), int((time.monotonic() - start) * rate))
        for kind, t in stream[sent:due]:
            w.turn_controller.on_chunk(kind(rid, t))
        sent = due
        QTimer.singleShot(2, loop.quit)
        loop.exec()
    w.turn_controller.on_chunk(StatsChunk(rid, TurnStats(10, len(stream), 0.1, rate, len(stream) / rate, "stop")))
    return len(stream)


OPENED: list[float] = []


def stalls(mode: str) -> tuple[float, float, int]:
    from PySide6.QtCore import QElapsedTimer, QEventLoop, QTimer
    from PySide6.QtWidgets import QApplication

    from localchat.context import open_context
    from localchat.gui.launch import freeze_startup_objects
    from localchat.gui.main_window import MainWindow

    _app = QApplication.instance() or QApplication([])  # kept alive for the run
    ctx = open_context(tempfile.mkdtemp(prefix="lc-bench-"))
    ctx.settings.max_tokens = 300
    ctx.settings.temperature = 0.8
    ctx.ensure_starter()
    w = MainWindow(ctx)
    w.show()
    loop = QEventLoop()
    while w.load_info is None:
        QTimer.singleShot(20, loop.quit)
        loop.exec()
    freeze_startup_objects()  # as launch() does once the window is up
    if mode == "synthetic":
        OPENED.append(open_long_conversation(w))
        for _ in range(20):  # let the opened conversation lay out before measuring
            QTimer.singleShot(10, loop.quit)
            loop.exec()
    gaps: list[float] = []
    clock = QElapsedTimer()
    clock.start()
    last = [clock.nsecsElapsed()]

    def tick() -> None:
        now = clock.nsecsElapsed()
        gaps.append((now - last[0]) / 1e6)
        last[0] = now

    timer = QTimer()
    timer.setInterval(5)
    timer.timeout.connect(tick)
    timer.start()
    tokens = 0
    if mode == "synthetic":
        tokens = feed_synthetic(w, loop)
    elif mode == "model":
        w.input.setPlainText("Write a long, detailed story about a lighthouse keeper and a storm at sea.")
        w.turn_controller.send()
        while w.turn_controller.current_request is not None:
            QTimer.singleShot(10, loop.quit)
            loop.exec()
        tokens = int(w.chat.messages[-1].stats.get("completion_tokens", 0))
    else:
        QTimer.singleShot(3000, loop.quit)
        loop.exec()
    timer.stop()
    w.shutdown()
    gaps = gaps[1:]
    return max(gaps) - 5, statistics.quantiles(gaps, n=100)[98] - 5, tokens


def main() -> None:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    idle_max, idle_p99, _ = stalls("idle")
    stream_max, stream_p99, tokens = stalls("model")
    syn_max, syn_p99, syn_tokens = stalls("synthetic")
    print(f"event-loop stall (ms beyond the 5 ms tick)   idle: max {idle_max:.1f}, p99 {idle_p99:.1f}   "
          f"model streaming {tokens} tokens: max {stream_max:.1f}, p99 {stream_p99:.1f}   (target: max < 50)")
    print(f"crafted {syn_tokens}-token answer (reasoning, then markdown) at 500 tok/s after 40 messages: "
          f"max {syn_max:.1f}, p99 {syn_p99:.1f}"
          f"   (opening that 40-message conversation: {OPENED[0] * 1000:.0f} ms)")
    cs = cold_start()
    print(f"cold start to first painted window: median {statistics.median(cs):.2f} s, "
          f"min {min(cs):.2f} s, max {max(cs):.2f} s over {len(cs)} runs (target < 1.5 s)")
    print(f"platform: {os.environ.get('QT_QPA_PLATFORM') or 'default'}; python {sys.version.split()[0]}; "
          f"home {Path(tempfile.gettempdir())}")


if __name__ == "__main__":
    main()
