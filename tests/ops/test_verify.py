"""`detectorctl verify` against the real edge: Debian's nginx from the repo's templates with a
throwaway CA, in front of the real detector-api. A good deployment passes every row; each broken
one fails with the row that names it (a wrong key, a port left open, an expiring certificate, a
missing redirect).

The name is pinned with --connect-to (like curl --resolve), so the hostname, SNI and certificate are
the production shape while the traffic stays on loopback ports.
"""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from conftest import EDGE_HOSTNAME
from harness.nginx import Nginx, start_edge
from harness.pki import issue_server_cert
from harness.procs import free_port
from harness.service import CTL_BINARY, require_release_binary

# Verify sends a handful of requests per run; several runs in a row must not meet the per-IP
# limits, which test_edge.py covers on their own.
RELAXED_RATES = {
    "DETECTOR_EDGE_IP_RATE": "1000r/s",
    "DETECTOR_EDGE_IP_BURST": "1000",
    "DETECTOR_EDGE_KEY_RATE": "1000r/s",
    "DETECTOR_EDGE_KEY_BURST": "1000",
}
KEY_ENV = "DETECTORCTL_TEST_KEY"


@pytest.fixture(scope="module")
def good_edge(detector, test_ca, tmp_path_factory) -> Nginx:
    """A certificate with 90 days left: above the 14-day threshold."""
    cert = issue_server_cert(test_ca, tmp_path_factory.mktemp("verify-cert-90"), EDGE_HOSTNAME,
                             days=90, key_type="rsa")
    nginx = start_edge(tmp_path_factory.mktemp("verify-edge"), upstream=detector.address,
                       cert=cert, hostname=EDGE_HOSTNAME, overrides=RELAXED_RATES)
    yield nginx
    nginx.stop()


@pytest.fixture(scope="module")
def expiring_edge(detector, test_ca, tmp_path_factory) -> Nginx:
    """The same edge serving a certificate that nobody renewed: 5 days left."""
    cert = issue_server_cert(test_ca, tmp_path_factory.mktemp("verify-cert-5"), EDGE_HOSTNAME,
                             days=5, key_type="rsa")
    nginx = start_edge(tmp_path_factory.mktemp("verify-edge-expiring"), upstream=detector.address,
                       cert=cert, hostname=EDGE_HOSTNAME, overrides=RELAXED_RATES)
    yield nginx
    nginx.stop()


def verify(edge: Nginx, test_ca, key: str, *extra: str, json_output: bool = True,
           http_url: str | None = None, closed_ports: str | None = None):
    binary = require_release_binary(CTL_BINARY)
    argv = [
        str(binary), "verify",
        "--url", f"https://{EDGE_HOSTNAME}:{edge.https_port}",
        "--http-url", http_url or f"http://{EDGE_HOSTNAME}:{edge.http_port}",
        "--connect-to", "127.0.0.1",
        "--ca-file", str(test_ca.cert),
        "--key-env", KEY_ENV,
        # Ports nothing listens on stand in for the internal and legacy ports of a VM.
        "--closed-ports", closed_ports or f"{free_port()},{free_port()}",
        *extra,
    ]
    if json_output:
        argv.append("--json")
    env = {k: v for k, v in os.environ.items() if not k.startswith("DETECTORCTL_")}
    env[KEY_ENV] = key
    done = subprocess.run(argv, capture_output=True, text=True, timeout=180, env=env)
    assert done.returncode in (0, 1), f"verify could not run:\n{done.stdout}\n{done.stderr}"
    if not json_output:
        return done, None
    rows = {row["name"]: row for row in json.loads(done.stdout)["checks"]}
    return done, rows


def outcomes(rows) -> dict[str, str]:
    return {name: row["outcome"] for name, row in rows.items()}


def test_a_good_deployment_passes_every_row(good_edge, test_ca, api_key):
    done, rows = verify(good_edge, test_ca, api_key)
    assert done.returncode == 0, done.stdout
    expected = {"http-redirect", "healthz-no-key", "healthz-key", "score", "metrics-hidden",
                "scanner-404", "cert-name", "cert-days", "tls1.0-refused", "tls1.1-refused"}
    assert expected <= set(rows), rows
    assert set(outcomes(rows).values()) == {"ok"}, outcomes(rows)
    assert "score=" in rows["score"]["detail"]


def test_the_table_is_one_row_per_check_and_says_all_passed(good_edge, test_ca, api_key):
    done, _ = verify(good_edge, test_ca, api_key, json_output=False)
    assert done.returncode == 0, done.stdout
    assert done.stdout.splitlines()[0].split() == ["CHECK", "RESULT", "DETAIL"]
    assert done.stdout.rstrip().endswith("All checks passed.")
    assert api_key not in done.stdout + done.stderr


def test_a_wrong_key_fails_the_key_rows(good_edge, test_ca):
    done, rows = verify(good_edge, test_ca, "dsk_not-a-valid-key")
    assert done.returncode == 1
    failed = {name for name, outcome in outcomes(rows).items() if outcome == "fail"}
    assert failed == {"healthz-key", "score"}, rows
    assert "401" in rows["healthz-key"]["detail"]


def test_a_port_left_open_fails_its_row(good_edge, test_ca, api_key, detector):
    # The detector's own port reachable from outside: the audit's worst finding.
    done, rows = verify(good_edge, test_ca, api_key,
                        closed_ports=f"{detector.port},{free_port()}")
    assert done.returncode == 1
    failed = {name for name, outcome in outcomes(rows).items() if outcome == "fail"}
    assert failed == {f"port-closed:{detector.port}"}, rows


def test_an_expiring_certificate_fails_cert_days(expiring_edge, test_ca, api_key):
    done, rows = verify(expiring_edge, test_ca, api_key)
    assert done.returncode == 1
    failed = {name for name, outcome in outcomes(rows).items() if outcome == "fail"}
    assert failed == {"cert-days"}, rows
    assert "threshold 14" in rows["cert-days"]["detail"]
    assert "certbot-renew" in rows["cert-days"]["hint"]
    # The threshold is the operator's.
    done, rows = verify(expiring_edge, test_ca, api_key, "--min-cert-days", "3")
    assert done.returncode == 0, outcomes(rows)


def test_a_missing_redirect_fails_http_redirect(good_edge, test_ca, api_key, detector):
    # A plaintext listener answering on the HTTP side instead of redirecting.
    done, rows = verify(good_edge, test_ca, api_key,
                        http_url=f"http://{EDGE_HOSTNAME}:{detector.port}")
    assert done.returncode == 1
    failed = {name for name, outcome in outcomes(rows).items() if outcome == "fail"}
    assert failed == {"http-redirect"}, rows
    assert "expected 301" in rows["http-redirect"]["detail"]


def test_an_unknown_ca_fails_cert_name(good_edge):
    # The system's CAs only: the throwaway CA is not trusted, so the name is not proven.
    binary = require_release_binary(CTL_BINARY)
    done = subprocess.run(
        [str(binary), "verify", "--url", f"https://{EDGE_HOSTNAME}:{good_edge.https_port}",
         "--connect-to", "127.0.0.1", "--closed-ports", str(free_port()), "--json",
         "--skip", "http-redirect,healthz-no-key,healthz-key,score,metrics-hidden,scanner-404"],
        capture_output=True, text=True, timeout=60,
        env={k: v for k, v in os.environ.items() if not k.startswith("DETECTORCTL_")})
    assert done.returncode == 1, done.stdout + done.stderr
    rows = {row["name"]: row for row in json.loads(done.stdout)["checks"]}
    assert rows["cert-name"]["outcome"] == "fail", rows
    assert rows["tls1.0-refused"]["outcome"] == "ok"
