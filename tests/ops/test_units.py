"""Every systemd unit in systemd/ (and any other unit host/manifest.txt installs) passes `systemd-analyze verify` with no output at all, as
host/install.sh lays it out, and the stack's unit has the shape issue 5 asks for.

verify exits 0 on many mistakes (an unknown key, a missing ExecStart= binary only warn), so any
output fails. It runs offline against a temporary root holding the host's unit library (so
docker.service, network-online.target and the targets resolve) and the installed files (so every
ExecStart= program exists where the unit says); PID 1 need not be systemd.
"""

from __future__ import annotations

import configparser
import os
import shutil
import stat
from pathlib import Path

import pytest

from harness.procs import require_tool, run

REPO_ROOT = Path(__file__).resolve().parents[2]
SYSTEMD_DIR = REPO_ROOT / "systemd"
HOST_UNIT_LIBRARY = Path("/usr/lib/systemd/system")
UNIT_SUFFIXES = (".service", ".timer", ".socket", ".path", ".target", ".mount")


def _manifest() -> dict[str, str]:
    """source -> destination of every host/manifest.txt line."""
    entries = {}
    for line in (REPO_ROOT / "host" / "manifest.txt").read_text().splitlines():
        fields = line.split("#", 1)[0].split()
        if fields:
            entries[fields[0]] = fields[1]
    return entries


@pytest.fixture(scope="module")
def installed_root(tmp_path_factory) -> Path:
    require_tool("systemctl")
    if not (HOST_UNIT_LIBRARY / "docker.service").exists():
        pytest.fail("docker.service is missing from the host's unit library: install `docker.io`",
                    pytrace=False)
    root = tmp_path_factory.mktemp("units") / "root"
    (root / "usr" / "lib" / "systemd").mkdir(parents=True)
    shutil.copytree(HOST_UNIT_LIBRARY, root / "usr" / "lib" / "systemd" / "system", symlinks=True)
    (root / "lib").symlink_to("usr/lib")
    run([str(REPO_ROOT / "host" / "install.sh"), "--root", str(root)], timeout=120)
    _copy_host_programs(root)
    return root


def _copy_host_programs(root: Path) -> None:
    """Programs the units run that the VM gets from Debian packages (nft, ...) rather than from
    the manifest: copied from this host, which has the same packages (.ci/apt-packages.txt).
    One that this host lacks stays absent, and verify says so."""
    for unit in _installed_units():
        for line in (root / unit.lstrip("/")).read_text().splitlines():
            key, _, value = line.partition("=")
            if not key.strip().startswith("Exec") or not value.strip():
                continue
            program = value.strip().split()[0].lstrip("-@:+!")
            inside = root / program.lstrip("/")
            if program.startswith("/") and not inside.exists() and Path(program).is_file():
                inside.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(program, inside)


def _verify(root: Path, *units: str):
    systemd_analyze = require_tool("systemd-analyze")
    return run([systemd_analyze, "verify", f"--root={root}", *units], check=False, timeout=120)


def _units_in_repo() -> list[str]:
    return sorted(p.name for p in SYSTEMD_DIR.iterdir() if p.name.endswith(UNIT_SUFFIXES))


def test_every_unit_is_installed_by_the_manifest():
    manifest = _manifest()
    missing = [u for u in _units_in_repo() if f"systemd/{u}" not in manifest]
    assert missing == [], f"units not in host/manifest.txt: {missing}"


def _installed_units() -> list[str]:
    """Every unit the manifest installs (systemd/ and units kept beside their area's files)."""
    return sorted(d for d in _manifest().values()
                  if d.startswith("/etc/systemd/system/") and d.endswith(UNIT_SUFFIXES))


@pytest.mark.parametrize("destination", _installed_units())
def test_unit_verifies_without_any_output(installed_root, destination):
    done = _verify(installed_root, destination)
    assert (done.returncode, done.stdout + done.stderr) == (0, "")


def test_verify_does_report_a_broken_unit(installed_root):
    """The check above can fail: a typo'd key and a missing program both produce output."""
    broken = installed_root / "etc" / "systemd" / "system" / "broken-probe.service"
    text = (SYSTEMD_DIR / "detector-stack.service").read_text()
    broken.write_text(text.replace("ExecStop=", "ExecStpo=").replace(
        "/usr/local/sbin/detector-stack-compose up", "/usr/local/sbin/no-such-program up"))
    try:
        done = _verify(installed_root, "/etc/systemd/system/broken-probe.service")
        output = done.stdout + done.stderr
        assert "ExecStpo" in output and "no-such-program" in output, output
    finally:
        broken.unlink()


def _stack_unit() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str
    parser.read_string((SYSTEMD_DIR / "detector-stack.service").read_text())
    return parser


def test_the_stack_unit_starts_after_docker_and_the_network_and_leaves_restarts_to_docker():
    unit = _stack_unit()
    assert {"docker.service", "network-online.target"} <= set(unit["Unit"]["After"].split())
    assert {"docker.service", "network-online.target"} <= set(unit["Unit"]["Wants"].split())
    # Requires=docker.service would run `down` when docker stops, and nothing would bring the
    # containers back when it starts again.
    assert "Requires" not in unit["Unit"] and "BindsTo" not in unit["Unit"]
    service = unit["Service"]
    assert service["Type"] == "oneshot" and service["RemainAfterExit"] == "yes"
    assert service["ExecStart"].split()[-1] == "up"
    assert service["ExecStop"].split()[-1] == "down"
    # Docker's restart policy supervises the containers; systemd restarting them would fight it.
    assert "Restart" not in service
    assert unit["Install"]["WantedBy"] == "multi-user.target"


def _fake_tools(directory: Path, *, compose_v2: bool) -> Path:
    """`docker` and `docker-compose` that record their arguments instead of acting."""
    directory.mkdir()
    log = directory / "calls"
    docker = directory / "docker"
    docker.write_text(
        "#!/bin/sh\n"
        f"if [ \"$1 $2\" = 'compose version' ]; then exit {0 if compose_v2 else 1}; fi\n"
        f"echo \"docker $*\" >> {log}\n")
    compose = directory / "docker-compose"
    compose.write_text(f"#!/bin/sh\necho \"docker-compose $*\" >> {log}\n")
    for tool in (docker, compose):
        tool.chmod(tool.stat().st_mode | stat.S_IXUSR)
    return log


@pytest.mark.parametrize("compose_v2", [True, False], ids=["compose-v2", "compose-1.29"])
def test_the_unit_command_waits_for_health_only_where_compose_can(tmp_path, compose_v2):
    log = _fake_tools(tmp_path / "bin", compose_v2=compose_v2)
    env = {**os.environ, "PATH": f"{tmp_path / 'bin'}:/usr/bin:/bin", "DETECTOR_STACK_DIR": str(REPO_ROOT),
           "DETECTOR_STACK_DEFAULTS": str(tmp_path / "no-defaults")}
    for name in ("COMPOSE_PROJECT_NAME", "DETECTOR_STACK_COMPOSE_FILES", "COMPOSE_PROFILES"):
        env.pop(name, None)
    wrapper = str(REPO_ROOT / "host" / "detector-stack-compose")
    run([wrapper, "up"], env=env)
    run([wrapper, "down"], env=env)
    up, down = log.read_text().splitlines()
    prefix = "docker compose" if compose_v2 else "docker-compose"
    common = f"{prefix} --project-name detector-stack --file {REPO_ROOT}/compose/compose.yaml"
    wait = " --wait" if compose_v2 else ""
    assert up == f"{common} up --detach --no-build --remove-orphans{wait}"
    assert down == f"{common} down --remove-orphans"


def test_overlay_files_from_the_defaults_file_reach_every_command(tmp_path):
    """An enabled overlay (compose/monitoring.yaml) is in `up` and `down` alike, so neither treats
    its containers as orphans, and the boot unit brings it back."""
    log = _fake_tools(tmp_path / "bin", compose_v2=False)
    defaults = tmp_path / "detector-stack"
    defaults.write_text(f'DETECTOR_STACK_DIR={REPO_ROOT}\n'
                        'DETECTOR_STACK_COMPOSE_FILES="compose.yaml monitoring.yaml"\n'
                        'COMPOSE_PROFILES=monitoring\nIGNORED=1\n')
    env = {k: v for k, v in os.environ.items()
           if k not in ("DETECTOR_STACK_DIR", "DETECTOR_STACK_COMPOSE_FILES", "COMPOSE_PROFILES",
                        "COMPOSE_PROJECT_NAME")}
    env.update(PATH=f"{tmp_path / 'bin'}:/usr/bin:/bin", DETECTOR_STACK_DEFAULTS=str(defaults))
    wrapper = str(REPO_ROOT / "host" / "detector-stack-compose")
    run([wrapper, "up"], env=env)
    run([wrapper, "down"], env=env)
    files = (f"--file {REPO_ROOT}/compose/compose.yaml --file {REPO_ROOT}/compose/monitoring.yaml")
    up, down = log.read_text().splitlines()
    assert up.startswith(f"docker-compose --project-name detector-stack {files} up ")
    assert down == f"docker-compose --project-name detector-stack {files} down --remove-orphans"

    env["DETECTOR_STACK_COMPOSE_FILES"] = "../etc/passwd"
    refused = run([wrapper, "ps"], env=env, check=False)
    assert refused.returncode == 2 and "give a file name under compose/" in refused.stderr
