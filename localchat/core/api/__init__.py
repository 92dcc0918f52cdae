"""The private local API: an OpenAI-compatible HTTP server on loopback, over the one sandboxed inference worker.

``schema`` reads requests and writes OpenAI's shapes, ``host`` owns the worker and queues turns on it, ``app`` is the
Starlette application with its guards (key, Host header, origin, body size), ``server`` binds and runs it with
uvicorn. Nothing here imports Qt; the window and ``localchat serve`` run the same server.

The constants live here so the window can show its switch without importing uvicorn (about 0.2 s at start-up).
"""

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8800
KEY_FILE = "api-key"  # in the config folder, mode 0600
