"""Screenshots of the real window for docs/: a chat with a code block and a reasoning block, light and dark.

Runs the real app (real worker, real starter model) under whatever QT_QPA_PLATFORM says — the Makefile target
`make screenshots` runs it on Xvfb. The reasoning block comes from a crafted stream (the starter model does not
reason), fed through the same chunk path the engine uses.

    xvfb-run -a -s "-screen 0 1400x900x24" .venv/bin/python benchmarks/screenshots.py docs/screenshots [--only api]

``--only api`` takes just the Network page with the local API switch on (network-api-on.png); ``--only lan`` the
Network page in LAN mode, the model split over two rpc-server helpers on 127.0.0.1 (network-lan.png; needs
``make rpc-server``).
"""

from __future__ import annotations

import socket
import sys
import tempfile
import threading
from pathlib import Path

from PySide6.QtCore import QEventLoop, QTimer
from PySide6.QtWidgets import QApplication

from localchat.context import AppContext, open_context
from localchat.core.chat.messages import ContentChunk, ReasoningChunk, StatsChunk, TurnStats
from localchat.gui.main_window import MainWindow


def wait(ms: int) -> None:
    loop = QEventLoop()
    QTimer.singleShot(ms, loop.quit)
    loop.exec()


def wait_for(cond, timeout_ms: int = 60_000) -> None:  # type: ignore[no-untyped-def]
    waited = 0
    while not cond() and waited < timeout_ms:
        wait(50)
        waited += 50


CRAFTED = [
    ("reasoning", "The user wants a function that checks for primes. Trial division up to the square root "
                  "is enough for small n: any factor above √n pairs with one below it. Handle n < 2 first, "
                  "then even numbers, then odd divisors only."),
    ("content", "Here is a compact prime check:\n\n```python\ndef is_prime(n: int) -> bool:\n    if n < 2:\n"
                "        return False\n    if n % 2 == 0:\n        return n == 2\n    i = 3\n"
                "    while i * i <= n:\n        if n % i == 0:\n            return False\n        i += 2\n"
                "    return True\n```\n\nIt runs in **O(√n)** time:\n\n- `is_prime(97)` → `True`\n"
                "- `is_prime(91)` → `False` (7 × 13)\n\nFor many numbers at once, a *sieve of Eratosthenes* "
                "is faster."),
]


def api_shot(w: MainWindow, out: Path) -> None:
    """The Network page with the local API on, one request answered and a client connected (the socket table)."""
    import openai

    from localchat.core.privacy.audit import AuditGuard

    ours = AuditGuard.active() is None
    guard = AuditGuard.active() or AuditGuard(offline=True).install()  # as app.main runs it: the page reports it
    panel = w.api.panel
    assert panel is not None
    with socket.socket() as probe:  # the default port if it is free here, else any
        free = probe.connect_ex(("127.0.0.1", 8800)) != 0
    panel.port.setValue(8800 if free else 0)
    w.show_page(2)
    panel.toggle.setChecked(True)
    wait_for(lambda: w.api.state == "serving")
    client = openai.OpenAI(base_url=w.api.url, api_key=w.api.key, max_retries=0)
    done = threading.Event()

    def ask() -> None:
        try:
            client.chat.completions.create(model=w.model_name or "", max_tokens=16,
                                           messages=[{"role": "user", "content": "Say hello."}])
        finally:
            done.set()

    threading.Thread(target=ask, daemon=True).start()
    wait_for(done.is_set)
    wait(300)
    w.network_page.refresh()  # the client's connection stays open (keep-alive): listed with the listening socket
    size = w.size()
    w.resize(size.width(), 1240)  # tall enough for the socket table under the switch
    wait(1200)
    w.grab().save(str(out / "network-api-on.png"))
    w.resize(size)
    client.close()
    panel.toggle.setChecked(False)
    wait_for(lambda: w.api.state == "off")
    if ours:
        guard.uninstall()


def lan_shot(out: Path) -> None:
    """The Network page in LAN mode: two rpc-server helpers on 127.0.0.1, one question answered through them."""
    import subprocess

    from localchat.core.privacy.audit import AuditGuard

    def free_port() -> int:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return int(s.getsockname()[1])

    server = Path(__file__).resolve().parents[1] / ".venv" / "llama-tools" / "bin" / "rpc-server"
    ports = [free_port(), free_port()]
    helpers = [subprocess.Popen([str(server), "-H", "127.0.0.1", "-p", str(p), "-t", "1"], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL) for p in ports]
    guard = AuditGuard.active() or AuditGuard(offline=True).install()  # as app.main runs it
    try:
        wait(1500)  # the helpers start listening
        ctx = open_context(Path(tempfile.mkdtemp(prefix="lc-shot-")))
        ctx.settings.theme, ctx.settings.max_tokens = "light", 24
        ctx.settings.helpers = [f"127.0.0.1:{p}" for p in ports]
        ctx.ensure_starter()
        w = MainWindow(ctx)
        w.resize(1280, 900)
        w.show()
        wait_for(lambda: w.load_info is not None)
        w.input.setPlainText("What is the capital of France? Answer in one sentence.")
        w.turn_controller.send()
        wait_for(lambda: w.turn_controller.current_request is None)
        w.show_page(2)
        wait(2500)
        w.grab().save(str(out / "network-lan.png"))
        w.shutdown()
        w.deleteLater()
    finally:
        guard.uninstall()
        for h in helpers:
            h.terminate()
            h.wait()


def open_window(theme: str) -> MainWindow:
    ctx: AppContext = open_context(Path(tempfile.mkdtemp(prefix="lc-shot-")))
    ctx.settings.theme = theme
    ctx.ensure_starter()
    w = MainWindow(ctx)
    w.resize(1280, 820)
    w.show()
    wait_for(lambda: w.load_info is not None)
    return w


def main() -> int:
    out = Path(sys.argv[1] if len(sys.argv) > 1 and not sys.argv[1].startswith("-") else "docs/screenshots")
    out.mkdir(parents=True, exist_ok=True)
    app = QApplication.instance() or QApplication([])
    if "--only" in sys.argv and sys.argv[-1] == "lan":
        lan_shot(out)
        app.processEvents()
        print(f"screenshot in {out}")
        return 0
    if "--only" in sys.argv and sys.argv[-1] == "api":
        w = open_window("light")
        api_shot(w, out)
        w.shutdown()
        w.deleteLater()
        app.processEvents()
        print(f"screenshot in {out}")
        return 0
    for theme in ("light", "dark"):
        home = Path(tempfile.mkdtemp(prefix="lc-shot-"))
        ctx = open_context(home)
        ctx.settings.theme = theme
        ctx.ensure_starter()
        w = MainWindow(ctx)
        w.resize(1280, 820)
        w.show()
        wait_for(lambda w=w: w.load_info is not None)
        wait(300)
        w.grab().save(str(out / f"welcome-{theme}.png"))
        w.input.setPlainText("What is the capital of France? Answer in one sentence.")
        w.turn_controller.send()
        wait_for(lambda w=w: w.turn_controller.current_request is None)
        w.input.setPlainText("Write a Python function that checks whether a number is prime.")
        w.turn_controller.send()
        rid = w.turn_controller.current_request
        wait_for(lambda w=w: w.turn_controller.current_request is None)
        # replace the tiny model's answer with a crafted reasoning + code stream through the same path
        w.chat.truncate(len(w.chat.messages) - 1)
        w.turn_controller.current_request = rid = "crafted"
        w.chat.begin_stream(w.model_name or "")
        for kind, text in CRAFTED:
            chunk = ReasoningChunk(rid, text) if kind == "reasoning" else ContentChunk(rid, text)
            w.turn_controller.on_chunk(chunk)
            wait(300)
        w.turn_controller.on_chunk(StatsChunk(rid, TurnStats(31, 118, 0.21, 104.2, 1.3, "stop")))
        wait(200)
        w.chat._widgets[-1].reasoning.toggle.click()  # show the reasoning block opened
        wait(300)
        w.grab().save(str(out / f"chat-{theme}.png"))
        w.show_page(2)
        wait(1500)
        w.grab().save(str(out / f"network-{theme}.png"))
        w.show_page(1)
        wait_for(lambda w=w: bool(w.models_page.fits), 30_000)
        wait(300)
        w.grab().save(str(out / f"models-{theme}.png"))
        if theme == "light":
            api_shot(w, out)
        w.shutdown()
        w.deleteLater()
    app.processEvents()
    print(f"screenshots in {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
