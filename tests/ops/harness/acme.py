"""A local ACME server for the certificate tests: Debian's pebble, with pebble-challtestsrv as its DNS.

    with acme_server(tmp / "acme", hostname="detector.test", http_port=nginx_http_port) as acme:
        # certbot --server acme.directory_url, with REQUESTS_CA_BUNDLE=acme.ca_bundle
        acme.issuer_pems()   # pebble's root + intermediate: what its certificates verify against

Pebble validates an http-01 challenge by resolving the name through the DNS server given with
`-dnsserver` and fetching `http://<name>:<httpPort>/.well-known/acme-challenge/<token>`.
pebble-challtestsrv is that DNS server here: it answers the test hostname with the loopback address
the test nginx listens on, and `httpPort` in pebble's config is that nginx's plain-HTTP port, so the
challenge goes through the same nginx webroot location as in production.

Pebble keeps everything in memory (accounts, orders, its issuing CA): one instance lives for a whole
test module; restarting it invalidates the certbot account stored in a config dir.
"""

from __future__ import annotations

import json
import os
import socket
import ssl
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from .pki import issue_server_cert, make_ca
from .procs import ManagedProcess, free_port, require_tool, wait_for_port, wait_until

LOOPBACK = "127.0.0.1"
# Pebble makes its CA and answers in well under a second here; 20 s leaves room for a loaded CI
# runner without hiding a server that never comes up.
START_TIMEOUT_SECS = 20.0


def free_tcp_udp_port() -> int:
    """A loopback port free for TCP and UDP alike (the DNS server binds both)."""
    for _ in range(50):
        port = free_port(LOOPBACK)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            try:
                udp.bind((LOOPBACK, port))
            except OSError:
                continue
            return port
    raise RuntimeError("no loopback port free for both TCP and UDP in 50 attempts")


@dataclass
class AcmeServer:
    """A running pebble + pebble-challtestsrv pair."""

    directory_url: str
    ca_bundle: Path  # trusts pebble's HTTPS listener: the REQUESTS_CA_BUNDLE certbot needs
    management_url: str
    dns_management_url: str
    pebble: ManagedProcess
    challtestsrv: ManagedProcess

    def _get(self, url: str) -> bytes:
        context = ssl.create_default_context(cafile=str(self.ca_bundle))
        with urllib.request.urlopen(url, context=context, timeout=5) as response:
            return response.read()

    def issuer_pems(self) -> str:
        """Pebble's root and intermediate (PEM): what a pebble-issued chain verifies against."""
        return (self._get(f"{self.management_url}/roots/0").decode()
                + self._get(f"{self.management_url}/intermediates/0").decode())

    def set_a_record(self, host: str, address: str) -> None:
        """Answer `host` with `address` in the DNS pebble resolves challenge names with."""
        body = json.dumps({"host": host.rstrip(".") + ".", "addresses": [address]}).encode()
        request = urllib.request.Request(f"{self.dns_management_url}/add-a", data=body, method="POST")
        with urllib.request.urlopen(request, timeout=5) as response:
            response.read()

    def logs(self) -> str:
        """Both servers' recent output, for assertion messages."""
        return (f"--- pebble ---\n{self.pebble.log_tail(60)}\n"
                f"--- pebble-challtestsrv ---\n{self.challtestsrv.log_tail(20)}")


@contextmanager
def acme_server(work_dir: Path, *, hostname: str, http_port: int,
                address: str = LOOPBACK) -> Iterator[AcmeServer]:
    """Start pebble-challtestsrv (DNS: `hostname` -> `address`) and pebble (http-01 on `http_port`).

    `http_port` is the plain-HTTP port of the nginx under test: pebble's validation requests reach
    the challenge files through it.
    """
    pebble_bin = require_tool("pebble")
    challtestsrv_bin = require_tool("pebble-challtestsrv")
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    # Pebble's own HTTPS listener needs a certificate; certbot trusts it through REQUESTS_CA_BUNDLE.
    # (Pebble makes the CA that signs the issued certificates by itself, at every start.)
    listener_ca = make_ca(work_dir / "listener-ca", "pebble listener test CA")
    listener = issue_server_cert(listener_ca, work_dir / "listener", [LOOPBACK, "localhost"])

    dns_port, dns_management_port = free_tcp_udp_port(), free_port(LOOPBACK)
    acme_port, management_port, tls_port = free_port(LOOPBACK), free_port(LOOPBACK), free_port(LOOPBACK)

    challtestsrv = ManagedProcess(
        [challtestsrv_bin,
         "-dns01", f"{LOOPBACK}:{dns_port}",
         "-management", f"{LOOPBACK}:{dns_management_port}",
         # Only the DNS role is wanted: the challenges themselves are answered by nginx.
         "-http01", "", "-https01", "", "-tlsalpn01", "",
         # No AAAA answers: the nginx under test listens on IPv4 loopback only.
         "-defaultIPv4", address, "-defaultIPv6", ""],
        name="pebble-challtestsrv", log_path=work_dir / "challtestsrv.log")

    config = {"pebble": {
        "listenAddress": f"{LOOPBACK}:{acme_port}",
        "managementListenAddress": f"{LOOPBACK}:{management_port}",
        "certificate": str(listener.fullchain),
        "privateKey": str(listener.privkey),
        "httpPort": http_port,
        "tlsPort": tls_port,  # unused (http-01 only), but it must not collide with anything
        "ocspResponderURL": "",
        "externalAccountBindingRequired": False,
    }}
    config_path = work_dir / "pebble-config.json"
    config_path.write_text(json.dumps(config, indent=2))
    env = dict(os.environ)
    env.update({
        "PEBBLE_VA_NOSLEEP": "1",       # no random 0-15 s sleep before each validation
        "PEBBLE_WFE_NONCEREJECT": "0",  # no deliberately rejected nonces: deterministic runs
        "PEBBLE_AUTHZREUSE": "0",       # every order is validated again, through nginx
    })
    pebble = ManagedProcess(
        [pebble_bin, "-config", str(config_path), "-dnsserver", f"{LOOPBACK}:{dns_port}",
         "-strict=false"],
        name="pebble", log_path=work_dir / "pebble.log", env=env)

    try:
        challtestsrv.start()
        wait_for_port(dns_management_port, LOOPBACK, timeout=START_TIMEOUT_SECS, process=challtestsrv)
        pebble.start()
        wait_for_port(acme_port, LOOPBACK, timeout=START_TIMEOUT_SECS, process=pebble)
        server = AcmeServer(
            directory_url=f"https://{LOOPBACK}:{acme_port}/dir",
            ca_bundle=listener_ca.cert,
            management_url=f"https://{LOOPBACK}:{management_port}",
            dns_management_url=f"http://{LOOPBACK}:{dns_management_port}",
            pebble=pebble,
            challtestsrv=challtestsrv,
        )
        wait_until(lambda: _answers(server), timeout=START_TIMEOUT_SECS, what="pebble's ACME directory")
        server.set_a_record(hostname, address)
        yield server
    finally:
        pebble.stop()
        challtestsrv.stop()


def _answers(server: AcmeServer) -> bool:
    try:
        return b"newOrder" in server._get(server.directory_url)
    except OSError:
        return False
