"""The Compose stack, brought up for real on this machine's Docker engine.

compose/compose.yaml and the images it names are the production ones: base images are built
locally from Debian packages (scripts/build-base-images), the detector image from HEAD
(scripts/build-detector-image). The stack runs under its own project name with a throwaway
certificate, temporary host directories and the production ports 80 and 443, driven through
host/detector-stack-compose like the systemd unit drives it. The tests then prove the topology
with the runbook's post-deploy checks. They run in file order: the restart and down/up tests
come last.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from harness.images import REPO_ROOT, compose_command, detector_image, require_docker
from harness.pki import issue_server_cert, make_ca
from harness.procs import require_tool, run, wait_until
from harness.service import SAMPLE_TEXT, require_model

PROJECT = "detector-stack-ci"
# The production name: nginx/edge.env and the certificate both use it; curl resolves it locally.
HOSTNAME = "detector.cereby.ai"
API_KEY = "dsk_compose_test_" + "k" * 32
# The detector loads the model (about a second) after a 30 s start period at most; 1.29's `up`
# returns once it is healthy. Bounded so a broken healthcheck fails instead of hanging.
UP_TIMEOUT = 300
HEALTHY_TIMEOUT = 120


def _edge_env() -> dict[str, str]:
    values = {}
    for line in (REPO_ROOT / "nginx" / "edge.env").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            values[key.strip()] = value.strip()
    return values


class Stack:
    def __init__(self, tmp: Path):
        self.tmp = tmp
        self.certs_dir = tmp / "letsencrypt"
        self.webroot = tmp / "webroot"
        self.log_dir = tmp / "log"
        self.wrapper = str(REPO_ROOT / "host" / "detector-stack-compose")
        self.compose = compose_command()
        self.env = {
            **os.environ,
            "DETECTOR_STACK_DIR": str(REPO_ROOT),
            # This host's own settings for the wrapper, if any, must not leak into the test.
            "DETECTOR_STACK_DEFAULTS": str(tmp / "no-defaults"),
            "DETECTOR_STACK_COMPOSE_FILES": "compose.yaml",
            "COMPOSE_PROJECT_NAME": PROJECT,
            "DETECTOR_API_KEY": API_KEY,
            "DETECTOR_HOSTNAME": HOSTNAME,
            "DETECTOR_CERTS_DIR": str(self.certs_dir),
            "DETECTOR_ACME_WEBROOT": str(self.webroot),
            "DETECTOR_LOG_DIR": str(self.log_dir),
            "DETECTOR_MODELS_DIR": str(REPO_ROOT / "models"),
            "DETECTOR_KEYS_DIR": str(tmp / "keys"),
        }
        edge_log = _edge_env()["DETECTOR_EDGE_LOG"]
        # The container path /var/log/detector-stack/<file> is the host's log_dir/<file>.
        self.access_log = self.log_dir / Path(edge_log).name

    def run(self, *args: str, timeout: float = 120, check: bool = True):
        return run([self.wrapper, *args], env=self.env, timeout=timeout, check=check)

    def container(self, service: str) -> dict:
        ids = self.run("ps", "-q", service).stdout.split()
        assert len(ids) == 1, f"expected one {service} container, got {ids}"
        return json.loads(run(["docker", "inspect", ids[0]]).stdout)[0]

    def containers(self) -> list[dict]:
        ids = run(["docker", "ps", "-aq", "--filter",
                   f"label=com.docker.compose.project={PROJECT}"]).stdout.split()
        return json.loads(run(["docker", "inspect", *ids]).stdout) if ids else []

    def health(self, service: str) -> str:
        state = self.container(service)["State"]
        return state.get("Health", {}).get("Status", "none")

    def curl(self, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        """curl as a client on the internet would call the VM: by name, to the published ports."""
        return run(["curl", "-sS", "--max-time", "20",
                    "--resolve", f"{HOSTNAME}:80:127.0.0.1", "--resolve", f"{HOSTNAME}:443:127.0.0.1",
                    "--cacert", str(self.ca_cert), *args], timeout=timeout, check=False)


def _topology(stack: Stack) -> list[tuple]:
    """What must survive a down/up: names, images, published ports, mounts, networks, limits."""
    shape = []
    for c in stack.containers():
        host = c["HostConfig"]
        shape.append((
            c["Name"],
            c["Config"]["Image"],
            json.dumps(host.get("PortBindings") or {}, sort_keys=True),
            tuple(sorted((m["Source"], m["Destination"], m["RW"]) for m in c["Mounts"])),
            tuple(sorted(c["NetworkSettings"]["Networks"])),
            host["ReadonlyRootfs"], tuple(host.get("CapDrop") or ()), host["Memory"],
            host["NanoCpus"], host["RestartPolicy"]["Name"],
        ))
    return sorted(shape)


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    require_docker()
    require_tool("curl")
    require_model()
    image = detector_image()
    tmp = tmp_path_factory.mktemp("compose")
    s = Stack(tmp)
    # The image this session built, by its revision tag: a build running beside this one may
    # move `latest` meanwhile.
    s.env["DETECTOR_IMAGE_TAG"] = image.tag
    for d in (s.webroot, s.log_dir, tmp / "keys"):
        d.mkdir()
    # The throwaway certificate, where certbot would put it (live/<name>/).
    ca = make_ca(tmp / "ca")
    cert = issue_server_cert(ca, tmp / "issued", HOSTNAME, key_type="rsa")
    live = s.certs_dir / "live" / HOSTNAME
    live.mkdir(parents=True)
    (live / "fullchain.pem").write_bytes(cert.fullchain.read_bytes())
    (live / "privkey.pem").write_bytes(cert.privkey.read_bytes())
    s.ca_cert = ca.cert
    s.image = image
    for port in (80, 443):
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                pytest.fail(f"port {port} is already in use on this host: the stack publishes it",
                            pytrace=False)
    s.run("down", "--volumes", timeout=120, check=False)  # leftovers of an interrupted run
    started = time.monotonic()
    up = s.run("up", timeout=UP_TIMEOUT, check=False)
    s.up_seconds = time.monotonic() - started
    if up.returncode != 0:
        logs = run([*s.compose, "-p", PROJECT, "-f", str(REPO_ROOT / "compose" / "compose.yaml"),
                    "logs", "--no-color", "--tail", "60"], env=s.env, check=False)
        s.run("down", "--volumes", check=False)
        pytest.fail(f"`detector-stack-compose up` failed:\n{up.stdout}\n{up.stderr}\n"
                    f"logs:\n{logs.stdout}{logs.stderr}", pytrace=False)
    yield s
    s.run("down", "--volumes", timeout=180, check=False)


def test_only_80_and_443_are_published_and_only_by_nginx(stack):
    published = {}
    for c in stack.containers():
        service = c["Config"]["Labels"]["com.docker.compose.service"]
        for port, bindings in (c["HostConfig"].get("PortBindings") or {}).items():
            published[port] = (service, sorted(b["HostPort"] for b in bindings))
    assert published == {"80/tcp": ("nginx", ["80"]), "443/tcp": ("nginx", ["443"])}
    # The certbot service is behind a profile: `up` did not start it.
    services = {c["Config"]["Labels"]["com.docker.compose.service"] for c in stack.containers()}
    assert services == {"detector", "nginx"}


def test_the_detector_port_is_refused_from_the_host(stack):
    addresses = {"127.0.0.1"}
    route = run(["ip", "-4", "route", "get", "203.0.113.1"], check=False).stdout.split()
    if "src" in route:
        addresses.add(route[route.index("src") + 1])  # the address the internet would reach
    for address in sorted(addresses):
        for port in (8080, 9464):
            with socket.socket() as probe:
                probe.settimeout(3)
                assert probe.connect_ex((address, port)) != 0, f"{address}:{port} accepts connections"
    detector = stack.container("detector")
    assert not detector["HostConfig"].get("PortBindings")
    # The detector sits on the internal network only: no route out, no port on the host.
    networks = detector["NetworkSettings"]["Networks"]
    assert list(networks) == [f"{PROJECT}_backend"]
    backend = json.loads(run(["docker", "network", "inspect", f"{PROJECT}_backend"]).stdout)[0]
    assert backend["Internal"] is True


def test_http_redirects_to_https(stack):
    done = stack.curl("-o", "/dev/null", "-w", "%{http_code} %{redirect_url}",
                      f"http://{HOSTNAME}/score?x=1")
    assert done.stdout == f"301 https://{HOSTNAME}/score?x=1", done.stderr


def test_healthz_without_a_key_is_401(stack):
    done = stack.curl("-i", f"https://{HOSTNAME}/healthz")
    status_line, _, rest = done.stdout.partition("\n")
    assert " 401" in status_line, done.stdout + done.stderr
    assert "www-authenticate" in rest.lower()
    # run() reads text: the header block ends at the first empty line, "\r\n" already "\n".
    body = json.loads(done.stdout.split("\n\n", 1)[1])
    assert set(body["error"]) >= {"code", "message"}


def test_score_with_the_key_is_200_json(stack):
    done = stack.curl("-w", "\n%{http_code}", "-H", f"Authorization: Bearer {API_KEY}",
                      "-H", "Content-Type: application/json",
                      "--data", json.dumps({"text": SAMPLE_TEXT}), f"https://{HOSTNAME}/score")
    body, _, status = done.stdout.rpartition("\n")
    assert status == "200", done.stdout + done.stderr
    result = json.loads(body)
    assert 0.0 <= result["score"] <= 1.0
    assert result["label"] in {"ai", "human", "uncertain"}
    assert result["tokens"] > 0


def test_healthz_reports_the_image_revision(stack):
    done = stack.curl("-H", f"X-API-Key: {API_KEY}", f"https://{HOSTNAME}/healthz")
    assert json.loads(done.stdout)["revision"] == stack.image.revision, done.stdout


def test_the_detector_container_is_healthy_and_hardened(stack):
    wait_until(lambda: stack.health("detector") == "healthy", timeout=HEALTHY_TIMEOUT,
               interval=1, what="the detector container to report healthy")
    host = stack.container("detector")["HostConfig"]
    assert host["ReadonlyRootfs"] is True
    assert host["CapDrop"] == ["ALL"]
    assert "no-new-privileges:true" in host["SecurityOpt"]
    assert host["Memory"] > 0 and host["NanoCpus"] > 0
    assert host["RestartPolicy"]["Name"] == "unless-stopped"
    assert host["LogConfig"]["Type"] == "json-file"
    assert set(host["LogConfig"]["Config"]) >= {"max-size", "max-file"}
    config = stack.container("detector")["Config"]
    assert config["User"] not in ("", "root", "0", "0:0")
    # Docker gives the container stop_grace_period after SIGTERM: more than the service's drain.
    grace = int(next(e.split("=", 1)[1] for e in config["Env"]
                     if e.startswith("DETECTOR_SHUTDOWN_GRACE_SECS=")))
    assert config["StopTimeout"] > grace
    models = [m for m in stack.container("detector")["Mounts"] if m["Destination"] == "/models"]
    assert len(models) == 1 and models[0]["RW"] is False


def test_the_access_log_on_the_host_receives_lines(stack):
    stack.curl("-o", "/dev/null", f"https://{HOSTNAME}/healthz")
    wait_until(lambda: stack.access_log.exists() and "/healthz" in stack.access_log.read_text(),
               timeout=10, interval=0.2, what=f"a /healthz line in {stack.access_log}")
    lines = stack.access_log.read_text().splitlines()
    assert any(" 401 " in line and "/healthz" in line for line in lines), lines[-5:]
    assert any(" 301 " in line for line in lines), lines[-5:]
    assert API_KEY not in stack.access_log.read_text()


def _wait_restarted_and_healthy(stack: Stack, before: dict) -> None:
    def restarted_and_healthy() -> bool:
        now = stack.container("detector")
        return (now["RestartCount"] > before["RestartCount"] and now["State"]["Running"]
                and now["State"].get("Health", {}).get("Status") == "healthy")

    wait_until(restarted_and_healthy, timeout=HEALTHY_TIMEOUT, interval=1,
               what="docker to restart the killed detector and report it healthy")


def test_a_killed_detector_process_comes_back_by_the_restart_policy(stack):
    """SIGKILL to the detector's process from the host: a crash or an OOM kill as Docker sees it.
    (`docker kill` is different: Docker records it as a deliberate stop, see the next test.)"""
    before = stack.container("detector")
    os.kill(before["State"]["Pid"], signal.SIGKILL)

    _wait_restarted_and_healthy(stack, before)

    assert stack.container("detector")["Id"] == before["Id"], "restarted, not recreated"
    # nginx resolves the upstream per request: it reaches the restarted container at once.
    done = stack.curl("-o", "/dev/null", "-w", "%{http_code}", "-H", f"X-API-Key: {API_KEY}",
                      f"https://{HOSTNAME}/healthz")
    assert done.stdout == "200"


def test_docker_kill_is_a_deliberate_stop_and_up_brings_the_detector_back(stack):
    """Docker treats `docker kill` like `docker stop`: the restart policy does not apply (so an
    operator's kill sticks). `detector-stack-compose up`, which the unit runs, restarts it."""
    before = stack.container("detector")
    run(["docker", "kill", before["Id"]])
    time.sleep(3)  # longer than Docker's first restart delay, had it wanted to restart
    assert stack.container("detector")["State"]["Status"] == "exited"

    stack.run("up", timeout=UP_TIMEOUT)

    wait_until(lambda: stack.health("detector") == "healthy", timeout=HEALTHY_TIMEOUT,
               interval=1, what="the detector to be healthy after `up`")
    assert stack.container("detector")["Id"] == before["Id"], "started again, not recreated"


def test_down_then_up_gives_the_same_topology(stack):
    before = _topology(stack)
    stack.run("down", timeout=180)
    assert stack.containers() == []
    stack.run("up", timeout=UP_TIMEOUT)
    assert _topology(stack) == before
    done = stack.curl("-o", "/dev/null", "-w", "%{http_code}", "-H", f"X-API-Key: {API_KEY}",
                      f"https://{HOSTNAME}/healthz")
    assert done.stdout == "200"


def test_compose_file_is_valid_for_compose_1_29_and_has_no_top_level_name():
    compose = compose_command()
    env = {**os.environ, "DETECTOR_API_KEY": "k", "DETECTOR_HOSTNAME": HOSTNAME}
    env.pop("DETECTOR_IMAGE_TAG", None)
    done = run([*compose, "-f", str(REPO_ROOT / "compose" / "compose.yaml"), "config", "-q"],
               env=env, check=False)
    assert (done.returncode, done.stderr) == (0, "")
    top_level = {line.split(":")[0] for line in
                 (REPO_ROOT / "compose" / "compose.yaml").read_text().splitlines()
                 if line and not line[0].isspace() and not line.startswith("#")}
    assert top_level == {"services", "networks"}
