"""Log growth: rotation of the dedicated nginx log loses no line; Docker's log caps are valid.

1. host/logrotate/detector-stack, forced twice (`logrotate -f` with its own state file) while a
   bounded load runs through the real nginx in front of the real detector-api: the lines in the
   current, rotated and compressed files add up to exactly the requests served. The postrotate
   script is the shipped one; only its two commands are pointed at the test's nginx (`nginx -s
   reopen`) and at a private fail2ban (in its own network namespace), which must still read the
   new file after both rotations.
2. host/docker/daemon.json is checked by the real dockerd (see the test for how).
"""

from __future__ import annotations

import gzip
import json
import os
import re
import shlex
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest

from harness import netns
from harness.fail2ban import Fail2ban
from harness.nginx import start_edge
from harness.procs import require_tool, run, wait_until
from harness.service import REPO_ROOT

LOGROTATE_CONF = REPO_ROOT / "host" / "logrotate" / "detector-stack"
POSTROTATE = REPO_ROOT / "host" / "logrotate" / "postrotate"
DAEMON_JSON = REPO_ROOT / "host" / "docker" / "daemon.json"

# Bounds of the load: it stops at whichever comes first.
LOAD_MAX_REQUESTS = 3000
LOAD_MAX_SECONDS = 30.0


def _render_logrotate(log_dir: Path, out: Path) -> Path:
    """The shipped config with only the two host paths replaced by the test's."""
    text = LOGROTATE_CONF.read_text()
    assert "/var/log/detector-stack/*.log" in text and "/usr/local/lib/detector-stack/logrotate/postrotate" in text
    text = text.replace("/var/log/detector-stack/", f"{log_dir}/")
    text = text.replace("/usr/local/lib/detector-stack/logrotate/postrotate", str(POSTROTATE))
    out.write_text(text)
    out.chmod(0o644)  # logrotate ignores group/world-writable configs
    return out


def _count_lines(log_dir: Path) -> dict[str, int]:
    counts = {}
    for f in sorted(log_dir.iterdir()):
        opener = gzip.open if f.suffix == ".gz" else open
        with opener(f, "rt", errors="replace") as fh:
            counts[f.name] = sum(1 for _ in fh)
    return counts


def test_forced_rotations_under_load_lose_no_line(detector, edge_cert, test_ca, api_key, tmp_path):
    logrotate = require_tool("logrotate")
    log_dir = tmp_path / "log"
    edge = start_edge(tmp_path / "edge", upstream=detector.address, cert=edge_cert,
                      log_dir=log_dir, worker_processes=2,
                      overrides={"DETECTOR_EDGE_IP_RATE": "10000r/s", "DETECTOR_EDGE_IP_BURST": "10000",
                                 "DETECTOR_EDGE_KEY_RATE": "10000r/s", "DETECTOR_EDGE_KEY_BURST": "10000"})
    conf = _render_logrotate(log_dir, tmp_path / "logrotate.conf")
    state = tmp_path / "logrotate.state"

    with netns.topology() as topo:
        # fail2ban only reads files; its namespace keeps its ban action away from the host.
        f2b = Fail2ban(tmp_path / "f2b", log_path=edge.access_log, wrapper=topo.server.prefix(),
                       jail_settings={"ignoreip": "", "ignoreself": "false",
                                      "maxretry": "1000"})
        try:
            f2b.start(jails=["detector-auth"])
            # A ban in force before the rotations must survive postrotate's reload.
            f2b.ban("detector-auth", "192.0.2.99")
            env = {**os.environ,
                   "DETECTOR_LOGROTATE_ENV": "/nonexistent",
                   "DETECTOR_NGINX_REOPEN": shlex.join(edge.signal_argv("reopen")),
                   "DETECTOR_FAIL2BAN_RELOAD": shlex.join(f2b.reload_argv())}

            served = [0, 0]  # per worker thread: responses received (any status)
            stop = threading.Event()

            def load(slot: int) -> None:
                session = edge.https_client(test_ca.cert)
                headers = {"Authorization": f"Bearer {api_key}"}
                deadline = time.monotonic() + LOAD_MAX_SECONDS
                while not stop.is_set() and time.monotonic() < deadline \
                        and sum(served) < LOAD_MAX_REQUESTS:
                    r = session.get(edge.https_url("/healthz"), headers=headers, timeout=10)
                    assert r.status_code == 200, r.text
                    served[slot] += 1

            threads = [threading.Thread(target=load, args=(i,)) for i in range(2)]
            for t in threads:
                t.start()
            rotations = []
            try:
                for _ in range(2):
                    # Let some lines accumulate, then rotate in the middle of the traffic.
                    before = sum(served)
                    wait_until(lambda: sum(served) >= before + 200 or not any(t.is_alive() for t in threads),
                               timeout=LOAD_MAX_SECONDS, what="load between rotations")
                    done = run([logrotate, "-f", "-s", str(state), str(conf)], env=env, timeout=60)
                    rotations.append((sum(served), done.stderr))
            finally:
                # Some traffic after the second rotation, then stop.
                time.sleep(0.5)
                stop.set()
                for t in threads:
                    t.join(timeout=30)
            total = sum(served)
            assert all(n < total for n, _ in rotations), "both rotations happened while requests were in flight"

            edge.wait_for_access_lines(1)  # the current file exists again
            wait_until(lambda: sum(_count_lines(log_dir).values()) >= total, timeout=10,
                       what="every line written")
            counts = _count_lines(log_dir)
            print(f"served {total} requests; rotations at {[n for n, _ in rotations]}; lines {counts}")
            # Two rotations with delaycompress: the current file, the last rotated one (plain) and
            # the one before (compressed); all three hold lines.
            assert set(counts) == {"edge-access.log", "edge-access.log.1", "edge-access.log.2.gz"}, counts
            assert all(n > 0 for n in counts.values()), counts
            assert sum(counts.values()) == total, f"{total} requests served, log lines {counts}"

            # fail2ban was reloaded and reads the new file: failures logged now are counted.
            client = edge.https_client(test_ca.cert)
            for _ in range(3):
                r = client.get(edge.https_url("/healthz"), headers={"Authorization": "Bearer dsk_wrong"},
                               timeout=10)
                assert r.status_code == 401
            wait_until(lambda: f2b.status("detector-auth").get("Total failed") == "3", timeout=15,
                       what="fail2ban to count the 3 failures written after the rotations")
            assert str(edge.access_log) in f2b.status("detector-auth").get("File list", "")
            assert "192.0.2.99" in f2b.banned("detector-auth")
            assert "192.0.2.99" in topo.server.nft("list", "table", "inet", "f2b-detector")
        finally:
            f2b.stop()
            edge.stop()


# --- Docker daemon log caps ------------------------------------------------------------------

_SIZE = re.compile(r"^[0-9]+[kmg]$")


def _dockerd_has_validate(dockerd: str) -> bool:
    help_text = subprocess.run([dockerd, "--help"], capture_output=True, text=True, timeout=30).stdout
    return "--validate" in help_text


def test_daemon_json_caps_container_logs_and_dockerd_accepts_it(tmp_path):
    """`dockerd --validate --config-file` where dockerd has it (Docker 23+). Debian 12's docker.io
    (20.10) has no --validate: there a throwaway dockerd is started on the file (own network
    namespace via `unshare -n`, own data/exec roots, socket and pid file, no iptables, no
    bridge) and must get as far as serving its API, while a file with an unknown directive makes
    it refuse to start. The running Docker daemon is never touched."""
    dockerd = require_tool("dockerd")
    config = json.loads(DAEMON_JSON.read_text())
    # The caps themselves: json-file with a size and a count (10 MiB x 5 = 50 MiB per container).
    assert config["log-driver"] == "json-file"
    opts = config["log-opts"]
    assert _SIZE.match(opts["max-size"]) and int(opts["max-file"]) >= 2, opts

    if _dockerd_has_validate(dockerd):
        run([dockerd, "--validate", "--config-file", str(DAEMON_JSON)])
        bad = tmp_path / "bad.json"
        bad.write_text(json.dumps({**config, "log-opts-typo": {}}))
        assert run([dockerd, "--validate", "--config-file", str(bad)], check=False).returncode != 0
        return

    require_tool("unshare")
    assert _throwaway_dockerd(dockerd, DAEMON_JSON, tmp_path / "good") == "started"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({**config, "log-opts-typo": {"max-size": "1m"}}))
    assert _throwaway_dockerd(dockerd, bad, tmp_path / "bad") == "rejected"


def _throwaway_dockerd(dockerd: str, config: Path, workdir: Path, timeout: float = 40.0) -> str:
    """Start an isolated dockerd on `config`: 'started' once its API listens, 'rejected' if it
    exits on the configuration first. Always stopped before returning."""
    # Unix socket paths are limited to 108 bytes: keep the socket in a short directory.
    short = Path(tempfile.mkdtemp(prefix="dv", dir="/tmp"))
    workdir.mkdir(parents=True, exist_ok=True)
    log = workdir / "dockerd.log"
    argv = ["unshare", "--net", dockerd, "--config-file", str(config),
            "--data-root", str(workdir / "data"), "--exec-root", str(short / "x"),
            "--pidfile", str(short / "d.pid"), "--host", f"unix://{short}/d.sock",
            "--iptables=false", "--ip6tables=false", "--ip-forward=false", "--ip-masq=false",
            "--bridge=none", "--storage-driver=vfs"]
    with open(log, "wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = log.read_text(errors="replace")
            if "API listen on" in text:
                return "started"
            if proc.poll() is not None:
                if "unable to configure the Docker daemon" in text:
                    return "rejected"
                pytest.fail(f"dockerd exited for another reason:\n{text[-3000:]}", pytrace=False)
            time.sleep(0.2)
        pytest.fail(f"dockerd neither started nor failed in {timeout:.0f}s:\n{log.read_text()[-3000:]}",
                    pytrace=False)
    finally:
        if proc.poll() is None:
            proc.terminate()  # dockerd stops its own containerd on SIGTERM
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, 9)
                proc.wait(timeout=10)
        subprocess.run(["rm", "-rf", str(short)], check=False)
