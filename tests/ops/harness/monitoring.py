"""The monitoring side of the ops tests: exporters started for real, scrapes, PromQL metric names.

    edge = start_mtail(tmp_path, access_log)             # mtail with monitoring/mtail/*.mtail
    node = start_node_exporter(tmp_path, textfile_dir)   # node_exporter, textfile collector only
    run_textfile_collector(textfile_dir / "detector.prom", env={...})
    samples = scrape(edge.metrics_url)                   # {(name, frozenset(labels)): value}
    names = metric_names_in_promql('sum(rate(x_total{a="b"}[5m])) by (a)')   # {"x_total"}
"""

from __future__ import annotations

import json
import os
import re
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping

import yaml

from .procs import ManagedProcess, free_port, require_tool, run, wait_for_port, wait_until

REPO_ROOT = Path(__file__).resolve().parents[3]
MONITORING_DIR = REPO_ROOT / "monitoring"
MTAIL_PROGS = MONITORING_DIR / "mtail"
TEXTFILE_COLLECTOR = MONITORING_DIR / "textfile" / "detector-metrics-textfile"

Samples = dict[tuple[str, frozenset], float]


@dataclass
class Exporter:
    process: ManagedProcess
    port: int
    host: str = "127.0.0.1"

    @property
    def metrics_url(self) -> str:
        return f"http://{self.host}:{self.port}/metrics"

    def stop(self) -> None:
        self.process.stop()


def start_mtail(log_dir: Path, access_log: Path, *, progs: Path = MTAIL_PROGS) -> Exporter:
    """mtail on a free loopback port, tailing `access_log` with the project's programs."""
    mtail = require_tool("mtail")
    port = free_port()
    process = ManagedProcess(
        [mtail, "--progs", str(progs), "--logs", str(access_log), "--address", "127.0.0.1",
         "--port", str(port), "--logtostderr",
         # Poll fast so a test sees a line within a fraction of a second; production keeps mtail's
         # default of 250 ms as well.
         "--poll_interval", "100ms", "--poll_log_interval", "100ms"],
        name="mtail", log_path=Path(log_dir) / f"mtail-{port}.log")
    process.start()
    wait_for_port(port, timeout=30, process=process)
    return Exporter(process, port)


def start_node_exporter(log_dir: Path, textfile_dir: Path) -> Exporter:
    """node_exporter with only the textfile collector: the host collectors say nothing about this
    project and would make the test slower and noisier."""
    exporter = require_tool("prometheus-node-exporter")
    port = free_port()
    process = ManagedProcess(
        [exporter, f"--web.listen-address=127.0.0.1:{port}", "--collector.disable-defaults",
         "--collector.textfile", f"--collector.textfile.directory={textfile_dir}"],
        name="node-exporter", log_path=Path(log_dir) / f"node-exporter-{port}.log")
    process.start()
    wait_for_port(port, timeout=30, process=process)
    return Exporter(process, port)


def run_textfile_collector(output: Path, env: Mapping[str, str]) -> str:
    """One run of detector-metrics-textfile; returns the file it wrote."""
    full_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin") + ":/usr/sbin:/sbin",
                "DETECTOR_METRICS_TEXTFILE": str(output), **env}
    done = run(["python3", str(TEXTFILE_COLLECTOR)], env=full_env, check=False, timeout=60)
    text = output.read_text() if output.exists() else ""
    if not text:
        raise AssertionError(f"detector-metrics-textfile wrote nothing; stderr:\n{done.stderr}")
    return text


# --- Prometheus text format ---------------------------------------------------------------------

_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)')
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_exposition(text: str) -> Samples:
    samples: Samples = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        match = _SAMPLE.match(line)
        if match is None:
            raise AssertionError(f"not a Prometheus sample line: {line!r}")
        labels = frozenset(_LABEL.findall(match.group(3) or ""))
        samples[(match.group(1), labels)] = float(match.group(4))
    return samples


def scrape(url: str) -> Samples:
    with urllib.request.urlopen(url, timeout=10) as response:
        return parse_exposition(response.read().decode())


def sample_names(samples: Samples) -> set[str]:
    return {name for name, _labels in samples}


def value(samples: Samples, name: str, **labels: str) -> float:
    """Sum of the samples named `name` whose labels include `labels` (0 when there is none)."""
    wanted = set(labels.items())
    return sum(v for (n, l), v in samples.items() if n == name and wanted <= set(l))


# --- metric names in PromQL ---------------------------------------------------------------------

# Words that can stand where a metric name stands but are PromQL itself.
_PROMQL_WORDS = {
    "and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right",
    "offset", "bool", "inf", "nan", "le", "start", "end",
}
_IDENT = re.compile(r'[a-zA-Z_:][a-zA-Z0-9_:]*')


def metric_names_in_promql(expr: str) -> set[str]:
    """The metric names an expression selects (functions, keywords and label names left out)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'', '""', expr)   # string literals
    text = re.sub(r'\{[^}]*\}', ' ', text)                                     # label matchers
    text = re.sub(r'\[[^\]]*\]', ' ', text)                                    # ranges, subqueries
    text = re.sub(r'\$\{?\w+\}?', ' ', text)                                   # Grafana variables
    # Label lists after by/without/on/ignoring/group_left/group_right.
    text = re.sub(r'\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)', ' ', text)
    text = re.sub(r'\b(?:\d+(?:ms|[smhdwy]))+\b', ' ', text)                     # durations
    text = re.sub(r'\b\d+(\.\d+)?(e[+-]?\d+)?\b', ' ', text)                   # numbers
    names = set()
    for match in _IDENT.finditer(text):
        word = match.group(0)
        rest = text[match.end():].lstrip()
        if rest.startswith("("):
            continue                     # a function or aggregation
        if word.lower() in _PROMQL_WORDS:
            continue
        names.add(word)
    return names


def alert_rule_exprs(path: Path = MONITORING_DIR / "alerts.yml") -> dict[str, str]:
    rules = yaml.safe_load(path.read_text())
    return {rule["alert"]: rule["expr"] for group in rules["groups"] for rule in group["rules"]}


def dashboard_exprs(path: Path = MONITORING_DIR / "dashboard.json") -> dict[str, list[str]]:
    """Panel title -> the PromQL of its targets (rows nested in collapsed rows included)."""
    dashboard = json.loads(path.read_text())
    exprs: dict[str, list[str]] = {}

    def walk(panels: Iterable[dict]) -> None:
        for panel in panels:
            targets = [t["expr"] for t in panel.get("targets", []) if t.get("expr")]
            if targets:
                exprs[panel["title"]] = targets
            walk(panel.get("panels", []))

    walk(dashboard["panels"])
    return exprs


# --- fail2ban -----------------------------------------------------------------------------------

FAIL2BAN_FILTERS = REPO_ROOT / "host" / "fail2ban" / "filter.d"


@dataclass
class Fail2ban:
    process: ManagedProcess
    socket: Path
    config: Path
    jails: tuple[str, ...]

    def client(self, *args: str) -> str:
        client = require_tool("fail2ban-client")
        return run([client, "-c", str(self.config), "-s", str(self.socket), *args]).stdout

    def stop(self) -> None:
        self.process.stop()


def start_fail2ban(workdir: Path, access_log: Path, *,
                   jails: tuple[str, ...] = ("detector-auth", "detector-botsearch")) -> Fail2ban:
    """fail2ban-server with the project's filters on `access_log` and the `dummy` action, which
    only writes the banned IPs to a file: the host's firewall is never touched (bans on a real
    firewall are tested inside network namespaces by the host-posture tests)."""
    server = require_tool("fail2ban-server")
    workdir = Path(workdir)
    config = workdir / "etc"
    config.mkdir(parents=True, exist_ok=True)
    # Debian's stock configuration (actions, common filter definitions) minus its enabled jails,
    # plus the project's filters.
    run(["cp", "-r", "/etc/fail2ban/.", str(config)])
    for enabled in (config / "jail.d").glob("*"):
        enabled.unlink()
    for path in FAIL2BAN_FILTERS.glob("*.conf"):
        (config / "filter.d" / path.name).write_text(path.read_text())
    socket, pidfile = workdir / "fail2ban.sock", workdir / "fail2ban.pid"
    (config / "fail2ban.local").write_text(
        "[DEFAULT]\n"
        f"logtarget = {workdir / 'fail2ban.log'}\n"
        f"socket = {socket}\n"
        f"pidfile = {pidfile}\n"
        "dbfile = :memory:\n")
    sections = []
    for jail in jails:
        sections.append(
            f"[{jail}]\n"
            "enabled = true\n"
            f"filter = {jail}\n"
            f"logpath = {access_log}\n"
            "backend = polling\n"
            # Small numbers so a test bans in a handful of requests; production's are in host/.
            "maxretry = 3\n"
            "findtime = 600\n"
            "bantime = 600\n"
            # The test client is this host: stock fail2ban would never ban its own addresses.
            "ignoreself = false\n"
            "ignoreip =\n"
            f"action = dummy[target={workdir / (jail + '.banned')}]\n")
    (config / "jail.local").write_text("\n".join(sections))
    process = ManagedProcess([server, "-f", "-x", "-c", str(config), "-s", str(socket),
                              "-p", str(pidfile)],
                             name="fail2ban-server", log_path=workdir / "fail2ban-server.out")
    process.start()
    f2b = Fail2ban(process, socket, config, tuple(jails))
    client = require_tool("fail2ban-client")

    def answers() -> bool:
        if not process.alive:
            raise AssertionError(f"fail2ban-server exited:\n{process.log_tail()}\n"
                                 f"{(workdir / 'fail2ban.log').read_text(errors='replace')[-3000:]}")
        done = run([client, "-c", str(config), "-s", str(socket), "status"], check=False)
        return done.returncode == 0 and all(j in done.stdout for j in jails)

    wait_until(answers, timeout=30, interval=0.2, what="fail2ban-server to load its jails")
    return f2b


_SELECTOR = re.compile(r'([a-zA-Z_:][a-zA-Z0-9_:]*)\s*\{([^}]*)\}')
_MATCHER = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"')


def label_matchers_in_promql(expr: str) -> list[tuple[str, str, str, str]]:
    """(metric, label, operator, value) for every label matcher written after a metric name."""
    found = []
    for selector in _SELECTOR.finditer(expr):
        for label, op, wanted in _MATCHER.findall(selector.group(2)):
            found.append((selector.group(1), label, op, wanted))
    return found


# --- Prometheus ---------------------------------------------------------------------------------

@dataclass
class Prometheus:
    process: ManagedProcess
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def api(self, path: str, **params: str) -> dict:
        query = urllib.parse.urlencode(params)
        try:
            with urllib.request.urlopen(f"{self.url}/api/v1/{path}?{query}", timeout=10) as response:
                body = json.load(response)
        except urllib.error.HTTPError as error:   # a PromQL error is a 400 with a JSON body
            text = error.read().decode(errors="replace")
            try:
                body = json.loads(text)
            except ValueError:
                raise AssertionError(f"Prometheus {path} {params}: {error.code} {text}") from None
        if body.get("status") != "success":
            raise AssertionError(f"Prometheus {path} {params}: {body}")
        return body["data"]

    def stop(self) -> None:
        self.process.stop()


def start_prometheus(workdir: Path, targets: Mapping[str, str], *,
                     config: Path = MONITORING_DIR / "prometheus.yml") -> Prometheus:
    """Prometheus with the project's config and rules, each job's target replaced by the address
    of the process the test runs for it (`targets`: job name -> host:port), scraping every second."""
    prometheus = require_tool("prometheus")
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    settings = yaml.safe_load(config.read_text())
    settings["global"]["scrape_interval"] = "1s"
    settings["global"]["evaluation_interval"] = "1s"
    settings["rule_files"] = [str((config.parent / f).resolve()) for f in settings["rule_files"]]
    port = free_port()
    for job in settings["scrape_configs"]:
        name = job["job_name"]
        address = f"127.0.0.1:{port}" if name == "prometheus" else targets[name]
        job["static_configs"] = [{"targets": [address]}]
    test_config = workdir / "prometheus.yml"
    test_config.write_text(yaml.safe_dump(settings))
    process = ManagedProcess(
        [prometheus, f"--config.file={test_config}", f"--storage.tsdb.path={workdir / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}"],
        name="prometheus", log_path=workdir / "prometheus.log")
    process.start()
    wait_for_port(port, timeout=60, process=process)

    def ready() -> bool:
        # The port opens before the TSDB is loaded; until then the API answers 503.
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/-/ready", timeout=5) as response:
                return response.status == 200
        except OSError:
            return False

    wait_until(ready, timeout=60, interval=0.2, what="Prometheus to be ready")
    return Prometheus(process, port)
