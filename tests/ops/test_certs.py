"""Certificates: first issuance, renewal and the renewal units, against a real ACME server.

Everything here is the real program: Debian's pebble as the ACME server (pebble-challtestsrv as its
DNS, so the test hostname resolves to the test nginx), Debian's certbot driven by certbot/bootstrap
and certbot/renew exactly as on the VM (only CERTBOT_CMD, NGINX_START_CMD and NGINX_RELOAD_CMD point
at host programs instead of the Compose project), nginx rendered from nginx/templates, and the real
detector-api behind it. The settings reach the scripts through an env file, as in production.

The tests share one stack and run in order: bootstrap from nothing, bootstrap again, renewal with
nothing to do, forced renewal under load, failed renewals, a switch to another ACME server. Pebble keeps its state in memory, so it
lives as long as the module (restarting it would orphan the certbot account).
"""

from __future__ import annotations

import os
import signal
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from harness.acme import AcmeServer, acme_server
from harness.nginx import Nginx, edge_variables
from harness.pki import make_ca
from harness.procs import free_port, require_tool, run, wait_until
from harness.service import REPO_ROOT, SAMPLE_TEXT

HOSTNAME = "detector.test"
BOOTSTRAP = REPO_ROOT / "certbot" / "bootstrap"
RENEW = REPO_ROOT / "certbot" / "renew"
SYSTEMD_DIR = REPO_ROOT / "systemd"
STAND_IN_SUBJECT = "detector-stack bootstrap (self-signed stand-in)"

# Bounds of the load that runs across the reload: two clients stay under the service's four
# inference slots (a 503 there would be the slot cap working, not a reload failure), and every loop
# ends after at most this many requests or seconds.
LOAD_CLIENTS = 2
LOAD_MAX_REQUESTS_PER_CLIENT = 150
LOAD_MAX_SECONDS = 120.0


@dataclass
class Stack:
    tmp: Path
    acme: AcmeServer
    nginx: Nginx          # configured, but started by certbot/bootstrap through NGINX_START_CMD
    cert_dir: Path        # certbot's --config-dir, i.e. DETECTOR_CERTS_DIR
    env_file: Path
    issuers: Path         # pebble's root + intermediate: what its certificates verify against
    reloads_log: Path     # one line per NGINX_RELOAD_CMD call
    starts_log: Path      # the subject of the certificate nginx found at each start
    start_calls_log: Path  # one line per NGINX_START_CMD call
    api_key: str

    @property
    def live(self) -> Path:
        return self.cert_dir / "live" / HOSTNAME

    def script(self, path: Path, *args: str, env: dict[str, str] | None = None,
               check: bool = True, timeout: float = 120.0):
        environment = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                       "DETECTOR_ENV_FILE": str(self.env_file), **(env or {})}
        return run([str(path), *args], env=environment, check=check, timeout=timeout)

    def reload_count(self) -> int:
        calls = self.reloads_log.read_text().count("reload") if self.reloads_log.exists() else 0
        # The nginx side of the same fact: each SIGHUP it received.
        assert calls == self.error_log_text().count("(SIGHUP) received"), self.error_log_text()[-2000:]
        return calls

    def error_log_text(self) -> str:
        try:
            return self.nginx.error_log.read_text(errors="replace")
        except FileNotFoundError:
            return ""


def write_executable(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(0o755)
    return path


def served_certificate(stack: Stack) -> dict:
    """The certificate nginx serves for HOSTNAME, verified against pebble's CA for that name."""
    context = ssl.create_default_context(cafile=str(stack.issuers))
    with socket.create_connection(("127.0.0.1", stack.nginx.https_port), timeout=10) as sock:
        with context.wrap_socket(sock, server_hostname=HOSTNAME) as tls:
            return tls.getpeercert()


def disk_serial(stack: Stack) -> str:
    out = run(["openssl", "x509", "-in", str(stack.live / "fullchain.pem"), "-noout", "-serial"]).stdout
    return out.strip().split("=", 1)[1].upper()


def wait_for_served_serial(stack: Stack, serial: str, timeout: float = 15.0) -> dict:
    """nginx answers with new workers shortly after `nginx -s reload` returns."""
    seen: dict = {}

    def serving() -> bool:
        try:
            seen.update(served_certificate(stack))
        except ssl.SSLError:  # still the previous certificate, from a CA no longer trusted here
            return False
        return seen.get("serialNumber", "").upper() == serial

    wait_until(serving, timeout=timeout, what=f"nginx to serve certificate serial {serial}")
    return seen


def stop_daemon_nginx(nginx: Nginx) -> None:
    """Stop the nginx that NGINX_START_CMD daemonized (it is not a child of the test)."""
    try:
        master = int(nginx.pid_path.read_text().strip())
    except (FileNotFoundError, ValueError):
        return
    workers = [int(p) for p in os.listdir("/proc") if p.isdigit() and _stat_of(int(p))[1] == master]
    try:
        os.kill(master, signal.SIGTERM)  # fast shutdown; the tests are over
    except ProcessLookupError:
        return
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and _stat_of(master)[0] not in (None, "Z"):
        time.sleep(0.05)
    for pid in (master, *workers):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _stat_of(pid: int) -> tuple[str | None, int | None]:
    """(state, parent pid) of a process from /proc, (None, None) once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None, None
    return fields[0], int(fields[1])


@pytest.fixture(scope="module")
def stack(tmp_path_factory, detector, api_key):
    """The real detector (the session's, from conftest.py) behind an nginx that has no certificate yet."""
    for tool in ("certbot", "openssl", "nginx", "pebble", "pebble-challtestsrv"):
        require_tool(tool)
    tmp = tmp_path_factory.mktemp("certs")
    cert_dir, webroot = tmp / "letsencrypt", tmp / "webroot"
    http_port, https_port = free_port(), free_port()
    variables = edge_variables(
        upstream=detector.address, hostname=HOSTNAME,
        cert_path=cert_dir / "live" / HOSTNAME / "fullchain.pem",
        key_path=cert_dir / "live" / HOSTNAME / "privkey.pem",
        http_listen=f"127.0.0.1:{http_port}", https_listen=f"127.0.0.1:{https_port}",
        webroot=webroot, log_path=tmp / "log" / "edge-access.log",
        # The load across the reload must measure the reload, not the throttle.
        overrides={"DETECTOR_EDGE_IP_RATE": "1000r/s", "DETECTOR_EDGE_KEY_RATE": "1000r/s"})
    nginx = Nginx(tmp / "nginx", variables)
    nginx.write_config()  # rendered now; nginx -t needs the certificate, which does not exist yet

    with acme_server(tmp / "acme", hostname=HOSTNAME, http_port=http_port) as acme:
        nginx_argv = " ".join(nginx.signal_argv("reload")[:-2])  # nginx -p .. -c .. -e ..
        starts_log, reloads_log = tmp / "nginx-starts.log", tmp / "nginx-reloads.log"
        start_calls_log = tmp / "nginx-start-calls.log"
        # Stand-in for `docker-compose up -d nginx`: start it unless it runs; record which
        # certificate it found, to prove the bootstrap started it on the self-signed stand-in.
        start_cmd = write_executable(tmp / "start-nginx", f"""#!/bin/sh
set -eu
echo start >> {start_calls_log}
if [ -s {nginx.pid_path} ] && kill -0 "$(cat {nginx.pid_path})" 2>/dev/null; then exit 0; fi
openssl x509 -in {cert_dir}/live/{HOSTNAME}/fullchain.pem -noout -subject >> {starts_log}
exec {nginx_argv}
""")
        # Stand-in for `docker-compose exec -T nginx nginx -s reload`, counting its calls.
        reload_cmd = write_executable(tmp / "reload-nginx", f"""#!/bin/sh
set -eu
echo "reload $(date +%s.%N)" >> {reloads_log}
exec {nginx_argv} -s reload
""")
        env_file = tmp / "compose.env"
        env_file.write_text("\n".join([
            "# Written by test_certs.py in the format of compose/.env.",
            "DETECTOR_API_KEY=never-read-by-the-certificate-scripts",
            f"DETECTOR_HOSTNAME={HOSTNAME}",
            "DETECTOR_ACME_EMAIL=ops@detector.test",
            f"DETECTOR_ACME_SERVER={acme.directory_url}",
            f"DETECTOR_ACME_CA_BUNDLE={acme.ca_bundle}",
            f"DETECTOR_CERTS_DIR={cert_dir}",
            f"CERTBOT_WEBROOT={webroot}",
            f"CERTBOT_CMD=certbot --config-dir {cert_dir} --work-dir {tmp / 'certbot-work'}"
            f" --logs-dir {tmp / 'certbot-logs'}",
            f"NGINX_START_CMD={start_cmd}",
            f"NGINX_RELOAD_CMD={reload_cmd}",
            f"NGINX_HTTPS_ADDR=127.0.0.1:{https_port}",
        ]) + "\n")
        issuers = tmp / "pebble-issuers.pem"
        issuers.write_text(acme.issuer_pems())
        try:
            yield Stack(tmp=tmp, acme=acme, nginx=nginx, cert_dir=cert_dir, env_file=env_file,
                        issuers=issuers, reloads_log=reloads_log, starts_log=starts_log,
                        start_calls_log=start_calls_log,
                        api_key=api_key)
        finally:
            stop_daemon_nginx(nginx)


def test_bootstrap_from_nothing_ends_with_nginx_serving_a_pebble_certificate(stack):
    assert not stack.cert_dir.exists()

    done = stack.script(BOOTSTRAP)

    assert STAND_IN_SUBJECT in stack.starts_log.read_text(), "nginx did not start on the stand-in"
    served = served_certificate(stack)  # verified against pebble's CA, for HOSTNAME
    assert ("DNS", HOSTNAME) in served["subjectAltName"]
    assert served["serialNumber"].upper() == disk_serial(stack)
    assert not (stack.cert_dir / "detector-stack" / "self-signed" / HOSTNAME).exists()
    assert stack.reload_count() == 1, done.stderr
    # The API answers through nginx on the new certificate.
    client = stack.nginx.https_client(stack.issuers)
    response = client.get(stack.nginx.https_url("/healthz"),
                          headers={"Authorization": f"Bearer {stack.api_key}"}, timeout=10)
    assert response.status_code == 200, response.text


def test_bootstrap_again_keeps_the_certificate_and_leaves_nginx_alone(stack):
    serial, reloads = disk_serial(stack), stack.reload_count()
    start_calls = stack.start_calls_log.read_text()

    done = stack.script(BOOTSTRAP)

    assert "nothing to issue" in done.stderr
    assert stack.reload_count() == reloads
    # Not even `up`: on the VM it would remove the optional monitoring containers as orphans.
    assert stack.start_calls_log.read_text() == start_calls
    assert disk_serial(stack) == serial
    assert sorted(p.name for p in (stack.cert_dir / "archive" / HOSTNAME).iterdir()) == [
        "cert1.pem", "chain1.pem", "fullchain1.pem", "privkey1.pem"]
    assert served_certificate(stack)["serialNumber"].upper() == serial


def test_renewal_with_nothing_to_renew_does_not_reload(stack):
    serial, reloads = disk_serial(stack), stack.reload_count()

    done = stack.script(RENEW)

    assert "not yet due" in (done.stdout + done.stderr), done.stdout + done.stderr
    assert stack.reload_count() == reloads
    assert disk_serial(stack) == serial
    assert not (stack.cert_dir / "detector-stack" / "reload-pending").exists()


def test_forced_renewal_changes_the_served_serial_and_no_request_fails_across_the_reload(stack):
    old_serial, reloads = disk_serial(stack), stack.reload_count()
    stop = threading.Event()
    results: list[tuple[float, float, str]] = []  # (started, finished, outcome), wall clock
    lock = threading.Lock()

    def client_loop() -> None:
        # One connection per request (Connection: close): each request does a new TLS handshake
        # against whichever workers serve at that moment, and a client-side keep-alive race (a
        # request written on a connection an old worker is closing) cannot pass for an nginx fault.
        session = stack.nginx.https_client(stack.issuers)
        session.headers.update({"Authorization": f"Bearer {stack.api_key}", "Connection": "close"})
        deadline = time.monotonic() + LOAD_MAX_SECONDS
        for _ in range(LOAD_MAX_REQUESTS_PER_CLIENT):
            if stop.is_set() or time.monotonic() > deadline:
                return
            started = time.time()
            try:
                response = session.post(stack.nginx.https_url("/score"), json={"text": SAMPLE_TEXT},
                                        timeout=60)
                outcome = "ok" if response.status_code == 200 and "score" in response.json() \
                    else f"HTTP {response.status_code}: {response.text[:200]}"
            except (requests.RequestException, ValueError) as error:
                outcome = f"{type(error).__name__}: {error}"
            with lock:
                results.append((started, time.time(), outcome))

    threads = [threading.Thread(target=client_loop, daemon=True) for _ in range(LOAD_CLIENTS)]
    for thread in threads:
        thread.start()
    try:
        wait_until(lambda: len(results) >= LOAD_CLIENTS, timeout=60, what="the load to get going")
        done = stack.script(RENEW, "--force-renewal")
        new = wait_for_served_serial(stack, disk_serial(stack))
        reloaded_at = float(stack.reloads_log.read_text().splitlines()[-1].split()[1])
        # Keep the load on until requests that started after the reload have finished too.
        wait_until(lambda: sum(1 for started, _, _ in results if started > reloaded_at) >= 2 * LOAD_CLIENTS,
                   timeout=60, what="requests after the reload")
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=90)

    assert new["serialNumber"].upper() != old_serial
    assert ("DNS", HOSTNAME) in new["subjectAltName"]
    assert stack.reload_count() == reloads + 1, done.stderr
    assert not (stack.cert_dir / "detector-stack" / "reload-pending").exists()
    failures = [outcome for _, _, outcome in results if outcome != "ok"]
    assert failures == [], f"{len(failures)} of {len(results)} requests failed: {failures[:5]}"
    # The reload happened under load: at least one request was in flight when nginx got it.
    assert any(started < reloaded_at < finished for started, finished, _ in results), results


def test_renewal_without_the_acme_ca_bundle_fails_visibly_and_keeps_nginx_as_is(stack):
    # certbot does not store the CA bundle: a run that does not pass it again cannot reach the
    # server. Here the bundle is a CA that did not sign pebble's listener.
    other_ca = make_ca(stack.tmp / "unrelated-ca", "unrelated CA")
    serial, reloads = disk_serial(stack), stack.reload_count()

    done = stack.script(RENEW, "--force-renewal", env={"DETECTOR_ACME_CA_BUNDLE": str(other_ca.cert)},
                        check=False)

    assert done.returncode != 0
    assert "certbot renew failed" in done.stderr, done.stderr
    assert stack.reload_count() == reloads
    assert disk_serial(stack) == serial


def test_failed_reload_fails_the_run_and_the_next_run_reloads(stack):
    reloads = stack.reload_count()

    failed = stack.script(RENEW, "--force-renewal", env={"NGINX_RELOAD_CMD": "false"}, check=False)

    assert failed.returncode != 0, failed.stderr
    marker = stack.cert_dir / "detector-stack" / "reload-pending"
    assert HOSTNAME in marker.read_text()
    renewed_serial = disk_serial(stack)
    assert served_certificate(stack)["serialNumber"].upper() != renewed_serial

    stack.script(RENEW)  # nothing due; the marker left by the failed reload is acted on

    assert stack.reload_count() == reloads + 1
    assert not marker.exists()
    wait_for_served_serial(stack, renewed_serial)


def test_switching_the_acme_server_and_bootstrapping_again_replaces_the_certificate(stack):
    # The staging rehearsal then production: a second, independent CA on the same nginx.
    with acme_server(stack.tmp / "acme-next", hostname=HOSTNAME, http_port=stack.nginx.http_port) as next_ca:
        switched = {"DETECTOR_ACME_SERVER": next_ca.directory_url,
                    "DETECTOR_ACME_CA_BUNDLE": str(next_ca.ca_bundle)}
        old_serial = disk_serial(stack)

        done = stack.script(BOOTSTRAP, env=switched)

        assert "replacing it" in done.stderr, done.stderr
        stack.issuers.write_text(next_ca.issuer_pems())  # from now on only the new CA is trusted
        served = wait_for_served_serial(stack, disk_serial(stack))
        assert served["serialNumber"].upper() != old_serial
        assert f"server = {next_ca.directory_url}" in (
            stack.cert_dir / "renewal" / f"{HOSTNAME}.conf").read_text()
        again = stack.script(BOOTSTRAP, env=switched)
        assert "nothing to issue" in again.stderr, again.stderr


def test_failed_first_issuance_leaves_the_stand_in_for_nginx(tmp_path):
    # Nothing listens on the ACME port: certbot fails, and the live path must still hold a
    # certificate, or nginx would not start again after a reboot.
    cert_dir = tmp_path / "letsencrypt"
    env_file = tmp_path / "compose.env"
    env_file.write_text("\n".join([
        f"DETECTOR_HOSTNAME={HOSTNAME}",
        "DETECTOR_ACME_EMAIL=ops@detector.test",
        f"DETECTOR_ACME_SERVER=https://127.0.0.1:{free_port()}/dir",
        f"DETECTOR_CERTS_DIR={cert_dir}",
        f"CERTBOT_WEBROOT={tmp_path / 'webroot'}",
        f"CERTBOT_CMD=certbot --config-dir {cert_dir} --work-dir {tmp_path / 'work'} --logs-dir {tmp_path / 'logs'}",
        "NGINX_START_CMD=true",
        "NGINX_RELOAD_CMD=false",
        "NGINX_HTTPS_ADDR=",
    ]) + "\n")
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "DETECTOR_ENV_FILE": str(env_file)}

    for attempt in (1, 2):  # the second run reuses the stand-in
        done = run([str(BOOTSTRAP)], env=env, check=False, timeout=120)
        assert done.returncode != 0
        assert "restored the self-signed stand-in" in done.stderr, done.stderr
        subject = run(["openssl", "x509", "-in", str(cert_dir / "live" / HOSTNAME / "fullchain.pem"),
                       "-noout", "-subject"]).stdout
        assert STAND_IN_SUBJECT in subject
        assert (cert_dir / "live" / HOSTNAME / "privkey.pem").exists()
    assert "reusing the self-signed stand-in" in done.stderr
    assert not (cert_dir / "renewal" / f"{HOSTNAME}.conf").exists()


def manifest_lines_of_this_area() -> list[tuple[str, str, int]]:
    """host/manifest.txt entries for the renewal units and the scripts they run."""
    entries = []
    for line in (REPO_ROOT / "host" / "manifest.txt").read_text().splitlines():
        fields = line.split()
        if len(fields) == 3 and not line.startswith("#") and (
                fields[0].startswith("certbot/") or fields[0].startswith("systemd/certbot-renew.")):
            entries.append((fields[0], fields[1], int(fields[2], 8)))
    return entries


def test_renewal_units_pass_systemd_analyze_verify_without_any_output(tmp_path):
    systemd_analyze = require_tool("systemd-analyze")
    library = Path("/usr/lib/systemd/system")
    if not (library / "docker.service").exists():
        pytest.fail("docker.service is missing: install the `docker.io` package", pytrace=False)
    # A root with the host's unit library (so docker.service and timers.target resolve) and this
    # area's files where host/install.sh puts them: verify also checks that ExecStart= exists there.
    root = tmp_path / "root"
    (root / "usr" / "lib" / "systemd").mkdir(parents=True)
    run(["cp", "-a", str(library), str(root / "usr" / "lib" / "systemd")])
    (root / "lib").symlink_to("usr/lib")
    installed = manifest_lines_of_this_area()
    sources = {source for source, _, _ in installed}
    assert {"systemd/certbot-renew.service", "systemd/certbot-renew.timer", "certbot/lib.sh",
            "certbot/renew", "certbot/deploy-hook"} <= sources, installed
    for source, destination, mode in installed:
        target = root / destination.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes((REPO_ROOT / source).read_bytes())
        target.chmod(mode)
    units = [destination for source, destination, _ in installed if source.startswith("systemd/")]

    done = run([systemd_analyze, "verify", f"--root={root}", *units], check=False)

    assert (done.returncode, done.stdout + done.stderr) == (0, ""), units


def test_certificate_scripts_pass_shellcheck():
    shellcheck = require_tool("shellcheck")
    scripts = [REPO_ROOT / "certbot" / name for name in ("bootstrap", "renew", "lib.sh", "deploy-hook")]

    done = run([shellcheck, "--external-sources", *map(str, scripts)], check=False, cwd=REPO_ROOT)

    assert (done.returncode, done.stdout) == (0, ""), done.stdout


def test_renewal_timer_runs_twice_a_day_spread_and_catches_up():
    timer = (SYSTEMD_DIR / "certbot-renew.timer").read_text()
    settings = dict(line.split("=", 1) for line in timer.splitlines() if "=" in line and not line.startswith("#"))
    assert settings["Persistent"] == "true"
    assert settings["RandomizedDelaySec"]
    elapses = run(["systemd-analyze", "calendar", "--iterations=3", settings["OnCalendar"]]).stdout
    hours = [line.split()[-2] for line in elapses.splitlines() if "Iter." in line or "Next elapse" in line]
    assert len(hours) == 3 and {h[:5] for h in hours} == {"00:00", "12:00"}, elapses
