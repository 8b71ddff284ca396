"""The host firewall baseline (host/nftables) and the legacy listener's revocation (host/legacy).

The ruleset is only ever loaded inside network namespaces created here; every probe is sent from
a client namespace. Listeners are plain TCP servers: what is tested is which ports answer.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness import netns
from harness.fail2ban import Fail2ban
from harness.procs import ManagedProcess, require_tool, run, wait_for_port
from harness.service import REPO_ROOT

APPLY = REPO_ROOT / "host" / "nftables" / "apply-firewall.sh"
FIREWALL_ENV = REPO_ROOT / "host" / "nftables" / "firewall.env"
DISABLE_LEGACY = REPO_ROOT / "host" / "legacy" / "disable-legacy-listener.sh"

INTERNAL_PORT = 8080  # DETECTOR_INTERNAL_PORT in host/nftables/firewall.env
LEGACY_PORT = 8000    # LEGACY_PORT in host/nftables/firewall.env

_LISTEN = r"""
import selectors, socket, sys
sel = selectors.DefaultSelector()
for port in sys.argv[1:]:
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", int(port)))
    s.listen(64)
    sel.register(s, selectors.EVENT_READ)
print("listening", flush=True)
while True:
    for key, _ in sel.select():
        conn, _ = key.fileobj.accept()
        conn.close()
"""


def _listeners(ns: netns.Netns, ports: list[int], log: Path) -> ManagedProcess:
    proc = ManagedProcess([sys.executable, "-c", _LISTEN, *map(str, ports)], name=f"listen-{ns.name}",
                          log_path=log, wrapper=ns.prefix()).start()
    for port in ports:
        wait_for_port(port, process=proc, wrapper=ns.prefix(), timeout=10)
    return proc


def _apply(ns: netns.Netns, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return ns.run([str(APPLY), *args], check=False, env={**os.environ, **(env or {})})


def test_dry_run_prints_a_ruleset_that_nft_accepts_and_applies_nothing():
    require_tool("nft")
    with netns.topology() as topo:
        done = _apply(topo.server, "--dry-run", "--env", str(FIREWALL_ENV))
        assert done.returncode == 0, done.stderr
        assert "table inet detector-host" in done.stdout
        assert f"elements = {{ {INTERNAL_PORT}, {LEGACY_PORT} }}" in done.stdout
        assert "policy drop" in done.stdout
        assert "flush ruleset" not in done.stdout, "the baseline must never wipe Docker's or fail2ban's rules"
        # nft -c on the printed text, independently of the script.
        check = topo.server.run(["nft", "-c", "-f", "-"], input=done.stdout, check=False)
        assert check.returncode == 0, check.stderr
        assert topo.server.nft("list", "ruleset").strip() == "", "a dry run changes nothing"

        # The legacy port is configurable; bad values are refused before anything is applied.
        custom = _apply(topo.server, "--dry-run", "--env", "/nonexistent", env={"LEGACY_PORT": "9100"})
        assert custom.returncode == 0 and f"{{ {INTERNAL_PORT}, 9100 }}" in custom.stdout
        for bad in ("443", "22", "http", "70000", ""):
            res = _apply(topo.server, "--dry-run", "--env", "/nonexistent", env={"LEGACY_PORT": bad})
            if bad == "":  # empty means "use the default"
                assert res.returncode == 0
            else:
                assert res.returncode == 2, (bad, res.stdout, res.stderr)


def test_baseline_in_a_namespace_allows_22_80_443_refuses_internal_and_legacy_and_keeps_bans(tmp_path):
    with netns.topology(container=True) as topo:
        server_ports = [22, 80, 443, INTERNAL_PORT, LEGACY_PORT, 9999]
        listeners = [_listeners(topo.server, server_ports, tmp_path / "server.log"),
                     # Docker's shape: a container behind the server, ports published by DNAT.
                     _listeners(topo.container, [9000, INTERNAL_PORT], tmp_path / "container.log")]
        try:
            _check_baseline(topo, server_ports, tmp_path)
        finally:
            for proc in listeners:
                proc.stop()


def _check_baseline(topo: netns.Topology, server_ports: list[int], tmp_path: Path) -> None:
    topo.publish(9000)                       # an ordinary published port
    topo.publish(8081, INTERNAL_PORT)        # the internal port, published by mistake

    before = {p: topo.client.tcp_probe(topo.server_ip, p) for p in [*server_ports, 9000, 8081]}
    assert set(before.values()) == {"open"}, f"everything answers without the firewall: {before}"

    for _ in range(2):  # applying twice is harmless (the table is replaced atomically)
        done = _apply(topo.server, "--env", str(FIREWALL_ENV))
        assert done.returncode == 0, done.stderr
    assert topo.server.nft("list", "tables").split().count("detector-host") == 1

    expected = {22: "open", 80: "open", 443: "open",
                INTERNAL_PORT: "refused", LEGACY_PORT: "refused",
                9999: "timeout",   # any other port: dropped by the default policy
                9000: "open",      # Docker-published traffic is forwarded, not blocked
                8081: "refused"}   # ...unless it reaches the internal port
    after = {p: topo.client.tcp_probe(topo.server_ip, p, timeout=1.5) for p in expected}
    assert after == expected
    # Loopback stays open: the host itself may talk to the internal port.
    assert topo.server.tcp_probe("127.0.0.1", INTERNAL_PORT) == "open"

    # A fail2ban ban (real fail2ban-server, the repo's action) still blocks the banned
    # client on 80/443 with the baseline in place, and lifting it restores access.
    log = tmp_path / "edge-access.log"
    f2b = Fail2ban(tmp_path / "f2b", log_path=log, wrapper=topo.server.prefix())
    try:
        f2b.start(jails=["detector-auth"])
        f2b.ban("detector-auth", topo.client_ip)
        banned = {p: topo.client.tcp_probe(topo.server_ip, p) for p in (80, 443, 22)}
        assert banned == {80: "refused", 443: "refused", 22: "open"}
        f2b.unban(topo.client_ip)
        assert topo.client.tcp_probe(topo.server_ip, 443) == "open"
    finally:
        f2b.stop()
    # fail2ban's table is gone, the baseline is untouched.
    tables = topo.server.nft("list", "tables")
    assert "detector-host" in tables and "f2b-detector" not in tables


# --- the legacy listener at the init system --------------------------------------------------

UNIT = "detector-legacy.service"
UNIT_TEXT = """[Unit]
Description=pre-migration plaintext detector listener
[Service]
ExecStart=/usr/local/bin/detector-legacy --port 8000
[Install]
WantedBy=multi-user.target
"""


def _disable(root: Path, *args: str) -> subprocess.CompletedProcess:
    return run([str(DISABLE_LEGACY), "--root", str(root), *args])


@pytest.mark.parametrize("unit_dir", ["etc/systemd/system", "lib/systemd/system"])
def test_legacy_unit_in_a_temporary_root_is_disabled_and_masked(tmp_path, unit_dir):
    root = tmp_path / "root"
    unit = root / unit_dir / UNIT
    unit.parent.mkdir(parents=True)
    unit.write_text(UNIT_TEXT)
    wants = root / "etc/systemd/system/multi-user.target.wants"
    wants.mkdir(parents=True, exist_ok=True)
    (wants / UNIT).symlink_to(f"/{unit_dir}/{UNIT}")

    out = _disable(root).stdout
    assert f"disabled {UNIT}" in out and f"masked {UNIT}" in out, out
    mask = root / "etc/systemd/system" / UNIT
    assert mask.is_symlink() and os.readlink(mask) == "/dev/null"
    assert not (wants / UNIT).exists() and not (wants / UNIT).is_symlink()
    if unit_dir == "etc/systemd/system":  # the hand-installed file is kept aside, not deleted
        assert (root / "var/lib/detector-stack/legacy" / UNIT).read_text() == UNIT_TEXT
    else:
        assert unit.read_text() == UNIT_TEXT
    # systemd itself agrees that the unit is masked in that root.
    if require_tool("systemctl"):
        state = subprocess.run(["systemctl", f"--root={root}", "is-enabled", UNIT],
                               capture_output=True, text=True, timeout=30).stdout.strip()
        assert state == "masked"

    # Idempotent, and says so.
    again = _disable(root).stdout
    assert f"{UNIT} already masked" in again
    assert os.readlink(mask) == "/dev/null"


def test_no_legacy_unit_means_nothing_changes_and_it_says_so(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    out = _disable(root, "--unit", "old-listener").stdout
    assert "no unit old-listener.service" in out
    assert list(root.rglob("*")) == []


def test_installer_masks_a_fake_legacy_unit_in_a_temporary_root_and_says_so(tmp_path):
    """The real path: host/install.sh runs the legacy step (host/install-steps.txt)."""
    root = tmp_path / "root"
    unit_dir = root / "etc/systemd/system"
    unit_dir.mkdir(parents=True)
    (unit_dir / UNIT).write_text(UNIT_TEXT)
    install = REPO_ROOT / "host" / "install.sh"
    first = run([str(install), "--root", str(root)], timeout=120).stdout
    assert f"masked {UNIT}" in first, first
    assert os.readlink(unit_dir / UNIT) == "/dev/null"
    # The rest of the host posture landed too, where the runbook says.
    for path in ("etc/fail2ban/jail.d/detector.conf", "etc/ssh/sshd_config.d/00-detector-hardening.conf",
                 "etc/logrotate.d/detector-stack", "etc/docker/daemon.json",
                 "usr/local/lib/detector-stack/nftables/apply-firewall.sh",
                 "var/log/detector-stack/scoring.log"):
        assert (root / path).exists(), path
    second = run([str(install), "--root", str(root)], timeout=120).stdout
    assert f"{UNIT} already masked" in second and "nothing to change" in second, second


def test_host_posture_scripts_pass_shellcheck():
    shellcheck = require_tool("shellcheck")
    scripts = [APPLY, DISABLE_LEGACY, REPO_ROOT / "host/ssh/check-ssh-drift.sh",
               REPO_ROOT / "host/logrotate/postrotate", REPO_ROOT / "host/fail2ban/prepare-log.sh"]
    done = run([shellcheck, *map(str, scripts)], check=False, cwd=REPO_ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
