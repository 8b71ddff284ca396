"""nginx rendered from the repo's templates exactly as the stock nginx image does it, on free
loopback ports, with absolute paths everywhere.

    cert = issue_server_cert(make_ca(tmp / "ca"), tmp / "cert", "detector.test")
    edge = start_edge(tmp / "edge", upstream=svc.address, cert=cert, hostname="detector.test",
                      overrides={"DETECTOR_EDGE_IP_RATE": "100r/s"})
    client = edge.https_client(ca.cert)            # SNI and Host pinned to the hostname
    client.get(edge.https_url("/healthz"))
    edge.access_lines(); edge.reload(); edge.reopen(); edge.stop()

How the image renders (docker-entrypoint.d/20-envsubst-on-templates.sh): every
`/etc/nginx/templates/**/*.template` goes through `envsubst "$(printf '${%s} ' VARS...)"` into
`/etc/nginx/conf.d/` minus the `.template` suffix, where VARS are the variables it was told about,
so nginx's own `$variables` stay. `render_templates()` runs that same command. The main nginx.conf
written here mirrors the image's (`include conf.d/*.conf` inside `http {}`), with absolute paths
into a temporary prefix; `nginx/snippets/` is copied to `<prefix>/snippets/`, where production
mounts it at `/etc/nginx/snippets/` (relative includes resolve against the main config's directory).

Production defaults of every template variable live in `nginx/edge.env`; `edge_variables()` starts
from them and replaces the host-specific ones (listen addresses, certificate, webroot, log, upstream).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
from pathlib import Path
from typing import Mapping, Sequence

import pytest
import requests
from requests.adapters import HTTPAdapter

from .pki import ServerCertificate
from .procs import ManagedProcess, free_port, require_tool, run, wait_for_port, wait_until
from .service import REPO_ROOT

NGINX_DIR = REPO_ROOT / "nginx"
TEMPLATE_DIR = NGINX_DIR / "templates"
SNIPPET_DIR = NGINX_DIR / "snippets"
DEFAULTS_FILE = NGINX_DIR / "edge.env"

# One line of the dedicated access log (log_format detector_edge in 00-detector-http.conf.template).
ACCESS_LOG_LINE = re.compile(
    r'^(?P<ip>\S+) - \[(?P<time>[^\]]+)\] "(?P<method>\S+) (?P<path>\S+) (?P<proto>[^"]+)" '
    r"(?P<status>\d{3}) (?P<bytes>\d+) rt=(?P<rt>[\d.]+) urt=(?P<urt>\S+) "
    r"lreq=(?P<lreq>\S+) lconn=(?P<lconn>\S+) port=(?P<port>\d+) "
    r'host="(?P<host>[^"]*)" ua="(?P<ua>[^"]*)"$'
)


def parse_access_line(line: str) -> dict[str, str] | None:
    """The fields of one dedicated-log line (ip, time, method, path, proto, status, bytes, rt,
    urt, lreq, lconn, port, host, ua), or None if the line is not in that format."""
    match = ACCESS_LOG_LINE.match(line)
    return match.groupdict() if match else None


# Variables of the environment, in templates, are upper case; nginx's own variables are lower case.
_TEMPLATE_VARIABLE = re.compile(r"\$\{([A-Z][A-Z0-9_]*)\}|\$([A-Z][A-Z0-9_]*)")


def production_variables(path: Path = DEFAULTS_FILE) -> dict[str, str]:
    """The production values of every template variable (nginx/edge.env, KEY=value lines)."""
    values: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


def template_variables(template_dir: Path = TEMPLATE_DIR) -> set[str]:
    """Every upper-case `${VAR}`/`$VAR` the templates use."""
    found: set[str] = set()
    for template in template_dir.rglob("*.template"):
        for braced, bare in _TEMPLATE_VARIABLE.findall(template.read_text()):
            found.add(braced or bare)
    return found


def render_templates(out_dir: Path, variables: Mapping[str, str],
                     template_dir: Path = TEMPLATE_DIR) -> list[Path]:
    """Render `template_dir/**/*.template` into `out_dir` with the image's envsubst command.

    Fails when a template uses a variable that `variables` does not define: the image would leave
    it in place and nginx would reject the config or, worse, accept a literal `${...}`.
    """
    require_tool("envsubst")
    missing = sorted(template_variables(template_dir) - set(variables))
    if missing:
        pytest.fail(f"template variables without a value: {', '.join(missing)}", pytrace=False)
    out_dir = Path(out_dir)
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **variables}
    names = sorted(variables)
    rendered = []
    for template in sorted(template_dir.rglob("*.template")):
        target = out_dir / template.relative_to(template_dir).with_suffix("")
        target.parent.mkdir(parents=True, exist_ok=True)
        script = 'envsubst "$(printf \'${%s} \' "$@")" < "$TEMPLATE" > "$TARGET"'
        run(["sh", "-c", script, "sh", *names],
            env={**env, "TEMPLATE": str(template), "TARGET": str(target)})
        rendered.append(target)
    return rendered


def _split_listen(listen: str) -> tuple[str, int]:
    """`127.0.0.1:8443` -> ("127.0.0.1", 8443); a bare port listens on every address."""
    host, sep, port = listen.rpartition(":")
    host = host.strip("[]") if sep else "127.0.0.1"
    return host or "127.0.0.1", int(port)


def edge_variables(*, upstream: str, cert: ServerCertificate | None = None,
                   cert_path: Path | None = None, key_path: Path | None = None,
                   hostname: str = "detector.test", http_listen: str, https_listen: str,
                   webroot: Path, log_path: Path,
                   overrides: Mapping[str, str] | None = None) -> dict[str, str]:
    """Production variables with the host-specific ones replaced, then `overrides` on top."""
    variables = production_variables()
    variables.update({
        "DETECTOR_HOSTNAME": hostname,
        "DETECTOR_UPSTREAM": upstream,
        "DETECTOR_HTTP_LISTEN": http_listen,
        "DETECTOR_HTTPS_LISTEN": https_listen,
        "DETECTOR_TLS_CERT": str(cert.fullchain if cert else cert_path),
        "DETECTOR_TLS_KEY": str(cert.privkey if cert else key_path),
        "DETECTOR_ACME_WEBROOT": str(webroot),
        "DETECTOR_EDGE_LOG": str(log_path),
    })
    variables.update(overrides or {})
    return variables


class Nginx:
    """nginx in the foreground under `prefix`, configured from the rendered templates."""

    def __init__(self, prefix: Path, variables: Mapping[str, str], *,
                 wrapper: Sequence[str] = (), worker_processes: int = 1,
                 template_dir: Path = TEMPLATE_DIR, snippet_dir: Path = SNIPPET_DIR):
        self.binary = require_tool("nginx")
        self.prefix = Path(prefix).resolve()
        self.variables = dict(variables)
        self.wrapper = tuple(wrapper)
        self.worker_processes = worker_processes
        self.template_dir = template_dir
        self.snippet_dir = snippet_dir
        self.conf_path = self.prefix / "nginx.conf"
        self.conf_d = self.prefix / "conf.d"
        self.logs_dir = self.prefix / "logs"
        self.error_log = self.logs_dir / "error.log"
        self.pid_path = self.prefix / "nginx.pid"
        self.process: ManagedProcess | None = None

    # Where things are.
    @property
    def hostname(self) -> str:
        return self.variables["DETECTOR_HOSTNAME"]

    @property
    def access_log(self) -> Path:
        """The dedicated access log every server writes (DETECTOR_EDGE_LOG)."""
        return Path(self.variables["DETECTOR_EDGE_LOG"])

    @property
    def webroot(self) -> Path:
        return Path(self.variables["DETECTOR_ACME_WEBROOT"])

    @property
    def http_address(self) -> tuple[str, int]:
        return _split_listen(self.variables["DETECTOR_HTTP_LISTEN"])

    @property
    def https_address(self) -> tuple[str, int]:
        return _split_listen(self.variables["DETECTOR_HTTPS_LISTEN"])

    @property
    def http_port(self) -> int:
        return self.http_address[1]

    @property
    def https_port(self) -> int:
        return self.https_address[1]

    def http_url(self, path: str = "/") -> str:
        host, port = self.http_address
        return f"http://{_url_host(host)}:{port}{path}"

    def https_url(self, path: str = "/") -> str:
        host, port = self.https_address
        return f"https://{_url_host(host)}:{port}{path}"

    # Configuration.
    def write_config(self) -> None:
        """Render the templates into conf.d, copy the snippets and write the main nginx.conf."""
        for directory in (self.conf_d, self.logs_dir, self.prefix / "tmp"):
            directory.mkdir(parents=True, exist_ok=True)
        for stale in self.conf_d.rglob("*.conf"):
            stale.unlink()
        render_templates(self.conf_d, self.variables, self.template_dir)
        snippets = self.prefix / "snippets"
        if snippets.exists():
            shutil.rmtree(snippets)
        shutil.copytree(self.snippet_dir, snippets)
        self.access_log.parent.mkdir(parents=True, exist_ok=True)
        self.webroot.mkdir(parents=True, exist_ok=True)
        self.conf_path.write_text(self._main_conf())

    def _main_conf(self) -> str:
        p = self.prefix
        # As root the master would hand workers to `nobody`, who cannot read a 0700 pytest tmp dir.
        user = "user root root;\n" if os.geteuid() == 0 else ""
        temp_paths = "".join(f"    {kind}_temp_path {p}/tmp/{kind};\n"
                             for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        return (
            "# Mirrors the stock image's /etc/nginx/nginx.conf with absolute paths (ops tests).\n"
            f"{user}worker_processes {self.worker_processes};\n"
            f"pid {self.pid_path};\n"
            f"error_log {self.error_log} notice;\n"
            "events { worker_connections 1024; }\n"
            "http {\n"
            "    types { text/html html; text/plain txt; application/json json; }\n"
            "    default_type application/octet-stream;\n"
            f"    access_log {self.logs_dir}/access.log;\n"
            "    sendfile on;\n"
            "    keepalive_timeout 65;\n"
            f"{temp_paths}"
            f"    include {self.conf_d}/*.conf;\n"
            "}\n"
        )

    def _base_argv(self) -> list[str]:
        return [self.binary, "-p", f"{self.prefix}/", "-c", str(self.conf_path),
                "-e", str(self.error_log)]

    def test_config(self, *, check: bool = True) -> subprocess.CompletedProcess[str]:
        """`nginx -t` on the written config."""
        return run([*self.wrapper, *self._base_argv(), "-t"], check=check)

    def signal_argv(self, action: str) -> list[str]:
        """`nginx -s <action>` for this instance (for logrotate postrotate and the like)."""
        return [*self._base_argv(), "-s", action]

    # Lifecycle.
    def start(self, *, timeout: float = 20.0) -> "Nginx":
        self.write_config()
        self.test_config()
        self.process = ManagedProcess([*self._base_argv(), "-g", "daemon off;"], name="nginx",
                                      log_path=self.logs_dir / "stdout.log", wrapper=self.wrapper)
        self.process.start()
        for host, port in (self.http_address, self.https_address):
            wait_for_port(port, _probe_host(host), timeout=timeout, process=self.process,
                          wrapper=self.wrapper)
        return self

    def stop(self, *, graceful: bool = True, timeout: float = 15.0) -> None:
        if self.process is not None:
            self.process.stop(signal.SIGQUIT if graceful else signal.SIGTERM, timeout=timeout)

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.alive

    def reload(self, variables: Mapping[str, str] | None = None, *, timeout: float = 15.0) -> None:
        """Re-render (optionally with new variables), `nginx -t`, SIGHUP, wait for new workers."""
        if variables is not None:
            self.variables = dict(variables)
        self.write_config()
        self.test_config()
        before = self._error_log_text().count("reconfiguring")
        self._signal(signal.SIGHUP)

        def new_workers_started() -> bool:
            text = self._error_log_text()
            if text.count("reconfiguring") <= before:
                return False
            return "start worker process" in text[text.rindex("reconfiguring"):]

        wait_until(new_workers_started, timeout=timeout, what="nginx workers after reload")

    def reopen(self, *, timeout: float = 15.0) -> None:
        """SIGUSR1 (what `nginx -s reopen` sends): master and workers reopen their log files."""
        before = self._error_log_text().count("reopening logs")
        self._signal(signal.SIGUSR1)
        wanted = before + 1 + self.worker_processes
        wait_until(lambda: self._error_log_text().count("reopening logs") >= wanted,
                   timeout=timeout, what="nginx to reopen its logs")

    def _signal(self, sig: int) -> None:
        if not self.alive:
            pytest.fail(f"nginx is not running; its error log:\n{self._error_log_text()[-3000:]}",
                        pytrace=False)
        assert self.process is not None
        self.process.send_signal(sig)

    def _error_log_text(self) -> str:
        try:
            return self.error_log.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    # The dedicated log.
    def access_lines(self) -> list[str]:
        try:
            return self.access_log.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return []

    def wait_for_access_lines(self, count: int, *, timeout: float = 10.0) -> list[str]:
        """nginx writes a line after the response is sent: wait until at least `count` exist."""
        wait_until(lambda: len(self.access_lines()) >= count, timeout=timeout,
                   what=f"{count} lines in {self.access_log}")
        return self.access_lines()

    def access_entry(self, user_agent: str, *, timeout: float = 10.0) -> dict[str, str]:
        """The parsed line of the request sent with this (unique) User-Agent, waiting for it."""
        found: list[dict[str, str]] = []

        def present() -> bool:
            for line in self.access_lines():
                if f'ua="{user_agent}"' in line:
                    entry = parse_access_line(line)
                    assert entry is not None, f"log line in an unexpected format: {line}"
                    found.append(entry)
                    return True
            return False

        wait_until(present, timeout=timeout, what=f"the log line of the request from {user_agent}")
        return found[0]

    # Clients.
    def send_raw(self, data: bytes, *, tls_ca: Path | str | None = None,
                 sni: str | None = "", timeout: float = 10.0) -> bytes:
        """Send raw bytes to the HTTP port, or with `tls_ca` over TLS to the HTTPS port (SNI:
        the hostname unless `sni` says otherwise, None for no SNI), and read until the server
        closes. A close without TLS close_notify or a reset counts as a close."""
        host, port = self.https_address if tls_ca else self.http_address
        with socket.create_connection((_probe_host(host), port), timeout=timeout) as plain:
            sock = plain
            if tls_ca:
                context = ssl.create_default_context(cafile=str(tls_ca))
                server_name = self.hostname if sni == "" else sni
                context.check_hostname = server_name == self.hostname
                sock = context.wrap_socket(plain, server_hostname=server_name)
            sock.sendall(data)
            received = b""
            try:
                while chunk := sock.recv(65536):
                    received += chunk
            except (ssl.SSLEOFError, ConnectionResetError):
                pass
            return received


    def https_client(self, ca_cert: Path | str):
        """A requests.Session for https_url(): SNI, certificate check and Host all use the
        configured hostname while the TCP connection goes to the loopback listen address."""
        session = requests.Session()
        # No CA bundle or proxy from the environment: REQUESTS_CA_BUNDLE would override `verify`.
        session.trust_env = False
        session.verify = str(ca_cert)
        session.headers["Host"] = self.hostname
        session.mount(self.https_url(""), _PinnedNameAdapter(self.hostname))
        return session

    def http_client(self):
        """A requests.Session for http_url() that sends Host: <hostname> and never follows redirects."""
        session = _NoRedirectSession()
        session.trust_env = False
        session.headers["Host"] = self.hostname
        return session

    def __enter__(self) -> "Nginx":
        return self if self.alive else self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class _NoRedirectSession(requests.Session):
    """Redirects are what the :80 tests check, so they are returned, never followed."""

    def request(self, method, url, **kwargs):
        kwargs["allow_redirects"] = False
        return super().request(method, url, **kwargs)


class _PinnedNameAdapter(HTTPAdapter):
    """Connects wherever the URL says but does TLS (SNI, name check) for `hostname`."""

    def __init__(self, hostname: str):
        self._hostname = hostname
        super().__init__()

    def init_poolmanager(self, *args, **kwargs):
        kwargs["server_hostname"] = self._hostname
        kwargs["assert_hostname"] = self._hostname
        super().init_poolmanager(*args, **kwargs)


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _probe_host(host: str) -> str:
    return "127.0.0.1" if host in ("0.0.0.0", "*") else host


def start_edge(workdir: Path, *, upstream: str, cert: ServerCertificate,
               hostname: str = "detector.test", listen_host: str = "127.0.0.1",
               http_port: int | None = None, https_port: int | None = None,
               log_dir: Path | None = None, webroot: Path | None = None,
               overrides: Mapping[str, str] | None = None, wrapper: Sequence[str] = (),
               worker_processes: int = 1) -> Nginx:
    """Render, `nginx -t` and start nginx in front of `upstream` (host:port); returns it running.

    Defaults: free loopback ports, the dedicated log in `<workdir>/log/edge-access.log`, the ACME
    webroot in `<workdir>/webroot`. `overrides` replaces any template variable (limits, timeouts).
    """
    workdir = Path(workdir)
    http_port = http_port or free_port(listen_host)
    https_port = https_port or free_port(listen_host)
    host = _url_host(listen_host)
    variables = edge_variables(
        upstream=upstream, cert=cert, hostname=hostname,
        http_listen=f"{host}:{http_port}", https_listen=f"{host}:{https_port}",
        webroot=webroot or workdir / "webroot",
        log_path=(log_dir or workdir / "log") / "edge-access.log",
        overrides=overrides)
    return Nginx(workdir / "prefix", variables, wrapper=wrapper,
                 worker_processes=worker_processes).start()
