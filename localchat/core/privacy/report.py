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
from localchat.core.privacy.evidence import IsolationEvidence
from localchat.core.privacy.lockdown import lockdown_items
from localchat.core.privacy.monitor import MonitorSnapshot, SocketMonitor, namespace_interfaces, namespace_sockets
from localchat.core.privacy.processes import ProcessLog
from localchat.core.privacy.sandbox import netns_id

LIMITS = (
    "The audit guard sees network calls made by Python code only; native code in the app process (Qt, C libraries) "
    "bypasses audit hooks. The socket table watches the app's processes from the outside instead.",
    "The socket table is polled about once a second: a connection opened and closed between two polls can be "
    "missed, and a UDP datagram sent without connecting shows no remote address. The inference worker, where the "
    "native model code runs, is kernel-isolated, so that gap does not matter there.",
    "Interface byte counters are for the whole machine and cannot be attributed to a program.",
    "The process list sees every launch made by Python code and, once a second, every descendant of the app: a "
    "process started by native code and gone within a second is not listed, and one that lived less than a second "
    "is listed without its network namespace.",
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
    evidence = IsolationEvidence.from_report(isolation)
    return evidence.headline() if evidence else "Inference worker: not running — nothing to prove yet"


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


def _showing(kept: int, total: int) -> str:
    return f" (showing the last {kept:,} of {total:,})" if total > kept else ""


def isolation_text(p: dict[str, Any]) -> str:
    """A process's isolation as a reviewer reads it."""
    if p.get("isolated") is None:
        return "not read (ended within a poll)" if p.get("netns") is None else "unknown"
    return "isolated (own namespace)" if p["isolated"] else "app's namespace"


def process_lines(procs: list[dict[str, Any]]) -> list[str]:
    """One line per process: pid, when, namespace, isolation, command."""
    out = []
    for p in procs:
        ended = clock(p["ended"]) if p.get("ended") else "running"
        pid = str(p["pid"]) if p.get("pid") is not None else "?"
        netns = str(p["netns"]) if p.get("netns") is not None else "-"
        out.append(f"pid {pid:<8} {clock(p['started'])}–{ended:<8} netns {netns:<11} {isolation_text(p):<25} "
                   f"{p['command']}")
    return out


def check_yourself(pid: int | None, isolation: dict[str, Any] | None) -> list[tuple[str, str]]:
    """Commands that verify the worker's isolation without trusting localchat (Linux), with what they should show."""
    evidence = IsolationEvidence.from_report(isolation)
    if not pid or evidence is None or not evidence.isolated or not sys.platform.startswith("linux"):
        return []
    if evidence.lan_mode:
        return [(f"readlink /proc/{pid}/ns/net /proc/self/ns/net", "two different net:[…] ids"),
                (f"sudo nsenter -t {pid} -n ip addr", "only 'lo' (up, for the relay)"),
                (f"cat /proc/{pid}/net/tcp /proc/{pid}/net/udp", "only 127.0.0.1 sockets (the relay's)")]
    return [(f"readlink /proc/{pid}/ns/net /proc/self/ns/net", "two different net:[…] ids"),
            (f"sudo nsenter -t {pid} -n ip addr", "only 'lo', state DOWN"),
            (f"cat /proc/{pid}/net/tcp /proc/{pid}/net/udp", "no sockets in the worker's namespace")]


def lan_findings(data: dict[str, Any], helpers: dict[str, Any], isolation: dict[str, Any]) -> dict[str, Any]:
    """LAN mode's "only these peers", from the report's data and the relay's counts (``EngineClient.relay_report()``).

    A non-local socket of the app to a listed helper is expected; any other is ``unlisted`` (a leak). When the
    report's event list was cut short, the events it no longer holds count as unlisted (never a false "silent").
    """
    listed = [p["peer"] for p in helpers["peers"]]
    app = data["app"]
    events = [e for e in app["socket_events"] if e["kind"] in ("lan", "internet")]
    to_listed = [e for e in events if e["remote"] in listed]
    non_local = (app["outbound_internet_connections"] or 0) + (app["outbound_lan_connections"] or 0)
    unlisted = [e for e in events if e["remote"] not in listed]
    unseen = max(0, non_local - len(events))  # dropped from the ring: not shown to be a listed helper
    relay = isolation.get("relay") or {}
    now = (data["worker"].get("now") or {}).get("interfaces")
    interfaces = [i["name"] for i in (now if now is not None else relay.get("interfaces") or [])]
    unexpected = app["audit_unexpected_total"] or 0
    silent = not unlisted and not unseen and not unexpected
    return {
        "scope": "only these peers",
        "peers": listed,
        "worker_interfaces": interfaces,
        "worker_only_loopback": interfaces == ["lo"],
        "beyond_loopback": (relay.get("beyond_loopback") or {}).get("result"),
        "helpers": helpers["peers"],
        "refused": helpers["refused"],
        "connections_to_listed": len(to_listed),
        "unlisted_connections": len(unlisted) + unseen,
        "unlisted": unlisted,
        "silent": silent,
        "verdict": (f"Only these peers: the app connected only to {', '.join(listed)}; "
                    f"{unexpected} unexpected audit events" if silent else
                    f"ATTENTION: {len(unlisted) + unseen} connections to machines not listed and {unexpected} "
                    "unexpected audit events — see the lists below"),
    }


def lan_text(lan: dict[str, Any]) -> list[str]:
    """The LAN-mode section of the text report."""
    ifs = ", ".join(lan["worker_interfaces"]) or "none"
    lines = ["LAN mode: only these peers", f"  {lan['verdict']}",
             f"  Worker's interfaces: {ifs} ({'only its loopback' if lan['worker_only_loopback'] else 'NOT only lo'})"
             f"; beyond its loopback (TEST-NET-1): {lan['beyond_loopback'] or 'not tried'}"]
    for p in lan["helpers"]:
        lost = f"; lost: {p['lost']}" if p.get("lost") else ""
        lines.append(f"  helper {p['peer']:<24} {p['connections']} connection(s), sent {p['bytes_sent']:,} B, "
                     f"received {p['bytes_received']:,} B{lost}")
    lines += [f"  refused: {r['peer']}: {r['reason']}" for r in lan["refused"]] or ["  refused attempts: none"]
    lines += [f"  NOT LISTED: {e['process']} (pid {e['pid']}) {e['proto']} {e['local']} → {e['remote']}"
              for e in lan["unlisted"]]
    return lines


@dataclass
class EvidenceReport:
    """Everything localchat can show about its own network use, gathered at the moment of :meth:`to_dict`."""

    isolation: dict[str, Any] | None
    guard: AuditGuard | None
    monitor: SocketMonitor | MonitorSnapshot | None
    worker_pid: int | None = None
    notes: list[str] = field(default_factory=list)
    processes: ProcessLog | None = None  # default: the monitor's, else the session's (:meth:`ProcessLog.active`)
    relay: dict[str, Any] | None = None  # LAN mode: the relay's counts; the claim becomes "only these peers"

    def _snapshot(self) -> MonitorSnapshot | None:
        return self.monitor.snapshot() if isinstance(self.monitor, SocketMonitor) else self.monitor

    def _processes(self, snap: MonitorSnapshot | None) -> tuple[list[dict[str, Any]], int] | None:
        """Every process localchat started this session (read now when the log is at hand), and how many in all."""
        log = self.processes
        if log is None and snap is not None and snap.processes:
            return snap.processes, snap.processes_total
        log = log or ProcessLog.active()
        if log is None:
            return None
        log.poll()
        return log.snapshot(), log.counts()["total"]

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
        counts = guard.counts() if guard else None
        unexpected = [e for e in audit if not e.expected]
        n_unexpected = counts["unexpected"] if counts else 0  # every event, also those the ring no longer holds
        n_non_local = snap.outbound_internet + snap.outbound_lan if snap else 0
        silent = not n_non_local and not n_unexpected
        verdict = (f"No connection beyond this machine: {n_non_local} internet or LAN sockets seen on "
                   f"localchat's processes, {n_unexpected} unexpected audit events"
                   if silent else
                   f"ATTENTION: {n_non_local} internet or LAN sockets seen on localchat's processes and "
                   f"{n_unexpected} unexpected audit events — see the lists below")
        if snap is None and guard is None:
            verdict = "The app's own traffic was not monitored in this run"
        machine = None
        if snap and snap.samples:
            last = snap.samples[-1]
            machine = {"label": "whole machine, not attributable to a program", "time": last.time,
                       "interfaces": {k: {"bytes_sent": s, "bytes_recv": r} for k, (s, r) in last.counters.items()}}
        procs = self._processes(snap)
        data = {
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
                "monitored_since_process_start": snap.from_process_start if snap else False,
                "outbound_internet_connections": snap.outbound_internet if snap else None,
                "outbound_lan_connections": snap.outbound_lan if snap else None,
                "socket_events_total": snap.events_total if snap else 0,
                "socket_events": [e.to_dict() for e in snap.events] if snap else [],
                "monitor_errors": list(snap.errors) if snap else [],
                "audit_mode": guard.mode if guard else "not installed",
                "audit_events_total": counts["total"] if counts else 0,
                "audit_events": [e.to_dict() for e in audit],
                "audit_refused": counts["refused"] if counts else None,
                "audit_unexpected_total": n_unexpected if counts else None,
                "audit_unexpected": [e.to_dict() for e in unexpected],
            },
            "processes": procs[0] if procs else None,
            "processes_total": procs[1] if procs else None,
            "machine": machine,
            "lockdown": {i["name"]: i["value"] for i in items},
            "lockdown_effects": {i["name"]: i["effect"] for i in items},
            "limits": list(LIMITS),
            "notes": list(self.notes),
        }
        if self.relay is not None:  # the listed helpers are expected; anything else is still a leak
            data["lan_mode"] = lan = lan_findings(data, self.relay, self.isolation or {})
            data["silent"], data["verdict"] = lan["silent"], lan["verdict"]
        return data

    @property
    def silent(self) -> bool:
        """No internet or LAN socket seen and no audit event other than local or user-started downloads."""
        return bool(self.to_dict()["silent"])

    def to_text(self, data: dict[str, Any] | None = None) -> str:
        d = data or self.to_dict()
        lines = [f"localchat {d['localchat']} privacy report — {d['generated']}", "", d["headline"], d["verdict"],
                 ""]
        evidence = IsolationEvidence.from_report(self.isolation)
        if evidence is not None:
            lines.append("Inference worker:")
            lines += [f"  {row.label}: {row.text}" for row in evidence.rows(self.worker_pid)]
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
        if app.get("monitored_since_process_start"):
            since, watched = "since launch", [f"Watched since {clock(app['monitored_since'])}, when localchat started"]
        elif app["monitored_since"]:  # a monitor started later must not claim the time before it
            since, watched = f"since {clock(app['monitored_since'])} (when monitoring began, after launch)", []
        else:
            since, watched = "(not monitored)", []
        lines += ["", *watched, f"Outbound internet connections {since}: {app['outbound_internet_connections']}",
                  f"Outbound LAN connections {since}: {app['outbound_lan_connections']}",
                  f"Socket events: {app['socket_events_total']}"
                  f"{_showing(len(app['socket_events']), app['socket_events_total'])}",
                  f"Audit guard: {app['audit_mode']}; {app['audit_events_total']} events"
                  f"{_showing(len(app['audit_events']), app['audit_events_total'])}, {app['audit_refused']} refused, "
                  f"{app['audit_unexpected_total']} unexpected"]
        for e in [e for e in app["audit_events"] if e["verdict"] != "allowed-local"][-20:]:
            lines.append(f"  {clock(e['time'])} {e['event']:<20} {e['destination']:<28} {e['verdict']:<16} "
                         f"{e['label']:<14} {e['call_site']}")
        for e in [e for e in app["socket_events"] if e["kind"] in ("lan", "internet")][-20:]:
            lines.append(f"  {clock(e['time'])} {e['process']} (pid {e['pid']}) {e['proto']} {e['local']} → "
                         f"{e['remote']} [{e['kind']}]")
        for err in app["monitor_errors"]:
            lines.append(f"  monitor: {err}")
        procs = d.get("processes")
        if procs is not None:
            lines += ["", f"Processes localchat started this session: {d['processes_total']}"
                          f"{_showing(len(procs), d['processes_total'])}"]
            lines += [f"  {line}" for line in process_lines(procs)] or ["  none"]
        if d["machine"]:
            lines += ["", f"Interface counters ({d['machine']['label']}):"]
            for name, c in d["machine"]["interfaces"].items():
                sent, recv = human_bytes(c["bytes_sent"]), human_bytes(c["bytes_recv"])
                lines.append(f"  {name:<12} sent {sent:>10}   received {recv:>10}")
        lines += ["", "Lockdown:"] + [f"  {k} = {v}  — {d['lockdown_effects'][k]}" for k, v in d["lockdown"].items()]
        lines += ["", "What this does not cover:"] + [f"  - {x}" for x in d["limits"]]
        lines += [f"note: {n}" for n in d["notes"]]
        if d.get("lan_mode"):
            lines += ["", *lan_text(d["lan_mode"])]
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
