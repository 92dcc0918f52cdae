"""The evidence report: what is proven, by what, and what is not covered. JSON for auditors, text for people."""

from __future__ import annotations

import json
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from localchat import __version__
from localchat.core.privacy.audit import AuditGuard
from localchat.core.privacy.lockdown import lockdown_items
from localchat.core.privacy.monitor import MonitorSnapshot, SocketMonitor, namespace_interfaces, namespace_sockets
from localchat.core.privacy.sandbox import netns_id

LIMITS = (
    "The audit guard sees network calls made by Python code only; native code in the app process (Qt, C libraries) "
    "bypasses audit hooks. The socket table watches the app's processes from the outside instead.",
    "The socket table is polled about once a second: a connection opened and closed between two polls can be "
    "missed, and a UDP datagram sent without connecting shows no remote address. The inference worker, where the "
    "native model code runs, is kernel-isolated, so that gap does not matter there.",
    "Interface byte counters are for the whole machine and cannot be attributed to a program.",
    "Downloads you start run in the app process and are allowed, labelled 'download', only to their host.",
    "The worker's isolation takes its network away; it is not a defence against deliberately malicious code that "
    "acts through another process of the same user (for example by debugging it, where the system allows that).",
    "On Windows the worker is not sandboxed. On macOS the sandbox (sandbox_init, the no-internet profile) is "
    "applied the same way, but this project's automated tests run on Linux only.",
    "This report is produced by localchat itself; the commands under 'Check it yourself' let you verify the "
    "worker's isolation with the system's own tools.",
)


def headline(isolation: dict[str, Any] | None) -> str:
    """One sentence that states exactly what is proven about the inference worker."""
    if not isolation:
        return "Inference worker: not running — nothing to prove yet"
    if isolation.get("isolated"):
        if isolation.get("mode") == "macos-sandbox":
            return "Inference worker: TCP/IP denied by the macOS sandbox — sandbox-isolated"
        return "Inference worker: no network interfaces, only a loopback that is down — kernel-isolated"
    return f"Inference worker: monitored only — {isolation.get('reason', 'isolation not applied')}"


def clock(t: float) -> str:
    """A timestamp as the local time of day."""
    return time.strftime("%H:%M:%S", time.localtime(t))


def human_bytes(n: float) -> str:
    """``980 B``, ``1.5 MB`` (decimal units)."""
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


def check_yourself(pid: int | None, isolation: dict[str, Any] | None) -> list[tuple[str, str]]:
    """Commands that verify the worker's isolation without trusting localchat (Linux), with what they should show."""
    if not pid or not isolation or not isolation.get("isolated") or not sys.platform.startswith("linux"):
        return []
    return [(f"readlink /proc/{pid}/ns/net /proc/self/ns/net", "two different net:[…] ids"),
            (f"sudo nsenter -t {pid} -n ip addr", "only 'lo', state DOWN"),
            (f"cat /proc/{pid}/net/tcp /proc/{pid}/net/udp", "no sockets in the worker's namespace")]


@dataclass
class EvidenceReport:
    """Everything localchat can show about its own network use, gathered at the moment of :meth:`to_dict`."""

    isolation: dict[str, Any] | None
    guard: AuditGuard | None
    monitor: SocketMonitor | MonitorSnapshot | None
    worker_pid: int | None = None
    notes: list[str] = field(default_factory=list)

    def _snapshot(self) -> MonitorSnapshot | None:
        return self.monitor.snapshot() if isinstance(self.monitor, SocketMonitor) else self.monitor

    def _worker_now(self) -> dict[str, Any] | None:
        """The worker's namespace re-read now, from the outside: still its own, no sockets, interfaces."""
        pid = self.worker_pid
        if not pid or not sys.platform.startswith("linux"):
            return None
        ns, app_ns = netns_id(pid), netns_id()
        if ns is None:
            return {"running": False}
        own = ns != app_ns
        return {"running": True, "netns": ns, "app_netns": app_ns, "own_namespace": own,
                "sockets": namespace_sockets(pid) if own else None,
                "interfaces": namespace_interfaces(pid) if own else None}

    def to_dict(self) -> dict[str, Any]:
        snap, guard, items = self._snapshot(), self.guard, lockdown_items()
        audit = guard.snapshot() if guard else []
        unexpected = [e for e in audit if not e.expected]
        non_local = [e for e in snap.events if e.kind in ("lan", "internet")] if snap else []
        silent = not non_local and not unexpected
        verdict = (f"No connection beyond this machine: {len(non_local)} internet or LAN sockets seen on "
                   f"localchat's processes, {len(unexpected)} unexpected audit events"
                   if silent else
                   f"ATTENTION: {len(non_local)} internet or LAN sockets seen on localchat's processes and "
                   f"{len(unexpected)} unexpected audit events — see the lists below")
        if snap is None and guard is None:
            verdict = "The app's own traffic was not monitored in this run"
        machine = None
        if snap and snap.samples:
            last = snap.samples[-1]
            machine = {"label": "whole machine, not attributable to a program", "time": last.time,
                       "interfaces": {k: {"bytes_sent": s, "bytes_recv": r} for k, (s, r) in last.counters.items()}}
        return {
            "localchat": __version__,
            "generated": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "platform": platform.platform(),
            "headline": headline(self.isolation),
            "verdict": verdict,
            "silent": silent,
            "worker": {"pid": self.worker_pid, "isolation": self.isolation, "now": self._worker_now(),
                       "check_yourself": check_yourself(self.worker_pid, self.isolation)},
            "app": {
                "monitored_since": snap.started if snap else None,
                "outbound_internet_connections": snap.outbound_internet if snap else None,
                "outbound_lan_connections": snap.outbound_lan if snap else None,
                "socket_events": [e.to_dict() for e in snap.events] if snap else [],
                "monitor_errors": list(snap.errors) if snap else [],
                "audit_mode": guard.mode if guard else "not installed",
                "audit_events": [e.to_dict() for e in audit],
                "audit_refused": sum(e.verdict == "refused" for e in audit) if guard else None,
                "audit_unexpected": [e.to_dict() for e in unexpected],
            },
            "machine": machine,
            "lockdown": {i["name"]: i["value"] for i in items},
            "lockdown_effects": {i["name"]: i["effect"] for i in items},
            "limits": list(LIMITS),
            "notes": list(self.notes),
        }

    @property
    def silent(self) -> bool:
        """No internet or LAN socket seen and no audit event other than local or user-started downloads."""
        return bool(self.to_dict()["silent"])

    def to_text(self, data: dict[str, Any] | None = None) -> str:
        d = data or self.to_dict()
        iso = self.isolation or {}
        lines = [f"localchat {d['localchat']} privacy report — {d['generated']}", "", d["headline"], d["verdict"],
                 ""]
        if self.isolation:
            lines.append(f"Inference worker pid {self.worker_pid}, isolation policy '{iso.get('policy')}', "
                         f"mode {iso.get('mode')}: {iso.get('reason')}")
            if iso.get("cause"):
                lines.append(f"  Why: {iso['cause']}")
            if iso.get("fix"):
                lines.append(f"  To isolate it: {iso['fix']}")
            if iso.get("netns") is not None:
                lines.append(f"  Network namespace {iso.get('netns')} (app: {iso.get('parent_netns')})")
            ifs = ", ".join(f"{i['name']} ({'up' if i.get('up') else 'down'})" for i in iso.get("interfaces", []))
            lines.append(f"  Interfaces inside the worker: {ifs or 'none'}")
            if iso.get("reentry"):
                lines.append(f"  Attempt to re-enter the app's namespace: {iso['reentry']['result']}")
            if iso.get("canary"):
                lines.append("  Canary (connect attempts from inside the isolated worker):")
                for c in iso["canary"]:
                    lines.append(f"    {c['target']:<15} {c['label']:<36} → {c['result']} "
                                 f"({'blocked' if c['blocked'] else 'NOT BLOCKED'}) at {clock(c['time'])}")
            else:
                lines.append("  No canary sent: the worker is not isolated, and no packet of ours leaves the "
                             "machine.")
        now = d["worker"]["now"]
        if now and now.get("running"):
            if now["own_namespace"]:
                socks = now["sockets"] or []
                ifs = ", ".join(f"{i['name']} (sent {human_bytes(i['tx_bytes'])})" for i in now["interfaces"] or [])
                lines.append(f"  Now: still in its own namespace; {len(socks)} sockets; interfaces: {ifs or 'none'}")
            else:
                lines.append("  Now: the worker shares the app's network namespace")
        checks = d["worker"]["check_yourself"]
        if checks:
            lines.append("  Check it yourself while the worker runs:")
            lines += [f"    {cmd:<52} # {expect}" for cmd, expect in checks]
        app = d["app"]
        lines += ["", f"Outbound internet connections since launch: {app['outbound_internet_connections']}",
                  f"Outbound LAN connections since launch: {app['outbound_lan_connections']}",
                  f"Audit guard: {app['audit_mode']}; {len(app['audit_events'])} events, "
                  f"{app['audit_refused']} refused, {len(app['audit_unexpected'])} unexpected"]
        for e in [e for e in app["audit_events"] if e["verdict"] != "allowed-local"][-20:]:
            lines.append(f"  {clock(e['time'])} {e['event']:<20} {e['destination']:<28} {e['verdict']:<16} "
                         f"{e['label']:<14} {e['call_site']}")
        for e in [e for e in app["socket_events"] if e["kind"] in ("lan", "internet")][-20:]:
            lines.append(f"  {clock(e['time'])} {e['process']} (pid {e['pid']}) {e['proto']} {e['local']} → "
                         f"{e['remote']} [{e['kind']}]")
        for err in app["monitor_errors"]:
            lines.append(f"  monitor: {err}")
        if d["machine"]:
            lines += ["", f"Interface counters ({d['machine']['label']}):"]
            for name, c in d["machine"]["interfaces"].items():
                sent, recv = human_bytes(c["bytes_sent"]), human_bytes(c["bytes_recv"])
                lines.append(f"  {name:<12} sent {sent:>10}   received {recv:>10}")
        lines += ["", "Lockdown:"] + [f"  {k} = {v}  — {d['lockdown_effects'][k]}" for k, v in d["lockdown"].items()]
        lines += ["", "What this does not cover:"] + [f"  - {x}" for x in d["limits"]]
        lines += [f"note: {n}" for n in d["notes"]]
        return "\n".join(lines) + "\n"

    def export(self, folder: Path, stem: str = "localchat-privacy-report",
               data: dict[str, Any] | None = None) -> tuple[Path, Path]:
        """Write ``<stem>.json`` and ``<stem>.txt`` (the same moment's data: ``data``, or gathered now) into
        ``folder``."""
        data = data or self.to_dict()
        folder.mkdir(parents=True, exist_ok=True)
        js, txt = folder / f"{stem}.json", folder / f"{stem}.txt"
        js.write_text(json.dumps(data, indent=2, default=str), encoding="utf-8")
        txt.write_text(self.to_text(data), encoding="utf-8")
        return js, txt
