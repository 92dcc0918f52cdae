"""Error types shared by every layer. Each carries a message fit to show a user as-is."""

from __future__ import annotations


class LocalChatError(Exception):
    """Base of every error localchat raises on purpose."""


class InvalidModelFile(LocalChatError):
    """The file is not a readable GGUF model (empty, not GGUF, truncated, unsupported version)."""


class ModelNotFound(LocalChatError):
    """No model of that name in the library and no such file."""


class ModelLoadError(LocalChatError):
    """llama.cpp refused to load the model (out of memory, unsupported architecture, ...)."""


class WorkerCrashed(LocalChatError):
    """The inference worker process died. ``partial_text`` keeps what had streamed so far."""

    def __init__(self, message: str, *, exitcode: int | None = None, signal: int | None = None,
                 partial_text: str = "", partial_reasoning: str = "") -> None:
        super().__init__(message)
        self.exitcode = exitcode
        self.signal = signal
        self.partial_text = partial_text
        self.partial_reasoning = partial_reasoning


class ContextOverflow(LocalChatError):
    """The prompt cannot fit in the context window even after dropping old turns."""


class IsolationRequired(LocalChatError):
    """Settings require a network-isolated worker and isolation could not be applied."""


class DownloadError(LocalChatError):
    """A model download failed; the message says why and what to do."""


class SettingsError(LocalChatError):
    """A settings value is invalid."""
