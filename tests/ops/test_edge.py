"""The edge: Debian's nginx, configured from nginx/templates exactly as the stock image renders
them, in front of the real detector-api, checked with real HTTP and TLS clients.

Every request a test sends carries a unique User-Agent, and the test then finds that request's
line in the dedicated access log (with the expected status and port): that is how "every request
on either port lands in the same file" is checked, request by request. Handshakes that nginx
refuses (TLS 1.1, unknown SNI) never become HTTP requests and so have no line.
"""

from __future__ import annotations

import json
import socket
import ssl
import threading
import uuid
import warnings
from pathlib import Path

import pytest
import requests

from conftest import EDGE_HOSTNAME
from harness.nginx import (
    TEMPLATE_DIR,
    Nginx,
    parse_access_line,
    production_variables,
    render_templates,
    start_edge,
    template_variables,
)
from harness.procs import free_port, require_tool, run, wait_until
from harness.service import SAMPLE_TEXT

# Limits for the functional tests: production values except the rates, so that a quick run of
# tests from one address is not throttled. The limit tests start their own edges.
RELAXED_RATES = {
    "DETECTOR_EDGE_IP_RATE": "1000r/s",
    "DETECTOR_EDGE_IP_BURST": "1000",
    "DETECTOR_EDGE_KEY_RATE": "1000r/s",
    "DETECTOR_EDGE_KEY_BURST": "1000",
}



# --- fixtures ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def edge(detector, edge_cert, tmp_path_factory) -> Nginx:
    nginx = start_edge(tmp_path_factory.mktemp("edge"), upstream=detector.address,
                       cert=edge_cert, hostname=EDGE_HOSTNAME, overrides=RELAXED_RATES)
    yield nginx
    nginx.stop()


@pytest.fixture(scope="module")
def https(edge, test_ca):
    return edge.https_client(test_ca.cert)


@pytest.fixture(scope="module")
def http(edge):
    return edge.http_client()


class SilentUpstream:
    """Accepts TCP connections and never answers: an upstream that hangs."""

    def __init__(self) -> None:
        self.port = free_port()
        self.server = socket.create_server(("127.0.0.1", self.port))
        self.server.settimeout(0.2)
        self.accepted: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.server.accept()
            except OSError:
                continue
            self.accepted.append(conn)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        for conn in self.accepted:
            conn.close()
        self.server.close()


@pytest.fixture(scope="module")
def silent_upstream():
    upstream = SilentUpstream()
    yield upstream
    upstream.close()


@pytest.fixture(scope="module")
def slow_edge(silent_upstream, edge_cert, tmp_path_factory) -> Nginx:
    """In front of an upstream that never answers, with short timeouts and 2 connections per IP."""
    nginx = start_edge(tmp_path_factory.mktemp("slow-edge"),
                       upstream=f"127.0.0.1:{silent_upstream.port}", cert=edge_cert,
                       hostname=EDGE_HOSTNAME,
                       overrides={**RELAXED_RATES,
                                  "DETECTOR_EDGE_PROXY_READ_TIMEOUT": "2s",
                                  "DETECTOR_EDGE_CLIENT_HEADER_TIMEOUT": "1s",
                                  "DETECTOR_EDGE_CONN_PER_IP": "2"})
    yield nginx
    nginx.stop()


# --- helpers -----------------------------------------------------------------------------------


def marker() -> str:
    """A unique User-Agent, to find a request's line in the log."""
    return f"edge-test/{uuid.uuid4().hex[:12]}"


def logged(nginx: Nginx, ua: str, *, status: int | str, port: int | None = None) -> dict[str, str]:
    """The parsed log line of the request sent with User-Agent `ua`; fails if absent or if its
    status or port (default: HTTPS) differ."""
    entry = nginx.access_entry(ua)
    assert entry["status"] == str(status), entry
    assert entry["port"] == str(port or nginx.https_port), entry
    return entry


def assert_json_error(response, status: int, code: str | None = None) -> dict:
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["Content-Type"].startswith("application/json"), response.headers
    body = response.json()
    assert set(body) == {"error"} and {"code", "message"} <= set(body["error"]), body
    if code is not None:
        assert body["error"]["code"] == code, body
    return body


def tls_context(ca: Path, *, minimum=None, maximum=None, ciphers: str | None = None,
                alpn: list[str] | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(ca))
    if ciphers:
        context.set_ciphers(ciphers)
    if minimum:
        context.minimum_version = minimum
    if maximum:
        context.maximum_version = maximum
    if alpn:
        context.set_alpn_protocols(alpn)
    return context


def request_bytes(method: str, path: str, host: str, ua: str, extra: str = "") -> bytes:
    return (f"{method} {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: {ua}\r\n{extra}"
            "Connection: close\r\n\r\n").encode()


def status_of(raw: bytes) -> int:
    assert raw.startswith(b"HTTP/1.1 "), raw[:200]
    return int(raw.split(b" ", 2)[1])


def json_body_of(raw: bytes) -> dict:
    head, _, body = raw.partition(b"\r\n\r\n")
    assert b"content-type: application/json" in head.lower(), head
    return json.loads(body)


# --- the rendered configuration ----------------------------------------------------------------


def test_every_template_variable_has_a_production_value_and_nothing_else_is_substituted(tmp_path):
    used = template_variables()
    defaults = production_variables()
    assert used == set(defaults), (
        f"used but without a value in nginx/edge.env: {sorted(used - set(defaults))}; "
        f"in edge.env but unused: {sorted(set(defaults) - used)}")
    rendered = render_templates(tmp_path, defaults)
    names = sorted(p.name for p in rendered)
    assert names == sorted(t.name.removesuffix(".template")
                           for t in TEMPLATE_DIR.rglob("*.template"))
    text = "\n".join(p.read_text() for p in rendered)
    assert "${" not in text and "$DETECTOR" not in text
    # nginx's own variables pass through untouched, production values are in place.
    for kept in ("$remote_addr", "$request_uri", "$binary_remote_addr", "$upstream_response_time"):
        assert kept in text
    assert "return 301 https://detector.cereby.ai$request_uri;" in text
    assert "client_max_body_size 65536;" in text

    # The image substitutes every variable of its environment, not only ours: the variables the
    # stock image and a shell define change nothing.
    image_env = {"HOSTNAME": "c0ffee", "HOME": "/root", "PATH": "/usr/bin:/bin",
                 "NGINX_VERSION": "1.28.0", "NJS_VERSION": "0.8.10", "PKG_RELEASE": "1",
                 "PWD": "/", "SHLVL": "1", "TERM": "xterm"}
    again = render_templates(tmp_path / "image-env", {**defaults, **image_env})
    assert [p.read_text() for p in again] == [p.read_text() for p in rendered]


def test_nginx_accepts_the_rendered_config_without_warnings(edge):
    checked = edge.test_config()
    output = checked.stdout + checked.stderr
    assert "test is successful" in output
    unexpected = [line for line in output.splitlines()
                  if "[warn]" in line or "[emerg]" in line]
    assert not unexpected, unexpected


# --- port 80 -----------------------------------------------------------------------------------


def test_http_redirects_to_the_configured_name_not_the_host_header(edge, http):
    ua = marker()
    # The Host header carries another port: the redirect still names the configured host only.
    response = http.get(edge.http_url("/score?lang=en"),
                        headers={"User-Agent": ua, "Host": f"{EDGE_HOSTNAME}:8080"})
    assert response.status_code == 301
    assert response.headers["Location"] == f"https://{EDGE_HOSTNAME}/score?lang=en"
    logged(edge, ua, status=301, port=edge.http_port)


def test_acme_challenge_is_served_on_http_and_a_missing_one_is_404(edge, http):
    challenge_dir = edge.webroot / ".well-known" / "acme-challenge"
    challenge_dir.mkdir(parents=True, exist_ok=True)
    (challenge_dir / "tok3n-abc").write_text("tok3n-abc.thumbprint")

    ua = marker()
    response = http.get(edge.http_url("/.well-known/acme-challenge/tok3n-abc"),
                        headers={"User-Agent": ua})
    assert response.status_code == 200
    assert response.text == "tok3n-abc.thumbprint"
    logged(edge, ua, status=200, port=edge.http_port)

    ua = marker()
    response = http.get(edge.http_url("/.well-known/acme-challenge/missing"),
                        headers={"User-Agent": ua})
    assert_json_error(response, 404, "not_found")
    assert "Location" not in response.headers
    logged(edge, ua, status=404, port=edge.http_port)


def test_plain_http_on_the_https_port_gets_json(edge):
    ua = marker()
    host, port = edge.https_address
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall(request_bytes("GET", "/healthz", EDGE_HOSTNAME, ua))
        raw = b""
        while chunk := sock.recv(65536):
            raw += chunk
    assert status_of(raw) == 400
    assert json_body_of(raw)["error"]["code"] == "https_required"
    logged(edge, ua, status=400)


# --- port 443: the service through nginx --------------------------------------------------------


def test_healthz_without_key_is_401_and_with_key_200(edge, https, api_key):
    ua = marker()
    response = https.get(edge.https_url("/healthz"), headers={"User-Agent": ua})
    assert_json_error(response, 401)
    assert response.headers["Strict-Transport-Security"] == "max-age=63072000"
    entry = logged(edge, ua, status=401)
    assert entry["urt"] != "-", "the 401 comes from the service, through nginx"

    for headers in ({"Authorization": f"Bearer {api_key}"}, {"X-API-Key": api_key}):
        ua = marker()
        response = https.get(edge.https_url("/healthz"), headers={"User-Agent": ua, **headers})
        assert response.status_code == 200, response.text
        assert response.json()["status"]
        assert response.headers["Strict-Transport-Security"] == "max-age=63072000"
        logged(edge, ua, status=200)


def test_score_with_key_and_a_real_text_is_200_json(edge, https, api_key):
    ua = marker()
    response = https.post(edge.https_url("/score"), json={"text": SAMPLE_TEXT},
                          headers={"User-Agent": ua, "Authorization": f"Bearer {api_key}"},
                          timeout=120)
    assert response.status_code == 200, response.text
    body = response.json()
    assert 0.0 <= body["score"] <= 1.0
    assert body["label"] in {"ai", "human", "uncertain"}
    assert body["tokens"] > 0
    entry = logged(edge, ua, status=200)
    assert entry["method"] == "POST" and entry["path"] == "/score"
    assert entry["lreq"] == "PASSED"


def test_http2_is_negotiated_and_serves_the_api(edge, test_ca, api_key):
    with socket.create_connection(edge.https_address, timeout=10) as plain:
        with tls_context(test_ca.cert, alpn=["h2", "http/1.1"]).wrap_socket(
                plain, server_hostname=EDGE_HOSTNAME) as tls:
            assert tls.selected_alpn_protocol() == "h2"

    curl = require_tool("curl")
    ua = marker()
    host, port = edge.https_address
    done = run([curl, "--silent", "--show-error", "--http2", "--cacert", str(test_ca.cert),
                "--resolve", f"{EDGE_HOSTNAME}:{port}:{host}", "--user-agent", ua,
                "--header", f"X-API-Key: {api_key}", "--write-out", "\n%{http_version} %{http_code}",
                f"https://{EDGE_HOSTNAME}:{port}/healthz"])
    assert done.stdout.splitlines()[-1] == "2 200", done.stdout
    assert logged(edge, ua, status=200)["proto"] == "HTTP/2.0"


def test_oversize_body_is_413_json_from_nginx(edge, https, api_key):
    limit = int(edge.variables["DETECTOR_MAX_BODY_BYTES"])
    ua = marker()
    response = https.post(edge.https_url("/score"), data=b"x" * (limit + 1),
                          headers={"User-Agent": ua, "Authorization": f"Bearer {api_key}",
                                   "Content-Type": "application/json"})
    assert_json_error(response, 413, "payload_too_large")
    assert logged(edge, ua, status=413)["urt"] == "-", "nginx answered, not the service"


def json_body_of_size(size: int) -> bytes:
    """A JSON object of exactly `size` bytes without a "text" field (the service answers 400
    quickly instead of scoring it)."""
    body = b'{"padding":""}'
    return body[:-2] + b"x" * (size - len(body)) + b'"}'


def test_the_body_limit_is_the_services_limit(edge, https, detector, api_key):
    """A body of exactly the limit passes nginx and the service's own size check; one byte more
    is refused by nginx, and the service would have refused it too."""
    limit = int(edge.variables["DETECTOR_MAX_BODY_BYTES"])
    headers = {"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"}

    ua = marker()
    response = https.post(edge.https_url("/score"), data=json_body_of_size(limit),
                          headers={"User-Agent": ua, **headers})
    assert response.status_code not in (413, 429, 502, 504), response.text
    assert logged(edge, ua, status=response.status_code)["urt"] != "-"

    # Straight to the service, not through nginx.
    direct = requests.post(f"{detector.base_url}/score", data=json_body_of_size(limit + 1),
                           headers=headers, timeout=30)
    assert direct.status_code == 413, direct.text
    ua = marker()
    response = https.post(edge.https_url("/score"), data=json_body_of_size(limit + 1),
                          headers={"User-Agent": ua, **headers})
    assert_json_error(response, 413, "payload_too_large")
    assert logged(edge, ua, status=413)["urt"] == "-"


@pytest.mark.parametrize("path", [
    "/.git/config", "/.git/HEAD", "/.env", "/.env.production", "/app/.env", "/wp-admin/",
    "/wp-admin/install.php", "/wp-login.php", "/backup.sql", "/db.SQL", "/site.bak",
    "/www.zip", "/site.tar.gz", "/dump.sql", "/backups/latest", "/dumps/", "/score.bak",
])
def test_scanner_paths_are_404_from_nginx_on_both_ports(edge, https, http, path):
    ua = marker()
    response = https.get(edge.https_url(path), headers={"User-Agent": ua})
    assert_json_error(response, 404, "not_found")
    assert logged(edge, ua, status=404)["urt"] == "-", "the service never sees scanner paths"

    ua = marker()
    response = http.get(edge.http_url(path), headers={"User-Agent": ua})
    assert_json_error(response, 404, "not_found")
    logged(edge, ua, status=404, port=edge.http_port)


@pytest.mark.parametrize("path", [
    "/metrics", "/metrics/", "//metrics", "/%6Detrics", "/score/../metrics", "/METRICS",
    "/healthz/../metrics", "/metrics?format=prometheus",
])
def test_metrics_is_not_reachable_through_nginx(edge, test_ca, path):
    ua = marker()
    raw = edge.send_raw(request_bytes("GET", path, EDGE_HOSTNAME, ua),
                        tls_ca=test_ca.cert)
    assert status_of(raw) == 404, raw[:300]
    assert b"# TYPE" not in raw and b"# HELP" not in raw
    assert json_body_of(raw)["error"]["code"] == "not_found"
    assert logged(edge, ua, status=404)["urt"] == "-"


def test_an_unknown_route_is_404_json_without_touching_the_service(edge, https):
    ua = marker()
    response = https.get(edge.https_url("/admin"), headers={"User-Agent": ua})
    assert_json_error(response, 404, "not_found")
    assert logged(edge, ua, status=404)["urt"] == "-"


def test_a_malformed_request_gets_400_json(edge, test_ca):
    ua = marker()
    duplicate_host = (f"GET /healthz HTTP/1.1\r\nUser-Agent: {ua}\r\n"
                      f"Host: {EDGE_HOSTNAME}\r\nHost: {EDGE_HOSTNAME}\r\n\r\n")
    raw = edge.send_raw(duplicate_host.encode(), tls_ca=test_ca.cert)
    assert status_of(raw) == 400
    assert json_body_of(raw)["error"]["code"] == "bad_request"
    logged(edge, ua, status=400)


@pytest.mark.parametrize("request_line, status, code", [
    (b"GARBAGE", 400, "bad_request"),
    (b"GET /" + b"a" * 20000 + b" HTTP/1.1", 414, "uri_too_long"),
])
def test_an_unparsable_request_line_gets_json_not_a_500(edge, test_ca, request_line, status,
                                                         code):
    """Before nginx has a URI, error pages must not use a named location (that is a 500)."""
    raw = edge.send_raw(request_line + f"\r\nHost: {EDGE_HOSTNAME}\r\n\r\n".encode(),
                        tls_ca=test_ca.cert)
    assert status_of(raw) == status, raw[:300]
    assert json_body_of(raw)["error"]["code"] == code
    # On :80 the same request has no usable Host: the default server closes it.
    try:
        assert edge.send_raw(request_line + b"\r\n\r\n") == b""
    except ConnectionResetError:
        pass


# --- unknown names and TLS ---------------------------------------------------------------------


def test_an_unknown_host_is_closed_on_both_ports(edge, test_ca):
    ua = marker()
    assert edge.send_raw(request_bytes("GET", "/healthz", "evil.example", ua)) == b""
    logged(edge, ua, status=444, port=edge.http_port)

    # Right SNI, wrong Host header: routed to the default server and closed.
    ua = marker()
    raw = edge.send_raw(request_bytes("GET", "/healthz", "evil.example", ua),
                        tls_ca=test_ca.cert)
    assert raw == b""
    logged(edge, ua, status=444)


@pytest.mark.parametrize("sni", ["evil.example", None])
def test_an_unknown_or_missing_sni_is_refused_in_the_handshake(edge, test_ca, sni):
    with pytest.raises(ssl.SSLError, match="UNRECOGNIZED_NAME|HANDSHAKE_FAILURE"):
        edge.send_raw(b"GET / HTTP/1.1\r\n\r\n", tls_ca=test_ca.cert, sni=sni)


def test_tls_1_1_is_refused_and_1_2_and_1_3_are_accepted(edge, test_ca):
    # The client allows TLS 1.1 (security level 0), so a refusal is the server's.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # TLS 1.1 is deprecated: the point
        old = tls_context(test_ca.cert, minimum=ssl.TLSVersion.TLSv1_1,
                          maximum=ssl.TLSVersion.TLSv1_1, ciphers="DEFAULT:@SECLEVEL=0")
    with pytest.raises(ssl.SSLError, match="PROTOCOL_VERSION|UNSUPPORTED_PROTOCOL"):
        with socket.create_connection(edge.https_address, timeout=10) as plain:
            old.wrap_socket(plain, server_hostname=EDGE_HOSTNAME)

    for version in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
        with socket.create_connection(edge.https_address, timeout=10) as plain:
            with tls_context(test_ca.cert, minimum=version, maximum=version).wrap_socket(
                    plain, server_hostname=EDGE_HOSTNAME) as tls:
                assert tls.version() == version.name.replace("v1_", "v1.")
                if version is ssl.TLSVersion.TLSv1_2:
                    assert tls.cipher()[0].startswith("ECDHE-"), tls.cipher()


def test_dhe_suites_are_refused(edge, test_ca):
    dhe_only = tls_context(test_ca.cert, minimum=ssl.TLSVersion.TLSv1_2,
                           maximum=ssl.TLSVersion.TLSv1_2,
                           ciphers="DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384")
    with pytest.raises(ssl.SSLError, match="HANDSHAKE_FAILURE|NO_SHARED_CIPHER"):
        with socket.create_connection(edge.https_address, timeout=10) as plain:
            dhe_only.wrap_socket(plain, server_hostname=EDGE_HOSTNAME)


def test_no_ocsp_response_is_stapled(edge, test_ca):
    openssl = require_tool("openssl")
    host, port = edge.https_address
    done = run([openssl, "s_client", "-connect", f"{host}:{port}", "-servername", EDGE_HOSTNAME,
                "-status", "-CAfile", str(test_ca.cert)], input="", timeout=20)
    assert "OCSP response: no response sent" in done.stdout, done.stdout[-2000:]
    assert "Verify return code: 0 (ok)" in done.stdout


# --- upstream failures -------------------------------------------------------------------------


def test_upstream_stopped_gives_502_json_and_recovery_after_restart(edge, https, detector, api_key):
    detector.stop()
    try:
        ua = marker()
        response = https.get(edge.https_url("/healthz"),
                             headers={"User-Agent": ua, "Authorization": f"Bearer {api_key}"})
        assert_json_error(response, 502, "upstream_unavailable")
        logged(edge, ua, status=502)
    finally:
        detector.start()
    ua = marker()
    response = https.get(edge.https_url("/healthz"),
                         headers={"User-Agent": ua, "Authorization": f"Bearer {api_key}"})
    assert response.status_code == 200
    logged(edge, ua, status=200)


def test_a_hanging_upstream_gives_504_json(slow_edge, test_ca, api_key):
    ua = marker()
    response = slow_edge.https_client(test_ca.cert).post(
        slow_edge.https_url("/score"), json={"text": SAMPLE_TEXT},
        headers={"User-Agent": ua, "Authorization": f"Bearer {api_key}"}, timeout=30)
    assert_json_error(response, 504, "upstream_timeout")
    logged(slow_edge, ua, status=504)


def test_slow_headers_are_cut_off(slow_edge, test_ca):
    """A client that never finishes its headers is disconnected (client_header_timeout 1s here)."""
    with socket.create_connection(slow_edge.https_address, timeout=15) as plain:
        with tls_context(test_ca.cert).wrap_socket(plain, server_hostname=EDGE_HOSTNAME) as tls:
            tls.sendall(f"GET /healthz HTTP/1.1\r\nHost: {EDGE_HOSTNAME}\r\nX-Slow: 1".encode())
            try:
                assert tls.recv(65536) == b"", "nginx answers a timed-out request by closing"
            except (ssl.SSLEOFError, ConnectionResetError):
                pass
            except TimeoutError:
                pytest.fail("nginx kept a slow-header connection open for 15 s")


# --- limits ------------------------------------------------------------------------------------


def assert_rate_limited(response) -> None:
    assert_json_error(response, 429, "rate_limited")
    assert response.headers["Retry-After"] == "1"
    assert response.headers["Strict-Transport-Security"] == "max-age=63072000"


def test_a_burst_from_one_ip_gets_429_with_retry_after(detector, edge_cert, test_ca,
                                                       tmp_path):
    # One request a minute and a burst of 3: whatever the machine's speed, the 5th request of a
    # quick series is over the limit.
    nginx = start_edge(tmp_path, upstream=detector.address, cert=edge_cert,
                       hostname=EDGE_HOSTNAME,
                       overrides={"DETECTOR_EDGE_IP_RATE": "1r/m", "DETECTOR_EDGE_IP_BURST": "3"})
    try:
        client = nginx.https_client(test_ca.cert)
        markers = [marker() for _ in range(8)]
        responses = [client.get(nginx.https_url("/healthz"), headers={"User-Agent": ua})
                     for ua in markers]
        statuses = [r.status_code for r in responses]
        assert statuses[:4] == [401] * 4, statuses
        assert set(statuses[5:]) == {429}, statuses
        for response in responses[5:]:
            assert_rate_limited(response)
        entry = logged(nginx, markers[-1], status=429)
        assert entry["lreq"] == "REJECTED" and entry["urt"] == "-"
    finally:
        nginx.stop()


def test_keys_are_limited_independently_and_keyless_requests_are_not_counted(
        detector, edge_cert, test_ca, api_key, tmp_path):
    nginx = start_edge(tmp_path, upstream=detector.address, cert=edge_cert,
                       hostname=EDGE_HOSTNAME,
                       overrides={**RELAXED_RATES, "DETECTOR_EDGE_KEY_RATE": "1r/m",
                                  "DETECTOR_EDGE_KEY_BURST": "2"})
    try:
        client = nginx.https_client(test_ca.cert)
        url = nginx.https_url("/healthz")
        other_key = "dsk_" + uuid.uuid4().hex  # not a valid key: the service answers 401

        def get(headers: dict[str, str]) -> int:
            return client.get(url, headers={"User-Agent": marker(), **headers}).status_code

        bearer = {"Authorization": f"Bearer {api_key}"}
        first = [get(bearer) for _ in range(5)]
        assert first[:3] == [200] * 3 and set(first[3:]) == {429}, first
        # The same key in the other header shares the same budget.
        assert get({"X-API-Key": api_key}) == 429
        # Another key has its own budget, exhausted independently.
        other = [get({"X-API-Key": other_key}) for _ in range(5)]
        assert other[:3] == [401] * 3 and set(other[3:]) == {429}, other
        # No key at all is never counted against a key (only per IP, relaxed here).
        assert [get({}) for _ in range(6)] == [401] * 6

        ua = marker()
        response = client.get(url, headers={"User-Agent": ua, **bearer})
        assert_rate_limited(response)
        logged(nginx, ua, status=429)
        for log in (nginx.access_log, nginx.error_log):
            text = log.read_text()
            assert api_key not in text and other_key not in text, log
    finally:
        nginx.stop()


def test_connections_per_ip_are_capped(slow_edge, silent_upstream, test_ca, api_key):
    """Two requests held open by a hanging upstream fill the per-IP cap (2 here); a third is 429."""
    client = slow_edge.https_client(test_ca.cert)
    url = slow_edge.https_url("/healthz")
    already = len(silent_upstream.accepted)
    # One session per thread: a requests.Session is not shared across threads.
    held = [threading.Thread(target=lambda: slow_edge.https_client(test_ca.cert).get(url))
            for _ in range(2)]
    for thread in held:
        thread.start()
    wait_until(lambda: len(silent_upstream.accepted) >= already + 2, timeout=10,
               what="two requests held by the hanging upstream")
    ua = marker()
    response = client.get(url, headers={"User-Agent": ua, "X-API-Key": api_key})
    assert_rate_limited(response)
    assert logged(slow_edge, ua, status=429)["lconn"] == "REJECTED"
    for thread in held:
        thread.join(timeout=30)


# --- the dedicated log -------------------------------------------------------------------------


def test_no_key_reaches_the_log_from_any_header_or_the_query(edge, https, http, api_key):
    for headers, path, status in (({"Authorization": f"Bearer {api_key}"}, "/healthz", 200),
                                  ({"X-API-Key": api_key}, "/healthz", 200),
                                  ({}, f"/healthz?api_key={api_key}", 401)):
        ua = marker()
        https.get(edge.https_url(path), headers={"User-Agent": ua, **headers})
        assert logged(edge, ua, status=status)["path"] == "/healthz"
    ua = marker()
    http.get(edge.http_url(f"/score?key={api_key}"),
             headers={"User-Agent": ua, "Authorization": f"Bearer {api_key}"})
    logged(edge, ua, status=301, port=edge.http_port)
    text = edge.access_log.read_text()
    assert api_key not in text
    assert "Bearer" not in text and "Authorization" not in text


def test_the_dedicated_log_holds_both_ports_and_only_well_formed_lines(edge):
    lines = edge.access_lines()
    assert lines
    entries = [parse_access_line(line) for line in lines]
    unparsable = [line for line, entry in zip(lines, entries) if entry is None]
    assert not unparsable, unparsable
    ports = {entry["port"] for entry in entries}
    assert {str(edge.http_port), str(edge.https_port)} <= ports
