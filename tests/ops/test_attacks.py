"""The attack suite: hostile and malformed HTTP sent through the real nginx (rendered from
nginx/templates) to the real detector-api with the real model, each with its deliberate answer.

Data-driven: `CASES` is the table, `check(case)` the one checker. Every request is written byte
for byte on a raw socket (TLS to the HTTPS port unless the case says otherwise), because an HTTP
library cannot send conflicting Content-Length and Transfer-Encoding, broken chunking, slow
headers or a bare NUL. For every case:

- the answer is the expected status with a JSON error body `{"error":{"code","message"}}` and the
  expected code, or the connection is closed without a byte where that is the right answer;
- never a 500, never a 502 (the service is up the whole time);
- neither the service's key nor the marker planted in the request comes back in the answer;
- the request has its line in the dedicated log when nginx answered it (closed connections of a
  wrong Host are logged as 444).

After the table the service must still answer /healthz and score a real text, and its log must
hold no panic. The edge runs with production settings except the rates (so that the table is not
throttled) and the two client timeouts, shortened so that the slow cases take seconds, not tens.
docs/reliability.md lists the cases with the reason for each answer.
"""

from __future__ import annotations

import json
import socket
import ssl
import time
import uuid
from dataclasses import dataclass, field

import pytest

from conftest import EDGE_HOSTNAME
from harness.nginx import Nginx, start_edge
from harness.service import REPO_ROOT, SAMPLE_TEXT

RELAXED_RATES = {
    "DETECTOR_EDGE_IP_RATE": "1000r/s",
    "DETECTOR_EDGE_IP_BURST": "1000",
    "DETECTOR_EDGE_KEY_RATE": "1000r/s",
    "DETECTOR_EDGE_KEY_BURST": "1000",
}
# Production waits 10 s for headers and between body reads; 2 s shows the same cut-off faster.
CLIENT_TIMEOUT_SECS = 2
SHORT_CLIENT_TIMEOUTS = {
    "DETECTOR_EDGE_CLIENT_HEADER_TIMEOUT": f"{CLIENT_TIMEOUT_SECS}s",
    "DETECTOR_EDGE_CLIENT_BODY_TIMEOUT": f"{CLIENT_TIMEOUT_SECS}s",
}
# Placeholders replaced when a case is sent: the session's real key, and a marker that must
# never come back (a fake key, a query parameter, a path segment).
KEY = b"@KEY@"
MARK = b"@MARK@"
# The production body cap (nginx/edge.env DETECTOR_MAX_BODY_BYTES, the service's default).
MAX_BODY = 65536
# How long a case may take before the checker gives up reading (well above every timeout above).
READ_TIMEOUT_SECS = 20.0
CLOSED = None  # expected answer: the connection is closed without a response


@dataclass(frozen=True)
class Case:
    name: str
    request: bytes                 # raw bytes; KEY and MARK are replaced at send time
    status: int | None             # expected status, or CLOSED
    code: str | None = None        # expected JSON error code
    why: str = ""                  # the reason for this answer (docs/reliability.md)
    port: str = "https"            # "https" or "http"
    stall: bool = False            # send the bytes, then wait past the client timeouts
    logged: bool = True            # nginx writes a line for it
    extra: dict = field(default_factory=dict)


def http_request(method: str = "POST", path: str = "/score", *, body: bytes | None = None,
                 headers: list[tuple[str, str]] | None = None, host: str | None = EDGE_HOSTNAME,
                 version: str = "HTTP/1.1", key: bool = True, content_type: str | None = "application/json",
                 content_length: bool = True, close: bool = True) -> bytes:
    """One request, every header spelled out; the User-Agent (added at send time) identifies it."""
    # The User-Agent first: nginx stops reading headers at the first bad one, and the line it
    # logs should still name the case.
    lines = [f"{method} {path} {version}".encode(), b"@UA@"]
    if host is not None:
        lines.append(f"Host: {host}".encode())
    if key:
        lines.append(b"Authorization: Bearer " + KEY)
    if content_type is not None and body is not None:
        lines.append(f"Content-Type: {content_type}".encode())
    if body is not None and content_length:
        lines.append(f"Content-Length: {len(body)}".encode())
    for name, value in headers or []:
        lines.append(f"{name}: {value}".encode("latin-1"))
    if close:
        lines.append(b"Connection: close")
    return b"\r\n".join(lines) + b"\r\n\r\n" + (body or b"")


def score(body: bytes, **kwargs) -> bytes:
    return http_request("POST", "/score", body=body, **kwargs)


def chunked(*chunks: bytes, trailer: bytes = b"0\r\n\r\n") -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks) + trailer


def get(path: str, **kwargs) -> bytes:
    return http_request("GET", path, **kwargs)


SHORT_TEXT = json.dumps({"text": "too short"}).encode()
DEEP = 20_000  # far beyond serde_json's recursion limit of 128, still under the body cap

CASES: list[Case] = [
    # --- the body and its JSON ---------------------------------------------------------------
    Case("invalid_json", score(b'{"text": "unterminated'), 400, "invalid_json",
         "the body must parse as JSON"),
    Case("trailing_garbage", score(b'{"text": "x"} {"text": "y"}'), 400, "invalid_json",
         "one JSON value, nothing after it"),
    Case("empty_body", score(b""), 400, "invalid_json", "an empty body is not JSON"),
    Case("body_is_array", score(b'["text", "x"]'), 400, "invalid_body", "the body must be an object"),
    Case("body_is_string", score(b'"text"'), 400, "invalid_body", "the body must be an object"),
    Case("missing_text", score(b'{"txt": "a typo"}'), 400, "missing_text", "text is required"),
    Case("text_is_number", score(b'{"text": 12345}'), 400, "invalid_text", "text must be a string"),
    Case("text_is_null", score(b'{"text": null}'), 400, "invalid_text", "text must be a string"),
    Case("text_is_object", score(b'{"text": {"text": "nested"}}'), 400, "invalid_text",
         "text must be a string"),
    Case("text_is_array", score(b'{"text": ["a", "b"]}'), 400, "invalid_text", "text must be a string"),
    Case("deep_nesting_array", score(b'{"text": "x", "a": ' + b"[" * DEEP + b"]" * DEEP + b"}"),
         400, "invalid_json", "serde_json stops at depth 128: no stack overflow"),
    Case("deep_nesting_object", score(b'{"a":' * (DEEP // 4) + b"1" + b"}" * (DEEP // 4)), 400, "invalid_json",
         "serde_json stops at depth 128: no stack overflow"),
    Case("duplicate_text_key_last_wins", score(b'{"text": 12345, "text": "too short"}'), 422,
         "text_too_short", "one parser on the path: the last duplicate wins, so the text is "
         "validated as the last value, never a mix"),
    Case("raw_nul_in_string", score(b'{"text": "a\x00b"}'), 400, "invalid_json",
         "control characters must be escaped in JSON strings"),
    Case("escaped_nul_is_text", score(b'{"text": "\\u0000"}'), 422, "text_too_short",
         "an escaped NUL is a character: valid text, too short to score"),
    Case("invalid_utf8", score(b'{"text": "\xff\xfe\xfd"}'), 400, "invalid_utf8",
         "the body must be UTF-8"),
    Case("overlong_utf8_slash", score(b'{"text": "\xc0\xaf"}'), 400, "invalid_utf8",
         "overlong encodings are invalid UTF-8"),
    Case("utf16_body", score('{"text": "x"}'.encode("utf-16")), 400, "invalid_utf8",
         "UTF-16 (with its BOM) is not UTF-8"),
    Case("lone_high_surrogate", score(b'{"text": "\\ud800 and more text"}'), 400, "invalid_json",
         "a lone surrogate escape is not a character"),
    Case("lone_low_surrogate", score(b'{"text": "\\udfff"}'), 400, "invalid_json",
         "a lone surrogate escape is not a character"),
    Case("whitespace_text", score(b'{"text": " \\n\\t\\r "}'), 422, "empty_text",
         "nothing to score"),
    Case("huge_number", score(b'{"text": "x", "n": 1e999999}'), 400, "invalid_json",
         "out-of-range numbers are refused, not turned into infinity"),
    Case("wrong_content_type", score(SHORT_TEXT, content_type="text/plain"), 415,
         "unsupported_media_type", "only application/json is read"),
    Case("form_content_type", score(b"text=hello", content_type="application/x-www-form-urlencoded"),
         415, "unsupported_media_type", "only application/json is read"),
    Case("no_content_type", score(SHORT_TEXT, content_type=None), 415, "unsupported_media_type",
         "only application/json is read"),
    # --- size and framing --------------------------------------------------------------------
    Case("body_over_cap", score(b'{"text": "' + b"a" * (MAX_BODY + 1) + b'"}'), 413,
         "payload_too_large", "nginx refuses bodies over the cap before the service sees them"),
    Case("huge_declared_length", score(b"{}", content_length=False,
                                       headers=[("Content-Length", "99999999999")]),
         413, "payload_too_large", "refused on the declared length alone"),
    Case("chunked_over_cap", score(chunked(*[b"a" * 16384] * 6), content_length=False,
                                   headers=[("Transfer-Encoding", "chunked")]),
         413, "payload_too_large", "nginx counts chunked bodies against the same cap"),
    Case("chunked_small_is_read", score(chunked(SHORT_TEXT[:5], SHORT_TEXT[5:]),
                                        content_length=False,
                                        headers=[("Transfer-Encoding", "chunked")]),
         422, "text_too_short", "a well-formed chunked body is reassembled and validated"),
    Case("chunked_bad_size", score(b"zz\r\n{}\r\n0\r\n\r\n", content_length=False,
                                   headers=[("Transfer-Encoding", "chunked")]),
         400, "bad_request", "an unparsable chunk size is a malformed request"),
    Case("cl_and_te_smuggling",
         score(b"0\r\n\r\nGET /metrics HTTP/1.1\r\nHost: " + EDGE_HOSTNAME.encode() + b"\r\n\r\n",
               headers=[("Transfer-Encoding", "chunked")]),
         400, "bad_request", "Content-Length with Transfer-Encoding is refused (RFC 9112 6.3): "
         "no smuggled second request"),
    Case("unknown_transfer_encoding", score(b"{}", content_length=False,
                                            headers=[("Transfer-Encoding", "gzip")]),
         501, "not_implemented", "nginx reads no transfer coding but chunked"),
    Case("obfuscated_transfer_encoding", score(chunked(SHORT_TEXT), content_length=False,
                                               headers=[("Transfer-Encoding", " chunked, identity")]),
         501, "not_implemented", "only the exact coding `chunked` is read: no parser differential"),
    Case("two_content_lengths", score(SHORT_TEXT, headers=[("Content-Length", "1")]),
         400, "bad_request", "conflicting lengths are refused"),
    Case("negative_content_length", score(b"{}", content_length=False,
                                          headers=[("Content-Length", "-1")]),
         400, "bad_request", "not a length"),
    Case("expect_continue_over_cap", score(b"", content_length=False,
                                           headers=[("Content-Length", str(10 * MAX_BODY)),
                                                    ("Expect", "100-continue")]),
         413, "payload_too_large", "refused before the client sends the body"),
    Case("slow_body", score(b'{"text": ', content_length=False,
                            headers=[("Content-Length", "100")]), CLOSED, None,
         "a body that stops arriving is cut off after the body timeout (logged as 408)",
         stall=True),
    # --- methods -----------------------------------------------------------------------------
    Case("get_score", get("/score"), 405, "method_not_allowed", "scoring is POST only"),
    Case("delete_score", http_request("DELETE", "/score"), 405, "method_not_allowed",
         "the service names the allowed method"),
    Case("put_score", http_request("PUT", "/score", body=SHORT_TEXT), 405, "method_not_allowed",
         "the service names the allowed method"),
    Case("patch_healthz", http_request("PATCH", "/healthz", body=b"{}"), 405, "method_not_allowed",
         "health is GET only"),
    Case("options_score", http_request("OPTIONS", "/score"), 405, "method_not_allowed",
         "no CORS preflight: the API is not for browsers"),
    Case("trace", http_request("TRACE", "/score"), 405, "method_not_allowed",
         "nginx refuses TRACE itself"),
    Case("invented_method", http_request("FROB", "/score"), 405, "method_not_allowed",
         "an unknown method is not allowed"),
    Case("lowercase_method", http_request("post", "/score", body=SHORT_TEXT), 400, "bad_request",
         "methods are upper case", logged=False),
    # --- paths toward /metrics and scanner paths ---------------------------------------------
    Case("metrics", get("/metrics"), 404, "not_found", "metrics are never proxied"),
    Case("metrics_dot_segments", get("/score/../metrics"), 404, "not_found",
         "the normalised path is matched"),
    Case("metrics_encoded", get("/%6d%65trics"), 404, "not_found", "the decoded path is matched"),
    Case("metrics_encoded_slash", get("/score%2F..%2Fmetrics"), 404, "not_found",
         "encoded separators do not reach the upstream as a route"),
    Case("metrics_double_slash", get("//metrics"), 404, "not_found", "merged slashes"),
    Case("metrics_upper", get("/METRICS"), 404, "not_found", "no route"),
    Case("metrics_nul", get("/metrics%00"), 400, "bad_request", "an encoded NUL is refused", logged=False),
    Case("healthz_trailing_slash", get("/healthz/"), 404, "not_found", "exact routes only"),
    Case("score_dot_segment_escape", get("/../../etc/passwd"), 400, "bad_request",
         "a path that climbs above the root is refused", logged=False),
    Case("scanner_env", get("/.env"), 404, "not_found", "scanner path"),
    Case("scanner_git", get("/.git/config"), 404, "not_found", "scanner path"),
    Case("scanner_wp", get("/wp-login.php"), 404, "not_found", "scanner path"),
    Case("scanner_backup", get("/backup.sql"), 404, "not_found", "scanner path"),
    Case("scanner_actuator", get("/actuator/env"), 404, "not_found", "unknown route"),
    Case("key_in_query", get("/healthz?api_key=" + MARK.decode(), key=False), 401, "unauthorized",
         "keys are read from headers only"),
    Case("key_in_path", get("/score/" + MARK.decode(), key=False), 404, "not_found",
         "no route, and the path is not echoed"),
    # --- keys ---------------------------------------------------------------------------------
    Case("no_key", get("/healthz", key=False), 401, "unauthorized", "a key is required"),
    Case("wrong_key", get("/healthz", key=False, headers=[("Authorization", "Bearer " + MARK.decode())]),
         401, "unauthorized", "unknown key"),
    Case("basic_scheme", get("/healthz", key=False, headers=[("Authorization", "Basic " + MARK.decode())]),
         401, "unauthorized", "Bearer only"),
    Case("empty_bearer", get("/healthz", key=False, headers=[("Authorization", "Bearer ")]),
         401, "unauthorized", "empty key"),
    Case("repeated_authorization", get("/healthz", headers=[("Authorization", "Bearer " + MARK.decode())]),
         400, "bad_request", "nginx refuses a repeated Authorization header rather than guess"),
    Case("conflicting_headers", get("/healthz", headers=[("X-API-Key", MARK.decode())]),
         401, "unauthorized", "two headers with different keys"),
    Case("huge_key", get("/healthz", key=False, headers=[("X-API-Key", MARK.decode() + "k" * 6000)]),
         401, "unauthorized", "too long to be a key, still a plain 401"),
    Case("non_ascii_key", get("/healthz", key=False, headers=[("X-API-Key", "clé-" + MARK.decode())]),
         401, "unauthorized", "keys are visible ASCII"),
    # --- Host and the request line -------------------------------------------------------------
    Case("wrong_host", get("/healthz", host="evil.example"), CLOSED, None,
         "only the detector's name is served; the catch-all server closes (444)"),
    Case("absolute_uri_wrong_host", get("https://evil.example/healthz"), CLOSED, None,
         "the host of an absolute URI selects the server too"),
    Case("no_host_http11", get("/healthz", host=None), CLOSED, None,
         "HTTP/1.1 requires Host; without one the catch-all server closes (444)"),
    Case("no_host_http10", get("/healthz", host=None, version="HTTP/1.0"), CLOSED, None,
         "without a name the catch-all server closes (444)"),
    Case("duplicate_host", get("/healthz", headers=[("Host", "evil.example")]), 400, "bad_request",
         "two Host headers are refused"),
    Case("host_with_port", get("/healthz", host=EDGE_HOSTNAME + ":443"), 200, None,
         "the port is not part of the name"),
    Case("wrong_host_on_http", get("/healthz", host="evil.example"), CLOSED, None,
         "the catch-all server on :80 closes too", port="http"),
    Case("garbage_request_line", b"\x16\x03\x01 hello\r\n@UA@\r\n", 400, "bad_request",
         "not HTTP", logged=False),
    Case("http_0_9", b"GET /healthz\r\n", CLOSED, None,
         "HTTP/0.9 has no Host: the catch-all server closes", logged=False),
    Case("http_version_2_in_request_line", get("/healthz", version="HTTP/2.0"), 505,
         "http_version_not_supported", "HTTP/2 is negotiated with ALPN, not written in a request "
         "line", logged=False),
    Case("te_with_http10", score(chunked(SHORT_TEXT), content_length=False, version="HTTP/1.0",
                                 headers=[("Transfer-Encoding", "chunked")]),
         400, "bad_request", "HTTP/1.0 has no chunked encoding"),
    # --- headers -------------------------------------------------------------------------------
    Case("oversized_header", get("/healthz", headers=[("X-Filler", "a" * 9000)]), 400, "bad_request",
         "a header line over nginx's 8 KiB buffer is refused (494)"),
    Case("too_many_headers", get("/healthz", headers=[(f"X-F{i}", "a" * 4000) for i in range(12)]),
         400, "bad_request", "headers over nginx's 4 x 8 KiB buffers are refused (494)"),
    Case("long_uri", get("/score?" + "a" * 9000), 414, "uri_too_long",
         "a request line over 8 KiB is refused", logged=False),
    Case("nul_in_header", get("/healthz", headers=[("X-Note", "a\x00b")]), 400, "bad_request",
         "a NUL in a header value is refused"),
    Case("slow_headers", b"GET /healthz HTTP/1.1\r\nHost: " + EDGE_HOSTNAME.encode() + b"\r\n@UA@\r\n",
         CLOSED, None, "headers that never finish are cut off after the header timeout "
         "(slowloris)", stall=True, logged=True),
]


@pytest.fixture(scope="module")
def edge(detector, edge_cert, tmp_path_factory) -> Nginx:
    nginx = start_edge(tmp_path_factory.mktemp("attack-edge"), upstream=detector.address,
                       cert=edge_cert, hostname=EDGE_HOSTNAME,
                       overrides={**RELAXED_RATES, **SHORT_CLIENT_TIMEOUTS})
    yield nginx
    nginx.stop()


def send(edge: Nginx, case: Case, payload: bytes, ca_cert) -> tuple[bytes, float]:
    """Write `payload`, then read until the server closes; returns (what came back, seconds)."""
    host, port = edge.https_address if case.port == "https" else edge.http_address
    started = time.monotonic()
    with socket.create_connection((host, port), timeout=READ_TIMEOUT_SECS) as plain:
        sock = plain
        if case.port == "https":
            context = ssl.create_default_context(cafile=str(ca_cert))
            sock = context.wrap_socket(plain, server_hostname=EDGE_HOSTNAME)
        if case.stall:
            # Everything but the end: the server is left waiting for more.
            sock.sendall(payload)
        else:
            try:
                sock.sendall(payload)
            except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
                pass  # nginx may answer (413) and close before a large body is fully written
        received = b""
        try:
            while chunk := sock.recv(65536):
                received += chunk
        except (ssl.SSLEOFError, ConnectionResetError):
            pass
        except socket.timeout:
            pytest.fail(f"{case.name}: no answer and no close within {READ_TIMEOUT_SECS:.0f}s "
                        f"(a hang); got {received[:300]!r}")
    return received, time.monotonic() - started


def parse_response(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0].startswith(b"HTTP/1."), raw[:300]
    status = int(lines[0].split(b" ", 2)[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers[name.strip().lower().decode()] = value.strip().decode("latin-1")
    if headers.get("transfer-encoding") == "chunked":
        body = _dechunk(body)
    return status, headers, body


def _dechunk(body: bytes) -> bytes:
    out = b""
    while body:
        size_line, _, rest = body.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        out += rest[:size]
        body = rest[size + 2:]
    return out


def check(case: Case, edge: Nginx, ca_cert, api_key: str) -> None:
    ua = f"attack/{case.name}/{uuid.uuid4().hex[:8]}"
    mark = f"mark{uuid.uuid4().hex}".encode()
    payload = (case.request.replace(KEY, api_key.encode()).replace(MARK, mark)
               .replace(b"@UA@", f"User-Agent: {ua}".encode()))
    raw, seconds = send(edge, case, payload, ca_cert)

    assert api_key.encode() not in raw, f"{case.name}: the key came back"
    assert mark not in raw, f"{case.name}: the planted marker came back"
    if case.status is CLOSED:
        assert raw == b"", f"{case.name}: expected a closed connection, got {raw[:300]!r}"
    else:
        status, headers, body = parse_response(raw)
        assert status not in (500, 502), f"{case.name}: {status} {body[:300]!r}"
        assert status == case.status, f"{case.name}: expected {case.status}, got {status}: {body[:300]!r}"
        if case.status >= 400 and case.status != 408:
            assert headers.get("content-type", "").startswith("application/json"), (case.name, headers)
            error = json.loads(body)["error"]
            assert set(error) == {"code", "message"}, (case.name, error)
            assert error["code"] == case.code, f"{case.name}: code {error['code']!r}: {error}"
        if status == 401:
            assert headers.get("www-authenticate", "").startswith("Bearer"), (case.name, headers)
    if case.stall:
        # Cut off by the timeout, not answered at once and not left hanging.
        assert CLIENT_TIMEOUT_SECS * 0.8 <= seconds < CLIENT_TIMEOUT_SECS + 8, (case.name, seconds)
    if case.logged:
        edge.access_entry(ua)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_attack(case, edge, test_ca, api_key):
    check(case, edge, test_ca.cert, api_key)


# The request-body fuzz target's seeds (and any crash input added there once fixed), replayed
# through the stack: cheap in CI, where the nightly fuzz build is not (docs/reliability.md).
FUZZ_SEEDS = sorted((REPO_ROOT / "fuzz" / "seeds" / "request_body").iterdir())


@pytest.mark.parametrize("seed", FUZZ_SEEDS, ids=[p.name for p in FUZZ_SEEDS])
def test_fuzz_seed_body_gets_a_deliberate_answer(seed, edge, test_ca, api_key):
    ua = f"attack/seed/{uuid.uuid4().hex[:8]}"
    payload = score(seed.read_bytes()).replace(KEY, api_key.encode()).replace(
        b"@UA@", f"User-Agent: {ua}".encode())
    case = Case(f"seed_{seed.name}", payload, 0)
    raw, _ = send(edge, case, payload, test_ca.cert)
    status, headers, body = parse_response(raw)
    assert status in (200, 400, 413, 422), (seed.name, status, body[:300])
    assert headers.get("content-type", "").startswith("application/json"), (seed.name, headers)
    answer = json.loads(body)
    assert ("score" in answer) if status == 200 else (set(answer["error"]) == {"code", "message"})
    assert api_key.encode() not in raw
    edge.access_entry(ua)


def test_case_names_are_unique():
    names = [c.name for c in CASES]
    assert len(names) == len(set(names))


def test_the_service_is_healthy_after_the_attacks(edge, test_ca, api_key, detector):
    https = edge.https_client(test_ca.cert)
    headers = {"Authorization": f"Bearer {api_key}"}
    health = https.get(edge.https_url("/healthz"), headers=headers, timeout=30)
    assert health.status_code == 200 and health.json()["status"] == "ok", health.text
    scored = https.post(edge.https_url("/score"), json={"text": SAMPLE_TEXT}, headers=headers,
                        timeout=120)
    assert scored.status_code == 200, scored.text
    assert 0.0 <= scored.json()["score"] <= 1.0
    assert detector.alive
    log = detector.log_text()
    assert "panicked" not in log, log[-3000:]
    assert api_key not in log
    error_log = edge.error_log.read_text(errors="replace")
    assert "[crit]" not in error_log and "[alert]" not in error_log and "[emerg]" not in error_log, \
        error_log[-3000:]
