"""Monitoring: the alert rules, the Prometheus config, the dashboard and the exporters, for real.

- promtool checks the config and runs the rules' unit tests; every rule has a case that fires it
  and one that does not.
- One edge stack (real detector-api behind real nginx, mtail on the dedicated log, fail2ban-server
  with the project's filters and a no-op ban action, node_exporter with the textfile that
  detector-metrics-textfile writes) receives 200s, 401s, 429s and scanner hits; the exporters'
  numbers move by what the log and the jails saw, and every metric name used by the dashboard and
  the rules is present in a real scrape.
"""

from __future__ import annotations

import json
import os
import re
import ssl
import stat
import time
from pathlib import Path

import pytest
import requests
import yaml

from harness.monitoring import (
    MONITORING_DIR,
    MTAIL_PROGS,
    alert_rule_exprs,
    dashboard_exprs,
    label_matchers_in_promql,
    metric_names_in_promql,
    run_textfile_collector,
    sample_names,
    scrape,
    start_fail2ban,
    start_mtail,
    start_node_exporter,
    start_prometheus,
    value,
)
from harness.nginx import production_variables, start_edge
from harness.pki import issue_server_cert, make_ca
from harness.procs import require_tool, run, wait_until
from harness.service import REPO_ROOT, SAMPLE_TEXT

HOSTNAME = "detector.test"
SCANNER_PATHS = ["/.env", "/.git/config", "/wp-admin/install.php", "/wp-login.php", "/backup.sql",
                 "/site.tar.gz"]
# Metrics that Prometheus makes itself rather than scraping, and the labels it adds to every target.
SYNTHETIC_METRICS = {"up"}
PROMETHEUS_LABELS = {"job", "instance"}
# Labels whose values depend on what traffic arrived (a 503 needs saturation).
TRAFFIC_LABELS = {"status"}
# The edge runs with its production limits (nginx/edge.env: 5 r/s per IP, burst 10): the bad-key
# requests are paced under that rate so each reaches the service, the burst is not.
EDGE_OVERRIDES: dict[str, str] = {}
BAD_KEY_REQUESTS = 5
BAD_KEY_PAUSE_SECS = 0.25
BURST_REQUESTS = 40
# The status field of log_format detector_edge, read independently of the mtail program.
STATUS_IN_LOG = re.compile(r'" (\d{3}) \d+ rt=')
# The service's request counter (crates/detector-api), labelled by route and status.
SERVICE_REQUESTS = "detector_http_requests_total"


# --- promtool -----------------------------------------------------------------------------------

def test_prometheus_config_and_rules_are_valid():
    promtool = require_tool("promtool")
    out = run([promtool, "check", "config", str(MONITORING_DIR / "prometheus.yml")])
    assert "SUCCESS" in out.stdout + out.stderr
    run([promtool, "check", "rules", str(MONITORING_DIR / "alerts.yml")])


def test_alert_rule_unit_tests_pass():
    promtool = require_tool("promtool")
    out = run([promtool, "test", "rules", str(MONITORING_DIR / "alerts.test.yml")])
    assert "SUCCESS" in out.stdout + out.stderr


def test_every_rule_has_a_firing_and_a_quiet_case_and_a_reason():
    tests = yaml.safe_load((MONITORING_DIR / "alerts.test.yml").read_text())["tests"]
    fires, quiet = set(), set()
    for case in tests:
        for check in case.get("alert_rule_test", []):
            (fires if check.get("exp_alerts") else quiet).add(check["alertname"])
    rules = alert_rule_exprs()
    assert set(rules) - fires == set(), "rules without a test that fires them"
    assert set(rules) - quiet == set(), "rules without a test where they stay quiet"
    # The reason for each threshold is the comment just above its expr.
    text = (MONITORING_DIR / "alerts.yml").read_text()
    for alert in rules:
        block = text.split(f"- alert: {alert}\n", 1)[1].split("expr:", 1)[0]
        assert "#" in block, f"{alert} has no comment giving the reason for its threshold"


def test_every_alert_links_to_a_runbook_heading():
    headings = set()
    for line in (REPO_ROOT / "docs" / "runbook.md").read_text().splitlines():
        if line.startswith("#"):
            text = line.lstrip("#").strip().lower()
            headings.add(re.sub(r"[^a-z0-9 _-]", "", text).replace(" ", "-"))
    rules = yaml.safe_load((MONITORING_DIR / "alerts.yml").read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            page, _, fragment = rule["annotations"]["runbook"].partition("#")
            assert page == "docs/runbook.md" and fragment in headings, \
                f"{rule['alert']}: no heading for {rule['annotations']['runbook']}"


def test_mtail_programs_compile():
    mtail = require_tool("mtail")
    run([mtail, "--compile_only", "--progs", str(MTAIL_PROGS), "--logtostderr"])


def test_textfile_collector_reports_a_broken_source_and_keeps_the_others(tmp_path):
    """fail2ban down and a certificate path that does not exist: those collectors say 0 (which
    HostMetricsCollectorFailing reads), the log directories are still reported, the run exits 1."""
    require_tool("fail2ban-client")
    require_tool("openssl")
    from harness.monitoring import TEXTFILE_COLLECTOR, parse_exposition
    output = tmp_path / "detector.prom"
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin") + ":/usr/sbin:/sbin",
           "DETECTOR_METRICS_TEXTFILE": str(output),
           "DETECTOR_METRICS_JAILS": "detector-auth",
           "DETECTOR_METRICS_FAIL2BAN_SOCKET": str(tmp_path / "no-fail2ban.sock"),
           "DETECTOR_METRICS_CERT_FILES": str(tmp_path / "missing.pem"),
           "DETECTOR_METRICS_TLS_TARGETS": "",
           "DETECTOR_METRICS_SYSTEMCTL": str(_fake_systemctl(tmp_path / "systemctl",
                                                             result="success", timer="active")),
           "DETECTOR_METRICS_LOG_DIRS": str(tmp_path)}
    done = run(["python3", str(TEXTFILE_COLLECTOR)], env=env, check=False)
    assert done.returncode == 1
    assert "fail2ban" in done.stderr and "missing.pem" in done.stderr
    samples = parse_exposition(output.read_text())
    success = {dict(labels)["collector"]: v for (name, labels), v in samples.items()
               if name == "detector_textfile_collector_success"}
    assert success == {"fail2ban": 0, "certificates": 0, "renewal": 1, "log_dirs": 1}
    assert value(samples, "detector_log_dir_filesystem_size_bytes", dir=str(tmp_path)) > 0
    assert not [f for f in tmp_path.iterdir() if f.name.startswith(".detector-")], \
        "a temporary file was left beside the textfile"


# --- the dashboard and the compose profile ------------------------------------------------------

def test_dashboard_has_the_on_call_panels():
    dashboard = json.loads((MONITORING_DIR / "dashboard.json").read_text())
    exprs = dashboard_exprs()
    every_expr = " ".join(e for targets in exprs.values() for e in targets)
    for needle in ("detector_edge_requests_total", 'status="503"', 'status="429"', 'status="401"',
                   "histogram_quantile", "detector_fail2ban_banned", "detector_fail2ban_bans_total",
                   "detector_cert_not_after_timestamp_seconds"):
        assert needle in every_expr, f"no dashboard panel queries {needle}"
    ids = [p["id"] for p in _all_panels(dashboard["panels"])]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["query"] == "prometheus"


def _all_panels(panels):
    for panel in panels:
        yield panel
        yield from _all_panels(panel.get("panels", []))


def test_compose_monitoring_profile_publishes_only_loopback_and_scrapes_real_services():
    compose = yaml.safe_load((REPO_ROOT / "compose" / "monitoring.yaml").read_text())
    base = yaml.safe_load((REPO_ROOT / "compose" / "compose.yaml").read_text())
    services = compose["services"]
    for name, service in services.items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} beyond loopback"
        if name != "detector":
            assert service.get("profiles") == ["monitoring"], f"{name} must be in the profile"
    # Every scrape target is a service of the stack, listening where its command says.
    prometheus = yaml.safe_load((MONITORING_DIR / "prometheus.yml").read_text())
    known = set(services) | set(base["services"])
    for job in prometheus["scrape_configs"]:
        for target in job["static_configs"][0]["targets"]:
            host, _, port = target.partition(":")
            if host == "localhost":
                continue
            assert host in known, f"job {job['job_name']} scrapes {host}, not a compose service"
    assert services["detector"]["environment"]["DETECTOR_METRICS_BIND"].endswith(":9464")
    assert "--port=3903" in services["mtail"]["command"]
    assert "--web.listen-address=0.0.0.0:9100" in services["node-exporter"]["command"]
    # mtail reads the very file nginx writes in production.
    edge_log = production_variables()["DETECTOR_EDGE_LOG"]
    assert f"--logs={edge_log}" in services["mtail"]["command"]
    log_dir = str(Path(edge_log).parent)
    mtail_log_volumes = [v for v in services["mtail"]["volumes"] if v.endswith(f":{log_dir}:ro")]
    assert len(mtail_log_volumes) == 1, "mtail must mount the log directory read-only"
    # ... from the host directory that nginx's own log volume uses.
    host_side = mtail_log_volumes[0].rsplit(":", 2)[0]
    nginx_host_sides = [v.rsplit(":", 1)[0].rsplit(":", 1)[0] if v.endswith(":ro") else v.rsplit(":", 1)[0]
                        for v in base["services"]["nginx"]["volumes"]]
    assert host_side in nginx_host_sides, f"{host_side} is not a volume of nginx: {nginx_host_sides}"


def _manifest_entries_of_monitoring():
    entries = []
    for line in (REPO_ROOT / "host" / "manifest.txt").read_text().splitlines():
        fields = line.split()
        if len(fields) == 3 and not line.startswith("#") and (
                fields[0].startswith("monitoring/") or fields[0].startswith("systemd/detector-metrics-")):
            entries.append((fields[0], fields[1], int(fields[2], 8)))
    return entries


def test_textfile_units_pass_systemd_analyze_verify(tmp_path):
    """The collector's service and timer, installed as host/install.sh would (manifest), verify
    against the host's unit library with no complaint, ExecStart= included."""
    systemd_analyze = require_tool("systemd-analyze")
    root = tmp_path / "root"
    (root / "usr" / "lib" / "systemd").mkdir(parents=True)
    run(["cp", "-a", "/usr/lib/systemd/system", str(root / "usr" / "lib" / "systemd")])
    (root / "lib").symlink_to("usr/lib")
    installed = _manifest_entries_of_monitoring()
    assert {"systemd/detector-metrics-textfile.service", "systemd/detector-metrics-textfile.timer",
            "monitoring/textfile/detector-metrics-textfile"} <= {s for s, _, _ in installed}
    for source, destination, mode in installed:
        target = root / destination.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes((REPO_ROOT / source).read_bytes())
        target.chmod(mode)
    units = [d for s, d, _ in installed if s.startswith("systemd/")]
    done = run([systemd_analyze, "verify", f"--root={root}", *units], check=False)
    assert (done.returncode, done.stdout + done.stderr) == (0, ""), units


# --- the edge stack with its exporters ----------------------------------------------------------

@pytest.fixture(scope="module")
def stack(tmp_path_factory, detector, api_key):
    """The session's detector-api behind nginx, mtail, fail2ban-server, node_exporter; all but the
    detector torn down at the end. Counters are compared before and after, so what other tests
    sent to the shared detector does not matter."""
    tmp = tmp_path_factory.mktemp("monitoring")
    ca = make_ca(tmp / "ca")
    cert = issue_server_cert(ca, tmp / "cert", HOSTNAME)
    service = detector
    edge = start_edge(tmp / "edge", upstream=service.address, cert=cert, hostname=HOSTNAME,
                      overrides=EDGE_OVERRIDES)
    # mtail must see the file from its first line: touch it before mtail starts.
    edge.access_log.touch()
    mtail = start_mtail(tmp, edge.access_log)
    fail2ban = start_fail2ban(tmp / "fail2ban", edge.access_log)
    textfile_dir = tmp / "textfile"
    textfile_dir.mkdir()
    node = start_node_exporter(tmp, textfile_dir)
    systemctl = _fake_systemctl(tmp / "systemctl", result="success", timer="active")
    host, port = edge.https_address
    collector_env = {
        "DETECTOR_METRICS_JAILS": " ".join(fail2ban.jails),
        "DETECTOR_METRICS_FAIL2BAN_SOCKET": str(fail2ban.socket),
        "DETECTOR_METRICS_CERT_FILES": str(cert.fullchain),
        "DETECTOR_METRICS_TLS_TARGETS": f"{host}:{port}@{HOSTNAME}",
        "DETECTOR_METRICS_LOG_DIRS": str(edge.access_log.parent),
        "DETECTOR_METRICS_SYSTEMCTL": str(systemctl),
    }
    ns = type("Stack", (), {})()
    ns.tmp, ns.ca, ns.cert, ns.service, ns.edge, ns.mtail = tmp, ca, cert, service, edge, mtail
    ns.fail2ban, ns.node, ns.textfile = fail2ban, node, textfile_dir / "detector.prom"
    ns.collector_env = collector_env
    ns.client = edge.https_client(ca.cert)
    ns.api_key = api_key
    try:
        yield ns
    finally:
        for part in (node, fail2ban, mtail):
            part.stop()
        edge.stop()


def _fake_systemctl(path: Path, *, result: str, timer: str) -> Path:
    """PID 1 here is not systemd, so `systemctl show` cannot answer: this stand-in prints what it
    prints on a host for the renewal service and its timer (`--timestamp=unix` format)."""
    state = "failed" if result != "success" else "inactive"
    path.write_text(
        "#!/bin/sh\n"
        'case "$2" in\n'
        f'  *.timer) echo "ActiveState={timer}" ;;\n'
        f'  *) printf "ActiveState={state}\\nResult={result}\\nExecMainExitTimestamp=@1796300000\\n" ;;\n'
        "esac\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def _edge_scrape(stack):
    return scrape(stack.mtail.metrics_url)


def _host_scrape(stack):
    run_textfile_collector(stack.textfile, stack.collector_env)
    return scrape(stack.node.metrics_url)


def _wait_edge_lines(stack, count):
    """mtail has read every line the log holds once its line counter says so."""
    wait_until(lambda: value(_edge_scrape(stack), "detector_edge_log_lines_total") >= count,
               timeout=20, what=f"mtail to read {count} lines")


def _log_statuses(lines):
    """Statuses as the log itself records them: the independent count the exporter must match."""
    return [m.group(1) for m in (STATUS_IN_LOG.search(line) for line in lines) if m]


@pytest.fixture(scope="module")
def traffic(stack):
    """Scrapes before, then 200s, 401s, scanner hits and a burst that earns 429s, then scrapes."""
    edge, client = stack.edge, stack.client
    before_lines = len(edge.access_lines())
    before = {"edge": _edge_scrape(stack), "service": scrape(stack.service.metrics_url),
              "host": _host_scrape(stack)}
    url = edge.https_url("/score")
    good = {"Authorization": f"Bearer {stack.api_key}", "Content-Type": "application/json"}
    bad = {"Authorization": "Bearer not-a-valid-key-000000", "Content-Type": "application/json"}
    body = json.dumps({"text": SAMPLE_TEXT})
    sent = {"200": 0, "401": 0, "scanner": 0, "429": 0}

    for _ in range(2):
        assert client.post(url, data=body, headers=good, timeout=120).status_code == 200
        sent["200"] += 1
    # 401s paced under the per-IP rate so that each one reaches the service and counts.
    for _ in range(BAD_KEY_REQUESTS):
        assert client.post(url, data=body, headers=bad, timeout=30).status_code == 401
        sent["401"] += 1
        time.sleep(BAD_KEY_PAUSE_SECS)
    for path in SCANNER_PATHS:
        assert client.get(edge.https_url(path), timeout=30).status_code == 404
        sent["scanner"] += 1
    # A burst without pause, with no key: the per-IP limit answers 429 long before it ends.
    statuses = [client.post(url, data=body, headers=bad, timeout=30).status_code
                for _ in range(BURST_REQUESTS)]
    sent["429"] = statuses.count(429)
    assert sent["429"] > 0, f"the burst earned no 429: {statuses}"

    # One line per request, whoever answered it.
    expected_lines = before_lines + sent["200"] + sent["401"] + sent["scanner"] + len(statuses)
    lines = edge.wait_for_access_lines(expected_lines)
    _wait_edge_lines(stack, len(lines))
    after = {"edge": _edge_scrape(stack), "service": scrape(stack.service.metrics_url),
             "host": _wait_for_ban(stack)}
    # The collector's TLS probe (a handshake, no request) must not add lines that fail2ban and
    # the edge counters would see as traffic.
    assert len(edge.access_lines()) == expected_lines
    return {"sent": sent, "lines": lines[before_lines:], "before": before, "after": after}


def _wait_for_ban(stack):
    """fail2ban polls the log, each jail on its own: wait until the auth jail has banned the test
    client and the botsearch jail has counted every scanner hit."""
    holder = {}

    def caught_up():
        samples = holder["samples"] = _host_scrape(stack)
        return (value(samples, "detector_fail2ban_bans_total", jail="detector-auth") >= 1
                and value(samples, "detector_fail2ban_failures_total", jail="detector-botsearch")
                >= len(SCANNER_PATHS))

    wait_until(caught_up, timeout=30, interval=0.5,
               what="fail2ban to ban after repeated 401s and count the scanner hits")
    return holder["samples"]


def test_edge_counters_match_the_log_and_move(traffic):
    before, after = traffic["before"]["edge"], traffic["after"]["edge"]
    logged = _log_statuses(traffic["lines"])
    assert len(logged) == len(traffic["lines"]), "a log line without a status"
    for status in ("200", "401", "404", "429"):
        moved = (value(after, "detector_edge_requests_total", status=status)
                 - value(before, "detector_edge_requests_total", status=status))
        assert moved == logged.count(status), f"status {status}: exporter {moved}, log {logged.count(status)}"
        assert moved > 0, f"no {status} counted at the edge"
    scanner = (value(after, "detector_edge_requests_total", route="scanner")
               - value(before, "detector_edge_requests_total", route="scanner"))
    assert scanner == traffic["sent"]["scanner"]
    assert value(after, "detector_edge_log_unparsed_lines_total") == 0, \
        "mtail could not parse some lines of the dedicated log: the format changed"
    # Every observation lands in a bucket (mtail drops values at its lowest bound).
    for histogram in ("detector_edge_request_duration_seconds",
                      "detector_edge_upstream_duration_seconds"):
        assert value(after, f"{histogram}_bucket", le="+Inf") == value(after, f"{histogram}_count")
    # The two scored requests went upstream: their latency is in the upstream histogram.
    upstream = (value(after, "detector_edge_upstream_duration_seconds_count")
                - value(before, "detector_edge_upstream_duration_seconds_count"))
    assert upstream >= traffic["sent"]["200"] + traffic["sent"]["401"]


def test_service_counts_what_reached_it(traffic):
    before, after = traffic["before"]["service"], traffic["after"]["service"]
    requests_metric = SERVICE_REQUESTS
    for status, sent in (("200", traffic["sent"]["200"]), ("401", traffic["sent"]["401"])):
        moved = (value(after, requests_metric, route="/score", status=status)
                 - value(before, requests_metric, route="/score", status=status))
        assert moved >= sent, f"service counted {moved} {status}s on /score, sent {sent}"
    # Scanner paths never reach the service.
    assert not any(dict(labels).get("route", "").endswith((".env", ".sql"))
                   for (_name, labels) in after)


def test_fail2ban_and_certificate_metrics_move(stack, traffic):
    before, after = traffic["before"]["host"], traffic["after"]["host"]
    jail = "detector-auth"
    assert value(before, "detector_fail2ban_bans_total", jail=jail) == 0
    assert value(after, "detector_fail2ban_bans_total", jail=jail) >= 1
    assert value(after, "detector_fail2ban_banned", jail=jail) >= 1
    assert value(after, "detector_fail2ban_failures_total", jail="detector-botsearch") >= len(SCANNER_PATHS)
    for collector in ("fail2ban", "certificates", "renewal", "log_dirs"):
        assert value(after, "detector_textfile_collector_success", collector=collector) == 1, collector
    # The served certificate and the file are the test certificate; its notAfter, read by Python.
    expected = _not_after(stack.cert.fullchain)
    assert value(after, "detector_cert_not_after_timestamp_seconds", source="served") == expected
    assert value(after, "detector_cert_not_after_timestamp_seconds", source="file") == expected
    assert value(after, "detector_cert_renewal_failed") == 0
    assert value(after, "detector_cert_renewal_timer_active") == 1
    assert value(after, "detector_log_dir_bytes") > 0


def _not_after(pem_path: Path) -> float:
    out = run(["openssl", "x509", "-noout", "-enddate", "-in", str(pem_path)]).stdout
    return float(ssl.cert_time_to_seconds(out.strip().split("=", 1)[1]))


def test_renewal_failure_and_stopped_timer_are_reported(stack, tmp_path):
    env = dict(stack.collector_env)
    env["DETECTOR_METRICS_SYSTEMCTL"] = str(_fake_systemctl(tmp_path / "systemctl",
                                                            result="exit-code", timer="inactive"))
    output = tmp_path / "detector.prom"
    from harness.monitoring import parse_exposition
    samples = parse_exposition(run_textfile_collector(output, env))
    assert value(samples, "detector_cert_renewal_failed") == 1
    assert value(samples, "detector_cert_renewal_timer_active") == 0
    assert value(samples, "detector_cert_renewal_last_exit_timestamp_seconds") == 1796300000


def test_every_metric_in_rules_and_dashboard_is_exported(traffic):
    exported = set(SYNTHETIC_METRICS)
    for source in traffic["after"].values():
        exported |= sample_names(source)
    used = {}
    for alert, expr in alert_rule_exprs().items():
        for name in metric_names_in_promql(expr):
            used.setdefault(name, []).append(f"rule {alert}")
    for title, exprs in dashboard_exprs().items():
        for expr in exprs:
            for name in metric_names_in_promql(expr):
                used.setdefault(name, []).append(f"panel {title!r}")
    missing = {name: where for name, where in used.items() if name not in exported}
    assert not missing, f"metrics used but exported by nothing that was scraped: {missing}"
    assert len(used) >= 15, f"suspiciously few metric names found: {sorted(used)}"


def test_every_label_matched_in_rules_and_dashboard_exists(traffic):
    """A selector on a label the exporter does not set, or on a route it never names, matches
    nothing and would keep an alert silent forever."""
    samples = {}
    for source in traffic["after"].values():
        samples.update(source)
    exprs = list(alert_rule_exprs().values())
    exprs += [e for targets in dashboard_exprs().values() for e in targets]
    problems = []
    for expr in exprs:
        for metric, label, op, wanted in label_matchers_in_promql(expr):
            if label in PROMETHEUS_LABELS:
                continue
            label_sets = [dict(labels) for (name, labels) in samples if name == metric]
            if not any(label in labels for labels in label_sets):
                problems.append(f"{metric} has no label {label}")
            # Statuses depend on the traffic of the day; the other values are a fixed vocabulary.
            elif op == "=" and label not in TRAFFIC_LABELS and \
                    not any(labels.get(label) == wanted for labels in label_sets):
                problems.append(f"{metric} never has {label}={wanted!r}")
    assert not problems, problems


# --- the PromQL name extraction the check above relies on ---------------------------------------

@pytest.mark.parametrize("expr, expected", [
    ('up{job="detector"} == 0', {"up"}),
    ('sum by (status) (rate(a_total{status=~"5..",route="/score"}[5m])) / sum(rate(a_total[5m]))',
     {"a_total"}),
    ('histogram_quantile(0.95, sum by (le) (rate(h_seconds_bucket[$__rate_interval])))',
     {"h_seconds_bucket"}),
    ('x > 0 unless on (job) y offset 5m', {"x", "y"}),
    ('(min by (cert) (c_seconds) - time()) < 14 * 86400', {"c_seconds"}),
    ('1 - avail / size > 0.85', {"avail", "size"}),
    ('predict_linear(avail[6h], 24 * 3600) < 0', {"avail"}),
    ('sum(increase(a{route="and or unless"}[15m])) > 0 and b', {"a", "b"}),
])
def test_metric_names_in_promql(expr, expected):
    assert metric_names_in_promql(expr) == expected


def test_prometheus_scrapes_the_stack_and_evaluates_every_rule_and_panel(stack, traffic, tmp_path):
    """The project's prometheus.yml and alerts.yml in a real Prometheus, scraping the running
    service and exporters: every target up, every rule evaluated without error on real series
    (vector matching included), every dashboard query accepted."""
    prometheus = start_prometheus(tmp_path / "prometheus", {
        "detector": f"127.0.0.1:{stack.service.metrics_port}",
        "edge": f"127.0.0.1:{stack.mtail.port}",
        "node": f"127.0.0.1:{stack.node.port}",
    })
    try:
        def all_up():
            result = prometheus.api("query", query="up")["result"]
            return len(result) == 4 and all(r["value"][1] == "1" for r in result)

        wait_until(all_up, timeout=60, interval=0.5, what="Prometheus to scrape every target")

        def rules():
            return [r for g in prometheus.api("rules")["groups"] for r in g["rules"]]

        # Two evaluations after the first scrape, so every rule has seen real series.
        time.sleep(2.5)
        wait_until(lambda: all(r["health"] != "unknown" for r in rules()), timeout=30,
                   what="every rule to be evaluated")
        evaluated = rules()
        assert {r["name"] for r in evaluated} == set(alert_rule_exprs())
        failing = {r["name"]: r.get("lastError") for r in evaluated if r["health"] != "ok"}
        assert not failing, failing
        for title, exprs in dashboard_exprs().items():
            for expr in exprs:
                prometheus.api("query", query=expr.replace("$__rate_interval", "1m"))
        # The numbers an on-call reads are there, from each source.
        for query in ('sum(detector_edge_requests_total{status="401"})',
                      'sum(detector_http_requests_total{route="/score",status="200"})',
                      'detector_fail2ban_bans_total{jail="detector-auth"}'):
            result = prometheus.api("query", query=query)["result"]
            assert result and float(result[0]["value"][1]) > 0, query
    finally:
        prometheus.stop()


def test_mtail_follows_the_log_through_rotation(stack, traffic):
    """logrotate renames the log and nginx reopens a new file (`create`, not copytruncate): mtail
    must go on counting from the new file, or every edge alert goes quiet after the first week."""
    edge = stack.edge
    before = value(_edge_scrape(stack), "detector_edge_log_lines_total")
    edge.access_log.rename(edge.access_log.with_name(edge.access_log.name + ".1"))
    edge.reopen()
    for path in SCANNER_PATHS[:3]:
        stack.client.get(edge.https_url(path), timeout=30)
    assert len(edge.wait_for_access_lines(3)) == 3
    wait_until(lambda: value(_edge_scrape(stack), "detector_edge_log_lines_total") >= before + 3,
               timeout=20, what="mtail to read the new log after rotation")
