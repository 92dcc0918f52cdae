"""Worker sandbox: applied by the inference worker to itself before it imports anything heavy.

Placeholder until the privacy work lands: reports "not isolated" honestly.
"""

from __future__ import annotations

from typing import Any


def isolate_worker(policy: str) -> dict[str, Any]:
    """Isolate the calling (single-threaded, freshly started) process from the network.

    Args:
        policy: ``"off"`` (do nothing), ``"auto"`` (isolate where possible) or ``"require"``.

    Returns:
        A JSON-able report: ``isolated`` (bool), ``mode`` (str), ``reason`` (str) and evidence fields.
    """
    return {"isolated": False, "mode": "none", "reason": "worker sandbox not implemented yet", "policy": policy}
