"""Operational changes under a bounded load through the real nginx in front of the real
detector-api: each change loses no request and no log line.

Every test runs harness.load.BoundedLoad (two keep-alive clients, one scoring a real text over
and over, one calling /healthz every few milliseconds) through the edge, makes its change while a /score request is in
flight, keeps the load on until requests that started after the change have finished, then
checks:

- zero failed requests (every answer is the expected 200; no connection error, no timeout);
- at least one scoring request was in flight across the change (the change met real traffic);
- zero lost log lines: the dedicated log holds exactly one line per answered request of the load
  (the load's requests carry their own User-Agent).

The changes: nginx reload (with a changed configuration), key file reload (SIGHUP after a
rotation and a revocation, done with detectorctl as an operator would), certificate renewal
(the new certificate swapped in where certbot puts it, then the reload certbot's deploy hook does).
Log rotation under load is covered by test_logrotate.py (forced rotations, line counts across the
rotated files); the pebble + certbot renewal path under load by test_certs.py.
"""

from __future__ import annotations

import os
import shutil
import socket
import ssl
import time
from pathlib import Path

from conftest import EDGE_HOSTNAME
from harness.load import BoundedLoad, Step, log_lines_with
from harness.nginx import Nginx, start_edge
from harness.pki import issue_server_cert
from harness.procs import run, wait_until
from harness.service import CTL_BINARY, SAMPLE_TEXT, DetectorService, require_release_binary

RELAXED_RATES = {
    "DETECTOR_EDGE_IP_RATE": "10000r/s",
    "DETECTOR_EDGE_IP_BURST": "10000",
    "DETECTOR_EDGE_KEY_RATE": "10000r/s",
    "DETECTOR_EDGE_KEY_BURST": "10000",
}
# Bounds of each load: whichever comes first. Two clients stay under the service's four
# inference slots, so a 503 would be a fault, not the slot cap working. The /healthz client
# pauses 5 ms between requests: a few hundred a second still meet every change, and the request
# budget cannot run out before the scoring requests the test waits for have finished.
LOAD_CLIENTS = 2
LOAD_MAX_REQUESTS = 5000
LOAD_MAX_SECONDS = 120.0
HEALTHZ_PAUSE_SECS = 0.005
PLANS = ((Step("POST", "/score", {"text": SAMPLE_TEXT}),),
         (Step("GET", "/healthz", pause=HEALTHZ_PAUSE_SECS),))
# Scoring requests (about a second each, with the /healthz client busy meanwhile) that must
# finish before a change and, started after it, after it.
WARM_UP = 2
AFTER = 2


def start_load(edge: Nginx, ca_cert: Path, api_key) -> BoundedLoad:
    return BoundedLoad(lambda: edge.https_client(ca_cert), edge.https_url(""), api_key=api_key,
                       clients=LOAD_CLIENTS, plans=PLANS, max_requests=LOAD_MAX_REQUESTS,
                       max_seconds=LOAD_MAX_SECONDS)


def change_under_load(load: BoundedLoad, change) -> float:
    """Warm up, make `change` while a /score is in flight, then let requests started after it
    finish. Returns the instant of the change."""
    load.wait_for_requests(WARM_UP, path="/score")
    load.wait_for_in_flight("/score")
    changed_at = time.monotonic()
    change()
    load.wait_for_requests(AFTER, path="/score")
    return changed_at


def assert_nothing_lost(load: BoundedLoad, edge: Nginx, changed_at: float) -> None:
    print(load.summary())
    failures = load.failures()
    assert failures == [], f"{len(failures)} of {load.count} requests failed: {failures[:5]}"
    spanning = [o for o in load.spanning(changed_at) if o.step.path == "/score"]
    assert spanning, "no scoring request was in flight across the change"
    wait_until(lambda: log_lines_with(edge.access_log, load.user_agent) >= load.answered,
               timeout=10, what="a log line for every answered request")
    lines = log_lines_with(edge.access_log, load.user_agent)
    assert lines == load.answered, f"{load.answered} requests answered, {lines} log lines"


def served_serial(edge: Nginx, ca_cert: Path) -> str:
    context = ssl.create_default_context(cafile=str(ca_cert))
    with socket.create_connection(edge.https_address, timeout=10) as plain:
        with context.wrap_socket(plain, server_hostname=EDGE_HOSTNAME) as tls:
            return tls.getpeercert()["serialNumber"].upper()


def file_serial(cert: Path) -> str:
    out = run(["openssl", "x509", "-in", str(cert), "-noout", "-serial"]).stdout
    return out.strip().split("=", 1)[1].upper()


# --- nginx reload -----------------------------------------------------------------------------


def test_nginx_reload_under_load_loses_nothing(detector, edge_cert, test_ca, api_key, tmp_path):
    edge = start_edge(tmp_path / "edge", upstream=detector.address, cert=edge_cert,
                      hostname=EDGE_HOSTNAME, worker_processes=2, overrides=RELAXED_RATES)
    try:
        with start_load(edge, test_ca.cert, api_key) as load:
            # A real configuration change (a limit), rendered, checked with nginx -t, then SIGHUP.
            changed = {**edge.variables, "DETECTOR_EDGE_KEEPALIVE_TIMEOUT": "20s"}
            changed_at = change_under_load(load, lambda: edge.reload(changed))
        assert "keepalive_timeout 20s;" in (edge.conf_d / "detector.conf").read_text()
        assert_nothing_lost(load, edge, changed_at)
    finally:
        edge.stop()


# --- key file reload --------------------------------------------------------------------------


def ctl_keys(key_file: Path, *args: str) -> str:
    require_release_binary(CTL_BINARY)
    return run([str(CTL_BINARY), "keys", "--key-file", str(key_file), *args]).stdout.strip()


def status_with_key(edge: Nginx, ca_cert: Path, key: str) -> int:
    session = edge.https_client(ca_cert)
    response = session.get(edge.https_url("/healthz"), headers={"Authorization": f"Bearer {key}"},
                           timeout=30)
    return response.status_code


def test_key_file_reload_under_load_loses_nothing(edge_cert, test_ca, tmp_path):
    key_file = tmp_path / "keys.json"
    app_key = ctl_keys(key_file, "new", "app")
    old_key = ctl_keys(key_file, "new", "legacy")
    service = DetectorService(tmp_path / "svc", key_file=key_file).start()
    edge = start_edge(tmp_path / "edge", upstream=service.address, cert=edge_cert,
                      hostname=EDGE_HOSTNAME, overrides=RELAXED_RATES)
    try:
        assert status_with_key(edge, test_ca.cert, old_key) == 200
        current = {"key": app_key}
        rotated: dict[str, str] = {}
        with start_load(edge, test_ca.cert, lambda: current["key"]) as load:
            def rotate_and_revoke() -> None:
                # The operator's commands: rotate with an overlap, revoke, SIGHUP via --pid.
                rotated["key"] = ctl_keys(key_file, "rotate", "app", "--overlap", "1h")
                ctl_keys(key_file, "revoke", "legacy", "--pid", str(service.process.pid))
                # The reload has happened once the revoked key is refused.
                wait_until(lambda: status_with_key(edge, test_ca.cert, old_key) == 401,
                           timeout=15, interval=0.1, what="the service to reload its key file")

            changed_at = change_under_load(load, rotate_and_revoke)
            # The old key of the rotation still works (overlap) and the new one works too:
            # the load switches to the new key and keeps going.
            assert status_with_key(edge, test_ca.cert, rotated["key"]) == 200
            current["key"] = rotated["key"]
            load.wait_for_requests(AFTER, path="/score")
        assert status_with_key(edge, test_ca.cert, app_key) == 200, "the overlap ended early"
        assert_nothing_lost(load, edge, changed_at)
        for key in (app_key, old_key, rotated["key"]):
            assert key not in service.log_text()
            assert key not in edge.access_log.read_text()
    finally:
        edge.stop()
        service.stop()


# --- certificate renewal ----------------------------------------------------------------------


def test_certificate_swap_and_reload_under_load_loses_nothing(detector, test_ca, api_key, tmp_path):
    # nginx reads the certificate from certbot's live/ layout; renewal writes a new pair there and
    # the deploy hook reloads nginx (certbot/renew). Here the new pair comes from the test CA.
    live = tmp_path / "live"
    first = issue_server_cert(test_ca, live, EDGE_HOSTNAME, key_type="rsa")
    renewed = issue_server_cert(test_ca, tmp_path / "renewed", EDGE_HOSTNAME, key_type="rsa")
    edge = start_edge(tmp_path / "edge", upstream=detector.address, cert=first,
                      hostname=EDGE_HOSTNAME, worker_processes=2, overrides=RELAXED_RATES)
    try:
        before = served_serial(edge, test_ca.cert)
        assert before == file_serial(first.cert)

        def renew() -> None:
            for name in ("fullchain", "privkey"):
                target = getattr(first, name)
                staged = target.with_suffix(".new")
                shutil.copyfile(getattr(renewed, name), staged)
                os.replace(staged, target)  # atomic, as certbot's symlink switch
            edge.reload()

        with start_load(edge, test_ca.cert, api_key) as load:
            changed_at = change_under_load(load, renew)
        after = served_serial(edge, test_ca.cert)
        assert after == file_serial(renewed.cert) != before
        assert_nothing_lost(load, edge, changed_at)
    finally:
        edge.stop()
