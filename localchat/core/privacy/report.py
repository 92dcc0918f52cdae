"""The evidence report: what is proven, by what, and what is not covered. JSON for auditors, text for people."""

from __future__ import annotations

import json
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from localchat import __version__
from localchat.core.privacy.audit import AuditGuard
from localchat.core.privacy.monitor import SocketMonitor, namespace_interfaces, namespace_sockets

LIMITS = (
    "Audit hooks see network calls made by Python code only; native code in the app process (Qt, libraries) "
    "bypasses them. The socket table watches those processes from the outside instead.",
    "The socket table is polled: a connection opened and closed between two polls can be missed. The inference "
    "worker, where native model code runs, is kernel-isolated so that gap does not matter there.",
    "Interface byte counters are for the whole machine and cannot be attributed to a program.",
    "Downloads you start run in the app process and are allowed, labelled 'download', only to their host.",
)


def headline(isolation: dict[str, Any] | None) -> str:
    if not isolation:
        return "Inference worker: not running — nothing to prove yet"
    if isolation.get("isolated"):
        return ("Inference worker: no network interfaces up — kernel-isolated "
                f"({isolation.get('mode')}, namespace {isolation.get('netns')} ≠ app {isolation.get('parent_netns')})")
    return f"Inference worker: monitored only — {isolation.get('reason', 'isolation not applied')}"


@dataclass
class EvidenceReport:
    isolation: dict[str, Any] | None
    lockdown: dict[str, str]
    guard: AuditGuard | None
    monitor: SocketMonitor | None
    worker_pid: int | None = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        mon, guard = self.monitor, self.guard
        worker_ns = None
        if self.worker_pid and self.isolation and self.isolation.get("isolated"):
            worker_ns = {"sockets": namespace_sockets(self.worker_pid),
                         "interfaces": namespace_interfaces(self.worker_pid)}
        return {
            "localchat": __version__,
            "generated": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "platform": platform.platform(),
            "headline": headline(self.isolation),
            "worker": {"pid": self.worker_pid, "isolation": self.isolation, "namespace_now": worker_ns},
            "app": {
                "outbound_internet_connections": mon.outbound_internet if mon else None,
                "outbound_lan_connections": mon.outbound_lan if mon else None,
                "monitored_since": mon.started if mon else None,
                "socket_events": [e.to_dict() for e in mon.events] if mon else [],
                "monitor_errors": list(mon.errors) if mon else [],
                "audit_events": [e.to_dict() for e in guard.events] if guard else [],
                "audit_refused": len(guard.refused()) if guard else None,
                "audit_mode": ("offline: non-loopback refused" if guard.offline else "logging only") if guard
                else "not installed",
            },
            "lockdown": self.lockdown,
            "limits": list(LIMITS),
            "notes": self.notes,
        }

    @property
    def silent(self) -> bool:
        """No internet or LAN socket seen and no audit event other than local or user-started downloads."""
        d = self.to_dict()["app"]
        return (d["outbound_internet_connections"] == 0 and d["outbound_lan_connections"] == 0 and
                all(e["verdict"] in ("allowed-local", "allowed-download") for e in d["audit_events"]))

    def to_text(self) -> str:
        d = self.to_dict()
        iso = self.isolation or {}
        lines = [f"localchat {d['localchat']} privacy report — {d['generated']}", "", d["headline"], ""]
        if iso.get("canary"):
            lines.append("Canary (connect attempts from inside the isolated worker):")
            for c in iso["canary"]:
                lines.append(f"  {c['target']:<18} {c['label']:<36} → {c['result']} "
                             f"({'blocked' if c['blocked'] else 'NOT BLOCKED'}) at "
                             f"{time.strftime('%H:%M:%S', time.localtime(c['time']))}")
        elif self.isolation:
            lines.append("No canary sent: the worker is not isolated, and no packet of ours leaves the machine.")
        if iso.get("interfaces") is not None:
            ifs = ", ".join(f"{i['name']} ({'up' if i['up'] else 'down'})" for i in iso["interfaces"]) or "none"
            lines.append(f"Worker interfaces: {ifs}")
        app = d["app"]
        lines += ["", f"Outbound internet connections since launch: {app['outbound_internet_connections']}",
                  f"Outbound LAN connections since launch: {app['outbound_lan_connections']}",
                  f"Audit guard: {app['audit_mode']}; {len(app['audit_events'])} events, "
                  f"{app['audit_refused']} refused"]
        for e in app["audit_events"][-20:]:
            lines.append(f"  {e['event']:<20} {e['destination']:<28} {e['verdict']:<17} {e['call_site']}")
        lines += ["", "Lockdown:"] + [f"  {k}={v}" for k, v in self.lockdown.items()]
        lines += ["", "What this does not cover:"] + [f"  - {x}" for x in LIMITS]
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines) + "\n"

    def export(self, folder: Path, stem: str = "localchat-privacy-report") -> tuple[Path, Path]:
        folder.mkdir(parents=True, exist_ok=True)
        js, txt = folder / f"{stem}.json", folder / f"{stem}.txt"
        js.write_text(json.dumps(self.to_dict(), indent=2, default=str), encoding="utf-8")
        txt.write_text(self.to_text(), encoding="utf-8")
        return js, txt
