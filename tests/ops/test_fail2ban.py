"""fail2ban: the repo's filters against lines the real nginx wrote, and a real ban.

1. Filters: traffic of every kind goes through the real nginx (templates of nginx/) to the real
   detector-api; `fail2ban-regex` with host/fail2ban/filter.d/ must match exactly the 401s on the
   key-checked routes (detector-auth) and exactly the scanner paths (detector-botsearch).
2. Ban: in network namespaces (client -- server -- container, Docker's shape: nginx and the
   service in the "container", ports 80/443 published by DNAT from the server, fail2ban in the
   server with the repo's jail and two-hook action), bad-key requests from the client get it
   banned: its next TCP connections to 443 and 80 are refused. `fail2ban-client unban` lets it
   through again. The connection is what is checked, not a log line.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from pathlib import Path

import pytest
import requests

from harness import netns
from harness.fail2ban import Fail2ban, regex
from harness.nginx import production_variables, start_edge
from harness.procs import run
from harness.service import REPO_ROOT, SAMPLE_TEXT, DetectorService

# Every scanner family of host/fail2ban/filter.d/detector-botsearch.conf, with case variants.
SCANNER_PATHS = [
    "/.git/config", "/.git/HEAD", "/.env", "/api/.env", "/.env.bak", "/.svn/entries", "/.hg/store",
    "/.htaccess", "/.htpasswd", "/.DS_Store", "/wp-admin/", "/wp-admin/install.php",
    "/WP-LOGIN.PHP", "/wp-login.php", "/wp-includes/wlwmanifest.xml", "/wp-content/x.php",
    "/xmlrpc.php", "/phpmyadmin/", "/phpMyAdmin/index.php", "/backup.zip", "/site.tar.gz",
    "/db.sql", "/dump.sql", "/www.7z", "/index.php.bak", "/config.old", "/config.php.swp",
    "/backup/", "/backups/db", "/dump/", "/data.tgz", "/files.rar", "/site.tar", "/x.orig",
]
# Paths that look close but are no scanner path (and the API's own routes).
ORDINARY_PATHS = ["/", "/index.html", "/scores", "/score/", "/environment", "/gitlab",
                  "/backupsx", "/sql", "/wp", "/metrics", "/robots.txt"]

_LINE = re.compile(r'^(?P<ip>\S+) - \[[^\]]+\] "(?P<method>[A-Z]*) ?(?P<path>.*?) ?(?P<proto>HTTP/[0-9.]+)?" '
                   r'(?P<status>\d{3}) .* port=(?P<port>\d+) ')


def _parse(line: str) -> dict:
    m = _LINE.match(line)
    assert m, f"unexpected log line format: {line}"
    return m.groupdict()


@pytest.fixture(scope="module")
def edge(detector, edge_cert, tmp_path_factory):
    # The per-IP limit is raised so that one test client is not throttled across ~90 requests;
    # the 429s below come from the per-key limit (production values: 10 r/s, burst 20).
    nginx = start_edge(tmp_path_factory.mktemp("f2b-edge"), upstream=detector.address,
                       cert=edge_cert, overrides={"DETECTOR_EDGE_IP_RATE": "1000r/s",
                                                   "DETECTOR_EDGE_IP_BURST": "1000",
                                                   "DETECTOR_EDGE_CONN_PER_IP": "100"})
    yield nginx
    nginx.stop()


def _send_mixed_traffic(edge, ca_cert, api_key: str) -> int:
    """Every kind of request the jails must tell apart; returns how many were sent."""
    https = edge.https_client(ca_cert)
    http = edge.http_client()
    sent = 0

    def go(session, method, url, **kw):
        nonlocal sent
        session.request(method, url, timeout=60, allow_redirects=False, **kw)
        sent += 1

    good = {"Authorization": f"Bearer {api_key}"}
    # 200s on both key-checked routes, both header styles.
    go(https, "POST", edge.https_url("/score"), json={"text": SAMPLE_TEXT}, headers=good)
    go(https, "GET", edge.https_url("/healthz"), headers=good)
    go(https, "GET", edge.https_url("/healthz"), headers={"X-API-Key": api_key})
    # 401s on both routes: wrong key, no key, malformed header, X-API-Key.
    for headers in ({"Authorization": "Bearer dsk_wrong"}, {}, {"Authorization": "Basic Zm9vOmJhcg=="},
                    {"X-API-Key": "dsk_wrong_too"}):
        go(https, "POST", edge.https_url("/score"), json={"text": SAMPLE_TEXT}, headers=headers)
        go(https, "GET", edge.https_url("/healthz"), headers=headers)
    # Other statuses on the scoring route with a valid key: 400, 405, 415.
    go(https, "POST", edge.https_url("/score"), data="{not json", headers={**good, "Content-Type": "application/json"})
    go(https, "GET", edge.https_url("/score"), headers=good)
    go(https, "POST", edge.https_url("/score"), data="x", headers={**good, "Content-Type": "text/plain"})
    # 429s on /score: one bad key sent fast, past the per-key burst (20): the first ones are
    # 401s, the rest 429s. Neither filter may count the 429s.
    for _ in range(30):
        go(https, "POST", edge.https_url("/score"), data="{}",
           headers={"Authorization": "Bearer dsk_throttled", "Content-Type": "application/json"})
    # Scanner paths on 443, on 80 and on the catch-all server (wrong Host: 444, no answer).
    for path in SCANNER_PATHS:
        go(https, "GET", edge.https_url(path))
    for path in SCANNER_PATHS[:6]:
        go(http, "GET", edge.http_url(path))
    for path in SCANNER_PATHS[:3]:
        try:
            go(http, "GET", edge.http_url(path), headers={"Host": "scan.invalid"})
        except requests.ConnectionError:  # 444: nginx logs it and closes without an answer
            sent += 1
    # Ordinary 404s and redirects, and a path that tries to forge a 401 line.
    for path in ORDINARY_PATHS:
        go(https, "GET", edge.https_url(path))
    go(http, "GET", edge.http_url("/score"))
    go(https, "GET", edge.https_url('/score%22%20401%2083%20'))
    go(https, "GET", edge.https_url("/score%20HTTP/1.1%22%20401%200"))
    return sent


def test_filters_match_exactly_what_they_should_on_real_nginx_lines(edge, test_ca, api_key, tmp_path):
    sent = _send_mixed_traffic(edge, test_ca.cert, api_key)
    lines = edge.wait_for_access_lines(sent)
    assert len(lines) == sent, "every request must leave exactly one line in the dedicated log"

    parsed = [(line, _parse(line)) for line in lines]
    want_auth = [l for l, p in parsed if p["status"] == "401" and p["path"] in ("/score", "/healthz")]
    want_bot = [l for l, p in parsed if p["path"] in SCANNER_PATHS]
    statuses = Counter((p["path"], p["status"]) for _, p in parsed)
    # The traffic really contains every case the filters must tell apart.
    assert statuses[("/score", "401")] >= 4 and statuses[("/healthz", "401")] >= 4
    assert statuses[("/score", "200")] >= 1 and statuses[("/healthz", "200")] >= 2
    assert statuses[("/score", "429")] >= 5, statuses
    assert {p["port"] for _, p in parsed if p["path"] in SCANNER_PATHS} >= {
        str(edge.https_port), str(edge.http_port)}
    assert any(p["status"] == "444" for _, p in parsed), "the catch-all server's scans are logged"

    log = tmp_path / "real-nginx.log"
    log.write_text("\n".join(lines) + "\n")
    assert Counter(regex(log, "detector-auth")) == Counter(want_auth)
    assert Counter(regex(log, "detector-botsearch")) == Counter(want_bot)

    # A 401 on any other route never comes from this nginx (only the proxied routes check keys);
    # the same real line with another path shows the filter would still not count it.
    other = tmp_path / "other-route.log"
    other.write_text("".join(l.replace(" /score ", f" {path} ", 1) + "\n"
                             for l in want_auth if " /score " in l
                             for path in ("/scores", "/v1/score", "/", "/score/x")))
    assert other.read_text() and regex(other, "detector-auth") == []


def test_shipped_jails_carry_the_design_numbers_and_read_the_edge_log(tmp_path):
    """The installed configuration as fail2ban itself resolves it (`fail2ban-client -d`)."""
    f2b = Fail2ban(tmp_path / "f2b", log_path=tmp_path / "unused.log")
    f2b.write_config(jails=[])
    # Undo the test overrides: production jail.d only.
    (f2b.conf / "jail.local").unlink()
    dump = run([f2b.client_bin, "-c", str(f2b.conf), "-d"], timeout=60).stdout
    want = {
        # two minutes of probing earns an hour of block
        "detector-auth": {"maxretry": "10", "findtime": "'2m'", "bantime": "'1h'"},
        # 10 hits in 5 minutes earns 24 hours
        "detector-botsearch": {"maxretry": "10", "findtime": "'5m'", "bantime": "'24h'"},
    }
    for jail, settings in want.items():
        for key, value in settings.items():
            assert f"['set', '{jail}', '{key}', {value}]" in dump, (jail, key)
        assert f"['set', '{jail}', 'addaction', 'detector-nftables']" in dump
        assert f"['port', '80,443']" in dump
    assert "['set', 'sshd', 'addaction', 'detector-nftables']" in dump
    assert "['port', '22']" in dump
    # The jails read the file nginx writes (nginx/edge.env), through the same host path.
    edge_log = production_variables()["DETECTOR_EDGE_LOG"]
    jail_text = (REPO_ROOT / "host/fail2ban/jail.d/detector.conf").read_text()
    assert jail_text.count(f"logpath  = {edge_log}") == 2, edge_log


def _bad_key_request(topo: netns.Topology, hostname: str, key: str) -> str:
    return topo.client.http_status(
        f"https://{hostname}/score", method="POST", body='{"text": "probe"}',
        headers={"Authorization": f"Bearer {key}"}, timeout=3,
        resolve=f"{hostname}:443:{topo.server_ip}")


def test_repeated_401s_ban_the_client_on_published_ports_until_unbanned(edge_cert, api_key,
                                                                        tmp_path):
    with netns.topology(container=True) as topo:
        inside = topo.container.prefix()
        service = DetectorService(tmp_path / "svc", api_key=api_key, wrapper=inside).start()
        nginx = start_edge(tmp_path / "edge", upstream=service.address, cert=edge_cert,
                           listen_host="0.0.0.0", http_port=80, https_port=443, wrapper=inside)
        topo.publish(80)
        topo.publish(443)
        f2b = Fail2ban(tmp_path / "f2b", log_path=nginx.access_log, wrapper=topo.server.prefix())
        try:
            f2b.start(jails=["detector-auth"])
            # The published port answers the client before any ban (once the model is loaded).
            deadline = time.monotonic() + 60
            while True:
                ok = topo.client.http_status(
                    f"https://{nginx.hostname}/healthz", headers={"Authorization": f"Bearer {api_key}"},
                    resolve=f"{nginx.hostname}:443:{topo.server_ip}", timeout=10)
                if ok == "200" or time.monotonic() > deadline:
                    break
                time.sleep(0.5)
            assert ok == "200", f"the service did not answer through the published port: {ok}"

            # Probe with wrong keys until the connection is refused; bounded in count and time
            # (fail2ban reacts within a second with inotify, within a few with its polling backend).
            # A ban that lands while a request is in flight rejects that connection's later
            # packets, which TCP treats as soft errors: that request times out, the next is refused.
            statuses = []
            started = time.monotonic()
            for i in range(150):
                status = _bad_key_request(topo, nginx.hostname, f"dsk_guess_{i}")
                statuses.append(status)
                if status == "refused" or time.monotonic() - started > 30:
                    break
                if status != "timeout":
                    time.sleep(0.05)
            assert statuses[-1] == "refused", f"never banned; answers were {statuses}"
            print(f"banned after {len(statuses) - 1} requests ({statuses.count('401')} x 401, "
                  f"{statuses.count('429')} x 429) in {time.monotonic() - started:.2f} s")
            assert statuses.count("401") >= 10, f"banned before maxretry (10): {statuses}"

            # The ban covers both published ports, for new TCP connections.
            assert topo.client.tcp_probe(topo.server_ip, 443) == "refused"
            assert topo.client.tcp_probe(topo.server_ip, 80) == "refused"
            assert f2b.banned("detector-auth") == [topo.client_ip]

            f2b.unban(topo.client_ip)
            assert topo.client.tcp_probe(topo.server_ip, 443) == "open"
            assert _bad_key_request(topo, nginx.hostname, api_key) in ("200", "422")
        finally:
            f2b.stop()
            nginx.stop()
            service.stop()
        # A clean fail2ban stop removes its table from the namespace.
        assert "f2b-detector" not in topo.server.nft("list", "tables")
