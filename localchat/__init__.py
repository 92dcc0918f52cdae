"""localchat: private, offline chat with local distilled GGUF models."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("localchat")
except PackageNotFoundError:  # running from a source tree / frozen build without metadata
    __version__ = "0.1.0"
