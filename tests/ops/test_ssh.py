"""SSH posture: host/ssh/check-ssh-drift.sh, run against real sshd configurations.

The check asks the real sshd for its effective configuration (`sshd -T -f`), so Include order,
first-match-wins and Match blocks are sshd's own. Each case lays out a config the way Debian
does (sshd_config with `Include sshd_config.d/*.conf` first) with the shipped drop-in in place,
then adds what an operator or a cloud image might add.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from harness.procs import require_tool, run
from harness.service import REPO_ROOT

DROP_IN = REPO_ROOT / "host" / "ssh" / "00-detector-hardening.conf"
CHECK = REPO_ROOT / "host" / "ssh" / "check-ssh-drift.sh"


@pytest.fixture(scope="module")
def host_key(tmp_path_factory) -> Path:
    keygen = require_tool("ssh-keygen")
    key = tmp_path_factory.mktemp("hostkey") / "ssh_host_ed25519_key"
    run([keygen, "-q", "-t", "ed25519", "-N", "", "-f", str(key)])
    return key


def check(tmp_path: Path, host_key: Path, *, main_extra: str = "", drop_ins: dict[str, str] | None = None,
          shipped: bool = True) -> subprocess.CompletedProcess:
    require_tool("sshd")
    conf_d = tmp_path / "sshd_config.d"
    conf_d.mkdir()
    if shipped:
        (conf_d / DROP_IN.name).write_text(DROP_IN.read_text())
    for name, text in (drop_ins or {}).items():
        (conf_d / name).write_text(text)
    main = tmp_path / "sshd_config"
    # Debian's sshd_config: the Include comes first, then the stock settings.
    main.write_text(f"Include {conf_d}/*.conf\nKbdInteractiveAuthentication no\nUsePAM yes\n"
                    f"X11Forwarding yes\nPrintMotd no\n{main_extra}")
    return subprocess.run([str(CHECK), "--config", str(main), "--hostkey", str(host_key)],
                          capture_output=True, text=True, timeout=60)


CASES = [
    # (id, main_extra, extra drop-ins, shipped drop-in present, passes, expected finding)
    ("shipped drop-in", "", {}, True, True, None),
    # A later drop-in that turns passwords on loses to ours (sshd keeps the first value).
    ("cloud-init drop-in after ours", "", {"50-cloud-init.conf": "PasswordAuthentication yes\n"},
     True, True, None),
    ("main config turns passwords on, after the Include", "PasswordAuthentication yes\n", {}, True, True, None),
    # Drift: the drop-in is gone, or something sorts before it, or a Match block re-opens passwords.
    ("drop-in missing", "", {}, False, False, "passwordauthentication is 'yes'"),
    ("passwords allowed by an earlier drop-in", "", {"00-aaa.conf": "PasswordAuthentication yes\n"},
     True, False, "passwordauthentication is 'yes'"),
    ("root password login allowed", "", {"00-aaa.conf": "PermitRootLogin yes\n"},
     True, False, "permitrootlogin is 'yes'"),
    ("keyboard-interactive allowed", "", {"00-aaa.conf": "KbdInteractiveAuthentication yes\n"},
     True, False, "kbdinteractiveauthentication is 'yes'"),
    ("Match block for users", "Match User operator\n    PasswordAuthentication yes\n", {}, True, False,
     "[user=operator,"),
    ("Match block for an address", "Match Address 203.0.113.0/24\n    PasswordAuthentication yes\n", {},
     True, False, "passwordauthentication is 'yes'"),
]


@pytest.mark.parametrize("name,main_extra,drop_ins,shipped,passes,finding", CASES, ids=[c[0] for c in CASES])
def test_drift_check(tmp_path, host_key, name, main_extra, drop_ins, shipped, passes, finding):
    done = check(tmp_path, host_key, main_extra=main_extra, drop_ins=drop_ins, shipped=shipped)
    assert done.returncode == (0 if passes else 1), done.stdout + done.stderr
    if passes:
        assert "OK: key-only login in effect" in done.stdout
    else:
        assert "DRIFT" in done.stdout and finding in done.stdout, done.stdout


def test_unreadable_config_is_an_error_not_a_pass(tmp_path):
    done = subprocess.run([str(CHECK), "--config", str(tmp_path / "missing")], capture_output=True,
                          text=True, timeout=30)
    assert done.returncode == 2 and "cannot read" in done.stderr
