"""Network namespaces for tests that need a firewall: a client and a server joined by veth.

Firewall rules are only ever changed inside namespaces created here, never in the host's own
namespace, and every request to a namespace's address is sent from inside another namespace
created here. Names are unique per test run (pid + counter) and everything is torn down on exit,
even when the test fails.

Topology built by `topology()`:

    client ns  --veth--  server ns  [--veth--  container ns]   (container: optional)
    198.51.100.2         198.51.100.1
                         203.0.113.1            203.0.113.2

The optional container namespace reproduces Docker's shape: the server namespace forwards and
DNATs a "published" port to a process in the container namespace, so that traffic crosses the
forward hook and never reaches the server's input hook.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Iterator, Sequence

from .procs import require_tool

CLIENT_IP = "198.51.100.2"  # TEST-NET-2: never routed on the internet
SERVER_IP = "198.51.100.1"
SERVER_INNER_IP = "203.0.113.1"  # TEST-NET-3, the "docker bridge" side of the server
CONTAINER_IP = "203.0.113.2"

_counter = itertools.count()


def _run(cmd: Sequence[str], timeout: float = 20) -> subprocess.CompletedProcess:
    return subprocess.run(list(cmd), check=True, capture_output=True, text=True, timeout=timeout)


@dataclass
class Netns:
    name: str

    def prefix(self) -> list[str]:
        return ["ip", "netns", "exec", self.name]

    def run(self, cmd: Sequence[str], check: bool = True, timeout: float = 30, **kw) -> subprocess.CompletedProcess:
        kw.setdefault("capture_output", True)
        kw.setdefault("text", True)
        return subprocess.run(self.prefix() + list(cmd), check=check, timeout=timeout, **kw)

    def popen(self, cmd: Sequence[str], **kw) -> subprocess.Popen:
        return subprocess.Popen(self.prefix() + list(cmd), **kw)

    def nft(self, *args: str, input: str | None = None) -> str:
        return self.run(["nft", *args], input=input).stdout

    def tcp_probe(self, host: str, port: int, timeout: float = 2.0) -> str:
        """Try one TCP connection from inside this namespace: 'open', 'refused' or 'timeout'.

        Bounded by `timeout`: a dropped SYN shows up as 'timeout', a reset or ICMP unreachable
        as 'refused'.
        """
        return self.run([sys.executable, "-c", _PROBE, host, str(port), str(timeout)], timeout=timeout + 10).stdout.strip()

    def http_status(self, url: str, headers: dict[str, str] | None = None, timeout: float = 5.0,
                    method: str = "GET", body: str | None = None, resolve: str | None = None) -> str:
        """One curl request from inside this namespace; the status code, or 'refused'/'timeout'."""
        cmd = [require_tool("curl"), "-sk", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", str(timeout),
               "--connect-timeout", str(timeout), "-X", method]
        for k, v in (headers or {}).items():
            cmd += ["-H", f"{k}: {v}"]
        if body is not None:
            cmd += ["-H", "Content-Type: application/json", "--data-binary", body]
        if resolve:
            cmd += ["--resolve", resolve]
        cmd.append(url)
        res = self.run(cmd, check=False, timeout=timeout + 10)
        if res.returncode == 7:
            return "refused"
        if res.returncode == 28:
            return "timeout"
        return res.stdout.strip() or f"curl-exit-{res.returncode}"


_PROBE = r"""
import socket, sys
host, port, timeout = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.settimeout(timeout)
try:
    s.connect((host, port))
    print("open")
except ConnectionRefusedError:
    print("refused")
except (socket.timeout, TimeoutError):
    print("timeout")
except OSError as e:  # host/network unreachable from an ICMP reject
    print("refused" if e.errno in (111, 113, 101) else f"error {e.errno}")
finally:
    s.close()
"""


@dataclass
class Topology:
    client: Netns
    server: Netns
    container: Netns | None = None
    client_ip: str = CLIENT_IP
    server_ip: str = SERVER_IP
    container_ip: str = CONTAINER_IP
    _published: list[int] = field(default_factory=list)

    def publish(self, port: int, container_port: int | None = None) -> None:
        """Docker-style publishing: DNAT server:port to container:container_port, forwarded.

        Lives in its own table (`ip docker-sim`) in the server namespace, like Docker's nat table.
        """
        assert self.container is not None, "publish() needs topology(container=True)"
        cport = container_port or port
        self.server.nft("add", "table", "ip", "docker-sim")
        self.server.nft("add", "chain", "ip", "docker-sim", "prerouting",
                        "{ type nat hook prerouting priority dstnat; }")
        self.server.nft("add", "rule", "ip", "docker-sim", "prerouting", "ip", "daddr", self.server_ip,
                        "tcp", "dport", str(port), "dnat", "to", f"{self.container_ip}:{cport}")
        self._published.append(port)


def _unique(tag: str) -> str:
    # Interface names are limited to 15 characters.
    return f"dt{os.getpid() % 100000}{next(_counter)}{tag}"


@contextlib.contextmanager
def topology(container: bool = False) -> Iterator[Topology]:
    """Client and server namespaces joined by veth (plus a forwarded container namespace)."""
    require_tool("ip")
    require_tool("nft")
    base = _unique("")
    names = [f"{base}c", f"{base}s"] + ([f"{base}k"] if container else [])
    created: list[str] = []
    try:
        for n in names:
            _run(["ip", "netns", "add", n])
            created.append(n)
            _run(["ip", "-n", n, "link", "set", "lo", "up"])
        client, server = Netns(names[0]), Netns(names[1])
        _veth(client.name, f"{base}a", CLIENT_IP, server.name, f"{base}b", SERVER_IP, "24")
        topo = Topology(client=client, server=server)
        if container:
            topo.container = Netns(names[2])
            _veth(server.name, f"{base}d", SERVER_INNER_IP, topo.container.name, f"{base}e", CONTAINER_IP, "24")
            _run(["ip", "-n", topo.container.name, "route", "add", "default", "via", SERVER_INNER_IP])
            server.run(["sysctl", "-qw", "net.ipv4.ip_forward=1"])
        yield topo
    finally:
        for n in reversed(created):
            # Deleting a namespace removes its veth ends and every rule in it.
            subprocess.run(["ip", "netns", "del", n], capture_output=True, timeout=20)


def _veth(ns_a: str, if_a: str, ip_a: str, ns_b: str, if_b: str, ip_b: str, plen: str) -> None:
    _run(["ip", "link", "add", if_a, "netns", ns_a, "type", "veth", "peer", "name", if_b, "netns", ns_b])
    _run(["ip", "-n", ns_a, "addr", "add", f"{ip_a}/{plen}", "dev", if_a])
    _run(["ip", "-n", ns_b, "addr", "add", f"{ip_b}/{plen}", "dev", if_b])
    _run(["ip", "-n", ns_a, "link", "set", if_a, "up"])
    _run(["ip", "-n", ns_b, "link", "set", if_b, "up"])
