"""Test-only network namespaces: a veth pair into a namespace the test creates, with a TCP listener inside.

Targets are only ever the addresses these helpers create (10.231.x.0/30) and 127.0.0.0/8.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass


def netns_unavailable() -> str | None:
    """Why this machine cannot create test namespaces, or None."""
    if not sys.platform.startswith("linux"):
        return "network namespaces are Linux-only"
    if shutil.which("ip") is None:
        return "iproute2 ('ip') is not installed"
    if os.geteuid() != 0:
        return "creating network namespaces with veth pairs needs root"
    probe = f"lc-probe-{os.getpid()}"
    r = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if r.returncode != 0:
        return f"'ip netns add' failed: {r.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


@dataclass
class NamespaceHost:
    name: str
    host_ip: str
    peer_ip: str
    port: int


LISTENER = """
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2]))); s.listen(8)
print("ready", flush=True)
while True:
    c, _ = s.accept(); c.sendall(b"hello from the test namespace\\n"); c.close()
"""


@contextmanager
def veth_namespace(prefix: str) -> Iterator[tuple[str, str, str]]:
    """A namespace joined to the host by a veth pair (10.231.x.0/30): yields (name, host IP, IP inside); removed
    afterwards."""
    n = os.getpid() % 200 + 20
    name, veth = f"lc-{prefix}-{os.getpid()}", f"lc{prefix[0]}{os.getpid() % 100000}"
    host_ip, peer_ip = f"10.231.{n}.1", f"10.231.{n}.2"
    cmds = [["ip", "netns", "add", name],
            ["ip", "link", "add", veth, "type", "veth", "peer", "name", "lcpeer", "netns", name],
            ["ip", "addr", "add", f"{host_ip}/30", "dev", veth], ["ip", "link", "set", veth, "up"],
            ["ip", "-n", name, "addr", "add", f"{peer_ip}/30", "dev", "lcpeer"],
            ["ip", "-n", name, "link", "set", "lcpeer", "up"], ["ip", "-n", name, "link", "set", "lo", "up"]]
    try:
        for c in cmds:
            subprocess.run(c, check=True, capture_output=True)
        yield name, host_ip, peer_ip
    finally:
        subprocess.run(["ip", "link", "del", veth], capture_output=True)
        subprocess.run(["ip", "netns", "del", name], capture_output=True)
        time.sleep(0.05)


@contextmanager
def namespace_host(port: int = 8765) -> Iterator[NamespaceHost]:
    """A namespace reachable from the host over a veth pair, running a TCP listener; removed afterwards."""
    with veth_namespace("test") as (name, host_ip, peer_ip):
        proc = subprocess.Popen(["ip", "netns", "exec", name, sys.executable, "-c", LISTENER, peer_ip, str(port)],
                                stdout=subprocess.PIPE, text=True)
        try:
            assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
            yield NamespaceHost(name, host_ip, peer_ip, port)
        finally:
            proc.kill()
            proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()


def restricted_userns_prefix() -> list[str] | str:
    """A command prefix under which the kernel refuses every new namespace, or why one cannot be built here.

    The program runs in a user namespace of its own whose ``user.max_user_namespaces`` is 0 (a per-namespace limit:
    the machine's setting is untouched), with every capability dropped: ``unshare`` then fails for real, as it
    does where a distribution or a container forbids it.
    """
    if not sys.platform.startswith("linux"):
        return "namespaces are Linux-only"
    for tool in ("unshare", "setpriv"):
        if shutil.which(tool) is None:
            return f"'{tool}' (util-linux) is not installed"
    r = subprocess.run(["unshare", "--user", "--map-root-user", "true"], capture_output=True, text=True)
    if r.returncode != 0:
        return f"this machine cannot create the user namespace the test needs: {r.stderr.strip()}"
    script = 'echo 0 > /proc/sys/user/max_user_namespaces && exec setpriv --bounding-set=-all --inh-caps=-all "$@"'
    return ["unshare", "--user", "--map-root-user", "sh", "-c", script, "sh"]
