"""The private local API: an OpenAI-compatible HTTP server on loopback, over the one sandboxed inference worker.

``schema`` reads requests and writes OpenAI's shapes, ``host`` owns the worker and queues turns on it, ``app`` is the
Starlette application with its guards (key, Host header, origin, body size), ``server`` binds and runs it with
uvicorn. Nothing here imports Qt; the window and ``localchat serve`` run the same server.
"""
