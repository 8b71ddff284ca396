"""host/install.sh into temporary roots: everything in host/manifest.txt lands with its mode,
units with an [Install] section are enabled, a second run changes nothing and says so, a dry run
changes nothing at all, drift is repaired, and a bad manifest line stops the run."""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

import pytest

from harness.procs import require_tool, run

REPO_ROOT = Path(__file__).resolve().parents[2]
INSTALLER = REPO_ROOT / "host" / "install.sh"


def _manifest() -> list[tuple[str, str, int]]:
    entries = []
    for line in (REPO_ROOT / "host" / "manifest.txt").read_text().splitlines():
        fields = line.split("#", 1)[0].split()
        if fields:
            entries.append((fields[0], fields[1], int(fields[2], 8)))
    return entries


def _snapshot(root: Path) -> dict[str, tuple]:
    """Every path under root with its type, mode, content or link target and mtime."""
    state = {}
    for path in sorted(root.rglob("*")):
        info = path.lstat()
        if stat.S_ISLNK(info.st_mode):
            state[str(path.relative_to(root))] = ("link", os.readlink(path))
        elif stat.S_ISDIR(info.st_mode):
            state[str(path.relative_to(root))] = ("dir", stat.S_IMODE(info.st_mode))
        else:
            state[str(path.relative_to(root))] = ("file", stat.S_IMODE(info.st_mode),
                                                  path.read_bytes(), info.st_mtime_ns)
    return state


def _install(root: Path, *args: str, installer: Path = INSTALLER, check: bool = True):
    require_tool("systemctl")
    return run([str(installer), "--root", str(root), *args], timeout=120, check=check)


def test_installs_every_manifest_line_then_a_second_run_changes_nothing(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    first = _install(root)
    for source, destination, mode in _manifest():
        target = root / destination.lstrip("/")
        assert target.read_bytes() == (REPO_ROOT / source).read_bytes(), destination
        assert stat.S_IMODE(target.stat().st_mode) == mode, destination
        assert destination in first.stdout
    for directory in ("var/log/detector-stack", "var/www/certbot"):
        assert (root / directory).is_dir()
    keys = (root / "etc/detector-stack/keys").stat()
    # Readable by the detector's group (the container's gid) only.
    assert (stat.S_IMODE(keys.st_mode), keys.st_gid) == (0o2750, 10001)
    before = _snapshot(root)

    second = _install(root)

    assert _snapshot(root) == before
    assert "install.sh: nothing to change" in second.stdout
    assert " install " not in second.stdout and "enable " not in second.stdout


def test_units_with_an_install_section_are_enabled_and_timer_services_are_not(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    _install(root)
    system = root / "etc" / "systemd" / "system"
    assert os.readlink(system / "multi-user.target.wants" / "detector-stack.service") == \
        "/etc/systemd/system/detector-stack.service"
    for source, destination, _ in _manifest():
        if not source.startswith("systemd/"):
            continue
        unit = Path(destination).name
        has_install = "[Install]" in (REPO_ROOT / source).read_text()
        # lexists: the links point into the installed root's /etc, absent from this host.
        links = [w / unit for w in system.glob("*.wants") if os.path.lexists(w / unit)]
        assert bool(links) == has_install, unit


def test_dry_run_lists_the_changes_and_makes_none(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    done = _install(root, "--dry-run")
    assert list(root.iterdir()) == []
    for _, destination, _ in _manifest():
        assert f"would install {destination} " in done.stdout
    assert "would enable detector-stack.service" in done.stdout
    assert "dry run:" in done.stdout

    _install(root)
    assert "nothing to change" in _install(root, "--dry-run").stdout


def test_drift_in_content_and_mode_is_repaired_and_reported(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    _install(root)
    unit = root / "etc/systemd/system/detector-stack.service"
    unit.write_text("edited by hand\n")
    wrapper = root / "usr/local/sbin/detector-stack-compose"
    wrapper.chmod(0o777)

    done = _install(root)

    assert "update /etc/systemd/system/detector-stack.service" in done.stdout
    assert "set mode 0755 on /usr/local/sbin/detector-stack-compose" in done.stdout
    assert unit.read_bytes() == (REPO_ROOT / "systemd/detector-stack.service").read_bytes()
    assert stat.S_IMODE(wrapper.stat().st_mode) == 0o755


def test_the_install_steps_mask_a_legacy_listener_unit(tmp_path):
    root = tmp_path / "root"
    legacy = root / "etc/systemd/system/detector-legacy.service"
    legacy.parent.mkdir(parents=True)
    legacy.write_text("[Unit]\nDescription=pre-migration listener\n[Service]\nExecStart=/bin/true\n"
                      "[Install]\nWantedBy=multi-user.target\n")

    done = _install(root)

    assert os.readlink(legacy) == "/dev/null"
    assert "masked detector-legacy.service" in done.stdout
    assert "already masked" in _install(root).stdout


@pytest.mark.parametrize("line, complaint", [
    ("host/install.sh etc/relative 0644", "is not absolute"),
    ("host/install.sh /etc/x 644x", "is not octal"),
    ("host/no-such-file /etc/x 0644", "is not a file in the repo"),
    ("host/install.sh /etc/x", "want 'source dest mode'"),
])
def test_a_bad_manifest_line_stops_the_run_before_any_change(tmp_path, line, complaint):
    repo = tmp_path / "repo"
    (repo / "host").mkdir(parents=True)
    shutil.copy2(INSTALLER, repo / "host" / "install.sh")
    (repo / "host" / "manifest.txt").write_text(
        f"host/install.sh /usr/local/sbin/first 0755\n{line}\n")
    root = tmp_path / "root"
    root.mkdir()

    done = _install(root, installer=repo / "host" / "install.sh", check=False)

    assert done.returncode != 0
    assert complaint in done.stderr
    assert "manifest.txt:2" in done.stderr
    assert list(root.iterdir()) == []
