"""The worker's isolation evidence, typed once: read from the report the worker sends (``sandbox.isolate_worker``)
and rendered by every surface through ``headline()``, ``state()`` and ``rows()`` — the top bar, the Network page, the
privacy report, ``chat``'s warning, ``--self-test`` and ``hw``.

The report crosses a process boundary, so ``from_report`` trusts nothing in it: a missing or odd field becomes
"unknown", never an exception, and an "isolated" claim without its evidence is not believed.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

LAN_SCOPE = "only these peers"  # LAN mode (core/privacy/relay.py): the worker's loopback is up for the relay


@dataclass(frozen=True)
class CanaryProbe:
    """One connect attempt made from inside the isolated worker, and what the kernel answered."""

    target: str
    label: str
    result: str
    blocked: bool
    time: float


@dataclass(frozen=True)
class EvidenceRow:
    label: str
    text: str
    alarm: bool = False  # a fact that contradicts the claim (a canary that got through)


@dataclass(frozen=True)
class IsolationEvidence:
    isolated: bool
    policy: str
    mode: str
    reason: str
    cause: str = ""
    fix: str = ""
    netns: int | None = None
    parent_netns: int | None = None
    interfaces: tuple[tuple[str, bool], ...] = ()  # (name, up) as seen from inside the worker
    reentry: str = ""  # what an attempt to re-enter the app's namespace got
    canary: tuple[CanaryProbe, ...] = ()
    scope: str = ""  # "" (no network at all) or LAN_SCOPE
    peers: tuple[str, ...] = ()  # LAN mode: the helper machines the app may connect to

    @classmethod
    def from_report(cls, report: Mapping[str, Any] | None) -> IsolationEvidence | None:
        """The evidence in a worker's report (None: no worker, or no report)."""
        if not isinstance(report, Mapping):
            return None
        relay = report.get("relay") if isinstance(report.get("relay"), Mapping) else {}
        assert isinstance(relay, Mapping)
        lan = report.get("scope") == LAN_SCOPE
        # LAN mode: the relay brought loopback up after the sandbox's check, then checked again (core/privacy/relay.py)
        ifs = relay.get("interfaces") if lan and isinstance(relay.get("interfaces"), list) else report.get("interfaces")
        probes = _list(report.get("canary"))
        if lan and "beyond_loopback" in relay:
            probes = [*probes, relay["beyond_loopback"]]
        return cls(
            isolated=report.get("isolated") is True,
            policy=_text(report.get("policy"), "unknown"),
            mode=_text(report.get("mode"), "unknown"),
            reason=_text(report.get("reason"), "isolation not applied"),
            cause=_text(report.get("cause")),
            fix=_text(report.get("fix")),
            netns=_int(report.get("netns")),
            parent_netns=_int(report.get("parent_netns")),
            interfaces=tuple((_text(i.get("name"), "?"), i.get("up") is True) for i in _list(ifs)
                             if isinstance(i, Mapping)),
            reentry=_text(report["reentry"].get("result")) if isinstance(report.get("reentry"), Mapping) else "",
            canary=tuple(CanaryProbe(_text(c.get("target"), "?"), _text(c.get("label")), _text(c.get("result"), "?"),
                                     c.get("blocked") is True, _float(c.get("time")))
                         for c in probes if isinstance(c, Mapping)),
            scope=_text(report.get("scope")),
            peers=tuple(_text(p) for p in _list(relay.get("peers")) if isinstance(p, str)),
        )

    @property
    def lan_mode(self) -> bool:
        return self.isolated and self.scope == LAN_SCOPE

    def state(self) -> str:
        """A few words: what the top bar's chip and the logs say."""
        if not self.isolated:
            return "monitored only"
        return "kernel-isolated, LAN mode" if self.lan_mode else "kernel-isolated"

    def headline(self) -> str:
        """One sentence that states exactly what is proven about the inference worker."""
        if not self.isolated:
            return f"Inference worker: monitored only — {self.reason}"
        if self.mode == "macos-sandbox":
            return "Inference worker: TCP/IP denied by the macOS sandbox — sandbox-isolated"
        if self.lan_mode:
            return ("Inference worker: only its loopback, up for the relay to helper machines — kernel-isolated; "
                    f"LAN mode: the app connects only to these peers: {', '.join(self.peers)}")
        return "Inference worker: no network interfaces, only a loopback that is down — kernel-isolated"

    def rows(self, pid: int | None = None) -> list[EvidenceRow]:
        """The evidence, one fact a row, in the order a reader checks it."""
        rows = [EvidenceRow("Worker", f"{f'pid {pid} · ' if pid else ''}policy {self.policy} · mode {self.mode} — "
                                      f"{self.reason}")]
        if self.cause:
            rows.append(EvidenceRow("Why", self.cause))
        if self.fix:
            rows.append(EvidenceRow("To isolate it", self.fix))
        if self.netns is not None:
            rows.append(EvidenceRow("Network namespace", f"{self.netns} (app: {self.parent_netns})"))
        ifs = ", ".join(f"{name} ({'up' if up else 'down'})" for name, up in self.interfaces)
        rows.append(EvidenceRow("Interfaces inside", ifs or "none"))
        if self.lan_mode:
            rows.append(EvidenceRow("Helper machines", ", ".join(self.peers) or "none"))
        if self.reentry:
            rows.append(EvidenceRow("Re-entering the app's namespace", self.reentry))
        for c in self.canary:
            rows.append(EvidenceRow("Canary", f"{c.target} ({c.label}) → {c.result}, "
                                              f"{'blocked' if c.blocked else 'NOT BLOCKED'}, at {_clock(c.time)}",
                                    alarm=not c.blocked))
        if not self.canary:
            rows.append(EvidenceRow("Canary", "none sent: the worker is not isolated, and no packet of ours leaves "
                                              "the machine"))
        return rows


def _text(value: Any, default: str = "") -> str:
    return value[:500] if isinstance(value, str) and value else default


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _float(value: Any) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0.0


def _list(value: Any) -> list[Any]:
    return value[:64] if isinstance(value, list) else []


def _clock(t: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(t)) if t else "?"
